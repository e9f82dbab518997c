//! kiln's command line: clap definitions that follow `docker buildx build`, progress
//! rendering, and exit codes (0 success, 1 failure, 2 usage error).
//!
//! Each subcommand lives in its own module and exposes `run(args) -> anyhow::Result<ExitCode>`.
#![forbid(unsafe_code)]

mod build;
mod cli;
mod history;
mod images;
mod import;
mod inspect;
mod login;
mod parse;
mod progress;
mod prune;
mod pull;
mod push;
mod rmi;
mod root;
mod run;
mod signals;
mod store_cmd;

use std::process::ExitCode;

use clap::Parser as _;

pub use cli::Cli;

/// Exit code of a failed build or command (usage errors exit with 2, through clap).
pub const EXIT_FAILURE: u8 = 1;

/// Runs the `kiln` command line with the process arguments and returns its exit code.
pub fn main() -> ExitCode {
    // The sandbox re-executes this binary as its namespace helper: that must be dispatched
    // before clap and before any thread starts (kiln-sandbox crate docs).
    if let Some(code) = kiln_sandbox::run_helper_if_requested() {
        return code;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let code = err.exit_code();
            let _ = err.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
