//! The malicious-tar corpus: hostile archives generated here, each extracted into
//! `<sentinel>/root` with both path resolvers (kernel `openat2` and the userspace walk).
//! Every case asserts that nothing outside the root changed (the sentinel's listing, contents
//! and link counts are compared before and after) and that the archive was refused or
//! neutralized the way the case expects.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_oci::{DevicePolicy, ExtractError, ExtractErrorKind, ExtractOptions, extract_layer};

use kiln_test::{RawTar, Sentinel};

/// Extracts `tar` with both resolvers (each into a fresh sentinel) and checks containment;
/// `check` sees the result and the root of each run.
fn run_case(
    name: &str,
    tar: &[u8],
    options: &ExtractOptions,
    check: impl Fn(&Result<kiln_oci::ExtractStats, ExtractError>, &Sentinel),
) {
    run_case_with(name, |_| tar.to_vec(), options, check);
}

/// [`run_case`] for an archive that depends on the sentinel (one that names its `outside`
/// directory): `make_tar` builds it for each fresh sentinel.
fn run_case_with(
    name: &str,
    make_tar: impl Fn(&Sentinel) -> Vec<u8>,
    options: &ExtractOptions,
    check: impl Fn(&Result<kiln_oci::ExtractStats, ExtractError>, &Sentinel),
) {
    for userspace in [false, true] {
        let sentinel = Sentinel::new();
        let tar = make_tar(&sentinel);
        let before = sentinel.listing();
        let etc_before = fs_err::read_dir("/etc").unwrap().count();
        let options = options
            .clone()
            .force_userspace_resolver(userspace)
            .layer_name(name);
        let result = extract_layer(&tar[..], &sentinel.root(), &options);
        assert_eq!(
            sentinel.listing(),
            before,
            "case {name} (userspace resolver: {userspace}) wrote outside the root: {result:?}"
        );
        assert_eq!(
            fs_err::read_dir("/etc").unwrap().count(),
            etc_before,
            "case {name} touched /etc"
        );
        check(&result, &sentinel);
    }
}

fn opts() -> ExtractOptions {
    ExtractOptions::new().chown(false)
}

/// Asserts that an extraction failed with an error whose kind matches the pattern, e.g.
/// `expect_kind!(r, ExtractErrorKind::TooLarge { .. })`; the pattern names itself in the message.
macro_rules! expect_kind {
    ($result:expr, $kind:pat) => {
        expect_kind($result, |k| matches!(k, $kind), stringify!($kind))
    };
}

/// The function behind [`expect_kind!`]: `pred` tells the expected kind, `what` names it.
fn expect_kind(
    result: &Result<kiln_oci::ExtractStats, ExtractError>,
    pred: impl Fn(&ExtractErrorKind) -> bool,
    what: &str,
) {
    match result {
        Err(e) => assert!(pred(&e.kind), "expected {what}, got {e}"),
        Ok(stats) => panic!("expected {what}, extraction succeeded: {stats:?}"),
    }
}

#[test]
fn dotdot_escape_is_refused() {
    let tar = RawTar::default().file("../escaped", b"x").finish();
    run_case("dotdot", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::PathEscapes);
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.entry.as_deref(), Some("../escaped"));
        assert!(
            e.to_string().contains("dotdot"),
            "error names the layer: {e}"
        );
    });
}

#[test]
fn nested_dotdot_escape_is_refused() {
    let tar = RawTar::default()
        .file("a/b/../../../escaped", b"x")
        .finish();
    run_case("nested-dotdot", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::PathEscapes);
    });
}

#[test]
fn absolute_path_is_neutralized_into_the_root() {
    let tar = RawTar::default().file("/abs/file", b"x").finish();
    run_case("absolute", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert_eq!(fs_err::read(s.root().join("abs/file")).unwrap(), b"x");
    });
}

#[test]
fn symlink_to_etc_then_write_through_it_stays_inside() {
    // Inside the root, `/etc` is the symlink itself: resolving `etc/x` loops, nothing is
    // written anywhere. With a real `etc/` below the link target, the write lands there.
    let name = format!("kiln-pwned-{}", std::process::id());
    let tar = RawTar::default()
        .symlink("etc", "/etc")
        .file(&format!("etc/{name}"), b"pwned")
        .finish();
    run_case("symlink-etc", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::BadParent(_));
        assert!(!Path::new("/etc").join(&name).exists());
    });
    let tar = RawTar::default()
        .dir("real-etc")
        .symlink("etc", "/real-etc")
        .file(&format!("etc/{name}"), b"pwned")
        .finish();
    run_case("symlink-etc-2", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert!(!Path::new("/etc").join(&name).exists());
        assert_eq!(
            fs_err::read(s.root().join("real-etc").join(&name)).unwrap(),
            b"pwned"
        );
    });
}

