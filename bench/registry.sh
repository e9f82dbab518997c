#!/usr/bin/env bash
# Registry benchmark (issue 6): push + pull of a ~200 MB image on loopback, kiln against
# skopeo in the same run. Each repetition starts a fresh `docker-registry` (so nothing is
# skipped as already present) and pulls into a fresh store / OCI directory.
#
# Usage: bench/registry.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   KILN (default: target/release/kiln, built if missing), REPS (default 3),
#        KILN_BENCH_IMAGE_MB (default 200; half random, half text, 8 layers of files)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-}"
if [[ -z "$work" ]]; then
    work="$(mktemp -d)"
    trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
else
    trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
fi
reps="${REPS:-3}"
size_mb="${KILN_BENCH_IMAGE_MB:-200}"
KILN="${KILN:-$repo/target/release/kiln}"
if [[ ! -x "$KILN" ]]; then
    (cd "$repo" && cargo build --release --bin kiln >&2)
fi
for tool in docker-registry skopeo python3; do
    command -v "$tool" >/dev/null || { echo "bench/registry.sh: $tool is missing (bash .ci/install-deps)" >&2; exit 1; }
done

export KILN_ROOT="$work/store"
tree="$work/tree"
if [[ ! -d "$tree" ]]; then
    echo "generating a ~${size_mb} MB tree" >&2
    python3 - "$tree" "$size_mb" <<'PY'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) * 1_000_000
rng = random.Random(7)
words = [f"{a}{b}{c}" for a in "bcdfgklmnprst" for b in "aeiou" for c in ["n", "r", "st", "ld", "x", ""]]
written, i = 0, 0
while written < total:
    d = os.path.join(root, f"d{i % 40:02}")
    os.makedirs(d, exist_ok=True)
    if i % 2:
        size = rng.randint(200_000, 4_000_000)
        data = os.urandom(size)
    else:
        data = (" ".join(rng.choice(words) for _ in range(rng.randint(20_000, 300_000))) + "\n").encode()
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(data)
    written += len(data); i += 1
PY
fi

# One image, several layers (a layer per group of directories), built with kiln import
# and a COPY-only Dockerfile so the push has blobs to send in parallel.
ctx="$work/ctx"
rm -rf "$ctx"; mkdir -p "$ctx/empty"
{
    echo "FROM scratch"
    for g in 0 1 2 3 4 5 6 7; do
        printf 'COPY'
        for k in 0 1 2 3 4; do printf ' tree/d%02d' $((g * 5 + k)); done
        echo ' /data/'
    done
} >"$ctx/Dockerfile"
cp -al "$tree" "$ctx/tree"
"$KILN" build --progress quiet -t bench/big:1 "$ctx" >/dev/null
"$KILN" build --progress quiet -o "type=oci,dest=$work/layout,tar=false" "$ctx" >/dev/null
blob_bytes=$(du -sb "$work/layout/blobs" | cut -f1)
echo "image: $(("$blob_bytes" / 1000000)) MB of blobs" >&2

port_base=$((15000 + RANDOM % 20000))
start_registry() { bench_registry_start "$1" "$2"; } # $1 = data dir, $2 = port
stop_registry() { bench_registry_stop; }
now() { date +%s.%N; }

declare -A times
measure() { # name, command...
    local name=$1; shift
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>"$work/err" || { echo "$name failed: $(cat "$work/err")" >&2; exit 1; }
    t1=$(now)
    times[$name]+="$(echo "$t1 - $t0" | bc -l) "
}

for rep in $(seq "$reps"); do
    for tool in kiln skopeo; do
        port=$((port_base + rep * 2))
        [[ $tool == skopeo ]] && port=$((port + 1))
        rm -rf "$work/regdata"
        start_registry "$work/regdata" "$port"
        ref="127.0.0.1:$port/bench/big:1"
        if [[ $tool == kiln ]]; then
            measure kiln-push "$KILN" push bench/big:1 "$ref"
            rm -rf "$work/pullstore"
            measure kiln-pull env KILN_ROOT="$work/pullstore" "$KILN" pull "$ref"
        else
            measure skopeo-push skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout" "docker://$ref"
            rm -rf "$work/pulled"
            measure skopeo-pull skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/pulled:1"
        fi
        stop_registry
    done
done

stats() { # prints median min max of the args
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f %.2f", m, a[1], a[NR]}'
}
echo
echo "| operation | kiln median (min–max) s | skopeo median (min–max) s | kiln/skopeo |"
echo "|---|---|---|---|"
for op in push pull; do
    # shellcheck disable=SC2086
    read -r km kmin kmax <<<"$(stats ${times[kiln-$op]})"
    # shellcheck disable=SC2086
    read -r sm smin smax <<<"$(stats ${times[skopeo-$op]})"
    printf '| %s | %s (%s–%s) | %s (%s–%s) | %.2f |\n' "$op" "$km" "$kmin" "$kmax" "$sm" "$smin" "$smax" "$(echo "$km / $sm" | bc -l)"
done
# shellcheck disable=SC2086
read -r kt _ _ <<<"$(stats $(paste -d+ <(printf '%s\n' ${times[kiln-push]}) <(printf '%s\n' ${times[kiln-pull]}) | bc -l))"
# shellcheck disable=SC2086
read -r st _ _ <<<"$(stats $(paste -d+ <(printf '%s\n' ${times[skopeo-push]}) <(printf '%s\n' ${times[skopeo-pull]}) | bc -l))"
printf '| push+pull | %s | %s | %.2f (target ≤ 0.8) |\n' "$kt" "$st" "$(echo "$kt / $st" | bc -l)"
