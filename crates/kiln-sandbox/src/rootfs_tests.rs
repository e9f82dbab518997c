use std::path::PathBuf;

use super::*;
use crate::syscalls::RecordingSyscalls;

fn plan(network: Network, mounts: Vec<ExtraMount>) -> RootfsPlan {
    RootfsPlan {
        merged: "/w/merged".into(),
        source: RootSource::PreparedOverlay,
        hosts_file: "/w/hosts".into(),
        hostname_file: "/w/hostname".into(),
        resolv_file: "/w/resolv.conf".into(),
        hostname: "box".into(),
        network,
        mounts,
    }
}

fn image_with(paths: &[(&str, FileKind)]) -> RecordingSyscalls {
    let mut existing: Vec<(PathBuf, FileKind)> = paths
        .iter()
        .map(|(p, k)| (PathBuf::from("/w/merged").join(p), *k))
        .collect();
    for node in DEVICE_NODES {
        existing.push((PathBuf::from("/dev").join(node), FileKind::Other));
    }
    RecordingSyscalls::with_existing(existing)
}

fn summary(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            Op::UnshareMountNamespace => "unshare mnt".to_owned(),
            Op::MakeRootPrivate => "rprivate /".to_owned(),
            Op::AttachPreparedOverlay { target } => format!("attach overlay {}", target.display()),
            Op::MountOverlay { target, .. } => format!("overlay {}", target.display()),
            Op::Bind {
                source,
                target,
                is_recursive,
            } => format!(
                "bind{} {} {}",
                if *is_recursive { " -r" } else { "" },
                source.display(),
                target.display()
            ),
            Op::MountFs { fstype, target, .. } => format!("{fstype} {}", target.display()),
            Op::MakeReadonly {
                target,
                is_recursive,
            } => {
                format!(
                    "ro{} {}",
                    if *is_recursive { " -r" } else { "" },
                    target.display()
                )
            }
            Op::Mkdir { path, mode } => format!("mkdir {} {mode:o}", path.display()),
            Op::CreateFile { path, .. } => format!("touch {}", path.display()),
            Op::Symlink { target, link } => format!("ln {} {target}", link.display()),
            Op::PivotRoot { new_root } => format!("pivot {}", new_root.display()),
            Op::SetHostname(name) => format!("hostname {name}"),
            Op::LoopbackUp => "lo up".to_owned(),
        })
        .collect()
}

#[test]
fn full_image_mount_sequence() {
    let mut sys = image_with(&[
        ("proc", FileKind::Directory),
        ("dev", FileKind::Directory),
        ("sys", FileKind::Directory),
        ("tmp", FileKind::Directory),
        ("etc", FileKind::Directory),
        ("etc/hosts", FileKind::File),
        ("etc/resolv.conf", FileKind::File),
        ("etc/hostname", FileKind::File),
    ]);
    let mut stubs = Vec::new();
    setup_rootfs(&mut sys, &plan(Network::Host, Vec::new()), &mut stubs).unwrap();
    assert!(stubs.is_empty(), "{stubs:?}");
    let expected = [
        "unshare mnt",
        "rprivate /",
        "attach overlay /w/merged",
        "proc /w/merged/proc",
        "tmpfs /w/merged/dev",
        "touch /w/merged/dev/null",
        "bind /dev/null /w/merged/dev/null",
        "touch /w/merged/dev/zero",
        "bind /dev/zero /w/merged/dev/zero",
        "touch /w/merged/dev/full",
        "bind /dev/full /w/merged/dev/full",
        "touch /w/merged/dev/random",
        "bind /dev/random /w/merged/dev/random",
        "touch /w/merged/dev/urandom",
        "bind /dev/urandom /w/merged/dev/urandom",
        "touch /w/merged/dev/tty",
        "bind /dev/tty /w/merged/dev/tty",
        "mkdir /w/merged/dev/pts 755",
        "devpts /w/merged/dev/pts",
        "mkdir /w/merged/dev/shm 1777",
        "tmpfs /w/merged/dev/shm",
        "ln /w/merged/dev/fd /proc/self/fd",
        "ln /w/merged/dev/stdin /proc/self/fd/0",
        "ln /w/merged/dev/stdout /proc/self/fd/1",
        "ln /w/merged/dev/stderr /proc/self/fd/2",
        "ln /w/merged/dev/ptmx pts/ptmx",
        "bind -r /sys /w/merged/sys",
        "ro -r /w/merged/sys",
        "bind /w/hosts /w/merged/etc/hosts",
        "bind /w/resolv.conf /w/merged/etc/resolv.conf",
        "bind /w/hostname /w/merged/etc/hostname",
        "pivot /w/merged",
        "hostname box",
    ];
    assert_eq!(summary(&sys.ops), expected);
}

#[test]
fn empty_image_gets_recorded_stubs_and_private_network() {
    let mut sys = image_with(&[]);
    let mut stubs = Vec::new();
    let mounts = vec![
        ExtraMount::Tmpfs {
            target: "/cache".into(),
        },
        ExtraMount::Bind {
            source: "/nonexistent-host-file".into(),
            target: "/run/secret".into(),
            is_readonly: true,
        },
    ];
    setup_rootfs(&mut sys, &plan(Network::None, mounts), &mut stubs).unwrap();
    let ops = summary(&sys.ops);
    assert_eq!(ops[3], "lo up");
    assert!(ops.contains(&"sysfs /w/merged/sys".to_owned()), "{ops:#?}");
    assert!(ops.contains(&"tmpfs /w/merged/tmp".to_owned()), "{ops:#?}");
    assert!(
        ops.contains(&"tmpfs /w/merged/cache".to_owned()),
        "{ops:#?}"
    );
    assert!(
        ops.contains(&"ro -r /w/merged/run/secret".to_owned()),
        "{ops:#?}"
    );
    let stub_paths: Vec<String> = stubs.iter().map(|s| s.path.display().to_string()).collect();
    assert_eq!(
        stub_paths,
        [
            "proc",
            "dev",
            "sys",
            "tmp",
            "etc",
            "etc/hosts",
            "etc/resolv.conf",
            "etc/hostname",
            "cache",
            "run",
            "run/secret"
        ]
    );
    assert!(
        stubs
            .iter()
            .find(|s| s.path == std::path::Path::new("etc/hosts"))
            .is_some_and(|s| !s.is_dir)
    );
}

#[test]
fn symlinked_resolv_conf_is_not_mounted_over() {
    let mut sys = image_with(&[
        ("etc", FileKind::Directory),
        ("etc/resolv.conf", FileKind::Symlink),
    ]);
    let mut stubs = Vec::new();
    setup_rootfs(&mut sys, &plan(Network::Host, Vec::new()), &mut stubs).unwrap();
    assert!(
        !summary(&sys.ops)
            .iter()
            .any(|op| op.contains("merged/etc/resolv.conf")),
        "a bind over an image symlink would follow it on the host"
    );
}
