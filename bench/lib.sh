# Shared preamble of the bench scripts, sourced by each: `source "$(dirname "$0")/lib.sh"`.
#
# bench_setup NAME [WORKDIR]   sets `repo` (the checkout) and `work` (WORKDIR, or a temp dir
#                              removed at exit)
# bench_runs NAME DEFAULT MIN  sets `runs` from $RUNS (default DEFAULT); fewer than MIN is a
#                              usage error (exit 2)
# bench_kiln                   sets and exports `KILN`: $KILN, or target/release/kiln after
#                              `cargo build --release --bin kiln`
# bench_bases STORE DIR REF...  imports examples/bases.sh's busybox, debian and python into
#                              STORE (and prepares the fastapi wheels), and exports each REF as
#                              an OCI archive under DIR for buildah; fills `base_archive`
#                              (REF -> archive), which the caller declares with `declare -A`
# bench_docker_bases STORE DIR REF...  exports each REF from STORE as a docker archive under
#                              DIR/bases for `docker load`; fills `docker_archive` (REF ->
#                              archive), which the caller declares with `declare -A`
# bench_registry_start DIR PORT  starts a loopback `docker-registry` storing in DIR (emptied
#                              first) on 127.0.0.1:PORT; sets `reg_pid`
# bench_registry_stop          stops it
# bench_dockerd_start DIR      starts Debian's dockerd (docker.io, 20.10, BuildKit built in) on a
#                              private socket, data-root and exec-root under DIR, with no
#                              iptables and no bridge; sets `DOCKER_HOST` for `bk`
# bench_dockerd_stop           stops it (its overlay mounts go with it)
# bk ARGS...                   Debian's docker client (/usr/bin/docker, API 1.41) on that socket
#                              with BuildKit (`DOCKER_BUILDKIT=1`)
# many_files_context DIR       writes the many-files case: 20,000 small files in 200 dirs,
#                              ~90 MB of random blobs, and a Dockerfile on debian that copies
#                              them and edits 2,000, deletes 1,000, chmods 1,000 and grows one

bench_setup() {
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    work="${2:-}"
    if [[ -z "$work" ]]; then
        work="$(mktemp -d)"
        # shellcheck disable=SC2064 # expand now: the trap removes this run's directory
        trap "rm -rf '$work'" EXIT
    fi
}

bench_runs() {
    local name="$1" default="$2" min="$3"
    runs="${RUNS:-$default}"
    if (( runs < min )); then
        echo "bench/$name: RUNS must be at least $min (got $runs)" >&2
        exit 2
    fi
}

bench_kiln() {
    if [[ -z "${KILN:-}" ]]; then
        (cd "$repo" && cargo build --release --bin kiln >&2)
        KILN="$repo/target/release/kiln"
    fi
    export KILN
}

many_files_context() {
    python3 - "$1" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(9)
for d in range(200):
    dd = os.path.join(root, "small", f"d{d:03}")
    os.makedirs(dd)
    for f in range(100):
        with open(os.path.join(dd, f"f{f:03}.txt"), "w") as fh:
            fh.write(f"file {d}/{f}\n" + "x" * rng.randint(64, 2048) + "\n")
os.makedirs(os.path.join(root, "blobs"))
for i, mb in enumerate([24, 24, 24, 9, 9]):
    with open(os.path.join(root, "blobs", f"blob{i}.bin"), "wb") as fh:
        fh.write(rng.randbytes(mb * 1_000_000))
PY
    cat >"$1/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
COPY . /data/
RUN cd /data/small \
    && find d00* d01* -type f -exec sh -c 'for f; do echo edited >> "$f"; done' sh {} + \
    && find d02* -type f -delete \
    && find d03* -type f -exec chmod 600 {} + \
    && head -c 8000000 /dev/urandom >> /data/blobs/blob0.bin \
    && find /data -type f | wc -l
EOF
}

bench_bases() {
    local store=$1 dir=$2 ref
    shift 2
    KILN_ROOT=$store bash "$repo/examples/bases.sh" busybox debian python >&2
    KILN_ROOT=$store bash "$repo/examples/python-fastapi/prepare.sh" >&2
    mkdir -p "$dir/bases" "$dir/empty"
    for ref in "$@"; do
        local name=${ref##*/}
        base_archive[$ref]=$dir/bases/${name%%:*}.tar
        [ -s "${base_archive[$ref]}" ] && continue
        printf 'FROM %s\n' "$ref" | KILN_ROOT=$store "$KILN" build -q -f - \
            -o "type=oci,dest=${base_archive[$ref]}" "$dir/empty" >/dev/null
    done
}

bench_registry_start() {
    local data=$1 port=$2
    rm -rf "$data"
    mkdir -p "$data"
    cat >"$data.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $data
http:
  addr: 127.0.0.1:$port
YML
    docker-registry serve "$data.yml" >"$data.log" 2>&1 &
    reg_pid=$!
    for _ in $(seq 50); do
        curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "registry did not start: $(cat "$data.log")" >&2
    exit 1
}

bench_registry_stop() {
    [ -n "${reg_pid:-}" ] || return 0
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true
    reg_pid=
}

bk() { DOCKER_BUILDKIT=1 /usr/bin/docker "$@"; }

bench_dockerd_start() {
    local dir=$1
    [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || {
        echo "bench: BuildKit needs Debian's docker.io (apt-get install docker.io)" >&2
        exit 1
    }
    mkdir -p "$dir"
    export DOCKER_HOST="unix://$dir/docker.sock"
    # Its own containerd (under exec-root), no network set-up: builds use the host network.
    /usr/sbin/dockerd --data-root "$dir/data" --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" -H "$DOCKER_HOST" --iptables=false --ip-masq=false \
        --bridge=none --storage-driver overlay2 >"$dir/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 100); do
        bk version >/dev/null 2>&1 && return 0
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.2
    done
    echo "dockerd did not start: $(tail -n 5 "$dir/dockerd.log")" >&2
    exit 1
}

bench_dockerd_stop() {
    [ -n "${dockerd_pid:-}" ] || return 0
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=
}

bench_docker_bases() {
    local store=$1 dir=$2 ref
    shift 2
    mkdir -p "$dir/bases" "$dir/empty"
    for ref in "$@"; do
        local name=${ref##*/}
        docker_archive[$ref]=$dir/bases/${name%%:*}.docker.tar
        [ -s "${docker_archive[$ref]}" ] && continue
        printf 'FROM %s\n' "$ref" | KILN_ROOT=$store "$KILN" build -q -f - \
            -o "type=docker,dest=${docker_archive[$ref]},name=$ref" "$dir/empty" >/dev/null
    done
}

# bench_dockerd_fresh DIR: dockerd stopped, DIR moved aside with `discard` (the caller's) or
# deleted, a new dockerd on DIR with every `docker_archive` loaded (and so unpacked).
bench_dockerd_fresh() {
    local dir=$1 ref
    bench_dockerd_stop
    if [ -d "$dir" ]; then
        { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r |
            while read -r m; do umount -l "$m" || true; done
        if declare -F discard >/dev/null; then discard "$dir"; else rm -rf "$dir"; fi
    fi
    bench_dockerd_start "$dir"
    for ref in "${!docker_archive[@]}"; do
        bk load -q -i "${docker_archive[$ref]}" >/dev/null
    done
}
