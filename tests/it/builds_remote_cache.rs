//! `--cache-to` / `--cache-from` (issue 17): a build cache shared between "runners" — fresh
//! `KILN_ROOT`s with nothing in common but the same base image — through the loopback
//! `docker-registry` or an OCI layout directory. skopeo is the independent check of what was
//! pushed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, run_ok};
use crate::registry::Registry;

const MULTI_STAGE: &str = "\
FROM busybox AS builder
COPY src/ /src/
RUN cat /src/a.txt /src/b.txt > /out.txt
RUN echo built >> /out.txt

FROM busybox
COPY --from=builder /out.txt /out.txt
COPY app.txt /app.txt
RUN cat /out.txt /app.txt > /final.txt
";

/// The kiln cache config's media type, as skopeo sees it in the pushed manifest.
const CACHE_CONFIG: &str = "application/vnd.kiln.cache.config.v1+json";

/// A fresh runner: its own store with the busybox base (the same image on every runner).
pub(crate) fn runner(tmp: &Path, name: &str) -> PathBuf {
    store_with_busybox(&tmp.join(name))
}

fn context(tmp: &Path) -> PathBuf {
    let ctx = tmp.join("ctx");
    for (rel, content) in [
        ("Dockerfile", MULTI_STAGE),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
        ("app.txt", "app v1\n"),
    ] {
        let path = ctx.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }
    ctx
}

/// The `#N … RUN|COPY …` header lines of a plain log, one per filesystem step.
fn fs_step_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with('#') && (l.contains("] RUN ") || l.contains("] COPY ")))
        .collect()
}

/// The manifest digest from the plain log's final `writing image … (manifest …)` line.
fn manifest_digest(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("writing image"))
        .unwrap_or_else(|| panic!("no writing image line:\n{log}"));
    let start = line.find("(manifest ").expect("manifest digest") + "(manifest ".len();
    line[start..].split(')').next().unwrap().to_owned()
}

fn assert_all_cached_from(log: &str, cache: &str) {
    let lines = fs_step_lines(log);
    assert_eq!(lines.len(), 6, "{log}");
    for line in lines {
        assert!(
            line.ends_with(&format!("CACHED (from {cache})")),
            "not an imported hit: {line}\n{log}"
        );
    }
    assert!(!log.contains("cache miss:"), "{log}");
}

