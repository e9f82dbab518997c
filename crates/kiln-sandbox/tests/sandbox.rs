//! End-to-end runs of the sandbox on a busybox rootfs (needs root, overlayfs and busybox;
//! the `kiln_no_*` cfgs of kiln-test-probe mark the tests ignored on hosts without them).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_sandbox::{
    CancelToken, ChrootReuse, ExitStatus, ExtraMount, Isolation, Network, RootfsMode, RunSpec,
    Sandbox, SandboxConfig, SandboxError, Stream,
};

/// Root, overlayfs and busybox: every test here needs them (`kiln_no_*` cfgs skip it where
/// the host lacks one, except under `CI=true`, where it fails).
fn require_all() {
    kiln_test::require_root();
    kiln_test::require_overlay();
    kiln_test::require_busybox();
}

/// A busybox rootfs: `bin/busybox` plus applet links, `/etc/passwd` with root and `app`.
fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    fs_err::copy(kiln_test::require_busybox(), bin.join("busybox")).unwrap();
    for applet in [
        "sh", "id", "echo", "ls", "cat", "hostname", "sleep", "rm", "mkdir", "chmod", "touch",
        "true", "false", "kill", "whoami", "pwd", "env", "wc", "seq", "grep",
    ] {
        fs_err::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let etc = dir.join("etc");
    fs_err::create_dir_all(&etc).unwrap();
    fs_err::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs_err::write(
        etc.join("group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
    fs_err::create_dir_all(dir.join("data/sub")).unwrap();
    fs_err::write(dir.join("data/file"), "lower").unwrap();
    fs_err::write(dir.join("data/sub/inner"), "inner").unwrap();
    fs_err::create_dir_all(dir.join("replace/child")).unwrap();
    fs_err::write(dir.join("chmod-me"), "x").unwrap();
}

struct Fixture {
    tmp: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    for dir in [&lower, &upper, &work] {
        fs_err::create_dir_all(dir).unwrap();
    }
    busybox_rootfs(&lower);
    Fixture {
        tmp,
        lower,
        upper,
        work,
    }
}

fn sandbox() -> Sandbox {
    sandbox_with(false)
}

fn sandbox_with(force_copy: bool) -> Sandbox {
    Sandbox::new(SandboxConfig {
        helper_exe: Some(env!("CARGO_BIN_EXE_kiln-sandbox-init").into()),
        force_copy,
    })
    .unwrap()
}

fn spec(fx: &Fixture, script: &str) -> RunSpec {
    RunSpec::new(
        vec![fx.lower.clone()],
        &fx.upper,
        &fx.work,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

struct Output {
    stdout: String,
    stderr: String,
}

fn run(spec: &RunSpec) -> (Result<kiln_sandbox::RunOutcome, SandboxError>, Output) {
    run_on(&sandbox(), spec)
}

fn run_on(
    sandbox: &Sandbox,
    spec: &RunSpec,
) -> (Result<kiln_sandbox::RunOutcome, SandboxError>, Output) {
    let mut out = Output {
        stdout: String::new(),
        stderr: String::new(),
    };
    let result = sandbox.run(spec, &mut |stream, line| {
        let text = String::from_utf8_lossy(line);
        match stream {
            Stream::Stdout => out.stdout.push_str(&text),
            Stream::Stderr => out.stderr.push_str(&text),
        }
    });
    (result, out)
}

/// The host's mounts at or below the fixture's directory: where a leaked sandbox mount would
/// be. (Other tests running at the same time may mount elsewhere — buildah, mmdebstrap —
/// so the whole table is not compared.)
fn mountinfo(fx: &Fixture) -> Vec<String> {
    let dir = fx.tmp.path().to_string_lossy().into_owned();
    fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|point| point.starts_with(&dir))
        })
        .map(str::to_owned)
        .collect()
}

/// Relative path → (kind, mode, uid, content) for every entry under `root`.
fn tree(root: &Path) -> BTreeMap<String, (char, u32, u32, String)> {
    let mut map = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let (kind, content) = if meta.is_dir() {
                stack.push(path.clone());
                ('d', String::new())
            } else if meta.file_type().is_symlink() {
                ('l', fs_err::read_link(&path).unwrap().display().to_string())
            } else if meta.is_file() {
                ('f', fs_err::read_to_string(&path).unwrap_or_default())
            } else {
                ('c', format!("{}", meta.rdev()))
            };
            map.insert(
                rel,
                (
                    kind,
                    meta.permissions().mode() & 0o7777,
                    meta.uid(),
                    content,
                ),
            );
        }
    }
    map
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn identity_and_isolation_needs_root() {
    require_all();
    let fx = fixture();
    let before = mountinfo(&fx);
    let (result, out) = run(&spec(
        &fx,
        "id -u; echo pid=$$; hostname; ls /work/main 2>&1 || echo hidden; echo x > /written",
    ));
    let outcome = result.unwrap();
    assert_eq!(outcome.status, ExitStatus::Exited(0), "{}", out.stderr);
    assert_eq!(outcome.mode, RootfsMode::Overlay);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], "pid=1");
    assert_eq!(lines[2], kiln_sandbox::DEFAULT_HOSTNAME);
    assert!(out.stdout.contains("hidden"), "{}", out.stdout);
    assert_eq!(
        fs_err::read_to_string(fx.upper.join("written")).unwrap(),
        "x\n"
    );
    assert!(
        !fx.lower.join("written").exists(),
        "writes must land only in the upperdir"
    );
    assert_eq!(before, mountinfo(&fx), "mounts leaked into the host");
    let upper: Vec<String> = tree(&fx.upper).into_keys().collect();
    assert_eq!(upper, ["written"], "mountpoint stubs leaked into the layer");
}

