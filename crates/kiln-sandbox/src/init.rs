//! PID 1 of the sandbox: runs the rootfs setup and resolves the user, then either becomes the
//! command (the default, as under BuildKit: `echo $$` prints 1) or, with `RunSpec::init`,
//! starts the command and acts as init — forwards termination signals to it, reaps every
//! orphan, and exits as soon as the command ends. Either way the end of PID 1 makes the kernel
//! kill and reap whatever is left in the pid namespace (daemons a `RUN` leaves behind).

use std::ffi::CString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::{Pid, WaitOptions};

use crate::confine;
use crate::process::{self, WorkPaths};
use crate::protocol::{self, Event};
use crate::rootfs::{RootSource, RootfsPlan, setup_rootfs};
use crate::spec::{DEFAULT_PATH, ExitStatus, RunSpec, Security};
use crate::syscalls::RealSyscalls;
use crate::user::{ExecUser, resolve_user};

/// The command's pid, for the signal forwarder.
static COMMAND_PID: AtomicI32 = AtomicI32::new(0);

/// Signals PID 1 passes on to the command (PID 1 ignores unhandled signals).
const FORWARDED_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

extern "C" fn forward_signal(signal: libc::c_int) {
    let pid = COMMAND_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

pub(crate) fn init_main(
    spec: &RunSpec,
    paths: &WorkPaths,
    source: RootSource,
    overlay_fd: Option<OwnedFd>,
    socket: &UnixStream,
    nproc_limit: Option<u32>,
) -> i32 {
    let report = |message: String| protocol::setup_failed(socket, message);
    // The holder is our parent outside the pid namespace; with it gone, so are we.
    if !process::die_with_parent() {
        return report("cannot set the parent-death signal".into());
    }
    let mut stub_file = match fs_err::OpenOptions::new().append(true).open(&paths.stubs) {
        Ok(file) => file,
        Err(err) => return report(err.to_string()),
    };
    let plan = RootfsPlan {
        merged: paths.merged.clone(),
        source,
        hosts_file: paths.hosts.clone(),
        hostname_file: paths.hostname.clone(),
        resolv_file: paths.resolv.clone(),
        hostname: spec.hostname.clone(),
        network: spec.network,
        mounts: spec.mounts.clone(),
        security: spec.security,
        shm_size: spec.shm_size,
    };
    let mut sys = RealSyscalls {
        prepared_overlay: overlay_fd,
    };
    let mut stubs = Vec::new();
    let result = setup_rootfs(&mut sys, &plan, &mut stubs);
    let mut lines = Vec::new();
    for stub in &stubs {
        if let Ok(mut line) = serde_json::to_vec(stub) {
            line.push(b'\n');
            lines.extend_from_slice(&line);
        }
    }
    if let Err(err) = stub_file.write_all(&lines) {
        return report(format!("recording mountpoint stubs: {err}"));
    }
    drop(stub_file);
    if let Err(err) = result {
        return report(format!(
            "preparing the rootfs at {}: {err}",
            paths.merged.display()
        ));
    }
    let prepared = match prepare(spec, nproc_limit, Mode::Namespaces) {
        Ok(prepared) => prepared,
        Err(message) => return report(message),
    };
    let Prepared {
        user,
        workdir,
        env,
        confinement,
    } = &prepared;
    let workdir = workdir.as_str();
    if !spec.init {
        // The command becomes PID 1 itself; the holder reports its exit status.
        let (message, code) = exec_command(&spec.argv, env, user, workdir, confinement);
        protocol::send_event(socket, &Event::Exec { message, code });
        return code;
    }
    for signal in FORWARDED_SIGNALS {
        // SAFETY: `forward_signal` only calls async-signal-safe functions and reads an atomic.
        unsafe {
            libc::signal(signal, forward_signal as *const () as libc::sighandler_t);
        }
    }
    let command = match process::fork() {
        Err(err) => return report(format!("cannot fork the command: {err}")),
        Ok(None) => {
            let (message, code) = exec_command(&spec.argv, env, user, workdir, confinement);
            protocol::send_event(socket, &Event::Exec { message, code });
            std::process::exit(code);
        }
        Ok(Some(pid)) => pid,
    };
    COMMAND_PID.store(command.as_raw_nonzero().get(), Ordering::SeqCst);
    let status = reap_until(command);
    protocol::send_event(socket, &Event::Exit(status));
    0
}

/// Which sandbox the command is executed in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// PID 1 of the namespace sandbox, after `pivot_root`.
    Namespaces,
    /// The chrooted child of the helper; `has_seccomp` when it may install the filter.
    Chroot { has_seccomp: bool },
}

