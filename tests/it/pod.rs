//! kiln as it runs in an unprivileged CI pod (issue 18), through `kiln_test::pod`: a `runc`
//! container with Docker's default capabilities and seccomp profile, and the emulation (a
//! child user namespace with `user.max_user_namespaces` 0 and Docker's bounding set) that CI
//! always runs. First the environments themselves are checked to be what they claim; then
//! builds without RUN, which need no isolation, give the same digest inside as outside.
//! The builds with RUN fall back to chroot isolation (`--isolation auto`) and say so.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_test::pod::{
    Confinement, DOCKER_CAPABILITY_MASK, EMULATED_ID_COUNT, Emulation, POD_KILN_ROOT, Pod,
    SeccompProfile, capability_set,
};
use kiln_test::{Registry, busybox_rootfs};

use crate::builds::umoci_unpack;
use crate::common::{kiln_in, run_ok};

const EPOCH: &str = "1700000000";

fn kiln_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kiln"))
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(|a| OsStr::new(*a)).collect()
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// Runs `program args` in `confinement`; returns its output whatever the status.
fn run_in(confinement: &dyn Confinement, program: &str, args: &[&str]) -> Output {
    output(&mut confinement.command(program, &os(args), &[]))
}

/// Asserts `program args` fails in `confinement` with `message` on stderr.
fn assert_refused(confinement: &dyn Confinement, program: &str, args: &[&str], message: &str) {
    let out = run_in(confinement, program, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(message),
        "{program} {args:?} in {}: expected a failure with {message:?}, got {}\n{stderr}",
        confinement.describe(),
        out.status
    );
}

