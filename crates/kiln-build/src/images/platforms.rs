//! One image name for one platform: the resolution the build's bases, `kiln run` and `kiln
//! pull` share ([`resolve_platform_image`]), and what a name holds per platform
//! ([`platforms_of`], for `kiln images` and `kiln inspect`).
//!
//! A name points to a manifest or an index. For an index the platform's entry is used when
//! its manifest, config and layers are in the store; when they are not, that platform is
//! pulled by digest from the registry the name came from (its ref's origin), so the name
//! stays on the same index and every pulled platform stays usable. An index without the
//! platform is an error naming the platforms it has. A single manifest is used whatever its
//! platform, with BuildKit's `InvalidBaseImagePlatform` warning when it cannot run as the
//! wanted one.

use kiln_oci::{Descriptor, Digest, ImageIndex, ImageManifest, ImageRef, Platform, ResolvedImage};
use kiln_registry::{PulledImage, RegistryError};
use kiln_store::{RefEntry, Store};

use super::ImageError;

/// When [`resolve_platform_image`] asks the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PullPolicy {
    /// Only for what the store lacks (a name not there, an index's platform not pulled).
    Missing,
    /// Always re-resolve the name against its registry (`--pull`, `kiln pull`).
    Always,
    /// Never: what the store lacks is an error ([`ImageError::PlatformNotPulled`]).
    Never,
}

/// Pulls a reference for a platform into the store (config, layers, manifest and index
/// blobs); the caller's client, runtime and progress.
pub(crate) type RegistryPull<'a> =
    dyn FnMut(&ImageRef, &Platform) -> Result<PulledImage, RegistryError> + 'a;

/// A name's image for one platform, in the store.
#[derive(Debug, Clone)]
pub(crate) struct PlatformImage {
    /// What the name points to: the index, or the manifest itself.
    pub(crate) top: Digest,
    /// The platform's manifest and config.
    pub(crate) image: ResolvedImage,
    /// The pull this resolution made, if any.
    pub(crate) pulled: Option<PulledImage>,
    /// BuildKit's `InvalidBaseImagePlatform` text, when the name is a single manifest whose
    /// config's platform cannot run as the wanted one.
    pub(crate) platform_warning: Option<String>,
}

impl PlatformImage {
    /// Whether nothing was pulled.
    pub(crate) fn was_local(&self) -> bool {
        self.pulled.is_none()
    }
}

/// The image `name` names for `platform`, from the store or pulled through `pull` as
/// `policy` allows (see the module docs). A pulled name is stored with its origin (`name`
/// itself); pulling an index's missing platform leaves the name on that index. `shown`
/// is the name as warnings show it (BuildKit shows the base as written).
pub(crate) fn resolve_platform_image(
    store: &Store,
    name: &ImageRef,
    shown: &str,
    platform: &Platform,
    policy: PullPolicy,
    pull: &mut RegistryPull<'_>,
) -> Result<PlatformImage, ImageError> {
    let entry = match policy {
        PullPolicy::Always => None,
        PullPolicy::Missing | PullPolicy::Never => store.ref_entry(name)?,
    };
    let mut resolved = match entry {
        Some(entry) => from_ref(store, &entry, platform, policy, pull)?,
        None if policy == PullPolicy::Never => {
            return Err(ImageError::NotFound {
                name: name.to_string(),
            });
        }
        None => pull_name(store, name, platform, pull)?,
    };
    resolved.platform_warning = resolved
        .top
        .eq(resolved.image.manifest.digest())
        .then(|| platform_warning(shown, &resolved.image, platform))
        .flatten();
    Ok(resolved)
}

/// BuildKit's `InvalidBaseImagePlatform` warning (dockerfile2llb; lint rule text "Base image
/// %s was pulled with platform %q, expected %q for current build") when `image`'s config
/// says a platform that cannot run as `wanted`. A config without an architecture says
/// nothing.
pub(crate) fn platform_warning(
    shown: &str,
    image: &ResolvedImage,
    wanted: &Platform,
) -> Option<String> {
    let config = image.config.value();
    if config.architecture.is_empty() || config.os.is_empty() {
        return None;
    }
    let actual = config.platform();
    (!wanted.can_run(&actual)).then(|| invalid_base_image_platform(shown, &actual, wanted))
}

