//! Store behaviour across modules: snapshots, GC reachability and limits, verify and repair,
//! and crash consistency with a writer killed by SIGKILL.

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_oci::{
    ChainId, Compression, Descriptor, DiffId, Digest, EntrySource, FileListTar, ImageConfiguration,
    ImageRef, LayerEntry, LayerWriter, ManifestFormat, MediaType, Platform, assemble_image,
};
use kiln_store::{GcOptions, LockMode, Problem, RecordRefs, Store};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

/// Stores a gzip layer of `entries`; returns (blob digest, diff id, size).
fn put_layer(store: &Store, entries: Vec<LayerEntry>) -> (Digest, DiffId, u64) {
    let mut tar = Vec::new();
    FileListTar::new()
        .entries(entries)
        .write_to(&mut tar)
        .unwrap();
    let mut writer = LayerWriter::new(Vec::new(), Compression::gzip()).unwrap();
    writer.write_all(&tar).unwrap();
    let (blob, digests) = writer.finish().unwrap();
    assert_eq!(store.put_bytes(&blob).unwrap(), digests.digest);
    (digests.digest, digests.diff_id, digests.size)
}

fn file(path: &str, content: &str) -> LayerEntry {
    LayerEntry::new(path, EntrySource::Bytes(content.as_bytes().to_vec()))
}

/// Stores a manifest + config over `layers`; returns the manifest digest.
fn put_image(store: &Store, layers: &[(Digest, DiffId, u64)]) -> Digest {
    let mut config = ImageConfiguration::new(&Platform::host());
    config.rootfs.diff_ids = layers.iter().map(|l| l.1.clone()).collect();
    let descriptors = layers
        .iter()
        .map(|(d, _, size)| Descriptor::new(MediaType::OciLayerTarGzip, d.clone(), *size))
        .collect();
    let image = assemble_image(
        config,
        descriptors,
        ManifestFormat::Oci,
        std::collections::BTreeMap::default(),
    )
    .unwrap();
    store.put_bytes(image.config.bytes()).unwrap();
    store.put_bytes(image.manifest.bytes()).unwrap()
}

