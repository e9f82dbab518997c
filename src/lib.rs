//! kiln: a daemonless, multi-stage container image builder.
//!
//! This facade re-exports the crates an embedder needs. The frontend is available today as
//! [`dockerfile`]; the build API joins it as the engine lands.
#![forbid(unsafe_code)]

pub use kiln_dockerfile as dockerfile;
