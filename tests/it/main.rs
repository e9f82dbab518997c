//! Integration tests of the real `kiln` binary, one module per feature.

mod common;
mod import;
mod registry;
mod store;
