//! `kiln build --ssh` and `RUN --mount=type=ssh`, as `docker buildx build` has them: the
//! agent's socket at the mount's target with its mode and owner, `SSH_AUTH_SOCK` set, nothing
//! of it in a layer or the cache key, `required` ids and bad `--ssh` values failing with their
//! name. The heavy test runs `ssh-add -l` in a Debian image (mmdebstrap, as
//! `examples/bases.sh` makes its bases) against a host `ssh-agent` and against a key file
//! served by kiln itself.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, run_ok, write};

/// What the light test's first RUN prints about its socket.
const PROBE: &str = "FROM busybox\n\
     RUN --mount=type=ssh,mode=0640,uid=1,gid=2 \\\n\
         test -S /run/buildkit/ssh_agent.0 \\\n\
      && echo \"auth-sock=$SSH_AUTH_SOCK\" \\\n\
      && stat -c 'sock-meta=%a %u:%g' /run/buildkit/ssh_agent.0 \\\n\
      && echo ran > /ran\n\
     RUN --mount=type=ssh,id=absent,target=/run/absent.sock \\\n\
         test ! -e /run/absent.sock && echo \"absent-auth-sock=$SSH_AUTH_SOCK\"\n";

/// The file names in every layer of the OCI layout at `layout` (its only manifest).
fn layer_entries(layout: &Path) -> Vec<String> {
    let read_json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
    };
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index = read_json(layout.join("index.json"));
    let manifest = read_json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut entries = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = run_ok(
            Command::new("tar")
                .arg("-tzf")
                .arg(blob(layer["digest"].as_str().unwrap())),
        );
        entries.extend(out.lines().map(str::to_owned));
    }
    entries
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_tar),
    ignore = "needs root, busybox, tar"
)]
fn ssh_mount_is_a_socket_at_its_target_and_never_in_a_layer_or_key_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", PROBE);
    // Any socket serves: kiln forwards connections only when a RUN makes them.
    let agent_a = tmp.path().join("agent-a.sock");
    let _listener_a = UnixListener::bind(&agent_a).unwrap();
    let agent_b = tmp.path().join("agent-b.sock");
    let _listener_b = UnixListener::bind(&agent_b).unwrap();
    for isolation in ["namespaces", "chroot"] {
        let dir = tmp.path().join(isolation);
        let store = store_with_busybox(&dir);
        let layout = dir.join("oci");
        let log = build_plain(
            &store,
            &ctx,
            &[
                "--isolation",
                isolation,
                "--ssh",
                &format!("default={}", agent_a.display()),
                "-o",
                &format!("type=oci,dest={},tar=false", layout.display()),
            ],
        );
        assert!(
            log.contains("auth-sock=/run/buildkit/ssh_agent.0"),
            "{isolation}:\n{log}"
        );
        assert!(log.contains("sock-meta=640 1:2"), "{isolation}:\n{log}");
        // BuildKit sets SSH_AUTH_SOCK to the first ssh mount's target whether or not its
        // id was given; an optional id nobody gave runs without a socket.
        assert!(
            log.contains("absent-auth-sock=/run/absent.sock"),
            "{isolation}:\n{log}"
        );
        let entries = layer_entries(&layout);
        assert!(entries.iter().any(|e| e.ends_with("ran")), "{entries:?}");
        assert!(
            !entries
                .iter()
                .any(|e| e.contains("run/buildkit") || e.contains("absent.sock")),
            "{isolation}: a mount point reached a layer: {entries:?}"
        );

        // Another agent socket is no reason to run again (BuildKit: the socket is not in
        // the ExecOp).
        let again = build_plain(
            &store,
            &ctx,
            &[
                "--isolation",
                isolation,
                "--ssh",
                &format!("default={}", agent_b.display()),
            ],
        );
        assert!(
            again
                .lines()
                .any(|l| l.contains("RUN --mount=type=ssh,mode") && l.ends_with(" CACHED")),
            "{isolation}: expected a cache hit:\n{again}"
        );
    }
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn a_required_ssh_id_without_ssh_fails_naming_it_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh,id=deploy,required=true true\n",
    );
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--progress", "plain"])
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ssh agent `deploy` is required") && stderr.contains("--ssh deploy="),
        "{stderr}"
    );
}

