//! Layer codec end to end: directory → layer → extraction gives the same tree; outputs are
//! deterministic (twice, and whatever the thread count); independent tools (GNU tar, gzip,
//! zstd) accept them; overlay upperdirs become whiteouts; file lists get their parents.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::num::NonZeroUsize;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_oci::{
    Compression, DiffTar, Digest, EntrySource, ExtractOptions, FileListTar, LayerDigests,
    LayerEntry, LayerError, LayerWriter, OverlayXattrs, WhiteoutPolicy, extract_layer,
};
use rustix::fs::{Timespec, Timestamps, XattrFlags};

use kiln_test::is_root;

/// `security.capability` v2 granting cap_net_raw (bit 13) permitted.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with every kind of entry the codec must carry.
fn make_tree(root: &Path) {
    fs_err::create_dir_all(root.join("a/b")).unwrap();
    fs_err::create_dir_all(root.join("bin")).unwrap();
    fs_err::create_dir(root.join("empty")).unwrap();
    fs_err::write(root.join("a/hello"), b"hello\n").unwrap();
    fs_err::write(root.join("a/b/exec"), b"#!/bin/sh\necho hi\n").unwrap();
    fs_err::set_permissions(root.join("a/b/exec"), fs::Permissions::from_mode(0o750)).unwrap();
    fs_err::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o700)).unwrap();
    fs_err::write(root.join("bin/su"), vec![0x7f; 3000]).unwrap();
    fs_err::set_permissions(root.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs_err::write(root.join("bin/ping"), b"ping").unwrap();
    fs_err::os::unix::fs::symlink("hello", root.join("a/link")).unwrap();
    fs_err::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
    fs_err::write(root.join("a/hard1"), b"shared inode").unwrap();
    fs_err::hard_link(root.join("a/hard1"), root.join("a/hard2")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let long_dir = root.join("x".repeat(90));
    fs_err::create_dir(&long_dir).unwrap();
    fs_err::write(long_dir.join("y".repeat(120)), b"long").unwrap();
    fs_err::write(root.join("ünïcode.txt"), b"utf8").unwrap();
    fs_err::write(
        root.join("big.bin"),
        (0..600_000u32)
            .flat_map(u32::to_le_bytes)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    rustix::fs::setxattr(
        root.join("a/hello"),
        "user.kiln",
        b"value\0binary",
        XattrFlags::empty(),
    )
    .unwrap();
    if is_root() {
        rustix::fs::setxattr(
            root.join("bin/ping"),
            "security.capability",
            &CAP_NET_RAW,
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            root.join("a/hello"),
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1001)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            root.join("big.bin"),
            Some(rustix::fs::Uid::from_raw(3_000_000)),
            Some(rustix::fs::Gid::from_raw(70_000)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            root.join("a/link"),
            Some(rustix::fs::Uid::from_raw(5)),
            Some(rustix::fs::Gid::from_raw(6)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    // mtimes last, deepest first (children change their parent's mtime).
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in paths.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + i64::try_from(i).unwrap() * 1000);
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Vec<u8>,
    link: Option<PathBuf>,
    xattrs: Vec<(String, Vec<u8>)>,
    /// Index of the first path with the same inode (hard links).
    inode_group: String,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let meta = fs_err::symlink_metadata(entry.path()).unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            for name in xattr_names(entry.path()) {
                let mut buf = vec![0u8; 4096];
                let n = rustix::fs::lgetxattr(entry.path(), name.as_str(), &mut buf[..]).unwrap();
                buf.truncate(n);
                xattrs.push((name, buf));
            }
        }
        let group = inodes
            .entry(meta.ino())
            .or_insert_with(|| rel.display().to_string())
            .clone();
        out.insert(
            rel,
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                content: if ft.is_file() {
                    fs_err::read(entry.path()).unwrap()
                } else {
                    Vec::new()
                },
                link: fs_err::read_link(entry.path()).ok(),
                xattrs,
                inode_group: if ft.is_dir() { String::new() } else { group },
            },
        );
    }
    out
}

fn xattr_names(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut buf[..]).unwrap_or(0);
    let mut names: Vec<String> = buf[..n]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| n != "security.selinux")
        .collect();
    names.sort();
    names
}

fn export(dir: &Path, compression: Compression, threads: usize) -> (Vec<u8>, LayerDigests) {
    let mut w =
        LayerWriter::with_threads(Vec::new(), compression, NonZeroUsize::new(threads).unwrap())
            .unwrap();
    DiffTar::new(dir).write_to(&mut w).unwrap();
    w.finish().unwrap()
}

