//! kiln-registry against a real registry (`docker-registry serve`, CNCF distribution) on
//! loopback, cross-checked with skopeo and umoci; faults injected by an in-test proxy.
//! Every test needs the registry binary and says so in its name; without it (or skopeo,
//! umoci, htpasswd) the tests are skipped, or fail under `CI=true`.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use kiln_oci::{BlobSink as _, Digest, ImageRef, Platform};
use kiln_registry::{Client, ClientConfig, Progress, ProgressEvent, RegistryError, RetryPolicy};
use kiln_test::{Fault, FaultProxy, Registry, Rule};
use support::{DirStore, build_image, build_index, random_bytes};

/// Retries fast enough for tests, with the same shape as the defaults.
fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    }
}

fn config() -> ClientConfig {
    ClientConfig::new()
        .without_docker_config()
        .retry(fast_retries())
}

#[derive(Default)]
struct Recorder(Mutex<Vec<ProgressEvent>>);

impl Progress for Recorder {
    fn on_event(&self, event: &ProgressEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    fn retries(&self) -> Vec<(Duration, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::Retrying { delay, reason, .. } => Some((*delay, reason.clone())),
                _ => None,
            })
            .collect()
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
}

fn reference(text: &str) -> ImageRef {
    ImageRef::parse(text).unwrap()
}

fn amd64() -> Platform {
    Platform::new("linux", "amd64")
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_push_is_read_back_by_skopeo_and_unpacked_by_umoci() {
    let (registry, tmp) = start_registry();
    let src = DirStore::new(&tmp.path().join("src"));
    let image = build_image(
        &src,
        &[
            ("etc/small", random_bytes(1, 3000)),
            ("data/big", random_bytes(2, 600_000)),
        ],
        "amd64",
    );
    // The big layer (> 100 kB) goes up in 150 kB PATCH chunks, the rest in one PUT each.
    let client = Client::new(config().monolithic_limit(100_000).chunk_size(150_000)).unwrap();
    let host = &registry.host;
    let targets = [
        reference(&format!("{host}/test/app:v1")),
        reference(&format!("{host}/test/app:v2")),
        reference(&format!("{host}/test/app@{}", image.manifest)),
    ];
    let pushed = client
        .push_image(&src, &image.manifest, &targets)
        .await
        .unwrap();
    assert_eq!(
        (pushed.blobs_uploaded, pushed.blobs_present),
        (3, 0),
        "{pushed:?}"
    );
    assert_eq!(pushed.references.len(), 3);
    for tag in ["v1", "v2"] {
        assert_eq!(
            skopeo_raw(&format!("{host}/test/app:{tag}")),
            image.manifest_bytes,
            "tag {tag}"
        );
    }
    assert_eq!(
        skopeo_raw(&format!("{host}/test/app@{}", image.manifest)),
        image.manifest_bytes
    );

    let layout = tmp.path().join("out");
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/test/app:v1"),
        &format!("oci:{}:v1", layout.display()),
    ]));
    let bundle = tmp.path().join("bundle");
    let mut umoci = Command::new("umoci");
    umoci.args(["unpack", "--image", &format!("{}:v1", layout.display())]);
    if !kiln_test::is_root() {
        umoci.arg("--rootless");
    }
    run(umoci.arg(&bundle));
    for (path, content) in &image.files {
        let unpacked = fs_err::read(bundle.join("rootfs").join(path)).unwrap();
        assert!(unpacked == *content, "{path} differs after skopeo + umoci");
    }

    // A second push finds every blob with HEAD and uploads nothing.
    let again = client
        .push_image(&src, &image.manifest, &targets[..1])
        .await
        .unwrap();
    assert_eq!(
        (
            again.blobs_uploaded,
            again.blobs_present,
            again.bytes_uploaded
        ),
        (0, 3, 0)
    );
}

/// The set-up of most tests here: checks the tools, starts a registry without auth and makes
/// a scratch directory for the stores.
fn start_registry() -> (Registry, tempfile::TempDir) {
    require_registry_tools();
    (Registry::start(), tempfile::tempdir().unwrap())
}

