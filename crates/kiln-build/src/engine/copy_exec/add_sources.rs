//! ADD's sources beyond the context and stages: URLs (fetched while keying unless
//! `--checksum` keys them), git repositories (resolved to a commit, checked out when the step
//! runs) and local archives to extract.

use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_dockerfile::encode_text;
use kiln_oci::Digest;
use kiln_plan::CopyAction;

use super::super::download::{Fetched, fetch, file_name, parse_checksum};
use super::super::error::{CopyStepError, StepError};
use super::super::local::Local;
use super::io_error;
use crate::copy::source::{ContextTree, Entry, EntryKind, IncludeAll, SourceTree, clean_rel};
use crate::copy::write::{Linker, write_items};
use crate::copy::{CopyAttrs, CopyRequest, plan_copy};
use crate::git_source::GitRef;

/// An `ADD <url>` source: where it lands and, once fetched, its body.
pub(super) struct Download {
    pub(super) url: String,
    pub(super) dest: String,
    pub(super) mode: u32,
    pub(super) owner: (u32, u32),
    /// `--checksum`: keys the step without a download, and is verified when it runs.
    pub(super) checksum: Option<Digest>,
    /// Fetched while keying (no `--checksum`: the key is the content's digest).
    pub(super) fetched: Option<Fetched>,
}

/// An `ADD <git URL> <dest>` source: the repository at the commit its ref named when the step
/// was keyed, copied into the destination like a directory source.
pub(super) struct GitSource {
    /// The source as written (`https://host/repo.git#v1:dir`).
    pub(super) url: String,
    pub(super) git: GitRef,
    /// The commit the ref resolved to (`git ls-remote`): the source's checksum in the key.
    pub(super) commit: String,
    /// `--keep-git-dir` (or `?keep-git-dir=`).
    pub(super) keep_git_dir: bool,
    /// Where its files land (the step's resolved destination).
    pub(super) dest: String,
    pub(super) attrs: CopyAttrs,
    pub(super) exclude: Vec<String>,
}

impl GitSource {
    /// What the key depends on besides the instruction: the commit and what is taken of it.
    pub(super) fn key_digest(&self) -> Digest {
        Digest::sha256_of(
            format!(
                "git commit {}\0subdir {}\0keep-git-dir {}\0submodules {}",
                self.commit,
                self.git.subdir,
                self.keep_git_dir,
                self.git.submodules != Some(false)
            )
            .as_bytes(),
        )
    }

    /// Checks the commit out into a temp directory of `tmp` and writes its files into
    /// `staging` as a `COPY . <dest>` of it.
    pub(super) fn write_into(&self, engine: &Local<'_>, staging: &Path) -> Result<(), StepError> {
        let dir = download_dir(engine)?;
        let checkout = dir.path().join("checkout");
        fs_err::create_dir(&checkout).map_err(StepError::Fs)?;
        // The destination directory takes the checkout root's mode when it is created.
        fs_err::set_permissions(&checkout, fs::Permissions::from_mode(0o755))
            .map_err(StepError::Fs)?;
        self.git
            .checkout(&checkout, Some(&self.commit), self.keep_git_dir)
            .map_err(CopyStepError::Git)?;
        let root = self.git.subdir_of(&checkout).map_err(CopyStepError::Git)?;
        let tree = ContextTree::new(root, IncludeAll);
        let sources = [".".to_owned()];
        let request = CopyRequest {
            sources: &sources,
            dest: &self.dest,
            parents: false,
            exclude: &self.exclude,
            attrs: self.attrs.clone(),
        };
        let plan = plan_copy(&tree, &request, &|_| true)?;
        let linker = Linker::new(engine.store, engine.memo);
        write_items(staging, &plan, &linker).map_err(CopyStepError::Materialize)?;
        tracing::debug!(url = %self.url, commit = %self.commit, "checked out a git source");
        Ok(())
    }
}

/// A temp directory under the store's `tmp/` for downloaded bodies, removed on drop.
pub(super) fn download_dir(engine: &Local<'_>) -> Result<tempfile::TempDir, StepError> {
    let tmp = engine.store.root().join("tmp");
    fs_err::create_dir_all(&tmp).map_err(StepError::Fs)?;
    tempfile::Builder::new()
        .prefix("download-")
        .tempdir_in(&tmp)
        .map_err(|e| io_error("creating a download directory in", &tmp, e))
}

/// An `ADD <git URL>` source resolved to the commit its ref names now (`git ls-remote`, no
/// fetch), checked against `--checksum` (BuildKit: the checksum of a git source is its
/// commit, or a prefix of it).
pub(super) fn resolve_git_source(
    url: String,
    copy: &CopyAction,
    dest: &str,
    attrs: CopyAttrs,
    exclude: &[String],
) -> Result<GitSource, StepError> {
    let git = GitRef::parse(&url)
        .map_err(CopyStepError::Git)?
        .ok_or_else(|| StepError::Unsupported {
            description: format!("{url} is not a git source"),
        })?;
    let commit = git
        .resolve_commit(copy.checksum.as_deref())
        .map_err(CopyStepError::Git)?;
    Ok(GitSource {
        keep_git_dir: copy.keep_git_dir.or(git.keep_git_dir).unwrap_or(false),
        url,
        git,
        commit,
        dest: dest.to_owned(),
        attrs,
        exclude: exclude.to_vec(),
    })
}

