//! Pushing: blobs first (HEAD to skip what the repository has, a cross-repository mount when
//! the blob was seen in another repository of the same registry, else a monolithic `PUT` or
//! chunked `PATCH`es), then child manifests of an index by digest, then the manifest under
//! every requested tag or digest. Manifest bytes are sent exactly as stored, so the digest is
//! preserved.

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_oci::{BlobSource, Descriptor, Digest, ImageIndex, ImageManifest, ImageRef, MediaType};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode, Url};

use crate::auth::Scopes;
use crate::pull::detect_media_type;
use crate::transport::{Endpoint, Transport, unexpected};
use crate::{BlobOutcome, Direction, Progress, ProgressEvent, RegistryError};

/// Largest manifest read from a source.
const MANIFEST_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// Size of the pieces read from the source for a request body.
const READ_PIECE: usize = 1024 * 1024;
/// Pieces buffered between the reader thread and the network.
const BODY_QUEUE: usize = 8;

/// The result of [`crate::Client::push_image`].
#[derive(Debug, Clone, Default)]
pub struct PushedImage {
    /// The manifest (or index) digest.
    pub digest: Option<Digest>,
    /// The references written (`registry/repo:tag` or `…@digest`).
    pub references: Vec<ImageRef>,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_present: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Bytes sent for blobs.
    pub bytes_uploaded: u64,
}

impl PushedImage {
    fn count(&mut self, outcome: &BlobOutcome, bytes: u64) {
        match outcome {
            BlobOutcome::Transferred => self.blobs_uploaded += 1,
            BlobOutcome::AlreadyPresent => self.blobs_present += 1,
            BlobOutcome::Mounted { .. } => self.blobs_mounted += 1,
        }
        self.bytes_uploaded += bytes;
    }
}

/// A manifest read from the source.
struct LocalManifest {
    digest: Digest,
    media_type: MediaType,
    bytes: Bytes,
}

impl Transport {
    /// Pushes the manifest `digest` (an image manifest or an index) with everything it
    /// references from `source` to every target.
    pub(crate) async fn push_image(
        &self,
        source: &dyn BlobSource,
        digest: &Digest,
        targets: &[ImageRef],
    ) -> Result<PushedImage, RegistryError> {
        let top = read_manifest(source, digest, "image")?;
        let mut pushed = PushedImage {
            digest: Some(digest.clone()),
            ..PushedImage::default()
        };
        // Blobs go once per repository, however many tags it gets.
        let mut done_repositories: Vec<(String, String)> = Vec::new();
        for target in targets {
            let endpoint = self.endpoint(target.registry(), target.api_host()).await?;
            let repository = target.repository();
            let key = (target.registry().to_owned(), repository.to_owned());
            if !done_repositories.contains(&key) {
                self.push_tree(&endpoint, repository, source, &top, &mut pushed)
                    .await?;
                done_repositories.push(key);
            }
            let reference = match target.tag() {
                Some(tag) => tag.to_owned(),
                None => digest.to_string(),
            };
            self.put_manifest_retrying(&endpoint, repository, &reference, &top, source)
                .await?;
            let written = match target.tag() {
                Some(_) => target.clone(),
                None => target.with_digest(digest.clone()),
            };
            self.config
                .progress
                .on_event(&ProgressEvent::ManifestPushed {
                    reference: written.to_string(),
                    digest: digest.clone(),
                });
            pushed.references.push(written);
        }
        Ok(pushed)
    }

