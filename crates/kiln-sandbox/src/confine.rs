//! The confinement of a sandboxed command under [`Security::Sandbox`]: Docker's default
//! profile, the one BuildKit applies to every `RUN` through runc.
//!
//! * **Capabilities.** The bounding set is cut to [`DEFAULT_CAPABILITIES`] before the user
//!   switch; after it the permitted and effective sets are at most that set, the inheritable
//!   set is empty (as moby and containerd since CVE-2022-24769) and so is the ambient set.
//!   These are capabilities of the sandbox's user namespace, which is owned by the host's
//!   caller: none of them reaches a resource of the initial namespaces.
//! * **Seccomp.** [`seccomp_programs`] compiles moby's `profiles/seccomp/default.json` for
//!   that capability set with `seccompiler` (pure Rust, no libseccomp): an allow list whose
//!   other syscalls fail with `EPERM`; `socket(AF_VSOCK)` denied; `personality` only for the
//!   five harmless values; `clone` without namespace flags; `clone3` failing with `ENOSYS` so
//!   that libc falls back to `clone`. Keyrings, `kexec`, `bpf`, `perf_event_open`, `mount`,
//!   `unshare`, `setns`, module loading, `reboot`… are refused.
//! * **Masked and read-only paths** ([`MASKED_PATHS`], [`READONLY_PATHS`]) are mounted by the
//!   rootfs setup (`rootfs.rs`), as runc does: `/dev/null` over files, an empty read-only
//!   tmpfs over directories, read-only bind mounts over `/proc/sys` and the like.
//!
//! The filter is installed while the process still has `CAP_SYS_ADMIN` in its user namespace,
//! so `no_new_privs` is not needed and setuid programs keep working (runc's order when
//! `noNewPrivileges` is off).
//!
//! [`Security::Sandbox`]: crate::Security::Sandbox

use std::collections::BTreeMap;
use std::io;

