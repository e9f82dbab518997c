//! Foreign-architecture RUN steps: an arm64 busybox rootfs runs through qemu's binfmt_misc
//! handler (registered with the F flag) under every isolation mode (needs root, overlayfs and
//! arm64 emulation: `.ci/install-deps` sets it up).

mod common;

use common::*;
use kiln_oci::Platform;
use kiln_sandbox::{DEFAULT_BINFMT_DIR, Isolation, find_emulator, needs_emulation};

/// A fixture whose lower is an arm64 busybox tree.
fn arm64_fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    let work = tmp.path().join("work");
    for dir in [&upper, &work] {
        fs_err::create_dir_all(dir).unwrap();
    }
    kiln_test::busybox_rootfs_for(&lower, "arm64");
    Fixture {
        tmp,
        lower,
        upper,
        work,
    }
}

const SCRIPT: &str = "uname -m; echo built > /made-here; cat /made-here";

fn assert_ran_as_aarch64(
    result: Result<kiln_sandbox::RunOutcome, kiln_sandbox::SandboxError>,
    out: &Output,
    fx: &Fixture,
    mode: &str,
) {
    let outcome = result.unwrap_or_else(|e| panic!("{mode}: {e}"));
    assert!(
        outcome.status.is_success(),
        "{mode}: {:?} {}",
        outcome.status,
        out.stderr
    );
    assert_eq!(out.stdout, "aarch64\nbuilt\n", "{mode}: {}", out.stderr);
    assert_eq!(
        fs_err::read_to_string(fx.upper.join("made-here")).unwrap(),
        "built\n",
        "{mode}: the layer has the file"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_emulation),
    ignore = "needs root, overlayfs, arm64 emulation"
)]
fn arm64_busybox_runs_under_namespaces_needs_root() {
    kiln_test::require_overlay();
    kiln_test::require_emulation();
    let host = Platform::host();
    let arm64 = Platform::new("linux", "arm64");
    assert!(
        needs_emulation(&host, &arm64),
        "this test emulates arm64 on {host}"
    );
    let emulator = find_emulator(&arm64, DEFAULT_BINFMT_DIR.as_ref()).unwrap();
    assert!(emulator.fix_binary);

    let fx = arm64_fixture();
    let (result, out) = run(&spec(&fx, SCRIPT));
    assert_ran_as_aarch64(result, &out, &fx, "namespaces");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_emulation),
    ignore = "needs root, overlayfs, arm64 emulation"
)]
fn arm64_busybox_runs_under_chroot_needs_root() {
    kiln_test::require_overlay();
    kiln_test::require_emulation();
    for can_mount in [true, false] {
        let fx = arm64_fixture();
        let mut command = spec(&fx, SCRIPT);
        command.isolation = Isolation::Chroot;
        let (result, out) = run_on(&chroot_sandbox(can_mount), &command);
        let mode = if can_mount {
            "chroot"
        } else {
            "chroot without mounts"
        };
        assert_ran_as_aarch64(result, &out, &fx, mode);
    }
}