fn decompressed(blob: &[u8]) -> Vec<u8> {
    let (_, mut r) = kiln_oci::decompress(blob).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn round_trip_gives_the_same_tree_for_every_compression() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let expected = snapshot(src.path());
    for compression in [Compression::gzip(), Compression::zstd(), Compression::None] {
        let (blob, digests) = export(src.path(), compression, 2);
        assert_eq!(digests.digest, Digest::sha256_of(&blob));
        assert_eq!(digests.size, blob.len() as u64);
        let tar = decompressed(&blob);
        assert_eq!(digests.diff_id.0, Digest::sha256_of(&tar));
        assert_eq!(digests.uncompressed_size, tar.len() as u64);

        let dst = tempfile::tempdir().unwrap();
        let stats = extract_layer(&blob[..], dst.path(), &ExtractOptions::new()).unwrap();
        assert_eq!(
            stats.diff_id, digests.diff_id,
            "extraction computes the same diffID"
        );
        assert_eq!(stats.compression, compression.kind());
        assert_eq!(stats.hardlinks, 1);
        let got = snapshot(dst.path());
        let mut expected = expected.clone_without_owners_unless_root();
        let mut got_cmp = got.clone_without_owners_unless_root();
        assert_eq!(got_cmp.len(), expected.len());
        for (path, node) in &expected {
            assert_eq!(
                got_cmp.get(path),
                Some(node),
                "{path:?} differs after a {compression:?} round trip"
            );
        }
        expected.clear();
        got_cmp.clear();
    }
}

trait OwnerAgnostic {
    fn clone_without_owners_unless_root(&self) -> BTreeMap<PathBuf, Node>;
}

impl OwnerAgnostic for BTreeMap<PathBuf, Node> {
    fn clone_without_owners_unless_root(&self) -> BTreeMap<PathBuf, Node> {
        self.iter()
            .map(|(p, n)| {
                let (uid, gid) = if is_root() { (n.uid, n.gid) } else { (0, 0) };
                let xattrs = n
                    .xattrs
                    .iter()
                    .filter(|(k, _)| is_root() || k.starts_with("user."))
                    .cloned()
                    .collect();
                (
                    p.clone(),
                    Node {
                        kind: n.kind,
                        mode: n.mode,
                        uid,
                        gid,
                        mtime: n.mtime,
                        content: n.content.clone(),
                        link: n.link.clone(),
                        xattrs,
                        inode_group: n.inode_group.clone(),
                    },
                )
            })
            .collect()
    }
}

#[test]
fn the_same_tree_gives_the_same_bytes_twice_and_for_any_thread_count() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    // A second tree built the same way at another path, at another time.
    let src2 = tempfile::tempdir().unwrap();
    make_tree(src2.path());
    for compression in [Compression::gzip(), Compression::zstd(), Compression::None] {
        let (one, d1) = export(src.path(), compression, 1);
        let (again, d2) = export(src2.path(), compression, 1);
        assert_eq!(d1, d2, "{compression:?}: same tree, same digests");
        assert!(one == again);
        for threads in [2, 4] {
            let (many, d) = export(src.path(), compression, threads);
            assert_eq!(
                d.digest, d1.digest,
                "{compression:?} with {threads} threads"
            );
            assert!(many == one);
        }
    }
}

#[test]
fn gzip_blocks_are_thread_independent_on_multi_block_input() {
    // > 4 gzip blocks of mixed content, so several workers really take part.
    let src = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    let mut x = 1u64;
    while data.len() < 3 << 20 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        if x.is_multiple_of(3) {
            data.extend_from_slice(&x.to_le_bytes());
        } else {
            data.extend_from_slice(b"compressible text ");
        }
    }
    fs_err::write(src.path().join("data"), &data).unwrap();
    let (one, _) = export(src.path(), Compression::Gzip { level: 6 }, 1);
    let (two, _) = export(src.path(), Compression::Gzip { level: 6 }, 2);
    let (four, _) = export(src.path(), Compression::Gzip { level: 6 }, 4);
    assert!(one == two && two == four);
    let (z1, _) = export(src.path(), Compression::zstd(), 1);
    let (z2, _) = export(src.path(), Compression::zstd(), 2);
    assert!(z1 == z2);
}

