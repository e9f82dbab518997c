//! Context sources (issue 20): `kiln build -` (a tar of the context, or a bare Dockerfile,
//! on stdin), a remote tarball URL, a git repository (`git://…#ref:subdir` and
//! `http://…/repo.git#ref:subdir`, submodules, `.git` kept only when asked), and
//! `ADD <git URL>` keyed by the commit its ref names. Git repositories are served on loopback
//! by `git daemon` or by `git http-backend` behind [`GitHttpServer`] (git's smart HTTP),
//! tarballs by `python3 -m http.server`. Every build is `FROM scratch` without RUN: no root
//! needed.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{kiln_in, run_fails};

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process listening on a loopback port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `command` (which listens on `port`) and waits until the port accepts.
    fn start(mut command: Command, port: u16) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{command:?} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `git daemon` exporting every repository under `base`.
    fn git_daemon(base: &Path) -> Self {
        let port = free_port();
        let mut command = Command::new("git");
        command
            .arg("daemon")
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(base);
        Self::start(command, port)
    }

    /// `python3 -m http.server` serving `dir`.
    fn http(dir: &Path) -> Self {
        let port = free_port();
        let mut command = Command::new("python3");
        command
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir);
        Self::start(command, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Git's smart HTTP on a loopback port: an HTTP/1.1 server that runs `git http-backend` as a
/// CGI script (RFC 3875) for every request, exporting each repository under `base`. One
/// request per connection (`Connection: close`), one thread per connection; stopped on drop.
struct GitHttpServer {
    port: u16,
    /// `METHOD /path` of every request, in arrival order.
    requests: Arc<Mutex<Vec<String>>>,
    is_stopping: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl GitHttpServer {
    fn start(base: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let is_stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (base, requests, is_stopping) =
                (base.to_owned(), requests.clone(), is_stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if is_stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (base, requests) = (base.clone(), requests.clone());
                    std::thread::spawn(move || {
                        // A client that hangs up mid-request is its own problem, not the test's.
                        let _ = serve_git_http(stream, &base, &requests);
                    });
                }
            })
        };
        Self {
            port,
            requests,
            is_stopping,
            acceptor: Some(acceptor),
        }
    }

    /// The requests served so far, forgetting them.
    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.is_stopping.store(true, Ordering::SeqCst);
        // Wakes the blocked accept, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one request from `stream`, runs `git http-backend` with it and relays the answer.
fn serve_git_http(
    stream: TcpStream,
    base: &Path,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Ok(());
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // git sends a large request body chunked (http.postBuffer), a small one with a length.
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut reader)?
    } else {
        let length = header("content-length").map_or(Ok(0), str::parse);
        let mut body = vec![0; length.map_err(std::io::Error::other)?];
        reader.read_exact(&mut body)?;
        body
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    requests.lock().unwrap().push(format!("{method} {path}"));

    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("CONTENT_TYPE", header("content-type").unwrap_or(""))
        .env_remove("GIT_DIR");
    // The other headers as `HTTP_*` (RFC 3875 4.1.18): git reads HTTP_GIT_PROTOCOL (protocol
    // v2) and HTTP_CONTENT_ENCODING (a gzipped request body).
    for (name, value) in &headers {
        if name != "content-type" && name != "content-length" {
            cgi.env(
                format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
                value,
            );
        }
    }
    let mut child = cgi
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    // Written from another thread: the backend may answer before it has read everything.
    let feeder = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    let _ = feeder.join();

    // The CGI answer: headers (`Status:` among them), a blank line, the body.
    let cgi_out = output.stdout;
    let split = cgi_out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, at + 4))
        .or_else(|| {
            cgi_out
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| (at, at + 2))
        });
    let Some((head_end, body_start)) = split else {
        writer.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    };
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    for header in String::from_utf8_lossy(&cgi_out[..head_end]).lines() {
        match header.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => {
                value.trim().clone_into(&mut status);
            }
            _ => {
                response.extend_from_slice(header.as_bytes());
                response.extend_from_slice(b"\r\n");
            }
        }
    }
    let body = &cgi_out[body_start..];
    writer.write_all(format!("HTTP/1.1 {status}\r\n").as_bytes())?;
    writer.write_all(&response)?;
    writer.write_all(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    writer.write_all(body)?;
    writer.flush()
}

