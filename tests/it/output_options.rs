//! The `-o` keys of buildx's image exporters, applied, never dropped: `compression=` (the
//! layers the build made; the base's too with `force-compression=true`), `oci-mediatypes=false`
//! (Docker's media types), `name=` of an archive, `push-by-digest=true`, `store=false`,
//! `rewrite-timestamp=`; an unknown key is a usage error naming it. Checked with skopeo.

use std::process::Command;

use serde_json::Value;

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, run_ok, skopeo_inspect, write};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_skopeo),
    ignore = "needs root, busybox, skopeo"
)]
fn compression_and_media_types_are_applied_per_output_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo hi > /f\n");
    let dir = |name: &str| tmp.path().join(name);
    let metadata = dir("metadata.json");
    build_plain(
        &store,
        &ctx,
        &[
            "-t",
            "plain:1",
            "--metadata-file",
            metadata.to_str().unwrap(),
            "-o",
            &format!(
                "type=oci,dest={},tar=false,compression=zstd,name=zst:1",
                dir("zstd").display()
            ),
            "-o",
            &format!(
                "type=oci,dest={},tar=false,compression=zstd,force-compression=true",
                dir("forced").display()
            ),
            "-o",
            &format!(
                "type=oci,dest={},tar=false,oci-mediatypes=false",
                dir("docker").display()
            ),
            "-o",
            &format!("type=oci,dest={},tar=false", dir("default").display()),
        ],
    );
    let raw = |name: &str, reference: &str| {
        skopeo_inspect(
            &format!("oci:{}{reference}", dir(name).display()),
            &["--raw"],
        )
    };
    // The base layer keeps the gzip it came with unless forced; the build's layer is zstd.
    // The layout names the image by its tag, as buildx does.
    let zstd = raw("zstd", ":1");
    assert_eq!(layer_types(&zstd), [GZIP, ZSTD]);
    assert_eq!(layer_types(&raw("forced", "")), [ZSTD, ZSTD]);
    assert_eq!(layer_types(&raw("default", "")), [GZIP, GZIP]);
    let docker = raw("docker", "");
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        docker["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        layer_types(&docker),
        [
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ]
    );
    // The same config (image ID) in every encoding.
    let config = |name: &str| {
        skopeo_inspect(
            &format!("oci:{}", dir(name).display()),
            &["--config", "--raw"],
        )
    };
    for name in ["forced", "docker", "default"] {
        assert_eq!(config(name), config("default"), "{name}");
    }
    // The first output names the build's image.
    let meta: Value = serde_json::from_slice(&fs_err::read(&metadata).unwrap()).unwrap();
    let index: Value =
        serde_json::from_slice(&fs_err::read(dir("zstd").join("index.json")).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.digest"],
        index["manifests"][0]["digest"]
    );
    // `-t` keeps the build's own encoding.
    let stored = run_ok(kiln_in(&store).args(["inspect", "plain:1"]));
    assert!(stored.contains(GZIP) && !stored.contains(ZSTD), "{stored}");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn push_by_digest_and_store_false_root() {
    kiln_test::require_root();
    let registry = kiln_test::Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo hi > /f\n");
    let name = format!("{}/by/digest:1", registry.host);
    let metadata = tmp.path().join("metadata.json");
    let progress = build_plain(
        &store,
        &ctx,
        &[
            "--metadata-file",
            metadata.to_str().unwrap(),
            "-o",
            &format!("type=image,name={name},push=true,push-by-digest=true,store=false"),
        ],
    );
    let meta: Value = serde_json::from_slice(&fs_err::read(&metadata).unwrap()).unwrap();
    let digest = meta["containerimage.digest"].as_str().unwrap();
    let by_digest = format!("{}/by/digest@{digest}", registry.host);
    assert!(
        progress.contains(&format!("pushed {by_digest}")),
        "{progress}"
    );
    skopeo_inspect(
        &format!("docker://{by_digest}"),
        &["--raw", "--tls-verify=false"],
    );
    // No tag was pushed, and nothing was kept under the name.
    let tagged = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(!tagged.status.success(), "the tag must not exist");
    run_fails(kiln_in(&store).args(["inspect", &name]), 1);
}

#[test]
fn unknown_keys_and_rewrite_timestamp_off_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let store = tmp.path().join("store");
    for (spec, says) in [
        (
            "type=oci,dest=o.tar,name-canonical=true",
            "`name-canonical`",
        ),
        ("type=oci,dest=o.tar,compression=estargz", "estargz"),
        ("type=docker,dest=o.tar,unpack=true", "`unpack`"),
    ] {
        let out = run_fails(kiln_in(&store).args(["build", "-o", spec]).arg(&ctx), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{spec}: {stderr}");
    }
    let out = run_fails(
        kiln_in(&store)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!(
                "type=oci,dest={},rewrite-timestamp=false",
                tmp.path().join("o.tar").display()
            ))
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rewrite-timestamp=false") && !stderr.contains("#1 "),
        "{stderr}"
    );
    // Without SOURCE_DATE_EPOCH it is what kiln does anyway.
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "quiet", "-o"])
            .arg(format!(
                "type=oci,dest={},rewrite-timestamp=false",
                tmp.path().join("o.tar").display()
            ))
            .arg(&ctx),
    );
}
