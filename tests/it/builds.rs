//! `kiln build` against the corpus in `testdata/builds/<case>/`: each case is a `Dockerfile`,
//! an optional `context/` directory and an `expect.json` with the expected outcome. Adding a
//! case is adding a directory.
//!
//! `expect.json`:
//! ```json
//! {
//!   "args": ["--build-arg", "V=2"],          // extra `kiln build` arguments
//!   "secrets": {"token": "s3cr3t"},          // --secret id=token,src=<file with the value>
//!   "config": {"Env": ["…"], "User": null},  // config.config fields; null = absent
//!   "files": {"/app/a": {"type": "file", "mode": "0644", "uid": 0, "gid": 0,
//!             "content": "hi\n", "contains": "hi", "target": "…"}},  // type: file|dir|symlink|absent
//!   "log_contains": ["…"],                   // substrings of the plain progress output
//!   "fail": {"stderr": ["…"]},               // the build must exit 1 with these in stderr
//!   "buildah": true                          // also in the buildah differential
//! }
//! ```
//! The image is exported with `-o type=oci,dest=DIR,tar=false`, validated by
//! `oci-image-tool` when installed, its config read from the layout and its filesystem
//! unpacked by `umoci` (kiln's `type=local` when umoci is missing).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{busybox_rootfs, has_tool, kiln_in, run_ok};

/// SOURCE_DATE_EPOCH of the base image.
pub(crate) const EPOCH: &str = "1700000000";

/// The base image's PATH (set explicitly so buildah and kiln start from the same Env).
pub(crate) const BASE_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The corpus directory.
pub(crate) fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/builds")
}

/// A store at `dir/store` with the busybox fixture imported as `busybox:latest` (CMD sh,
/// a PATH, a `base` label). Needs busybox (`kiln_no_busybox`).
pub(crate) fn store_with_busybox(dir: &Path) -> PathBuf {
    let rootfs = busybox_rootfs(&dir.join("busybox-rootfs"));
    let store = dir.join("store");
    run_ok(
        kiln_in(&store)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", "busybox:latest"])
            .args(["--change", r#"CMD ["sh"]"#])
            .args(["--change", &format!("ENV {BASE_PATH}")])
            .args(["--change", "LABEL base=busybox"])
            .arg("-o")
            .arg(format!(
                "type=oci,dest={},tar=false",
                busybox_layout(dir).display()
            )),
    );
    store
}

/// The OCI layout of the busybox base written by [`store_with_busybox`] (tag `latest`).
pub(crate) fn busybox_layout(dir: &Path) -> PathBuf {
    dir.join("busybox-oci")
}

/// One corpus case.
#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) expect: Value,
}

impl Case {
    /// The build context: `context/` when present, else an empty directory under `scratch`.
    pub(crate) fn context(&self, scratch: &Path) -> PathBuf {
        let ctx = self.dir.join("context");
        if ctx.is_dir() {
            return ctx;
        }
        let empty = scratch.join(format!("empty-context-{}", self.name));
        fs_err::create_dir_all(&empty).unwrap();
        empty
    }

    /// `args` plus `--secret` flags (secret files written under `scratch`).
    pub(crate) fn build_args(&self, scratch: &Path) -> Vec<String> {
        let mut args: Vec<String> = self.expect["args"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        if let Some(secrets) = self.expect["secrets"].as_object() {
            for (id, value) in secrets {
                let file = scratch.join(format!("secret-{}-{id}", self.name));
                fs_err::write(&file, value.as_str().unwrap()).unwrap();
                args.push("--secret".into());
                args.push(format!("id={id},src={}", file.display()));
            }
        }
        args
    }
}

/// Every case of the corpus, sorted by name.
pub(crate) fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = fs_err::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .map(|dir| {
            let expect_path = dir.join("expect.json");
            let text = fs_err::read_to_string(&expect_path).unwrap_or_else(|e| panic!("{e}"));
            let expect = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
            Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir,
                expect,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

/// One entry of a flattened filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FsEntry {
    pub(crate) kind: &'static str,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// File content, or the link target.
    pub(crate) data: Vec<u8>,
}

/// Every entry under `root`, keyed by absolute path (`/etc/passwd`); timestamps ignored.
pub(crate) fn walk(root: &Path) -> BTreeMap<String, FsEntry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().to_string_lossy());
            let (kind, data) = if meta.file_type().is_symlink() {
                (
                    "symlink",
                    fs_err::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else if meta.is_file() {
                ("file", fs_err::read(&path).unwrap())
            } else {
                ("special", Vec::new())
            };
            out.insert(
                rel,
                FsEntry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    data,
                },
            );
        }
    }
    out
}

