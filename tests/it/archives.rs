//! `kiln tag`, `kiln save` and `kiln load` (issue 20): names, and images moved between
//! stores as docker-archives or OCI archives. The archives are also read by skopeo (an
//! independent reader), and skopeo's own legacy docker-archive is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{kiln_in, run_fails, run_ok};

/// Imports a small one-layer image (a few kilobytes of incompressible data, so the layer
/// blob is large enough to corrupt in the middle) under `name`.
fn small_image(dir: &Path, store: &Path, name: &str, seed: u64) {
    let rootfs = dir.join(format!("rootfs-{seed}"));
    fs_err::create_dir_all(rootfs.join("data")).unwrap();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..16 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    fs_err::write(rootfs.join("data/noise"), bytes).unwrap();
    run_ok(
        kiln_in(store)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("import")
            .arg(&rootfs)
            .args(["-t", name]),
    );
}

/// `repository:tag` → image ID (short), from `kiln images --format json`.
fn image_ids(store: &Path) -> BTreeMap<String, String> {
    run_ok(kiln_in(store).args(["images", "--format", "json"]))
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                format!(
                    "{}:{}",
                    entry["Repository"].as_str().unwrap(),
                    entry["Tag"].as_str().unwrap()
                ),
                entry["ID"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A store with `busybox:latest` and `small:1`, two different images.
fn store_with_two_images(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    small_image(dir, &store, "busybox:latest", 1);
    small_image(dir, &store, "small:1", 2);
    store
}

/// A member of a tar, read with the system's `tar`.
fn tar_member(archive: &Path, member: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -xOf {member}");
    String::from_utf8(out.stdout).unwrap()
}

fn skopeo_inspect(transport: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", transport])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {transport}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tag_names_an_image_by_name_or_id_and_names_a_missing_source() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    small_image(tmp.path(), &store, "busybox:latest", 1);
    run_ok(kiln_in(&store).args(["tag", "busybox:latest", "mybox:1"]));
    let ids = image_ids(&store);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids["busybox:latest"], ids["mybox:1"], "{ids:?}");

    let id = ids["busybox:latest"].clone();
    run_ok(kiln_in(&store).args(["tag", &id, "localhost:5000/by-id:2"]));
    assert_eq!(image_ids(&store)["localhost:5000/by-id:2"], id);

    let failed = run_fails(kiln_in(&store).args(["tag", "nothere:1", "x:1"]), 1);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("nothere:1"), "{stderr}");
    let failed = run_fails(kiln_in(&store).args(["tag", "busybox", "Bad Name"]), 1);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("Bad Name"), "{stderr}");
    assert!(!image_ids(&store).contains_key("x:1"));
}

#[test]
#[cfg_attr(any(kiln_no_skopeo, kiln_no_tar), ignore = "needs skopeo, tar")]
fn save_writes_every_image_in_one_archive_skopeo_reads() {
    kiln_test::require_tool("skopeo");
    kiln_test::require_tool("tar");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_images(tmp.path());
    let ids = image_ids(&store);

    let docker = tmp.path().join("docker.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "busybox:latest", "small:1", "-o"])
            .arg(&docker),
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&tar_member(&docker, "manifest.json")).unwrap();
    let tags: Vec<&str> = manifest
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["RepoTags"].as_array().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["busybox:latest", "small:1"], "{manifest}");
    for (index, name) in ["busybox:latest", "small:1"].iter().enumerate() {
        let inspected = skopeo_inspect(&format!("docker-archive:{}:@{index}", docker.display()));
        let digest = inspected["Digest"].as_str().unwrap();
        assert!(digest.starts_with("sha256:"), "{inspected}");
        let config = skopeo_config(&format!("docker-archive:{}:@{index}", docker.display()));
        assert!(
            config.starts_with(&ids[*name]),
            "{name}: {config} vs {ids:?}"
        );
    }

    let oci = tmp.path().join("oci.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "--format", "oci", "busybox:latest", "small:1", "-o"])
            .arg(&oci),
    );
    let index: serde_json::Value = serde_json::from_str(&tar_member(&oci, "index.json")).unwrap();
    let ref_names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(ref_names, ["latest", "1"], "{index}");
    let config = skopeo_config(&format!("oci-archive:{}:1", oci.display()));
    assert!(config.starts_with(&ids["small:1"]), "{config} vs {ids:?}");

    // Standard output: the same archive as `-o`.
    let piped = tmp.path().join("piped.tar");
    let status = kiln_in(&store)
        .args(["save", "busybox:latest", "small:1"])
        .stdout(fs_err::File::create(&piped).unwrap().into_file())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs_err::read(&piped).unwrap(),
        fs_err::read(&docker).unwrap()
    );

    let failed = run_fails(
        kiln_in(&store).args(["save", "nothere:1", "-o", "x.tar"]),
        1,
    );
    assert!(String::from_utf8_lossy(&failed.stderr).contains("nothere:1"));
    run_fails(
        kiln_in(&store).args(["save", "--format", "tgz", "small:1", "-o", "x.tar"]),
        2,
    );
}

