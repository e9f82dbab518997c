//! The scanner's parsers on realistic data, the layered view's whiteout, opaque and symlink
//! semantics, whole scans of fixture trees, and the SPDX document against the official
//! schema.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::*;

/// The fixture directory `tests/data/sbom/`.
fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sbom")
        .join(name);
    fs_err::read_to_string(path).unwrap()
}

/// Writes `text` at `rel` below `root`, creating parents.
fn write(root: &Path, rel: &str, text: impl AsRef<[u8]>) {
    let path = root.join(rel);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

/// A symlink at `rel` below `root` pointing to `target`.
fn symlink(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::os::unix::fs::symlink(target, path).unwrap();
}

/// An overlay whiteout (0/0 character device) at `rel` below `root` (needs root).
fn whiteout(root: &Path, rel: &str) {
    let path = root.join(rel);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0),
        0,
    )
    .unwrap();
}

/// Marks the directory `rel` below `root` opaque with `xattr` (trusted.* needs root).
fn opaque(root: &Path, rel: &str, xattr: &str) {
    let path = root.join(rel);
    fs_err::create_dir_all(&path).unwrap();
    rustix::fs::setxattr(&path, xattr, b"y", rustix::fs::XattrFlags::empty()).unwrap();
}

/// Two layer directories (lower, upper) in a temp dir, and the view of them.
fn two_layers() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    let upper = dir.path().join("upper");
    fs_err::create_dir_all(&lower).unwrap();
    fs_err::create_dir_all(&upper).unwrap();
    (dir, lower, upper)
}

fn read_text(fs: &RootFs, path: &str) -> Option<String> {
    fs.read(path)
        .unwrap()
        .map(|bytes| String::from_utf8(bytes).unwrap())
}

fn names(fs: &RootFs, path: &str) -> Vec<String> {
    fs.list_dir(path)
        .unwrap()
        .unwrap()
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

fn debian_distro() -> Distro {
    Distro {
        id: Some("debian".into()),
        version_id: Some("12".into()),
    }
}

// ---- the layered view --------------------------------------------------------------------

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root for mknod")]
fn whiteout_in_an_upper_layer_hides_a_lower_file() {
    kiln_test::require_root();
    let (_dir, lower, upper) = two_layers();
    write(&lower, "etc/gone", "lower");
    write(&lower, "etc/kept", "lower");
    write(&lower, "opt/tree/deep/file", "lower");
    whiteout(&upper, "etc/gone");
    whiteout(&upper, "opt/tree");
    let fs = RootFs::Layers(vec![lower, upper]);
    assert_eq!(read_text(&fs, "/etc/gone"), None);
    assert_eq!(read_text(&fs, "/etc/kept").as_deref(), Some("lower"));
    assert_eq!(names(&fs, "/etc"), ["kept"]);
    assert_eq!(fs.list_dir("/opt/tree").unwrap().map(|l| l.len()), None);
    assert_eq!(read_text(&fs, "/opt/tree/deep/file"), None);
    assert!(names(&fs, "/opt").is_empty());
    // A flattened directory has devices, not whiteouts.
    let (_dir2, flat, _) = two_layers();
    whiteout(&flat, "dev/null-ish");
    assert_eq!(names(&RootFs::Dir(flat), "/dev"), ["null-ish"]);
}

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root for trusted xattrs")]
fn opaque_directory_hides_lower_contents() {
    kiln_test::require_root();
    for xattr in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        let (_dir, lower, upper) = two_layers();
        write(&lower, "app/old.txt", "old");
        write(&lower, "app/sub/x", "old");
        write(&lower, "other/a", "a");
        opaque(&upper, "app", xattr);
        write(&upper, "app/new.txt", "new");
        let fs = RootFs::Layers(vec![lower, upper]);
        assert_eq!(names(&fs, "/app"), ["new.txt"], "{xattr}");
        assert_eq!(read_text(&fs, "/app/old.txt"), None, "{xattr}");
        assert_eq!(read_text(&fs, "/app/sub/x"), None, "{xattr}");
        assert_eq!(read_text(&fs, "/other/a").as_deref(), Some("a"));
    }
}

