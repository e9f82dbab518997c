//! Operations on the images of the local store and on registries, as library calls: where the
//! store lives ([`resolve_store_root`], [`open_store`]), one image lookup ([`find_image`]:
//! a name, an image ID prefix), pull-and-name ([`pull_image`]), [`push_image`],
//! [`login`]/[`logout`], [`tag_image`], [`save_images`] and [`load_images`], the listings `kiln images`, `history` and `inspect` print
//! ([`list_images`], [`image_history`], [`inspect_image`]), [`untag_images`] and [`prune`].
//!
//! Each returns typed data and an [`ImageError`] that names its image, registry or path; a
//! front end only renders them (`kiln-cli` is one).

mod archive;
mod history;
mod listing;
mod lookup;
mod platforms;
mod remove;
mod store_root;
mod tag;
mod transfer;

use std::path::PathBuf;

use kiln_oci::{Digest, ImageRef, LayoutError, Platform, ReferenceError};
use kiln_registry::RegistryError;
use kiln_store::StoreError;

pub use archive::{
    ArchiveFormat, LoadedImage, load_images, load_images_from, save_images, save_images_to,
};
pub use history::{HistoryEntry, ImageHistory, image_history};
pub use listing::{ImageInspection, ImageSummary, inspect_image, list_images};
pub use lookup::{find_image, parse_image_name, require_image};
pub use platforms::{ImagePlatform, describe_platforms, platforms_of};
pub(crate) use platforms::{
    PullPolicy, invalid_base_image_platform, read_index, resolve_platform_image,
};
pub use remove::{Untagged, prune, untag_images};
pub use store_root::{open_store, resolve_store_root};
pub use tag::tag_image;
pub use transfer::{
    PullOutcome, PushOutcome, login, logout, pull_image, push_image, registry_host, without_echo,
};
pub(crate) use transfer::{pull_outcome, registry_pull};

