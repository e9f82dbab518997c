//! The caller's side: [`Sandbox::run`] starts the helper executable, sends the spec, streams
//! the command's output line by line to a callback, enforces the timeout and cancellation (by
//! killing the helper, which takes the whole process tree with it), and turns the helper's
//! events into a [`RunOutcome`] or a [`SandboxError`]. Blocking; call it from a blocking
//! thread in async code.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use crate::error::SandboxError;
use crate::protocol::{self, Event, HELPER_MARKER};
use crate::spec::{Isolation, RootfsMode, RunOutcome, RunSpec, Stream};

/// How to start sandboxes.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// The executable re-run as the helper (`<exe> __kiln-sandbox-init`); it must call
    /// [`run_helper_if_requested`](crate::run_helper_if_requested) first thing in `main`.
    /// Defaults to the current executable.
    pub helper_exe: Option<PathBuf>,
    /// Use the copy fallback even where overlayfs works (same as `KILN_SANDBOX_FORCE_COPY=1`
    /// in the caller's environment).
    pub force_copy: bool,
}

/// Runs commands in sandboxes; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
    force_copy: bool,
}

/// Splits a byte stream into lines for the output callback.
#[derive(Debug, Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            emit(&self.pending[start..=start + pos]);
            start += pos + 1;
        }
        self.pending.drain(..start);
    }

    fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// What [`Sandbox::probe`] found the host allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationProbe {
    /// The strongest isolation that works here.
    pub isolation: Isolation,
    /// Why the namespace sandbox does not work, when it does not (one line).
    pub reason: Option<String>,
}

enum Stop {
    Cancelled,
    TimedOut(Duration),
}

const READ_CHUNK: usize = 64 * 1024;