#[test]
fn upper_layer_file_replaces_the_lower_one_and_directories_merge() {
    let (dir, lower, upper) = two_layers();
    let middle = dir.path().join("middle");
    write(&lower, "etc/os-release", "ID=debian\n");
    write(&lower, "etc/a", "a");
    write(&middle, "etc/b", "b");
    write(&upper, "etc/os-release", "ID=ubuntu\n");
    // A file in a higher layer hides a directory below it, and the reverse.
    write(&lower, "srv/data/inner", "x");
    write(&upper, "srv/data", "now a file");
    write(&lower, "var/thing", "a file");
    write(&upper, "var/thing/inside", "now a dir");
    let fs = RootFs::Layers(vec![lower, middle, upper]);
    assert_eq!(
        read_text(&fs, "/etc/os-release").as_deref(),
        Some("ID=ubuntu\n")
    );
    assert_eq!(names(&fs, "/etc"), ["a", "b", "os-release"]);
    assert_eq!(read_text(&fs, "/srv/data").as_deref(), Some("now a file"));
    assert_eq!(read_text(&fs, "/srv/data/inner"), None);
    assert_eq!(
        read_text(&fs, "/var/thing/inside").as_deref(),
        Some("now a dir")
    );
    assert_eq!(names(&fs, "/var/thing"), ["inside"]);
    // Directories and missing files read as nothing.
    assert_eq!(read_text(&fs, "/etc"), None);
    assert_eq!(read_text(&fs, "/nope/x"), None);
}

#[test]
fn symlinked_directories_resolve_inside_the_root() {
    // Debian's merged /usr: /lib -> usr/lib (relative), and an absolute one, with the link
    // in the lower layer and the target's file in the upper.
    let (_dir, lower, upper) = two_layers();
    symlink(&lower, "lib", "usr/lib");
    symlink(&lower, "bin", "/usr/bin");
    write(&lower, "usr/lib/os-release", "ID=debian\n");
    write(&upper, "usr/bin/tool", "tool");
    symlink(&upper, "usr/lib/apk/db/installed", "../../../../etc/apk-db");
    write(&upper, "etc/apk-db", "P:x\n");
    symlink(&upper, "usr/lib/up", "../..");
    let fs = RootFs::Layers(vec![lower, upper]);
    assert_eq!(
        read_text(&fs, "/lib/os-release").as_deref(),
        Some("ID=debian\n")
    );
    assert_eq!(read_text(&fs, "/bin/tool").as_deref(), Some("tool"));
    assert_eq!(
        read_text(&fs, "lib/apk/db/installed").as_deref(),
        Some("P:x\n")
    );
    assert_eq!(
        read_text(&fs, "/lib/up/lib/os-release").as_deref(),
        Some("ID=debian\n")
    );
    assert_eq!(names(&fs, "/lib"), ["apk", "os-release", "up"]);
}

#[test]
fn symlinks_never_leave_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    symlink(&root, "abs", "/../../etc/passwd");
    symlink(&root, "rel", "../../../../../../../../etc/passwd");
    symlink(&root, "dotdot", "/../../..");
    symlink(&root, "loop-a", "loop-b");
    symlink(&root, "loop-b", "loop-a");
    symlink(&root, "self", "self/x");
    for fs in [
        RootFs::Dir(root.clone()),
        RootFs::Layers(vec![root.clone()]),
    ] {
        // The host has an /etc/passwd; the image does not.
        assert_eq!(fs.read("/abs").unwrap(), None);
        assert_eq!(fs.read("/rel").unwrap(), None);
        assert_eq!(fs.read("/../../../etc/passwd").unwrap(), None);
        assert_eq!(fs.read("/dotdot/etc/passwd").unwrap(), None);
        assert!(
            fs.list_dir("/dotdot").unwrap().unwrap().len() > 3,
            "the image's root"
        );
        let loop_error = fs.read("/loop-a").unwrap_err();
        assert!(
            loop_error.to_string().contains("symbolic links"),
            "{loop_error}"
        );
        assert!(fs.read("/self").is_err());
    }
    // With an /etc/passwd in the image, each of them reads that one.
    write(&root, "etc/passwd", "image's passwd");
    let fs = RootFs::Dir(root);
    for path in ["/abs", "/rel", "/dotdot/etc/passwd", "/../etc/passwd"] {
        assert_eq!(
            read_text(&fs, path).as_deref(),
            Some("image's passwd"),
            "{path}"
        );
    }
}

