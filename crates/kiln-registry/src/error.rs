//! [`RegistryError`]: everything that can go wrong talking to a registry, each variant naming
//! the registry, repository or digest concerned and, where there is one, what to do.

use std::path::PathBuf;

use kiln_oci::{BlobError, Digest, MediaType};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry wants credentials and none are configured.
    #[error(
        "registry {registry} requires authentication for {repository}; run `kiln login {registry}` \
         (credentials are read from $DOCKER_CONFIG/config.json or ~/.docker/config.json)"
    )]
    AuthRequired {
        /// The registry.
        registry: String,
        /// The repository that was accessed.
        repository: String,
    },
    /// The configured credentials were refused.
    #[error(
        "registry {registry} refused the credentials for {repository} ({status}); check them with \
         `kiln login {registry}`"
    )]
    AuthRejected {
        /// The registry.
        registry: String,
        /// The repository that was accessed.
        repository: String,
        /// The HTTP status of the refusal.
        status: u16,
    },
    /// The token server did not answer with a usable token.
    #[error("token server {realm} for registry {registry} failed: {reason}")]
    TokenServer {
        /// The registry.
        registry: String,
        /// The token endpoint.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry}: {operation} returned HTTP {status}: {body}")]
    Status {
        /// The registry.
        registry: String,
        /// What was being done (`GET manifest library/busybox:latest`).
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body (the registry's error JSON).
        body: String,
    },
    /// The manifest or blob does not exist.
    #[error("registry {registry}: {what} not found")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was looked for (`manifest library/busybox:nope`).
        what: String,
    },
    /// A connection-level failure (refused, reset, TLS, timeout, an unknown host) after all
    /// retries. Its message carries the whole cause (`…: client error (Connect): dns error:
    /// failed to lookup address information`), so it has no separate source to print twice.
    #[error(
        "registry {registry}: {operation} failed after {attempts} attempt(s): {}",
        crate::transport::error_chain(error)
    )]
    Transport {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        error: reqwest::Error,
    },
    /// A download ended before all bytes arrived and could not be resumed.
    #[error("registry {registry}: blob {digest} ended after {received} of {expected} bytes")]
    Truncated {
        /// The registry.
        registry: String,
        /// The blob.
        digest: Digest,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// Content did not hash to the digest it was asked for; nothing was stored.
    #[error(
        "registry {registry}: content of {repository}@{expected} hashes to {actual}; refused, \
         nothing was stored"
    )]
    DigestMismatch {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The sink or source failed (disk full, missing local blob, verification).
    #[error("blob {digest}: {source}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// The store's error.
        #[source]
        source: BlobError,
    },
    /// A manifest or index could not be parsed.
    #[error(
        "registry {registry}: {what} is not valid JSON of its media type {media_type}: {reason}"
    )]
    BadManifest {
        /// The registry.
        registry: String,
        /// Which manifest (`library/busybox@sha256:…`).
        what: String,
        /// Its media type.
        media_type: String,
        /// The parser's message.
        reason: String,
    },
    /// The registry served a media type kiln cannot pull as an image.
    #[error(
        "registry {registry}: {what} has media type {media_type}, which is not an image manifest or index"
    )]
    UnsupportedMediaType {
        /// The registry.
        registry: String,
        /// Which manifest.
        what: String,
        /// Its media type.
        media_type: MediaType,
    },
    /// No manifest in the index matches the requested platform.
    #[error("{reference}: no manifest for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The reference pulled.
        reference: String,
        /// The requested platform.
        platform: String,
        /// What the index offers.
        available: String,
    },
    /// The docker config could not be read or written (fs_err's message names the file).
    #[error("docker config: {source}")]
    DockerConfigIo {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The docker config file is not what kiln can read, or could not be serialized.
    #[error("docker config {}: {reason}", path.display())]
    DockerConfig {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A `docker-credential-*` helper failed.
    #[error(
        "credential helper docker-credential-{helper} {action} for {registry} failed: {reason}"
    )]
    CredentialHelper {
        /// The helper's suffix (`desktop`, `pass`, `ecr-login`).
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The registry.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP client could not be built (TLS roots, invalid settings).
    #[error("cannot set up the HTTP client: {0}")]
    ClientSetup(String),
    /// The registry's URL or Location header could not be used.
    #[error("registry {registry}: bad URL `{url}`: {reason}")]
    BadUrl {
        /// The registry.
        registry: String,
        /// The offending URL.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// A blob the manifest references is not in the local source (e.g. only one platform of
    /// an index was pulled).
    #[error("cannot push {what}: blob {digest} is missing locally ({source})")]
    MissingLocalBlob {
        /// What was being pushed.
        what: String,
        /// The missing blob.
        digest: Digest,
        /// The source's error.
        #[source]
        source: BlobError,
    },
}

impl RegistryError {
    /// Whether retrying the same request may succeed (connection trouble, 5xx, 429).
    /// Whether a manifest PUT was refused because the registry does not see a blob it
    /// references (`MANIFEST_BLOB_UNKNOWN`): after the client has pushed it, that is a
    /// concurrent push of the same blob rewriting the repository's link to it (distribution
    /// writes it in place), seen for a moment.
    pub(crate) fn is_manifest_blob_unknown(&self) -> bool {
        matches!(self, Self::Status { status: 400, body, .. } if body.contains("MANIFEST_BLOB_UNKNOWN"))
    }

    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Truncated { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
