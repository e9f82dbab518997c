//! The typed errors of a build: [`BuildError`] at the top, with a typed source for each
//! layer below it (parse, plan, store, registry, sandbox, context, export, a step). Each
//! variant keeps its subject (the Dockerfile and line, a path, a digest, a reference, the
//! step) and its `Display` is the message `kiln build` prints after `error: `.

use std::path::PathBuf;
use std::sync::Arc;

use kiln_dockerfile::{ParseError, PatternError};
use kiln_oci::{AssembleError, BlobError, DiffId, Digest, ImageRef, LayoutError, ReferenceError};
use kiln_plan::{PlanError, StageId};
use kiln_registry::RegistryError;
use kiln_sandbox::SandboxError;
use kiln_store::StoreError;

use crate::ImageError;
use crate::copy::CopyError;
use crate::copy::owners::{ChmodError, OwnerError};
use crate::output::DestinationError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile does not parse. Displayed as the full diagnostic: `error: …`,
    /// ` --> file:line:col`, the source line and a caret.
    #[error("{}", .source.render(.dockerfile, .text))]
    Parse {
        /// The Dockerfile as named in messages (`ctx/Dockerfile`; `Dockerfile` for stdin).
        dockerfile: String,
        /// Its text (the diagnostic quotes the offending line).
        text: Arc<str>,
        /// What the parser found.
        source: Box<ParseError>,
    },
    /// Planning failed (unknown target, bad stage reference, an expansion error, …).
    #[error("{dockerfile}: {source}")]
    Plan {
        /// The Dockerfile as named in messages.
        dockerfile: String,
        /// The planner's error (with the line when it has one).
        source: Box<PlanError>,
    },
    /// A `RUN --security=insecure` in a build not granted `security.insecure`.
    #[error("{dockerfile}:{line}: {}", InsecureNotAllowed)]
    InsecureNotAllowed {
        /// The Dockerfile as named in messages.
        dockerfile: String,
        /// The line of the RUN.
        line: usize,
    },
    /// A RUN step for a platform this host cannot run, and no emulator for it (checked
    /// before any step runs).
    #[error("{dockerfile}:{line}: RUN for {platform} needs an emulator: {source}")]
    NoEmulator {
        /// The Dockerfile as named in messages.
        dockerfile: String,
        /// The platform.
        platform: String,
        /// The line of the stage's first RUN.
        line: usize,
        /// What the binfmt_misc check found.
        source: Box<kiln_sandbox::EmulationError>,
    },
    /// The Dockerfile could not be read.
    #[error(
        "failed to read the Dockerfile {}: {source}; pass -f FILE or put a Dockerfile in the context",
        .path.display()
    )]
    ReadDockerfile {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Dockerfile is not UTF-8.
    #[error(
        "{}:{line}:{column}: the Dockerfile is not valid UTF-8 (byte 0x{byte:02x}); save it as UTF-8",
        .path.display()
    )]
    DockerfileNotUtf8 {
        /// The path.
        path: PathBuf,
        /// Line of the first byte that is not UTF-8.
        line: usize,
        /// Its column, in characters.
        column: usize,
        /// Its value.
        byte: u8,
    },
    /// The build context or its `.dockerignore` cannot be used.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A context that is not a directory (stdin, a URL, a git repository) cannot be made
    /// into one.
    #[error(transparent)]
    ContextSource(#[from] crate::context_source::ContextSourceError),
    /// A build option cannot be honoured (an output destination, a secret's source).
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The local store failed outside a step.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step failed.
    #[error("{step}: {source}")]
    Step {
        /// Which step.
        step: Box<StepId>,
        /// Why.
        source: Box<StepError>,
    },
    /// The image could not be assembled or written to an output.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// `--cache-to` failed (without `ignore-error=true`).
    #[error(transparent)]
    CacheExport(Box<CacheExportError>),
    /// The plan and the schedule disagree (a stage without a result): a bug in kiln.
    #[error("{0}")]
    Internal(InternalError),
    /// The build was cancelled.
    #[error("build cancelled")]
    Cancelled,
}

impl BuildError {
    /// The error of `step`, or [`BuildError::Cancelled`] when the step was cancelled.
    pub(crate) fn step(step: &StepId, source: StepError) -> Self {
        match source {
            StepError::Cancelled => Self::Cancelled,
            source => Self::Step {
                step: Box::new(step.clone()),
                source: Box::new(source),
            },
        }
    }
}