/// ADD's local sources that are archives to extract (ADD extracts a local tar, plain or
/// compressed, unless `--unpack=false`), and the others, encoded as the trees name them.
pub(super) fn split_archives(
    copy: &CopyAction,
    tree: &dyn SourceTree,
    local_sources: &[String],
) -> (Vec<(Entry, String)>, Vec<String>) {
    let local_sources = local_sources.iter().map(|s| encode_text(s).into_owned());
    if !copy.is_add || copy.unpack == Some(false) {
        return (Vec::new(), local_sources.collect());
    }
    let mut archives = Vec::new();
    let mut plain = Vec::new();
    for source in local_sources {
        let cleaned = clean_rel(&source);
        let resolved = if crate::copy::has_wildcard(&cleaned) {
            None
        } else {
            tree.resolve(&cleaned).ok().flatten()
        };
        match resolved {
            Some((_, entry)) if entry.kind == EntryKind::File && is_archive(&entry.host_path) => {
                archives.push((entry, source));
            }
            _ => plain.push(source),
        }
    }
    (archives, plain)
}

/// Fetches the URL sources without `--checksum` (their content is their key); the returned
/// directory holds the bodies.
pub(super) fn fetch_unchecked(
    engine: &Local<'_>,
    downloads: &mut [Download],
) -> Result<Option<tempfile::TempDir>, StepError> {
    let download_dir = if downloads.iter().any(|d| d.checksum.is_none()) {
        Some(download_dir(engine)?)
    } else {
        None
    };
    if let Some(dir) = &download_dir {
        for download in downloads.iter_mut().filter(|d| d.checksum.is_none()) {
            download.fetched = Some(fetch(&download.url, dir.path(), None)?);
        }
    }
    Ok(download_dir)
}

/// Where each `ADD <url>` lands: `<dest>/<file name from the URL>` when the destination ends
/// in `/` or is a directory of the stage (or there are several sources), the destination
/// itself otherwise. Mode 0600 unless `--chmod` (BuildKit), owner from `--chown` or 0:0.
pub(super) fn plan_downloads(
    copy: &CopyAction,
    urls: &[String],
    copy_dest: &str,
    dest_tree: &dyn SourceTree,
    chmod: Option<&crate::copy::owners::Chmod>,
    owner: (u32, u32),
) -> Result<Vec<Download>, StepError> {
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let dest_dir = copy_dest.trim_end_matches('/');
    let is_dir = |p: &str| {
        dest_tree
            .resolve(&clean_rel(p))
            .ok()
            .flatten()
            .is_some_and(|(_, e)| e.is_dir())
    };
    let is_several = copy.sources.len() + copy.inline_sources.len() > 1;
    let into_dir = copy_dest.ends_with('/') || dest_dir.is_empty() || is_dir(dest_dir);
    if is_several && !into_dir {
        return Err(CopyStepError::AddDestNotDir {
            dest: copy.dest.clone(),
        }
        .into());
    }
    let mode = chmod.map_or(0o600, |c| c.apply(0o600, false));
    let checksum = copy
        .checksum
        .as_deref()
        .map(|c| parse_checksum(&urls[0], c))
        .transpose()?;
    urls.iter()
        .map(|url| {
            let dest = if into_dir {
                format!("{dest_dir}/{}", file_name(url)?)
            } else {
                dest_dir.to_owned()
            };
            if is_dir(&dest) {
                return Err(CopyStepError::DownloadOverDirectory {
                    dest,
                    url: url.clone(),
                }
                .into());
            }
            Ok(Download {
                url: url.clone(),
                dest,
                mode,
                owner,
                checksum: checksum.clone(),
                fetched: None,
            })
        })
        .collect()
}

/// Whether a file is a tar archive ADD extracts (plain, gzip or zstd; BuildKit also knows
/// bzip2 and xz).
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut file) = fs_err::File::open(path) else {
        return false;
    };
    let Ok(n) = read_full(&mut file, &mut head) else {
        return false;
    };
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // Compressed: check the decompressed start is a tar header.
        let Ok(file) = fs_err::File::open(path) else {
            return false;
        };
        let Ok((_, mut decoded)) = kiln_oci::decompress(BufReader::new(file)) else {
            return false;
        };
        let mut inner = [0u8; 512];
        return read_full(&mut decoded, &mut inner)
            .is_ok_and(|n| n == 512 && is_tar_header(&inner));
    }
    n == 512 && is_tar_header(head)
}

fn is_tar_header(block: &[u8]) -> bool {
    &block[257..262] == b"ustar"
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
