#!/usr/bin/env bash
# Tutorial build benchmark (issue 9): kiln vs `buildah bud --layers` (and `--layers --jobs 4`)
# on the examples and two synthetic cases, cold / warm / edit, same machine, same run.
#
#   cases      python-fastapi (default target = production), python-fastapi --target test,
#              static-binary, many-files (20,000 small files + ~90 MB of blobs; a RUN edits
#              2,000 files, deletes 1,000, chmods 1,000 and grows a 24 MB file), parallel
#              (4 independent stages, each `sleep 2` + CPU work, joined by a final stage),
#              parallel-light (the same with a tenth of the CPU work: 2 cores cannot overlap
#              four stages' worth of hashing, so only this one can approach the longest stage)
#   phases     cold: empty build cache, the bases already present (kiln: a fresh store with
#              examples/bases.sh's images imported; buildah: a fresh storage with the same
#              images pulled from the OCI archives kiln exported); warm: the same build again,
#              nothing changed; edit: one context file changed, then the build
#   statistic  median (min–max) over REPS repetitions, seconds of wall time; each tool's
#              repetitions run in a block, after deleting what the last tool left and
#              waiting TRASH_PAUSE (65 s) for ext4 (see bench/README.md)
#
# Usage: bench/tutorials.sh [WORKDIR]      (default: a temp dir, removed at the end)
# Env:   REPS (default 3), CASES (default: all, space-separated), TOOLS (default:
#        "kiln buildah buildah-j4"; add kiln-j4 = `--jobs 4` to measure it on the parallel
#        cases: kiln's default already runs every ready stage; add kiln-b to compare a second kiln
#        binary, KILN_B, against KILN: before/after a change), KILN (default: target/release/kiln), BUILDAH_DRIVER
#        (overlay or vfs; default overlay, falling back to vfs), BUILDAH_ISOLATION (default
#        chroot). Needs root, buildah, mmdebstrap (via bases.sh), jq, pip (prepare.sh) and the
#        Debian mirror (static-binary's apt-get). Progress goes to stderr, the table to stdout.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
REPS=${REPS:-3}
CASES=${CASES:-"fastapi fastapi-test static-binary many-files parallel parallel-light"}
TOOLS=${TOOLS:-"kiln buildah buildah-j4"}
KILN=${KILN:-$repo/target/release/kiln}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
[ -x "$KILN" ] || { echo "tutorials.sh: no kiln at $KILN (cargo build --release)" >&2; exit 1; }
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")
export KILN
case " $TOOLS " in
  *" kiln-b "*) [ -x "${KILN_B:-}" ] || { echo "tutorials.sh: tool kiln-b needs KILN_B, a kiln binary" >&2; exit 2; } ;;
esac
for tool in buildah jq; do
  command -v "$tool" >/dev/null || { echo "tutorials.sh: needs $tool" >&2; exit 1; }
done

work=${1:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
log() { echo "tutorials.sh: $*" >&2; }

# ---- bases: made once, exported as OCI archives for buildah ------------------------------
bases_store=$work/bases-store
declare -A base_archive=()
bench_bases "$bases_store" "$work" docker.io/library/busybox:latest docker.io/library/debian:bookworm-slim docker.io/library/python:3.11-slim

# ---- contexts ------------------------------------------------------------------------------
ctx=$work/contexts
rm -rf "$ctx"
mkdir -p "$ctx"
cp -a "$repo/examples/python-fastapi" "$ctx/fastapi"
rm -rf "$ctx/fastapi/.prepare.lock"
cp -a "$repo/examples/static-binary" "$ctx/static-binary"

log "generating the many-files context (20,000 files + ~90 MB)"
many_files_context "$ctx/many-files"

# parallel_context DIR BYTES: 4 stages of `sleep 2` + hashing BYTES of zeros, and a join.
parallel_context() {
  mkdir -p "$1"
  echo "input 0" >"$1/input.txt"
  {
    for s in a b c d; do
      printf 'FROM busybox:latest AS %s\n' "$s"
      printf 'RUN sleep 2 && head -c %s /dev/zero | sha256sum > /%s && md5sum /bin/busybox >> /%s\n\n' "$2" "$s" "$s"
    done
    printf 'FROM busybox:latest\n'
    for s in a b c d; do printf 'COPY --from=%s /%s /%s\n' "$s" "$s" "$s"; done
    printf 'COPY input.txt /\n'
  } >"$1/Dockerfile"
}
parallel_bytes() { case $1 in parallel) echo 150000000 ;; *) echo 15000000 ;; esac; }
parallel_context "$ctx/parallel" "$(parallel_bytes parallel)"
parallel_context "$ctx/parallel-light" "$(parallel_bytes parallel-light)"