/// Asserts that the store's `tmp` holds nothing but its fixed `leases` and `trash` dirs: no
/// staging file or directory was left behind.
fn assert_no_temp_leftovers(store: &Store) {
    let leftovers: Vec<_> = fs_err::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "leases" && n != "trash")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn name(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

#[test]
#[cfg_attr(
    kiln_no_root,
    ignore = "needs root: overlay whiteouts (0/0 devices, trusted xattrs)"
)]
fn snapshots_hold_one_layer_with_overlay_whiteouts_as_root() {
    kiln_test::require_root();
    let (_d, store) = store();
    let base = put_layer(
        &store,
        vec![
            file("etc/keep", "k"),
            file("etc/gone", "g"),
            file("opt/old/x", "x"),
        ],
    );
    let top = put_layer(
        &store,
        vec![
            file("etc/.wh.gone", ""),
            LayerEntry::new("opt/old", EntrySource::Directory),
            file("opt/old/.wh..wh..opq", ""),
            file("opt/old/new", "n"),
        ],
    );
    let image = put_image(&store, &[base.clone(), top.clone()]);
    let resolved = store.resolve_image(&image, None).unwrap();
    let chains = store.unpack_image(&resolved).unwrap();
    assert_eq!(
        chains[0],
        ChainId::from_diff_ids(std::slice::from_ref(&base.1)).unwrap()
    );
    assert_eq!(
        chains[1],
        ChainId::from_diff_ids(&[base.1.clone(), top.1.clone()]).unwrap()
    );

    let lower = store.snapshot_path(&chains[0]);
    assert_eq!(fs_err::read_to_string(lower.join("etc/gone")).unwrap(), "g");
    let upper = store.snapshot_path(&chains[1]);
    assert!(
        !upper.join("etc/keep").exists(),
        "a snapshot holds only its own layer"
    );
    let whiteout = fs_err::symlink_metadata(upper.join("etc/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!upper.join("etc/.wh.gone").exists());
    let mut opaque = [0u8; 4];
    let n = rustix::fs::lgetxattr(
        upper.join("opt/old"),
        "trusted.overlay.opaque",
        &mut opaque[..],
    )
    .unwrap();
    assert_eq!(&opaque[..n], b"y");
    assert_eq!(
        fs_err::read_to_string(upper.join("opt/old/new")).unwrap(),
        "n"
    );

    // Created once: a second call finds it.
    assert_eq!(store.unpack_image(&resolved).unwrap(), chains);

    // flatten_to applies the whiteouts instead.
    let flat = tempfile::tempdir().unwrap();
    store.flatten_to(flat.path(), &[base.0, top.0]).unwrap();
    assert!(flat.path().join("etc/keep").is_file());
    assert!(!flat.path().join("etc/gone").exists());
    assert!(!flat.path().join("opt/old/x").exists());
    assert!(flat.path().join("opt/old/new").is_file());
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_not_unpacked() {
    let (_d, store) = store();
    let layer = put_layer(&store, vec![file("a", "1")]);
    let wrong = DiffId(Digest::sha256_of(b"not it"));
    let err = store.ensure_snapshot(None, &wrong, &layer.0).unwrap_err();
    assert!(err.to_string().contains("diff id"), "{err}");
    assert!(store.list_snapshots().unwrap().is_empty());
    assert_no_temp_leftovers(&store);
}

#[test]
fn gc_keeps_what_refs_records_and_leases_reach() {
    let (_d, store) = store();
    let kept_layer = put_layer(&store, vec![file("kept", "1")]);
    let kept = put_image(&store, std::slice::from_ref(&kept_layer));
    store.set_ref(&name("kept"), &kept).unwrap();
    store
        .ensure_snapshot(None, &kept_layer.1, &kept_layer.0)
        .unwrap();

    let dropped_layer = put_layer(&store, vec![file("dropped", "2")]);
    let dropped = put_image(&store, std::slice::from_ref(&dropped_layer));
    store
        .ensure_snapshot(None, &dropped_layer.1, &dropped_layer.0)
        .unwrap();

    let cached = store.put_bytes(b"cached layer").unwrap();
    let key = "c".repeat(64);
    store
        .put_cache_record(
            &key,
            &refs_to(&cached),
            &serde_json::json!({"layer": "cached"}),
        )
        .unwrap();
    let leased = store.put_bytes(b"in use by a build").unwrap();
    let lease = store.lease().unwrap();
    lease.protect_blob(&leased).unwrap();

    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(store.has_blob(&kept) && store.has_blob(&kept_layer.0));
    assert!(store.has_snapshot(&ChainId::base(&kept_layer.1)));
    assert!(!store.has_blob(&dropped) && !store.has_blob(&dropped_layer.0));
    assert!(!store.has_snapshot(&ChainId::base(&dropped_layer.1)));
    assert!(store.has_blob(&cached), "a cache record keeps its blobs");
    assert!(store.has_blob(&leased), "a live lease keeps its blobs");
    assert_eq!(report.removed_snapshots, 1);
    assert_eq!(
        report.removed_blobs, 3,
        "manifest, config and layer of the dropped image"
    );

    drop(lease);
    let report = store
        .gc(&GcOptions {
            all: true,
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed_records, 1);
    assert!(!store.has_blob(&cached) && !store.has_blob(&leased));
    assert!(
        store.has_blob(&kept),
        "prune --all never removes tagged images"
    );
    store
        .verify(false)
        .unwrap()
        .problems
        .is_empty()
        .then_some(())
        .unwrap();
}

/// References to the blob `digest` alone.
fn refs_to(digest: &Digest) -> RecordRefs {
    RecordRefs {
        blobs: vec![digest.clone()],
        ..RecordRefs::default()
    }
}

#[test]
fn a_record_keeps_alive_what_its_references_name_and_nothing_its_body_mentions() {
    let (_d, store) = store();
    let referenced = store.put_bytes(b"referenced").unwrap();
    let mentioned = store.put_bytes(b"only mentioned in the body").unwrap();
    let layer = put_layer(&store, vec![file("kept", "1")]);
    let chain = store.ensure_snapshot(None, &layer.1, &layer.0).unwrap();
    let orphan = put_layer(&store, vec![file("orphan", "2")]);
    let orphan_chain = store.ensure_snapshot(None, &orphan.1, &orphan.0).unwrap();
    let refs = RecordRefs {
        blobs: vec![referenced.clone()],
        snapshots: vec![chain.clone()],
    };
    let body = serde_json::json!({
        "note": mentioned.to_string(),
        "chain": orphan_chain.to_string(),
    });
    store
        .put_cache_record(&"e".repeat(64), &refs, &body)
        .unwrap();
    // A record of an older kiln (`cache/v1`, a bare body) keeps nothing and is removed.
    let legacy_dir = store.root().join("cache/v1");
    fs_err::create_dir_all(&legacy_dir).unwrap();
    let legacy = legacy_dir.join(format!("{}.json", "f".repeat(64)));
    fs_err::write(
        &legacy,
        serde_json::json!([mentioned.to_string()]).to_string(),
    )
    .unwrap();

    let report = store.gc(&GcOptions::default()).unwrap();
    assert!(store.has_blob(&referenced));
    assert!(store.has_snapshot(&chain));
    assert!(
        !store.has_blob(&mentioned),
        "a digest in the body is not a reference"
    );
    assert!(!store.has_snapshot(&orphan_chain));
    assert!(!legacy.exists());
    assert_eq!(report.removed_records, 1);
    assert_eq!(store.get_cache_record(&"e".repeat(64)).unwrap(), Some(body));
}

#[test]
fn gc_max_size_evicts_the_least_recently_used_records() {
    let (_d, store) = store();
    let old = store.put_bytes(&[1u8; 4000]).unwrap();
    let new = store.put_bytes(&[2u8; 4000]).unwrap();
    let (old_key, new_key) = ("a".repeat(64), "b".repeat(64));
    store
        .put_cache_record(&old_key, &refs_to(&old), &serde_json::json!({}))
        .unwrap();
    store
        .put_cache_record(&new_key, &refs_to(&new), &serde_json::json!({}))
        .unwrap();
    // Make the first record clearly older.
    let past = std::time::SystemTime::now() - Duration::from_hours(1);
    fs_err::OpenOptions::new()
        .append(true)
        .open(store.root().join(format!("cache/v2/{old_key}.json")))
        .unwrap()
        .set_modified(past)
        .unwrap();
    let dry = store
        .gc(&GcOptions {
            max_size: Some(5000),
            dry_run: true,
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(dry.removed_records, 1);
    assert!(store.has_blob(&old), "a dry run removes nothing");
    let report = store
        .gc(&GcOptions {
            max_size: Some(5000),
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed_records, 1);
    assert!(!store.has_blob(&old));
    assert!(store.has_blob(&new));
    assert!(store.get_cache_record(&new_key).unwrap().is_some());

    let report = store
        .gc(&GcOptions {
            older_than: Some(Duration::from_secs(0)),
            ..GcOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed_records, 1);
    assert!(!store.has_blob(&new));
}

#[test]
fn verify_finds_and_repairs_corruption() {
    let (_d, store) = store();
    let layer = put_layer(&store, vec![file("x", "1")]);
    let image = put_image(&store, std::slice::from_ref(&layer));
    store.set_ref(&name("app"), &image).unwrap();
    let clean = store.verify(false).unwrap();
    assert!(clean.is_consistent(), "{:?}", clean.problems);
    assert_eq!(clean.refs_checked, 1);
    assert_eq!(clean.blobs_checked, 3);

    // Bit rot in the layer, a stray file, a corrupt record.
    let path = store.blob_path(&layer.0);
    let mut bytes = fs_err::read(&path).unwrap();
    bytes[20] ^= 0xff;
    fs_err::write(&path, bytes).unwrap();
    fs_err::write(store.root().join("blobs/sha256/junk"), b"?").unwrap();
    fs_err::write(
        store
            .root()
            .join(format!("cache/v2/{}.json", "d".repeat(64))),
        b"{tor",
    )
    .unwrap();

    let report = store.verify(false).unwrap();
    assert!(!report.is_consistent());
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::CorruptBlob { expected, .. } if *expected == layer.0))
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::StrayFile { .. }))
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::CorruptRecord { .. }))
    );
    assert!(
        store.has_blob(&layer.0),
        "verify without repair changes nothing"
    );

    let repaired = store.verify(true).unwrap();
    assert!(repaired.repaired);
    assert!(!store.has_blob(&layer.0));
    // The image lost its layer, so its ref is broken too and was removed in the same pass.
    assert!(
        repaired
            .problems
            .iter()
            .any(|p| matches!(p, Problem::BrokenRef { .. })),
        "{:?}",
        repaired.problems
    );
    assert!(store.verify(false).unwrap().is_consistent());
    assert_eq!(store.resolve_ref(&name("app")).unwrap(), None);
}

/// The child half of `a_writer_killed_mid_ingest_leaves_a_consistent_store`.
#[test]
#[ignore = "helper process for the crash test; does nothing on its own"]
fn crash_child_writes_forever() {
    let Some(root) = std::env::var_os("KILN_STORE_CRASH_ROOT") else {
        return;
    };
    let store = Store::open(root).unwrap();
    let _lock = store.lock(LockMode::Shared).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut writer = store.begin_blob(None, None).unwrap();
    for _ in 0..16_384 {
        writer.write_all(&chunk).unwrap();
        writer.flush().unwrap();
    }
    panic!("the parent should have killed this process long ago");
}

#[test]
fn a_writer_killed_mid_ingest_leaves_a_consistent_store() {
    let (_d, store) = store();
    let existing = store.put_bytes(b"committed before the crash").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writes_forever",
            "--ignored",
            "--nocapture",
        ])
        .env("KILN_STORE_CRASH_ROOT", store.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    let partial = loop {
        let found = fs_err::read_dir(store.root().join("tmp"))
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name().to_string_lossy().starts_with("ingest-")
                    && e.metadata().is_ok_and(|m| m.len() > 1 << 20)
            });
        if let Some(entry) = found {
            break entry.path();
        }
        assert!(Instant::now() < deadline, "the child never started writing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        std::thread::yield_now();
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The lock died with the child; nothing partial is visible.
    assert!(store.try_lock(LockMode::Exclusive).unwrap().is_some());
    let blobs: Vec<_> = fs_err::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert_eq!(blobs.len(), 1);
    let report = store.verify(false).unwrap();
    assert!(report.is_consistent(), "{:?}", report.problems);
    assert_eq!(report.leftover_temp, vec![partial.clone()]);
    let report = store.verify(true).unwrap();
    assert!(report.is_consistent());
    assert!(
        !partial.exists(),
        "repair removes the dead writer's temp file"
    );
    assert!(store.has_blob(&existing));
    assert!(store.verify(false).unwrap().leftover_temp.is_empty());
}

