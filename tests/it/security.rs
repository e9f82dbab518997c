//! Hostile `RUN` steps, run as root (the CI setting): each tries to reach the host — kernel
//! settings, privileged syscalls, masked `/proc` and `/sys` paths, the host's files, a fork
//! bomb — and the test asserts the attempt is refused and the host unchanged. The same
//! attempts under `RUN --security=insecure --allow security.insecure` show what the default
//! profile takes away.
//!
//! The syscall attempts use `testdata/security/probe.c`, built with `gcc -static`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{busybox_rootfs, kiln_in, run_ok};

struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    context: PathBuf,
}

/// A store with `busybox:latest` (plus the probe and a few more applets) and an empty
/// context. Needs root, busybox and gcc with a static libc (libc6-dev).
fn fixture() -> Fixture {
    kiln_test::require_root();
    kiln_test::require_tool("gcc");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&dir.path().join("rootfs"));
    for applet in ["seq", "mount", "unshare", "ps"] {
        fs_err::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/security/probe.c");
    let probe = rootfs.join("bin/probe");
    let built = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&probe)
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "building the probe failed (needs libc6-dev for a static libc):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let store = dir.path().join("store");
    run_ok(
        kiln_in(&store)
            .arg("import")
            .arg(&rootfs)
            .args(["-t", "busybox:latest"]),
    );
    let context = dir.path().join("context");
    fs_err::create_dir(&context).unwrap();
    Fixture {
        dir,
        store,
        context,
    }
}

impl Fixture {
    /// `kiln build --no-cache --progress plain` of `dockerfile` with `flags`.
    fn build(&self, dockerfile: &str, flags: &[&str]) -> Output {
        fs_err::write(self.context.join("Dockerfile"), dockerfile).unwrap();
        let out = kiln_in(&self.store)
            .args(["build", "--no-cache", "--progress", "plain"])
            .args(flags)
            .arg(&self.context)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "kiln panicked:\n{stderr}");
        out
    }

    /// Builds and returns the RUN output lines (`#2 0.123 text` → `text`), asserting success.
    fn run_lines(&self, dockerfile: &str, flags: &[&str]) -> Vec<String> {
        let out = self.build(dockerfile, flags);
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "build failed:\n{text}");
        log_lines(&text)
    }
}

/// The step log lines of `--progress plain` output, without their `#N seconds` prefix.
fn log_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('#')?;
            let (_, rest) = rest.split_once(' ')?;
            let (time, text) = rest.split_once(' ')?;
            time.parse::<f64>().ok().map(|_| text.to_owned())
        })
        .collect()
}

fn read(path: &str) -> String {
    fs_err::read_to_string(path).unwrap_or_default()
}

/// `name=result` pairs printed by the probe.
fn probe_results(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let (name, result) = line.split_once('=')?;
            Some((name.to_owned(), result.to_owned()))
        })
        .collect()
}

