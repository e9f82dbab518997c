//! A CI job written for `docker buildx build` runs unchanged with kiln in its place (issue
//! 20). `testdata/buildx-ci/ci.sh` calls `${BUILDX:-docker buildx} build` with the flags a
//! GitHub Actions or GitLab job uses — `--platform`, `--build-arg`, `--label`, two `-t`, a
//! local layer cache (`--cache-from type=local`, `--cache-to type=local,mode=max`),
//! `--metadata-file`, `--iidfile`, `--secret id=…,env=…`, `--target` with
//! `--no-cache-filter`, `--add-host`, `--ulimit`, `--shm-size`, `--network`, `--pull`,
//! `--push`, `-o type=local`, `-o type=oci`, `--quiet` — and reads the metadata with `jq`.
//! The test runs it with `BUILDX=<kiln>` on a busybox base in a loopback registry, twice (the
//! second time as a new CI runner: an empty store, the saved cache directory), and checks what
//! it made with skopeo and tar, not with kiln.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{busybox_rootfs, kiln_in, run_ok, skopeo_inspect};
use crate::registry::{Registry, require_registry_tools};

/// Applets the job's Dockerfile runs beyond kiln-test's minimal set (a busybox image has
/// them all).
const EXTRA_APPLETS: &[&str] = &["awk", "cut", "df", "sha256sum"];

/// The secret the job passes with `--secret id=ci_token,env=CI_TOKEN`.
const TOKEN: &str = "ci-token-that-stays-out-of-layers";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const VERSION: &str = "1.2.3";

fn job_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/buildx-ci")
}

/// What one run of the job needs: the registry, the base image's name, the cache directory
/// the CI keeps between runs.
struct Job<'a> {
    root: &'a Path,
    registry: &'a Registry,
    base: &'a str,
    cache: PathBuf,
}

impl Job<'_> {
    /// Runs `ci.sh` as a CI runner named `runner` would: its own kiln store and output
    /// directory, the job's cache directory. Asserts it exits 0; returns its output and the
    /// output directory.
    fn run(&self, runner: &str) -> (String, PathBuf) {
        let dir = self.root.join(runner);
        fs_err::create_dir_all(&dir).unwrap();
        let out_dir = dir.join("out");
        let platform = match std::env::consts::ARCH {
            "aarch64" => "linux/arm64",
            _ => "linux/amd64",
        };
        // One file for stdout and stderr, so the job's `--- step` lines and kiln's progress
        // come in the order they were written, as in a CI log.
        let log_path = dir.join("job.log");
        let log_file = fs_err::File::create(&log_path).unwrap().into_parts().0;
        let status = Command::new("bash")
            .arg(job_dir().join("ci.sh"))
            .current_dir(&dir)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .env("BUILDX", env!("CARGO_BIN_EXE_kiln"))
            .env("KILN_ROOT", dir.join("store"))
            .env("DOCKER_CONFIG", dir.join("docker"))
            .env_remove("SOURCE_DATE_EPOCH")
            .env("REGISTRY", &self.registry.host)
            .env("BASE_IMAGE", self.base)
            .env("CI_TOKEN", TOKEN)
            .env("CI_COMMIT_SHA", COMMIT)
            .env("VERSION", VERSION)
            .env("PLATFORM", platform)
            .env("CONTEXT", job_dir())
            .env("OUT", &out_dir)
            .env("CACHE_DIR", &self.cache)
            .status()
            .unwrap();
        let log = fs_err::read_to_string(&log_path).unwrap();
        assert!(
            status.success(),
            "ci.sh ({runner}) failed with {status}:\n{log}"
        );
        (log, out_dir)
    }
}

/// The lines of `log` between the `--- from` and the `--- to` headers the job prints.
fn section<'a>(log: &'a str, from: &str, to: &str) -> Vec<&'a str> {
    log.lines()
        .skip_while(|l| *l != format!("--- {from}"))
        .take_while(|l| *l != format!("--- {to}"))
        .collect()
}

/// Whether a step header says the step came from the cache (`… CACHED`, or
/// `… CACHED (from DIR)` for an imported cache).
fn is_cached(step: &str) -> bool {
    step.ends_with(" CACHED") || step.contains(" CACHED (from ")
}

/// The RUN and COPY step headers of a plain progress log (`#5 [build 2/3] RUN …`).
fn steps<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .copied()
        .filter(|l| l.starts_with('#') && (l.contains("] RUN ") || l.contains("] COPY ")))
        .collect()
}

