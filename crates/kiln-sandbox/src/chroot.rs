//! Chroot isolation ([`Isolation::Chroot`]), for a root process in an unprivileged container
//! (Docker's default capabilities: no `CAP_SYS_ADMIN`, user namespaces blocked), where the
//! namespace sandbox cannot start. The helper, single-threaded and started fresh for this run:
//!
//! 1. copies the lowers into `work/rootfs` (device nodes left out) and snapshots its metadata;
//! 2. tries a private mount namespace; with it, makes the sandbox's mounts over the copy
//!    ([`setup_chroot`]), without it copies the mount sources in;
//! 3. becomes a child subreaper and forks the command, which starts its own session (process
//!    group), chroots into the copy, drops `CAP_SYS_CHROOT` and `CAP_MKNOD` with the rest of
//!    the capabilities Docker does not grant, switches user and executes;
//! 4. after the command ends, kills its process group and every process re-parented to the
//!    helper, detaches the mounts, copies read-write mount sources back, and writes the diff
//!    into the upperdir with the metadata differ, ignoring the paths that stood for mounts.
//!
//! What this cannot give, compared with the namespace sandbox, is listed in the crate README.
//!
//! [`Isolation::Chroot`]: crate::Isolation::Chroot

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal};

use crate::copyup;
use crate::namespaces::ProcessLimit;
use crate::overlay;
use crate::process::{self, HelperFailure, WorkPaths};
use crate::protocol::{self, Event};
use crate::rootfs::{ChrootSetup, RootSource, RootfsPlan, resolve_in_root, setup_chroot};
use crate::spec::{ExitStatus, Network, RootfsMode, RunSpec};
use crate::syscalls::{RealSyscalls, Syscalls};

/// Environment variable that makes chroot isolation act as if no mount were allowed even
/// where one is (for tests of the copy-in path on a privileged host).
pub const NO_MOUNTS_ENV: &str = "KILN_SANDBOX_NO_MOUNTS";

fn setup_err(what: &str, err: impl std::fmt::Display) -> HelperFailure {
    HelperFailure::Setup(format!("{what}: {err}"))
}