impl From<BaseError> for StepError {
    fn from(e: BaseError) -> Self {
        Self::Base(Box::new(e))
    }
}

/// The message of a `RUN --security=insecure` without the entitlement.
#[derive(Debug, Clone, Copy)]
pub struct InsecureNotAllowed;

impl std::fmt::Display for InsecureNotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "RUN --security=insecure needs the security.insecure entitlement, which this build \
             was not granted: pass --allow security.insecure if you trust this Dockerfile with \
             unconfined root in its sandbox",
        )
    }
}

/// A step of the build, as progress and errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepId {
    /// The stage.
    pub stage: StageId,
    /// The stage's name (`FROM … AS name`), if it has one.
    pub stage_name: Option<String>,
    /// The step's position in its stage (1 = the first instruction after FROM; 0 = FROM).
    pub position: usize,
    /// The progress label (`[build 2/5] RUN make`), the step's name in messages.
    pub label: String,
    /// The Dockerfile as named in messages.
    pub dockerfile: String,
    /// The instruction's first line in the Dockerfile (1-based; 0 when not from it, as an
    /// image's ONBUILD trigger).
    pub line: usize,
    /// Its column (1-based; 0 when not from the Dockerfile).
    pub column: usize,
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// A RUN exited non-zero or was killed.
    #[error("process \"{command}\" did not complete successfully: {status}\n{tail}")]
    RunFailed {
        /// The command line.
        command: String,
        /// `exit code: 1` (BuildKit's wording), `killed by signal 9`.
        status: String,
        /// The last lines of its output.
        tail: String,
    },
    /// A COPY/ADD could not be planned.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// A `--chown` (or WORKDIR owner) could not be resolved in the stage.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// A `--chmod` is invalid.
    #[error(transparent)]
    Chmod(#[from] ChmodError),
    /// A file operation failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(std::io::Error),
    /// A file operation whose error does not name the path failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// What was being done (`creating`, `reading`, `writing`).
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The sandbox could not be set up (shared by every RUN of the build).
    #[error(transparent)]
    SandboxUnavailable(Arc<SandboxError>),
    /// A base image or `--from` image could not be resolved.
    #[error(transparent)]
    Base(Box<BaseError>),
    /// A layer could not be written.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// An `ADD <url>` failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The COPY's destination is unusable, or a source cannot be read.
    #[error(transparent)]
    CopyStep(#[from] CopyStepError),
    /// A RUN `--mount` cannot be provided.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A layer of a `--cache-from` cache could not be fetched or did not unpack to its
    /// diffID. The build leaves that layer out and runs the steps that needed it.
    #[error("layer {digest} of the cache {cache}: {source}")]
    ImportedLayer {
        /// The cache, as `--cache-from` named it.
        cache: String,
        /// The layer blob.
        digest: Digest,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `RUN --security=insecure` without the entitlement.
    #[error("{}", InsecureNotAllowed)]
    InsecureNotAllowed,
    /// The step was cancelled.
    #[error("build cancelled")]
    Cancelled,
    /// A step kind this version of kiln cannot run.
    #[error("unsupported step {description}")]
    Unsupported {
        /// The step, as planned.
        description: String,
    },
    /// The plan and the schedule disagree.
    #[error("{0}")]
    Internal(InternalError),
}

/// The plan and the schedule disagree: a bug in kiln, never the user's input.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InternalError {
    /// The scheduler asked for a stage the plan does not have.
    #[error("stage {0} is not in the plan")]
    StageNotInPlan(StageId),
    /// A base stage finished without a result.
    #[error("base stage {0} has no result")]
    NoBaseResult(StageId),
    /// A `--from` stage finished without a result.
    #[error("stage {0} has no result (internal planning error)")]
    NoSourceResult(StageId),
    /// The target stage finished without a result.
    #[error("the target stage produced no result")]
    NoTargetResult,
    /// A layer of an imported cache failed after it was left out.
    #[error("layer {0} of an imported cache failed again after it was left out")]
    ExcludedLayerFailed(Digest),
}

/// Why the build context or its `.dockerignore` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The context cannot be opened.
    #[error("the build context {} is not a readable directory: {source}", .path.display())]
    Unreadable {
        /// The context as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The context is not a directory.
    #[error("the build context {} is not a directory", .path.display())]
    NotADirectory {
        /// The context as given.
        path: PathBuf,
    },
    /// The `.dockerignore` cannot be read.
    #[error("reading {}: {source}", .path.display())]
    ReadIgnoreFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `.dockerignore` line is longer than the limit.
    #[error("{}:{line}: {source}", .path.display())]
    IgnoreLineTooLong {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The limit it broke.
        source: PatternError,
    },
    /// The `.dockerignore` is not a pattern file (not UTF-8, …).
    #[error("reading {}: {source}", .path.display())]
    IgnoreFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PatternError,
    },
    /// A `.dockerignore` pattern does not compile.
    #[error("invalid pattern in {}: {source}", .path.display())]
    InvalidPattern {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PatternError,
    },
    /// A `.dockerignore` pattern can never match.
    #[error(
        "invalid pattern in {}: `{pattern}` cannot be matched ({reason}); fix or remove it",
        .path.display()
    )]
    UnmatchablePattern {
        /// The file.
        path: PathBuf,
        /// The pattern as written (with its `!`).
        pattern: String,
        /// Why it cannot match.
        reason: String,
    },
}

