//! Runtime halves of the requirement checks: a test whose `kiln_no_*` cfg was not set (the
//! host had the requirement at build time, or `CI` was set) calls these first and fails with
//! a message naming what is missing.

use std::path::PathBuf;

use kiln_test_probe::Requirement;

/// Panics with what is missing unless `requirement` is met now.
pub fn require(requirement: Requirement) {
    assert!(
        requirement.is_met(),
        "this test needs {}; it is skipped (cfg {}) when built without it outside CI, \
         and fails like this under CI=true or when built with it and run without it",
        requirement.describe(),
        requirement.cfg_name()
    );
}

/// Needs effective uid 0.
pub fn require_root() {
    require(Requirement::Root);
}

/// Needs overlayfs (and root to mount it).
pub fn require_overlay() {
    require_root();
    require(Requirement::Overlay);
}

/// Needs `name` on PATH; `name` must be one of [`kiln_test_probe::TOOLS`] so a
/// `kiln_no_<name>` cfg exists for the test's attribute.
pub fn require_tool(name: &'static str) {
    assert!(
        kiln_test_probe::TOOLS.contains(&name),
        "`{name}` is not in kiln_test_probe::TOOLS: add it there so tests can say \
         #[cfg_attr(kiln_no_{}, ignore = …)]",
        name.replace('-', "_")
    );
    require(Requirement::Tool(name));
}

/// Needs the host's busybox; returns its path.
pub fn require_busybox() -> PathBuf {
    require(Requirement::Busybox);
    kiln_test_probe::busybox_binary().expect("checked by require")
}

/// Needs arm64 emulation (qemu-aarch64 registered with the `F` flag) and the arm64 busybox;
/// returns the busybox's path.
pub fn require_emulation() -> PathBuf {
    require(Requirement::Emulation);
    kiln_test_probe::foreign_busybox_binary().expect("checked by require")
}

/// Needs the conformance corpus; returns its directory.
pub fn require_conformance() -> PathBuf {
    require(Requirement::Conformance);
    kiln_test_probe::conformance_dir()
}

/// Whether `name` is on PATH, for tests that check more when a tool is there but do not
/// need it.
pub fn has_tool(name: &str) -> bool {
    kiln_test_probe::tool_path(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "is not in kiln_test_probe::TOOLS")]
    fn an_unknown_tool_is_refused_so_its_cfg_cannot_be_misspelt() {
        require_tool("kiln-no-such-tool");
    }

    #[test]
    fn a_missing_requirement_panics_with_its_description() {
        let missing = Requirement::Tool("kiln-no-such-tool");
        let panic = std::panic::catch_unwind(|| require(missing)).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("`kiln-no-such-tool` on PATH"), "{message}");
        assert!(message.contains("kiln_no_kiln_no_such_tool"), "{message}");
    }
}
