#!/usr/bin/env bash
# Tutorial build benchmark (issues 9, 22): kiln vs BuildKit (Debian's docker.io: dockerd 20.10
# with BuildKit built in) vs `buildah bud --layers` (and `--layers --jobs 4`) on the examples
# and synthetic cases, cold / push / warm / edit, same machine, same run, against the host
# floor.
#
#   cases      python-fastapi (default target = production), python-fastapi --target test,
#              static-binary, many-files (20,000 small files + ~90 MB of blobs; a RUN edits
#              2,000 files, deletes 1,000, chmods 1,000 and grows a 24 MB file), parallel
#              (4 independent stages, each `sleep 2` + CPU work, joined by a final stage),
#              parallel-light (the same with a tenth of the CPU work: 2 cores cannot overlap
#              four stages' worth of hashing, so only this one can approach the longest stage)
#   phases     cold: empty build cache, the bases already present and unpacked (kiln: a fresh
#              store with examples/bases.sh's images imported and run once; BuildKit: a fresh
#              dockerd data-root with the same images `docker load`ed; buildah: a fresh storage
#              with the same images pulled from OCI archives); push: the cold build's image
#              pushed to a fresh loopback docker-registry (kiln push, docker push, buildah
#              push: every blob uploaded); warm: the same build again, nothing changed; edit:
#              one context file changed, then the build
#   floor      the tool `floor`: what no builder can avoid on a cold build with the bases
#              unpacked — the cases' RUN commands run by the host in a chroot of an overlay on
#              the same unpacked bases, the COPYs done with `cp -a`; no layers, no image
#   order      ORDER=interleaved (default): repetition-major, every tool once per repetition
#              (kiln, BuildKit, buildah, … then again), so a drifting machine weighs on every
#              tool alike; ORDER=blocked: each tool's repetitions in a block
#   statistic  median (min–max) over REPS repetitions, seconds of wall time; the per-repetition
#              cold times are listed too (growth across repetitions shows there). Stores are
#              moved aside, not deleted, between repetitions, and deleted once per case (and,
#              blocked, per tool) followed by a TRASH_PAUSE (65 s) for ext4 (see bench/README.md)
#
# Usage: bench/tutorials.sh [WORKDIR]      (default: a temp dir, removed at the end)
# Env:   REPS (default 3), CASES (default: all, space-separated), TOOLS (default: "kiln
#        buildkit buildah floor"; also buildah-j4 = `--jobs 4`, kiln-j4 = `--jobs 4` on the
#        parallel cases (kiln's default already runs every ready stage), kiln-b = a second kiln
#        binary, KILN_B, against KILN: before/after a change), ORDER (interleaved or blocked),
#        PUSH (1 = time the push phase, default; 0 = skip it), BREAKDOWN (1 = kiln's cold
#        builds log their phases' spans and a table sums them per case, default), KILN (default:
#        target/release/kiln), BUILDAH_DRIVER (overlay or vfs; default overlay, falling back
#        to vfs), BUILDAH_ISOLATION (default chroot). Needs root, jq, mmdebstrap (via bases.sh),
#        pip (prepare.sh), the Debian mirror (static-binary's apt-get), docker-registry and curl
#        (push), buildah (buildah tools), Debian's docker.io (buildkit; its dockerd runs on a
#        private socket and data-root under WORKDIR, started and stopped here). Every tool's RUN
#        uses the host network. The contexts' `# syntax=` lines are dropped: BuildKit would pull
#        that frontend from Docker Hub. Progress goes to stderr, the table to stdout.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
REPS=${REPS:-3}
CASES=${CASES:-"fastapi fastapi-test static-binary many-files parallel parallel-light"}
TOOLS=${TOOLS:-"kiln buildkit buildah floor"}
ORDER=${ORDER:-interleaved}
PUSH=${PUSH:-1}
BREAKDOWN=${BREAKDOWN:-1}
# The spans a cold kiln build logs for the breakdown (kiln-cli: KILN_LOG prints each span's
# busy time when it closes).
breakdown_filter=kiln_build=debug,kiln_store=debug,kiln_sandbox=debug
KILN=${KILN:-$repo/target/release/kiln}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
[ -x "$KILN" ] || { echo "tutorials.sh: no kiln at $KILN (cargo build --release)" >&2; exit 1; }
KILN=$(cd "$(dirname "$KILN")" && pwd)/$(basename "$KILN")
export KILN
case $ORDER in interleaved | blocked) ;; *) echo "tutorials.sh: ORDER must be interleaved or blocked (got $ORDER)" >&2; exit 2 ;; esac
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for tool in $TOOLS; do
  case $tool in kiln | kiln-b | kiln-j4 | buildkit | buildah | buildah-j4 | floor) ;;
    *) echo "tutorials.sh: unknown tool $tool (kiln kiln-b kiln-j4 buildkit buildah buildah-j4 floor)" >&2; exit 2 ;;
  esac