/// Runs `spec` under chroot isolation; the helper's whole job for such a spec.
pub(crate) fn run_chrooted(
    spec: &RunSpec,
    paths: &WorkPaths,
    socket: &UnixStream,
) -> Result<RootfsMode, HelperFailure> {
    if !rustix::process::geteuid().is_root() {
        return Err(HelperFailure::Setup(
            "chroot isolation needs root (it is meant for root in an unprivileged container); \
             as an ordinary user kiln needs user namespaces and subuid ranges: use \
             --isolation=namespaces and `usermod --add-subuids 100000-165535 --add-subgids \
             100000-165535 USER`"
                .to_owned(),
        ));
    }
    if spec.network == Network::None {
        return Err(HelperFailure::Setup(
            "--network=none cannot be honoured under chroot isolation: it has no network \
             namespace, so the command would see the container's network; use \
             --isolation=namespaces where user namespaces are allowed, or drop \
             --network=none"
                .to_owned(),
        ));
    }
    let rootfs = &paths.rootfs;
    prepare_copy(spec, rootfs)?;
    let saved_dir = spec.work.join("saved");
    fs_err::create_dir_all(&saved_dir).map_err(|err| setup_err("creating the chroot", err))?;
    let touched = touched_dirs(rootfs, spec);
    let mut sys = RealSyscalls::default();
    let can_mount = private_mount_namespace(&mut sys);
    let plan = RootfsPlan {
        merged: rootfs.clone(),
        source: RootSource::CopiedRootfs(rootfs.clone()),
        hosts_file: paths.hosts.clone(),
        hostname_file: paths.hostname.clone(),
        resolv_file: paths.resolv.clone(),
        hostname: spec.hostname.clone(),
        network: spec.network,
        mounts: spec.mounts.clone(),
        security: spec.security,
        shm_size: spec.shm_size,
    };
    let mut setup = ChrootSetup::default();
    if let Err(err) = setup_chroot(&mut sys, &plan, can_mount, &saved_dir, &mut setup) {
        detach(rootfs, can_mount);
        return Err(setup_err(
            &format!("preparing the chroot at {}", rootfs.display()),
            err,
        ));
    }
    // The baseline is taken after the setup, so the directories it touched (the parents of
    // `/etc/hosts`, of a secret's target…) are no change of the command's, as under the
    // namespace sandbox, which removes its stubs and restores their parents' times.
    let masked: HashSet<PathBuf> = setup.masked.iter().cloned().collect();
    let baseline = match copyup::snapshot_except(rootfs, &masked) {
        Ok(baseline) => baseline,
        Err(err) => {
            detach(rootfs, can_mount);
            return Err(setup_err(&format!("recording {}", rootfs.display()), err));
        }
    };
    let has_seccomp = crate::confine::can_install_seccomp();
    if !has_seccomp {
        setup.limits.push(
            "kiln's seccomp filter needs CAP_SYS_ADMIN: RUN is filtered by the container's \
             own profile only"
                .to_owned(),
        );
    }
    for limit in &setup.limits {
        protocol::send_event(socket, &Event::Notice(limit.clone()));
    }
    let status = run_command(spec, rootfs, &masked, socket, has_seccomp);
    detach(rootfs, can_mount);
    let (status, written) = status?;
    tracing::debug!(%status, written = written.len(), "chrooted command ended");
    for (rel, source) in &setup.copy_back {
        copy_back(rootfs, rel, source).map_err(|err| {
            HelperFailure::Diff(format!(
                "copying {} back to {}: {err}",
                Path::new("/").join(rel).display(),
                source.display()
            ))
        })?;
    }
    let stubs: HashSet<PathBuf> = setup.stubs.iter().map(|stub| stub.path.clone()).collect();
    copyup::write_diff(
        rootfs,
        &baseline,
        &copyup::Unlayered {
            stubs: &stubs,
            masked: &masked,
            written: &written,
        },
        &spec.upper,
        overlay::OPAQUE_XATTR_USER,
    )
    .map_err(|err| HelperFailure::Diff(err.to_string()))?;
    // As the namespace sandbox tidies its stubs' parents: one the command wrote into is in
    // the layer with its times from before the run.
    for dir in touched.iter().filter(|dir| dir.holds_stub) {
        let in_layer = spec.upper.join(&dir.rel);
        if is_dir(&in_layer) {
            crate::fsmeta::set_times(&in_layer, &dir.stat)
                .map_err(|err| HelperFailure::Diff(err.to_string()))?;
        }
    }
    let is_kept = spec.chroot_keep
        && status.is_success()
        && undo(rootfs, &setup, &masked, &touched)
            .inspect_err(|err| tracing::debug!(%err, "the chroot is not kept"))
            .is_ok();
    if !is_kept {
        crate::fsmeta::remove_all(rootfs).map_err(|err| HelperFailure::Diff(err.to_string()))?;
    }
    Ok(RootfsMode::Chroot)
}

/// Fills `rootfs`: the caller's kept rootfs of an earlier run with only the newer lowers
/// applied on top, else a copy of every lower.
fn prepare_copy(spec: &RunSpec, rootfs: &Path) -> Result<(), HelperFailure> {
    let reused = spec.chroot_reuse.as_ref().and_then(|reuse| {
        let new = spec.lowers.len().checked_sub(reuse.applied)?;
        match fs_err::rename(&reuse.rootfs, rootfs) {
            Ok(()) => Some(&spec.lowers[..new]),
            Err(err) => {
                tracing::debug!(%err, "the kept chroot cannot be reused; copying");
                None
            }
        }
    });
    let lowers = if let Some(new) = reused {
        new
    } else {
        fs_err::create_dir_all(rootfs).map_err(|err| setup_err("creating the chroot", err))?;
        &spec.lowers[..]
    };
    copyup::copy_lowers(lowers, rootfs, copyup::Devices::Skip).map_err(|err| {
        setup_err(
            &format!("copying the layers into {}", rootfs.display()),
            err,
        )
    })
}

/// A directory the setup may change (a parent of a stand-in), with its metadata before.
struct Touched {
    rel: PathBuf,
    stat: rustix::fs::Stat,
    /// A parent of a stand-in the image did not have: the namespace sandbox's stub would
    /// have been there, and its parents keep their own times in the layer
    /// (`upper::remove_stubs`), which [`run_chrooted`] mirrors.
    holds_stub: bool,
}

