//! The software bill of materials of an image: [`scan`] finds the packages installed in a
//! root filesystem ([`RootFs`], a directory or kiln store snapshots read in place), and
//! [`spdx_json`] writes them as an SPDX 2.3 JSON document.
//!
//! What is found, as syft and BuildKit's SBOM scanner find it:
//! - Debian packages: `/var/lib/dpkg/status` (installed ones only) and the per-package files
//!   of `/var/lib/dpkg/status.d/` that distroless images have, with the licences of their
//!   machine-readable `/usr/share/doc/NAME/copyright` files ([`dpkg`]);
//! - Alpine packages: `/lib/apk/db/installed` ([`apk`]);
//! - Python distributions: every `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and
//!   `*.egg-info` file in the tree, so site-packages, dist-packages and virtualenvs alike
//!   ([`python`]);
//! - npm packages: every `package.json` directly in a package directory under
//!   `node_modules` (`node_modules/x/`, `node_modules/@scope/x/`, nested too) ([`npm`]);
//! - Go modules: the build info of Go executables — the main module, its dependencies and
//!   the Go standard library ([`golang`]).
//!
//! Only candidate files are read, chosen by path; for Go, regular files with an execute bit
//! and the ELF magic, of which only the headers and the build info are read.

mod apk;
mod dpkg;
mod fields;
mod fs;
mod golang;
mod npm;
pub(crate) mod purl;
mod python;
mod spdx;

use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt as _;

pub(crate) use fs::{DirEntry, RootFs, Walk, WalkError, WalkLimits};
pub(crate) use spdx::{SpdxInput, spdx_json};

/// The walk's limits: far above any real image (a full Debian with a large node_modules has
/// a few hundred thousand entries), low enough to stop on a pathological tree.
pub(crate) const WALK_LIMITS: WalkLimits = WalkLimits {
    max_entries: 10_000_000,
    max_depth: 256,
};

/// Top-level directories the walk leaves out: kernel and device filesystems in a running
/// system, normally empty in an image.
const SKIPPED_TOP_DIRS: [&str; 3] = ["proc", "sys", "dev"];

/// Executables larger than this are not inspected for Go build info.
const MAX_EXECUTABLE_BYTES: u64 = 1 << 30;

/// Debian copyright files larger than this are not read (the largest in bookworm are a
/// few hundred KiB).
const MAX_COPYRIGHT_BYTES: u64 = 16 << 20;

/// The ELF magic, the first four bytes of every ELF file.
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

/// Which ecosystem a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PackageKind {
    /// A Debian package (dpkg database).
    Deb,
    /// An Alpine package (apk database).
    Apk,
    /// A Python distribution (`.dist-info` or `.egg-info`).
    Python,
    /// An npm package in `node_modules`.
    Npm,
    /// A Go module in an executable's build info, or the Go standard library (`stdlib`) it
    /// was built with, as syft lists it.
    Go,
}

impl PackageKind {
    /// A short name for identifiers: `deb`, `apk`, `python`, `npm`, `go`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Deb => "deb",
            Self::Apk => "apk",
            Self::Python => "python",
            Self::Npm => "npm",
            Self::Go => "go",
        }
    }
}