fn sha256_hex(text: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | sha256sum", "sh", text])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// A file of an archive, by `tar -xOf`.
fn file_in_tar(archive: &Path, member: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .unwrap();
    assert!(out.status.success(), "no {member} in {}", archive.display());
    String::from_utf8(out.stdout).unwrap()
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_busybox,
        kiln_no_registry_tools,
        kiln_no_jq,
        kiln_no_tar
    ),
    ignore = "needs root, busybox, docker-registry, htpasswd, skopeo, umoci, jq, tar"
)]
fn buildx_ci_script_runs_unchanged_with_kiln_root_registry() {
    kiln_test::require_root();
    require_registry_tools();
    kiln_test::require_tool("jq");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    // The base image, pushed to the registry from a store the job never sees (`--pull`
    // fetches it).
    let rootfs = busybox_rootfs(&root.join("rootfs"));
    for applet in EXTRA_APPLETS {
        fs_err::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let registry = Registry::start();
    let base = format!("{}/base/busybox:1", registry.host);
    let seed = root.join("seed");
    run_ok(kiln_in(&seed).arg("import").arg(&rootfs).args([
        "-t",
        &base,
        "--change",
        r#"CMD ["sh"]"#,
    ]));
    run_ok(kiln_in(&seed).args(["push", &base]));

    let job = Job {
        root,
        registry: &registry,
        base: &base,
        cache: root.join("buildx-cache"),
    };
    let (log, out) = job.run("runner-1");

    // The test stage ran with the job's secret, ulimit, /dev/shm size and host entry.
    let report = fs_err::read_to_string(out.join("test-report/report.txt")).unwrap();
    for line in [
        format!("hello from ci-app {VERSION}"),
        "nofile=1024".to_owned(),
        format!("shm_kb={}", 128 * 1024),
        format!("token_sha256={}", sha256_hex(TOKEN)),
        "tests passed".to_owned(),
    ] {
        assert!(report.lines().any(|l| l == line), "{line}:\n{report}");
    }
    let hosts = report.lines().find(|l| l.starts_with("hosts=")).unwrap();
    assert!(
        hosts.contains("192.0.2.10") && hosts.contains("ci-cache.internal"),
        "{report}"
    );

    // The metadata file, the iidfile and the registry agree.
    let metadata = json_file(&out.join("metadata.json"));
    let digest = metadata["containerimage.digest"].as_str().unwrap();
    let image_id = fs_err::read_to_string(out.join("iid")).unwrap();
    assert_eq!(metadata["containerimage.config.digest"], image_id.as_str());
    let image = format!("{}/ci/app", registry.host);
    let names = metadata["image.name"].as_str().unwrap();
    assert!(
        names.split(',').any(|n| n == format!("{image}:{VERSION}"))
            && names.split(',').any(|n| n == format!("{image}:latest")),
        "{metadata}"
    );
    let tls = ["--tls-verify=false"];
    for tag in [VERSION, "latest"] {
        let pushed = skopeo_inspect(&format!("docker://{image}:{tag}"), &tls);
        assert_eq!(pushed["Digest"], digest, "{image}:{tag}");
        let labels = &pushed["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], VERSION);
        assert_eq!(labels["org.opencontainers.image.revision"], COMMIT);
        assert_eq!(labels["org.opencontainers.image.title"], "ci-app");
        assert_eq!(pushed["Architecture"], kiln_test_arch());
    }
    let manifest = skopeo_inspect(&format!("docker://{image}:{VERSION}"), &["--raw", tls[0]]);
    assert_eq!(manifest["config"]["digest"], image_id.as_str());
    let config = skopeo_inspect(
        &format!("docker://{image}:{VERSION}"),
        &["--config", tls[0]],
    );
    assert_eq!(config["config"]["Entrypoint"][0], "/app/hello");
    assert!(!config.to_string().contains(TOKEN), "{config}");

    // The archive for the scanner holds the pushed image.
    let index: serde_json::Value =
        serde_json::from_str(&file_in_tar(&out.join("app.oci.tar"), "index.json")).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest, "{index}");

    // A new runner (an empty store) with the saved cache: the tests run again
    // (`--no-cache-filter test`), every step of the pushed image comes from the cache and the
    // same image is pushed.
    let (log2, out2) = job.run("runner-2");
    let tested = steps(&section(&log2, "test", "build and push"));
    assert!(
        tested.iter().any(|l| l.contains("[test ") && !is_cached(l)),
        "the tests did not run again:\n{log2}"
    );
    let pushed = steps(&section(&log2, "build and push", "export for the scanner"));
    assert!(!pushed.is_empty(), "{log2}");
    assert!(
        pushed.iter().all(|l| is_cached(l)),
        "not all cached:\n{}\n--- first run:\n{log}",
        pushed.join("\n")
    );
    let metadata2 = json_file(&out2.join("metadata.json"));
    assert_eq!(metadata2["containerimage.digest"], digest, "{log2}");
}

/// The image architecture of the host, as an OCI config names it.
fn kiln_test_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

#[test]
fn an_iidfile_with_a_local_or_tar_output_is_a_usage_error_as_in_buildx() {
    let tmp = tempfile::tempdir().unwrap();
    let context = tmp.path().join("ctx");
    fs_err::create_dir_all(&context).unwrap();
    fs_err::write(context.join("Dockerfile"), "FROM scratch\n").unwrap();
    let store = tmp.path().join("store");
    let local = format!("type=local,dest={}", tmp.path().join("out").display());
    let iid = tmp.path().join("iid");
    let iid = iid.to_str().unwrap();
    for output in [local.as_str(), "type=tar,dest=out.tar", "-"] {
        let out = crate::common::run_fails(
            kiln_in(&store)
                .args(["build", "--iidfile", iid, "-o", output])
                .arg(&context),
            2,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("local and tar exporters are incompatible with image ID file"),
            "{output}: {stderr}"
        );
        assert!(!Path::new(iid).exists(), "{output}");
    }
    // An image output has an image ID: the one `--quiet` prints.
    let oci = format!("type=oci,dest={}", tmp.path().join("app.tar").display());
    let id = run_ok(
        kiln_in(&store)
            .args(["build", "--quiet", "--iidfile", iid, "-o", &oci])
            .arg(&context),
    );
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(fs_err::read_to_string(iid).unwrap(), id.trim());
}