# case_args CASE: the context and extra build flags; case_edit CASE: the file an edit changes.
case_context() {
  case $1 in
    fastapi | fastapi-test) echo "$ctx/fastapi" ;;
    *) echo "$ctx/$1" ;;
  esac
}
case_flags() {
  case $1 in
    fastapi-test) echo "--target test" ;;
    *) echo "" ;;
  esac
}
case_edit_file() {
  case $1 in
    fastapi | fastapi-test) echo "$ctx/fastapi/app/main.py" ;;
    static-binary) echo "$ctx/static-binary/hello.c" ;;
    many-files) echo "$ctx/many-files/small/d150/f050.txt" ;;
    parallel | parallel-light) echo "$ctx/$1/input.txt" ;;
  esac
}

# ---- tools ---------------------------------------------------------------------------------
# Stores are not deleted between repetitions but moved aside, and deleted once per case with
# a pause after it: on an ext4 without a journal (this machine's root filesystem) the inode
# allocator skips inodes freed in the last 60 s (300 s while their table block is dirty),
# scanning past every one of them for each new file, so a build right after deleting a
# store of 100k files measures that scan (seconds), not the tools.
trash=$work/trash
discard() {
  [ -e "$1" ] || return 0
  mkdir -p "$trash"
  mv "$1" "$(mktemp -d "$trash/old-XXXXXX")/"
}
empty_trash() {
  [ -d "$trash" ] || return 0
  log "deleting old stores, then waiting for ext4 to reuse their inodes"
  rm -rf "$trash"
  sync
  sleep "${TRASH_PAUSE:-65}"
}
# settle: before a tool's repetitions, what the last tool freed (its stores, and the working
# containers buildah deletes during its own builds) is deleted and left to age, so no tool
# is timed on inodes another one freed a moment ago.
settle() {
  log "deleting old stores and waiting for ext4 to reuse freed inodes"
  [ ! -d "$trash" ] || rm -rf "$trash"
  sync
  sleep "${TRASH_PAUSE:-65}"
}
BUILDAH_DRIVER=${BUILDAH_DRIVER:-overlay}
buildah_root=$work/buildah
buildah_cmd() {
  buildah --root "$buildah_root/root" --runroot "$buildah_root/run" \
    --storage-driver "$BUILDAH_DRIVER" "$@"
}
buildah_fresh() {
  if [ -d "$buildah_root" ]; then
    buildah_cmd rm --all >/dev/null 2>&1 || true
    # overlay leaves mounts behind only on crashes; unmount whatever is left, then delete.
    { grep -o " $buildah_root/[^ ]*" /proc/mounts || true; } | sort -r |
      while read -r m; do umount -l "$m" || true; done
    discard "$buildah_root"
  fi
  local ref id
  for ref in "${!base_archive[@]}"; do
    id=$(buildah_cmd pull -q "oci-archive:${base_archive[$ref]}" | tail -n1)
    buildah_cmd tag "$id" "$ref"
  done
}
# Probe the driver once: overlay needs a kernel and filesystem that allow it here.
if ! (buildah_fresh >/dev/null 2>&1); then
  log "buildah storage driver $BUILDAH_DRIVER does not work here; using vfs"
  BUILDAH_DRIVER=vfs
fi

