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
    BuildError, BuildOutcome, Builder, NetworkDefault, SecretSource, StageResult,
    default_store_root,
};
pub use event::{Event, EventSink, LogStream};
pub use hash::{HashMemo, copy_plan_digest};
pub use output::{Output, OutputSpecError};
pub use run_image::{ContainerRun, RunImageError};
pub use scheduler::{CancelToken, Node, ScheduleError, StageRunner, run_dag};
pub use tree::{
    ContextFilter, ContextTree, Entry, EntryKind, IncludeAll, LayeredTree, SourceTree, clean_rel,
};
pub use users::{Chmod, OwnerError, parse_chmod, resolve_chown};
