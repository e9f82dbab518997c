//! `kiln import` end to end: a busybox rootfs imported, checked by skopeo and umoci,
//! reproducible across runs, compression thread counts and stores; listing, inspecting,
//! removing; and clear errors.

use std::collections::BTreeMap;
use std::path::Path;

use crate::builds::{FsEntry, walk};
use crate::common::{busybox_rootfs, is_root, kiln_in, run_fails, run_ok};

const EPOCH: &str = "1700000000";

/// Imports `source` into the store at `store` with SOURCE_DATE_EPOCH and `extra` args;
/// returns the manifest digest from `kiln inspect`.
fn import(store: &Path, source: &Path, name: &str, extra: &[&str]) -> String {
    run_ok(
        kiln_in(store)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("import")
            .arg(source)
            .args(["-t", name])
            .args(extra),
    );
    inspect(store, name)["Digest"].as_str().unwrap().to_owned()
}

fn inspect(store: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&run_ok(kiln_in(store).args(["inspect", name]))).unwrap()
}

/// Every entry under `root` ([`walk`]), for comparing two trees: file contents reduced to
/// their length and a fingerprint (short failure messages), owners zeroed unless running as
/// root (an unprivileged import cannot keep them).
fn tree(root: &Path) -> BTreeMap<String, FsEntry> {
    walk(root)
        .into_iter()
        .map(|(path, mut entry)| {
            if entry.kind == "file" {
                entry.data = format!("{}:{:x}", entry.data.len(), crc(&entry.data)).into_bytes();
            }
            if !is_root() {
                (entry.uid, entry.gid) = (0, 0);
            }
            (path, entry)
        })
        .collect()
}

/// A cheap content fingerprint (FNV-1a) for tree comparisons.
fn crc(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn skopeo_inspect(transport: &str) -> serde_json::Value {
    let out = std::process::Command::new("skopeo")
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
#[cfg_attr(
    any(kiln_no_busybox, kiln_no_skopeo, kiln_no_umoci),
    ignore = "needs busybox, skopeo, umoci"
)]
fn import_busybox_outputs_agree_with_skopeo_and_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let store = tmp.path().join("store");
    let oci_tar = tmp.path().join("out.tar");
    let oci_dir = tmp.path().join("layout");
    let docker_tar = tmp.path().join("docker.tar");
    let local = tmp.path().join("local");
    let digest = import(
        &store,
        &rootfs,
        "kiln-test/busybox:1",
        &[
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            "ENV PATH=/bin",
            "--change",
            "USER 1000",
            "--change",
            "WORKDIR /home/user",
            "-m",
            "busybox fixture",
            "-o",
            &format!("type=oci,dest={}", oci_tar.display()),
            "-o",
            &format!("type=oci,dest={},tar=false", oci_dir.display()),
            "-o",
            &format!("type=docker,dest={}", docker_tar.display()),
            "-o",
            &format!("type=local,dest={}", local.display()),
        ],
    );
    let info = inspect(&store, "kiln-test/busybox:1");
    let config = &info["Config"];
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(config["config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(config["config"]["User"], "1000");
    assert_eq!(config["config"]["WorkingDir"], "/home/user");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["history"][0]["comment"], "busybox fixture");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    let layers: Vec<String> = info["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        info["Manifest"]["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // type=local is the input tree.
    assert_eq!(tree(&local), tree(&rootfs));

    kiln_test::require_tool("skopeo");
    let oci = skopeo_inspect(&format!("oci-archive:{}", oci_tar.display()));
    assert_eq!(oci["Digest"], digest.as_str());
    assert_eq!(oci["Layers"], serde_json::json!(layers));
    assert_eq!(oci["Architecture"], config["architecture"]);
    let docker = skopeo_inspect(&format!("docker-archive:{}", docker_tar.display()));
    assert_eq!(docker["Os"], "linux");
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(docker["Created"], "2023-11-14T22:13:20Z");

    kiln_test::require_tool("umoci");
    let bundle = tmp.path().join("bundle");
    let mut umoci = std::process::Command::new("umoci");
    umoci
        .args(["unpack", "--image"])
        .arg(format!("{}:1", oci_dir.display()));
    if !is_root() {
        umoci.arg("--rootless");
    }
    let out = umoci.arg(&bundle).output().unwrap();
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&bundle.join("rootfs")), tree(&rootfs));
}

