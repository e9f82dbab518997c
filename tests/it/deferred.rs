//! A `-t` build whose image only goes into the local store compresses nothing (issue 22, as
//! docker's image store keeps layers by diffID): the stored manifest lists the layers the
//! build made uncompressed, their snapshots standing for them, and `kiln push` / `kiln save`
//! compress them. Checked with skopeo on what leaves the store.

use std::path::Path;

use crate::builds::store_with_busybox;
use crate::common::{kiln_in, run_ok, skopeo_inspect, write};
use crate::registry::{Registry, require_registry_tools};

const UNCOMPRESSED: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn inspect(store: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&run_ok(kiln_in(store).args(["inspect", name]))).unwrap()
}

fn inspect_field(store: &Path, name: &str, field: &str) -> String {
    let json = inspect(store, name);
    let entry = if json.is_array() { &json[0] } else { &json };
    entry[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {json}"))
        .to_owned()
}

/// The layer descriptors of the stored manifest of `name`.
fn stored_layers(store: &Path, name: &str) -> Vec<serde_json::Value> {
    let json = inspect(store, name);
    let entry = if json.is_array() { &json[0] } else { &json };
    entry["Manifest"]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("layers in {json}"))
        .clone()
}

fn blob_exists(store: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    store.join("blobs/sha256").join(hex).exists()
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn a_tagged_build_keeps_its_layers_uncompressed_until_push_or_save() {
    require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let context = tmp.path().join("ctx");
    write(
        &context,
        "Dockerfile",
        "FROM busybox\nCOPY hello.txt /hello.txt\nRUN head -c 200000 /dev/zero > /zeros && echo ran > /ran\n",
    );
    write(&context, "hello.txt", "hello\n");
    run_ok(kiln_in(&store).args(["build", "-t", "app:1"]).arg(&context));

    // The base's layer is the imported gzip blob; the two new layers are uncompressed, named
    // by their diffIDs, with no blob in the store.
    let layers = stored_layers(&store, "app:1");
    assert_eq!(layers.len(), 3, "{layers:?}");
    assert_eq!(layers[0]["mediaType"], GZIP, "{layers:?}");
    let json = inspect(&store, "app:1");
    let config = if json.is_array() { &json[0] } else { &json }["Config"].clone();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap().clone();
    for (i, layer) in layers.iter().enumerate().skip(1) {
        assert_eq!(layer["mediaType"], UNCOMPRESSED, "{layers:?}");
        assert_eq!(layer["digest"], diff_ids[i], "{layers:?}");
        assert!(!blob_exists(&store, layer["digest"].as_str().unwrap()));
    }
    let verify = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verify.contains("store is consistent"), "{verify}");
    // Runs from its snapshots, and a prune keeps them (the image names them).
    run_ok(kiln_in(&store).args(["prune", "--all"]));
    let ran = run_ok(kiln_in(&store).args(["run", "app:1", "cat", "/ran", "/hello.txt"]));
    assert_eq!(ran, "ran\nhello\n");
    // The prune took the step records: build again, so the warm rebuild below is warm.
    run_ok(kiln_in(&store).args(["build", "-t", "app:1"]).arg(&context));
    let built_id = inspect_field(&store, "app:1", "Id");
    let built_digest = inspect_field(&store, "app:1", "Digest");
    assert_eq!(stored_layers(&store, "app:1")[2]["mediaType"], UNCOMPRESSED);

    // A build FROM it writing an OCI archive compresses the base's uncompressed layers.
    let child = tmp.path().join("child");
    write(
        &child,
        "Dockerfile",
        "FROM app:1\nRUN echo child > /child\n",
    );
    let archive = tmp.path().join("child.tar");
    run_ok(
        kiln_in(&store)
            .args(["build", "-o"])
            .arg(format!("type=oci,dest={}", archive.display()))
            .arg(&child),
    );
    let raw = skopeo_inspect(&format!("oci-archive:{}", archive.display()), &["--raw"]);
    let media: Vec<_> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(media, vec![GZIP; 4], "{raw}");

    // `kiln save` writes gzip layers a docker-archive reader accepts.
    let saved = tmp.path().join("app.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "-o"])
            .arg(&saved)
            .arg("app:1"),
    );
    let from_archive = skopeo_inspect(&format!("docker-archive:{}", saved.display()), &[]);
    assert_eq!(from_archive["Layers"].as_array().unwrap().len(), 3);

    // `kiln push` sends compressed layers; the name now points to that manifest, the image
    // ID is the same, and a second push sends the same digest.
    let registry = Registry::start();
    let remote = format!("{}/deferred/app:1", registry.host);
    let pushed = run_ok(kiln_in(&store).args(["push", "app:1", &remote]));
    let pushed = pushed.trim();
    assert_ne!(pushed, built_digest);
    let raw = skopeo_inspect(
        &format!("docker://{remote}"),
        &["--tls-verify=false", "--raw"],
    );
    for layer in raw["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], GZIP, "{raw}");
    }
    let remote_inspect = skopeo_inspect(&format!("docker://{remote}"), &["--tls-verify=false"]);
    assert_eq!(remote_inspect["Digest"], pushed);
    assert_eq!(inspect_field(&store, "app:1", "Digest"), pushed);
    assert_eq!(inspect_field(&store, "app:1", "Id"), built_id);
    let again = run_ok(kiln_in(&store).args(["push", "app:1", &remote]));
    assert_eq!(again.trim(), pushed);
    let verify = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verify.contains("store is consistent"), "{verify}");

    // A warm rebuild names the compressed manifest the push made: nothing is compressed
    // twice and the name does not flip back.
    run_ok(kiln_in(&store).args(["build", "-t", "app:1"]).arg(&context));
    assert_eq!(inspect_field(&store, "app:1", "Digest"), pushed);
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn outputs_and_epochs_keep_compressing_during_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let context = tmp.path().join("ctx");
    write(
        &context,
        "Dockerfile",
        "FROM busybox\nRUN echo ran > /ran\n",
    );
    // With SOURCE_DATE_EPOCH the layers are compressed at once (a later compression could
    // not know the epoch the tars were hashed with).
    run_ok(
        kiln_in(&store)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-t", "epoch:1"])
            .arg(&context),
    );
    for layer in stored_layers(&store, "epoch:1") {
        assert_eq!(layer["mediaType"], GZIP, "{layer}");
        assert!(blob_exists(&store, layer["digest"].as_str().unwrap()));
    }
    // With another compression than `kiln push`'s, too.
    run_ok(
        kiln_in(&store)
            .args([
                "build",
                "--no-cache",
                "--compression",
                "zstd",
                "-t",
                "zstd:1",
            ])
            .arg(&context),
    );
    let layers = stored_layers(&store, "zstd:1");
    assert_eq!(
        layers[1]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
        "{layers:?}"
    );
    assert!(blob_exists(&store, layers[1]["digest"].as_str().unwrap()));
}