/// The directories the setup may change (the parents of every stand-in), with their
/// metadata before it, so that [`undo`] can give them their times back.
fn touched_dirs(rootfs: &Path, spec: &RunSpec) -> Vec<Touched> {
    let mut targets: Vec<PathBuf> = ["/proc", "/sys", "/dev", "/tmp"]
        .iter()
        .map(PathBuf::from)
        .collect();
    for file in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
        targets.push(PathBuf::from(file));
    }
    targets.extend(spec.mounts.iter().map(|m| m.target().to_path_buf()));
    let mut dirs = std::collections::BTreeMap::new();
    for target in targets {
        let Ok(rel) = resolve_in_root(rootfs, &target) else {
            continue;
        };
        let is_new = rustix::fs::lstat(rootfs.join(&rel)).is_err();
        let mut dir = rel.parent();
        while let Some(parent) = dir {
            *dirs.entry(parent.to_path_buf()).or_insert(false) |= is_new;
            dir = parent.parent();
        }
    }
    dirs.into_iter()
        .filter_map(|(rel, holds_stub)| {
            let stat = crate::fsmeta::lstat(&rootfs.join(&rel)).ok()?;
            (rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory)
                .then_some(Touched {
                    rel,
                    stat,
                    holds_stub,
                })
        })
        .collect()
}

/// Whether `rel` (relative to `rootfs`, made symlink-free by [`resolve_in_root`] before the
/// run) still is: the command may have replaced a parent with a symlink since, and a
/// host-side write through it would leave the rootfs.
fn has_no_symlinked_parent(rootfs: &Path, rel: &Path) -> std::io::Result<bool> {
    Ok(resolve_in_root(rootfs, &Path::new("/").join(rel))? == rel)
}

/// Takes the setup back out of the rootfs after the run (the command and every process it
/// left are dead): removes the stand-ins and the directories made for them (those the command
/// wrote into stay), puts back what they hid, and restores the touched directories' times. The
/// rootfs is then the lowers plus the diff just written, ready for the next step. Every path
/// is checked for a symlink the command may have put in its way first.
fn undo(
    rootfs: &Path,
    setup: &ChrootSetup,
    masked: &HashSet<PathBuf>,
    touched: &[Touched],
) -> std::io::Result<()> {
    let checked = |rel: &Path| -> std::io::Result<PathBuf> {
        if has_no_symlinked_parent(rootfs, rel)? {
            Ok(rootfs.join(rel))
        } else {
            Err(std::io::Error::other(format!(
                "{} was moved behind a symlink",
                rel.display()
            )))
        }
    };
    for stub in setup.stubs.iter().rev() {
        let path = checked(&stub.path)?;
        let is_masked = masked.iter().any(|m| stub.path.starts_with(m));
        if is_masked || !stub.is_dir {
            crate::fsmeta::remove_all(&path)?;
            continue;
        }
        match fs_err::remove_dir(&path) {
            Ok(()) => {}
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ENOTEMPTY | libc::ENOENT | libc::EEXIST)
                ) => {}
            Err(err) => return Err(err),
        }
    }
    for (rel, saved) in setup.saved.iter().rev() {
        let path = checked(rel)?;
        crate::fsmeta::remove_all(&path)?;
        fs_err::rename(saved, &path)?;
    }
    for dir in touched {
        let path = checked(&dir.rel)?;
        if is_dir(&path) {
            crate::fsmeta::set_times(&path, &dir.stat)?;
        }
    }
    Ok(())
}

fn is_dir(path: &Path) -> bool {
    rustix::fs::lstat(path).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory
    })
}

/// A private mount namespace for the helper, if the container allows one (`CAP_SYS_ADMIN`).
fn private_mount_namespace(sys: &mut RealSyscalls) -> bool {
    if std::env::var_os(NO_MOUNTS_ENV).is_some_and(|v| v == "1") {
        return false;
    }
    match sys.apply(&crate::syscalls::Op::UnshareMountNamespace) {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(%err, "no mount namespace: chroot without mounts");
            false
        }
    }
}

