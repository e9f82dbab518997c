//! The `kiln` binary: a shim over `kiln_cli::main`.

/// mimalloc: a build of a large context allocates and frees a few small strings and paths
/// per file on several threads; glibc's allocator spent a fifth of a warm 20k-file build there.
/// Built without transparent huge pages (`no_thp`: it never asks for them with `madvise`):
/// a kiln process lives for milliseconds to seconds, and each huge page it touches is 2 MiB
/// the kernel zeroes. A warm many-files build after a second of idling spent half its time
/// in `clear_page_erms` (83 ms median; 57 ms without).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kiln_cli::main()
}
