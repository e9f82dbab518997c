#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod annotation;
mod attest;
mod cache_options;
mod context_source;
mod copy;
mod engine;
mod event;
mod git_source;
mod images;
mod import;
mod lint;
mod output;
mod run_image;
mod scheduler;

pub use annotation::{Annotation, AnnotationError, AnnotationKey, AnnotationLevel, Annotations};
pub use attest::{
    Attest, AttestError, AttestKind, AttestationError, ProvenanceAttest, ProvenanceMode,
    SbomAttest, ScanStages,
};
pub use cache_options::{CacheExport, CacheLocation, CacheMode, CacheSource, CacheSpecError};
pub use context_source::{ContextSource, ContextSourceError, ContextStream};
pub use copy::CopyError;
pub use copy::owners::{ChmodError, OwnerError};
pub use engine::{
    BINFMT_DIR_VAR, BaseError, BuildError, BuildOutcome, Builder, CacheExportError, ContextError,
    CopyStepError, DownloadError, Entitlement, ExportError, InsecureNotAllowed, InternalError,
    IsolationMode, LayerError, MountError, NetworkDefault, OptionsError, PlatformImage,
    SecretSource, SecretSpecError, SshSource, SshSourceError, SshSpecError, StepError, StepId,
    UnknownEntitlement, default_store_root,
};
pub use event::{Event, EventSink, LogStream};
pub use git_source::{GitError, GitRef};
pub use images::{
    ArchiveFormat, HistoryEntry, ImageError, ImageHistory, ImageInspection, ImagePlatform,
    ImageSummary, LoadedImage, PullOutcome, PushOutcome, Untagged, describe_platforms, find_image,
    image_history, inspect_image, list_images, load_images, load_images_from, login, logout,
    open_store, parse_image_name, platforms_of, prune, pull_image, push_image, registry_host,
    require_image, resolve_store_root, save_images, save_images_to, tag_image, untag_images,
    without_echo,
};
pub use import::{
    Import, ImportError, ImportOutcome, ImportOutput, ImportOutputError, ImportStep, TarError,
};
pub use lint::{CallFunction, DockerfileSource, LintReport, OutlineReport, TargetsReport};
pub use output::{DestinationError, ExportOptions, Output, OutputSpec, OutputSpecError};
pub use run_image::{ContainerRun, ImageToRun, RunImageError, find_or_pull_image};
pub use scheduler::CancelToken;

// The types of the crates below that the API above takes and returns, so an embedder (and
// kiln-cli) needs no other kiln crate.
pub use kiln_dockerfile as dockerfile;
pub use kiln_oci as oci;
pub use kiln_plan::{
    ChangeError, Check, CheckConfig, CheckError, CheckReport, ConfigChanges, Outline, OutlineArg,
    OutlineMount, Rule, SourceLines, StageTarget,
};
pub use kiln_registry::{
    BlobOutcome, ClientConfig, DEFAULT_DOWNLOAD_CONCURRENCY, Direction,
    Progress as TransferProgress, ProgressEvent as TransferEvent,
};
pub use kiln_sandbox::{ExitStatus, Network, RunOutcome, SandboxError, Stream, Ulimit};
pub use kiln_store::{
    GcOptions, GcReport, Problem as StoreProblem, Store, StoreError, VerifyReport,
};

/// Runs the RUN sandbox helper when this process was started as one, returning its exit
/// code; `None` otherwise. Executables that build with [`Builder`] (the default helper is
/// the current executable) call it first thing in `main`, before starting threads.
pub fn run_sandbox_helper_if_requested() -> Option<std::process::ExitCode> {
    kiln_sandbox::run_helper_if_requested()
}

pub use kiln_sandbox::{Reexec, reexec_in_user_namespace};
