//! The Dockerfile projects under `examples/`, built with the real binary on the offline bases
//! `examples/bases.sh` makes (busybox, debian:bookworm-slim, python:3.11-slim), then checked
//! from outside: config, size, stages that ran, skopeo and umoci, and `kiln run`.
//!
//! The Debian-based tests are heavy (mmdebstrap + the Debian mirror; the first run bootstraps
//! the root filesystems into ~/.cache/kiln-examples, later runs reuse them) and named
//! `heavy_*`: nextest's default profile leaves them out, `--profile full` (`.ci/test`) runs
//! them, as root.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{build_plain, busybox_binary, kiln_in, run_fails, run_ok};

pub(crate) fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Needs what `examples/bases.sh` needs to make the Debian bases: root (mmdebstrap
/// --mode=root), mmdebstrap, jq and flock (and the Debian mirror, which is not probed).
pub(crate) fn require_debian_bases() {
    kiln_test::require_root();
    for tool in ["mmdebstrap", "jq", "flock"] {
        kiln_test::require_tool(tool);
    }
}

/// Runs `examples/bases.sh BASES...` into `store`.
pub(crate) fn make_bases(store: &Path, bases: &[&str]) {
    run_ok(
        Command::new("bash")
            .arg(examples_dir().join("bases.sh"))
            .args(bases)
            .env("KILN", env!("CARGO_BIN_EXE_kiln"))
            .env("KILN_ROOT", store),
    );
}

/// Fills examples/python-fastapi/wheelhouse (idempotent, locked against concurrent tests);
/// without pip on the host, prepare.sh downloads in `store`'s python base through kiln.
pub(crate) fn prepare_fastapi(store: &Path) -> PathBuf {
    let dir = examples_dir().join("python-fastapi");
    run_ok(
        Command::new("bash")
            .arg(dir.join("prepare.sh"))
            .env("KILN", env!("CARGO_BIN_EXE_kiln"))
            .env("KILN_ROOT", store),
    );
    dir
}

/// The stage names in `--progress plain` output (`#N [stage i/n] ...` lines).
pub(crate) fn stages_in(progress: &str) -> BTreeSet<String> {
    progress
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('#')?;
            let (_, rest) = rest.split_once(" [")?;
            let (label, _) = rest.split_once(']')?;
            let (stage, step) = label.rsplit_once(' ')?;
            let (i, n) = step.split_once('/')?;
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            (numeric(i) && numeric(n)).then(|| stage.to_owned())
        })
        .collect()
}

pub(crate) fn config_of(store: &Path, image: &str) -> serde_json::Value {
    let inspect: serde_json::Value =
        serde_json::from_str(&run_ok(kiln_in(store).args(["inspect", image]))).unwrap();
    inspect["Config"]["config"].clone()
}

