//! Rootless test users: as root, tests create (once, under a lock file, so concurrent test
//! processes agree) a system user with `/etc/subuid` and `/etc/subgid` ranges, and one
//! without, and run programs as them with `setpriv`.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require_root;

/// The test user with subordinate ranges.
pub const ROOTLESS_USER: &str = "kilnrl";

/// Its ranges in `/etc/subuid` and `/etc/subgid` (`usermod --add-subuids` syntax).
pub const ROOTLESS_RANGE: &str = "200000-265535";

/// The test user without subordinate ranges.
pub const USER_WITHOUT_SUBIDS: &str = "kilnrlnosub";

/// Serializes user creation across test processes (nextest runs each test in its own).
const LOCK_FILE: &str = "/run/lock/kiln-test-rootless.lock";

/// `PATH` of the commands run as a test user.
const USER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A system user the tests run kiln as.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Login name.
    pub name: &'static str,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// The user [`ROOTLESS_USER`], created with the [`ROOTLESS_RANGE`] ranges when missing.
/// Needs root (`#[cfg_attr(kiln_no_root, ignore = "needs root")]`).
pub fn rootless_user() -> TestUser {
    ensure_user(ROOTLESS_USER, true)
}

/// The user [`USER_WITHOUT_SUBIDS`], created without subordinate ranges (any it has are
/// removed). Needs root.
pub fn user_without_subids() -> TestUser {
    ensure_user(USER_WITHOUT_SUBIDS, false)
}

fn ensure_user(name: &'static str, has_subids: bool) -> TestUser {
    require_root();
    if let Some(parent) = Path::new(LOCK_FILE).parent() {
        fs_err::create_dir_all(parent).expect("creating the lock directory");
    }
    let lock = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .expect("opening the rootless user lock file");
    lock.file()
        .lock()
        .expect("locking the rootless user lock file");
    if passwd_entry(name).is_none() {
        run_admin(
            Command::new("useradd")
                .args(["--system", "--create-home", "--home-dir"])
                .arg(format!("/var/lib/{name}"))
                .args(["--shell", "/bin/sh", name]),
        );
    }
    let has_range = |file: &str| {
        fs_err::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|line| line.split(':').next() == Some(name))
    };
    if has_subids && !(has_range("/etc/subuid") && has_range("/etc/subgid")) {
        run_admin(
            Command::new("usermod")
                .args(["--add-subuids", ROOTLESS_RANGE])
                .args(["--add-subgids", ROOTLESS_RANGE])
                .arg(name),
        );
    }
    if !has_subids && (has_range("/etc/subuid") || has_range("/etc/subgid")) {
        remove_ranges(name);
    }
    let (uid, gid) = passwd_entry(name).expect("the user was just created");
    drop(lock);
    TestUser { name, uid, gid }
}

/// Removes every range of `name` from `/etc/subuid` and `/etc/subgid`.
fn remove_ranges(name: &str) {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs_err::read_to_string(file).unwrap_or_default();
        let mut kept = String::new();
        for line in text.lines() {
            if line.split(':').next() != Some(name) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        fs_err::write(file, kept).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn run_admin(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(uid, gid)` of `name` in `/etc/passwd`.
fn passwd_entry(name: &str) -> Option<(u32, u32)> {
    let passwd = fs_err::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name) && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

impl TestUser {
    /// A fresh temp directory owned by this user (mode 0700), for its home, store and test
    /// files; its parents are checked to be traversable by it.
    pub fn tempdir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        self.give(dir.path());
        assert_traversable(dir.path());
        dir
    }

    /// Makes `path` and everything under it this user's (`lchown -R`).
    pub fn give(&self, path: &Path) {
        for entry in walkdir::WalkDir::new(path) {
            let entry = entry.unwrap_or_else(|e| panic!("{e}"));
            fs_err::os::unix::fs::lchown(entry.path(), Some(self.uid), Some(self.gid))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// `program` run as this user (`setpriv --reuid --regid --init-groups`) with a clean
    /// environment: `PATH`, `HOME=home`, `XDG_DATA_HOME=home/.local/share` (so kiln's default
    /// store is `home/.local/share/kiln`), `USER` and `LOGNAME`. `program` must be traversable
    /// by the user.
    pub fn command(&self, program: &Path, home: &Path) -> Command {
        assert_traversable(program);
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", USER_PATH)
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("USER", self.name)
            .env("LOGNAME", self.name);
        if let Some(log) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", log);
        }
        cmd
    }
}

/// Panics naming the first parent of `path` that other users cannot search (`o+x`), unless
/// it is under the temp directory, where it is made searchable (tempfile makes its
/// directories 0700).
pub fn assert_traversable(path: &Path) {
    let temp = std::env::temp_dir();
    let mut dirs: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_path_buf).collect();
    dirs.reverse();
    for dir in dirs {
        let meta = fs_err::metadata(&dir).unwrap_or_else(|e| panic!("{e}"));
        if meta.mode() & 0o001 != 0 {
            continue;
        }
        if dir.starts_with(&temp) && dir != temp {
            fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(meta.mode() | 0o001))
                .unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        panic!(
            "{} is not searchable by other users, so a rootless test user cannot reach {}: \
             `chmod o+x` it, or set CARGO_TARGET_DIR/TMPDIR elsewhere",
            dir.display(),
            path.display()
        );
    }
}
