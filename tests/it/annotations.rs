//! `--annotation` in every buildx form and the `annotation*` keys of `-o`: written where
//! their level says (each manifest, one platform's manifest, the index, the manifests'
//! descriptors, the layout's descriptor of the index), read back with skopeo and from the
//! layout's own files; the combinations BuildKit refuses are refused before any step runs.

use std::path::Path;

use serde_json::Value;

use crate::common::{build_plain, kiln_in, run_fails, skopeo_inspect, write};

/// A context whose image needs no base and no RUN, so it builds for any platform with no
/// emulator.
fn scratch_context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY hello /hello\n");
    write(&ctx, "hello", "hi\n");
    ctx
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

/// A blob of an OCI layout directory, by its digest.
fn layout_blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    read_json(&layout.join("blobs/sha256").join(hex))
}

fn annotation<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc["annotations"][key].as_str()
}

/// The index's entry of `arch`.
fn entry<'a>(index: &'a Value, arch: &str) -> &'a Value {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} entry in {index}"))
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_skopeo), ignore = "needs root, skopeo")]
fn every_level_lands_where_buildx_puts_it_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = scratch_context(tmp.path());
    let store = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    build_plain(
        &store,
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--annotation",
            "org.opencontainers.image.title=Every manifest",
            "--annotation",
            "manifest[linux/arm64]:org.opencontainers.image.title=Only arm64",
            "--annotation",
            "manifest:com.example.Case=kept",
            "--annotation",
            "index:org.opencontainers.image.description=The index",
            "--annotation",
            "manifest-descriptor:com.example.entry=each",
            "--annotation",
            "manifest-descriptor[linux/amd64]:com.example.only=amd64",
            "--annotation",
            "index-descriptor:com.example.layout=top",
            "-o",
            &format!(
                "type=oci,dest={},tar=false,annotation-index.com.example.from-o=yes,annotation[linux/amd64].com.example.arch=amd64",
                layout.display()
            ),
        ],
    );
    // skopeo reads the index and sees the index's annotations.
    let index = skopeo_inspect(&format!("oci:{}", layout.display()), &["--raw"]);
    assert_eq!(
        annotation(&index, "org.opencontainers.image.description"),
        Some("The index")
    );
    assert_eq!(annotation(&index, "com.example.from-o"), Some("yes"));
    assert_eq!(annotation(&index, "org.opencontainers.image.title"), None);
    // Each manifest descriptor in the index; the platform-scoped one on amd64 only.
    let (amd, arm) = (entry(&index, "amd64"), entry(&index, "arm64"));
    assert_eq!(annotation(amd, "com.example.entry"), Some("each"));
    assert_eq!(annotation(arm, "com.example.entry"), Some("each"));
    assert_eq!(annotation(amd, "com.example.only"), Some("amd64"));
    assert_eq!(annotation(arm, "com.example.only"), None);
    // Each manifest: the platform's own value over the general one; key case kept from
    // --annotation, as buildx keeps it.
    let amd_manifest = layout_blob(&layout, amd["digest"].as_str().unwrap());
    let arm_manifest = layout_blob(&layout, arm["digest"].as_str().unwrap());
    assert_eq!(
        annotation(&amd_manifest, "org.opencontainers.image.title"),
        Some("Every manifest")
    );
    assert_eq!(
        annotation(&arm_manifest, "org.opencontainers.image.title"),
        Some("Only arm64")
    );
    assert_eq!(annotation(&arm_manifest, "com.example.Case"), Some("kept"));
    assert_eq!(annotation(&amd_manifest, "com.example.arch"), Some("amd64"));
    assert_eq!(annotation(&arm_manifest, "com.example.arch"), None);
    // The layout's index.json: the index descriptor carries index-descriptor.
    let top = read_json(&layout.join("index.json"));
    let top = &top["manifests"][0];
    assert_eq!(annotation(top, "com.example.layout"), Some("top"));
    assert_eq!(
        top["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{top}"
    );
    // skopeo can copy every platform out of it (the layout and its blobs are consistent).
    let copy = tmp.path().join("copy");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--all", "--quiet"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!("oci:{}", copy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_skopeo), ignore = "needs root, skopeo")]
fn one_platform_takes_manifest_and_descriptor_levels_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = scratch_context(tmp.path());
    let store = tmp.path().join("store");
    let tar = tmp.path().join("image.tar");
    build_plain(
        &store,
        &ctx,
        &[
            "-t",
            "anno:1",
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
            "--annotation",
            "manifest-descriptor:com.example.entry=one",
            "-o",
            &format!("type=oci,dest={}", tar.display()),
        ],
    );
    let manifest = skopeo_inspect(&format!("oci-archive:{}", tar.display()), &["--raw"]);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        annotation(&manifest, "org.opencontainers.image.source"),
        Some("https://example.com/app")
    );
    // The layout's descriptor of the one manifest carries manifest-descriptor.
    let unpacked = tmp.path().join("unpacked");
    fs_err::create_dir_all(&unpacked).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let top = read_json(&unpacked.join("index.json"));
    assert_eq!(
        annotation(&top["manifests"][0], "com.example.entry"),
        Some("one")
    );
    // The -t name in the store names the annotated image: saved, it is the same manifest.
    let saved = tmp.path().join("saved.tar");
    crate::common::run_ok(
        kiln_in(&store)
            .args(["save", "--format", "oci", "anno:1", "-o"])
            .arg(&saved),
    );
    let from_store = skopeo_inspect(&format!("oci-archive:{}", saved.display()), &["--raw"]);
    assert_eq!(from_store, manifest);
    // With no -o, the build's digest (--metadata-file) is the annotated image's.
    let metadata = tmp.path().join("metadata.json");
    build_plain(
        &store,
        &ctx,
        &[
            "-t",
            "anno:2",
            "--annotation",
            "com.example.only-tag=yes",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let saved = tmp.path().join("saved2.tar");
    crate::common::run_ok(
        kiln_in(&store)
            .args(["save", "--format", "oci", "anno:2", "-o"])
            .arg(&saved),
    );
    let target = format!("oci-archive:{}", saved.display());
    let raw = skopeo_inspect(&target, &["--raw"]);
    assert_eq!(annotation(&raw, "com.example.only-tag"), Some("yes"));
    let inspected = skopeo_inspect(&target, &[]);
    assert_eq!(
        read_json(&metadata)["containerimage.digest"],
        inspected["Digest"]
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_registry_tools),
    ignore = "needs root, docker-registry, skopeo"
)]
fn pushed_index_and_manifests_carry_their_annotations_root() {
    kiln_test::require_root();
    let registry = kiln_test::Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = scratch_context(tmp.path());
    let store = tmp.path().join("store");
    let name = format!("{}/anno/multi:1", registry.host);
    build_plain(
        &store,
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &name,
            "--push",
            "--annotation",
            "index:org.opencontainers.image.version=1.2.3",
            "--annotation",
            "manifest[linux/arm64]:com.example.arch=arm64",
            "--annotation",
            "index-descriptor:com.example.unused=layout-only",
        ],
    );
    let index = skopeo_inspect(
        &format!("docker://{name}"),
        &["--raw", "--tls-verify=false"],
    );
    assert_eq!(
        annotation(&index, "org.opencontainers.image.version"),
        Some("1.2.3")
    );
    let arm = entry(&index, "arm64")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let amd = entry(&index, "amd64")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest = |digest: &str| {
        skopeo_inspect(
            &format!("docker://{}/anno/multi@{digest}", registry.host),
            &["--raw", "--tls-verify=false"],
        )
    };
    assert_eq!(
        annotation(&manifest(&arm), "com.example.arch"),
        Some("arm64")
    );
    assert_eq!(annotation(&manifest(&amd), "com.example.arch"), None);
}

