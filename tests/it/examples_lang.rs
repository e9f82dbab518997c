//! The language patterns of the multi-stage tutorials (issue 23), one example each under
//! `examples/`: Go on scratch (`go-minimal`), Node.js with a build step (`node-production`),
//! a Node-built frontend on nginx (`frontend-nginx`) and Rust dependency caching
//! (`rust-deps`). Each is built with the real binary on the offline bases `examples/bases.sh`
//! makes, run with `kiln run`, and its runtime image checked for what the pattern promises
//! and nothing more. The caching claims are shown on edited copies: the dependency steps stay
//! `CACHED` after a source edit, whose miss names the file, and re-run after a lock file edit.
//! The Go and nginx images are also built by buildah and compared (config and flattened
//! filesystem).
//!
//! All heavy (mmdebstrap + the Debian mirror, npm registry, crates.io), named `heavy_*`: run
//! by `--profile full`, as root, like `examples.rs`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::builds::{umoci_unpack, walk};
use crate::builds_buildah::{Buildah, FIELDS, normalized_config, tree_differences};
use crate::builds_cache::{miss_reason, step_lines};
use crate::common::{build_plain, kiln_in, run_ok};
use crate::examples::{
    config_of, examples_dir, free_port, layer_sizes, make_bases, require_debian_bases,
};

/// How long a server may take to answer its first request.
const SERVER_DEADLINE: Duration = Duration::from_mins(1);

/// A copy of `examples/NAME` in `tmp` (the tests edit their copy, never the example).
fn example_copy(tmp: &Path, name: &str) -> PathBuf {
    let context = tmp.join(name);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(examples_dir().join(name))
            .arg(&context),
    );
    context
}

/// `-t NAME -o type=oci,dest=LAYOUT,tar=false`.
fn tag_and_layout(name: &str, layout: &Path) -> Vec<String> {
    vec![
        "-t".to_owned(),
        name.to_owned(),
        "-o".to_owned(),
        format!("type=oci,dest={},tar=false", layout.display()),
    ]
}

/// [`build_plain`] with owned flags.
fn build(store: &Path, context: &Path, flags: &[String]) -> String {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    build_plain(store, context, &flags)
}

