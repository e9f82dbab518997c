//! Build attestations: the SBOM scanner and SPDX writer ([`sbom`]).
pub(crate) mod sbom;
