//! The helper process (`<exe> __kiln-sandbox-init`), started fresh by [`Sandbox::run`] so it
//! is single-threaded — a requirement of `unshare(CLONE_NEWUSER)` and of a safe `fork`.
//!
//! Process tree: helper (host namespaces: prepares the overlay or the copied rootfs, writes
//! the id maps, post-processes the upperdir) → holder (new user + pid + uts + ipc [+ net]
//! namespaces) → PID 1 ([`crate::init`]: mounts, `pivot_root`, reaper) → the command.
//! Every child dies with its parent (`PR_SET_PDEATHSIG`), and the death of PID 1 kills the
//! whole pid namespace, so killing the helper tears the sandbox down.
//!
//! [`Sandbox::run`]: crate::Sandbox::run

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::copyup;
use crate::overlay;
use crate::process::{HelperFailure, WorkPaths};
use crate::protocol::{self, Event, HELPER_MARKER};
use crate::rootfs::{RootSource, Stub};
use crate::spec::{Isolation, Network, RootfsMode, RunSpec};

/// Environment variable that forces the copy fallback (for tests and broken overlays).
pub const FORCE_COPY_ENV: &str = "KILN_SANDBOX_FORCE_COPY";

/// If this process was started as the sandbox helper (`argv[1] == "__kiln-sandbox-init"`),
/// runs it and returns its exit code; otherwise returns `None` at once.
///
/// Call it first thing in `main`, before any thread is started (namespaces require a
/// single-threaded process), in every executable used as [`SandboxConfig::helper_exe`]
/// (by default the current executable).
///
/// [`SandboxConfig::helper_exe`]: crate::SandboxConfig::helper_exe
pub fn run_helper_if_requested() -> Option<ExitCode> {
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new(HELPER_MARKER)) {
        return None;
    }
    Some(helper_main())
}

/// The caller's pid, so the helper can tell it was not orphaned before arming its
/// parent-death signal.
pub(crate) const PARENT_PID_ENV: &str = "KILN_SANDBOX_PARENT_PID";

fn helper_main() -> ExitCode {
    // Die with the caller: a SIGKILLed kiln must not leave a sandbox running. The signal is
    // tied to the thread that spawned us, and that thread waits for us for our whole life
    // (`Sandbox::run`), so it fires exactly when the caller goes away.
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .is_err()
    {
        eprintln!("kiln sandbox helper: cannot set the parent-death signal");
        return ExitCode::from(1);
    }
    let expected_parent = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    if let Some(expected) = expected_parent
        && rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get()) != Some(expected)
    {
        // The caller died before the signal was armed.
        return ExitCode::from(1);
    }
    // The caller's socket arrives as stdin; keep it on a close-on-exec descriptor and give
    // the sandbox /dev/null as stdin instead.
    let socket = match take_socket() {
        Ok(socket) => socket,
        Err(err) => {
            eprintln!("kiln sandbox helper: cannot take over the control socket: {err}");
            return ExitCode::from(1);
        }
    };
    let mut reader = match socket.try_clone() {
        Ok(reader) => reader,
        Err(err) => {
            protocol::send_event(&socket, &Event::Setup(format!("control socket: {err}")));
            return ExitCode::from(1);
        }
    };
    let spec = match protocol::receive_spec(&mut reader) {
        Ok(spec) => spec,
        Err(err) => {
            protocol::send_event(&socket, &Event::Setup(format!("reading the spec: {err}")));
            return ExitCode::from(1);
        }
    };
    drop(reader);
    match run_helper(&spec, &socket) {
        Ok(mode) => {
            protocol::send_event(&socket, &Event::Done(mode));
            ExitCode::SUCCESS
        }
        Err(HelperFailure::Setup(message)) => {
            protocol::send_event(&socket, &Event::Setup(message));
            ExitCode::from(1)
        }
        Err(HelperFailure::Diff(message)) => {
            protocol::send_event(&socket, &Event::Diff(message));
            ExitCode::from(1)
        }
        Err(HelperFailure::Reported) => ExitCode::from(1),
    }
}

fn take_socket() -> io::Result<UnixStream> {
    let stdin = rustix::stdio::stdin();
    let socket = rustix::io::fcntl_dupfd_cloexec(stdin, 3)?;
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut stdin_fd = {
        // SAFETY: fd 0 is open (we just duplicated it); `dup2` replaces it in place and the
        // `OwnedFd` is forgotten below so fd 0 is never closed by us.
        unsafe { OwnedFd::from_raw_fd(0) }
    };
    let result = rustix::io::dup2(&null, &mut stdin_fd);
    std::mem::forget(stdin_fd);
    result?;
    Ok(UnixStream::from(socket))
}

