//! `kiln run` and `kiln history` end to end on an imported busybox image: users (flag, name,
//! image config), isolation (host files, pid 1, hostname, network), config semantics (env,
//! workdir, CMD, ENTRYPOINT), exit codes (command's, signals, not found, no command, timeout,
//! SIGTERM to kiln), and that nothing is left behind (mounts, store tmp, processes).
//!
//! Everything but `history_*` needs root (the CI runs as root); without it those tests are
//! skipped (`kiln_no_root`), or fail under `CI=true`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{busybox_rootfs, is_root, kiln_in, run_fails, run_ok};

/// How long a test waits for a process to appear or end before failing.
const DEADLINE: Duration = Duration::from_secs(20);

/// A store holding one busybox image.
struct Fixture {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    store: PathBuf,
    image: String,
}

impl Fixture {
    /// `kiln run <args…>` against this store (the image name is not added).
    fn run(&self) -> Command {
        let mut cmd = kiln_in(&self.store);
        cmd.arg("run").stdin(Stdio::null());
        cmd
    }

    /// Runs `kiln run [flags] IMAGE [command]` and returns stdout, asserting success.
    fn output(&self, flags: &[&str], command: &[&str]) -> String {
        run_ok(self.run().args(flags).arg(&self.image).args(command))
    }

    /// Entries of the store's `tmp/` other than its fixed subdirectories, plus live leases.
    fn leftovers(&self) -> Vec<String> {
        let tmp = self.store.join("tmp");
        let mut out: Vec<String> = fs_err::read_dir(&tmp)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "leases" && n != "trash")
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(leases) = fs_err::read_dir(tmp.join("leases")) {
            out.extend(leases.map(|e| format!("leases/{}", e.unwrap().file_name().display())));
        }
        out
    }
}

/// A busybox image named `name` imported with `changes` (`-c` instructions). Needs busybox
/// and, when `needs_root`, root.
fn fixture(name: &str, changes: &[&str], needs_root: bool) -> Fixture {
    if needs_root {
        kiln_test::require_root();
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(&dir.path().join("rootfs"));
    for applet in ["hostname", "kill", "ps"] {
        fs_err::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let passwd = rootfs.join("etc/passwd");
    let mut users = fs_err::read_to_string(&passwd).unwrap();
    users.push_str("alice:x:1001:1002:Alice:/home/alice:/bin/sh\n");
    fs_err::write(&passwd, users).unwrap();
    let group = rootfs.join("etc/group");
    let mut groups = fs_err::read_to_string(&group).unwrap();
    groups.push_str("staff:x:1002:\n");
    fs_err::write(&group, groups).unwrap();
    let store = dir.path().join("store");
    let mut import = kiln_in(&store);
    import.arg("import").arg(&rootfs).args(["-t", name]);
    for change in changes {
        import.args(["-c", change]);
    }
    run_ok(&mut import);
    Fixture {
        dir,
        rootfs,
        store,
        image: name.to_owned(),
    }
}

/// The host's mounts at or below the fixture's directory, where a leaked sandbox mount would
/// be. (Tests running at the same time may mount elsewhere — buildah, mmdebstrap — so the
/// whole table is not compared.)
fn mount_count(fx: &Fixture) -> usize {
    let dir = fx.dir.path().to_string_lossy().into_owned();
    fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|point| point.starts_with(&dir))
        })
        .count()
}