/// What the command is executed with.
struct Prepared {
    user: ExecUser,
    workdir: String,
    env: Vec<String>,
    confinement: Confinement,
}

/// With the rootfs in place (after `pivot_root` or `chroot`): resolves the user in the
/// image's `/etc/passwd`, creates the working directory and assembles the environment and
/// the confinement.
fn prepare(spec: &RunSpec, nproc_limit: Option<u32>, mode: Mode) -> Result<Prepared, String> {
    let passwd = fs_err::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs_err::read_to_string("/etc/group").unwrap_or_default();
    let user = resolve_user(&spec.user, &passwd, &group).map_err(|err| err.to_string())?;
    let workdir = if spec.workdir.is_empty() {
        "/".to_owned()
    } else {
        spec.workdir.clone()
    };
    fs_err::create_dir_all(&workdir)
        .map_err(|err| format!("creating the working directory: {err}"))?;
    let env = command_env(&spec.env, &user);
    let seccomp = || confine::seccomp_programs().map_err(|err| err.to_string());
    let confinement = match (spec.security, mode) {
        (Security::Insecure, _) => Confinement {
            seccomp: Vec::new(),
            capabilities: None,
            nproc_limit,
        },
        (Security::Sandbox, Mode::Namespaces) => Confinement {
            seccomp: seccomp()?,
            capabilities: Some(confine::DEFAULT_CAPABILITIES),
            nproc_limit,
        },
        (Security::Sandbox, Mode::Chroot { has_seccomp }) => Confinement {
            seccomp: if has_seccomp { seccomp()? } else { Vec::new() },
            capabilities: Some(confine::CHROOT_CAPABILITIES),
            nproc_limit,
        },
    };
    Ok(Prepared {
        user,
        workdir,
        env,
        confinement,
    })
}

/// Chroot isolation's last step in the command's process: prepares and executes the
/// command; returns (after reporting why) only when that fails.
pub(crate) fn exec_prepared(
    spec: &RunSpec,
    socket: &UnixStream,
    nproc_limit: Option<u32>,
    mode: Mode,
) -> i32 {
    match prepare(spec, nproc_limit, mode) {
        Ok(prepared) => {
            let (message, code) = exec_command(
                &spec.argv,
                &prepared.env,
                &prepared.user,
                &prepared.workdir,
                &prepared.confinement,
            );
            protocol::send_event(socket, &Event::Exec { message, code });
            code
        }
        Err(message) => protocol::setup_failed(socket, message),
    }
}

/// Reaps every child (orphans are re-parented to us) until `command` ends.
fn reap_until(command: Pid) -> ExitStatus {
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid == command => {
                if let Some(signal) = status.terminating_signal() {
                    return ExitStatus::Signaled(signal);
                }
                if let Some(code) = status.exit_status() {
                    return ExitStatus::Exited(code);
                }
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return ExitStatus::Exited(1),
        }
    }
}