/// Why a build option cannot be honoured (checked before anything runs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// An `--output` destination would replace something that is not an output.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// Two outputs write to stdout.
    #[error("only one --output can write to stdout (dest=-)")]
    TwoStdoutOutputs,
    /// The context and the Dockerfile both read from stdin (buildx refuses it too).
    #[error("invalid argument: can't use stdin for both build context and dockerfile")]
    StdinTwice,
    /// A secret's source file cannot be read.
    #[error("secret `{id}`: cannot read its source {}: {source}", .path.display())]
    SecretUnreadable {
        /// The secret id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret's source is not a regular file.
    #[error("secret `{id}`: cannot read its source {}: not a regular file", .path.display())]
    SecretNotAFile {
        /// The secret id.
        id: String,
        /// The path.
        path: PathBuf,
    },
    /// A secret's environment variable is not set.
    #[error("secret `{id}`: environment variable {var} is not set")]
    SecretEnvUnset {
        /// The secret id.
        id: String,
        /// The variable.
        var: String,
    },
    /// An `--ssh` agent that cannot be used.
    #[error(transparent)]
    Ssh(#[from] super::ssh::SshSourceError),
    /// `type=docker` for more than one platform: a docker-archive holds one image per name.
    #[error(
        "--output {output}: a docker archive cannot hold a multi-platform image ({platforms}); \
         use type=oci for an index of every platform, or build one --platform"
    )]
    DockerArchiveMultiPlatform {
        /// The output.
        output: String,
        /// The platforms asked for.
        platforms: String,
    },
    /// `rewrite-timestamp=false` while `SOURCE_DATE_EPOCH` is set.
    #[error(
        "--output {output}: rewrite-timestamp=false cannot be honoured: with SOURCE_DATE_EPOCH \
         set, kiln always clamps the file times of the layers it makes to it; drop the key or \
         unset SOURCE_DATE_EPOCH"
    )]
    RewriteTimestampOff {
        /// The output.
        output: String,
    },
    /// `--annotation` with no output that has a manifest (only `type=local`/`type=tar`).
    #[error(
        "--annotation {annotation}: no output of this build has a manifest to annotate \
         (type=local and type=tar write files only); add -t NAME, --push or \
         -o type=oci|docker|image"
    )]
    AnnotationsWithoutImage {
        /// The first annotation, as `level:key`.
        annotation: String,
    },
    /// An `index` or `index-descriptor` annotation of a one-platform image (BuildKit's
    /// "index annotations not supported for single platform export").
    #[error(
        "annotation {annotation}: index annotations not supported for single platform export \
         (this build makes {platform} only): use manifest:… or build several --platform"
    )]
    IndexAnnotationSinglePlatform {
        /// The annotation, as `level:key`.
        annotation: String,
        /// The one platform.
        platform: String,
    },
    /// A `manifest[PLATFORM]:` annotation for a platform the build does not make.
    #[error(
        "annotation {annotation}: this build makes no image for that platform (it makes {platforms})"
    )]
    AnnotationUnknownPlatform {
        /// The annotation, as `level[platform]:key`.
        annotation: String,
        /// The platforms the build makes.
        platforms: String,
    },
    /// Attestations with an output that cannot hold them: a docker archive (one manifest per
    /// name, no index) or Docker media types (BuildKit: "cannot export attestations with
    /// oci-mediatypes=false").
    #[error(
        "--output {output}: {reason}; attestations (--sbom, --provenance, --attest) need an \
         OCI index: use type=oci or type=image with OCI media types, or drop the attestations"
    )]
    AttestationsUnsupported {
        /// The output.
        output: String,
        /// What it cannot do.
        reason: &'static str,
    },
    /// `--build-arg SOURCE_DATE_EPOCH=…` that is not a number of seconds.
    #[error("--build-arg SOURCE_DATE_EPOCH=`{value}` is not a number of seconds since the epoch")]
    InvalidSourceDateEpoch {
        /// The value given.
        value: String,
    },
}

