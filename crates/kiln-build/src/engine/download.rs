//! `ADD <http(s) URL>`: fetches the URL into the store's staging area, hashing the body while
//! it streams to a temp file (never held in memory), and verifies `--checksum`. The request
//! goes through kiln-registry's transport (`Client::get_url`): the same TLS roots, user
//! agent, timeouts and retries as image pulls.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use kiln_oci::{Algorithm, Digest, Sha256Hasher};

use super::error::DownloadError;

/// A downloaded URL body on the host.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The temp file holding the body.
    pub(crate) path: PathBuf,
    /// SHA-256 of the body.
    pub(crate) digest: Digest,
    /// `Last-Modified`, in seconds since the epoch, when the server sent one.
    pub(crate) last_modified: Option<i64>,
}

/// Whether an ADD source is an HTTP(S) URL to download: not a git repository
/// (`https://host/repo.git` is checked out, BuildKit's `isHTTPSource`).
pub(crate) fn is_http_url(source: &str) -> bool {
    (source.starts_with("http://") || source.starts_with("https://")) && !is_git_source(source)
}

/// Whether an ADD source is a git repository, as BuildKit's dockerfile2llb `isGitSource`
/// tells (a URL whose query BuildKit refuses still counts: the error is reported then).
pub(crate) fn is_git_source(source: &str) -> bool {
    !matches!(crate::git_source::GitRef::parse(source), Ok(None))
}

/// Downloads `url` into a new temp file in `dir` (a remote build context); the error names
/// the URL and the HTTP status.
pub(crate) fn fetch_url(url: &str, dir: &Path) -> Result<PathBuf, DownloadError> {
    fetch(url, dir, None).map(|fetched| fetched.path)
}

/// Parses `--checksum` (`sha256:<hex>`).
pub(crate) fn parse_checksum(url: &str, checksum: &str) -> Result<Digest, DownloadError> {
    let digest: Digest = checksum
        .parse()
        .map_err(|source| DownloadError::InvalidChecksum {
            url: url.to_owned(),
            checksum: checksum.to_owned(),
            source,
        })?;
    if digest.algorithm() != Algorithm::Sha256 {
        return Err(DownloadError::UnsupportedChecksum {
            url: url.to_owned(),
            algorithm: digest.algorithm().as_str().to_owned(),
        });
    }
    Ok(digest)
}

/// The file name BuildKit's Dockerfile frontend gives a downloaded URL: the last segment of
/// the URL's path (percent-decoded), `__unnamed__` when the path has none.
pub(crate) fn file_name(url: &str) -> Result<String, DownloadError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| DownloadError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let name = parsed
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        .map(percent_decode)
        .filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains('/'));
    Ok(name.unwrap_or_else(|| "__unnamed__".to_owned()))
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = segment.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into a new temp file in `dir`; with `expected`, a body with another digest
/// is an error naming the URL and both digests.
pub(crate) fn fetch(
    url: &str,
    dir: &Path,
    expected: Option<&Digest>,
) -> Result<Fetched, DownloadError> {
    let failed = |reason: String| DownloadError::Failed {
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| DownloadError::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let client = kiln_registry::Client::new(kiln_registry::ClientConfig::new())
        .map_err(|e| failed(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("starting the network runtime: {e}")))?;
    let (file, path) = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(dir)
        .map_err(|e| failed(format!("creating a temp file in {}: {e}", dir.display())))?
        .keep()
        .map_err(|e| failed(format!("keeping the temp file: {e}")))?;
    let result = runtime.block_on(stream_to(&client, &parsed, file));
    let (digest, last_modified) = match result {
        Ok(done) => done,
        Err(reason) => {
            let _ = fs_err::remove_file(&path);
            return Err(failed(reason));
        }
    };
    if let Some(expected) = expected
        && *expected != digest
    {
        let _ = fs_err::remove_file(&path);
        return Err(DownloadError::ChecksumMismatch {
            url: url.to_owned(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    Ok(Fetched {
        path,
        digest,
        last_modified,
    })
}

/// Streams the body of `url` into `file` while hashing it; the error is the reason, which
/// [`fetch`] wraps with the URL as the user wrote it.
async fn stream_to(
    client: &kiln_registry::Client,
    url: &reqwest::Url,
    file: std::fs::File,
) -> Result<(Digest, Option<i64>), String> {
    let mut response = client.get_url(url).await.map_err(|e| match e {
        kiln_registry::RegistryError::Transport {
            attempts, error, ..
        } => format!(
            "failed after {attempts} attempt(s): {}",
            error_chain(&error)
        ),
        other => error_chain(&other),
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered HTTP {status}"));
    }
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    let mut writer = std::io::BufWriter::new(file);
    let mut hasher = Sha256Hasher::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        hasher.update(&chunk);
        writer
            .write_all(&chunk)
            .map_err(|e| format!("writing the body: {e}"))?;
    }
    writer
        .flush()
        .map_err(|e| format!("writing the body: {e}"))?;
    Ok((hasher.finish(), last_modified))
}

/// An error with its sources (`error sending request: … Connection refused`).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_is_the_last_path_segment() {
        assert_eq!(
            file_name("https://example.com/a/b/file.tar.gz?x=1").unwrap(),
            "file.tar.gz"
        );
        assert_eq!(file_name("http://example.com/dir/").unwrap(), "dir");
        assert_eq!(file_name("http://example.com/a%20b").unwrap(), "a b");
        assert_eq!(file_name("http://example.com").unwrap(), "__unnamed__");
    }

    #[test]
    fn checksum_must_be_sha256() {
        let hex = "a".repeat(64);
        assert!(parse_checksum("u", &format!("sha256:{hex}")).is_ok());
        assert!(parse_checksum("u", "md5:abc").is_err());
    }
}