/// The text of BuildKit's `InvalidBaseImagePlatform` lint for the image `name` (as the
/// Dockerfile writes it) of platform `actual`, used for `wanted`. (BuildKit's own call passes
/// the two platforms the other way round, so its text reads backwards; this is the rule's
/// documented order: image, actual, expected.)
pub(crate) fn invalid_base_image_platform(
    name: &str,
    actual: &Platform,
    wanted: &Platform,
) -> String {
    format!(
        "InvalidBaseImagePlatform: Base image {name} was pulled with platform \"{actual}\", \
         expected \"{wanted}\" for current build"
    )
}

/// Pulls `name` for `platform` and points it at what the registry served (its index, or
/// the manifest), recording `name` as its origin.
fn pull_name(
    store: &Store,
    name: &ImageRef,
    platform: &Platform,
    pull: &mut RegistryPull<'_>,
) -> Result<PlatformImage, ImageError> {
    let pulled = pull(name, platform).map_err(|source| ImageError::Pull {
        reference: name.clone(),
        source: Box::new(source),
    })?;
    let top = pulled.resolved.index.as_ref().map_or_else(
        || pulled.resolved.manifest.digest.clone(),
        |index| index.digest.clone(),
    );
    store.set_ref_with_origin(&stored_name(name), &top, Some(name))?;
    let image = read_image(store, name, pulled.resolved.digest())?;
    Ok(PlatformImage {
        top,
        image,
        pulled: Some(pulled),
        platform_warning: None,
    })
}

/// The name a pulled image is stored under: `repo:tag`, or the digest reference when there
/// is no tag (a digest is a name of its own).
pub(crate) fn stored_name(reference: &ImageRef) -> ImageRef {
    match reference.tag() {
        Some(tag) => ImageRef::parse(&format!("{}:{tag}", reference.name()))
            .unwrap_or_else(|_| reference.clone()),
        None => reference.clone(),
    }
}

/// The platform's image of the stored ref `entry`.
fn from_ref(
    store: &Store,
    entry: &RefEntry,
    platform: &Platform,
    policy: PullPolicy,
    pull: &mut RegistryPull<'_>,
) -> Result<PlatformImage, ImageError> {
    let name = &entry.name;
    let Some(index) = read_index(store, &entry.digest)? else {
        return Ok(PlatformImage {
            top: entry.digest.clone(),
            image: read_image(store, name, &entry.digest)?,
            pulled: None,
            platform_warning: None,
        });
    };
    let Some(chosen) = index.select_platform(platform) else {
        // An index of indexes (an OCI layout's habit) is left to the general resolver.
        if index.manifests.iter().any(|d| d.media_type.is_index()) {
            let image = store
                .resolve_image(&entry.digest, Some(platform))
                .map_err(|source| ImageError::ReadImage {
                    name: name.to_string(),
                    source: Box::new(source),
                })?;
            return Ok(PlatformImage {
                top: entry.digest.clone(),
                image,
                pulled: None,
                platform_warning: None,
            });
        }
        return Err(ImageError::PlatformNotInIndex {
            name: Box::new(name.clone()),
            platform: Box::new(platform.clone()),
            available: index_platforms(&index),
        });
    };
    if is_complete(store, &chosen.digest) {
        return Ok(PlatformImage {
            top: entry.digest.clone(),
            image: read_image(store, name, &chosen.digest)?,
            pulled: None,
            platform_warning: None,
        });
    }
    let (Some(origin), PullPolicy::Missing | PullPolicy::Always) = (&entry.origin, policy) else {
        return Err(ImageError::PlatformNotPulled {
            name: Box::new(name.clone()),
            platform: Box::new(platform.clone()),
            manifest: Box::new(chosen.digest.clone()),
            origin: entry.origin.clone().map(Box::new),
        });
    };
    // By digest: the registry serves this platform's manifest of the same index, so the name
    // stays on it (its tag may have moved on since).
    let reference = origin.with_digest(chosen.digest.clone());
    let pulled = pull(&reference, platform).map_err(|source| ImageError::Pull {
        reference: reference.clone(),
        source: Box::new(source),
    })?;
    Ok(PlatformImage {
        top: entry.digest.clone(),
        image: read_image(store, name, &chosen.digest)?,
        pulled: Some(pulled),
        platform_warning: None,
    })
}

