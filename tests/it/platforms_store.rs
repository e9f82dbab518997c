//! Multi-platform images in the local store: a two-platform busybox made with `kiln import
//! --platform`, listed and inspected per platform, saved and loaded whole, pushed to a
//! loopback registry as an index (checked with skopeo), pulled back one platform at a time;
//! the errors for a platform a name lacks; BuildKit's `InvalidBaseImagePlatform` warning for
//! a single-platform base. These check the store's bookkeeping, not execution: the arm64
//! image holds the host's busybox.

use std::path::Path;

use crate::common::{build_plain, busybox_rootfs, kiln_in, run_fails, run_ok};
use crate::registry::{Registry, require_registry_tools};

const NAME: &str = "multi:1";

/// Imports `rootfs` for `platform` under `name`; returns stderr.
fn import_for(store: &Path, rootfs: &Path, platform: &str, name: &str) -> String {
    let out = kiln_in(store)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("import")
        .arg(rootfs)
        .args(["--platform", platform, "-t", name])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import {platform}: {stderr}");
    stderr
}

/// A store holding `NAME` for linux/amd64 and linux/arm64.
fn two_platform_store(dir: &Path) -> std::path::PathBuf {
    let rootfs = busybox_rootfs(&dir.join("rootfs"));
    let store = dir.join("store");
    import_for(&store, &rootfs, "linux/amd64", NAME);
    let said = import_for(&store, &rootfs, "linux/arm64", NAME);
    assert!(
        said.contains("now holds platforms: linux/amd64, linux/arm64"),
        "{said}"
    );
    store
}

fn inspect(store: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run_ok(kiln_in(store).arg("inspect").args(args))).unwrap()
}

/// `kiln images --format json`'s entry for `repository`.
fn listed(store: &Path, repository: &str) -> serde_json::Value {
    let out = run_ok(kiln_in(store).args(["images", "--format", "json"]));
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["Repository"] == repository)
        .unwrap_or_else(|| panic!("{repository} not listed:\n{out}"))
}

/// `Platform (not pulled)` strings of a `Platforms` array.
fn platforms(value: &serde_json::Value) -> Vec<String> {
    value["Platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["Platform"].as_str().unwrap();
            if p["Pulled"] == true {
                name.to_owned()
            } else {
                format!("{name} (not pulled)")
            }
        })
        .collect()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]
