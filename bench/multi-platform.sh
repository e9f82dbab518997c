#!/usr/bin/env bash
# Cost of a second target platform (issue 19): the python-fastapi service written the
# cross-compile way (its venv built in a `FROM --platform=$BUILDPLATFORM` stage, the
# production stage only COPYs from it), built with `--no-cache` on a warm store for
# `--platform linux/amd64` and for `--platform linux/amd64,linux/arm64`, interleaved
# (A B A B…). The builder stage does not read TARGETARCH, so the two-platform build runs it
# once; what the second platform adds is its own base, its COPY steps, its layers'
# compression, its config and manifest, and the index. Target: ≤ 1.3× the one-platform build.
#
# There is no arm64 python image offline, so the arm64 variant of python:3.11-slim is the
# amd64 root filesystem plus one marker file, imported with `--platform linux/arm64`: its
# layer differs from the amd64 one (so it is unpacked and stored on its own, as a real arm64
# base would be), and no RUN step runs on it, so its files are never executed. The figure is
# kiln's per-platform overhead, not emulation speed.
#
# Needs root, farm-bench (or hyperfine), mmdebstrap and pip (examples/bases.sh, prepare.sh).
#
# Usage: bench/multi-platform.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   KILN (default: target/release/kiln, rebuilt), RUNS (default 5)
set -euo pipefail

source "$(dirname "$0")/lib.sh"
bench_setup multi-platform.sh "${1:-}"
bench_runs multi-platform.sh 5 1
bench_kiln
export KILN_ROOT="$work/store" KILN
declare -A base_archive=()
bench_bases "$KILN_ROOT" "$work"

# The arm64-labelled python base: the amd64 tree plus a marker, under the same name.
arm_root="$work/python-arm64"
if ! "$KILN" images | grep -q 'linux/arm64'; then
    rm -rf "$arm_root"
    printf 'FROM python:3.11-slim\n' |
        "$KILN" build -q -f - -o "type=local,dest=$arm_root" "$work/empty" >/dev/null
    echo "bench/multi-platform.sh: amd64 files labelled arm64" >"$arm_root/etc/kiln-bench-arm64"
    "$KILN" import "$arm_root" --platform linux/arm64 -t python:3.11-slim \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' >/dev/null
    rm -rf "$arm_root"
fi

ctx="$work/fastapi"
rm -rf "$ctx"
cp -a "$repo/examples/python-fastapi" "$ctx"
rm -rf "$ctx/.prepare.lock"
cat >"$ctx/Dockerfile.cross" <<'EOF'
FROM --platform=$BUILDPLATFORM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY wheelhouse/ /wheels/
COPY requirements.txt ./
RUN pip install --no-index --find-links /wheels -r requirements.txt

FROM python:3.11-slim AS production
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --chown=1000:1000 app/ app/
COPY --chown=1000:1000 README.md ./
USER 1000
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
EOF
# Unpack both bases once: each build then starts from a warm store.
"$KILN" build -q -f "$ctx/Dockerfile.cross" --platform linux/amd64,linux/arm64 "$ctx" >/dev/null

one=("$KILN" build --no-cache -q -f "$ctx/Dockerfile.cross" --platform linux/amd64 "$ctx")
two=("$KILN" build --no-cache -q -f "$ctx/Dockerfile.cross" --platform linux/amd64,linux/arm64 "$ctx")
if command -v farm-bench >/dev/null; then
    farm-bench -n "$runs" --timeout 1800 --vs "${one[*]}" -- "${two[@]}"
elif command -v hyperfine >/dev/null; then
    hyperfine -N -r "$runs" "${two[*]}" "${one[*]}"
else
    echo "bench/multi-platform.sh: needs farm-bench or hyperfine" >&2
    exit 1
fi
