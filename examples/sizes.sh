#!/usr/bin/env bash
# Prints the tutorials' image size table: the python-fastapi service as a single-stage image
# (build tools, wheelhouse, tests and dev dependencies included) vs the multi-stage production
# image, next to their base and the FROM scratch static binary.
#
#   examples/sizes.sh            # builds what is missing (runs bases.sh debian python first)
#
# Columns: layers; uncompressed MB (sum of the layer tars); compressed MB (sum of the gzip
# blobs, what a registry stores and a pull downloads). MB = 10^6 bytes.
# Environment: KILN (default `kiln`), KILN_ROOT, SKIP_BASES=1 to use the store's bases as is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KILN=${KILN:-kiln}
export KILN
command -v jq >/dev/null || { echo "sizes.sh: needs jq" >&2; exit 1; }

[ "${SKIP_BASES:-0}" = 1 ] || bash "$here/bases.sh" debian python >&2
bash "$here/python-fastapi/prepare.sh" >&2

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

export_base python-slim python:3.11-slim
build fastapi-single "$here/python-fastapi" -f "$here/python-fastapi/Dockerfile.single"
build fastapi-demo "$here/python-fastapi"
build static-hello "$here/static-binary"

echo "| image | layers | uncompressed MB | compressed MB |"
echo "|---|---:|---:|---:|"
row "python:3.11-slim (base)" python-slim
row "python-fastapi, single stage (Dockerfile.single)" fastapi-single
row "python-fastapi, multi-stage production" fastapi-demo
row "static-binary (FROM scratch)" static-hello