/// Lazily unmounts the copy bound onto itself (and so everything mounted under it); the
/// mounts only ever existed in the helper's private mount namespace.
fn detach(rootfs: &Path, can_mount: bool) {
    if can_mount
        && let Err(err) = rustix::mount::unmount(rootfs, rustix::mount::UnmountFlags::DETACH)
    {
        tracing::debug!(%err, "detaching the chroot's mounts");
    }
}

/// Forks the command, waits for it, reports its status, and kills whatever it left behind;
/// returns the status and the files of the rootfs opened for writing meanwhile.
fn run_command(
    spec: &RunSpec,
    rootfs: &Path,
    masked: &HashSet<PathBuf>,
    socket: &UnixStream,
    has_seccomp: bool,
) -> Result<(ExitStatus, HashSet<PathBuf>), HelperFailure> {
    let mut watch = WriteWatch::new(rootfs, masked);
    let limit = ProcessLimit::for_spec(spec);
    // The command runs as our uid: not dumpable, we cannot be ptraced by it (the command
    // itself becomes dumpable again at `execve`).
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    // Orphans of the command are re-parented to us, so none can outlive the step.
    if let Err(err) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        return Err(setup_err("becoming the child subreaper", err));
    }
    let (go_read, go_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|err| setup_err("pipe", err))?;
    let helper = rustix::process::getpid();
    let child = process::fork().map_err(|err| setup_err("fork", err))?;
    let Some(child) = child else {
        drop(go_write);
        let code = command_main(spec, rootfs, socket, helper, &go_read, &limit, has_seccomp);
        std::process::exit(code);
    };
    drop(go_read);
    if let ProcessLimit::Cgroup(cgroup) = &limit
        && let Err(err) = cgroup.add(child)
    {
        kill_all(child);
        return Err(HelperFailure::Setup(format!(
            "moving the command into its pids cgroup: {err}"
        )));
    }
    protocol::send_event(socket, &Event::ProcessGroup(child.as_raw_nonzero().get()));
    if let Err(err) = process::signal_pipe(&go_write) {
        kill_all(child);
        return Err(setup_err("releasing the command", err));
    }
    drop(go_write);
    if let Some(watch) = &mut watch {
        watch.until_exit(child);
    }
    // Only `child`: re-parented orphans are reaped by `kill_all`.
    let status = crate::namespaces::wait_status(child);
    protocol::send_event(socket, &Event::Exit(status));
    kill_all(child);
    drop(limit);
    let written = match watch {
        Some(mut watch) => {
            watch.drain();
            watch.written
        }
        None => HashSet::new(),
    };
    Ok((status, written))
}

/// The files the command closes after opening them for writing (`IN_CLOSE_WRITE` on every
/// directory of the rootfs). Overlayfs copies such a file up even when nothing in it changed
/// (`/etc/.pwd.lock` of `useradd`, apt's and dpkg's lock files), so it is in the namespace
/// sandbox's layer; the metadata differ would not see it without this list.
struct WriteWatch {
    fd: OwnedFd,
    dirs: std::collections::HashMap<i32, PathBuf>,
    written: HashSet<PathBuf>,
}

impl WriteWatch {
    /// Watches every directory of `rootfs` but the `masked` ones; `None` where inotify is
    /// unavailable or its watch limit is reached (then the diff goes by metadata alone).
    fn new(rootfs: &Path, masked: &HashSet<PathBuf>) -> Option<Self> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .inspect_err(|err| tracing::debug!(%err, "no inotify"))
            .ok()?;
        let mut dirs = std::collections::HashMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let path = rootfs.join(&rel);
            let flags = inotify::WatchFlags::CLOSE_WRITE
                | inotify::WatchFlags::ONLYDIR
                | inotify::WatchFlags::DONT_FOLLOW;
            match inotify::add_watch(&fd, &path, flags) {
                Ok(wd) => {
                    dirs.insert(wd, rel.clone());
                }
                Err(err) => {
                    tracing::debug!(%err, path = %path.display(), "cannot watch the rootfs for writes");
                    return None;
                }
            }
            let Ok(entries) = fs_err::read_dir(&path) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let child = rel.join(entry.file_name());
                if entry.file_type().is_ok_and(|t| t.is_dir()) && !masked.contains(&child) {
                    stack.push(child);
                }
            }
        }
        Some(Self {
            fd,
            dirs,
            written: HashSet::new(),
        })
    }

    /// Collects events until `child` exits (its pidfd turns readable).
    fn until_exit(&mut self, child: Pid) {
        use rustix::event::{PollFd, PollFlags};
        let Ok(pidfd) = rustix::process::pidfd_open(child, rustix::process::PidfdFlags::empty())
        else {
            return;
        };
        loop {
            let mut fds = [
                PollFd::new(&pidfd, PollFlags::IN),
                PollFd::new(&self.fd, PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
            let exited = !fds[0].revents().is_empty();
            self.drain();
            if exited {
                return;
            }
        }
    }

    /// Reads every queued event.
    fn drain(&mut self) {
        use rustix::fs::inotify;
        let mut buffer = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut reader = inotify::Reader::new(&self.fd, &mut buffer);
        loop {
            let Ok(event) = reader.next() else {
                return;
            };
            if event.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                tracing::debug!("inotify queue overflow: the diff goes by metadata");
            }
            if let (Some(dir), Some(name)) = (self.dirs.get(&event.wd()), event.file_name()) {
                self.written
                    .insert(dir.join(std::ffi::OsStr::from_bytes(name.to_bytes())));
            }
        }
    }
}