/// A `Transfer-Encoding: chunked` body (RFC 9112 7.1), its trailers skipped.
fn read_chunked(reader: &mut impl std::io::BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(std::io::Error::other)?;
        if size == 0 {
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

/// `git ARGS…` in `dir` with a fixed identity, asserting success; returns stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=kiln",
            "-c",
            "user.email=kiln@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write(path: &Path, content: &str) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, content).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let store = root.join("store");
    Fixture {
        _tmp: tmp,
        root,
        store,
    }
}

impl Fixture {
    /// `kiln build --progress plain -o type=local,dest=<root>/<name>` with `args` (the context
    /// last), stdin from `stdin` when given.
    fn build(&self, name: &str, args: &[&str], stdin: Option<Stdio>) -> (Output, PathBuf) {
        let out_dir = self.root.join(name);
        let _ = fs_err::remove_dir_all(&out_dir);
        let mut command = kiln_in(&self.store);
        command
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=local,dest={}", out_dir.display()))
            .args(args)
            .stdin(stdin.unwrap_or_else(Stdio::null));
        (command.output().unwrap(), out_dir)
    }

    fn build_ok(&self, name: &str, args: &[&str], stdin: Option<Stdio>) -> (String, PathBuf) {
        let (out, dir) = self.build(name, args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kiln build {args:?} failed:\n{stderr}"
        );
        (stderr, dir)
    }

    /// A context directory `name` holding `files`.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root.join(name);
        for (path, content) in files {
            write(&dir.join(path), content);
        }
        dir
    }

    /// No temp context is left in the store after a build.
    fn assert_no_temp_context(&self) {
        let tmp = self.store.join("tmp");
        let left: Vec<String> = fs_err::read_dir(&tmp)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("context-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
    }
}

/// Whether the step whose header contains `name` printed CACHED.
fn is_cached(log: &str, name: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with('#') && l.contains(name) && l.ends_with(" CACHED"))
}

/// A `.tar.gz` of `dir`'s contents at `archive`, made by the system's tar.
fn tar_gz(dir: &Path, archive: &Path) {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[cfg_attr(kiln_no_tar, ignore = "needs tar")]
fn stdin_gzip_tar_context_builds_and_copies_a_file() {
    let fx = fixture();
    let ctx = fx.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY app/hello.txt /hello.txt\n",
            ),
            ("app/hello.txt", "hello from stdin\n"),
        ],
    );
    let archive = fx.root.join("ctx.tar.gz");
    tar_gz(&ctx, &archive);
    let stdin = Stdio::from(fs_err::File::open(&archive).unwrap().into_parts().0);
    let (log, out) = fx.build_ok("out", &["-"], Some(stdin));
    assert_eq!(
        fs_err::read_to_string(out.join("hello.txt")).unwrap(),
        "hello from stdin\n",
        "{log}"
    );
    fx.assert_no_temp_context();
}

#[test]
fn stdin_dockerfile_builds_with_an_empty_context() {
    let fx = fixture();
    let dockerfile = fx.context(
        "df",
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY <<EOF /note.txt\nno context\nEOF\nCOPY . /ctx/\n",
        )],
    );
    let stdin = Stdio::from(
        fs_err::File::open(dockerfile.join("Dockerfile"))
            .unwrap()
            .into_parts()
            .0,
    );
    let (log, out) = fx.build_ok("out", &["-"], Some(stdin));
    assert_eq!(
        fs_err::read_to_string(out.join("note.txt")).unwrap(),
        "no context\n",
        "{log}"
    );
    // The context is empty: `COPY . /ctx/` copies nothing.
    let copied: Vec<_> = fs_err::read_dir(out.join("ctx")).unwrap().collect();
    assert!(copied.is_empty(), "{copied:?}");
    fx.assert_no_temp_context();
}