/// skopeo's view of the pushed cache manifest (`--raw`).
fn skopeo_manifest(reference: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("manifest JSON")
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry, kiln_no_skopeo),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn registry_cache_max_makes_a_fresh_runner_warm_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let cache = format!("{}/cache/app:main", registry.host);
    let ctx = context(tmp.path());

    let store_a = runner(tmp.path(), "a");
    let log_a = build_plain(
        &store_a,
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    assert!(log_a.contains("cache miss:"), "{log_a}");

    // skopeo, independently: an OCI image manifest whose config is kiln's records and
    // whose layers are the layer blobs of every step that made one (5 of the 6).
    let manifest = skopeo_manifest(&cache);
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    assert_eq!(manifest["config"]["mediaType"], CACHE_CONFIG, "{manifest}");
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(layers.len() >= 5, "{manifest}");

    let store_b = runner(tmp.path(), "b");
    let log_b = build_plain(
        &store_b,
        &ctx,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert_all_cached_from(&log_b, &cache);
    assert_eq!(manifest_digest(&log_b), manifest_digest(&log_a));

    // One context edit: B re-runs only what depends on it; the rest hits.
    fs_err::write(ctx.join("app.txt"), "app v2\n").unwrap();
    let log_edit = build_plain(
        &store_b,
        &ctx,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    for line in fs_step_lines(&log_edit) {
        let depends_on_the_edit =
            line.contains("COPY app.txt") || line.contains("RUN cat /out.txt");
        assert_eq!(
            !line.contains(" CACHED"),
            depends_on_the_edit,
            "{line}\n{log_edit}"
        );
    }
    assert!(
        log_edit.contains("cache miss: file app.txt changed"),
        "{log_edit}"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry),
    ignore = "needs root, busybox, docker-registry"
)]
fn registry_cache_min_leaves_builder_stages_out_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let cache = format!("{}/cache/app:min", registry.host);
    let ctx = context(tmp.path());
    let store_a = runner(tmp.path(), "a");
    build_plain(
        &store_a,
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache},mode=min")],
    );
    let store_b = runner(tmp.path(), "b");
    let log_b = build_plain(
        &store_b,
        &ctx,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    let builder_steps: Vec<&str> = fs_step_lines(&log_b)
        .into_iter()
        .filter(|l| l.contains("[builder "))
        .collect();
    assert_eq!(builder_steps.len(), 3, "{log_b}");
    for line in builder_steps {
        assert!(
            !line.contains("CACHED"),
            "a builder step hit under min: {line}\n{log_b}"
        );
    }
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn local_cache_round_trip_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path());
    let dir = tmp.path().join("ci-cache");
    let store_a = runner(tmp.path(), "a");
    let log_a = build_plain(
        &store_a,
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", dir.display()),
        ],
    );
    assert!(dir.join("index.json").is_file() && dir.join("oci-layout").is_file());
    let store_b = runner(tmp.path(), "b");
    let log_b = build_plain(
        &store_b,
        &ctx,
        &["--cache-from", &format!("type=local,src={}", dir.display())],
    );
    assert_all_cached_from(&log_b, &dir.display().to_string());
    assert_eq!(manifest_digest(&log_b), manifest_digest(&log_a));
    // Exported again over the same directory: replaced whole, still a cache.
    build_plain(
        &store_b,
        &ctx,
        &["--cache-to", &format!("type=local,dest={}", dir.display())],
    );
    assert!(dir.join("index.json").is_file());
    // compression-level makes blobs of its own, not the build's gzip level 6 ones.
    let level_one = tmp.path().join("level-1");
    build_plain(
        &store_a,
        &ctx,
        &[
            "--cache-to",
            &format!(
                "type=local,dest={},compression-level=1",
                level_one.display()
            ),
        ],
    );
    let (default_layers, level_one_layers) = (layout_layers(&dir), layout_layers(&level_one));
    assert_eq!(default_layers.len(), level_one_layers.len());
    assert!(
        default_layers.iter().all(|d| !level_one_layers.contains(d)),
        "{default_layers:?} {level_one_layers:?}"
    );
}

/// The layer digests of the cache manifest of the OCI layout `dir`.
fn layout_layers(dir: &Path) -> Vec<String> {
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let bytes = fs_err::read(dir.join("blobs/sha256").join(hex)).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry),
    ignore = "needs root, busybox, docker-registry"
)]
fn an_unusable_cache_from_is_a_warning_and_the_build_goes_on_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let missing = format!("{}/cache/nothing:here", registry.host);
    let ctx = context(tmp.path());
    let store = runner(tmp.path(), "a");
    let not_a_layout = tmp.path().join("not-a-layout");
    fs_err::create_dir_all(&not_a_layout).unwrap();
    let log = build_plain(
        &store,
        &ctx,
        &[
            "--cache-from",
            &format!("type=registry,ref={missing}"),
            "--cache-from",
            &format!("type=local,src={}", not_a_layout.display()),
        ],
    );
    assert!(
        log.contains(&format!("WARNING: --cache-from {missing}: ")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "WARNING: --cache-from {}: ",
            not_a_layout.display()
        )),
        "{log}"
    );
    assert!(log.contains("building without this cache"), "{log}");
    // A failed export fails the build, unless ignore-error=true.
    let unwritable = "type=registry,ref=127.0.0.1:1/cache/app:x";
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--cache-to", unwritable])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--cache-to 127.0.0.1:1/cache/app:x"),
        "{stderr}"
    );
    let log = build_plain(
        &store,
        &ctx,
        &["--cache-to", &format!("{unwritable},ignore-error=true")],
    );
    assert!(log.contains("ignored: ignore-error=true"), "{log}");
}