done
if has_tool kiln-b; then
  [ -x "${KILN_B:-}" ] || { echo "tutorials.sh: tool kiln-b needs KILN_B, a kiln binary" >&2; exit 2; }
fi
needs=(jq)
{ has_tool buildah || has_tool buildah-j4; } && needs+=(buildah)
has_tool buildkit && needs+=(/usr/sbin/dockerd /usr/bin/docker)
[ "$PUSH" = 1 ] && needs+=(docker-registry curl)
for tool in "${needs[@]}"; do
  command -v "$tool" >/dev/null || { echo "tutorials.sh: needs $tool" >&2; exit 1; }
done

work=${1:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'bench_dockerd_stop; bench_registry_stop; rm -rf "$work"' EXIT
else
  trap 'bench_dockerd_stop; bench_registry_stop' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
log() { echo "tutorials.sh: $*" >&2; }

# ---- bases: made once, exported as OCI archives for buildah, docker archives for dockerd,
# and root filesystems for the floor -----------------------------------------------------------
bases_store=$work/bases-store
declare -A base_archive=() docker_archive=() base_rootfs=()
base_refs=(docker.io/library/busybox:latest docker.io/library/debian:bookworm-slim docker.io/library/python:3.11-slim)
bench_bases "$bases_store" "$work" "${base_refs[@]}"
bench_docker_bases "$bases_store" "$work" "${base_refs[@]}"
for ref in "${base_refs[@]}"; do
  name=${ref##*/}
  base_rootfs[$ref]=$work/bases/${name%%:*}.rootfs
  if [ ! -d "${base_rootfs[$ref]}" ]; then
    printf 'FROM %s\n' "$ref" | KILN_ROOT=$bases_store "$KILN" build -q -f - \
      -o "type=local,dest=${base_rootfs[$ref]}" "$work/empty" >/dev/null
  fi
done

# ---- contexts ------------------------------------------------------------------------------
ctx=$work/contexts
rm -rf "$ctx"
mkdir -p "$ctx"
cp -a "$repo/examples/python-fastapi" "$ctx/fastapi"
rm -rf "$ctx/fastapi/.prepare.lock"
cp -a "$repo/examples/static-binary" "$ctx/static-binary"
# BuildKit resolves `# syntax=` by pulling that frontend image; there is no Docker Hub here.
sed -i '/^# syntax=/d' "$ctx/fastapi/Dockerfile" "$ctx/static-binary/Dockerfile"

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
# settle: what earlier tools freed (their stores, and the working containers buildah deletes
# during its own builds) is deleted and left to age, so no tool is timed on inodes another
# one freed a moment ago.
settle() {
  log "deleting old stores and waiting for ext4 to reuse freed inodes"
  [ ! -d "$trash" ] || rm -rf "$trash"
  sync
  sleep "${TRASH_PAUSE:-65}"
}
# unmount_under DIR: whatever is still mounted below DIR (a crash's leftovers), deepest first.
unmount_under() {
  { grep -o " $1/[^ ]*" /proc/mounts || true; } | sort -r |
    while read -r m; do umount -l "$m" || true; done
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
    unmount_under "$buildah_root"
    discard "$buildah_root"
  fi
  local ref id
  for ref in "${!base_archive[@]}"; do
    id=$(buildah_cmd pull -q "oci-archive:${base_archive[$ref]}" | tail -n1)
    buildah_cmd tag "$id" "$ref"
  done
}
# Probe the driver once: overlay needs a kernel and filesystem that allow it here.
if { has_tool buildah || has_tool buildah-j4; } && ! (buildah_fresh >/dev/null 2>&1); then
  log "buildah storage driver $BUILDAH_DRIVER does not work here; using vfs"
  BUILDAH_DRIVER=vfs
fi

# BuildKit: a fresh dockerd data-root per repetition, the bases loaded into it (`docker load`
# unpacks them, as buildah's pull and kiln's first run do).
docker_dir=$work/docker
buildkit_fresh() { bench_dockerd_fresh "$docker_dir"; }

kiln_store=$work/kiln-store
# kiln_bin TOOL: the kiln binary a tool runs (KILN_B for kiln-b, else KILN).
kiln_bin() { if [ "$1" = kiln-b ]; then echo "$KILN_B"; else echo "$KILN"; fi; }
kiln_fresh() {
  local bin
  bin=$(kiln_bin "${1:-kiln}")
  discard "$kiln_store"
  KILN_ROOT=$kiln_store KILN=$bin bash "$repo/examples/bases.sh" busybox debian python >/dev/null 2>&1
  # "Bases present" as for buildah, whose `pull` above stores them unpacked: kiln unpacks an
  # image's layers on first use, so run each base once.
  local ref
  for ref in "${!base_archive[@]}"; do
    KILN_ROOT=$kiln_store "$bin" run "$ref" true >/dev/null
  done
}

# ---- the floor: the cases' RUN commands on the host ---------------------------------------
# floor_mount REF DIR: DIR becomes an overlay on REF's unpacked root filesystem, with /proc and
# /dev for the commands (what any builder's RUN has), for `chroot`.
floor_dir=$work/floor
floor_mount() {
  local lower=${base_rootfs[$1]} dir=$2
  mkdir -p "$dir/upper" "$dir/work" "$dir/root"
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
  mkdir -p "$dir/root/proc" "$dir/root/dev" "$dir/root/etc"
  mount -t proc proc "$dir/root/proc"
  mount --rbind /dev "$dir/root/dev"
  mount --make-rslave "$dir/root/dev"
  cp /etc/resolv.conf "$dir/root/etc/resolv.conf"
}
floor_umount() { umount -R "$1/root"; }
# floor_sh DIR WORKDIR SCRIPT: SCRIPT as the Dockerfile's RUN would run it (sh -c, the stage's
# ENV and WORKDIR) in DIR's root.
floor_env=(PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
  PYTHONUNBUFFERED=1 LANG=C.UTF-8 HOME=/root
  PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
floor_sh() {
  mkdir -p "$1/root$2"
  env -i "${floor_env[@]}" chroot "$1/root" /bin/sh -c "cd $2 && $3"
}
floor_case() {
  local case=$1 c d
  c=$(case_context "$case")
  if [ -d "$floor_dir" ]; then
    unmount_under "$floor_dir"
    discard "$floor_dir"
  fi
  mkdir -p "$floor_dir"
  case $case in
    fastapi | fastapi-test)
      d=$floor_dir/builder
      floor_mount docker.io/library/python:3.11-slim "$d"
      floor_sh "$d" /app 'python -m venv /opt/venv'
      cp -a "$c/wheelhouse" "$d/root/wheels"
      cp -a "$c/requirements.txt" "$d/root/app/"
      floor_sh "$d" /app 'pip install --no-index --find-links /wheels -r requirements.txt'
      if [ "$case" = fastapi-test ]; then
        cp -a "$c/requirements-dev.txt" "$d/root/app/"
        floor_sh "$d" /app 'pip install --no-index --find-links /wheels -r requirements-dev.txt'
        cp -a "$c/app" "$c/tests" "$d/root/app/"
        floor_sh "$d" /app 'python -m pytest -q -p no:cacheprovider tests'
      else
        local p=$floor_dir/production
        floor_mount docker.io/library/python:3.11-slim "$p"
        floor_sh "$p" /app 'useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin app'
        cp -a "$d/root/opt/venv" "$p/root/opt/venv"
        cp -a "$c/app" "$c/README.md" "$p/root/app/"
        chroot "$p/root" chown -R app:app /app/app /app/README.md
        floor_umount "$p"
      fi
      floor_umount "$d" ;;
    static-binary)
      d=$floor_dir/build
      floor_mount docker.io/library/debian:bookworm-slim "$d"
      floor_sh "$d" / 'apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*'
      mkdir -p "$d/root/src"
      cp -a "$c/hello.c" "$d/root/src/"
      floor_sh "$d" /src 'gcc -static -Os -s -Wall -Werror -o /hello hello.c'
      cp -a "$d/root/hello" "$floor_dir/hello"
      floor_umount "$d" ;;
    many-files)
      d=$floor_dir/run
      floor_mount docker.io/library/debian:bookworm-slim "$d"
      mkdir -p "$d/root/data"
      cp -a "$c/." "$d/root/data/"
      floor_sh "$d" / "$(sed -n '/^RUN /,$p' "$c/Dockerfile" | sed '1s/^RUN //')"
      floor_umount "$d" ;;
    parallel | parallel-light)
      d=$floor_dir/stages
      local bytes s
      bytes=$(parallel_bytes "$case")
      for s in a b c d; do
        mkdir -p "$d/$s"
        floor_mount docker.io/library/busybox:latest "$d/$s"
        floor_sh "$d/$s" / "sleep 2 && head -c $bytes /dev/zero | sha256sum > /$s && md5sum /bin/busybox >> /$s" &
      done
      wait
      for s in a b c d; do floor_umount "$d/$s"; done ;;
  esac
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
  # A kiln cold build logs its timed spans (KILN_LOG) for the per-phase breakdown.
  local log_spec=
  [ "$BREAKDOWN" != 1 ] || [ "${build_phase:-}" != cold ] || log_spec=$breakdown_filter
  case $tool in
    kiln) KILN_LOG=$log_spec KILN_ROOT=$kiln_store "$KILN" build --progress plain ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    kiln-b) KILN_LOG=$log_spec KILN_ROOT=$kiln_store "$KILN_B" build --progress plain ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    kiln-j4) KILN_LOG=$log_spec KILN_ROOT=$kiln_store "$KILN" build --progress plain --jobs 4 ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    buildkit) bk build --network host --progress plain ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    buildah) buildah_cmd bud --layers --pull-never ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    buildah-j4) buildah_cmd bud --layers --jobs 4 --pull-never ${flags[@]+"${flags[@]}"} -t "bench-$case" "$context" ;;
    floor) floor_case "$case" ;;
  esac >"$work/last.log" 2>&1 || {
    log "$tool $case failed:"
    tail -n 20 "$work/last.log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

# push TOOL CASE: pushes the case's image to a fresh loopback registry; prints the seconds.
reg_port=$((15000 + RANDOM % 20000))
push() {
  local tool=$1 case=$2 start end ref
  reg_port=$((reg_port + 1))
  bench_registry_start "$work/registry" "$reg_port"
  ref=127.0.0.1:$reg_port/bench/$case:1
  [ "$tool" != buildkit ] || bk tag "bench-$case" "$ref"
  sync
  start=$(date +%s.%N)
  case $tool in
    kiln | kiln-j4) KILN_ROOT=$kiln_store "$KILN" push "bench-$case" "$ref" ;;
    kiln-b) KILN_ROOT=$kiln_store "$KILN_B" push "bench-$case" "$ref" ;;
    buildkit) bk push "$ref" ;;
    buildah | buildah-j4) buildah_cmd push --tls-verify=false "bench-$case" "docker://$ref" ;;
  esac >"$work/last.log" 2>&1 || {
    log "$tool $case push failed:"
    tail -n 20 "$work/last.log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  bench_registry_stop
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

fresh() {
  case $1 in
    kiln | kiln-j4 | kiln-b) kiln_fresh "$1" ;;
    buildkit) buildkit_fresh >/dev/null ;;
    buildah | buildah-j4) buildah_fresh >/dev/null ;;
    floor) ;;
  esac
}

