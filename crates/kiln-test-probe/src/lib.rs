#![doc = include_str!("../README.md")]
//!
//! # Example
//!
//! ```
//! use kiln_test_probe::Requirement;
//!
//! assert_eq!(Requirement::Tool("docker-registry").cfg_name(), "kiln_no_docker_registry");
//! assert_eq!(Requirement::Root.cfg_name(), "kiln_no_root");
//! ```

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The tools a test may need on `PATH`; each has a `kiln_no_<tool>` cfg (`-` becomes `_`).
pub const TOOLS: &[&str] = &[
    "buildah",
    "docker-registry",
    "flock",
    "gcc",
    "git",
    "go",
    "htpasswd",
    "jq",
    "mmdebstrap",
    "oci-image-tool",
    "python3",
    "runc",
    "runuser",
    "script",
    "setpriv",
    "skopeo",
    "ssh-agent",
    "ssh-keygen",
    "tar",
    "umoci",
    "unshare",
];

/// Tools that many tests need together: each group has one `kiln_no_<group>` cfg, set when
/// any of its tools is missing, so a test's attribute names the group instead of every tool.
pub const TOOL_GROUPS: &[(&str, &[&str])] = &[(
    "registry_tools",
    &["docker-registry", "htpasswd", "skopeo", "umoci"],
)];

/// The variable naming the conformance corpus (BuildKit golden files, shell tables,
/// `.dockerignore` cases); default [`default_conformance_dir`].
pub const CONFORMANCE_VAR: &str = "KILN_CONFORMANCE_DIR";

/// Where `.ci/install-deps` installs an arm64 (aarch64) static busybox, from Debian's
/// `busybox-static:arm64`, for tests that run a foreign architecture through qemu.
pub const FOREIGN_BUSYBOX_PATH: &str = "/usr/local/lib/kiln-test/busybox-arm64";

/// The binfmt_misc entry qemu-user-static registers for aarch64 executables.
pub const AARCH64_BINFMT_ENTRY: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";

/// Something a test needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Effective uid 0 (owners, mknod, trusted xattrs, mounts, RUN without user namespaces).
    Root,
    /// overlayfs in `/proc/filesystems`.
    Overlay,
    /// A busybox binary at `/bin/busybox` or `/usr/bin/busybox` (Debian's busybox-static).
    Busybox,
    /// The conformance corpus directory ([`conformance_dir`]).
    Conformance,
    /// Running arm64 binaries: the arm64 busybox at [`FOREIGN_BUSYBOX_PATH`] and an enabled
    /// qemu-aarch64 binfmt_misc handler with the `F` (fix-binary) flag, so it works inside a
    /// sandbox's root ([`AARCH64_BINFMT_ENTRY`]).
    Emulation,
    /// An executable of this name on `PATH` (one of [`TOOLS`]).
    Tool(&'static str),
}

impl Requirement {
    /// Every requirement the probe knows: the fixed ones, then one per entry of [`TOOLS`].
    pub fn all() -> Vec<Self> {
        let mut all = vec![
            Self::Root,
            Self::Overlay,
            Self::Busybox,
            Self::Conformance,
            Self::Emulation,
        ];
        all.extend(TOOLS.iter().map(|tool| Self::Tool(tool)));
        all
    }

    /// The cfg a build script emits when this requirement is missing outside CI.
    pub fn cfg_name(self) -> String {
        match self {
            Self::Root => "kiln_no_root".to_owned(),
            Self::Overlay => "kiln_no_overlay".to_owned(),
            Self::Busybox => "kiln_no_busybox".to_owned(),
            Self::Conformance => "kiln_no_conformance".to_owned(),
            Self::Emulation => "kiln_no_emulation".to_owned(),
            Self::Tool(tool) => format!("kiln_no_{}", tool.replace(['-', '.'], "_")),
        }
    }

    /// Whether the host has it now.
    pub fn is_met(self) -> bool {
        match self {
            Self::Root => is_root(),
            Self::Overlay => has_overlay(),
            Self::Busybox => busybox_binary().is_some(),
            Self::Conformance => conformance_dir().is_dir(),
            Self::Emulation => foreign_busybox_binary().is_some() && has_aarch64_binfmt(),
            Self::Tool(tool) => tool_path(tool).is_some(),
        }
    }

