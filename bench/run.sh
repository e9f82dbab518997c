#!/usr/bin/env bash
# `kiln run` startup benchmark (issue 7): `kiln run IMG true` end to end on a warm store (the
# image's snapshot already unpacked), against `runc run` of an OCI bundle made from the same
# busybox rootfs. Reports the median of RUNS runs of each (hyperfine when installed, else a
# bash loop over `date +%s%N`). Needs root (runc's bundle runs as root; so does kiln's
# rootful sandbox) and a static busybox at /bin/busybox.
#
# Usage: bench/run.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   KILN (default: target/release/kiln, rebuilt with `cargo build --release`),
#        RUNS (default 30, at least 20), RUNC (default: runc on PATH; skipped when missing),
#        NO_HYPERFINE=1 (use the bash loop even when hyperfine is installed)
set -euo pipefail

source "$(dirname "$0")/lib.sh"
bench_setup run.sh "${1:-}"
bench_runs run.sh 30 20
bench_kiln
RUNC="${RUNC:-$(command -v runc || true)}"
busybox="$(command -v busybox || true)"
[[ -x /bin/busybox ]] && busybox=/bin/busybox
if [[ -z "$busybox" ]]; then
    echo "bench/run.sh: no busybox (apt-get install busybox-static)" >&2
    exit 1
fi

# The rootfs: static busybox, a few applets, passwd/group.
rootfs="$work/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev}
cp "$busybox" "$rootfs/bin/busybox"
for applet in sh true id ls cat echo; do ln -s busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

export KILN_ROOT="$work/store"
"$KILN" import "$rootfs" -t bench-run:latest >/dev/null
# Warm the store: the first run unpacks the layer snapshot.
[[ "$("$KILN" run bench-run:latest echo warm)" == warm ]]

median_ms() { # command...: median wall time of $runs runs, in ms (bash loop fallback)
    local times=() start end
    for ((i = 0; i < 3; i++)); do "$@" >/dev/null; done
    for ((i = 0; i < runs; i++)); do
        start=$(date +%s%N)
        "$@" >/dev/null
        end=$(date +%s%N)
        times+=($(( (end - start) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f\n", m / 1000}'
}

commands=("$KILN run bench-run:latest true")
names=("kiln run")
if [[ -n "$RUNC" ]]; then
    bundle="$work/bundle"
    rm -rf "$bundle"
    mkdir -p "$bundle"
    cp -a "$rootfs" "$bundle/rootfs"
    (cd "$bundle" && "$RUNC" spec)
    python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["true"]
spec["root"]["readonly"] = True
json.dump(spec, open(path, "w"), indent=2)
PY
    # $$ is the per-run shell's pid: a fresh container id each time (`runc run` deletes it).
    commands+=("$RUNC run --bundle $bundle kiln-bench-\$\$")
    names+=("runc run")
else
    echo "bench/run.sh: runc not found, comparing nothing" >&2
fi

declare -A medians
if [[ -z "${NO_HYPERFINE:-}" ]] && command -v hyperfine >/dev/null; then
    json="$work/hyperfine.json"
    hyperfine --warmup 3 --runs "$runs" --export-json "$json" \
        "${commands[@]}" >&2
    for i in "${!commands[@]}"; do
        medians[$i]=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]; print("%.1f" % (r["median"]*1000))' "$json" "$i")
    done
else
    for i in "${!commands[@]}"; do
        medians[$i]=$(median_ms sh -c "${commands[$i]}")
    done
fi
echo "median of $runs runs, warm store:"
for i in "${!commands[@]}"; do
    printf '  %-9s %6s ms\n' "${names[$i]}" "${medians[$i]}"
done
