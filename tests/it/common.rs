//! Shared fixtures for the integration tests: the `kiln` binary under test and an offline
//! busybox root filesystem made from the host's static busybox.

#![allow(dead_code, reason = "each test module uses a different subset")]

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `kiln` binary built for this test run.
pub(crate) fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

/// `kiln` with `KILN_ROOT` set to `store` and no inherited SOURCE_DATE_EPOCH.
pub(crate) fn kiln_in(store: &Path) -> Command {
    let mut cmd = kiln();
    cmd.env("KILN_ROOT", store).env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Runs `cmd`, asserting success; returns stdout as text.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawning the command");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `kiln build --progress plain` of `context` (with its Dockerfile) and `extra` flags,
/// asserting success; returns stderr, where the progress goes.
pub(crate) fn build_plain(store: &Path, context: &Path, extra: &[&str]) -> String {
    let out = kiln_in(store)
        .args(["build", "--progress", "plain"])
        .args(extra)
        .arg(context)
        .output()
        .expect("spawning kiln build");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "kiln build {extra:?} failed with {}\n{stderr}",
        out.status
    );
    stderr
}

/// Runs `cmd`, asserting it fails with exit code `code`; returns its output.
pub(crate) fn run_fails(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().expect("spawning the command");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}: unexpected status\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{cmd:?} panicked:\n{stderr}");
    out
}

/// Whether an external tool is on PATH.
pub(crate) fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The host's static busybox, if installed (Debian's busybox-static).
pub(crate) fn busybox_binary() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Whether the tests run as root (owners can be set and compared).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Applets linked next to busybox in [`busybox_rootfs`].
pub(crate) const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "id", "cat", "echo", "whoami", "mkdir", "rm", "cp", "mv", "touch", "chmod",
    "chown", "env", "test", "true", "false", "sleep", "grep", "sed", "head", "tail", "wc",
    "printf", "pwd", "stat", "ln", "find", "tar", "uname",
];

/// Makes a minimal busybox root filesystem in `dir` (created): `bin/busybox` with applet
/// symlinks, `/etc/passwd` (root and `user` 1000), `/etc/group`, `/tmp` (1777), `/root`,
/// `/home/user` owned by 1000 when running as root. Returns `None` (after printing a loud
/// SKIPPED line) when the host has no busybox.
pub(crate) fn busybox_rootfs(dir: &Path) -> Option<PathBuf> {
    let Some(busybox) = busybox_binary() else {
        eprintln!("SKIPPED: no static busybox at /bin/busybox (install busybox-static)");
        return None;
    };
    let mkdir = |rel: &str, mode: u32| {
        let p = dir.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    mkdir("", 0o755);
    mkdir("bin", 0o755);
    mkdir("etc", 0o755);
    mkdir("root", 0o700);
    mkdir("tmp", 0o1777);
    mkdir("home/user", 0o755);
    std::fs::copy(&busybox, dir.join("bin/busybox")).unwrap();
    std::fs::set_permissions(
        dir.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for applet in BUSYBOX_APPLETS {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
    if is_root() {
        std::os::unix::fs::lchown(dir.join("home/user"), Some(1000), Some(1000)).unwrap();
    }
    Some(dir.to_owned())
}
