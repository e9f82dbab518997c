//! Integration tests of the real `kiln` binary, one module per feature.

mod archives;
mod bad_input;
mod builds;
mod builds_add_url;
mod builds_buildah;
mod builds_cache;
mod builds_outputs;
mod builds_remote_cache;
mod common;
mod context_sources;
mod errors;
mod examples;
mod examples_lang;
mod import;
mod isolation;
mod names;
mod platforms;
mod pod;
mod registry;
mod rootless;
mod run;
mod run_options;
mod security;
mod store;
mod store_perms;
mod surface;