/// The layer digests of the cache manifest at `reference`.
fn cache_layers(reference: &str) -> Vec<String> {
    skopeo_manifest(reference)["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect()
}

/// The `GET`s of any of `layers` among the proxy's request lines `log`.
fn layer_downloads<'l>(log: &'l [String], layers: &[String]) -> Vec<&'l String> {
    log.iter()
        .filter(|l| l.starts_with("GET ") && layers.iter().any(|d| l.contains(d.as_str())))
        .collect()
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry, kiln_no_skopeo),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn a_cached_build_pushed_to_the_cache_registry_downloads_no_layer_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    // Every request of runner B goes through the proxy, which logs it: the counter.
    let proxy = kiln_test::FaultProxy::start(&registry.host);
    let cache = format!("{}/cache/app:main", proxy.host);
    let ctx = context(tmp.path());
    let store_a = runner(tmp.path(), "a");
    let log_a = build_plain(
        &store_a,
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    let layers = cache_layers(&cache);
    assert!(layers.len() >= 5, "{layers:?}");

    let store_b = runner(tmp.path(), "b");
    let seen_before = proxy.log().len();
    let image = format!("{}/app:b", proxy.host);
    let log_b = build_plain(
        &store_b,
        &ctx,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "--output",
            &format!("type=image,name={image},push=true"),
        ],
    );
    assert_all_cached_from(&log_b, &cache);
    assert_eq!(manifest_digest(&log_b), manifest_digest(&log_a));
    let log = proxy.log()[seen_before..].to_vec();
    let downloads = layer_downloads(&log, &layers);
    assert!(
        downloads.is_empty(),
        "runner B downloaded cached layers: {downloads:#?}\nall requests: {log:#?}"
    );
    // The cache's layers reached the image's repository by a cross-repository mount.
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST ") && l.contains("mount=")),
        "{log:#?}"
    );
    // skopeo, independently: the pushed image is the build's manifest, whole.
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("running skopeo");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        manifest_digest(&log_b)
    );
    // Runner B's store is sound: it holds nothing it has not verified.
    run_ok(kiln_in(&store_b).args(["store", "verify"]));

    // A step that misses runs on the imported layers below it: now they are fetched.
    fs_err::write(ctx.join("app.txt"), "app v2\n").unwrap();
    let seen_before = proxy.log().len();
    let log_edit = build_plain(
        &store_b,
        &ctx,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert!(
        log_edit.contains("cache miss: file app.txt changed"),
        "{log_edit}"
    );
    let log = proxy.log()[seen_before..].to_vec();
    assert!(!layer_downloads(&log, &layers).is_empty(), "{log:#?}");
    run_ok(kiln_in(&store_b).args(["store", "verify"]));
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry, kiln_no_skopeo),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn a_cached_layer_that_is_corrupt_or_unreachable_is_a_warning_and_its_steps_run_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let proxy = kiln_test::FaultProxy::start(&registry.host);
    let cache = format!("{}/cache/app:main", proxy.host);
    let ctx = context(tmp.path());
    let store_a = runner(tmp.path(), "a");
    build_plain(
        &store_a,
        &ctx,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    let layers = cache_layers(&cache);
    for (case, fault) in [
        ("corrupt", kiln_test::Fault::Corrupt),
        ("500", kiln_test::Fault::Status(500, None)),
        ("dropped", kiln_test::Fault::Drop),
    ] {
        // Every download of every cached layer fails this way.
        for layer in &layers {
            proxy.add(kiln_test::Rule {
                method: "GET",
                path: layer.clone(),
                times: 100,
                fault: fault.clone(),
            });
        }
        let store_b = runner(tmp.path(), &format!("b-{case}"));
        // `-t` keeps the image here, so its layers are needed.
        let log_b = build_plain(
            &store_b,
            &ctx,
            &[
                "--cache-from",
                &format!("type=registry,ref={cache}"),
                "-t",
                "app:b",
            ],
        );
        assert!(
            log_b.contains(&format!("WARNING: --cache-from {cache}: layer sha256:")),
            "{case}: {log_b}"
        );
        assert!(
            log_b.contains("building again without it"),
            "{case}: {log_b}"
        );
        // The steps whose layers could not come ran instead.
        assert!(log_b.contains("cache miss:"), "{case}: {log_b}");
        run_ok(kiln_in(&store_b).args(["store", "verify"]));
        proxy.clear_rules();
    }

    // Faults on the records themselves: the cache is left out with a warning, the build
    // runs every step.
    let config = skopeo_manifest(&cache)["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_owned();
    for (case, path, fault) in [
        (
            "manifest 500",
            "/manifests/",
            kiln_test::Fault::Status(500, None),
        ),
        ("manifest dropped", "/manifests/", kiln_test::Fault::Drop),
        ("garbage config", config.as_str(), kiln_test::Fault::Corrupt),
    ] {
        proxy.add(kiln_test::Rule {
            method: "GET",
            path: path.to_owned(),
            times: 100,
            fault,
        });
        let store_b = runner(tmp.path(), &format!("b-{}", case.replace(' ', "-")));
        let log_b = build_plain(
            &store_b,
            &ctx,
            &["--cache-from", &format!("type=registry,ref={cache}")],
        );
        assert!(
            log_b.contains(&format!("WARNING: --cache-from {cache}: "))
                && log_b.contains("building without this cache"),
            "{case}: {log_b}"
        );
        assert!(!log_b.contains("CACHED (from"), "{case}: {log_b}");
        run_ok(kiln_in(&store_b).args(["store", "verify"]));
        proxy.clear_rules();
    }

    // A manifest of something else (an image) is not trusted as a cache.
    let image = format!("{}/app:image", proxy.host);
    build_plain(
        &store_a,
        &ctx,
        &["--output", &format!("type=image,name={image},push=true")],
    );
    let log = build_plain(
        &runner(tmp.path(), "b-foreign"),
        &ctx,
        &["--cache-from", &format!("type=registry,ref={image}")],
    );
    assert!(log.contains("not a kiln cache"), "{log}");
}

/// A copy of the context under `name` whose `app.txt` says `app`.
fn context_with_app(tmp: &Path, name: &str, app: &str) -> PathBuf {
    let ctx = tmp.join(name);
    for (rel, content) in [
        ("Dockerfile", MULTI_STAGE),
        ("src/a.txt", "a\n"),
        ("src/b.txt", "b\n"),
        ("app.txt", app),
    ] {
        let path = ctx.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }
    ctx
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry),
    ignore = "needs root, busybox, docker-registry"
)]
fn an_export_to_the_ref_it_imported_keeps_the_other_branches_steps_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let cache = format!("{}/cache/app:shared", registry.host);
    let from = format!("type=registry,ref={cache}");
    let to = format!("type=registry,ref={cache},mode=max");
    let ctx_one = context_with_app(tmp.path(), "one", "app one\n");
    let ctx_two = context_with_app(tmp.path(), "two", "app two\n");
    build_plain(&runner(tmp.path(), "a"), &ctx_one, &["--cache-to", &to]);
    // Runner B builds the other branch, importing and exporting the same ref.
    let log_b = build_plain(
        &runner(tmp.path(), "b"),
        &ctx_two,
        &["--cache-from", &from, "--cache-to", &to],
    );
    assert!(
        log_b.contains("cache miss: file app.txt changed"),
        "{log_b}"
    );
    // A fresh runner on the first branch: every step hits, A's records survived B's export.
    let log_c = build_plain(&runner(tmp.path(), "c"), &ctx_one, &["--cache-from", &from]);
    assert_all_cached_from(&log_c, &cache);
    // And the second branch's too.
    let log_d = build_plain(&runner(tmp.path(), "d"), &ctx_two, &["--cache-from", &from]);
    assert_all_cached_from(&log_d, &cache);
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry, kiln_no_skopeo),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn four_concurrent_runners_share_one_registry_cache_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let cache = format!("{}/cache/app:ci", registry.host);
    let from = format!("type=registry,ref={cache}");
    let to = format!("type=registry,ref={cache},mode=max");
    // Four runners, each its own store and branch, all importing and exporting one ref at
    // once: every build succeeds, whoever pushes last wins.
    let runners: Vec<(PathBuf, PathBuf)> = (0..4)
        .map(|n| {
            (
                runner(tmp.path(), &format!("r{n}")),
                context_with_app(tmp.path(), &format!("ctx{n}"), &format!("app {n}\n")),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        for (store, ctx) in &runners {
            let (from, to) = (&from, &to);
            scope.spawn(move || {
                build_plain(store, ctx, &["--cache-from", from, "--cache-to", to]);
            });
        }
    });
    // skopeo, independently: the ref is a whole cache manifest, every blob of it there.
    let manifest = skopeo_manifest(&cache);
    assert_eq!(manifest["config"]["mediaType"], CACHE_CONFIG, "{manifest}");
    let copy = tmp.path().join("copied");
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{cache}"))
        .arg(format!("oci:{}:c", copy.display()))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo copy of the cache: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It serves a fifth runner: the builder stage, the same on every branch, hits whole.
    let log = build_plain(
        &runner(tmp.path(), "r5"),
        &runners[0].1,
        &["--cache-from", &from],
    );
    let builder: Vec<&str> = fs_step_lines(&log)
        .into_iter()
        .filter(|l| l.contains("[builder "))
        .collect();
    assert_eq!(builder.len(), 3, "{log}");
    for line in builder {
        assert!(
            line.ends_with(&format!("CACHED (from {cache})")),
            "{line}\n{log}"
        );
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_docker_registry, kiln_no_skopeo),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn an_inline_cache_rides_in_the_pushed_image_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy.txt\n",
    )
    .unwrap();
    fs_err::write(ctx.join("app.txt"), "app\n").unwrap();
    let image = format!("{}/app:inline", registry.host);
    let log_a = build_plain(
        &runner(tmp.path(), "a"),
        &ctx,
        &[
            "--cache-to",
            "type=inline",
            "--output",
            &format!("type=image,name={image},push=true"),
        ],
    );
    // skopeo, independently: an ordinary image manifest, the records in an annotation.
    let manifest = skopeo_manifest(&image);
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json",
        "{manifest}"
    );
    let records = manifest["annotations"]["dev.kiln.cache.config.v1"]
        .as_str()
        .unwrap_or_else(|| panic!("no inline cache annotation: {manifest}"));
    assert!(records.contains("\"records\""), "{records}");
    let log_b = build_plain(&runner(tmp.path(), "b"), &ctx, &["--cache-from", &image]);
    let lines = fs_step_lines(&log_b);
    assert_eq!(lines.len(), 2, "{log_b}");
    for line in lines {
        assert!(
            line.ends_with(&format!("CACHED (from {image})")),
            "{line}\n{log_b}"
        );
    }
    // An unchanged rebuild with the inline cache makes the same manifest.
    let log_again = build_plain(
        &runner(tmp.path(), "c"),
        &ctx,
        &["--cache-from", &image, "--cache-to", "type=inline"],
    );
    assert_eq!(manifest_digest(&log_again), manifest_digest(&log_a));
}

#[test]
fn cache_flags_refuse_unknown_and_unimplemented_options() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, spec, expected) in [
        (
            "--cache-to",
            "type=inline,mode=max",
            "mode=max is not valid",
        ),
        (
            "--cache-to",
            "type=registry,ref=r.test/c:t,force-compression=true",
            "key `force-compression` is not supported yet",
        ),
        (
            "--cache-to",
            "type=registry,ref=r.test/c:t,cache-mounts=maybe",
            "cache-mounts=maybe is not valid (expected true or false)",
        ),
        (
            "--cache-from",
            "type=registry,ref=r.test/c:t,cache-mounts=true",
            "unknown key `cache-mounts`",
        ),
        ("--cache-to", "type=gha", "unknown type `gha`"),
        (
            "--cache-from",
            "type=registry,ref=r.test/c:t,mode=max",
            "unknown key `mode`",
        ),
    ] {
        let out = run_fails(
            kiln_in(tmp.path())
                .args(["build", flag, spec])
                .arg(tmp.path()),
            2,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{flag} {spec}: {stderr}");
    }
}
