//! End-to-end runs of the sandbox on a busybox rootfs (needs root, overlayfs and busybox;
//! the `kiln_no_*` cfgs of kiln-test-probe mark the tests ignored on hosts without them).

mod common;

use std::time::Duration;

use common::*;
use kiln_sandbox::{
    CancelToken, ExitStatus, Isolation, Network, RootfsMode, RunSpec, SandboxError,
};

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
