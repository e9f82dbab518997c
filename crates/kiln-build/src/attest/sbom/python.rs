//! Python distributions from their core metadata (PyPA "Core metadata specifications"): a
//! `*.dist-info/METADATA` (wheels, pip), a `*.egg-info/PKG-INFO` (setuptools) or an
//! `*.egg-info` file (distutils), wherever they are: site-packages, Debian's
//! dist-packages, virtualenvs.

use std::path::Path;

use super::fields::parse_header;
use super::purl::Purl;
use super::{Package, PackageKind};

/// Whether the file at `rel` (below the root) is a Python metadata file.
pub(super) fn is_candidate(rel: &Path) -> bool {
    let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let parent = rel
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    (name == "METADATA" && parent.ends_with(".dist-info"))
        || (name == "PKG-INFO" && parent.ends_with(".egg-info"))
        || name.ends_with(".egg-info")
}

/// The distribution a metadata file `text` at `source` describes, or `None` (logged) when
/// it names no name or version.
pub(super) fn parse_metadata(text: &str, source: &str) -> Option<Package> {
    let header = parse_header(text);
    let (Some(name), Some(version)) = (header.get("Name"), header.get("Version")) else {
        tracing::warn!(
            source,
            "SBOM scan: Python metadata without Name or Version skipped"
        );
        return None;
    };
    // Metadata 2.4 (PEP 639): `License-Expression` is an SPDX expression; the older
    // `License` is free text, kept when it is one line (a whole licence text is no
    // declaration of which licence it is).
    let license = header
        .get("License-Expression")
        .or_else(|| {
            header
                .get("License")
                .filter(|l| !l.contains('\n') && !l.eq_ignore_ascii_case("UNKNOWN"))
        })
        .map(str::to_owned);
    let supplier = header
        .get("Author-email")
        .or_else(|| header.get("Author"))
        .filter(|a| !a.contains('\n') && !a.eq_ignore_ascii_case("UNKNOWN"))
        .map(str::to_owned);
    let purl = Purl {
        kind: "pypi",
        name: &normalize_name(name),
        version,
        ..Purl::default()
    }
    .render();
    Some(Package {
        kind: PackageKind::Python,
        name: name.to_owned(),
        version: version.to_owned(),
        purl,
        license,
        supplier,
        source: source.to_owned(),
    })
}

/// PEP 503 normalisation, the purl spec's for `pypi`: lowercase, each run of `-`, `_`, `.`
/// one `-`.
pub(super) fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_separator {
                out.push('-');
            }
            in_separator = true;
        } else {
            out.extend(c.to_lowercase());
            in_separator = false;
        }
    }
    out
}
