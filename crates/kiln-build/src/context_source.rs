//! Where a build's context comes from — the positional `CONTEXT` of `docker buildx build`:
//! a directory, `-` (a tar stream of the context, or a bare Dockerfile and no context, on
//! stdin), an http(s) URL of a tarball (or of a Dockerfile), or a git repository. Every form
//! but a directory is made into a directory under the store's `tmp/` for the build, removed
//! when the build ends, whether it succeeded or not.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use kiln_oci::{DevicePolicy, ExtractError, ExtractOptions, extract_layer};

use crate::engine::DownloadError;
use crate::git_source::{GitError, GitRef};

/// A tar header's size, and how much of a stream is looked at to tell a tar from a Dockerfile.
const TAR_BLOCK: usize = 512;
/// Offset and length of a tar header's checksum field.
const TAR_CHECKSUM: std::ops::Range<usize> = 148..156;

/// Compression magics buildx (`isArchive`) and docker (`DetectArchiveReader`) take for an
/// archive, with the name kiln uses in errors and whether kiln can read it.
const MAGICS: [(&[u8], &str, bool); 4] = [
    (&[0x1f, 0x8b, 0x08], "gzip", true),
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd", true),
    (&[0x42, 0x5a, 0x68], "bzip2", false),
    (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz", false),
];

/// The build arg that keeps the `.git` directory of a git context (BuildKit's dockerui).
pub(crate) const KEEP_GIT_DIR_ARG: &str = "BUILDKIT_CONTEXT_KEEP_GIT_DIR";

/// Where a build's context comes from (see [`ContextSource::parse`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ContextSource {
    /// A directory on this machine.
    Dir(PathBuf),
    /// A stream (`-`: stdin): a tar archive of the context (plain, gzip or zstd), or a
    /// Dockerfile with an empty context, told apart as buildx does.
    Stream(ContextStream),
    /// An http(s) URL of a tar archive of the context (or of a Dockerfile).
    Url(String),
    /// A git repository at a ref, optionally a subdirectory of it.
    Git(GitRef),
}

impl ContextSource {
    /// Classifies the `CONTEXT` argument as buildx does: `-` is stdin; a git URL (BuildKit's
    /// rules, see [`GitRef::parse`]) a repository; any other http(s) URL a tarball; anything
    /// else a directory.
    pub fn parse(argument: &str) -> Result<Self, GitError> {
        if argument == "-" {
            return Ok(Self::Stream(ContextStream::stdin()));
        }
        if let Some(git) = GitRef::parse(argument)? {
            return Ok(Self::Git(git));
        }
        if argument.starts_with("http://") || argument.starts_with("https://") {
            return Ok(Self::Url(argument.to_owned()));
        }
        Ok(Self::Dir(PathBuf::from(argument)))
    }

    /// How the source is named in messages and in the build's history.
    pub fn display_name(&self) -> String {
        match self {
            Self::Dir(path) => path.display().to_string(),
            Self::Stream(_) => "-".to_owned(),
            Self::Url(url) => url.clone(),
            Self::Git(git) => git.display_name(),
        }
    }
}

/// A reader of a context stream, read once (a second build of the same [`crate::Builder`]
/// finds it used).
#[derive(Clone)]
pub struct ContextStream(Arc<Mutex<Option<Box<dyn Read + Send>>>>);

impl std::fmt::Debug for ContextStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextStream")
    }
}