fn assert_allowed(confinement: &dyn Confinement, program: &str, args: &[&str]) {
    let out = run_in(confinement, program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} in {}: {}\n{}",
        confinement.describe(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/proc/self/status` of a process in `confinement`.
fn status(confinement: &dyn Confinement) -> String {
    let out = run_in(confinement, "cat", &["/proc/self/status"]);
    assert!(out.status.success(), "cat in {}", confinement.describe());
    String::from_utf8(out.stdout).expect("UTF-8 status")
}

/// Docker's 14 capabilities in the bounding, permitted and effective sets, nothing
/// inheritable or ambient (`docker run` since 20.10.14 leaves those empty).
fn assert_docker_capabilities(confinement: &dyn Confinement) {
    let status = status(confinement);
    for (field, expected) in [
        ("CapBnd", DOCKER_CAPABILITY_MASK),
        ("CapPrm", DOCKER_CAPABILITY_MASK),
        ("CapEff", DOCKER_CAPABILITY_MASK),
        ("CapInh", 0),
        ("CapAmb", 0),
    ] {
        assert_eq!(
            capability_set(&status, field),
            Some(expected),
            "{field} in {}:\n{status}",
            confinement.describe()
        );
    }
}

/// A pod shaped like `docker run -v dir:dir` under `profile`.
fn pod_sharing(dir: &Path, profile: SeccompProfile) -> Pod {
    let mut pod = Pod::new(kiln_binary(), profile);
    pod.share(dir);
    pod
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_runc, kiln_no_busybox, kiln_no_umoci),
    ignore = "needs root, runc, busybox, umoci"
)]
fn pod_has_dockers_capabilities_and_no_namespaces_or_mounts_root() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs_err::create_dir(&mnt).unwrap();
    let mnt = mnt.to_str().unwrap();
    for profile in [SeccompProfile::Docker, SeccompProfile::ContainersNoUserns] {
        let pod = pod_sharing(tmp.path(), profile);
        assert_docker_capabilities(&pod);
        let status = status(&pod);
        assert!(
            status.contains("Seccomp:\t2\n"),
            "a seccomp filter:\n{status}"
        );
        assert!(status.contains("NoNewPrivs:\t0\n"), "{status}");
        // User namespaces: Docker's profile allows no `unshare` at all without
        // CAP_SYS_ADMIN; the containers one refuses CLONE_NEWUSER by argument.
        assert_refused(
            &pod,
            "busybox",
            &["unshare", "-U", "true"],
            "Operation not permitted",
        );
        assert_refused(
            &pod,
            "busybox",
            &["unshare", "-m", "true"],
            "Operation not permitted",
        );
        assert_refused(
            &pod,
            "busybox",
            &["mount", "-t", "tmpfs", "tmpfs", mnt],
            "permission denied",
        );
        // What chroot isolation relies on: mknod of devices (CAP_MKNOD and Docker's
        // `c *:* m` device rule) and chroot (CAP_SYS_CHROOT).
        let null = tmp.path().join(format!("null-{profile:?}"));
        assert_allowed(
            &pod,
            "busybox",
            &["mknod", null.to_str().unwrap(), "c", "1", "3"],
        );
        assert_allowed(&pod, "busybox", &["chroot", "/", "true"]);
        // The host network: the pod sees the host's interfaces, not a lone loopback.
        let links = String::from_utf8(run_in(&pod, "cat", &["/proc/net/dev"]).stdout).unwrap();
        let host_links = fs_err::read_to_string("/proc/net/dev").unwrap();
        assert_eq!(links.lines().count(), host_links.lines().count(), "{links}");
    }
}

/// The control for `ContainersNoUserns`: the containers profile as shipped lets root
/// without CAP_SYS_ADMIN make a user namespace, so the argument filter is what blocks it.
#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_runc, kiln_no_busybox, kiln_no_umoci),
    ignore = "needs root, runc, busybox, umoci"
)]
fn pod_under_the_shipped_containers_profile_can_make_a_user_namespace_root() {
    let pod = Pod::new(kiln_binary(), SeccompProfile::Containers);
    assert_docker_capabilities(&pod);
    assert_allowed(&pod, "busybox", &["unshare", "-U", "true"]);
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_unshare, kiln_no_setpriv, kiln_no_busybox),
    ignore = "needs root, unshare, setpriv, busybox"
)]
fn emulation_has_dockers_capabilities_and_no_namespaces_mounts_or_devices_root() {
    let emulation = Emulation::new(kiln_binary());
    assert_docker_capabilities(&emulation);
    let map = String::from_utf8(run_in(&emulation, "cat", &["/proc/self/uid_map"]).stdout).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", &EMULATED_ID_COUNT.to_string()],
        "uids 0-65535 one to one"
    );
    let limit = run_in(&emulation, "cat", &["/proc/sys/user/max_user_namespaces"]);
    assert_eq!(String::from_utf8_lossy(&limit.stdout).trim(), "0");
    // max_user_namespaces 0: the kernel answers ENOSPC.
    assert_refused(
        &emulation,
        "busybox",
        &["unshare", "-U", "true"],
        "No space left on device",
    );
    assert_refused(
        &emulation,
        "busybox",
        &["unshare", "-m", "true"],
        "Operation not permitted",
    );
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().to_str().unwrap();
    assert_refused(
        &emulation,
        "busybox",
        &["mount", "-t", "tmpfs", "tmpfs", mnt],
        "permission denied",
    );
    // Unlike a Docker container: only the initial user namespace may make device nodes.
    let null = tmp.path().join("null");
    assert_refused(
        &emulation,
        "busybox",
        &["mknod", null.to_str().unwrap(), "c", "1", "3"],
        "Operation not permitted",
    );
    let fifo = tmp.path().join("fifo");
    assert_allowed(
        &emulation,
        "busybox",
        &["mknod", fifo.to_str().unwrap(), "p"],
    );
    assert_allowed(&emulation, "busybox", &["chroot", "/", "true"]);
    // Ownership survives the mapping: chown to 1000 inside is 1000 outside.
    assert_allowed(&emulation, "busybox", &["chown", "1000:1000", mnt]);
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&fs_err::metadata(tmp.path()).unwrap()),
        1000
    );
}

/// The files of a build: `busybox-rootfs/` (imported as `busybox:latest` on each side),
/// `ctx/` with `Dockerfile` and its files, and `secret.txt`.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new(dockerfile: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        busybox_rootfs(&tmp.path().join("busybox-rootfs"));
        let ctx = tmp.path().join("ctx");
        fs_err::create_dir_all(&ctx).unwrap();
        fs_err::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        fs_err::write(ctx.join("a.txt"), "from stage files\n").unwrap();
        fs_err::write(ctx.join("b.txt"), "from the context\n").unwrap();
        fs_err::write(tmp.path().join("secret.txt"), "s3cret-token\n").unwrap();
        Self { tmp }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn path(&self, rel: &str) -> String {
        self.dir().join(rel).to_str().unwrap().to_owned()
    }

    /// Imports the busybox tree, then builds `ctx` with `flags` through `kiln` (a command
    /// factory taking kiln's arguments); returns the build's stderr (plain progress).
    fn build(&self, kiln: &dyn Fn(&[&OsStr]) -> Command, flags: &[&str]) -> String {
        let rootfs = self.path("busybox-rootfs");
        let mut import = kiln(&os(&["import", &rootfs, "-t", "busybox:latest"]));
        let out = output(&mut import);
        assert!(
            out.status.success(),
            "{import:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ctx = self.path("ctx");
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(flags);
        args.push(&ctx);
        let mut build = kiln(&os(&args));
        let out = output(&mut build);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{build:?}: {}\n{stderr}", out.status);
        stderr
    }

    /// The same import and build outside, on the host with its default (namespace)
    /// isolation and a store of its own.
    fn build_outside(&self, flags: &[&str]) -> String {
        let store = self.dir().join("host-store");
        let kiln = |args: &[&OsStr]| {
            let mut cmd = kiln_in(&store);
            cmd.env("SOURCE_DATE_EPOCH", EPOCH).args(args);
            cmd
        };
        self.build(&kiln, flags)
    }

    /// The build inside `confinement`.
    fn build_in(&self, confinement: &dyn Confinement, flags: &[&str]) -> String {
        let kiln = |args: &[&OsStr]| confinement.kiln(args, &[("SOURCE_DATE_EPOCH", EPOCH)]);
        self.build(&kiln, flags)
    }
}

/// `skopeo inspect` of `target` (`docker://…` over plain HTTP, `oci-archive:…`).
fn skopeo_inspect(target: &str) -> serde_json::Value {
    let out = output(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .arg(target),
    );
    assert!(
        out.status.success(),
        "skopeo inspect {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo JSON")
}

/// Copies `reference` from the registry into an OCI layout and unpacks it with umoci;
/// returns the root filesystem.
fn unpack_from_registry(reference: &str, dir: &Path) -> PathBuf {
    fs_err::create_dir_all(dir).unwrap();
    let layout = dir.join("layout");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:unpacked", layout.display())),
    );
    umoci_unpack(&layout, "unpacked", &dir.join("bundle"))
}

/// Two stages, no RUN: nothing needs isolation, so it builds in a pod today.
const NO_RUN: &str = "FROM busybox AS files\n\
                      COPY a.txt /a.txt\n\
                      FROM busybox\n\
                      COPY --from=files /a.txt /from-files.txt\n\
                      COPY b.txt /b.txt\n";

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_runc, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, runc, busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn pod_build_without_run_pushes_the_same_digest_as_outside_root() {
    crate::registry::require_registry_tools();
    let fixture = Fixture::new(NO_RUN);
    let registry = Registry::start();
    let inside = format!("{}/kiln/pod-no-run:1", registry.host);
    let outside = format!("{}/kiln/host-no-run:1", registry.host);
    let pod = pod_sharing(fixture.dir(), SeccompProfile::Docker);
    fixture.build_in(&pod, &["--push", "-t", &inside]);
    fixture.build_outside(&["--push", "-t", &outside]);

    let pushed = skopeo_inspect(&format!("docker://{inside}"));
    assert_eq!(pushed["Layers"].as_array().unwrap().len(), 3, "{pushed}");
    assert_eq!(
        pushed["Digest"],
        skopeo_inspect(&format!("docker://{outside}"))["Digest"],
        "the pod's build and the host's"
    );
    let rootfs = unpack_from_registry(&inside, &fixture.dir().join("check"));
    assert_eq!(
        fs_err::read_to_string(rootfs.join("from-files.txt")).unwrap(),
        "from stage files\n"
    );
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_unshare,
        kiln_no_setpriv,
        kiln_no_busybox,
        kiln_no_skopeo
    ),
    ignore = "needs root, unshare, setpriv, busybox, skopeo"
)]
fn emulation_build_without_run_writes_the_same_digest_as_outside_root() {
    kiln_test::require_tool("skopeo");
    let fixture = Fixture::new(NO_RUN);
    let inside = fixture.path("emulated.tar");
    let outside = fixture.path("host.tar");
    let emulation = Emulation::new(kiln_binary());
    fixture.build_in(&emulation, &["-o", &format!("type=oci,dest={inside}")]);
    fixture.build_outside(&["-o", &format!("type=oci,dest={outside}")]);

    let written = skopeo_inspect(&format!("oci-archive:{inside}"));
    assert_eq!(written["Layers"].as_array().unwrap().len(), 3, "{written}");
    assert_eq!(
        written["Digest"],
        skopeo_inspect(&format!("oci-archive:{outside}"))["Digest"],
        "the emulation's build and the host's"
    );
}

