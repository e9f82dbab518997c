#!/usr/bin/env bash
# Warm no-op rebuild benchmark (issue 8): a 15-step, 3-stage Dockerfile over a small context
# (200 files), built once to warm the cache, then `kiln build` again with nothing changed —
# parse, plan, stat the context, look up every step's key, assemble and tag the image.
# Every step must print CACHED. Reports the median of RUNS runs (hyperfine when installed,
# else a bash loop over `date +%s%N`). Target: ≤ 50 ms median. Needs root (the cold build
# runs RUN steps in the rootful sandbox) and a static busybox at /bin/busybox.
#
# Usage: bench/warm-rebuild.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   KILN (default: target/release/kiln, rebuilt with `cargo build --release`),
#        RUNS (default 20, at least 10), NO_HYPERFINE=1 (use the bash loop)
set -euo pipefail

source "$(dirname "$0")/lib.sh"
bench_setup warm-rebuild.sh "${1:-}"
bench_runs warm-rebuild.sh 20 10
bench_kiln
busybox=/bin/busybox
if [[ ! -x "$busybox" ]]; then
    echo "bench/warm-rebuild.sh: no busybox at /bin/busybox (apt-get install busybox-static)" >&2
    exit 1
fi

rootfs="$work/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,root}
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

export KILN_ROOT="$work/store"
"$KILN" import "$rootfs" -t busybox:latest --change 'CMD ["sh"]' >/dev/null

ctx="$work/context"
rm -rf "$ctx"
mkdir -p "$ctx/src/pkg" "$ctx/assets"
for i in $(seq 1 150); do echo "line $i" > "$ctx/src/pkg/mod$i.txt"; done
for i in $(seq 1 50); do head -c 2048 /dev/urandom > "$ctx/assets/blob$i.bin"; done
echo '*.log' > "$ctx/.dockerignore"
echo 'build log' > "$ctx/build.log"
# 3 stages, 15 steps (FROM, RUN, COPY, WORKDIR count as steps; config edits do not).
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox AS deps
WORKDIR /deps
COPY src/pkg/mod1.txt ./
RUN cat mod1.txt > /deps/lock
RUN mkdir -p /deps/out && cp /deps/lock /deps/out/

FROM busybox AS assets
WORKDIR /assets
COPY assets/ ./
RUN ls | wc -l > count

FROM busybox
ENV APP_HOME=/app
WORKDIR /app
COPY --from=deps /deps/out /app/deps
COPY --from=assets /assets/count /app/count
COPY src/ /app/src/
RUN find /app -type f | wc -l > /app/files
USER app
CMD ["sh"]
DOCKERFILE

cold="$("$KILN" build --progress plain -t bench-warm "$ctx" 2>&1)"
warm="$("$KILN" build --progress plain -t bench-warm "$ctx" 2>&1)"
steps=$(grep -cE '^#[0-9]+ \[' <<<"$warm" || true)
cached=$(grep -cE '^#[0-9]+ \[.* CACHED$' <<<"$warm" || true)
if (( steps != 15 || cached != 15 )); then
    echo "bench/warm-rebuild.sh: expected 15 steps, all CACHED; got $steps steps, $cached cached" >&2
    printf '%s\n--- warm:\n%s\n' "$cold" "$warm" >&2
    exit 1
fi

command=("$KILN" build --progress quiet -t bench-warm "$ctx")
median_ms() { # median wall time of $runs runs of "${command[@]}", in ms
    local times=() start end
    for ((i = 0; i < 3; i++)); do "${command[@]}" >/dev/null; done
    for ((i = 0; i < runs; i++)); do
        start=$(date +%s%N)
        "${command[@]}" >/dev/null
        end=$(date +%s%N)
        times+=($(( (end - start) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f\n", m / 1000}'
}

if [[ -z "${NO_HYPERFINE:-}" ]] && command -v hyperfine >/dev/null; then
    json="$work/hyperfine.json"
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$json" "${command[*]}" >&2
    median=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f" % (r["median"]*1000))' "$json")
else
    median=$(median_ms)
fi
echo "warm no-op rebuild, 15 steps in 3 stages, 200-file context, median of $runs runs: $median ms (target ≤ 50 ms)"
