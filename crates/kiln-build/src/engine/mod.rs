//! The build itself: parse → plan → run the stage DAG (base resolution, RUN in the sandbox,
//! COPY/ADD, WORKDIR, config edits, cache lookups) → assemble the image → export.

mod base;
mod commit;
mod compressor;
mod copy_exec;
mod copy_write;
mod download;
mod driver;
mod error;
mod executor;
mod export;
mod local;
mod model;
mod results;
mod run_exec;
mod seams;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_dockerfile::{DirDecision, PatternMatcher, read_ignore_file};
use kiln_oci::{Compression, Digest, Platform};
use kiln_plan::{PlanOptions, StageId};
use kiln_store::Store;

use crate::event::{Event, EventSink};
use crate::hash::HashMemo;
use crate::output::Output;
use crate::scheduler::{CancelToken, Node, ScheduleError, run_dag};
use crate::tree::{ContextFilter, ContextTree};

pub use self::error::{
    BaseError, BuildError, ContextError, CopyStepError, DownloadError, ExportError,
    InsecureNotAllowed, InternalError, LayerError, MountError, OptionsError, StepError, StepId,
};

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
        for part in spec.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SecretSpecError::NotKeyValue {
                    spec: spec.to_owned(),
                    part: part.to_owned(),
                })?;
            match k.trim() {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => src = Some(PathBuf::from(v)),
                "env" => env = Some(v.to_owned()),
                "type" if v == "file" || v == "env" => {}
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
        if src.is_none() && env.is_none() {
            // buildx: `--secret id=X` alone reads the env var X.
            env = Some(id.clone());
        }
        Ok(Self { id, src, env })
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

/// The result of a successful build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The manifest digest of the image.
    pub manifest_digest: Digest,
    /// The config digest (image ID).
    pub config_digest: Digest,
    /// Names stored in the local store.
    pub tagged: Vec<String>,
    /// Warnings emitted.
    pub warnings: Vec<String>,
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
    pub(crate) dockerfile: Option<PathBuf>,
    pub(crate) dockerfile_text: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) build_args: BTreeMap<String, String>,
    pub(crate) build_contexts: BTreeMap<String, String>,
    pub(crate) platform: Option<Platform>,
    pub(crate) no_cache: bool,
    pub(crate) pull: bool,
    pub(crate) network: NetworkDefault,
    pub(crate) secrets: Vec<SecretSource>,
    pub(crate) outputs: Vec<Output>,
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
    pub(crate) cancel: CancelToken,
}

impl Builder {
    /// A build of the context directory `context` with its `Dockerfile`.
    pub fn new(context: impl Into<PathBuf>) -> Self {
        Self {
            context: context.into(),
            dockerfile: None,
            dockerfile_text: None,
            target: None,
            build_args: BTreeMap::new(),
            build_contexts: BTreeMap::new(),
            platform: None,
            no_cache: false,
            pull: false,
            network: NetworkDefault::Host,
            secrets: Vec::new(),
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
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse().ok()),
            insecure_registries: Vec::new(),
            sandbox_helper: None,
            entitlements: std::collections::BTreeSet::new(),
            cancel: CancelToken::new(),
        }
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