/// One RUN: needs an isolation the environment allows.
const ONE_RUN: &str = "FROM busybox\n\
                       COPY b.txt /b.txt\n\
                       RUN cat /b.txt > /ran.txt && id -u >> /ran.txt\n";

/// Asserts the progress of a build under `confinement` says, in one line, that `auto` fell
/// back to chroot isolation and why.
fn assert_says_chroot(progress: &str, confinement: &dyn Confinement) {
    let lines: Vec<&str> = progress
        .lines()
        .filter(|l| l.ends_with(": using chroot isolation"))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("WARNING: user namespaces are "),
        "{} should have fallen back to chroot isolation and said why, once:\n{progress}",
        confinement.describe()
    );
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_unshare,
        kiln_no_setpriv,
        kiln_no_busybox,
        kiln_no_skopeo
    ),
    ignore = "needs root, unshare, setpriv, busybox, skopeo"
)]
fn emulation_build_with_run_uses_chroot_and_matches_outside_root() {
    kiln_test::require_tool("skopeo");
    let fixture = Fixture::new(ONE_RUN);
    let inside = fixture.path("emulated.tar");
    let outside = fixture.path("host.tar");
    let emulation = Emulation::new(kiln_binary());
    let progress = fixture.build_in(&emulation, &["-o", &format!("type=oci,dest={inside}")]);
    assert_says_chroot(&progress, &emulation);
    fixture.build_outside(&["-o", &format!("type=oci,dest={outside}")]);
    assert_eq!(
        skopeo_inspect(&format!("oci-archive:{inside}"))["Digest"],
        skopeo_inspect(&format!("oci-archive:{outside}"))["Digest"],
        "chroot isolation in the emulation and namespaces on the host"
    );
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_runc, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, runc, busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn pod_build_with_run_uses_chroot_and_matches_outside_root() {
    crate::registry::require_registry_tools();
    for profile in [SeccompProfile::Docker, SeccompProfile::ContainersNoUserns] {
        let fixture = Fixture::new(ONE_RUN);
        let registry = Registry::start();
        let inside = format!("{}/kiln/pod-run:1", registry.host);
        let outside = format!("{}/kiln/host-run:1", registry.host);
        let pod = pod_sharing(fixture.dir(), profile);
        let progress = fixture.build_in(&pod, &["--push", "-t", &inside]);
        assert_says_chroot(&progress, &pod);
        fixture.build_outside(&["--push", "-t", &outside]);
        assert_eq!(
            skopeo_inspect(&format!("docker://{inside}"))["Digest"],
            skopeo_inspect(&format!("docker://{outside}"))["Digest"],
            "{}: chroot in the pod and namespaces on the host",
            pod.describe()
        );
        let rootfs = unpack_from_registry(&inside, &fixture.dir().join("check"));
        assert_eq!(
            fs_err::read_to_string(rootfs.join("ran.txt")).unwrap(),
            "from the context\n0\n"
        );
    }
}

/// The pod build: stages, RUN, `COPY --from`, a cache mount and a secret.
const MULTI_STAGE: &str = "FROM busybox AS builder\n\
     RUN --mount=type=cache,target=/cache echo cached > /cache/c && cp /cache/c /built\n\
     RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /token-length\n\
     COPY a.txt /a.txt\n\
     FROM busybox\n\
     COPY --from=builder /built /token-length /a.txt /out/\n\
     RUN cat /out/built /out/token-length /out/a.txt > /out/all && test ! -e /run/secrets/token\n";

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_runc, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, runc, busybox, docker-registry, htpasswd, skopeo, umoci"
)]
fn pod_multi_stage_build_with_cache_and_secret_matches_outside_root() {
    crate::registry::require_registry_tools();
    let fixture = Fixture::new(MULTI_STAGE);
    let registry = Registry::start();
    let inside = format!("{}/kiln/pod-multi:1", registry.host);
    let outside = format!("{}/kiln/host-multi:1", registry.host);
    let secret = format!("id=token,src={}", fixture.path("secret.txt"));
    let pod = pod_sharing(fixture.dir(), SeccompProfile::Docker);
    let progress = fixture.build_in(&pod, &["--secret", &secret, "--push", "-t", &inside]);
    assert_says_chroot(&progress, &pod);
    fixture.build_outside(&["--secret", &secret, "--push", "-t", &outside]);

    let pushed = skopeo_inspect(&format!("docker://{inside}"));
    assert_eq!(
        pushed["Digest"],
        skopeo_inspect(&format!("docker://{outside}"))["Digest"],
        "chroot in the pod and namespaces on the host"
    );
    let rootfs = unpack_from_registry(&inside, &fixture.dir().join("check"));
    assert_eq!(
        fs_err::read_to_string(rootfs.join("out/all")).unwrap(),
        "cached\n13\nfrom stage files\n"
    );
    assert!(
        !rootfs.join("run/secrets/token").exists(),
        "the secret is not in the image"
    );
}