/// The root overlay is `volatile`: its unmount must not `syncfs` the store's filesystem
/// (seconds per RUN after a large COPY). Kernels before 5.10 lack the option.
#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn root_overlay_is_volatile_needs_root() {
    require_all();
    let fx = fixture();
    let (result, out) = run(&spec(&fx, "grep ' / / ' /proc/self/mountinfo"));
    let outcome = result.unwrap();
    assert_eq!(outcome.status, ExitStatus::Exited(0), "{}", out.stderr);
    assert_eq!(outcome.mode, RootfsMode::Overlay);
    let release = fs_err::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version < (5, 10) {
        // Kernels before 5.10 have no `volatile` option: the root is a plain overlay.
        assert!(out.stdout.contains("overlay"), "{}", out.stdout);
        return;
    }
    assert!(
        out.stdout.contains("overlay") && out.stdout.contains("volatile"),
        "the root mount is not a volatile overlay: {}",
        out.stdout
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn users_by_id_and_name_needs_root() {
    require_all();
    for (user, expected) in [
        ("1000:1000", "1000 1000 1000"),
        ("app", "1000 1000 1000 2000"),
        ("", "0 0 0"),
    ] {
        let fx = fixture();
        let mut spec = spec(&fx, "echo $(id -u) $(id -g) $(id -G)");
        spec.user = user.into();
        let (result, out) = run(&spec);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout.trim(), expected, "USER {user:?}");
    }
    let fx = fixture();
    let mut spec = spec(&fx, "true");
    spec.user = "nobody".into();
    let err = run(&spec).0.unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn workdir_env_and_network_none_needs_root() {
    require_all();
    let fx = fixture();
    let mut spec = spec(
        &fx,
        "pwd; echo $GREETING; ls /sys/class/net; cat /etc/hostname",
    );
    spec.workdir = "/new/dir".into();
    spec.env = vec!["GREETING=hi there".into()];
    spec.network = Network::None;
    spec.hostname = "boxy".into();
    let (result, out) = run(&spec);
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "/new/dir\nhi there\nlo\nboxy\n");
    assert!(
        fx.upper.join("new/dir").is_dir(),
        "WORKDIR is created and kept"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn failures_are_clear_needs_root() {
    require_all();
    let fx = fixture();
    let before = mountinfo(&fx);
    let missing = RunSpec::new(
        vec![fx.lower.clone()],
        &fx.upper,
        &fx.work,
        vec!["no-such-cmd".into()],
    );
    match run(&missing).0 {
        Err(SandboxError::Exec { code, message, .. }) => {
            assert_eq!(code, 127);
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    let (result, _) = run(&spec(&fx, "echo out; echo err >&2; exit 3"));
    assert_eq!(result.unwrap().status, ExitStatus::Exited(3));
    // PID 1 ignores signals from inside its namespace, so the signal test runs under init.
    let mut killed = spec(&fx, "kill -9 $$");
    killed.init = true;
    let (result, _) = run(&killed);
    assert_eq!(result.unwrap().status, ExitStatus::Signaled(9));
    assert_eq!(before, mountinfo(&fx));
}

fn sandbox_sleepers(seconds: u32) -> usize {
    // Each test's sleepers use their own odd duration, which nothing else on the machine uses.
    let wanted = format!("sleep\0{seconds}\0").into_bytes();
    fs_err::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs_err::read(e.unwrap().path().join("cmdline")).ok())
        .filter(|cmdline| *cmdline == wanted)
        .count()
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn timeout_and_cancel_kill_the_tree_needs_root() {
    require_all();
    let fx = fixture();
    let before = mountinfo(&fx);
    let mut timed = spec(&fx, "sleep 1234 & sleep 1234");
    timed.timeout = Some(Duration::from_millis(300));
    let err = run(&timed).0.unwrap_err();
    assert!(matches!(err, SandboxError::TimedOut { .. }), "{err}");

    let fx = fixture();
    let token = CancelToken::new();
    let mut cancelled = spec(&fx, "echo started; sleep 1235 & sleep 1235");
    cancelled.cancel = Some(token.clone());
    let mut seen_start = false;
    let result = sandbox().run(&cancelled, &mut |_, line| {
        if line == b"started\n" {
            seen_start = true;
            token.cancel();
        }
    });
    assert!(seen_start);
    assert!(
        matches!(result, Err(SandboxError::Cancelled { .. })),
        "{result:?}"
    );
    assert_eq!(
        sandbox_sleepers(1234) + sandbox_sleepers(1235),
        0,
        "processes leaked"
    );
    assert_eq!(before, mountinfo(&fx), "mounts leaked");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn orphans_are_reaped_needs_root() {
    require_all();
    let fx = fixture();
    // Double-forked background jobs outlive their shell: with `init`, PID 1 reaps the ones
    // that exit (no zombie is left while the command runs) and the run ends when the command
    // does, killing the daemon.
    let mut with_init = spec(
        &fx,
        "echo $$; (sleep 1236 &) ; (true &) ; (true &); \
         for i in $(seq 1 200); do z=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z '); \
         [ \"$z\" = 0 ] && break; sleep 0.05; done; echo zombies=$z",
    );
    with_init.init = true;
    let (result, out) = run(&with_init);
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "2\nzombies=0\n");
    assert_eq!(sandbox_sleepers(1236), 0);
    // Without init the command is PID 1; leftovers still end with it.
    let fx = fixture();
    let (result, out) = run(&spec(&fx, "(sleep 1237 &) ; echo done"));
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "done\n");
    assert_eq!(sandbox_sleepers(1237), 0);
}

const MUTATIONS: &str = "rm /data/file && rm -r /data/sub && rm -r /replace && echo f > /replace \
                         && chmod 700 /chmod-me && mkdir /data/sub && echo new > /data/sub/n";

/// Applies an overlay-form diff onto a copy of the lower (what a layer application does).
fn apply_diff(lower: &Path, upper: &Path, into: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(lower)
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
    apply_dir(upper, into);
}

fn apply_dir(from: &Path, to: &Path) {
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let meta = fs_err::symlink_metadata(&source).unwrap();
        let is_whiteout =
            std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()) && meta.rdev() == 0;
        if is_whiteout || !meta.is_dir() || is_opaque(&source) {
            let _ = std::process::Command::new("rm")
                .arg("-rf")
                .arg(&dest)
                .status();
        }
        if is_whiteout {
            continue;
        }
        if meta.is_dir() {
            if !dest.is_dir() {
                let _ = fs_err::remove_file(&dest);
                fs_err::create_dir(&dest).unwrap();
            }
            fs_err::set_permissions(&dest, meta.permissions()).unwrap();
            apply_dir(&source, &dest);
        } else {
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(&source)
                .arg(&dest)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 1];
            matches!(rustix::fs::lgetxattr(path, *name, &mut value[..]), Ok(1) if value[0] == b'y')
        })
}

