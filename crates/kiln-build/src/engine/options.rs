//! What a build is asked to do: [`Builder`] and its settings (secrets, ssh agents, network,
//! entitlements),
//! and what it answers ([`BuildOutcome`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_oci::{Compression, Descriptor, Digest, Platform};

use crate::cache_options::{CacheExport, CacheSource};
use crate::output::OutputSpec;
use crate::scheduler::CancelToken;

/// The variable (and build arg) whose value is the build's time, in seconds since the epoch.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
/// The variable naming the binfmt_misc directory the emulation check reads (tests point it
/// at an empty directory to act out a host without emulators).
pub const BINFMT_DIR_VAR: &str = "KILN_BINFMT_DIR";

/// `$KILN_BINFMT_DIR`, else the kernel's binfmt_misc mount: where builds and `kiln run` look
/// for emulators.
pub(crate) fn binfmt_dir_from_env() -> PathBuf {
    std::env::var_os(BINFMT_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(kiln_sandbox::DEFAULT_BINFMT_DIR),
            PathBuf::from,
        )
}

/// A `--secret id=…,src=…` (or `env=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// The id RUN `--mount=type=secret,id=…` refers to.
    pub id: String,
    /// A file with the secret's value.
    pub src: Option<PathBuf>,
    /// Or an environment variable of the kiln process.
    pub env: Option<String>,
}

/// Why a `--secret` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretSpecError {
    /// A part without `=`.
    #[error("invalid --secret `{spec}`: `{part}` is not key=value")]
    NotKeyValue {
        /// The whole value.
        spec: String,
        /// The part.
        part: String,
    },
    /// `type=` other than `file` or `env`.
    #[error("invalid --secret `{spec}`: unknown type `{kind}` (file or env)")]
    UnknownType {
        /// The whole value.
        spec: String,
        /// The type given.
        kind: String,
    },
    /// A key kiln does not know.
    #[error("invalid --secret `{spec}`: unknown key `{key}` (id, src, source, env, type)")]
    UnknownKey {
        /// The whole value.
        spec: String,
        /// The key.
        key: String,
    },
    /// Neither `id=` nor `env=`.
    #[error("invalid --secret `{spec}`: id=… is required")]
    MissingId {
        /// The whole value.
        spec: String,
    },
}

impl std::str::FromStr for SecretSource {
    type Err = SecretSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        let mut kind = None;
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SecretSpecError::NotKeyValue {
                    spec: spec.to_owned(),
                    part: part.to_owned(),
                })?;
            match k.trim() {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => src = Some(v.to_owned()),
                "env" => env = Some(v.to_owned()),
                "type" if v == "file" || v == "env" => kind = Some(v.to_owned()),
                "type" => {
                    return Err(SecretSpecError::UnknownType {
                        spec: spec.to_owned(),
                        kind: v.to_owned(),
                    });
                }
                other => {
                    return Err(SecretSpecError::UnknownKey {
                        spec: spec.to_owned(),
                        key: other.to_owned(),
                    });
                }
            }
        }
        let id = id
            .or_else(|| env.clone())
            .ok_or_else(|| SecretSpecError::MissingId {
                spec: spec.to_owned(),
            })?;
        // buildx's rules: `type=env` names the variable in `env=` (or `src=`, else the id);
        // `type=file` reads `src=` (else the file named like the id); with neither a type nor
        // a source, the variable named like the id if it is set, else that file.
        match kind.as_deref() {
            Some("env") => {
                if env.is_none() {
                    env = Some(src.take().unwrap_or_else(|| id.clone()));
                }
                src = None;
            }
            Some(_) => {
                if src.is_none() {
                    src = Some(env.take().unwrap_or_else(|| id.clone()));
                }
                env = None;
            }
            None if src.is_none() && env.is_none() => {
                if std::env::var_os(&id).is_some() {
                    env = Some(id.clone());
                } else {
                    src = Some(id.clone());
                }
            }
            None => {}
        }
        Ok(Self {
            id,
            src: src.map(PathBuf::from),
            env,
        })
    }
}