    /// What is missing and how to get it, for warnings and test failures.
    pub fn describe(self) -> String {
        match self {
            Self::Root => "root (run the tests as root)".to_owned(),
            Self::Overlay => "overlayfs (no `overlay` in /proc/filesystems)".to_owned(),
            Self::Busybox => {
                "busybox at /bin/busybox or /usr/bin/busybox (install busybox-static)".to_owned()
            }
            Self::Conformance => format!(
                "the conformance corpus at {} (set {CONFORMANCE_VAR})",
                conformance_dir().display()
            ),
            Self::Emulation => format!(
                "arm64 emulation: the arm64 busybox at {FOREIGN_BUSYBOX_PATH} and an enabled \
                 {AARCH64_BINFMT_ENTRY} with the F flag (bash .ci/install-deps installs \
                 qemu-user-static and both)"
            ),
            Self::Tool(tool) => format!("`{tool}` on PATH (bash .ci/install-deps installs it)"),
        }
    }
}

/// Whether `CI` asks for every test to run (set, and neither empty, `0` nor `false`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| is_ci_value(&v))
}

fn is_ci_value(value: &str) -> bool {
    !matches!(value.trim(), "" | "0" | "false")
}

/// Whether this process runs with effective uid 0 (`/proc/self` belongs to the euid).
pub fn is_root() -> bool {
    fs_err::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether the kernel lists overlayfs.
pub fn has_overlay() -> bool {
    fs_err::read_to_string("/proc/filesystems").is_ok_and(|text| {
        text.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    })
}

/// The first executable file named `name` in `PATH`.
pub fn tool_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs_err::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The host's busybox (Debian's busybox-static), if installed.
pub fn busybox_binary() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The arm64 busybox at [`FOREIGN_BUSYBOX_PATH`], if installed.
pub fn foreign_busybox_binary() -> Option<PathBuf> {
    let path = PathBuf::from(FOREIGN_BUSYBOX_PATH);
    path.is_file().then_some(path)
}

/// Whether [`AARCH64_BINFMT_ENTRY`] is enabled and has the `F` flag (the kernel opened its
/// interpreter at registration, so it runs inside any root).
pub fn has_aarch64_binfmt() -> bool {
    fs_err::read_to_string(AARCH64_BINFMT_ENTRY).is_ok_and(|text| is_usable_binfmt_entry(&text))
}

fn is_usable_binfmt_entry(text: &str) -> bool {
    let mut lines = text.lines();
    lines.next() == Some("enabled")
        && lines.any(|l| {
            l.strip_prefix("flags:")
                .is_some_and(|flags| flags.contains('F'))
        })
}