/// How [`diff_roundtrip`] runs the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Overlay,
    Copy,
    /// Chroot isolation; `true` with the mounts the host allows, `false` copying instead.
    Chroot(bool),
}

fn diff_roundtrip(way: Way) {
    let force_copy = way != Way::Overlay;
    let fx = fixture();
    let mut expected_root = fx.lower.parent().unwrap().join("expected");
    fs_err::create_dir_all(&expected_root).unwrap();
    expected_root = expected_root.join("lower");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&fx.lower)
        .arg(&expected_root)
        .status()
        .unwrap();
    assert!(status.success());
    // The expected tree: the same mutations done directly.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(MUTATIONS.replace(" /", &format!(" {}/", expected_root.display())))
        .status()
        .unwrap();
    assert!(status.success());

    let mut command = spec(&fx, MUTATIONS);
    command.hostname = "differ".into();
    let sandbox = match way {
        Way::Chroot(can_mount) => {
            command.isolation = Isolation::Chroot;
            chroot_sandbox(can_mount)
        }
        _ => sandbox_with(force_copy),
    };
    let (result, out) = run_on(&sandbox, &command);
    let outcome = result.unwrap();
    assert!(outcome.status.is_success(), "{}", out.stderr);
    assert_eq!(
        outcome.mode,
        match way {
            Way::Overlay => RootfsMode::Overlay,
            Way::Copy => RootfsMode::CopyFallback,
            Way::Chroot(_) => RootfsMode::Chroot,
        }
    );
    let applied = fx.lower.parent().unwrap().join("applied");
    apply_diff(&fx.lower, &fx.upper, &applied);
    let mut want = tree(&expected_root);
    let mut got = tree(&applied);
    // The layer must not carry the sandbox's mountpoints.
    for name in [
        "proc",
        "dev",
        "sys",
        "tmp",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        assert!(!got.contains_key(name), "{name} leaked into the layer");
    }
    want.retain(|k, _| !k.is_empty());
    got.retain(|k, _| !k.is_empty());
    assert_eq!(got, want);
    let upper = tree(&fx.upper);
    assert!(
        upper.get("data/file").is_some_and(|e| e.0 == 'c'),
        "whiteout for a deleted file: {upper:?}"
    );
    if !force_copy {
        // The copy differ may see the recreated directory under a reused inode number and
        // write whiteouts for its old entries instead — the applied tree is the same.
        assert!(
            is_opaque(&fx.upper.join("data/sub")),
            "recreated dir must be opaque"
        );
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn layer_diff_roundtrip_needs_root() {
    require_all();
    diff_roundtrip(Way::Overlay);
    diff_roundtrip(Way::Copy);
    diff_roundtrip(Way::Chroot(true));
    diff_roundtrip(Way::Chroot(false));
}

/// A sandbox for chroot isolation; without `can_mount` it copies where it could mount.
fn chroot_sandbox(can_mount: bool) -> Sandbox {
    let helper = env!("CARGO_BIN_EXE_kiln-sandbox-init");
    if can_mount {
        return sandbox();
    }
    // The helper is the executable itself; a wrapper script sets the variable for it alone.
    let dir = tempfile::tempdir().unwrap().keep();
    let wrapper = dir.join("helper");
    fs_err::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport {}=1\nexec {helper} \"$@\"\n",
            kiln_sandbox::NO_MOUNTS_ENV
        ),
    )
    .unwrap();
    fs_err::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    Sandbox::new(SandboxConfig {
        helper_exe: Some(wrapper),
        force_copy: false,
    })
    .unwrap()
}

