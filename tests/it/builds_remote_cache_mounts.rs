//! `--cache-to` / `--cache-from` with `cache-mounts=true`: the content of RUN cache mounts
//! travels with the build cache (registry or local), within `cache-mounts-max-size`; a mount
//! that cannot be fetched is a warning and the RUN gets an empty mount.

use std::path::{Path, PathBuf};

use crate::builds_remote_cache::runner;
use crate::common::build_plain;
use crate::registry::Registry;

/// A RUN fills a cache mount with a value no other build makes (once: when the mount is
/// empty), a later RUN copies what the mount holds into the image: `/was-warm` tells which
/// build filled the mount. The COPY before them is what a second runner changes to miss.
const CACHE_MOUNT_DOCKERFILE: &str = "\
FROM busybox
COPY stamp.txt /stamp.txt
RUN --mount=type=cache,target=/root/.cache sh -c 'test -f /root/.cache/filled || cat /proc/sys/kernel/random/uuid > /root/.cache/filled'
RUN --mount=type=cache,target=/root/.cache cp /root/.cache/filled /was-warm
";

fn cache_mount_context(tmp: &Path, stamp: &str) -> PathBuf {
    let ctx = tmp.join("mount-ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(ctx.join("Dockerfile"), CACHE_MOUNT_DOCKERFILE).unwrap();
    fs_err::write(ctx.join("stamp.txt"), stamp).unwrap();
    ctx
}

/// Builds `ctx` into `out` (`type=local`) with `extra` flags; returns the log and the
/// image's `/was-warm`.
fn build_was_warm(store: &Path, ctx: &Path, out: &Path, extra: &[&str]) -> (String, String) {
    let dest = format!("type=local,dest={}", out.display());
    let mut args = vec!["--output", &dest];
    args.extend_from_slice(extra);
    let log = build_plain(store, ctx, &args);
    let was_warm = fs_err::read_to_string(out.join("was-warm")).unwrap();
    (log, was_warm)
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry),
    ignore = "needs root, busybox, docker-registry"
)]
fn cache_mounts_travel_through_a_registry_cache_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let cache = format!("{}/cache/mounts:main", registry.host);
    let ctx = cache_mount_context(tmp.path(), "one\n");
    let store_a = runner(tmp.path(), "a");
    let (log_a, filled_by_a) = build_was_warm(
        &store_a,
        &ctx,
        &tmp.path().join("out-a"),
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max,cache-mounts=true"),
        ],
    );
    assert!(!log_a.contains("WARNING"), "{log_a}");
    assert_eq!(filled_by_a.trim().len(), 36, "a uuid: {filled_by_a}");

    // A fresh runner with another stamp: both RUNs miss, and the mount they use holds what
    // A's build put there.
    fs_err::write(ctx.join("stamp.txt"), "two\n").unwrap();
    let store_b = runner(tmp.path(), "b");
    let (log_b, seen_by_b) = build_was_warm(
        &store_b,
        &ctx,
        &tmp.path().join("out-b"),
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert!(
        log_b.contains("cache miss: file stamp.txt changed"),
        "{log_b}"
    );
    assert!(!log_b.contains("WARNING"), "{log_b}");
    assert_eq!(seen_by_b, filled_by_a, "B's mount was not A's\n{log_b}");

    // Without cache-mounts=true the mount stays home: a third runner fills its own.
    let plain = format!("{}/cache/mounts:plain", registry.host);
    build_plain(
        &runner(tmp.path(), "c"),
        &ctx,
        &["--cache-to", &format!("type=registry,ref={plain},mode=max")],
    );
    fs_err::write(ctx.join("stamp.txt"), "three\n").unwrap();
    let (_, seen_by_d) = build_was_warm(
        &runner(tmp.path(), "d"),
        &ctx,
        &tmp.path().join("out-d"),
        &["--cache-from", &format!("type=registry,ref={plain}")],
    );
    assert_ne!(seen_by_d, filled_by_a);
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn cache_mounts_travel_through_a_local_cache_and_keep_local_content_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ci-cache");
    let ctx = cache_mount_context(tmp.path(), "one\n");
    let store_a = runner(tmp.path(), "a");
    let (_, filled_by_a) = build_was_warm(
        &store_a,
        &ctx,
        &tmp.path().join("out-a"),
        &[
            "--cache-to",
            &format!(
                "type=local,dest={},mode=max,cache-mounts=true",
                dir.display()
            ),
        ],
    );
    fs_err::write(ctx.join("stamp.txt"), "two\n").unwrap();
    let from = format!("type=local,src={}", dir.display());
    let store_b = runner(tmp.path(), "b");
    let (_, seen_by_b) = build_was_warm(
        &store_b,
        &ctx,
        &tmp.path().join("out-b"),
        &["--cache-from", &from],
    );
    assert_eq!(seen_by_b, filled_by_a);

    // A store whose mount has content keeps it: nothing is restored over it.
    let store_c = runner(tmp.path(), "c");
    fs_err::write(ctx.join("stamp.txt"), "three\n").unwrap();
    let (_, filled_by_c) = build_was_warm(&store_c, &ctx, &tmp.path().join("out-c"), &[]);
    assert_ne!(filled_by_c, filled_by_a);
    fs_err::write(ctx.join("stamp.txt"), "four\n").unwrap();
    let (_, seen_by_c) = build_was_warm(
        &store_c,
        &ctx,
        &tmp.path().join("out-c2"),
        &["--cache-from", &from],
    );
    assert_eq!(seen_by_c, filled_by_c, "the local mount was replaced");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn cache_mounts_past_the_max_size_are_left_out_with_a_warning_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ci-cache");
    let ctx = cache_mount_context(tmp.path(), "one\n");
    let (log_a, filled_by_a) = build_was_warm(
        &runner(tmp.path(), "a"),
        &ctx,
        &tmp.path().join("out-a"),
        &[
            "--cache-to",
            &format!(
                "type=local,dest={},mode=max,cache-mounts=true,cache-mounts-max-size=1",
                dir.display()
            ),
        ],
    );
    assert!(
        log_a.contains("cache mount `/root/.cache`")
            && log_a.contains("holds 37 bytes, which would pass cache-mounts-max-size"),
        "{log_a}"
    );
    fs_err::write(ctx.join("stamp.txt"), "two\n").unwrap();
    let (_, seen_by_b) = build_was_warm(
        &runner(tmp.path(), "b"),
        &ctx,
        &tmp.path().join("out-b"),
        &["--cache-from", &format!("type=local,src={}", dir.display())],
    );
    assert_ne!(seen_by_b, filled_by_a, "the skipped mount was restored");
}