#[test]
fn source_date_epoch_clamps_newer_mtimes_only() {
    let src = tempfile::tempdir().unwrap();
    fs_err::write(src.path().join("old"), b"o").unwrap();
    fs_err::write(src.path().join("new"), b"n").unwrap();
    set_mtime(&src.path().join("old"), 1_000_000_000);
    set_mtime(&src.path().join("new"), 1_800_000_000);
    let mut tar = Vec::new();
    DiffTar::new(src.path())
        .source_date_epoch(1_600_000_000)
        .write_to(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mtimes: BTreeMap<String, u64> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().mtime().unwrap(),
            )
        })
        .collect();
    assert_eq!(mtimes["old"], 1_000_000_000);
    assert_eq!(mtimes["new"], 1_600_000_000);
}

#[test]
fn entries_are_sorted_with_parents_first_and_excludes_apply() {
    let src = tempfile::tempdir().unwrap();
    for p in ["b/z", "b/a", "a-c", "a/x", "proc/self", "run/secrets/token"] {
        let path = src.path().join(p);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, b"").unwrap();
    }
    let mut tar = Vec::new();
    DiffTar::new(src.path())
        .exclude(|p| p == Path::new("proc") || p == Path::new("run/secrets"))
        .write_to(&mut tar)
        .unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a/", "a/x", "a-c", "b/", "b/a", "b/z", "run/"]);
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gnu_tar_gzip_and_zstd_accept_the_layers() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let work = tempfile::tempdir().unwrap();
    for (compression, file, check) in [
        (Compression::None, "layer.tar", None),
        (Compression::gzip(), "layer.tar.gz", Some("gzip")),
        (Compression::zstd(), "layer.tar.zst", Some("zstd")),
    ] {
        let (blob, _) = export(src.path(), compression, 2);
        let path = work.path().join(file);
        fs_err::write(&path, &blob).unwrap();
        if let Some(tool) = check {
            run(Command::new(tool).arg("-t").arg(&path));
        }
    }
    let listing = run(Command::new("tar")
        .arg("-tvf")
        .arg(work.path().join("layer.tar")));
    assert!(listing.contains("a/hard2 link to a/hard1"), "{listing}");
    assert!(listing.contains("a/link -> hello"), "{listing}");
    assert!(listing.contains(&"y".repeat(120)), "{listing}");
    // GNU tar extracts the gzip layer into the same tree (contents, modes, links, xattrs).
    let out = work.path().join("gnu");
    fs_err::create_dir(&out).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpzf"])
        .arg(work.path().join("layer.tar.gz"))
        .arg("-C")
        .arg(&out));
    let expected = snapshot(src.path()).clone_without_owners_unless_root();
    let got = snapshot(&out).clone_without_owners_unless_root();
    for (path, node) in &expected {
        let other = got
            .get(path)
            .unwrap_or_else(|| panic!("GNU tar did not produce {path:?}"));
        assert_eq!(
            (
                other.kind,
                other.mode,
                &other.content,
                &other.link,
                &other.inode_group
            ),
            (
                node.kind,
                node.mode,
                &node.content,
                &node.link,
                &node.inode_group
            ),
            "{path:?}"
        );
        if node.kind != "dir" {
            assert_eq!(other.mtime, node.mtime, "{path:?}");
        }
        assert_eq!(other.xattrs, node.xattrs, "{path:?}");
    }
}

#[test]
fn file_list_layers_add_parents_sort_and_apply_overrides() {
    let disk = tempfile::tempdir().unwrap();
    fs_err::write(disk.path().join("app.py"), b"print('hi')\n").unwrap();
    fs_err::set_permissions(
        disk.path().join("app.py"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut tar = Vec::new();
    let mut chowned = LayerEntry::new(
        "/srv/app/app.py",
        EntrySource::Disk(disk.path().join("app.py")),
    );
    chowned.uid = Some(1000);
    chowned.gid = Some(1000);
    chowned.mode = Some(0o644);
    chowned.mtime = Some(2_000_000_000);
    FileListTar::new()
        .entry(LayerEntry::new(
            "srv/app/z.txt",
            EntrySource::Bytes(b"z".to_vec()),
        ))
        .entry(chowned)
        .entry(LayerEntry::new(
            "srv/app/current",
            EntrySource::Symlink("app.py".into()),
        ))
        .entry(LayerEntry::new(
            "srv/app/zz-again",
            EntrySource::Hardlink("/srv/app/z.txt".into()),
        ))
        .parent_dirs(0o750, 7, 8, Some(100))
        .source_date_epoch(1_700_000_000)
        .write_to(&mut tar)
        .unwrap();
    let entries: Vec<(String, u32, u64, u64, u64)> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.mtime().unwrap(),
                h.size().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("srv/".to_owned(), 0o750, 7, 100, 0),
            ("srv/app/".to_owned(), 0o750, 7, 100, 0),
            ("srv/app/app.py".to_owned(), 0o644, 1000, 1_700_000_000, 12),
            ("srv/app/current".to_owned(), 0o777, 0, 1_700_000_000, 0),
            ("srv/app/z.txt".to_owned(), 0o644, 0, 1_700_000_000, 1),
            ("srv/app/zz-again".to_owned(), 0o644, 0, 1_700_000_000, 0),
        ]
    );
    let dst = tempfile::tempdir().unwrap();
    extract_layer(&tar[..], dst.path(), &ExtractOptions::new()).unwrap();
    assert_eq!(
        fs_err::read(dst.path().join("srv/app/current")).unwrap(),
        b"print('hi')\n"
    );
    assert_eq!(
        fs_err::metadata(dst.path().join("srv/app/zz-again"))
            .unwrap()
            .ino(),
        fs_err::metadata(dst.path().join("srv/app/z.txt"))
            .unwrap()
            .ino()
    );
}