# ---- measure -------------------------------------------------------------------------------
results=$work/results.tsv
: >"$results"
edit_counter=0
# one_rep TOOL CASE REP: fresh state, then cold, push, warm and edit (the floor: cold only).
one_rep() {
  local tool=$1 case=$2 rep=$3 cold warm=- edit=- pushed=- edit_file orig
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
  build_phase=cold
  cold=$(build "$tool" "$case")
  build_phase=
  case $tool in kiln*) mkdir -p "$work/spans"; cp "$work/last.log" "$work/spans/$case.$tool.$rep.log" ;; esac
  if [ "$tool" != floor ]; then
    [ "$PUSH" != 1 ] || pushed=$(push "$tool" "$case")
    warm=$(build "$tool" "$case")
    edit_counter=$((edit_counter + 1))
    case $edit_file in
      *.py) echo "# edit $edit_counter" >>"$edit_file" ;;
      *.c) echo "/* edit $edit_counter */" >>"$edit_file" ;;
      *) echo "edit $edit_counter" >>"$edit_file" ;;
    esac
    edit=$(build "$tool" "$case")
    cp -p "$orig" "$edit_file"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$cold" "$warm" "$edit" "$pushed" "$rep" >>"$results"
  log "$case rep $rep $tool: cold ${cold}s push ${pushed}s warm ${warm}s edit ${edit}s"
}
case_tools() { # the tools that run CASE (kiln-j4 only on the parallel cases)
  local tool
  for tool in $TOOLS; do
    [ "$tool" != kiln-j4 ] || [ "${1#parallel}" != "$1" ] || continue
    echo "$tool"
  done
}
for case in $CASES; do
  if [ "$ORDER" = interleaved ]; then
    settle
    for rep in $(seq 1 "$REPS"); do
      for tool in $(case_tools "$case"); do one_rep "$tool" "$case" "$rep"; done
    done
  else
    for tool in $(case_tools "$case"); do
      settle
      for rep in $(seq 1 "$REPS"); do one_rep "$tool" "$case" "$rep"; done
    done
  fi
