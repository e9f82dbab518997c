//! The store is private to its owner (DESIGN.md §1.7): `$KILN_ROOT` is created 0700 with
//! the parents kiln makes, a loosened one is changed back with a warning and reported by
//! `kiln store verify`, and another user cannot run a setuid-root binary out of a snapshot.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{busybox_rootfs, kiln_in, run_fails, run_ok};

fn mode_of(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_fresh_store_root_and_its_new_parents_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("a/b/store");
    let out = kiln_in(&store).arg("images").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    for dir in ["a", "a/b", "a/b/store"] {
        assert_eq!(mode_of(&tmp.path().join(dir)), 0o700, "{dir}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{out:?}"
    );
    let verified = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verified.contains("store is consistent"), "{verified}");
}

#[test]
fn a_loosened_store_root_is_made_private_with_one_warning_and_verify_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    run_ok(kiln_in(&store).arg("images"));
    fs_err::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = kiln_in(&store).arg("images").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("0755").count(),
        1,
        "one warning naming the old mode:\n{stderr}"
    );
    assert!(stderr.contains(&store.display().to_string()), "{stderr}");
    assert_eq!(mode_of(&store), 0o700);

    // Already fixed: nothing more to say.
    let out = kiln_in(&store).arg("images").output().unwrap();
    assert!(out.stderr.is_empty(), "{out:?}");

    // `verify` reports a loose root as a finding (it is fixed by opening the store).
    fs_err::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_fails(kiln_in(&store).args(["store", "verify"]), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("found: store root") && stdout.contains("mode 0755"),
        "{stdout}"
    );
    assert_eq!(mode_of(&store), 0o700);
    let verified = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verified.contains("store is consistent"), "{verified}");
}

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root")]
fn verify_reports_a_store_root_owned_by_another_user_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    run_ok(kiln_in(&store).arg("images"));
    fs_err::os::unix::fs::chown(&store, Some(65534), Some(65534)).unwrap();
    let out = run_fails(kiln_in(&store).args(["store", "verify", "--repair"]), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("owned by uid 65534"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("uid 65534"));
}

/// Runs `argv` as `nobody`. Not `setpriv --reuid`: it keeps root's effective capabilities
/// until its own `execve`, whose path walk then passes a 0700 directory (the exec'd program
/// runs without them), so it would prove nothing about the store's mode.
fn as_nobody(argv: &[&Path]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .args(argv)
        .output()
        .expect("running runuser")
}

fn find_in_snapshots(store: &Path, rel: &str) -> Option<PathBuf> {
    fs_err::read_dir(store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path().join(rel))
        .find(|p| p.is_file())
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_runuser),
    ignore = "needs root, busybox, runuser"
)]
fn another_user_cannot_run_a_setuid_binary_from_a_snapshot_root() {
    kiln_test::require_root();
    kiln_test::require_tool("runuser");
    let tmp = tempfile::tempdir().unwrap();
    // Open the temp dir (whatever its mode) so that only the store root stands in the way.
    fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    // A setuid-root copy of the host's `id`: run from the host, it reports its euid.
    let suid = rootfs.join("bin/suid-id");
    fs_err::copy("/usr/bin/id", &suid).unwrap();
    fs_err::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let store = tmp.path().join("store");
    run_ok(
        kiln_in(&store)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", "suid:latest"]),
    );
    // A build from it unpacks the base layer as a snapshot.
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(ctx.join("Dockerfile"), "FROM suid\nRUN true\n").unwrap();
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "plain"])
            .arg(&ctx),
    );
    let unpacked = find_in_snapshots(&store, "bin/suid-id").expect("the snapshot of the base");
    assert_eq!(
        mode_of(&unpacked) & 0o4000,
        0o4000,
        "the snapshot keeps the image's setuid bit (the reason the store must be private)"
    );
    assert_eq!(mode_of(&store), 0o700);

    let out = as_nobody(&[&unpacked]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stdout.contains("euid=0") && !stdout.contains("uid=0"),
        "nobody ran the setuid binary from the store:\n{stdout}{stderr}"
    );
    assert!(stderr.contains("Permission denied"), "{stderr}");
    let out = as_nobody(&[Path::new("/bin/ls"), &store.join("snapshots")]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );

    // Control: with the root opened up as before the fix, the same binary is reachable (so
    // the denial above comes from the root's mode, not from the temp dir or a nosuid mount).
    fs_err::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&[&unpacked]);
    assert!(out.status.success(), "control run: {out:?}");
    // Opening the store closes it again.
    run_ok(kiln_in(&store).arg("images"));
    assert_eq!(mode_of(&store), 0o700);
    let out = as_nobody(&[&unpacked]);
    assert!(!out.status.success(), "{out:?}");
}
