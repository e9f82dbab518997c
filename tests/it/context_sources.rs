//! Context sources (issue 20): `kiln build -` (a tar of the context, or a bare Dockerfile,
//! on stdin), a remote tarball URL, a git repository (`git://…#ref:subdir`, submodules,
//! `.git` kept only when asked), and `ADD <git URL>` keyed by the commit its ref names. Git
//! repositories are served by `git daemon` on loopback, tarballs by `python3 -m http.server`.
//! Every build is `FROM scratch` without RUN: no root needed.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// Repositories under `base`, served by `git daemon`: `lib.git` (one file) and `app.git`
/// (tag `v1` with `Dockerfile.alt`, `sub/` and the submodule `sub/vendor` → lib.git; then a
/// later commit on `main` that changes `sub/version.txt`).
struct Repos {
    base: PathBuf,
    daemon: Server,
}

impl Repos {
    fn new(root: &Path) -> Self {
        let base = root.join("repos");
        let lib = base.join("lib.git");
        fs_err::create_dir_all(&lib).unwrap();
        git(&lib, &["init", "-q"]);
        write(&lib.join("lib.txt"), "from the submodule\n");
        git(&lib, &["add", "."]);
        git(&lib, &["commit", "-q", "-m", "lib"]);
        let daemon = Server::git_daemon(&base);
        let repos = Self { base, daemon };
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
        format!("git://127.0.0.1:{}/{repo}", self.daemon.port)
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
    let repos = Repos::new(&fx.root);
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
    let repos = Repos::new(&fx.root);
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
    let repos = Repos::new(&fx.root);
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
