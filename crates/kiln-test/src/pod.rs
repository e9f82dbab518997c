//! Runs the kiln binary as it runs in an unprivileged CI pod: root, Docker's default
//! capabilities (no `CAP_SYS_ADMIN`), a seccomp profile, no user namespaces (issue 18).
//!
//! Two ways, one interface ([`Confinement`]):
//! - [`Pod`]: a real container started by `runc` from a bundle whose rootfs is a busybox tree
//!   with the kiln binary and the shared libraries it needs. `config.json` mirrors what
//!   `docker run` (not `--privileged`) gives a container: root, Docker's 14 capabilities in
//!   the bounding, effective and permitted sets, a seccomp profile ([`SeccompProfile`]),
//!   Docker's masked and read-only paths and device rules, pid/mount/ipc/uts namespaces, the
//!   host network (so kiln reaches a loopback registry), no user namespace.
//! - [`Emulation`]: no container runtime. The command runs in a child user namespace that maps
//!   uids and gids 0–65535 one to one, with `user.max_user_namespaces` set to 0 inside it and
//!   the capability bounding set cut to Docker's with `setpriv`. Unlike the pod, `mknod` of a
//!   device fails there (only the initial user namespace may create device nodes).
//!
//! Host directories handed to [`Pod::share`] are bind-mounted at the same path inside, so a
//! test passes the same paths to kiln inside either confinement and outside.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::{busybox_rootfs, require_busybox, require_root, require_tool};

/// Docker's default capabilities (moby `oci/caps/defaults.go` DefaultCapabilities), as a
/// root process in a non-privileged container has them.
pub const DOCKER_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// [`DOCKER_CAPABILITIES`] as the bit mask `/proc/self/status` shows in `CapBnd`, `CapPrm`
/// and `CapEff` (`00000000a80425fb` in every `docker run` container).
pub const DOCKER_CAPABILITY_MASK: u64 = 0xa804_25fb;

/// Where kiln keeps its store inside a [`Pod`] (`KILN_ROOT`).
pub const POD_KILN_ROOT: &str = "/var/lib/kiln";

/// Where the kiln binary sits inside a [`Pod`].
pub const POD_KILN: &str = "/usr/local/bin/kiln";

/// The uid and gid count the [`Emulation`] maps one to one from 0.
pub const EMULATED_ID_COUNT: u32 = 65_536;

/// `CLONE_NEWUSER` from `<linux/sched.h>`.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Docker's mask of every namespace flag: `clone` is allowed only when none is set
/// (moby profiles `seccomp/default.json`, the rule for `clone` excluding `CAP_SYS_ADMIN`).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// `EPERM` and `ENOSYS`, the errnos seccomp profiles answer with.
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The Debian (golang-github-containers-common) profile that podman and CRI-O apply.
const CONTAINERS_SECCOMP: &str = "/usr/share/containers/seccomp.json";

/// Docker's masked paths (moby `oci/defaults.go`): bind-mounted over with /dev/null or an
/// empty read-only tmpfs.
const DOCKER_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths (moby `oci/defaults.go`).
const DOCKER_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default seccomp profile (moby/profiles `seccomp/default.json`, commit
/// cd3bed8061c7b7378b61fc6827c7885779417a75) evaluated as dockerd evaluates it for x86_64
/// and [`DOCKER_CAPABILITIES`]: the syscalls allowed without an argument filter. Everything
/// gated on `CAP_SYS_ADMIN` is absent (`mount`, `umount2`, `unshare`, `setns`, `pivot_root`,
/// `fsopen`, `open_tree`, `move_mount`, `keyctl`, `bpf`, …); the argument-filtered rules
/// are in [`docker_seccomp`]. Names this runc's libseccomp does not know are skipped by runc.
#[rustfmt::skip]
const DOCKER_ALLOWED_SYSCALLS: &[&str] = &["_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32", "chroot", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6", "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "riscv_hwprobe", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list", "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev"];

/// The seccomp profile a [`Pod`] runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompProfile {
    /// Docker's default profile for Docker's capabilities: `unshare`, `mount`, `setns`,
    /// `pivot_root` and the new mount API are denied with `EPERM`, `clone` with any namespace
    /// flag is denied and `clone3` answers `ENOSYS`. User namespaces are blocked.
    Docker,
    /// Debian's `/usr/share/containers/seccomp.json` (podman's and CRI-O's default), as
    /// shipped. It allows `unshare`, `clone` and `mount`, leaving the kernel's capability
    /// checks to refuse them; a root process without `CAP_SYS_ADMIN` CAN create a user
    /// namespace under it (and gain every capability inside). A control for the other two.
    Containers,
    /// [`SeccompProfile::Containers`] with user namespaces blocked by argument filters:
    /// `unshare` and `clone` with `CLONE_NEWUSER` fail with `EPERM`, `clone3` with `ENOSYS`
    /// (its flags sit in memory that seccomp cannot read; glibc then falls back to `clone`).
    ContainersNoUserns,
}

/// Something that runs commands as in an unprivileged pod.
pub trait Confinement {
    /// `program args…` confined, with `env` set inside. In a [`Pod`] `program` is looked up
    /// in the pod's rootfs (busybox applets, `kiln`), and the returned command's own
    /// environment does not reach inside: pass variables in `env`.
    fn command(&self, program: &str, args: &[&OsStr], env: &[(&str, &str)]) -> Command;

    /// The kiln binary confined, with `KILN_ROOT` at a store of this confinement's own,
    /// `KILN_ISOLATION` passed through when set and `env` set inside.
    fn kiln(&self, args: &[&OsStr], env: &[(&str, &str)]) -> Command;

    /// A short name for failure messages: `pod (docker seccomp)`, `emulation`.
    fn describe(&self) -> String;
}

/// Reads a capability set (`CapEff`, `CapBnd`, …) from `/proc/<pid>/status` text.
pub fn capability_set(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        u64::from_str_radix(value.trim(), 16).ok()
    })
}

