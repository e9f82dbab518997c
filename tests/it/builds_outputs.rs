//! `kiln build` inputs and outputs end to end: named build contexts (a local directory,
//! `docker-image://`, `oci-layout://`), every `--output` type checked with skopeo, `--push`
//! and `type=image,push=true` to a loopback registry, and `--progress rawjson` events.
//! Destinations that are not what the output writes (devices, FIFOs, symbolic links, a
//! directory for a tar, a file for a directory) are refused before the build and left alone;
//! a failed export leaves no temp file; `dest=-` streams a tar to stdout; `--build-arg` and
//! `--secret` are checked at the start. `type=tar` is the root filesystem as one tar;
//! `--metadata-file`, `--label` and `--build-arg SOURCE_DATE_EPOCH` are checked against the
//! image written.

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::builds::store_with_busybox;
use crate::common::{has_tool, kiln_in, run_fails, run_ok, skopeo_inspect, write};

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_skopeo),
    ignore = "needs root, busybox, skopeo"
)]
fn named_contexts_and_every_output_type_root() {
    kiln_test::require_root();
    kiln_test::require_tool("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    // An OCI layout to serve as `oci-layout://` (busybox re-exported with a marker file).
    let layout = tmp.path().join("layout");
    let marker = tmp.path().join("marker");
    write(
        &marker,
        "Dockerfile",
        "FROM busybox\nRUN echo from-layout > /marker\n",
    );
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "quiet", "-o"])
            .arg(format!("type=oci,dest={},tar=false", layout.display()))
            .arg(&marker),
    );
    let extra = tmp.path().join("extra");
    write(&extra, "e.txt", "from-dir\n");
    let ctx = tmp.path().join("ctx");
    write(&ctx, "m.txt", "from-context\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM base\n\
         COPY --from=extra e.txt /e.txt\n\
         COPY --from=img /marker /marker\n\
         COPY m.txt /m.txt\n\
         RUN cat /e.txt /marker /m.txt > /all.txt\n",
    );
    let contexts = [
        "--build-context".to_owned(),
        "base=docker-image://busybox:latest".to_owned(),
        "--build-context".to_owned(),
        format!("extra={}", extra.display()),
        "--build-context".to_owned(),
        format!("img=oci-layout://{}", layout.display()),
    ];
    let build = |output: &str| {
        run_ok(
            kiln_in(&store)
                .args(["build", "--progress", "plain"])
                .args(&contexts)
                .args(["-o", output])
                .arg(&ctx),
        )
    };

    // type=local: the contexts all arrived.
    let rootfs = tmp.path().join("rootfs");
    build(&format!("type=local,dest={}", rootfs.display()));
    assert_eq!(
        fs_err::read_to_string(rootfs.join("all.txt")).unwrap(),
        "from-dir\nfrom-layout\nfrom-context\n"
    );

    // The image outputs, each read by skopeo: same layers everywhere.
    let oci_tar = tmp.path().join("image.oci.tar");
    let docker_tar = tmp.path().join("image.docker.tar");
    let oci_dir = tmp.path().join("image-oci");
    build(&format!("type=oci,dest={}", oci_tar.display()));
    build(&format!("type=docker,dest={}", docker_tar.display()));
    build(&format!("type=oci,dest={},tar=false", oci_dir.display()));
    let from_oci_tar = skopeo_inspect(&format!("oci-archive:{}", oci_tar.display()), &[]);
    let from_docker_tar = skopeo_inspect(&format!("docker-archive:{}", docker_tar.display()), &[]);
    let from_oci_dir = skopeo_inspect(&format!("oci:{}", oci_dir.display()), &[]);
    // busybox's layer, the three COPYs and the RUN.
    assert_eq!(from_oci_tar["Layers"].as_array().unwrap().len(), 5);
    assert_eq!(from_oci_tar["Layers"], from_oci_dir["Layers"]);
    assert_eq!(
        from_docker_tar["Layers"].as_array().unwrap().len(),
        5,
        "{from_docker_tar}"
    );
    assert_eq!(from_oci_tar["Digest"], from_oci_dir["Digest"]);
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn push_and_type_image_reach_the_registry_root() {
    kiln_test::require_root();
    crate::registry::require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let registry = crate::registry::Registry::start();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo pushed > /p\n");
    let first = format!("{}/kiln/pushed:1", registry.host);
    let second = format!("{}/kiln/pushed:2", registry.host);
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--push", "-t", &first])
            .arg(&ctx),
    );
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "quiet", "-o"])
            .arg(format!("type=image,name={second},push=true"))
            .arg(&ctx),
    );
    let one = skopeo_inspect(&format!("docker://{first}"), &["--tls-verify=false"]);
    let two = skopeo_inspect(&format!("docker://{second}"), &["--tls-verify=false"]);
    assert_eq!(one["Digest"], two["Digest"], "the same build pushed twice");
    assert_eq!(one["Layers"].as_array().unwrap().len(), 2);
    // `-t NAME --push` also keeps the image in the local store.
    let images = run_ok(kiln_in(&store).args(["images", "--format", "json"]));
    assert!(images.contains("kiln/pushed"), "{images}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn rawjson_progress_is_one_event_per_line_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM busybox\nRUN echo hello-events\n");
    let out = run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "rawjson"])
            .arg(&ctx),
    );
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for kind in ["step_started", "cache_miss", "log", "step_done", "finished"] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "log" && e.to_string().contains("hello-events")),
        "the RUN's output is an event: {out}"
    );
}

