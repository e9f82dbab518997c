//! A tiny real image for the layout tests: one gzip layer made directly with the `tar` and
//! `flate2` crates (independent of kiln's own layer codec), a BuildKit-shaped config, and
//! the blobs in memory.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use kiln_oci::{
    AssembledImage, Descriptor, DiffId, Digest, History, ImageConfiguration, ManifestFormat,
    MediaType, MemoryBlobs, assemble_image, rfc3339_utc,
};

/// Fixed time of every entry and of `created`.
pub(crate) const EPOCH: i64 = 1_700_000_000;
/// Content of `app/hello.txt`.
pub(crate) const HELLO: &[u8] = b"hello from kiln\n";

/// The image and its blobs.
pub(crate) struct TestImage {
    pub(crate) image: AssembledImage,
    pub(crate) layer: Descriptor,
    pub(crate) layer_blob: Vec<u8>,
}

impl TestImage {
    /// The blobs (layer, config, manifest) as a source.
    pub(crate) fn blobs(&self) -> MemoryBlobs<'static> {
        let mut blobs = MemoryBlobs::new();
        blobs.insert(self.layer_blob.clone());
        blobs.insert(self.image.config.bytes().to_vec());
        blobs.insert(self.image.manifest.bytes().to_vec());
        blobs
    }
}

fn layer_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::try_from(EPOCH).unwrap());
        header.set_size(data.len() as u64);
        if let Some(target) = link {
            header.set_link_name(target).unwrap();
        }
        builder.append_data(&mut header, path, data).unwrap();
    };
    add("app/", tar::EntryType::Directory, 0o755, b"", None);
    add("app/hello.txt", tar::EntryType::Regular, 0o644, HELLO, None);
    add(
        "app/run.sh",
        tar::EntryType::Regular,
        0o755,
        b"#!/bin/sh\necho hi\n",
        None,
    );
    add(
        "app/link",
        tar::EntryType::Symlink,
        0o777,
        b"",
        Some("hello.txt"),
    );
    builder.into_inner().unwrap()
}

/// Builds the test image in the given manifest format.
pub(crate) fn test_image(format: ManifestFormat) -> TestImage {
    let tar = layer_tar();
    let diff_id = DiffId(Digest::sha256_of(&tar));
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
    gz.write_all(&tar).unwrap();
    let layer_blob = gz.finish().unwrap();
    let layer = Descriptor::of_bytes(MediaType::OciLayerTarGzip, &layer_blob);

    let mut config = ImageConfiguration::new(&"linux/amd64".parse().unwrap());
    config.created = Some(rfc3339_utc(EPOCH));
    config.config.env = vec![
        "PATH=/usr/local/bin:/usr/bin:/bin".into(),
        "APP=kiln".into(),
    ];
    config.config.cmd = vec!["/app/run.sh".into()];
    config.config.working_dir = "/app".into();
    config.config.exposed_ports.insert("8000/tcp".into());
    config
        .config
        .labels
        .insert("org.example.test".into(), "yes".into());
    config.rootfs.diff_ids.push(diff_id);
    config.history.push(History {
        created: Some(rfc3339_utc(EPOCH)),
        created_by: "COPY app /app # buildkit".into(),
        comment: "buildkit.dockerfile.v0".into(),
        ..History::default()
    });
    config.history.push(History {
        created: Some(rfc3339_utc(EPOCH)),
        created_by: "CMD [\"/app/run.sh\"]".into(),
        comment: "buildkit.dockerfile.v0".into(),
        empty_layer: true,
        ..History::default()
    });
    let image = assemble_image(config, vec![layer.clone()], format, BTreeMap::new()).unwrap();
    let layer = image.manifest.value().layers[0].clone();
    TestImage {
        image,
        layer,
        layer_blob,
    }
}

/// Runs a tool, returning stdout; panics with stderr on failure.
pub(crate) fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `skopeo inspect` of a transport reference, parsed.
pub(crate) fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(reference);
    let out = run("skopeo", &args);
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("skopeo output is not JSON: {e}"))
}

/// Raw `skopeo inspect --raw` bytes.
pub(crate) fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["inspect", "--raw"];
    args.extend_from_slice(extra);
    args.push(reference);
    run("skopeo", &args)
}

/// Names of the entries in a directory, sorted.
pub(crate) fn dir_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