/// The tools every test here uses: the registry itself, htpasswd for its auth, and skopeo and
/// umoci for the cross-checks.
fn require_registry_tools() {
    for tool in ["docker-registry", "skopeo", "umoci", "htpasswd"] {
        kiln_test::require_tool(tool);
    }
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_pull_then_push_keeps_the_manifest_digest_and_mounts_blobs() {
    let (registry, tmp) = start_registry();
    let host = &registry.host;
    let src = DirStore::new(&tmp.path().join("src"));
    let image = build_image(
        &src,
        &[("a", random_bytes(3, 5000)), ("b", random_bytes(4, 70_000))],
        "amd64",
    );
    src.tag(
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &image.manifest,
    );
    // skopeo, not kiln, puts the original in the registry.
    run(Command::new("skopeo").args([
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.root().display()),
        &format!("docker://{host}/origin/app:v1"),
    ]));
    let original = skopeo_raw(&format!("{host}/origin/app:v1"));
    let original_digest = Digest::sha256_of(&original);

    let dst = DirStore::new(&tmp.path().join("dst"));
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(config().progress(recorder.clone())).unwrap();
    let pulled = client
        .pull_image(&reference(&format!("{host}/origin/app:v1")), &amd64(), &dst)
        .await
        .unwrap();
    assert_eq!(pulled.resolved.digest(), &original_digest);
    assert_eq!((pulled.blobs_downloaded, pulled.blobs_present), (3, 0));
    assert_eq!(
        dst.read(&original_digest),
        original,
        "manifest bytes stored as served"
    );
    for layer in &image.layers {
        assert_eq!(dst.read(layer), src.read(layer));
    }

    let copy = reference(&format!("{host}/copy/app:v1"));
    let pushed = client
        .push_image(&dst, &original_digest, &[copy])
        .await
        .unwrap();
    assert_eq!(
        pushed.blobs_mounted, 3,
        "blobs seen in origin/app are mounted: {pushed:?}"
    );
    assert_eq!(pushed.bytes_uploaded, 0);
    assert_eq!(
        Digest::sha256_of(&skopeo_raw(&format!("{host}/copy/app:v1"))),
        original_digest
    );

    let again = client
        .pull_image(&reference(&format!("{host}/copy/app:v1")), &amd64(), &dst)
        .await
        .unwrap();
    assert_eq!(
        (
            again.blobs_downloaded,
            again.blobs_present,
            again.bytes_downloaded
        ),
        (0, 3, 0)
    );
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_index_push_and_platform_selection() {
    let (registry, tmp) = start_registry();
    let host = &registry.host;
    let src = DirStore::new(&tmp.path().join("src"));
    let amd = build_image(&src, &[("which", b"amd64".to_vec())], "amd64");
    let arm = build_image(&src, &[("which", b"arm64".to_vec())], "arm64");
    let (index, index_bytes) = build_index(&src, &[(&amd, "amd64"), (&arm, "arm64")]);
    let client = Client::new(config()).unwrap();
    let target = reference(&format!("{host}/multi/app:latest"));
    client
        .push_image(&src, &index, std::slice::from_ref(&target))
        .await
        .unwrap();
    assert_eq!(skopeo_raw(&format!("{host}/multi/app:latest")), index_bytes);
    assert_eq!(
        skopeo_raw(&format!("{host}/multi/app@{}", arm.manifest)),
        arm.manifest_bytes
    );

    let resolved = client
        .resolve(&target, &Platform::new("linux", "arm64"))
        .await
        .unwrap();
    assert_eq!(resolved.digest(), &arm.manifest);
    assert_eq!(resolved.index.as_ref().map(|i| &i.digest), Some(&index));
    assert_eq!(
        resolved.platform.as_ref().map(|p| p.architecture.as_str()),
        Some("arm64")
    );

    let dst = DirStore::new(&tmp.path().join("dst"));
    let pulled = client.pull_image(&target, &amd64(), &dst).await.unwrap();
    assert_eq!(pulled.resolved.digest(), &amd.manifest);
    assert!(dst.has_blob(&index) && dst.has_blob(&amd.layers[0]) && !dst.has_blob(&arm.layers[0]));

    let err = client
        .resolve(&target, &Platform::new("linux", "s390x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("linux/amd64, linux/arm64"),
        "{err}"
    );
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_with_htpasswd_needs_credentials_from_docker_config() {
    require_registry_tools();
    let registry = Registry::start_with_auth("kiln", "s3cret");
    let host = &registry.host;
    let tmp = tempfile::tempdir().unwrap();
    let src = DirStore::new(&tmp.path().join("src"));
    let image = build_image(&src, &[("f", random_bytes(5, 1000))], "amd64");
    let target = reference(&format!("{host}/private/app:v1"));
    let docker_config = tmp.path().join("docker").join("config.json");

    let anonymous = Client::new(config().docker_config(&docker_config)).unwrap();
    let err = anonymous
        .push_image(&src, &image.manifest, std::slice::from_ref(&target))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(host.as_str()) && message.contains(&format!("kiln login {host}")),
        "{message}"
    );
    let err = anonymous.resolve(&target, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err:?}");

    let write_auth = |password: &str| {
        fs_err::create_dir_all(docker_config.parent().unwrap()).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("kiln:{password}"));
        let json =
            serde_json::json!({"auths": {host.as_str(): {"auth": auth}}, "psFormat": "table"});
        fs_err::write(&docker_config, json.to_string()).unwrap();
    };
    write_auth("wrong");
    let rejected = Client::new(config().docker_config(&docker_config)).unwrap();
    let err = rejected.resolve(&target, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::AuthRejected { .. }), "{err:?}");
    assert!(err.to_string().contains(host.as_str()), "{err}");

    write_auth("s3cret");
    let authed = Client::new(config().docker_config(&docker_config)).unwrap();
    authed.check_login(host).await.unwrap();
    authed
        .push_image(&src, &image.manifest, std::slice::from_ref(&target))
        .await
        .unwrap();
    let dst = DirStore::new(&tmp.path().join("dst"));
    let pulled = authed.pull_image(&target, &amd64(), &dst).await.unwrap();
    assert_eq!(pulled.resolved.digest(), &image.manifest);
}