#[test]
fn walk_visits_the_merged_tree_in_order_and_honours_skips() {
    let (_dir, lower, upper) = two_layers();
    write(&lower, "a/1", "");
    write(&upper, "a/2", "");
    write(&lower, "proc/cpuinfo", "");
    write(&upper, "b/c/d", "");
    symlink(&upper, "link", "/a");
    let fs = RootFs::Layers(vec![lower, upper]);
    let mut seen = Vec::new();
    fs.walk(WALK_LIMITS, |entry, depth| {
        seen.push(format!("{depth}:{}", entry.image_path()));
        if entry.name == "proc" {
            Walk::Skip
        } else {
            Walk::Descend
        }
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            "1:/a", "2:/a/1", "2:/a/2", "1:/b", "2:/b/c", "3:/b/c/d", "1:/link", "1:/proc"
        ]
    );
    let limited = WalkLimits {
        max_entries: 3,
        max_depth: 10,
    };
    let error = fs.walk(limited, |_, _| Walk::Descend).unwrap_err();
    assert!(
        matches!(error, WalkError::TooManyEntries { limit: 3 }),
        "{error}"
    );
    let shallow = WalkLimits {
        max_entries: 100,
        max_depth: 2,
    };
    let mut deepest = 0;
    fs.walk(shallow, |_, depth| {
        deepest = deepest.max(depth);
        Walk::Descend
    })
    .unwrap();
    assert_eq!(deepest, 2);
}

// ---- parsers -----------------------------------------------------------------------------

#[test]
fn dpkg_status_lists_installed_packages_only() {
    let packages = dpkg::parse_status(
        &fixture("dpkg-status"),
        dpkg::STATUS,
        &debian_distro(),
        true,
    );
    let summary: Vec<(&str, &str)> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    // `cron` is `deinstall ok config-files`: removed, only its conffiles remain.
    assert_eq!(
        summary,
        [
            ("bash", "5.2.15-2+b8"),
            ("bsdutils", "1:2.38.1-5+deb12u3"),
            ("libc6", "2.36-9+deb12u14"),
            ("tzdata", "2025b-0+deb12u2"),
        ]
    );
    let libc = &packages[2];
    assert_eq!(
        libc.purl,
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12&upstream=glibc"
    );
    assert_eq!(
        libc.supplier.as_deref(),
        Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>")
    );
    assert_eq!(libc.source, "/var/lib/dpkg/status");
    assert_eq!(libc.license, None);
    // `Source: util-linux (2.38.1-5+deb12u3)`, and an epoch.
    assert_eq!(
        packages[1].purl,
        "pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bdeb12u3?arch=amd64&distro=debian-12&upstream=util-linux%402.38.1-5%2Bdeb12u3"
    );
    assert_eq!(
        packages[3].purl,
        "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u2?arch=all&distro=debian-12"
    );
    // distroless status.d files have no Status field; a name:arch spelling is accepted.
    let stanza = "Package: libssl3:amd64\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n";
    let distroless = dpkg::parse_status(
        stanza,
        "/var/lib/dpkg/status.d/libssl3",
        &Distro::default(),
        false,
    );
    assert_eq!(distroless.len(), 1);
    assert_eq!(distroless[0].name, "libssl3");
    assert_eq!(
        distroless[0].purl,
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64"
    );
    assert!(dpkg::parse_status(stanza, dpkg::STATUS, &Distro::default(), true).is_empty());
}

#[test]
fn dpkg_copyright_files_declare_licences() {
    // Real bookworm files: libzstd1's (several stanzas, `or`, Debian spellings) and
    // tzdata's (one licence with no SPDX identifier).
    let zstd = dpkg::copyright_license(&fixture("copyright-libzstd1")).unwrap();
    assert_eq!(
        zstd,
        "(BSD-3-Clause OR GPL-2.0-only) AND BSD-3-Clause AND GPL-2.0-only AND MIT AND Zlib"
    );
    assert!(spdx::is_valid_expression(&zstd));
    assert_eq!(
        dpkg::copyright_license(&fixture("copyright-tzdata")).as_deref(),
        Some("public-domain")
    );
    let gnu = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
        Files: *\nLicense: LGPL-2.1+\n\nFiles: b\nLicense: GPL-3\n";
    assert_eq!(
        dpkg::copyright_license(gnu).as_deref(),
        Some("GPL-3.0-only AND LGPL-2.1-or-later")
    );
    // A free-form copyright file declares nothing machine-readable.
    let free_form = "This is the Debian prepackaged version of bash.\n\nLicense: GPL-3+\n";
    assert_eq!(dpkg::copyright_license(free_form), None);
    assert_eq!(
        dpkg::copyright_path("libc6"),
        "/usr/share/doc/libc6/copyright"
    );
}

