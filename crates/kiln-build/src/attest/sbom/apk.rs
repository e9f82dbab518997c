//! Alpine packages from apk's database, `/lib/apk/db/installed`: one stanza per installed
//! package, `K:value` lines (`P` name, `V` version, `A` arch, `L` licence, `o` origin, `m`
//! maintainer, and the file list, which is not needed here), stanzas separated by a blank
//! line (apk-tools `apk_db_index_read`).

use super::purl::Purl;
use super::{Distro, Package, PackageKind};

/// apk's installed database.
pub(super) const INSTALLED: &str = "/lib/apk/db/installed";

/// The packages of an installed database `text` found at `source`.
pub(super) fn parse_installed(text: &str, source: &str, distro: &Distro) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut stanza = Stanza::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(package) = std::mem::take(&mut stanza).into_package(source, distro) {
                packages.push(package);
            }
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "P" => stanza.name = Some(value.to_owned()),
            "V" => stanza.version = Some(value.to_owned()),
            "A" => stanza.arch = Some(value.to_owned()),
            "L" => stanza.license = Some(value.to_owned()),
            "o" => stanza.origin = Some(value.to_owned()),
            "m" => stanza.maintainer = Some(value.to_owned()),
            _ => {}
        }
    }
    packages
}

/// The fields of one stanza that matter here.
#[derive(Debug, Default)]
struct Stanza {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    license: Option<String>,
    origin: Option<String>,
    maintainer: Option<String>,
}

impl Stanza {
    /// The package, or `None` for an empty stanza (one without a name or version is logged).
    fn into_package(self, source: &str, distro: &Distro) -> Option<Package> {
        let (Some(name), Some(version)) = (self.name, self.version) else {
            if self.arch.is_some() || self.license.is_some() {
                tracing::warn!(source, "SBOM scan: apk stanza without P: or V: skipped");
            }
            return None;
        };
        // syft: `upstream` is the origin (the source package) when it differs from the name.
        let upstream = self
            .origin
            .filter(|origin| *origin != name)
            .unwrap_or_default();
        let purl = Purl {
            kind: "apk",
            namespace: distro.namespace("alpine"),
            name: &name,
            version: &version,
            qualifiers: vec![
                ("arch", self.arch.unwrap_or_default()),
                ("distro", distro.qualifier()),
                ("upstream", upstream),
            ],
        }
        .render();
        Some(Package {
            kind: PackageKind::Apk,
            purl,
            license: self
                .license
                .filter(|l| !l.is_empty())
                .map(|l| license_expression(&l)),
            supplier: self.maintainer.filter(|m| !m.is_empty()),
            name,
            version,
            source: source.to_owned(),
        })
    }
}

/// Alpine's `L:` is an SPDX expression in newer packages and a space-separated list of
/// identifiers in older ones (`GPL-2.0-or-later LGPL-2.1-or-later`): the list means all of
/// them, so it becomes `A AND B` (as syft reads it).
fn license_expression(license: &str) -> String {
    let words: Vec<&str> = license.split_whitespace().collect();
    let has_operator = words
        .iter()
        .any(|w| matches!(*w, "AND" | "OR" | "WITH" | "and" | "or" | "with"))
        || license.contains(['(', ')']);
    if has_operator || words.len() < 2 {
        license.trim().to_owned()
    } else {
        words.join(" AND ")
    }
}
