//! `kiln build --add-host`, `--ulimit` and `--shm-size`: what RUN sees, that none of it enters
//! a layer, that each is part of the RUN's cache key (as in BuildKit's ExecOp meta), and that
//! bad values are usage errors naming them.

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, write};

const OPTIONS: [&str; 8] = [
    "--add-host",
    "db.internal:10.1.2.3",
    "--add-host",
    "v6host=::1",
    "--ulimit",
    "nofile=1024:2048",
    "--shm-size",
    "96m",
];

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_sees_its_hosts_limits_and_shm_size_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN grep -E 'db.internal|v6host' /etc/hosts \\\n\
          && grep 'Max open files' /proc/self/limits \\\n\
          && grep ' /dev/shm ' /proc/self/mountinfo | grep -o 'size=[0-9]*k' \\\n\
          && echo ran > /ran\n",
    );
    for isolation in ["namespaces", "chroot"] {
        let dir = tmp.path().join(isolation);
        let store_copy = store_with_busybox(&dir);
        let out = dir.join("out");
        let log = build_plain(
            &store_copy,
            &ctx,
            &[
                &OPTIONS[..],
                &[
                    "--isolation",
                    isolation,
                    "-o",
                    &format!("type=local,dest={}", out.display()),
                ],
            ]
            .concat(),
        );
        assert!(log.contains("10.1.2.3\tdb.internal"), "{isolation}:\n{log}");
        assert!(log.contains("::1\tv6host"), "{isolation}:\n{log}");
        assert!(
            log.lines().any(|l| l.contains("Max open files")
                && l.contains(" 1024 ")
                && l.contains(" 2048 ")),
            "{isolation}:\n{log}"
        );
        assert!(log.contains("size=98304k"), "{isolation}:\n{log}");
        // The generated /etc/hosts never reaches the image.
        let hosts = out.join("etc/hosts");
        assert!(
            !hosts.exists()
                || !fs_err::read_to_string(&hosts)
                    .unwrap()
                    .contains("db.internal"),
            "{isolation}: --add-host leaked into the image"
        );
        assert!(out.join("ran").exists());
    }

    // Part of the key: without them the RUN runs again; with them again it is cached.
    build_plain(&store, &ctx, &OPTIONS);
    let again = build_plain(&store, &ctx, &OPTIONS);
    assert!(
        again
            .lines()
            .any(|l| l.contains("RUN grep") && l.ends_with(" CACHED")),
        "{again}"
    );
    let without = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain"])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&without.stderr);
    // The RUN was not taken from the cache made with the options: it ran, and its grep found
    // no such host.
    assert!(
        stderr.contains("cache miss") && stderr.contains("did not complete successfully"),
        "{stderr}"
    );
}

#[test]
fn bad_values_are_usage_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--add-host", "db:not-an-ip"),
        ("--add-host", "db:host-gateway"),
        ("--ulimit", "files=10"),
        ("--ulimit", "nofile=10:5"),
        ("--shm-size", "lots"),
    ] {
        let out = run_fails(
            kiln_in(&tmp.path().join("store"))
                .args(["build", flag, value])
                .arg(tmp.path()),
            2,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(value), "{flag} {value}: {stderr}");
    }
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn no_cache_filter_runs_only_the_named_stages_again_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS deps\n\
         RUN echo deps > /deps\n\
         FROM busybox AS other\n\
         RUN echo other > /other\n\
         FROM busybox\n\
         COPY --from=deps /deps /deps\n\
         COPY --from=other /other /other\n",
    );
    build_plain(&store, &ctx, &[]);
    let log = build_plain(&store, &ctx, &["--no-cache-filter", "deps,nosuch"]);
    let header = |text: &str| {
        log.lines()
            .find(|l| l.contains(text) && l.starts_with('#') && !l.contains("cache miss"))
            .unwrap_or_else(|| panic!("no step {text}:\n{log}"))
            .to_owned()
    };
    assert!(!header("RUN echo deps").ends_with(" CACHED"), "{log}");
    assert!(log.contains("cache miss: --no-cache-filter"), "{log}");
    assert!(header("RUN echo other").ends_with(" CACHED"), "{log}");
    assert!(
        log.contains("WARNING: --no-cache-filter nosuch: no stage of this build is named so"),
        "{log}"
    );
}

/// Every `key=value` flag and every enumerated flag of `kiln build`: a key, type or value kiln
/// does not implement is a usage error (exit 2) that names it, never accepted and dropped.
#[test]
fn every_unknown_key_or_value_is_a_usage_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let table: &[(&[&str], &str)] = &[
        (&["-o", "type=oci,dest=/tmp/x.tar,foo=1"], "foo"),
        (&["-o", "type=oci,dest=/tmp/x,tar=false,foo=1"], "foo"),
        (&["-o", "type=docker,dest=/tmp/x.tar,foo=1"], "foo"),
        (&["-o", "type=local,dest=/tmp/x,foo=1"], "foo"),
        (&["-o", "type=tar,dest=/tmp/x.tar,foo=1"], "foo"),
        (&["-o", "type=image,name=x,foo=1"], "foo"),
        (&["-o", "type=registry,name=x,foo=1"], "foo"),
        (&["-o", "type=bogus"], "bogus"),
        (
            &["--cache-to", "type=registry,ref=127.0.0.1:5000/x:c,foo=1"],
            "foo",
        ),
        (&["--cache-to", "type=local,dest=/tmp/c,foo=1"], "foo"),
        (&["--cache-to", "type=inline,foo=1"], "foo"),
        (&["--cache-to", "type=gha"], "gha"),
        (&["--cache-from", "type=registry,ref=x,foo=1"], "foo"),
        (&["--cache-from", "type=local,src=/tmp/c,foo=1"], "foo"),
        (&["--secret", "id=a,foo=1"], "foo"),
        (&["--secret", "id=a,type=vault"], "vault"),
        (&["--allow", "foo.bar"], "foo.bar"),
        (&["--progress", "fancy"], "fancy"),
        (&["--network", "bridge"], "bridge"),
        (&["--isolation", "vm"], "vm"),
        (&["--compression", "lz4"], "lz4"),
        (&["--ulimit", "foo=1"], "foo"),
        (&["--shm-size", "1q"], "1q"),
        (&["--add-host", "db"], "db"),
        (&["--build-context", "=x"], "=x"),
        (&["--build-context", "name="], "name="),
        (&["--build-arg", "=v"], "=v"),
        (&["--label", "=v"], "=v"),
    ];
    for (args, named) in table {
        let out = run_fails(
            kiln_in(&tmp.path().join("store"))
                .arg("build")
                .args(*args)
                .arg(tmp.path()),
            2,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(named),
            "{args:?} does not name `{named}`: {stderr}"
        );
    }
}
