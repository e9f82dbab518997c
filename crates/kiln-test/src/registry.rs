//! A real CNCF distribution registry (`docker-registry serve`) on a free loopback port, with
//! filesystem storage in a temp dir and optional htpasswd basic auth; killed on drop.
//! Starting one panics (names the missing tool) when `docker-registry` or `htpasswd` is absent;
//! tests that start one carry `#[cfg_attr(kiln_no_docker_registry, ignore = …)]`.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a registry may take to answer `/v2/`.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// An open registry.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// A registry that wants basic auth `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Self {
        crate::require_tool("docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut auth_section = String::new();
        if let Some((user, password)) = auth {
            crate::require_tool("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("running htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            fs_err::write(dir.path().join("htpasswd"), &out.stdout).expect("writing htpasswd");
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_section}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            fs_err::write(&config_path, config).expect("writing registry config");
            let log = fs_err::File::create(dir.path().join("registry.log"))
                .expect("log file")
                .into_file();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .expect("starting docker-registry");
            let host = format!("127.0.0.1:{port}");
            if wait_ready(&mut child, &host) {
                return Self { child, host, dir };
            }
            // Port taken between probing and binding, or a slow start: try another port.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start on any port");
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the temp files live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /v2/` until the registry answers (200 or 401), it exits, or the deadline.
fn wait_ready(child: &mut Child, host: &str) -> bool {
    let deadline = Instant::now() + READY_DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Some(status) = http_status(host, "/v2/") {
            return status == 200 || status == 401;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The status of a plain `GET`, or `None` when nothing answers.
pub fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}
