//! `--ssh` and `RUN --mount=type=ssh`: the agents a build may use, and the sockets a RUN
//! step sees.
//!
//! An [`SshSource`] is what `docker buildx build --ssh` takes: `default` or `ID` alone (the
//! agent at `$SSH_AUTH_SOCK`), `ID=SOCKET` (that agent), or `ID=KEYFILE[,KEYFILE…]` (those
//! private keys, served by kiln itself as BuildKit's sshprovider serves them). For each ssh
//! mount of a RUN, kiln listens on a fresh socket in a private temporary directory (mode
//! 0700) and bind-mounts it at the mount's target: a forwarded agent gets only the requests
//! BuildKit's read-only agent lets through (list the keys, sign), key files are answered
//! here. The socket's path and the keys never enter a cache key, a layer or the store.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ssh_key::PrivateKey;
use ssh_key::private::KeypairData;

/// The variable a default agent is found by, and the one a RUN step gets.
pub(crate) const AUTH_SOCK_VAR: &str = "SSH_AUTH_SOCK";
/// BuildKit's sshprovider reads at most this much of a key file.
const KEY_FILE_LIMIT: u64 = 100 * 1024;
/// OpenSSH's `AGENT_MAX_LEN`: a longer message is refused.
const MESSAGE_LIMIT: usize = 256 * 1024;

// The agent protocol's messages (draft-miller-ssh-agent, §3 and §6).
const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH_AGENT_SIGN_RESPONSE: u8 = 14;

/// A `--ssh default|ID[=SOCKET|KEYFILE[,KEYFILE…]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSource {
    /// The id RUN `--mount=type=ssh,id=…` refers to (`default` when not given).
    pub id: String,
    /// An agent socket, or private key files; empty for the agent at `$SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

impl SshSource {
    /// The agent at `$SSH_AUTH_SOCK` under `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            paths: Vec::new(),
        }
    }

    /// Adds a socket or a key file (several key files make one agent).
    #[must_use]
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(path.into());
        self
    }
}

/// Why a `--ssh` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SshSpecError {
    /// Nothing before the `=`.
    #[error(
        "invalid --ssh `{spec}`: the id is empty (expected default, ID, ID=SOCKET or ID=KEYFILE[,KEYFILE…])"
    )]
    EmptyId {
        /// The whole value.
        spec: String,
    },
    /// `ID=a,,b` or a trailing comma.
    #[error("invalid --ssh `{spec}`: an empty path in the list after `=`")]
    EmptyPath {
        /// The whole value.
        spec: String,
    },
}

impl std::str::FromStr for SshSource {
    type Err = SshSpecError;

    /// buildx's reading (`buildflags.SSH.UnmarshalText`): the id before the first `=`, then
    /// comma-separated paths. `ID=` alone is `$SSH_AUTH_SOCK`, as BuildKit reads it.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (id, paths) = spec.split_once('=').unwrap_or((spec, ""));
        if id.trim().is_empty() {
            return Err(SshSpecError::EmptyId {
                spec: spec.to_owned(),
            });
        }
        let paths = if paths.is_empty() {
            Vec::new()
        } else {
            let parts: Vec<&str> = paths.split(',').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return Err(SshSpecError::EmptyPath {
                    spec: spec.to_owned(),
                });
            }
            parts.into_iter().map(PathBuf::from).collect()
        };
        Ok(Self {
            id: id.to_owned(),
            paths,
        })
    }
}