/// The index `digest` is, or `None` when it is a manifest.
pub(crate) fn read_index(store: &Store, digest: &Digest) -> Result<Option<ImageIndex>, ImageError> {
    let descriptor = store.descriptor_of(digest)?;
    if !descriptor.media_type.is_index() {
        return Ok(None);
    }
    let bytes = store.read_blob(digest)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ImageError::Json {
            what: "index",
            digest: digest.clone(),
            source,
        })
}

/// The manifest `digest` with its config, read from the store.
fn read_image(
    store: &Store,
    name: &ImageRef,
    digest: &Digest,
) -> Result<ResolvedImage, ImageError> {
    store
        .resolve_image(digest, None)
        .map_err(|source| ImageError::ReadImage {
            name: name.to_string(),
            source: Box::new(source),
        })
}

/// Whether the manifest `digest`, its config and its layers are all in the store (layers
/// with `urls`, non-distributable, need not be).
pub(crate) fn is_complete(store: &Store, digest: &Digest) -> bool {
    let Ok(bytes) = store.read_blob(digest) else {
        return false;
    };
    let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) else {
        return false;
    };
    store.has_blob(&manifest.config.digest)
        && manifest
            .layers
            .iter()
            .all(|l| !l.urls.is_empty() || store.has_blob(&l.digest))
}

/// Refuses to `action` (push, save) the name `name` pointing to `digest` when it is an index
/// some of whose manifests (or their blobs) are not in the store, naming their platforms and
/// how to pull them.
pub(crate) fn check_complete(
    store: &Store,
    action: &'static str,
    name: &ImageRef,
    digest: &Digest,
) -> Result<(), ImageError> {
    let Some(index) = read_index(store, digest)? else {
        return Ok(());
    };
    let missing: Vec<String> = index
        .manifests
        .iter()
        .filter(|d| d.media_type.is_manifest() && !is_complete(store, &d.digest))
        .map(|d| {
            d.platform
                .as_ref()
                .map_or_else(|| d.digest.to_string(), ToString::to_string)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let origin = store.ref_entry(name)?.and_then(|entry| entry.origin);
    Err(ImageError::IncompleteIndex {
        action,
        name: Box::new(name.clone()),
        missing,
        origin: origin.map(Box::new),
    })
}

/// The image entries of an index (no attestations, no artifacts), as `os/arch[/variant]`.
fn index_platforms(index: &ImageIndex) -> Vec<String> {
    image_entries(index)
        .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
        .collect()
}

/// An index's entries that are images: manifests, not attestations.
fn image_entries(index: &ImageIndex) -> impl Iterator<Item = &Descriptor> {
    index.manifests.iter().filter(|d| {
        d.media_type.is_manifest()
            && !d
                .annotations
                .contains_key(kiln_oci::ANNOTATION_DOCKER_REFERENCE_TYPE)
    })
}

/// One platform a name holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlatform {
    /// The platform (`linux/arm64`).
    pub platform: Platform,
    /// Its manifest.
    pub manifest: Digest,
    /// Whether its manifest, config and layers are in the local store (an index lists
    /// platforms never pulled).
    pub is_present: bool,
}

/// The platforms the manifest or index `digest` holds: an index's image entries (marked
/// present or not), or a manifest's config platform (none when the config says none).
pub fn platforms_of(store: &Store, digest: &Digest) -> Result<Vec<ImagePlatform>, ImageError> {
    if let Some(index) = read_index(store, digest)? {
        return Ok(image_entries(&index)
            .filter_map(|d| {
                Some(ImagePlatform {
                    platform: d.platform.clone()?,
                    manifest: d.digest.clone(),
                    is_present: is_complete(store, &d.digest),
                })
            })
            .collect());
    }
    let image = store.resolve_image(digest, None)?;
    let config = image.config.value();
    if config.architecture.is_empty() || config.os.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ImagePlatform {
        platform: config.platform(),
        manifest: digest.clone(),
        is_present: true,
    }])
}