#[test]
fn apk_installed_db_lists_every_stanza() {
    let distro = Distro {
        id: Some("alpine".into()),
        version_id: Some("3.18.4".into()),
    };
    let packages = apk::parse_installed(&fixture("apk-installed"), apk::INSTALLED, &distro);
    let summary: Vec<(&str, &str, Option<&str>)> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.license.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("musl", "1.2.4-r2", Some("MIT")),
            ("busybox", "1.36.1-r5", Some("GPL-2.0-only")),
            ("ssl_client", "1.36.1-r5", Some("GPL-2.0-only")),
            (
                "ca-certificates-bundle",
                "20230506-r0",
                Some("MPL-2.0 AND MIT")
            ),
            ("scanelf", "1.3.7-r1", Some("GPL-2.0-only")),
            (
                "libgcc",
                "12.2.1_git20220924-r10",
                Some("GPL-2.0-or-later AND LGPL-2.1-or-later")
            ),
        ]
    );
    assert_eq!(
        packages[0].purl,
        "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.18.4"
    );
    assert_eq!(
        packages[2].purl,
        "pkg:apk/alpine/ssl_client@1.36.1-r5?arch=x86_64&distro=alpine-3.18.4&upstream=busybox"
    );
    assert_eq!(
        packages[0].supplier.as_deref(),
        Some("Timo Teräs <timo.teras@iki.fi>")
    );
    assert!(packages.iter().all(|p| p.source == "/lib/apk/db/installed"));
}

/// A wheel's METADATA (metadata 2.1, as pip installs it), body included.
const REQUESTS_METADATA: &str = "Metadata-Version: 2.1
Name: requests
Version: 2.31.0
Summary: Python HTTP for Humans.
Home-page: https://requests.readthedocs.io
Author: Kenneth Reitz
Author-email: me@kennethreitz.org
License: Apache 2.0
Classifier: License :: OSI Approved :: Apache Software License
Requires-Python: >=3.7
Description-Content-Type: text/markdown
Requires-Dist: charset-normalizer (<4,>=2)

# Requests

License: MIT (this is the description, not a header)
";

#[test]
fn python_metadata_fields_and_name_normalisation() {
    let source = "/usr/local/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA";
    let package = python::parse_metadata(REQUESTS_METADATA, source).unwrap();
    assert_eq!(
        (package.name.as_str(), package.version.as_str()),
        ("requests", "2.31.0")
    );
    assert_eq!(package.license.as_deref(), Some("Apache 2.0"));
    assert_eq!(package.supplier.as_deref(), Some("me@kennethreitz.org"));
    assert_eq!(package.purl, "pkg:pypi/requests@2.31.0");
    assert_eq!(package.source, source);
    // Metadata 2.4: License-Expression wins; a multi-line License text is no declaration.
    let pep639 = "Metadata-Version: 2.4\nName: Zope.Interface__Extra\nVersion: 6.0\nLicense-Expression: MIT OR Apache-2.0\nLicense: Permission is hereby granted\n        to anyone\n";
    let package = python::parse_metadata(pep639, "/x/METADATA").unwrap();
    assert_eq!(package.license.as_deref(), Some("MIT OR Apache-2.0"));
    assert_eq!(package.purl, "pkg:pypi/zope-interface-extra@6.0");
    let long_text =
        "Name: x\nVersion: 1\nLicense: Permission is hereby granted\n        to anyone\n";
    assert_eq!(
        python::parse_metadata(long_text, "/x").unwrap().license,
        None
    );
    assert_eq!(python::normalize_name("Foo.Bar-_baz"), "foo-bar-baz");
    // setuptools' PKG-INFO (metadata 1.x), UNKNOWN licence.
    let pkg_info = "Metadata-Version: 1.1\nName: PyYAML\nVersion: 5.4.1\nLicense: UNKNOWN\nAuthor: Kirill Simonov\n";
    let package = python::parse_metadata(pkg_info, "/y/PyYAML.egg-info/PKG-INFO").unwrap();
    assert_eq!(package.license, None);
    assert_eq!(package.purl, "pkg:pypi/pyyaml@5.4.1");
    assert!(python::parse_metadata("Name: nameless-version\n", "/z").is_none());
    for (rel, expected) in [
        (
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            true,
        ),
        (
            "opt/venv/lib/python3.11/site-packages/a.egg-info/PKG-INFO",
            true,
        ),
        ("usr/lib/python3/dist-packages/old-1.0.egg-info", true),
        (
            "usr/lib/python3/dist-packages/six-1.16.0.dist-info/RECORD",
            false,
        ),
        ("srv/METADATA", false),
    ] {
        assert_eq!(python::is_candidate(Path::new(rel)), expected, "{rel}");
    }
}