/// RUN's default network (`--network` of the build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkDefault {
    /// The host's network (docker build's default).
    #[default]
    Host,
    /// No network: only `lo`.
    None,
}

/// How RUN steps are isolated (`--isolation`, `KILN_ISOLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMode {
    /// Probe the host once, at the first RUN, and use the strongest mode that works: the
    /// namespace sandbox, else (as root, in an unprivileged container) chroot isolation, with
    /// a warning saying why.
    #[default]
    Auto,
    /// User, mount and pid namespaces over an overlay rootfs (see `kiln-sandbox`).
    Namespaces,
    /// Chroot into a copy of the stage's rootfs, for root in an unprivileged container.
    Chroot,
}

impl IsolationMode {
    /// The isolation RUN steps get under this mode: `probe` (which finds what the host
    /// allows) only runs for `Auto`. With the one line saying why when `Auto` settles for
    /// chroot.
    pub(crate) fn choose(
        self,
        probe: impl FnOnce() -> kiln_sandbox::IsolationProbe,
    ) -> (kiln_sandbox::Isolation, Option<String>) {
        use kiln_sandbox::Isolation;
        match self {
            Self::Namespaces => (Isolation::Namespaces, None),
            Self::Chroot => (Isolation::Chroot, None),
            Self::Auto => {
                let probe = probe();
                let why = (probe.isolation == Isolation::Chroot)
                    .then_some(probe.reason)
                    .flatten()
                    .map(|reason| format!("{reason}: using chroot isolation"));
                (probe.isolation, why)
            }
        }
    }
}

/// A privilege a build must be granted before a Dockerfile may use it (`--allow`, as
/// buildx's entitlements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Entitlement {
    /// `security.insecure`: `RUN --security=insecure` runs without the default confinement
    /// (every capability of the sandbox's user namespace, no seccomp filter, `/proc/sys`
    /// writable, no masked paths).
    SecurityInsecure,
    /// `network.host`: RUN on the host's network. kiln grants it to every build (like
    /// `docker build`); accepted so that buildx command lines work unchanged.
    NetworkHost,
}

impl Entitlement {
    /// The buildx spelling (`security.insecure`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecurityInsecure => "security.insecure",
            Self::NetworkHost => "network.host",
        }
    }
}

/// An `--allow` value kiln does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entitlement `{name}` (kiln knows security.insecure and network.host)")]
pub struct UnknownEntitlement {
    /// The value given.
    pub name: String,
}

impl std::str::FromStr for Entitlement {
    type Err = UnknownEntitlement;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "security.insecure" => Ok(Self::SecurityInsecure),
            "network.host" => Ok(Self::NetworkHost),
            other => Err(UnknownEntitlement {
                name: other.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Entitlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One platform's image of a build.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformImage {
    /// The platform it was built for.
    pub platform: Platform,
    /// Its manifest's descriptor (platform set when the build made an index).
    pub manifest: Descriptor,
    /// Its config digest.
    pub config_digest: Digest,
}

/// The result of a successful build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The manifest digest of the image (of the first platform's image when the build made
    /// an index; the index is [`BuildOutcome::index`]).
    pub manifest_digest: Digest,
    /// The config digest (image ID) of that image.
    pub config_digest: Digest,
    /// The manifest's descriptor: media type, digest and size.
    pub manifest: Descriptor,
    /// A build for more than one platform: the OCI index of the images, what names point
    /// to and what is pushed and exported.
    pub index: Option<Descriptor>,
    /// Each platform's image, in the order the platforms were given.
    pub platforms: Vec<PlatformImage>,
    /// Names stored in the local store.
    pub tagged: Vec<String>,
    /// Warnings emitted.
    pub warnings: Vec<String>,
}

impl BuildOutcome {
    /// What the build made, as buildx's `containerimage.descriptor` names it: the index of a
    /// multi-platform build, else the manifest.
    pub fn descriptor(&self) -> &Descriptor {
        self.index.as_ref().unwrap_or(&self.manifest)
    }