/// Makes `tree` an OCI image with `kiln import` and unpacks it with umoci into
/// `dir/rootfs`, the pods' root filesystem.
fn image_rootfs(kiln: &Path, tree: &Path, dir: &Path) {
    require_tool("umoci");
    let layout = dir.join("image");
    let out = Command::new(kiln)
        .arg("import")
        .arg(tree)
        .args(["-t", "kiln-pod:latest", "-o"])
        .arg(format!("type=oci,dest={},tar=false", layout.display()))
        .env("KILN_ROOT", dir.join("import-store"))
        .output()
        .expect("spawning kiln import");
    assert!(
        out.status.success(),
        "kiln import of the pod image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.join("unpacked");
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .output()
        .expect("spawning umoci");
    assert!(
        out.status.success(),
        "umoci unpack of the pod image failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs_err::rename(bundle.join("rootfs"), dir.join("rootfs")).expect("moving the rootfs");
    for done in [layout, bundle, dir.join("import-store"), tree.to_path_buf()] {
        fs_err::remove_dir_all(done).expect("removing the pod image's scratch");
    }
}

/// A runc container per command, from a busybox rootfs holding the kiln binary.
///
/// Each [`Confinement::command`] writes a fresh bundle whose `config.json` points at the one
/// shared rootfs, so files (the kiln store under [`POD_KILN_ROOT`]) persist between commands
/// as in a pod that runs several steps. Container ids are unique per pod and process;
/// dropping the pod force-deletes every container it started and removes its files.
#[derive(Debug)]
pub struct Pod {
    dir: tempfile::TempDir,
    profile: SeccompProfile,
    shared: Vec<PathBuf>,
    started: Mutex<Vec<String>>,
}

impl Pod {
    /// A pod holding `kiln` (a host path, copied in with its shared libraries) under
    /// `profile`. Panics naming what is missing: root, runc, busybox, `ldd`, or the
    /// containers profile for [`SeccompProfile::Containers`], or umoci (the pod's image is made
    /// with `kiln import` and unpacked with umoci).
    pub fn new(kiln: &Path, profile: SeccompProfile) -> Self {
        require_root();
        require_tool("runc");
        require_busybox();
        let dir = tempfile::Builder::new()
            .prefix("kiln-pod.")
            .tempdir()
            .expect("temp dir for the pod");
        let tree = busybox_rootfs(&dir.path().join("tree"));
        install_binary(kiln, &tree, POD_KILN);
        fs_err::create_dir_all(tree.join(POD_KILN_ROOT.trim_start_matches('/')))
            .expect("creating the pod's kiln root");
        let resolv = fs_err::read_to_string("/etc/resolv.conf").unwrap_or_default();
        fs_err::write(tree.join("etc/resolv.conf"), resolv).expect("writing etc/resolv.conf");
        fs_err::write(
            tree.join("etc/hosts"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        .expect("writing etc/hosts");
        // The pod's image is made as a CI job's image would be: `kiln import` of the tree,
        // then unpacked by an independent tool into the bundle's root filesystem.
        image_rootfs(kiln, &tree, dir.path());
        fs_err::create_dir_all(dir.path().join("state")).expect("creating runc's state dir");
        fs_err::create_dir_all(dir.path().join("bundles")).expect("creating the bundles dir");
        // Fail at construction, not in the first container, when the profile is unusable.
        seccomp(profile);
        let pod = Self {
            dir,
            profile,
            shared: Vec::new(),
            started: Mutex::new(Vec::new()),
        };
        let out = pod
            .command("true", &[], &[])
            .output()
            .expect("spawning runc");
        assert!(
            out.status.success(),
            "runc cannot start a container on this host ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        pod
    }

    /// Bind-mounts the host directory `host` (read-write) at the same path in every
    /// container started from now on, like `docker run -v host:host`.
    pub fn share(&mut self, host: &Path) -> &mut Self {
        assert!(
            host.is_absolute() && host.is_dir(),
            "a pod shares existing absolute directories, not {}",
            host.display()
        );
        self.shared.push(host.to_owned());
        self
    }

    /// The pod's root filesystem on the host.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// The profile this pod runs under.
    pub fn profile(&self) -> SeccompProfile {
        self.profile
    }

    /// The OCI runtime configuration for one container running `args` with `env`.
    fn config(&self, args: &[String], env: &[String]) -> Value {
        let mut mounts = docker_mounts();
        for host in &self.shared {
            mounts.push(json!({
                "destination": host,
                "type": "bind",
                "source": host,
                "options": ["rbind", "rprivate", "rw"],
            }));
        }
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": args,
                "env": env,
                "cwd": "/",
                "capabilities": {
                    "bounding": DOCKER_CAPABILITIES,
                    "effective": DOCKER_CAPABILITIES,
                    "permitted": DOCKER_CAPABILITIES,
                },
                // Docker's default: no_new_privs stays off unless
                // `--security-opt no-new-privileges`.
                "noNewPrivileges": false,
            },
            "root": { "path": self.rootfs(), "readonly": false },
            "hostname": "kiln-pod",
            "mounts": mounts,
            "linux": {
                // No network namespace (`--network host`), no user namespace: container
                // root is host root without CAP_SYS_ADMIN.
                "namespaces": [
                    { "type": "pid" },
                    { "type": "ipc" },
                    { "type": "uts" },
                    { "type": "mount" },
                ],
                "resources": {
                    // Docker: deny every device, but allow mknod of any (`c *:* m`,
                    // `b *:* m`); runc adds its default devices (null, zero, tty, …).
                    "devices": [
                        { "allow": false, "access": "rwm" },
                        { "allow": true, "type": "c", "access": "m" },
                        { "allow": true, "type": "b", "access": "m" },
                    ],
                },
                "maskedPaths": DOCKER_MASKED_PATHS,
                "readonlyPaths": DOCKER_READONLY_PATHS,
                "seccomp": seccomp(self.profile),
            },
        })
    }
}

impl Confinement for Pod {
    fn command(&self, program: &str, args: &[&OsStr], env: &[(&str, &str)]) -> Command {
        let mut argv = vec![program.to_owned()];
        argv.extend(args.iter().map(|a| {
            a.to_str()
                .unwrap_or_else(|| {
                    panic!("pod arguments must be UTF-8 (config.json): {}", a.display())
                })
                .to_owned()
        }));
        let mut vars = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            "HOME=/root".to_owned(),
        ];
        vars.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        let config = self.config(&argv, &vars);

        let mut started = self.started.lock().expect("pod container list");
        let serial = started.len();
        // Unique across pods and test processes: the pod's temp dir name is random. runc's
        // cgroups are named after the id, so it must be unique host-wide.
        let name = self
            .dir
            .path()
            .file_name()
            .and_then(OsStr::to_str)
            .expect("a UTF-8 temp dir name")
            .replace('.', "-");
        let id = format!("{name}-{serial}");
        let bundle = self.dir.path().join("bundles").join(&id);
        fs_err::create_dir_all(&bundle).expect("creating a bundle");
        fs_err::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config).expect("config.json"),
        )
        .expect("writing config.json");
        started.push(id.clone());

        let mut cmd = Command::new("runc");
        cmd.arg("--root")
            .arg(self.dir.path().join("state"))
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null());
        cmd
    }

    fn kiln(&self, args: &[&OsStr], env: &[(&str, &str)]) -> Command {
        let isolation = std::env::var("KILN_ISOLATION").ok();
        let mut vars = vec![("KILN_ROOT", POD_KILN_ROOT)];
        if let Some(isolation) = &isolation {
            vars.push(("KILN_ISOLATION", isolation));
        }
        vars.extend_from_slice(env);
        self.command(POD_KILN, args, &vars)
    }

    fn describe(&self) -> String {
        format!("pod ({:?} seccomp)", self.profile)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // `runc run` deletes its container when the process exits; this catches the ones a
        // panicking or killed test left behind.
        let started = self
            .started
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for id in started {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.dir.path().join("state"))
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Copies the executable `binary` to `inside` in `rootfs` with the shared libraries `ldd`
/// lists for it, each at its own path.
fn install_binary(binary: &Path, rootfs: &Path, inside: &str) {
    let copy = |from: &Path, to: &str| {
        let target = rootfs.join(to.trim_start_matches('/'));
        fs_err::create_dir_all(target.parent().expect("a parent dir"))
            .unwrap_or_else(|e| panic!("{e}"));
        // fs_err::copy follows symbolic links: the library itself lands under its soname.
        fs_err::copy(from, &target).unwrap_or_else(|e| panic!("{e}"));
    };
    copy(binary, inside);
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("running ldd (libc-bin) on {}: {e}", binary.display()));
    let listing = String::from_utf8_lossy(&out.stdout);
    // A static binary: ldd says "not a dynamic executable" and fails; nothing to copy.
    if !out.status.success() {
        return;
    }
    for library in shared_libraries(&listing) {
        copy(&library, library.to_str().expect("a UTF-8 library path"));
    }
}

