//! The store through the CLI: `kiln store verify` after a `kill -9` in the middle of an
//! import, corruption found and repaired, `kiln prune` after `kiln rmi`, and `kiln prune`
//! waiting for a running build.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::builds::store_with_busybox;
use crate::common::{busybox_rootfs, kiln_in, run_fails, run_ok};

fn blob_count(store: &Path) -> usize {
    fs_err::read_dir(store.join("blobs/sha256")).map_or(0, Iterator::count)
}

#[test]
fn kill_9_during_import_leaves_a_store_verify_finds_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("big");
    fs_err::create_dir_all(&tree).unwrap();
    // Incompressible content so the single-threaded gzip takes a while.
    let mut file = fs_err::File::create(tree.join("random.bin")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..96 {
        for byte in &mut chunk {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state.to_le_bytes()[0];
        }
        file.write_all(&chunk).unwrap();
    }
    drop(file);
    let store = tmp.path().join("store");
    run_ok(kiln_in(&store).arg("images")); // creates the store
    let before = blob_count(&store);

    let mut child = kiln_in(&store)
        .arg("import")
        .arg(&tree)
        .args(["-t", "half:done", "--compression-threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(2);
    let is_writing = |store: &Path| {
        fs_err::read_dir(store.join("tmp"))
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name().to_string_lossy().starts_with("ingest-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
    };
    while !is_writing(&store) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import finished before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the import never started writing its layer"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(blob_count(&store), before, "no partial blob is visible");
    let images = run_ok(kiln_in(&store).arg("images"));
    assert!(!images.contains("half"), "{images}");
    let verify = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verify.contains("store is consistent"), "{verify}");
    assert!(verify.contains("leftover temp file"), "{verify}");
    let repaired = run_ok(kiln_in(&store).args(["store", "verify", "--repair"]));
    assert!(
        repaired.contains("removed: leftover temp file"),
        "{repaired}"
    );
    let clean = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(!clean.contains("leftover"), "{clean}");
}

#[test]
#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]
fn verify_reports_corruption_and_prune_collects_removed_images() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let store = tmp.path().join("store");
    run_ok(
        kiln_in(&store)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", "keep"]),
    );
    fs_err::write(rootfs.join("etc/extra"), "changed").unwrap();
    run_ok(
        kiln_in(&store)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", "drop"]),
    );
    assert_eq!(blob_count(&store), 6);

    run_ok(kiln_in(&store).args(["rmi", "drop"]));
    let dry = run_ok(kiln_in(&store).args(["prune", "--dry-run"]));
    assert!(dry.contains("Would remove 3 blobs"), "{dry}");
    assert_eq!(blob_count(&store), 6);
    let pruned = run_ok(kiln_in(&store).arg("prune"));
    assert!(pruned.contains("Removed 3 blobs"), "{pruned}");
    assert_eq!(blob_count(&store), 3);
    run_ok(kiln_in(&store).args(["inspect", "keep"]));

    // Flip a byte of the layer: verify fails (exit 1) naming it; repair removes it.
    let info: serde_json::Value =
        serde_json::from_str(&run_ok(kiln_in(&store).args(["inspect", "keep"]))).unwrap();
    let layer = info["Manifest"]["layers"][0]["digest"].as_str().unwrap();
    let path = store.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = fs_err::read(&path).unwrap();
    bytes[100] ^= 0x55;
    fs_err::write(&path, bytes).unwrap();
    let out = run_fails(kiln_in(&store).args(["store", "verify"]), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("corrupt blob") && stdout.contains(&layer[7..]),
        "{stdout}"
    );
    let repaired = run_ok(kiln_in(&store).args(["store", "verify", "--repair"]));
    assert!(repaired.contains("repaired"), "{repaired}");
    let clean = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(clean.contains("store is consistent"), "{clean}");
    // The broken image's name went with its layer.
    run_fails(kiln_in(&store).args(["inspect", "keep"]), 1);
}

#[test]
fn a_store_of_another_layout_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    fs_err::create_dir_all(&store).unwrap();
    fs_err::write(store.join("layout-version"), "7\n").unwrap();
    let out = run_fails(kiln_in(&store).arg("images"), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("layout version 7"), "{stderr}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn prune_waits_for_a_running_build_root() {
    use std::io::BufRead as _;
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN echo one > /one\n\
         RUN sleep 3\n",
    )
    .unwrap();
    let mut child = kiln_in(&store)
        .args(["build", "--progress", "plain", "-t", "during-prune"])
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first RUN's layer is made and the build sleeps in the second.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut line = String::new();
    while !log.contains("RUN sleep 3\n") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the build ended before its last step:\n{log}"
        );
        log.push_str(&line);
    }
    // `--all` drops every cache record: without the build's lock it would delete the first
    // RUN's layer, which only the running build knows about.
    let prune = kiln_in(&store)
        .args(["prune", "--all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    let status = child.wait().unwrap();
    let build_done = Instant::now();
    let log = log + &rest.join().unwrap();
    assert!(status.success(), "the build failed:\n{log}");
    let pruned = prune.wait_with_output().unwrap();
    let prune_done = Instant::now();
    assert!(pruned.status.success(), "{pruned:?}");
    assert!(
        prune_done >= build_done,
        "prune finished before the build it should have waited for"
    );
    let prune_err = String::from_utf8_lossy(&pruned.stderr);
    assert!(
        prune_err.contains("waiting for running kiln builds"),
        "prune did not wait: {prune_err}"
    );
    let verify = run_ok(kiln_in(&store).args(["store", "verify"]));
    assert!(verify.contains("store is consistent"), "{verify}");
    let out = run_ok(kiln_in(&store).args(["run", "during-prune", "cat", "/one"]));
    assert_eq!(out.trim(), "one");
}

#[test]
fn prune_takes_buildx_spellings_and_refuses_other_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let out = run_ok(kiln_in(&store).args([
        "prune",
        "--keep-storage",
        "1GB",
        "--filter",
        "until=24h",
        "--force",
        "--dry-run",
    ]));
    assert!(out.starts_with("Would remove "), "{out}");
    for (args, named) in [
        (&["prune", "--filter", "type=regular"][..], "type"),
        (
            &["prune", "--filter", "until=1h", "--older-than", "2h"][..],
            "--older-than",
        ),
        (&["prune", "--filter", "until=soon"][..], "soon"),
    ] {
        let out = run_fails(kiln_in(&store).args(args), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn df_shows_what_the_store_holds_and_what_prune_would_reclaim_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM busybox AS scratchwork\nRUN head -c 100000 /dev/zero > /big\n\
         FROM busybox\nRUN echo kept > /kept\n",
    )
    .unwrap();
    run_ok(
        kiln_in(&store)
            .args(["build", "-q", "--target", "scratchwork"])
            .arg(&ctx),
    );
    run_ok(kiln_in(&store).args(["build", "-q", "-t", "app"]).arg(&ctx));
    let json = run_ok(kiln_in(&store).args(["df", "--format", "json"]));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["images"], 2, "busybox and app: {doc}");
    let kinds = &doc["kinds"];
    for kind in ["blobs", "snapshots", "cache records"] {
        assert!(kinds[kind]["items"].as_u64().unwrap() > 0, "{kind}: {doc}");
        assert!(kinds[kind]["bytes"].as_u64().unwrap() > 0, "{kind}: {doc}");
    }
    let sum: u64 = kinds
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(doc["total_bytes"].as_u64().unwrap(), sum, "{doc}");
    // The unused builder stage's snapshot goes with `prune --all`, not with a plain prune.
    let all = doc["reclaimable_with_cache_bytes"].as_u64().unwrap();
    assert!(all >= 100_000, "{doc}");
    assert!(doc["reclaimable_bytes"].as_u64().unwrap() <= all, "{doc}");
    let table = run_ok(kiln_in(&store).arg("du"));
    assert!(table.starts_with("KIND"), "{table}");
    assert!(table.contains("reclaimable:"), "{table}");
}