/// Pushes a two-layer image straight to the registry; returns it and its source store.
async fn seed(
    registry: &Registry,
    tmp: &std::path::Path,
    repo: &str,
) -> (support::TestImage, DirStore) {
    let src = DirStore::new(&tmp.join("src"));
    let image = build_image(
        &src,
        &[
            ("a", random_bytes(6, 200_000)),
            ("b", random_bytes(7, 300_000)),
        ],
        "amd64",
    );
    let target = reference(&format!("{}/{repo}:v1", registry.host));
    Client::new(config())
        .unwrap()
        .push_image(&src, &image.manifest, &[target])
        .await
        .unwrap();
    (image, src)
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_pull_through_faults_retries_and_resumes() {
    let (registry, tmp) = start_registry();
    let (image, src) = seed(&registry, tmp.path(), "faulty/app").await;
    let proxy = FaultProxy::start(&registry.host);
    let rule = |method, path: String, fault| Rule {
        method,
        path,
        times: 1,
        fault,
    };
    proxy.add(rule(
        "GET",
        "/manifests/v1".to_owned(),
        Fault::Status(503, None),
    ));
    proxy.add(rule("GET", format!("/blobs/{}", image.config), Fault::Drop));
    proxy.add(rule(
        "GET",
        format!("/blobs/{}", image.layers[0]),
        Fault::Status(429, Some(1)),
    ));
    proxy.add(rule(
        "GET",
        format!("/blobs/{}", image.layers[1]),
        Fault::Truncate(100_000),
    ));

    let dst = DirStore::new(&tmp.path().join("dst"));
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(config().progress(recorder.clone())).unwrap();
    let pulled = client
        .pull_image(
            &reference(&format!("{}/faulty/app:v1", proxy.host)),
            &amd64(),
            &dst,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\nproxy log: {:#?}", proxy.log()));
    assert_eq!(pulled.resolved.digest(), &image.manifest);
    for blob in image.layers.iter().chain([&image.config]) {
        assert!(dst.read(blob) == src.read(blob), "{blob} differs");
    }
    let retries = recorder.retries();
    assert!(
        retries.iter().any(|(_, r)| r.contains("503")),
        "{retries:?}"
    );
    assert!(
        retries
            .iter()
            .any(|(d, r)| r.contains("429") && *d == Duration::from_secs(1)),
        "Retry-After is honoured: {retries:?}"
    );
    let log = proxy.log();
    let resumed = format!(
        "GET /v2/faulty/app/blobs/{} range=bytes=100000-",
        image.layers[1]
    );
    assert!(
        log.contains(&resumed),
        "the truncated download resumes with a Range: {log:#?}"
    );
    assert!(
        !dst.files().iter().any(|f| f.starts_with(".tmp")),
        "{:?}",
        dst.files()
    );
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_corrupt_blob_is_refused_and_nothing_is_stored() {
    let (registry, tmp) = start_registry();
    let (image, _src) = seed(&registry, tmp.path(), "corrupt/app").await;
    let proxy = FaultProxy::start(&registry.host);
    let bad = &image.layers[1];
    proxy.add(Rule {
        method: "GET",
        path: format!("/blobs/{bad}"),
        times: usize::MAX,
        fault: Fault::Corrupt,
    });
    let dst = DirStore::new(&tmp.path().join("dst"));
    let client = Client::new(config()).unwrap();
    let err = client
        .pull_image(
            &reference(&format!("{}/corrupt/app:v1", proxy.host)),
            &amd64(),
            &dst,
        )
        .await
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch { expected, .. } => assert_eq!(expected, bad),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("nothing was stored"), "{err}");
    let files = dst.files();
    assert!(
        !files.contains(&bad.hex().to_owned()),
        "corrupt blob stored: {files:?}"
    );
    assert!(
        !files.contains(&image.manifest.hex().to_owned()),
        "manifest of a failed pull stored"
    );
    assert!(
        !files.iter().any(|f| f.starts_with(".tmp")),
        "temp files left: {files:?}"
    );
}

#[tokio::test]
#[cfg_attr(
    kiln_no_registry_tools,
    ignore = "needs docker-registry, skopeo, umoci and htpasswd"
)]
async fn registry_push_through_faults_retries_uploads() {
    let (registry, tmp) = start_registry();
    let src = DirStore::new(&tmp.path().join("src"));
    let image = build_image(
        &src,
        &[
            ("a", random_bytes(8, 50_000)),
            ("b", random_bytes(9, 250_000)),
        ],
        "amd64",
    );
    let proxy = FaultProxy::start(&registry.host);
    let rule = |method, path: &str, fault| Rule {
        method,
        path: path.to_owned(),
        times: 1,
        fault,
    };
    proxy.add(rule("POST", "/blobs/uploads/", Fault::Drop));
    proxy.add(rule("PUT", "/blobs/uploads/", Fault::Status(500, None)));
    proxy.add(rule("PATCH", "/blobs/uploads/", Fault::Status(502, None)));
    proxy.add(rule("PUT", "/manifests/v1", Fault::Status(429, Some(0))));
    let client = Client::new(config().monolithic_limit(100_000).chunk_size(100_000)).unwrap();
    let target = reference(&format!("{}/pushed/app:v1", proxy.host));
    client
        .push_image(&src, &image.manifest, &[target])
        .await
        .unwrap_or_else(|e| panic!("{e}\nproxy log: {:#?}", proxy.log()));
    assert_eq!(
        skopeo_raw(&format!("{}/pushed/app:v1", registry.host)),
        image.manifest_bytes
    );

    // A manifest refused for a blob the registry momentarily does not see (another runner
    // pushing the same blob): the blobs are checked again and the manifest is retried.
    proxy.add(rule(
        "PUT",
        "/manifests/v3",
        Fault::Answer(
            400,
            r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
        ),
    ));
    let target = reference(&format!("{}/pushed/app:v3", proxy.host));
    client
        .push_image(&src, &image.manifest, &[target])
        .await
        .unwrap_or_else(|e| panic!("{e}\nproxy log: {:#?}", proxy.log()));
    assert_eq!(
        skopeo_raw(&format!("{}/pushed/app:v3", registry.host)),
        image.manifest_bytes
    );
    let manifest_puts = proxy
        .log()
        .iter()
        .filter(|l| l.contains("PUT") && l.contains("/manifests/v3"))
        .count();
    assert_eq!(manifest_puts, 2, "{:#?}", proxy.log());

    // A registry that keeps failing: the push gives up with the status and the registry.
    proxy.add(Rule {
        method: "PUT",
        path: "/manifests/v2".to_owned(),
        times: usize::MAX,
        fault: Fault::Status(500, None),
    });
    let target = reference(&format!("{}/pushed/app:v2", proxy.host));
    let err = client
        .push_image(&src, &image.manifest, &[target])
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("500") && message.contains(proxy.host.as_str()),
        "{message}"
    );
}