/// `../shared/conformance` beside the workspace root.
pub fn default_conformance_dir() -> PathBuf {
    // This crate sits at <workspace>/crates/kiln-test-probe.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

/// `$KILN_CONFORMANCE_DIR` when set, else [`default_conformance_dir`] (it may not exist).
pub fn conformance_dir() -> PathBuf {
    std::env::var_os(CONFORMANCE_VAR).map_or_else(default_conformance_dir, PathBuf::from)
}

/// The `cargo::` lines for a build script: check-cfg for every `kiln_no_*` name, a
/// `rustc-cfg` for each missing requirement (none under CI, which gets a warning instead),
/// and the rerun triggers.
pub fn cfg_lines(missing: &[Requirement], is_ci: bool) -> Vec<String> {
    let mut lines: Vec<String> = ["CI", "PATH", CONFORMANCE_VAR, "USER"]
        .iter()
        .map(|var| format!("cargo::rerun-if-env-changed={var}"))
        .collect();
    for requirement in Requirement::all() {
        lines.push(format!(
            "cargo::rustc-check-cfg=cfg({})",
            requirement.cfg_name()
        ));
    }
    for (group, _) in TOOL_GROUPS {
        lines.push(format!("cargo::rustc-check-cfg=cfg(kiln_no_{group})"));
    }
    if is_ci {
        if !missing.is_empty() {
            let what: Vec<String> = missing.iter().map(|r| r.describe()).collect();
            lines.push(format!(
                "cargo::warning=CI is set: the tests that need these will fail instead of being skipped: {}",
                what.join("; ")
            ));
        }
    } else {
        for requirement in missing {
            lines.push(format!("cargo::rustc-cfg={}", requirement.cfg_name()));
        }
        for (group, tools) in TOOL_GROUPS {
            if missing
                .iter()
                .any(|r| matches!(r, Requirement::Tool(tool) if tools.contains(tool)))
            {
                lines.push(format!("cargo::rustc-cfg=kiln_no_{group}"));
            }
        }
    }
    lines
}

/// Probes every requirement and prints [`cfg_lines`] for the calling build script.
#[expect(
    clippy::print_stdout,
    reason = "a build script talks to cargo on stdout"
)]
pub fn emit_cfgs() {
    let missing: Vec<Requirement> = Requirement::all()
        .into_iter()
        .filter(|r| !r.is_met())
        .collect();
    let dir = conformance_dir();
    if dir.is_dir() {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    for line in cfg_lines(&missing, is_ci()) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_requirement_becomes_a_cfg_outside_ci_only() {
        let missing = [Requirement::Root, Requirement::Tool("oci-image-tool")];
        let local = cfg_lines(&missing, false);
        assert!(local.contains(&"cargo::rustc-cfg=kiln_no_root".to_owned()));
        assert!(local.contains(&"cargo::rustc-cfg=kiln_no_oci_image_tool".to_owned()));
        assert!(!local.iter().any(|l| l.starts_with("cargo::warning")));

        let ci = cfg_lines(&missing, true);
        assert!(
            !ci.iter().any(|l| l.starts_with("cargo::rustc-cfg")),
            "{ci:?}"
        );
        let warning = ci.iter().find(|l| l.starts_with("cargo::warning")).unwrap();
        assert!(
            warning.contains("root") && warning.contains("`oci-image-tool`"),
            "{warning}"
        );
    }

    #[test]
    fn a_missing_tool_sets_its_group_cfg_outside_ci_only() {
        let missing = [Requirement::Tool("umoci")];
        let group = "cargo::rustc-cfg=kiln_no_registry_tools".to_owned();
        assert!(cfg_lines(&missing, false).contains(&group));
        assert!(!cfg_lines(&missing, true).contains(&group));
        assert!(!cfg_lines(&[Requirement::Tool("jq")], false).contains(&group));
        assert!(
            cfg_lines(&[], false)
                .contains(&"cargo::rustc-check-cfg=cfg(kiln_no_registry_tools)".to_owned())
        );
    }

    #[test]
    fn every_cfg_name_is_declared_even_when_nothing_is_missing() {
        let lines = cfg_lines(&[], false);
        for tool in TOOLS {
            let declared = format!(
                "cargo::rustc-check-cfg=cfg(kiln_no_{})",
                tool.replace('-', "_")
            );
            assert!(lines.contains(&declared), "{declared} missing");
        }
        assert!(lines.contains(&"cargo::rerun-if-env-changed=CI".to_owned()));
    }

    #[test]
    fn ci_is_off_for_false_and_zero() {
        for (value, expected) in [
            ("true", true),
            ("1", true),
            ("false", false),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(is_ci_value(value), expected, "{value:?}");
        }
    }

    #[test]
    fn a_binfmt_entry_is_usable_when_enabled_with_the_f_flag() {
        let entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n\
                     flags: POF\noffset 0\nmagic 7f454c46\n";
        assert!(is_usable_binfmt_entry(entry));
        assert!(!is_usable_binfmt_entry(
            &entry.replace("enabled", "disabled")
        ));
        assert!(!is_usable_binfmt_entry(&entry.replace("POF", "PO")));
        assert!(
            cfg_lines(&[], false)
                .contains(&"cargo::rustc-check-cfg=cfg(kiln_no_emulation)".to_owned())
        );
        assert!(
            cfg_lines(&[Requirement::Emulation], false)
                .contains(&"cargo::rustc-cfg=kiln_no_emulation".to_owned())
        );
    }

    #[test]
    fn tool_path_finds_sh_and_not_a_made_up_name() {
        assert!(tool_path("sh").is_some());
        assert!(tool_path("kiln-no-such-tool-here").is_none());
    }
}