impl ContextStream {
    /// A stream read from `reader`.
    pub fn new(reader: impl Read + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Some(Box::new(reader)))))
    }

    /// This process's standard input.
    pub fn stdin() -> Self {
        Self::new(io::stdin())
    }

    fn take(&self) -> Option<Box<dyn Read + Send>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Why a context source cannot be made into a directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextSourceError {
    /// The stream was read by an earlier build.
    #[error("the context stream (-) was already read by an earlier build")]
    StreamUsed,
    /// Reading the stream or a downloaded body failed.
    #[error("reading the context {source_name}: {source}")]
    Read {
        /// `-` or the URL.
        source_name: String,
        /// Why.
        source: io::Error,
    },
    /// An archive kiln cannot decompress.
    #[error(
        "the context {source_name} is a {compression} archive, which kiln cannot read: send it uncompressed, gzip- or zstd-compressed"
    )]
    UnsupportedCompression {
        /// `-` or the URL.
        source_name: String,
        /// `bzip2`, `xz`.
        compression: &'static str,
    },
    /// The archive does not extract.
    #[error("the context {source_name} is not a valid archive: {source}")]
    Extract {
        /// `-` or the URL.
        source_name: String,
        /// Why.
        source: ExtractError,
    },
    /// The tarball cannot be downloaded.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The repository cannot be checked out.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The temp directory cannot be made.
    #[error("creating a directory for the context in {}: {source}", .path.display())]
    TempDir {
        /// Its parent.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A context made into a directory for one build; removed when dropped.
#[derive(Debug)]
pub(crate) struct MaterializedContext {
    /// The temp directory holding it (and a downloaded body).
    dir: PathBuf,
    /// The context's root: `dir/context`, or a git subdirectory of it.
    pub(crate) root: PathBuf,
    /// The Dockerfile the source was, when it was one (the context is then empty).
    pub(crate) dockerfile_text: Option<String>,
}

impl Drop for MaterializedContext {
    fn drop(&mut self) {
        if let Err(err) = kiln_store::remove_tree(&self.dir) {
            tracing::warn!(%err, dir = %self.dir.display(), "removing a build context");
        }
    }
}

/// Makes `source` (not a directory) into a directory under `tmp` (the store's `tmp/`, so a
/// context left by a killed build is removed by `kiln prune`, whose dead-temp rule reads the
/// pid in the name).
pub(crate) fn materialize(
    source: &ContextSource,
    tmp: &Path,
    keep_git_dir: bool,
) -> Result<MaterializedContext, ContextSourceError> {
    let temp_dir = |source| ContextSourceError::TempDir {
        path: tmp.to_path_buf(),
        source,
    };
    fs_err::create_dir_all(tmp).map_err(temp_dir)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("context-{}-", std::process::id()))
        .tempdir_in(tmp)
        .map_err(temp_dir)?
        .keep();
    let mut made = MaterializedContext {
        root: dir.join("context"),
        dir,
        dockerfile_text: None,
    };
    fs_err::create_dir(&made.root).map_err(temp_dir)?;
    let name = source.display_name();
    match source {
        ContextSource::Dir(path) => made.root.clone_from(path),
        ContextSource::Stream(stream) => {
            let reader = stream.take().ok_or(ContextSourceError::StreamUsed)?;
            made.dockerfile_text = unpack_or_read(reader, &made.root, &name)?;
        }
        ContextSource::Url(url) => {
            let fetched = crate::engine::fetch_url(url, &made.dir)?;
            let body = fs_err::File::open(&fetched).map_err(|source| ContextSourceError::Read {
                source_name: name.clone(),
                source,
            })?;
            made.dockerfile_text = unpack_or_read(io::BufReader::new(body), &made.root, &name)?;
            let _ = fs_err::remove_file(&fetched);
        }
        ContextSource::Git(git) => {
            let keep = keep_git_dir || git.keep_git_dir == Some(true);
            git.checkout(&made.root, None, keep)?;
            made.root = git.subdir_of(&made.root)?;
        }
    }
    Ok(made)
}

/// Extracts `reader` into `root` when it is an archive (buildx's `isArchive`: a compression
/// magic, or a first block that is a tar header); otherwise it is a Dockerfile, returned.
fn unpack_or_read(
    mut reader: impl Read + Send,
    root: &Path,
    name: &str,
) -> Result<Option<String>, ContextSourceError> {
    let read_error = |source| ContextSourceError::Read {
        source_name: name.to_owned(),
        source,
    };
    let mut head = vec![0u8; TAR_BLOCK];
    let filled = read_full(&mut reader, &mut head).map_err(read_error)?;
    head.truncate(filled);
    let whole = io::Cursor::new(head.clone()).chain(reader);
    match archive_kind(&head) {
        Some((false, compression)) => Err(ContextSourceError::UnsupportedCompression {
            source_name: name.to_owned(),
            compression,
        }),
        Some(_) => {
            // A context is not a layer: no device nodes, no owners from the archive (COPY
            // sets them), every path inside `root` (kiln-oci's hardened extraction).
            let options = ExtractOptions::new()
                .layer_name(format!("context {name}"))
                .devices(DevicePolicy::Skip)
                .chown(false);
            let stats = extract_layer(whole, root, &options).map_err(|source| {
                ContextSourceError::Extract {
                    source_name: name.to_owned(),
                    source,
                }
            })?;
            if stats.devices_skipped > 0 {
                tracing::warn!(
                    context = name,
                    skipped = stats.devices_skipped,
                    "device nodes of the context archive were left out"
                );
            }
            Ok(None)
        }
        None => {
            let mut text = String::new();
            io::BufReader::new(whole)
                .read_to_string(&mut text)
                .map_err(read_error)?;
            Ok(Some(text))
        }
    }
}

