//! COPY source selection and destination mapping against real directories.

use std::path::Path;

use crate::copy::owners::Chmod;
use crate::copy::source::{
    ContextFilter, ContextTree, EntryKind, IncludeAll, LayeredTree, SourceTree,
};
use crate::copy::{CopyAttrs, CopyError, CopyRequest, plan_copy};

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs_err::create_dir_all(p.parent().unwrap()).unwrap();
    fs_err::write(p, body).unwrap();
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "app/main.py", "print(1)");
    write(r, "app/util.py", "x = 1");
    write(r, "app/__pycache__/main.cpython.pyc", "bytecode");
    write(r, "requirements.txt", "fastapi");
    write(r, "README.md", "# hi");
    write(r, "docs/a.md", "a");
    fs_err::os::unix::fs::symlink("requirements.txt", r.join("reqs")).unwrap();
    fs_err::os::unix::fs::symlink("../../etc/passwd", r.join("escape")).unwrap();
    dir
}

fn plan(
    tree: &dyn SourceTree,
    sources: &[&str],
    dest: &str,
    existing_dirs: &[&str],
) -> Result<Vec<String>, CopyError> {
    let sources: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
    let req = CopyRequest {
        sources: &sources,
        dest,
        parents: false,
        exclude: &[],
        attrs: CopyAttrs::default(),
    };
    let existing: Vec<String> = existing_dirs.iter().map(|s| (*s).to_owned()).collect();
    let p = plan_copy(tree, &req, &|p| existing.iter().any(|d| d == p))?;
    Ok(p.dests().map(str::to_owned).collect())
}

#[test]
fn a_directory_source_copies_its_contents() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IncludeAll);
    let got = plan(&tree, &["app"], "/srv/app", &["/srv"]).unwrap();
    assert_eq!(
        got,
        [
            "/srv/app",
            "/srv/app/__pycache__",
            "/srv/app/__pycache__/main.cpython.pyc",
            "/srv/app/main.py",
            "/srv/app/util.py"
        ]
    );
}

#[test]
fn file_destination_rules_follow_the_trailing_slash_and_existing_dirs() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IncludeAll);
    assert_eq!(
        plan(&tree, &["requirements.txt"], "/app/reqs.txt", &[]).unwrap(),
        ["/app", "/app/reqs.txt"]
    );
    assert_eq!(
        plan(&tree, &["requirements.txt"], "/app/", &[]).unwrap(),
        ["/app", "/app/requirements.txt"]
    );
    assert_eq!(
        plan(&tree, &["requirements.txt"], "/app", &["/app"]).unwrap(),
        ["/app/requirements.txt"]
    );
    assert_eq!(
        plan(&tree, &["./requirements.txt"], "/", &[]).unwrap(),
        ["/requirements.txt"]
    );
}

#[test]
fn several_sources_need_a_directory_destination() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IncludeAll);
    let err = plan(&tree, &["README.md", "requirements.txt"], "/app", &[]).unwrap_err();
    assert!(matches!(err, CopyError::DestNotDir { .. }), "{err}");
    assert!(err.to_string().contains("end with a /"));
    let ok = plan(&tree, &["README.md", "requirements.txt"], "/app/", &[]).unwrap();
    assert_eq!(ok, ["/app", "/app/README.md", "/app/requirements.txt"]);
}

#[test]
fn wildcards_match_per_component_and_missing_sources_fail() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IncludeAll);
    assert_eq!(
        plan(&tree, &["app/*.py"], "/src/", &[]).unwrap(),
        ["/src", "/src/main.py", "/src/util.py"]
    );
    assert_eq!(
        plan(&tree, &["*/a.md"], "/d/", &[]).unwrap(),
        ["/d", "/d/a.md"]
    );
    let err = plan(&tree, &["*.nothing"], "/x/", &[]).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }));
    let err = plan(&tree, &["nope.txt"], "/x/", &[]).unwrap_err();
    assert!(err.to_string().contains("nope.txt"), "{err}");
}

#[test]
fn symlinked_sources_are_followed_inside_the_root_only() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IncludeAll);
    let (path, entry) = tree.resolve("reqs").unwrap().unwrap();
    assert_eq!(path, "requirements.txt");
    assert_eq!(entry.kind, EntryKind::File);
    // `../../etc/passwd` resolves to `etc/passwd` inside the context, which does not exist.
    assert!(tree.resolve("escape").unwrap().is_none());
    assert_eq!(plan(&tree, &["reqs"], "/r.txt", &[]).unwrap(), ["/r.txt"]);
}

