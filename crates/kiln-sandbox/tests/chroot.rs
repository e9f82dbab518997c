//! Chroot isolation end to end on a busybox rootfs (needs root, overlayfs and busybox): the
//! command runs as under namespaces, mounts are bound or copied in and out, leftovers die,
//! what cannot be honoured is refused, the rootfs is kept for the next step, and a file
//! opened for writing is in the layer as overlayfs would have it.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use kiln_sandbox::{
    ChrootReuse, ExitStatus, ExtraMount, Isolation, Network, RunSpec, SandboxError,
};

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_runs_commands_like_namespaces_needs_root() {
    require_all();
    for can_mount in [true, false] {
        let sandbox = chroot_sandbox(can_mount);
        let fx = fixture();
        let before = mountinfo(&fx);
        let mut command = chroot_spec(
            &fx,
            "id; pwd; echo \"$GREETING\"; echo hidden > /dev/null; cat /dev/null; \
             grep -c . /etc/hosts; grep CapBnd /proc/self/status 2>/dev/null || echo no-proc; echo err >&2",
        );
        command.user = "app".into();
        command.workdir = "/work/dir".into();
        command.env = vec!["GREETING=hello there".into()];
        let (result, out) = run_on(&sandbox, &command);
        let outcome = result.unwrap();
        assert!(outcome.status.is_success(), "{}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines[0], "uid=1000(app) gid=1000(app) groups=2000(extra)");
        assert_eq!(lines[1], "/work/dir");
        assert_eq!(lines[2], "hello there");
        assert_eq!(lines[3], "2", "the generated /etc/hosts");
        if can_mount {
            // A non-root user has an empty bounding set under both isolations; root's is
            // checked below.
            assert!(lines[4].starts_with("CapBnd:"), "{lines:?}");
            assert!(outcome.notices.is_empty(), "{:?}", outcome.notices);
        } else {
            assert_eq!(lines[4], "no-proc");
            assert!(
                outcome.notices.iter().any(|n| n.contains("empty /proc")),
                "{:?}",
                outcome.notices
            );
        }
        assert_eq!(out.stderr, "err\n");
        // The working directory is the layer's; nothing else is.
        let upper = tree(&fx.upper);
        assert!(upper.contains_key("work/dir"), "{upper:?}");
        for name in ["dev", "proc", "sys", "tmp", "etc/hosts", "etc/hostname"] {
            assert!(
                !upper.contains_key(name),
                "{name} leaked into the layer: {upper:?}"
            );
        }
        assert_eq!(before, mountinfo(&fx), "mounts leaked");
        assert!(
            !fx.work.join("rootfs").exists(),
            "the chroot copy was left behind"
        );

        // Exit codes and exec errors are the namespace sandbox's.
        let fx = fixture();
        let (result, _) = run_on(&sandbox, &chroot_spec(&fx, "exit 3"));
        assert_eq!(result.unwrap().status, ExitStatus::Exited(3));
        let mut missing = chroot_spec(&fx, "");
        missing.argv = vec!["no-such-cmd".into()];
        let fx = fixture();
        missing.upper = fx.upper.clone();
        missing.work = fx.work.clone();
        match run_on(&sandbox, &missing).0 {
            Err(SandboxError::Exec { code, .. }) => assert_eq!(code, 127),
            other => panic!("expected an exec error, got {other:?}"),
        }
    }
    // Root keeps Docker's capabilities less SYS_CHROOT (18) and MKNOD (27).
    let fx = fixture();
    let (result, out) = run_on(
        &chroot_sandbox(true),
        &chroot_spec(&fx, "grep CapBnd /proc/self/status"),
    );
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    let bounding = u64::from_str_radix(out.stdout.trim().rsplit('\t').next().unwrap(), 16).unwrap();
    assert_eq!(bounding & (1 << 18), 0, "CAP_SYS_CHROOT kept: {bounding:x}");
    assert_eq!(bounding & (1 << 27), 0, "CAP_MKNOD kept: {bounding:x}");
    assert_ne!(bounding & 1, 0, "CAP_CHOWN dropped: {bounding:x}");
    // The container's /proc is bound, but the helper (our uid, no pid namespace between us)
    // cannot be read or entered through it: it holds capabilities the command does not
    // (ptrace access needs a superset), and it is not dumpable.
    let fx = fixture();
    let (result, out) = run_on(
        &chroot_sandbox(true),
        &chroot_spec(
            &fx,
            "ls /proc/$PPID/root/ >/dev/null 2>&1 && echo escaped; \
             cat /proc/$PPID/environ >/dev/null 2>&1 && echo read; echo checked",
        ),
    );
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "checked\n");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_mounts_and_leftovers_needs_root() {
    require_all();
    for (can_mount, sleep) in [(true, 1240), (false, 1241)] {
        let sandbox = chroot_sandbox(can_mount);
        let fx = fixture();
        let cache = fx.tmp.path().join("cache");
        let secret = fx.tmp.path().join("secret");
        fs_err::create_dir_all(&cache).unwrap();
        fs_err::write(cache.join("old"), "old").unwrap();
        fs_err::write(&secret, "s3cret").unwrap();
        let mut command = chroot_spec(
            &fx,
            &format!(
                "cat /cache/old; rm /cache/old; echo new > /cache/new; cat /run/secrets/s; \
                 echo scratch > /scratch/file; (sleep {sleep} &); setsid sleep {sleep} & echo done"
            ),
        );
        command.mounts = vec![
            ExtraMount::Bind {
                source: cache.clone(),
                target: "/cache".into(),
                is_readonly: false,
                owner: Some((1000, 1000)),
            },
            ExtraMount::Bind {
                source: secret.clone(),
                target: "/run/secrets/s".into(),
                is_readonly: true,
                owner: Some((0, 0)),
            },
            ExtraMount::Tmpfs {
                target: "/scratch".into(),
                size: None,
            },
        ];
        let (result, out) = run_on(&sandbox, &command);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout, "olds3cretdone\n");
        // The cache's writes reached the host, as through a bind mount, with its owner.
        assert!(!cache.join("old").exists());
        assert_eq!(fs_err::read_to_string(cache.join("new")).unwrap(), "new\n");
        assert_eq!(fs_err::metadata(&cache).unwrap().uid(), 1000);
        assert_eq!(fs_err::read_to_string(&secret).unwrap(), "s3cret");
        let upper = tree(&fx.upper);
        for name in ["cache", "run/secrets/s", "run/secrets", "scratch"] {
            assert!(
                !upper.contains_key(name),
                "{name} leaked into the layer: {upper:?}"
            );
        }
        assert_eq!(
            sandbox_sleepers(sleep),
            0,
            "a RUN's leftover processes survived"
        );
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_refuses_what_it_cannot_honour_needs_root() {
    require_all();
    let fx = fixture();
    let mut command = chroot_spec(&fx, "true");
    command.network = Network::None;
    match run(&command).0 {
        Err(SandboxError::Setup { message }) => {
            assert!(message.contains("--network=none"), "{message}");
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    // A symlink in the image never takes the helper's writes outside the rootfs.
    let fx = fixture();
    let outside = fx.tmp.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::os::unix::fs::symlink(&outside, fx.lower.join("run")).unwrap();
    let mut command = chroot_spec(&fx, "cat /run/secrets/s");
    let secret = fx.tmp.path().join("secret");
    fs_err::write(&secret, "s3cret").unwrap();
    command.mounts = vec![ExtraMount::Bind {
        source: secret,
        target: "/run/secrets/s".into(),
        is_readonly: true,
        owner: None,
    }];
    let (result, out) = run_on(&chroot_sandbox(false), &command);
    assert!(result.unwrap().status.is_success(), "{}", out.stderr);
    assert_eq!(out.stdout, "s3cret");
    assert_eq!(
        fs_err::read_dir(&outside).unwrap().count(),
        0,
        "the helper followed the image's symlink out of the rootfs"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn chroot_keeps_its_rootfs_for_the_next_step_needs_root() {
    require_all();
    for can_mount in [true, false] {
        let sandbox = chroot_sandbox(can_mount);
        let fx = fixture();
        let secret = fx.tmp.path().join("secret");
        let cache = fx.tmp.path().join("cache");
        fs_err::write(&secret, "s3cret").unwrap();
        fs_err::create_dir_all(&cache).unwrap();
        // The image has its own /etc/hostname and a directory where the cache goes: both
        // are hidden during the run and back afterwards.
        fs_err::write(fx.lower.join("etc/hostname"), "image\n").unwrap();
        fs_err::create_dir_all(fx.lower.join("cache")).unwrap();
        fs_err::write(fx.lower.join("cache/image-file"), "i").unwrap();
        let mut first = chroot_spec(
            &fx,
            &format!("{MUTATIONS} && echo c > /cache/new && echo t > /tmp/t && cat /etc/hostname"),
        );
        first.chroot_keep = true;
        first.mounts = vec![
            ExtraMount::Bind {
                source: secret.clone(),
                target: "/run/secrets/s".into(),
                is_readonly: true,
                owner: None,
            },
            ExtraMount::Bind {
                source: cache.clone(),
                target: "/cache".into(),
                is_readonly: false,
                owner: None,
            },
            ExtraMount::Tmpfs {
                target: "/scratch".into(),
                size: None,
            },
        ];
        let (result, out) = run_on(&sandbox, &first);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout, "kiln-sandbox\n", "the generated /etc/hostname");
        let kept = fx.work.join("rootfs");
        assert!(
            kept.is_dir(),
            "can_mount={can_mount}: the rootfs was not kept"
        );
        // The kept rootfs is exactly the lower with the layer applied: no stand-in, no mount
        // content, the image's own files back.
        let applied = fx.tmp.path().join("applied");
        apply_diff(&fx.lower, &fx.upper, &applied);
        let mut want = tree(&applied);
        let mut got = tree(&kept);
        want.retain(|k, _| !k.is_empty());
        got.retain(|k, _| !k.is_empty());
        assert_eq!(got, want, "can_mount={can_mount}");
        assert_eq!(
            fs_err::read_to_string(kept.join("etc/hostname")).unwrap(),
            "image\n"
        );
        assert_eq!(fs_err::read_to_string(cache.join("new")).unwrap(), "c\n");

        // The next step starts from it: nothing is copied, and its diff is its own.
        let moved = fx.tmp.path().join("kept");
        fs_err::rename(&kept, &moved).unwrap();
        let upper2 = fx.tmp.path().join("upper2");
        let work2 = fx.tmp.path().join("work2");
        fs_err::create_dir_all(&upper2).unwrap();
        fs_err::create_dir_all(&work2).unwrap();
        let mut second = RunSpec::new(
            vec![fx.upper.clone(), fx.lower.clone()],
            &upper2,
            &work2,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat /replace /data/sub/n; ls /cache; echo more > /data/more".into(),
            ],
        );
        second.isolation = Isolation::Chroot;
        second.chroot_reuse = Some(ChrootReuse {
            rootfs: moved.clone(),
            applied: 2,
        });
        let (result, out) = run_on(&sandbox, &second);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        assert_eq!(out.stdout, "f\nnew\nimage-file\n");
        assert!(!moved.exists(), "the kept rootfs was copied, not moved");
        let layer: Vec<String> = tree(&upper2).into_keys().collect();
        assert_eq!(layer, ["data", "data/more"], "can_mount={can_mount}");
    }
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_overlay, kiln_no_busybox),
    ignore = "needs root, overlayfs, busybox"
)]
fn a_file_opened_for_writing_is_in_the_layer_as_under_overlayfs_needs_root() {
    require_all();
    // `: >> FILE` opens it for writing and writes nothing: overlayfs copies it up, and a
    // lock file (useradd's /etc/.pwd.lock, dpkg's) is in the layer that way.
    let mut layers = Vec::new();
    for chroot in [None, Some(true), Some(false)] {
        let fx = fixture();
        let mut command = spec(&fx, ": >> /data/file; cat /data/sub/inner > /dev/null");
        let sandbox = match chroot {
            None => sandbox(),
            Some(can_mount) => {
                command.isolation = Isolation::Chroot;
                chroot_sandbox(can_mount)
            }
        };
        let (result, out) = run_on(&sandbox, &command);
        assert!(result.unwrap().status.is_success(), "{}", out.stderr);
        layers.push(tree(&fx.upper));
    }
    assert!(layers[0].contains_key("data/file"), "{:?}", layers[0]);
    assert!(!layers[0].contains_key("data/sub/inner"), "{:?}", layers[0]);
    assert_eq!(layers[1], layers[0], "chroot with mounts");
    assert_eq!(layers[2], layers[0], "chroot without mounts");
}
