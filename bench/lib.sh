# Shared preamble of the bench scripts, sourced by each: `source "$(dirname "$0")/lib.sh"`.
#
# bench_setup NAME [WORKDIR]   sets `repo` (the checkout) and `work` (WORKDIR, or a temp dir
#                              removed at exit)
# bench_runs NAME DEFAULT MIN  sets `runs` from $RUNS (default DEFAULT); fewer than MIN is a
#                              usage error (exit 2)
# bench_kiln                   sets and exports `KILN`: $KILN, or target/release/kiln after
#                              `cargo build --release --bin kiln`

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
