//! COPY and ADD, apart from the engine that runs them as steps (`engine::copy_exec`):
//!
//! - [`source`]: the trees a COPY reads — the build context through its `.dockerignore`, a
//!   stage's or image's layers as one read-only view — with their entries' metadata.
//! - [`plan`]: which entries land where, by BuildKit's rules (wildcards, directory contents,
//!   `--parents`, `--exclude`, `--chown`/`--chmod`), as a [`CopyPlan`].
//! - [`digest`]: the content digests a plan's cache key is made of, with the file-hash memo
//!   that makes a warm rebuild skip re-reading unchanged files.
//! - [`write`]: the plan written into a staging directory that becomes the layer.
//! - [`owners`]: `--chown` names resolved in the destination stage's `/etc/passwd` and
//!   `/etc/group`, and `--chmod`.
//!
//! Nothing here knows the engine: it imports no `engine` module.

pub(crate) mod digest;
pub(crate) mod owners;
pub(crate) mod plan;
pub(crate) mod source;
pub(crate) mod write;

pub use self::plan::CopyError;
pub(crate) use self::plan::{
    CopyAttrs, CopyItem, CopyPlan, CopyRequest, for_each_new_ancestor, has_wildcard, plan_copy,
};