/// A context that builds without a base image or root: `FROM scratch` and one COPY.
fn scratch_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    write(&ctx, "hello.txt", "hello\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    );
    ctx
}

/// `kiln build --progress plain -t probe:1 -o OUTPUT CONTEXT`.
fn build_to(store: &Path, ctx: &Path, output: &str) -> Command {
    let mut cmd = kiln_in(store);
    cmd.args([
        "build",
        "--progress",
        "plain",
        "-t",
        "probe:1",
        "-o",
        output,
    ])
    .arg(ctx);
    cmd
}

/// The build is refused with exit 1 before it runs, naming `dest` and what it is.
fn assert_refused(store: &Path, ctx: &Path, output: &str, dest: &Path, what: &str) {
    let out = run_fails(&mut build_to(store, ctx, output), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&dest.display().to_string()) && stderr.contains(what),
        "{output}: the error names the path and `{what}`:\n{stderr}"
    );
    assert!(
        !stderr.contains("COPY hello.txt"),
        "{output}: refused before the build runs:\n{stderr}"
    );
    let leftovers: Vec<_> = fs_err::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn tar_outputs_refuse_devices_fifos_symlinks_and_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    let dests = tmp.path().join("dests");
    fs_err::create_dir_all(&dests).unwrap();

    let fifo = dests.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let target = dests.join("target.tar");
    fs_err::write(&target, "keep me").unwrap();
    let link = dests.join("link.tar");
    fs_err::os::unix::fs::symlink(&target, &link).unwrap();
    let dir = dests.join("dir");
    fs_err::create_dir(&dir).unwrap();
    for kind in ["oci", "docker"] {
        let spec = |dest: &Path| format!("type={kind},dest={}", dest.display());
        assert_refused(&store, &ctx, &spec(&fifo), &fifo, "FIFO");
        assert_refused(&store, &ctx, &spec(&link), &link, "symbolic link");
        assert_refused(&store, &ctx, &spec(&dir), &dir, "directory");
    }
    assert!(
        fs_err::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(fs_err::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(fs_err::read_to_string(&target).unwrap(), "keep me");
    assert!(fs_err::read_dir(&dir).unwrap().next().is_none());

    // Not in the store either: the build never ran.
    let images = run_ok(kiln_in(&store).arg("images"));
    assert!(!images.contains("probe"), "{images}");
    // A regular file is replaced, as before.
    run_ok(&mut build_to(
        &store,
        &ctx,
        &format!("type=oci,dest={}", target.display()),
    ));
    assert!(fs_err::read(&target).unwrap().len() > 1024);
}

/// The device half of `tar_outputs_refuse_devices_fifos_symlinks_and_directories`: mknod
/// needs root.
#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root")]
fn tar_outputs_refuse_a_character_device_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    let dests = tmp.path().join("dests");
    fs_err::create_dir_all(&dests).unwrap();
    // A null-like character device (1:7, what /dev/full is) made in the temp dir.
    let full = dests.join("full");
    let made = Command::new("mknod")
        .arg(&full)
        .args(["c", "1", "7"])
        .status()
        .unwrap();
    assert!(made.success());
    for kind in ["oci", "docker"] {
        let output = format!("type={kind},dest={}", full.display());
        assert_refused(&store, &ctx, &output, &full, "character device");
    }
    assert!(
        fs_err::symlink_metadata(&full)
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // Not in the store either: the build never ran.
    let images = run_ok(kiln_in(&store).arg("images"));
    assert!(!images.contains("probe"), "{images}");
}

#[test]
fn directory_outputs_refuse_files_and_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    let dests = tmp.path().join("dests");
    fs_err::create_dir_all(&dests).unwrap();
    let file = dests.join("file");
    fs_err::write(&file, "keep me").unwrap();
    let empty = dests.join("empty");
    fs_err::create_dir(&empty).unwrap();
    let link = dests.join("link");
    fs_err::os::unix::fs::symlink(&empty, &link).unwrap();
    for spec in ["type=local,dest={}", "type=oci,dest={},tar=false"] {
        for (dest, what) in [(&file, "regular file"), (&link, "symbolic link")] {
            let output = spec.replace("{}", &dest.display().to_string());
            assert_refused(&store, &ctx, &output, dest, what);
        }
    }
    let full = dests.join("full");
    write(&full, "x", "x");
    let output = format!("type=local,dest={}", full.display());
    assert_refused(&store, &ctx, &output, &full, "not empty");
    assert_eq!(fs_err::read_to_string(&file).unwrap(), "keep me");
    assert!(fs_err::symlink_metadata(&link).unwrap().is_symlink());
    // The real empty directory is fine.
    run_ok(&mut build_to(
        &store,
        &ctx,
        &format!("type=local,dest={}", empty.display()),
    ));
    assert_eq!(
        fs_err::read_to_string(empty.join("hello.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn a_failed_export_leaves_no_partial_output_or_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    let first = tmp.path().join("first.tar");
    run_ok(&mut build_to(
        &store,
        &ctx,
        &format!("type=oci,dest={}", first.display()),
    ));
    // Corrupt every blob of the store but the small JSON ones: the layer's copy into the
    // archive is verified, so the second export fails after its temp file was created.
    for entry in fs_err::read_dir(store.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = fs_err::read(&path).unwrap();
        if bytes.first() != Some(&b'{') {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            fs_err::write(&path, bytes).unwrap();
        }
    }
    let outdir = tmp.path().join("out");
    fs_err::create_dir(&outdir).unwrap();
    let dest = outdir.join("image.tar");
    let out = run_fails(
        &mut build_to(
            &store,
            &ctx,
            &format!("type=docker,dest={}", dest.display()),
        ),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&dest.display().to_string()), "{stderr}");
    let left: Vec<_> = fs_err::read_dir(&outdir).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing is left in {}: {left:?}",
        outdir.display()
    );
}

#[test]
fn dest_dash_writes_a_tar_output_to_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    for kind in ["oci", "docker"] {
        let out = build_to(&store, &ctx, &format!("type={kind},dest=-"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let listing = tar_listing(&out.stdout);
        assert!(
            listing.contains("index.json") && listing.contains("oci-layout"),
            "{listing}"
        );
        if kind == "docker" {
            assert!(listing.contains("manifest.json"), "{listing}");
        }
        assert!(!tmp.path().join("-").exists() && !ctx.join("-").exists());
    }
    // --quiet's image ID goes to stderr: stdout is the archive.
    let out = build_to(&store, &ctx, "type=oci,dest=-")
        .arg("-q")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(tar_listing(&out.stdout).contains("index.json"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256:"));
    // Not for directory outputs, nor with rawjson progress on stdout.
    for output in ["type=local,dest=-", "type=oci,dest=-,tar=false"] {
        let out = run_fails(&mut build_to(&store, &ctx, output), 2);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("stdout"),
            "{out:?}"
        );
    }
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "rawjson", "-o", "type=oci,dest=-"])
            .arg(&ctx),
        2,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rawjson"),
        "{out:?}"
    );
    // Refused on a terminal (`script` gives the command one).
    if has_tool("script") {
        let command = format!(
            "{} build --progress plain -o type=oci,dest=- {}",
            env!("CARGO_BIN_EXE_kiln"),
            ctx.display()
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("KILN_ROOT", &store)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("terminal"), "{text}");
    }
}

