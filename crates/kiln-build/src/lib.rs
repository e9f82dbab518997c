#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod copy;
mod tree;

pub use copy::{
    CopyAttrs, CopyError, CopyItem, CopyPlan, CopyRequest, has_wildcard, match_component, plan_copy,
};
pub use tree::{
    ContextFilter, ContextTree, Entry, EntryKind, IncludeAll, LayeredTree, SourceTree, clean_rel,
};
