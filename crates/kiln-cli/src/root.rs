//! Where the local store lives (`--root DIR`, else `kiln_build::resolve_store_root`'s
//! environment order), for the commands that hand a store root to the library.

use std::path::{Path, PathBuf};

/// The store root from the flag and the environment.
pub(crate) fn resolve_root(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(kiln_build::resolve_store_root(flag)?)
}