#[test]
fn refused_combinations_name_the_annotation() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = scratch_context(tmp.path());
    let store = tmp.path().join("store");
    let local = format!("type=local,dest={}", tmp.path().join("out").display());
    let oci = format!("type=oci,dest={}", tmp.path().join("o.tar").display());
    // Usage errors (exit 2): the syntax, and annotation keys on an output with no manifest.
    for args in [
        vec!["--annotation", "novalue"],
        vec!["--annotation", "indx:k=v"],
        vec!["--annotation", "manifest[linux/bogus]:k=v"],
        vec!["--annotation", "index[linux/amd64]:k=v"],
        vec!["-o", "type=local,dest=out,annotation.k=v"],
        vec!["-o", "type=oci,dest=o.tar,annotation-bogus.k=v"],
    ] {
        let out = run_fails(kiln_in(&store).arg("build").args(&args).arg(&ctx), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let named = args[1].split('=').next().unwrap();
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    // Build errors (exit 1), before any step: BuildKit's single-platform rule, a platform
    // the build does not make, and nothing to annotate.
    for (args, says) in [
        (
            vec!["--annotation", "index:k=v", "-o", oci.as_str()],
            "index annotations not supported for single platform export",
        ),
        (
            vec!["-o", &format!("{oci},annotation-index-descriptor.k=v")],
            "index annotations not supported for single platform export",
        ),
        (
            vec![
                "--platform",
                "linux/amd64",
                "--annotation",
                "manifest[linux/arm64]:k=v",
                "-o",
                oci.as_str(),
            ],
            "makes no image for that platform",
        ),
        (
            vec!["--annotation", "k=v", "-o", local.as_str()],
            "no output of this build has a manifest",
        ),
    ] {
        let out = run_fails(
            kiln_in(&store)
                .args(["build", "--progress", "plain"])
                .args(&args)
                .arg(&ctx),
            1,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && !stderr.contains("#1 "),
            "{args:?}: {stderr}"
        );
    }
    assert!(!tmp.path().join("o.tar").exists() && !tmp.path().join("out").exists());
}
