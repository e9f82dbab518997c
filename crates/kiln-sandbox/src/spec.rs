//! What to run: [`RunSpec`] (rootfs layers, command, user, environment, mounts, limits) and
//! what came out of it: [`RunOutcome`]. The spec crosses the process boundary to the helper as
//! JSON, so everything here is plain serde data except the cancellation token.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cancel::CancelToken;

/// The network a sandboxed command sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Network {
    /// The host's network namespace, like `docker build`'s default.
    #[default]
    Host,
    /// A fresh network namespace with only the loopback interface (up).
    None,
}

/// How confined the command is (`RUN --security=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Security {
    /// Docker's default profile, as BuildKit applies it through runc: only Docker's default
    /// capabilities, its seccomp filter, and the masked and read-only `/proc` and `/sys`
    /// paths (see [`DEFAULT_CAPABILITIES`](crate::DEFAULT_CAPABILITIES),
    /// [`MASKED_PATHS`](crate::MASKED_PATHS), [`READONLY_PATHS`](crate::READONLY_PATHS)).
    #[default]
    Sandbox,
    /// `RUN --security=insecure`: every capability of the user namespace, no seccomp
    /// filter, `/proc` and `/sys` unmasked and `/proc/sys` writable. The caller must have
    /// been granted the `security.insecure` entitlement; the sandbox does not check it.
    Insecure,
}

/// How a command is kept apart from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Isolation {
    /// User, mount, pid, uts and ipc namespaces over an overlay (or copied) rootfs, with a
    /// fresh `/proc`: the full sandbox. Needs user namespaces (and, rootless, subuid ranges).
    #[default]
    Namespaces,
    /// No new namespaces: the command runs chrooted into a private copy of the rootfs, for a
    /// root process in an unprivileged container (no `CAP_SYS_ADMIN`, user namespaces
    /// blocked). Mounts are made where the container allows them, else the mount sources are
    /// copied in and out; see the crate's README for what it cannot do.
    Chroot,
}

impl Isolation {
    /// `namespaces` or `chroot`, as the `--isolation` flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Namespaces => "namespaces",
            Self::Chroot => "chroot",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource limit (`--ulimit NAME=SOFT[:HARD]`): a `setrlimit(2)` resource by Docker's
/// name and its soft and hard values; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `core`, `cpu`, `data`, `fsize`, `locks`, `memlock`, `msgqueue`, `nice`, `nofile`,
    /// `nproc`, `rss`, `rtprio`, `rttime`, `sigpending` or `stack` ([`Ulimit::NAMES`]).
    pub name: String,
    /// The soft limit.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

impl Ulimit {
    /// The resource names Docker's `--ulimit` accepts.
    pub const NAMES: [&'static str; 15] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
}

/// A rootfs kept by an earlier chroot run, to reuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChrootReuse {
    /// The kept directory (moved, not copied: it must be on the work directory's
    /// filesystem).
    pub rootfs: PathBuf,
    /// How many of the spec's lowers, counted from the bottom, it already holds; the ones
    /// above are applied on top.
    pub applied: usize,
}

/// Default process limit of a sandbox (pids cgroup, or `RLIMIT_NPROC` where no cgroup can
/// be made): a fork bomb fails the step instead of stalling the host.
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;

/// An extra mount for the sandboxed command (`RUN --mount=…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ExtraMount {
    /// Bind-mounts a host path (file or directory) at `target` inside the sandbox.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Absolute path inside the sandbox.
        target: PathBuf,
        /// Mount read-only (recursively).
        is_readonly: bool,
        /// Give the mounted file or directory this owner (`uid`, `gid` inside the sandbox)
        /// before the command starts. Done from inside the user namespace, so it works
        /// rootless too, where the host ids of the sandbox's users are subordinate ids the
        /// caller cannot `chown` to.
        owner: Option<(u32, u32)>,
    },
    /// A fresh tmpfs at `target`.
    Tmpfs {
        /// Absolute path inside the sandbox.
        target: PathBuf,
        /// Its size limit in bytes (`size=`); `None` is the kernel's default, half of RAM.
        size: Option<u64>,
    },
}

impl ExtraMount {
    /// The absolute path inside the sandbox.
    pub fn target(&self) -> &std::path::Path {
        match self {
            Self::Bind { target, .. } | Self::Tmpfs { target, .. } => target,
        }
    }
}

