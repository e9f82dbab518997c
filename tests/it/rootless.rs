//! kiln as an unprivileged user with `/etc/subuid` ranges (issue 18): every RUN mount type,
//! `kiln run`, `kiln prune` and `kiln store verify`, the error of a user without ranges, and
//! the build corpus. The test creates its users (`kiln_test::rootless_user`) and runs kiln
//! as them with `setpriv`, so it needs root; `newuidmap` comes from the uidmap package
//! (`.ci/install-deps`).

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln_test::TestUser;

use crate::builds::{
    Built, Case, EPOCH, cases, check_case, parallel, store_with_busybox, umoci_unpack,
};
use crate::common::{has_tool, kiln_in, run_ok};

/// The kiln binary under test.
fn kiln_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kiln"))
}

/// A rootless user's home (in a temp dir it owns) with the busybox base loaded into its
/// default store (`$XDG_DATA_HOME/kiln`).
struct Rootless {
    user: TestUser,
    dir: tempfile::TempDir,
}

impl Rootless {
    /// [`kiln_test::rootless_user`] with busybox loaded.
    fn new() -> Self {
        Self::for_user(kiln_test::rootless_user())
    }

    /// `user` with the busybox base loaded: made by root into its own store, saved as an
    /// archive, loaded by the user (the same image digest as the other tests' base).
    fn for_user(user: TestUser) -> Self {
        assert!(
            has_tool("newuidmap") && has_tool("newgidmap") && has_tool("setpriv"),
            "rootless tests need newuidmap/newgidmap (the uidmap package, .ci/install-deps) \
             and setpriv (util-linux)"
        );
        let dir = user.tempdir();
        let base = tempfile::tempdir().unwrap();
        let root_store = store_with_busybox(base.path());
        let archive = dir.path().join("busybox.tar");
        run_ok(
            kiln_in(&root_store)
                .args(["save", "busybox:latest", "-o"])
                .arg(&archive),
        );
        fs_err::create_dir(dir.path().join("home")).unwrap();
        user.give(dir.path());
        let fx = Self { user, dir };
        run_ok(fx.kiln().args(["load", "-i"]).arg(&archive));
        fx
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The user's default store.
    fn store(&self) -> PathBuf {
        self.home().join(".local/share/kiln")
    }

    /// `kiln` run as the user, with namespace isolation: what these tests are about (`auto`
    /// has its own test, `rootless_auto_isolation_picks_namespaces_and_leaves_no_probe`).
    fn kiln(&self) -> Command {
        let mut cmd = self.user.command(kiln_exe(), &self.home());
        cmd.env("KILN_ISOLATION", "namespaces").stdin(Stdio::null());
        cmd
    }

    /// A build context directory (owned by the user) with `Dockerfile` and `files`.
    fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.dir.path().join(name);
        fs_err::create_dir_all(&ctx).unwrap();
        fs_err::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        for (path, content) in files {
            fs_err::write(ctx.join(path), content).unwrap();
        }
        self.user.give(&ctx);
        ctx
    }

    /// `kiln build --progress plain -o type=local,dest=<out> <extra> <ctx>` as the user;
    /// asserts success and returns the flattened root filesystem.
    fn build_local(&self, ctx: &Path, out: &str, extra: &[&str]) -> PathBuf {
        let dest = self.dir.path().join(out);
        run_ok(
            self.kiln()
                .args(["build", "--progress", "plain", "-o"])
                .arg(format!("type=local,dest={}", dest.display()))
                .args(extra)
                .arg(ctx),
        );
        dest
    }

