//! Multi-platform builds end to end: `--platform linux/amd64,linux/arm64` from a two-platform
//! busybox base (the arm64 tree holds Debian's arm64 busybox, run through qemu-user-static's
//! binfmt_misc handler) gives one OCI index, checked with skopeo; the cross-compile pattern
//! (`FROM --platform=$BUILDPLATFORM`) runs its builder natively, once when it does not read
//! `TARGETARCH`, and needs no emulator; the index is pushed to a loopback registry and each
//! platform pulled back with `skopeo --override-arch`; buildah builds the same Dockerfile
//! for both platforms and gives the same configs and file trees. Errors: a platform that is
//! not one, a docker archive of two platforms, a host without the emulator a RUN needs, a
//! base without the platform.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::builds::{umoci_unpack, walk};
use crate::builds_buildah::{Buildah, FIELDS, normalized_config, tree_differences};
use crate::common::{build_plain, kiln_in, run_fails, run_ok, skopeo_inspect, write};

const BOTH: &str = "linux/amd64,linux/arm64";

/// The host's `uname -m` (what a natively run RUN step prints).
fn host_machine() -> &'static str {
    std::env::consts::ARCH
}

/// A store at `dir/store` whose `busybox:latest` is an index of a linux/amd64 image (the
/// host's busybox) and a linux/arm64 one (Debian's arm64 busybox).
fn store_with_two_platform_busybox(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    for arch in ["amd64", "arm64"] {
        let rootfs = kiln_test::busybox_rootfs_for(&dir.join(format!("busybox-{arch}")), arch);
        run_ok(
            kiln_in(&store)
                .arg("import")
                .arg(&rootfs)
                .args(["--platform", &format!("linux/{arch}")])
                .args(["-t", "busybox:latest", "--change", r#"CMD ["sh"]"#]),
        );
    }
    store
}

/// The platforms (`os/arch`) of an index as skopeo reads it.
fn index_platforms(index: &Value) -> Vec<String> {
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// The `arch` image of the multi-platform `source` (a skopeo transport:ref) copied to its own
/// OCI layout and unpacked with umoci: its root filesystem.
fn unpack_platform(source: &str, arch: &str, work: &Path, extra: &[&str]) -> PathBuf {
    let layout = work.join(format!("single-{arch}"));
    fs_err::create_dir_all(work).unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--override-arch", arch])
        .args(extra)
        .arg(source)
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy --override-arch {arch} {source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    umoci_unpack(&layout, "latest", &work.join(format!("bundle-{arch}")))
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_busybox,
        kiln_no_emulation,
        kiln_no_skopeo,
        kiln_no_umoci
    ),
    ignore = "needs root, busybox, arm64 emulation, skopeo, umoci"
)]
fn two_platform_build_gives_an_index_and_runs_each_platform_root() {
    kiln_test::require_root();
    kiln_test::require(kiln_test::Requirement::Emulation);
    kiln_test::require_tool("skopeo");
    kiln_test::require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_platform_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         ARG TARGETARCH\n\
         RUN uname -m > /arch && echo \"$TARGETARCH\" > /targetarch\n",
    );
    let metadata = tmp.path().join("metadata.json");
    let iidfile = tmp.path().join("iid");
    let progress = build_plain(
        &store,
        &ctx,
        &[
            "--platform",
            BOTH,
            "-t",
            "app:1",
            "--metadata-file",
            metadata.to_str().unwrap(),
            "--iidfile",
            iidfile.to_str().unwrap(),
        ],
    );
    // BuildKit's labels: the platform first.
    assert!(
        progress.contains("[linux/arm64 2/2] RUN uname -m"),
        "{progress}"
    );
    let meta: Value = serde_json::from_slice(&fs_err::read(&metadata).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{meta}"
    );
    assert!(meta.get("containerimage.config.digest").is_none(), "{meta}");
    assert_eq!(
        fs_err::read_to_string(&iidfile).unwrap(),
        meta["containerimage.digest"].as_str().unwrap()
    );

    // Each platform runs: arm64 through the emulator.
    let arm =
        run_ok(kiln_in(&store).args(["run", "--platform", "linux/arm64", "app:1", "uname", "-m"]));
    assert_eq!(arm.trim(), "aarch64");
    let amd = run_ok(kiln_in(&store).args([
        "run",
        "--platform",
        "linux/amd64",
        "app:1",
        "cat",
        "/arch",
        "/targetarch",
    ]));
    assert_eq!(amd, format!("{}\namd64\n", host_machine()));

    // The same build to an OCI layout (all cached): an index skopeo reads, each platform's
    // config and files its own.
    let layout = tmp.path().join("layout");
    let cached = build_plain(
        &store,
        &ctx,
        &[
            "--platform",
            BOTH,
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    assert!(
        cached.contains("[linux/arm64 2/2] RUN uname -m") && cached.contains("CACHED"),
        "{cached}"
    );
    let source = format!("oci:{}", layout.display());
    let index = skopeo_inspect(&source, &["--raw"]);
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    // A cached rebuild makes the same index.
    let top: Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(top["manifests"][0]["digest"], meta["containerimage.digest"]);
    let config = skopeo_inspect(&source, &["--config", "--override-arch", "arm64"]);
    assert_eq!(
        (config["architecture"].as_str(), config["os"].as_str()),
        (Some("arm64"), Some("linux"))
    );
    let work = tmp.path().join("work");
    let rootfs = unpack_platform(&source, "arm64", &work, &[]);
    assert_eq!(
        fs_err::read_to_string(rootfs.join("arch")).unwrap(),
        "aarch64\n"
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("targetarch")).unwrap(),
        "arm64\n"
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn cross_compile_builder_runs_natively_once_and_needs_no_emulator_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_platform_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM busybox AS build\n\
         ARG TARGETARCH\n\
         RUN echo \"$(uname -m) $TARGETARCH\" > /out\n\
         FROM --platform=$BUILDPLATFORM busybox AS shared\n\
         RUN uname -m > /native && echo ran-shared-step\n\
         FROM busybox\n\
         COPY --from=build /out /out\n\
         COPY --from=shared /native /native\n",
    );
    // No emulator: the foreign stage only copies, so none is needed.
    let no_binfmt = tmp.path().join("no-binfmt");
    fs_err::create_dir_all(&no_binfmt).unwrap();
    let local = tmp.path().join("local");
    let tar = tmp.path().join("rootfs.tar");
    let out = kiln_in(&store)
        .env("KILN_BINFMT_DIR", &no_binfmt)
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--platform",
            BOTH,
        ])
        .arg("-o")
        .arg(format!("type=local,dest={}", local.display()))
        .arg("-o")
        .arg(format!("type=tar,dest={}", tar.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{progress}");
    let host = host_machine();
    for arch in ["amd64", "arm64"] {
        let dir = local.join(format!("linux_{arch}"));
        assert_eq!(
            fs_err::read_to_string(dir.join("out")).unwrap(),
            format!("{host} {arch}\n"),
            "the builder ran natively, with the target's TARGETARCH"
        );
        assert_eq!(
            fs_err::read_to_string(dir.join("native")).unwrap(),
            format!("{host}\n")
        );
    }
    // The step that does not read TARGETARCH ran once for both platforms (the other took
    // its result), even under --no-cache; the one that does ran once per platform.
    // Output lines are `#N ELAPSED TEXT`; the step's own line names the command.
    let shared_runs = progress
        .lines()
        .filter(|l| l.ends_with(" ran-shared-step") && !l.contains("RUN"))
        .count();
    assert_eq!(shared_runs, 1, "{progress}");
    let shared_cached = progress
        .lines()
        .filter(|l| l.contains("RUN uname -m > /native") && l.ends_with("CACHED"))
        .count();
    assert_eq!(shared_cached, 1, "{progress}");
    let builder_misses = progress
        .lines()
        .filter(|l| l.contains("RUN echo \"$(uname -m)") && !l.ends_with("CACHED"))
        .count();
    assert_eq!(builder_misses, 2, "{progress}");
    // type=tar: the same trees under one directory per platform.
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&tar));
    for entry in ["linux_amd64/out", "linux_arm64/out", "linux_arm64/native"] {
        assert!(listing.lines().any(|l| l == entry), "{entry} in\n{listing}");
    }
}