fn command_main(
    spec: &RunSpec,
    rootfs: &Path,
    socket: &UnixStream,
    helper: Pid,
    go: &OwnedFd,
    limit: &ProcessLimit,
    has_seccomp: bool,
) -> i32 {
    let report = |message: String| protocol::setup_failed(socket, message);
    if !process::die_with_parent() || rustix::process::getppid() != Some(helper) {
        return 1;
    }
    // Its own session and process group: the helper kills the group when it ends.
    if let Err(err) = rustix::process::setsid() {
        return report(format!("starting a session for the command: {err}"));
    }
    if !process::await_pipe(go).unwrap_or(false) {
        return 1;
    }
    if let Err(err) = rustix::process::chroot(rootfs).and_then(|()| rustix::process::chdir("/")) {
        return report(format!("chroot into {}: {err}", rootfs.display()));
    }
    crate::init::exec_prepared(
        spec,
        socket,
        limit.nproc(),
        crate::init::Mode::Chroot { has_seccomp },
    )
}

/// Kills the command's process group and every child of the helper (the orphans it adopted
/// as subreaper), until none is left. Without a pid namespace this is what stops daemons a
/// RUN started.
fn kill_all(command: Pid) {
    let _ = rustix::process::kill_process_group(command, Signal::KILL);
    loop {
        for pid in children() {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // ECHILD: nothing left.
            Err(_) => return,
        }
    }
}

/// The helper's children, from `/proc/*/stat` (the kernel may lack `/proc/PID/task/*/children`).
fn children() -> Vec<Pid> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                == Some(me)
        })
        .filter_map(Pid::from_raw)
        .collect()
}

/// Copies a read-write mount's content back to its host source after the run, as a bind
/// mount would have written it. The path is re-checked: a command that replaced the mount's
/// directory (or a parent) with a symlink loses its writes rather than have kiln follow it.
fn copy_back(rootfs: &Path, rel: &Path, source: &Path) -> std::io::Result<()> {
    if !has_no_symlinked_parent(rootfs, rel)? {
        tracing::warn!(path = %rel.display(), "mount target replaced by a symlink; its writes are dropped");
        return Ok(());
    }
    let target = rootfs.join(rel);
    let Ok(stat) = rustix::fs::lstat(&target) else {
        tracing::warn!(path = %rel.display(), "mount target removed by the command; its writes are dropped");
        return Ok(());
    };
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    let is_dir = kind == rustix::fs::FileType::Directory;
    let is_file = kind == rustix::fs::FileType::RegularFile;
    if !(is_dir || is_file) || is_dir != source.is_dir() {
        tracing::warn!(path = %rel.display(), "mount target changed type; its writes are dropped");
        return Ok(());
    }
    crate::fsmeta::remove_all(source)?;
    match fs_err::rename(&target, source) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
            if is_dir {
                fs_err::create_dir(source)?;
            } else {
                fs_err::File::create(source)?;
            }
            copyup::copy_in(&target, source)
        }
        Err(err) => Err(err),
    }
}