/// Reads a blob of an OCI layout directory.
pub(crate) fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs_err::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The image config of the only image in an OCI layout directory.
pub(crate) fn layout_config(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(&layout_blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    serde_json::from_slice(&layout_blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap()
}

/// Unpacks the image tagged `tag` of an OCI layout with umoci; returns the rootfs.
pub(crate) fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack {}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bundle.join("rootfs")
}

/// What a build of a case produced.
pub(crate) struct Built {
    pub(crate) code: Option<i32>,
    pub(crate) stderr: String,
    pub(crate) layout: PathBuf,
    pub(crate) rootfs: Option<PathBuf>,
}

/// Builds `case` into `work/<case>/` with the store `store`.
pub(crate) fn build_case(store: &Path, case: &Case, work: &Path) -> Built {
    build_case_with_env(store, case, work, &[])
}

/// [`build_case`] with extra environment variables for kiln.
pub(crate) fn build_case_with_env(
    store: &Path,
    case: &Case,
    work: &Path,
    env: &[(&str, &str)],
) -> Built {
    let out_dir = work.join(&case.name);
    fs_err::create_dir_all(&out_dir).unwrap();
    let layout = out_dir.join("layout");
    let local = out_dir.join("local");
    let use_umoci = has_tool("umoci");
    let mut cmd = kiln_in(store);
    cmd.envs(env.iter().copied());
    cmd.args(["build", "--progress", "plain", "-t"])
        .arg(format!("corpus-{}:latest", case.name))
        .arg("-f")
        .arg(case.dir.join("Dockerfile"))
        .arg("-o")
        .arg(format!("type=oci,dest={},tar=false", layout.display()));
    if !use_umoci {
        cmd.arg("-o")
            .arg(format!("type=local,dest={}", local.display()));
    }
    cmd.args(case.build_args(work)).arg(case.context(work));
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rootfs = if out.status.success() {
        Some(if use_umoci {
            umoci_unpack(&layout, "latest", &out_dir.join("bundle"))
        } else {
            local
        })
    } else {
        None
    };
    Built {
        code: out.status.code(),
        stderr,
        layout,
        rootfs,
    }
}

/// Checks one built case against its expectations; returns the mismatches.
/// The corpus expectations (`log_contains`, `fail`, `config`, `files`) checked against a
/// build; returns the mismatches.
pub(crate) fn check_case(case: &Case, built: &Built) -> Vec<String> {
    let mut problems = Vec::new();
    let expect = &case.expect;
    for needle in expect["log_contains"].as_array().into_iter().flatten() {
        let needle = needle.as_str().unwrap();
        if !built.stderr.contains(needle) {
            problems.push(format!("output lacks `{needle}`"));
        }
    }
    if let Some(fail) = expect.get("fail") {
        if built.code != Some(1) {
            problems.push(format!("expected exit 1, got {:?}", built.code));
        }
        if built.stderr.contains("panicked") {
            problems.push("kiln panicked".into());
        }
        for needle in fail["stderr"].as_array().into_iter().flatten() {
            let needle = needle.as_str().unwrap();
            if !built.stderr.contains(needle) {
                problems.push(format!("stderr lacks `{needle}`"));
            }
        }
        return problems;
    }
    if built.code != Some(0) {
        problems.push(format!("build failed ({:?})", built.code));
        return problems;
    }
    if has_tool("oci-image-tool") {
        let out = Command::new("oci-image-tool")
            .args(["validate", "--type", "image", "--ref", "name=latest"])
            .arg(&built.layout)
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "oci-image-tool rejects the layout: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let config = layout_config(&built.layout);
    for (field, want) in expect["config"].as_object().into_iter().flatten() {
        let got = config["config"].get(field).cloned().unwrap_or(Value::Null);
        if &got != want {
            problems.push(format!("config {field}: expected {want}, got {got}"));
        }
    }
    let tree = walk(built.rootfs.as_ref().unwrap());
    for (path, want) in expect["files"].as_object().into_iter().flatten() {
        problems.extend(check_entry(path, want, tree.get(path)));
    }
    problems
}

fn check_entry(path: &str, want: &Value, got: Option<&FsEntry>) -> Vec<String> {
    let mut problems = Vec::new();
    let want_kind = want["type"].as_str().unwrap_or("file");
    let Some(got) = got else {
        if want_kind != "absent" {
            problems.push(format!("{path}: missing (expected {want_kind})"));
        }
        return problems;
    };
    if want_kind == "absent" {
        problems.push(format!("{path}: exists ({}), expected absent", got.kind));
        return problems;
    }
    if got.kind != want_kind {
        problems.push(format!("{path}: is a {}, expected {want_kind}", got.kind));
    }
    if let Some(mode) = want["mode"].as_str() {
        let mode = u32::from_str_radix(mode, 8).unwrap();
        if got.mode != mode {
            problems.push(format!(
                "{path}: mode {:04o}, expected {mode:04o}",
                got.mode
            ));
        }
    }
    for (field, value) in [("uid", got.uid), ("gid", got.gid)] {
        if let Some(want) = want[field].as_u64()
            && u64::from(value) != want
        {
            problems.push(format!("{path}: {field} {value}, expected {want}"));
        }
    }
    let data = String::from_utf8_lossy(&got.data);
    for field in ["content", "target"] {
        if let Some(want) = want[field].as_str()
            && data != want
        {
            problems.push(format!("{path}: {field} {data:?}, expected {want:?}"));
        }
    }
    if let Some(want) = want["contains"].as_str()
        && !data.contains(want)
    {
        problems.push(format!("{path}: content {data:?} lacks {want:?}"));
    }
    problems
}

/// Runs `f` over `items` on a few threads.
pub(crate) fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const WORKERS: usize = 4;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().unwrap().push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn corpus_has_enough_cases() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} corpus cases", cases.len());
    for case in &cases {
        assert!(
            case.expect.get("fail").is_some()
                || case.expect.get("files").is_some()
                || case.expect.get("config").is_some(),
            "{}: expect.json checks nothing",
            case.name
        );
    }
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn corpus_builds_match_expectations_root() {
    kiln_test::require_root();
    run_corpus(&[], |_| true);
}

/// The RUN cases again with the sandbox's copy-based rootfs (what kiln uses where
/// overlayfs is unavailable): its metadata differ must produce the same layers.
#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn corpus_runs_match_expectations_in_copy_fallback_mode_root() {
    kiln_test::require_root();
    run_corpus(&[("KILN_SANDBOX_FORCE_COPY", "1")], |case| {
        fs_err::read_to_string(case.dir.join("Dockerfile"))
            .unwrap()
            .lines()
            .any(|l| l.trim_start().starts_with("RUN"))
    });
}

/// Builds the selected cases (all, or `KILN_CORPUS_CASE=name`) with `env` and asserts
/// their expectations.
fn run_corpus(env: &[(&str, &str)], select: impl Fn(&Case) -> bool) {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let cases = cases();
    let only = std::env::var("KILN_CORPUS_CASE").ok();
    let selected: Vec<&Case> = cases
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name) && select(c))
        .collect();
    let work = tmp.path().join("work");
    let reports = parallel(&selected, |case| {
        let built = build_case_with_env(&store, case, &work, env);
        let problems = check_case(case, &built);
        (case.name.clone(), problems, built.stderr)
    });
    let failures: Vec<String> = reports
        .into_iter()
        .filter(|(_, problems, _)| !problems.is_empty())
        .map(|(name, problems, stderr)| {
            format!(
                "== {name}:\n  {}\n  --- kiln output:\n{stderr}",
                problems.join("\n  ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        selected.len(),
        failures.join("\n")
    );
}
