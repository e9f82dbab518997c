//! Shared fixtures for the integration tests: the `kiln` binary under test and ways to run
//! it. Requirement checks, busybox root filesystems and the loopback registry come from
//! `kiln-test`.

#![allow(dead_code, reason = "each test module uses a different subset")]

pub(crate) use kiln_test::{busybox_binary, busybox_rootfs, has_tool, is_root};

use std::path::Path;
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

/// Writes `content` to `dir/rel`, creating its parent directories.
pub(crate) fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, content).unwrap();
}

/// `skopeo inspect [extra] TARGET` as JSON, asserting success.
pub(crate) fn skopeo_inspect(target: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(target)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {extra:?} {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo JSON")
}
