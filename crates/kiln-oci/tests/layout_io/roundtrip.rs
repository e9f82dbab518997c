//! Layout writers and readers against each other: what is written reads back (dir, OCI tar,
//! docker-archive), outputs are deterministic, a layout is itself a blob source, indexes
//! resolve per platform, and failures leave nothing behind.

use std::collections::BTreeMap;
use std::io::Read as _;

use crate::support::{TestImage, dir_names, test_image};
use kiln_oci::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ArchiveOptions, BlobError, BlobSource, Descriptor,
    DockerArchive, ExportImage, ImageIndex, JsonBlob, LayoutError, ManifestFormat, MediaType,
    MemoryBlobs, OciArchive, OciLayout, TarArchive, write_docker_archive, write_oci_archive,
    write_oci_archive_to, write_oci_layout_dir,
};

const NAME: &str = "docker.io/library/kiln-test:1.0";

fn export(img: &TestImage) -> Vec<ExportImage> {
    vec![ExportImage::new(img.image.manifest_descriptor()).named(NAME)]
}

fn read_all(source: &dyn BlobSource, descriptor: &Descriptor) -> Vec<u8> {
    let mut bytes = Vec::new();
    source
        .open_blob(&descriptor.digest)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn layout_dir_has_spec_files_and_reads_back() {
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let entries = write_oci_layout_dir(&dir, &img.blobs(), &export(&img)).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(dir_names(&dir), ["blobs", "index.json", "oci-layout"]);
    assert_eq!(
        fs_err::read(dir.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(dir_names(&dir.join("blobs/sha256")).len(), 3);
    assert_eq!(
        dir_names(tmp.path()),
        ["layout"],
        "no temporary directory left behind"
    );

    let layout = OciLayout::open(&dir).unwrap();
    let entry = &layout.index().manifests[0];
    assert_eq!(entry.annotations[ANNOTATION_REF_NAME], "1.0");
    assert_eq!(entry.annotations[ANNOTATION_IMAGE_NAME], NAME);
    assert_eq!(entry.platform.as_ref().unwrap().to_string(), "linux/amd64");
    for name in [
        Some("1.0"),
        Some(NAME),
        Some(&*img.image.manifest_digest().to_string()),
        None,
    ] {
        let resolved = layout.resolve(name, None).unwrap();
        assert_eq!(
            resolved.manifest.bytes(),
            img.image.manifest.bytes(),
            "{name:?}"
        );
        assert_eq!(resolved.config.bytes(), img.image.config.bytes());
    }
    assert_eq!(read_all(&layout, &img.layer), img.layer_blob);
    assert_eq!(layout.blob_len(&img.layer.digest).unwrap(), img.layer.size);

    let missing = layout.resolve(Some("2.0"), None).unwrap_err();
    assert!(matches!(missing, LayoutError::ImageNotFound { .. }));
    assert!(missing.to_string().contains(NAME), "{missing}");
    let absent = kiln_oci::Digest::sha256_of(b"absent");
    assert!(matches!(
        layout.open_blob(&absent),
        Err(BlobError::NotFound { .. })
    ));
}

#[test]
fn a_layout_is_a_blob_source_for_another_export() {
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    write_oci_layout_dir(&first, &img.blobs(), &export(&img)).unwrap();
    let layout = OciLayout::open(&first).unwrap();
    let second = tmp.path().join("nested/dirs/second.tar");
    let entry = ExportImage::new(layout.find(Some("1.0")).unwrap().clone());
    write_oci_archive(&second, &layout, &[entry], &ArchiveOptions::default()).unwrap();
    let archive = OciArchive::open(&second).unwrap();
    let resolved = archive.resolve(None, None).unwrap();
    assert_eq!(resolved.manifest.digest(), img.image.manifest_digest());
    assert_eq!(read_all(&archive, &img.layer), img.layer_blob);
}

#[test]
fn oci_archive_is_deterministic_and_sorted() {
    let img = test_image(ManifestFormat::Oci);
    let options = ArchiveOptions {
        mtime: 1_234_567,
        platform: None,
    };
    let a = write_oci_archive_to(Vec::new(), &img.blobs(), &export(&img), &options).unwrap();
    let b = write_oci_archive_to(Vec::new(), &img.blobs(), &export(&img), &options).unwrap();
    assert_eq!(a, b, "same images, same bytes");

    let mut archive = tar::Archive::new(a.as_slice());
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 1_234_567);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    let mut blobs: Vec<String> = [
        &img.layer.digest,
        img.image.config_digest(),
        img.image.manifest_digest(),
    ]
    .iter()
    .map(|d| format!("blobs/sha256/{}", d.hex()))
    .collect();
    blobs.sort();
    let mut expected = vec!["blobs/".to_owned(), "blobs/sha256/".to_owned()];
    expected.extend(blobs);
    expected.extend(["index.json".to_owned(), "oci-layout".to_owned()]);
    assert_eq!(names, expected);
}

#[test]
fn docker_archive_has_docker_save_files_and_reads_back() {
    let img = test_image(ManifestFormat::Docker);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("docker.tar");
    let images = vec![ExportImage::new(img.image.manifest_descriptor()).named("kiln-test:1.0")];
    write_docker_archive(&out, &img.blobs(), &images, &ArchiveOptions::default()).unwrap();

    let tar = TarArchive::open(&out).unwrap();
    for member in ["manifest.json", "repositories", "index.json", "oci-layout"] {
        assert!(tar.contains(member), "{member} missing");
    }
    let repositories: serde_json::Value =
        serde_json::from_slice(&tar.read_member("repositories").unwrap()).unwrap();
    assert_eq!(repositories["kiln-test"]["1.0"], img.layer.digest.hex());

    let archive = DockerArchive::open(&out).unwrap();
    let entry = &archive.entries()[0];
    assert_eq!(entry.repo_tags, ["kiln-test:1.0"]);
    assert_eq!(
        entry.config,
        format!("blobs/sha256/{}", img.image.config_digest().hex())
    );
    assert_eq!(
        entry.layers,
        [format!("blobs/sha256/{}", img.layer.digest.hex())]
    );
    let image = archive.image(Some("kiln-test:1.0")).unwrap();
    assert_eq!(image.config.bytes(), img.image.config.bytes());
    let mut layer = Vec::new();
    archive
        .open_member(&entry.layers[0])
        .unwrap()
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(layer, img.layer_blob);
    assert!(matches!(
        archive.image(Some("other:1")),
        Err(LayoutError::ImageNotFound { .. })
    ));
    // The embedded OCI layout is complete too.
    let oci = OciArchive::open(&out).unwrap();
    assert_eq!(
        oci.resolve(Some("1.0"), None).unwrap().manifest.digest(),
        img.image.manifest_digest()
    );
}

#[test]
fn index_exports_resolve_per_platform() {
    let amd = test_image(ManifestFormat::Oci);
    let mut arm_config = amd.image.config.value().clone();
    arm_config.architecture = "arm64".into();
    let arm = kiln_oci::assemble_image(
        arm_config,
        vec![amd.layer.clone()],
        ManifestFormat::Oci,
        BTreeMap::new(),
    )
    .unwrap();
    let index = ImageIndex::new(vec![
        amd.image.manifest_descriptor(),
        arm.manifest_descriptor(),
    ]);
    let index = JsonBlob::from_value(index).unwrap();
    let mut blobs = amd.blobs();
    blobs.insert(arm.config.bytes().to_vec());
    blobs.insert(arm.manifest.bytes().to_vec());
    blobs.insert(index.bytes().to_vec());
    let images = vec![ExportImage::new(index.descriptor(MediaType::OciIndex)).named(NAME)];

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("multi");
    write_oci_layout_dir(&dir, &blobs, &images).unwrap();
    assert_eq!(
        dir_names(&dir.join("blobs/sha256")).len(),
        6,
        "index, 2 manifests, 2 configs, 1 layer"
    );
    let layout = OciLayout::open(&dir).unwrap();
    let arm64 = "linux/arm64/v8".parse().unwrap();
    assert_eq!(
        layout
            .resolve(Some("1.0"), Some(&arm64))
            .unwrap()
            .manifest
            .digest(),
        arm.manifest_digest()
    );
    let amd64 = "linux/amd64".parse().unwrap();
    assert_eq!(
        layout
            .resolve(Some("1.0"), Some(&amd64))
            .unwrap()
            .manifest
            .digest(),
        amd.image.manifest_digest()
    );
    let s390x = "linux/s390x".parse().unwrap();
    let err = layout.resolve(Some("1.0"), Some(&s390x)).unwrap_err();
    assert!(err.to_string().contains("linux/arm64"), "{err}");

    // A docker-archive needs one platform: the index is resolved.
    let out = tmp.path().join("docker.tar");
    let options = ArchiveOptions {
        mtime: 0,
        platform: Some(arm64),
    };
    write_docker_archive(&out, &blobs, &images, &options).unwrap();
    let archive = DockerArchive::open(&out).unwrap();
    let image = archive.image(None).unwrap();
    assert_eq!(image.config.value().architecture, "arm64");
}

/// Serves the layer under its digest but with other content.
struct Swapped<'a>(&'a MemoryBlobs<'a>, Vec<u8>);
impl BlobSource for Swapped<'_> {
    fn open_blob(
        &self,
        digest: &kiln_oci::Digest,
    ) -> Result<Box<dyn std::io::Read + Send>, BlobError> {
        match self.0.open_blob(digest) {
            Err(BlobError::NotFound { .. }) => Ok(Box::new(std::io::Cursor::new(self.1.clone()))),
            other => other,
        }
    }
    fn blob_len(&self, digest: &kiln_oci::Digest) -> Result<u64, BlobError> {
        self.0.blob_len(digest).or(Ok(self.1.len() as u64))
    }
}

#[test]
fn a_corrupt_source_leaves_no_output() {
    let img = test_image(ManifestFormat::Oci);
    let mut corrupt = MemoryBlobs::new();
    corrupt.insert(img.image.config.bytes().to_vec());
    corrupt.insert(img.image.manifest.bytes().to_vec());
    let mut wrong = img.layer_blob.clone();
    let last = wrong.len() - 1;
    wrong[last] ^= 0xff;
    let source = Swapped(&corrupt, wrong);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let err = write_oci_layout_dir(&dir, &source, &export(&img)).unwrap_err();
    assert!(
        matches!(err, LayoutError::Blob(BlobError::DigestMismatch { .. })),
        "{err}"
    );
    let out = tmp.path().join("out.tar");
    let err =
        write_oci_archive(&out, &source, &export(&img), &ArchiveOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains(&img.layer.digest.to_string()),
        "{err}"
    );
    assert!(
        dir_names(tmp.path()).is_empty(),
        "nothing half-written: {:?}",
        dir_names(tmp.path())
    );
}

#[test]
fn existing_destinations_are_replaced_only_when_safe() {
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();

    let precious = tmp.path().join("precious");
    fs_err::create_dir(&precious).unwrap();
    fs_err::write(precious.join("notes.txt"), b"keep me").unwrap();
    let err = write_oci_layout_dir(&precious, &img.blobs(), &export(&img)).unwrap_err();
    assert!(
        matches!(err, LayoutError::DestinationExists { .. }),
        "{err}"
    );
    assert_eq!(
        fs_err::read(precious.join("notes.txt")).unwrap(),
        b"keep me"
    );

    let layout = tmp.path().join("layout");
    write_oci_layout_dir(&layout, &img.blobs(), &export(&img)).unwrap();
    let renamed = vec![
        ExportImage::new(img.image.manifest_descriptor()).named("docker.io/library/kiln-test:2.0"),
    ];
    write_oci_layout_dir(&layout, &img.blobs(), &renamed).unwrap();
    assert!(
        OciLayout::open(&layout).unwrap().find(Some("2.0")).is_ok(),
        "old layout replaced"
    );
    assert!(OciLayout::open(&layout).unwrap().find(Some("1.0")).is_err());

    let empty = tmp.path().join("empty");
    fs_err::create_dir(&empty).unwrap();
    write_oci_layout_dir(&empty, &img.blobs(), &export(&img)).unwrap();
    assert!(OciLayout::open(&empty).is_ok());

    let err = write_oci_archive(
        &precious,
        &img.blobs(),
        &export(&img),
        &ArchiveOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LayoutError::DestinationExists { .. }));
    let mut names = dir_names(tmp.path());
    names.sort();
    assert_eq!(
        names,
        ["empty", "layout", "precious"],
        "no temporary leftovers"
    );
}

