#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod blob;
mod digest;

pub use blob::{BlobError, BlobIngest, BlobSink, BlobSource};
pub use digest::{Algorithm, ChainId, DiffId, Digest, DigestError, Sha256Hasher};
