//! The build itself: parse → plan → run the stage DAG (base resolution, RUN in the sandbox,
//! COPY/ADD, WORKDIR, config edits, cache lookups) → assemble the image → export.

mod attestations;
mod base;
mod build;
mod cache_export;
mod cache_format;
mod cache_import;
mod cache_mounts;
mod commit;
mod compressor;
mod copy_exec;
mod download;
mod driver;
mod error;
mod executor;
mod export;
mod ignore;
mod lazy;
mod local;
mod model;
mod options;
mod platforms;
mod results;
mod run_exec;
mod seams;
mod ssh;
mod stored;
#[cfg(test)]
mod tests;

pub(crate) use self::download::fetch_url;
pub use self::error::{
    BaseError, BuildError, CacheExportError, ContextError, CopyStepError, DownloadError,
    ExportError, InsecureNotAllowed, InternalError, LayerError, MountError, OptionsError,
    StepError, StepId,
};
pub(crate) use self::options::binfmt_dir_from_env;
pub use self::options::{
    BINFMT_DIR_VAR, BuildOutcome, Builder, Entitlement, IsolationMode, NetworkDefault,
    PlatformImage, SecretSource, SecretSpecError, UnknownEntitlement, default_store_root,
};
pub use self::ssh::{SshSource, SshSourceError, SshSpecError};
pub(crate) use self::stored::compress_stored_image;