#[test]
fn npm_package_json_fields_and_candidates() {
    let scoped = br#"{"name": "@babel/core", "version": "7.23.2", "license": "MIT",
        "author": {"name": "The Babel Team", "email": "team@babeljs.io", "url": "https://babel.dev"}}"#;
    let package =
        npm::parse_package_json(scoped, "/app/node_modules/@babel/core/package.json").unwrap();
    assert_eq!(package.purl, "pkg:npm/%40babel/core@7.23.2");
    assert_eq!(package.name, "@babel/core");
    assert_eq!(
        package.supplier.as_deref(),
        Some("The Babel Team <team@babeljs.io>")
    );
    assert_eq!(package.license.as_deref(), Some("MIT"));
    let old = br#"{"name": "x", "version": "1.0.0", "licenses": [{"type": "MIT"}, {"type": "Apache-2.0"}],
        "author": "Jane Doe <jane@example.com> (https://example.com)"}"#;
    let package = npm::parse_package_json(old, "/p").unwrap();
    assert_eq!(package.license.as_deref(), Some("(MIT) OR (Apache-2.0)"));
    assert_eq!(
        package.supplier.as_deref(),
        Some("Jane Doe <jane@example.com>")
    );
    let object_license = br#"{"name": "y", "version": "2.0.0", "license": {"type": "ISC"}}"#;
    assert_eq!(
        npm::parse_package_json(object_license, "/p")
            .unwrap()
            .license
            .as_deref(),
        Some("ISC")
    );
    assert!(npm::parse_package_json(b"{not json", "/p").is_none());
    assert!(npm::parse_package_json(br#"{"name": "no-version"}"#, "/p").is_none());
    for (rel, expected) in [
        ("app/node_modules/left-pad/package.json", true),
        ("app/node_modules/@types/node/package.json", true),
        ("app/node_modules/a/node_modules/b/package.json", true),
        ("app/package.json", false),
        ("app/node_modules/a/lib/package.json", false),
        ("app/node_modules/@scope/package.json", false),
        ("node_modules/package.json", false),
    ] {
        assert_eq!(npm::is_candidate(Path::new(rel)), expected, "{rel}");
    }
}

// ---- whole scans -------------------------------------------------------------------------

/// A Debian-like root with packages of every kind.
fn fixture_tree(root: &Path) {
    write(
        root,
        "usr/lib/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    );
    symlink(root, "etc/os-release", "../usr/lib/os-release");
    write(root, "var/lib/dpkg/status", fixture("dpkg-status"));
    write(
        root,
        "usr/share/doc/tzdata/copyright",
        fixture("copyright-tzdata"),
    );
    // Debian links the doc directories of some packages to another's.
    write(
        root,
        "usr/share/doc/libzstd1/copyright",
        fixture("copyright-libzstd1"),
    );
    symlink(root, "usr/share/doc/bsdutils", "libzstd1");
    write(
        root,
        "var/lib/dpkg/status.d/base-files",
        "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\nMaintainer: Santiago Vila <sanvila@debian.org>\n",
    );
    write(
        root,
        "var/lib/dpkg/status.d/base-files.md5sums",
        "d41d8cd98f00b204e9800998ecf8427e  etc/issue\n",
    );
    write(
        root,
        "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\nLicense: MIT\nAuthor: Benjamin Peterson\n",
    );
    write(
        root,
        "opt/venv/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
        REQUESTS_METADATA,
    );
    write(
        root,
        "usr/lib/python3/dist-packages/PyYAML-5.4.1.egg-info/PKG-INFO",
        "Metadata-Version: 1.1\nName: PyYAML\nVersion: 5.4.1\nLicense: MIT\n",
    );
    write(
        root,
        "usr/lib/python3/dist-packages/distro_info-1.5.egg-info",
        "Metadata-Version: 1.0\nName: distro-info\nVersion: 1.5\n",
    );
    write(
        root,
        "app/package.json",
        r#"{"name": "my-app", "version": "0.0.1"}"#,
    );
    write(
        root,
        "app/node_modules/left-pad/package.json",
        r#"{"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}"#,
    );
    write(
        root,
        "app/node_modules/left-pad/lib/package.json",
        r#"{"name": "inner", "version": "9"}"#,
    );
    write(
        root,
        "app/node_modules/@types/node/package.json",
        r#"{"name": "@types/node", "version": "20.8.0", "license": "MIT"}"#,
    );
    write(
        root,
        "app/node_modules/left-pad/node_modules/nested/package.json",
        r#"{"name": "nested", "version": "2.0.0", "license": "SEE LICENSE IN LICENSE.md"}"#,
    );
    let go_binary = golang::tests::elf(
        true,
        false,
        &golang::tests::inline_blob(
            "go1.21.5",
            &golang::tests::framed(
                "path\texample.com/app\nmod\texample.com/app\tv1.0.0\t\ndep\tgithub.com/google/uuid\tv1.3.0\th1:x=\n",
            ),
        ),
        true,
    );
    write(root, "usr/local/bin/app", &go_binary);
    fs_err::set_permissions(
        root.join("usr/local/bin/app"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // The same bytes without an execute bit are not inspected; a non-ELF executable neither.
    write(root, "usr/share/app.data", &go_binary);
    write(root, "usr/local/bin/script", "#!/bin/sh\necho hi\n");
    fs_err::set_permissions(
        root.join("usr/local/bin/script"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // Nothing under /proc, /sys or /dev is looked at.
    write(
        root,
        "proc/1/root/app/node_modules/ghost/package.json",
        r#"{"name": "ghost", "version": "1"}"#,
    );
    symlink(root, "lib", "usr/lib");
}

fn summary(packages: &[Package]) -> Vec<String> {
    packages
        .iter()
        .map(|p| format!("{} {} {} {}", p.kind.as_str(), p.name, p.version, p.source))
        .collect()
}

#[test]
fn scan_finds_every_kind_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    fixture_tree(dir.path());
    let packages = scan(&RootFs::Dir(dir.path().to_owned())).unwrap();
    assert_eq!(
        summary(&packages),
        [
            "deb base-files 12.4+deb12u5 /var/lib/dpkg/status.d/base-files",
            "deb bash 5.2.15-2+b8 /var/lib/dpkg/status",
            "deb bsdutils 1:2.38.1-5+deb12u3 /var/lib/dpkg/status",
            "deb libc6 2.36-9+deb12u14 /var/lib/dpkg/status",
            "deb tzdata 2025b-0+deb12u2 /var/lib/dpkg/status",
            "python PyYAML 5.4.1 /usr/lib/python3/dist-packages/PyYAML-5.4.1.egg-info/PKG-INFO",
            "python distro-info 1.5 /usr/lib/python3/dist-packages/distro_info-1.5.egg-info",
            "python requests 2.31.0 /opt/venv/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
            "python six 1.16.0 /usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            "npm @types/node 20.8.0 /app/node_modules/@types/node/package.json",
            "npm left-pad 1.3.0 /app/node_modules/left-pad/package.json",
            "npm nested 2.0.0 /app/node_modules/left-pad/node_modules/nested/package.json",
            "go example.com/app v1.0.0 /usr/local/bin/app",
            "go github.com/google/uuid v1.3.0 /usr/local/bin/app",
            "go stdlib go1.21.5 /usr/local/bin/app",
        ]
    );
    let license = |name: &str| {
        packages
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.license.clone())
    };
    assert_eq!(license("tzdata").as_deref(), Some("public-domain"));
    assert!(license("bsdutils").unwrap().ends_with("AND MIT AND Zlib"));
    assert_eq!(license("libc6"), None, "no copyright file");
    // The distro came from /etc/os-release, a symlink into /usr/lib.
    assert!(
        packages[0].purl.ends_with("?arch=amd64&distro=debian-12"),
        "{}",
        packages[0].purl
    );
    // Deterministic: the same tree gives the same list.
    assert_eq!(scan(&RootFs::Dir(dir.path().to_owned())).unwrap(), packages);
}

#[test]
fn scan_of_an_alpine_root_and_of_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "etc/os-release",
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\n",
    );
    write(dir.path(), "lib/apk/db/installed", fixture("apk-installed"));
    let packages = scan(&RootFs::Dir(dir.path().to_owned())).unwrap();
    assert_eq!(packages.len(), 6);
    assert!(packages.iter().all(|p| p.kind == PackageKind::Apk));
    assert_eq!(packages[0].name, "busybox", "sorted by name");
    let empty = tempfile::tempdir().unwrap();
    assert!(
        scan(&RootFs::Dir(empty.path().to_owned()))
            .unwrap()
            .is_empty()
    );
    // A missing root is an error naming it.
    let missing = empty.path().join("missing");
    let error = scan(&RootFs::Layers(vec![missing.clone()]))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&missing.display().to_string()), "{error}");
}

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root for mknod")]
fn scan_of_layers_sees_only_what_the_top_shows() {
    kiln_test::require_root();
    let (_dir, lower, upper) = two_layers();
    fixture_tree(&lower);
    // The upper layer upgrades a package in dpkg's status, deletes a Python package and
    // the Go binary, and adds an npm package.
    write(
        &upper,
        "var/lib/dpkg/status",
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b9\n",
    );
    whiteout(&upper, "usr/lib/python3/dist-packages/six-1.16.0.dist-info");
    whiteout(&upper, "usr/local/bin/app");
    write(
        &upper,
        "app/node_modules/added/package.json",
        r#"{"name": "added", "version": "1.0.0"}"#,
    );
    let packages = scan(&RootFs::Layers(vec![lower, upper])).unwrap();
    let found = summary(&packages);
    assert!(
        found.contains(&"deb bash 5.2.15-2+b9 /var/lib/dpkg/status".to_owned()),
        "{found:#?}"
    );
    assert!(!found.iter().any(|p| p.contains("libc6")), "{found:#?}");
    assert!(!found.iter().any(|p| p.contains(" six ")), "{found:#?}");
    assert!(!found.iter().any(|p| p.starts_with("go ")), "{found:#?}");
    assert!(found.contains(&"npm added 1.0.0 /app/node_modules/added/package.json".to_owned()));
    assert!(
        found.contains(&"npm left-pad 1.3.0 /app/node_modules/left-pad/package.json".to_owned())
    );
}