/// Pids of host processes whose argv is exactly `argv`.
fn pids_with_argv(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs_err::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs_err::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Polls until a process with `argv` exists; returns its pid.
fn wait_for_process(argv: &[&str]) -> u32 {
    let started = Instant::now();
    loop {
        if let Some(pid) = pids_with_argv(argv).first() {
            return *pid;
        }
        assert!(started.elapsed() < DEADLINE, "{argv:?} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_as_root_users_from_flag_name_and_image_config() {
    let fx = fixture("users:1", &["USER alice"], true);
    // The image's User.
    assert_eq!(fx.output(&[], &["whoami"]), "alice\n");
    assert_eq!(fx.output(&[], &["id", "-g"]), "1002\n");
    // -u overrides it: by number, number:number, name.
    assert_eq!(fx.output(&["-u", "0"], &["id", "-u"]), "0\n");
    assert_eq!(fx.output(&["-u", "1000:1000"], &["id", "-u"]), "1000\n");
    assert_eq!(fx.output(&["-u", "1000:1000"], &["id", "-g"]), "1000\n");
    assert_eq!(fx.output(&["--user", "user"], &["whoami"]), "user\n");
    assert_eq!(
        fx.output(&["-u", "user"], &["sh", "-c", "echo $HOME"]),
        "/home/user\n"
    );
    let plain = fixture("users:plain", &[], true);
    assert_eq!(plain.output(&[], &["id", "-u"]), "0\n");
    assert_eq!(plain.output(&[], &["whoami"]), "root\n");
    // A name the image does not know fails to start the container.
    let out = run_fails(
        plain.run().args(["-u", "nobody-here", &plain.image, "id"]),
        125,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nobody-here"), "{stderr}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_as_root_is_isolated_from_the_host() {
    let fx = fixture("isolated:1", &[], true);
    let host_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    assert!(host_file.is_file());
    let probe = format!(
        "test -e {} && echo visible || echo invisible",
        host_file.display()
    );
    assert_eq!(fx.output(&[], &["sh", "-c", &probe]), "invisible\n");
    assert_eq!(fx.output(&[], &["sh", "-c", "echo $$"]), "1\n");
    // The hostname is the container's: a 12-hex-digit ID by default, or --hostname.
    let host = fs_err::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let name = fx.output(&[], &["hostname"]);
    assert_ne!(name.trim(), host.trim());
    assert_eq!(name.trim().len(), 12, "{name}");
    assert!(name.trim().chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    assert_eq!(
        fx.output(
            &["--hostname", "smoke"],
            &["sh", "-c", "hostname; echo $HOSTNAME"]
        ),
        "smoke\nsmoke\n"
    );
    assert_eq!(
        fx.output(&["--network", "none"], &["ls", "/sys/class/net"]),
        "lo\n"
    );
    let host_links = fs_err::read_dir("/sys/class/net").unwrap().count();
    let seen = fx.output(&["--network", "host"], &["ls", "/sys/class/net"]);
    assert_eq!(seen.lines().count(), host_links, "{seen}");
    // stdin is closed, stdout and stderr stay apart.
    let out = fx
        .run()
        .args([&fx.image, "sh", "-c", "cat; echo out; echo err >&2"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Nothing the command wrote reaches the image's snapshot or the rootfs it came from.
    fx.output(&[], &["sh", "-c", "echo x > /written"]);
    assert_eq!(
        fx.output(&[], &["sh", "-c", "test -e /written || echo gone"]),
        "gone\n"
    );
    assert!(!fx.rootfs.join("written").exists());
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_as_root_env_workdir_cmd_and_entrypoint_follow_docker() {
    let fx = fixture(
        "config:1",
        &[
            "ENV A=image B=image",
            "WORKDIR /srv",
            r#"ENTRYPOINT ["echo", "entry"]"#,
            r#"CMD ["default"]"#,
        ],
        true,
    );
    // Entrypoint + Cmd; arguments replace Cmd only.
    assert_eq!(fx.output(&[], &[]), "entry default\n");
    assert_eq!(fx.output(&[], &["x", "-n", "y"]), "entry x -n y\n");
    // --entrypoint replaces Entrypoint and drops Cmd; "" clears it.
    assert_eq!(fx.output(&["--entrypoint", "pwd"], &[]), "/srv\n");
    assert_eq!(fx.output(&["--entrypoint", "echo"], &["a", "b"]), "a b\n");
    assert_eq!(
        fx.output(&["--entrypoint", ""], &["echo", "plain"]),
        "plain\n"
    );
    // Env: the image's, -e overrides, -e KEY from kiln's environment, --env-file.
    let env_file = fx.store.with_file_name("env.list");
    fs_err::write(&env_file, "# comment\nB=file\nC=file\n").unwrap();
    let out = run_ok(
        fx.run()
            .env("KILN_RUN_FROM_HOST", "host")
            .args(["--entrypoint", "sh", "--env-file"])
            .arg(&env_file)
            .args([
                "-e",
                "C=flag",
                "-e",
                "KILN_RUN_FROM_HOST",
                "-e",
                "KILN_RUN_UNSET",
            ])
            .args([
                &fx.image,
                "-c",
                "echo $A $B $C $KILN_RUN_FROM_HOST ${KILN_RUN_UNSET-unset}",
            ]),
    );
    assert_eq!(out, "image file flag host unset\n");
    // WorkingDir from the image, -w overrides and is created.
    assert_eq!(fx.output(&["--entrypoint", "pwd"], &[]), "/srv\n");
    assert_eq!(
        fx.output(&["-w", "/made/here", "--entrypoint", "pwd"], &[]),
        "/made/here\n"
    );
    run_fails(fx.run().args(["-w", "relative", &fx.image]), 125);
    // --rm is accepted; the container is always removed.
    assert_eq!(fx.output(&["--rm"], &["done"]), "entry done\n");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_as_root_exit_codes_and_failures_leave_nothing_behind() {
    let fx = fixture("fail:1", &[], true);
    let mounts = mount_count(&fx);
    run_fails(fx.run().args([&fx.image, "sh", "-c", "exit 3"]), 3);
    // A process killed by a signal: 128 + 9, through the shell and as the command itself.
    run_fails(
        fx.run()
            .args([&fx.image, "sh", "-c", "sh -c 'kill -9 $$'; exit $?"]),
        137,
    );
    let mut child = fx
        .run()
        .args([&fx.image, "sleep", "4243"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    send_signal(wait_for_process(&["sleep", "4243"]), "-KILL");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137), "{status}");
    // A missing command: docker's 127 and a message naming it.
    let out = run_fails(fx.run().args([&fx.image, "no-such-command"]), 127);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-command") && stderr.contains("not found"),
        "{stderr}"
    );
    // No command at all (the image has no Cmd): 125, like docker.
    let out = run_fails(fx.run().arg(&fx.image), 125);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no command specified"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An image that is neither in the store nor pullable: 125.
    run_fails(
        fx.run().args(["localhost:1/kiln-run-missing:none", "true"]),
        125,
    );
    // --timeout kills the whole tree.
    let started = Instant::now();
    let out = run_fails(
        fx.run()
            .args(["--timeout", "1", &fx.image, "sleep", "4244"]),
        124,
    );
    assert!(started.elapsed() < DEADLINE);
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    assert!(pids_with_argv(&["sleep", "4244"]).is_empty());
    // Also when the command runs as another user: changing the uid clears the parent-death
    // signal, and a non-root PID 1 must still die with the sandbox.
    let started = Instant::now();
    run_fails(
        fx.run().args([
            "--timeout",
            "1",
            "-u",
            "1000:1000",
            &fx.image,
            "sleep",
            "4245",
        ]),
        124,
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(pids_with_argv(&["sleep", "4245"]).is_empty());
    assert_eq!(mount_count(&fx), mounts, "mounts leaked into the host");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
    // A SIGKILLed kiln takes its sandbox with it (its scratch directory stays for the
    // store's GC: nothing can clean up after SIGKILL).
    let mut child = fx
        .run()
        .args(["-u", "1000:1000", &fx.image, "sleep", "4246"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_process(&["sleep", "4246"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = Instant::now();
    while !pids_with_argv(&["sleep", "4246"]).is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(3),
            "the sandbox outlived a SIGKILLed kiln"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_as_root_sigterm_and_sigint_cancel_cleanly() {
    let fx = fixture("cancel:1", &[], true);
    let mounts = mount_count(&fx);
    // (signal, expected exit code, sleep marker, whether the whole process group gets it as
    // from a terminal's Ctrl-C, which also reaches kiln's sandbox helper).
    for (signal, code, marker, is_group) in [
        ("-TERM", 143, "4245", false),
        ("-INT", 130, "4246", false),
        ("-INT", 130, "4247", true),
    ] {
        let child = fx
            .run()
            .args([&fx.image, "sleep", marker])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for_process(&["sleep", marker]);
        if is_group {
            let status = Command::new("kill")
                .args([signal, "--", &format!("-{}", child.id())])
                .status()
                .unwrap();
            assert!(status.success());
        } else {
            send_signal(child.id(), signal);
        }
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{signal} (group: {is_group}): {}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let started = Instant::now();
        while !pids_with_argv(&["sleep", marker]).is_empty() {
            assert!(
                started.elapsed() < DEADLINE,
                "sleep {marker} survived {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(mount_count(&fx), mounts, "mounts leaked into the host");
    assert_eq!(fx.leftovers(), Vec::<String>::new());
}

/// The expected SIZE of the imported layer: moby's `directory.Size` over the rootfs.
fn tree_size(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if seen.insert(meta.ino()) {
                total += meta.len();
            }
        }
    }
    total
}

#[test]
#[cfg_attr(kiln_no_busybox, ignore = "needs busybox")]
fn history_lists_entries_newest_first_with_layer_sizes() {
    let fx = fixture("hist:1", &["ENV A=1", r#"CMD ["sh"]"#], false);
    let table = run_ok(kiln_in(&fx.store).args(["history", &fx.image]));
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    for column in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(lines.len() >= 2, "{table}");
    // Newest first: the top row is the image's ID; earlier rows have none.
    let inspect: serde_json::Value =
        serde_json::from_str(&run_ok(kiln_in(&fx.store).args(["inspect", &fx.image]))).unwrap();
    let id = inspect["Id"].as_str().unwrap();
    let short_id = &id["sha256:".len().."sha256:".len() + 12];
    assert!(lines[1].starts_with(short_id), "{table}");
    assert!(
        lines.iter().skip(2).all(|l| l.starts_with("<missing>")),
        "{table}"
    );
    assert!(table.contains(" ago "), "{table}");

    let raw = run_ok(kiln_in(&fx.store).args(["history", "-H=false", "--no-trunc", &fx.image]));
    let expected = tree_size(&fx.rootfs).to_string();
    let json_lines =
        run_ok(kiln_in(&fx.store).args(["history", "--format", "json", "-H=false", &fx.image]));
    let rows: Vec<serde_json::Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let layer_rows: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["Size"].as_str() != Some("0"))
        .collect();
    assert_eq!(layer_rows.len(), 1, "{json_lines}");
    assert_eq!(
        layer_rows[0]["Size"],
        expected.as_str(),
        "{json_lines}\n{raw}"
    );
    assert!(expected.parse::<u64>().unwrap() > 1000);
    assert_eq!(rows[0]["ID"].as_str().unwrap().len(), 12);
    assert!(raw.contains(id), "{raw}");
    // After a run the layer is unpacked: the snapshot gives the same size as the blob.
    if is_root() {
        fx.output(&[], &["true"]);
        let again =
            run_ok(kiln_in(&fx.store).args(["history", "--format", "json", "-H=false", &fx.image]));
        let sizes = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Size"].clone())
                .collect()
        };
        assert_eq!(sizes(&again), sizes(&json_lines));
    }
    // The image ID (or a 12+ digit prefix) names the image too, as in docker.
    let by_id = run_ok(kiln_in(&fx.store).args(["history", short_id]));
    assert_eq!(by_id.lines().count(), table.lines().count(), "{by_id}");
    if is_root() {
        assert_eq!(run_ok(fx.run().args([id, "echo", "by-id"])), "by-id\n");
    }
    run_fails(kiln_in(&fx.store).args(["history", "not-here:1"]), 1);
}

#[test]
fn a_name_no_registry_has_fails_at_once_saying_it_pulls() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_fails(
        kiln_in(&tmp.path().join("store")).args(["run", "nosuch.invalid/img:1", "true"]),
        125,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("Unable to find image 'nosuch.invalid/img:1' locally"),
        "{stderr}"
    );
    // A host name that does not exist is the resolver's answer: no retries.
    assert!(!stderr.contains("retrying"), "{stderr}");
    assert!(stderr.contains("after 1 attempt(s)"), "{stderr}");
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_as_root_takes_docker_run_hosts_limits_and_shm_size() {
    let fx = fixture("opts:1", &[], true);
    let flags = [
        "--add-host",
        "db.internal:10.9.8.7",
        "--ulimit",
        "nofile=512:1024",
        "--shm-size",
        "32m",
    ];
    let script = "grep db.internal /etc/hosts; grep 'Max open files' /proc/self/limits; \
                  grep ' /dev/shm ' /proc/self/mountinfo | grep -o 'size=[0-9]*k'";
    let out = fx.output(&flags, &["sh", "-c", script]);
    assert!(out.contains("10.9.8.7\tdb.internal"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("Max open files") && l.contains(" 512 ") && l.contains(" 1024 ")),
        "{out}"
    );
    assert!(out.contains("size=32768k"), "{out}");
}