/// Why a base image, `--from` image or named build context cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry client cannot be made.
    #[error(transparent)]
    Client(Box<RegistryError>),
    /// The pull failed.
    #[error("pulling {reference}: {source}")]
    Pull {
        /// The image.
        reference: Box<ImageRef>,
        /// Why.
        source: Box<RegistryError>,
    },
    /// The async runtime for network I/O cannot start.
    #[error("starting the network runtime: {0}")]
    Runtime(std::io::Error),
    /// The image is not usable for the stage's platform (an index without it, a platform
    /// listed but not in the store), or cannot be read; the text has the whole cause.
    #[error("{}", error_with_causes(.0))]
    Image(Box<ImageError>),
    /// `--from=NAME` or `FROM NAME` with no `--build-context NAME=…`.
    #[error("no --build-context named `{name}`")]
    NoBuildContext {
        /// The name.
        name: String,
    },
    /// `--build-context NAME=docker-image://REF` with a bad reference.
    #[error("--build-context {name}: {source}")]
    BuildContextReference {
        /// The context's name.
        name: String,
        /// Why.
        source: ReferenceError,
    },
    /// `--build-context NAME=oci-layout://…` cannot be read.
    #[error("--build-context {name}: {source}")]
    BuildContextLayout {
        /// The context's name.
        name: String,
        /// Why.
        source: LayoutError,
    },
    /// A blob of `--build-context NAME=oci-layout://…` cannot be read.
    #[error("--build-context {name}: {source}")]
    BuildContextBlob {
        /// The context's name.
        name: String,
        /// Why.
        source: BlobError,
    },
    /// `--build-context NAME=DIR` with something that is not a directory.
    #[error(
        "--build-context {name}={spec}: not a directory; use a directory, docker-image://REF or oci-layout://PATH[:TAG|@DIGEST]"
    )]
    BuildContextNotADirectory {
        /// The context's name.
        name: String,
        /// The value given.
        spec: String,
    },
    /// `FROM NAME` where the build context NAME is a directory.
    #[error(
        "build context `{name}` is the local directory {}, which cannot be used as a base image; use docker-image:// or oci-layout://",
        .dir.display()
    )]
    BuildContextIsADirectory {
        /// The context's name.
        name: String,
        /// The directory.
        dir: PathBuf,
    },
}

impl BaseError {
    /// The base's error of a shared image resolution: a pull and a store failure as the
    /// engine words them, the others whole.
    pub(crate) fn from_image(err: ImageError) -> Self {
        match err {
            ImageError::Pull { reference, source } => Self::Pull {
                reference: Box::new(reference),
                source,
            },
            ImageError::Store(source) => Self::Store(*source),
            other => Self::Image(Box::new(other)),
        }
    }
}

/// `err` and its causes on one line, `: `-separated (a step's error is shown as one line).
fn error_with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a layer (its snapshot or its compressed blob) could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A file operation failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(Arc<std::io::Error>),
    /// The layer's tar could not be written.
    #[error("writing the layer of {}: {source}", .path.display())]
    Tar {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: Arc<kiln_oci::LayerError>,
    },
    /// The tar/compression stream failed.
    #[error("{action}: {source}")]
    Stream {
        /// `starting the layer compressor`, `finishing the layer`, …
        action: &'static str,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The store failed.
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// A layer lost both its blob and its snapshot.
    #[error(
        "layer {diff_id} has neither a blob nor its snapshot {}; rebuild with --no-cache",
        .snapshot.display()
    )]
    Missing {
        /// The layer.
        diff_id: DiffId,
        /// Where its snapshot was.
        snapshot: PathBuf,
    },
    /// A snapshot no longer makes the layer recorded for it.
    #[error(
        "the snapshot {} makes layer {made}, but the build recorded {recorded}: the snapshot was changed; remove it and rebuild with --no-cache",
        .snapshot.display()
    )]
    SnapshotChanged {
        /// The snapshot.
        snapshot: PathBuf,
        /// What it makes now.
        made: DiffId,
        /// What the build recorded.
        recorded: DiffId,
    },
    /// A compression worker panicked.
    #[error("compressing layer {0} panicked; rebuild with --no-cache")]
    CompressionPanicked(DiffId),
    /// The background compressor is running this layer (never returned to a caller that
    /// waits).
    #[error("taken by another thread")]
    Taken,
}