#[test]
#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]
fn import_is_reproducible_across_runs_threads_and_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let store_a = tmp.path().join("a");
    let store_b = tmp.path().join("b");
    let one = ["--compression-threads", "1"];
    let many = ["--compression-threads", "4"];
    let gz1 = import(&store_a, &rootfs, "repro:gz", &one);
    let gz4 = import(&store_b, &rootfs, "repro:gz", &many);
    assert_eq!(
        gz1, gz4,
        "gzip output must not depend on thread count or store"
    );
    let zst1 = import(
        &store_a,
        &rootfs,
        "repro:zst",
        &["--compression", "zstd", "--compression-threads", "1"],
    );
    let zst4 = import(
        &store_b,
        &rootfs,
        "repro:zst",
        &["--compression", "zstd", "--compression-threads", "4"],
    );
    assert_eq!(zst1, zst4, "zstd output must not depend on thread count");
    assert_ne!(gz1, zst1);
    let plain = import(&store_a, &rootfs, "repro:none", &["--compression", "none"]);
    let plain_info = inspect(&store_a, "repro:none");
    assert_eq!(
        plain_info["Manifest"]["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    // The diff id is the same whatever the compression.
    let diff = |name: &str| inspect(&store_a, name)["Config"]["rootfs"]["diff_ids"][0].clone();
    assert_eq!(diff("repro:gz"), diff("repro:zst"));
    assert_eq!(
        diff("repro:gz"),
        plain_info["Config"]["rootfs"]["diff_ids"][0]
    );
    assert_ne!(plain, gz1);
}

#[test]
#[cfg_attr(any(kiln_no_busybox, kiln_no_tar), ignore = "needs busybox, tar")]
fn import_of_a_tarball_keeps_its_entries() {
    kiln_test::require_tool("tar");
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let archive = tmp.path().join("rootfs.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let store = tmp.path().join("store");
    let local = tmp.path().join("local");
    import(
        &store,
        &archive,
        "from-tar",
        &["-o", &format!("type=local,dest={}", local.display())],
    );
    assert_eq!(tree(&local), tree(&rootfs));
    // Same tarball twice: same digest; and the same again from standard input.
    let first = inspect(&store, "from-tar")["Digest"].clone();
    let again = import(&tmp.path().join("store2"), &archive, "from-tar", &[]);
    assert_eq!(first, again.as_str());
    let stdin_store = tmp.path().join("store3");
    run_ok(
        kiln_in(&stdin_store)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["import", "-", "-t", "from-stdin"])
            .stdin(fs_err::File::open(&archive).unwrap().into_file()),
    );
    let from_stdin = inspect(&stdin_store, "from-stdin");
    assert_eq!(
        from_stdin["Config"]["rootfs"],
        inspect(&store, "from-tar")["Config"]["rootfs"],
        "the layer from stdin is the same"
    );
}

#[test]
#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]
fn images_lists_and_rmi_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let store = tmp.path().join("store");
    import(&store, &rootfs, "busybox:fixture", &[]);
    let config_id = inspect(&store, "busybox:fixture")["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let table = run_ok(kiln_in(&store).arg("images"));
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().expect("one image row");
    assert!(row.starts_with("busybox "), "{row}");
    assert!(row.contains("fixture"), "{row}");
    assert!(row.contains(&config_id[7..19]), "{row}");

    let json = run_ok(kiln_in(&store).args(["images", "--format", "json"]));
    let entry: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(entry["Repository"], "busybox");
    assert_eq!(entry["Tag"], "fixture");
    assert_eq!(entry["ID"], &config_id[7..19]);

    let out = run_ok(kiln_in(&store).args(["rmi", "busybox:fixture"]));
    assert!(out.contains("Untagged: busybox:fixture"), "{out}");
    let table = run_ok(kiln_in(&store).arg("images"));
    assert_eq!(
        table.lines().count(),
        1,
        "only the header is left:\n{table}"
    );
    let failed = run_fails(kiln_in(&store).args(["rmi", "busybox:fixture"]), 1);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no such image"));
    let failed = run_fails(kiln_in(&store).args(["inspect", "busybox:fixture"]), 1);
    assert!(String::from_utf8_lossy(&failed.stderr).contains("not found in the local store"));
}

#[test]
fn import_errors_are_clear_and_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let missing = tmp.path().join("no-such-rootfs");
    let out = run_fails(
        kiln_in(&store)
            .arg("import")
            .arg(&missing)
            .args(["-t", "x"]),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot import") && stderr.contains("no-such-rootfs"),
        "{stderr}"
    );

    let dir = tmp.path().join("tree");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("f"), "x").unwrap();
    let out = run_fails(
        kiln_in(&store)
            .arg("import")
            .arg(&dir)
            .args(["-t", "x", "--change", "RUN echo hi"]),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported instruction `RUN`"), "{stderr}");
    let out = run_fails(
        kiln_in(&store)
            .arg("import")
            .arg(&dir)
            .args(["-t", "x", "--change", "EXPOSE 99999"]),
        1,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("EXPOSE 99999"));
    let out = run_fails(
        kiln_in(&store)
            .arg("import")
            .arg(&dir)
            .args(["-t", "Bad:Name"]),
        1,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Bad:Name"));
    let out = run_fails(
        kiln_in(&store)
            .arg("import")
            .arg(&dir)
            .args(["-o", "type=registry,dest=x"]),
        1,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported type"));
    let not_a_tar = tmp.path().join("junk.tar");
    fs_err::write(&not_a_tar, vec![b'x'; 2000]).unwrap();
    run_fails(
        kiln_in(&store)
            .arg("import")
            .arg(&not_a_tar)
            .args(["-t", "x"]),
        1,
    );
    // Usage errors exit 2 through clap.
    run_fails(kiln_in(&store).args(["import"]), 2);
    // Nothing half-done: no image was stored by the failures.
    let table = run_ok(kiln_in(&store).arg("images"));
    assert_eq!(table.lines().count(), 1, "{table}");
    let verify = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verify.contains("store is consistent"), "{verify}");
}
