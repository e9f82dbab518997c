//! kiln run by an ordinary user re-executes itself in a user namespace (buildah's `unshare`
//! model): container id 0 is the caller and 1.. its `/etc/subuid`/`/etc/subgid` range, the
//! map every rootless sandbox uses, plus a mount namespace of its own. Inside, kiln is root
//! of that namespace: it can give staging trees, snapshots and layers the container's owners
//! (host-side `chown` to a subordinate id is EPERM outside), and read what a container user
//! made private. What only root of the initial namespace may do (`trusted.*` xattrs, device
//! nodes) is decided by [`is_host_root`].
//!
//! The same process carries on, so its pid, signals, exit code, stdio and environment stay
//! the caller's: a short-lived child creates the user namespace (an unshared process cannot
//! leave it again, so a failed mapping must not be ours), this process maps it with
//! `newuidmap`/`newgidmap`, joins it with `setns`, unshares a mount namespace and `exec`s
//! itself (a fresh image, so its `/proc/self` belongs to the namespace's root).

use std::ffi::OsString;
use std::os::fd::AsFd as _;
use std::os::unix::process::CommandExt as _;

use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::namespaces::{IdMapError, SubordinateIds};
use crate::process;

/// Set in the re-executed kiln (so it does not try again), or by the caller to keep kiln in
/// the caller's own user namespace.
pub const ROOTLESS_REEXEC_ENV: &str = "KILN_ROOTLESS_REEXEC";

/// What [`reexec_in_user_namespace`] did when it returns (on success it does not).
#[derive(Debug)]
#[non_exhaustive]
pub enum Reexec {
    /// Not wanted: kiln runs as root, was re-executed already, was asked not to
    /// ([`ROOTLESS_REEXEC_ENV`]), or only prints help or its version.
    NotWanted,
    /// Not possible here (no subordinate range, no `newuidmap`, user namespaces blocked):
    /// kiln runs as the caller, and what needs the namespace says what to configure.
    Unavailable(String),
    /// Possible but failed (`newuidmap` refused, `setns` denied): kiln runs as the caller.
    Failed(String),
}

/// Re-executes kiln in a user + mount namespace mapping the caller to 0 and its subordinate
/// ids from 1, when it runs as an ordinary user with subordinate ranges; returns what it did
/// otherwise. Call it first thing in `main`, before any thread is started.
///
/// After the namespace is joined only a failed `exec` returns: that exits the process with
/// code 1 (nothing is left to fall back to).
pub fn reexec_in_user_namespace() -> Reexec {
    if rustix::process::geteuid().is_root() || std::env::var_os(ROOTLESS_REEXEC_ENV).is_some() {
        return Reexec::NotWanted;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| OsString::from("kiln"));
    let rest: Vec<OsString> = args.collect();
    let is_help = rest.first().is_none_or(|first| {
        ["-h", "--help", "-V", "--version", "help"]
            .iter()
            .any(|flag| first == flag)
    });
    if is_help {
        return Reexec::NotWanted;
    }
    let ids = match SubordinateIds::of_caller() {
        Ok(ids) => ids,
        Err(err) => return Reexec::Unavailable(err.to_string()),
    };
    if let Err(failure) = join_mapped_namespace(&ids) {
        return failure;
    }
    // Only a mount namespace of our own lets root of the user namespace mount (the caller's
    // is owned by the initial user namespace); mounts in it stay private to kiln.
    // SAFETY: only a namespace is unshared, in a single-threaded process.
    if let Err(err) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) } {
        exit_failed(&format!("cannot create a mount namespace: {err}"));
    }
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(rest)
        .env(ROOTLESS_REEXEC_ENV, "1")
        .exec();
    exit_failed(&format!("cannot re-execute /proc/self/exe: {err}"))
}

fn exit_failed(message: &str) -> ! {
    eprintln!("error: entering kiln's rootless user namespace: {message}");
    std::process::exit(1)
}

/// A child unshares a user namespace, this process maps and joins it; on failure this process
/// is still in its own namespace.
fn join_mapped_namespace(ids: &SubordinateIds) -> Result<(), Reexec> {
    let failed = |what: &str, err: &dyn std::fmt::Display| Reexec::Failed(format!("{what}: {err}"));
    let (ready_read, ready_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| failed("pipe", &e))?;
    let (done_read, done_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| failed("pipe", &e))?;
    let Some(child) = process::fork().map_err(|e| failed("fork", &e))? else {
        drop((ready_read, done_write));
        // Holds the namespace until this process has joined it; dies with it.
        if !process::die_with_parent() {
            std::process::exit(1);
        }
        // SAFETY: only a namespace is unshared, in a single-threaded process (a fork of one).
        if unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }.is_err()
            || process::signal_pipe(&ready_write).is_err()
        {
            std::process::exit(1);
        }
        let _ = process::await_pipe(&done_read);
        std::process::exit(0);
    };
    drop((ready_write, done_read));
    let result = if process::await_pipe(&ready_read).unwrap_or(false) {
        ids.map(child)
            .map_err(|err| match err {
                IdMapError::ToolFailed { .. } | IdMapError::ToolFailedToStart { .. } => {
                    Reexec::Failed(err.to_string())
                }
                _ => Reexec::Unavailable(err.to_string()),
            })
            .and_then(|()| join(child))
    } else {
        Err(Reexec::Unavailable(
            "cannot create a user namespace (user namespaces may be disabled: \
             `user.max_user_namespaces`, or the container's seccomp profile)"
                .to_owned(),
        ))
    };
    drop(done_write);
    process::wait_code(child);
    result
}

fn join(child: rustix::process::Pid) -> Result<(), Reexec> {
    let path = format!("/proc/{}/ns/user", child.as_raw_nonzero());
    let namespace = rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|err| Reexec::Failed(format!("opening {path}: {err}")))?;
    rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::User))
        .map_err(|err| Reexec::Failed(format!("joining the user namespace {path}: {err}")))
}

/// Whether this process is root of the initial user namespace: what `trusted.*` xattrs
/// (overlayfs's own whiteouts and opaque directories) and device nodes need. Root of a user
/// namespace, as kiln is after [`reexec_in_user_namespace`] or in a rootless container, has
/// every capability there but not these. (kiln-store's `has_sys_admin` makes the same test.)
pub fn is_host_root() -> bool {
    rustix::process::geteuid().is_root() && is_initial_user_namespace()
}

/// Whether this process runs in the re-executed kiln of an ordinary user: root of the user
/// namespace [`reexec_in_user_namespace`] made, so its store and home are the caller's.
pub fn is_rootless_reexec() -> bool {
    std::env::var_os(ROOTLESS_REEXEC_ENV).is_some() && !is_initial_user_namespace()
}

/// The initial user namespace maps every id to itself (`0 0 4294967295`). Without a
/// readable `/proc` (a bare chroot) this assumes it, as kiln did before it checked.
fn is_initial_user_namespace() -> bool {
    fs_err::read_to_string("/proc/self/uid_map").map_or(true, |map| is_identity_map(&map))
}

fn is_identity_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_identity_map_is_the_initial_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("0 1000 1\n1 200000 65536\n"));
        assert!(!is_identity_map("0 0 65536\n"));
        assert!(!is_identity_map(""));
    }
}