#[test]
fn malformed_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = OciLayout::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("oci-layout"), "{err}");
    fs_err::write(
        tmp.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    let err = OciLayout::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("2.0.0"), "{err}");

    let not_tar = tmp.path().join("x.tar");
    fs_err::write(&not_tar, b"").unwrap();
    let err = OciArchive::open(&not_tar).unwrap_err();
    assert!(err.to_string().contains("oci-layout"), "{err}");
    let err = DockerArchive::open(&not_tar).unwrap_err();
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

/// Schema-free check of every JSON blob of a layout against the spec's REQUIRED fields,
/// reading raw JSON (not kiln's types), and of every descriptor against its blob file.
fn check_layout_against_spec(root: &std::path::Path) {
    use serde_json::Value;
    let blob = |d: &Value| -> Vec<u8> {
        let digest = d["digest"].as_str().expect("descriptor.digest is REQUIRED");
        let (algorithm, hex) = digest.split_once(':').unwrap();
        let bytes = fs_err::read(root.join("blobs").join(algorithm).join(hex)).unwrap();
        assert_eq!(kiln_oci::Digest::sha256_of(&bytes).to_string(), digest);
        assert_eq!(
            Some(bytes.len() as u64),
            d["size"].as_u64(),
            "descriptor.size is REQUIRED and exact"
        );
        assert!(
            d["mediaType"].is_string(),
            "descriptor.mediaType is REQUIRED"
        );
        bytes
    };
    let header: Value =
        serde_json::from_slice(&fs_err::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(header["imageLayoutVersion"], "1.0.0");
    let mut pending: Vec<Value> =
        vec![serde_json::from_slice(&fs_err::read(root.join("index.json")).unwrap()).unwrap()];
    let mut seen = 0;
    while let Some(index) = pending.pop() {
        assert_eq!(index["schemaVersion"], 2);
        for entry in index["manifests"]
            .as_array()
            .expect("index.manifests is REQUIRED")
        {
            let doc: Value = serde_json::from_slice(&blob(entry)).unwrap();
            match entry["mediaType"].as_str().unwrap() {
                "application/vnd.oci.image.index.v1+json" => pending.push(doc),
                manifest_type => {
                    seen += 1;
                    assert_eq!(doc["schemaVersion"], 2);
                    assert_eq!(doc["mediaType"], manifest_type);
                    let config: Value = serde_json::from_slice(&blob(&doc["config"])).unwrap();
                    let layers = doc["layers"]
                        .as_array()
                        .expect("manifest.layers is REQUIRED");
                    for layer in layers {
                        blob(layer);
                    }
                    assert!(config["architecture"].is_string() && config["os"].is_string());
                    assert_eq!(config["rootfs"]["type"], "layers");
                    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
                    assert_eq!(diff_ids.len(), layers.len());
                    if let Some(platform) = entry.get("platform") {
                        assert_eq!(platform["architecture"], config["architecture"]);
                        assert_eq!(platform["os"], config["os"]);
                    }
                }
            }
        }
    }
    assert!(seen > 0);
}

#[test]
fn written_layouts_meet_the_spec_required_fields() {
    let img = test_image(ManifestFormat::Oci);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    write_oci_layout_dir(&dir, &img.blobs(), &export(&img)).unwrap();
    check_layout_against_spec(&dir);
}

#[test]
fn legacy_docker_archives_with_linked_layers_are_read() {
    // Docker < 25 wrote `<id>/layer.tar` members, a `<hex>.json` config, and symlinked
    // duplicate layers to the first copy.
    let img = test_image(ManifestFormat::Docker);
    let config = img.image.config.bytes();
    let manifest = serde_json::json!([{
        "Config": "cfg.json",
        "RepoTags": ["old:1"],
        "Layers": ["bbb/layer.tar"]
    }]);
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        if let Some(target) = link {
            header.set_link_name(target).unwrap();
        }
        builder.append_data(&mut header, path, data).unwrap();
    };
    add(
        "aaa/layer.tar",
        tar::EntryType::Regular,
        &img.layer_blob,
        None,
    );
    add(
        "bbb/layer.tar",
        tar::EntryType::Symlink,
        b"",
        Some("../aaa/layer.tar"),
    );
    add("cfg.json", tar::EntryType::Regular, config, None);
    add(
        "manifest.json",
        tar::EntryType::Regular,
        manifest.to_string().as_bytes(),
        None,
    );
    let bytes = builder.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("legacy.tar");
    fs_err::write(&path, bytes).unwrap();

    let archive = DockerArchive::open(&path).unwrap();
    let image = archive.image(None).unwrap();
    assert_eq!(image.config.bytes(), config);
    assert_eq!(image.entry.repo_tags, ["old:1"]);
    let mut layer = Vec::new();
    archive
        .open_member(&image.entry.layers[0])
        .unwrap()
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(layer, img.layer_blob, "symlinked layer resolved");
    assert!(archive.open_member("zzz/layer.tar").is_err());
}