done
bench_dockerd_stop

# The parallel cases' reference: one of their stages alone (`--target a`), cold, kiln.
for case in $CASES; do
  [ "${case#parallel}" != "$case" ] || continue
  settle
  for rep in $(seq 1 "$REPS"); do
    kiln_fresh
    start=$(date +%s.%N)
    KILN_ROOT=$kiln_store "$KILN" build --progress quiet --target a -t "bench-$case-a" \
      "$(case_context "$case")" >"$work/last.log" 2>&1
    end=$(date +%s.%N)
    one=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }')
    printf '%s\t%s\t%s\t-\t-\t-\t%s\n' "$case" kiln-one-stage "$one" "$rep" >>"$results"
    log "$case rep $rep one stage alone: ${one}s"
  done
done

# ---- table ---------------------------------------------------------------------------------
values() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" '$1 == c && $2 == t && $k != "-" { print $k }' "$results"; }
stat() { # stat CASE TOOL COLUMN -> "median (min–max)"
  values "$@" | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "–"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.2f (%.2f–%.2f)", m, v[1], v[NR] }'
}
median() {
  values "$@" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2f×", a / b; else print "–" }'; }
# cold + push, per repetition, for the "build + push" row.
awk -F'\t' -v OFS='\t' '$6 != "-" && $3 != "-" { print $1, $2, $3 + $6 }' "$results" >"$work/cold-push.tsv"
cold_push_median() {
  awk -F'\t' -v c="$1" -v t="$2" '$1 == c && $2 == t { print $3 }' "$work/cold-push.tsv" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

tools_line="kiln $("$KILN" --version | cut -d' ' -f2) ($KILN)"
has_tool buildkit && tools_line+=", BuildKit in dockerd $(/usr/sbin/dockerd --version | cut -d' ' -f3 | tr -d ,)"
{ has_tool buildah || has_tool buildah-j4; } && tools_line+=", $(buildah --version | cut -d' ' -f1-3) (--storage-driver $BUILDAH_DRIVER, isolation $BUILDAH_ISOLATION)"
echo
echo "$(nproc) cores, REPS=$REPS, ORDER=$ORDER, $tools_line; seconds, median (min–max)"
echo
header="| case | phase |"
rule="|---|---|"
for tool in $TOOLS; do header+=" $tool |"; rule+="---|"; done
for tool in $TOOLS; do
  case $tool in kiln | kiln-j4) ;; *) header+=" kiln/$tool |"; rule+="---:|" ;; esac
