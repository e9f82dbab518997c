#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod copy;
mod engine;
mod event;
mod hash;
mod output;
mod run_image;
mod scheduler;
mod tree;
mod users;

pub use copy::{
    CopyAttrs, CopyError, CopyItem, CopyPlan, CopyRequest, has_wildcard, match_component, plan_copy,
};
pub use engine::{
    BaseError, BuildError, BuildOutcome, Builder, ContextError, CopyStepError, DownloadError,
    Entitlement, ExportError, InsecureNotAllowed, InternalError, LayerError, MountError,
    NetworkDefault, OptionsError, SecretSource, SecretSpecError, StageResult, StepError, StepId,
    UnknownEntitlement, default_store_root,
};
pub use event::{Event, EventSink, LogStream};
pub use hash::{HashMemo, copy_plan_digest};
pub use output::{DestinationError, Output, OutputSpecError};
pub use run_image::{ContainerRun, RunImageError};
pub use scheduler::{CancelToken, Node, ScheduleError, StageRunner, run_dag};
pub use tree::{
    ContextFilter, ContextTree, Entry, EntryKind, IncludeAll, LayeredTree, SourceTree, clean_rel,
    host_path,
};
pub use users::{Chmod, ChmodError, OwnerError, parse_chmod, resolve_chown};

/// Runs the RUN sandbox helper when this process was started as one, returning its exit
/// code; `None` otherwise. Executables that build with [`Builder`] (the default helper is
/// the current executable) call it first thing in `main`, before starting threads.
pub fn run_sandbox_helper_if_requested() -> Option<std::process::ExitCode> {
    kiln_sandbox::run_helper_if_requested()
}