fn setup_err(what: &str, err: impl std::fmt::Display) -> HelperFailure {
    HelperFailure::Setup(format!("{what}: {err}"))
}

fn prepare_work(spec: &RunSpec, paths: &WorkPaths) -> Result<(), HelperFailure> {
    for dir in [&paths.merged, &paths.overlay_work] {
        fs_err::create_dir_all(dir)
            .map_err(|err| setup_err("creating the scratch directory", err))?;
    }
    if spec.lowers.is_empty() {
        fs_err::create_dir_all(&paths.empty_lower)
            .map_err(|err| setup_err("creating the scratch directory", err))?;
    }
    let hostname = &spec.hostname;
    let mut hosts =
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, address) in &spec.extra_hosts {
        use std::fmt::Write as _;
        let _ = writeln!(hosts, "{address}\t{host}");
    }
    fs_err::write(&paths.hosts, hosts).map_err(|err| setup_err("writing /etc/hosts", err))?;
    set_ulimits(&spec.ulimits)?;
    fs_err::write(&paths.hostname, format!("{hostname}\n"))
        .map_err(|err| setup_err("writing /etc/hostname", err))?;
    let resolv = match spec.network {
        Network::Host => fs_err::read_to_string("/etc/resolv.conf").unwrap_or_else(|err| {
            tracing::warn!(%err, "cannot read the host's /etc/resolv.conf; the sandbox gets an empty one");
            String::new()
        }),
        Network::None => String::new(),
    };
    fs_err::write(&paths.resolv, resolv)
        .map_err(|err| setup_err("writing /etc/resolv.conf", err))?;
    fs_err::write(&paths.stubs, "").map_err(|err| setup_err("creating the stub list", err))?;
    Ok(())
}

/// Sets the `--ulimit`s on the helper itself (with the host's credentials, which raising a
/// hard limit needs): every process of the sandbox inherits them.
fn set_ulimits(ulimits: &[crate::spec::Ulimit]) -> Result<(), HelperFailure> {
    use rustix::process::{Resource, Rlimit};
    for limit in ulimits {
        let resource = match limit.name.as_str() {
            "core" => Resource::Core,
            "cpu" => Resource::Cpu,
            "data" => Resource::Data,
            "fsize" => Resource::Fsize,
            "locks" => Resource::Locks,
            "memlock" => Resource::Memlock,
            "msgqueue" => Resource::Msgqueue,
            "nice" => Resource::Nice,
            "nofile" => Resource::Nofile,
            "nproc" => Resource::Nproc,
            "rss" => Resource::Rss,
            "rtprio" => Resource::Rtprio,
            "rttime" => Resource::Rttime,
            "sigpending" => Resource::Sigpending,
            "stack" => Resource::Stack,
            other => {
                return Err(HelperFailure::Setup(format!("unknown ulimit `{other}`")));
            }
        };
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: limit.soft,
                maximum: limit.hard,
            },
        )
        .map_err(|err| {
            HelperFailure::Setup(format!(
                "--ulimit {}={}:{}: {err} (raising a hard limit needs root)",
                limit.name,
                limit.soft.map_or("unlimited".to_owned(), |v| v.to_string()),
                limit.hard.map_or("unlimited".to_owned(), |v| v.to_string()),
            ))
        })?;
    }
    Ok(())
}

/// The rootfs decision made in the helper (host credentials).
pub(crate) enum Prepared {
    Overlay(OwnedFd),
    RootlessOverlay,
    Copy(copyup::Baseline),
}

fn prepare_rootfs(
    spec: &RunSpec,
    paths: &WorkPaths,
    is_host_root: bool,
) -> Result<Prepared, HelperFailure> {
    let lowers = effective_lowers(spec, paths);
    let is_forced_copy = std::env::var_os(FORCE_COPY_ENV).is_some_and(|v| v == "1");
    if is_forced_copy {
        tracing::warn!("{FORCE_COPY_ENV}=1: using the copy fallback instead of overlayfs");
    } else {
        if !is_host_root {
            return Ok(Prepared::RootlessOverlay);
        }
        match overlay::prepare_overlay(&lowers, &spec.upper, &paths.overlay_work) {
            Ok(fd) => return Ok(Prepared::Overlay(fd)),
            Err(err) => tracing::warn!(
                %err,
                "overlayfs is unavailable; using the copy fallback (slower, same layer)"
            ),
        }
    }
    fs_err::create_dir_all(&paths.rootfs)
        .map_err(|err| setup_err("creating the copy rootfs", err))?;
    copyup::copy_lowers(&spec.lowers, &paths.rootfs, copyup::Devices::Copy).map_err(|err| {
        setup_err(
            &format!("copying the layers into {}", paths.rootfs.display()),
            err,
        )
    })?;
    let baseline = copyup::snapshot(&paths.rootfs)
        .map_err(|err| setup_err(&format!("recording {}", paths.rootfs.display()), err))?;
    Ok(Prepared::Copy(baseline))
}