/// Why an `--ssh` source cannot be used (checked when the build starts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshSourceError {
    /// Two `--ssh` with one id.
    #[error("--ssh `{id}` is given twice; pass each id once (several key files: ID=KEY1,KEY2)")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// `default` (or `ID` alone) with no agent to forward.
    #[error(
        "--ssh `{id}`: $SSH_AUTH_SOCK is not set; start an ssh-agent, or pass --ssh {id}=SOCKET or --ssh {id}=KEYFILE"
    )]
    NoAgentSocket {
        /// The id.
        id: String,
    },
    /// A path that cannot be read.
    #[error("--ssh `{id}`: cannot read {}: {source}", .path.display())]
    Unreadable {
        /// The id.
        id: String,
        /// The socket or key file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A key file larger than any private key.
    #[error("--ssh `{id}`: {} is larger than {limit} bytes: not a private key", .path.display())]
    TooLarge {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A key file that is not an OpenSSH private key.
    #[error(
        "--ssh `{id}`: {} is not an OpenSSH private key ({reason}); `ssh-keygen -p -f FILE` rewrites a PEM key in that format",
        .path.display()
    )]
    Unparsable {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A key protected by a passphrase (BuildKit cannot prompt either).
    #[error(
        "--ssh `{id}`: {} is encrypted with a passphrase; add it to an ssh-agent (ssh-add) and pass --ssh {id} (or {id}=SOCKET)",
        .path.display()
    )]
    Encrypted {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
    },
    /// An RSA key file: kiln's own agent does not sign with RSA keys. The Rust `rsa` crate
    /// is not constant-time (RUSTSEC-2023-0071, no fixed release), and a RUN step may ask
    /// for as many signatures as it likes and time them; ssh-agent signs in constant time.
    #[error(
        "--ssh `{id}`: {} is an RSA key, which kiln's own agent does not sign with (no constant-time RSA in Rust yet: RUSTSEC-2023-0071); add it to an ssh-agent (ssh-add {}) and pass --ssh {id}=$SSH_AUTH_SOCK, or use an ed25519 or ecdsa key",
        .path.display(), .path.display()
    )]
    RsaKeyFile {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
    },
    /// A key type kiln's agent does not sign with (DSA, security keys).
    #[error(
        "--ssh `{id}`: {} is a {algorithm} key, which kiln's agent cannot use (ed25519 and ecdsa can); add it to an ssh-agent and pass --ssh {id}=SOCKET",
        .path.display()
    )]
    UnsupportedKey {
        /// The id.
        id: String,
        /// The file.
        path: PathBuf,
        /// The key's algorithm.
        algorithm: String,
    },
    /// A socket and key files, or two sockets, under one id (BuildKit refuses both).
    #[error(
        "--ssh `{id}`: give either one agent socket or key files, not {what}",
        what = if *.two_sockets { "two sockets" } else { "a socket and key files" }
    )]
    MixedPaths {
        /// The id.
        id: String,
        /// Two sockets (otherwise a socket and keys).
        two_sockets: bool,
    },
}

/// What answers the requests on one id's sockets.
#[derive(Clone)]
pub(crate) enum Agent {
    /// An ssh-agent's socket: requests to list keys and sign are forwarded to it.
    Forward(PathBuf),
    /// Keys read from files, answered in process.
    Keys(Arc<Vec<PrivateKey>>),
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forward(path) => f.debug_tuple("Forward").field(path).finish(),
            Self::Keys(keys) => write!(f, "Keys({} keys)", keys.len()),
        }
    }
}

/// Checks that every id is given once and that every source can serve: run when the build
/// starts, as buildx opens its agents before it sends the build.
pub(crate) fn check_sources(sources: &[SshSource]) -> Result<(), SshSourceError> {
    let mut seen = std::collections::BTreeSet::new();
    for source in sources {
        if !seen.insert(source.id.as_str()) {
            return Err(SshSourceError::DuplicateId {
                id: source.id.clone(),
            });
        }
        resolve(source)?;
    }
    Ok(())
}

/// The agent of the source with `id` (`None` when no `--ssh` gave it).
pub(crate) fn agent_for(sources: &[SshSource], id: &str) -> Option<Result<Agent, SshSourceError>> {
    sources.iter().find(|s| s.id == id).map(resolve)
}

/// BuildKit's `AgentConfig.toDialer`: no path (or one empty path) is `$SSH_AUTH_SOCK`; a
/// socket is forwarded; files are private keys; the two do not mix.
pub(crate) fn resolve(source: &SshSource) -> Result<Agent, SshSourceError> {
    let id = &source.id;
    let is_auth_sock = match source.paths.as_slice() {
        [] => true,
        [only] => only.as_os_str().is_empty(),
        _ => false,
    };
    let paths = if is_auth_sock {
        let socket = std::env::var_os(AUTH_SOCK_VAR)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| SshSourceError::NoAgentSocket { id: id.clone() })?;
        vec![PathBuf::from(socket)]
    } else {
        source.paths.clone()
    };
    let mut socket = None;
    let mut keys = Vec::new();
    for path in paths {
        #[expect(
            clippy::disallowed_methods,
            reason = "Unreadable names the path and the id; fs_err would name the path twice"
        )]
        let meta = std::fs::metadata(&path).map_err(|source| SshSourceError::Unreadable {
            id: id.clone(),
            path: path.clone(),
            source,
        })?;
        if meta.file_type().is_socket() {
            if socket.is_some() {
                return Err(SshSourceError::MixedPaths {
                    id: id.clone(),
                    two_sockets: true,
                });
            }
            socket = Some(path);
        } else {
            keys.push(read_key(id, &path)?);
        }
    }
    match socket {
        Some(_) if !keys.is_empty() => Err(SshSourceError::MixedPaths {
            id: id.clone(),
            two_sockets: false,
        }),
        Some(socket) => Ok(Agent::Forward(socket)),
        None => Ok(Agent::Keys(Arc::new(keys))),
    }
}