#[test]
fn stdin_for_both_the_context_and_the_dockerfile_is_a_usage_error() {
    let fx = fixture();
    let out = run_fails(
        kiln_in(&fx.store)
            .args(["build", "-f", "-", "-"])
            .stdin(Stdio::null()),
        2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can't use stdin for both build context and dockerfile"),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(any(kiln_no_tar, kiln_no_python3), ignore = "needs tar, python3")]
fn remote_tarball_context_is_downloaded_and_a_404_names_the_url() {
    let fx = fixture();
    let ctx = fx.context(
        "ctx",
        &[
            ("Dockerfile", "FROM scratch\nCOPY remote.txt /remote.txt\n"),
            ("remote.txt", "from the web\n"),
        ],
    );
    let served = fx.root.join("served");
    fs_err::create_dir_all(&served).unwrap();
    tar_gz(&ctx, &served.join("ctx.tar.gz"));
    let server = Server::http(&served);
    let url = format!("http://127.0.0.1:{}/ctx.tar.gz", server.port);
    let (log, out) = fx.build_ok("out", &[&url], None);
    assert_eq!(
        fs_err::read_to_string(out.join("remote.txt")).unwrap(),
        "from the web\n",
        "{log}"
    );
    fx.assert_no_temp_context();

    let missing = format!("http://127.0.0.1:{}/missing.tar.gz", server.port);
    let (out, _) = fx.build("missing", &[&missing], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&missing) && stderr.contains("404"),
        "{stderr}"
    );
    fx.assert_no_temp_context();
}

/// How [`Repos`] are served.
#[derive(Clone, Copy)]
enum Transport {
    /// `git daemon`: `git://127.0.0.1:PORT/repo.git`.
    GitDaemon,
    /// `git http-backend` (smart HTTP): `http://127.0.0.1:PORT/repo.git`.
    Http,
}

/// The server behind [`Repos`].
enum RepoServer {
    Daemon(Server),
    Http(GitHttpServer),
}

/// Repositories under `base`, served over `transport`: `lib.git` (one file) and `app.git`
/// (tag `v1` with `Dockerfile.alt`, `sub/` and the submodule `sub/vendor` → lib.git over the
/// same transport; then a later commit on `main` that changes `sub/version.txt`).
struct Repos {
    base: PathBuf,
    server: RepoServer,
}

impl Repos {
    fn new(root: &Path, transport: Transport) -> Self {
        let base = root.join("repos");
        let lib = base.join("lib.git");
        fs_err::create_dir_all(&lib).unwrap();
        git(&lib, &["init", "-q"]);
        write(&lib.join("lib.txt"), "from the submodule\n");
        git(&lib, &["add", "."]);
        git(&lib, &["commit", "-q", "-m", "lib"]);
        let server = match transport {
            Transport::GitDaemon => RepoServer::Daemon(Server::git_daemon(&base)),
            Transport::Http => RepoServer::Http(GitHttpServer::start(&base)),
        };
        let repos = Self { base, server };
        let app = repos.app();
        fs_err::create_dir_all(&app).unwrap();
        git(&app, &["init", "-q"]);
        write(&app.join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n");
        write(&app.join("sub/Dockerfile"), "FROM scratch\nCOPY . /ctx/\n");
        write(
            &app.join("Dockerfile.alt"),
            "FROM scratch\nCOPY sub/version.txt /alt.txt\n",
        );
        write(&app.join("sub/version.txt"), "v1\n");
        git(
            &app,
            &[
                "submodule",
                "add",
                "-q",
                &repos.url("lib.git"),
                "sub/vendor",
            ],
        );
        git(&app, &["add", "."]);
        git(&app, &["commit", "-q", "-m", "v1"]);
        git(&app, &["tag", "-a", "v1", "-m", "v1"]);
        repos.commit("v2\n");
        repos
    }

    fn app(&self) -> PathBuf {
        self.base.join("app.git")
    }

    fn url(&self, repo: &str) -> String {
        match &self.server {
            RepoServer::Daemon(daemon) => format!("git://127.0.0.1:{}/{repo}", daemon.port),
            RepoServer::Http(http) => format!("http://127.0.0.1:{}/{repo}", http.port),
        }
    }

    /// The HTTP requests served so far (`GET /app.git/info/refs`), forgetting them.
    fn take_http_requests(&self) -> Vec<String> {
        match &self.server {
            RepoServer::Daemon(_) => panic!("served by git daemon, not over HTTP"),
            RepoServer::Http(http) => http.take_requests(),
        }
    }

    /// A new commit on `main` writing `sub/version.txt`; returns its sha.
    fn commit(&self, version: &str) -> String {
        let app = self.app();
        write(&app.join("sub/version.txt"), version);
        git(&app, &["commit", "-q", "-am", version.trim()]);
        git(&app, &["rev-parse", "HEAD"])
    }
}

#[test]
#[cfg_attr(kiln_no_git, ignore = "needs git")]
fn git_context_at_a_tag_with_a_subdir_has_its_submodules_and_no_git_dir() {
    let fx = fixture();
    let repos = Repos::new(&fx.root, Transport::GitDaemon);
    let url = format!("{}#v1:sub", repos.url("app.git"));
    let (log, out) = fx.build_ok("sub", &[&url], None);
    // The tag, not main (v2).
    assert_eq!(
        fs_err::read_to_string(out.join("ctx/version.txt")).unwrap(),
        "v1\n",
        "{log}"
    );
    assert_eq!(
        fs_err::read_to_string(out.join("ctx/vendor/lib.txt")).unwrap(),
        "from the submodule\n"
    );
    assert!(!out.join("ctx/vendor/.git").exists());
    fx.assert_no_temp_context();

    let root_url = format!("{}#v1", repos.url("app.git"));
    let (_, out) = fx.build_ok("root", &[&root_url], None);
    assert!(out.join("ctx/sub/version.txt").is_file());
    assert!(!out.join("ctx/.git").exists());
    let (_, out) = fx.build_ok(
        "kept",
        &["--build-arg", "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1", &root_url],
        None,
    );
    assert!(out.join("ctx/.git/HEAD").is_file());
    // A relative -f is a path inside the repository (BuildKit's `filename`).
    let (log, out) = fx.build_ok("alt", &["-f", "Dockerfile.alt", &root_url], None);
    assert_eq!(
        fs_err::read_to_string(out.join("alt.txt")).unwrap(),
        "v1\n",
        "{log}"
    );
    fx.assert_no_temp_context();
}

#[test]
#[cfg_attr(kiln_no_git, ignore = "needs git")]
fn add_git_is_keyed_by_the_commit_its_ref_names() {
    let fx = fixture();
    let repos = Repos::new(&fx.root, Transport::GitDaemon);
    let app = repos.url("app.git");
    let tag = fx.context(
        "tag",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {app}#v1:sub /src\n"),
        )],
    );
    let branch = fx.context(
        "branch",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {app}#main /src\n"),
        )],
    );
    let tag_arg = tag.display().to_string();
    let branch_arg = branch.display().to_string();
    let (log, out) = fx.build_ok("tag-out", &[&tag_arg], None);
    assert!(!is_cached(&log, "ADD "), "{log}");
    assert_eq!(
        fs_err::read_to_string(out.join("src/version.txt")).unwrap(),
        "v1\n"
    );
    assert!(out.join("src/vendor/lib.txt").is_file());
    assert!(!out.join("src/.git").exists());
    let (log, out) = fx.build_ok("branch-out", &[&branch_arg], None);
    assert_eq!(
        fs_err::read_to_string(out.join("src/sub/version.txt")).unwrap(),
        "v2\n",
        "{log}"
    );

    repos.commit("v3\n");
    let (log, out) = fx.build_ok("branch-out", &[&branch_arg], None);
    assert!(
        !is_cached(&log, "ADD "),
        "a new commit on main must miss:\n{log}"
    );
    assert_eq!(
        fs_err::read_to_string(out.join("src/sub/version.txt")).unwrap(),
        "v3\n"
    );
    let (log, _) = fx.build_ok("tag-out", &[&tag_arg], None);
    assert!(
        is_cached(&log, "ADD "),
        "the unchanged tag must hit:\n{log}"
    );
}

