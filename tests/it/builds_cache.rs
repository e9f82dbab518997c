//! `kiln build` scheduling and caching: `--target` pruning, parallel stages, warm rebuilds
//! that print CACHED on every step, and cache misses that name the file that changed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, run_ok, write};

/// The `#N NAME` header lines of a plain progress log (one per step).
pub(crate) fn step_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with('#') && l.contains(" [") && !l.contains(" cache miss: "))
        .collect()
}

/// The miss reason printed for the step whose header contains `name`, if it missed.
pub(crate) fn miss_reason<'a>(log: &'a str, name: &str) -> Option<&'a str> {
    let header = log
        .lines()
        .find(|l| l.contains(name) && !l.ends_with(" CACHED"))?;
    let number = header.split_whitespace().next()?;
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{number} cache miss: ")))
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn target_prunes_a_failing_unrelated_stage_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS broken\n\
         RUN echo broken-stage-ran && exit 1\n\
         FROM busybox AS base\n\
         RUN echo base > /base\n\
         FROM base AS wanted\n\
         RUN cat /base > /wanted\n\
         FROM busybox\n\
         COPY --from=broken / /\n",
    );
    let log = build_plain(&store, &ctx, &["--target", "wanted"]);
    assert!(!log.contains("broken"), "the broken stage ran:\n{log}");
    assert!(
        log.contains("[wanted 1/1] RUN cat /base > /wanted"),
        "{log}"
    );
    // Without --target the last stage needs `broken`, which fails the build with exit 1.
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain"])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken-stage-ran"), "{stderr}");
    assert!(stderr.contains("exit code: 1"), "{stderr}");
}