#[test]
fn absolute_symlink_to_the_sentinel_resolves_inside_the_root() {
    let tar = |sentinel: &Sentinel| {
        RawTar::default()
            .symlink("out", sentinel.outside().to_str().unwrap())
            .file("out/pwned", b"pwned")
            .finish()
    };
    run_case_with("absolute-symlink", tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        let inside = s.root().join(s.outside().strip_prefix("/").unwrap());
        assert_eq!(fs_err::read(inside.join("pwned")).unwrap(), b"pwned");
    });
}

#[test]
fn relative_symlink_climbing_out_is_clamped_at_the_root() {
    let tar = RawTar::default()
        .symlink("up", "../../../..")
        .file("up/pwned", b"x")
        .finish();
    run_case("symlink-up", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert_eq!(fs_err::read(s.root().join("pwned")).unwrap(), b"x");
    });
}

#[test]
fn symlink_chain_escape_stays_inside() {
    let tar = RawTar::default()
        .dir("d")
        .symlink("d/a", "../b")
        .symlink("b", "c/../../..")
        .dir("c")
        .symlink("c/x", "/../../outside")
        .file("d/a/chained", b"1")
        .file("c/x/chained2", b"2")
        .finish();
    run_case("symlink-chain", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert_eq!(fs_err::read(s.root().join("chained")).unwrap(), b"1");
        assert_eq!(
            fs_err::read(s.root().join("outside/chained2")).unwrap(),
            b"2"
        );
    });
}

#[test]
fn symlink_loop_is_an_error_not_a_hang() {
    let tar = RawTar::default()
        .symlink("l1", "l2")
        .symlink("l2", "l1")
        .file("l1/x", b"x")
        .finish();
    run_case("symlink-loop", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::BadParent(_));
    });
}

#[test]
fn hardlink_to_etc_passwd_is_refused() {
    let nlink = fs_err::metadata("/etc/passwd").map(|m| m.nlink()).ok();
    let tar = RawTar::default().hardlink("passwd", "/etc/passwd").finish();
    run_case("hardlink-passwd", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::HardlinkTargetMissing { .. });
    });
    assert_eq!(
        fs_err::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
        nlink
    );
}

#[test]
fn hardlink_with_dotdot_is_refused() {
    let tar = RawTar::default()
        .hardlink("h", "../outside/secret")
        .finish();
    run_case("hardlink-dotdot", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::HardlinkEscapes { .. });
    });
}

#[test]
fn hardlink_through_a_symlinked_dir_cannot_reach_outside() {
    let tar = |sentinel: &Sentinel| {
        RawTar::default()
            .symlink("sd", sentinel.outside().to_str().unwrap())
            .hardlink("h", "sd/secret")
            .finish()
    };
    run_case_with("hardlink-symlinked-dir", tar, &opts(), |r, s| {
        expect_kind!(r, ExtractErrorKind::HardlinkTargetMissing { .. });
        let secret = fs_err::metadata(s.outside().join("secret")).unwrap();
        assert_eq!(secret.nlink(), 1);
    });
}

#[test]
fn hardlink_pax_linkpath_escape_is_refused() {
    let tar = RawTar::default()
        .pax(&[("linkpath", b"x/../../../outside/secret")])
        .hardlink("h", "innocent")
        .finish();
    run_case("pax-linkpath", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::HardlinkEscapes { .. });
    });
}

#[test]
fn hardlink_to_a_directory_is_refused() {
    let tar = RawTar::default().dir("d").hardlink("h", "d").finish();
    run_case("hardlink-dir", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::HardlinkTargetMissing { .. });
    });
}

#[test]
fn whiteout_with_dotdot_is_contained() {
    // `.wh.../../x` cleans to `x`: an ordinary file inside the root, nothing deleted.
    let tar = RawTar::default().file(".wh.../../x", b"x").finish();
    run_case("whiteout-dotdot", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert!(s.root().join("x").exists());
    });
    let tar = RawTar::default().file("../.wh.secret", b"").finish();
    run_case("whiteout-escape", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::PathEscapes);
    });
}

