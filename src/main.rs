//! The `kiln` binary: a shim over `kiln_cli::main`.

fn main() -> std::process::ExitCode {
    kiln_cli::main()
}
