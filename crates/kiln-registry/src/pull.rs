//! Pulling: resolve a reference to a manifest (choosing a platform from an index), then stream
//! the config and layers into a [`BlobSink`] with bounded parallelism. Blob bodies are never
//! held in memory: chunks go through a bounded channel to a blocking writer thread that owns
//! the sink's [`BlobIngest`]. A broken download resumes with an HTTP `Range` request from the
//! bytes already written; the sink verifies the digest at commit, so a corrupt blob is refused
//! and nothing of it is stored.

use bytes::Bytes;
use futures_util::StreamExt as _;
use kiln_oci::{
    BlobError, BlobIngest, BlobSink, Descriptor, Digest, ImageIndex, ImageManifest, ImageRef,
    MediaType, Platform,
};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};

use crate::auth::Scopes;
use crate::transport::{Endpoint, Transport, error_chain, read_body, unexpected};
use crate::{BlobOutcome, Direction, ProgressEvent, RegistryError};

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
const MANIFEST_SIZE_LIMIT: usize = 4 * 1024 * 1024;
/// Chunks buffered between the network and the writer thread of one blob.
const WRITER_QUEUE: usize = 32;

/// Every manifest media type kiln can pull, for the `Accept` header.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest fetched from a registry, verified against its digest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The media type (from `Content-Type`, else the JSON's `mediaType`).
    pub media_type: MediaType,
    /// The exact bytes served (pushed again unchanged, so the digest is kept).
    pub bytes: Vec<u8>,
}

/// A reference resolved to one image manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference that was resolved.
    pub reference: ImageRef,
    /// The image manifest (platform-specific when the reference named an index).
    pub manifest: RawManifest,
    /// The parsed image manifest.
    pub image: ImageManifest,
    /// The index the manifest was selected from, if the reference named one.
    pub index: Option<RawManifest>,
    /// The platform entry chosen from the index.
    pub platform: Option<Platform>,
}

impl Resolved {
    /// The manifest digest: what the image is pinned to.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The config descriptor.
    pub fn config(&self) -> &Descriptor {
        &self.image.config
    }

    /// The layer descriptors, bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.image.layers
    }
}

/// The result of [`crate::Client::pull_image`].
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// What was pulled.
    pub resolved: Resolved,
    /// Blobs downloaded (config, layers, manifests).
    pub blobs_downloaded: usize,
    /// Blobs the sink already had.
    pub blobs_present: usize,
    /// Bytes received over the network for blobs.
    pub bytes_downloaded: u64,
}