/// The layers of the only image in OCI layout `dir`: (compressed bytes, uncompressed bytes).
pub(crate) fn layer_sizes(dir: &Path) -> Vec<(u64, u64)> {
    let read = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        dir.join("blobs/sha256").join(hex)
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(read(manifest_digest)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let blob = read(layer["digest"].as_str().unwrap());
            let media_type = layer["mediaType"].as_str().unwrap();
            let decompress = if media_type.ends_with("+gzip") {
                "gzip -dc"
            } else if media_type.ends_with("+zstd") {
                "zstd -dc"
            } else {
                "cat"
            };
            let out = run_ok(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("{decompress} \"$1\" | wc -c"))
                    .arg("sh")
                    .arg(&blob),
            );
            (
                layer["size"].as_u64().unwrap(),
                out.trim().parse().expect("wc -c output"),
            )
        })
        .collect()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_flock,
        kiln_no_jq,
        kiln_no_mmdebstrap,
        kiln_no_skopeo,
        kiln_no_umoci
    ),
    ignore = "needs root, flock, jq, mmdebstrap, skopeo, umoci"
)]
fn heavy_python_fastapi_production_image() {
    require_debian_bases();
    kiln_test::require_tool("skopeo");
    kiln_test::require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["python"]);
    let context = prepare_fastapi(&store);
    let layout = tmp.path().join("layout");
    let archive = tmp.path().join("image.tar");
    let progress = build_plain(
        &store,
        &context,
        &[
            "-t",
            "fastapi-demo",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
            "-o",
            &format!("type=oci,dest={}", archive.display()),
        ],
    );
    let stages = stages_in(&progress);
    assert!(
        !stages.contains("test") && !stages.contains("development") && !stages.contains("dev-deps"),
        "production ran stages it does not need: {stages:?}\n{progress}"
    );
    assert!(
        stages.contains("builder") && stages.contains("production"),
        "{stages:?}"
    );

    // Config: what the Dockerfile asked for.
    let config = config_of(&store, "fastapi-demo");
    assert_eq!(config["User"], "app", "{config:#}");
    assert!(
        config["ExposedPorts"].get("8000/tcp").is_some(),
        "{config:#}"
    );
    let health = config["Healthcheck"]["Test"].to_string();
    assert!(
        health.contains("urllib") && health.contains("/health"),
        "{health}"
    );
    assert_eq!(
        config["Labels"]["org.opencontainers.image.title"],
        "python-fastapi"
    );
    assert!(config["Labels"]["org.opencontainers.image.licenses"].is_string());
    assert_eq!(config["Cmd"][0], "uvicorn", "{config:#}");
    let env = config["Env"].to_string();
    assert!(
        env.contains("PATH=/opt/venv/bin:") && env.contains("PYTHONUNBUFFERED=1"),
        "{env}"
    );

    // Size: the slim base plus a venv, well under 200 MB uncompressed.
    let sizes = layer_sizes(&layout);
    let uncompressed: u64 = sizes.iter().map(|s| s.1).sum();
    assert!(
        uncompressed < 200 * 1_000_000,
        "production image is {uncompressed} bytes uncompressed: {sizes:?}"
    );

    // skopeo reads both outputs; umoci unpacks the layout.
    {
        let out = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}", archive.display())),
        );
        let inspect: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), sizes.len());
        assert_eq!(
            inspect["Labels"]["org.opencontainers.image.title"],
            "python-fastapi"
        );
        let out = run_ok(
            Command::new("skopeo")
                .args(["inspect", "--config"])
                .arg(format!("oci:{}:latest", layout.display())),
        );
        assert!(out.contains("\"User\": \"app\""), "{out}");
    }
    {
        let bundle = tmp.path().join("bundle");
        run_ok(
            Command::new("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:latest", layout.display()))
                .arg(&bundle),
        );
        let rootfs = bundle.join("rootfs");
        let main = fs_err::metadata(rootfs.join("app/app/main.py")).expect("app copied");
        assert_eq!(main.uid(), 1000, "COPY --chown=app:app");
        assert!(
            rootfs.join("app/README.md").is_file(),
            "!README.md re-included"
        );
        assert!(
            !rootfs.join("app/tests").exists(),
            "tests are not in production"
        );
        assert!(
            !rootfs.join("wheels").exists(),
            "the wheelhouse stays in the builder"
        );
        assert!(
            rootfs.join("opt/venv/bin/uvicorn").exists(),
            "the venv was copied"
        );
        let passwd = fs_err::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(passwd.contains("app:x:1000:1000:"), "{passwd}");
    }

    let whoami = run_ok(kiln_in(&store).args(["run", "fastapi-demo", "whoami"]));
    assert_eq!(whoami.trim(), "app");
    assert_ne!(whoami.trim(), "root");
    let uid = run_ok(kiln_in(&store).args(["run", "fastapi-demo", "id", "-u"]));
    assert_eq!(uid.trim(), "1000");
    let version = run_ok(kiln_in(&store).args(["run", "fastapi-demo", "python", "--version"]));
    assert!(version.starts_with("Python 3.11"), "{version}");

    // The service answers /health on the host network. uvicorn stops by itself after one
    // request (--limit-max-requests), and `timeout` bounds it, so nothing outlives the test.
    let port = free_port().to_string();
    let mut server = kiln_in(&store)
        .args([
            "run",
            "fastapi-demo",
            "timeout",
            "120",
            "uvicorn",
            "app.main:app",
        ])
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--limit-max-requests",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kiln run");
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_mins(1);
    let body = loop {
        let out = Command::new("curl")
            .args(["-fsS", "--max-time", "5", &url])
            .output()
            .expect("running curl");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if let Some(status) = server.try_wait().unwrap() {
            let out = server.wait_with_output().unwrap();
            panic!(
                "the server exited with {status} before answering\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no answer on {url} within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(body.trim(), r#"{"status":"ok"}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("uvicorn did not stop after its one request");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = server.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kiln run exited with {}:\n{log}",
        out.status
    );
    assert!(
        log.contains("Uvicorn running on http://127.0.0.1:"),
        "{log}"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_flock, kiln_no_jq, kiln_no_mmdebstrap),
    ignore = "needs root, flock, jq, mmdebstrap"
)]
fn heavy_python_fastapi_targets_build_only_what_they_need() {
    require_debian_bases();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["python"]);
    let context = prepare_fastapi(&store);
    let set = |names: &[&str]| {
        names
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };

    let progress = build_plain(
        &store,
        &context,
        &["--target", "builder", "-t", "fastapi:builder"],
    );
    assert_eq!(
        stages_in(&progress),
        set(&["base", "builder"]),
        "{progress}"
    );
    let progress = build_plain(
        &store,
        &context,
        &["--target", "development", "-t", "fastapi:dev"],
    );
    assert_eq!(
        stages_in(&progress),
        set(&["base", "builder", "dev-deps", "development"]),
        "{progress}"
    );
    // The builder's steps are cached from the first build; the development stage is new.
    assert!(progress.contains("[builder 5/5] RUN pip install") && progress.contains("CACHED"));
    let config = config_of(&store, "fastapi:dev");
    assert!(config["Cmd"].to_string().contains("--reload"), "{config:#}");
    let progress = build_plain(&store, &context, &["--target", "test"]);
    assert_eq!(
        stages_in(&progress),
        set(&["base", "builder", "dev-deps", "test"]),
        "{progress}"
    );
    assert!(progress.contains("passed"), "pytest ran:\n{progress}");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_flock, kiln_no_jq, kiln_no_mmdebstrap),
    ignore = "needs root, flock, jq, mmdebstrap"
)]
fn heavy_python_fastapi_failing_test_fails_the_build() {
    require_debian_bases();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["python"]);
    let source = prepare_fastapi(&store);
    let context = tmp.path().join("context");
    run_ok(Command::new("cp").arg("-a").arg(&source).arg(&context));
    fs_err::write(
        context.join("tests/test_broken.py"),
        "def test_broken():\n    assert 1 + 1 == 3, \"deliberately broken\"\n",
    )
    .unwrap();
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--target", "test"])
            .arg(&context),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("deliberately broken"), "{stderr}");
    assert!(stderr.contains("1 failed"), "{stderr}");
    assert!(
        stderr.contains("pytest"),
        "the failing step is named:\n{stderr}"
    );
    // Production does not run the tests, so it still builds.
    build_plain(&store, &context, &["-q"]);
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_flock, kiln_no_jq, kiln_no_mmdebstrap),
    ignore = "needs root, flock, jq, mmdebstrap"
)]
fn heavy_static_binary_is_tiny_and_runs() {
    require_debian_bases();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["debian"]);
    let layout = tmp.path().join("layout");
    build_plain(
        &store,
        &examples_dir().join("static-binary"),
        &[
            "-t",
            "static-hello",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    let sizes = layer_sizes(&layout);
    assert_eq!(sizes.len(), 1, "FROM scratch + one COPY: {sizes:?}");
    assert!(sizes[0].1 < 2_000_000, "a static hello is small: {sizes:?}");
    let config = config_of(&store, "static-hello");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/hello"]));

    let out = run_ok(kiln_in(&store).args(["run", "static-hello", "one", "two"]));
    assert!(out.starts_with("hello from a static binary"), "{out}");
    assert!(out.contains("arg 1: one\narg 2: two"), "{out}");
    run_fails(
        kiln_in(&store).args(["run", "static-hello", "exit", "7"]),
        7,
    );
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_busybox,
        kiln_no_flock,
        kiln_no_jq,
        kiln_no_mmdebstrap
    ),
    ignore = "needs root, busybox, flock, jq, mmdebstrap"
)]
fn heavy_external_from_copies_a_file_out_of_an_image() {
    require_debian_bases();
    kiln_test::require_busybox();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["busybox", "debian"]);
    let rootfs = tmp.path().join("rootfs");
    build_plain(
        &store,
        &examples_dir().join("external-from"),
        &[
            "-t",
            "external-from",
            "-o",
            &format!("type=local,dest={}", rootfs.display()),
        ],
    );
    let copied = fs_err::read(rootfs.join("usr/local/bin/busybox")).expect("busybox copied");
    let original = fs_err::read(busybox_binary().unwrap()).unwrap();
    assert!(
        copied == original,
        "the copied busybox differs from the host's"
    );
    assert!(
        rootfs.join("usr/bin/apt-get").exists(),
        "on top of the debian base"
    );

    let out = run_ok(kiln_in(&store).args(["run", "external-from", "busybox", "echo", "arrived"]));
    assert_eq!(out.trim(), "arrived");
}

/// `COPY --from=HOST:PORT/REPO:TAG` pulled from a loopback registry (no Debian needed).
#[test]
#[cfg_attr(
    any(kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn external_from_a_registry_reference() {
    crate::registry::require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let busybox = kiln_test::require_busybox();
    let rootfs = tmp.path().join("bb");
    crate::common::busybox_rootfs(&rootfs);
    let registry = crate::registry::Registry::start();
    let name = format!("{}/library/busybox:1.36", registry.host);
    run_ok(
        kiln_in(&store)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", &name]),
    );
    run_ok(kiln_in(&store).args(["push", &name]));
    run_ok(kiln_in(&store).args(["rmi", &name]));

    // A fresh store: the reference can only come from the registry.
    let store = tmp.path().join("fresh");
    let context = tmp.path().join("context");
    fs_err::create_dir_all(&context).unwrap();
    fs_err::write(
        context.join("Dockerfile"),
        format!("FROM scratch\nCOPY --from={name} /bin/busybox /busybox\n"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    build_plain(
        &store,
        &context,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
    let copied = fs_err::read(out.join("busybox")).expect("busybox arrived");
    assert!(
        copied == fs_err::read(busybox).unwrap(),
        "same bytes as the source image's"
    );
}
