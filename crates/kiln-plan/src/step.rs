//! Phase 2 output: [`Step`], one fully expanded instruction the executor performs, with its
//! history text, progress label and cache-key material.

use kiln_dockerfile::{CacheSharing, NetworkMode, SecurityMode, Span};
use kiln_oci::Platform;
use serde::Serialize;

use crate::cache_key::{CacheKey, KeyInputs};
use crate::config_edit::ConfigEdit;
use crate::graph::SourceRef;

/// One expanded instruction.
///
/// The executor performs [`Step::action`], applies nothing itself for the config (the
/// [`crate::StageState`] has already applied [`Step::config_edit`] to its image config), and
/// appends a history entry `created_by` / `empty_layer` when [`Step::created_by`] is set
/// (marking it `empty_layer` after all when the layer turned out empty, as BuildKit's
/// exporter does for a `WORKDIR` whose directory existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What to do to the filesystem.
    pub action: Action,
    /// The config change, already applied to the state's image config.
    pub config_edit: Option<ConfigEdit>,
    /// History `created_by` exactly as BuildKit writes it; `None` for `ONBUILD` (BuildKit
    /// writes no history for it).
    pub created_by: Option<String>,
    /// Whether the history entry has no layer.
    pub empty_layer: bool,
    /// The progress line (`[builder 3/7] RUN pip install …`); `None` for metadata-only steps
    /// that BuildKit does not show.
    pub progress: Option<String>,
    /// The instruction as written (logical line).
    pub source_text: String,
    /// Where the instruction is (for an image's ONBUILD trigger: the stage's `FROM`).
    pub span: Span,
    /// Whether the step is an `ONBUILD` trigger of the base.
    pub is_onbuild: bool,
    /// Canonical encoding of the expanded step for its cache key.
    pub cache_text: String,
    /// Key material without parent and input digests (see [`Step::key_inputs`]).
    #[serde(skip)]
    pub(crate) key: KeyInputs,
}

impl Step {
    /// The [`KeyInputs`] of this step with `parent` (the previous step's key). The executor
    /// then adds the content digests of the step's inputs ([`KeyInputs::add_input`]: the
    /// copied files of a COPY/ADD, the copied subtree of a `--from` stage, the mounted
    /// sources of a RUN) and calls [`KeyInputs::key`].
    pub fn key_inputs(&self, parent: Option<CacheKey>) -> KeyInputs {
        let mut key = self.key.clone();
        key.set_parent(parent);
        key
    }

    /// Whether the step changes the filesystem (RUN, COPY, ADD, WORKDIR).
    pub fn has_layer(&self) -> bool {
        !matches!(self.action, Action::None)
    }
}

/// The filesystem work of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Config only (ENV, LABEL, CMD, …).
    None,
    /// `RUN`.
    Run(RunAction),
    /// `COPY` / `ADD`.
    Copy(CopyAction),
    /// `WORKDIR`: create the directory (parents too, mode 0755, owned by `user`) if missing.
    MakeDir {
        /// Absolute path.
        path: String,
        /// The stage's USER at this point (`""` = root), resolved in the stage's passwd.
        user: String,
    },
}

/// A fully expanded `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAction {
    /// The process argv (shell form already wrapped in the stage's SHELL).
    pub argv: Vec<String>,
    /// The process environment as `K=V`, in BuildKit's order: image env, ENV, ARGs in scope
    /// (last definition last), then proxy `--build-arg`s not already set.
    pub env: Vec<String>,
    /// ARGs in scope as `(name, value)` (history `RUN |N K=V …` and the cache key; proxy
    /// args excluded).
    pub args_in_scope: Vec<(String, String)>,
    /// USER (`""` = root), resolved in the stage's /etc/passwd at run time.
    pub user: String,
    /// Working directory (absolute).
    pub workdir: String,
    /// `--mount`s, expanded and resolved.
    pub mounts: Vec<RunMount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
    /// Files to provide for a heredoc script with a shebang (`RUN <<EOF` + `#!/usr/bin/env
    /// python3`): BuildKit mounts them read-only at `/dev/pipes/<name>`, mode 0755.
    pub inline_files: Vec<InlineFile>,
}

/// A file given inline (heredoc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// Where it appears: absolute in the container for RUN, the source name for COPY/ADD.
    pub path: String,
    /// Its content.
    pub content: String,
    /// Its mode.
    pub mode: u32,
}

/// One expanded `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunMount {
    /// `type=bind`: a path of the context, a stage or an image.
    Bind {
        /// Absolute mount point.
        target: String,
        /// What is mounted.
        from: SourceRef,
        /// The path inside `from` (absolute, `/` = its root).
        source: String,
        /// Writes are allowed (and discarded): `rw`.
        read_write: bool,
    },
    /// `type=cache`: a persistent directory kept by the store under `id` (never part of a
    /// cache key).
    Cache {
        /// Absolute mount point.
        target: String,
        /// Cache id (default: the target).
        id: String,
        /// `sharing=`.
        sharing: CacheSharing,
        /// Seed contents (`from=`), `Scratch` by default.
        from: SourceRef,
        /// Path inside `from`.
        source: String,
        /// `ro`.
        read_only: bool,
        /// `mode=` of the cache root (default 0755).
        mode: Option<u32>,
        /// `uid=`.
        uid: Option<u32>,
        /// `gid=`.
        gid: Option<u32>,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Absolute mount point.
        target: String,
        /// `size=` in bytes.
        size: Option<i64>,
    },
    /// `type=secret`: never part of a key or a layer.
    Secret {
        /// Secret id (`--secret id=…`).
        id: String,
        /// File path in the container (`/run/secrets/<id>` by default), `None` when only
        /// exposed as an env var.
        target: Option<String>,
        /// `env=`: expose as this environment variable.
        env: Option<String>,
        /// Fail when the secret is not provided.
        required: bool,
        /// File mode (default 0400).
        mode: u32,
        /// `uid=`.
        uid: u32,
        /// `gid=`.
        gid: u32,
    },
    /// `type=ssh`: an SSH agent socket.
    Ssh {
        /// Agent id (`default`).
        id: String,
        /// Socket path (`/run/buildkit/ssh_agent.N`).
        target: String,
        /// Fail when the agent is not provided.
        required: bool,
        /// Socket mode (default 0600).
        mode: u32,
        /// `uid=`.
        uid: u32,
        /// `gid=`.
        gid: u32,
    },
}

/// A fully expanded `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyAction {
    /// `ADD` (URLs, git, tar auto-extraction) rather than `COPY`.
    pub is_add: bool,
    /// Source paths/patterns, expanded, relative to `from`'s root (or URLs for ADD).
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`): file name and content (mode 0644).
    pub inline_sources: Vec<InlineFile>,
    /// Destination: absolute (relative ones joined to WORKDIR), trailing `/` kept.
    pub dest: String,
    /// Where sources come from.
    pub from: SourceRef,
    /// `--chown`, expanded (names resolved in the destination stage).
    pub chown: Option<String>,
    /// `--chmod`, expanded (octal or symbolic).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// ADD `--checksum`, expanded.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: Option<bool>,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
}

/// Builds the key material of a step.
pub(crate) fn key_material(
    cache_text: &str,
    platform: &Platform,
    args: &[(String, String)],
    settings: &[(&str, String)],
) -> KeyInputs {
    let mut key = KeyInputs::new(cache_text, platform);
    for (name, value) in args {
        key.add_arg(name, value);
    }
    for (name, value) in settings {
        key.add_setting(name, value.clone());
    }
    key
}