    /// The image ID docker prints: the index digest of a multi-platform build, else the
    /// config digest.
    pub fn image_id(&self) -> &Digest {
        self.index
            .as_ref()
            .map_or(&self.config_digest, |index| &index.digest)
    }
}

/// Builds images from Dockerfiles: the embedding API behind `kiln build`.
///
/// ```no_run
/// use kiln_build::{Builder, Event};
/// let outcome = Builder::new("./app")
///     .target("production")
///     .build_arg("PYTHON_VERSION", "3.11")
///     .tag("app:dev")
///     .build(&|event: Event| eprintln!("{event:?}"))
///     .expect("build failed");
/// println!("{}", outcome.manifest_digest);
/// ```
#[derive(Debug, Clone)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, one per buildx flag"
)]
pub struct Builder {
    pub(crate) context: PathBuf,
    /// A context that is not a directory, made into one when the build starts.
    pub(crate) context_source: Option<crate::context_source::ContextSource>,
    /// How the context is named in the build's history and hash memo when it is a temp
    /// directory made from [`Builder::context_source`] (its path changes every build).
    pub(crate) context_name: Option<String>,
    pub(crate) dockerfile: Option<PathBuf>,
    pub(crate) dockerfile_text: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) build_args: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: crate::annotation::Annotations,
    pub(crate) attest: crate::attest::AttestOptions,
    pub(crate) build_contexts: BTreeMap<String, String>,
    pub(crate) platforms: Vec<Platform>,
    pub(crate) binfmt_dir: PathBuf,
    pub(crate) no_cache: bool,
    pub(crate) no_cache_filter: Vec<String>,
    pub(crate) pull: bool,
    pub(crate) network: NetworkDefault,
    pub(crate) isolation: IsolationMode,
    pub(crate) extra_hosts: Vec<(String, String)>,
    pub(crate) ulimits: Vec<kiln_sandbox::Ulimit>,
    pub(crate) shm_size: Option<u64>,
    pub(crate) secrets: Vec<SecretSource>,
    pub(crate) ssh: Vec<super::ssh::SshSource>,
    pub(crate) outputs: Vec<OutputSpec>,
    pub(crate) tags: Vec<String>,
    pub(crate) push: bool,
    pub(crate) store_root: Option<PathBuf>,
    pub(crate) jobs: usize,
    pub(crate) all_stages: bool,
    pub(crate) compression: Compression,
    pub(crate) source_date_epoch: Option<i64>,
    pub(crate) insecure_registries: Vec<String>,
    pub(crate) sandbox_helper: Option<PathBuf>,
    pub(crate) entitlements: std::collections::BTreeSet<Entitlement>,
    pub(crate) cache_from: Vec<CacheSource>,
    pub(crate) cache_to: Vec<CacheExport>,
    pub(crate) cancel: CancelToken,
}

impl Builder {
    /// A build of the context directory `context` with its `Dockerfile`.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            context_source: None,
            context_name: None,
            dockerfile: None,
            dockerfile_text: None,
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: crate::annotation::Annotations::new(),
            attest: crate::attest::AttestOptions::default(),
            build_contexts: BTreeMap::new(),
            platforms: Vec::new(),
            binfmt_dir: binfmt_dir_from_env(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            pull: false,
            network: NetworkDefault::Host,
            isolation: IsolationMode::Auto,
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: None,
            secrets: Vec::new(),
            ssh: Vec::new(),
            outputs: Vec::new(),
            tags: Vec::new(),
            push: false,
            store_root: None,
            // As BuildKit: every stage whose inputs are ready runs. A RUN mostly waits (on
            // sleep, the network, a child's I/O); a bound of one stage per core made four
            // `sleep 2` stages take two waves on 2 cores (bench/README.md, parallel cases).
            jobs: usize::MAX,
            all_stages: false,
            compression: Compression::Gzip { level: 6 },
            source_date_epoch: std::env::var(SOURCE_DATE_EPOCH)
                .ok()
                .and_then(|v| v.parse().ok()),
            insecure_registries: Vec::new(),
            sandbox_helper: None,
            entitlements: std::collections::BTreeSet::new(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            cancel: CancelToken::new(),
        }
    }