/// The layer digest of the one cache mount in the OCI layout cache `dir`.
fn layout_cache_mount_blob(dir: &Path) -> PathBuf {
    let read_json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        let digest = digest.as_str().expect("digest");
        dir.join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").expect("sha256"))
    };
    let index = read_json(dir.join("index.json"));
    let manifest = read_json(blob(&index["manifests"][0]["digest"]));
    let config = read_json(blob(&manifest["config"]["digest"]));
    let mounts = config["cacheMounts"].as_object().expect("cacheMounts");
    assert_eq!(mounts.len(), 1, "{config}");
    let (_, layer) = mounts.iter().next().unwrap();
    blob(&layer["digest"])
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn a_cache_mount_that_cannot_be_fetched_is_a_warning_and_the_run_gets_an_empty_mount_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ci-cache");
    let ctx = cache_mount_context(tmp.path(), "one\n");
    let (_, filled_by_a) = build_was_warm(
        &runner(tmp.path(), "a"),
        &ctx,
        &tmp.path().join("out-a"),
        &[
            "--cache-to",
            &format!(
                "type=local,dest={},mode=max,cache-mounts=true",
                dir.display()
            ),
        ],
    );
    // The mount's blob, corrupted in the directory: its digest no longer matches.
    let blob = layout_cache_mount_blob(&dir);
    let len = fs_err::metadata(&blob).unwrap().len();
    fs_err::write(&blob, vec![0u8; usize::try_from(len).unwrap()]).unwrap();
    fs_err::write(ctx.join("stamp.txt"), "two\n").unwrap();
    let (log_b, seen_by_b) = build_was_warm(
        &runner(tmp.path(), "b"),
        &ctx,
        &tmp.path().join("out-b"),
        &["--cache-from", &format!("type=local,src={}", dir.display())],
    );
    assert!(
        log_b.contains(&format!(
            "WARNING: --cache-from {}: cache mount `/root/.cache`",
            dir.display()
        )) && log_b.contains("the RUN uses the empty mount"),
        "{log_b}"
    );
    assert_ne!(seen_by_b, filled_by_a);
    assert_eq!(seen_by_b.trim().len(), 36, "B filled its own: {seen_by_b}");
}
