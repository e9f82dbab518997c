//! Differential test: the corpus cases marked `"buildah": true` are built by kiln and by
//! Debian's `buildah bud --format docker` from the same busybox base, and the results
//! compared — config fields and the flattened filesystem (type, mode, owner, content, link
//! target; timestamps ignored).
//!
//! Known, justified differences (normalized away below, each with its reason):
//! - buildah adds the label `io.buildah.version`: a tool stamp, not build content.
//! - buildah writes empty `Volumes`/`ExposedPorts`/`Labels`/`OnBuild` maps and lists as
//!   absent or empty interchangeably, and an empty `WorkingDir` as `""`; both mean "unset".
//! - A buildah RUN leaves the mount points it created for the container in the layer
//!   (`/dev`, `/proc`, `/sys`, `/run`, `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and
//!   `/run/secrets` stubs); BuildKit, which kiln follows, removes the stubs it created
//!   (runc executor `RemoveMountStubsRecursive`). Paths that exist only in buildah's image
//!   under those names are ignored.
//! - buildah (1.28) gives a `WORKDIR`-created directory and the parents of COPY destinations
//!   0755 as well, but stamps no owner from USER on WORKDIR; BuildKit creates WORKDIR as the
//!   USER. Only `workdir-owned-by-user` exercises that, and it is not in the buildah subset.
//! - Per-case differences where buildah departs from BuildKit are listed in [`KNOWN`] with
//!   the BuildKit behaviour kiln follows; cases buildah cannot build at all
//!   (`COPY --from=BUILDER` matching `AS Builder`: buildah's stage lookup is case-sensitive,
//!   BuildKit's is not; heredoc COPY sources and `${VAR%%pattern}`: buildah 1.28 predates
//!   them) are marked `"buildah": false` in their `expect.json`.

/// Known differences: (case, start of the difference, why kiln is right).
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "scratch-final",
        "config WorkingDir",
        "BuildKit's emptyImage() sets WorkingDir \"/\" for scratch; buildah leaves it unset",
    ),
    (
        "copy-from-image",
        "config WorkingDir",
        "the same scratch default as scratch-final",
    ),
    (
        "shell-instruction",
        "config Cmd",
        "BuildKit's dispatchCmd wraps shell-form CMD in the stage's SHELL; buildah 1.28 always uses /bin/sh -c",
    ),
    (
        "run-special-files",
        "/s/hard:",
        "a RUN appending to one name of a hardlinked file: overlayfs copy-up breaks the link (as \
         BuildKit's and Docker's overlay snapshotters do, whose layer is the upperdir), so the \
         other name keeps the old content; buildah's vfs driver copies whole trees and keeps it",
    ),
    (
        "volume",
        "/",
        "BuildKit's dispatchVolume only records Volumes in the config; buildah also creates the directories",
    ),
];

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::builds::{
    FsEntry, build_case, busybox_layout, cases, parallel, store_with_busybox, umoci_unpack, walk,
};

/// The config fields DESIGN.md §1 promises are the same as BuildKit's.
pub(crate) const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "User",
    "WorkingDir",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "OnBuild",
    "Shell",
];

/// Paths a buildah RUN leaves behind as mount stubs (see the module docs).
const BUILDAH_STUBS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/hostname",
];

pub(crate) struct Buildah {
    pub(crate) root: std::path::PathBuf,
}