    /// `--build-arg K=V`.
    #[must_use]
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(name.into(), value.into());
        self
    }

    /// `--build-context NAME=SRC` (a directory, `docker-image://REF`,
    /// `oci-layout://PATH[:TAG|@DIGEST]`).
    #[must_use]
    pub fn build_context(mut self, name: impl Into<String>, source: impl Into<String>) -> Self {
        self.build_contexts.insert(name.into(), source.into());
        self
    }

    /// `--platform`.
    #[must_use]
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
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

    /// `--output`.
    #[must_use]
    pub fn output(mut self, output: Output) -> Self {
        self.outputs.push(output);
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

    /// A token that cancels the build when triggered (e.g. on Ctrl-C).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Runs the build, sending progress to `events`.
    pub fn build(&self, events: &dyn EventSink) -> Result<BuildOutcome, BuildError> {
        let started = Instant::now();
        self.check_before_build()?;
        let store = Store::open(self.store_root.clone().unwrap_or_else(default_store_root))?;
        // Held for the whole build: `kiln prune` (exclusive) waits, so it never deletes a
        // blob or snapshot this build has made but not yet recorded.
        let _lock = store.lock(kiln_store::LockMode::Shared)?;
        let (dockerfile_name, text) = self.read_dockerfile()?;
        let dockerfile = kiln_dockerfile::parse(&text).map_err(|source| BuildError::Parse {
            dockerfile: dockerfile_name.clone(),
            text: text.as_str().into(),
            source: Box::new(source),
        })?;
        let platform = self.platform.clone().unwrap_or_else(Platform::host);
        let mut options = PlanOptions::new(platform.clone());
        options.build_args = self.build_args.clone().into_iter().collect();
        options.target.clone_from(&self.target);
        options.all_stages = self.all_stages;
        options.named_contexts = self.build_contexts.keys().cloned().collect();
        let graph = kiln_plan::plan(&dockerfile, &options).map_err(|source| BuildError::Plan {
            dockerfile: dockerfile_name.clone(),
            source: Box::new(source),
        })?;
        self.check_entitlements(&graph, &dockerfile_name)?;
        let mut warnings = Vec::new();
        for w in &graph.warnings {
            let message = w.to_string();
            events.emit(Event::Warning {
                message: message.clone(),
            });
            warnings.push(message);
        }

        let filter = self.context_filter(&dockerfile_name)?;
        let memo = HashMemo::load(store.root().join("cache").join("filehash").join(format!(
            "{}.bin",
            Digest::sha256_of(self.context.to_string_lossy().as_bytes()).hex()
        )));
        #[expect(
            clippy::disallowed_methods,
            reason = "ContextError::Unreadable names the path with a hint; fs_err would name it twice"
        )]
        let context_root =
            std::fs::canonicalize(&self.context).map_err(|source| ContextError::Unreadable {
                path: self.context.clone(),
                source,
            })?;
        if !context_root.is_dir() {
            return Err(ContextError::NotADirectory {
                path: self.context.clone(),
            }
            .into());
        }
        let options = driver::DriverOptions {
            no_cache: self.no_cache,
            source_date_epoch: self.source_date_epoch,
            history_name: history_name(&context_root, &dockerfile_name, self.target.as_deref()),
            dockerfile_name,
            started: match self.source_date_epoch {
                Some(epoch) => kiln_oci::rfc3339_utc(epoch),
                None => driver::now_rfc3339(),
            },
        };
        let resolver = base::Resolver::new(self, &store);
        let compressor =
            compressor::Compressor::new(store.clone(), self.compression, self.source_date_epoch);
        let executor = local::Local::new(
            self,
            &store,
            &graph,
            events,
            ContextTree::new(context_root, filter),
            &memo,
            &resolver,
            &compressor,
        );
        let results = results::StoreResults::new(&store, self.compression);
        let driver = driver::Driver::new(&graph, events, &executor, &results, &resolver, options);
        let nodes: Vec<Node<StageId>> = graph
            .stages
            .iter()
            .map(|s| Node {
                id: s.id,
                deps: s.deps.clone(),
            })
            .collect();
        let results = run_dag(&nodes, self.jobs, &driver, &self.cancel);
        if let Err(e) = memo.save() {
            tracing::warn!("could not save the context hash memo: {e}");
        }
        driver.save_history();
        let results = match results {
            Ok(r) => r,
            Err(ScheduleError::Failed { id, error }) => {
                tracing::debug!(stage = %id, "the build stopped at a failed stage");
                return Err(error);
            }
            Err(ScheduleError::Cancelled) => return Err(BuildError::Cancelled),
        };
        let target = results
            .get(&graph.target)
            .ok_or(BuildError::Internal(InternalError::NoTargetResult))?;
        let image = export::assemble(&store, target, self.source_date_epoch, &compressor)?;
        let tagged = export::export(self, &store, &image, events)?;
        events.emit(Event::Finished {
            manifest_digest: image.manifest_digest().to_string(),
            config_digest: image.config_digest().to_string(),
            duration: started.elapsed(),
        });
        Ok(BuildOutcome {
            manifest_digest: image.manifest_digest().clone(),
            config_digest: image.config_digest().clone(),
            tagged,
            warnings,
        })
    }

    /// Refuses, before any step runs, a `RUN --security=insecure` of a stage the build
    /// reaches when `security.insecure` was not granted (an image's `ONBUILD` trigger is
    /// checked when it runs).
    fn check_entitlements(
        &self,
        graph: &kiln_plan::BuildGraph,
        dockerfile_name: &str,
    ) -> Result<(), BuildError> {
        if self.is_allowed(Entitlement::SecurityInsecure) {
            return Ok(());
        }
        let insecure = graph
            .stages
            .iter()
            .flat_map(|stage| stage.triggers.iter().chain(&stage.instructions))
            .find(|instruction| {
                matches!(
                    &instruction.command,
                    kiln_dockerfile::Command::Run(run)
                        if run.security == kiln_dockerfile::SecurityMode::Insecure
                )
            });
        match insecure {
            None => Ok(()),
            Some(instruction) => Err(BuildError::InsecureNotAllowed {
                dockerfile: dockerfile_name.to_owned(),
                line: instruction.syntax.start_line as usize,
            }),
        }
    }

    fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }

    /// What can be checked before anything runs, as buildx does at the start: every output
    /// destination (nothing that is not what the output writes gets replaced) and every
    /// secret's source (a file that can be read, an environment variable that is set).
    fn check_before_build(&self) -> Result<(), BuildError> {
        for output in &self.outputs {
            output.check_destination().map_err(OptionsError::from)?;
        }
        if self.outputs.iter().filter(|o| o.is_stdout()).count() > 1 {
            return Err(OptionsError::TwoStdoutOutputs.into());
        }
        for secret in &self.secrets {
            let id = &secret.id;
            if let Some(src) = &secret.src {
                let unreadable = |source| OptionsError::SecretUnreadable {
                    id: id.clone(),
                    path: src.clone(),
                    source,
                };
                #[expect(
                    clippy::disallowed_methods,
                    reason = "SecretUnreadable names the path; fs_err would name it twice"
                )]
                let meta = std::fs::metadata(src).map_err(unreadable)?;
                if !meta.is_file() {
                    return Err(OptionsError::SecretNotAFile {
                        id: id.clone(),
                        path: src.clone(),
                    }
                    .into());
                }
                #[expect(
                    clippy::disallowed_methods,
                    reason = "SecretUnreadable names the path; fs_err would name it twice"
                )]
                std::fs::File::open(src).map_err(unreadable)?;
            } else if let Some(var) = &secret.env
                && std::env::var_os(var).is_none()
            {
                return Err(OptionsError::SecretEnvUnset {
                    id: id.clone(),
                    var: var.clone(),
                }
                .into());
            }
        }
        Ok(())
    }

    fn read_dockerfile(&self) -> Result<(String, String), BuildError> {
        if let Some(text) = &self.dockerfile_text {
            return Ok(("Dockerfile".to_owned(), text.clone()));
        }
        let path = self.dockerfile_path();
        #[expect(
            clippy::disallowed_methods,
            reason = "ReadDockerfile names the path with a hint (snapshot-tested); fs_err would name it twice"
        )]
        let bytes = std::fs::read(&path).map_err(|source| BuildError::ReadDockerfile {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column, byte) = invalid_utf8_at(e.as_bytes(), e.utf8_error().valid_up_to());
            BuildError::DockerfileNotUtf8 {
                path: path.clone(),
                line,
                column,
                byte,
            }
        })?;
        Ok((path.display().to_string(), text))
    }

    /// `.dockerignore` of the context, or `<Dockerfile>.dockerignore` next to the
    /// Dockerfile, which wins (BuildKit).
    fn context_filter(&self, _dockerfile_name: &str) -> Result<Arc<IgnoreFilter>, BuildError> {
        let mut candidates = Vec::new();
        if self.dockerfile_text.is_none() {
            let df = self.dockerfile_path();
            if let Some(name) = df.file_name() {
                let mut n = name.to_os_string();
                n.push(".dockerignore");
                candidates.push(df.with_file_name(n));
            }
        }
        candidates.push(self.context.join(".dockerignore"));
        for path in candidates {
            match fs_err::read_to_string(&path) {
                Ok(text) => {
                    let patterns = read_ignore_file(&text).map_err(|source| match source {
                        kiln_dockerfile::PatternError::LineTooLong { line, .. } => {
                            ContextError::IgnoreLineTooLong {
                                path: path.clone(),
                                line,
                                source,
                            }
                        }
                        source => ContextError::IgnoreFile {
                            path: path.clone(),
                            source,
                        },
                    })?;
                    let matcher = PatternMatcher::new(&patterns).map_err(|source| {
                        ContextError::InvalidPattern {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    // A pattern that cannot be evaluated would fail every match (BuildKit
                    // then fails the build); refuse it now rather than treat its files as
                    // not excluded and copy what the user meant to keep out.
                    if let Some(pattern) = matcher
                        .patterns()
                        .iter()
                        .find(|p| p.unmatchable_reason().is_some())
                    {
                        return Err(ContextError::UnmatchablePattern {
                            path,
                            pattern: format!(
                                "{}{}",
                                if pattern.is_exclusion() { "!" } else { "" },
                                pattern.as_str()
                            ),
                            reason: pattern.unmatchable_reason().unwrap_or_default().to_owned(),
                        }
                        .into());
                    }
                    return Ok(Arc::new(IgnoreFilter {
                        matcher: Some(matcher),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ContextError::ReadIgnoreFile { path, source }.into());
                }
            }
        }
        Ok(Arc::new(IgnoreFilter { matcher: None }))
    }
}

/// The context's `.dockerignore` as a [`ContextFilter`].
#[derive(Debug)]
pub(crate) struct IgnoreFilter {
    matcher: Option<PatternMatcher>,
}

impl ContextFilter for IgnoreFilter {
    fn is_excluded(&self, path: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.matches_or_parent_matches(path).unwrap_or(false))
    }

    fn may_reinclude_below(&self, dir: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| {
            matches!(
                m.exclusion_state(dir),
                Ok(DirDecision::Excluded {
                    may_reinclude_children: true
                })
            )
        })
    }

    fn excludes_nothing(&self) -> bool {
        self.matcher.is_none()
    }
}

impl ContextFilter for Arc<IgnoreFilter> {
    fn is_excluded(&self, path: &str) -> bool {
        (**self).is_excluded(path)
    }

    fn may_reinclude_below(&self, dir: &str) -> bool {
        (**self).may_reinclude_below(dir)
    }

    fn excludes_nothing(&self) -> bool {
        (**self).excludes_nothing()
    }
}

/// The name this build's key inputs are saved under, to explain the next build's misses: one
/// history per (context, Dockerfile, target). The store names records by hex only, so it is
/// a digest (domain-separated from step keys, which are digests of a different encoding).
fn history_name(context_root: &Path, dockerfile_name: &str, target: Option<&str>) -> String {
    Digest::sha256_of(
        format!(
            "kiln build history v1\0{}\0{}\0{}",
            context_root.display(),
            dockerfile_name,
            target.unwrap_or("")
        )
        .as_bytes(),
    )
    .hex()
    .to_owned()
}

/// Line, column (in characters) and value of the first byte of `bytes` that is not UTF-8
/// (at `valid_up_to`).
fn invalid_utf8_at(bytes: &[u8], valid_up_to: usize) -> (usize, usize, u8) {
    let before = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (
        line,
        before[line_start..].chars().count() + 1,
        bytes[valid_up_to],
    )
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
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/kiln");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/kiln")
}
