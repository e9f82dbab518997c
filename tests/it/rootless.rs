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

use crate::builds::store_with_busybox;
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

    /// `kiln` run as the user.
    fn kiln(&self) -> Command {
        let mut cmd = self.user.command(kiln_exe(), &self.home());
        cmd.stdin(Stdio::null());
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
/// ids in a directory the user may not write: `verify` reports it, `prune` removes it (and
/// cache mounts given to uid 1000), both as the user.
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

    let report = verify(&fx);
    assert!(report.contains("leftover temp"), "{report}");

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

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rootless_user_without_subordinate_ids_is_told_both_ways_out() {
    let fx = Rootless::for_user(kiln_test::user_without_subids());
    let ctx = fx.context("nosub", "FROM busybox\nRUN true\n", &[]);
    let out = fx
        .kiln()
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "no subordinate id range for user kilnrlnosub",
        "usermod --add-subuids",
        "--add-subgids",
        "--isolation=chroot",
    ] {
        assert!(stderr.contains(needle), "lacks `{needle}`:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}