fn chroot_spec(fx: &Fixture, script: &str) -> RunSpec {
    let mut spec = spec(fx, script);
    spec.isolation = Isolation::Chroot;
    spec
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_runs_commands_like_namespaces_needs_root() {
    require_all();
    for can_mount in [true, false] {
        let sandbox = chroot_sandbox(can_mount);
        let fx = fixture();
        let before = mountinfo(&fx);
        let mut command = chroot_spec(
            &fx,
            "id; pwd; echo \"$GREETING\"; echo hidden > /dev/null; cat /dev/null; \
             grep -c . /etc/hosts; grep CapBnd /proc/self/status 2>/dev/null || echo no-proc; echo err >&2",
        );
        command.user = "app".into();
        command.workdir = "/work/dir".into();
        command.env = vec!["GREETING=hello there".into()];
        let (result, out) = run_on(&sandbox, &command);
        let outcome = result.unwrap();
        assert!(outcome.status.is_success(), "{}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], "uid=1000(app) gid=1000(app) groups=2000(extra)");
        assert_eq!(lines[1], "/work/dir");
        assert_eq!(lines[2], "hello there");
        assert_eq!(lines[3], "2", "the generated /etc/hosts");
        if can_mount {
            // A non-root user has an empty bounding set under both isolations; root's is
            // checked below.
            assert!(lines[4].starts_with("CapBnd:"), "{lines:?}");
            assert!(outcome.notices.is_empty(), "{:?}", outcome.notices);
        } else {
            assert_eq!(lines[4], "no-proc");
            assert!(
                outcome.notices.iter().any(|n| n.contains("empty /proc")),
                "{:?}",
                outcome.notices
            );
        }
        assert_eq!(out.stderr, "err\n");
        // The working directory is the layer's; nothing else is.
        let upper = tree(&fx.upper);
        assert!(upper.contains_key("work/dir"), "{upper:?}");
        for name in ["dev", "proc", "sys", "tmp", "etc/hosts", "etc/hostname"] {
            assert!(
                !upper.contains_key(name),
                "{name} leaked into the layer: {upper:?}"
            );
        }
        assert_eq!(before, mountinfo(&fx), "mounts leaked");
        assert!(
            !fx.work.join("rootfs").exists(),
            "the chroot copy was left behind"
        );

        // Exit codes and exec errors are the namespace sandbox's.
        let fx = fixture();
        let (result, _) = run_on(&sandbox, &chroot_spec(&fx, "exit 3"));
        assert_eq!(result.unwrap().status, ExitStatus::Exited(3));
        let mut missing = chroot_spec(&fx, "");
        missing.argv = vec!["no-such-cmd".into()];
        let fx = fixture();
        missing.upper = fx.upper.clone();
        missing.work = fx.work.clone();
        match run_on(&sandbox, &missing).0 {
            Err(SandboxError::Exec { code, .. }) => assert_eq!(code, 127),
            other => panic!("expected an exec error, got {other:?}"),
        }
    }
    // Root keeps Docker's capabilities less SYS_CHROOT (18) and MKNOD (27).
    let fx = fixture();
    let (result, out) = run_on(
        &chroot_sandbox(true),
        &chroot_spec(&fx, "grep CapBnd /proc/self/status"),
    );
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    let bounding = u64::from_str_radix(out.stdout.trim().rsplit('\t').next().unwrap(), 16).unwrap();
    assert_eq!(bounding & (1 << 18), 0, "CAP_SYS_CHROOT kept: {bounding:x}");
    assert_eq!(bounding & (1 << 27), 0, "CAP_MKNOD kept: {bounding:x}");
    assert_ne!(bounding & 1, 0, "CAP_CHOWN dropped: {bounding:x}");
    // The container's /proc is bound, but the helper (our uid, no pid namespace between us)
    // cannot be read or entered through it: it holds capabilities the command does not
    // (ptrace access needs a superset), and it is not dumpable.
    let fx = fixture();
    let (result, out) = run_on(
        &chroot_sandbox(true),
        &chroot_spec(
            &fx,
            "ls /proc/$PPID/root/ >/dev/null 2>&1 && echo escaped; \
             cat /proc/$PPID/environ >/dev/null 2>&1 && echo read; echo checked",
        ),
    );
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "checked\n");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_mounts_and_leftovers_needs_root() {
    require_all();
    for (can_mount, sleep) in [(true, 1240), (false, 1241)] {
        let sandbox = chroot_sandbox(can_mount);
        let fx = fixture();
        let cache = fx.tmp.path().join("cache");
        let secret = fx.tmp.path().join("secret");
        fs_err::create_dir_all(&cache).unwrap();
        fs_err::write(cache.join("old"), "old").unwrap();
        fs_err::write(&secret, "s3cret").unwrap();
        let mut command = chroot_spec(
            &fx,
            &format!(
                "cat /cache/old; rm /cache/old; echo new > /cache/new; cat /run/secrets/s; \
                 echo scratch > /scratch/file; (sleep {sleep} &); setsid sleep {sleep} & echo done"
            ),
        );
        command.mounts = vec![
            ExtraMount::Bind {
                source: cache.clone(),
                target: "/cache".into(),
                is_readonly: false,
                owner: Some((1000, 1000)),
            },
            ExtraMount::Bind {
                source: secret.clone(),
                target: "/run/secrets/s".into(),
                is_readonly: true,
                owner: Some((0, 0)),
            },
            ExtraMount::Tmpfs {
                target: "/scratch".into(),
                size: None,
            },
        ];
        let (result, out) = run_on(&sandbox, &command);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout, "olds3cretdone\n");
        // The cache's writes reached the host, as through a bind mount, with its owner.
        assert!(!cache.join("old").exists());
        assert_eq!(fs_err::read_to_string(cache.join("new")).unwrap(), "new\n");
        assert_eq!(fs_err::metadata(&cache).unwrap().uid(), 1000);
        assert_eq!(fs_err::read_to_string(&secret).unwrap(), "s3cret");
        let upper = tree(&fx.upper);
        for name in ["cache", "run/secrets/s", "run/secrets", "scratch"] {
            assert!(
                !upper.contains_key(name),
                "{name} leaked into the layer: {upper:?}"
            );
        }
        assert_eq!(
            sandbox_sleepers(sleep),
            0,
            "a RUN's leftover processes survived"
        );
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_refuses_what_it_cannot_honour_needs_root() {
    require_all();
    let fx = fixture();
    let mut command = chroot_spec(&fx, "true");
    command.network = Network::None;
    match run(&command).0 {
        Err(SandboxError::Setup { message }) => {
            assert!(message.contains("--network=none"), "{message}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    // A symlink in the image never takes the helper's writes outside the rootfs.
    let fx = fixture();
    let outside = fx.tmp.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::os::unix::fs::symlink(&outside, fx.lower.join("run")).unwrap();
    let mut command = chroot_spec(&fx, "cat /run/secrets/s");
    let secret = fx.tmp.path().join("secret");
    fs_err::write(&secret, "s3cret").unwrap();
    command.mounts = vec![ExtraMount::Bind {
        source: secret,
        target: "/run/secrets/s".into(),
        is_readonly: true,
        owner: None,
    }];
    let (result, out) = run_on(&chroot_sandbox(false), &command);
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "s3cret");
    assert_eq!(
        fs_err::read_dir(&outside).unwrap().count(),
        0,
        "the helper followed the image's symlink out of the rootfs"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_keeps_its_rootfs_for_the_next_step_needs_root() {
    require_all();
    for can_mount in [true, false] {
        let sandbox = chroot_sandbox(can_mount);
        let fx = fixture();
        let secret = fx.tmp.path().join("secret");
        let cache = fx.tmp.path().join("cache");
        fs_err::write(&secret, "s3cret").unwrap();
        fs_err::create_dir_all(&cache).unwrap();
        // The image has its own /etc/hostname and a directory where the cache goes: both
        // are hidden during the run and back afterwards.
        fs_err::write(fx.lower.join("etc/hostname"), "image\n").unwrap();
        fs_err::create_dir_all(fx.lower.join("cache")).unwrap();
        fs_err::write(fx.lower.join("cache/image-file"), "i").unwrap();
        let mut first = chroot_spec(
            &fx,
            &format!("{MUTATIONS} && echo c > /cache/new && echo t > /tmp/t && cat /etc/hostname"),
        );
        first.chroot_keep = true;
        first.mounts = vec![
            ExtraMount::Bind {
                source: secret.clone(),
                target: "/run/secrets/s".into(),
                is_readonly: true,
                owner: None,
            },
            ExtraMount::Bind {
                source: cache.clone(),
                target: "/cache".into(),
                is_readonly: false,
                owner: None,
            },
            ExtraMount::Tmpfs {
                target: "/scratch".into(),
                size: None,
            },
        ];
        let (result, out) = run_on(&sandbox, &first);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout, "kiln-sandbox\n", "the generated /etc/hostname");
        let kept = fx.work.join("rootfs");
        assert!(
            kept.is_dir(),
            "can_mount={can_mount}: the rootfs was not kept"
        );
        // The kept rootfs is exactly the lower with the layer applied: no stand-in, no mount
        // content, the image's own files back.
        let applied = fx.tmp.path().join("applied");
        apply_diff(&fx.lower, &fx.upper, &applied);
        let mut want = tree(&applied);
        let mut got = tree(&kept);
        want.retain(|k, _| !k.is_empty());
        got.retain(|k, _| !k.is_empty());
        assert_eq!(got, want, "can_mount={can_mount}");
        assert_eq!(
            fs_err::read_to_string(kept.join("etc/hostname")).unwrap(),
            "image\n"
        );
        assert_eq!(fs_err::read_to_string(cache.join("new")).unwrap(), "c\n");

        // The next step starts from it: nothing is copied, and its diff is its own.
        let moved = fx.tmp.path().join("kept");
        fs_err::rename(&kept, &moved).unwrap();
        let upper2 = fx.tmp.path().join("upper2");
        let work2 = fx.tmp.path().join("work2");
        fs_err::create_dir_all(&upper2).unwrap();
        fs_err::create_dir_all(&work2).unwrap();
        let mut second = RunSpec::new(
            vec![fx.upper.clone(), fx.lower.clone()],
            &upper2,
            &work2,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat /replace /data/sub/n; ls /cache; echo more > /data/more".into(),
            ],
        );
        second.isolation = Isolation::Chroot;
        second.chroot_reuse = Some(ChrootReuse {
            rootfs: moved.clone(),
            applied: 2,
        });
        let (result, out) = run_on(&sandbox, &second);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout, "f\nnew\nimage-file\n");
        assert!(!moved.exists(), "the kept rootfs was copied, not moved");
        let layer: Vec<String> = tree(&upper2).into_keys().collect();
        assert_eq!(layer, ["data", "data/more"], "can_mount={can_mount}");
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn a_file_opened_for_writing_is_in_the_layer_as_under_overlayfs_needs_root() {
    require_all();
    // `: >> FILE` opens it for writing and writes nothing: overlayfs copies it up, and a
    // lock file (useradd's /etc/.pwd.lock, dpkg's) is in the layer that way.
    let mut layers = Vec::new();
    for chroot in [None, Some(true), Some(false)] {
        let fx = fixture();
        let mut command = spec(&fx, ": >> /data/file; cat /data/sub/inner > /dev/null");
        let sandbox = match chroot {
            None => sandbox(),
            Some(can_mount) => {
                command.isolation = Isolation::Chroot;
                chroot_sandbox(can_mount)
            }
        };
        let (result, out) = run_on(&sandbox, &command);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        layers.push(tree(&fx.upper));
    }
    assert!(layers[0].contains_key("data/file"), "{:?}", layers[0]);
    assert!(!layers[0].contains_key("data/sub/inner"), "{:?}", layers[0]);
    assert_eq!(layers[1], layers[0], "chroot with mounts");
    assert_eq!(layers[2], layers[0], "chroot without mounts");
}