    /// Pushes everything `manifest` references (for an index: each child manifest with its
    /// blobs, by digest).
    async fn push_tree(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        source: &dyn BlobSource,
        manifest: &LocalManifest,
        pushed: &mut PushedImage,
    ) -> Result<(), RegistryError> {
        if manifest.media_type.is_index() {
            let index: ImageIndex = parse_local(manifest)?;
            for child in &index.manifests {
                let local = read_manifest(source, &child.digest, "index child manifest")?;
                Box::pin(self.push_tree(endpoint, repository, source, &local, pushed)).await?;
                self.put_manifest_retrying(
                    endpoint,
                    repository,
                    &child.digest.to_string(),
                    &local,
                    source,
                )
                .await?;
            }
            return Ok(());
        }
        if !manifest.media_type.is_manifest() {
            return Err(RegistryError::UnsupportedMediaType {
                registry: endpoint.name.clone(),
                what: format!("local manifest {}", manifest.digest),
                media_type: manifest.media_type.clone(),
            });
        }
        let image: ImageManifest = parse_local(manifest)?;
        let mut blobs: Vec<&Descriptor> = Vec::new();
        for descriptor in std::iter::once(&image.config).chain(&image.layers) {
            if blobs.iter().any(|b| b.digest == descriptor.digest) {
                continue;
            }
            // Foreign layers (with `urls`) are fetched by clients from elsewhere; registries
            // need not have them, so they are pushed only when present locally.
            if descriptor.media_type.is_nondistributable()
                && !descriptor.urls.is_empty()
                && source.blob_len(&descriptor.digest).is_err()
            {
                continue;
            }
            blobs.push(descriptor);
        }
        let outcomes: Vec<(BlobOutcome, u64)> = futures_util::stream::iter(blobs)
            .map(|descriptor| self.push_blob(endpoint, repository, &descriptor.digest, source))
            .buffer_unordered(self.config.upload_concurrency)
            .try_collect()
            .await?;
        for (outcome, bytes) in &outcomes {
            pushed.count(outcome, *bytes);
        }
        Ok(())
    }

