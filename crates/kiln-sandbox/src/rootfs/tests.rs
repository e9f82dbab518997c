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
        security: Security::Sandbox,
        shm_size: None,
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
            Op::MakeNodev {
                target,
                is_recursive,
            } => format!(
                "nodev{} {}",
                if *is_recursive { " -r" } else { "" },
                target.display()
            ),
            Op::Chown { path, uid, gid } => format!("chown {uid}:{gid} {}", path.display()),
            Op::Mkdir { path, mode } => format!("mkdir {} {mode:o}", path.display()),
            Op::CreateFile { path, .. } => format!("touch {}", path.display()),
            Op::Symlink { target, link } => format!("ln {} {target}", link.display()),
            Op::PivotRoot { new_root } => format!("pivot {}", new_root.display()),
            Op::SetHostname(name) => format!("hostname {name}"),
            Op::LoopbackUp => "lo up".to_owned(),
            Op::MakeCharDevice {
                path, major, minor, ..
            } => format!("mknod {} c {major}:{minor}", path.display()),
            Op::CopyIn { source, target } => {
                format!("copy {} {}", source.display(), target.display())
            }
            Op::Rename { from, to } => format!("mv {} {}", from.display(), to.display()),
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
            size: Some(1 << 20),
        },
        ExtraMount::Bind {
            source: "/nonexistent-host-file".into(),
            target: "/run/secret".into(),
            is_readonly: true,
            owner: Some((1000, 1001)),
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
    // `--mount=type=tmpfs,size=…` bounds the tmpfs; the sandbox's own /tmp has no size.
    let tmpfs_data = |target: &str| {
        sys.ops.iter().find_map(|op| match op {
            Op::MountFs {
                fstype,
                target: t,
                data,
                ..
            } if fstype == "tmpfs" && t == Path::new(target) => Some(data.clone()),
            _ => None,
        })
    };
    assert_eq!(
        tmpfs_data("/w/merged/cache").as_deref(),
        Some("mode=1777,size=1048576")
    );
    assert_eq!(tmpfs_data("/w/merged/tmp").as_deref(), Some("mode=1777"));
    assert!(
        ops.contains(&"ro -r /w/merged/run/secret".to_owned()),
        "{ops:#?}"
    );
    // The owner is set inside the namespace, before the mount is made read-only.
    let position = |needle: &str| ops.iter().position(|op| op == needle).unwrap();
    assert_eq!(
        position("chown 1000:1001 /w/merged/run/secret") + 1,
        position("ro -r /w/merged/run/secret")
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

fn host_proc_and_sys() -> RecordingSyscalls {
    image_with(&[
        ("proc", FileKind::Directory),
        ("proc/sys", FileKind::Directory),
        ("proc/sysrq-trigger", FileKind::File),
        ("proc/kcore", FileKind::File),
        ("proc/keys", FileKind::File),
        ("proc/acpi", FileKind::Directory),
        ("proc/timer_list", FileKind::Symlink),
        ("sys", FileKind::Directory),
        ("sys/firmware", FileKind::Directory),
        ("tmp", FileKind::Directory),
    ])
}

#[test]
fn sandbox_security_masks_and_protects_proc_and_sys() {
    let mut sys = host_proc_and_sys();
    let mut stubs = Vec::new();
    setup_rootfs(&mut sys, &plan(Network::Host, Vec::new()), &mut stubs).unwrap();
    let ops = summary(&sys.ops);
    let after_sys = ops
        .iter()
        .position(|op| op == "ro -r /w/merged/sys")
        .unwrap();
    let protections: Vec<&str> = ops[after_sys + 1..]
        .iter()
        .map(String::as_str)
        .take_while(|op| !op.contains("/etc"))
        .collect();
    assert_eq!(
        protections,
        [
            "bind -r /w/merged/proc/sys /w/merged/proc/sys",
            "ro -r /w/merged/proc/sys",
            "bind -r /w/merged/proc/sysrq-trigger /w/merged/proc/sysrq-trigger",
            "ro -r /w/merged/proc/sysrq-trigger",
            "tmpfs /w/merged/proc/acpi",
            "ro /w/merged/proc/acpi",
            "bind /dev/null /w/merged/proc/kcore",
            "bind /dev/null /w/merged/proc/keys",
            // proc/timer_list is a symlink here: never mounted over.
            "tmpfs /w/merged/sys/firmware",
            "ro /w/merged/sys/firmware",
        ]
    );
}

#[test]
fn insecure_security_leaves_proc_and_sys_alone() {
    let mut sys = host_proc_and_sys();
    let mut stubs = Vec::new();
    let mut insecure = plan(Network::Host, Vec::new());
    insecure.security = Security::Insecure;
    setup_rootfs(&mut sys, &insecure, &mut stubs).unwrap();
    let ops = summary(&sys.ops);
    assert!(
        !ops.iter()
            .any(|op| op.contains("/proc/sys") || op.contains("kcore") || op.contains("firmware")),
        "{ops:#?}"
    );
}

#[test]
fn bind_mounts_and_copied_roots_are_nodev() {
    let mut sys = image_with(&[("proc", FileKind::Directory), ("tmp", FileKind::Directory)]);
    let mut stubs = Vec::new();
    let mut copied = plan(
        Network::Host,
        vec![ExtraMount::Bind {
            source: "/host/cache".into(),
            target: "/cache".into(),
            is_readonly: false,
            owner: None,
        }],
    );
    copied.source = RootSource::CopiedRootfs("/w/rootfs".into());
    setup_rootfs(&mut sys, &copied, &mut stubs).unwrap();
    let ops = summary(&sys.ops);
    let position = |needle: &str| ops.iter().position(|op| op == needle).unwrap();
    assert_eq!(
        position("nodev -r /w/merged"),
        position("bind -r /w/rootfs /w/merged") + 1
    );
    assert_eq!(
        position("nodev -r /w/merged/cache"),
        position("bind -r /host/cache /w/merged/cache") + 1
    );
}

fn chroot_plan(mounts: Vec<ExtraMount>) -> RootfsPlan {
    RootfsPlan {
        merged: "/w/merged".into(),
        source: RootSource::CopiedRootfs("/w/merged".into()),
        hosts_file: "/w/hosts".into(),
        hostname_file: "/w/hostname".into(),
        resolv_file: "/w/resolv.conf".into(),
        hostname: "kiln".into(),
        network: Network::Host,
        mounts,
        security: Security::Sandbox,
        shm_size: None,
    }
}

#[test]
fn chroot_without_mounts_copies_in_and_masks_every_stand_in() {
    let mut sys = image_with(&[("etc", FileKind::Directory), ("tmp", FileKind::Directory)]);
    let mounts = vec![
        ExtraMount::Bind {
            source: "/store/cache/ab".into(),
            target: "/root/.cache".into(),
            is_readonly: false,
            owner: Some((1000, 1000)),
        },
        ExtraMount::Bind {
            source: "/w/extra".into(),
            target: "/run/secrets/token".into(),
            is_readonly: true,
            owner: None,
        },
        ExtraMount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    let mut out = ChrootSetup::default();
    setup_chroot(
        &mut sys,
        &chroot_plan(mounts),
        false,
        Path::new("/w/saved"),
        &mut out,
    )
    .unwrap();
    let ops = summary(&sys.ops);
    assert!(
        !ops.iter().any(|op| op.starts_with("bind")
            || op.starts_with("tmpfs")
            || op.starts_with("proc")
            || op.starts_with("unshare")),
        "no mount without mount rights: {ops:#?}"
    );
    for expected in [
        "mkdir /w/merged/proc 555",
        "mknod /w/merged/dev/null c 1:3",
        "mknod /w/merged/dev/urandom c 1:9",
        "ln /w/merged/dev/fd /proc/self/fd",
        "copy /w/hosts /w/merged/etc/hosts",
        "copy /store/cache/ab /w/merged/root/.cache",
        "chown 1000:1000 /w/merged/root/.cache",
        "copy /w/extra /w/merged/run/secrets/token",
        "mkdir /w/merged/scratch 1777",
    ] {
        assert!(ops.iter().any(|op| op == expected), "{expected}: {ops:#?}");
    }
    // The image's own /tmp stays part of the layer; every stand-in for a mount does not.
    let masked: Vec<String> = out.masked.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        masked,
        [
            "proc",
            "sys",
            "dev",
            "etc/hosts",
            "etc/resolv.conf",
            "etc/hostname",
            "root/.cache",
            "run/secrets/token",
            "scratch"
        ]
    );
    assert_eq!(
        out.copy_back,
        [(
            PathBuf::from("root/.cache"),
            PathBuf::from("/store/cache/ab")
        )]
    );
    assert!(out.limits.iter().any(|l| l.contains("empty /proc")));
    assert!(out.limits.iter().any(|l| l.contains("tmpfs size")));
}

#[test]
fn chroot_without_mounts_refuses_a_socket_and_with_mounts_binds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mounts = vec![ExtraMount::Bind {
        source: socket.clone(),
        target: "/run/buildkit/ssh_agent.0".into(),
        is_readonly: true,
        owner: Some((0, 0)),
    }];
    let setup = |can_mount| {
        let mut sys = image_with(&[("etc", FileKind::Directory)]);
        let mut out = ChrootSetup::default();
        let result = setup_chroot(
            &mut sys,
            &chroot_plan(mounts.clone()),
            can_mount,
            Path::new("/w/saved"),
            &mut out,
        );
        (result, summary(&sys.ops))
    };
    // A copy of a socket is no socket: an error naming the target, not a missing file.
    let (result, _) = setup(false);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("/run/buildkit/ssh_agent.0") && err.contains("--isolation=namespaces"),
        "{err}"
    );
    let (result, ops) = setup(true);
    result.unwrap();
    let bind = format!(
        "bind -r {} /w/merged/run/buildkit/ssh_agent.0",
        socket.display()
    );
    assert!(ops.contains(&bind), "{bind}: {ops:#?}");
}

