#![doc = include_str!("../README.md")]
//!
//! # Example
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! if kiln_test::busybox_binary().is_some() {
//!     let rootfs = kiln_test::busybox_rootfs(&dir.path().join("rootfs"));
//!     assert!(rootfs.join("bin/sh").is_symlink());
//! }
//! ```

mod busybox;
mod filters;
pub mod pod;
mod proxy;
mod raw_tar;
mod registry;
mod requirements;
mod rootless;

pub use busybox::{BUSYBOX_APPLETS, busybox_rootfs, busybox_rootfs_for};
pub use filters::snapshot_filters;
pub use kiln_test_probe::{
    FOREIGN_BUSYBOX_PATH, Requirement, busybox_binary, conformance_dir, foreign_busybox_binary,
    is_root,
};
pub use proxy::{Fault, FaultProxy, Rule};
pub use raw_tar::{Listing, RawTar, Sentinel};
pub use registry::{Registry, http_status};
pub use requirements::{
    has_tool, require, require_busybox, require_conformance, require_emulation, require_overlay,
    require_root, require_tool,
};
pub use rootless::{
    ROOTLESS_RANGE, ROOTLESS_USER, TestUser, USER_WITHOUT_SUBIDS, assert_traversable,
    rootless_user, user_without_subids,
};