impl Buildah {
    pub(crate) fn cmd(&self) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.arg("--root")
            .arg(self.root.join("root"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .args(["--storage-driver", "vfs"])
            .env("BUILDAH_ISOLATION", "chroot")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The promised config fields, empty ones dropped and tool stamps removed.
pub(crate) fn normalized_config(config: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for field in FIELDS {
        let mut value = config.get(*field).cloned().unwrap_or(Value::Null);
        if *field == "Labels"
            && let Some(labels) = value.as_object_mut()
        {
            labels.remove("io.buildah.version");
        }
        if !is_empty_value(&value) {
            out.insert((*field).to_owned(), value);
        }
    }
    out
}

fn is_buildah_stub(path: &str) -> bool {
    BUILDAH_STUBS
        .iter()
        .any(|stub| path == *stub || path.starts_with(&format!("{stub}/")))
}

fn describe(entry: Option<&FsEntry>) -> String {
    entry.map_or_else(
        || "absent".to_owned(),
        |e| {
            let data = if e.kind == "file" && e.data.len() > 40 {
                format!("{} bytes", e.data.len())
            } else {
                format!("{:?}", String::from_utf8_lossy(&e.data))
            };
            format!("{} {:04o} {}:{} {data}", e.kind, e.mode, e.uid, e.gid)
        },
    )
}

/// Differences between kiln's and buildah's trees, buildah's mount stubs ignored.
pub(crate) fn tree_differences(
    kiln: &BTreeMap<String, FsEntry>,
    buildah: &BTreeMap<String, FsEntry>,
) -> Vec<String> {
    let mut paths: Vec<&String> = kiln.keys().chain(buildah.keys()).collect();
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    for path in paths {
        let (k, b) = (kiln.get(path), buildah.get(path));
        if k == b {
            continue;
        }
        if k.is_none() && is_buildah_stub(path) {
            continue;
        }
        // A stub directory kiln also has (it was in the base) may differ only in mtime,
        // which is not compared; any other difference is real.
        out.push(format!(
            "{path}: kiln {} / buildah {}",
            describe(k),
            describe(b)
        ));
    }
    out
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_buildah, kiln_no_umoci),
    ignore = "needs root, busybox, buildah, umoci"
)]
fn corpus_matches_buildah_root() {
    kiln_test::require_root();
    kiln_test::require_tool("buildah");
    kiln_test::require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let buildah = Buildah {
        root: tmp.path().join("buildah"),
    };
    // buildah names an `oci:` image after its path, which must be lowercase; temp dirs
    // are mixed case, so the layout is pulled through a lowercase symlink.
    let base = std::env::temp_dir().join(format!("kiln-buildah-base-{}", std::process::id()));
    let _ = fs_err::remove_file(&base);
    fs_err::os::unix::fs::symlink(busybox_layout(tmp.path()), &base).unwrap();
    buildah.run(&["pull", "-q", &format!("oci:{}:latest", base.display())]);
    fs_err::remove_file(&base).unwrap();
    let id = buildah.run(&["images", "-q"]);
    buildah.run(&["tag", id.lines().next().unwrap().trim(), "busybox"]);

    let subset: Vec<_> = cases()
        .into_iter()
        .filter(|c| c.expect["buildah"] == Value::Bool(true))
        .collect();
    assert!(subset.len() >= 20, "only {} buildah cases", subset.len());
    // KILN_CORPUS_CASE=name runs one case (as in builds.rs).
    let only = std::env::var("KILN_CORPUS_CASE").ok();
    let subset: Vec<_> = subset
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| o == c.name))
        .collect();
    let work = tmp.path().join("work");
    let reports = parallel(&subset, |case| {
        let mut problems = Vec::new();
        let built = build_case(&store, case, &work);
        if built.code != Some(0) {
            return (
                case.name.clone(),
                vec![format!("kiln failed:\n{}", built.stderr)],
            );
        }
        let name = format!("localhost/diff-{}:latest", case.name);
        let dockerfile = case.dir.join("Dockerfile");
        let context = case.context(&work);
        let mut bud = buildah.cmd();
        bud.args(["bud", "--format", "docker", "--quiet", "-t", &name, "-f"])
            .arg(&dockerfile)
            .args(case.build_args(&work))
            .arg(&context);
        let out = bud.output().unwrap();
        if !out.status.success() {
            return (
                case.name.clone(),
                vec![format!(
                    "buildah bud failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )],
            );
        }
        let inspect: Value =
            serde_json::from_str(&buildah.run(&["inspect", "--type", "image", &name])).unwrap();
        let theirs = normalized_config(&inspect["Docker"]["config"]);
        let ours = normalized_config(&crate::builds::layout_config(&built.layout)["config"]);
        for field in FIELDS {
            let (o, t) = (ours.get(*field), theirs.get(*field));
            if o != t {
                problems.push(format!(
                    "config {field}: kiln {} / buildah {}",
                    o.map_or("absent".into(), Value::to_string),
                    t.map_or("absent".into(), Value::to_string)
                ));
            }
        }
        let layout = work.join(&case.name).join("buildah-oci");
        buildah.run(&[
            "push",
            "-q",
            &name,
            &format!("oci:{}:latest", layout.display()),
        ]);
        let rootfs = umoci_unpack(
            &layout,
            "latest",
            &work.join(&case.name).join("buildah-bundle"),
        );
        problems.extend(tree_differences(
            &walk(built.rootfs.as_ref().unwrap()),
            &walk(&rootfs),
        ));
        problems.retain(|p| {
            !KNOWN
                .iter()
                .any(|(name, start, _)| *name == case.name && p.starts_with(start))
        });
        (case.name.clone(), problems)
    });
    let failures: Vec<String> = reports
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(name, p)| format!("== {name}:\n  {}", p.join("\n  ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from buildah:\n{}",
        failures.len(),
        subset.len(),
        failures.join("\n")
    );
}

#[test]
fn stub_filter_only_ignores_buildah_mount_points() {
    assert!(is_buildah_stub("/etc/hosts"));
    assert!(is_buildah_stub("/proc"));
    assert!(is_buildah_stub("/run/secrets"));
    assert!(!is_buildah_stub("/etc/hostsfile"));
    assert!(!is_buildah_stub("/runner"));
    let _ = Path::new("/");
}
