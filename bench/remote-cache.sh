#!/usr/bin/env bash
# Fresh-runner benchmark (issues 17, 22): a build cache shared through a registry, kiln vs
# buildah vs BuildKit (Debian's docker.io: dockerd 20.10, whose built-in BuildKit exports a
# cache only inline — BUILDKIT_INLINE_CACHE=1, mode=min: the final stage's layers, in the pushed
# image — and reads it with --cache-from; each runner is a fresh dockerd data-root).
#
#   runner A   a fresh store with the bases present builds the case and exports its cache to
#              a loopback docker-registry (kiln: --cache-to type=registry,mode=max; buildah:
#              bud --layers --cache-to REPO; BuildKit: build with BUILDKIT_INLINE_CACHE=1, push)
#   edit       runner B, another fresh store with only the bases, changes one context file and
#              builds with the cache (kiln: --cache-from; buildah: --cache-from REPO), keeping
#              the image locally (-t), so both end with the image in their store
#   push       runner C, another fresh store, builds the case unchanged with the cache and
#              pushes the image to the same registry (kiln: --output type=image,push=true;
#              buildah: bud … -t then buildah push)
#   import     kiln only: on runner A's warm store, a no-op build with --cache-from minus the
#              same build without it: what reading the cache's manifest and records costs
#
# Cases: fastapi (examples/python-fastapi, default target), many-files (bench/lib.sh).
# Each repetition starts a new registry and new stores. The table gives the median and
# min–max of wall time over REPS repetitions.
#
# Usage: bench/remote-cache.sh [WORKDIR]   (default: a temp dir, removed at the end)
# Env:   REPS (default 3), CASES (default "fastapi many-files"), TOOLS (default "kiln
#        buildah buildkit"), ORDER (interleaved, the default, or blocked), KILN (default
#        target/release/kiln, built if missing), BUILDAH_DRIVER
#        (default overlay). Needs root, buildah, docker-registry, mmdebstrap (bases.sh), pip
#        (prepare.sh). Progress goes to stderr, the table to stdout.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
REPS=${REPS:-3}
CASES=${CASES:-"fastapi many-files"}
TOOLS=${TOOLS:-"kiln buildah buildkit"}
ORDER=${ORDER:-interleaved}
case $ORDER in interleaved | blocked) ;; *) echo "remote-cache.sh: ORDER must be interleaved or blocked (got $ORDER)" >&2; exit 2 ;; esac
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
needs=(docker-registry curl)
case " $TOOLS " in *" buildah "*) needs+=(buildah) ;; esac
case " $TOOLS " in *" buildkit "*) needs+=(/usr/sbin/dockerd /usr/bin/docker) ;; esac
for tool in "${needs[@]}"; do
  command -v "$tool" >/dev/null || { echo "remote-cache.sh: needs $tool (bash .ci/install-deps)" >&2; exit 1; }
done
work=${1:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'bench_dockerd_stop; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
else
  trap 'bench_dockerd_stop; kill $(jobs -p) 2>/dev/null || true' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
bench_kiln
log() { echo "remote-cache.sh: $*" >&2; }

# ---- bases, as OCI archives for buildah; contexts ----------------------------------------
bases_store=$work/bases-store
declare -A base_archive=()
bench_bases "$bases_store" "$work" docker.io/library/debian:bookworm-slim docker.io/library/python:3.11-slim
declare -A docker_archive=()
bench_docker_bases "$bases_store" "$work" docker.io/library/debian:bookworm-slim docker.io/library/python:3.11-slim
ctx=$work/contexts
rm -rf "$ctx"
mkdir -p "$ctx"
cp -a "$repo/examples/python-fastapi" "$ctx/fastapi"
rm -rf "$ctx/fastapi/.prepare.lock"
# BuildKit resolves `# syntax=` by pulling that frontend image; there is no Docker Hub here.
sed -i '/^# syntax=/d' "$ctx/fastapi/Dockerfile"
log "generating the many-files context"
many_files_context "$ctx/many-files"
edit_file() {
  case $1 in
    fastapi) echo "$ctx/fastapi/app/main.py" ;;
    many-files) echo "$ctx/many-files/small/d150/f050.txt" ;;
  esac
}