kiln_store=$work/kiln-store
# kiln_bin TOOL: the kiln binary a tool runs (KILN_B for kiln-b, else KILN).
kiln_bin() { if [ "$1" = kiln-b ]; then echo "$KILN_B"; else echo "$KILN"; fi; }
kiln_fresh() {
  local bin
  bin=$(kiln_bin "$1")
  discard "$kiln_store"
  KILN_ROOT=$kiln_store KILN=$bin bash "$repo/examples/bases.sh" busybox debian python >/dev/null 2>&1
  # "Bases present" as for buildah, whose `pull` above stores them unpacked: kiln unpacks an
  # image's layers on first use, so run each base once.
  local ref
  for ref in "${!base_archive[@]}"; do
    KILN_ROOT=$kiln_store "$bin" run "$ref" true >/dev/null
  done
}

# build TOOL CASE: one build; prints its wall time in seconds, its output to $work/last.log.
build() {
  local tool=$1 case=$2 context flags start end
  context=$(case_context "$case")
  read -r -a flags <<<"$(case_flags "$case")"
  # What the last build (or `fresh`) left dirty is written back first, not by the kernel's
  # flusher threads on these 2 cores while the next build is timed.
  sync
  start=$(date +%s.%N)
  case $tool in
    kiln) KILN_ROOT=$kiln_store "$KILN" build --progress plain ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    kiln-b) KILN_ROOT=$kiln_store "$KILN_B" build --progress plain ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    kiln-j4) KILN_ROOT=$kiln_store "$KILN" build --progress plain --jobs 4 ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    buildah) buildah_cmd bud --layers --pull-never ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    buildah-j4) buildah_cmd bud --layers --jobs 4 --pull-never ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
  esac >"$work/last.log" 2>&1 || {
    log "$tool $case failed:"
    tail -n 20 "$work/last.log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

fresh() {
  case $1 in
    kiln | kiln-j4 | kiln-b) kiln_fresh "$1" ;;
    buildah | buildah-j4) buildah_fresh >/dev/null ;;
  esac
}

# ---- measure -------------------------------------------------------------------------------
results=$work/results.tsv
: >"$results"
edit_counter=0
for case in $CASES; do
  for tool in $TOOLS; do
    [ "$tool" != kiln-j4 ] || [ "${case#parallel}" != "$case" ] || continue
    settle
    for rep in $(seq 1 "$REPS"); do
      fresh "$tool"
      # Every rep starts from the same context content (the edits of the last rep undone).
      # The original is kept outside the context, so it is not part of what is built.
      edit_file=$(case_edit_file "$case")
      orig=$work/orig/${edit_file//\//_}
      if [ -f "$orig" ]; then
        cp -p "$orig" "$edit_file"
      else
        mkdir -p "$work/orig"
        cp -p "$edit_file" "$orig"
      fi
      cold=$(build "$tool" "$case")
      warm=$(build "$tool" "$case")
      edit_counter=$((edit_counter + 1))
      case $edit_file in
        *.py) echo "# edit $edit_counter" >>"$edit_file" ;;
        *.c) echo "/* edit $edit_counter */" >>"$edit_file" ;;
        *) echo "edit $edit_counter" >>"$edit_file" ;;
      esac
      edit=$(build "$tool" "$case")
      cp -p "$orig" "$edit_file"
      printf '%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$cold" "$warm" "$edit" >>"$results"
      log "$case rep $rep $tool: cold ${cold}s warm ${warm}s edit ${edit}s"
    done
  done
done

# The parallel cases' reference: one of their stages alone (`--target a`), cold, kiln.
for case in $CASES; do
  [ "${case#parallel}" != "$case" ] || continue
  empty_trash
  for rep in $(seq 1 "$REPS"); do
    kiln_fresh
    start=$(date +%s.%N)
    KILN_ROOT=$kiln_store "$KILN" build --progress quiet --target a -t "bench-$case-a" \
      "$(case_context "$case")" >"$work/last.log" 2>&1
    end=$(date +%s.%N)
    one=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }')
    printf '%s\t%s\t%s\t-\t-\n' "$case" kiln-one-stage "$one" >>"$results"
    log "$case rep $rep one stage alone: ${one}s"
  done