/// A package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Package {
    /// Its ecosystem.
    pub(crate) kind: PackageKind,
    /// Its name as its metadata spells it.
    pub(crate) name: String,
    /// Its version as its metadata spells it.
    pub(crate) version: String,
    /// Its package URL, e.g. `pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12`.
    pub(crate) purl: String,
    /// The licence its metadata declares, as written there (an SPDX expression or not;
    /// [`spdx_json`] decides).
    pub(crate) license: Option<String>,
    /// Who supplies it, as written there (e.g. the dpkg `Maintainer`, `Name <email>`).
    pub(crate) supplier: Option<String>,
    /// Where it was found: an absolute path in the image.
    pub(crate) source: String,
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SbomError {
    /// A candidate file could not be read (the I/O error names the host path, so the layer).
    #[error("SBOM scan: cannot read {path} in the image ({root}): {source}")]
    Read {
        /// The path in the image.
        path: String,
        /// The root filesystem ([`RootFs::describe`]).
        root: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Walking the tree failed or hit its limit.
    #[error("SBOM scan of {root}: {source}")]
    Walk {
        /// The root filesystem ([`RootFs::describe`]).
        root: String,
        /// What went wrong.
        #[source]
        source: WalkError,
    },
}

/// The distribution an image says it is (`/etc/os-release`): the purl namespace and `distro`
/// qualifier of its OS packages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Distro {
    /// `ID`, e.g. `debian`, `ubuntu`, `alpine`.
    pub(super) id: Option<String>,
    /// `VERSION_ID`, e.g. `12`, `3.18.4`.
    pub(super) version_id: Option<String>,
}

impl Distro {
    /// Parses os-release text (shell-style `KEY=value` lines, values optionally quoted).
    fn parse(text: &str) -> Self {
        let mut distro = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if value.is_empty() {
                continue;
            }
            match key.trim() {
                "ID" => distro.id = Some(value.to_owned()),
                "VERSION_ID" => distro.version_id = Some(value.to_owned()),
                _ => {}
            }
        }
        distro
    }

    /// The purl namespace: the distribution's id, else `default`.
    pub(super) fn namespace<'a>(&'a self, default: &'a str) -> &'a str {
        self.id.as_deref().unwrap_or(default)
    }

    /// The purl `distro` qualifier, `ID-VERSION_ID` (empty when either is unknown).
    pub(super) fn qualifier(&self) -> String {
        match (&self.id, &self.version_id) {
            (Some(id), Some(version)) => format!("{id}-{version}"),
            _ => String::new(),
        }
    }
}

/// Files the walk found that may describe packages.
#[derive(Debug, Default)]
struct Candidates {
    /// Python `METADATA`/`PKG-INFO` files and `.egg-info` files.
    python: Vec<DirEntry>,
    /// npm `package.json` files of packages in `node_modules`.
    npm: Vec<DirEntry>,
    /// Regular files with an execute bit and a plausible size.
    executables: Vec<DirEntry>,
}