/// A Dockerfile of `stages` independent stages that only finish together: each marks its
/// arrival in a shared cache mount, then waits (up to 60 s, else it fails) until all have
/// arrived. It builds only if every stage runs at the same time, whatever the machine's load.
fn rendezvous_dockerfile(stages: usize) -> String {
    use std::fmt::Write as _;
    let mut dockerfile = String::new();
    for i in 0..stages {
        writeln!(
            dockerfile,
            "FROM busybox AS s{i}
             RUN --mount=type=cache,id=rendezvous,target=/meet \
              touch /meet/{i} && n=0 && \
              while [ \"$(ls /meet | wc -l)\" -lt {stages} ]; do \
              n=$((n+1)); [ $n -lt 600 ] || exit 7; sleep 0.1; done && echo {i} > /{i}"
        )
        .unwrap();
    }
    dockerfile.push_str("FROM busybox\n");
    for i in 0..stages {
        writeln!(dockerfile, "COPY --from=s{i} /{i} /{i}").unwrap();
    }
    dockerfile
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn independent_stages_run_in_parallel_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", &rendezvous_dockerfile(2));
    build_plain(&store, &ctx, &["--jobs", "2"]);
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn by_default_every_ready_stage_runs_even_beyond_the_cores_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    // Two more stages than cores: a bound of one stage per core would run them in waves,
    // and the first wave would wait for the last in vain; BuildKit, and kiln without
    // --jobs, run them all at once.
    let stages = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) + 2;
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", &rendezvous_dockerfile(stages));
    build_plain(&store, &ctx, &[]);
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn warm_rebuild_is_cached_and_misses_name_the_changed_file_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "app/main.txt", "main v1\n");
    write(&ctx, "app/util.txt", "util v1\n");
    write(&ctx, "other.txt", "other\n");
    write(&ctx, "notes.log", "ignored\n");
    write(&ctx, ".dockerignore", "*.log\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS one\n\
         COPY app/main.txt /main.txt\n\
         RUN cat /main.txt > /one\n\
         FROM busybox AS two\n\
         COPY other.txt /other.txt\n\
         RUN cat /other.txt > /two\n\
         FROM busybox\n\
         ENV K=V\n\
         COPY --from=two /two /two\n\
         COPY --from=one /one /one\n\
         COPY . /ctx/\n\
         RUN ls /ctx > /listing\n",
    );
    let cold = build_plain(&store, &ctx, &[]);
    let steps = step_lines(&cold).len();
    assert_eq!(steps, 11, "{cold}");
    // The final line is numbered after the last step (it used to say #1).
    assert!(
        cold.contains(&format!("#{} writing image sha256:", steps + 1)),
        "{cold}"
    );

    // A warm rebuild: every step CACHED.
    let warm = build_plain(&store, &ctx, &[]);
    let lines = step_lines(&warm);
    assert_eq!(lines.len(), steps, "{warm}");
    for line in &lines {
        assert!(line.ends_with(" CACHED"), "not cached: {line}\n{warm}");
    }
    assert!(!warm.contains("cache miss"), "{warm}");

    // A .dockerignore'd file never invalidates anything.
    write(&ctx, "notes.log", "changed, but ignored\n");
    write(&ctx, "more.log", "new, but ignored\n");
    let ignored = build_plain(&store, &ctx, &[]);
    assert!(!ignored.contains("cache miss"), "{ignored}");

    // One changed file invalidates exactly the steps that depend on it, with the reason.
    write(&ctx, "app/main.txt", "main v2\n");
    let changed = build_plain(&store, &ctx, &[]);
    assert_eq!(
        miss_reason(&changed, "[one 2/3] COPY app/main.txt /main.txt"),
        Some("file app/main.txt changed"),
        "{changed}"
    );
    assert_eq!(
        miss_reason(&changed, "[one 3/3] RUN"),
        Some("parent changed"),
        "{changed}"
    );
    assert_eq!(
        miss_reason(&changed, "COPY --from=one /one /one"),
        Some("stage one:/one changed"),
        "{changed}"
    );
    // The step's own inputs outrank `parent changed`: COPY . copies app/main.txt too.
    assert_eq!(
        miss_reason(&changed, "COPY . /ctx/"),
        Some("file app/main.txt changed"),
        "{changed}"
    );
    assert_eq!(
        miss_reason(&changed, "RUN ls /ctx"),
        Some("parent changed"),
        "{changed}"
    );
    for unaffected in [
        "[one 1/3] FROM",
        "[two 2/3] COPY other.txt",
        "[two 3/3] RUN",
        "COPY --from=two /two /two",
    ] {
        assert_eq!(
            miss_reason(&changed, unaffected),
            None,
            "{unaffected} should be cached:\n{changed}"
        );
    }
    let misses = changed.matches("cache miss: ").count();
    assert_eq!(misses, 5, "{changed}");

    // A change seen only by the last COPY: the file is named there.
    write(&ctx, "app/util.txt", "util v2\n");
    let util = build_plain(&store, &ctx, &[]);
    assert_eq!(
        miss_reason(&util, "COPY . /ctx/"),
        Some("file app/util.txt changed"),
        "{util}"
    );
    assert_eq!(util.matches("cache miss: ").count(), 2, "{util}");

    // A build arg nothing in the stage consumes changes nothing; one RUN sees does.
    let args = build_plain(&store, &ctx, &["--build-arg", "UNUSED=1"]);
    assert!(!args.contains("cache miss"), "{args}");
    let _ = run_ok(kiln_in(&store).args(["inspect", "busybox"]));
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn same_inputs_give_the_same_digest_across_stores_and_jobs_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "f.txt", "f\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS b\n\
         RUN mkdir /out && echo x > /out/x && touch /out/y\n\
         FROM busybox\n\
         COPY f.txt /f\n\
         COPY --from=b /out /out\n\
         RUN echo run > /r\n\
         WORKDIR /w\n",
    );
    let mut digests = Vec::new();
    for (name, jobs) in [("a", "1"), ("b", "4")] {
        let dir = tmp.path().join(name);
        let store = store_with_busybox(&dir);
        let out = run_ok(
            kiln_in(&store)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["build", "--progress", "quiet", "--jobs", jobs])
                .arg(&ctx),
        );
        digests.push(out.trim().to_owned());
        // A cache made without the epoch must not serve an epoch build (its layers' times
        // are not clamped): store `a` built once without it first.
        if name == "a" {
            let plain = run_ok(
                kiln_in(&store)
                    .args(["build", "--progress", "quiet", "--no-cache"])
                    .arg(&ctx),
            );
            assert_ne!(plain.trim(), digests[0], "the epoch changed nothing");
            let again = run_ok(
                kiln_in(&store)
                    .env("SOURCE_DATE_EPOCH", "1700000000")
                    .args(["build", "--progress", "quiet"])
                    .arg(&ctx),
            );
            assert_eq!(
                again.trim(),
                digests[0],
                "an unclamped cached layer was used"
            );
        }
        // Not a readiness wait: the second build must run in a later second, so any
        // timestamp SOURCE_DATE_EPOCH failed to clamp would change the digest.
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(digests[0], digests[1], "SOURCE_DATE_EPOCH builds differ");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn onbuild_triggers_of_a_base_image_run_and_are_counted_in_labels_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let parent = tmp.path().join("parent");
    write(
        &parent,
        "Dockerfile",
        "FROM busybox\nONBUILD RUN echo triggered > /triggered\n",
    );
    build_plain(&store, &parent, &["-t", "with-onbuild:1"]);
    let child = tmp.path().join("child");
    write(
        &child,
        "Dockerfile",
        "FROM with-onbuild:1\nRUN cat /triggered > /seen\n",
    );
    let out = tmp.path().join("rootfs");
    let log = build_plain(
        &store,
        &child,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
    // One FROM, one trigger, one RUN: every label says /3 (the FROM used to say 1/2).
    assert!(log.contains("[1/3] FROM with-onbuild:1"), "{log}");
    assert!(
        log.contains("[2/3] ONBUILD RUN echo triggered > /triggered"),
        "{log}"
    );
    assert!(log.contains("[3/3] RUN cat /triggered > /seen"), "{log}");
    assert_eq!(
        fs_err::read_to_string(out.join("seen")).unwrap(),
        "triggered\n"
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn copy_from_a_stage_is_keyed_by_the_copied_subtree_only_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "app.txt", "app\n");
    write(&ctx, "README.md", "v1\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS builder\n\
         COPY . /src/\n\
         RUN mkdir /out && cp /src/app.txt /out/app.txt && cat /src/README.md > /notes\n\
         FROM busybox\n\
         COPY --from=builder /out /app\n\
         RUN ls /app > /listing\n",
    );
    build_plain(&store, &ctx, &[]);
    // README.md reaches the builder but not /out: the builder re-runs, the runtime stage
    // stays cached (DESIGN.md §6).
    write(&ctx, "README.md", "v2\n");
    let log = build_plain(&store, &ctx, &[]);
    assert_eq!(
        miss_reason(&log, "[builder 2/3] COPY . /src/"),
        Some("file README.md changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "[builder 3/3] RUN"),
        Some("parent changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "COPY --from=builder /out /app"),
        None,
        "{log}"
    );
    assert_eq!(miss_reason(&log, "RUN ls /app"), None, "{log}");
    // app.txt reaches /out: the runtime COPY misses and names the file in the stage.
    write(&ctx, "app.txt", "app v2\n");
    let log = build_plain(&store, &ctx, &[]);
    assert_eq!(
        miss_reason(&log, "COPY --from=builder /out /app"),
        Some("stage builder:/out/app.txt changed"),
        "{log}"
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn dockerfile_specific_dockerignore_wins_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "a.txt", "a\n");
    write(&ctx, "b.txt", "b\n");
    write(&ctx, ".dockerignore", "a.txt\n");
    write(&ctx, "build/app.Dockerfile", "FROM busybox\nCOPY . /ctx/\n");
    // BuildKit: <Dockerfile>.dockerignore next to the Dockerfile replaces .dockerignore.
    write(&ctx, "build/app.Dockerfile.dockerignore", "b.txt\nbuild\n");
    let out = tmp.path().join("rootfs");
    build_plain(
        &store,
        &ctx,
        &[
            "-f",
            ctx.join("build/app.Dockerfile").to_str().unwrap(),
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    assert!(out.join("ctx/a.txt").is_file());
    assert!(!out.join("ctx/b.txt").exists());
    assert!(!out.join("ctx/build").exists());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn sigint_cancels_a_running_build_and_cleans_up_root() {
    use std::io::{BufRead as _, BufReader};
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN echo started && sleep 30 && echo done > /done\n",
    );
    let out_tar = tmp.path().join("out.tar");
    let started = Instant::now();
    let mut child = kiln_in(&store)
        .args(["build", "--progress", "plain", "-o"])
        .arg(format!("type=oci,dest={}", out_tar.display()))
        .arg(&ctx)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    // Wait until the RUN is running (its first output line), then interrupt.
    while !log.contains(" started") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "kiln exited early:\n{log}"
        );
        log.push_str(&line);
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    log.push_str(&rest);
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("error: build cancelled"), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the RUN was not stopped"
    );
    assert!(!out_tar.exists(), "a cancelled build wrote its output");
    let leftovers: Vec<_> = fs_err::read_dir(store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("run-") || n.starts_with("copy-"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

/// Blobs in the store (`blobs/sha256/*`).
fn blob_count(store: &Path) -> usize {
    fs_err::read_dir(store.join("blobs/sha256")).map_or(0, Iterator::count)
}

/// A stage outside the image (a builder reached through `COPY --from`) is kept as snapshots
/// without compressing its layers; `--target builder` later compresses them from the
/// snapshots, all steps still cached, into an image that independent tools read; and a record
/// whose snapshot is gone (and that has no blob) is a miss that rebuilds, not an error.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn layers_outside_the_image_are_compressed_only_when_an_image_needs_them_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "input.txt", "payload\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS builder\n\
         RUN mkdir /out && head -c 300000 /dev/urandom > /out/big && echo built > /out/small\n\
         COPY input.txt /out/\n\
         FROM busybox\n\
         COPY --from=builder /out/small /small\n",
    );
    let before = blob_count(&store);
    build_plain(&store, &ctx, &["-t", "lazy:final"]);
    // The final image's config and manifest: 2 blobs; none for the builder's RUN and COPY
    // layers, nor for the image's own layer (a `-t`-only image keeps it uncompressed).
    assert_eq!(
        blob_count(&store) - before,
        2,
        "the builder's layers were compressed"
    );

    let layout = tmp.path().join("builder-layout");
    let log = build_plain(
        &store,
        &ctx,
        &[
            "--target",
            "builder",
            "-t",
            "lazy-builder",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    let steps = step_lines(&log);
    assert!(
        steps.iter().all(|l| l.ends_with(" CACHED")),
        "--target builder rebuilt steps:\n{log}"
    );
    let config = crate::builds::layout_config(&layout);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    if crate::common::has_tool("umoci") {
        let rootfs = crate::builds::umoci_unpack(&layout, "latest", &tmp.path().join("bundle"));
        assert_eq!(
            fs_err::read_to_string(rootfs.join("out/small")).unwrap(),
            "built\n"
        );
        assert_eq!(
            fs_err::metadata(rootfs.join("out/big")).unwrap().len(),
            300_000
        );
        assert_eq!(
            fs_err::read_to_string(rootfs.join("out/input.txt")).unwrap(),
            "payload\n"
        );
    }
    // The blobs compressed for --target builder are remembered: a second export compresses
    // nothing new.
    let after_export = blob_count(&store);
    build_plain(&store, &ctx, &["--target", "builder", "-t", "lazy:builder"]);
    assert_eq!(blob_count(&store), after_export);

    // A builder layer that is only a snapshot, with the snapshot gone: the step runs again.
    // (It makes /unused too: a layer with the same diffID as the final image's COPY layer
    // would be restored from that layer's blob instead.)
    let ctx2 = tmp.path().join("ctx2");
    write(
        &ctx2,
        "Dockerfile",
        "FROM busybox AS builder\n\
         RUN echo second > /second && echo unused > /unused\n\
         FROM busybox\n\
         COPY --from=builder /second /second\n",
    );
    build_plain(&store, &ctx2, &[]);
    let snapshots: Vec<_> = fs_err::read_dir(store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let victim = snapshots
        .iter()
        .find(|p| p.join("unused").is_file())
        .expect("the builder's RUN snapshot");
    fs_err::remove_dir_all(victim).unwrap();
    let log = build_plain(&store, &ctx2, &[]);
    assert!(
        log.lines()
            .any(|l| l.contains("RUN echo second") && !l.ends_with(" CACHED")),
        "the step whose snapshot was removed did not run again:\n{log}"
    );

    // An image layer's record names no blob (it was compressed in the background after
    // the record was written), but the blob is remembered: with its snapshot gone, the step
    // is restored from that blob instead of running again.
    let image_layer = fs_err::read_dir(store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("second").is_file() && !p.join("unused").exists())
        .expect("the final image's COPY snapshot");
    fs_err::remove_dir_all(&image_layer).unwrap();
    let log = build_plain(&store, &ctx2, &[]);
    assert!(
        step_lines(&log).iter().all(|l| l.ends_with(" CACHED")),
        "a step whose snapshot was removed was not restored from its blob:\n{log}"
    );
    assert!(
        image_layer.join("second").is_file(),
        "the snapshot was not restored"
    );
}

/// A COPY of more files than one thread writes (the files are written, and the context is
/// listed, by several threads): every file arrives with its content, mode, owner and mtime,
/// and a second build is cached.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn a_large_copy_keeps_every_file_mode_owner_and_mtime_root() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    let modes = [0o644, 0o755, 0o600, 0o4755];
    let mut expected = Vec::new();
    for d in 0..12 {
        for f in 0..60 {
            let rel = format!("tree/d{d:02}/s{}/f{f:03}", f % 3);
            write(&ctx, &rel, &format!("{rel}\n{}", "x".repeat(f * 7)));
            let mode = modes[(d + f) % modes.len()];
            let path = ctx.join(&rel);
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let mtime = 1_600_000_000 + i64::try_from(d * 100 + f).unwrap();
            let when = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(mtime).unwrap());
            fs_err::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_times(std::fs::FileTimes::new().set_modified(when))
                .unwrap();
            expected.push((rel, mode, mtime));
        }
    }
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY --chown=123:456 tree /data/\n",
    );
    let out = tmp.path().join("out");
    build_plain(
        &store,
        &ctx,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
    for (rel, mode, mtime) in &expected {
        let got = out.join("data").join(rel.strip_prefix("tree/").unwrap());
        let meta = fs_err::symlink_metadata(&got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.mode() & 0o7777, *mode, "{rel}");
        assert_eq!((meta.uid(), meta.gid()), (123, 456), "{rel}");
        assert_eq!(meta.mtime(), *mtime, "{rel}");
        assert_eq!(
            fs_err::read_to_string(&got).unwrap(),
            fs_err::read_to_string(ctx.join(rel)).unwrap()
        );
    }
    let files = walkdir_count(&out.join("data"));
    assert_eq!(files, expected.len(), "extra or missing files");
    let log = build_plain(&store, &ctx, &[]);
    assert!(
        step_lines(&log).iter().all(|l| l.ends_with(" CACHED")),
        "{log}"
    );

    // After an edit, the unchanged files are hard links to the last COPY's snapshot — and the
    // image is the one a store that never saw the first build makes.
    write(&ctx, "tree/d03/s1/f001", "edited\n");
    let epoch_build = |store: &Path| {
        run_ok(
            kiln_in(store)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["build", "--progress", "quiet"])
                .arg(&ctx),
        )
        .trim()
        .to_owned()
    };
    let linked = epoch_build(&store);
    assert!(
        max_nlink(&store.join("snapshots")) >= 2,
        "no file of the second COPY was linked"
    );
    let fresh = store_with_busybox(&tmp.path().join("fresh"));
    assert_eq!(linked, epoch_build(&fresh), "linking changed the image");
}

fn max_nlink(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut max = 0;
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            max = max.max(max_nlink(&entry.path()));
        } else {
            max = max.max(meta.nlink());
        }
    }
    max
}

fn walkdir_count(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            count += walkdir_count(&entry.path());
        } else {
            count += 1;
        }
    }
    count
}