    /// The context's source, as the positional `CONTEXT` of `kiln build` names it (see
    /// [`ContextSource::parse`](crate::ContextSource::parse)): a directory (what
    /// [`Builder::new`] takes), a stream, a tarball URL or a git repository. A source that
    /// is not a directory is made into one under the store's `tmp/` when the build starts
    /// and removed when it ends. With such a source, a relative `-f` path is a path inside
    /// the context (BuildKit's `filename`).
    #[must_use]
    pub fn context_source(mut self, source: crate::context_source::ContextSource) -> Self {
        match source {
            crate::context_source::ContextSource::Dir(path) => {
                self.context = path;
                self.context_source = None;
            }
            other => self.context_source = Some(other),
        }
        self
    }

    /// `-f`: the Dockerfile path (default `<context>/Dockerfile`).
    #[must_use]
    pub fn dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = Some(path.into());
        self
    }

    /// The Dockerfile's text (`-f -`); `.dockerignore` is then read from the context.
    #[must_use]
    pub fn dockerfile_text(mut self, text: impl Into<String>) -> Self {
        self.dockerfile_text = Some(text.into());
        self
    }

    /// `--target`.
    #[must_use]
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// `--build-arg K=V`. `SOURCE_DATE_EPOCH=N` also sets [`Builder::source_date_epoch`], over
    /// the environment variable (BuildKit's rule: the build arg is the epoch the build sees);
    /// an empty value leaves it as it was, and one that is not a number fails the build.
    #[must_use]
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if name == SOURCE_DATE_EPOCH
            && let Ok(epoch) = value.parse()
        {
            self.source_date_epoch = Some(epoch);
        }
        self.build_args.insert(name, value);
        self
    }

    /// `--label K=V`: a label of the image's config, set after the target stage's last
    /// instruction (it overrides the Dockerfile's `LABEL K=…`; no layer changes).
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// `--annotation`: an OCI annotation of every image output (its manifests, their
    /// descriptors, the index or its descriptor, as [`crate::Annotation`]'s level says),
    /// over an output's own `annotation.*` keys; repeatable.
    #[must_use]
    pub fn annotation(mut self, annotation: crate::annotation::Annotation) -> Self {
        self.annotations.insert(annotation.key, annotation.value);
        self
    }

    /// `--attest`, `--sbom`, `--provenance`: an attestation to attach to the image (or one to
    /// turn off); a later one of a kind replaces an earlier one. Off by default.
    #[must_use]
    pub fn attest(mut self, attest: crate::attest::Attest) -> Self {
        self.attest.apply(attest);
        self
    }

    /// `--build-context NAME=SRC` (a directory, `docker-image://REF`,
    /// `oci-layout://PATH[:TAG|@DIGEST]`).
    #[must_use]
    pub fn build_context(mut self, name: impl Into<String>, source: impl Into<String>) -> Self {
        self.build_contexts.insert(name.into(), source.into());
        self
    }

    /// `--platform`: a platform to build for; repeat for a multi-platform build, whose
    /// result is an OCI index with one image per platform (default: the host's platform).
    /// A platform given twice is built once.
    #[must_use]
    pub fn platform(mut self, platform: Platform) -> Self {
        let normalized = platform.normalized();
        let platform = if normalized == platform {
            platform
        } else {
            normalized
        };
        if !self.platforms.contains(&platform) {
            self.platforms.push(platform);
        }
        self
    }

    /// The platforms the build makes images for: those given, else the host's.
    pub fn target_platforms(&self) -> Vec<Platform> {
        if self.platforms.is_empty() {
            vec![Platform::host()]
        } else {
            self.platforms.clone()
        }
    }

    /// Where the build looks for binfmt_misc handlers before it runs a RUN step of a foreign
    /// platform (default `/proc/sys/fs/binfmt_misc`, or `$KILN_BINFMT_DIR`).
    #[must_use]
    pub fn binfmt_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.binfmt_dir = dir.into();
        self
    }

    /// `--no-cache`.
    #[must_use]
    pub fn no_cache(mut self, yes: bool) -> Self {
        self.no_cache = yes;
        self
    }

    /// `--pull`: re-resolve base image tags against their registries.
    #[must_use]
    pub fn pull(mut self, yes: bool) -> Self {
        self.pull = yes;
        self
    }

    /// `--network` default for RUN.
    #[must_use]
    pub fn network(mut self, network: NetworkDefault) -> Self {
        self.network = network;
        self
    }

    /// `--isolation`: how RUN steps are isolated. Isolation never changes the image or a
    /// cache key: a cache made under one mode serves the other.
    #[must_use]
    pub fn isolation(mut self, isolation: IsolationMode) -> Self {
        self.isolation = isolation;
        self
    }

    /// `--add-host HOST:IP`: an `/etc/hosts` entry for every RUN (never in a layer). Part of
    /// the RUN steps' cache keys, as in BuildKit.
    #[must_use]
    pub fn add_host(mut self, host: impl Into<String>, address: std::net::IpAddr) -> Self {
        self.extra_hosts.push((host.into(), address.to_string()));
        self
    }

    /// `--ulimit`: a resource limit for every RUN. Part of the RUN steps' cache keys.
    #[must_use]
    pub fn ulimit(mut self, ulimit: kiln_sandbox::Ulimit) -> Self {
        self.ulimits.retain(|u| u.name != ulimit.name);
        self.ulimits.push(ulimit);
        self
    }

    /// `--shm-size`: the size of every RUN's `/dev/shm` in bytes (default 64 MiB). Part of
    /// the RUN steps' cache keys.
    #[must_use]
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.shm_size = Some(bytes);
        self
    }

    /// `--no-cache-filter STAGE`: the steps of the stage so named run again (and are recorded
    /// for the next build); the other stages use the cache. A name no stage has is a warning.
    #[must_use]
    pub fn no_cache_filter(mut self, stage: impl Into<String>) -> Self {
        self.no_cache_filter.push(stage.into());
        self
    }

    /// `--allow ENTITLEMENT`: grants a privilege the Dockerfile may ask for
    /// (`RUN --security=insecure` needs [`Entitlement::SecurityInsecure`]).
    #[must_use]
    pub fn allow(mut self, entitlement: Entitlement) -> Self {
        self.entitlements.insert(entitlement);
        self
    }

    /// Whether `entitlement` was granted.
    pub fn is_allowed(&self, entitlement: Entitlement) -> bool {
        self.entitlements.contains(&entitlement)
    }

    /// `--secret`.
    #[must_use]
    pub fn secret(mut self, secret: SecretSource) -> Self {
        self.secrets.push(secret);
        self
    }

    /// `--ssh`: an agent RUN `--mount=type=ssh,id=…` can use (see [`super::ssh::SshSource`]).
    #[must_use]
    pub fn ssh(mut self, source: super::ssh::SshSource) -> Self {
        self.ssh.push(source);
        self
    }

    /// `--output`: an [`crate::Output`], or an [`OutputSpec`] with exporter options.
    #[must_use]
    pub fn output(mut self, output: impl Into<OutputSpec>) -> Self {
        self.outputs.push(output.into());
        self
    }

    /// `-t NAME`: store the result in the local store under this name.
    #[must_use]
    pub fn tag(mut self, name: impl Into<String>) -> Self {
        self.tags.push(name.into());
        self
    }

    /// `--push`: push the `-t` names to their registries.
    #[must_use]
    pub fn push(mut self, yes: bool) -> Self {
        self.push = yes;
        self
    }

    /// The store directory (default `$KILN_ROOT` resolution is the caller's business).
    #[must_use]
    pub fn store_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.store_root = Some(root.into());
        self
    }

    /// `--jobs`: at most this many stages run at once (default: every ready stage).
    #[must_use]
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Build every stage, not just what the target needs.
    #[must_use]
    pub fn all_stages(mut self, yes: bool) -> Self {
        self.all_stages = yes;
        self
    }

    /// Layer compression.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// `SOURCE_DATE_EPOCH` (default: the environment variable).
    #[must_use]
    pub fn source_date_epoch(mut self, epoch: Option<i64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// `--insecure-registry HOST`.
    #[must_use]
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// The executable re-run as the sandbox helper (default: the current executable, which
    /// must call `kiln_sandbox::run_helper_if_requested` first thing in `main`).
    #[must_use]
    pub fn sandbox_helper(mut self, exe: impl Into<PathBuf>) -> Self {
        self.sandbox_helper = Some(exe.into());
        self
    }

    /// `--cache-from`: a cache (registry or OCI layout) whose records the build may reuse
    /// after the local store's; repeatable, searched in the order given. One that cannot be
    /// read is a warning, and the build goes on without it.
    #[must_use]
    pub fn cache_from(mut self, source: CacheSource) -> Self {
        self.cache_from.push(source);
        self
    }

    /// `--cache-to`: where the build exports its cache after it succeeds; repeatable. A
    /// failed export fails the build unless the export says `ignore_error`.
    #[must_use]
    pub fn cache_to(mut self, export: CacheExport) -> Self {
        self.cache_to.push(export);
        self
    }

    /// A token that cancels the build when triggered (e.g. on Ctrl-C).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }
}