#[test]
fn sort_and_dedup_is_deterministic() {
    let package = |kind, name: &str, version: &str, source: &str| Package {
        kind,
        name: name.into(),
        version: version.into(),
        purl: format!("pkg:x/{name}@{version}"),
        license: None,
        supplier: None,
        source: source.into(),
    };
    let mut packages = vec![
        package(PackageKind::Npm, "a", "1", "/b"),
        package(PackageKind::Deb, "z", "1", "/s"),
        package(PackageKind::Npm, "a", "1", "/a"),
        package(PackageKind::Deb, "z", "1", "/s"),
    ];
    sort_and_dedup(&mut packages);
    assert_eq!(
        summary(&packages),
        ["deb z 1 /s", "npm a 1 /a", "npm a 1 /b"]
    );
}

// ---- SPDX --------------------------------------------------------------------------------

fn spdx_packages() -> Vec<Package> {
    let dir = tempfile::tempdir().unwrap();
    fixture_tree(dir.path());
    let mut packages = scan(&RootFs::Dir(dir.path().to_owned())).unwrap();
    // Same name and version twice (two venvs), and an expression with its own LicenseRef.
    let mut twin = packages
        .iter()
        .find(|p| p.name == "requests")
        .unwrap()
        .clone();
    twin.source = "/opt/other/requests-2.31.0.dist-info/METADATA".into();
    packages.push(twin);
    let mut custom = packages[0].clone();
    custom.name = "custom".into();
    custom.license = Some("MIT AND LicenseRef-Proprietary".into());
    packages.push(custom);
    packages
}

