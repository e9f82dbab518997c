//! Namespace creation: the holder process unshares the user, pid, uts, ipc (and net)
//! namespaces; the helper, still outside with its host credentials, writes the holder's id
//! maps (as root: the identity over its own range, so uid 0 stays uid 0 in the layer;
//! unprivileged: `newuidmap`/`newgidmap` with the `/etc/subuid` and `/etc/subgid` ranges); then
//! the holder forks PID 1 of the new pid namespace.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::process::Pid;
use rustix::thread::UnshareFlags;

use crate::cgroup::PidsCgroup;
use crate::process::{self, HelperFailure, WorkPaths};
use crate::protocol::{self, Event};
use crate::rootfs::RootSource;
use crate::spec::{Network, RunSpec};

/// Runs the holder and, below it, PID 1 and the command; returns the holder's exit code.
pub(crate) fn run_in_namespaces(
    spec: &RunSpec,
    paths: &WorkPaths,
    source: RootSource,
    overlay_fd: Option<OwnedFd>,
    socket: &UnixStream,
    is_root: bool,
    limit: &ProcessLimit,
) -> Result<i32, HelperFailure> {
    let (ready_read, ready_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| setup("pipe", e))?;
    let (go_read, go_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| setup("pipe", e))?;
    let helper_pid = rustix::process::getpid();
    let holder = process::fork().map_err(|e| setup("fork", e))?;
    let Some(holder) = holder else {
        drop((ready_read, go_write));
        let code = holder_main(
            spec,
            paths,
            source,
            overlay_fd,
            socket,
            helper_pid,
            &ready_write,
            &go_read,
            limit.nproc(),
        );
        std::process::exit(code);
    };
    drop((ready_write, go_read, overlay_fd));
    // The holder signals once it has unshared; EOF means it failed and reported why.
    if !process::await_pipe(&ready_read).unwrap_or(false) {
        process::wait_code(holder);
        return Err(HelperFailure::Reported);
    }
    if let ProcessLimit::Cgroup(cgroup) = limit
        && let Err(err) = cgroup.add(holder)
    {
        let _ = rustix::process::kill_process(holder, rustix::process::Signal::KILL);
        process::wait_code(holder);
        return Err(HelperFailure::Setup(format!(
            "moving the sandbox into its pids cgroup: {err}"
        )));
    }
    if let Err(err) = write_id_maps(holder, is_root) {
        let _ = rustix::process::kill_process(holder, rustix::process::Signal::KILL);
        process::wait_code(holder);
        return Err(HelperFailure::Setup(err.to_string()));
    }
    process::signal_pipe(&go_write).map_err(|e| setup("releasing the namespace holder", e))?;
    drop(go_write);
    Ok(process::wait_code(holder))
}

/// How the sandbox's process count is bounded.
#[derive(Debug)]
pub(crate) enum ProcessLimit {
    /// No limit was asked for.
    None,
    /// A pids cgroup holds the whole sandbox.
    Cgroup(PidsCgroup),
    /// No cgroup could be made: the command gets `RLIMIT_NPROC`.
    Rlimit(u32),
}

impl ProcessLimit {
    /// Sets up the limit for `spec`, falling back to `RLIMIT_NPROC`.
    pub(crate) fn for_spec(spec: &RunSpec) -> Self {
        let Some(limit) = spec.pids_limit else {
            return Self::None;
        };
        match PidsCgroup::create(limit) {
            Ok(cgroup) => Self::Cgroup(cgroup),
            Err(reason) => {
                tracing::debug!(%reason, "no pids cgroup; limiting processes with RLIMIT_NPROC");
                Self::Rlimit(limit)
            }
        }
    }

    pub(crate) fn nproc(&self) -> Option<u32> {
        match self {
            Self::Rlimit(limit) => Some(*limit),
            Self::None | Self::Cgroup(_) => None,
        }
    }
}

