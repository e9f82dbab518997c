//! What the sandbox tests share: a busybox rootfs fixture, runners that collect the output,
//! views of the host (mounts, leftover sleepers) and of a layer (its tree, applied to a lower).
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_sandbox::{Isolation, RunSpec, Sandbox, SandboxConfig, SandboxError, Stream};

/// Root, overlayfs and busybox: every test here needs them (`kiln_no_*` cfgs skip it where
/// the host lacks one, except under `CI=true`, where it fails).
pub(crate) fn require_all() {
    kiln_test::require_root();
    kiln_test::require_overlay();
    kiln_test::require_busybox();
}

/// A busybox rootfs: `bin/busybox` plus applet links, `/etc/passwd` with root and `app`.
pub(crate) fn busybox_rootfs(dir: &Path) {
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

pub(crate) struct Fixture {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) lower: PathBuf,
    pub(crate) upper: PathBuf,
    pub(crate) work: PathBuf,
}

pub(crate) fn fixture() -> Fixture {
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

pub(crate) fn sandbox() -> Sandbox {
    sandbox_with(false)
}

pub(crate) fn sandbox_with(force_copy: bool) -> Sandbox {
    Sandbox::new(SandboxConfig {
        helper_exe: Some(env!("CARGO_BIN_EXE_kiln-sandbox-init").into()),
        force_copy,
    })
    .unwrap()
}

pub(crate) fn spec(fx: &Fixture, script: &str) -> RunSpec {
    RunSpec::new(
        vec![fx.lower.clone()],
        &fx.upper,
        &fx.work,
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
}

pub(crate) struct Output {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn run(spec: &RunSpec) -> (Result<kiln_sandbox::RunOutcome, SandboxError>, Output) {
    run_on(&sandbox(), spec)
}

pub(crate) fn run_on(
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
pub(crate) fn mountinfo(fx: &Fixture) -> Vec<String> {
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
pub(crate) fn tree(root: &Path) -> BTreeMap<String, (char, u32, u32, String)> {
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

pub(crate) fn sandbox_sleepers(seconds: u32) -> usize {
    // Each test's sleepers use their own odd duration, which nothing else on the machine uses.
    let wanted = format!("sleep\0{seconds}\0").into_bytes();
    fs_err::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs_err::read(e.unwrap().path().join("cmdline")).ok())
        .filter(|cmdline| *cmdline == wanted)
        .count()
}

pub(crate) const MUTATIONS: &str = "rm /data/file && rm -r /data/sub && rm -r /replace && echo f > /replace \
                         && chmod 700 /chmod-me && mkdir /data/sub && echo new > /data/sub/n";

/// Applies an overlay-form diff onto a copy of the lower (what a layer application does).
pub(crate) fn apply_diff(lower: &Path, upper: &Path, into: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(lower)
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
    apply_dir(upper, into);
}

pub(crate) fn apply_dir(from: &Path, to: &Path) {
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

pub(crate) fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 1];
            matches!(rustix::fs::lgetxattr(path, *name, &mut value[..]), Ok(1) if value[0] == b'y')
        })
}

/// A sandbox for chroot isolation; without `can_mount` it copies where it could mount.
pub(crate) fn chroot_sandbox(can_mount: bool) -> Sandbox {
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

pub(crate) fn chroot_spec(fx: &Fixture, script: &str) -> RunSpec {
    let mut spec = spec(fx, script);
    spec.isolation = Isolation::Chroot;
    spec
}