struct IgnorePyc;
impl ContextFilter for IgnorePyc {
    fn is_excluded(&self, path: &str) -> bool {
        path.contains("__pycache__") || path == "docs"
    }
}

#[test]
fn excluded_context_files_are_invisible() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IgnorePyc);
    let got = plan(&tree, &["app"], "/app/", &[]).unwrap();
    assert_eq!(got, ["/app", "/app/main.py", "/app/util.py"]);
    assert!(plan(&tree, &["docs/a.md"], "/x", &[]).is_err());
}

#[test]
fn chown_chmod_and_owner_rules() {
    let ctx = context();
    let tree = ContextTree::new(ctx.path(), IncludeAll);
    let sources = vec!["app".to_owned()];
    let req = CopyRequest {
        sources: &sources,
        dest: "/home/app/src/",
        parents: false,
        exclude: &["__pycache__".to_owned()],
        attrs: CopyAttrs {
            chown: Some((1000, 1000)),
            chmod: Some(Chmod::Octal(0o640)),
            keep_owners: false,
        },
    };
    let plan = plan_copy(&tree, &req, &|p| p == "/home").unwrap();
    let item = plan.get("/home/app/src/main.py").unwrap();
    assert_eq!((item.uid, item.gid, item.mode), (1000, 1000, 0o640));
    let parent = plan.get("/home/app").unwrap();
    assert!(parent.is_created_parent);
    assert_eq!((parent.uid, parent.mode), (1000, 0o755));
    assert!(!plan.contains("/home"));
    assert!(!plan.dests().any(|k| k.contains("__pycache__")));

    let req = CopyRequest {
        attrs: CopyAttrs::default(),
        exclude: &[],
        ..req
    };
    let plan = plan_copy(&tree, &req, &|_| false).unwrap();
    let item = plan.get("/home/app/src/util.py").unwrap();
    assert_eq!(
        (item.uid, item.gid),
        (0, 0),
        "context files become root-owned"
    );
}

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root for mknod and trusted xattrs")]
fn layered_tree_applies_whiteouts_and_opaque_dirs() {
    kiln_test::require_root();
    let base = tempfile::tempdir().unwrap();
    let lower = base.path().join("lower");
    let upper = base.path().join("upper");
    write(&lower, "etc/a", "a");
    write(&lower, "etc/b", "b");
    write(&lower, "opt/old/x", "x");
    write(&upper, "etc/c", "c");
    fs_err::create_dir_all(upper.join("opt/old")).unwrap();
    write(&upper, "opt/old/y", "y");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        upper.join("etc/a"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0),
        0,
    )
    .unwrap();
    rustix::fs::setxattr(
        upper.join("opt/old"),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let tree = LayeredTree::new(vec![upper, lower], "stage builder");
    assert_eq!(tree.read_dir("etc").unwrap(), ["b", "c"]);
    assert!(tree.lookup("etc/a").unwrap().is_none());
    assert!(tree.lookup("etc/b").unwrap().is_some());
    assert_eq!(tree.read_dir("opt/old").unwrap(), ["y"]);
    assert!(tree.lookup("opt/old/x").unwrap().is_none());
    assert_eq!(tree.describe(), "stage builder");
}

#[test]
fn a_later_source_wins_a_path_and_entries_come_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "one/same.txt", "from one");
    write(r, "one/z/deep.txt", "z");
    write(r, "two/same.txt", "from two");
    write(r, "two/a-b.txt", "dash");
    write(r, "two/a/inner.txt", "inner");
    let tree = ContextTree::new(r, IncludeAll);
    let sources = vec!["one".to_owned(), "two".to_owned()];
    let req = CopyRequest {
        sources: &sources,
        dest: "/dst/",
        parents: false,
        exclude: &[],
        attrs: CopyAttrs::default(),
    };
    let plan = plan_copy(&tree, &req, &|_| false).unwrap();
    // Byte order of the whole path (`a-b.txt` before `a/`), each path once.
    let dests: Vec<&str> = plan.dests().collect();
    assert_eq!(
        dests,
        [
            "/dst",
            "/dst/a",
            "/dst/a-b.txt",
            "/dst/a/inner.txt",
            "/dst/same.txt",
            "/dst/z",
            "/dst/z/deep.txt"
        ]
    );
    let same = plan.get("/dst/same.txt").unwrap();
    assert_eq!(same.source_path, "two/same.txt", "the later source wins");
    assert!(plan.get("/dst/missing").is_none());
    assert_eq!(plan.len(), dests.len());
}