fn command_env(env: &[String], user: &ExecUser) -> Vec<String> {
    let mut env = env.to_vec();
    let has = |env: &[String], key: &str| env.iter().any(|kv| kv.split('=').next() == Some(key));
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

fn cstrings<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<CString>> {
    items
        .into_iter()
        .map(|item| CString::new(item).ok())
        .collect()
}

/// What [`exec_command`] applies to the command before `execve`.
struct Confinement {
    /// Docker's default seccomp profile (`Security::Sandbox`); empty for none.
    seccomp: Vec<seccompiler::BpfProgram>,
    /// The capabilities the command may keep; `None` keeps them all (`Security::Insecure`).
    capabilities: Option<rustix::thread::CapabilitySet>,
    /// `RLIMIT_NPROC`, where no pids cgroup could be made.
    nproc_limit: Option<u32>,
}

/// Becomes the user and executes the command; only returns on failure, with the message and
/// the shell's exit code for it.
fn exec_command(
    argv: &[String],
    env: &[String],
    user: &ExecUser,
    workdir: &str,
    confinement: &Confinement,
) -> (String, i32) {
    // SAFETY: restoring default dispositions is always sound; handlers would not survive exec
    // anyway, but a failure path before exec must not run PID 1's forwarder.
    unsafe {
        for signal in FORWARDED_SIGNALS {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
    let _ = rustix::process::setsid();
    if let Some(limit) = confinement.nproc_limit {
        // Never above the hard limit we were given: raising it needs CAP_SYS_RESOURCE in the
        // initial namespace.
        let hard = rustix::process::getrlimit(rustix::process::Resource::Nproc).maximum;
        let limit = hard.map_or(u64::from(limit), |hard| hard.min(u64::from(limit)));
        let limit = rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        if let Err(err) = rustix::process::setrlimit(rustix::process::Resource::Nproc, limit) {
            return (format!("cannot limit the number of processes: {err}"), 126);
        }
    }
    if let Some(keep) = confinement.capabilities
        && let Err(err) = confine::confine_before_user_switch(&confinement.seccomp, keep)
    {
        return (format!("cannot confine the command: {err}"), 126);
    }
    let groups: Vec<rustix::process::Gid> = user
        .groups
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    let gid = rustix::process::Gid::from_raw(user.gid);
    let uid = rustix::process::Uid::from_raw(user.uid);
    if let Err(err) = rustix::thread::set_thread_groups(&groups)
        .or_else(|err| if groups.is_empty() { Ok(()) } else { Err(err) })
        .and_then(|()| rustix::thread::set_thread_res_gid(gid, gid, gid))
        .and_then(|()| rustix::thread::set_thread_res_uid(uid, uid, uid))
    {
        return (
            format!("cannot switch to uid {} gid {}: {err}", user.uid, user.gid),
            126,
        );
    }
    if let Some(keep) = confinement.capabilities
        && let Err(err) = confine::confine_after_user_switch(keep)
    {
        return (format!("cannot drop capabilities: {err}"), 126);
    }
    // Changing the uid cleared the parent-death signal (prctl(2)); set it again, or a
    // non-root command that is PID 1 outlives a killed helper (timeouts, cancellation, a
    // SIGKILLed kiln). A normal execve keeps it.
    if let Err(err) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        return (format!("cannot set the parent-death signal: {err}"), 126);
    }
    if let Err(err) = rustix::process::chdir(workdir) {
        return (
            format!("cannot enter working directory {workdir}: {err}"),
            126,
        );
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let Some(args) = cstrings(argv.iter().map(String::as_bytes)) else {
        return ("argument contains a NUL byte".into(), 126);
    };
    let Some(envs) = cstrings(env.iter().map(String::as_bytes)) else {
        return ("environment contains a NUL byte".into(), 126);
    };
    let program = &argv[0];
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        let path = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
            .collect()
    };
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let mut saw_permission_denied = false;
    for candidate in &candidates {
        let Ok(path) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: `path`, `arg_ptrs` and `env_ptrs` are NUL-terminated / null-terminated arrays
        // of pointers into `args` and `envs`, which outlive the call; execve only returns on
        // failure.
        unsafe {
            libc::execve(path.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => {}
            Some(libc::EACCES) => saw_permission_denied = true,
            _ => return (format!("exec {}: {err}", candidate.display()), 126),
        }
    }
    if saw_permission_denied {
        (format!("{program}: permission denied"), 126)
    } else if program.contains('/') {
        (format!("{program}: no such file or directory"), 127)
    } else {
        (
            format!("{program}: executable file not found in $PATH"),
            127,
        )
    }
}
