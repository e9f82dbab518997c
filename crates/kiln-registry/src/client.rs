//! [`Client`]: the public entry point. Cheap to clone; one per process is enough (it keeps
//! connections, tokens and the record of where blobs were seen).

use std::sync::Arc;

use kiln_oci::{BlobSink, BlobSource, Digest, ImageRef, Platform};

use crate::auth::Scopes;
use crate::transport::{Transport, unexpected};
use crate::{ClientConfig, PulledImage, PushedImage, RawManifest, RegistryError, Resolved};

/// An OCI distribution client.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<Transport>,
}

impl Client {
    /// A client with `config` (builds the TLS setup; no network traffic yet).
    pub fn new(config: ClientConfig) -> Result<Self, RegistryError> {
        Ok(Self {
            transport: Arc::new(Transport::new(config)?),
        })
    }

    /// The options this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }

    /// `GET url` (any HTTP(S) URL, for `ADD <url>`) through this client's transport: its TLS
    /// roots, user agent, timeouts and retries of connection errors, 5xx and 429 (with
    /// backoff and `Retry-After`), without registry authentication. Returns the final
    /// response whatever its status; a connection failure after every attempt is
    /// [`RegistryError::Transport`].
    pub async fn get_url(&self, url: &reqwest::Url) -> Result<reqwest::Response, RegistryError> {
        self.transport.get_url(url).await
    }

    /// Resolves `reference` to an image manifest; from an index, the entry for `platform`
    /// (exact match first, then the most compatible one).
    pub async fn resolve(
        &self,
        reference: &ImageRef,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        self.transport.resolve(reference, platform).await
    }

    /// Fetches the manifest or index `reference` names, without platform selection.
    pub async fn fetch_manifest(&self, reference: &ImageRef) -> Result<RawManifest, RegistryError> {
        let endpoint = self
            .transport
            .endpoint(reference.registry(), reference.api_host())
            .await?;
        self.transport
            .fetch_manifest(
                &endpoint,
                reference.repository(),
                &reference.manifest_reference(),
                reference.digest(),
            )
            .await
    }

    /// Pulls the image for `platform` into `sink`: config and layers (in parallel, verified,
    /// resumed on broken connections), then the manifest and index bytes.
    pub async fn pull_image(
        &self,
        reference: &ImageRef,
        platform: &Platform,
        sink: &dyn BlobSink,
    ) -> Result<PulledImage, RegistryError> {
        self.transport.pull_image(reference, platform, sink).await
    }

    /// Downloads one blob of `reference`'s repository into `sink` (verified, resumable).
    pub async fn pull_blob(
        &self,
        reference: &ImageRef,
        digest: &Digest,
        size: u64,
        sink: &dyn BlobSink,
    ) -> Result<(), RegistryError> {
        let endpoint = self
            .transport
            .endpoint(reference.registry(), reference.api_host())
            .await?;
        self.transport
            .download_blob(&endpoint, reference.repository(), digest, size, sink)
            .await
            .map(|_| ())
    }

    /// Pushes the manifest (or index) `digest` from `source`, with every blob it references,
    /// to each target. A target with a tag is written by tag, one with only a digest by
    /// digest. The stored manifest bytes are sent unchanged, so the digest is kept.
    pub async fn push_image(
        &self,
        source: &dyn BlobSource,
        digest: &Digest,
        targets: &[ImageRef],
    ) -> Result<PushedImage, RegistryError> {
        self.transport.push_image(source, digest, targets).await
    }

    /// Tells the client that `digest` exists in `repository` of `registry`, so a push of the
    /// same blob to another repository there can mount it instead of uploading it. Pulls and
    /// pushes record this themselves.
    pub fn record_blob_origin(&self, registry: &str, repository: &str, digest: &Digest) {
        self.transport.record_origin(registry, repository, digest);
    }

    /// Checks that the registry accepts the configured credentials (`GET /v2/`, following the
    /// token flow): what `kiln login` verifies before saving them.
    pub async fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        let api_host = if registry == kiln_oci::DOCKER_HUB {
            kiln_oci::DOCKER_HUB_API_HOST
        } else {
            registry
        };
        let endpoint = self.transport.endpoint(registry, api_host).await?;
        let scopes = Scopes::none();
        let url = endpoint.url("v2/")?;
        let operation = "GET /v2/";
        let response = self
            .transport
            .send(&endpoint, &scopes, operation, &|http| {
                Ok(http.get(url.clone()))
            })
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(unexpected(&endpoint, &scopes, operation, "/v2/", response).await)
        }
    }
}