impl Transport {
    /// `GET /v2/<repo>/manifests/<reference>`; verified against `expected` when given.
    pub(crate) async fn fetch_manifest(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<RawManifest, RegistryError> {
        let scopes = Scopes::pull(repository);
        let url = endpoint.url(&format!("v2/{repository}/manifests/{reference}"))?;
        let operation = format!("GET manifest {repository}:{reference}");
        let what = format!("manifest {repository}:{reference}");
        let response = self
            .send(endpoint, &scopes, &operation, &|http| {
                Ok(http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if response.status() != StatusCode::OK {
            return Err(unexpected(endpoint, &scopes, &operation, &what, response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        if response
            .content_length()
            .is_some_and(|len| len > MANIFEST_SIZE_LIMIT as u64)
        {
            return Err(RegistryError::Status {
                registry: endpoint.name.clone(),
                operation,
                status: response.status().as_u16(),
                body: format!("manifest larger than {MANIFEST_SIZE_LIMIT} bytes refused"),
            });
        }
        let bytes = read_body(&endpoint.name, &operation, response).await?;
        let digest = match expected {
            Some(expected) => {
                let actual = verify_bytes(expected, &bytes);
                if actual.as_ref() != Some(expected) {
                    return Err(RegistryError::DigestMismatch {
                        registry: endpoint.name.clone(),
                        repository: repository.to_owned(),
                        expected: expected.clone(),
                        actual: actual.unwrap_or_else(|| Digest::sha256_of(&bytes)),
                    });
                }
                expected.clone()
            }
            None => Digest::sha256_of(&bytes),
        };
        let media_type = detect_media_type(content_type.as_deref(), &bytes);
        Ok(RawManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Resolves `reference` to one image manifest, selecting `platform` from an index.
    pub(crate) async fn resolve(
        &self,
        reference: &ImageRef,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let endpoint = self
            .endpoint(reference.registry(), reference.api_host())
            .await?;
        let repository = reference.repository();
        let top = self
            .fetch_manifest(
                &endpoint,
                repository,
                &reference.manifest_reference(),
                reference.digest(),
            )
            .await?;
        let (manifest, index, chosen) = if top.media_type.is_index() {
            let parsed: ImageIndex = parse_json(&endpoint, reference, &top)?;
            let descriptor = parsed.select_platform(platform).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform_name(platform),
                    available: parsed
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(platform_name))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            let chosen = descriptor.platform.clone();
            let manifest = self
                .fetch_manifest(
                    &endpoint,
                    repository,
                    &descriptor.digest.to_string(),
                    Some(&descriptor.digest),
                )
                .await?;
            (manifest, Some(top), chosen)
        } else {
            (top, None, None)
        };
        if !manifest.media_type.is_manifest() {
            return Err(RegistryError::UnsupportedMediaType {
                registry: endpoint.name.clone(),
                what: format!("{}@{}", reference.name(), manifest.digest),
                media_type: manifest.media_type.clone(),
            });
        }
        let image: ImageManifest = parse_json(&endpoint, reference, &manifest)?;
        self.config.progress.on_event(&ProgressEvent::Resolved {
            reference: reference.to_string(),
            digest: manifest.digest.clone(),
        });
        Ok(Resolved {
            reference: reference.clone(),
            manifest,
            image,
            index,
            platform: chosen,
        })
    }

    /// Pulls the image: config and layers in parallel, then the manifest (and index) bytes,
    /// so a manifest in the sink implies its blobs are there.
    pub(crate) async fn pull_image(
        &self,
        reference: &ImageRef,
        platform: &Platform,
        sink: &dyn BlobSink,
    ) -> Result<PulledImage, RegistryError> {
        let resolved = self.resolve(reference, platform).await?;
        let endpoint = self
            .endpoint(reference.registry(), reference.api_host())
            .await?;
        let repository = reference.repository();
        let mut blobs: Vec<&Descriptor> = vec![resolved.config()];
        for layer in resolved.layers() {
            if !blobs.iter().any(|b| b.digest == layer.digest) {
                blobs.push(layer);
            }
        }
        // Every started download runs to its end (commit or discard) before an error is
        // returned, so the sink holds no half-written blob once the pull has failed.
        let results: Vec<Result<(BlobOutcome, u64), RegistryError>> =
            futures_util::stream::iter(blobs)
                .map(|descriptor| {
                    self.download_blob(
                        &endpoint,
                        repository,
                        &descriptor.digest,
                        descriptor.size,
                        sink,
                    )
                })
                .buffer_unordered(self.config.download_concurrency)
                .collect()
                .await;
        let outcomes = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut pulled = PulledImage {
            blobs_downloaded: 0,
            blobs_present: 0,
            bytes_downloaded: 0,
            resolved,
        };
        for (outcome, bytes) in outcomes {
            if outcome == BlobOutcome::AlreadyPresent {
                pulled.blobs_present += 1;
            } else {
                pulled.blobs_downloaded += 1;
            }
            pulled.bytes_downloaded += bytes;
        }
        let manifests = [
            Some(&pulled.resolved.manifest),
            pulled.resolved.index.as_ref(),
        ];
        for manifest in manifests.into_iter().flatten() {
            if sink.has_blob(&manifest.digest) {
                continue;
            }
            let bytes = Bytes::from(manifest.bytes.clone());
            let ingest = sink
                .begin_ingest(&manifest.digest, Some(bytes.len() as u64))
                .map_err(|source| blob_error(&manifest.digest, source))?;
            let digest = manifest.digest.clone();
            let writer = spawn_writer(ingest);
            writer.send(bytes).await;
            writer
                .commit()
                .await
                .map_err(|source| Self::map_commit_error(&endpoint, repository, &digest, source))?;
        }
        Ok(pulled)
    }

    /// Streams one blob into `sink`, resuming with `Range` after a broken connection.
    /// Returns how it ended and the bytes received.
    pub(crate) async fn download_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
        size: u64,
        sink: &dyn BlobSink,
    ) -> Result<(BlobOutcome, u64), RegistryError> {
        self.record_origin(&endpoint.name, repository, digest);
        let progress = &self.config.progress;
        if sink.has_blob(digest) {
            progress.on_event(&ProgressEvent::BlobFinished {
                digest: digest.clone(),
                size,
                outcome: BlobOutcome::AlreadyPresent,
            });
            return Ok((BlobOutcome::AlreadyPresent, 0));
        }
        progress.on_event(&ProgressEvent::BlobStarted {
            digest: digest.clone(),
            size,
            direction: Direction::Download,
        });
        let begin = || {
            sink.begin_ingest(digest, Some(size))
                .map_err(|source| blob_error(digest, source))
        };
        let mut writer = spawn_writer(begin()?);
        let received = match self
            .stream_blob(endpoint, repository, digest, size, &begin, &mut writer)
            .await
        {
            Ok(received) => received,
            Err(err) => {
                // Wait for the writer to drop its ingest, so no temp file outlives the error.
                writer.discard().await;
                return Err(err);
            }
        };
        writer
            .commit()
            .await
            .map_err(|source| Self::map_commit_error(endpoint, repository, digest, source))?;
        progress.on_event(&ProgressEvent::BlobFinished {
            digest: digest.clone(),
            size,
            outcome: BlobOutcome::Transferred,
        });
        Ok((BlobOutcome::Transferred, received))
    }

    /// Feeds the blob's bytes to `writer`, resuming or restarting (with a fresh ingest from
    /// `begin`) after broken downloads; returns the bytes received.
    async fn stream_blob(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
        size: u64,
        begin: &dyn Fn() -> Result<Box<dyn BlobIngest>, RegistryError>,
        writer: &mut Writer,
    ) -> Result<u64, RegistryError> {
        let progress = &self.config.progress;
        let scopes = Scopes::pull(repository);
        let url = endpoint.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let operation = format!("GET blob {repository}@{digest}");
        let policy = &self.config.retry;
        let mut written: u64 = 0;
        let mut received: u64 = 0;
        let mut attempt = 1;
        loop {
            let offset = written;
            let response = self
                .send(endpoint, &scopes, &operation, &|http| {
                    let request = http.get(url.clone());
                    Ok(if offset > 0 {
                        request.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        request
                    })
                })
                .await?;
            let status = response.status();
            let is_resumed = status == StatusCode::PARTIAL_CONTENT
                && content_range_start(&response) == Some(offset);
            if (offset > 0 && status == StatusCode::OK)
                || (status == StatusCode::PARTIAL_CONTENT && !is_resumed)
            {
                // The server ignored the Range (or answered another one): start over.
                tracing::debug!("{operation}: server did not resume at {offset}; restarting");
                std::mem::replace(writer, spawn_writer(begin()?))
                    .discard()
                    .await;
                written = 0;
                if status == StatusCode::PARTIAL_CONTENT {
                    continue;
                }
            } else if status != StatusCode::OK && !is_resumed {
                return Err(unexpected(
                    endpoint,
                    &scopes,
                    &operation,
                    &format!("blob {repository}@{digest}"),
                    response,
                )
                .await);
            }
            let mut body = response.bytes_stream();
            let broken = loop {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let len = chunk.len() as u64;
                        if written + len > size {
                            // More bytes than the descriptor announced: not this blob.
                            return Err(RegistryError::Blob {
                                digest: digest.clone(),
                                source: BlobError::SizeMismatch {
                                    digest: digest.clone(),
                                    expected: size,
                                    actual: written + len,
                                },
                            });
                        }
                        if !writer.send(chunk).await {
                            break None;
                        }
                        written += len;
                        received += len;
                        progress.on_event(&ProgressEvent::BlobProgress {
                            digest: digest.clone(),
                            done: written,
                            size,
                        });
                    }
                    Some(Err(err)) => break Some(error_chain(&err)),
                    None => break None,
                }
            };
            if writer.is_closed() {
                // The writer failed (disk full…); its error is reported by commit.
                break;
            }
            let reason = match broken {
                Some(reason) => reason,
                None if written == size => break,
                None => format!("body ended after {written} of {size} bytes"),
            };
            if attempt >= policy.max_attempts {
                return Err(RegistryError::Truncated {
                    registry: endpoint.name.clone(),
                    digest: digest.clone(),
                    received: written,
                    expected: size,
                });
            }
            attempt += 1;
            self.retrying(&operation, attempt, policy.backoff(attempt), reason)
                .await;
        }
        Ok(received)
    }

    fn map_commit_error(
        endpoint: &Endpoint,
        repository: &str,
        digest: &Digest,
        source: BlobError,
    ) -> RegistryError {
        match source {
            BlobError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
                registry: endpoint.name.clone(),
                repository: repository.to_owned(),
                expected,
                actual,
            },
            other => blob_error(digest, other),
        }
    }
}

fn blob_error(digest: &Digest, source: BlobError) -> RegistryError {
    RegistryError::Blob {
        digest: digest.clone(),
        source,
    }
}

/// The start offset of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let text = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = text.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

/// The sha256 of `bytes` when `expected` is sha256 (other algorithms are not verified here).
fn verify_bytes(expected: &Digest, bytes: &[u8]) -> Option<Digest> {
    (expected.algorithm() == kiln_oci::Algorithm::Sha256).then(|| Digest::sha256_of(bytes))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    reference: &ImageRef,
    manifest: &RawManifest,
) -> Result<T, RegistryError> {
    serde_json::from_slice(&manifest.bytes).map_err(|err| RegistryError::BadManifest {
        registry: endpoint.name.clone(),
        what: format!("{}@{}", reference.name(), manifest.digest),
        media_type: manifest.media_type.to_string(),
        reason: err.to_string(),
    })
}

fn platform_name(platform: &Platform) -> String {
    match &platform.variant {
        Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
        None => format!("{}/{}", platform.os, platform.architecture),
    }
}

/// The media type of a manifest: the `Content-Type` when it is a manifest type, else the
/// JSON's own `mediaType`, else guessed from its shape (OCI allows omitting `mediaType`).
/// The fields that tell a manifest's kind.
#[derive(serde::Deserialize)]
struct Shape {
    #[serde(rename = "mediaType")]
    media_type: Option<MediaType>,
    manifests: Option<serde_json::Value>,
    config: Option<Descriptor>,
}

pub(crate) fn detect_media_type(content_type: Option<&str>, bytes: &[u8]) -> MediaType {
    if let Some(text) = content_type
        && let Ok(media_type) = text.parse::<MediaType>()
        && (media_type.is_manifest() || media_type.is_index())
    {
        return media_type;
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(media_type),
            ..
        }) => media_type,
        Ok(Shape {
            manifests: Some(_), ..
        }) => MediaType::OciIndex,
        Ok(Shape {
            config: Some(config),
            ..
        }) if config.media_type == MediaType::DockerConfig => MediaType::DockerManifest,
        Ok(Shape {
            config: Some(_), ..
        }) => MediaType::OciManifest,
        _ => MediaType::Other(
            content_type
                .unwrap_or("application/octet-stream")
                .to_owned(),
        ),
    }
}

/// A blocking thread that owns a [`BlobIngest`] and writes the chunks it is sent.
pub(crate) struct Writer {
    sender: Option<tokio::sync::mpsc::Sender<Bytes>>,
    handle: tokio::task::JoinHandle<Result<Box<dyn BlobIngest>, BlobError>>,
}

pub(crate) fn spawn_writer(mut ingest: Box<dyn BlobIngest>) -> Writer {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(WRITER_QUEUE);
    let handle = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        while let Some(chunk) = receiver.blocking_recv() {
            ingest.write_all(&chunk).map_err(|source| BlobError::Io {
                action: "writing downloaded blob",
                path: std::path::PathBuf::from("<sink>"),
                source,
            })?;
        }
        Ok(ingest)
    });
    Writer {
        sender: Some(sender),
        handle,
    }
}

