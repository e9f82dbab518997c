//! Running a command in a stored image, like `docker run` (`kiln run`): the image's
//! snapshots as read-only lowers, a fresh upperdir in the store's `tmp/` that is removed
//! afterwards, and the image config applied with docker's rules.
//!
//! [`ContainerRun`] holds the `docker run` flags; [`ContainerRun::argv`] and
//! [`ContainerRun::environment`] are the pure config merge (unit-tested), and
//! [`ContainerRun::run`] does the I/O through `kiln-store` and `kiln-sandbox`.
//! [`find_or_pull_image`] finds the image to run for a platform with the resolution builds
//! and `kiln pull` share (an index's variant from the store, else pulled), or by image ID
//! ([`find_image`](crate::find_image)).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_oci::{ContainerConfig, Digest, ImageRef, Platform, ResolvedImage};
use kiln_registry::ClientConfig;
use kiln_sandbox::{CancelToken, Network, RunOutcome, RunSpec, Sandbox, SandboxConfig, Stream};

use crate::IsolationMode;
use kiln_store::{LockMode, Store, StoreError};

use crate::images::{
    ImageError, PullOutcome, PullPolicy, find_image, parse_image_name, pull_outcome, registry_pull,
    resolve_platform_image,
};

/// Hex characters of a container ID used as its default hostname (docker's short ID).
const SHORT_ID_LEN: usize = 12;

/// Why [`ContainerRun::run`] could not run the command (a command that ran and failed is an
/// `Ok` outcome with its exit status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunImageError {
    /// Neither the image nor the caller gave a command.
    #[error(
        "no command specified: image {image} has no Entrypoint or Cmd; give a command after \
         the image name"
    )]
    NoCommand {
        /// The image's config digest.
        image: Digest,
    },
    /// The store could not provide the image's snapshots or be locked.
    #[error("preparing image {image} in the store: {source}")]
    Store {
        /// The image's config digest.
        image: Digest,
        /// What failed (boxed: store errors are large).
        source: Box<StoreError>,
    },
    /// The scratch directory (upperdir and workdir) could not be created.
    #[error("creating the container's scratch directory: {source}")]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The image is for a platform this host cannot run, and no emulator runs it.
    #[error("image {image} is for {platform}, which needs an emulator: {source}")]
    NoEmulator {
        /// The image's config digest.
        image: Digest,
        /// Its platform.
        platform: String,
        /// What the binfmt_misc check found.
        source: Box<kiln_sandbox::EmulationError>,
    },
    /// The sandbox failed to start, run or finish the command.
    #[error(transparent)]
    Sandbox(#[from] kiln_sandbox::SandboxError),
}

/// The flags of one `docker run`-style invocation; build it, then [`run`](Self::run) it on
/// a resolved image.
///
/// ```
/// use kiln_build::ContainerRun;
/// use kiln_oci::ContainerConfig;
///
/// let config = ContainerConfig {
///     entrypoint: vec!["/bin/sh".into(), "-c".into()],
///     cmd: vec!["echo hi".into()],
///     ..ContainerConfig::default()
/// };
/// let run = ContainerRun::new().cmd(["id -u"]);
/// assert_eq!(run.argv(&config).unwrap(), ["/bin/sh", "-c", "id -u"]);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a ContainerRun does nothing until `run` is called"]
pub struct ContainerRun {
    cmd: Vec<String>,
    entrypoint: Option<String>,
    env: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
    hostname: Option<String>,
    network: Network,
    isolation: IsolationMode,
    extra_hosts: Vec<(String, String)>,
    ulimits: Vec<crate::Ulimit>,
    shm_size: Option<u64>,
    timeout: Option<Duration>,
    cancel: Option<CancelToken>,
    sandbox_helper: Option<PathBuf>,
}

impl ContainerRun {
    /// Runs the image's own Entrypoint + Cmd as its User in its WorkingDir, on the host
    /// network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arguments after the image name: they replace the image's Cmd (an empty list keeps it).
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// `--entrypoint`: replaces the image's Entrypoint and drops its Cmd; an empty string
    /// clears the Entrypoint.
    pub fn entrypoint(mut self, entrypoint: impl Into<String>) -> Self {
        self.entrypoint = Some(entrypoint.into());
        self
    }