done

# The floor the machine sets: the stages' RUN command run by the host's busybox sh, once
# alone and four at once (no container, no kiln). On 2 cores four stages' CPU work cannot
# overlap, so "≤ 1.1× the longest stage" is only reachable where this ratio allows it.
host_run() { # host_run BYTES OUT
  busybox sh -c "sleep 2 && head -c $1 /dev/zero | busybox sha256sum > $2 && busybox md5sum $(command -v busybox) >> $2"
}
for case in $CASES; do
  [ "${case#parallel}" != "$case" ] || continue
  command -v busybox >/dev/null || { log "no busybox on the host: no floor for $case"; continue; }
  bytes=$(parallel_bytes "$case")
  for rep in $(seq 1 "$REPS"); do
    start=$(date +%s.%N)
    host_run "$bytes" "$work/floor-one"
    mid=$(date +%s.%N)
    for s in a b c d; do host_run "$bytes" "$work/floor-$s" & done
    wait
    end=$(date +%s.%N)
    printf '%s\t%s\t%s\t-\t-\n' "$case" host-one "$(awk -v s="$start" -v e="$mid" 'BEGIN { printf "%.3f\n", e - s }')" >>"$results"
    printf '%s\t%s\t%s\t-\t-\n' "$case" host-four "$(awk -v s="$mid" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }')" >>"$results"
  done
done

# ---- table ---------------------------------------------------------------------------------
stat() { # stat CASE TOOL COLUMN -> "median (min–max)"
  awk -F'\t' -v c="$1" -v t="$2" -v k="$3" '$1 == c && $2 == t { print $k }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "–"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.2f (%.2f–%.2f)", m, v[1], v[NR] }'
}
median() {
  awk -F'\t' -v c="$1" -v t="$2" -v k="$3" '$1 == c && $2 == t { print $k }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "$(nproc) cores, REPS=$REPS, kiln $("$KILN" --version | cut -d' ' -f2) ($KILN), $(buildah --version | cut -d' ' -f1-3) (--storage-driver $BUILDAH_DRIVER, isolation $BUILDAH_ISOLATION); seconds, median (min–max)"
echo
header="| case | phase |"
rule="|---|---|"
for tool in $TOOLS; do header+=" $tool |"; rule+="---|"; done
for tool in $TOOLS; do
  case $tool in kiln | kiln-j4) ;; *) header+=" $tool/kiln |"; rule+="---:|" ;; esac
done
echo "$header"
echo "$rule"
for case in $CASES; do
  for phase in cold warm edit; do
    case $phase in
      cold) col=3 ;;
      warm) col=4 ;;
      *) col=5 ;;
    esac
    line="| $case | $phase |"
    for tool in $TOOLS; do line+=" $(stat "$case" "$tool" "$col") |"; done
    k=$(median "$case" kiln "$col")
    for tool in $TOOLS; do
      case $tool in kiln | kiln-j4) continue ;; esac
      o=$(median "$case" "$tool" "$col")
      line+=" $(awk -v o="$o" -v k="$k" 'BEGIN { if (k > 0 && o != "") printf "%.1f×", o / k; else print "–" }') |"
    done
    echo "$line"
  done
done
for case in $CASES; do
  [ "${case#parallel}" != "$case" ] || continue
  echo
  echo "$case: one stage alone (kiln --target a, cold) $(stat "$case" kiln-one-stage 3) s;" \
    "the 4 stages (kiln, cold) $(stat "$case" kiln 3) s ($(awk -v a="$(median "$case" kiln 3)" \
      -v o="$(median "$case" kiln-one-stage 3)" 'BEGIN { if (o > 0) printf "%.2f×", a / o }'));" \
    "the RUN command on the host, alone $(stat "$case" host-one 3) s, four at once" \
    "$(stat "$case" host-four 3) s ($(awk -v a="$(median "$case" host-four 3)" \
      -v o="$(median "$case" host-one 3)" 'BEGIN { if (o > 0) printf "%.2f×", a / o }'))"
done
