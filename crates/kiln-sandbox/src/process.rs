//! What the helper and the processes it forks (the namespace parent, the init) share: the
//! scratch paths, the failure they report, fork and wait, and a one-byte pipe handshake.
//! A leaf: it imports no other module of the crate.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::process::{Pid, WaitOptions};

/// Paths inside the caller's scratch directory.
pub(crate) struct WorkPaths {
    pub(crate) merged: PathBuf,
    pub(crate) overlay_work: PathBuf,
    pub(crate) empty_lower: PathBuf,
    pub(crate) rootfs: PathBuf,
    pub(crate) hosts: PathBuf,
    pub(crate) hostname: PathBuf,
    pub(crate) resolv: PathBuf,
    pub(crate) stubs: PathBuf,
}

impl WorkPaths {
    pub(crate) fn new(work: &Path) -> Self {
        Self {
            merged: work.join("merged"),
            overlay_work: work.join("ovl"),
            empty_lower: work.join("empty"),
            rootfs: work.join("rootfs"),
            hosts: work.join("hosts"),
            hostname: work.join("hostname"),
            resolv: work.join("resolv.conf"),
            stubs: work.join("stubs.jsonl"),
        }
    }
}

/// Why the helper failed.
pub(crate) enum HelperFailure {
    Setup(String),
    Diff(String),
    /// A child already reported the failure on the socket.
    Reported,
}

/// Asks the kernel to SIGKILL this process when its parent dies (a forked child never
/// outlives the process that waits for it); false when that cannot be set.
pub(crate) fn die_with_parent() -> bool {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).is_ok()
}

/// Forks; `Ok(None)` in the child.
pub(crate) fn fork() -> io::Result<Option<Pid>> {
    // SAFETY: every process that calls this is single-threaded (the helper was exec'd fresh
    // and its descendants never start threads), so the child gets a consistent copy of the
    // allocator and all other process state.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Pid::from_raw(pid)),
    }
}

/// Waits for `pid`, retrying on `EINTR`; returns the shell-style code.
pub(crate) fn wait_code(pid: Pid) -> i32 {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                return status
                    .exit_status()
                    .or_else(|| status.terminating_signal().map(|s| 128 + s))
                    .unwrap_or(1);
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return 1,
        }
    }
}

/// A one-byte handshake over a pipe.
pub(crate) fn signal_pipe(fd: &OwnedFd) -> io::Result<()> {
    let mut file = std::fs::File::from(fd.as_fd().try_clone_to_owned()?);
    file.write_all(&[1])
}

pub(crate) fn await_pipe(fd: &OwnedFd) -> io::Result<bool> {
    let mut file = std::fs::File::from(fd.as_fd().try_clone_to_owned()?);
    let mut byte = [0u8; 1];
    Ok(file.read(&mut byte)? == 1)
}
