// PLACEHOLDER: replaced by branch sbom
//! The SBOM scanner's interface (a placeholder: it finds no packages).
#![expect(dead_code, reason = "placeholder of the sbom branch's interface")]

use std::path::PathBuf;

/// The filesystem to scan.
#[derive(Debug)]
pub(crate) enum RootFs {
    /// A directory.
    Dir(PathBuf),
    /// Store snapshot directories, base layer first, with overlay whiteouts.
    Layers(Vec<PathBuf>),
}

/// A package's ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackageKind {
    Deb,
    Apk,
    Python,
    Npm,
    Go,
}

/// One package found.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) kind: PackageKind,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) purl: String,
    pub(crate) license: Option<String>,
    pub(crate) supplier: Option<String>,
    pub(crate) source: String,
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SbomError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The packages installed in `fs`.
#[expect(clippy::unnecessary_wraps, reason = "the sbom branch's signature")]
pub(crate) fn scan(fs: &RootFs) -> Result<Vec<Package>, SbomError> {
    let _ = fs;
    Ok(Vec::new())
}

/// What an SPDX document is made of.
pub(crate) struct SpdxInput<'a> {
    pub(crate) name: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) created: &'a str,
    pub(crate) creator_tool: &'a str,
    pub(crate) packages: &'a [Package],
}

/// The SPDX 2.3 JSON document of `input`.
pub(crate) fn spdx_json(input: &SpdxInput<'_>) -> Vec<u8> {
    let packages: Vec<serde_json::Value> = input
        .packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let _ = (p.kind, &p.license, &p.supplier, &p.source);
            serde_json::json!({
                "name": p.name,
                "SPDXID": format!("SPDXRef-Package-{i}"),
                "versionInfo": p.version,
                "downloadLocation": "NOASSERTION",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": p.purl,
                }],
            })
        })
        .collect();
    let document = serde_json::json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.name,
        "documentNamespace": input.namespace,
        "creationInfo": {
            "created": input.created,
            "creators": [format!("Tool: {}", input.creator_tool)],
        },
        "packages": packages,
    });
    serde_json::to_vec(&document).unwrap_or_default()
}
