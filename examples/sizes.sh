#!/usr/bin/env bash
# Prints the tutorials' image size table: each example's shipped image next to what a
# single-stage build would ship (its builder stage, or for python-fastapi Dockerfile.single)
# and its base.
#
#   examples/sizes.sh [GROUP...]   # builds what is missing (runs bases.sh for the bases first)
#
# GROUP: python (python-fastapi, static-binary), go (go-minimal), node (node-production),
# frontend (frontend-nginx), rust (rust-deps, both Dockerfiles); default: all of them.
# Columns: layers; uncompressed MB (sum of the layer tars); compressed MB (sum of the gzip
# blobs, what a registry stores and a pull downloads). MB = 10^6 bytes.
# Environment: KILN (default `kiln`), KILN_ROOT, SKIP_BASES=1 to use the store's bases as is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KILN=${KILN:-kiln}
export KILN
command -v jq >/dev/null || { echo "sizes.sh: needs jq" >&2; exit 1; }

[ $# -gt 0 ] || set -- python go node frontend rust
bases=()
for group in "$@"; do
  case $group in
    python) bases+=(debian python) ;;
    go) bases+=(golang) ;;
    node) bases+=(node) ;;
    frontend) bases+=(node nginx) ;;
    rust) bases+=(rust debian) ;;
    *) echo "sizes.sh: unknown group '$group' (known: python, go, node, frontend, rust)" >&2; exit 2 ;;
  esac
done
# shellcheck disable=SC2046 # the base names are words
[ "${SKIP_BASES:-0}" = 1 ] || bash "$here/bases.sh" $(printf '%s\n' "${bases[@]}" | sort -u) >&2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# build NAME CONTEXT [ARGS...]: builds into the store and an OCI layout at $tmp/NAME.
build() {
  local name=$1 context=$2; shift 2
  echo "sizes.sh: building $name" >&2
  "$KILN" build -q -t "$name" -o "type=oci,dest=$tmp/$name,tar=false" "$@" "$context" >/dev/null
}

# export_base NAME REF: the store's image REF as an OCI layout at $tmp/NAME.
export_base() {
  printf 'FROM %s\n' "$2" | "$KILN" build -q -f - -o "type=oci,dest=$tmp/$1,tar=false" "$tmp" >/dev/null
}

# row LABEL NAME: one table row for the layout at $tmp/NAME.
row() {
  local label=$1 dir=$tmp/$2
  local manifest layers compressed=0 uncompressed=0 digest size media
  manifest=$dir/blobs/sha256/$(jq -r '.manifests[0].digest | ltrimstr("sha256:")' "$dir/index.json")
  layers=$(jq '.layers | length' "$manifest")
  while read -r digest size media; do
    compressed=$((compressed + size))
    local blob=$dir/blobs/sha256/${digest#sha256:}
    case $media in
      *+gzip) uncompressed=$((uncompressed + $(gzip -dc "$blob" | wc -c))) ;;
      *+zstd) uncompressed=$((uncompressed + $(zstd -dc "$blob" | wc -c))) ;;
      *) uncompressed=$((uncompressed + size)) ;;
    esac
  done < <(jq -r '.layers[] | "\(.digest) \(.size) \(.mediaType)"' "$manifest")
  awk -v l="$label" -v n="$layers" -v u="$uncompressed" -v c="$compressed" \
    'BEGIN { printf "| %s | %d | %.1f | %.1f |\n", l, n, u / 1e6, c / 1e6 }'
}

# table_python, table_go, ...: the rows of one group.
table_python() {
  bash "$here/python-fastapi/prepare.sh" >&2
  export_base python-slim python:3.11-slim
  build fastapi-single "$here/python-fastapi" -f "$here/python-fastapi/Dockerfile.single"
  build fastapi-demo "$here/python-fastapi"
  build static-hello "$here/static-binary"
  row "python:3.11-slim (base)" python-slim
  row "python-fastapi, single stage (Dockerfile.single)" fastapi-single
  row "python-fastapi, multi-stage production" fastapi-demo
  row "static-binary (FROM scratch)" static-hello
}

table_go() {
  export_base golang golang:1.19
  build go-builder "$here/go-minimal" --target builder
  build go-minimal "$here/go-minimal"
  row "golang:1.19 (base)" golang
  row "go-minimal, builder stage" go-builder
  row "go-minimal, runtime (FROM scratch)" go-minimal
}

table_node() {
  export_base node node:18
  build node-builder "$here/node-production" --target builder
  build node-production "$here/node-production"
  row "node:18 (base)" node
  row "node-production, builder stage" node-builder
  row "node-production, production stage" node-production
}

table_frontend() {
  export_base node node:18
  export_base nginx nginx:1.22
  build frontend-builder "$here/frontend-nginx" --target builder
  build frontend-nginx "$here/frontend-nginx"
  row "nginx:1.22 (base)" nginx
  row "frontend-nginx, builder stage (node:18)" frontend-builder
  row "frontend-nginx, runtime (nginx)" frontend-nginx
}

# The Rust version of the store's rust:1 (its RUST_VERSION).
rust_version() {
  "$KILN" inspect rust:1 | jq -r '.Config.config.Env[] | select(startswith("RUST_VERSION=")) | ltrimstr("RUST_VERSION=")'
}

table_rust() {
  export_base rust rust:1
  export_base debian-slim debian:bookworm-slim
  build rust-builder "$here/rust-deps" --target builder
  build rust-deps "$here/rust-deps"
  build rust-deps-cache-mount "$here/rust-deps" -f "$here/rust-deps/Dockerfile.cache-mount"
  row "rust:1 (base; Rust $(rust_version))" rust
  row "debian:bookworm-slim (base)" debian-slim
  row "rust-deps, builder stage" rust-builder
  row "rust-deps, runtime (debian:bookworm-slim)" rust-deps
  row "rust-deps, runtime (Dockerfile.cache-mount)" rust-deps-cache-mount
}

rows=$tmp/rows
for group in "$@"; do
  "table_$group" >>"$rows"
done
echo "| image | layers | uncompressed MB | compressed MB |"
echo "|---|---:|---:|---:|"
cat "$rows"