fn setup(what: &str, err: impl std::fmt::Display) -> HelperFailure {
    HelperFailure::Setup(format!("{what}: {err}"))
}

#[expect(
    clippy::too_many_arguments,
    reason = "the holder's whole context, passed once"
)]
fn holder_main(
    spec: &RunSpec,
    paths: &WorkPaths,
    source: RootSource,
    overlay_fd: Option<OwnedFd>,
    socket: &UnixStream,
    helper_pid: Pid,
    ready: &OwnedFd,
    go: &OwnedFd,
    nproc_limit: Option<u32>,
) -> i32 {
    let report = |message: String| protocol::setup_failed(socket, message);
    if !process::die_with_parent() || rustix::process::getppid() != Some(helper_pid) {
        return 1;
    }
    let mut flags =
        UnshareFlags::NEWUSER | UnshareFlags::NEWPID | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC;
    if spec.network == Network::None {
        flags |= UnshareFlags::NEWNET;
    }
    // SAFETY: only namespaces are unshared (not the file table or fs state), in a
    // single-threaded process.
    if let Err(err) = unsafe { rustix::thread::unshare_unsafe(flags) } {
        return report(format!(
            "cannot create user/pid/uts/ipc namespaces: {err}; user namespaces may be disabled \
             (check `sysctl kernel.unprivileged_userns_clone` and `user.max_user_namespaces`, \
             or the container's seccomp profile). Allow them, or run kiln as root in a \
             container with `--isolation=chroot`"
        ));
    }
    if process::signal_pipe(ready).is_err() || !process::await_pipe(go).unwrap_or(false) {
        return 1;
    }
    // Become root of the new user namespace (the mapped id of the caller).
    let root_uid = rustix::process::Uid::ROOT;
    let root_gid = rustix::process::Gid::ROOT;
    if let Err(err) = rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid)
        .and_then(|()| rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid))
    {
        return report(format!("cannot become root in the user namespace: {err}"));
    }
    // Denied when setgroups is disabled for a rootless map; the groups then stay empty anyway.
    let _ = rustix::thread::set_thread_groups(&[]);
    match process::fork() {
        Err(err) => report(format!("cannot fork PID 1 of the sandbox: {err}")),
        Ok(None) => {
            let code = crate::init::init_main(spec, paths, source, overlay_fd, socket, nproc_limit);
            std::process::exit(code);
        }
        Ok(Some(init)) => {
            drop(overlay_fd);
            let status = wait_status(init);
            if !spec.init {
                // PID 1 was the command itself (or failed and reported why first).
                protocol::send_event(socket, &Event::Exit(status));
            }
            status.code()
        }
    }
}

/// Why the namespace holder's uid/gid maps could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdMapError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(
        "rootless sandboxes need {tool}: install the `uidmap` package (Debian/Ubuntu) or `shadow-utils` (Fedora), or run as root"
    )]
    ToolMissing { tool: &'static str },
    #[error("running {}: {source}", program.display())]
    ToolFailedToStart {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} {pid} 0 {id} 1 1 {start} {count} failed ({status}); check that it is setuid root \
         (or has the setuid capability) and that the range is yours in /etc/subuid and \
         /etc/subgid, or run kiln as root in a container with `--isolation=chroot`",
        program.display()
    )]
    ToolFailed {
        program: PathBuf,
        pid: String,
        id: u32,
        start: u32,
        count: u32,
        status: std::process::ExitStatus,
    },
    #[error(
        "no subordinate id range for user {who} in {}: rootless RUN needs one for the image's \
         users; add it with `sudo usermod --add-subuids 100000-165535 --add-subgids \
         100000-165535 {who}`, or run kiln as root in a container with `--isolation=chroot`",
        file.display()
    )]
    NoSubordinateRange { who: String, file: PathBuf },
}

