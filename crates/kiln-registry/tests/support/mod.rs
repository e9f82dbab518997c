//! Fixtures for the registry tests: a real registry, a fault proxy, a directory blob store
//! and test images.
#![allow(dead_code, reason = "each test uses a different subset")]

pub(crate) mod proxy;
pub(crate) mod registry;
pub(crate) mod store;