impl LayerError {
    /// Wraps an fs_err error, whose message names the path.
    pub(crate) fn fs(source: std::io::Error) -> Self {
        Self::Fs(Arc::new(source))
    }

    pub(crate) fn stream(action: &'static str, source: std::io::Error) -> Self {
        Self::Stream {
            action,
            source: Arc::new(source),
        }
    }
}

impl From<StoreError> for LayerError {
    fn from(e: StoreError) -> Self {
        Self::Store(Arc::new(e))
    }
}

/// Why an `ADD <url>` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// `--checksum` is not a digest.
    #[error("invalid --checksum {checksum:?} for {url}: {source}")]
    InvalidChecksum {
        /// The URL.
        url: String,
        /// The value.
        checksum: String,
        /// Why.
        source: kiln_oci::DigestError,
    },
    /// `--checksum` uses an algorithm other than sha256.
    #[error("unsupported --checksum algorithm {algorithm} for {url}: kiln verifies sha256")]
    UnsupportedChecksum {
        /// The URL.
        url: String,
        /// The algorithm.
        algorithm: String,
    },
    /// The URL does not parse.
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The download failed (the reason includes its sources: `error sending request: …`).
    #[error("downloading {url}: {reason}")]
    Failed {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The body has another digest than `--checksum`.
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// `--checksum`.
        expected: kiln_oci::Digest,
        /// The body's.
        actual: kiln_oci::Digest,
    },
}

/// Why a COPY/ADD (or WORKDIR) step failed past its plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyStepError {
    /// `ADD <git URL>`: the repository cannot be resolved or checked out.
    #[error(transparent)]
    Git(#[from] crate::git_source::GitError),
    /// A git source given to COPY (not ADD).
    #[error("COPY does not check out git repositories ({source_url}); use ADD")]
    CopyGit {
        /// The source.
        source_url: String,
    },
    /// `COPY <url>`.
    #[error("COPY does not download URLs ({source_url}); use ADD")]
    CopyUrl {
        /// The source.
        source_url: String,
    },
    /// The destination cannot be resolved in the stage.
    #[error("resolving the destination {dest} in the stage: {source}")]
    ResolveDestination {
        /// The destination.
        dest: String,
        /// Why.
        source: std::io::Error,
    },
    /// A path of the stage cannot be read.
    #[error("reading {path} in the stage: {source}")]
    ReadStage {
        /// The path in the stage.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file would replace a directory of the stage.
    #[error(
        "cannot replace to directory {dest} with file; remove the directory first or copy to another path"
    )]
    FileOverDirectory {
        /// The destination.
        dest: String,
    },
    /// A directory would be merged onto a file or symlink of the stage.
    #[error(
        "cannot copy to non-directory: {dest} is a {kind} in the stage; remove it first or copy to another path"
    )]
    DirectoryOverFile {
        /// The destination.
        dest: String,
        /// `file` or `symlink`.
        kind: &'static str,
    },
    /// The sources cannot be hashed.
    #[error("hashing COPY sources: {0}")]
    HashSources(std::io::Error),
    /// An archive source cannot be hashed.
    #[error("hashing {source_path}: {source}")]
    HashArchive {
        /// The source.
        source_path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the layer's files failed.
    #[error("copying files into the layer: {0}")]
    Materialize(std::io::Error),
    /// `ADD url1 url2 dest` with a destination that is not a directory.
    #[error(
        "When using ADD with more than one source file, the destination must be a directory and end with a / (got {dest})"
    )]
    AddDestNotDir {
        /// The destination.
        dest: String,
    },
    /// A download would replace a directory of the stage.
    #[error(
        "cannot replace to directory {dest} with file (downloading {url}); remove the directory first or add to another path"
    )]
    DownloadOverDirectory {
        /// The destination.
        dest: String,
        /// The URL.
        url: String,
    },
}