/// `linux/amd64, linux/arm64 (not pulled)`: what `kiln images` prints.
pub fn describe_platforms(platforms: &[ImagePlatform]) -> String {
    platforms
        .iter()
        .map(|p| {
            if p.is_present {
                p.platform.to_string()
            } else {
                format!("{} (not pulled)", p.platform)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kiln_oci::{
        Compression, ImageConfiguration, LayerWriter, ManifestFormat, MediaType, assemble_image,
    };

    use super::*;

    fn p(text: &str) -> Platform {
        text.parse().unwrap()
    }

    fn r(text: &str) -> ImageRef {
        ImageRef::parse(text).unwrap()
    }

    /// Stores a one-layer image for `platform` (the layer differs per platform); returns its
    /// manifest descriptor, with the platform.
    fn put_image(store: &Store, platform: &Platform) -> Descriptor {
        let mut tar = tar::Builder::new(Vec::new());
        let body = platform.to_string().into_bytes();
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "platform", &body[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let mut writer = LayerWriter::new(Vec::new(), Compression::None).unwrap();
        std::io::Write::write_all(&mut writer, &tar).unwrap();
        let (blob, digests) = writer.finish().unwrap();
        let layer_digest = store.put_bytes(&blob).unwrap();
        let layer = Descriptor::new(
            MediaType::oci_layer(kiln_oci::LayerCompression::None),
            layer_digest,
            blob.len() as u64,
        );
        let mut config = ImageConfiguration::new(platform);
        config.rootfs.diff_ids = vec![digests.diff_id.clone()];
        let image =
            assemble_image(config, vec![layer], ManifestFormat::Oci, BTreeMap::new()).unwrap();
        store.put_bytes(image.config.bytes()).unwrap();
        store.put_bytes(image.manifest.bytes()).unwrap();
        image.manifest_descriptor().with_platform(platform.clone())
    }

    fn put_index(store: &Store, entries: Vec<Descriptor>) -> Digest {
        let index = ImageIndex::new(entries);
        store
            .put_bytes(&serde_json::to_vec(&index).unwrap())
            .unwrap()
    }

    fn no_registry() -> impl FnMut(&ImageRef, &Platform) -> Result<PulledImage, RegistryError> {
        |reference: &ImageRef, _: &Platform| panic!("no pull expected, got one of {reference}")
    }

    #[test]
    fn an_index_platform_in_the_store_needs_no_registry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = put_image(&store, &p("linux/amd64"));
        let arm = put_image(&store, &p("linux/arm64"));
        let index = put_index(&store, vec![amd.clone(), arm.clone()]);
        store
            .set_ref_with_origin(&r("multi:1"), &index, Some(&r("localhost:5000/multi:1")))
            .unwrap();
        for (platform, want) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
            let found = resolve_platform_image(
                &store,
                &r("multi:1"),
                "multi:1",
                &p(platform),
                PullPolicy::Missing,
                &mut no_registry(),
            )
            .unwrap();
            assert_eq!(found.top, index);
            assert_eq!(found.image.manifest.digest(), &want.digest);
            assert!(found.was_local() && found.platform_warning.is_none());
        }
    }

    #[test]
    fn a_platform_the_index_lacks_is_named_with_those_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = put_image(&store, &p("linux/amd64"));
        let arm = put_image(&store, &p("linux/arm64"));
        let index = put_index(&store, vec![amd, arm]);
        store.set_ref(&r("multi:1"), &index).unwrap();
        let err = resolve_platform_image(
            &store,
            &r("multi:1"),
            "multi:1",
            &p("linux/s390x"),
            PullPolicy::Missing,
            &mut no_registry(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("multi:1")
                && text.contains("linux/s390x")
                && text.contains("linux/amd64, linux/arm64"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_platform_is_pulled_by_digest_from_the_origin_and_the_name_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = put_image(&store, &p("linux/amd64"));
        // The arm64 manifest is listed but its blobs are elsewhere.
        let other = tempfile::tempdir().unwrap();
        let elsewhere = Store::open(other.path()).unwrap();
        let arm = put_image(&elsewhere, &p("linux/arm64"));
        let index = put_index(&store, vec![amd, arm.clone()]);
        let origin = r("localhost:5000/multi:1");
        store
            .set_ref_with_origin(&r("multi:1"), &index, Some(&origin))
            .unwrap();
        let mut asked = Vec::new();
        let err = resolve_platform_image(
            &store,
            &r("multi:1"),
            "multi:1",
            &p("linux/arm64"),
            PullPolicy::Missing,
            &mut |reference: &ImageRef, _: &Platform| {
                asked.push(reference.clone());
                Err(RegistryError::ClientSetup("offline".into()))
            },
        )
        .unwrap_err();
        assert_eq!(asked, [origin.with_digest(arm.digest.clone())]);
        assert!(matches!(err, ImageError::Pull { .. }), "{err:?}");
        assert_eq!(store.resolve_ref(&r("multi:1")).unwrap(), Some(index));
    }

    #[test]
    fn a_missing_platform_of_a_name_made_here_is_not_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = put_image(&store, &p("linux/amd64"));
        let other = tempfile::tempdir().unwrap();
        let arm = put_image(&Store::open(other.path()).unwrap(), &p("linux/arm64"));
        let index = put_index(&store, vec![amd, arm]);
        store.set_ref(&r("local:1"), &index).unwrap();
        let err = resolve_platform_image(
            &store,
            &r("local:1"),
            "local:1",
            &p("linux/arm64"),
            PullPolicy::Missing,
            &mut no_registry(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ImageError::PlatformNotPulled { .. })
                && text.contains("local:1")
                && text.contains("linux/arm64"),
            "{text}"
        );
    }

    #[test]
    fn a_single_manifest_of_another_platform_is_used_with_buildkits_warning() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = put_image(&store, &p("linux/amd64"));
        store.set_ref(&r("onlyamd64"), &amd.digest).unwrap();
        let found = resolve_platform_image(
            &store,
            &r("onlyamd64"),
            "onlyamd64",
            &p("linux/arm64"),
            PullPolicy::Missing,
            &mut no_registry(),
        )
        .unwrap();
        assert_eq!(found.image.manifest.digest(), &amd.digest);
        assert_eq!(
            found.platform_warning.as_deref(),
            Some(
                "InvalidBaseImagePlatform: Base image onlyamd64 was pulled with platform \
                 \"linux/amd64\", expected \"linux/arm64\" for current build"
            )
        );
        let same = resolve_platform_image(
            &store,
            &r("onlyamd64"),
            "onlyamd64",
            &p("linux/386"),
            PullPolicy::Never,
            &mut no_registry(),
        )
        .unwrap();
        assert!(same.platform_warning.is_some());
        let runs = resolve_platform_image(
            &store,
            &r("onlyamd64"),
            "onlyamd64",
            &p("linux/amd64/v3"),
            PullPolicy::Never,
            &mut no_registry(),
        )
        .unwrap();
        assert_eq!(runs.platform_warning, None);
    }

    #[test]
    fn platforms_mark_what_is_not_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = put_image(&store, &p("linux/amd64"));
        let other = tempfile::tempdir().unwrap();
        let arm = put_image(&Store::open(other.path()).unwrap(), &p("linux/arm64"));
        let index = put_index(&store, vec![amd.clone(), arm]);
        let listed = platforms_of(&store, &index).unwrap();
        assert_eq!(
            describe_platforms(&listed),
            "linux/amd64, linux/arm64 (not pulled)"
        );
        assert_eq!(
            describe_platforms(&platforms_of(&store, &amd.digest).unwrap()),
            "linux/amd64"
        );
    }
}