fn spdx_document(packages: &[Package]) -> Vec<u8> {
    spdx_json(&SpdxInput {
        name: "example.com/app:latest",
        namespace: "https://kiln.invalid/spdx/example.com/app-0123456789abcdef",
        created: "2023-11-14T22:13:20Z",
        creator_tool: "kiln-0.1.0",
        packages,
    })
}

#[test]
fn spdx_document_validates_against_the_spdx_2_3_schema() {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas/spdx-schema-2.3.json");
    let schema: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let packages = spdx_packages();
    let bytes = spdx_document(&packages);
    let document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The schema is lax about what it does not type; check the rest of the contract.
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    assert_eq!(document["dataLicense"], "CC0-1.0");
    assert_eq!(document["creationInfo"]["creators"][0], "Tool: kiln-0.1.0");
    let spdx_packages = document["packages"].as_array().unwrap();
    assert_eq!(spdx_packages.len(), packages.len() + 1);
    let mut ids = std::collections::HashSet::new();
    for package in spdx_packages {
        let id = package["SPDXID"].as_str().unwrap();
        let rest = id.strip_prefix("SPDXRef-").unwrap();
        assert!(
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
        assert!(ids.insert(id.to_owned()), "duplicate {id}");
        let declared = package["licenseDeclared"].as_str().unwrap();
        assert!(
            declared == "NOASSERTION"
                || declared.starts_with("LicenseRef-")
                || spdx::is_valid_expression(declared),
            "{declared}"
        );
        assert!(
            package["supplier"] == "NOASSERTION"
                || package["supplier"]
                    .as_str()
                    .unwrap()
                    .starts_with("Person: "),
        );
    }
    let relationships = document["relationships"].as_array().unwrap();
    assert_eq!(relationships.len(), packages.len() + 1);
    assert_eq!(relationships[0]["relationshipType"], "DESCRIBES");
    assert_eq!(relationships[0]["spdxElementId"], "SPDXRef-DOCUMENT");
    let root = relationships[0]["relatedSpdxElement"].as_str().unwrap();
    for relationship in &relationships[1..] {
        assert_eq!(relationship["spdxElementId"], root);
        assert_eq!(relationship["relationshipType"], "CONTAINS");
        assert!(ids.contains(relationship["relatedSpdxElement"].as_str().unwrap()));
    }
}

#[test]
fn spdx_document_is_byte_identical_with_sorted_keys() {
    let packages = spdx_packages();
    let first = spdx_document(&packages);
    assert_eq!(first, spdx_document(&packages));
    let text = String::from_utf8(first).unwrap();
    // Top-level keys in sorted order.
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  \""))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert!(keys.contains(&"hasExtractedLicensingInfos"));
}