/// Everything needed to run one command in a sandbox.
///
/// `lowers` are read-only snapshot directories, **top-most first** (overlayfs order); they
/// may contain overlay whiteouts (0/0 character devices) and opaque directories. `upper` must
/// be an empty directory: after the run it holds the diff in overlay form. `work` is a scratch
/// directory on the same filesystem as `upper`, owned by the sandbox for the run (it holds the
/// overlay workdir, the merged mountpoint, generated `/etc/hosts` etc.); the caller removes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Read-only layer directories, top-most first. Empty means an empty rootfs.
    pub lowers: Vec<PathBuf>,
    /// Fresh, empty upper directory; receives the diff.
    pub upper: PathBuf,
    /// Scratch directory on the same filesystem as `upper`.
    pub work: PathBuf,
    /// The command; `argv[0]` is looked up in the sandbox's `PATH` unless it contains a `/`.
    /// Shell form is the caller's job (`["/bin/sh", "-c", "…"]`).
    pub argv: Vec<String>,
    /// Environment as `KEY=VALUE` strings. `PATH` defaults to the usual list, `HOME` to the
    /// user's home directory from `/etc/passwd`.
    pub env: Vec<String>,
    /// `USER`: `name`, `uid`, `name:group` or `uid:gid`; empty means root.
    pub user: String,
    /// Working directory inside the sandbox; created (mode 0755) if missing. Empty means `/`.
    pub workdir: String,
    /// Hostname inside the sandbox (also written to `/etc/hostname` and `/etc/hosts`).
    pub hostname: String,
    /// Network namespace choice.
    pub network: Network,
    /// Extra bind/tmpfs mounts.
    pub mounts: Vec<ExtraMount>,
    /// Run kiln's init as PID 1 (like `docker run --init`): it reaps orphans while the
    /// command runs and forwards signals; the command is then PID 2. Without it the command
    /// itself is PID 1 (`echo $$` prints 1, as under BuildKit) and leftover processes are
    /// killed and reaped by the kernel when it exits.
    pub init: bool,
    /// Capabilities, seccomp and masked paths: Docker's default profile unless `Insecure`.
    pub security: Security,
    /// Namespaces (the default) or chroot isolation.
    #[serde(default)]
    pub isolation: Isolation,
    /// Extra `/etc/hosts` entries (`--add-host`): (host name, address). Only in the
    /// sandbox's generated file, never in the layer.
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// Resource limits (`--ulimit`), set before the command starts.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// The size of `/dev/shm` in bytes (`--shm-size`); `None` is 64 MiB, Docker's default.
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Chroot isolation: start from a rootfs an earlier run kept ([`RunSpec::chroot_keep`])
    /// instead of copying every lower.
    #[serde(default)]
    pub chroot_reuse: Option<ChrootReuse>,
    /// Chroot isolation: after a successful run, leave the rootfs at `work/rootfs`, holding
    /// exactly the lowers plus the diff, for the caller to pass to the next step as
    /// [`RunSpec::chroot_reuse`] (a stage's RUNs then copy its base once).
    #[serde(default)]
    pub chroot_keep: bool,
    /// The most processes (and threads) the sandbox may have at once; `None` means no limit.
    /// Enforced with a pids cgroup (v2 where delegated, else v1), else `RLIMIT_NPROC`.
    pub pids_limit: Option<u32>,
    /// Kill the command after this long.
    #[serde(skip)]
    pub timeout: Option<Duration>,
    /// Cancels the run from another thread.
    #[serde(skip)]
    pub cancel: Option<CancelToken>,
}

/// Default hostname of a sandbox, like BuildKit's `buildkitsandbox`.
pub const DEFAULT_HOSTNAME: &str = "kiln-sandbox";

/// `PATH` when the image sets none (BuildKit's default for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl RunSpec {
    /// A spec with defaults: root user, `/` as working directory, host network, no mounts.
    pub fn new(
        lowers: Vec<PathBuf>,
        upper: impl Into<PathBuf>,
        work: impl Into<PathBuf>,
        argv: Vec<String>,
    ) -> Self {
        Self {
            lowers,
            upper: upper.into(),
            work: work.into(),
            argv,
            env: Vec::new(),
            user: String::new(),
            workdir: String::new(),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            network: Network::Host,
            mounts: Vec::new(),
            init: false,
            security: Security::Sandbox,
            isolation: Isolation::Namespaces,
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: None,
            chroot_reuse: None,
            chroot_keep: false,
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            timeout: None,
            cancel: None,
        }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// True for `Exited(0)`.
    pub fn is_success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exit code {code}"),
            Self::Signaled(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// How the root filesystem was provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsMode {
    /// Kernel overlayfs over the lowers; the upperdir is the diff as written by the kernel.
    Overlay,
    /// Overlayfs was unavailable (or `KILN_SANDBOX_FORCE_COPY=1`): the lowers were copied into
    /// a private rootfs and a metadata differ wrote the diff into the upperdir afterwards.
    CopyFallback,
    /// [`Isolation::Chroot`]: the command ran chrooted into a private copy of the rootfs; a
    /// metadata differ wrote the diff into the upperdir afterwards.
    Chroot,
}

/// The result of a run that started the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The command's exit status.
    pub status: ExitStatus,
    /// How the rootfs was provided.
    pub mode: RootfsMode,
    /// What the command had to do without under chroot isolation (no `/proc`, no device
    /// nodes…), one line each; empty under namespaces.
    pub notices: Vec<String>,
}
