//! `kiln store verify`: rehash every blob, check every ref's image is complete, parse every
//! cache record, and (with repair) remove what is corrupt or left over by a crash.
//!
//! A crash can only leave temp files under `tmp/` (ingests and snapshot unpacks that never
//! got renamed): committed blobs, refs and records appear by atomic rename. So a store
//! after `kill -9` verifies clean except for "leftover temp" notes, which repair removes.

use std::fmt;
use std::fs::{self};
use std::io::{self, Read as _};
use std::path::PathBuf;

use kiln_oci::{Digest, Sha256Hasher};

use crate::Store;
use crate::error::StoreError;
use crate::graph::edges_of;
use crate::layout::{RootPermissions, pid_is_alive, root_permissions_now, temp_owner};
use crate::lock::LockMode;

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A blob's content does not hash to its name (truncated, bit rot, foreign file).
    CorruptBlob {
        /// The blob's file.
        path: PathBuf,
        /// Its name.
        expected: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// A file in `blobs/sha256/` whose name is not a digest.
    StrayFile {
        /// The file.
        path: PathBuf,
    },
    /// A ref file that is not valid.
    CorruptRef {
        /// The ref file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A ref whose image is incomplete (its manifest, config or a layer is missing).
    BrokenRef {
        /// The image name.
        name: String,
        /// The missing blob.
        missing: Digest,
    },
    /// A cache record that is not JSON.
    CorruptRecord {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The store root lets other users in: they could run the images' setuid binaries in
    /// `snapshots/` or open their device nodes.
    LoosePermissions {
        /// The store root.
        path: PathBuf,
        /// Its mode (permission bits) when found.
        mode: u32,
        /// Whether it has been changed to 0700 since (by opening the store).
        is_fixed: bool,
    },
    /// The store root belongs to another user than the one running kiln (who can then read
    /// and run everything this user builds into it).
    ForeignOwner {
        /// The store root.
        path: PathBuf,
        /// The root's owner.
        owner: u32,
        /// The running user.
        user: u32,
    },
}

impl Problem {
    /// What `verify --repair` does about it: `removed` (a corrupt or stray file), `fixed`
    /// (loose permissions, changed to 0700) or `None` (a foreign owner: the administrator's
    /// call, never changed by kiln).
    pub fn repair_action(&self) -> Option<&'static str> {
        match self {
            Self::LoosePermissions { .. } => Some("fixed"),
            Self::ForeignOwner { .. } => None,
            _ => Some("removed"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CorruptBlob {
                path,
                expected,
                actual,
            } => write!(
                f,
                "corrupt blob {}: named {expected} but its content hashes to {actual}",
                path.display()
            ),
            Self::StrayFile { path } => {
                write!(f, "stray file {} (not a blob name)", path.display())
            }
            Self::CorruptRef { path, reason } => {
                write!(f, "corrupt ref {}: {reason}", path.display())
            }
            Self::BrokenRef { name, missing } => {
                write!(f, "image {name} is incomplete: blob {missing} is missing")
            }
            Self::CorruptRecord { path, reason } => {
                write!(f, "corrupt cache record {}: {reason}", path.display())
            }
            Self::LoosePermissions {
                path,
                mode,
                is_fixed,
            } => {
                write!(
                    f,
                    "store root {} has mode {mode:04o}: other users can reach its snapshots (setuid binaries, device nodes)",
                    path.display()
                )?;
                if *is_fixed {
                    write!(f, "; changed to 0700 when the store was opened")?;
                }
                Ok(())
            }
            Self::ForeignOwner { path, owner, user } => write!(
                f,
                "store root {} is owned by uid {owner}, not by the running user (uid {user}); chown it or use another --root",
                path.display()
            ),
        }
    }
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Blobs rehashed.
    pub blobs_checked: usize,
    /// Bytes rehashed.
    pub bytes_checked: u64,
    /// Refs checked.
    pub refs_checked: usize,
    /// Cache records checked.
    pub records_checked: usize,
    /// What is wrong.
    pub problems: Vec<Problem>,
    /// Temp files of crashed processes (harmless: never visible to readers).
    pub leftover_temp: Vec<PathBuf>,
    /// Whether the problems and leftovers were removed.
    pub repaired: bool,
}

impl VerifyReport {
    /// Whether the store is consistent (leftover temp files do not count).
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Verifies the whole store. Without `repair` it takes the shared lock and changes
    /// nothing; with it, the exclusive lock, and it removes corrupt blobs, stray files,
    /// corrupt or broken refs, corrupt records and leftover temp files.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport, StoreError> {
        let _lock = self.lock(if repair {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        })?;
        let mut report = VerifyReport::default();
        self.verify_root_permissions(&mut report, repair)?;
        self.find_leftover_temp(&mut report)?;
        self.verify_blobs(&mut report, repair)?;
        self.verify_refs(&mut report, repair)?;
        self.verify_records(&mut report, repair)?;
        if repair {
            for path in &report.leftover_temp {
                if path.exists() || fs_err::symlink_metadata(path).is_ok() {
                    crate::remove_tree(path)?;
                }
            }
            report.repaired = true;
        }
        Ok(report)
    }

    /// What `open` found and fixed, and what is wrong now (changed since, or not fixable).
    fn verify_root_permissions(
        &self,
        report: &mut VerifyReport,
        repair: bool,
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.root().to_owned();
        let mut now = root_permissions_now(&path)?;
        if repair
            && now
                .iter()
                .any(|f| matches!(f, RootPermissions::Loose { .. }))
        {
            fs_err::set_permissions(&path, fs::Permissions::from_mode(crate::layout::ROOT_MODE))?;
            for finding in &mut now {
                if let RootPermissions::Loose { mode } = *finding {
                    report.problems.push(Problem::LoosePermissions {
                        path: path.clone(),
                        mode,
                        is_fixed: true,
                    });
                }
            }
            now.retain(|f| !matches!(f, RootPermissions::Loose { .. }));
        }
        let mut found: Vec<Problem> = Vec::new();
        for (finding, is_now) in self
            .root_permissions()
            .iter()
            .map(|f| (f, false))
            .chain(now.iter().map(|f| (f, true)))
        {
            let problem = match *finding {
                RootPermissions::Loose { mode } => Problem::LoosePermissions {
                    path: path.clone(),
                    mode,
                    is_fixed: !is_now,
                },
                RootPermissions::ForeignOwner { owner, user } => Problem::ForeignOwner {
                    path: path.clone(),
                    owner,
                    user,
                },
            };
            if !found.contains(&problem) {
                found.push(problem);
            }
        }
        report.problems.extend(found);
        Ok(())
    }

    fn find_leftover_temp(&self, report: &mut VerifyReport) -> Result<(), StoreError> {
        for dir in [
            self.tmp_dir(),
            self.dir("tmp/trash"),
            self.dir("tmp/leases"),
        ] {
            for entry in fs_err::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == "leases" || name == "trash" {
                    continue;
                }
                if !temp_owner(&name).is_some_and(pid_is_alive) {
                    report.leftover_temp.push(entry.path());
                }
            }
        }
        Ok(())
    }

    fn verify_blobs(&self, report: &mut VerifyReport, repair: bool) -> Result<(), StoreError> {
        let dir = self.dir("blobs/sha256");
        let mut buf = vec![0u8; 1 << 20];
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(expected) = format!("sha256:{name}").parse::<Digest>() else {
                report
                    .problems
                    .push(Problem::StrayFile { path: path.clone() });
                if repair {
                    remove_path(&path)?;
                }
                continue;
            };
            let mut file = fs_err::File::open(&path)?;
            let mut hasher = Sha256Hasher::new();
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            report.blobs_checked += 1;
            report.bytes_checked += hasher.len();
            let actual = hasher.finish();
            if actual != expected {
                report.problems.push(Problem::CorruptBlob {
                    path: path.clone(),
                    expected,
                    actual,
                });
                if repair {
                    remove_path(&path)?;
                }
            }
        }
        Ok(())
    }

    fn verify_refs(&self, report: &mut VerifyReport, repair: bool) -> Result<(), StoreError> {
        let dir = self.dir("refs");
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            report.refs_checked += 1;
            let bytes = fs_err::read(&path)?;
            let file = match crate::refs::parse_ref(&path, &bytes) {
                Ok(file) => file,
                Err(err) => {
                    report.problems.push(Problem::CorruptRef {
                        path: path.clone(),
                        reason: err.to_string(),
                    });
                    if repair {
                        remove_path(&path)?;
                    }
                    continue;
                }
            };
            if let Some(missing) = self.first_missing(&file.digest) {
                report.problems.push(Problem::BrokenRef {
                    name: file.name.to_string(),
                    missing,
                });
                if repair {
                    remove_path(&path)?;
                }
            }
        }
        Ok(())
    }

    /// The first blob an image needs that is absent or corrupt (walks manifests and indexes;
    /// an index's manifests for platforms never pulled may be absent, and an uncompressed
    /// layer of an image a `-t` build kept may be absent while its snapshot is here).
    fn first_missing(&self, root: &Digest) -> Option<Digest> {
        let mut stack = vec![(root.clone(), true)];
        let mut seen = std::collections::BTreeSet::new();
        let mut uncompressed = std::collections::BTreeSet::new();
        let mut snapshot_backed = Vec::new();
        let mut layers = Vec::new();
        while let Some((digest, is_required)) = stack.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let Ok(len) = self.blob_len(&digest) else {
                if uncompressed.contains(&digest) {
                    snapshot_backed.push(digest);
                    continue;
                }
                if is_required {
                    return Some(digest);
                }
                continue;
            };
            let edges = edges_of(len, || self.read_blob(&digest).ok());
            uncompressed.extend(edges.uncompressed);
            layers.extend(edges.layers);
            stack.extend(edges.required.into_iter().map(|d| (d, true)));
            stack.extend(edges.optional.into_iter().map(|d| (d, false)));
        }
        snapshot_backed.into_iter().find(|digest| {
            !layers
                .iter()
                .any(|(diff_id, chain)| diff_id.0 == *digest && self.has_snapshot(chain))
        })
    }

    fn verify_records(&self, report: &mut VerifyReport, repair: bool) -> Result<(), StoreError> {
        let dir = self.dir(crate::layout::RECORDS_DIR);
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            report.records_checked += 1;
            let bytes = fs_err::read(&path)?;
            if let Err(err) = crate::cache::parse_refs(&bytes) {
                report.problems.push(Problem::CorruptRecord {
                    path: path.clone(),
                    reason: err.to_string(),
                });
                if repair {
                    remove_path(&path)?;
                }
            }
        }
        Ok(())
    }
}

fn remove_path(path: &std::path::Path) -> Result<(), StoreError> {
    let is_dir = fs_err::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let result = if is_dir {
        fs_err::remove_dir_all(path)
    } else {
        fs_err::remove_file(path)
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(StoreError::Fs(err)),
    }
}
