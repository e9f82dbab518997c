//! The wire between the caller and the helper process tree: the caller writes the
//! [`RunSpec`](crate::RunSpec) as a length-prefixed JSON document on a socket that becomes the
//! helper's stdin; every process of the tree (helper, namespace holder, PID 1, the command
//! before `exec`) reports [`Event`]s on the same socket as JSON lines.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use crate::spec::{ExitStatus, RootfsMode, RunSpec};

/// `argv[1]` that turns an executable into the sandbox helper.
pub const HELPER_MARKER: &str = "__kiln-sandbox-init";

/// The largest spec accepted (a spec is a few kilobytes; this only guards a broken peer).
const MAX_SPEC_BYTES: u32 = 16 * 1024 * 1024;

/// A report from the helper process tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    /// Setup failed before the command started.
    Setup(String),
    /// The command could not be executed.
    Exec {
        /// Why.
        message: String,
        /// 127 not found, 126 not executable.
        code: i32,
    },
    /// The command ended.
    Exit(ExitStatus),
    /// Chroot isolation started the command in this process group: on cancellation the
    /// caller kills the group (there is no pid namespace to take it down).
    ProcessGroup(i32),
    /// Something the command has to do without (chroot isolation), for the caller's warning.
    Notice(String),
    /// The diff post-processing failed.
    Diff(String),
    /// The helper finished; the upperdir holds the diff.
    Done(RootfsMode),
}

pub(crate) fn send_spec(socket: &mut UnixStream, spec: &RunSpec) -> io::Result<()> {
    let body = serde_json::to_vec(spec).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_SPEC_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "sandbox spec too large"))?;
    let mut message = Vec::with_capacity(body.len() + 4);
    message.extend_from_slice(&len.to_le_bytes());
    message.extend_from_slice(&body);
    socket.write_all(&message)
}

pub(crate) fn receive_spec(socket: &mut UnixStream) -> io::Result<RunSpec> {
    let mut len = [0u8; 4];
    socket.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_SPEC_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sandbox spec too large",
        ));
    }
    let mut body = vec![0u8; len as usize];
    socket.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

/// Reports a setup failure of a forked process to the caller ([`Event::Setup`]) and returns
/// the exit code (1) the process then exits with.
pub(crate) fn setup_failed(socket: &UnixStream, message: String) -> i32 {
    send_event(socket, &Event::Setup(message));
    1
}

/// Sends one event as a single `write` (lines from several processes never interleave).
pub(crate) fn send_event(socket: &UnixStream, event: &Event) {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return;
    };
    line.push(b'\n');
    // The caller may be gone (cancelled); there is nobody left to tell.
    let _ = (&*socket).write_all(&line);
}

pub(crate) fn parse_event(line: &[u8]) -> Option<Event> {
    serde_json::from_slice(line).ok()
}
