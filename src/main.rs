//! The `kiln` binary: a shim over `kiln_cli::main`.

/// mimalloc: a build of a large context allocates and frees a few small strings and paths
/// per file on several threads; glibc's allocator spent a fifth of a warm 20k-file build there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kiln_cli::main()
}