pub(crate) fn effective_lowers(spec: &RunSpec, paths: &WorkPaths) -> Vec<PathBuf> {
    if spec.lowers.is_empty() {
        vec![paths.empty_lower.clone()]
    } else {
        spec.lowers.clone()
    }
}

fn run_helper(spec: &RunSpec, socket: &UnixStream) -> Result<RootfsMode, HelperFailure> {
    if spec.argv.is_empty() {
        return Err(HelperFailure::Setup("empty command".into()));
    }
    let paths = WorkPaths::new(&spec.work);
    prepare_work(spec, &paths)?;
    if spec.isolation == Isolation::Chroot {
        return crate::chroot::run_chrooted(spec, &paths, socket);
    }
    // Root of a user namespace (kiln re-executed rootless, a rootless container) writes its
    // children identity maps over its own, but mounts overlayfs and marks opaque directories
    // the rootless way (`userxattr`, `user.overlay.*`): `trusted.*` is the initial root's.
    let is_root = rustix::process::geteuid().is_root();
    let is_host_root = crate::rootless::is_host_root();
    let prepared = prepare_rootfs(spec, &paths, is_host_root)?;
    let (mode, source, overlay_fd, baseline) = match prepared {
        Prepared::Overlay(fd) => (
            RootfsMode::Overlay,
            RootSource::PreparedOverlay,
            Some(fd),
            None,
        ),
        Prepared::RootlessOverlay => (
            RootfsMode::Overlay,
            RootSource::Overlay {
                lowers: effective_lowers(spec, &paths),
                upper: spec.upper.clone(),
                work: paths.overlay_work.clone(),
            },
            None,
            None,
        ),
        Prepared::Copy(baseline) => (
            RootfsMode::CopyFallback,
            RootSource::CopiedRootfs(paths.rootfs.clone()),
            None,
            Some(baseline),
        ),
    };
    let limit = crate::namespaces::ProcessLimit::for_spec(spec);
    let status = crate::namespaces::run_in_namespaces(
        spec, &paths, source, overlay_fd, socket, is_root, &limit,
    )?;
    drop(limit);
    if status != 0 {
        // PID 1 reported the command's status or the setup error itself; still clean up.
        tracing::debug!(status, "namespace holder exited non-zero");
    }
    let stubs = read_stubs(&paths.stubs)
        .map_err(|err| HelperFailure::Diff(format!("reading {}: {err}", paths.stubs.display())))?;
    match baseline {
        None => crate::upper::remove_stubs(&spec.upper, &effective_lowers(spec, &paths), &stubs)
            .map_err(|err| HelperFailure::Diff(err.to_string()))?,
        Some(baseline) => {
            let stub_set: HashSet<PathBuf> = stubs.into_iter().map(|s| s.path).collect();
            let opaque = if is_host_root {
                overlay::OPAQUE_XATTR_TRUSTED
            } else {
                overlay::OPAQUE_XATTR_USER
            };
            copyup::write_diff(
                &paths.rootfs,
                &baseline,
                &copyup::Unlayered {
                    stubs: &stub_set,
                    masked: &HashSet::new(),
                    written: &HashSet::new(),
                },
                &spec.upper,
                opaque,
            )
            .map_err(|err| HelperFailure::Diff(err.to_string()))?;
            crate::fsmeta::remove_all(&paths.rootfs)
                .map_err(|err| HelperFailure::Diff(err.to_string()))?;
        }
    }
    Ok(mode)
}

fn read_stubs(path: &Path) -> io::Result<Vec<Stub>> {
    let file = fs_err::File::open(path)?;
    let mut stubs = Vec::new();
    for line in io::BufReader::new(file).lines() {
        let line = line?;
        if let Ok(stub) = serde_json::from_str(&line) {
            stubs.push(stub);
        }
    }
    Ok(stubs)
}