fn read_key(id: &str, path: &Path) -> Result<PrivateKey, SshSourceError> {
    let unreadable = |source| SshSourceError::Unreadable {
        id: id.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    #[expect(
        clippy::disallowed_methods,
        reason = "Unreadable names the path and the id; fs_err would name the path twice"
    )]
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(KEY_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > KEY_FILE_LIMIT {
        return Err(SshSourceError::TooLarge {
            id: id.to_owned(),
            path: path.to_path_buf(),
            limit: KEY_FILE_LIMIT,
        });
    }
    let key = PrivateKey::from_openssh(&bytes).map_err(|err| SshSourceError::Unparsable {
        id: id.to_owned(),
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(SshSourceError::Encrypted {
            id: id.to_owned(),
            path: path.to_path_buf(),
        });
    }
    match key.key_data() {
        KeypairData::Ed25519(_) | KeypairData::Ecdsa(_) => Ok(key),
        KeypairData::Rsa(_) => Err(SshSourceError::RsaKeyFile {
            id: id.to_owned(),
            path: path.to_path_buf(),
        }),
        other => Err(SshSourceError::UnsupportedKey {
            id: id.to_owned(),
            path: path.to_path_buf(),
            algorithm: other
                .algorithm()
                .map_or_else(|_| "unknown".to_owned(), |a| a.as_str().to_owned()),
        }),
    }
}

/// A socket that serves one agent for the length of a RUN step: a listener in a private
/// temporary directory, a thread accepting on it and one per connection. Dropping it stops
/// accepting and removes the directory; open connections end with the step's processes.
#[derive(Debug)]
pub(crate) struct ServedAgent {
    socket: PathBuf,
    is_stopping: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    // Last: removed after the acceptor stopped.
    _dir: tempfile::TempDir,
}

impl ServedAgent {
    /// Listens for `agent` on a new socket with permissions `mode`.
    pub(crate) fn start(agent: Agent, mode: u32) -> io::Result<Self> {
        // Short paths: a socket's path must fit in `sun_path` (108 bytes), which a store
        // under a long $KILN_ROOT may not.
        let dir = tempfile::Builder::new().prefix("kiln-ssh-").tempdir()?;
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", socket.display())))?;
        fs_err::set_permissions(&socket, std::fs::Permissions::from_mode(mode))?;
        let is_stopping = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&is_stopping);
        let acceptor = std::thread::Builder::new()
            .name("kiln-ssh-agent".to_owned())
            .spawn(move || accept(&listener, &agent, &stopping))?;
        Ok(Self {
            socket,
            is_stopping,
            acceptor: Some(acceptor),
            _dir: dir,
        })
    }

    /// The socket's host path.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ServedAgent {
    fn drop(&mut self) {
        self.is_stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// How long the acceptor waits for a connection before it looks whether to stop.
const ACCEPT_POLL: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

fn accept(listener: &UnixListener, agent: &Agent, is_stopping: &AtomicBool) {
    // Polled rather than blocked in accept(2): a wake-up connection could be refused (a
    // socket given another owner and mode 0600) and leave the step's end waiting forever.
    if let Err(err) = listener.set_nonblocking(true) {
        tracing::warn!(%err, "ssh agent socket cannot poll");
        return;
    }
    while !is_stopping.load(Ordering::SeqCst) {
        let mut fds = [rustix::event::PollFd::new(
            listener,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ACCEPT_POLL)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%err, "ssh agent socket stopped accepting");
                return;
            }
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(err) = stream.set_nonblocking(false) {
                    tracing::debug!(%err, "ssh agent connection dropped");
                    continue;
                }
                let agent = agent.clone();
                let spawned = std::thread::Builder::new()
                    .name("kiln-ssh-conn".to_owned())
                    .spawn(move || {
                        if let Err(err) = serve(&agent, stream) {
                            tracing::debug!(%err, "ssh agent connection ended");
                        }
                    });
                if let Err(err) = spawned {
                    tracing::warn!(%err, "cannot serve an ssh agent connection");
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                tracing::warn!(%err, "ssh agent socket stopped accepting");
                return;
            }
        }
    }
}