#[test]
#[cfg_attr(kiln_no_git, ignore = "needs git")]
fn add_git_checks_checksum_and_keep_git_dir() {
    let fx = fixture();
    let repos = Repos::new(&fx.root, Transport::GitDaemon);
    let app = repos.url("app.git");
    let head = git(&repos.app(), &["rev-parse", "main"]);
    let wrong = fx.context(
        "wrong",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum=deadbeef {app}#main /src\n"),
        )],
    );
    let (out, _) = fx.build("wrong-out", &[&wrong.display().to_string()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("expected checksum to match deadbeef, got {head}")),
        "{stderr}"
    );
    let right = fx.context(
        "right",
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\nADD --checksum={} --keep-git-dir=true {app}#main /src\n",
                &head[..12]
            ),
        )],
    );
    let (log, out) = fx.build_ok("right-out", &[&right.display().to_string()], None);
    assert!(out.join("src/.git/HEAD").is_file(), "{log}");
    assert_eq!(
        git(&out.join("src"), &["rev-parse", "HEAD"]),
        head,
        "the checkout is the commit the checksum names"
    );
}

#[test]
fn a_git_context_without_git_says_to_install_it() {
    let fx = fixture();
    let empty = fx.root.join("no-tools");
    fs_err::create_dir_all(&empty).unwrap();
    let (out, _) = {
        let out_dir = fx.root.join("out");
        let out = kiln_in(&fx.store)
            .env("PATH", &empty)
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=local,dest={}", out_dir.display()))
            .arg("git://127.0.0.1:9/app.git#v1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out, out_dir)
    };
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("git://127.0.0.1:9/app.git") && stderr.contains("install git"),
        "{stderr}"
    );
    fx.assert_no_temp_context();
}

