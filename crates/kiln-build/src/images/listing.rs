//! What `kiln images` and `kiln inspect` show: the store's named images with their IDs,
//! creation times and sizes, and one image's manifest and config.

use kiln_oci::{Digest, ImageRef};
use kiln_store::{Store, StoreError};

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
    /// Why the image could not be read (the name is still listed).
    pub problem: Option<StoreError>,
}

/// The store's named images, sorted by name. An image that cannot be read is listed with its
/// [`ImageSummary::problem`] instead of failing the listing.
pub fn list_images(store: &Store) -> Result<Vec<ImageSummary>, ImageError> {
    let mut images = Vec::new();
    for entry in store.list_refs()? {
        let (id, created, size, problem) = match store.resolve_image(&entry.digest, None) {
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
            problem,
        });
    }
    Ok(images)
}

/// One image's manifest and config, as `docker inspect` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInspection {
    /// The name as asked for (normalized when it is a name).
    pub name: String,
    /// The image ID (config digest).
    pub id: Digest,
    /// The manifest (or index) digest.
    pub digest: Digest,
    /// The manifest as stored.
    pub manifest: serde_json::Value,
    /// The config as stored.
    pub config: serde_json::Value,
}

/// The manifest and config of the local image `text` (a name or an image ID prefix).
pub fn inspect_image(store: &Store, text: &str) -> Result<ImageInspection, ImageError> {
    let digest = require_image(store, text)?;
    let image = store.resolve_image(&digest, None)?;
    let manifest =
        serde_json::from_slice(image.manifest.bytes()).map_err(|source| ImageError::Json {
            what: "manifest",
            digest: image.manifest.digest().clone(),
            source,
        })?;
    let config =
        serde_json::from_slice(image.config.bytes()).map_err(|source| ImageError::Json {
            what: "config",
            digest: image.config.digest().clone(),
            source,
        })?;
    let name = ImageRef::parse(text).map_or_else(|_| text.to_owned(), |name| name.to_string());
    Ok(ImageInspection {
        name,
        id: image.config.digest().clone(),
        digest,
        manifest,
        config,
    })
}
