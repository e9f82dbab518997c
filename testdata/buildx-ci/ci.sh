#!/usr/bin/env bash
# A CI job written for `docker buildx build`, as a GitHub Actions or GitLab CI step runs it:
# test the image, build and push it with a local layer cache (restored and saved by the CI's
# cache step), export it as an OCI archive for a scanner, and check the export is the pushed
# image. BUILDX names the builder's command line (default `docker buildx`, with a builder that
# exports cache, e.g. the docker-container one docker/setup-buildx-action creates).
#
# Environment: REGISTRY (host:port to push to), BASE_IMAGE, CI_TOKEN (a secret the build
# reads), CI_COMMIT_SHA; optional VERSION, PLATFORM, CONTEXT, OUT, CACHE_DIR.
set -euo pipefail

buildx() {
  # shellcheck disable=SC2086 # BUILDX is a command line, e.g. `docker buildx`
  ${BUILDX:-docker buildx} "$@"
}

: "${REGISTRY:?}" "${BASE_IMAGE:?}" "${CI_TOKEN:?}" "${CI_COMMIT_SHA:?}"
IMAGE="$REGISTRY/ci/app"
VERSION="${VERSION:-1.0.0}"
PLATFORM="${PLATFORM:-linux/amd64}"
CONTEXT="${CONTEXT:-.}"
OUT="${OUT:-$PWD/ci-out}"
CACHE_DIR="${CACHE_DIR:-/tmp/.buildx-cache}"
export CI_TOKEN
mkdir -p "$OUT"

# Flags every build of the job shares, so each build finds the others' cache.
common=(
  --platform "$PLATFORM"
  --build-arg "BASE_IMAGE=$BASE_IMAGE"
  --build-arg "VERSION=$VERSION"
  --secret "id=ci_token,env=CI_TOKEN"
  --add-host "ci-cache.internal:192.0.2.10"
  --ulimit "nofile=1024:2048"
  --shm-size 128m
  --network host
  --label "org.opencontainers.image.version=$VERSION"
  --label "org.opencontainers.image.revision=$CI_COMMIT_SHA"
  --cache-from "type=local,src=$CACHE_DIR"
)

echo "--- test"
# The tests run on every push, whatever the cache holds.
buildx build "${common[@]}" --progress=plain \
  --target test-report --no-cache-filter test \
  -o "type=local,dest=$OUT/test-report" \
  "$CONTEXT"
cat "$OUT/test-report/report.txt"
grep -qx "tests passed" "$OUT/test-report/report.txt"

echo "--- build and push"
buildx build "${common[@]}" --progress=plain --pull \
  -t "$IMAGE:$VERSION" -t "$IMAGE:latest" \
  --cache-to "type=local,dest=$CACHE_DIR-new,mode=max" \
  --metadata-file "$OUT/metadata.json" \
  --iidfile "$OUT/iid" \
  --push \
  "$CONTEXT"
# Keep only the newest cache (the usual actions/cache rotation).
rm -rf "$CACHE_DIR"
mv "$CACHE_DIR-new" "$CACHE_DIR"

digest=$(jq -r '."containerimage.digest"' "$OUT/metadata.json")
image_id=$(jq -r '."containerimage.config.digest"' "$OUT/metadata.json")
if [ "$image_id" != "$(cat "$OUT/iid")" ]; then
  echo "metadata's image ID $image_id is not the iidfile's $(cat "$OUT/iid")" >&2
  exit 1
fi
jq -e --arg name "$IMAGE:$VERSION" '."image.name" | split(",") | index($name) != null' \
  "$OUT/metadata.json" >/dev/null
echo "pushed $IMAGE:$VERSION@$digest"

echo "--- export for the scanner"
# Everything is in the cache: this rebuild is the pushed image, exported as an archive.
exported=$(buildx build "${common[@]}" --quiet -o "type=oci,dest=$OUT/app.oci.tar" "$CONTEXT")
if [ "$exported" != "$image_id" ]; then
  echo "the exported image $exported is not the pushed $image_id" >&2
  exit 1
fi
echo "exported $exported to $OUT/app.oci.tar"