/// `git show REV:PATH` in `repo`.
fn git_show(repo: &Path, rev: &str, path: &str) -> String {
    git(repo, &["show", &format!("{rev}:{path}")])
}

#[test]
#[cfg_attr(kiln_no_git, ignore = "needs git")]
fn git_context_over_http_builds_a_tag_a_branch_and_a_commit_with_submodules() {
    let fx = fixture();
    let repos = Repos::new(&fx.root, Transport::Http);
    let app = repos.app();
    let lib = repos.base.join("lib.git");
    // main moves on: the commit that was main (v2) is now on no branch tip and no tag.
    let v2 = git(&app, &["rev-parse", "main"]);
    repos.commit("v3\n");
    let v1 = git(&app, &["rev-parse", "v1^{commit}"]);
    repos.take_http_requests();

    for (reference, expected) in [("v1", "v1"), ("main", "v3"), (v2.as_str(), "v2")] {
        let url = format!("{}#{reference}:sub", repos.url("app.git"));
        let (log, out) = fx.build_ok("sub", &[&url], None);
        // What the image holds is what git says the ref holds.
        let version = fs_err::read_to_string(out.join("ctx/version.txt")).unwrap();
        assert_eq!(version.trim_end(), expected, "{url}\n{log}");
        assert_eq!(
            version.trim_end(),
            git_show(&app, reference, "sub/version.txt")
        );
        let pinned = git(&app, &["rev-parse", &format!("{reference}:sub/vendor")]);
        assert_eq!(
            fs_err::read_to_string(out.join("ctx/vendor/lib.txt"))
                .unwrap()
                .trim_end(),
            git_show(&lib, &pinned, "lib.txt"),
            "{url}"
        );
        assert!(!out.join("ctx/vendor/.git").exists(), "{url}");
        fx.assert_no_temp_context();
    }
    // Both repositories went over smart HTTP: the submodule's URL is an http one.
    let requests = repos.take_http_requests();
    for wanted in [
        "GET /app.git/info/refs",
        "POST /app.git/git-upload-pack",
        "GET /lib.git/info/refs",
        "POST /lib.git/git-upload-pack",
    ] {
        assert!(
            requests.iter().any(|r| r == wanted),
            "{wanted}: {requests:?}"
        );
    }

    // With `.git` kept, the checkout's HEAD is the commit asked for.
    let url = format!("{}#{v1}", repos.url("app.git"));
    let (log, out) = fx.build_ok(
        "kept",
        &["--build-arg", "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1", &url],
        None,
    );
    assert_eq!(git(&out.join("ctx"), &["rev-parse", "HEAD"]), v1, "{log}");
    let gitmodules = fs_err::read_to_string(out.join("ctx/.gitmodules")).unwrap();
    assert!(gitmodules.contains(&repos.url("lib.git")), "{gitmodules}");
}