use rustix::thread::{CapabilitySet, CapabilitySets};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Docker's default capability set (moby `oci/caps/defaults.go`), the only capabilities a
/// confined command can hold.
pub const DEFAULT_CAPABILITIES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// Paths hidden from a confined command (moby's `oci/defaults.go` `MaskedPaths`): a file gets
/// `/dev/null` bound over it, a directory an empty read-only tmpfs. Absent paths are skipped.
pub const MASKED_PATHS: [&str; 12] = [
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

/// Paths a confined command sees read-only (moby's `ReadonlyPaths`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `AF_VSOCK`, the one socket family Docker's profile refuses.
const AF_VSOCK: u64 = 40;
/// Namespace flags of `clone(2)` (`CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET`):
/// without `CAP_SYS_ADMIN` the profile allows `clone` only when none is set.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `personality(2)` values Docker's profile allows: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32|UNAME26`, and the query `0xffffffff`.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
/// `ENOSYS`, what `clone3` answers (glibc then uses `clone`, whose flags the filter can see).
const ENOSYS: u32 = 38;

/// `io_pgetevents`, which the `libc` crate does not name on every architecture.
#[cfg(target_arch = "x86_64")]
const SYS_IO_PGETEVENTS: libc::c_long = 333;
#[cfg(not(target_arch = "x86_64"))]
const SYS_IO_PGETEVENTS: libc::c_long = 292;

/// Syscalls Docker's profile allows unconditionally that exist on every 64-bit architecture
/// kiln supports (the generic table).
const ALLOWED_COMMON: &[libc::c_long] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_adjtimex,
    libc::SYS_bind,
    libc::SYS_brk,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_chdir,
    libc::SYS_chroot,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_getres,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_connect,
    libc::SYS_copy_file_range,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_fanotify_mark,
    libc::SYS_fchdir,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_fcntl,
    libc::SYS_fdatasync,
    libc::SYS_fgetxattr,
    libc::SYS_flistxattr,
    libc::SYS_flock,
    libc::SYS_fremovexattr,
    libc::SYS_fsetxattr,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fsync,
    libc::SYS_ftruncate,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_getcpu,
    libc::SYS_getcwd,
    libc::SYS_getdents64,
    libc::SYS_getegid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getgroups,
    libc::SYS_getitimer,
    libc::SYS_getpeername,
    libc::SYS_getpgid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_getpriority,
    libc::SYS_getrandom,
    libc::SYS_getresgid,
    libc::SYS_getresuid,
    libc::SYS_getrlimit,
    libc::SYS_get_robust_list,
    libc::SYS_getrusage,
    libc::SYS_getsid,
    libc::SYS_getsockname,
    libc::SYS_getsockopt,
    libc::SYS_gettid,
    libc::SYS_gettimeofday,
    libc::SYS_getuid,
    libc::SYS_getxattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel,
    libc::SYS_ioctl,
    libc::SYS_io_destroy,
    libc::SYS_io_getevents,
    SYS_IO_PGETEVENTS,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kill,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_restrict_self,
    libc::SYS_lgetxattr,
    libc::SYS_linkat,
    libc::SYS_listen,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_lremovexattr,
    libc::SYS_lseek,
    libc::SYS_lsetxattr,
    libc::SYS_madvise,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_mincore,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_mlockall,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify,
    libc::SYS_mq_open,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink,
    libc::SYS_mremap,
    libc::SYS_msgctl,
    libc::SYS_msgget,
    libc::SYS_msgrcv,
    libc::SYS_msgsnd,
    libc::SYS_msync,
    libc::SYS_munlock,
    libc::SYS_munlockall,
    libc::SYS_munmap,
    libc::SYS_name_to_handle_at,
    libc::SYS_nanosleep,
    libc::SYS_newfstatat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pipe2,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_ppoll,
    libc::SYS_prctl,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_preadv2,
    libc::SYS_prlimit64,
    libc::SYS_process_mrelease,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pselect6,
    libc::SYS_ptrace,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_pwritev2,
    libc::SYS_read,
    libc::SYS_readahead,
    libc::SYS_readlinkat,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmmsg,
    libc::SYS_recvmsg,
    libc::SYS_remap_file_pages,
    libc::SYS_removexattr,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getattr,
    libc::SYS_sched_getparam,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_setattr,
    libc::SYS_sched_setparam,
    libc::SYS_sched_setscheduler,
    libc::SYS_sched_yield,
    libc::SYS_seccomp,
    libc::SYS_semctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_sendfile,
    libc::SYS_sendmmsg,
    libc::SYS_sendmsg,
    libc::SYS_sendto,
    libc::SYS_setfsgid,
    libc::SYS_setfsuid,
    libc::SYS_setgid,
    libc::SYS_setgroups,
    libc::SYS_setitimer,
    libc::SYS_setpgid,
    libc::SYS_setpriority,
    libc::SYS_setregid,
    libc::SYS_setresgid,
    libc::SYS_setresuid,
    libc::SYS_setreuid,
    libc::SYS_setrlimit,
    libc::SYS_set_robust_list,
    libc::SYS_setsid,
    libc::SYS_setsockopt,
    libc::SYS_set_tid_address,
    libc::SYS_setuid,
    libc::SYS_setxattr,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_shmdt,
    libc::SYS_shmget,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
    libc::SYS_signalfd4,
    libc::SYS_socketpair,
    libc::SYS_splice,
    libc::SYS_statfs,
    libc::SYS_statx,
    libc::SYS_symlinkat,
    libc::SYS_sync,
    libc::SYS_sync_file_range,
    libc::SYS_syncfs,
    libc::SYS_sysinfo,
    libc::SYS_tee,
    libc::SYS_tgkill,
    libc::SYS_timer_create,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_gettime,
    libc::SYS_timer_settime,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime,
    libc::SYS_times,
    libc::SYS_tkill,
    libc::SYS_truncate,
    libc::SYS_umask,
    libc::SYS_uname,
    libc::SYS_unlinkat,
    libc::SYS_utimensat,
    libc::SYS_vmsplice,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_write,
    libc::SYS_writev,
];