#[test]
fn file_list_rejects_duplicates_and_dotdot() {
    let dup = FileListTar::new()
        .entry(LayerEntry::new("a/b", EntrySource::Directory))
        .entry(LayerEntry::new("/a/b/", EntrySource::Directory))
        .write_to(Vec::new());
    assert!(
        matches!(dup, Err(LayerError::DuplicateEntry { .. })),
        "{dup:?}"
    );
    let up = FileListTar::new()
        .entry(LayerEntry::new("a/../../etc", EntrySource::Directory))
        .write_to(Vec::new());
    assert!(
        matches!(up, Err(LayerError::InvalidEntryPath { .. })),
        "{up:?}"
    );
    let forward = FileListTar::new()
        .entry(LayerEntry::new("a-link", EntrySource::Hardlink("b".into())))
        .entry(LayerEntry::new("b", EntrySource::Bytes(b"b".to_vec())))
        .write_to(Vec::new());
    assert!(
        matches!(forward, Err(LayerError::HardlinkTarget { .. })),
        "{forward:?}"
    );
}

/// Builds a tar with the `tar` crate, entries in the given order (like foreign tools do).
fn foreign_tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        if let Some(d) = data {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, *d).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, path, &[][..]).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn whiteouts_and_opaque_dirs_apply_in_any_order() {
    let root = tempfile::tempdir().unwrap();
    let lower = foreign_tar(&[
        ("d/", None),
        ("d/x", Some(b"x")),
        ("d/sub/", None),
        ("d/sub/deep", Some(b"deep")),
        ("d/other/", None),
        ("d/other/lower", Some(b"lower")),
        ("f", Some(b"f")),
        ("g", Some(b"g")),
    ]);
    extract_layer(&lower[..], root.path(), &ExtractOptions::new()).unwrap();
    // The opaque marker comes AFTER the directory's new entries, as some tools write it.
    let upper = foreign_tar(&[
        ("d/", None),
        ("d/new", Some(b"new")),
        ("d/sub/", None),
        ("d/sub/fresh", Some(b"fresh")),
        // No `d/other/` entry: its parent is implied and must survive the opaque marker.
        ("d/other/new", Some(b"new")),
        ("d/.wh..wh..opq", Some(b"")),
        (".wh.f", Some(b"")),
    ]);
    let stats = extract_layer(&upper[..], root.path(), &ExtractOptions::new()).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (1, 1));
    let mut names: Vec<String> = walkdir::WalkDir::new(root.path())
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(root.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "d",
            "d/new",
            "d/other",
            "d/other/new",
            "d/sub",
            "d/sub/fresh",
            "g"
        ]
    );
}

