//! kiln: a daemonless, multi-stage container image builder.
//!
//! This facade re-exports the crates an embedder needs: the Dockerfile frontend as
//! [`dockerfile`], and the build API — [`Builder`] with its stream of progress [`Event`]s.
//!
//! ```no_run
//! let outcome = kiln::Builder::new("./app")
//!     .tag("app:dev")
//!     .build(&|event: kiln::Event| eprintln!("{event:?}"))?;
//! println!("{}", outcome.manifest_digest);
//! # Ok::<(), kiln::BuildError>(())
//! ```
//!
//! An executable that builds Dockerfiles with `RUN` steps is also the sandbox helper: call
//! [`run_sandbox_helper_if_requested`] first thing in `main` (see `examples/embed.rs`).
#![forbid(unsafe_code)]

pub use kiln_build::{
    BuildError, BuildOutcome, Builder, Event, EventSink, LogStream, NetworkDefault, Output,
    SecretSource, default_store_root, run_sandbox_helper_if_requested,
};
pub use kiln_dockerfile as dockerfile;