/// Every package found in `fs`: see the module docs. Sorted by kind, name, version and
/// source (then the rest), duplicates removed.
pub(crate) fn scan(fs: &RootFs) -> Result<Vec<Package>, SbomError> {
    let read_error = |path: &str| {
        let path = path.to_owned();
        move |source| SbomError::Read {
            path,
            root: fs.describe(),
            source,
        }
    };
    let read = |path: &str| fs.read(path).map_err(read_error(path));

    let os_release = match read("/etc/os-release")? {
        Some(bytes) => Some(bytes),
        None => read("/usr/lib/os-release")?,
    };
    let distro = os_release
        .map(|bytes| Distro::parse(&String::from_utf8_lossy(&bytes)))
        .unwrap_or_default();

    let mut packages = Vec::new();
    if let Some(bytes) = read(dpkg::STATUS)? {
        packages.extend(dpkg::parse_status(
            &String::from_utf8_lossy(&bytes),
            dpkg::STATUS,
            &distro,
            true,
        ));
    }
    let status_d = fs
        .list_dir(dpkg::STATUS_D)
        .map_err(read_error(dpkg::STATUS_D))?
        .unwrap_or_default();
    for entry in status_d {
        if !entry.file_type.is_file() || entry.name.as_encoded_bytes().ends_with(b".md5sums") {
            continue;
        }
        let path = entry.image_path();
        let bytes = fs.read_entry(&entry).map_err(read_error(&path))?;
        // distroless writes these without a `Status:` field: each is an installed package.
        packages.extend(dpkg::parse_status(
            &String::from_utf8_lossy(&bytes),
            &path,
            &distro,
            false,
        ));
    }
    // dpkg's database has no licence; the package's DEP-5 copyright file may declare them.
    for package in &mut packages {
        let path = dpkg::copyright_path(&package.name);
        if let Some(bytes) = fs
            .read_capped(&path, MAX_COPYRIGHT_BYTES)
            .map_err(read_error(&path))?
        {
            package.license = dpkg::copyright_license(&String::from_utf8_lossy(&bytes));
        }
    }
    if let Some(bytes) = read(apk::INSTALLED)? {
        packages.extend(apk::parse_installed(
            &String::from_utf8_lossy(&bytes),
            apk::INSTALLED,
            &distro,
        ));
    }

    let candidates = find_candidates(fs)?;
    for entry in &candidates.python {
        let path = entry.image_path();
        let bytes = fs.read_entry(entry).map_err(read_error(&path))?;
        packages.extend(python::parse_metadata(
            &String::from_utf8_lossy(&bytes),
            &path,
        ));
    }
    for entry in &candidates.npm {
        let path = entry.image_path();
        let bytes = fs.read_entry(entry).map_err(read_error(&path))?;
        packages.extend(npm::parse_package_json(&bytes, &path));
    }
    for entry in &candidates.executables {
        let path = entry.image_path();
        let (mut file, _) = fs.open_entry(entry).map_err(read_error(&path))?;
        let mut magic = [0u8; 4];
        match file.read_exact(&mut magic) {
            Ok(()) if magic == ELF_MAGIC => {}
            Ok(()) => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => continue,
            Err(e) => return Err(read_error(&path)(e)),
        }
        let info = golang::read_elf_build_info(file.file()).map_err(read_error(&path))?;
        if let Some(info) = info {
            packages.extend(golang::packages(&info, &path));
        }
    }

    sort_and_dedup(&mut packages);
    Ok(packages)
}

/// Sorts by (kind, name, version, source), then the other fields, and drops duplicates.
fn sort_and_dedup(packages: &mut Vec<Package>) {
    packages.sort_by(|a, b| {
        (
            a.kind,
            &a.name,
            &a.version,
            &a.source,
            &a.purl,
            &a.license,
            &a.supplier,
        )
            .cmp(&(
                b.kind,
                &b.name,
                &b.version,
                &b.source,
                &b.purl,
                &b.license,
                &b.supplier,
            ))
    });
    packages.dedup();
}

/// Walks `fs` once, collecting the files that may describe packages.
fn find_candidates(fs: &RootFs) -> Result<Candidates, SbomError> {
    let mut candidates = Candidates::default();
    let mut failure: Option<SbomError> = None;
    fs.walk(WALK_LIMITS, |entry, depth| {
        if depth == 1
            && entry.file_type.is_dir()
            && SKIPPED_TOP_DIRS
                .iter()
                .any(|d| entry.name.as_encoded_bytes() == d.as_bytes())
        {
            return Walk::Skip;
        }
        if !entry.file_type.is_file() || failure.is_some() {
            return Walk::Descend;
        }
        if python::is_candidate(entry.rel()) {
            candidates.python.push(entry.clone());
        } else if npm::is_candidate(entry.rel()) {
            candidates.npm.push(entry.clone());
        } else {
            match fs.entry_metadata(entry) {
                Ok(meta) => {
                    if meta.permissions().mode() & 0o111 != 0
                        && (ELF_MAGIC.len() as u64..=MAX_EXECUTABLE_BYTES).contains(&meta.len())
                    {
                        candidates.executables.push(entry.clone());
                    }
                }
                Err(source) => {
                    failure = Some(SbomError::Read {
                        path: entry.image_path(),
                        root: fs.describe(),
                        source,
                    });
                }
            }
        }
        Walk::Descend
    })
    .map_err(|source| SbomError::Walk {
        root: fs.describe(),
        source,
    })?;
    match failure {
        Some(error) => Err(error),
        None => Ok(candidates),
    }
}

#[cfg(test)]
mod tests;