#[test]
fn refs_of_missing_images_are_refused_and_paths_are_stable() {
    let (_d, store) = store();
    let missing = Digest::sha256_of(b"absent");
    assert!(store.set_ref(&name("x"), &missing).is_err());
    assert!(
        store
            .blob_path(&missing)
            .starts_with(store.root().join("blobs/sha256"))
    );
    assert!(Path::new(&store.blob_path(&missing)).ends_with(missing.hex()));
}

#[test]
fn concurrent_unpacks_of_one_layer_end_with_one_snapshot() {
    let (_d, store) = store();
    let entries = (0..200)
        .map(|i| file(&format!("d{}/f{i}", i % 7), &"x".repeat(i)))
        .collect();
    let layer = put_layer(&store, entries);
    let chains: Vec<ChainId> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let layer = layer.clone();
                s.spawn(move || store.ensure_snapshot(None, &layer.1, &layer.0).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(chains.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(store.list_snapshots().unwrap().len(), 1);
    let snapshot = store.snapshot_path(&chains[0]);
    assert_eq!(
        fs_err::read_to_string(snapshot.join("d3/f10")).unwrap(),
        "x".repeat(10)
    );
    assert!(store.verify(true).unwrap().is_consistent());
    assert_no_temp_leftovers(&store);
}

/// A build's own layer is adopted as a snapshot without a sync, marked with the boot it was
/// made in: it is trusted in that boot, and removed (to be unpacked or rebuilt again) when a
/// later boot finds it, since a crash may have lost its data; GC removes markers with their
/// snapshots.
#[test]
fn unsynced_snapshots_of_an_earlier_boot_are_not_trusted() {
    let (dir, store) = store();
    let chain = ChainId::base(&DiffId(Digest::sha256_of(b"a layer")));
    let staged = dir.path().join("store/tmp/staged");
    fs_err::create_dir_all(&staged).unwrap();
    fs_err::write(staged.join("f"), "content").unwrap();
    store.adopt_snapshot(&staged, &chain).unwrap();
    assert!(!staged.exists());
    let snapshot = store.snapshot_path(&chain);
    assert_eq!(
        fs_err::read_to_string(snapshot.join("f")).unwrap(),
        "content"
    );
    assert!(
        store.has_snapshot(&chain),
        "trusted in the boot that made it"
    );
    let marker = snapshot.with_extension("unsynced");
    let boot = fs_err::read_to_string(&marker).unwrap();
    assert_eq!(
        boot.trim(),
        fs_err::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap_or_default()
            .trim()
    );
    // Adopting the same layer again keeps the first snapshot and drops the new tree.
    let again = dir.path().join("store/tmp/again");
    fs_err::create_dir_all(&again).unwrap();
    store.adopt_snapshot(&again, &chain).unwrap();
    assert!(!again.exists() && snapshot.is_dir());
    // The snapshot is listed as one (the marker is not a snapshot).
    assert_eq!(store.list_snapshots().unwrap().len(), 1);

    // After a reboot.
    fs_err::write(&marker, "00000000-0000-0000-0000-000000000000\n").unwrap();
    assert!(
        !store.has_snapshot(&chain),
        "an unsynced snapshot of another boot was trusted"
    );
    assert!(!snapshot.exists() && !marker.exists());

    // GC removes a marker with its snapshot.
    let staged = dir.path().join("store/tmp/staged2");
    fs_err::create_dir_all(&staged).unwrap();
    store.adopt_snapshot(&staged, &chain).unwrap();
    store.gc(&GcOptions::default()).unwrap();
    assert!(!snapshot.exists() && !marker.exists());
}