/// Why a RUN `--mount` cannot be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// A bind mount's source cannot be keyed.
    #[error("--mount=type=bind,source={source_path}: {source}")]
    BindSource {
        /// The source.
        source_path: String,
        /// Why.
        source: Box<StepError>,
    },
    /// A mount's source cannot be provided.
    #[error("mount source {source_path}: {source}")]
    Source {
        /// The source.
        source_path: String,
        /// Why.
        source: Box<StepError>,
    },
    /// `--mount=type=tmpfs,size=…` that is not a positive byte count.
    #[error("--mount=type=tmpfs,target={target}: size={size} must be a positive number of bytes")]
    TmpfsSize {
        /// The target.
        target: String,
        /// The size given.
        size: i64,
    },
    /// A required secret was not passed.
    #[error("secret `{id}` is required: pass --secret id={id},src=FILE")]
    SecretRequired {
        /// The id.
        id: String,
    },
    /// A secret's file cannot be read.
    #[error("reading secret `{id}` from {}: {source}", .path.display())]
    SecretUnreadable {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret's environment variable is not set.
    #[error("secret `{id}`: environment variable {var} is not set")]
    SecretEnvUnset {
        /// The id.
        id: String,
        /// The variable.
        var: String,
    },
    /// A secret with neither a file nor a variable.
    #[error("secret `{id}` has no source")]
    SecretWithoutSource {
        /// The id.
        id: String,
    },
    /// `--mount=type=ssh,required` for an id no `--ssh` gave (BuildKit: `no SSH key "id"
    /// forwarded from the client`).
    #[error(
        "ssh agent `{id}` is required by RUN --mount=type=ssh: pass --ssh {id}=SOCKET or --ssh {id}=KEYFILE (--ssh {id} forwards $SSH_AUTH_SOCK)"
    )]
    SshRequired {
        /// The id.
        id: String,
    },
    /// An `--ssh` source that could be used when the build started no longer can.
    #[error(transparent)]
    SshSource(#[from] super::ssh::SshSourceError),
    /// The socket a RUN step's agent is served on cannot be made.
    #[error("--mount=type=ssh,id={id}: cannot serve the agent on a socket: {source}")]
    SshSocket {
        /// The id.
        id: String,
        /// Why.
        source: std::io::Error,
    },
    /// A mount type this version of kiln cannot provide.
    #[error("unsupported mount {description}")]
    Unsupported {
        /// The mount, as planned.
        description: String,
    },
}

/// Why the image could not be assembled or exported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A layer's blob could not be made.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// An attestation (`--sbom`, `--provenance`) could not be made or written.
    #[error(transparent)]
    Attestation(Box<crate::attest::AttestationError>),
    /// The manifest or config could not be made.
    #[error("assembling the image: {0}")]
    Assemble(Box<AssembleError>),
    /// The index of a multi-platform build could not be serialized.
    #[error("making the image index: {0}")]
    Index(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `-t` name is not an image reference.
    #[error("invalid image name `{name}`: {source}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        source: ReferenceError,
    },
    /// Writing an output archive to stdout failed.
    #[error("writing {output} to stdout: {source}")]
    StdoutArchive {
        /// The output.
        output: String,
        /// Why.
        source: LayoutError,
    },
    /// Flushing an output to stdout failed.
    #[error("writing {output} to stdout: {source}")]
    Stdout {
        /// The output.
        output: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing an output archive or layout failed.
    #[error("writing {}: {source}", .path.display())]
    Archive {
        /// The destination.
        path: PathBuf,
        /// Why.
        source: LayoutError,
    },
    /// A file operation on an output failed (fs_err's message names the path).
    #[error(transparent)]
    Fs(std::io::Error),
    /// A file operation on an output, whose error does not name the path, failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        /// `writing`, `creating`, `replacing`, …
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root filesystem tar (`type=tar`) could not be written.
    #[error("writing {output}: {source}")]
    RootfsTar {
        /// The output.
        output: String,
        /// Why.
        source: kiln_oci::LayerError,
    },
    /// The output destination changed during the build.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The async runtime for network I/O cannot start.
    #[error("starting the network runtime: {0}")]
    Runtime(std::io::Error),
    /// The registry client cannot be made.
    #[error(transparent)]
    Client(Box<RegistryError>),
    /// The push failed.
    #[error("pushing {names}: {source}")]
    Push {
        /// The names pushed (comma-separated).
        names: String,
        /// Why.
        source: Box<RegistryError>,
    },
}

