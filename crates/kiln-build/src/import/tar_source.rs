//! An imported archive becomes the layer as `docker import` makes
//! it — entries in their original order — re-encoded in one streaming pass so that
//! SOURCE_DATE_EPOCH can clamp mtimes, `./` prefixes are dropped and global headers are
//! left out. PAX records other than path, link and times (xattrs, large ids) are kept.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// PAX keys carried by the rewritten header itself (or dropped when mtimes are clamped).
const REWRITTEN_PAX_KEYS: [&str; 6] = ["path", "linkpath", "size", "mtime", "atime", "ctime"];

/// Why an archive could not be imported; each variant names the archive and, when known,
/// the entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// The archive (or one entry's header) could not be read.
    #[error("reading {}", read_subject(archive, *entry))]
    Read {
        /// The archive.
        archive: PathBuf,
        /// The entry's index, when past the start.
        entry: Option<usize>,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// An entry's path climbs out of the root with `..`.
    #[error("{}: entry `{entry}` escapes the root (`..`); refusing to import it", archive.display())]
    EscapingEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path as written.
        entry: String,
    },
    /// A hard link's target climbs out of the root.
    #[error("{}: hard link `{}` points outside the root", archive.display(), entry.display())]
    EscapingLink {
        /// The archive.
        archive: PathBuf,
        /// The link's path.
        entry: PathBuf,
    },
    /// An entry's PAX records could not be read.
    #[error("reading PAX headers of `{}` in {}", entry.display(), archive.display())]
    Pax {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A PAX record key is not UTF-8.
    #[error("PAX key of `{}` is not UTF-8", entry.display())]
    PaxKey {
        /// The entry's path.
        entry: PathBuf,
    },
    /// The layer entry could not be written.
    #[error("writing `{}` from {}", entry.display(), archive.display())]
    Write {
        /// The archive.
        archive: PathBuf,
        /// The entry's path.
        entry: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The layer tar's end could not be written.
    #[error("finishing the layer tar")]
    Finish(#[source] io::Error),
}

/// `tar archive X` or `entry N of X`.
fn read_subject(archive: &Path, entry: Option<usize>) -> String {
    match entry {
        None => format!("tar archive {}", archive.display()),
        Some(index) => format!("entry {index} of {}", archive.display()),
    }
}

/// Re-encodes the (decompressed) tar `input` into `out`; `archive` names it in errors.
pub(crate) fn reencode_tar(
    input: impl Read,
    out: impl Write,
    source_date_epoch: Option<i64>,
    archive: &Path,
) -> Result<(), TarError> {
    let mut tar = tar::Archive::new(input);
    let mut builder = tar::Builder::new(out);
    let entries = tar.entries().map_err(|source| TarError::Read {
        archive: archive.to_owned(),
        entry: None,
        source,
    })?;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|source| TarError::Read {
            archive: archive.to_owned(),
            entry: Some(index),
            source,
        })?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        let raw_path = entry.path_bytes().into_owned();
        let Some(path) = clean_path(&raw_path) else {
            return Err(TarError::EscapingEntry {
                archive: archive.to_owned(),
                entry: String::from_utf8_lossy(&raw_path).into_owned(),
            });
        };
        if path.as_os_str().is_empty() {
            // The archive's own root (`./`): the image root is not a layer entry.
            continue;
        }
        let pax_error = |source| TarError::Pax {
            archive: archive.to_owned(),
            entry: path.clone(),
            source,
        };
        let mut pax = Vec::new();
        if let Some(extensions) = entry.pax_extensions().map_err(pax_error)? {
            for ext in extensions {
                let ext = ext.map_err(pax_error)?;
                let key = ext.key().map_err(|_| TarError::PaxKey {
                    entry: path.clone(),
                })?;
                if !REWRITTEN_PAX_KEYS.contains(&key) {
                    pax.push((key.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        let mut header = entry.header().clone();
        if let Some(epoch) = source_date_epoch {
            let mtime = header.mtime().unwrap_or(0);
            if let Ok(epoch) = u64::try_from(epoch)
                && mtime > epoch
            {
                header.set_mtime(epoch);
            }
        }
        let write_error = |source| TarError::Write {
            archive: archive.to_owned(),
            entry: path.clone(),
            source,
        };
        if !pax.is_empty() {
            append_pax(&mut builder, &pax).map_err(write_error)?;
        }
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            let target = entry
                .link_name_bytes()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default();
            let target = if kind == tar::EntryType::Link {
                clean_path(&target).ok_or_else(|| TarError::EscapingLink {
                    archive: archive.to_owned(),
                    entry: path.clone(),
                })?
            } else {
                PathBuf::from(std::ffi::OsStr::from_bytes(&target))
            };
            header.set_size(0);
            builder
                .append_link(&mut header, &path, &target)
                .map_err(write_error)?;
        } else {
            builder
                .append_data(&mut header, &path, &mut entry)
                .map_err(write_error)?;
        }
    }
    builder.into_inner().map_err(TarError::Finish)?;
    Ok(())
}

/// A relative path without `.` components, or `None` when it climbs with `..`.
fn clean_path(raw: &[u8]) -> Option<PathBuf> {
    let path = Path::new(std::ffi::OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Writes one PAX extended header (`x`) for the next entry.
fn append_pax<W: Write>(
    builder: &mut tar::Builder<W>,
    records: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        // Each record is "<len> <key>=<value>\n" where <len> counts itself.
        let body = key.len() + value.len() + 3;
        let mut len = body + body.to_string().len();
        if len.to_string().len() + body != len {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_path("././@PaxHeader")?;
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_mtime(0);
    header.set_cksum();
    builder.append(&header, data.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_drops_dots_and_refuses_parents() {
        assert_eq!(clean_path(b"./bin/sh").unwrap(), Path::new("bin/sh"));
        assert_eq!(clean_path(b"/etc/passwd").unwrap(), Path::new("etc/passwd"));
        assert_eq!(clean_path(b"./").unwrap(), Path::new(""));
        assert!(clean_path(b"a/../../x").is_none());
    }

    #[test]
    fn reencode_clamps_mtimes_and_keeps_xattrs() {
        let mut input = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_mtime(2_000_000_000);
        h.set_size(2);
        h.set_entry_type(tar::EntryType::Regular);
        append_pax(&mut input, &[("SCHILY.xattr.user.k".into(), b"v".to_vec())]).unwrap();
        input.append_data(&mut h, "./bin/x", &b"hi"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_mtime(5);
        l.set_size(0);
        input.append_link(&mut l, "bin/sh", "x").unwrap();
        let input = input.into_inner().unwrap();

        let mut out = Vec::new();
        reencode_tar(&input[..], &mut out, Some(1_000), Path::new("in.tar")).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            let mtime = entry.header().mtime().unwrap();
            let xattrs: Vec<String> = entry
                .pax_extensions()
                .unwrap()
                .map(|e| e.map(|x| x.unwrap().key().unwrap().to_owned()).collect())
                .unwrap_or_default();
            seen.push((path, mtime, xattrs));
        }
        assert_eq!(
            seen,
            vec![
                (
                    PathBuf::from("bin/x"),
                    1_000,
                    vec!["SCHILY.xattr.user.k".to_owned()]
                ),
                (PathBuf::from("bin/sh"), 5, vec![]),
            ]
        );
    }
}