#[test]
fn whiteout_of_dot_is_refused() {
    let tar = RawTar::default()
        .dir("d")
        .file("d/keep", b"k")
        .file("d/.wh..", b"")
        .finish();
    run_case("whiteout-dot", &tar, &opts(), |r, s| {
        expect_kind!(r, ExtractErrorKind::InvalidName(_));
        assert!(s.root().join("d/keep").exists());
    });
}

#[test]
fn whiteout_through_a_symlink_cannot_delete_outside() {
    let tar = |sentinel: &Sentinel| {
        RawTar::default()
            .symlink("l", sentinel.outside().to_str().unwrap())
            .file("l/.wh.secret", b"")
            .symlink("up", "../outside")
            .file("up/.wh.secret", b"")
            .finish()
    };
    run_case_with("whiteout-symlink", tar, &opts(), |r, _| {
        r.as_ref().unwrap();
    });
}

#[test]
fn opaque_marker_through_a_symlink_cannot_clear_outside() {
    let tar = |sentinel: &Sentinel| {
        RawTar::default()
            .symlink("l", sentinel.outside().to_str().unwrap())
            .file("l/.wh..wh..opq", b"")
            .symlink("rel", "../..")
            .file("rel/.wh..wh..opq", b"")
            .finish()
    };
    run_case_with("opaque-symlink", tar, &opts(), |_, s| {
        assert!(s.outside().join("secret").exists());
    });
}

#[test]
fn huge_size_header_is_refused_before_reading() {
    // base-256 size field: 2^62 bytes.
    let mut field = [0u8; 12];
    field[0] = 0x80;
    field[4] = 0x40;
    let mut tar = RawTar::default();
    tar.header_with_size_field(b"huge", b'0', &field, b"", 0o644, (0, 0));
    let tar = tar.finish();
    run_case("huge-size", &tar, &opts(), |r, s| {
        expect_kind!(r, ExtractErrorKind::TooLarge { .. });
        assert!(!s.root().join("huge").exists());
    });
    let tar = RawTar::default().file("big", &vec![7u8; 4096]).finish();
    run_case("entry-limit", &tar, &opts().max_entry_size(1024), |r, _| {
        expect_kind!(r, ExtractErrorKind::TooLarge { .. });
    });
}

#[test]
fn huge_pax_header_is_refused() {
    let tar = RawTar::default()
        .pax(&[("comment", &vec![b'a'; 2 << 20])])
        .file("f", b"x")
        .finish();
    run_case("huge-pax", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::TooLarge { .. });
    });
}

#[test]
fn device_nodes_follow_the_policy() {
    let tar = RawTar::default().device("dev/mem", 1, 1).finish();
    run_case(
        "device-refused",
        &tar,
        &opts().devices(DevicePolicy::Refuse),
        |r, s| {
            expect_kind!(r, ExtractErrorKind::DeviceRefused);
            assert!(!s.root().join("dev/mem").exists());
        },
    );
    run_case(
        "device-skipped",
        &tar,
        &opts().devices(DevicePolicy::Skip),
        |r, s| {
            assert_eq!(r.as_ref().unwrap().devices_skipped, 1);
            assert!(!s.root().join("dev/mem").exists());
        },
    );
}

#[test]
fn setuid_bits_are_stripped_when_asked() {
    let tar = RawTar::default()
        .file_mode("bin/su", b"#!", 0o6755)
        .finish();
    run_case(
        "setuid-stripped",
        &tar,
        &opts().strip_setid(true),
        |r, s| {
            r.as_ref().unwrap();
            let mode = fs_err::metadata(s.root().join("bin/su"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o755);
        },
    );
    run_case("setuid-kept", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        let mode = fs_err::metadata(s.root().join("bin/su"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o6755);
    });
}

#[test]
fn nul_in_a_pax_path_is_refused() {
    let tar = RawTar::default()
        .pax(&[("path", b"a\0/../../escape")])
        .file("innocent", b"x")
        .finish();
    run_case("nul-name", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::InvalidName(_));
    });
}

#[test]
fn very_long_names_are_contained() {
    // 120 nested 48-byte directories: ~5.8 kB, beyond PATH_MAX; walked component by component.
    let components: Vec<String> = (0..120)
        .map(|i| format!("dir{i:03}-{}", "x".repeat(40)))
        .collect();
    let deep = format!("{}/file", components.join("/"));
    let tar = RawTar::default()
        .pax(&[("path", deep.as_bytes())])
        .file("innocent", b"x")
        .finish();
    run_case("deep-name", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        let mut dir = rustix::fs::open(
            s.root(),
            rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        for c in &components {
            dir = rustix::fs::openat(
                &dir,
                c.as_str(),
                rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
        }
        rustix::fs::statat(&dir, "file", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
    });
    // A 300-byte component cannot exist on Linux: an error naming the entry.
    let long = "n".repeat(300);
    let tar = RawTar::default()
        .pax(&[("path", long.as_bytes())])
        .file("innocent", b"y")
        .finish();
    run_case("long-component", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::Io { .. });
        assert_eq!(
            r.as_ref().unwrap_err().entry.as_deref(),
            Some(long.as_str())
        );
    });
}

