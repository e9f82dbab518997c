//! Offline base-image trees made from the host's static busybox, or from the arm64 one for
//! tests of emulated RUN steps.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::{is_root, require_busybox, require_emulation};

/// Applets linked next to busybox in [`busybox_rootfs`].
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "id", "cat", "echo", "whoami", "mkdir", "rm", "cp", "mv", "touch", "chmod",
    "chown", "env", "test", "true", "false", "sleep", "grep", "sed", "head", "tail", "wc",
    "printf", "pwd", "stat", "ln", "find", "tar", "uname",
];

/// Makes a minimal busybox root filesystem in `dir` (created): `bin/busybox` with applet
/// symlinks, `/etc/passwd` (root and `user` 1000), `/etc/group`, `/tmp` (1777), `/root`,
/// `/home/user` owned by 1000 when running as root. Returns `dir`. Needs busybox (see
/// [`require_busybox`]): tests that call it carry
/// `#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    busybox_tree(dir, &require_busybox())
}

/// [`busybox_rootfs`] for an architecture: `"amd64"` is the host's busybox (on an amd64
/// host), `"arm64"` the arm64 one from [`crate::foreign_busybox_binary`], which runs through qemu
/// (tests that use it carry `#[cfg_attr(kiln_no_emulation, ignore = "needs arm64 emulation")]`).
///
/// # Panics
///
/// For another architecture, or when the requirement is missing.
pub fn busybox_rootfs_for(dir: &Path, arch: &str) -> PathBuf {
    let busybox = match arch {
        "amd64" => {
            assert_eq!(
                std::env::consts::ARCH,
                "x86_64",
                "the host's busybox is not amd64 here"
            );
            require_busybox()
        }
        "arm64" => require_emulation(),
        other => panic!("no busybox for architecture `{other}`: amd64 or arm64"),
    };
    busybox_tree(dir, &busybox)
}

fn busybox_tree(dir: &Path, busybox: &Path) -> PathBuf {
    let mkdir = |rel: &str, mode: u32| {
        let p = dir.join(rel);
        fs_err::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"));
    };
    mkdir("", 0o755);
    mkdir("bin", 0o755);
    mkdir("etc", 0o755);
    mkdir("root", 0o700);
    mkdir("tmp", 0o1777);
    mkdir("home/user", 0o755);
    let target = dir.join("bin/busybox");
    fs_err::copy(busybox, &target).unwrap_or_else(|e| panic!("{e}"));
    fs_err::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    for applet in BUSYBOX_APPLETS {
        fs_err::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))
            .expect("linking a busybox applet");
    }
    fs_err::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("writing etc/passwd");
    fs_err::write(dir.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("writing etc/group");
    if is_root() {
        fs_err::os::unix::fs::lchown(dir.join("home/user"), Some(1000), Some(1000))
            .expect("chown home/user");
    }
    dir.to_owned()
}
