//! `--isolation`: the same build gives the same image under the namespace sandbox and chroot
//! isolation (with and without mount rights), isolation is no part of a cache key, the
//! choice is said in plain and rawjson progress, and what chroot cannot honour is refused.

use std::path::Path;

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, run_ok, write};

/// A multi-stage build with a cache mount, a secret, a tmpfs, `COPY --from`, a non-root
/// `USER` and deletions (whiteouts).
const DOCKERFILE: &str = "\
FROM busybox AS build
RUN --mount=type=cache,target=/root/.cache,id=c echo cached >> /root/.cache/log \\
    && mkdir -p /out && cp /root/.cache/log /out/log-seen && echo built > /out/a \\
    && echo lines=$(wc -l < /root/.cache/log)
RUN --mount=type=secret,id=tok,target=/run/secrets/tok --mount=type=tmpfs,target=/scratch \\
    test \"$(cat /run/secrets/tok)\" = s3cret && echo tmp > /scratch/x && rm /etc/group \\
    && echo > /dev/null && wc -c < /dev/null
FROM busybox
COPY --from=build /out /out
RUN echo app:x:1000:1000::/data:/bin/sh >> /etc/passwd && mkdir /data && chown 1000 /data
USER app
WORKDIR /data
RUN id -u > uid && pwd > pwd && touch /tmp/scratch-file
";

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    write(&ctx, "Dockerfile", DOCKERFILE);
    write(dir, "secret", "s3cret");
    ctx
}

fn build(store: &Path, ctx: &Path, secret: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = kiln_in(store);
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--progress", "plain"])
        .arg("--secret")
        .arg(format!("id=tok,src={}", secret.display()))
        .args(extra)
        .arg(ctx);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{extra:?} {env:?}:\n{stderr}");
    stderr
}

fn manifest_digest(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split("(manifest ").nth(1))
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no manifest digest in:\n{log}"))
        .to_owned()
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn chroot_and_namespaces_give_the_same_image_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path());
    let secret = tmp.path().join("secret");
    let mut digests = Vec::new();
    for (name, extra, env) in [
        ("ns", &["--isolation", "namespaces"][..], &[][..]),
        ("chroot", &["--isolation", "chroot"][..], &[][..]),
        (
            "chroot-no-mounts",
            &[][..],
            &[
                ("KILN_ISOLATION", "chroot"),
                ("KILN_SANDBOX_NO_MOUNTS", "1"),
            ][..],
        ),
    ] {
        let store = store_with_busybox(&tmp.path().join(name));
        let log = build(&store, &ctx, &secret, extra, env);
        let mode = if name == "ns" { "namespaces" } else { "chroot" };
        assert!(
            log.lines().any(|l| l == format!("isolation: {mode}")),
            "{name}: the isolation is not said:\n{log}"
        );
        if name == "chroot-no-mounts" {
            assert!(
                log.contains("WARNING: chroot isolation: this container allows no mounts"),
                "{log}"
            );
        }
        assert!(log.contains(" lines=1\n"), "{name}:\n{log}");
        // The rootfs copies chroot isolation keeps between a stage's steps go with the build.
        let left: Vec<_> = fs_err::read_dir(store.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("chroot-") || n.starts_with("run-"))
            .collect();
        assert!(left.is_empty(), "{name}: left in the store's tmp: {left:?}");
        digests.push((name, manifest_digest(&log)));
        // The cache mount was written through in every mode: a second build of the first
        // RUN (no cache) sees the first one's line.
        let again = build(
            &store,
            &ctx,
            &secret,
            &[&["--no-cache"][..], extra].concat(),
            env,
        );
        assert!(
            again.contains(" lines=2\n"),
            "{name}: the cache mount lost its write:\n{again}"
        );
    }
    assert!(
        digests.iter().all(|(_, d)| *d == digests[0].1),
        "isolation changed the image: {digests:?}"
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn isolation_is_no_part_of_the_cache_key_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path());
    let secret = tmp.path().join("secret");
    let store = store_with_busybox(tmp.path());
    build(&store, &ctx, &secret, &["--isolation", "chroot"], &[]);
    let warm = build(&store, &ctx, &secret, &["--isolation", "namespaces"], &[]);
    let steps: Vec<&str> = warm
        .lines()
        .filter(|l| l.starts_with('#') && l.contains(" [") && !l.contains("cache miss"))
        .collect();
    assert!(
        !steps.is_empty() && steps.iter().all(|l| l.ends_with(" CACHED")),
        "a chroot-built cache did not serve a namespace build:\n{warm}"
    );
    // A fully cached build never starts a sandbox, so it says nothing about isolation.
    assert!(!warm.contains("isolation:"), "{warm}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn isolation_is_said_in_rawjson_and_impossible_choices_are_refused_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo hi > /hi\n");
    let out = run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "rawjson", "--isolation", "chroot"])
            .arg(&ctx),
    );
    let event: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "isolation")
        .unwrap_or_else(|| panic!("no isolation event:\n{out}"));
    assert_eq!(event["mode"], "chroot");
    assert!(event["reason"].is_null());
    // auto on this host: the namespace sandbox works.
    let log = build_plain(&store, &ctx, &["--no-cache"]);
    assert!(log.lines().any(|l| l == "isolation: namespaces"), "{log}");

    let refused = run_fails(
        kiln_in(&store)
            .args(["build", "--isolation", "chroot", "--network", "none"])
            .arg(&ctx),
        2,
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--network none"), "{stderr}");
    let bad = run_fails(
        kiln_in(&store)
            .args(["build", "--isolation", "vm"])
            .arg(&ctx),
        2,
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("vm"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // RUN --network=none under chroot fails the step and says why.
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN --network=none echo offline\n",
    );
    let failed = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--isolation", "chroot"])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("--network=none cannot be honoured under chroot isolation"),
        "{stderr}"
    );
}