const SYSCTL_ATTEMPTS: &str = r"FROM busybox
RUN (echo 61 > /proc/sys/vm/swappiness) 2>/dev/null && echo WROTE-swappiness || echo REFUSED-swappiness; \
    (echo '|/tmp/payload %p' > /proc/sys/kernel/core_pattern) 2>/dev/null && echo WROTE-core_pattern || echo REFUSED-core_pattern; \
    (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo WROTE-drop_caches || echo REFUSED-drop_caches; \
    (echo 1 > /proc/sys/kernel/sysrq) 2>/dev/null && echo WROTE-sysrq || echo REFUSED-sysrq
";

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn hostile_run_cannot_change_host_kernel_settings_needs_root() {
    let fx = fixture();
    let before = (
        read("/proc/sys/vm/swappiness"),
        read("/proc/sys/kernel/core_pattern"),
        read("/proc/sys/kernel/sysrq"),
    );
    let lines = fx.run_lines(SYSCTL_ATTEMPTS, &[]);
    for name in ["swappiness", "core_pattern", "drop_caches", "sysrq"] {
        assert!(
            lines.contains(&format!("REFUSED-{name}")),
            "writing {name} was not refused: {lines:#?}"
        );
    }
    let after = (
        read("/proc/sys/vm/swappiness"),
        read("/proc/sys/kernel/core_pattern"),
        read("/proc/sys/kernel/sysrq"),
    );
    assert_eq!(
        before, after,
        "a RUN step changed the host's kernel settings"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn insecure_run_may_write_proc_sys_only_when_allowed_needs_root() {
    let fx = fixture();
    // Writes the host's current value back: the difference shows, the host does not change.
    let swappiness = read("/proc/sys/vm/swappiness");
    let swappiness = swappiness.trim();
    let dockerfile = format!(
        "FROM busybox\nRUN --security=insecure (echo {swappiness} > /proc/sys/vm/swappiness) \
         2>/dev/null && echo WROTE || echo REFUSED\n"
    );
    // Without the entitlement the build fails before any step, naming it.
    let out = fx.build(&dockerfile, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("security.insecure"), "{stderr}");
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(!stderr.contains("#2 "), "a step ran: {stderr}");
    let lines = fx.run_lines(&dockerfile, &["--allow", "security.insecure"]);
    assert!(lines.contains(&"WROTE".to_owned()), "{lines:#?}");
    assert_eq!(read("/proc/sys/vm/swappiness").trim(), swappiness);
    // An entitlement kiln does not know is a usage error naming it.
    let out = fx.build(&dockerfile, &["--allow", "device.everything"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("device.everything"));
}

const PROBES: [&str; 14] = [
    "unshare-user",
    "unshare-mount",
    "clone-newuser",
    "mount-proc",
    "mount-tmpfs",
    "keyctl",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "init_module",
    "setns",
    "reboot",
    "open_by_handle_at",
    "mknod-block",
];

fn probe_dockerfile(security: &str) -> String {
    let calls: Vec<String> = PROBES.iter().map(|p| format!("probe {p}")).collect();
    format!(
        "FROM busybox\nRUN {security}{}; probe chroot; true\n",
        calls.join("; ")
    )
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn hostile_run_privileged_syscalls_are_refused_needs_root() {
    let fx = fixture();
    let results = probe_results(&fx.run_lines(&probe_dockerfile(""), &[]));
    for probe in PROBES {
        let result = results
            .iter()
            .find(|(name, _)| name == probe)
            .map(|(_, result)| result.as_str());
        assert_eq!(
            result,
            Some("EPERM"),
            "{probe} was not refused with EPERM: {results:?}"
        );
    }
    // Docker's profile keeps chroot (CAP_SYS_CHROOT is in the default set).
    assert!(results.contains(&("chroot".to_owned(), "ok".to_owned())));

    // The same probes unconfined: the namespace, mount and keyring calls now go through.
    let results = probe_results(&fx.run_lines(
        &probe_dockerfile("--security=insecure "),
        &["--allow", "security.insecure"],
    ));
    for probe in ["unshare-user", "unshare-mount", "mount-tmpfs", "keyctl"] {
        assert!(
            results.contains(&(probe.to_owned(), "ok".to_owned())),
            "{probe} should succeed under --security=insecure: {results:?}"
        );
    }
    // Still not host root: a block device cannot be made in the user namespace.
    assert!(results.contains(&("mknod-block".to_owned(), "EPERM".to_owned())));
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn capabilities_seccomp_and_masked_paths_follow_dockers_profile_needs_root() {
    let fx = fixture();
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("host-secret");
    fs_err::write(&marker, "host secret").unwrap();
    let dockerfile = format!(
        "FROM busybox\n\
         RUN grep -E '^(Cap|Seccomp:|NoNewPrivs)' /proc/self/status; \
             echo keys=$(cat /proc/keys 2>/dev/null | wc -c); \
             echo firmware=$(ls -A /sys/firmware 2>/dev/null | wc -l); \
             echo timer_list=$(cat /proc/timer_list 2>/dev/null | wc -c); \
             (mount -o remount,rw /proc/sys) 2>/dev/null && echo REMOUNTED || echo remount-refused; \
             cat /proc/1/root{marker} 2>/dev/null || echo no-host-file; \
             cat {marker} 2>/dev/null || echo no-host-file\n\
         USER 1000\n\
         RUN grep -E '^Cap(Eff|Prm)' /proc/self/status | sed 's/^/user-/'\n",
        marker = marker.display()
    );
    let lines = fx.run_lines(&dockerfile, &[]);
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(key))
            .map_or_else(|| panic!("no {key} in {lines:#?}"), |v| v.trim().to_owned())
    };
    // Docker's 14 default capabilities: 0xa80425fb.
    assert_eq!(value("CapBnd:"), "00000000a80425fb");
    assert_eq!(value("CapEff:"), "00000000a80425fb");
    assert_eq!(value("CapPrm:"), "00000000a80425fb");
    assert_eq!(value("CapInh:"), "0000000000000000");
    assert_eq!(value("CapAmb:"), "0000000000000000");
    assert_eq!(value("Seccomp:"), "2");
    // No no_new_privs: setuid programs work as under Docker.
    assert_eq!(value("NoNewPrivs:"), "0");
    assert_eq!(value("keys="), "0");
    assert_eq!(value("firmware="), "0");
    assert_eq!(value("timer_list="), "0");
    assert!(lines.contains(&"remount-refused".to_owned()), "{lines:#?}");
    assert_eq!(
        lines.iter().filter(|l| *l == "no-host-file").count(),
        2,
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("host secret")));
    assert_eq!(value("user-CapEff:"), "0000000000000000");
    assert_eq!(value("user-CapPrm:"), "0000000000000000");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn fork_bomb_fails_the_step_not_the_host_needs_root() {
    let fx = fixture();
    // More processes than the sandbox's limit (4096), each waiting long enough to count.
    let dockerfile = "FROM busybox\n\
        RUN i=0; while [ $i -lt 6000 ]; do sleep 60 & i=$((i+1)); done; echo spawned-all\n";
    let out = fx.build(dockerfile, &[]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", tail(&text));
    assert!(
        !log_lines(&text).contains(&"spawned-all".to_owned()),
        "{}",
        tail(&text)
    );
    assert!(text.contains("can't fork"), "{}", tail(&text));
    // Every process of the sandbox died with it.
    let leftover = Command::new("sh")
        .args(["-c", "ps -eo args | grep -c '^sleep 60$' || true"])
        .output()
        .unwrap();
    let count: u32 = String::from_utf8_lossy(&leftover.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(count, 0, "sleep processes outlived the step");
    let _ = &fx.dir;
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn a_run_cannot_steer_the_host_side_cleanup_through_a_symlink_needs_root() {
    let fx = fixture();
    // With no /etc in the image, the sandbox makes /etc and /etc/hosts as stubs to mount
    // over; after the run the host-side helper removes untouched stubs from the layer. The
    // step moves /etc away and leaves a symlink to a host directory in its place, hoping the
    // cleanup follows it to the host's empty `hosts` file.
    let host = tempfile::tempdir().unwrap();
    let bait = host.path().join("hosts");
    fs_err::write(&bait, "").unwrap();
    let dockerfile = format!(
        "FROM busybox AS tools\nFROM scratch\nCOPY --from=tools /bin /bin\n\
         RUN mv /etc /etc.moved && ln -s {} /etc && echo moved\n",
        host.path().display()
    );
    let lines = fx.run_lines(&dockerfile, &[]);
    assert!(lines.contains(&"moved".to_owned()), "{lines:#?}");
    assert!(bait.exists(), "the host-side cleanup deleted a host file");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_gcc),
    ignore = "needs root, busybox, gcc"
)]
fn a_tmpfs_mount_keeps_its_size_limit_needs_root() {
    let fx = fixture();
    let dockerfile = "FROM busybox\n\
        RUN --mount=type=tmpfs,target=/scratch,size=1048576 \
            (head -c 2097152 /dev/zero > /scratch/fill) 2>/dev/null && echo FILLED || echo FULL\n";
    let lines = fx.run_lines(dockerfile, &[]);
    assert!(lines.contains(&"FULL".to_owned()), "{lines:#?}");
    let out = fx.build(
        "FROM busybox\nRUN --mount=type=tmpfs,target=/scratch,size=-5 true\n",
        &[],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("size="));
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