    /// [`Self::put_manifest`], retried when the registry does not see a blob the manifest
    /// references ([`RegistryError::is_manifest_blob_unknown`]: several runners pushing one
    /// cache or image at once). Before each retry the manifest's blobs are pushed again — a
    /// HEAD each, an upload only for one really missing.
    async fn put_manifest_retrying(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        reference: &str,
        manifest: &LocalManifest,
        source: &dyn BlobSource,
    ) -> Result<(), RegistryError> {
        let policy = &self.config.retry;
        let mut attempt = 1;
        loop {
            match self
                .put_manifest(endpoint, repository, reference, manifest)
                .await
            {
                Err(err) if err.is_manifest_blob_unknown() && attempt < policy.max_attempts => {
                    attempt += 1;
                    let operation = format!("PUT manifest {repository}:{reference}");
                    self.retrying(
                        &operation,
                        attempt,
                        policy.backoff(attempt),
                        err.to_string(),
                    )
                    .await;
                    if manifest.media_type.is_manifest() {
                        let mut again = PushedImage::default();
                        Box::pin(
                            self.push_tree(endpoint, repository, source, manifest, &mut again),
                        )
                        .await?;
                    }
                }
                other => return other,
            }
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the exact stored bytes.
    async fn put_manifest(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        reference: &str,
        manifest: &LocalManifest,
    ) -> Result<(), RegistryError> {
        let scopes = Scopes::push(repository, &[]);
        let url = endpoint.url(&format!("v2/{repository}/manifests/{reference}"))?;
        let operation = format!("PUT manifest {repository}:{reference}");
        let response = self
            .send(endpoint, &scopes, &operation, &|http| {
                Ok(http
                    .put(url.clone())
                    .header(CONTENT_TYPE, manifest.media_type.as_str())
                    .body(manifest.bytes.clone()))
            })
            .await?;
        if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
            return Err(unexpected(
                endpoint,
                &scopes,
                &operation,
                &format!("repository {repository}"),
                response,
            )
            .await);
        }
        if let Some(echoed) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && echoed != manifest.digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: endpoint.name.clone(),
                repository: repository.to_owned(),
                expected: manifest.digest.clone(),
                actual: echoed,
            });
        }
        Ok(())
    }

    /// Pushes one blob unless the repository has it; mounts it when it is known elsewhere.
    pub(crate) async fn push_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
        source: &dyn BlobSource,
    ) -> Result<(BlobOutcome, u64), RegistryError> {
        let size = source
            .blob_len(digest)
            .map_err(|source| RegistryError::MissingLocalBlob {
                what: format!("{}/{repository}", endpoint.name),
                digest: digest.clone(),
                source,
            })?;
        let mount_from = self.origins_of(&endpoint.name, digest, repository);
        let scopes = Scopes::push(repository, &mount_from);
        let progress = &self.config.progress;
        let blob_url = endpoint.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let head_operation = format!("HEAD blob {repository}@{digest}");
        let response = self
            .send(endpoint, &scopes, &head_operation, &|http| {
                Ok(http.head(blob_url.clone()))
            })
            .await?;
        match response.status() {
            StatusCode::OK => {
                self.record_origin(&endpoint.name, repository, digest);
                progress.on_event(&ProgressEvent::BlobFinished {
                    digest: digest.clone(),
                    size,
                    outcome: BlobOutcome::AlreadyPresent,
                });
                return Ok((BlobOutcome::AlreadyPresent, 0));
            }
            StatusCode::NOT_FOUND => {}
            _ => {
                return Err(unexpected(
                    endpoint,
                    &scopes,
                    &head_operation,
                    &format!("blob {digest}"),
                    response,
                )
                .await);
            }
        }
        progress.on_event(&ProgressEvent::BlobStarted {
            digest: digest.clone(),
            size,
            direction: Direction::Upload,
        });
        let policy = &self.config.retry;
        let mut attempt = 1;
        let outcome = loop {
            match self
                .upload_blob(
                    endpoint,
                    repository,
                    &scopes,
                    digest,
                    size,
                    source,
                    mount_from.first(),
                )
                .await
            {
                Ok(outcome) => break outcome,
                Err(err) if err.is_transient() && attempt < policy.max_attempts => {
                    attempt += 1;
                    let operation = format!("upload blob {repository}@{digest}");
                    self.retrying(
                        &operation,
                        attempt,
                        policy.backoff(attempt),
                        err.to_string(),
                    )
                    .await;
                }
                Err(err) => return Err(err),
            }
        };
        self.record_origin(&endpoint.name, repository, digest);
        progress.on_event(&ProgressEvent::BlobFinished {
            digest: digest.clone(),
            size,
            outcome: outcome.clone(),
        });
        let sent = if outcome == BlobOutcome::Transferred {
            size
        } else {
            0
        };
        Ok((outcome, sent))
    }

    /// One upload session: optional mount, then monolithic or chunked upload.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the values are the upload's identity"
    )]
    async fn upload_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        scopes: &Scopes,
        digest: &Digest,
        size: u64,
        source: &dyn BlobSource,
        mount_from: Option<&String>,
    ) -> Result<BlobOutcome, RegistryError> {
        let mut start = endpoint.url(&format!("v2/{repository}/blobs/uploads/"))?;
        if let Some(from) = mount_from {
            start
                .query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let operation = format!("POST blob upload {repository}@{digest}");
        let response = self
            .send(endpoint, scopes, &operation, &|http| {
                Ok(http.post(start.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match (response.status(), mount_from) {
            (StatusCode::CREATED, Some(from)) => {
                return Ok(BlobOutcome::Mounted { from: from.clone() });
            }
            (StatusCode::ACCEPTED, _) => {}
            _ => {
                return Err(unexpected(
                    endpoint,
                    scopes,
                    &operation,
                    &format!("repository {repository}"),
                    response,
                )
                .await);
            }
        }
        let mut location = location_of(endpoint, &response)?;
        let reader = Arc::new(Mutex::new(source.open_blob(digest).map_err(|source| {
            RegistryError::MissingLocalBlob {
                what: format!("{}/{repository}", endpoint.name),
                digest: digest.clone(),
                source,
            }
        })?));
        let progress = self.config.progress.clone();
        // An upload request's response if the registry answered `expected`, else the error.
        let answered = |expected: StatusCode, operation: String, response: Response| async move {
            if response.status() == expected {
                return Ok(response);
            }
            let what = format!("upload of {digest}");
            Err(unexpected(endpoint, scopes, &operation, &what, response).await)
        };
        if size > self.config.monolithic_limit {
            let mut offset = 0;
            while offset < size {
                let len = self.config.chunk_size.min(size - offset);
                let operation = format!("PATCH blob upload {repository}@{digest} at {offset}");
                let body_reader = reader.clone();
                let body_progress = progress.clone();
                let response = self
                    .send_attempts(endpoint, scopes, &operation, 1, &|http| {
                        let body = stream_body(
                            body_reader.clone(),
                            digest.clone(),
                            offset,
                            len,
                            size,
                            body_progress.clone(),
                        );
                        Ok(http
                            .patch(location.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("content-range", format!("{offset}-{}", offset + len - 1))
                            .header(CONTENT_LENGTH, len)
                            .body(body))
                    })
                    .await?;
                let response = answered(StatusCode::ACCEPTED, operation, response).await?;
                location = location_of(endpoint, &response)?;
                offset += len;
            }
            location
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let operation = format!("PUT blob upload {repository}@{digest}");
            let response = self
                .send_attempts(endpoint, scopes, &operation, 1, &|http| {
                    Ok(http.put(location.clone()).header(CONTENT_LENGTH, "0"))
                })
                .await?;
            answered(StatusCode::CREATED, operation, response).await?;
        } else {
            location
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let operation = format!("PUT blob {repository}@{digest}");
            let response = self
                .send_attempts(endpoint, scopes, &operation, 1, &|http| {
                    let body = stream_body(
                        reader.clone(),
                        digest.clone(),
                        0,
                        size,
                        size,
                        progress.clone(),
                    );
                    Ok(http
                        .put(location.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size)
                        .body(body))
                })
                .await?;
            answered(StatusCode::CREATED, operation, response).await?;
        }
        Ok(BlobOutcome::Transferred)
    }
}

/// The upload URL from a `Location` header (absolute or relative to the registry).
fn location_of(endpoint: &Endpoint, response: &reqwest::Response) -> Result<Url, RegistryError> {
    let text = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::BadUrl {
            registry: endpoint.name.clone(),
            url: String::new(),
            reason: format!(
                "upload response {} has no Location header",
                response.status()
            ),
        })?;
    endpoint
        .base
        .join(text)
        .map_err(|err| RegistryError::BadUrl {
            registry: endpoint.name.clone(),
            url: text.to_owned(),
            reason: err.to_string(),
        })
}

/// A request body of `len` bytes read from `reader` on a blocking thread. `offset` and
/// `total` are only for progress reports.
fn stream_body(
    reader: Arc<Mutex<Box<dyn Read + Send>>>,
    digest: Digest,
    offset: u64,
    len: u64,
    total: u64,
    progress: Arc<dyn Progress>,
) -> reqwest::Body {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(BODY_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut remaining = len;
        while remaining > 0 {
            let piece = usize::try_from(remaining).map_or(READ_PIECE, |r| r.min(READ_PIECE));
            let mut buffer = vec![0u8; piece];
            let result = reader.read_exact(&mut buffer).map(|()| Bytes::from(buffer));
            let failed = result.is_err();
            if sender.blocking_send(result).is_err() || failed {
                return;
            }
            remaining -= piece as u64;
            progress.on_event(&ProgressEvent::BlobProgress {
                digest: digest.clone(),
                done: offset + len - remaining,
                size: total,
            });
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    reqwest::Body::wrap_stream(stream)
}

fn read_manifest(
    source: &dyn BlobSource,
    digest: &Digest,
    what: &str,
) -> Result<LocalManifest, RegistryError> {
    let missing = |source| RegistryError::MissingLocalBlob {
        what: format!("{what} {digest}"),
        digest: digest.clone(),
        source,
    };
    let len = source.blob_len(digest).map_err(missing)?;
    if len > MANIFEST_SIZE_LIMIT {
        return Err(RegistryError::BadManifest {
            registry: "local store".to_owned(),
            what: format!("{what} {digest}"),
            media_type: "unknown".to_owned(),
            reason: format!(
                "{len} bytes is larger than the {MANIFEST_SIZE_LIMIT}-byte manifest limit"
            ),
        });
    }
    let mut bytes = Vec::new();
    source
        .open_blob(digest)
        .map_err(missing)?
        .take(MANIFEST_SIZE_LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|err| {
            missing(kiln_oci::BlobError::Io {
                action: "reading manifest",
                path: std::path::PathBuf::from(digest.to_string()),
                source: err,
            })
        })?;
    let actual = Digest::sha256_of(&bytes);
    if &actual != digest {
        return Err(RegistryError::DigestMismatch {
            registry: "local store".to_owned(),
            repository: what.to_owned(),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(LocalManifest {
        digest: digest.clone(),
        media_type: detect_media_type(None, &bytes),
        bytes: Bytes::from(bytes),
    })
}

fn parse_local<T: serde::de::DeserializeOwned>(
    manifest: &LocalManifest,
) -> Result<T, RegistryError> {
    serde_json::from_slice(&manifest.bytes).map_err(|err| RegistryError::BadManifest {
        registry: "local store".to_owned(),
        what: manifest.digest.to_string(),
        media_type: manifest.media_type.to_string(),
        reason: err.to_string(),
    })
}