/// Writes `/proc/<pid>/{uid,gid}_map` for the holder.
fn write_id_maps(pid: Pid, is_root: bool) -> Result<(), IdMapError> {
    if is_root {
        // Identity over the ranges we own ("0 0 4294967295" on a host): root stays root.
        for kind in ["uid_map", "gid_map"] {
            let own = fs_err::read_to_string(format!("/proc/self/{kind}"))?;
            let map: String = own
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields.len() == 3)
                        .then(|| format!("{} {} {}\n", fields[0], fields[0], fields[2]))
                })
                .collect();
            let target = format!("/proc/{}/{kind}", pid.as_raw_nonzero());
            fs_err::write(&target, map.as_bytes())?;
        }
        return Ok(());
    }
    SubordinateIds::of_caller()?.map(pid)
}

/// The caller's `/etc/subuid` and `/etc/subgid` ranges and the setuid tools that map them:
/// container id 0 is the caller, 1.. its range (the map of a rootless sandbox, and of the
/// user namespace kiln re-executes itself in, crate::rootless).
#[derive(Debug)]
pub(crate) struct SubordinateIds {
    uid: u32,
    gid: u32,
    uids: (u32, u32),
    gids: (u32, u32),
    newuidmap: PathBuf,
    newgidmap: PathBuf,
}

impl SubordinateIds {
    /// The calling user's ranges and tools; an error names what to install or configure.
    pub(crate) fn of_caller() -> Result<Self, IdMapError> {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let name = user_name(uid);
        let uids = subordinate_range(Path::new("/etc/subuid"), uid, name.as_deref())?;
        let gids = subordinate_range(Path::new("/etc/subgid"), uid, name.as_deref())?;
        let tool = |tool| find_in_path(tool).ok_or(IdMapError::ToolMissing { tool });
        Ok(Self {
            uid,
            gid,
            uids,
            gids,
            newuidmap: tool("newuidmap")?,
            newgidmap: tool("newgidmap")?,
        })
    }

    /// Writes the user namespace of `pid` its maps with `newuidmap` and `newgidmap`.
    pub(crate) fn map(&self, pid: Pid) -> Result<(), IdMapError> {
        let pid_text = pid.as_raw_nonzero().to_string();
        for (program, id, (start, count)) in [
            (&self.newuidmap, self.uid, self.uids),
            (&self.newgidmap, self.gid, self.gids),
        ] {
            let status = Command::new(program)
                .args([
                    pid_text.as_str(),
                    "0",
                    &id.to_string(),
                    "1",
                    "1",
                    &start.to_string(),
                    &count.to_string(),
                ])
                .status()
                .map_err(|source| IdMapError::ToolFailedToStart {
                    program: program.clone(),
                    source,
                })?;
            if !status.success() {
                return Err(IdMapError::ToolFailed {
                    program: program.clone(),
                    pid: pid_text,
                    id,
                    start,
                    count,
                    status,
                });
            }
        }
        Ok(())
    }
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs_err::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
    })
}

fn subordinate_range(file: &Path, uid: u32, name: Option<&str>) -> Result<(u32, u32), IdMapError> {
    let text = fs_err::read_to_string(file).unwrap_or_default();
    let uid_text = uid.to_string();
    text.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.trim().split(':').collect();
            let owner = *fields.first()?;
            if owner != uid_text && Some(owner) != name {
                return None;
            }
            Some((fields.get(1)?.parse().ok()?, fields.get(2)?.parse().ok()?))
        })
        .ok_or_else(|| IdMapError::NoSubordinateRange {
            who: name.map_or_else(|| uid_text.clone(), ToOwned::to_owned),
            file: file.to_path_buf(),
        })
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Waits for `pid` (only), retrying on `EINTR`; its exit code or terminating signal.
pub(crate) fn wait_status(pid: Pid) -> crate::spec::ExitStatus {
    use crate::spec::ExitStatus;
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(signal) = status.terminating_signal() {
                    return ExitStatus::Signaled(signal);
                }
                if let Some(code) = status.exit_status() {
                    return ExitStatus::Exited(code);
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return ExitStatus::Exited(1),
        }
    }
}