impl Sandbox {
    /// A sandbox runner with `config`.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let helper = match config.helper_exe {
            Some(helper) => helper,
            None => std::env::current_exe().map_err(|source| SandboxError::SpawnHelper {
                helper: PathBuf::from("/proc/self/exe"),
                source,
            })?,
        };
        Ok(Self {
            helper,
            force_copy: config.force_copy,
        })
    }

    /// The helper executable.
    pub fn helper_exe(&self) -> &std::path::Path {
        &self.helper
    }

    /// Finds the strongest isolation this host allows, by starting the namespace sandbox
    /// (user, mount and pid namespaces, the overlay, a fresh `/proc`, `/dev`, `pivot_root`)
    /// on an empty rootfs up to the point where it executes a command that does not exist.
    /// Where that fails and this process is root, chroot isolation is the answer, with the
    /// reason; a non-root process keeps the namespace sandbox (chroot needs root) and its
    /// first `RUN` reports the failure. `scratch` is an empty directory the probe may use;
    /// the caller removes it.
    pub fn probe(&self, scratch: &std::path::Path) -> IsolationProbe {
        let namespaces = IsolationProbe {
            isolation: Isolation::Namespaces,
            reason: None,
        };
        let upper = scratch.join("upper");
        let work = scratch.join("work");
        for dir in [&upper, &work] {
            if let Err(err) = fs_err::create_dir_all(dir) {
                tracing::debug!(%err, "isolation probe: no scratch directory");
                return namespaces;
            }
        }
        let mut spec = RunSpec::new(
            Vec::new(),
            &upper,
            &work,
            vec!["/kiln-isolation-probe".into()],
        );
        spec.pids_limit = None;
        spec.timeout = Some(Duration::from_mins(1));
        let result = self.run(&spec, &mut |_, _| {});
        let failure = match result {
            Ok(_) | Err(SandboxError::Exec { .. }) => return namespaces,
            Err(SandboxError::Setup { message }) => why_not_namespaces(&message),
            Err(other) => other.to_string(),
        };
        tracing::debug!(
            reason = failure,
            "the namespace sandbox does not start here"
        );
        if rustix::process::geteuid().is_root() {
            IsolationProbe {
                isolation: Isolation::Chroot,
                reason: Some(failure),
            }
        } else {
            IsolationProbe {
                reason: Some(failure),
                ..namespaces
            }
        }
    }

    /// Runs `spec.argv` in a fresh sandbox, calling `on_output` with each complete line (the
    /// trailing newline included; a last unterminated line is passed as is). A command that
    /// runs and fails is `Ok` with its [`ExitStatus`](crate::ExitStatus); setup failures, a command that cannot
    /// be executed, cancellation and timeouts are errors.
    pub fn run(
        &self,
        spec: &RunSpec,
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<RunOutcome, SandboxError> {
        let command = spec
            .argv
            .first()
            .cloned()
            .ok_or_else(|| SandboxError::InvalidSpec {
                reason: "the command (argv) is empty".into(),
            })?;
        for (what, dir) in [("upper", &spec.upper), ("work", &spec.work)] {
            if !dir.is_dir() {
                return Err(SandboxError::InvalidSpec {
                    reason: format!("{what} directory {} does not exist", dir.display()),
                });
            }
        }
        if spec.isolation == Isolation::Chroot {
            // Without a pid namespace the command shares our uid and our process table: not
            // dumpable, this process cannot be ptraced or read through /proc/PID by it.
            let _ = rustix::process::set_dumpable_behavior(
                rustix::process::DumpableBehavior::NotDumpable,
            );
        }
        let io_err = |source| SandboxError::HelperIo {
            helper: self.helper.clone(),
            source,
        };
        let (mut parent_socket, child_socket) = UnixStream::pair().map_err(io_err)?;
        let mut command_line = Command::new(&self.helper);
        if self.force_copy {
            command_line.env(crate::FORCE_COPY_ENV, "1");
        }
        let mut child = command_line
            .env(
                crate::helper::PARENT_PID_ENV,
                std::process::id().to_string(),
            )
            .arg(HELPER_MARKER)
            .stdin(Stdio::from(OwnedFd::from(child_socket)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SandboxError::SpawnHelper {
                helper: self.helper.clone(),
                source,
            })?;
        // The command keeps the helper's end of the socket open until dropped; without this
        // the control channel would never report EOF.
        drop(command_line);
        let result = self.supervise(&mut child, &mut parent_socket, spec, on_output);
        if result.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(io_err)?;
        let (events, stop) = result?;
        if let Some(stop) = stop {
            return Err(match stop {
                Stop::Cancelled => SandboxError::Cancelled { command },
                Stop::TimedOut(after) => SandboxError::TimedOut { command, after },
            });
        }
        let mut exit = None;
        let mut mode = None;
        let mut notices = Vec::new();
        for event in events {
            match event {
                Event::Setup(message) => return Err(SandboxError::Setup { message }),
                Event::Exec { message, code } => {
                    return Err(SandboxError::Exec {
                        command,
                        message,
                        code,
                    });
                }
                Event::Diff(message) => {
                    return Err(SandboxError::Diff {
                        upper: spec.upper.clone(),
                        message,
                    });
                }
                Event::Exit(status) => exit = Some(status),
                Event::Done(done) => mode = Some(done),
                Event::Notice(notice) => notices.push(notice),
                Event::ProcessGroup(_) => {}
            }
        }
        match (exit, mode) {
            (Some(status), Some(mode)) => {
                if mode == RootfsMode::CopyFallback {
                    tracing::warn!(command, "ran on the copy fallback (no overlayfs)");
                }
                Ok(RunOutcome {
                    status,
                    mode,
                    notices,
                })
            }
            _ => Err(SandboxError::HelperDied {
                helper: self.helper.clone(),
                status,
            }),
        }
    }

    fn supervise(
        &self,
        child: &mut Child,
        socket: &mut UnixStream,
        spec: &RunSpec,
        on_output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<(Vec<Event>, Option<Stop>), SandboxError> {
        let io_err = |source| SandboxError::HelperIo {
            helper: self.helper.clone(),
            source,
        };
        protocol::send_spec(socket, spec).map_err(io_err)?;
        let (wake_read, wake_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| io_err(e.into()))?;
        let _registration = spec.cancel.as_ref().map(|token| token.register(wake_write));
        let deadline = spec.timeout.map(|t| Instant::now() + t);
        let mut stdout = child.stdout.take().map(OwnedFd::from);
        let mut stderr = child.stderr.take().map(OwnedFd::from);
        let mut control = Some(socket.as_fd().try_clone_to_owned().map_err(io_err)?);
        let mut wake = spec.cancel.as_ref().map(|_| wake_read);
        let mut lines = [LineBuffer::default(), LineBuffer::default()];
        let mut events_buffer = LineBuffer::default();
        let mut events = Vec::new();
        let mut stop = None;
        let mut buffer = vec![0u8; READ_CHUNK];
        while stdout.is_some() || stderr.is_some() || control.is_some() {
            let timeout = match (deadline, &stop) {
                (Some(deadline), None) => Some(deadline.saturating_duration_since(Instant::now())),
                _ => None,
            };
            if timeout == Some(Duration::ZERO) {
                stop = spec.timeout.map(Stop::TimedOut);
                kill_tree(child, &events);
                continue;
            }
            let slots: [Option<BorrowedFd<'_>>; 4] = [
                stdout.as_ref().map(AsFd::as_fd),
                stderr.as_ref().map(AsFd::as_fd),
                control.as_ref().map(AsFd::as_fd),
                wake.as_ref().map(AsFd::as_fd),
            ];
            let mut fds = Vec::with_capacity(4);
            let mut which = Vec::with_capacity(4);
            for (index, slot) in slots.iter().enumerate() {
                if let Some(fd) = slot {
                    fds.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
                    which.push(index);
                }
            }
            let timespec = timeout.map(|t| rustix::event::Timespec {
                tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            match rustix::event::poll(&mut fds, timespec.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(io_err(err.into())),
            }
            let ready: Vec<usize> = fds
                .iter()
                .zip(&which)
                .filter(|(fd, _)| !fd.revents().is_empty())
                .map(|(_, index)| *index)
                .collect();
            drop(fds);
            for index in ready {
                let fd = match index {
                    0 => &mut stdout,
                    1 => &mut stderr,
                    2 => &mut control,
                    _ => &mut wake,
                };
                let Some(owned) = fd.as_ref() else { continue };
                let read = match rustix::io::read(owned, &mut buffer[..]) {
                    Ok(read) => read,
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                    Err(err) => return Err(io_err(err.into())),
                };
                if index == 3 {
                    // Cancelled: kill the helper; the pdeathsig chain kills PID 1 and with it
                    // the whole pid namespace. Keep draining until every pipe closes.
                    stop = Some(Stop::Cancelled);
                    kill_tree(child, &events);
                    *fd = None;
                    continue;
                }
                let bytes = &buffer[..read];
                match index {
                    0 | 1 => {
                        let stream = if index == 0 {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        };
                        let lines = &mut lines[index];
                        if read == 0 {
                            lines.finish(|line| on_output(stream, line));
                        } else {
                            lines.push(bytes, |line| on_output(stream, line));
                        }
                    }
                    _ => {
                        let mut parse = |line: &[u8]| {
                            if let Some(event) = protocol::parse_event(line) {
                                events.push(event);
                            }
                        };
                        if read == 0 {
                            events_buffer.finish(&mut parse);
                        } else {
                            events_buffer.push(bytes, &mut parse);
                        }
                    }
                }
                if read == 0 {
                    *fd = None;
                }
            }
            if stop.is_none()
                && spec
                    .cancel
                    .as_ref()
                    .is_some_and(crate::CancelToken::is_cancelled)
            {
                stop = Some(Stop::Cancelled);
                kill_tree(child, &events);
            }
        }
        Ok((events, stop))
    }
}

/// The namespace sandbox's setup error, said in a few words.
fn why_not_namespaces(message: &str) -> String {
    if let Some(rest) = message.split_once("cannot create user/pid/uts/ipc namespaces: ") {
        let errno = rest.1.split(';').next().unwrap_or_default().trim();
        return if errno.contains("os error 28") {
            "user namespaces are disabled (user.max_user_namespaces is 0)".to_owned()
        } else {
            format!("user namespaces are blocked ({errno}; by seccomp, AppArmor or a sysctl)")
        };
    }
    if message.contains("fstype: \"proc\"") {
        return "a fresh /proc cannot be mounted (the container masks parts of /proc)".to_owned();
    }
    if message.contains("Overlay") {
        return "overlayfs cannot be mounted".to_owned();
    }
    let line = message.lines().next().unwrap_or_default();
    let mut short: String = line.chars().take(200).collect();
    if short.len() < line.len() {
        short.push('…');
    }
    format!("the namespace sandbox does not start ({short})")
}

/// Kills the helper (whose death takes the namespace sandbox with it) and, under chroot
/// isolation, the command's process group, which has no pid namespace to die with.
fn kill_tree(child: &mut Child, events: &[Event]) {
    for event in events {
        if let Event::ProcessGroup(group) = event
            && let Some(group) = rustix::process::Pid::from_raw(*group)
        {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_keeps_long_lines_whole() {
        let mut buffer = LineBuffer::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let long = vec![b'x'; 200_000];
        buffer.push(&long[..100_000], |l| out.push(l.to_vec()));
        assert!(out.is_empty());
        buffer.push(&long[100_000..], |l| out.push(l.to_vec()));
        buffer.push(b"\nnext\nlast", |l| out.push(l.to_vec()));
        buffer.finish(|l| out.push(l.to_vec()));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), 200_001);
        assert_eq!(out[1], b"next\n");
        assert_eq!(out[2], b"last");
    }
}