/// `WhiteoutPolicy::Overlay` keeps a layer's whiteouts in overlayfs form in the same single
/// pass: character devices 0/0 and the opaque xattr, the directory mtimes those changes would
/// bump restored, and a whiteout below a symlink counted as skipped rather than followed.
#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root for trusted.* xattrs")]
fn overlay_whiteout_policy_keeps_whiteouts_as_overlay_entries_needs_root() {
    kiln_test::require_root();
    let root = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_mtime(1_000_000);
        h.set_size(0);
        if let Some(link) = link {
            h.set_link_name(link).unwrap();
        }
        b.append_data(&mut h, path, &[][..]).unwrap();
    };
    add("etc/", tar::EntryType::Directory, None);
    add("etc/.wh.gone", tar::EntryType::Regular, None);
    add("opt/", tar::EntryType::Directory, None);
    add("opt/new", tar::EntryType::Regular, None);
    add("opt/.wh..wh..opq", tar::EntryType::Regular, None);
    add("link", tar::EntryType::Symlink, Some("etc"));
    add("link/.wh.escaped", tar::EntryType::Regular, None);
    let layer = b.into_inner().unwrap();
    let options = ExtractOptions::new().whiteouts(WhiteoutPolicy::Overlay(OverlayXattrs::Trusted));
    let stats = extract_layer(&layer[..], root.path(), &options).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (2, 1));
    assert_eq!(stats.whiteouts_skipped, 1, "the whiteout below the symlink");

    let gone = fs_err::symlink_metadata(root.path().join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(!root.path().join("etc/.wh.gone").exists());
    assert!(!root.path().join("etc/escaped").exists());
    assert_eq!(
        fs_err::metadata(root.path().join("etc")).unwrap().mtime(),
        1_000_000,
        "the directory keeps its tar mtime"
    );
    let mut value = [0u8; 4];
    let n = rustix::fs::lgetxattr(
        root.path().join("opt"),
        "trusted.overlay.opaque",
        &mut value[..],
    )
    .unwrap();
    assert_eq!(&value[..n], b"y");
    assert!(root.path().join("opt/new").is_file());

    // The default policy applies them instead: nothing of overlay's is left.
    let applied = tempfile::tempdir().unwrap();
    extract_layer(&layer[..], applied.path(), &ExtractOptions::new()).unwrap();
    assert!(!applied.path().join("etc/gone").exists());
    assert!(
        rustix::fs::lgetxattr(
            applied.path().join("opt"),
            "trusted.overlay.opaque",
            &mut value[..]
        )
        .is_err()
    );
}

/// Unmounts and removes the overlay on drop, even when the test fails.
struct Overlay {
    merged: PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay),
    ignore = "needs root and overlayfs to mount an overlay"
)]
fn overlay_upperdir_whiteouts_become_layer_whiteouts_needs_root() {
    kiln_test::require_overlay();
    let tmp = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| {
        let p = tmp.path().join(d);
        fs_err::create_dir(&p).unwrap();
        p
    });
    fs_err::create_dir_all(lower.join("d/sub")).unwrap();
    fs_err::write(lower.join("d/old"), b"old").unwrap();
    fs_err::write(lower.join("d/sub/deeper"), b"deeper").unwrap();
    fs_err::write(lower.join("gone"), b"bye").unwrap();
    fs_err::write(lower.join("kept"), b"kept").unwrap();
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            lower.display(),
            upper.display(),
            work.display()
        ))
        .arg(&merged)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mounting overlayfs at {} failed ({status}) although the kernel lists it",
        merged.display()
    );
    let guard = Overlay {
        merged: merged.clone(),
    };
    fs_err::remove_file(merged.join("gone")).unwrap();
    fs_err::remove_dir_all(merged.join("d")).unwrap();
    fs_err::create_dir(merged.join("d")).unwrap();
    fs_err::write(merged.join("d/new"), b"new").unwrap();
    fs_err::write(merged.join("added"), b"added").unwrap();
    let merged_view = snapshot(&merged);
    drop(guard);

    let (blob, _) = export(&upper, Compression::gzip(), 2);
    let names: Vec<String> = tar::Archive::new(&decompressed(&blob)[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    // Whiteouts sit where the deleted name sorts (containerd's differ order); the opaque
    // marker right after its directory.
    assert_eq!(
        names,
        ["added", "d/", "d/.wh..wh..opq", "d/new", ".wh.gone"]
    );

    // lower + layer == what the overlay showed.
    let rootfs = tempfile::tempdir().unwrap();
    let (lower_blob, _) = export(&lower, Compression::None, 1);
    extract_layer(&lower_blob[..], rootfs.path(), &ExtractOptions::new()).unwrap();
    extract_layer(&blob[..], rootfs.path(), &ExtractOptions::new()).unwrap();
    let got = snapshot(rootfs.path());
    let summary = |m: &BTreeMap<PathBuf, Node>| -> Vec<(PathBuf, &'static str, Vec<u8>)> {
        m.iter()
            .map(|(p, n)| (p.clone(), n.kind, n.content.clone()))
            .collect()
    };
    assert_eq!(summary(&got), summary(&merged_view));
}