    /// What is in the store's `tmp/` besides its fixed directories (and in `tmp/trash/`).
    fn leftovers(&self) -> Vec<String> {
        let tmp = self.store().join("tmp");
        let mut out = Vec::new();
        for (dir, prefix) in [(tmp.clone(), ""), (tmp.join("trash"), "trash/")] {
            for entry in fs_err::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                if name != "leases" && name != "trash" {
                    out.push(format!("{prefix}{name}"));
                }
            }
        }
        out
    }

    /// Every path under the user's temp dir that belongs to neither the user nor root (that
    /// is, to one of its subordinate ids), outside its store's snapshots and cache mounts.
    fn foreign_files_outside_the_store(&self) -> Vec<String> {
        let store = self.store();
        let skip = [store.join("snapshots"), store.join("mounts")];
        let mut found = Vec::new();
        let mut stack = vec![self.dir.path().to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs_err::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs_err::symlink_metadata(&path).unwrap();
                if meta.uid() != self.user.uid && meta.uid() != 0 {
                    found.push(path.display().to_string());
                } else if meta.is_dir() && !skip.contains(&path) {
                    stack.push(path);
                }
            }
        }
        found
    }
}

fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap()
}

/// `kiln store verify` as the user, asserting success; returns stdout and stderr.
fn verify(fx: &Rootless) -> String {
    let out = fx.kiln().args(["store", "verify"]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    assert!(out.status.success(), "kiln store verify failed:\n{text}");
    assert!(text.contains("store is consistent"), "{text}");
    text
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_cache_mounts_persist_with_their_owner_and_mode() {
    let fx = Rootless::new();
    let ctx = fx.context(
        "cache",
        "FROM busybox\n\
         ARG RUNID\n\
         RUN --mount=type=cache,target=/cache echo $RUNID >> /cache/log && cp /cache/log /seen\n\
         RUN --mount=type=cache,id=owned,target=/owned,uid=1000,gid=1000,mode=0700 \
             stat -c '%u:%g %a' /owned > /owned-stat && echo $RUNID >> /owned/log \
             && cp /owned/log /owned-seen\n\
         USER 1000\n\
         RUN --mount=type=cache,id=owned,target=/owned,uid=1000,gid=1000,mode=0700 \
             cat /owned/log > /tmp/as-user\n",
        &[],
    );
    fx.build_local(&ctx, "one", &["--build-arg", "RUNID=one"]);
    let out = fx.build_local(&ctx, "two", &["--build-arg", "RUNID=two"]);
    assert_eq!(
        read(&out.join("seen")),
        "one\ntwo\n",
        "the cache did not persist"
    );
    assert_eq!(read(&out.join("owned-seen")), "one\ntwo\n");
    assert_eq!(read(&out.join("owned-stat")), "1000:1000 700\n");
    assert_eq!(read(&out.join("tmp/as-user")), "one\ntwo\n");
    assert!(
        !out.join("cache/log").exists(),
        "cache content leaked into the image"
    );
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.foreign_files_outside_the_store(), Vec::<String>::new());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_secret_file_is_readable_and_absent_from_the_image() {
    let fx = Rootless::new();
    let secret = fx.dir.path().join("secret.txt");
    fs_err::write(&secret, "s3cr3t").unwrap();
    fx.user.give(&secret);
    let ctx = fx.context(
        "secret",
        "FROM busybox\n\
         RUN --mount=type=secret,id=s cat /run/secrets/s > /copy\n\
         RUN --mount=type=secret,id=s,target=/tok,uid=1000,mode=0400 \
             stat -c '%u %a' /tok > /tok-stat\n\
         USER 1000\n\
         RUN --mount=type=secret,id=s,target=/tok,uid=1000,mode=0400 cat /tok > /tmp/as-user\n",
        &[],
    );
    let out = fx.build_local(
        &ctx,
        "out",
        &["--secret", &format!("id=s,src={}", secret.display())],
    );
    assert_eq!(read(&out.join("copy")), "s3cr3t");
    assert_eq!(read(&out.join("tok-stat")), "1000 400\n");
    assert_eq!(read(&out.join("tmp/as-user")), "s3cr3t");
    for absent in ["run/secrets/s", "tok"] {
        assert!(
            fs_err::symlink_metadata(out.join(absent)).is_err(),
            "/{absent} is in the image"
        );
    }
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_bind_mounts_of_the_context_and_a_stage() {
    let fx = Rootless::new();
    let ctx = fx.context(
        "bind",
        "FROM busybox AS src\n\
         RUN mkdir /data && echo from-stage > /data/f && chown -R 1000:1000 /data\n\
         FROM busybox\n\
         RUN --mount=type=bind,source=.,target=/ctx cat /ctx/a.txt > /from-ctx\n\
         RUN --mount=type=bind,from=src,source=/data,target=/d cat /d/f > /from-stage\n\
         RUN --mount=type=bind,source=.,target=/ctx,rw echo x > /ctx/written\n",
        &[("a.txt", "from-context\n")],
    );
    let out = fx.build_local(&ctx, "out", &[]);
    assert_eq!(read(&out.join("from-ctx")), "from-context\n");
    assert_eq!(read(&out.join("from-stage")), "from-stage\n");
    assert!(
        !ctx.join("written").exists(),
        "a rw bind mount wrote into the context"
    );
    assert!(!out.join("ctx").join("a.txt").exists());
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.foreign_files_outside_the_store(), Vec::<String>::new());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_tmpfs_mount_is_a_tmpfs_and_leaves_nothing() {
    let fx = Rootless::new();
    let ctx = fx.context(
        "tmpfs",
        "FROM busybox\n\
         RUN --mount=type=tmpfs,target=/t,size=1048576 echo x > /t/f && cat /t/f > /seen \
             && grep ' /t tmpfs ' /proc/mounts > /mounts\n",
        &[],
    );
    let out = fx.build_local(&ctx, "out", &[]);
    assert_eq!(read(&out.join("seen")), "x\n");
    assert!(
        read(&out.join("mounts")).contains("size=1024k"),
        "{}",
        read(&out.join("mounts"))
    );
    assert!(
        !out.join("t/f").exists(),
        "the tmpfs content is in the image"
    );
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// What the issue saw: files a `kiln run` made as other users (subordinate ids on the host)
/// in directories without write permission stayed in the store's tmp/.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_kiln_run_leaves_nothing_behind() {
    let fx = Rootless::new();
    let script = "mkdir -p /a/b && touch /a/b/c && chown -R 1000:1000 /a && chmod 0500 /a/b /a \
                  && id -u";
    let out = run_ok(fx.kiln().args(["run", "busybox", "sh", "-c", script]));
    assert_eq!(out, "0\n");
    let out = run_ok(fx.kiln().args([
        "run",
        "-u",
        "1000",
        "busybox",
        "sh",
        "-c",
        "mkdir /tmp/d && touch /tmp/d/f && chmod 0500 /tmp/d && id -u",
    ]));
    assert_eq!(out, "1000\n");
    let failed = fx
        .kiln()
        .args([
            "run",
            "busybox",
            "sh",
            "-c",
            "mkdir /x && chown 1000 /x && chmod 0 /x; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(3), "{}", stderr_of(&failed));
    assert!(
        !stderr_of(&failed).contains("cannot remove"),
        "{}",
        stderr_of(&failed)
    );
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(fx.foreign_files_outside_the_store(), Vec::<String>::new());
}

/// A `kiln run` killed with SIGKILL leaves its scratch directory, with files of subordinate
/// ids in a directory the user may not read: `verify` reports it and `verify --repair`
/// removes it; `prune` removes another (and cache mounts given to uid 1000), all as the user.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_prune_and_verify_after_builds_and_runs() {
    let fx = Rootless::new();
    let ctx = fx.context(
        "prune",
        "FROM busybox\n\
         RUN mkdir -p /home/user/d && touch /home/user/d/f && chown -R 1000:1000 /home/user \
             && chmod 0555 /home/user/d\n\
         RUN --mount=type=cache,id=p,target=/c,uid=1000,gid=1000,mode=0700 \
             mkdir /c/sub && touch /c/sub/f && chown -R 1000 /c/sub && chmod 0555 /c/sub\n",
        &[],
    );
    fx.build_local(&ctx, "out", &["-t", "owned:latest"]);
    run_ok(fx.kiln().args(["run", "owned", "ls", "/home/user/d"]));

    crash_a_run(&fx);
    let report = verify(&fx);
    assert!(report.contains("leftover temp"), "{report}");
    let out = fx
        .kiln()
        .args(["store", "verify", "--repair"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        fx.leftovers(),
        Vec::<String>::new(),
        "verify --repair left them"
    );

    crash_a_run(&fx);
    run_ok(fx.kiln().args(["rmi", "owned"]));
    let pruned = run_ok(fx.kiln().args(["prune", "--all"]));
    assert!(pruned.contains("1 cache mounts"), "{pruned}");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    assert_eq!(
        fs_err::read_dir(fx.store().join("mounts"))
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0,
        "a cache mount survived prune --all"
    );
    let report = verify(&fx);
    assert!(!report.contains("leftover"), "{report}");
    assert_eq!(fx.foreign_files_outside_the_store(), Vec::<String>::new());
}

/// Starts a `kiln run` that makes a directory of uid 1000 (a subordinate id on the host) that
/// the user may not read, and kills kiln with SIGKILL once it is there: its scratch stays.
fn crash_a_run(fx: &Rootless) {
    let mut crashed = fx
        .kiln()
        .args([
            "run",
            "busybox",
            "sh",
            "-c",
            "mkdir /a && touch /a/f && chown -R 1000 /a && chmod 0500 /a && echo ready \
             && sleep 600",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(crashed.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    assert!(
        !fx.leftovers().is_empty(),
        "the killed run left no scratch to clean"
    );
}

/// The default isolation (auto) probes the namespace sandbox from kiln's own user namespace,
/// picks it, and its probe leaves no scratch in `tmp/` (kiln, root of that namespace, removes
/// overlay's mode-0 work directory). A private file of uid 1000 (busybox's `user`, gid 1000)
/// made by a RUN is in the layer with its owner and mode.
#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_umoci),
    ignore = "needs root, busybox, umoci"
)]
fn rootless_auto_isolation_picks_namespaces_and_leaves_no_probe() {
    let fx = Rootless::new();
    let ctx = fx.context(
        "auto",
        "FROM busybox
USER 1000
RUN echo hi > /tmp/mine && chmod 0600 /tmp/mine
",
        &[],
    );
    let out = fx
        .kiln()
        .env("KILN_ISOLATION", "auto")
        .args(["build", "--progress", "plain", "-t", "auto:latest", "-o"])
        .arg(format!(
            "type=oci,dest={},tar=false",
            fx.dir.path().join("oci").display()
        ))
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("isolation: namespaces"), "{stderr}");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    let rootfs = umoci_unpack(
        &fx.dir.path().join("oci"),
        "latest",
        &fx.dir.path().join("b"),
    );
    let mine = fs_err::metadata(rootfs.join("tmp/mine")).unwrap();
    assert_eq!(
        (mine.uid(), mine.gid(), mine.mode() & 0o7777),
        (1000, 1000, 0o600)
    );
}

/// kiln keeps its pid in its user namespace: SIGTERM to the process the caller started
/// cancels `kiln run` with 128 + 15 and tears the sandbox down.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_sigterm_cancels_kiln_run_cleanly() {
    let fx = Rootless::new();
    let mut child = fx
        .kiln()
        .args([
            "run",
            "busybox",
            "sh",
            "-c",
            "echo ready && exec sleep 4261",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while is_running(&["sleep", "4261"]) {
        assert!(std::time::Instant::now() < deadline, "sleep 4261 survived");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// Whether a process with exactly `argv` runs.
fn is_running(argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs_err::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| fs_err::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_user_without_subordinate_ids_is_told_both_ways_out() {
    let fx = Rootless::for_user(kiln_test::user_without_subids());
    let ctx = fx.context("nosub", "FROM busybox\nRUN true\n", &[]);
    // With namespaces asked for, and with the default (auto), which cannot fall back to
    // chroot isolation for a user who is not root.
    for isolation in ["namespaces", "auto"] {
        let out = fx
            .kiln()
            .env("KILN_ISOLATION", isolation)
            .args(["build", "--progress", "plain"])
            .arg(&ctx)
            .output()
            .unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{isolation}: {stderr}");
        for needle in [
            "no subordinate id range for user kilnrlnosub",
            "usermod --add-subuids",
            "--add-subgids",
            "--isolation=chroot",
        ] {
            assert!(
                stderr.contains(needle),
                "{isolation}: lacks `{needle}`:\n{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(fx.leftovers(), Vec::<String>::new(), "{isolation}");
    }
}

/// Corpus cases that fail rootless, with the reason. Each must exist and must still fail
/// rootless, so a fix shows up as a stale entry here. None since kiln re-executes itself in a
/// user namespace mapping the caller's subordinate ids (kiln-sandbox rootless.rs): COPY,
/// ADD and WORKDIR give their staging trees the container's owners, RUN layers are read and
/// recorded with the container's ids, and snapshots are unpacked with their owners.
const CORPUS_NOT_ROOTLESS: &[(&str, &str)] = &[];

/// The build corpus (`testdata/builds`, see builds.rs) built by the rootless user into its
/// own store; root unpacks the OCI layouts with umoci to check owners.
#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_umoci),
    ignore = "needs root, busybox, umoci"
)]
fn rootless_corpus_builds_match_expectations() {
    let fx = Rootless::new();
    let work = fx.dir.path().join("work");
    fs_err::create_dir(&work).unwrap();
    fx.user.give(&work);
    let cases = cases();
    for (name, _) in CORPUS_NOT_ROOTLESS {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "CORPUS_NOT_ROOTLESS names `{name}`, which is not in the corpus"
        );
    }
    let only = std::env::var("KILN_CORPUS_CASE").ok();
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
        .collect();
    let reports = parallel(&selected, |case| {
        let built = fx.build_case(case, &work);
        let problems = check_case(case, &built);
        (case.name.clone(), problems, built.stderr)
    });
    let mut failures = Vec::new();
    for (name, problems, stderr) in reports {
        let excluded = CORPUS_NOT_ROOTLESS.iter().any(|(n, _)| *n == name);
        match (excluded, problems.is_empty()) {
            (false, false) => failures.push(format!(
                "== {name}:\n  {}\n  --- kiln output:\n{stderr}",
                problems.join("\n  ")
            )),
            (true, true) => failures.push(format!(
                "== {name}: passes rootless now; remove it from CORPUS_NOT_ROOTLESS"
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed rootless:\n{}",
        failures.len(),
        selected.len(),
        failures.join("\n")
    );
    // A failed WORKDIR step leaves its staging directory (kiln-build copy_exec.rs, as
    // root too); RUN steps must leave nothing, whatever their users wrote.
    let run_scratch: Vec<String> = fx
        .leftovers()
        .into_iter()
        .filter(|name| !name.starts_with("workdir-"))
        .collect();
    assert_eq!(
        run_scratch,
        Vec::<String>::new(),
        "builds left scratch behind"
    );
}

impl Rootless {
    /// Builds `case` as the user into `work/<case>/layout` (an OCI layout), unpacked by root.
    fn build_case(&self, case: &Case, work: &Path) -> Built {
        let out_dir = work.join(&case.name);
        fs_err::create_dir_all(&out_dir).unwrap();
        let args = case.build_args(&out_dir);
        self.user.give(&out_dir);
        let layout = out_dir.join("layout");
        let out = self
            .kiln()
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["build", "--progress", "plain", "-t"])
            .arg(format!("corpus-{}:latest", case.name))
            .arg("-f")
            .arg(case.dir.join("Dockerfile"))
            .arg("-o")
            .arg(format!("type=oci,dest={},tar=false", layout.display()))
            .args(args)
            .arg(case.context(&out_dir))
            .output()
            .unwrap();
        let rootfs = out
            .status
            .success()
            .then(|| umoci_unpack(&layout, "latest", &out_dir.join("bundle")));
        Built {
            code: out.status.code(),
            stderr: stderr_of(&out),
            layout,
            rootfs,
        }
    }
}
