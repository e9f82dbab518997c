//! Registry transfers of the local store's images: [`pull_image`] (pull, then name the image),
//! [`push_image`] (with cross-repository mount hints), and [`login`]/[`logout`] against docker's
//! credential store. The caller's [`ClientConfig`] carries the connection options and the
//! progress sink.

use std::path::PathBuf;

use kiln_oci::{Digest, ImageRef, Platform};
use kiln_registry::{Client, ClientConfig, Credentials, DockerConfig, PulledImage, RegistryError};
use kiln_store::{LockMode, Store};

use super::ImageError;
use super::platforms::{
    PlatformImage, PullPolicy, check_complete, resolve_platform_image, stored_name,
};

/// What [`pull_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    /// The image manifest digest (for this platform when the reference names an index).
    pub digest: Digest,
    /// What the name now points to: the registry's index when it served one (every
    /// platform pulled before stays usable under the name), else `digest`.
    pub top: Digest,
    /// The name the image was stored under: `repo:tag` when the reference has a tag (a
    /// digest next to it is dropped), else the digest reference itself.
    pub name: ImageRef,
    /// Blobs downloaded.
    pub blobs_downloaded: usize,
    /// Blobs the store already had.
    pub blobs_present: usize,
    /// Bytes received for blobs.
    pub bytes_downloaded: u64,
    /// BuildKit's `InvalidBaseImagePlatform` text when the registry served a single manifest
    /// whose config's platform cannot run as the one asked for.
    pub platform_warning: Option<String>,
}

/// What [`push_image`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The manifest (or index) digest pushed.
    pub digest: Digest,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Bytes sent for blobs.
    pub bytes_uploaded: u64,
    /// Blobs the registry already had.
    pub blobs_present: usize,
    /// Blobs mounted from another repository of the registry.
    pub blobs_mounted: usize,
}

/// Pulls `reference` for `platform` into `store` (holding the store's shared lock, so a
/// `prune` waits) and names it (see [`PullOutcome::name`]), always asking the registry, as
/// `docker pull` does. When the registry serves an index the name points to it, so pulling
/// a second platform of the same image keeps the first. `config` carries the connection
/// options and progress sink.
pub fn pull_image(
    store: &Store,
    reference: &ImageRef,
    platform: &Platform,
    config: ClientConfig,
) -> Result<PullOutcome, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let mut pull = registry_pull(store, config);
    let found = resolve_platform_image(
        store,
        reference,
        &reference.familiar(),
        platform,
        PullPolicy::Always,
        &mut pull,
    )?;
    Ok(pull_outcome(reference, &found))
}

/// A [`RegistryPull`](super::platforms::RegistryPull) into `store` with a client of
/// `config`; the client and its runtime are made by the first pull, so a resolution the
/// store answers starts neither.
pub(crate) fn registry_pull(
    store: &Store,
    config: ClientConfig,
) -> impl FnMut(&ImageRef, &Platform) -> Result<PulledImage, RegistryError> {
    let mut config = Some(config);
    let mut connection: Option<(Client, tokio::runtime::Runtime)> = None;
    move |reference: &ImageRef, platform: &Platform| {
        let (client, runtime) = match &mut connection {
            Some(made) => &*made,
            slot @ None => {
                let client = Client::new(config.take().unwrap_or_default())?;
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        RegistryError::ClientSetup(format!("starting the async runtime: {e}"))
                    })?;
                &*slot.insert((client, runtime))
            }
        };
        runtime.block_on(client.pull_image(reference, platform, store))
    }
}

/// What a resolution that pulled `reference` did, as [`PullOutcome`].
pub(crate) fn pull_outcome(reference: &ImageRef, found: &PlatformImage) -> PullOutcome {
    let (downloaded, present, bytes) = found.pulled.as_ref().map_or((0, 0, 0), |p| {
        (p.blobs_downloaded, p.blobs_present, p.bytes_downloaded)
    });
    PullOutcome {
        digest: found.image.manifest.digest().clone(),
        top: found.top.clone(),
        name: stored_name(reference),
        blobs_downloaded: downloaded,
        blobs_present: present,
        bytes_downloaded: bytes,
        platform_warning: found.platform_warning.clone(),
    }
}

