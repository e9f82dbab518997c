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
            // dpkg's database has no licence; it is in /usr/share/doc/NAME/copyright.
            license: None,
            supplier: stanza.get("Maintainer").map(str::to_owned),
            source: source.to_owned(),
        });
    }
    packages
}
