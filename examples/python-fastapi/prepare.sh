#!/usr/bin/env bash
# Downloads the example's Python dependencies as wheels into ./wheelhouse, on the host, for the
# image's platform (CPython 3.11, manylinux x86_64) — the builder stage then installs them with
# `pip install --no-index --find-links /wheels`, so the build itself needs no PyPI access.
# Idempotent: an existing complete wheelhouse is kept. Needs pip on the host (any Python).
#
# Environment: PIP (default: pip3, else python3 -m pip), PYTHON_VERSION (default 3.11).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON_VERSION=${PYTHON_VERSION:-3.11}
abi=cp${PYTHON_VERSION/./}
if [ -n "${PIP:-}" ]; then
  read -r -a pip <<<"$PIP"
elif command -v pip3 >/dev/null; then
  pip=(pip3)
else
  pip=(python3 -m pip)
fi

mkdir -p wheelhouse
# Several builds (or tests) may prepare at once: one download at a time.
exec {lock_fd}>.prepare.lock
flock "$lock_fd"
"${pip[@]}" download --quiet --disable-pip-version-check \
  -d wheelhouse -r requirements-dev.txt \
  --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" --abi "$abi" \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
echo "prepare.sh: $(find wheelhouse -name '*.whl' | wc -l) wheels in $(pwd)/wheelhouse"