fn two_imports_make_one_two_platform_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = two_platform_store(tmp.path());

    let entry = listed(&store, "multi");
    assert_eq!(platforms(&entry), ["linux/amd64", "linux/arm64"]);
    let table = run_ok(kiln_in(&store).arg("images"));
    assert!(
        table.contains("PLATFORMS") && table.contains("linux/amd64, linux/arm64"),
        "{table}"
    );

    // The name is an index; each platform is its own image.
    let whole = inspect(&store, &[NAME]);
    assert_eq!(whole["Digest"], whole["IndexDigest"]);
    assert_eq!(whole["Index"]["manifests"].as_array().unwrap().len(), 2);
    assert!(whole.get("Config").is_none(), "{whole}");
    let arm = inspect(&store, &["--platform", "linux/arm64", NAME]);
    assert_eq!(arm["Platform"], "linux/arm64");
    assert_eq!(arm["Config"]["architecture"], "arm64");
    let amd = inspect(&store, &["--platform", "linux/amd64", NAME]);
    assert_eq!(amd["Config"]["architecture"], "amd64");
    assert_ne!(amd["Digest"], arm["Digest"]);
    assert_eq!(arm["IndexDigest"], whole["Digest"]);

    // A platform the index lacks: an error naming the ones it has; no build, no run.
    for command in [
        vec!["inspect", "--platform", "linux/s390x", NAME],
        vec!["run", "--platform", "linux/s390x", NAME, "true"],
    ] {
        let code = if command[0] == "run" { 125 } else { 1 };
        let out = run_fails(kiln_in(&store).args(&command), code);
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains("linux/s390x")
                && stderr.contains("linux/amd64, linux/arm64")
                && stderr.contains("docker.io/library/multi:1"),
            "{command:?}: {stderr}"
        );
    }
    let out = run_fails(
        kiln_in(&store).args(["inspect", "--platform", "linux//x", NAME]),
        2,
    );
    assert!(stderr_of(&out).contains("linux//x"), "{out:?}");

    // Importing a platform again replaces it; the other stays.
    let rootfs = tmp.path().join("rootfs");
    fs_err::write(rootfs.join("marker"), "v2\n").unwrap();
    let said = import_for(&store, &rootfs, "linux/amd64", NAME);
    assert!(said.contains("linux/arm64, linux/amd64"), "{said}");
    let arm_again = inspect(&store, &["--platform", "linux/arm64", NAME]);
    assert_eq!(arm_again["Digest"], arm["Digest"]);
    let amd_again = inspect(&store, &["--platform", "linux/amd64", NAME]);
    assert_ne!(amd_again["Digest"], amd["Digest"]);

    // An OCI archive keeps the index; loading it stores the index under its name.
    let archive = tmp.path().join("multi.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "--format", "oci", "-o"])
            .arg(&archive)
            .arg(NAME),
    );
    let other = tmp.path().join("other");
    run_ok(kiln_in(&other).args(["load", "-i"]).arg(&archive));
    assert_eq!(
        inspect(&other, &[NAME])["Digest"],
        inspect(&store, &[NAME])["Digest"]
    );
    assert_eq!(
        platforms(&listed(&other, "multi")),
        ["linux/arm64", "linux/amd64"]
    );
    // A docker archive holds one platform's image of it.
    let docker = tmp.path().join("docker.tar");
    run_ok(
        kiln_in(&store)
            .args(["save", "--platform", "linux/arm64", "-o"])
            .arg(&docker)
            .arg(NAME),
    );
    let third = tmp.path().join("third");
    run_ok(kiln_in(&third).args(["load", "-i"]).arg(&docker));
    assert_eq!(
        inspect(&third, &[NAME])["Digest"],
        arm["Digest"],
        "the docker archive holds the arm64 image"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn a_two_platform_name_is_pushed_as_an_index_and_pulled_one_platform_at_a_time() {
    require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let store = two_platform_store(tmp.path());
    let registry = Registry::start();
    let remote = format!("{}/kiln/multi:1", registry.host);
    let docker = tmp.path().join("docker");
    let kiln = |store: &Path| {
        let mut cmd = kiln_in(store);
        cmd.env("DOCKER_CONFIG", &docker);
        cmd
    };
    let index_digest = inspect(&store, &[NAME])["Digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run_ok(kiln(&store).args(["push", NAME, &remote]));
    assert_eq!(out.trim(), index_digest);

    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{remote}"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", stderr_of(&raw));
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let mut archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort_unstable();
    assert_eq!(archs, ["amd64", "arm64"]);
    let arm = std::process::Command::new("skopeo")
        .args(["--override-arch", "arm64", "inspect", "--tls-verify=false"])
        .arg(format!("docker://{remote}"))
        .output()
        .unwrap();
    assert!(arm.status.success(), "{}", stderr_of(&arm));
    let arm: serde_json::Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!(arm["Architecture"], "arm64");

    // One platform into a fresh store: the name is on the index, the other not pulled.
    let fresh = tmp.path().join("fresh");
    let out = run_ok(kiln(&fresh).args(["pull", "--platform", "linux/amd64", &remote]));
    assert_eq!(out.trim(), format!("{remote}@{index_digest}"));
    assert_eq!(
        platforms(&listed(&fresh, &format!("{}/kiln/multi", registry.host))),
        ["linux/amd64", "linux/arm64 (not pulled)"]
    );
    // Nothing is pushed of an index that is not all here.
    let out = run_fails(
        kiln(&fresh).args(["push", &remote, &format!("{}/kiln/copy:1", registry.host)]),
        1,
    );
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("linux/arm64") && stderr.contains("kiln pull --platform"),
        "{stderr}"
    );
    // inspect never pulls: it says how to.
    let out = run_fails(
        kiln(&fresh).args(["inspect", "--platform", "linux/arm64", &remote]),
        1,
    );
    assert!(
        stderr_of(&out).contains(&format!("kiln pull --platform linux/arm64 {remote}")),
        "{out:?}"
    );

    // The second platform: the first stays usable, the name stays on the index.
    run_ok(kiln(&fresh).args(["pull", "--platform", "linux/arm64", &remote]));
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let image = inspect(&fresh, &["--platform", platform, &remote]);
        assert_eq!(image["Config"]["architecture"], arch);
        assert_eq!(image["IndexDigest"], index_digest.as_str());
    }
    assert_eq!(
        platforms(&listed(&fresh, &format!("{}/kiln/multi", registry.host))),
        ["linux/amd64", "linux/arm64"]
    );

    // Both at once, into another store; a bad platform is a usage error naming it.
    let both = tmp.path().join("both");
    run_ok(kiln(&both).args(["pull", "--platform", "linux/amd64,linux/arm64", &remote]));
    assert_eq!(
        platforms(&listed(&both, &format!("{}/kiln/multi", registry.host))),
        ["linux/amd64", "linux/arm64"]
    );
    let out = run_fails(
        kiln(&both).args(["pull", "--platform", "linux/amd64,linux//", &remote]),
        2,
    );
    assert!(stderr_of(&out).contains("linux//"), "{out:?}");

    // A base missing a platform is pulled for a build, by digest, from where it came; the
    // name stays on the index.
    let other = tmp.path().join("other");
    run_ok(kiln(&other).args(["pull", "--platform", "linux/amd64", &remote]));
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(ctx.join("f"), "f\n").unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        format!("FROM {remote}\nCOPY f /f\n"),
    )
    .unwrap();
    let stderr = build_plain(&other, &ctx, &["--platform", "linux/arm64"]);
    assert!(!stderr.contains("InvalidBaseImagePlatform"), "{stderr}");
    assert_eq!(
        platforms(&listed(&other, &format!("{}/kiln/multi", registry.host))),
        ["linux/amd64", "linux/arm64"]
    );
    assert_eq!(inspect(&other, &[&remote])["Digest"], index_digest.as_str());
}