/// The first file named `name` under `dir`.
fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in fs_err::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let path = entry.path();
        if entry.file_type().ok()?.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

/// `COPY --from` links a stage's file into the new layer when its metadata matches; a file
/// with extended attributes is copied with them, not linked.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn copy_from_links_files_but_not_files_with_xattrs_root() {
    use std::os::unix::fs::MetadataExt as _;
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    let stage = "FROM busybox AS b\nRUN echo plain > /plain-src && echo tagged > /tagged-src\n";
    write(
        &ctx,
        "Dockerfile",
        &format!("{stage}FROM busybox\nCOPY --from=b /plain-src /plain\n"),
    );
    build_plain(&store, &ctx, &[]);
    let snapshots = store.join("snapshots");
    let plain = find_file(&snapshots, "plain").expect("the COPY's snapshot");
    assert_eq!(fs_err::metadata(&plain).unwrap().nlink(), 2, "not linked");
    let tagged_src = find_file(&snapshots, "tagged-src").expect("the RUN's snapshot");
    if let Err(e) = rustix::fs::lsetxattr(
        &tagged_src,
        "user.kiln-test",
        b"1",
        rustix::fs::XattrFlags::empty(),
    ) {
        panic!(
            "setting a user xattr on {} failed ({e}): the xattr half needs a store on a \
             filesystem with user xattrs (set TMPDIR to one)",
            tagged_src.display()
        );
    }
    write(
        &ctx,
        "Dockerfile",
        &format!("{stage}FROM busybox\nCOPY --from=b /tagged-src /tagged\n"),
    );
    build_plain(&store, &ctx, &[]);
    let tagged = find_file(&snapshots, "tagged").expect("the second COPY's snapshot");
    assert_eq!(
        fs_err::metadata(&tagged).unwrap().nlink(),
        1,
        "a file with xattrs was linked"
    );
    assert_eq!(fs_err::read_to_string(&tagged).unwrap(), "tagged\n");
    // The copy keeps the attribute, as BuildKit's does.
    let mut value = [0u8; 8];
    let n = rustix::fs::lgetxattr(&tagged, "user.kiln-test", &mut value)
        .expect("the COPY dropped the file's extended attribute");
    assert_eq!(&value[..n], b"1");
}
