//! What `kiln images` and `kiln inspect` show: the store's named images with their IDs,
//! creation times, sizes and platforms, and one image's manifest and config (one platform's
//! of an index, or the index itself).

use kiln_oci::{Digest, ImageRef, Platform};
use kiln_registry::RegistryError;
use kiln_store::{Store, StoreError};

use super::platforms::{
    ImagePlatform, PullPolicy, platform_warning, platforms_of, read_index, resolve_platform_image,
};
use super::{ImageError, require_image};

/// One named image of the local store, as `docker images` lists it.
#[derive(Debug)]
pub struct ImageSummary {
    /// The full name (`docker.io/library/busybox:latest`).
    pub name: ImageRef,
    /// The familiar repository (`busybox`, `ghcr.io/owner/app`).
    pub repository: String,
    /// The tag, or `<none>` for a name that pins only a digest.
    pub tag: String,
    /// The manifest (or index) digest the name points to.
    pub digest: Digest,
    /// The image ID (config digest); the manifest digest when the image cannot be read.
    pub id: Digest,
    /// RFC 3339 creation time, when the config records one.
    pub created: Option<String>,
    /// Manifest + config + compressed layers, in bytes (0 when the image cannot be read).
    pub size: u64,
    /// The platforms the name holds: an index's entries (marked when not in the store), or
    /// the image's own; empty when its config names none.
    pub platforms: Vec<ImagePlatform>,
    /// Why the image could not be read (the name is still listed).
    pub problem: Option<StoreError>,
}

/// The store's named images, sorted by name. An image that cannot be read is listed with its
/// [`ImageSummary::problem`] instead of failing the listing.
pub fn list_images(store: &Store) -> Result<Vec<ImageSummary>, ImageError> {
    let mut images = Vec::new();
    for entry in store.list_refs()? {
        let platforms = platforms_of(store, &entry.digest).unwrap_or_default();
        // An index is shown by the host's image, else by the first of its platforms pulled.
        let shown = store.resolve_image(&entry.digest, None).or_else(|err| {
            platforms
                .iter()
                .find(|p| p.is_present)
                .map_or(Err(err), |p| store.resolve_image(&p.manifest, None))
        });
        let (id, created, size, problem) = match shown {
            Ok(image) => {
                let layers: u64 = image.manifest.value().layers.iter().map(|l| l.size).sum();
                let size = image.config.size() + image.manifest.size() + layers;
                (
                    image.config.digest().clone(),
                    image.config.value().created.clone(),
                    size,
                    None,
                )
            }
            Err(err) => (entry.digest.clone(), None, 0, Some(err)),
        };
        let familiar = entry.name.familiar();
        let without_digest = familiar.split('@').next().unwrap_or(&familiar);
        let (repository, tag) = match entry.name.tag() {
            Some(tag) => (
                without_digest
                    .strip_suffix(&format!(":{tag}"))
                    .unwrap_or(without_digest)
                    .to_owned(),
                tag.to_owned(),
            ),
            None => (without_digest.to_owned(), "<none>".to_owned()),
        };
        images.push(ImageSummary {
            name: entry.name,
            repository,
            tag,
            digest: entry.digest,
            id,
            created,
            size,
            platforms,
            problem,
        });
    }
    Ok(images)
}

/// One image's manifest and config, as `docker inspect` shows them; for an index asked for
/// without a platform, the index and its platforms.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInspection {
    /// The name as asked for (normalized when it is a name).
    pub name: String,
    /// The image ID (config digest); `None` for an index shown whole.
    pub id: Option<Digest>,
    /// The manifest digest (the index's when it is shown whole).
    pub digest: Digest,
    /// The manifest as stored; `None` for an index shown whole.
    pub manifest: Option<serde_json::Value>,
    /// The config as stored; `None` for an index shown whole.
    pub config: Option<serde_json::Value>,
    /// The index the name points to, as stored, with its digest.
    pub index: Option<(Digest, serde_json::Value)>,
    /// The platform of the image shown (its config's); `None` for an index shown whole.
    pub platform: Option<Platform>,
    /// The platforms the name holds (see [`ImageSummary::platforms`]).
    pub platforms: Vec<ImagePlatform>,
    /// BuildKit's `InvalidBaseImagePlatform` text when a platform was asked for and the name
    /// is a single image that cannot run as it.
    pub platform_warning: Option<String>,
}

/// The local image `text` (a name or an image ID prefix): for `platform`, its variant of an
/// index (an error naming the platforms it has, or saying how to pull a listed one); with no
/// platform, the image, or an index with its platforms. The store only: nothing is pulled.
pub fn inspect_image(
    store: &Store,
    text: &str,
    platform: Option<&Platform>,
) -> Result<ImageInspection, ImageError> {
    let top = require_image(store, text)?;
    let name = ImageRef::parse(text).map_or_else(|_| text.to_owned(), |name| name.to_string());
    let platforms = platforms_of(store, &top)?;
    let index = read_index(store, &top)?
        .map(|_| json_of(store, &top, "index").map(|json| (top.clone(), json)))
        .transpose()?;
    let (image, platform_warning) = match (platform, &index) {
        (None, Some(_)) => {
            return Ok(ImageInspection {
                name,
                id: None,
                digest: top,
                manifest: None,
                config: None,
                index,
                platform: None,
                platforms,
                platform_warning: None,
            });
        }
        (None, None) => (store.resolve_image(&top, None)?, None),
        (Some(platform), _) => match ImageRef::parse(text) {
            Ok(reference) if store.resolve_ref(&reference)?.as_ref() == Some(&top) => {
                let found = resolve_platform_image(
                    store,
                    &reference,
                    text,
                    platform,
                    PullPolicy::Never,
                    &mut |_: &ImageRef, _: &Platform| {
                        Err(RegistryError::ClientSetup("inspect never pulls".to_owned()))
                    },
                )?;
                (found.image, found.platform_warning)
            }
            // An image ID prefix: the image (or index) it names, resolved to the platform.
            _ => {
                let image = store.resolve_image(&top, Some(platform))?;
                let warning = index
                    .is_none()
                    .then(|| platform_warning(text, &image, platform))
                    .flatten();
                (image, warning)
            }
        },
    };
    let config_platform = {
        let config = image.config.value();
        (!config.architecture.is_empty() && !config.os.is_empty()).then(|| config.platform())
    };
    Ok(ImageInspection {
        name,
        id: Some(image.config.digest().clone()),
        digest: image.manifest.digest().clone(),
        manifest: Some(json_of(store, image.manifest.digest(), "manifest")?),
        config: Some(json_of(store, image.config.digest(), "config")?),
        index,
        platform: config_platform,
        platforms,
        platform_warning,
    })
}

/// The stored JSON blob `digest` (`what` names it in errors).
fn json_of(
    store: &Store,
    digest: &Digest,
    what: &'static str,
) -> Result<serde_json::Value, ImageError> {
    serde_json::from_slice(&store.read_blob(digest)?).map_err(|source| ImageError::Json {
        what,
        digest: digest.clone(),
        source,
    })
}