/// The x86-64 legacy syscalls of the profile (and `arch_prctl`, `modify_ldt`).
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[libc::c_long] = &[
    libc::SYS_access,
    libc::SYS_alarm,
    libc::SYS_arch_prctl,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_creat,
    libc::SYS_dup2,
    libc::SYS_epoll_create,
    libc::SYS_epoll_ctl_old,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_wait_old,
    libc::SYS_eventfd,
    libc::SYS_fork,
    libc::SYS_futimesat,
    libc::SYS_getdents,
    libc::SYS_getpgrp,
    libc::SYS_get_thread_area,
    libc::SYS_inotify_init,
    libc::SYS_lchown,
    libc::SYS_link,
    libc::SYS_lstat,
    libc::SYS_memfd_secret,
    libc::SYS_mkdir,
    libc::SYS_mknod,
    libc::SYS_modify_ldt,
    libc::SYS_open,
    libc::SYS_pause,
    libc::SYS_pipe,
    libc::SYS_poll,
    libc::SYS_readlink,
    libc::SYS_rename,
    libc::SYS_rmdir,
    libc::SYS_select,
    libc::SYS_set_thread_area,
    libc::SYS_signalfd,
    libc::SYS_stat,
    libc::SYS_symlink,
    libc::SYS_time,
    libc::SYS_unlink,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_vfork,
];

/// aarch64 has only the generic table.
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[libc::c_long] = &[];

#[cfg(target_arch = "x86_64")]
const TARGET_ARCH: Option<seccompiler::TargetArch> = Some(seccompiler::TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const TARGET_ARCH: Option<seccompiler::TargetArch> = Some(seccompiler::TargetArch::aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TARGET_ARCH: Option<seccompiler::TargetArch> = None;

fn condition(index: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompRule {
    let condition =
        SeccompCondition::new(index, len, op, value).expect("argument indexes below 6 are valid");
    SeccompRule::new(vec![condition]).expect("a rule with one condition is valid")
}

/// The BPF programs of Docker's default seccomp profile for [`DEFAULT_CAPABILITIES`] on this
/// architecture, in the order to install them (the kernel runs every installed filter and
/// takes the strictest answer): the allow list, then the `clone3` → `ENOSYS` override.
/// Syscalls of another architecture (32-bit x86 on x86-64) end the process: stricter than
/// Docker, which allows the 32-bit tables too.
pub fn seccomp_programs() -> io::Result<Vec<BpfProgram>> {
    let arch = TARGET_ARCH.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "kiln has no seccomp profile for {}: run the step with --security=insecure",
                std::env::consts::ARCH
            ),
        )
    })?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &syscall in ALLOWED_COMMON.iter().chain(ALLOWED_ARCH) {
        rules.insert(syscall, Vec::new());
    }
    // clone3 passes this filter and is answered by the second one.
    rules.insert(libc::SYS_clone3, Vec::new());
    rules.insert(
        libc::SYS_socket,
        vec![condition(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            AF_VSOCK,
        )],
    );
    rules.insert(
        libc::SYS_personality,
        PERSONALITIES
            .iter()
            .map(|&value| condition(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value))
            .collect(),
    );
    rules.insert(
        libc::SYS_clone,
        vec![condition(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS),
            0,
        )],
    );
    let compile = |filter: Result<SeccompFilter, seccompiler::BackendError>| {
        filter
            .and_then(BpfProgram::try_from)
            .map_err(|err| io::Error::other(format!("compiling the seccomp profile: {err}")))
    };
    let allow_list = compile(SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM.unsigned_abs()),
        SeccompAction::Allow,
        arch,
    ))?;
    let clone3 = compile(SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(ENOSYS),
        arch,
    ))?;
    Ok(vec![allow_list, clone3])
}

/// Docker's default set less `CAP_SYS_CHROOT` and `CAP_MKNOD`, for chroot isolation: a
/// second `chroot` is the classic way out of one, and without a `nodev` mount or a devices
/// cgroup a node the command makes could open a host device.
pub(crate) const CHROOT_CAPABILITIES: CapabilitySet = DEFAULT_CAPABILITIES
    .difference(CapabilitySet::SYS_CHROOT)
    .difference(CapabilitySet::MKNOD);

