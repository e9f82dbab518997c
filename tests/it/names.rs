//! File names that are not UTF-8, and `.dockerignore` limits (the hostile-context issue).
//!
//! BuildKit keeps a name's bytes end to end: a context file `bad\xff\xfename` is matched by
//! `COPY bad* /x/`, excluded by a `.dockerignore` wildcard, and written into the layer tar
//! with exactly those bytes (a PAX `path` record holds them raw). The layers are read back by
//! Python's `tarfile` (an independent reader) when `python3` is installed, and the
//! `type=local` export is checked on disk.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::Command;

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails};

/// Creates `rel` (bytes) under `dir` holding `content`, parents included.
fn write_bytes(dir: &Path, rel: &[u8], content: &str) {
    let path = dir.join(OsStr::from_bytes(rel));
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, content).unwrap();
}

/// Every entry name of every layer of the image in the OCI layout `layout`, as bytes, read
/// with Python's `tarfile` (`os.fsencode` gives back the raw bytes of a PAX path).
fn layer_names_by_python(layout: &Path) -> Vec<Vec<u8>> {
    const SCRIPT: &str = r#"
import json, os, sys, tarfile
root = sys.argv[1]
def blob(digest):
    return os.path.join(root, "blobs", *digest.split(":"))
index = json.load(open(os.path.join(root, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"]), "r:*") as tar:
        for member in tar.getmembers():
            sys.stdout.write(os.fsencode(member.name).hex() + "\n")
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(layout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 tarfile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_python3),
    ignore = "needs root, busybox, python3 (reads the layer tars independently)"
)]
fn non_utf8_names_keep_their_bytes_through_copy_ignore_run_and_export_root() {
    kiln_test::require_root();
    kiln_test::require_tool("python3");
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write_bytes(&ctx, b"bad\xff\xfename", "first");
    write_bytes(&ctx, b"bad\xfe\xffname", "second");
    write_bytes(&ctx, b"dir\x80/in\xe9", "latin-1");
    write_bytes(&ctx, b"dir\x80/drop\xff", "dropped");
    write_bytes(&ctx, b"skip\xffme", "skipped");
    write_bytes(&ctx, b"keep.txt", "kept");
    write_bytes(&ctx, b".dockerignore", "skip*\ndir?/drop*\n");
    write_bytes(
        &ctx,
        b"Dockerfile",
        "FROM busybox AS build\n\
         RUN touch \"$(printf 'made\\377here')\"\n\
         FROM busybox\n\
         RUN mkdir \"$(printf 'run\\376dir')\" && touch \"$(printf 'run\\376dir/f\\375')\"\n\
         COPY bad* /x/\n\
         COPY . /all/\n\
         COPY --from=build /made* /from/\n",
    );
    let layout = tmp.path().join("oci");
    build_plain(
        &store,
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    let local = tmp.path().join("rootfs");
    let warm = build_plain(
        &store,
        &ctx,
        &["-o", &format!("type=local,dest={}", local.display())],
    );
    assert!(
        warm.lines()
            .filter(|l| l.starts_with('#') && l.contains(" [") && l.contains("COPY bad*"))
            .all(|l| l.ends_with(" CACHED")),
        "an unchanged context is cached:\n{warm}"
    );

    let expected: [&[u8]; 6] = [
        b"x/bad\xff\xfename",
        b"x/bad\xfe\xffname",
        b"all/bad\xff\xfename",
        b"all/dir\x80/in\xe9",
        b"from/made\xffhere",
        b"run\xfedir/f\xfd",
    ];
    let excluded: [&[u8]; 2] = [b"all/skip\xffme", b"all/dir\x80/drop\xff"];
    // The exported file system, byte for byte.
    for name in expected {
        assert!(
            local.join(OsStr::from_bytes(name)).is_file(),
            "{} missing from the type=local export",
            name.escape_ascii()
        );
    }
    for name in excluded {
        assert!(
            !local.join(OsStr::from_bytes(name)).exists(),
            "{} should be excluded by .dockerignore",
            name.escape_ascii()
        );
    }
    assert_eq!(
        fs_err::read_to_string(local.join(OsStr::from_bytes(b"x/bad\xfe\xffname"))).unwrap(),
        "second"
    );
    // No name anywhere was replaced by U+FFFD.
    let listing = Command::new("find").arg(&local).output().unwrap().stdout;
    assert!(
        !listing.windows(3).any(|w| w == "\u{fffd}".as_bytes()),
        "a name lost its bytes:\n{}",
        listing.escape_ascii()
    );

    // The layer tars, read by an independent implementation.
    {
        let names = layer_names_by_python(&layout);
        for name in expected {
            assert!(
                names.iter().any(|n| n == name),
                "{} missing from the layers",
                name.escape_ascii()
            );
        }
        // Python's tarfile strips a directory's trailing slash.
        assert!(
            names
                .iter()
                .any(|n| n == b"all/dir\x80/" || n == b"all/dir\x80")
        );
        for name in excluded {
            assert!(!names.iter().any(|n| n == name));
        }
    }

    // Renaming a file to a name that differs only in invalid bytes misses the cache.
    fs_err::rename(
        ctx.join(OsStr::from_bytes(b"bad\xfe\xffname")),
        ctx.join(OsStr::from_bytes(b"bad\xfe\xfdname")),
    )
    .unwrap();
    let renamed = build_plain(&store, &ctx, &[]);
    let copy_step = renamed
        .lines()
        .find(|l| l.starts_with('#') && l.contains(" [") && l.contains("COPY bad*"))
        .unwrap_or_else(|| panic!("no COPY bad* step:\n{renamed}"));
    assert!(!copy_step.ends_with(" CACHED"), "{renamed}");
}

/// Builds a context of `files` (`FROM scratch`, `COPY . /`) to a `type=local` export and
/// asserts it fails with exit 1; returns stderr and the export directory.
fn failing_local_export(files: &[(&[u8], &str)]) -> (String, tempfile::TempDir) {
    // No RUN and no base image: runs without root.
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_bytes(&ctx, b"Dockerfile", "FROM scratch\nCOPY . /\n");
    for (name, content) in files {
        write_bytes(&ctx, name, content);
    }
    let failed = run_fails(
        kiln_in(&tmp.path().join("store"))
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!(
                "type=local,dest={}",
                tmp.path().join("out").display()
            ))
            .arg(&ctx),
        1,
    );
    (String::from_utf8_lossy(&failed.stderr).into_owned(), tmp)
}

#[test]
fn a_dockerignore_line_over_the_limit_fails_the_build_naming_it() {
    let long = format!("{}*\nsecret*\n", "x".repeat(70_000));
    let ignore = format!("# keys\n{long}");
    let (stderr, tmp) =
        failing_local_export(&[(b"secret.key", "secret"), (b".dockerignore", &ignore)]);
    assert!(stderr.contains(".dockerignore:2:"), "{stderr}");
    assert!(stderr.contains("65535 bytes"), "{stderr}");
    assert!(stderr.contains("shorten the pattern"), "{stderr}");
    assert!(!tmp.path().join("out/secret.key").exists());
}

#[test]
fn a_dockerignore_pattern_that_cannot_match_fails_the_build() {
    // `[Local-Only]` is a bad range for Go's filepath.Match: BuildKit fails the build; kiln
    // must not treat it as "excludes nothing" and copy the file.
    let (stderr, tmp) = failing_local_export(&[
        (b"Local-Only", "secret"),
        (b".dockerignore", "[Local-Only]\n"),
    ]);
    assert!(stderr.contains("[Local-Only]"), "{stderr}");
    assert!(stderr.contains(".dockerignore"), "{stderr}");
    assert!(!tmp.path().join("out/Local-Only").exists());
}

/// Builds `ctx` to a `type=local` export at `out` (no RUN, no base image: no root needed).
fn local_export(store: &Path, ctx: &Path, out: &Path) {
    build_plain(
        store,
        ctx,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
}

#[test]
fn a_context_with_only_a_containerfile_builds_with_its_own_ignore_file() {
    // podman and buildah's name: used when there is no Dockerfile, its
    // `Containerfile.dockerignore` winning over `.dockerignore` as `Dockerfile.dockerignore`
    // does.
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_bytes(&ctx, b"Containerfile", "FROM scratch\nCOPY . /\n");
    write_bytes(&ctx, b"keep.txt", "kept");
    write_bytes(&ctx, b"secret.txt", "secret");
    write_bytes(&ctx, b".dockerignore", "keep.txt\n");
    write_bytes(&ctx, b"Containerfile.dockerignore", "secret.txt\n");
    let out = tmp.path().join("out");
    local_export(&store, &ctx, &out);
    assert!(out.join("keep.txt").is_file());
    assert!(out.join("Containerfile").is_file());
    assert!(!out.join("secret.txt").exists());

    // A Dockerfile next to it wins, with its own ignore file (none: `.dockerignore`).
    write_bytes(
        &ctx,
        b"Dockerfile",
        "FROM scratch\nCOPY keep.txt secret.txt /d/\n",
    );
    write_bytes(&ctx, b".dockerignore", "nothing\n");
    let out = tmp.path().join("out-dockerfile");
    local_export(&store, &ctx, &out);
    assert!(out.join("d/secret.txt").is_file());
    assert!(!out.join("Containerfile").exists());
}