/// `$KILN_ROOT`, else `$XDG_DATA_HOME/kiln`, else `/var/lib/kiln` for root, else
/// `~/.local/share/kiln`.
pub fn default_store_root() -> PathBuf {
    if let Some(root) = std::env::var_os("KILN_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Path::new(&xdg).join("kiln");
    }
    // kiln re-executed rootless is root of its user namespace, but the store is the caller's.
    if rustix::process::geteuid().is_root() && !kiln_sandbox::is_rootless_reexec() {
        return PathBuf::from("/var/lib/kiln");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/kiln")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_follow_buildx_rules_for_type_src_and_env() {
        let parse = |spec: &str| spec.parse::<SecretSource>().unwrap();
        let file = parse("id=a,src=/run/a");
        assert_eq!(
            (file.src.as_deref(), file.env),
            (Some(Path::new("/run/a")), None)
        );
        let env = parse("id=a,env=TOKEN");
        assert_eq!((env.src, env.env.as_deref()), (None, Some("TOKEN")));
        // type=env names the variable by src= (buildx), else the id.
        let typed = parse("type=env,id=a,src=TOKEN");
        assert_eq!((typed.src, typed.env.as_deref()), (None, Some("TOKEN")));
        assert_eq!(parse("type=env,id=a").env.as_deref(), Some("a"));
        // type=file without src= reads the file named like the id.
        let named = parse("type=file,id=a.txt");
        assert_eq!(
            (named.src.as_deref(), named.env),
            (Some(Path::new("a.txt")), None)
        );
        // Neither: the variable named like the id when it is set, else that file.
        let bare = parse("id=KILN_TEST_SURELY_UNSET_SECRET_VAR");
        assert_eq!(
            bare.src.as_deref(),
            Some(Path::new("KILN_TEST_SURELY_UNSET_SECRET_VAR"))
        );
        assert_eq!(parse("id=PATH").env.as_deref(), Some("PATH"));
        for bad in ["id=a,type=vault", "id=a,mode=0400", "src=/x", "id"] {
            assert!(bad.parse::<SecretSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn source_date_epoch_build_arg_sets_the_epoch() {
        let from_env = Builder::new(".").source_date_epoch;
        let builder = Builder::new(".").build_arg("SOURCE_DATE_EPOCH", "5");
        assert_eq!(builder.source_date_epoch, Some(5));
        assert_eq!(builder.build_args["SOURCE_DATE_EPOCH"], "5");
        // Empty is unset, as for the environment variable; other arguments change nothing.
        let builder = Builder::new(".")
            .build_arg("SOURCE_DATE_EPOCH", "")
            .build_arg("OTHER", "7");
        assert_eq!(builder.source_date_epoch, from_env);
    }

    #[test]
    fn an_invalid_source_date_epoch_build_arg_fails_before_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let err = Builder::new(dir.path())
            .dockerfile_text("FROM scratch\n")
            .store_root(dir.path().join("store"))
            .build_arg("SOURCE_DATE_EPOCH", "soon")
            .build(&|_| {})
            .unwrap_err();
        assert!(
            err.to_string().contains("SOURCE_DATE_EPOCH=`soon`"),
            "{err}"
        );
    }
}