/// Answers one client connection until it closes.
pub(crate) fn serve(agent: &Agent, mut client: UnixStream) -> io::Result<()> {
    let mut upstream = match agent {
        Agent::Forward(path) => Some(UnixStream::connect(path).map_err(|err| {
            tracing::warn!(path = %path.display(), %err, "cannot connect to the ssh agent");
            err
        })?),
        Agent::Keys(_) => None,
    };
    while let Some(request) = read_message(&mut client)? {
        let reply = match (agent, upstream.as_mut()) {
            (Agent::Keys(keys), _) => answer(keys, &request),
            (Agent::Forward(_), Some(upstream)) => forward(upstream, &request)?,
            (Agent::Forward(_), None) => vec![SSH_AGENT_FAILURE],
        };
        write_message(&mut client, &reply)?;
    }
    Ok(())
}

/// BuildKit's `readOnlyAgent`: listing and signing reach the agent; adding, removing,
/// locking and extensions are refused.
fn forward(upstream: &mut UnixStream, request: &[u8]) -> io::Result<Vec<u8>> {
    if !matches!(
        request.first(),
        Some(&(SSH_AGENTC_REQUEST_IDENTITIES | SSH_AGENTC_SIGN_REQUEST))
    ) {
        return Ok(vec![SSH_AGENT_FAILURE]);
    }
    write_message(upstream, request)?;
    read_message(upstream)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the ssh agent closed the connection",
        )
    })
}

/// The reply of kiln's own agent to `request`.
pub(crate) fn answer(keys: &[PrivateKey], request: &[u8]) -> Vec<u8> {
    match request.split_first() {
        Some((&SSH_AGENTC_REQUEST_IDENTITIES, _)) => identities(keys),
        Some((&SSH_AGENTC_SIGN_REQUEST, body)) => {
            sign(keys, body).unwrap_or_else(|| vec![SSH_AGENT_FAILURE])
        }
        _ => vec![SSH_AGENT_FAILURE],
    }
}

fn identities(keys: &[PrivateKey]) -> Vec<u8> {
    let mut reply = vec![SSH_AGENT_IDENTITIES_ANSWER];
    let listed: Vec<(Vec<u8>, &str)> = keys
        .iter()
        .filter_map(|k| Some((k.public_key().to_bytes().ok()?, k.comment())))
        .collect();
    put_u32(&mut reply, listed.len());
    for (blob, comment) in listed {
        put_string(&mut reply, &blob);
        put_string(&mut reply, comment.as_bytes());
    }
    reply
}

/// `SSH_AGENTC_SIGN_REQUEST`: `string key_blob, string data, uint32 flags`.
fn sign(keys: &[PrivateKey], body: &[u8]) -> Option<Vec<u8>> {
    let mut rest = body;
    let blob = take_string(&mut rest)?;
    let data = take_string(&mut rest)?;
    // The flags only choose an RSA key's hash; RSA key files are refused when the build
    // starts, so only ed25519 and ecdsa keys are here.
    take_u32(&mut rest)?;
    let key = keys
        .iter()
        .find(|k| k.public_key().to_bytes().is_ok_and(|b| b == blob))?;
    let signature: ssh_key::Signature = signature::Signer::try_sign(key.key_data(), data).ok()?;
    let (algorithm, signature) = (
        signature.algorithm().as_str().to_owned(),
        signature.as_bytes().to_vec(),
    );
    let mut encoded = Vec::new();
    put_string(&mut encoded, algorithm.as_bytes());
    put_string(&mut encoded, &signature);
    let mut reply = vec![SSH_AGENT_SIGN_RESPONSE];
    put_string(&mut reply, &encoded);
    Some(reply)
}