#[test]
fn bad_ssh_values_fail_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let store = tmp.path().join("store");
    let build = |ssh: &str| {
        let mut cmd = kiln_in(&store);
        cmd.args(["build", "--progress", "plain", "--ssh", ssh])
            .arg(&ctx)
            .env_remove("SSH_AUTH_SOCK");
        cmd
    };
    // Usage errors (exit 2).
    for spec in ["=/run/agent.sock", "k=/a,,/b"] {
        let out = run_fails(&mut build(spec), 2);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("`{spec}`")), "{spec}: {stderr}");
    }
    // Sources checked at the start, used or not (exit 1).
    let out = run_fails(&mut build("default"), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("$SSH_AUTH_SOCK is not set"), "{stderr}");
    let missing = tmp.path().join("no-such-key");
    let out = run_fails(&mut build(&format!("k={}", missing.display())), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
    let not_a_key = tmp.path().join("not-a-key");
    fs_err::write(&not_a_key, "hello").unwrap();
    let out = run_fails(&mut build(&format!("k={}", not_a_key.display())), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not an OpenSSH private key")
            && stderr.contains(&not_a_key.display().to_string()),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(kiln_no_ssh_keygen, ignore = "needs ssh-keygen")]
fn an_encrypted_key_file_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let key = tmp.path().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
            .arg(&key),
    );
    let out = run_fails(
        kiln_in(&tmp.path().join("store"))
            .args(["build", "--progress", "plain", "--ssh"])
            .arg(format!("default={}", key.display()))
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is encrypted with a passphrase")
            && stderr.contains(&key.display().to_string()),
        "{stderr}"
    );
}

/// A host `ssh-agent -D` on a socket in a temp dir, killed when dropped.
struct HostAgent {
    child: Child,
    socket: PathBuf,
}