#[test]
#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]
fn a_single_platform_base_of_another_platform_warns_like_buildkit() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&tmp.path().join("rootfs"));
    let store = tmp.path().join("store");
    import_for(&store, &rootfs, "linux/amd64", "onlyamd64");
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(ctx.join("f"), "f\n").unwrap();
    fs_err::write(ctx.join("Dockerfile"), "FROM onlyamd64\nCOPY f /f\n").unwrap();
    let stderr = build_plain(&store, &ctx, &["--platform", "linux/arm64"]);
    assert!(
        stderr.contains(
            "line 1: InvalidBaseImagePlatform: Base image onlyamd64 was pulled with platform \
             \"linux/amd64\", expected \"linux/arm64\" for current build"
        ),
        "{stderr}"
    );
    let stderr = build_plain(&store, &ctx, &["--platform", "linux/amd64"]);
    assert!(!stderr.contains("InvalidBaseImagePlatform"), "{stderr}");

    // A multi-platform base is resolved per platform: no warning, and a platform it
    // lacks fails the build naming the ones it has.
    import_for(&store, &rootfs, "linux/arm64", "onlyamd64");
    let stderr = build_plain(&store, &ctx, &["--platform", "linux/arm64"]);
    assert!(!stderr.contains("InvalidBaseImagePlatform"), "{stderr}");
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--platform", "linux/s390x"])
            .arg(&ctx),
        1,
    );
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("linux/s390x") && stderr.contains("linux/amd64, linux/arm64"),
        "{stderr}"
    );
}
