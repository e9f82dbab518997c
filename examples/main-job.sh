#!/usr/bin/env bash
# README's main job: on a fresh Debian machine, build kiln, make an offline busybox base image,
# build the multi-stage example (examples/hello-multistage) daemonlessly, run its test stage,
# run the image with `kiln run`, and show the local store (`kiln images`, `kiln history`).
#
# Environment: KILN_ROOT (kiln's store; default: kiln's own default, /var/lib/kiln as root),
# CARGO_PROFILE (release by default; `dev` for a debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "installing what the job needs (Debian packages)"
need=()
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v jq >/dev/null 2>&1 || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "apt-get install ${need[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "busybox: $(command -v busybox), jq: $(command -v jq)"

profile=${CARGO_PROFILE:-release}
step "building kiln (cargo build --profile $profile)"
cargo build --profile "$profile" --bin kiln
dir=$profile
[ "$profile" = dev ] && dir=debug
KILN=$PWD/target/$dir/kiln
export KILN
kiln() { "$KILN" "$@"; }
started=$(date +%s)

step "making the offline base image busybox:latest (examples/bases.sh)"
bash examples/bases.sh busybox

step "kiln build -t hello-multistage examples/hello-multistage"
kiln build --progress plain -t hello-multistage:latest examples/hello-multistage

step "kiln build --target test (the test stage must pass)"
kiln build --progress plain --target test examples/hello-multistage

step "kiln build --target builder -t hello-multistage:builder (what a single-stage image would carry)"
kiln build --progress plain --target builder -t hello-multistage:builder examples/hello-multistage

step "rebuilding from cache (every step CACHED)"
kiln build --progress plain -t hello-multistage:latest examples/hello-multistage

step "kiln run hello-multistage whoami (the runtime image is not root)"
user=$(kiln run --rm hello-multistage:latest whoami)
echo "$user"
[ "$user" = app ] || { echo "expected the image to run as app, got '$user'" >&2; exit 1; }

step "kiln run: serve the site inside the sandbox and fetch it"
kiln run --rm hello-multistage:latest sh -c \
  'httpd -p 127.0.0.1:18080 -h /srv/www && sleep 0.2 && wget -q -O - http://127.0.0.1:18080/index.html'

step "kiln images"
kiln images

step "kiln history hello-multistage:latest"
kiln history hello-multistage:latest

step "sizes: multi-stage runtime vs the builder stage"
printf '%-28s %6s %14s %14s\n' IMAGE LAYERS UNCOMPRESSED COMPRESSED
for name in hello-multistage:latest hello-multistage:builder; do
  layers=$(kiln inspect "$name" | jq '.Manifest.layers | length')
  compressed=$(kiln inspect "$name" | jq '[.Manifest.layers[].size] | add')
  uncompressed=$(kiln history -H=false --format json "$name" | jq -s 'map(.Size | tonumber) | add')
  printf '%-28s %6s %14s %14s\n' "$name" "$layers" "$uncompressed" "$compressed"
done

echo
echo "main job done in $(( $(date +%s) - started ))s after the cargo build"