fn tar_listing(archive: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not a tar archive");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn build_args_and_secrets_are_checked_before_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    let build = |extra: &[&str]| {
        let mut cmd = kiln_in(&store);
        cmd.args(["build", "--progress", "plain"])
            .args(extra)
            .arg(&ctx);
        cmd
    };
    for (arg, named) in [("", "empty build argument"), ("=v", "`=v`")] {
        let out = run_fails(&mut build(&["--build-arg", arg]), 2);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{out:?}"
        );
    }
    // `--build-arg NAME` takes the value from the environment (buildx).
    run_ok(build(&["--build-arg", "FROM_ENV"]).env("FROM_ENV", "1"));
    run_ok(&mut build(&["--build-arg", "A="]));

    let out = run_fails(&mut build(&["--secret", "id=tok,src=/x,mode=0400"]), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`mode`"),
        "{out:?}"
    );
    // A secret no RUN uses is still checked at the start, as buildx does.
    let missing = tmp.path().join("no-such-secret");
    let spec = format!("id=tok,src={}", missing.display());
    let out = run_fails(&mut build(&["--secret", &spec]), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`tok`") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("COPY hello.txt"), "{stderr}");
    let out = run_fails(
        build(&["--secret", "id=tok,env=KILN_TEST_UNSET_SECRET"])
            .env_remove("KILN_TEST_UNSET_SECRET"),
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KILN_TEST_UNSET_SECRET"),
        "{out:?}"
    );
    let present = tmp.path().join("secret");
    fs_err::write(&present, "s3cr3t").unwrap();
    run_ok(&mut build(&[
        "--secret",
        &format!("id=tok,src={}", present.display()),
    ]));
}

