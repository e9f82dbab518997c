//! Media types of OCI and Docker v2 schema 2 content (OCI image-spec media-types.md,
//! Docker "Image Manifest V 2, Schema 2").
//!
//! [`MediaType`] is the closed set kiln understands plus [`MediaType::Other`] for anything
//! else, so reading foreign content never fails on an unknown type and writes it back
//! unchanged. [`LayerCompression`] says how a layer blob is compressed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a layer blob is compressed, as told by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerCompression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Zstandard (RFC 8478).
    Zstd,
}

/// A content media type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MediaType {
    /// `application/vnd.oci.descriptor.v1+json`.
    OciDescriptor,
    /// `application/vnd.oci.layout.header.v1+json` (the `oci-layout` file).
    OciLayoutHeader,
    /// `application/vnd.oci.image.manifest.v1+json`.
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
    /// `application/vnd.oci.image.config.v1+json`.
    OciConfig,
    /// `application/vnd.oci.empty.v1+json` (the `{}` blob of artifacts).
    OciEmpty,
    /// `application/vnd.oci.image.layer.v1.tar`.
    OciLayerTar,
    /// `application/vnd.oci.image.layer.v1.tar+gzip`.
    OciLayerTarGzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`.
    OciLayerTarZstd,
    /// `application/vnd.oci.image.layer.nondistributable.v1.tar` (deprecated by the spec).
    OciLayerNondistributableTar,
    /// `application/vnd.oci.image.layer.nondistributable.v1.tar+gzip` (deprecated).
    OciLayerNondistributableTarGzip,
    /// `application/vnd.oci.image.layer.nondistributable.v1.tar+zstd` (deprecated).
    OciLayerNondistributableTarZstd,
    /// `application/vnd.docker.distribution.manifest.v2+json`.
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`.
    DockerManifestList,
    /// `application/vnd.docker.container.image.v1+json`.
    DockerConfig,
    /// `application/vnd.docker.image.rootfs.diff.tar` (uncompressed, as `docker save` layers).
    DockerLayerTar,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`.
    DockerLayerTarGzip,
    /// `application/vnd.docker.image.rootfs.diff.tar.zstd` (written by BuildKit for zstd in
    /// Docker manifests).
    DockerLayerTarZstd,
    /// `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip` (Windows base layers).
    DockerForeignLayerTarGzip,
    /// Any other media type, kept verbatim.
    Other(String),
}

/// Every known variant with its wire name; the single source of truth for parse and print.
const KNOWN: &[(MediaType, &str)] = &[
    (
        MediaType::OciDescriptor,
        "application/vnd.oci.descriptor.v1+json",
    ),
    (
        MediaType::OciLayoutHeader,
        "application/vnd.oci.layout.header.v1+json",
    ),
    (
        MediaType::OciManifest,
        "application/vnd.oci.image.manifest.v1+json",
    ),
    (
        MediaType::OciIndex,
        "application/vnd.oci.image.index.v1+json",
    ),
    (
        MediaType::OciConfig,
        "application/vnd.oci.image.config.v1+json",
    ),
    (MediaType::OciEmpty, "application/vnd.oci.empty.v1+json"),
    (
        MediaType::OciLayerTar,
        "application/vnd.oci.image.layer.v1.tar",
    ),
    (
        MediaType::OciLayerTarGzip,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    (
        MediaType::OciLayerTarZstd,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ),
    (
        MediaType::OciLayerNondistributableTar,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    ),
    (
        MediaType::OciLayerNondistributableTarGzip,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    ),
    (
        MediaType::OciLayerNondistributableTarZstd,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    ),
    (
        MediaType::DockerManifest,
        "application/vnd.docker.distribution.manifest.v2+json",
    ),
    (
        MediaType::DockerManifestList,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ),
    (
        MediaType::DockerConfig,
        "application/vnd.docker.container.image.v1+json",
    ),
    (
        MediaType::DockerLayerTar,
        "application/vnd.docker.image.rootfs.diff.tar",
    ),
    (
        MediaType::DockerLayerTarGzip,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    (
        MediaType::DockerLayerTarZstd,
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
    ),
    (
        MediaType::DockerForeignLayerTarGzip,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ),
];

impl MediaType {
    /// The wire name, e.g. `application/vnd.oci.image.manifest.v1+json`.
    pub fn as_str(&self) -> &str {
        if let Self::Other(text) = self {
            return text;
        }
        KNOWN
            .iter()
            .find(|(known, _)| known == self)
            .map_or("", |(_, name)| name)
    }

    /// A single-platform image manifest (OCI or Docker schema 2).
    pub fn is_manifest(&self) -> bool {
        matches!(self, Self::OciManifest | Self::DockerManifest)
    }

    /// A multi-platform index (OCI index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        matches!(self, Self::OciIndex | Self::DockerManifestList)
    }

    /// An image configuration blob.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::OciConfig | Self::DockerConfig)
    }

    /// A filesystem layer (any compression, distributable or not).
    pub fn is_layer(&self) -> bool {
        self.layer_compression().is_some()
    }

    /// A layer that registries may refuse to store (non-distributable / foreign); such
    /// descriptors usually carry `urls` and the blob may be absent locally.
    pub fn is_nondistributable(&self) -> bool {
        matches!(
            self,
            Self::OciLayerNondistributableTar
                | Self::OciLayerNondistributableTarGzip
                | Self::OciLayerNondistributableTarZstd
                | Self::DockerForeignLayerTarGzip
        )
    }

    /// Whether this is a Docker (rather than OCI) media type.
    pub fn is_docker(&self) -> bool {
        matches!(
            self,
            Self::DockerManifest
                | Self::DockerManifestList
                | Self::DockerConfig
                | Self::DockerLayerTar
                | Self::DockerLayerTarGzip
                | Self::DockerLayerTarZstd
                | Self::DockerForeignLayerTarGzip
        )
    }

    /// The compression of a layer media type; `None` when this is not a layer type.
    pub fn layer_compression(&self) -> Option<LayerCompression> {
        Some(match self {
            Self::OciLayerTar | Self::OciLayerNondistributableTar | Self::DockerLayerTar => {
                LayerCompression::None
            }
            Self::OciLayerTarGzip
            | Self::OciLayerNondistributableTarGzip
            | Self::DockerLayerTarGzip
            | Self::DockerForeignLayerTarGzip => LayerCompression::Gzip,
            Self::OciLayerTarZstd
            | Self::OciLayerNondistributableTarZstd
            | Self::DockerLayerTarZstd => LayerCompression::Zstd,
            _ => return None,
        })
    }

    /// The OCI layer media type for a compression.
    pub fn oci_layer(compression: LayerCompression) -> Self {
        match compression {
            LayerCompression::None => Self::OciLayerTar,
            LayerCompression::Gzip => Self::OciLayerTarGzip,
            LayerCompression::Zstd => Self::OciLayerTarZstd,
        }
    }

    /// The Docker layer media type for a compression.
    pub fn docker_layer(compression: LayerCompression) -> Self {
        match compression {
            LayerCompression::None => Self::DockerLayerTar,
            LayerCompression::Gzip => Self::DockerLayerTarGzip,
            LayerCompression::Zstd => Self::DockerLayerTarZstd,
        }
    }

    /// The Docker equivalent of an OCI type (manifest, index, config, distributable layer);
    /// other types are returned unchanged.
    #[must_use]
    pub fn to_docker(&self) -> Self {
        match self {
            Self::OciManifest => Self::DockerManifest,
            Self::OciIndex => Self::DockerManifestList,
            Self::OciConfig => Self::DockerConfig,
            Self::OciLayerTar => Self::DockerLayerTar,
            Self::OciLayerTarGzip => Self::DockerLayerTarGzip,
            Self::OciLayerTarZstd => Self::DockerLayerTarZstd,
            other => other.clone(),
        }
    }

    /// The OCI equivalent of a Docker type (manifest, list, config, layer); other types are
    /// returned unchanged.
    #[must_use]
    pub fn to_oci(&self) -> Self {
        match self {
            Self::DockerManifest => Self::OciManifest,
            Self::DockerManifestList => Self::OciIndex,
            Self::DockerConfig => Self::OciConfig,
            Self::DockerLayerTar => Self::OciLayerTar,
            Self::DockerLayerTarGzip => Self::OciLayerTarGzip,
            Self::DockerLayerTarZstd => Self::OciLayerTarZstd,
            Self::DockerForeignLayerTarGzip => Self::OciLayerNondistributableTarGzip,
            other => other.clone(),
        }
    }
}

impl FromStr for MediaType {
    type Err = std::convert::Infallible;

    /// Never fails: unknown names become [`MediaType::Other`]. Parameters such as
    /// `; charset=utf-8` are kept verbatim (they make a different type on the wire).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(KNOWN
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(|| Self::Other(s.to_owned()), |(known, _)| known.clone()))
    }
}

impl From<&str> for MediaType {
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(media_type) => media_type,
            Err(never) => match never {},
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::from(text.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_type_round_trips_through_its_name() {
        for (media_type, name) in KNOWN {
            assert_eq!(media_type.as_str(), *name);
            assert_eq!(&MediaType::from(*name), media_type);
            let json = serde_json::to_string(media_type).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                &serde_json::from_str::<MediaType>(&json).unwrap(),
                media_type
            );
        }
    }

    #[test]
    fn unknown_types_are_kept_verbatim() {
        let name = "application/vnd.in-toto+json";
        let media_type = MediaType::from(name);
        assert_eq!(media_type, MediaType::Other(name.to_owned()));
        assert_eq!(media_type.to_string(), name);
        assert!(!media_type.is_layer() && !media_type.is_manifest());
    }

    #[test]
    fn classification_and_compression() {
        assert!(MediaType::OciManifest.is_manifest());
        assert!(MediaType::DockerManifestList.is_index());
        assert!(MediaType::DockerConfig.is_config());
        assert_eq!(
            MediaType::DockerForeignLayerTarGzip.layer_compression(),
            Some(LayerCompression::Gzip)
        );
        assert!(MediaType::DockerForeignLayerTarGzip.is_nondistributable());
        assert_eq!(
            MediaType::OciLayerTarZstd.layer_compression(),
            Some(LayerCompression::Zstd)
        );
        assert_eq!(
            MediaType::DockerLayerTar.layer_compression(),
            Some(LayerCompression::None)
        );
        assert_eq!(MediaType::OciConfig.layer_compression(), None);
        for c in [
            LayerCompression::None,
            LayerCompression::Gzip,
            LayerCompression::Zstd,
        ] {
            assert_eq!(
                MediaType::oci_layer(c).to_docker(),
                MediaType::docker_layer(c)
            );
            assert_eq!(MediaType::docker_layer(c).to_oci(), MediaType::oci_layer(c));
        }
    }
}