    /// `-e KEY=VALUE`: overrides (or adds) one variable of the image's Env.
    pub fn env(mut self, key_value: impl Into<String>) -> Self {
        self.env.push(key_value.into());
        self
    }

    /// `-u USER`: `name`, `uid`, `name:group` or `uid:gid`, resolved in the image.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// `-w DIR`: the working directory (created when missing).
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// `--hostname`: default is a fresh 12-hex-digit container ID, as docker does.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// `--isolation`: as for a build, `auto` (the default) probes the host and falls back to
    /// chroot isolation where the namespace sandbox cannot start; the fallback's reason is
    /// then the first of the outcome's `notices`.
    pub fn isolation(mut self, isolation: IsolationMode) -> Self {
        self.isolation = isolation;
        self
    }

    /// `--add-host HOST:IP`: an `/etc/hosts` entry.
    pub fn add_host(mut self, host: impl Into<String>, address: std::net::IpAddr) -> Self {
        self.extra_hosts.push((host.into(), address.to_string()));
        self
    }

    /// `--ulimit`: a resource limit for the command.
    pub fn ulimit(mut self, ulimit: crate::Ulimit) -> Self {
        self.ulimits.retain(|u| u.name != ulimit.name);
        self.ulimits.push(ulimit);
        self
    }

    /// `--shm-size`: the size of `/dev/shm` in bytes (default 64 MiB).
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.shm_size = Some(bytes);
        self
    }

    /// `--network host|none`.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Kills the command (and everything it started) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A token that kills the command when cancelled (e.g. on Ctrl-C).
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// The executable re-run as the sandbox helper (default: the current one).
    pub fn sandbox_helper(mut self, exe: impl Into<PathBuf>) -> Self {
        self.sandbox_helper = Some(exe.into());
        self
    }

    /// The command line docker would run: Entrypoint + Cmd, where arguments replace Cmd and
    /// `--entrypoint` replaces Entrypoint and resets Cmd (moby `daemon.merge` and the CLI's
    /// `--entrypoint ""` meaning "none"). `None` when both end up empty.
    pub fn argv(&self, config: &ContainerConfig) -> Option<Vec<String>> {
        let (entrypoint, image_cmd): (Vec<String>, &[String]) = match &self.entrypoint {
            Some(e) if e.is_empty() => (Vec::new(), &[]),
            Some(e) => (vec![e.clone()], &[]),
            None => (config.entrypoint.clone(), &config.cmd),
        };
        let cmd = if self.cmd.is_empty() {
            image_cmd
        } else {
            &self.cmd
        };
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd.iter().cloned()).collect();
        (!argv.is_empty()).then_some(argv)
    }

    /// The command's environment: `HOSTNAME`, then the image's Env with `-e` overrides
    /// applied by name (docker keeps the image's order and appends new names).
    pub fn environment(&self, config: &ContainerConfig, hostname: &str) -> Vec<String> {
        let mut env = vec![format!("HOSTNAME={hostname}")];
        for entry in config.env.iter().chain(&self.env) {
            let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
            {
                Some(existing) => existing.clone_from(entry),
                None => env.push(entry.clone()),
            }
        }
        env
    }

    /// Runs the command in `image` (from `store`), passing each output line to `on_output`.
    /// The image's layers are unpacked as snapshots when missing; the container's upperdir
    /// lives in the store's `tmp/` and is removed on every exit path.
    pub fn run(
        &self,
        store: &Store,
        image: &ResolvedImage,
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<RunOutcome, RunImageError> {
        let config = &image.config.value().config;
        let image_id = image.config.digest();
        let store_err = |source| RunImageError::Store {
            image: image_id.clone(),
            source: Box::new(source),
        };
        let argv = self.argv(config).ok_or_else(|| RunImageError::NoCommand {
            image: image_id.clone(),
        })?;
        // A foreign image runs through the kernel's binfmt_misc emulator: checked first, so a
        // host without one gets the fix, not "exec format error".
        let platform = image.config.value().platform().normalized();
        if kiln_sandbox::needs_emulation(&Platform::host(), &platform) {
            let binfmt = crate::engine::binfmt_dir_from_env();
            kiln_sandbox::find_emulator(&platform, &binfmt).map_err(|source| {
                RunImageError::NoEmulator {
                    image: image_id.clone(),
                    platform: platform.to_string(),
                    source: Box::new(source),
                }
            })?;
        }
        // Shared, like a build: GC (exclusive) cannot remove the snapshots under us.
        let _lock = store.lock(LockMode::Shared).map_err(store_err)?;
        let chains = store.unpack_image(image).map_err(store_err)?;
        let scratch = Scratch::create(&store.root().join("tmp"))?;
        let upper = scratch.make_dir("upper")?;
        let work = scratch.make_dir("work")?;
        let mut lowers: Vec<PathBuf> = chains
            .iter()
            .rev()
            .map(|c| store.snapshot_path(c))
            .collect();
        if lowers.is_empty() {
            lowers.push(scratch.make_dir("empty")?);
        }
        let hostname = self.hostname.clone().unwrap_or_else(container_id);
        let mut spec = RunSpec::new(lowers, upper, work, argv);
        spec.env = self.environment(config, &hostname);
        spec.user = self.user.clone().unwrap_or_else(|| config.user.clone());
        spec.workdir = self
            .workdir
            .clone()
            .unwrap_or_else(|| config.working_dir.clone());
        spec.hostname = hostname;
        spec.network = self.network;
        spec.extra_hosts.clone_from(&self.extra_hosts);
        spec.ulimits.clone_from(&self.ulimits);
        spec.shm_size = self.shm_size;
        spec.timeout = self.timeout;
        spec.cancel.clone_from(&self.cancel);
        let sandbox = Sandbox::new(SandboxConfig {
            helper_exe: self.sandbox_helper.clone(),
            ..SandboxConfig::default()
        })?;
        let probe_dir = scratch.make_dir("probe")?;
        let (isolation, fallback) = self.isolation.choose(|| sandbox.probe(&probe_dir));
        spec.isolation = isolation;
        let mut outcome = sandbox.run(&spec, on_output)?;
        drop(scratch);
        if let Some(reason) = fallback {
            outcome.notices.insert(0, reason);
        }
        Ok(outcome)
    }
}