/// The blob `digest` (`sha256:…`) of the OCI layout directory `layout`, as JSON.
fn layout_blob(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    serde_json::from_slice(&fs_err::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn metadata_file_names_the_digests_of_the_image_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = scratch_context(tmp.path());
    let layout = tmp.path().join("layout");
    let meta_dir = tmp.path().join("meta");
    fs_err::create_dir(&meta_dir).unwrap();
    let meta = meta_dir.join("metadata.json");
    run_ok(
        build_to(
            &store,
            &ctx,
            &format!("type=oci,dest={},tar=false", layout.display()),
        )
        .arg("--metadata-file")
        .arg(&meta),
    );
    let written: serde_json::Value = serde_json::from_slice(&fs_err::read(&meta).unwrap()).unwrap();
    let index = layout_blob_index(&layout);
    let manifest = &index["manifests"][0];
    let digest = manifest["digest"].as_str().unwrap();
    assert_eq!(written["containerimage.digest"], digest, "{written}");
    assert_eq!(
        written["containerimage.config.digest"],
        layout_blob(&layout, digest)["config"]["digest"],
        "{written}"
    );
    let descriptor = &written["containerimage.descriptor"];
    assert_eq!(descriptor["digest"], digest);
    assert_eq!(descriptor["size"], manifest["size"]);
    assert_eq!(descriptor["mediaType"], manifest["mediaType"]);
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(written["image.name"], "probe:1");
    // Renamed into place: nothing else is left in the directory.
    let entries: Vec<_> = fs_err::read_dir(&meta_dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    // Without a name, `image.name` is left out; the file is replaced.
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "quiet", "--metadata-file"])
            .arg(&meta)
            .arg(&ctx),
    );
    let written: serde_json::Value = serde_json::from_slice(&fs_err::read(&meta).unwrap()).unwrap();
    assert!(written.get("image.name").is_none(), "{written}");
    assert_eq!(written["containerimage.digest"], digest, "{written}");
}

fn layout_blob_index(layout: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap()
}

/// The config and the layer digests of the image in the OCI layout directory `layout`.
fn layout_image(layout: &Path) -> (serde_json::Value, serde_json::Value) {
    let index = layout_blob_index(layout);
    let manifest = layout_blob(layout, index["manifests"][0]["digest"].as_str().unwrap());
    let config = layout_blob(layout, manifest["config"]["digest"].as_str().unwrap());
    (config, manifest["layers"].clone())
}

#[test]
fn cli_labels_override_the_dockerfiles_and_change_only_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write(&ctx, "hello.txt", "hello\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nLABEL a=x c=d\nCOPY hello.txt /hello.txt\n",
    );
    let build = |labels: &[&str], layout: &Path| {
        let mut cmd = kiln_in(&store);
        cmd.args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=oci,dest={},tar=false", layout.display()));
        for label in labels {
            cmd.args(["--label", label]);
        }
        run_ok(cmd.arg(&ctx));
        layout_image(layout)
    };
    let (config, layers) = build(&["a=b", "e=f=g"], &tmp.path().join("one"));
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({"a": "b", "c": "d", "e": "f=g"}),
        "{config}"
    );
    // The same steps, from cache, with another label: a new config, the same layers.
    let (again, same_layers) = build(&["a=z"], &tmp.path().join("two"));
    assert_eq!(
        again["config"]["Labels"],
        serde_json::json!({"a": "z", "c": "d"}),
        "{again}"
    );
    assert_eq!(layers, same_layers);
    // No history entry for a CLI label (BuildKit adds none).
    let created_by = |config: &serde_json::Value| -> Vec<serde_json::Value> {
        config["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["created_by"].clone())
            .collect()
    };
    assert_eq!(created_by(&config), created_by(&again));
    assert_eq!(created_by(&config).len(), 2, "{config}");

    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--label", "novalue"])
            .arg(&ctx),
        2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`novalue`"), "{stderr}");
}

