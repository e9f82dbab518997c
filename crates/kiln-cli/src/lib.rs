#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod build;
mod cli;
mod df;
mod flags;
mod history;
mod images;
mod import;
mod inspect;
mod lint;
mod login;
mod parse;
mod progress;
mod prune;
mod pull;
mod push;
mod rmi;
mod root;
mod run;
mod save;
mod signals;
mod store_cmd;
mod tag;

use std::process::ExitCode;

use clap::Parser as _;

pub use cli::Cli;

/// Exit code of a failed build or command (usage errors exit with 2, through clap).
pub const EXIT_FAILURE: u8 = 1;

/// Exit code of a usage error found after clap parsed the command line (clap's own exit 2).
pub const EXIT_USAGE: u8 = 2;

/// Diagnostics on stderr: warnings by default; `KILN_LOG` takes a `tracing` filter
/// (`KILN_LOG=debug`, `KILN_LOG=kiln_build=debug`) and then also prints how long each
/// timed phase of a step took (its span's busy and idle time when it closes).
fn init_logging() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let (filter, spans) = match std::env::var("KILN_LOG") {
        Ok(spec) if !spec.is_empty() => (spec, FmtSpan::CLOSE),
        _ => ("warn".to_owned(), FmtSpan::NONE),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("warning: KILN_LOG={filter:?} is not a valid filter ({e}); using `warn`");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(spans)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    // Timestamps (and with them the spans' timings) only when asked for with KILN_LOG.
    let _ = if std::env::var_os("KILN_LOG").is_some() {
        builder.try_init()
    } else {
        builder.without_time().try_init()
    };
}

/// Runs the `kiln` command line with the process arguments and returns its exit code.
pub fn main() -> ExitCode {
    // The sandbox re-executes this binary as its namespace helper: that must be dispatched
    // before clap and before any thread starts (kiln-sandbox crate docs).
    if let Some(code) = kiln_build::run_sandbox_helper_if_requested() {
        return code;
    }
    // An ordinary user's kiln continues in a user namespace mapping its subordinate ids (it
    // does not return then); also before any thread starts.
    let reexec = kiln_build::reexec_in_user_namespace();
    init_logging();
    if let kiln_build::Reexec::Failed(reason) = reexec {
        eprintln!(
            "warning: cannot enter kiln's rootless user namespace ({reason}); running as the \
             calling user, where COPY and RUN layers cannot get the image's owners"
        );
    }
    // `Unavailable` (no subordinate range, no newuidmap, user namespaces blocked) is silent:
    // the sandbox's error for a RUN says what to configure.
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