/// One message: `uint32 length` then that many bytes; `None` at a clean end of stream.
fn read_message(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MESSAGE_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ssh agent message of {len} bytes (at most {MESSAGE_LIMIT})"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Some(body))
}

fn write_message(stream: &mut UnixStream, body: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(body.len() + 4);
    put_string(&mut framed, body);
    stream.write_all(&framed)
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    // Every length here is bounded by MESSAGE_LIMIT or a key's size.
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_be_bytes(*head))
}

fn take_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_u32(rest)? as usize;
    if rest.len() < len {
        return None;
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Some(head)
}

#[cfg(test)]
mod tests {
    use signature::Verifier as _;

    use super::*;

    #[test]
    fn specs_parse_as_buildx_reads_them() {
        let parse = |spec: &str| spec.parse::<SshSource>().unwrap();
        assert_eq!(parse("default"), SshSource::new("default"));
        assert_eq!(parse("github"), SshSource::new("github"));
        assert_eq!(
            parse("default=/run/agent.sock"),
            SshSource::new("default").path("/run/agent.sock")
        );
        assert_eq!(
            parse("deploy=/k/id_ed25519,/k/id_rsa"),
            SshSource::new("deploy")
                .path("/k/id_ed25519")
                .path("/k/id_rsa")
        );
        // `ID=` is the agent at $SSH_AUTH_SOCK (BuildKit's one empty path).
        assert_eq!(parse("x="), SshSource::new("x"));
        // Only the first `=` splits.
        assert_eq!(parse("a=/p=q"), SshSource::new("a").path("/p=q"));
        for (bad, what) in [
            ("", "id is empty"),
            ("=/run/a.sock", "id is empty"),
            ("a=/k1,,/k2", "empty path"),
            ("a=/k1,", "empty path"),
        ] {
            let err = bad.parse::<SshSource>().unwrap_err().to_string();
            assert!(
                err.contains(what) && err.contains(&format!("`{bad}`")),
                "{err}"
            );
        }
    }

    const ED25519_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDNgYNhkXEAG3PMcNZ9XrJjcHWsCEh6FUN5TtDnJ+cOUQAAAJjPn2g5z59o
OQAAAAtzc2gtZWQyNTUxOQAAACDNgYNhkXEAG3PMcNZ9XrJjcHWsCEh6FUN5TtDnJ+cOUQ
AAAEA5q/liicFSQTwnRtKLpj1rQtTR4AM2RZ0un3nIFhhZaM2Bg2GRcQAbc8xw1n1esmNw
dawISHoVQ3lO0Ocn5w5RAAAAEHVzZXJAZXhhbXBsZS5jb20BAgMEBQ==
-----END OPENSSH PRIVATE KEY-----
";