#[test]
#[cfg_attr(kiln_no_git, ignore = "needs git")]
fn add_git_over_http_verifies_the_checksum() {
    let fx = fixture();
    let repos = Repos::new(&fx.root, Transport::Http);
    let app = repos.app();
    let url = repos.url("app.git");
    let v1 = git(&app, &["rev-parse", "v1^{commit}"]);
    let main = git(&app, &["rev-parse", "main"]);
    assert_ne!(v1, main);

    let right = fx.context(
        "right",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum={v1} --keep-git-dir=true {url}#v1 /src\n"),
        )],
    );
    let (log, out) = fx.build_ok("right-out", &[&right.display().to_string()], None);
    let src = out.join("src");
    assert_eq!(git(&src, &["rev-parse", "HEAD"]), v1, "{log}");
    assert_eq!(
        fs_err::read_to_string(src.join("sub/version.txt"))
            .unwrap()
            .trim_end(),
        git_show(&app, "v1", "sub/version.txt")
    );
    assert_eq!(
        fs_err::read_to_string(src.join("sub/vendor/lib.txt")).unwrap(),
        "from the submodule\n"
    );

    // main's commit is a real commit, but not the one v1 names.
    let wrong = fx.context(
        "wrong",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum={main} {url}#v1 /src\n"),
        )],
    );
    let (out, _) = fx.build("wrong-out", &[&wrong.display().to_string()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("expected checksum to match {main}, got {v1}")),
        "{stderr}"
    );
    assert!(stderr.contains(&url), "{stderr}");
}

#[test]
#[cfg_attr(kiln_no_git, ignore = "needs git")]
fn a_missing_git_repository_over_http_names_the_url() {
    let fx = fixture();
    let repos = Repos::new(&fx.root, Transport::Http);
    let missing = repos.url("missing.git");

    let (out, _) = fx.build("context", &[&format!("{missing}#main")], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    fx.assert_no_temp_context();

    let add = fx.context(
        "add",
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD {missing}#main /src\n"),
        )],
    );
    let (out, _) = fx.build("add-out", &[&add.display().to_string()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("not found"),
        "{stderr}"
    );
    // The server answered 404, which is what git reported.
    assert!(
        repos
            .take_http_requests()
            .iter()
            .any(|r| r == "GET /missing.git/info/refs"),
    );
}