/// The seeds' Python/FastAPI example, built in a pod: `auto` falls back to chroot isolation
/// without mounts, so pip and pytest run with no `/proc`. The test target (pytest at build
/// time) and the production image build, `kiln run` in the pod starts its Python, and the
/// image's layers are the host's.
fn fastapi_in_a_pod(confinement: &dyn Confinement, store: &Path, context: &Path, out: &Path) {
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let run = |args: &[&str]| -> String {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let output = confinement.kiln(&args, &epoch).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "kiln {args:?} in {}:\n{stderr}",
            confinement.describe()
        );
        format!("{}{stderr}", String::from_utf8_lossy(&output.stdout))
    };
    let context_arg = context.to_str().unwrap();
    let test = run(&[
        "build",
        "--progress",
        "plain",
        "--target",
        "test",
        context_arg,
    ]);
    assert_says_chroot(&test, confinement);
    assert!(test.contains(" passed"), "pytest did not run:\n{test}");
    let inside = out.join("inside.tar");
    run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "fastapi-demo",
        "-o",
        &format!("type=oci,dest={}", inside.display()),
        context_arg,
    ]);
    let python = run(&[
        "run",
        "fastapi-demo",
        "python",
        "-c",
        "import fastapi; print('ok')",
    ]);
    assert!(python.starts_with("ok\n"), "{python}");
    // pip's byte-code is not reproducible (marshal's references follow refcounts), so the
    // venv layer differs from build to build under any isolation: two host builds tell the
    // stable layers, and the pod's must equal them there.
    let layers = |archive: &Path| -> Vec<String> {
        skopeo_inspect(&format!("oci-archive:{}", archive.display()))["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect()
    };
    let mut host = Vec::new();
    for name in ["outside-1.tar", "outside-2.tar"] {
        let archive = out.join(name);
        run_ok(
            kiln_in(store)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args([
                    "build",
                    "-q",
                    "--no-cache",
                    "--isolation",
                    "namespaces",
                    "-o",
                ])
                .arg(format!("type=oci,dest={}", archive.display()))
                .arg(context),
        );
        host.push(layers(&archive));
    }
    let pod = layers(&inside);
    assert_eq!(pod.len(), host[0].len(), "{pod:?}\n{host:?}");
    let stable: Vec<usize> = (0..pod.len())
        .filter(|&i| host[0][i] == host[1][i])
        .collect();
    assert!(
        stable.len() + 1 >= pod.len(),
        "more than the venv varies: {host:?}"
    );
    for i in stable {
        assert_eq!(
            pod[i], host[0][i],
            "layer {i}: chroot in the emulated pod and namespaces on the host"
        );
    }
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_unshare,
        kiln_no_setpriv,
        kiln_no_flock,
        kiln_no_jq,
        kiln_no_mmdebstrap,
        kiln_no_skopeo
    ),
    ignore = "needs root, unshare, setpriv, flock, jq, mmdebstrap, skopeo"
)]
fn heavy_python_fastapi_builds_in_the_emulated_pod() {
    crate::examples::require_debian_bases();
    kiln_test::require_tool("skopeo");
    let emulation = Emulation::new(kiln_binary());
    let store = emulation.store();
    crate::examples::make_bases(&store, &["python"]);
    let context = crate::examples::prepare_fastapi(&store);
    let out = tempfile::tempdir().unwrap();
    fastapi_in_a_pod(&emulation, &store, &context, out.path());
}

#[test]
#[cfg_attr(
    any(
        kiln_no_root,
        kiln_no_runc,
        kiln_no_busybox,
        kiln_no_umoci,
        kiln_no_flock,
        kiln_no_jq,
        kiln_no_mmdebstrap,
        kiln_no_skopeo
    ),
    ignore = "needs root, runc, busybox, umoci, flock, jq, mmdebstrap, skopeo"
)]
fn heavy_python_fastapi_builds_in_the_runc_pod() {
    crate::examples::require_debian_bases();
    kiln_test::require_tool("skopeo");
    let out = tempfile::tempdir().unwrap();
    let context = crate::examples::examples_dir().join("python-fastapi");
    let mut pod = Pod::new(kiln_binary(), SeccompProfile::Docker);
    pod.share(out.path()).share(&context);
    // The bases are imported from outside into the pod's own store.
    let store = pod.rootfs().join(POD_KILN_ROOT.trim_start_matches('/'));
    crate::examples::make_bases(&store, &["python"]);
    crate::examples::prepare_fastapi(&store);
    fastapi_in_a_pod(&pod, &store, &context, out.path());
}
