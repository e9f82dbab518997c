//! A minimal helper executable for embedders and this crate's tests: it does nothing but
//! serve as `SandboxConfig::helper_exe` (`kiln` itself re-executes the `kiln` binary).

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Some(code) = kiln_sandbox::run_helper_if_requested() {
        return code;
    }
    eprintln!(
        "kiln-sandbox-init is the sandbox helper of kiln; it is started by kiln_sandbox::Sandbox, \
         not by hand"
    );
    ExitCode::from(2)
}