#[test]
fn a_platform_that_is_not_one_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\n");
    for bad in ["linux/bogus", "linux/amd64,bogus/arm64", "linux/arm/v9", ""] {
        let out = run_fails(
            kiln_in(&tmp.path().join("store"))
                .args(["build", "--platform", bad])
                .arg(&ctx),
            2,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--platform"), "{bad}: {stderr}");
    }
    let out = run_fails(
        kiln_in(&tmp.path().join("store"))
            .args(["build", "--platform", "linux/amd64,linux/bogus"])
            .arg(&ctx),
        2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown architecture `bogus`"), "{stderr}");
}

#[test]
fn a_docker_archive_of_two_platforms_is_refused_before_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let dest = tmp.path().join("image.tar");
    let out = run_fails(
        kiln_in(&tmp.path().join("store"))
            .args(["build", "--progress", "plain", "--platform", BOTH, "-o"])
            .arg(format!("type=docker,dest={}", dest.display()))
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker archive cannot hold a multi-platform image")
            && stderr.contains("linux/amd64, linux/arm64")
            && stderr.contains("type=oci"),
        "{stderr}"
    );
    assert!(!stderr.contains("#1 "), "no step ran: {stderr}");
    assert!(!dest.exists());
    // One platform is one image: fine.
    run_ok(
        kiln_in(&tmp.path().join("store"))
            .args([
                "build",
                "--progress",
                "quiet",
                "--platform",
                "linux/arm64",
                "-o",
            ])
            .arg(format!("type=docker,dest={}", dest.display()))
            .arg(&ctx),
    );
    assert!(dest.is_file());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn a_missing_emulator_fails_before_any_step_and_says_what_to_install_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_platform_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nCOPY Dockerfile /\nRUN true\n",
    );
    let empty = tmp.path().join("binfmt");
    fs_err::create_dir_all(&empty).unwrap();
    let out = run_fails(
        kiln_in(&store)
            .env("KILN_BINFMT_DIR", &empty)
            .args(["build", "--progress", "plain", "--platform", BOTH])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:3")
            && stderr.contains("linux/arm64")
            && stderr.contains("apt-get install qemu-user-static"),
        "{stderr}"
    );
    assert!(!stderr.contains("#1 "), "no step ran: {stderr}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn a_base_without_the_platform_names_the_platforms_it_has_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_platform_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nCOPY Dockerfile /\n");
    let out = run_fails(
        kiln_in(&store)
            .args([
                "build",
                "--progress",
                "plain",
                "--platform",
                "linux/amd64,linux/s390x",
            ])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("linux/s390x")
            && stderr.contains("linux/amd64")
            && stderr.contains("linux/arm64"),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_busybox,
        kiln_no_emulation,
        kiln_no_registry_tools
    ),
    ignore = "needs root, busybox, arm64 emulation, docker-registry, skopeo, umoci"
)]
fn push_an_index_and_pull_each_platform_back_root() {
    kiln_test::require_root();
    kiln_test::require(kiln_test::Requirement::Emulation);
    let registry = kiln_test::Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_platform_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n",
    );
    let name = format!("{}/multi/app:1", registry.host);
    let progress = build_plain(&store, &ctx, &["--platform", BOTH, "-t", &name, "--push"]);
    assert!(progress.contains(&format!("pushed {name}")), "{progress}");
    let source = format!("docker://{name}");
    let tls = ["--tls-verify=false"];
    let index = skopeo_inspect(&source, &["--raw", "--tls-verify=false"]);
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    let work = tmp.path().join("work");
    for (arch, machine) in [("amd64", host_machine()), ("arm64", "aarch64")] {
        let rootfs = unpack_platform(&source, arch, &work, &tls);
        assert_eq!(
            fs_err::read_to_string(rootfs.join("arch")).unwrap(),
            format!("{machine}\n"),
            "{arch}"
        );
    }
    // A fresh store pulls one platform, then the other: the name keeps both.
    let fresh = tmp.path().join("fresh");
    for platform in ["linux/arm64", "linux/amd64"] {
        let out = run_ok(kiln_in(&fresh).args(["run", "--platform", platform, &name]));
        let want = if platform.ends_with("arm64") {
            "aarch64"
        } else {
            host_machine()
        };
        assert_eq!(out.trim(), want, "{platform}");
    }
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_busybox,
        kiln_no_emulation,
        kiln_no_registry_tools,
        kiln_no_buildah
    ),
    ignore = "needs root, busybox, arm64 emulation, docker-registry, skopeo, umoci, buildah"
)]
fn two_platforms_match_buildah_root() {
    kiln_test::require_root();
    kiln_test::require(kiln_test::Requirement::Emulation);
    kiln_test::require_tool("buildah");
    let registry = kiln_test::Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_two_platform_busybox(tmp.path());
    let base = format!("{}/base/busybox:latest", registry.host);
    run_ok(kiln_in(&store).args(["push", "busybox:latest", &base]));
    let ctx = tmp.path().join("ctx");
    write(&ctx, "app/main.txt", "hello\n");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM --platform=$BUILDPLATFORM {base} AS build\n\
             ARG TARGETARCH\n\
             RUN echo \"built for $TARGETARCH on $(uname -m)\" > /built\n\
             FROM {base}\n\
             ARG TARGETPLATFORM\n\
             ENV TARGET=$TARGETPLATFORM\n\
             COPY --from=build /built /built\n\
             COPY app /app\n\
             RUN uname -m > /arch && mkdir -p /data && chmod 0700 /data\n\
             WORKDIR /app\n\
             USER 1000\n\
             EXPOSE 8080\n\
             CMD [\"cat\", \"/built\"]\n"
        ),
    );
    let work = tmp.path().join("work");
    let ours = tmp.path().join("kiln-oci");
    build_plain(
        &store,
        &ctx,
        &[
            "--platform",
            BOTH,
            "-o",
            &format!("type=oci,dest={},tar=false", ours.display()),
        ],
    );
    let buildah = Buildah {
        root: tmp.path().join("buildah"),
    };
    buildah.run(&[
        "build",
        "--quiet",
        "--tls-verify=false",
        "--platform",
        BOTH,
        "--manifest",
        "localhost/multi:latest",
        "-f",
        ctx.join("Dockerfile").to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    let theirs = tmp.path().join("buildah-oci");
    buildah.run(&[
        "manifest",
        "push",
        "--all",
        "--quiet",
        "localhost/multi:latest",
        &format!("oci:{}:latest", theirs.display()),
    ]);
    let mut problems = Vec::new();
    for arch in ["amd64", "arm64"] {
        let our_source = format!("oci:{}", ours.display());
        let their_source = format!("oci:{}:latest", theirs.display());
        let our_config = skopeo_inspect(&our_source, &["--config", "--override-arch", arch]);
        let their_config = skopeo_inspect(&their_source, &["--config", "--override-arch", arch]);
        for key in ["architecture", "os"] {
            if our_config[key] != their_config[key] {
                problems.push(format!(
                    "{arch} {key}: kiln {} / buildah {}",
                    our_config[key], their_config[key]
                ));
            }
        }
        let (o, t) = (
            normalized_config(&our_config["config"]),
            normalized_config(&their_config["config"]),
        );
        for field in FIELDS {
            if o.get(*field) != t.get(*field) {
                problems.push(format!(
                    "{arch} config {field}: kiln {:?} / buildah {:?}",
                    o.get(*field),
                    t.get(*field)
                ));
            }
        }
        let our_tree = walk(&unpack_platform(&our_source, arch, &work.join("kiln"), &[]));
        let their_tree = walk(&unpack_platform(
            &their_source,
            arch,
            &work.join("buildah"),
            &[],
        ));
        // Known difference: buildah 1.28 runs a `FROM --platform=$BUILDPLATFORM` stage of a
        // multi-platform build on the target platform (through the emulator: "built for
        // arm64 on aarch64"); BuildKit, which kiln follows, runs it natively. kiln's /built is
        // checked on its own below.
        problems.extend(
            tree_differences(&our_tree, &their_tree)
                .into_iter()
                .filter(|p| !p.starts_with("/built:"))
                .map(|p| format!("{arch} {p}")),
        );
        let built = String::from_utf8_lossy(&our_tree["/built"].data).into_owned();
        assert_eq!(
            built,
            format!("built for {arch} on {}\n", host_machine()),
            "the builder stage ran natively"
        );
    }
    assert!(
        problems.is_empty(),
        "kiln and buildah differ:\n{}",
        problems.join("\n")
    );
}