    const RSA_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABFwAAAAdzc2gtcn
NhAAAAAwEAAQAAAQEAp1KkPaQOg+VuMf6Da7HabpIsRpgnZbh5fuRTgOPp12XrP17IvO68
O7Gb9wmLtduypUFD2Bi0ZW0QZGSByAsQbWkTxGDe4aVY29AngHIuBfppmkenddcHFqiBIE
g+Qz15n6DKJl+TKIn2rQmfC81qaG+fInb4G0LhB0IcMzLh7oFgHiWw6nrlLkheubtoNPmH
pb+XIUNEhohGFFo0dcGmiuVT7VgydTahO0VrWe8ktqcoGOEZ8ibqrR0vqHn1kBqxud56p6
m2UOlhdLH2AnvuIiliiX8KZAou2A03reAzZuRWz4Rd4pPnTRsjoS4XjnT/Ho0vUAK4KqUO
sGzNuARHEwAAA7gKOCdTCjgnUwAAAAdzc2gtcnNhAAABAQCnUqQ9pA6D5W4x/oNrsdpuki
xGmCdluHl+5FOA4+nXZes/Xsi87rw7sZv3CYu127KlQUPYGLRlbRBkZIHICxBtaRPEYN7h
pVjb0CeAci4F+mmaR6d11wcWqIEgSD5DPXmfoMomX5MoifatCZ8LzWpob58idvgbQuEHQh
wzMuHugWAeJbDqeuUuSF65u2g0+Yelv5chQ0SGiEYUWjR1waaK5VPtWDJ1NqE7RWtZ7yS2
pygY4RnyJuqtHS+oefWQGrG53nqnqbZQ6WF0sfYCe+4iKWKJfwpkCi7YDTet4DNm5FbPhF
3ik+dNGyOhLheOdP8ejS9QArgqpQ6wbM24BEcTAAAAAwEAAQAAAQABu3bM1pJ55hmuddKZ
flVjGKtRrciWooLLgASnTHTC0KDPXqVYY2Zafdu+AoDKSLSARn0z0wmnFSp6x5maXxbz8w
cL3O7hyirx16VZDJWSZUXLnZtLuoatwt/XXDgczRmhv/Hn1Mx6unbt0rAtWJqV6zXsDuxB
p/8ZaqNNGmVBaVwylzkBsLcQOVb2WOlG3YzOHgWN0h0/u4B3Gw2HWo12fcc7diRP8wh2wl
4V3tLwU3H/bCWjjMw1sH0F2EkKk4nrx0ZPvFx0eOn3wiWKnbk9cdqbpZ8Vr+4HDEs82qBu
stEn96wNVj01HpPGK9uLrWZ3hIe+2fHU2X7YsSxDshQpAAAAgHRubpuhJBbt76kMT3cVI7
r1HQHtm8zCF13gND1Y4z+HRWq4mfi1oPMzBxPWEmWeJ9JEEAccZtiV1yKCpKQTfA7BgZk0
9/VHolt76sSwMup8hKIJDaTsbmRrlAuFDqFEQdHQ/iCqNBvDSZW9Zt3AhyNQn3w2cGUK1c
c6wxt91grhAAAAgQDTKRK3/MgzmSGjb0UalxB4/igqiUPJZXVSGn4U/4/aiVRa7xHrnSVL
ryVNyx3Xigi62oDGh86pUp+2GEDwXwdLczopsQlmnVTzjwQC/0i/2KS1lDTT/OtwUEHrTN
Kh9pxRgTJraHb8wx2RG67yrc1avGbEyLb70252LwKUUH5RmwAAAIEAytqBG6xXSmnMTBrH
8UMLtGqIpQ9Z0Zbi9gK4Onle9CwcTTrhDmcftFQo2h6aqh90/WxaRA9wTf98Q0tv9faQSa
t/HjZTRQLc5N8Ik9VB8yz/FysoW0MVCsEF3HP4JHbKPry++vaDVk/3k172SjekwghaYnYO
iy4nDWYNnN+Qk+kAAAADcnNh
-----END OPENSSH PRIVATE KEY-----
";

    fn request(kind: u8, parts: &[&[u8]], flags: Option<u32>) -> Vec<u8> {
        let mut out = vec![kind];
        for part in parts {
            put_string(&mut out, part);
        }
        if let Some(flags) = flags {
            out.extend_from_slice(&flags.to_be_bytes());
        }
        out
    }

    fn verify(key: &PrivateKey, data: &[u8], reply: &[u8]) -> String {
        assert_eq!(reply[0], SSH_AGENT_SIGN_RESPONSE);
        let mut rest = &reply[1..];
        let mut encoded = take_string(&mut rest).unwrap();
        let algorithm = take_string(&mut encoded).unwrap();
        let bytes = take_string(&mut encoded).unwrap();
        let algorithm = std::str::from_utf8(algorithm).unwrap().to_owned();
        let signature =
            ssh_key::Signature::new(ssh_key::Algorithm::new(&algorithm).unwrap(), bytes).unwrap();
        key.public_key()
            .key_data()
            .verify(data, &signature)
            .unwrap();
        algorithm
    }

    #[test]
    fn the_key_agent_lists_and_signs_and_refuses_the_rest() {
        let key = PrivateKey::from_openssh(ED25519_KEY).unwrap();
        let keys = vec![key.clone()];
        let blob = key.public_key().to_bytes().unwrap();
        let listed = answer(&keys, &[SSH_AGENTC_REQUEST_IDENTITIES]);
        let mut rest = &listed[1..];
        assert_eq!(listed[0], SSH_AGENT_IDENTITIES_ANSWER);
        assert_eq!(take_u32(&mut rest), Some(1));
        assert_eq!(take_string(&mut rest), Some(blob.as_slice()));
        assert_eq!(take_string(&mut rest), Some(&b"user@example.com"[..]));
        assert!(rest.is_empty());

        let signed = answer(
            &keys,
            &request(SSH_AGENTC_SIGN_REQUEST, &[&blob, b"session"], Some(0)),
        );
        assert_eq!(verify(&key, b"session", &signed), "ssh-ed25519");

        // An unknown key, a truncated request, adding a key (17), locking (22), extensions
        // (27), an empty message: SSH_AGENT_FAILURE.
        let other = request(SSH_AGENTC_SIGN_REQUEST, &[b"nope", b"session"], Some(0));
        let truncated = request(SSH_AGENTC_SIGN_REQUEST, &[&blob], None);
        for bad in [&other[..], &truncated, &[17], &[22], &[27], &[]] {
            assert_eq!(answer(&keys, bad), vec![SSH_AGENT_FAILURE], "{bad:?}");
        }
    }

