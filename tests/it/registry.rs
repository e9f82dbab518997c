//! `kiln push`, `kiln pull`, `kiln login` and `kiln logout` against a real loopback registry
//! (`docker-registry serve`), cross-checked with skopeo. The registry fixture comes from
//! kiln-test (shared with kiln-registry's own tests).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{busybox_rootfs, kiln_in, run_fails, run_ok};

pub(crate) use kiln_test::Registry;

/// The registry, its htpasswd auth, and skopeo and umoci for the cross-checks.
pub(crate) fn require_registry_tools() {
    for tool in ["docker-registry", "skopeo", "umoci", "htpasswd"] {
        kiln_test::require_tool(tool);
    }
}

/// The manifest digest skopeo computes for `reference` (`--creds` when given).
fn skopeo_digest(reference: &str, creds: Option<&str>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.args(["--creds", creds]);
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    json["Digest"].as_str().expect("Digest").to_owned()
}

fn inspect_digest(store: &Path, name: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(kiln_in(store).args(["inspect", name]))).unwrap();
    json["Digest"].as_str().unwrap().to_owned()
}

/// `kiln` with the store at `store` and docker's config dir at `docker`.
fn kiln_with(store: &Path, docker: &Path) -> Command {
    let mut cmd = kiln_in(store);
    cmd.env("DOCKER_CONFIG", docker);
    cmd
}

#[test]
#[cfg_attr(
    any(kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn registry_push_then_pull_round_trip_keeps_the_digest() {
    require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let registry = Registry::start();
    let host = &registry.host;
    let docker = tmp.path().join("docker");
    let (store_a, store_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let name = format!("{host}/kiln/busybox:1");
    run_ok(
        kiln_with(&store_a, &docker)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", &name]),
    );
    let local = inspect_digest(&store_a, &name);

    let out = run_ok(kiln_with(&store_a, &docker).args([
        "push",
        &name,
        &name,
        &format!("{host}/kiln/busybox:2"),
    ]));
    assert_eq!(out.trim(), local, "push prints the manifest digest");
    assert_eq!(skopeo_digest(&name, None), local);
    assert_eq!(
        skopeo_digest(&format!("{host}/kiln/busybox:2"), None),
        local
    );

    let out =
        run_ok(kiln_with(&store_b, &docker).args(["pull", &format!("{host}/kiln/busybox:2")]));
    assert_eq!(out.trim(), format!("{host}/kiln/busybox:2@{local}"));
    assert_eq!(
        inspect_digest(&store_b, &format!("{host}/kiln/busybox:2")),
        local
    );
    let images = run_ok(kiln_with(&store_b, &docker).args(["images", "--format", "json"]));
    assert!(images.contains(&format!("{host}/kiln/busybox")), "{images}");

    // Pushed again from the pulled copy to another repository: same digest, blobs mounted.
    let copy = format!("{host}/copy/busybox:1");
    let output = kiln_with(&store_b, &docker)
        .args(["push", &format!("{host}/kiln/busybox:2"), &copy])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Mounted from kiln/busybox"), "{stderr}");
    assert_eq!(skopeo_digest(&copy, None), local);

    // Errors name what is wrong and never panic.
    let out = run_fails(
        kiln_with(&store_b, &docker).args(["pull", &format!("{host}/kiln/nope:1")]),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not found") && stderr.contains(host.as_str()),
        "{stderr}"
    );
    let out = run_fails(
        kiln_with(&store_b, &docker).args(["push", "never/pulled:1"]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("never/pulled"),
        "{out:?}"
    );
}

fn login(store: &Path, docker: &Path, host: &str, password: &str) -> std::process::Output {
    let mut child = kiln_with(store, docker)
        .args(["login", "-u", "kiln", "--password-stdin", host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
#[cfg_attr(
    any(kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn registry_login_logout_with_htpasswd() {
    require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let registry = Registry::start_with_auth("kiln", "s3cret");
    let host = &registry.host;
    let docker = tmp.path().join("docker");
    fs_err::create_dir_all(&docker).unwrap();
    fs_err::write(docker.join("config.json"), r#"{"psFormat": "table"}"#).unwrap();
    let store = tmp.path().join("store");
    let name = format!("{host}/private/busybox:1");
    run_ok(
        kiln_with(&store, &docker)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", &name]),
    );

    let out = run_fails(kiln_with(&store, &docker).args(["push", &name]), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("kiln login {host}")),
        "no credentials: {stderr}"
    );

    let out = login(&store, &docker, host, "wrong");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let config = fs_err::read_to_string(docker.join("config.json")).unwrap();
    assert!(
        !config.contains(host.as_str()),
        "a refused login is not saved: {config}"
    );

    let out = login(&store, &docker, host, "s3cret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(docker.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["psFormat"], "table", "other keys are kept");
    assert!(
        config["auths"][host.as_str()]["auth"].is_string(),
        "{config}"
    );

    run_ok(kiln_with(&store, &docker).args(["push", &name]));
    assert_eq!(
        skopeo_digest(&name, Some("kiln:s3cret")),
        inspect_digest(&store, &name)
    );

    let out = run_ok(kiln_with(&store, &docker).args(["logout", host]));
    assert!(out.is_empty());
    let config = fs_err::read_to_string(docker.join("config.json")).unwrap();
    assert!(!config.contains(host.as_str()), "{config}");
    let out = run_fails(
        kiln_with(&tmp.path().join("other"), &docker).args(["pull", &name]),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kiln login"),
        "{out:?}"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn stages_from_different_registry_images_pull_them_at_the_same_time() {
    require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let registry = Registry::start();
    let docker = tmp.path().join("docker");
    let seed = tmp.path().join("seed");
    // Two images with different content, so nothing of one is the other's.
    for (name, marker) in [("a", "one"), ("b", "two")] {
        fs_err::write(rootfs.join("marker"), marker).unwrap();
        let reference = format!("{}/kiln/{name}:1", registry.host);
        run_ok(
            kiln_with(&seed, &docker)
                .arg("import")
                .arg(&rootfs)
                .args(["-t", &reference]),
        );
        run_ok(kiln_with(&seed, &docker).args(["push", &reference, &reference]));
    }
    // A slow registry: every manifest request waits before it is answered.
    let proxy = kiln_test::FaultProxy::start(&registry.host);
    let delay = std::time::Duration::from_millis(1500);
    for method in ["GET", "HEAD"] {
        proxy.add(kiln_test::Rule {
            method,
            path: "/manifests/".to_owned(),
            times: usize::MAX,
            fault: kiln_test::Fault::Delay(delay),
        });
    }
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {host}/kiln/a:1 AS a\nFROM {host}/kiln/b:1 AS b\n",
            host = proxy.host
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    run_ok(
        kiln_with(&tmp.path().join("store"), &docker)
            .args([
                "build",
                "--progress",
                "plain",
                "--all-stages",
                "--target",
                "b",
            ])
            .arg(&ctx),
    );
    let both = started.elapsed();
    // One pull after the other waits at least twice (each reads a manifest); at the same
    // time, about once.
    assert!(
        both < delay * 2,
        "pulling two images through a registry that answers manifests after {delay:?} took {both:?}: the pulls did not overlap"
    );
}
