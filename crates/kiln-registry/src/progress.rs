//! Transfer progress: the client reports [`ProgressEvent`]s to a [`Progress`] observer the
//! caller supplies (the CLI renders indicatif bars on a TTY, plain lines otherwise).

use std::time::Duration;

use kiln_oci::Digest;

/// Which way a blob moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Registry → sink.
    Download,
    /// Source → registry.
    Upload,
}

/// How a blob transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobOutcome {
    /// The bytes were transferred (and verified).
    Transferred,
    /// The destination already had it (sink `has_blob`, or registry HEAD 200).
    AlreadyPresent,
    /// The registry mounted it from another repository.
    Mounted {
        /// The repository it was mounted from.
        from: String,
    },
}

/// Something that happened during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A reference was resolved to a manifest digest.
    Resolved {
        /// The reference as given.
        reference: String,
        /// The manifest digest chosen (after platform selection).
        digest: Digest,
    },
    /// A blob transfer starts.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// Download or upload.
        direction: Direction,
    },
    /// More bytes of a blob moved.
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes done so far (may go back to 0 when a download restarts).
        done: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// A blob transfer ended.
    BlobFinished {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// What happened.
        outcome: BlobOutcome,
    },
    /// A request failed transiently and will be retried.
    Retrying {
        /// What is being retried (`GET blob sha256:…`).
        operation: String,
        /// The attempt about to be made (2 = first retry).
        attempt: u32,
        /// How long the client waits first.
        delay: Duration,
        /// Why (`HTTP 503`, `connection reset`).
        reason: String,
    },
    /// A manifest was stored under a tag or digest.
    ManifestPushed {
        /// `registry/repository:tag` or `…@digest`.
        reference: String,
        /// The manifest digest.
        digest: Digest,
    },
}

/// An observer of transfer progress. Implementations must be cheap: events arrive for every
/// received chunk.
pub trait Progress: Send + Sync {
    /// Called for every event, from async tasks (do not block).
    fn on_event(&self, event: &ProgressEvent);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn on_event(&self, _event: &ProgressEvent) {}
}
