//! `kiln build` inputs and outputs end to end: named build contexts (a local directory,
//! `docker-image://`, `oci-layout://`), every `--output` type checked with skopeo, `--push`
//! and `type=image,push=true` to a loopback registry, and `--progress rawjson` events.

use std::path::Path;
use std::process::Command;

use crate::builds::{require_root, store_with_busybox};
use crate::common::{has_tool, kiln_in, run_ok};
use crate::registry::fixture;

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// `skopeo inspect TRANSPORT:PATH` as JSON.
fn skopeo_inspect(target: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(target)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo JSON")
}

#[test]
fn named_contexts_and_every_output_type_root() {
    const TEST: &str = "named_contexts_and_every_output_type_root";
    if !require_root(TEST) {
        return;
    }
    if !has_tool("skopeo") {
        eprintln!("SKIPPED {TEST}: skopeo is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(store) = store_with_busybox(tmp.path()) else {
        return;
    };
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
        std::fs::read_to_string(rootfs.join("all.txt")).unwrap(),
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
fn push_and_type_image_reach_the_registry_root() {
    const TEST: &str = "push_and_type_image_reach_the_registry_root";
    if !require_root(TEST) || !fixture::tools_available(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(store) = store_with_busybox(tmp.path()) else {
        return;
    };
    let registry = fixture::Registry::start();
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
fn rawjson_progress_is_one_event_per_line_root() {
    const TEST: &str = "rawjson_progress_is_one_event_per_line_root";
    if !require_root(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(store) = store_with_busybox(tmp.path()) else {
        return;
    };
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