#[test]
fn chroot_with_mounts_binds_the_containers_proc_and_sys() {
    let mut sys = image_with(&[("etc", FileKind::Directory)]);
    let mut out = ChrootSetup::default();
    setup_chroot(
        &mut sys,
        &chroot_plan(Vec::new()),
        true,
        Path::new("/w/saved"),
        &mut out,
    )
    .unwrap();
    let ops = summary(&sys.ops);
    assert_eq!(
        ops[..4],
        [
            "rprivate /",
            "bind -r /w/merged /w/merged",
            "nodev -r /w/merged",
            "mkdir /w/merged/proc 555",
        ]
    );
    for expected in [
        "bind -r /proc /w/merged/proc",
        "bind -r /sys /w/merged/sys",
        "ro -r /w/merged/sys",
        "tmpfs /w/merged/dev",
        "tmpfs /w/merged/tmp",
        "bind /w/hosts /w/merged/etc/hosts",
    ] {
        assert!(ops.iter().any(|op| op == expected), "{expected}: {ops:#?}");
    }
    assert!(out.limits.is_empty(), "{:?}", out.limits);
}

#[test]
fn resolving_in_the_root_never_leaves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs_err::create_dir_all(root.join("usr/run")).unwrap();
    fs_err::os::unix::fs::symlink("/usr/run", root.join("run")).unwrap();
    fs_err::os::unix::fs::symlink("../../../../..", root.join("usr/up")).unwrap();
    fs_err::os::unix::fs::symlink("/etc", root.join("usr/etc")).unwrap();
    let resolve = |target: &str| resolve_in_root(root, Path::new(target)).unwrap();
    assert_eq!(
        resolve("/run/secrets/s"),
        PathBuf::from("usr/run/secrets/s")
    );
    assert_eq!(resolve("/usr/up/etc/passwd"), PathBuf::from("etc/passwd"));
    assert_eq!(resolve("/usr/etc/hosts"), PathBuf::from("etc/hosts"));
    // The final component is not followed.
    assert_eq!(resolve("/run"), PathBuf::from("run"));
    fs_err::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    assert!(resolve_in_root(root, Path::new("/loop/x")).is_err());
}