impl From<CacheExportError> for BuildError {
    fn from(e: CacheExportError) -> Self {
        Self::CacheExport(Box::new(e))
    }
}

/// Why a `--cache-to` export failed. Each names the cache (`REG/REPO:TAG` or a directory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheExportError {
    /// A layer's blob could not be made from its snapshot.
    #[error("--cache-to {cache}: {source}")]
    Layer {
        /// The cache.
        cache: String,
        /// Why.
        source: Box<LayerError>,
    },
    /// The records could not be encoded.
    #[error("--cache-to {cache}: encoding the cache records: {source}")]
    Encode {
        /// The cache.
        cache: String,
        /// Why.
        source: Box<kiln_oci::JsonError>,
    },
    /// The store failed while writing the cache's config or manifest.
    #[error("--cache-to {cache}: {source}")]
    Store {
        /// The cache.
        cache: String,
        /// Why.
        source: Box<StoreError>,
    },
    /// The async runtime for network I/O cannot start.
    #[error("--cache-to {cache}: starting the network runtime: {source}")]
    Runtime {
        /// The cache.
        cache: String,
        /// Why.
        source: std::io::Error,
    },
    /// The registry client cannot be made, or the push failed.
    #[error(
        "--cache-to {cache}: pushing the cache: {source}; check the registry and your credentials (kiln login), or add ignore-error=true"
    )]
    Push {
        /// The cache.
        cache: String,
        /// Why.
        source: Box<RegistryError>,
    },
    /// The OCI layout directory could not be written.
    #[error("--cache-to {cache}: writing the cache layout {}: {source}", .path.display())]
    Layout {
        /// The cache.
        cache: String,
        /// The directory.
        path: PathBuf,
        /// Why.
        source: Box<LayoutError>,
    },
    /// The inline cache would make the image manifest too large.
    #[error(
        "--cache-to type=inline: the records take {size} bytes, more than the {limit} an image manifest may hold; use type=registry or type=local"
    )]
    InlineTooLarge {
        /// Their size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// A layer of an imported cache that the directory must hold could not be fetched.
    #[error("--cache-to {cache}: fetching layer {digest} {reason}")]
    Fetch {
        /// The cache.
        cache: String,
        /// The layer blob.
        digest: Digest,
        /// Where from, and why it failed.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_id() -> StepId {
        StepId {
            stage: StageId(1),
            stage_name: Some("test".to_owned()),
            position: 3,
            label: "[test 3/3] RUN pytest".to_owned(),
            dockerfile: "ctx/Dockerfile".to_owned(),
            line: 7,
            column: 1,
        }
    }

    #[test]
    fn a_failed_run_names_the_step_command_status_and_tail() {
        let err = BuildError::step(
            &step_id(),
            StepError::RunFailed {
                command: "/bin/sh -c pytest".to_owned(),
                status: "exit code: 1".to_owned(),
                tail: "1 failed".to_owned(),
            },
        );
        assert_eq!(
            err.to_string(),
            "[test 3/3] RUN pytest: process \"/bin/sh -c pytest\" did not complete \
             successfully: exit code: 1\n1 failed"
        );
        let BuildError::Step { step, source } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((step.line, step.stage_name.as_deref()), (7, Some("test")));
        assert!(matches!(**source, StepError::RunFailed { .. }));
    }

    #[test]
    fn a_cancelled_step_is_the_build_cancelled() {
        assert!(matches!(
            BuildError::step(&step_id(), StepError::Cancelled),
            BuildError::Cancelled
        ));
    }

    #[test]
    fn nested_mount_errors_keep_their_chain() {
        let err = StepError::from(MountError::Source {
            source_path: "/src".to_owned(),
            source: Box::new(StepError::Io {
                action: "creating",
                path: PathBuf::from("/store/tmp/x"),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }),
        });
        assert!(
            err.to_string()
                .starts_with("mount source /src: creating /store/tmp/x: ")
        );
        // `StepError::Mount` is transparent: its source is the mount error's source.
        let inner = std::error::Error::source(&err).expect("the mount error's source");
        assert!(inner.to_string().starts_with("creating /store/tmp/x"));
    }
}