done
echo "$header"
echo "$rule"
for case in $CASES; do
  for phase in cold push cold+push warm edit; do
    [ "$PUSH" = 1 ] || case $phase in push | cold+push) continue ;; esac
    line="| $case | $phase |"
    case $phase in
      cold+push)
        for tool in $TOOLS; do
          m=$(cold_push_median "$case" "$tool")
          if [ -n "$m" ]; then line+=" $(printf '%.2f' "$m") |"; else line+=" – |"; fi
        done
        k=$(cold_push_median "$case" kiln)
        for tool in $TOOLS; do
          case $tool in kiln | kiln-j4 | floor) [ "$tool" != floor ] || line+=" – |"; continue ;; esac
          line+=" $(ratio "$k" "$(cold_push_median "$case" "$tool")") |"
        done ;;
      *)
        case $phase in cold) col=3 ;; warm) col=4 ;; edit) col=5 ;; push) col=6 ;; esac
        for tool in $TOOLS; do line+=" $(stat "$case" "$tool" "$col") |"; done
        k=$(median "$case" kiln "$col")
        for tool in $TOOLS; do
          case $tool in kiln | kiln-j4) continue ;; esac
          line+=" $(ratio "$k" "$(median "$case" "$tool" "$col")") |"
        done ;;
    esac
    echo "$line"
  done
