//! DESIGN.md §3: `kiln-dockerfile`, `kiln-plan` and `kiln-oci`'s model "have no tokio, no
//! network, no syscalls: they compile for any target". This test reads `cargo metadata` and
//! walks the normal-dependency closure of those crates *with the features they ask for*
//! (`kiln-oci` without its `codec` feature), and fails when one of the crates that bring
//! syscalls, C code, archives or async into a build is reachable.
//!
//! `cargo metadata`'s own resolve graph unifies features over the whole workspace (where
//! `kiln-store` turns `codec` on), so the walk resolves features itself from each package's
//! `[features]` table and dependency declarations.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

use serde_json::Value;

/// Crates the pure crates must not pull in, with why. `libc` is not among them: sha2's
/// `cpufeatures` reads the CPU's features through it on some targets (no I/O).
const FORBIDDEN: &[(&str, &str)] = &[
    ("rustix", "syscalls"),
    ("linux-raw-sys", "syscalls"),
    ("zstd", "C compression library"),
    ("zstd-sys", "C compression library"),
    ("zstd-safe", "C compression library"),
    ("flate2", "compression"),
    ("zlib-rs", "compression"),
    ("crc32fast", "the gzip codec"),
    ("tar", "archive I/O"),
    ("walkdir", "filesystem walking"),
    ("tempfile", "filesystem I/O"),
    ("tokio", "async runtime"),
    ("mio", "async I/O"),
    ("reqwest", "network"),
    ("hyper", "network"),
    ("rustls", "network"),
];

/// The pure crates: the planner and the frontend (and through them `kiln-oci`'s model).
const PURE: &[&str] = &["kiln-dockerfile", "kiln-plan"];

struct Metadata {
    /// Package id → package JSON.
    packages: BTreeMap<String, Value>,
    /// Package id → (extern crate name → package id), from the resolve graph.
    edges: BTreeMap<String, BTreeMap<String, String>>,
}

fn metadata() -> Metadata {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("running `cargo metadata`");
    assert!(
        output.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let packages = json["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id").to_owned(), p.clone()))
        .collect();
    let edges = json["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .map(|d| {
                    (
                        d["name"].as_str().expect("dep name").to_owned(),
                        d["pkg"].as_str().expect("dep pkg").to_owned(),
                    )
                })
                .collect();
            (node["id"].as_str().expect("node id").to_owned(), deps)
        })
        .collect();
    Metadata { packages, edges }
}

impl Metadata {
    fn id_of(&self, name: &str) -> String {
        self.packages
            .iter()
            .find(|(_, p)| p["name"] == name && p["source"].is_null())
            .map_or_else(
                || panic!("workspace package {name} not in cargo metadata"),
                |(id, _)| id.clone(),
            )
    }

    /// Names of the packages reachable from `root` through normal dependencies, each with
    /// only the features something in the walk asks for.
    fn normal_closure(&self, root: &str) -> BTreeSet<String> {
        let root = self.id_of(root);
        // Package id → features requested so far ("default" included when asked for).
        let mut features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut queue = VecDeque::new();
        features.insert(root.clone(), BTreeSet::from(["default".to_owned()]));
        queue.push_back(root);
        while let Some(id) = queue.pop_front() {
            let package = &self.packages[&id];
            let (enabled_deps, dep_features) = expand_features(package, &features[&id]);
            for dependency in package["dependencies"].as_array().expect("dependencies") {
                if !dependency["kind"].is_null() {
                    continue; // dev- and build-dependencies are not linked into the crate
                }
                let name = dependency["rename"]
                    .as_str()
                    .unwrap_or_else(|| dependency["name"].as_str().expect("name"));
                if dependency["optional"] == true && !enabled_deps.contains(name) {
                    continue;
                }
                let Some(dep_id) = self.edges[&id].get(&name.replace('-', "_")) else {
                    // A dependency for another target, resolved away.
                    continue;
                };
                let mut wanted: BTreeSet<String> = dependency["features"]
                    .as_array()
                    .expect("features")
                    .iter()
                    .map(|f| f.as_str().expect("feature").to_owned())
                    .collect();
                if dependency["uses_default_features"] == true {
                    wanted.insert("default".to_owned());
                }
                wanted.extend(dep_features.get(name).into_iter().flatten().cloned());
                let is_new = !features.contains_key(dep_id);
                let known = features.entry(dep_id.clone()).or_default();
                let before = known.len();
                known.extend(wanted);
                if is_new || known.len() > before {
                    queue.push_back(dep_id.clone());
                }
            }
        }
        features
            .keys()
            .map(|id| self.packages[id]["name"].as_str().expect("name").to_owned())
            .collect()
    }
}

/// Expands `requested` features through the package's `[features]` table: the optional
/// dependencies they enable, and the features they ask of dependencies.
fn expand_features(
    package: &Value,
    requested: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let table = package["features"].as_object().expect("features table");
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = requested.iter().cloned().collect();
    let mut deps = BTreeSet::new();
    let mut dep_features: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while let Some(feature) = stack.pop() {
        if !seen.insert(feature.clone()) {
            continue;
        }
        if let Some(dep) = feature.strip_prefix("dep:") {
            deps.insert(dep.to_owned());
        } else if let Some((dep, dep_feature)) = feature.split_once('/') {
            let is_weak = dep.ends_with('?');
            let dep = dep.trim_end_matches('?');
            if !is_weak {
                deps.insert(dep.to_owned());
            }
            dep_features
                .entry(dep.to_owned())
                .or_default()
                .insert(dep_feature.to_owned());
        } else if let Some(implies) = table.get(&feature) {
            stack.extend(
                implies
                    .as_array()
                    .expect("feature list")
                    .iter()
                    .map(|f| f.as_str().expect("feature").to_owned()),
            );
        } else {
            // An optional dependency used as an implicit feature.
            deps.insert(feature);
        }
    }
    (deps, dep_features)
}

fn forbidden_in(closure: &BTreeSet<String>) -> Vec<String> {
    FORBIDDEN
        .iter()
        .filter(|(name, _)| closure.contains(*name))
        .map(|(name, why)| format!("{name} ({why})"))
        .collect()
}

#[test]
fn pure_crates_pull_no_io_crates() {
    let metadata = metadata();
    for crate_name in PURE {
        let closure = metadata.normal_closure(crate_name);
        let found = forbidden_in(&closure);
        assert!(
            found.is_empty(),
            "{crate_name} pulls in {} (DESIGN.md §3: the pure crates have no tokio, no network, no syscalls); its closure: {closure:?}",
            found.join(", ")
        );
    }
    // The planner does use the image model.
    assert!(metadata.normal_closure("kiln-plan").contains("kiln-oci"));
}

/// The walk sees what a codec user pulls in: without this the test above could pass by
/// resolving nothing.
#[test]
fn codec_users_do_pull_the_codec() {
    let metadata = metadata();
    let closure = metadata.normal_closure("kiln-store");
    let found = forbidden_in(&closure);
    for name in ["rustix", "zstd-sys", "flate2", "tar"] {
        assert!(
            found.iter().any(|f| f.starts_with(&format!("{name} "))),
            "kiln-store (kiln-oci with `codec`) should pull in {name}; found {found:?}"
        );
    }
}
