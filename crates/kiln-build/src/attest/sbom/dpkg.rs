//! Debian packages from dpkg's database: `/var/lib/dpkg/status` (deb822 stanzas, one per
//! package dpkg knows, installed or not) and `/var/lib/dpkg/status.d/*` (one file per
//! package, no `Status:` field, as distroless images have them).

use super::fields::parse_stanzas;
use super::purl::Purl;
use super::{Distro, Package, PackageKind};

/// dpkg's status file.
pub(super) const STATUS: &str = "/var/lib/dpkg/status";

/// distroless's per-package status directory.
pub(super) const STATUS_D: &str = "/var/lib/dpkg/status.d";

/// The installed packages of a status file `text` found at `source`. With `needs_status`,
/// only stanzas whose `Status:` says `installed` (the third word, dpkg's package state)
/// count; removed packages whose configuration files remain (`deinstall ok config-files`)
/// and half-installed ones do not. Without it, a stanza lacking `Status:` counts too.
pub(super) fn parse_status(
    text: &str,
    source: &str,
    distro: &Distro,
    needs_status: bool,
) -> Vec<Package> {
    let mut packages = Vec::new();
    for stanza in parse_stanzas(text) {
        let installed = match stanza.get("Status") {
            Some(status) => status.split_whitespace().nth(2) == Some("installed"),
            None => !needs_status,
        };
        let (Some(name), Some(version)) = (stanza.get("Package"), stanza.get("Version")) else {
            if installed {
                tracing::warn!(
                    source,
                    "SBOM scan: dpkg stanza without Package or Version skipped"
                );
            }
            continue;
        };
        if !installed {
            continue;
        }
        // `Package:` never carries an architecture in the database, but dpkg-query prints
        // `name:arch` for Multi-Arch: same packages; accept that spelling too.
        let name = name.split_once(':').map_or(name, |(n, _)| n);
        let arch = stanza.get("Architecture").unwrap_or_default();
        // `Source: glibc` or `Source: util-linux (2.38.1-5+deb12u3)`: syft's `upstream`.
        let upstream =
            stanza
                .get("Source")
                .map_or(String::new(), |source| match source.split_once(' ') {
                    Some((source, version)) => {
                        let version = version.trim().trim_start_matches('(').trim_end_matches(')');
                        format!("{source}@{version}")
                    }
                    None => source.to_owned(),
                });
        let purl = Purl {
            kind: "deb",
            namespace: distro.namespace("debian"),
            name,
            version,
            qualifiers: vec![
                ("arch", arch.to_owned()),
                ("distro", distro.qualifier()),
                ("upstream", upstream),
            ],
        };
        packages.push(Package {
            kind: PackageKind::Deb,
            name: name.to_owned(),
            version: version.to_owned(),
            purl: purl.render(),
            // dpkg's database has no licence: see `copyright_license`.
            license: None,
            supplier: stanza.get("Maintainer").map(str::to_owned),
            source: source.to_owned(),
        });
    }
    packages
}

/// Where Debian policy (12.5) puts a package's copyright file.
pub(super) fn copyright_path(package: &str) -> String {
    format!("/usr/share/doc/{package}/copyright")
}

/// The licences a machine-readable copyright file (DEP-5: a `Format:` header stanza)
/// declares, as syft reads them: each distinct `License:` short name, mapped to its SPDX
/// identifier where Debian's name differs (`GPL-2+` is `GPL-2.0-or-later`, `Expat` is `MIT`,
/// `zlib` is `Zlib`), `or`/`and`/`with` as SPDX operators, all joined with `AND`. Names with
/// no SPDX equivalent stay as written (the SPDX writer makes them `LicenseRef-`s). `None`
/// for a free-form copyright file.
pub(super) fn copyright_license(text: &str) -> Option<String> {
    let stanzas = parse_stanzas(text);
    stanzas.first()?.get("Format")?;
    let mut licenses: Vec<String> = Vec::new();
    for stanza in &stanzas {
        let Some(short_name) = stanza.get("License").and_then(|v| v.lines().next()) else {
            continue;
        };
        let words: Vec<String> = short_name
            .split_whitespace()
            .map(|word| match word.to_ascii_lowercase().as_str() {
                "or" => "OR".to_owned(),
                "and" => "AND".to_owned(),
                "with" => "WITH".to_owned(),
                _ => spdx_license_name(word.trim_end_matches(',')),
            })
            .collect();
        let expression = if words.len() > 1 {
            format!("({})", words.join(" "))
        } else {
            words.join(" ")
        };
        if !expression.is_empty() && !licenses.contains(&expression) {
            licenses.push(expression);
        }
    }
    licenses.sort();
    match licenses.len() {
        0 => None,
        1 => licenses.pop().map(|l| {
            l.strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .map_or(l.clone(), str::to_owned)
        }),
        _ => Some(licenses.join(" AND ")),
    }
}

/// A Debian licence short name as an SPDX identifier, when there is one.
fn spdx_license_name(name: &str) -> String {
    // The GNU licences: `GPL-2`, `LGPL-2.1+`, `GFDL-1.3` → `GPL-2.0-only`, `LGPL-2.1-or-later`, ….
    for family in ["AGPL", "LGPL", "GPL", "GFDL"] {
        if let Some(version) = name.strip_prefix(family).and_then(|v| v.strip_prefix('-')) {
            let (version, suffix) = match version.strip_suffix('+') {
                Some(version) => (version, "or-later"),
                None => (version, "only"),
            };
            let version = if version.contains('.') {
                version.to_owned()
            } else {
                format!("{version}.0")
            };
            let id = format!("{family}-{version}-{suffix}");
            if spdx::license_id(&id).is_some() {
                return id;
            }
        }
    }
    if name.eq_ignore_ascii_case("Expat") {
        return "MIT".to_owned();
    }
    // Debian's spelling differs in case only (`BSD-3-clause`, `zlib`, `Apache-2.0`).
    spdx::identifiers::LICENSES
        .iter()
        .find(|license| license.name.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_owned(), |license| license.name.to_owned())
}
