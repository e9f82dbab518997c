//! Errors of the sandbox, each naming its subject (path, command, helper) and what to do.

use std::path::PathBuf;
use std::time::Duration;

/// A `USER` that does not resolve in the image.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserError {
    /// A user name that is not in `/etc/passwd`.
    #[error("unable to find user {user}: no matching entries in the image's /etc/passwd")]
    UnknownUser {
        /// The name.
        user: String,
    },
    /// A group name that is not in `/etc/group`.
    #[error("unable to find group {group}: no matching entries in the image's /etc/group")]
    UnknownGroup {
        /// The name.
        group: String,
    },
}

/// Why a sandboxed run failed (a command that ran and exited non-zero is not an error: see
/// [`RunOutcome`](crate::RunOutcome)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The spec is unusable.
    #[error("invalid sandbox spec: {reason}")]
    InvalidSpec {
        /// What is wrong.
        reason: String,
    },
    /// The helper executable could not be started.
    #[error("cannot start the sandbox helper {helper}: {source}")]
    SpawnHelper {
        /// The helper executable.
        helper: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Talking to the helper failed.
    #[error("lost contact with the sandbox helper {helper}: {source}")]
    HelperIo {
        /// The helper executable.
        helper: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The helper died without reporting an outcome (e.g. an embedder forgot to call
    /// `run_helper_if_requested` first thing in `main`).
    #[error(
        "the sandbox helper {helper} exited ({status}) without reporting a result; an \
         executable used as helper must call kiln_sandbox::run_helper_if_requested() first \
         thing in main"
    )]
    HelperDied {
        /// The helper executable.
        helper: PathBuf,
        /// Its wait status.
        status: std::process::ExitStatus,
    },
    /// Setting up the namespaces, mounts or user failed before the command started.
    #[error("sandbox setup failed: {message}")]
    Setup {
        /// What failed, with its path and OS error.
        message: String,
    },
    /// The command could not be executed.
    #[error("cannot run {command:?} in the sandbox: {message}")]
    Exec {
        /// `argv[0]`.
        command: String,
        /// Why (not found in `PATH`, permission denied, …).
        message: String,
        /// The shell's code for it: 127 not found, 126 not executable.
        code: i32,
    },
    /// The caller cancelled the run; the whole process tree was killed.
    #[error("sandboxed command {command:?} was cancelled; its processes were killed")]
    Cancelled {
        /// `argv[0]`.
        command: String,
    },
    /// The run exceeded its timeout; the whole process tree was killed.
    #[error("sandboxed command {command:?} timed out after {after:?}; its processes were killed")]
    TimedOut {
        /// `argv[0]`.
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// Post-processing the upperdir (mountpoint cleanup or the copy fallback's differ) failed.
    #[error("cannot finish the layer diff in {upper}: {message}")]
    Diff {
        /// The upper directory.
        upper: PathBuf,
        /// What failed.
        message: String,
    },
}
