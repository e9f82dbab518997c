//! The CLI is a front end only: its normal dependencies are the library (`kiln-build`, whose
//! API the `kiln` facade re-exports) and front-end crates, never the store, registry, sandbox
//! or tar crates (README.md, DESIGN.md §3). Checked with `cargo metadata`.

use std::collections::BTreeSet;
use std::process::Command;

/// What kiln-cli may depend on (normal dependencies).
const ALLOWED: [&str; 9] = [
    "anyhow",
    "clap",
    "fs-err",
    "indicatif",
    "kiln-build",
    "serde_json",
    "tokio",
    "tracing",
    "tracing-subscriber",
];

/// Crates whose work belongs behind kiln-build's API.
const FORBIDDEN: [&str; 9] = [
    "kiln-dockerfile",
    "kiln-oci",
    "kiln-plan",
    "kiln-registry",
    "kiln-sandbox",
    "kiln-store",
    "rustix",
    "tar",
    "tempfile",
];

#[test]
fn kiln_cli_depends_only_on_the_library_and_front_end_crates() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .args(["--manifest-path", manifest])
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let package = metadata["packages"]
        .as_array()
        .expect("a package list")
        .iter()
        .find(|p| p["name"] == "kiln-cli")
        .expect("kiln-cli is a workspace member");
    let normal: BTreeSet<&str> = package["dependencies"]
        .as_array()
        .expect("a dependency list")
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().expect("a dependency name"))
        .collect();
    assert!(normal.contains("kiln-build"), "{normal:?}");
    for name in &normal {
        assert!(
            ALLOWED.contains(name),
            "kiln-cli depends on `{name}`; put that work behind kiln-build's API (allowed: {ALLOWED:?})"
        );
    }
    for name in FORBIDDEN {
        assert!(
            !normal.contains(name),
            "kiln-cli must not depend on `{name}`"
        );
    }
}