/// The image [`find_or_pull_image`] chose to run.
#[derive(Debug, Clone)]
pub struct ImageToRun {
    /// Its manifest and config.
    pub image: ResolvedImage,
    /// The platform of the chosen variant (its config's; the one asked for when the config
    /// says none): what an emulation check compares with the host.
    pub platform: Platform,
    /// What the pull did, when one was needed.
    pub pulled: Option<PullOutcome>,
    /// BuildKit's `InvalidBaseImagePlatform` text, when the name is a single image whose
    /// platform cannot run as the one asked for.
    pub platform_warning: Option<String>,
}

/// The image `text` names for `platform` (the host's when `None`), as `docker run
/// --platform` finds it: a name in the local store resolved for the platform (an index's
/// variant; one listed but not pulled is pulled from the name's registry), an image ID
/// prefix, else the name pulled with `config` and named (`on_pull` is called with the
/// reference before the first pull).
pub fn find_or_pull_image(
    store: &Store,
    text: &str,
    platform: Option<&Platform>,
    config: ClientConfig,
    on_pull: impl FnOnce(&ImageRef),
) -> Result<ImageToRun, ImageError> {
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let _lock = store.lock(LockMode::Shared)?;
    let named = ImageRef::parse(text)
        .ok()
        .map(|name| store.resolve_ref(&name))
        .transpose()?
        .flatten();
    if named.is_none()
        && let Some(digest) = find_image(store, text)?
    {
        let image = store
            .resolve_image(&digest, Some(&wanted))
            .map_err(|source| ImageError::ReadImage {
                name: text.to_owned(),
                source: Box::new(source),
            })?;
        return Ok(ImageToRun {
            platform: platform_of(&image, &wanted),
            image,
            pulled: None,
            platform_warning: None,
        });
    }
    let reference = parse_image_name(text)?;
    let mut on_pull = Some(on_pull);
    let mut pull = registry_pull(store, config);
    let found = resolve_platform_image(
        store,
        &reference,
        text,
        &wanted,
        PullPolicy::Missing,
        &mut |pulled: &ImageRef, platform: &Platform| {
            if let Some(announce) = on_pull.take() {
                announce(&reference);
            }
            pull(pulled, platform)
        },
    )?;
    let pulled = found
        .pulled
        .is_some()
        .then(|| pull_outcome(&reference, &found));
    Ok(ImageToRun {
        platform: platform_of(&found.image, &wanted),
        platform_warning: found.platform_warning,
        pulled,
        image: found.image,
    })
}