#[test]
fn spdx_licences_become_expressions_references_or_noassertion() {
    let packages = spdx_packages();
    let document: serde_json::Value = serde_json::from_slice(&spdx_document(&packages)).unwrap();
    let declared = |name: &str| {
        document["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["licenseDeclared"].as_str().unwrap().to_owned())
            .unwrap()
    };
    // No licence (dpkg), a valid expression, a deprecated-free id, free text, an npm note,
    // and an expression with its own LicenseRef.
    assert_eq!(declared("libc6"), "NOASSERTION");
    assert_eq!(declared("six"), "MIT");
    assert_eq!(declared("left-pad"), "WTFPL");
    assert_eq!(declared("requests"), "LicenseRef-Apache-2.0");
    assert_eq!(declared("nested"), "LicenseRef-SEE-LICENSE-IN-LICENSE.md");
    assert_eq!(declared("tzdata"), "LicenseRef-public-domain");
    assert_eq!(
        declared("bsdutils"),
        "(BSD-3-Clause OR GPL-2.0-only) AND BSD-3-Clause AND GPL-2.0-only AND MIT AND Zlib"
    );
    assert_eq!(
        declared("custom"),
        "LicenseRef-MIT-AND-LicenseRef-Proprietary"
    );
    let extracted = document["hasExtractedLicensingInfos"].as_array().unwrap();
    let texts: Vec<(&str, &str)> = extracted
        .iter()
        .map(|e| {
            (
                e["licenseId"].as_str().unwrap(),
                e["extractedText"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("LicenseRef-Apache-2.0", "Apache 2.0"),
            (
                "LicenseRef-MIT-AND-LicenseRef-Proprietary",
                "MIT AND LicenseRef-Proprietary"
            ),
            (
                "LicenseRef-SEE-LICENSE-IN-LICENSE.md",
                "SEE LICENSE IN LICENSE.md"
            ),
            ("LicenseRef-public-domain", "public-domain"),
        ]
    );
    // Suppliers.
    let supplier = |name: &str| {
        document["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["supplier"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(
        supplier("libc6"),
        "Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
    );
    assert_eq!(supplier("six"), "Person: Benjamin Peterson");
    assert_eq!(supplier("left-pad"), "NOASSERTION");
    assert!(spdx::is_valid_expression("GPL-2.0+"));
    assert!(spdx::is_valid_expression("(MIT) OR (Apache-2.0)"));
    assert!(spdx::is_valid_expression(
        "GPL-2.0-or-later WITH Classpath-exception-2.0"
    ));
    assert!(!spdx::is_valid_expression("Apache 2.0"));
    assert!(!spdx::is_valid_expression("BSD"));
}