impl HostAgent {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("host-agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting ssh-agent");
        let agent = Self { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bookworm minbase root filesystem with openssh-client, made and cached by
/// `examples/bases.sh`'s `debian_rootfs` (the host's mirror, `$KILN_EXAMPLES_CACHE`), imported
/// into `store` as `debian-ssh:bookworm`.
fn import_debian_with_openssh(store: &Path) {
    let bases = crate::examples::examples_dir().join("bases.sh");
    // bases.sh without its command dispatch (from the `[ $# -gt 0 ]` line on): its functions.
    let script = format!(
        "set -euo pipefail\n\
         source <(sed '/^\\[ \\$# -gt 0 \\]/,$d' '{bases}')\n\
         tarball=$(debian_rootfs ssh openssh-client)\n\
         \"$KILN\" import \"$tarball\" -t debian-ssh:bookworm --change 'CMD [\"bash\"]' >/dev/null\n",
        bases = bases.display()
    );
    run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("KILN", env!("CARGO_BIN_EXE_kiln"))
            .env("KILN_ROOT", store),
    );
}

/// `ssh-keygen -l` of `public`: `256 SHA256:… comment (ED25519)`; the fingerprint.
fn fingerprint(public: &Path) -> String {
    let line = run_ok(Command::new("ssh-keygen").arg("-lf").arg(public));
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_mmdebstrap,
        kiln_no_ssh_agent,
        kiln_no_ssh_keygen
    ),
    ignore = "needs root, mmdebstrap, ssh-agent, ssh-keygen"
)]
fn heavy_ssh_add_in_run_lists_the_host_agents_key_and_a_key_file() {
    crate::examples::require_debian_bases();
    kiln_test::require_tool("ssh-agent");
    kiln_test::require_tool("ssh-keygen");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    import_debian_with_openssh(&store);

    let key = tmp.path().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"])
            .arg(&key),
    );
    let public = key.with_extension("pub");
    let fingerprint = fingerprint(&public);
    let agent = HostAgent::start(tmp.path());
    run_ok(
        Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &agent.socket),
    );

    let ctx = tmp.path().join("ctx");
    write(&ctx, "key.pub", &fs_err::read_to_string(&public).unwrap());
    // `ssh-add -l` lists through the socket; `ssh-keygen -Y sign` with only the public key
    // signs through it.
    write(
        &ctx,
        "Dockerfile",
        "FROM debian-ssh:bookworm\n\
         COPY key.pub /key.pub\n\
         RUN --mount=type=ssh ssh-add -l > /out \\\n\
          && echo data > /data && ssh-keygen -Y sign -f /key.pub -n kiln /data\n",
    );
    let check = |out: &Path, how: &str| {
        let listed = fs_err::read_to_string(out.join("out")).unwrap();
        assert!(
            listed.contains(&fingerprint),
            "{how}: ssh-add -l printed {listed:?}, expected {fingerprint}"
        );
        let signers = tmp.path().join("allowed_signers");
        fs_err::write(
            &signers,
            format!("kiln {}", fs_err::read_to_string(&public).unwrap()),
        )
        .unwrap();
        run_ok(
            Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "kiln", "-I", "kiln", "-f"])
                .arg(&signers)
                .arg("-s")
                .arg(out.join("data.sig"))
                .stdin(fs_err::File::open(out.join("data")).unwrap().into_parts().0),
        );
    };

    // The host agent, as `--ssh default`.
    let forwarded = tmp.path().join("forwarded");
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--ssh", "default", "-o"])
            .arg(format!("type=local,dest={}", forwarded.display()))
            .arg(&ctx)
            .env("SSH_AUTH_SOCK", &agent.socket),
    );
    check(&forwarded, "--ssh default");

    // The key file, served by kiln (no agent in the environment).
    let from_file = tmp.path().join("from-file");
    run_ok(
        kiln_in(&store)
            .args(["build", "--progress", "plain", "--no-cache", "--ssh"])
            .arg(format!("default={}", key.display()))
            .arg("-o")
            .arg(format!("type=local,dest={}", from_file.display()))
            .arg(&ctx)
            .env_remove("SSH_AUTH_SOCK"),
    );
    check(&from_file, "--ssh default=KEYFILE");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_ssh_keygen),
    ignore = "needs root, busybox, ssh-keygen"
)]
fn rootless_ssh_mount_is_a_socket_with_its_owner_and_mode() {
    let user = kiln_test::rootless_user();
    let dir = user.tempdir();
    let base = tempfile::tempdir().unwrap();
    let root_store = store_with_busybox(base.path());
    let archive = dir.path().join("busybox.tar");
    run_ok(
        kiln_in(&root_store)
            .args(["save", "busybox:latest", "-o"])
            .arg(&archive),
    );
    let home = dir.path().join("home");
    fs_err::create_dir(&home).unwrap();
    let key = dir.path().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=ssh,uid=1,gid=2 test -S /run/buildkit/ssh_agent.0 \\\n\
          && stat -c 'sock-meta=%a %u:%g' /run/buildkit/ssh_agent.0\n",
    );
    user.give(dir.path());
    let kiln = || {
        let mut cmd = user.command(Path::new(env!("CARGO_BIN_EXE_kiln")), &home);
        cmd.env("KILN_ISOLATION", "namespaces").stdin(Stdio::null());
        cmd
    };
    run_ok(kiln().args(["load", "-i"]).arg(&archive));
    let out = kiln()
        .args(["build", "--progress", "plain", "--ssh"])
        .arg(format!("default={}", key.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sock-meta=600 1:2"), "{stderr}");
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_unshare, kiln_no_setpriv, kiln_no_busybox),
    ignore = "needs root, unshare, setpriv, busybox"
)]
fn ssh_mount_where_nothing_can_be_mounted_is_refused_naming_it_root() {
    use kiln_test::pod::{Confinement as _, Emulation};
    use std::ffi::OsStr;
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = kiln_test::busybox_rootfs(&tmp.path().join("busybox-rootfs"));
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh test -S /run/buildkit/ssh_agent.0\n",
    );
    let agent = tmp.path().join("agent.sock");
    let _listener = UnixListener::bind(&agent).unwrap();
    // The unprivileged pod as CI emulates it: chroot isolation, no mounts.
    let pod = Emulation::new(Path::new(env!("CARGO_BIN_EXE_kiln")));
    let kiln = |args: &[&str]| {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        pod.kiln(&args, &[])
    };
    let rootfs = rootfs.to_str().unwrap();
    run_ok(&mut kiln(&["import", rootfs, "-t", "busybox:latest"]));
    let ssh = format!("default={}", agent.display());
    let out = run_fails(
        &mut kiln(&[
            "build",
            "--progress",
            "plain",
            "--ssh",
            &ssh,
            ctx.to_str().unwrap(),
        ]),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/run/buildkit/ssh_agent.0")
            && stderr.contains("cannot be provided by chroot isolation"),
        "{stderr}"
    );
}