/// Pushes the local image `name` (a name in the store, or a reference pinning a digest) to
/// each of `targets` (the manifest exactly as stored, so the registry's digest equals the
/// local one — except for an image a `-t` build kept with uncompressed layers, which gets
/// its compressed manifest here, and the name points to that afterwards), holding the
/// store's shared lock.
///
/// Local images named after a repository of a target registry probably have their blobs
/// there (they were pulled from it, or pushed): those repositories are offered as mount
/// sources, so a push of an image built on a base from the same registry mounts the base
/// layers. A wrong guess costs nothing: the registry answers with a normal upload session.
pub fn push_image(
    store: &Store,
    name: &ImageRef,
    targets: &[ImageRef],
    config: ClientConfig,
) -> Result<PushOutcome, ImageError> {
    let _lock = store.lock(LockMode::Shared)?;
    let digest = match name.digest() {
        Some(digest) => digest.clone(),
        None => store
            .require_ref(name)
            .map_err(|source| ImageError::NoLocalImage {
                name: name.clone(),
                source: Box::new(source),
            })?,
    };
    // An image a `-t` build kept with uncompressed layers is pushed as docker pushes its
    // store's images: its layers compressed now, under a manifest made for them.
    let digest = crate::engine::compress_stored_image(store, &digest).map_err(|source| {
        ImageError::CompressLayers {
            name: name.to_string(),
            action: "push",
            source: Box::new(source),
        }
    })?;
    // Before anything is uploaded: a registry would get the manifests that are here, and
    // then refuse the index.
    check_complete(store, "push", name, &digest)?;
    let client = Client::new(config)?;
    record_mount_hints(&client, store, targets);
    let pushed = runtime()?
        .block_on(client.push_image(store, &digest, targets))
        .map_err(|source| ImageError::Push {
            name: name.clone(),
            source: Box::new(source),
        })?;
    Ok(PushOutcome {
        digest,
        blobs_uploaded: pushed.blobs_uploaded,
        bytes_uploaded: pushed.bytes_uploaded,
        blobs_present: pushed.blobs_present,
        blobs_mounted: pushed.blobs_mounted,
    })
}

fn record_mount_hints(client: &Client, store: &Store, targets: &[ImageRef]) {
    let Ok(refs) = store.list_refs() else { return };
    for entry in refs {
        let is_same_registry = targets
            .iter()
            .any(|t| t.registry() == entry.name.registry());
        if !is_same_registry {
            continue;
        }
        let Ok(image) = store.resolve_image(&entry.digest, None) else {
            continue;
        };
        let registry = entry.name.registry();
        let repository = entry.name.repository();
        let manifest = image.manifest.value();
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            client.record_blob_origin(registry, repository, &descriptor.digest);
        }
    }
}

/// The registry host `docker login` means by `arg`: the host part of a URL, Docker Hub for
/// none or one of its aliases.
pub fn registry_host(arg: Option<&str>) -> String {
    let Some(text) = arg else {
        return kiln_oci::DOCKER_HUB.to_owned();
    };
    let stripped = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = stripped.split('/').next().unwrap_or(stripped);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            kiln_oci::DOCKER_HUB.to_owned()
        }
        other => other.to_owned(),
    }
}

/// Checks `username`/`password` against `registry` (docker config credentials ignored), then
/// saves them in docker's config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`,
/// through its credential helper when one is configured), so docker, skopeo and kiln share
/// one login. Returns the config file's path.
pub fn login(
    registry: &str,
    username: &str,
    password: &str,
    config: ClientConfig,
) -> Result<PathBuf, ImageError> {
    if username.is_empty() || password.is_empty() {
        return Err(ImageError::EmptyCredentials {
            registry: registry.to_owned(),
        });
    }
    let credentials = Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    };
    let config = config
        .without_docker_config()
        .credentials(registry.to_owned(), credentials);
    let client = Client::new(config)?;
    runtime()?
        .block_on(client.check_login(registry))
        .map_err(|source| ImageError::Login {
            registry: registry.to_owned(),
            source: Box::new(source),
        })?;
    let mut docker_config = DockerConfig::load_default()?;
    docker_config.store(registry, username, password)?;
    Ok(docker_config.path().to_owned())
}

/// Removes the saved credentials of `registry` from docker's config; returns whether there
/// were any.
pub fn logout(registry: &str) -> Result<bool, ImageError> {
    let mut docker_config = DockerConfig::load_default()?;
    Ok(docker_config.erase(registry)?)
}

/// Runs `read` with the terminal on standard input not echoing what is typed (a password
/// prompt), restoring the terminal afterwards, even when `read` fails. An error reading or
/// restoring the terminal's settings is returned; `read`'s own result is the `Ok` value.
pub fn without_echo<T>(read: impl FnOnce() -> T) -> std::io::Result<T> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let result = read();
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    Ok(result)
}

/// The tokio runtime a transfer runs on.
fn runtime() -> Result<tokio::runtime::Runtime, ImageError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ImageError::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_like_docker_login() {
        assert_eq!(registry_host(None), "docker.io");
        assert_eq!(
            registry_host(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_host(Some("localhost:5000")), "localhost:5000");
        assert_eq!(registry_host(Some("https://ghcr.io")), "ghcr.io");
    }

    #[test]
    fn pulled_images_are_named_by_their_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let tagged = ImageRef::parse(&format!("localhost:5000/x:1@{digest}")).unwrap();
        assert_eq!(stored_name(&tagged).to_string(), "localhost:5000/x:1");
        let pinned = ImageRef::parse(&format!("localhost:5000/x@{digest}")).unwrap();
        assert_eq!(stored_name(&pinned), pinned);
        let plain = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            stored_name(&plain).to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn empty_credentials_are_refused_before_any_request() {
        let err = login("localhost:1", "", "pw", ClientConfig::new()).unwrap_err();
        assert!(
            err.to_string().contains("must not be empty")
                && err.to_string().contains("localhost:1"),
            "{err}"
        );
    }
}