done
echo
echo "Cold builds per repetition (in run order):"
for case in $CASES; do
  for tool in $(case_tools "$case"); do
    echo "- $case, $tool: $(values "$case" "$tool" 3 | paste -sd' ' - | sed 's/ / → /g')"
  done
done
# Paired ratios: kiln's cold time over the other tool's in the same repetition. Interleaved,
# the two ran a minute apart, so a machine that drifts over the run (a VM's neighbours) moves
# both; the median of these ratios is steadier than the ratio of the medians above.
paired() { # paired CASE TOOL COLUMN -> "median (min–max)" of kiln/TOOL per repetition
  awk -F'\t' -v c="$1" -v t="$2" -v k="$3" '$1 == c && $k != "-" && ($2 == "kiln" || $2 == t) {
      v[$2, $7] = $k; reps[$7] = 1 }
    END { for (r in reps) if ((("kiln", r) in v) && ((t, r) in v) && v[t, r] > 0) print v["kiln", r] / v[t, r] }' "$results" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "–"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.2f× (%.2f–%.2f)\n", m, v[1], v[NR] }'
}
if [ "$ORDER" = interleaved ]; then
  echo
  echo "Cold builds, kiln ÷ tool in the same repetition, median (min–max):"
  for case in $CASES; do
    line="- $case:"
    for tool in $(case_tools "$case"); do
      case $tool in kiln | kiln-j4) continue ;; esac
      line+=" $tool $(paired "$case" "$tool" 3);"
    done
    echo "${line%;}"
  done