#[test]
fn duplicate_entries_last_one_wins() {
    let tar = RawTar::default()
        .file("f", b"one")
        .file("f", b"two")
        .dir("d")
        .file("d/child", b"c")
        .file("d", b"now a file")
        .file("e", b"a file first")
        .dir("e")
        .file("e/x", b"x")
        .finish();
    run_case("duplicates", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert_eq!(fs_err::read(s.root().join("f")).unwrap(), b"two");
        assert_eq!(fs_err::read(s.root().join("d")).unwrap(), b"now a file");
        assert_eq!(fs_err::read(s.root().join("e/x")).unwrap(), b"x");
    });
}

#[test]
fn bad_checksum_and_bad_pax_records_are_corrupt() {
    let mut tar = RawTar::default().file("f", b"x").finish();
    tar[0] = b'g'; // name changed, checksum not updated
    run_case("bad-checksum", &tar, &opts(), |r, s| {
        expect_kind!(r, ExtractErrorKind::Corrupt { .. });
        assert!(!s.root().join("g").exists());
    });
    // A record claiming more bytes than the header holds.
    let mut tar = RawTar::default();
    let records = b"999 path=../escape\n";
    tar.header(b"PaxHeaders/x", b'x', records.len() as u64, b"", 0o644);
    tar.data(records);
    let tar = tar.file("innocent", b"x").finish();
    run_case("bad-pax-length", &tar, &opts(), |r, s| {
        expect_kind!(r, ExtractErrorKind::Corrupt { .. });
        assert!(!s.root().join("innocent").exists());
    });
}

#[test]
fn dir_replaced_by_symlink_then_file_under_it_stays_inside() {
    let tar = |sentinel: &Sentinel| {
        RawTar::default()
            .dir("d")
            .file("d/a", b"a")
            .symlink("d", sentinel.outside().to_str().unwrap())
            .file("d/pwned", b"p")
            .finish()
    };
    run_case_with("dir-then-symlink", tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        let inside = s.root().join(s.outside().strip_prefix("/").unwrap());
        assert_eq!(fs_err::read(inside.join("pwned")).unwrap(), b"p");
    });
}

#[test]
fn pax_path_override_escape_is_refused() {
    let tar = RawTar::default()
        .pax(&[("path", b"../pax-escape")])
        .file("innocent", b"x")
        .finish();
    run_case("pax-path", &tar, &opts(), |r, s| {
        expect_kind!(r, ExtractErrorKind::PathEscapes);
        assert!(!s.root().join("innocent").exists());
    });
}

#[test]
fn gnu_longname_escape_is_refused() {
    let tar = RawTar::default()
        .gnu_longname(b"../../gnu-escape")
        .file("innocent", b"x")
        .finish();
    run_case("gnu-longname", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::PathEscapes);
    });
}

#[test]
fn file_under_a_file_is_refused() {
    let tar = RawTar::default()
        .file("f", b"x")
        .file("f/child", b"y")
        .finish();
    run_case("file-under-file", &tar, &opts(), |r, _| {
        expect_kind!(r, ExtractErrorKind::BadParent(_));
    });
}

#[test]
fn truncated_archive_is_corrupt() {
    let mut tar = RawTar::default().file("f", &[1u8; 2000]).finish();
    tar.truncate(1024);
    run_case("truncated", &tar, &opts(), |r, _| {
        assert!(r.is_err());
    });
}

#[test]
fn debian_var_run_symlink_resolves_inside_the_root() {
    let tar = RawTar::default()
        .dir("run")
        .dir("var")
        .symlink("var/run", "/run")
        .file("var/run/utmp", b"u")
        .finish();
    run_case("var-run", &tar, &opts(), |r, s| {
        r.as_ref().unwrap();
        assert_eq!(fs_err::read(s.root().join("run/utmp")).unwrap(), b"u");
        assert_eq!(
            fs_err::read_link(s.root().join("var/run")).unwrap(),
            Path::new("/run")
        );
    });
}