impl Writer {
    /// Queues a chunk; `false` when the writer has failed.
    pub(crate) async fn send(&self, chunk: Bytes) -> bool {
        match &self.sender {
            Some(sender) => sender.send(chunk).await.is_ok(),
            None => false,
        }
    }

    fn is_closed(&self) -> bool {
        self.sender
            .as_ref()
            .is_none_or(tokio::sync::mpsc::Sender::is_closed)
    }

    /// Stops writing and waits until the ingest is dropped (its temp data discarded).
    pub(crate) async fn discard(mut self) {
        drop(self.sender.take());
        let _ = (&mut self.handle).await;
    }

    /// Waits for the queued chunks, then verifies and commits the blob.
    pub(crate) async fn commit(mut self) -> Result<(), BlobError> {
        drop(self.sender.take());
        let ingest = (&mut self.handle).await.map_err(|err| BlobError::Io {
            action: "writing downloaded blob",
            path: std::path::PathBuf::from("<sink>"),
            source: std::io::Error::other(err.to_string()),
        })??;
        tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|err| BlobError::Io {
                action: "committing downloaded blob",
                path: std::path::PathBuf::from("<sink>"),
                source: std::io::Error::other(err.to_string()),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_detection() {
        let oci = MediaType::OciManifest.as_str().to_owned();
        assert_eq!(detect_media_type(Some(&oci), b"{}"), MediaType::OciManifest);
        assert_eq!(
            detect_media_type(Some("application/json"), br#"{"manifests":[]}"#),
            MediaType::OciIndex
        );
        let docker = br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert_eq!(
            detect_media_type(None, docker),
            MediaType::DockerManifestList
        );
        let config = Descriptor::of_bytes(MediaType::DockerConfig, b"{}");
        let body =
            serde_json::json!({"schemaVersion": 2, "config": config, "layers": []}).to_string();
        assert_eq!(
            detect_media_type(Some("text/plain"), body.as_bytes()),
            MediaType::DockerManifest
        );
        assert!(matches!(
            detect_media_type(Some("text/html"), b"<html>"),
            MediaType::Other(_)
        ));
    }
}
