//! Layout writers checked by independent tools: `skopeo inspect` of `oci:`, `oci-archive:`
//! and `docker-archive:` outputs, and `umoci unpack` of the layout giving back the layer's
//! tree. A test whose tool is missing is skipped (`kiln_no_<tool>`), or fails under `CI=true`.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::{HELLO, run, skopeo_inspect, skopeo_raw, test_image};
use kiln_oci::{
    ArchiveOptions, ExportImage, ManifestFormat, write_docker_archive, write_oci_archive,
    write_oci_layout_dir,
};

const NAME: &str = "docker.io/library/kiln-test:1.0";

#[test]
#[cfg_attr(kiln_no_skopeo, ignore = "needs skopeo")]
fn skopeo_reads_the_oci_layout_dir() {
    kiln_test::require_tool("skopeo");
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let export = ExportImage::new(img.image.manifest_descriptor()).named(NAME);
    write_oci_layout_dir(&dir, &img.blobs(), &[export]).unwrap();

    let reference = format!("oci:{}:1.0", dir.display());
    let info = skopeo_inspect(&reference, &[]);
    assert_eq!(info["Digest"], img.image.manifest_digest().to_string());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Layers"][0], img.layer.digest.to_string());
    assert_eq!(info["Env"][1], "APP=kiln");
    assert_eq!(info["Labels"]["org.example.test"], "yes");
    assert_eq!(
        skopeo_raw(&reference, &[]),
        img.image.manifest.bytes(),
        "manifest bytes as written"
    );
    assert_eq!(
        skopeo_raw(&reference, &["--config"]),
        img.image.config.bytes()
    );
}