fi
for case in $CASES; do
  [ "${case#parallel}" != "$case" ] || continue
  echo
  echo "$case: one stage alone (kiln --target a, cold) $(stat "$case" kiln-one-stage 3) s;" \
    "the 4 stages (kiln, cold) $(stat "$case" kiln 3) s ($(ratio "$(median "$case" kiln 3)" "$(median "$case" kiln-one-stage 3)"))"
done

# ---- where a kiln cold build's time goes -----------------------------------------------------
# Each phase sums its spans' busy time (KILN_LOG=…=debug prints "NAME: close time.busy=…"), per
# build, median over the repetitions. RUN, COPY, diff/tar and the rest run on the critical path
# of a one-stage-at-a-time build; compression runs in the background beside them, and only
# what the image's assembly waits for of it delays the build ("assemble" includes that wait).
span_phase() { # span name -> phase column
  case $1 in
    unpack_snapshot | sync_snapshot | fetch_cached_layer) echo unpack ;;
    run_sandbox | run_cleanup | isolation_probe | restore_cache_mount) echo run ;;
    copy_prepare | copy_materialize | hash_memo_load | hash_memo_save) echo copy ;;
    commit_layer) echo diff ;;
    compress_layer) echo compress ;;
    plan_build) echo plan ;;
    assemble_image) echo assemble ;;
    export_outputs) echo export ;;
    *) echo "" ;;
  esac
}
phase_seconds() { # phase_seconds LOG -> "phase seconds" lines (top-level spans only)
  sed -n 's/^.* DEBUG \(.*\): close time\.busy=\([0-9.]*\)\([a-zµ]*\) .*$/\1 \2 \3/p' "$1" |
    sed 's/{[^}]*}//g' | while read -r path value unit; do
      # Nested spans (copy_prepare:copy_plan) are inside their parent's time.
      case $path in *:*) continue ;; esac
      name=$path
      phase=$(span_phase "$name")
      [ -n "$phase" ] || continue
      awk -v p="$phase" -v v="$value" -v u="$unit" 'BEGIN {
        f = (u == "s") ? 1 : (u == "ms") ? 1e-3 : (u == "µs" || u == "us") ? 1e-6 : 1e-9
        printf "%s %.6f\n", p, v * f }'
    done | awk '{ t[$1] += $2 } END { for (p in t) printf "%s %.3f\n", p, t[p] }'
}
if [ "$BREAKDOWN" = 1 ] && [ -d "$work/spans" ]; then
  phases="plan unpack run copy diff compress assemble export"
  echo
  echo "Where kiln's cold build goes (seconds, median over the repetitions; compression runs in"
  echo "the background, and \"assemble\" includes waiting for what is left of it):"
  echo
  echo "| case | wall | $(echo "$phases" | sed 's/ / | /g') | rest | floor | wall − floor |"
  echo "|---|$(for _ in $phases; do printf -- '---:|'; done)---:|---:|---:|---:|"
  for case in $CASES; do
    for f in "$work/spans/$case".kiln.*.log; do
      [ -f "$f" ] || continue
      phase_seconds "$f" >"$f.phases"
    done
    ls "$work/spans/$case".kiln.*.log.phases >/dev/null 2>&1 || continue
    line="| $case | $(median "$case" kiln 3) |"
    sum=0
    for phase in $phases; do
      v=$(cat "$work/spans/$case".kiln.*.log.phases | awk -v p="$phase" '$1 == p { print $2 }' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; else print 0 }')
      line+=" $(printf '%.2f' "$v") |"
      [ "$phase" = compress ] || sum=$(awk -v a="$sum" -v b="$v" 'BEGIN { print a + b }')
    done
    wall=$(median "$case" kiln 3)
    floor=$(median "$case" floor 3)
    line+=" $(awk -v w="$wall" -v s="$sum" 'BEGIN { printf "%.2f", w - s }') |"
    line+=" ${floor:-–} | $(awk -v w="$wall" -v f="$floor" 'BEGIN { if (f != "") printf "%.2f", w - f; else print "–" }') |"
    echo "$line"
  done
fi
