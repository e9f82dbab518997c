#!/usr/bin/env bash
# Cost of chroot isolation (issue 18): the python-fastapi example (default target =
# production) built with `--no-cache` on a warm store (the python base imported and
# unpacked), once under `--isolation chroot` and once under `--isolation namespaces`,
# interleaved (A B A B…) so the ratio survives a drifting machine. Chroot copies the stage's
# rootfs for every RUN and diffs it afterwards; the namespace sandbox mounts an overlay. Set
# NO_MOUNTS=1 to measure chroot as in a pod that allows no mounts (KILN_SANDBOX_NO_MOUNTS=1:
# mount sources are copied in and out). Needs root, farm-bench (or hyperfine), mmdebstrap and
# pip (examples/bases.sh, prepare.sh).
#
# Usage: bench/isolation.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   KILN (default: target/release/kiln, rebuilt), RUNS (default 5), NO_MOUNTS (0)
set -euo pipefail

source "$(dirname "$0")/lib.sh"
bench_setup isolation.sh "${1:-}"
bench_runs isolation.sh 5 1
bench_kiln
export KILN_ROOT="$work/store" KILN
declare -A base_archive=()
bench_bases "$KILN_ROOT" "$work"
ctx="$work/fastapi"
rm -rf "$ctx"
cp -a "$repo/examples/python-fastapi" "$ctx"
rm -rf "$ctx/.prepare.lock"
# Unpack the base's layers once: both modes then start from a warm store.
"$KILN" build -q "$ctx" >/dev/null
if [[ "${NO_MOUNTS:-0}" == 1 ]]; then
    export KILN_SANDBOX_NO_MOUNTS=1
fi

chroot=("$KILN" build --no-cache -q --isolation chroot "$ctx")
namespaces=("$KILN" build --no-cache -q --isolation namespaces "$ctx")
if command -v farm-bench >/dev/null; then
    farm-bench -n "$runs" --timeout 1800 --vs "${namespaces[*]}" -- "${chroot[@]}"
elif command -v hyperfine >/dev/null; then
    hyperfine -N -r "$runs" "${chroot[*]}" "${namespaces[*]}"
else
    echo "bench/isolation.sh: needs farm-bench or hyperfine" >&2
    exit 1
fi