#[test]
#[cfg_attr(kiln_no_umoci, ignore = "needs umoci")]
fn umoci_unpacks_the_layout_to_the_layer_tree() {
    kiln_test::require_tool("umoci");
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let export = ExportImage::new(img.image.manifest_descriptor()).named(NAME);
    write_oci_layout_dir(&dir, &img.blobs(), &[export]).unwrap();

    let bundle = tmp.path().join("bundle");
    let image_arg = format!("{}:1.0", dir.display());
    let mut args = vec!["unpack", "--image", image_arg.as_str()];
    let is_root = kiln_test::is_root();
    if !is_root {
        args.push("--rootless");
    }
    let bundle_arg = bundle.display().to_string();
    args.push(&bundle_arg);
    run("umoci", &args);

    let rootfs = bundle.join("rootfs");
    assert_eq!(fs_err::read(rootfs.join("app/hello.txt")).unwrap(), HELLO);
    let mode = |p: &str| {
        fs_err::symlink_metadata(rootfs.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("app/hello.txt"), 0o644);
    assert_eq!(mode("app/run.sh"), 0o755);
    assert_eq!(mode("app"), 0o755);
    assert_eq!(
        fs_err::read_link(rootfs.join("app/link")).unwrap().to_str(),
        Some("hello.txt")
    );
    if is_root {
        use std::os::unix::fs::MetadataExt as _;
        let meta = fs_err::metadata(rootfs.join("app/run.sh")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
    let runtime: serde_json::Value =
        serde_json::from_slice(&fs_err::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(runtime["process"]["cwd"], "/app");
    assert_eq!(runtime["process"]["args"][0], "/app/run.sh");
}

#[test]
#[cfg_attr(kiln_no_skopeo, ignore = "needs skopeo")]
fn skopeo_reads_the_oci_archive() {
    kiln_test::require_tool("skopeo");
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.tar");
    let export = ExportImage::new(img.image.manifest_descriptor()).named(NAME);
    write_oci_archive(&out, &img.blobs(), &[export], &ArchiveOptions::default()).unwrap();

    let info = skopeo_inspect(&format!("oci-archive:{}", out.display()), &[]);
    assert_eq!(info["Digest"], img.image.manifest_digest().to_string());
    assert_eq!(info["Layers"][0], img.layer.digest.to_string());
    let tagged = skopeo_inspect(&format!("oci-archive:{}:1.0", out.display()), &[]);
    assert_eq!(tagged["Digest"], info["Digest"]);
}

#[test]
#[cfg_attr(kiln_no_skopeo, ignore = "needs skopeo")]
fn skopeo_reads_the_docker_archive_in_both_formats() {
    kiln_test::require_tool("skopeo");
    for format in [ManifestFormat::Oci, ManifestFormat::Docker] {
        let img = test_image(format);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("docker.tar");
        let export = ExportImage::new(img.image.manifest_descriptor()).named("kiln-test:1.0");
        write_docker_archive(&out, &img.blobs(), &[export], &ArchiveOptions::default()).unwrap();

        let reference = format!("docker-archive:{}", out.display());
        let info = skopeo_inspect(&reference, &[]);
        assert_eq!(info["Architecture"], "amd64", "{format:?}");
        assert_eq!(info["Env"][1], "APP=kiln");
        assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            info["RepoTags"],
            serde_json::json!([]),
            "skopeo lists registry tags only"
        );
        // skopeo hands out the archive's config unchanged.
        assert_eq!(
            skopeo_raw(&reference, &["--config"]),
            img.image.config.bytes()
        );
        let named = skopeo_inspect(
            &format!("docker-archive:{}:kiln-test:1.0", out.display()),
            &[],
        );
        assert_eq!(named["Architecture"], "amd64");
    }
}

#[test]
#[cfg_attr(kiln_no_oci_image_tool, ignore = "needs oci-image-tool")]
fn oci_image_tool_validates_the_layout_and_every_json_blob() {
    kiln_test::require_tool("oci-image-tool");
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let export = ExportImage::new(img.image.manifest_descriptor()).named(NAME);
    write_oci_layout_dir(&dir, &img.blobs(), &[export]).unwrap();
    let dir_arg = dir.display().to_string();
    let out = run(
        "oci-image-tool",
        &["validate", "--type", "image", "--ref", "name=1.0", &dir_arg],
    );
    eprintln!("{}", String::from_utf8_lossy(&out));
    let blob = |d: &kiln_oci::Digest| dir.join("blobs/sha256").join(d.hex()).display().to_string();
    for (kind, path) in [
        ("imageIndex", dir.join("index.json").display().to_string()),
        ("manifest", blob(img.image.manifest_digest())),
        ("config", blob(img.image.config_digest())),
    ] {
        run("oci-image-tool", &["validate", "--type", kind, &path]);
    }
}

/// buildah (containers/image + containers/storage, as podman uses) pulls the archives into
/// a throwaway vfs store and sees the same config. Root only: buildah's store needs it.
#[test]
#[cfg_attr(
    any(kiln_no_buildah, kiln_no_root),
    ignore = "needs buildah, and root for buildah's store"
)]
fn buildah_pulls_both_archives_needs_root() {
    kiln_test::require_tool("buildah");
    kiln_test::require_root();
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("storage");
    let runroot = tmp.path().join("run");
    let (root, runroot) = (root.display().to_string(), runroot.display().to_string());
    let buildah = |args: &[&str]| {
        let mut all = vec![
            "--root",
            root.as_str(),
            "--runroot",
            runroot.as_str(),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run("buildah", &all)
    };
    let export = ExportImage::new(img.image.manifest_descriptor()).named("kiln-test:1.0");
    let oci = tmp.path().join("oci.tar");
    write_oci_archive(
        &oci,
        &img.blobs(),
        std::slice::from_ref(&export),
        &ArchiveOptions::default(),
    )
    .unwrap();
    let docker = tmp.path().join("docker.tar");
    write_docker_archive(&docker, &img.blobs(), &[export], &ArchiveOptions::default()).unwrap();

    for (transport, path) in [("oci-archive", &oci), ("docker-archive", &docker)] {
        let id = buildah(&[
            "pull",
            "--quiet",
            &format!("{transport}:{}", path.display()),
        ]);
        let id = String::from_utf8(id).unwrap().trim().to_owned();
        let info: serde_json::Value =
            serde_json::from_slice(&buildah(&["inspect", "--type", "image", &id])).unwrap();
        assert_eq!(
            info["OCIv1"]["config"]["Cmd"][0], "/app/run.sh",
            "{transport}"
        );
        assert_eq!(info["OCIv1"]["config"]["WorkingDir"], "/app", "{transport}");
        assert_eq!(
            info["OCIv1"]["rootfs"]["diff_ids"][0],
            img.image.config.value().rootfs.diff_ids[0].to_string(),
            "{transport}"
        );
        buildah(&["rmi", "--force", &id]);
    }
}