    #[test]
    fn an_rsa_key_file_is_refused_naming_it_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_rsa");
        fs_err::write(&path, RSA_KEY).unwrap();
        let err = read_key("deploy", &path).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SshSourceError::RsaKeyFile { .. }), "{err:?}");
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("ssh-add")
                && message.contains("RUSTSEC-2023-0071"),
            "{message}"
        );
    }

    #[test]
    fn a_forwarded_agent_sees_only_list_and_sign_requests() {
        let dir = tempfile::tempdir().unwrap();
        let upstream_path = dir.path().join("upstream.sock");
        let upstream = UnixListener::bind(&upstream_path).unwrap();
        let key = PrivateKey::from_openssh(ED25519_KEY).unwrap();
        let keys = Agent::Keys(Arc::new(vec![key]));
        // A stand-in ssh-agent: kiln's own key agent, recording what reaches it.
        let seen = std::thread::spawn(move || {
            let (mut conn, _) = upstream.accept().unwrap();
            let mut kinds = Vec::new();
            while let Some(request) = read_message(&mut conn).unwrap() {
                kinds.push(request[0]);
                let Agent::Keys(keys) = &keys else {
                    unreachable!()
                };
                write_message(&mut conn, &answer(keys, &request)).unwrap();
            }
            kinds
        });
        let served = ServedAgent::start(Agent::Forward(upstream_path), 0o600).unwrap();
        let mode = fs_err::metadata(served.socket())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut client = UnixStream::connect(served.socket()).unwrap();
        write_message(&mut client, &[SSH_AGENTC_REQUEST_IDENTITIES]).unwrap();
        let listed = read_message(&mut client).unwrap().unwrap();
        assert_eq!(listed[0], SSH_AGENT_IDENTITIES_ANSWER);
        // Removing all keys (19) is refused here, never forwarded.
        write_message(&mut client, &[19]).unwrap();
        assert_eq!(
            read_message(&mut client).unwrap().unwrap(),
            vec![SSH_AGENT_FAILURE]
        );
        drop(client);
        assert_eq!(seen.join().unwrap(), vec![SSH_AGENTC_REQUEST_IDENTITIES]);
        let socket = served.socket().to_path_buf();
        drop(served);
        assert!(!socket.exists(), "the socket's directory is removed");
    }

    #[test]
    fn sources_are_checked_with_the_path_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        fs_err::write(&key, ED25519_KEY).unwrap();
        let agent = resolve(&SshSource::new("k").path(&key)).unwrap();
        assert!(matches!(agent, Agent::Keys(keys) if keys.len() == 1));

        let missing = dir.path().join("missing");
        let not_a_key = dir.path().join("not-a-key");
        fs_err::write(&not_a_key, "hello").unwrap();
        for (path, what) in [(&missing, "cannot read"), (&not_a_key, "not an OpenSSH")] {
            let err = resolve(&SshSource::new("k").path(path))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(what) && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
        let twice = [
            SshSource::new("k").path(&key),
            SshSource::new("k").path(&key),
        ];
        assert!(matches!(
            check_sources(&twice),
            Err(SshSourceError::DuplicateId { .. })
        ));
        let sock = dir.path().join("a.sock");
        let _listener = UnixListener::bind(&sock).unwrap();
        assert!(matches!(
            resolve(&SshSource::new("k").path(&sock).path(&key)),
            Err(SshSourceError::MixedPaths {
                two_sockets: false,
                ..
            })
        ));
        assert!(matches!(
            resolve(&SshSource::new("k").path(&sock)),
            Ok(Agent::Forward(p)) if p == sock
        ));
    }
}
