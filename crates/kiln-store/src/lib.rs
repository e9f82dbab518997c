#![doc = include_str!("../README.md")]
//!
//! Main types: [`Store`] (open, blobs, refs, snapshots, records, GC, verify), [`BlobWriter`],
//! [`Lease`], [`StoreLock`]. Neighbours: `kiln-oci` (digests, blob traits, layer codec) below;
//! `kiln-registry` writes into it through `BlobSink`; `kiln-build` and `kiln-cli` use it.
#![forbid(unsafe_code)]

mod blobs;
mod cache;
mod error;
mod gc;
mod graph;
mod layout;
mod lock;
mod refs;
mod remove;
mod snapshot;
mod verify;

pub use blobs::BlobWriter;
pub use cache::RecordRefs;
pub use error::StoreError;
pub use gc::{GcOptions, GcReport};
pub use layout::{LAYOUT_VERSION, Store};
pub use lock::{Lease, LockMode, StoreLock};
pub use refs::RefEntry;
pub use remove::{RootlessRemovalError, remove_tree};
pub use verify::{Problem, VerifyReport};
