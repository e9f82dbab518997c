//! kiln: a daemonless, multi-stage container image builder, as a library.
//!
//! Everything the `kiln` command does is here (the command line is only a front end over
//! this API):
//!
//! - **Build**: [`Builder`] (a Dockerfile and its context → an image in the local store and
//!   any [`Output`]s), with a stream of progress [`Event`]s and a [`BuildError`].
//!   Builds share a cache across machines with [`Builder::cache_from`] and
//!   [`Builder::cache_to`] (a registry or an OCI layout directory, [`CacheSource`],
//!   [`CacheExport`]).
//! - **Check**: [`Builder::check`] runs BuildKit's build checks only ([`LintReport`]: text,
//!   BuildKit's JSON or SARIF), [`Builder::outline`] and [`Builder::targets`] report a
//!   target's build args and secrets and the stages, as `docker buildx build --call=…`.
//! - **Run**: [`ContainerRun`] runs a command in a stored image, like `docker run --rm`;
//!   [`find_or_pull_image`] finds the image for a platform (or pulls it), as [`ImageToRun`].
//! - **Import**: [`Import`] makes a one-layer image from a root filesystem, like `docker
//!   import`, its config edited by `--change` instructions ([`ConfigChanges`]).
//! - **The local store**: [`open_store`] (at [`resolve_store_root`]); [`find_image`] looks an
//!   image up by name or image ID prefix; [`list_images`], [`image_history`],
//!   [`inspect_image`], [`tag_image`], [`untag_images`] and [`prune`] are `kiln images`,
//!   `history`, `inspect`, `tag`, `rmi` and `prune`; [`platforms_of`] lists the platforms a
//!   name holds (one name may hold an index of several); [`save_images`] and [`load_images`]
//!   move images to and from docker-archive or OCI tars ([`ArchiveFormat`]), like `docker
//!   save` and `docker load`.
//! - **Registries**: [`pull_image`], [`push_image`], [`login`] and [`logout`], configured by a
//!   [`ClientConfig`] that carries a [`TransferProgress`] sink.
//! - **Types**: [`oci`] is the image model (`ImageRef`, `Digest`, `Platform`, configs,
//!   manifests, layouts), [`dockerfile`] the Dockerfile frontend (parser, AST, shell expansion).
//!
//! Errors are typed per area ([`BuildError`], [`ImageError`], [`ImportError`],
//! [`RunImageError`]) and name their subject: a path, digest, image, registry or
//! `file:line:col`.
//!
//! ```no_run
//! let outcome = kiln::Builder::new("./app")
//!     .tag("app:dev")
//!     .build(&|event: kiln::Event| eprintln!("{event:?}"))?;
//! println!("{}", outcome.manifest_digest);
//! # Ok::<(), kiln::BuildError>(())
//! ```
//!
//! ```no_run
//! let store = kiln::open_store(None)?;
//! for image in kiln::list_images(&store)? {
//!     println!("{}:{} {}", image.repository, image.tag, image.id);
//! }
//! let history = kiln::image_history(&store, "app:dev")?;
//! println!("{} entries", history.entries.len());
//! # Ok::<(), kiln::ImageError>(())
//! ```
//!
//! An executable that builds Dockerfiles with `RUN` steps, or runs images, is also the
//! sandbox helper: call [`run_sandbox_helper_if_requested`] first thing in `main` (see
//! `examples/embed.rs`).
#![forbid(unsafe_code)]

pub use kiln_build::{
    Annotation, AnnotationError, AnnotationKey, AnnotationLevel, Annotations, ArchiveFormat,
    Attest, AttestError, AttestKind, AttestationError, BlobOutcome, BuildError, BuildOutcome,
    Builder, CacheExport, CacheExportError, CacheLocation, CacheMode, CacheSource, CacheSpecError,
    ChangeError, ClientConfig, ConfigChanges, ContainerRun, ContextSource, ContextStream,
    Direction, Event, EventSink, ExitStatus, ExportOptions, GcOptions, GcReport, HistoryEntry,
    ImageError, ImageHistory, ImageInspection, ImagePlatform, ImageSummary, ImageToRun, Import,
    ImportError, ImportOutcome, ImportOutput, ImportOutputError, ImportStep, LoadedImage,
    LogStream, Network, NetworkDefault, Output, OutputSpec, PlatformImage, ProvenanceAttest,
    ProvenanceMode, PullOutcome, PushOutcome, RunImageError, RunOutcome, SandboxError, SbomAttest,
    ScanStages, SecretSource, SshSource, Store, StoreError, Stream, TransferEvent,
    TransferProgress, Untagged, VerifyReport, default_store_root, describe_platforms, find_image,
    find_or_pull_image, image_history, inspect_image, list_images, load_images, load_images_from,
    login, logout, oci, open_store, platforms_of, prune, pull_image, push_image, registry_host,
    require_image, resolve_store_root, run_sandbox_helper_if_requested, save_images,
    save_images_to, tag_image, untag_images,
};
pub use kiln_build::{
    CallFunction, Check, CheckConfig, CheckError, CheckReport, DockerfileSource, LintReport,
    Outline, OutlineArg, OutlineMount, OutlineReport, Rule, SourceLines, StageTarget,
    TargetsReport,
};
pub use kiln_dockerfile as dockerfile;
