#!/usr/bin/env bash
# Cost of the default RUN confinement (issue 15): Docker's capability set, the seccomp
# filter, the masked and read-only /proc and /sys paths. Builds the same 20-RUN Dockerfile
# with `--no-cache` twice, once confined (the default) and once with every RUN marked
# `--security=insecure` (`--allow security.insecure`), which skips exactly that work; the pids
# cgroup and everything else are the same in both. The two builds run interleaved (A B A B…)
# so the ratio survives a drifting machine: farm-bench when installed, else hyperfine.
# Needs root and a static busybox.
#
# Usage: bench/confinement.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   KILN (default: target/release/kiln, rebuilt), RUNS (default 10), STEPS (default 20)
set -euo pipefail

source "$(dirname "$0")/lib.sh"
bench_setup confinement.sh "${1:-}"
bench_runs confinement.sh 10 1
steps="${STEPS:-20}"
bench_kiln
export KILN_ROOT="$work/store" KILN
bash "$repo/examples/bases.sh" busybox >/dev/null

mkdir -p "$work/confined" "$work/insecure"
{
    echo "FROM busybox"
    for ((i = 0; i < steps; i++)); do echo "RUN echo $i"; done
} > "$work/confined/Dockerfile"
sed 's/^RUN /RUN --security=insecure /' "$work/confined/Dockerfile" > "$work/insecure/Dockerfile"

confined=("$KILN" build --no-cache -q "$work/confined")
insecure=("$KILN" build --no-cache -q --allow security.insecure "$work/insecure")
if command -v farm-bench >/dev/null; then
    farm-bench -n "$runs" --timeout 1200 --vs "${insecure[*]}" -- "${confined[@]}"
elif command -v hyperfine >/dev/null; then
    hyperfine -N -r "$runs" "${confined[*]}" "${insecure[*]}"
else
    echo "bench/confinement.sh: needs farm-bench or hyperfine" >&2
    exit 1
fi