/// The library paths in `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` and the loader
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; `linux-vdso.so.1` has no file.
fn shared_libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The mounts `docker run` gives every container (moby `oci/defaults.go`).
fn docker_mounts() -> Vec<Value> {
    vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"] }),
        json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["ro", "nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"] }),
    ]
}

/// The libseccomp architectures a profile covers on this host, as dockerd picks them from
/// a profile's `archMap`.
fn seccomp_architectures() -> (&'static str, Vec<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => (
            "amd64",
            vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        ),
        "aarch64" => ("arm64", vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        other => panic!("the pod harness knows no seccomp architectures for {other}"),
    }
}

/// The OCI `linux.seccomp` object for `profile`.
fn seccomp(profile: SeccompProfile) -> Value {
    match profile {
        SeccompProfile::Docker => docker_seccomp(),
        SeccompProfile::Containers => containers_seccomp(false),
        SeccompProfile::ContainersNoUserns => containers_seccomp(true),
    }
}

/// A rule letting syscall `name` through when `(arg0 & mask) == 0`.
fn allow_unless_flags(name: &str, mask: u64) -> Value {
    json!({
        "names": [name],
        "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": mask, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }],
    })
}

/// Docker's default profile for Docker's capabilities (see [`DOCKER_ALLOWED_SYSCALLS`]).
fn docker_seccomp() -> Value {
    let (_, architectures) = seccomp_architectures();
    let mut syscalls =
        vec![json!({ "names": DOCKER_ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW" })];
    // socket: every address family but AF_ALG (38) and AF_VSOCK (40), written as Docker
    // writes it.
    for (op, value) in [
        ("SCMP_CMP_LT", 38),
        ("SCMP_CMP_EQ", 39),
        ("SCMP_CMP_GT", 40),
    ] {
        syscalls.push(json!({
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": value, "valueTwo": 0, "op": op }],
        }));
    }
    // personality: only the values Docker lists (PER_LINUX, PER_LINUX32, UNAME26, …, query).
    for value in [0_u64, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ" }],
        }));
    }
    syscalls.push(allow_unless_flags("clone", CLONE_NAMESPACE_FLAGS));
    syscalls.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

/// [`CONTAINERS_SECCOMP`] converted as dockerd and podman convert their profile format to
/// OCI: a rule is kept when its `includes` (architectures, and every capability) are met
/// and none of its `excludes` is; `user_namespaces_blocked` adds the argument filters of
/// [`SeccompProfile::ContainersNoUserns`].
fn containers_seccomp(user_namespaces_blocked: bool) -> Value {
    let text = fs_err::read_to_string(CONTAINERS_SECCOMP).unwrap_or_else(|e| {
        panic!("this pod needs podman's seccomp profile (apt-get install golang-github-containers-common): {e}")
    });
    let profile: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{CONTAINERS_SECCOMP} is not JSON: {e}"));
    let (arch, architectures) = seccomp_architectures();
    let has = |list: &Value, item: &str| {
        list.as_array()
            .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(item)))
    };
    let is_empty = |list: &Value| list.as_array().is_none_or(Vec::is_empty);
    let mut syscalls = Vec::new();
    for rule in profile["syscalls"].as_array().expect("a syscalls array") {
        let (includes, excludes) = (&rule["includes"], &rule["excludes"]);
        assert!(
            includes.get("minKernel").is_none() && excludes.get("minKernel").is_none(),
            "{CONTAINERS_SECCOMP}: minKernel conditions are not handled: {rule}"
        );
        let is_kept = !has(&excludes["arches"], arch)
            && !DOCKER_CAPABILITIES
                .iter()
                .any(|cap| has(&excludes["caps"], cap))
            && (is_empty(&includes["arches"]) || has(&includes["arches"], arch))
            && includes["caps"].as_array().is_none_or(|caps| {
                caps.iter()
                    .all(|cap| DOCKER_CAPABILITIES.iter().any(|c| cap.as_str() == Some(c)))
            });
        if !is_kept {
            continue;
        }
        let mut names: Vec<Value> = rule["names"].as_array().expect("names").clone();
        if user_namespaces_blocked {
            names.retain(|n| !matches!(n.as_str(), Some("unshare" | "clone" | "clone3")));
            if names.is_empty() {
                continue;
            }
        }
        let mut kept = json!({ "names": names, "action": rule["action"] });
        if let Some(errno) = rule.get("errnoRet").filter(|e| !e.is_null()) {
            kept["errnoRet"] = errno.clone();
        }
        if let Some(args) = rule.get("args").filter(|a| !is_empty(a)) {
            kept["args"] = args.clone();
        }
        syscalls.push(kept);
    }
    if user_namespaces_blocked {
        for name in ["unshare", "clone"] {
            syscalls.push(allow_unless_flags(name, CLONE_NEWUSER));
            syscalls.push(json!({
                "names": [name],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{ "index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                           "op": "SCMP_CMP_MASKED_EQ" }],
            }));
        }
        syscalls
            .push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    }
    json!({
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile["defaultErrnoRet"],
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

/// The user-namespace emulation of a pod, run by `sh`: `$1` is a scratch dir, the rest the
/// command. `unshare --map-users` goes through newuidmap, which refuses root a range it has
/// no /etc/subuid entry for, so the parent (host root) writes the maps itself once the
/// child is in its namespace, then lets it go on. When `unshare` itself fails, the subshell
/// releases the parent instead of leaving it waiting on the FIFO.
const USERNS_SCRIPT: &str = r#"set -u
sync=$(mktemp -d "$1/userns.XXXXXX") || exit 125
shift
trap 'rm -rf "$sync"' EXIT
mkfifo "$sync/ready" "$sync/go" || exit 125
(
  unshare --user -- sh -c 'echo "$$" > "$0/ready"; read -r _ < "$0/go"; exec "$@"' "$sync" "$@"
  status=$?
  [ -e "$sync/released" ] || echo failed > "$sync/ready"
  exit "$status"
) &
job=$!
read -r child < "$sync/ready"
touch "$sync/released"
if [ "$child" = failed ]; then
  echo "kiln-test emulation: unshare --user failed" >&2
  wait "$job"
  exit 125
fi
if ! { echo "0 0 $KILN_EMULATED_IDS" > "/proc/$child/uid_map" &&
       echo "0 0 $KILN_EMULATED_IDS" > "/proc/$child/gid_map"; }; then
  echo "kiln-test emulation: cannot write the id maps of process $child" >&2
  kill -KILL "$child"
  wait "$job"
  exit 125
fi
echo > "$sync/go"
wait "$job"
"#;

/// Inside the new user namespace, still with every capability in it: no further user
/// namespaces, then the bounding set cut to Docker's before exec.
const CONFINE_SCRIPT: &str = r#"echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set "$KILN_EMULATED_BOUNDING" --inh-caps -all -- "$@""#;

/// The pod without a container runtime: a child user namespace mapping uids and gids
/// 0–65535 one to one, `user.max_user_namespaces` 0 inside, the bounding set cut to
/// Docker's capabilities. The host's mounts, pid and network namespaces stay.
#[derive(Debug)]
pub struct Emulation {
    dir: tempfile::TempDir,
    kiln: PathBuf,
}

impl Emulation {
    /// An emulated pod running the host binary `kiln`. Panics naming what is missing: root
    /// (to map the id range), util-linux's `unshare` and `setpriv`.
    pub fn new(kiln: &Path) -> Self {
        require_root();
        require_tool("unshare");
        require_tool("setpriv");
        assert!(kiln.is_file(), "no kiln binary at {}", kiln.display());
        let dir = tempfile::Builder::new()
            .prefix("kiln-emulated-pod.")
            .tempdir()
            .expect("temp dir for the emulation");
        fs_err::create_dir_all(dir.path().join("store")).expect("creating the store");
        Self {
            dir,
            kiln: kiln.to_owned(),
        }
    }

    /// The store kiln uses under this emulation (`KILN_ROOT`).
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

/// `setpriv --bounding-set` syntax for [`DOCKER_CAPABILITIES`]: `-all,+chown,…`.
fn setpriv_bounding_set() -> String {
    let mut set = "-all".to_owned();
    for cap in DOCKER_CAPABILITIES {
        set.push_str(",+");
        set.push_str(&cap.trim_start_matches("CAP_").to_ascii_lowercase());
    }
    set
}

impl Confinement for Emulation {
    fn command(&self, program: &str, args: &[&OsStr], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(USERNS_SCRIPT)
            .arg("sh")
            .arg(self.dir.path())
            .args(["sh", "-c", CONFINE_SCRIPT, "sh", program])
            .args(args)
            .env("KILN_EMULATED_IDS", EMULATED_ID_COUNT.to_string())
            .env("KILN_EMULATED_BOUNDING", setpriv_bounding_set())
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        cmd
    }

    fn kiln(&self, args: &[&OsStr], env: &[(&str, &str)]) -> Command {
        let kiln = self.kiln.to_str().expect("a UTF-8 kiln path");
        let mut cmd = self.command(kiln, args, &[]);
        // Like the tests' `kiln_in`: a SOURCE_DATE_EPOCH must be asked for in `env`.
        cmd.env_remove("SOURCE_DATE_EPOCH")
            .env("KILN_ROOT", self.store())
            .envs(env.iter().copied());
        cmd
    }

    fn describe(&self) -> String {
        "emulation (child user namespace)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_capabilities_make_the_mask_docker_containers_show() {
        // Bit numbers from <linux/capability.h>.
        let bits = |name: &str| match name {
            "CAP_CHOWN" => 0,
            "CAP_DAC_OVERRIDE" => 1,
            "CAP_FOWNER" => 3,
            "CAP_FSETID" => 4,
            "CAP_KILL" => 5,
            "CAP_SETGID" => 6,
            "CAP_SETUID" => 7,
            "CAP_SETPCAP" => 8,
            "CAP_NET_BIND_SERVICE" => 10,
            "CAP_NET_RAW" => 13,
            "CAP_SYS_CHROOT" => 18,
            "CAP_MKNOD" => 27,
            "CAP_AUDIT_WRITE" => 29,
            "CAP_SETFCAP" => 31,
            other => panic!("unexpected {other}"),
        };
        let mask = DOCKER_CAPABILITIES
            .iter()
            .fold(0_u64, |m, cap| m | 1 << bits(cap));
        assert_eq!(mask, DOCKER_CAPABILITY_MASK);
        assert_eq!(
            setpriv_bounding_set(),
            "-all,+chown,+dac_override,+fsetid,+fowner,+mknod,+net_raw,+setgid,+setuid,\
             +setfcap,+setpcap,+net_bind_service,+sys_chroot,+kill,+audit_write"
        );
    }

    #[test]
    fn capability_sets_are_read_from_status_text() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n";
        assert_eq!(
            capability_set(status, "CapEff"),
            Some(DOCKER_CAPABILITY_MASK)
        );
        assert_eq!(capability_set(status, "CapInh"), Some(0));
        assert_eq!(capability_set(status, "CapBnd"), None);
    }

    #[test]
    fn ldd_output_names_libraries_and_the_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            shared_libraries(ldd),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn docker_profile_has_no_namespace_or_mount_syscalls() {
        for name in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "fsopen",
            "open_tree",
            "move_mount",
            "keyctl",
            "clone",
            "clone3",
        ] {
            assert!(
                !DOCKER_ALLOWED_SYSCALLS.contains(&name),
                "{name} is allowed unconditionally"
            );
        }
        let profile = docker_seccomp();
        let clone = profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"][0] == "clone")
            .unwrap();
        assert_eq!(clone["args"][0]["value"], CLONE_NAMESPACE_FLAGS);
        assert_eq!(CLONE_NAMESPACE_FLAGS & CLONE_NEWUSER, CLONE_NEWUSER);
    }
}