/// Whether this process may install a seccomp filter without `no_new_privs` (which would
/// stop setuid programs in the command): it needs `CAP_SYS_ADMIN`.
pub(crate) fn can_install_seccomp() -> bool {
    rustix::thread::capabilities(None)
        .is_ok_and(|sets| sets.effective.contains(CapabilitySet::SYS_ADMIN))
}

/// First half, before the user switch (still holding `CAP_SETPCAP`, and `CAP_SYS_ADMIN` when
/// there are `programs`): installs the seccomp filters and cuts the bounding set to `keep`.
pub(crate) fn confine_before_user_switch(
    programs: &[BpfProgram],
    keep: CapabilitySet,
) -> io::Result<()> {
    for program in programs {
        install_filter(program)?;
    }
    for bit in 0..64 {
        let capability = CapabilitySet::from_bits_retain(1 << bit);
        if keep.contains(capability) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(capability) {
            Ok(()) => {}
            // Beyond the kernel's last capability.
            Err(rustix::io::Errno::INVAL) => break,
            Err(err) => {
                return Err(io::Error::new(
                    io::Error::from(err).kind(),
                    format!("dropping capability {bit} from the bounding set: {err}"),
                ));
            }
        }
    }
    Ok(())
}

/// `seccomp(SECCOMP_SET_MODE_FILTER)` without `no_new_privs` (which `seccompiler`'s own
/// `apply_filter` sets, and which would stop setuid programs such as `su` from working, unlike
/// under Docker). Allowed because the caller holds `CAP_SYS_ADMIN` in its user namespace.
fn install_filter(program: &BpfProgram) -> io::Result<()> {
    let filter: Vec<libc::sock_filter> = program
        .iter()
        .map(|insn| libc::sock_filter {
            code: insn.code,
            jt: insn.jt,
            jf: insn.jf,
            k: insn.k,
        })
        .collect();
    let len = u16::try_from(filter.len()).map_err(|_| {
        io::Error::other(format!(
            "the seccomp program has {} instructions, more than BPF allows",
            filter.len()
        ))
    })?;
    let fprog = libc::sock_fprog {
        len,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` initialised instructions in `filter`, which outlives the
    // call; the kernel copies the program and keeps no pointer into our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            std::ptr::from_ref(&fprog),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        let err = io::Error::last_os_error();
        Err(io::Error::new(
            err.kind(),
            format!("installing the seccomp filter: {err}"),
        ))
    }
}

/// Second half, after the user switch: the permitted and effective sets keep at most `keep`
/// (a non-root user has none left already), the inheritable and ambient sets are emptied.
pub(crate) fn confine_after_user_switch(keep: CapabilitySet) -> io::Result<()> {
    let current = rustix::thread::capabilities(None)?;
    let permitted = current.permitted & keep;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: permitted,
            permitted,
            inheritable: CapabilitySet::empty(),
        },
    )?;
    rustix::thread::clear_ambient_capability_set().map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_compiles_for_this_architecture() {
        let programs = seccomp_programs().unwrap();
        assert_eq!(programs.len(), 2);
        // The allow list is large; the clone3 override is a handful of instructions.
        assert!(programs[0].len() > ALLOWED_COMMON.len());
        assert!(programs[1].len() < 16);
    }

    #[test]
    fn dangerous_syscalls_are_not_on_the_allow_list() {
        for syscall in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_kexec_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_reboot,
            libc::SYS_pivot_root,
            libc::SYS_open_by_handle_at,
            libc::SYS_fsopen,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_swapon,
            libc::SYS_settimeofday,
        ] {
            assert!(
                !ALLOWED_COMMON.contains(&syscall) && !ALLOWED_ARCH.contains(&syscall),
                "syscall {syscall} must not be allowed"
            );
        }
    }

    #[test]
    fn default_capabilities_are_dockers_fourteen() {
        assert_eq!(DEFAULT_CAPABILITIES.bits().count_ones(), 14);
        assert!(!DEFAULT_CAPABILITIES.contains(CapabilitySet::SYS_ADMIN));
        assert!(!DEFAULT_CAPABILITIES.contains(CapabilitySet::SYS_PTRACE));
        assert!(!DEFAULT_CAPABILITIES.contains(CapabilitySet::NET_ADMIN));
    }
}