#[test]
fn source_date_epoch_build_arg_makes_builds_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = scratch_context(tmp.path());
    let build = |name: &str, env: Option<&str>| {
        let layout = tmp.path().join(format!("{name}-layout"));
        let mut cmd = kiln_in(&tmp.path().join(format!("{name}-store")));
        if let Some(env) = env {
            cmd.env("SOURCE_DATE_EPOCH", env);
        }
        run_ok(
            cmd.args(["build", "--progress", "plain"])
                .args(["--build-arg", "SOURCE_DATE_EPOCH=0", "-o"])
                .arg(format!("type=oci,dest={},tar=false", layout.display()))
                .arg(&ctx),
        );
        let index = layout_blob_index(&layout);
        let (config, _) = layout_image(&layout);
        (index["manifests"][0]["digest"].clone(), config)
    };
    let (first, config) = build("one", None);
    assert_eq!(config["created"], "1970-01-01T00:00:00Z", "{config}");
    for history in config["history"].as_array().unwrap() {
        assert_eq!(history["created"], "1970-01-01T00:00:00Z", "{config}");
    }
    // Another fresh store, later, and the environment saying otherwise: the build arg wins.
    let (second, _) = build("two", Some("86400"));
    assert_eq!(first, second);

    let out = run_fails(
        kiln_in(&tmp.path().join("store"))
            .args(["build", "--build-arg", "SOURCE_DATE_EPOCH=yesterday"])
            .arg(&ctx),
        2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SOURCE_DATE_EPOCH=yesterday"), "{stderr}");
}

#[test]
fn tar_output_is_the_root_filesystem_as_one_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write(&ctx, "hello.txt", "hello\n");
    write(&ctx, "sub/a.txt", "a\n");
    write(
        &ctx,
        "Dockerfile",
        "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY sub /app/sub\n",
    );
    let names = |listing: &str| -> Vec<String> {
        let mut names: Vec<String> = listing
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_owned())
            .filter(|l| !l.is_empty() && l != ".")
            .collect();
        names.sort();
        names
    };
    let expected = ["app", "app/sub", "app/sub/a.txt", "hello.txt"];

    let file = tmp.path().join("out/rootfs.tar");
    run_ok(&mut build_to(
        &store,
        &ctx,
        &format!("type=tar,dest={}", file.display()),
    ));
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&file));
    assert_eq!(names(&listing), expected, "{listing}");
    let content = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&file)
            .arg(listing.lines().find(|l| l.ends_with("a.txt")).unwrap()),
    );
    assert_eq!(content, "a\n");
    // Renamed into place: no temporary file or directory is left beside it.
    let entries: Vec<_> = fs_err::read_dir(file.parent().unwrap()).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    // `dest=-` and `-o -`: the same tar on stdout.
    for output in ["type=tar,dest=-", "-"] {
        let out = build_to(&store, &ctx, output)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(names(&tar_listing(&out.stdout)), expected, "{output}");
        assert_eq!(out.stdout, fs_err::read(&file).unwrap(), "{output}");
    }

    // The flattened tree was the store's scratch, and is gone.
    let left: Vec<_> = fs_err::read_dir(store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("rootfs-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Every key but dest is refused, by name.
    let out = run_fails(
        &mut build_to(
            &store,
            &ctx,
            &format!("type=tar,dest={},compression=zstd", file.display()),
        ),
        2,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`compression`"), "{stderr}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn tar_output_keeps_owners_and_modes_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN mkdir /made && echo x > /made/f && chown 1000:1001 /made/f && chmod 0640 /made/f \
         && rm /bin/ls\n",
    );
    let file = tmp.path().join("rootfs.tar");
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=tar,dest={}", file.display()))
            .arg(&ctx),
    );
    let listing = run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&file),
    );
    let line = listing
        .lines()
        .find(|l| l.trim_end().ends_with("made/f"))
        .unwrap_or_else(|| panic!("no made/f in\n{listing}"));
    assert!(
        line.starts_with("-rw-r-----") && line.contains("1000/1001"),
        "{line}"
    );
    // The base's files are there, the removed one is not, and no whiteout is.
    assert!(listing.contains("bin/busybox"), "{listing}");
    assert!(
        !listing
            .lines()
            .any(|l| l.trim_end().ends_with("bin/ls") || l.contains(".wh.")),
        "{listing}"
    );
}