# ---- registry and fresh runners -------------------------------------------------------------
port=$((15000 + RANDOM % 20000))
reg_pid=
start_registry() {
  port=$((port + 1))
  bench_registry_start "$work/regdata" "$port"
}
stop_registry() { bench_registry_stop; }

# kiln_runner NAME: a fresh store with the bases imported and unpacked.
kiln_runner() {
  local store=$work/runner-$1
  rm -rf "$store"
  KILN_ROOT=$store bash "$repo/examples/bases.sh" busybox debian python >/dev/null 2>&1
  local ref
  for ref in "${!base_archive[@]}"; do KILN_ROOT=$store "$KILN" run "$ref" true >/dev/null; done
  echo "$store"
}
buildah_runner() {
  local root=$work/buildah-$1
  if [ -d "$root" ]; then
    buildah --root "$root/root" --runroot "$root/run" rm --all >/dev/null 2>&1 || true
    { grep -o " $root/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf "$root"
  fi
  local ref id
  for ref in "${!base_archive[@]}"; do
    id=$(buildah --root "$root/root" --runroot "$root/run" --storage-driver "${BUILDAH_DRIVER:-overlay}" \
      pull -q "oci-archive:${base_archive[$ref]}" | tail -n1)
    buildah --root "$root/root" --runroot "$root/run" --storage-driver "${BUILDAH_DRIVER:-overlay}" tag "$id" "$ref"
  done
  echo "$root"
}
buildkit_runner() { bench_dockerd_fresh "$work/docker-$1"; }
bh() { local root=$1; shift; buildah --root "$root/root" --runroot "$root/run" --storage-driver "${BUILDAH_DRIVER:-overlay}" "$@"; }

# timed NAME COMMAND…: runs it, prints its wall time; its output goes to $work/last.log.
timed() {
  local name=$1 start end
  shift
  sync
  start=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 || { log "$name failed:"; tail -n 20 "$work/last.log" >&2; exit 1; }
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

results=$work/results.tsv
: >"$results"
for case in $CASES; do
  context=$ctx/$case
  file=$(edit_file "$case")
  cp "$file" "$work/orig"
  # ORDER=interleaved: repetition-major (every tool once, then again), so a drifting machine
  # weighs on every tool alike; blocked: each tool's repetitions together.
  pairs=()
  if [ "$ORDER" = interleaved ]; then
    for rep in $(seq 1 "$REPS"); do for tool in $TOOLS; do pairs+=("$tool:$rep"); done; done
  else
    for tool in $TOOLS; do for rep in $(seq 1 "$REPS"); do pairs+=("$tool:$rep"); done; done
  fi
  for pair in "${pairs[@]}"; do
    tool=${pair%%:*} rep=${pair#*:}
    cp "$work/orig" "$file"
    start_registry
    reg=127.0.0.1:$port
    case $tool in
      kiln)
        a=$(kiln_runner a)
        KILN_ROOT=$a "$KILN" build --progress plain -t "bench-$case" \
          --cache-to "type=registry,ref=$reg/cache/$case:main,mode=max" "$context" >"$work/a.log" 2>&1 \
          || { tail -n 20 "$work/a.log" >&2; exit 1; }
        t_import_off=$(timed "no-op" env KILN_ROOT="$a" "$KILN" build -q -t "bench-$case" "$context")
        t_import_on=$(timed "no-op import" env KILN_ROOT="$a" "$KILN" build -q -t "bench-$case" \
          --cache-from "type=registry,ref=$reg/cache/$case:main" "$context")
        c=$(kiln_runner c)
        t_push=$(timed "push" env KILN_ROOT="$c" "$KILN" build --progress plain \
          --cache-from "type=registry,ref=$reg/cache/$case:main" \
          --output "type=image,name=$reg/app/$case:c,push=true" "$context")
        b=$(kiln_runner b)
        echo "# edited $rep" >>"$file"
        t_edit=$(timed "edit" env KILN_ROOT="$b" "$KILN" build --progress plain -t "bench-$case" \
          --cache-from "type=registry,ref=$reg/cache/$case:main" "$context")
        import=$(awk -v a="$t_import_on" -v b="$t_import_off" 'BEGIN { printf "%.3f\n", a - b }')
        ;;
      buildah)
        a=$(buildah_runner a)
        bh "$a" bud --layers --pull-never --tls-verify=false -t "bench-$case" \
          --cache-to "$reg/cache/$case" "$context" >"$work/a.log" 2>&1 \
          || { tail -n 20 "$work/a.log" >&2; exit 1; }
        c=$(buildah_runner c)
        t_push=$(timed "push" sh -c "buildah --root '$c/root' --runroot '$c/run' --storage-driver '${BUILDAH_DRIVER:-overlay}' bud --layers --pull-never --tls-verify=false --cache-from '$reg/cache/$case' -t '$reg/app/$case:c' '$context' && buildah --root '$c/root' --runroot '$c/run' --storage-driver '${BUILDAH_DRIVER:-overlay}' push --tls-verify=false '$reg/app/$case:c'")
        b=$(buildah_runner b)
        echo "# edited $rep" >>"$file"
        t_edit=$(timed "edit" bh "$b" bud --layers --pull-never --tls-verify=false \
          --cache-from "$reg/cache/$case" -t "bench-$case" "$context")
        import=-
        ;;
      buildkit)
        buildkit_runner a
        { bk build --network host --build-arg BUILDKIT_INLINE_CACHE=1 -t "$reg/cache/$case:main" \
            "$context" && bk push "$reg/cache/$case:main"; } >"$work/a.log" 2>&1 \
          || { tail -n 20 "$work/a.log" >&2; exit 1; }
        buildkit_runner c
        t_push=$(timed "push" sh -c "DOCKER_BUILDKIT=1 /usr/bin/docker build --network host --cache-from '$reg/cache/$case:main' -t '$reg/app/$case:c' '$context' && /usr/bin/docker push '$reg/app/$case:c'")
        buildkit_runner b
        echo "# edited $rep" >>"$file"
        t_edit=$(timed "edit" bk build --network host --cache-from "$reg/cache/$case:main" \
          -t "bench-$case" "$context")
        bench_dockerd_stop
        import=-
        ;;
    esac
    stop_registry
    log "$case rep $rep $tool: edit ${t_edit}s push ${t_push}s import ${import}s"
    printf '%s\t%s\tedit\t%s\n%s\t%s\tpush\t%s\n' "$case" "$tool" "$t_edit" "$case" "$tool" "$t_push" >>"$results"
    [ "$import" = - ] || printf '%s\t%s\timport\t%s\n' "$case" "$tool" "$import" >>"$results"
  done
  cp "$work/orig" "$file"
done

echo
versions="$("$KILN" --version)"
case " $TOOLS " in *" buildah "*) versions+=", $(buildah --version)" ;; esac
case " $TOOLS " in *" buildkit "*) versions+=", BuildKit in dockerd $(/usr/sbin/dockerd --version | cut -d' ' -f3 | tr -d ,)" ;; esac
echo "$(nproc) cores, REPS=$REPS, ORDER=$ORDER, $versions; seconds, median (min–max)"
echo
echo "| case | phase | $(echo "$TOOLS" | sed 's/ / | /g') |"
echo "|---|---|$(echo "$TOOLS" | sed 's/[^ ]*/---|/g; s/ //g')"
for case in $CASES; do
  for phase in edit push import; do
    row="| $case | $phase |"
    for tool in $TOOLS; do
      cell=$(awk -F'\t' -v c="$case" -v t="$tool" -v p="$phase" '$1 == c && $2 == t && $3 == p { print $4 }' "$results" |
        sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "–"; exit } printf "%.2f (%.2f–%.2f)", v[int((NR + 1) / 2)], v[1], v[NR] }')
      row="$row $cell |"
    done
    echo "$row"
  done
done
