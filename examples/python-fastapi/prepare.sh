#!/usr/bin/env bash
# Downloads the example's Python dependencies as wheels into ./wheelhouse, on the host, for the
# image's platform (CPython 3.11, manylinux x86_64) — the builder stage then installs them with
# `pip install --no-index --find-links /wheels`, so the build itself needs no PyPI access.
# Idempotent: an existing complete wheelhouse is kept. Needs pip on the host (any Python).
#
# Environment: PIP (default: pip3, else python3 -m pip, else pip in the image via kiln),
# PREPARE_WITH=kiln (force the in-image download), KILN (default: kiln), PYTHON_VERSION (3.11).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON_VERSION=${PYTHON_VERSION:-3.11}
abi=cp${PYTHON_VERSION/./}
# The host's pip when there is one; else pip inside the python base image, through kiln
# (a fresh Debian has no pip: `kiln build` runs `pip download` in python:X-slim and exports
# the wheels with -o type=local).
with=${PREPARE_WITH:-auto}
pip=()
if [ "$with" != kiln ]; then
  if [ -n "${PIP:-}" ]; then
    read -r -a pip <<<"$PIP"
  elif command -v pip3 >/dev/null; then
    pip=(pip3)
  elif python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
  fi
fi

mkdir -p wheelhouse
# Several builds (or tests) may prepare at once: one download at a time.
exec {lock_fd}>.prepare.lock
flock "$lock_fd"
if [ ${#pip[@]} -gt 0 ]; then
  "${pip[@]}" download --quiet --disable-pip-version-check \
    -d wheelhouse -r requirements-dev.txt \
    --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" --abi "$abi" \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
else
  kiln=${KILN:-kiln}
  command -v "$kiln" >/dev/null || { echo "prepare.sh: needs pip, or kiln and python:$PYTHON_VERSION-slim" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/context"
  cp requirements.txt requirements-dev.txt "$tmp/context/"
  cat >"$tmp/Dockerfile" <<DOCKERFILE
FROM python:$PYTHON_VERSION-slim AS download
COPY requirements.txt requirements-dev.txt /req/
ARG PIP_INDEX_URL
RUN --mount=type=secret,id=cacert,target=/run/host-ca.pem \\
    if [ -s /run/host-ca.pem ]; then export PIP_CERT=/run/host-ca.pem; fi; \\
    pip download --quiet --disable-pip-version-check \\
      --only-binary=:all: -d /wheelhouse -r /req/requirements-dev.txt
FROM scratch
COPY --from=download /wheelhouse/ /
DOCKERFILE
  # The host's CA bundle (TLS-intercepting proxies) and index, if any, reach pip in the RUN.
  ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  args=()
  [ -r "$ca" ] && args+=(--secret "id=cacert,src=$ca")
  [ -z "${PIP_INDEX_URL:-}" ] || args+=(--build-arg PIP_INDEX_URL)
  "$kiln" build -q ${args[@]+"${args[@]}"} -f "$tmp/Dockerfile" -o "type=local,dest=$tmp/out" "$tmp/context" >/dev/null
  cp "$tmp"/out/*.whl wheelhouse/
fi
echo "prepare.sh: $(find wheelhouse -name '*.whl' | wc -l) wheels in $(pwd)/wheelhouse"