/// Why an image operation failed. Each variant names its subject; the cause, when there is
/// one, is its [`source`](std::error::Error::source) (boxed: store and registry errors are
/// large).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No `--root`, `KILN_ROOT`, `XDG_DATA_HOME` or `HOME` says where the store is.
    #[error("cannot find a place for the kiln store: set KILN_ROOT or HOME, or pass --root")]
    NoStoreRoot,
    /// The store at `root` could not be opened (or created).
    #[error("opening the kiln store at {}", root.display())]
    OpenStore {
        /// The store's directory.
        root: PathBuf,
        /// What failed (boxed: store errors are large).
        #[source]
        source: Box<StoreError>,
    },
    /// The text is neither a valid image name nor an image ID.
    #[error("image name `{text}`")]
    InvalidName {
        /// The text as given.
        text: String,
        /// Why it is not a reference.
        #[source]
        source: ReferenceError,
    },
    /// No image of that name or ID is in the local store.
    #[error("no such image: `{name}` not found in the local store (see `kiln images`)")]
    NotFound {
        /// The name (normalized when it parses) or ID prefix.
        name: String,
    },
    /// An image ID prefix matches two different images.
    #[error("image ID prefix `{prefix}` is ambiguous: it matches {first} and {second}")]
    AmbiguousId {
        /// The prefix as given.
        prefix: String,
        /// One matching image ID.
        first: Digest,
        /// Another matching image ID.
        second: Digest,
    },
    /// `push` of a name that is not in the local store.
    #[error("no local image named {name} (see `kiln images`)")]
    NoLocalImage {
        /// The name.
        name: ImageRef,
        /// The store's answer.
        #[source]
        source: Box<StoreError>,
    },
    /// The name is an index without an image for the platform.
    #[error(
        "image {name} has no variant for platform {platform}; it has: {}; choose one of \
         them with --platform",
        list_or_none(available)
    )]
    PlatformNotInIndex {
        /// The name.
        name: Box<ImageRef>,
        /// The platform asked for.
        platform: Box<Platform>,
        /// The platforms its index lists.
        available: Vec<String>,
    },
    /// The name's index lists the platform, but its manifest or blobs are not in the store,
    /// and may not (or cannot) be pulled.
    #[error(
        "image {name} lists platform {platform} (manifest {manifest}), but it is not in the \
         local store{}",
        match origin {
            Some(origin) => format!("; pull it with `kiln pull --platform {platform} {origin}`"),
            None => format!(
                " and {name} was not pulled from a registry; import or build it for \
                 {platform} again"
            ),
        }
    )]
    PlatformNotPulled {
        /// The name.
        name: Box<ImageRef>,
        /// The platform asked for.
        platform: Box<Platform>,
        /// Its manifest in the index.
        manifest: Box<Digest>,
        /// Where the name was pulled from, if it was.
        origin: Option<Box<ImageRef>>,
    },
    /// `push` or an OCI `save` of an index some of whose platforms are not in the local
    /// store.
    #[error(
        "cannot {action} {name}: its index lists {} not in the local store ({}); pull them \
         first (`kiln pull --platform {} {}`)",
        if missing.len() == 1 { "a platform" } else { "platforms" },
        missing.join(", "),
        missing.join(","),
        origin.as_ref().map_or_else(|| name.to_string(), ToString::to_string)
    )]
    IncompleteIndex {
        /// `push` or `save`.
        action: &'static str,
        /// The local name.
        name: Box<ImageRef>,
        /// The platforms (`os/arch`, or the manifest digest when an entry has none).
        missing: Vec<String>,
        /// Where the name was pulled from, if it was.
        origin: Option<Box<ImageRef>>,
    },
    /// An image in the store could not be read.
    #[error("reading image {name}")]
    ReadImage {
        /// The image as named by the caller.
        name: String,
        /// What failed.
        #[source]
        source: Box<StoreError>,
    },
    /// A stored manifest or config is not JSON.
    #[error("parsing {what} {digest}")]
    Json {
        /// `manifest` or `config`.
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A layer's size could not be measured (`history`).
    #[error("measuring layer {layer} of {image}")]
    LayerSize {
        /// The image as named by the caller.
        image: String,
        /// The layer blob.
        layer: Digest,
        /// What failed (the message names the path or blob).
        #[source]
        source: std::io::Error,
    },
    /// The registry refused or failed a pull.
    #[error("pulling {reference}")]
    Pull {
        /// The reference pulled.
        reference: ImageRef,
        /// What failed.
        #[source]
        source: Box<RegistryError>,
    },
    /// The layers a `-t` build kept uncompressed (their snapshots stand for them) could not
    /// be compressed for `action` (`push`, `save`).
    #[error("compressing the layers of {name} to {action} it")]
    CompressLayers {
        /// The local image.
        name: String,
        /// What needed the blobs.
        action: &'static str,
        /// What failed.
        #[source]
        source: Box<crate::engine::ExportError>,
    },
    /// The registry refused or failed a push.
    #[error("pushing {name}")]
    Push {
        /// The local image pushed.
        name: ImageRef,
        /// What failed.
        #[source]
        source: Box<RegistryError>,
    },
    /// The registry refused the credentials (or could not be reached).
    #[error("logging in to {registry}")]
    Login {
        /// The registry host.
        registry: String,
        /// What failed.
        #[source]
        source: Box<RegistryError>,
    },
    /// `login` with an empty user name or password.
    #[error("user name and password for {registry} must not be empty")]
    EmptyCredentials {
        /// The registry host.
        registry: String,
    },
    /// The registry client could not be set up, or docker's config file read or written.
    #[error(transparent)]
    Registry(Box<RegistryError>),
    /// The async runtime for network transfers could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// An image tar could not be written (`save`).
    #[error("saving images to {dest}")]
    Save {
        /// The file, or `standard output`.
        dest: String,
        /// What failed.
        #[source]
        source: Box<LayoutError>,
    },
    /// An image tar could not be read (`load`).
    #[error("loading images from {file}")]
    Load {
        /// The file, or `standard input`.
        file: String,
        /// What failed.
        #[source]
        source: Box<LayoutError>,
    },
    /// A member of an image tar could not be read (`load`).
    #[error("loading images from {file}: reading `{member}`")]
    LoadRead {
        /// The file, or `standard input`.
        file: String,
        /// The member of the tar.
        member: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A blob of an image tar could not be stored, or did not match its digest (`load`).
    #[error("loading images from {file}: blob {digest}")]
    LoadBlob {
        /// The file, or `standard input`.
        file: String,
        /// The blob.
        digest: Digest,
        /// What failed (a digest or size mismatch: the archive is corrupt).
        #[source]
        source: Box<StoreError>,
    },
    /// A legacy docker-archive layer does not match its config's `diff_ids` (`load`).
    #[error(
        "loading images from {file}: layer `{member}` is {actual}, but its config says \
         {expected}; the archive is corrupt"
    )]
    LayerMismatch {
        /// The file, or `standard input`.
        file: String,
        /// The layer member of the tar.
        member: String,
        /// The config's diff ID.
        expected: Digest,
        /// The uncompressed layer's digest.
        actual: Digest,
    },
    /// An image tar names an image with something that is not an image name (`load`).
    #[error("loading images from {file}: `{name}` is not an image name")]
    ArchiveName {
        /// The file, or `standard input`.
        file: String,
        /// The name as recorded.
        name: String,
        /// Why it is not a reference.
        #[source]
        source: ReferenceError,
    },
    /// A store operation failed (the store's error names its path or digest).
    #[error(transparent)]
    Store(Box<StoreError>),
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

impl From<StoreError> for ImageError {
    fn from(err: StoreError) -> Self {
        Self::Store(Box::new(err))
    }
}

impl From<RegistryError> for ImageError {
    fn from(err: RegistryError) -> Self {
        Self::Registry(Box::new(err))
    }
}
