#![doc = include_str!("../README.md")]
//! `kiln-sandbox` — the RUN executor.
//!
//! Main types: [`Sandbox`] (runs a [`RunSpec`], streams output, returns a [`RunOutcome`]),
//! [`Syscalls`] (the seam every mount and namespace operation goes through, with
//! [`RecordingSyscalls`] for tests), [`run_helper_if_requested`] (the helper entry point every
//! helper executable calls first thing in `main`), [`reexec_in_user_namespace`] (kiln run by
//! an ordinary user moves into a user namespace mapping its subordinate ids, before anything
//! else), [`find_emulator`] (the binfmt_misc handler, qemu with the `F` flag, that runs a
//! foreign platform's RUN steps). Neighbours: the build engine (`kiln-build`)
//! calls it for each RUN and hands the upperdir to `kiln-oci`'s layer writer; `kiln run` uses
//! it directly.
#![expect(
    unsafe_code,
    reason = "the sandbox is kiln's one place for raw syscalls: fork, execve, signal handlers, \
              mount_setattr and interface ioctls have no safe wrapper; each block says why it is sound"
)]

mod cancel;
mod cgroup;
mod chroot;
mod confine;
mod copyup;
mod emulation;
mod error;
mod fsmeta;
mod helper;
mod init;
mod namespaces;
mod overlay;
mod process;
mod protocol;
mod rootfs;
mod rootless;
mod sandbox;
mod spec;
mod syscalls;
mod upper;
mod user;

pub use cancel::CancelToken;
pub use chroot::NO_MOUNTS_ENV;
pub use confine::{DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, seccomp_programs};
pub use emulation::{DEFAULT_BINFMT_DIR, EmulationError, Emulator, find_emulator, needs_emulation};
pub use error::{SandboxError, UserError};
pub use helper::{FORCE_COPY_ENV, run_helper_if_requested};
pub use overlay::{OPAQUE_XATTR_TRUSTED, OPAQUE_XATTR_USER};
pub use protocol::HELPER_MARKER;
pub use rootfs::{RootSource, RootfsPlan, Stub, setup_rootfs};
pub use rootless::{
    ROOTLESS_REEXEC_ENV, Reexec, is_host_root, is_rootless_reexec, reexec_in_user_namespace,
};
pub use sandbox::{IsolationProbe, Sandbox, SandboxConfig};
pub use spec::{
    ChrootReuse, DEFAULT_HOSTNAME, DEFAULT_PATH, DEFAULT_PIDS_LIMIT, ExitStatus, ExtraMount,
    Isolation, Network, RootfsMode, RunOutcome, RunSpec, Security, Stream, Ulimit,
};
pub use syscalls::{FileKind, MountOptions, Op, RealSyscalls, RecordingSyscalls, Syscalls};
pub use user::{ExecUser, resolve_user};