/// Which of `paths` exist in `image`, by `test -e` in a `kiln run` of it (cheaper than
/// exporting a root filesystem of hundreds of MB).
fn existing(store: &Path, image: &str, paths: &[&str]) -> Vec<String> {
    run_ok(
        kiln_in(store)
            .args(["run", image, "sh", "-c"])
            .arg(r#"for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done"#)
            .arg("sh")
            .args(paths),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Whether the step whose header contains `step` came from cache; panics if there is none.
fn is_cached(log: &str, step: &str) -> bool {
    let header = step_lines(log)
        .into_iter()
        .find(|line| line.contains(step))
        .unwrap_or_else(|| panic!("no step `{step}` in:\n{log}"));
    header.ends_with(" CACHED")
}

/// Replaces `from` (which must occur) by `to` in `context/rel`.
fn edit(context: &Path, rel: &str, from: &str, to: &str) {
    let path = context.join(rel);
    let text = fs_err::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{rel} lacks {from:?}");
    fs_err::write(&path, text.replace(from, to)).unwrap();
}

/// A long-running command started with `kiln run`; SIGTERM (kiln then tears its sandbox down)
/// when dropped. `--timeout` bounds it in case the test dies first.
struct Served {
    child: Child,
    port: u16,
}

impl Served {
    /// `kiln run --timeout 300 -e PORT=<free port> IMAGE ARGS...`.
    fn start(store: &Path, image: &str, args: &[&str]) -> Self {
        let port = free_port();
        let child = kiln_in(store)
            .args(["run", "--timeout", "300", "-e"])
            .arg(format!("PORT={port}"))
            .arg(image)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kiln run");
        Self { child, port }
    }

    /// GETs `path` on the host's loopback, polling until the server answers.
    fn get(&mut self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let deadline = Instant::now() + SERVER_DEADLINE;
        loop {
            let out = Command::new("curl")
                .args(["-fsS", "--max-time", "5", &url])
                .output()
                .expect("running curl");
            if out.status.success() {
                return String::from_utf8(out.stdout).unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = self
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr);
                panic!("the server exited with {status} before answering {url}:\n{stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "no answer on {url} within {SERVER_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kiln's image: its OCI layout and that layout unpacked by umoci.
struct Built {
    layout: PathBuf,
    rootfs: PathBuf,
}

/// Builds `context` into the store as `name` and an OCI layout under `tmp`, and unpacks it
/// with umoci (the same unpacker as buildah's image gets).
fn build_and_unpack(store: &Path, tmp: &Path, context: &Path, name: &str) -> Built {
    let layout = tmp.join("kiln-oci");
    build(store, context, &tag_and_layout(name, &layout));
    let rootfs = umoci_unpack(&layout, "latest", &tmp.join("kiln-bundle"));
    Built { layout, rootfs }
}

/// Builds `context` (its Dockerfile) with buildah from the same bases (exported from kiln's
/// store) and compares the result with kiln's: the config fields DESIGN.md §1 promises and
/// the flattened filesystem (both unpacked by umoci; timestamps ignored). `known` are
/// differences to accept: (start of the difference, why kiln is right).
fn assert_matches_buildah(
    tmp: &Path,
    store: &Path,
    context: &Path,
    bases: &[&str],
    kiln: &Built,
    known: &[(&str, &str)],
) {
    let buildah = Buildah {
        root: tmp.join("buildah"),
    };
    let empty_context = tmp.join("empty-context");
    fs_err::create_dir_all(&empty_context).unwrap();
    for base in bases {
        // The base as kiln stores it, as an OCI layout buildah can pull (`-t` names its
        // manifest `latest` in the layout's index). buildah names an `oci:` image after its
        // path, which must be lowercase: through a lowercase symlink (as builds_buildah.rs).
        let layout = tmp.join(format!("base-{}", base.replace([':', '/'], "-")));
        let out = kiln_in(store)
            .args(["build", "-q", "-t", "buildah-base:latest", "-f", "-", "-o"])
            .arg(format!("type=oci,dest={},tar=false", layout.display()))
            .arg(&empty_context)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                writeln!(child.stdin.take().unwrap(), "FROM {base}")?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "exporting {base}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let link = std::env::temp_dir().join(format!(
            "kiln-buildah-{}-{}",
            std::process::id(),
            base.replace([':', '/', '.'], "-")
        ));
        let _ = fs_err::remove_file(&link);
        fs_err::os::unix::fs::symlink(&layout, &link).unwrap();
        let id = buildah.run(&["pull", "-q", &format!("oci:{}:latest", link.display())]);
        fs_err::remove_file(&link).unwrap();
        buildah.run(&["tag", id.trim(), base]);
    }
    let name = "localhost/kiln-diff:latest";
    let out = buildah
        .cmd()
        .args(["bud", "--format", "docker", "--quiet", "-t", name])
        .arg(context)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buildah bud {}:\n{}",
        context.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&buildah.run(&["inspect", "--type", "image", name])).unwrap();
    let theirs = normalized_config(&inspect["Docker"]["config"]);
    let ours = normalized_config(&crate::builds::layout_config(&kiln.layout)["config"]);
    let mut problems = Vec::new();
    for field in FIELDS {
        let (o, t) = (ours.get(*field), theirs.get(*field));
        if o != t {
            problems.push(format!(
                "config {field}: kiln {} / buildah {}",
                o.map_or("absent".into(), serde_json::Value::to_string),
                t.map_or("absent".into(), serde_json::Value::to_string)
            ));
        }
    }
    let buildah_layout = tmp.join("buildah-oci");
    buildah.run(&[
        "push",
        "-q",
        name,
        &format!("oci:{}:latest", buildah_layout.display()),
    ]);
    let theirs = umoci_unpack(&buildah_layout, "latest", &tmp.join("buildah-bundle"));
    let (ours, theirs) = (walk(&kiln.rootfs), walk(&theirs));
    assert!(!ours.is_empty(), "kiln's image is empty");
    problems.extend(tree_differences(&ours, &theirs));
    problems.retain(|p| !known.iter().any(|(start, _)| p.starts_with(start)));
    assert!(
        problems.is_empty(),
        "{} differs from buildah's build of the same Dockerfile:\n  {}",
        context.display(),
        problems.join("\n  ")
    );
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_flock,
        kiln_no_jq,
        kiln_no_mmdebstrap,
        kiln_no_buildah,
        kiln_no_umoci
    ),
    ignore = "needs root, flock, jq, mmdebstrap, buildah, umoci"
)]
fn heavy_go_minimal_ships_the_binary_only() {
    require_debian_bases();
    kiln_test::require_tool("buildah");
    kiln_test::require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["golang"]);
    let context = example_copy(tmp.path(), "go-minimal");
    let image = build_and_unpack(&store, tmp.path(), &context, "go-minimal");

    // The runtime image is the binary: one layer, one file, statically linked.
    let files: Vec<String> = walk(&image.rootfs).into_keys().collect();
    assert_eq!(files, ["/server"], "FROM scratch + the binary");
    let binary = fs_err::read(image.rootfs.join("server")).unwrap();
    assert_eq!(&binary[..4], b"\x7fELF");
    assert!(
        !binary.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"),
        "CGO_ENABLED=0: no dynamic loader"
    );
    let sizes = layer_sizes(&image.layout);
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    assert!(sizes[0].1 < 20_000_000, "{sizes:?}");
    let config = config_of(&store, "go-minimal");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/server"]));
    assert_eq!(config["User"], "65534:65534");
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "{config:#}"
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/server", "-healthcheck"])
    );

    // It answers, as the unprivileged user; its healthcheck, from a second container, too.
    let mut server = Served::start(&store, "go-minimal", &[]);
    let body = server.get("/");
    assert!(
        body.starts_with("hello from go-minimal (go1.") && body.contains("uid 65534)"),
        "{body}"
    );
    assert_eq!(server.get("/healthz"), "ok\n");
    run_ok(
        kiln_in(&store)
            .args(["run", "-e"])
            .arg(format!("PORT={}", server.port))
            .args(["go-minimal", "-healthcheck"]),
    );
    drop(server);

    // buildah builds the same image from the same Dockerfile and base.
    assert_matches_buildah(
        tmp.path(),
        &store,
        &context,
        &["golang:1.19"],
        &image,
        &[(
            "config WorkingDir",
            "BuildKit's emptyImage() sets WorkingDir \"/\" for scratch; buildah leaves it unset",
        )],
    );

    // A source edit: the module download stays cached; `COPY . .` names the file.
    edit(
        &context,
        "main.go",
        "hello from go-minimal",
        "hi from go-minimal",
    );
    let log = build(
        &store,
        &context,
        &["-t".to_owned(), "go-minimal".to_owned()],
    );
    assert!(is_cached(&log, "COPY go.* ./"), "{log}");
    assert!(is_cached(&log, "RUN go mod download"), "{log}");
    assert_eq!(
        miss_reason(&log, "COPY . ."),
        Some("file main.go changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "CGO_ENABLED=0 go build"),
        Some("parent changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "COPY --from=builder /out/server /server"),
        Some("stage builder:/out/server changed"),
        "{log}"
    );
    // (The go-build cache mount made it quick, and did not leave the old binary in place.)
    let mut server = Served::start(&store, "go-minimal", &[]);
    assert!(server.get("/").starts_with("hi from go-minimal"));
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_flock, kiln_no_jq, kiln_no_mmdebstrap),
    ignore = "needs root, flock, jq, mmdebstrap"
)]
fn heavy_node_production_ships_no_dev_dependencies() {
    require_debian_bases();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["node"]);
    let context = example_copy(tmp.path(), "node-production");
    let tag = ["-t".to_owned(), "node-production".to_owned()];
    build(&store, &context, &tag);

    // The production dependency and the built code; no dev dependency, no sources.
    let wanted = [
        "/app/node_modules/ms/package.json",
        "/app/dist/server.js",
        "/app/dist/uptime.js",
    ];
    let unwanted = [
        "/app/node_modules/uglify-js",
        "/app/node_modules/.bin/uglifyjs",
        "/app/src",
    ];
    let found = existing(
        &store,
        "node-production",
        &[&wanted[..], &unwanted[..]].concat(),
    );
    assert_eq!(found, wanted, "production image's /app");
    let server = run_ok(kiln_in(&store).args(["run", "node-production", "cat", "dist/server.js"]));
    assert!(
        !server.contains("A small HTTP service") && server.contains("node-production"),
        "dist/server.js is the minified build:\n{server}"
    );
    let config = config_of(&store, "node-production");
    assert_eq!(config["User"], "node");
    assert_eq!(config["Cmd"], serde_json::json!(["node", "dist/server.js"]));
    assert!(
        config["Env"].to_string().contains("NODE_ENV=production"),
        "{config:#}"
    );

    let mut served = Served::start(&store, "node-production", &[]);
    let body: serde_json::Value = serde_json::from_str(&served.get("/")).unwrap();
    assert_eq!(body["message"], "hello from node-production");
    assert_eq!(body["env"], "production");
    assert!(body["node"].as_str().unwrap().starts_with("v18."), "{body}");
    assert!(
        body["uptime"].as_str().unwrap().ends_with('s'),
        "{body} (ms)"
    );
    drop(served);

    // A source edit: both `npm ci` steps stay cached; the builder's `COPY . .` names the file.
    edit(&context, "src/server.js", "hello from", "hi from");
    let log = build(&store, &context, &tag);
    assert!(is_cached(&log, "[builder 4/6] RUN npm ci"), "{log}");
    assert!(is_cached(&log, "RUN npm ci --omit=dev"), "{log}");
    assert_eq!(
        miss_reason(&log, "[builder 5/6] COPY . ."),
        Some("file src/server.js changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "RUN npm run build"),
        Some("parent changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "COPY --from=builder /app/dist ./dist"),
        Some("stage builder:/app/dist/server.js changed"),
        "{log}"
    );
    // A lock file edit (ms 2.1.3 -> 2.1.2, which package.json's ^2.1.2 allows): both installs
    // re-run, and production gets the locked version.
    edit(
        &context,
        "package-lock.json",
        r#""version": "2.1.3",
      "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==","#,
        r#""version": "2.1.2",
      "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.2.tgz",
      "integrity": "sha512-sGkPx+VjMtmA6MX27oA4FBFELFCZZ4S4XqeGOXCv68tT+jb3vk/RyaKWP0PTKyWtmLSM0b+adUTEvbs1PEaH2w==","#,
    );
    let log = build(&store, &context, &tag);
    for step in [
        "[builder 3/6] COPY package.json package-lock.json",
        "[production 3/5] COPY package.json package-lock.json",
    ] {
        assert_eq!(
            miss_reason(&log, step),
            Some("file package-lock.json changed"),
            "{log}"
        );
    }
    for step in ["[builder 4/6] RUN npm ci", "RUN npm ci --omit=dev"] {
        assert_eq!(miss_reason(&log, step), Some("parent changed"), "{log}");
    }
    let version = run_ok(kiln_in(&store).args([
        "run",
        "node-production",
        "node",
        "-p",
        "require('ms/package.json').version",
    ]));
    assert_eq!(version.trim(), "2.1.2");
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_flock,
        kiln_no_jq,
        kiln_no_mmdebstrap,
        kiln_no_buildah,
        kiln_no_umoci
    ),
    ignore = "needs root, flock, jq, mmdebstrap, buildah, umoci"
)]
fn heavy_frontend_nginx_serves_the_built_assets_without_node() {
    require_debian_bases();
    kiln_test::require_tool("buildah");
    kiln_test::require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["node", "nginx"]);
    let context = examples_dir().join("frontend-nginx");
    let image = build_and_unpack(&store, tmp.path(), &context, "frontend-nginx");

    // The built assets and the example's config on nginx; nothing of Node.js.
    let rootfs = &image.rootfs;
    let html = rootfs.join("usr/share/nginx/html");
    let app_js = fs_err::read_to_string(html.join("app.js")).unwrap();
    assert!(
        app_js.contains("greet") && !app_js.contains("not shipped"),
        "app.js is minified:\n{app_js}"
    );
    let index = fs_err::read_to_string(context.join("src/index.html")).unwrap();
    assert_eq!(
        fs_err::read_to_string(html.join("index.html")).unwrap(),
        index
    );
    assert_eq!(
        fs_err::read(rootfs.join("etc/nginx/conf.d/default.conf")).unwrap(),
        fs_err::read(context.join("nginx.conf")).unwrap()
    );
    let tree = walk(rootfs);
    let node: Vec<&String> = tree
        .keys()
        .filter(|p| p.contains("node_modules") || p.ends_with("/bin/node") || p.contains("nodejs"))
        .collect();
    assert!(node.is_empty(), "Node.js in the nginx image: {node:?}");
    assert!(!rootfs.join("app").exists(), "the builder's /app");
    assert!(rootfs.join("usr/sbin/nginx").is_file());
    let config = config_of(&store, "frontend-nginx");
    assert!(config["ExposedPorts"].get("80/tcp").is_some(), "{config:#}");
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );

    // nginx serves them, fetched inside the sandbox (its own network: port 80 is free there).
    let out = run_ok(kiln_in(&store).args([
        "run",
        "--network",
        "none",
        "--timeout",
        "120",
        "frontend-nginx",
        "sh",
        "-c",
        "nginx && curl -fsS http://127.0.0.1/ && curl -fsS http://127.0.0.1/app.js \
         && curl -fsS http://127.0.0.1/client/side/route \
         && curl -fsSI http://127.0.0.1/style.css",
    ]));
    // (The access log goes to stdout too, as in the official image.)
    assert_eq!(
        out.matches(&index).count(),
        2,
        "/ and a client-side route (try_files falls back to index.html):\n{out}"
    );
    assert!(out.contains(&app_js), "{out}");
    assert!(
        out.contains("\"GET /client/side/route HTTP/1.1\" 200 "),
        "{out}"
    );
    assert!(
        out.contains("Cache-Control: public"),
        "the example's nginx.conf is the one in use:\n{out}"
    );

    // buildah builds the same image from the same Dockerfile and bases.
    assert_matches_buildah(
        tmp.path(),
        &store,
        &context,
        &["node:18", "nginx:1.22"],
        &image,
        &[],
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_flock, kiln_no_jq, kiln_no_mmdebstrap),
    ignore = "needs root, flock, jq, mmdebstrap"
)]
fn heavy_rust_deps_dependency_layer_is_cached_both_ways() {
    require_debian_bases();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    make_bases(&store, &["rust", "debian"]);
    let context = example_copy(tmp.path(), "rust-deps");
    let tag = ["-t".to_owned(), "rust-deps".to_owned()];
    let log = build(&store, &context, &tag);
    assert!(log.contains("Compiling httpdate v1.0.3"), "{log}");

    // The runtime image: debian-slim and the binary; no toolchain, no cargo home, no sources.
    let found = existing(
        &store,
        "rust-deps",
        &[
            "/usr/local/bin/rust-deps",
            "/usr/bin/rustc",
            "/usr/bin/cargo",
            "/usr/local/cargo",
            "/app",
        ],
    );
    assert_eq!(found, ["/usr/local/bin/rust-deps"]);
    assert_eq!(config_of(&store, "rust-deps")["User"], "nobody");
    let mut served = Served::start(&store, "rust-deps", &[]);
    assert_eq!(served.get("/ping"), "hello from rust-deps 0.1.0 (/ping)\n");
    drop(served);

    // A source edit: the dependency layer stays cached; only this crate is compiled.
    edit(&context, "src/main.rs", "hello from", "hi from");
    let log = build(&store, &context, &tag);
    assert!(is_cached(&log, "COPY Cargo.toml Cargo.lock"), "{log}");
    assert!(is_cached(&log, "RUN mkdir src"), "{log}");
    assert_eq!(
        miss_reason(&log, "COPY src ./src"),
        Some("file src/main.rs changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "[builder 6/6] RUN cargo build"),
        Some("parent changed"),
        "{log}"
    );
    assert!(
        log.contains("Compiling rust-deps v0.1.0") && !log.contains("Compiling httpdate"),
        "{log}"
    );
    let mut served = Served::start(&store, "rust-deps", &[]);
    assert_eq!(
        served.get("/"),
        "hi from rust-deps 0.1.0 (/)\n",
        "the real main, not the dummy"
    );
    drop(served);

    // A Cargo.lock edit (httpdate 1.0.3 -> 1.0.2, as `cargo update --precise` writes it): the
    // dependency step re-runs and compiles the locked version.
    edit(
        &context,
        "Cargo.lock",
        "version = \"1.0.3\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
         checksum = \"df3b46402a9d5adb4c86a0cf463f42e19994e3ee891101b1841f30a545cb49a9\"",
        "version = \"1.0.2\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
         checksum = \"c4a1e36c821dbe04574f602848a19f742f4fb3c98d40449f11bcad18d6b17421\"",
    );
    let log = build(&store, &context, &tag);
    assert_eq!(
        miss_reason(&log, "COPY Cargo.toml Cargo.lock"),
        Some("file Cargo.lock changed"),
        "{log}"
    );
    assert_eq!(
        miss_reason(&log, "RUN mkdir src"),
        Some("parent changed"),
        "{log}"
    );
    assert!(log.contains("Compiling httpdate v1.0.2"), "{log}");

    // The cache-mount form: a source edit re-runs its one RUN, which finds the dependencies
    // already compiled in the target cache and the crates in the registry cache.
    let cache_mount = [
        "-f".to_owned(),
        context.join("Dockerfile.cache-mount").display().to_string(),
        "-t".to_owned(),
        "rust-deps:cache-mount".to_owned(),
    ];
    let log = build(&store, &context, &cache_mount);
    assert!(log.contains("Compiling httpdate v1.0.2"), "{log}");
    edit(&context, "src/main.rs", "hi from", "hey from");
    let log = build(&store, &context, &cache_mount);
    assert_eq!(
        miss_reason(&log, "RUN --mount=type=bind,source=src"),
        Some("bind mount /app/src changed"),
        "{log}"
    );
    assert!(
        log.contains("Compiling rust-deps v0.1.0")
            && !log.contains("Compiling httpdate")
            && !log.contains("Downloaded"),
        "{log}"
    );
    let found = existing(
        &store,
        "rust-deps:cache-mount",
        &["/usr/local/bin/rust-deps", "/app", "/usr/local/cargo"],
    );
    assert_eq!(found, ["/usr/local/bin/rust-deps"], "no cache in the image");
    let mut served = Served::start(&store, "rust-deps:cache-mount", &[]);
    assert_eq!(served.get("/"), "hey from rust-deps 0.1.0 (/)\n");
}

/// Every Dockerfile project under `examples/` has what issue 23 asks of one — a Dockerfile
/// kiln parses, a `.dockerignore` keeping the Dockerfiles out of the context, a README — and
/// a row in `examples/README.md`'s table of tutorial patterns.
#[test]
fn examples_are_complete_and_listed() {
    let dir = examples_dir();
    let index = fs_err::read_to_string(dir.join("README.md")).unwrap();
    let mut names = Vec::new();
    for entry in fs_err::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.join("Dockerfile").is_file() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            index.contains(&format!("[`{name}`]({name}/")),
            "{name} is not in examples/README.md's table"
        );
        if name != "hello-multistage" {
            assert!(path.join("README.md").is_file(), "{name} has no README.md");
        }
        if [
            "go-minimal",
            "node-production",
            "frontend-nginx",
            "rust-deps",
        ]
        .contains(&&*name)
        {
            let ignore = fs_err::read_to_string(path.join(".dockerignore"))
                .unwrap_or_else(|e| panic!("{name}/.dockerignore: {e}"));
            assert!(ignore.lines().any(|l| l == "Dockerfile*"), "{name}");
        }
        for dockerfile in fs_err::read_dir(&path).unwrap() {
            let dockerfile = dockerfile.unwrap().path();
            let file_name = dockerfile.file_name().unwrap().to_string_lossy();
            if file_name.starts_with("Dockerfile") {
                run_ok(crate::common::kiln().args(["parse", "-f"]).arg(&dockerfile));
            }
        }
        names.push(name);
    }
    assert!(names.len() >= 8, "{names:?}");
}