/// `Some((readable, name))` when `head` starts an archive: whether kiln can decompress it,
/// and its compression's name.
fn archive_kind(head: &[u8]) -> Option<(bool, &'static str)> {
    if let Some((_, name, readable)) = MAGICS.iter().find(|(m, ..)| head.starts_with(m)) {
        return Some((*readable, name));
    }
    is_tar_header(head).then_some((true, "tar"))
}

/// Whether `block` is a tar header: a full block, not all zeros, whose checksum field holds
/// the sum of its bytes with that field read as spaces (Go's `archive/tar`, which buildx's
/// check runs; it accepts the signed sum too).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < TAR_BLOCK || block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[TAR_CHECKSUM];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| !matches!(c, ' ' | '\0'))
        .collect();
    let Ok(recorded) = i64::from_str_radix(&digits, 8) else {
        return false;
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block[..TAR_BLOCK].iter().enumerate() {
        let b = if TAR_CHECKSUM.contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b.cast_signed());
    }
    recorded == unsigned || recorded == signed
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(read) => n += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, content).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn arguments_are_classified_as_buildx_does() {
        assert!(matches!(
            ContextSource::parse("-").unwrap(),
            ContextSource::Stream(_)
        ));
        assert!(matches!(
            ContextSource::parse("https://h/ctx.tar.gz").unwrap(),
            ContextSource::Url(_)
        ));
        assert!(matches!(
            ContextSource::parse("https://h/repo.git#main").unwrap(),
            ContextSource::Git(_)
        ));
        assert!(matches!(
            ContextSource::parse("git@h:repo.git").unwrap(),
            ContextSource::Git(_)
        ));
        assert!(matches!(
            ContextSource::parse("app").unwrap(),
            ContextSource::Dir(_)
        ));
    }

    #[test]
    fn a_tar_is_extracted_and_anything_else_is_a_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of("app/hello.txt", b"hi\n");
        assert!(is_tar_header(&tar[..TAR_BLOCK]));
        let text = unpack_or_read(&tar[..], dir.path(), "-").unwrap();
        assert_eq!(text, None);
        assert_eq!(
            fs_err::read(dir.path().join("app/hello.txt")).unwrap(),
            b"hi\n"
        );
        let text = unpack_or_read(&b"FROM scratch\n"[..], dir.path(), "-").unwrap();
        assert_eq!(text.as_deref(), Some("FROM scratch\n"));
        // A Dockerfile of exactly one block is still a Dockerfile (no valid checksum).
        let block = format!("FROM scratch\n#{}\n", "x".repeat(TAR_BLOCK - 15));
        assert_eq!(block.len(), TAR_BLOCK);
        assert_eq!(
            unpack_or_read(block.as_bytes(), dir.path(), "-").unwrap(),
            Some(block)
        );
    }

    #[test]
    fn unreadable_compressions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_or_read(&b"BZh91AY&SY"[..], dir.path(), "-").unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
    }

    #[test]
    fn escaping_entries_stay_inside_the_context() {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("ctx");
        fs_err::create_dir(&inner).unwrap();
        let mut tar = Vec::new();
        {
            let mut builder = tar::Builder::new(&mut tar);
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            builder.append_link(&mut header, "up", "../..").unwrap();
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, "up/x", &b"no\n"[..])
                .unwrap();
            builder.finish().unwrap();
        }
        let _ = unpack_or_read(&tar[..], &inner, "-");
        assert!(!root.path().join("x").exists());
        assert!(!root.path().parent().unwrap().join("x").exists());
    }
}
