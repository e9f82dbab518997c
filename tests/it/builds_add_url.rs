//! `ADD <http URL> <dest>`: the body lands with mode 0600 under the URL's file name (or at
//! the destination path), `--checksum` is verified, HTTP errors name the URL, and the step's
//! cache key follows the served content. A loopback `python3 -m http.server` serves the files.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::builds::store_with_busybox;
use crate::common::{kiln_in, run_fails};

/// A `python3 -m http.server` on a free loopback port serving `dir`; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    served: PathBuf,
    server: Server,
}

/// Needs root, busybox and python3 (the HTTP server).
fn fixture() -> Fixture {
    kiln_test::require_root();
    kiln_test::require_tool("python3");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let store = store_with_busybox(&root);
    let served = root.join("served");
    fs_err::create_dir_all(&served).unwrap();
    let server = Server::start(&served);
    Fixture {
        _tmp: tmp,
        root,
        store,
        served,
        server,
    }
}

impl Fixture {
    /// `kiln build --progress plain -o type=local,dest=<name>/out` of a context holding
    /// `dockerfile`.
    fn build(&self, name: &str, dockerfile: &str) -> (Output, PathBuf) {
        let ctx = self.root.join(name).join("ctx");
        fs_err::create_dir_all(&ctx).unwrap();
        fs_err::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let out_dir = self.root.join(name).join("out");
        let _ = fs_err::remove_dir_all(&out_dir);
        let out = kiln_in(&self.store)
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=local,dest={}", out_dir.display()))
            .arg(&ctx)
            .output()
            .unwrap();
        (out, out_dir)
    }

    fn build_ok(&self, name: &str, dockerfile: &str) -> (String, PathBuf) {
        let (out, dir) = self.build(name, dockerfile);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kiln build failed:\n{stderr}");
        (stderr, dir)
    }

    fn build_fails(&self, name: &str, dockerfile: &str) -> String {
        let ctx = self.root.join(name).join("ctx");
        fs_err::create_dir_all(&ctx).unwrap();
        fs_err::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let out = run_fails(
            kiln_in(&self.store)
                .args(["build", "--progress", "plain"])
                .arg(&ctx),
            1,
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn serve(&self, name: &str, content: &str) {
        fs_err::write(self.served.join(name), content).unwrap();
    }
}

fn sha256_hex(content: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(content.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// Whether the step whose header contains `name` printed CACHED.
fn is_cached(log: &str, name: &str) -> bool {
    log.lines()
        .any(|l| l.starts_with('#') && l.contains(name) && l.ends_with(" CACHED"))
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_python3),
    ignore = "needs root, busybox, python3"
)]
fn builds_add_url_downloads_into_a_directory_root() {
    let fx = fixture();
    fx.serve("hello.txt", "hello from http\n");
    let served_mtime = fs_err::metadata(fx.served.join("hello.txt"))
        .unwrap()
        .mtime();
    let url = fx.server.url("hello.txt");
    let (log, out) = fx.build_ok(
        "dir",
        &format!("FROM busybox\nADD {url} /dest/\nRUN test \"$(cat /dest/hello.txt)\" = 'hello from http'\n"),
    );
    let file = out.join("dest/hello.txt");
    assert_eq!(
        fs_err::read_to_string(&file).unwrap(),
        "hello from http\n",
        "{log}"
    );
    let meta = fs_err::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    // http.server sends Last-Modified: the file keeps the served file's mtime.
    assert_eq!(meta.mtime(), served_mtime);
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_python3),
    ignore = "needs root, busybox, python3"
)]
fn builds_add_url_to_a_file_path_with_chmod_root() {
    let fx = fixture();
    fx.serve("tool.sh", "#!/bin/sh\necho tool\n");
    let url = fx.server.url("tool.sh");
    let (log, out) = fx.build_ok(
        "file",
        &format!(
            "FROM busybox\nADD {url} /usr/local/bin/tool\nADD --chmod=755 {url} /opt/run.sh\n"
        ),
    );
    let tool = out.join("usr/local/bin/tool");
    assert!(tool.is_file(), "{log}");
    assert_eq!(
        fs_err::read_to_string(&tool).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        fs_err::metadata(&tool).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        fs_err::metadata(out.join("opt/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_python3),
    ignore = "needs root, busybox, python3"
)]
fn builds_add_url_checksum_is_verified_root() {
    let fx = fixture();
    let content = "checked content\n";
    fx.serve("data.bin", content);
    let url = fx.server.url("data.bin");
    let right = sha256_hex(content);
    let (log, out) = fx.build_ok(
        "right",
        &format!("FROM busybox\nADD --checksum=sha256:{right} {url} /data.bin\n"),
    );
    assert_eq!(
        fs_err::read_to_string(out.join("data.bin")).unwrap(),
        content,
        "{log}"
    );
    let wrong = "0".repeat(64);
    let stderr = fx.build_fails(
        "wrong",
        &format!("FROM busybox\nADD --checksum=sha256:{wrong} {url} /data.bin\n"),
    );
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains(&format!("sha256:{wrong}")), "{stderr}");
    assert!(stderr.contains(&format!("sha256:{right}")), "{stderr}");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_python3),
    ignore = "needs root, busybox, python3"
)]
fn builds_add_url_http_errors_name_the_url_root() {
    let fx = fixture();
    let url = fx.server.url("missing.txt");
    let stderr = fx.build_fails("missing", &format!("FROM busybox\nADD {url} /dest/\n"));
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    // Nothing listens on this port (bound then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("http://127.0.0.1:{port}/x");
    let stderr = fx.build_fails("refused", &format!("FROM busybox\nADD {refused} /x\n"));
    assert!(stderr.contains(&refused), "{stderr}");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_python3),
    ignore = "needs root, busybox, python3"
)]
fn builds_add_url_cache_follows_the_served_content_root() {
    let fx = fixture();
    fx.serve("v.txt", "one\n");
    let url = fx.server.url("v.txt");
    let dockerfile = format!("FROM busybox\nADD {url} /v.txt\n");
    let (first, _) = fx.build_ok("cache", &dockerfile);
    assert!(!is_cached(&first, "ADD "), "{first}");
    let (warm, _) = fx.build_ok("cache", &dockerfile);
    assert!(
        is_cached(&warm, "ADD "),
        "unchanged URL not cached:\n{warm}"
    );
    fx.serve("v.txt", "two\n");
    let (changed, out) = fx.build_ok("cache", &dockerfile);
    assert!(
        !is_cached(&changed, "ADD "),
        "changed URL was cached:\n{changed}"
    );
    assert!(
        changed.contains(&format!("cache miss: url {url} changed")),
        "{changed}"
    );
    assert_eq!(fs_err::read_to_string(out.join("v.txt")).unwrap(), "two\n");
}