/// The platform `image`'s config says, `wanted` when it says none.
fn platform_of(image: &ResolvedImage, wanted: &Platform) -> Platform {
    let config = image.config.value();
    if config.architecture.is_empty() || config.os.is_empty() {
        wanted.clone()
    } else {
        config.platform()
    }
}

/// A fresh 12-hex-digit ID: the default hostname, as docker uses the short container ID.
fn container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{} {nanos}", std::process::id());
    Digest::sha256_of(seed.as_bytes()).hex()[..SHORT_ID_LEN].to_owned()
}

/// The container's scratch directory in the store's `tmp/`, removed when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn create(tmp: &Path) -> Result<Self, RunImageError> {
        let fail = |source| RunImageError::Scratch {
            path: tmp.to_owned(),
            source,
        };
        fs_err::create_dir_all(tmp).map_err(fail)?;
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(tmp)
            .map_err(fail)?
            .keep();
        let scratch = Self(dir);
        // The sandboxed user must be able to reach the overlay's directories.
        fs_err::set_permissions(&scratch.0, fs::Permissions::from_mode(0o755)).map_err(
            |source| RunImageError::Scratch {
                path: scratch.0.clone(),
                source,
            },
        )?;
        Ok(scratch)
    }

    fn make_dir(&self, name: &str) -> Result<PathBuf, RunImageError> {
        let path = self.0.join(name);
        fs_err::create_dir(&path)
            .and_then(|()| fs_err::set_permissions(&path, fs::Permissions::from_mode(0o755)))
            .map_err(|source| RunImageError::Scratch {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Rootless, the upperdir holds files of the sandbox's subordinate ids and the
        // overlay's mode-0 work directory: remove_tree copes with both.
        if let Err(err) = kiln_store::remove_tree(&self.0) {
            tracing::warn!(
                path = %self.0.display(),
                %err,
                "cannot remove the container's scratch directory"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entrypoint: &[&str], cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            entrypoint: entrypoint.iter().map(|s| (*s).to_owned()).collect(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            env: vec!["PATH=/bin".into(), "A=image".into()],
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn arguments_replace_cmd_and_keep_entrypoint() {
        let image = config(&["/entry", "-x"], &["default"]);
        assert_eq!(
            ContainerRun::new().argv(&image).unwrap(),
            ["/entry", "-x", "default"]
        );
        assert_eq!(
            ContainerRun::new().cmd(["a", "b"]).argv(&image).unwrap(),
            ["/entry", "-x", "a", "b"]
        );
    }

    #[test]
    fn entrypoint_flag_resets_cmd() {
        let image = config(&["/entry"], &["default"]);
        let run = ContainerRun::new().entrypoint("/bin/echo");
        assert_eq!(run.argv(&image).unwrap(), ["/bin/echo"]);
        assert_eq!(run.cmd(["x"]).argv(&image).unwrap(), ["/bin/echo", "x"]);
        let cleared = ContainerRun::new().entrypoint("");
        assert_eq!(cleared.argv(&image), None);
        assert_eq!(cleared.cmd(["id"]).argv(&image).unwrap(), ["id"]);
    }

    #[test]
    fn no_command_at_all_is_none() {
        assert_eq!(ContainerRun::new().argv(&config(&[], &[])), None);
    }

    #[test]
    fn env_overrides_by_name_in_place() {
        let image = config(&[], &["sh"]);
        let run = ContainerRun::new().env("A=flag").env("B=new");
        assert_eq!(
            run.environment(&image, "abc"),
            ["HOSTNAME=abc", "PATH=/bin", "A=flag", "B=new"]
        );
        let run = ContainerRun::new().env("HOSTNAME=mine");
        assert_eq!(run.environment(&image, "abc")[0], "HOSTNAME=mine");
    }

    #[test]
    fn container_ids_are_short_hex() {
        let id = container_id();
        assert_eq!(id.len(), SHORT_ID_LEN);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