/// The image ID skopeo computes: the digest of the config it reads.
fn skopeo_config(transport: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", transport])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect --raw {transport}");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = manifest["config"]["digest"].as_str().unwrap();
    digest.trim_start_matches("sha256:").to_owned()
}

#[test]
fn load_round_trips_saved_images_into_a_fresh_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_images(tmp.path());
    let ids = image_ids(&store);
    for format in ["docker", "oci"] {
        let archive = tmp.path().join(format!("{format}.tar"));
        run_ok(
            kiln_in(&store)
                .args([
                    "save",
                    "--format",
                    format,
                    "busybox:latest",
                    "small:1",
                    "-o",
                ])
                .arg(&archive),
        );
        let fresh = tmp.path().join(format!("fresh-{format}"));
        let out = run_ok(kiln_in(&fresh).arg("load").arg("-i").arg(&archive));
        assert_eq!(
            out, "Loaded image: busybox:latest\nLoaded image: small:1\n",
            "{format}"
        );
        assert_eq!(image_ids(&fresh), ids, "{format}");
        run_ok(kiln_in(&fresh).args(["store", "verify"]));

        // From standard input.
        let piped = tmp.path().join(format!("piped-{format}"));
        let out = kiln_in(&piped)
            .arg("load")
            .stdin(fs_err::File::open(&archive).unwrap().into_file())
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(image_ids(&piped), ids, "{format} from stdin");
    }
}

#[test]
#[cfg_attr(kiln_no_skopeo, ignore = "needs skopeo")]
fn load_reads_skopeos_legacy_docker_archive() {
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_images(tmp.path());
    let ids = image_ids(&store);
    let oci = tmp.path().join("oci.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "--format", "oci", "small:1", "-o"])
            .arg(&oci),
    );
    // skopeo writes the layout of Docker before 25: `<hex>.tar` layers, no OCI layout.
    let legacy = tmp.path().join("legacy.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}:1", oci.display()))
        .arg(format!("docker-archive:{}:legacy:2", legacy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = tmp.path().join("fresh");
    let out = run_ok(kiln_in(&fresh).arg("load").arg("-i").arg(&legacy));
    assert_eq!(out, "Loaded image: legacy:2\n");
    assert_eq!(image_ids(&fresh)["legacy:2"], ids["small:1"]);
    run_ok(kiln_in(&fresh).args(["store", "verify"]));
}

#[test]
fn load_of_a_corrupt_archive_names_it_and_names_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_images(tmp.path());
    let archive = tmp.path().join("images.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "busybox:latest", "small:1", "-o"])
            .arg(&archive),
    );
    // Flip a byte inside the first gzip layer blob (members start at 512-byte blocks).
    let mut bytes = fs_err::read(&archive).unwrap();
    let start = (0..bytes.len())
        .step_by(512)
        .find(|&i| bytes[i..].starts_with(&[0x1f, 0x8b]))
        .expect("a gzip layer in the archive");
    bytes[start + 1000] ^= 0xff;
    let corrupt = tmp.path().join("corrupt.tar");
    fs_err::write(&corrupt, &bytes).unwrap();

    let fresh = tmp.path().join("fresh");
    let failed = run_fails(kiln_in(&fresh).arg("load").arg("-i").arg(&corrupt), 1);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("corrupt.tar"), "{stderr}");
    assert!(stderr.contains("sha256:"), "names the blob: {stderr}");
    assert!(image_ids(&fresh).is_empty(), "no name was set");

    let not_a_tar = tmp.path().join("notes.txt");
    fs_err::write(&not_a_tar, "not an archive").unwrap();
    let failed = run_fails(kiln_in(&fresh).arg("load").arg("-i").arg(&not_a_tar), 1);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("notes.txt"));
    let failed = run_fails(kiln_in(&fresh).args(["load", "-i", "/nonexistent.tar"]), 1);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("/nonexistent.tar"));
}
