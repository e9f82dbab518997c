//! Single-platform image manifests (OCI image-spec manifest.md; Docker "Image Manifest V2,
//! Schema 2" has the same shape with Docker media types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical::null_as_default;
use crate::{Descriptor, Digest, ImageIndex, JsonBlob, JsonError, MediaType};

/// The `schemaVersion` every supported manifest and index carries.
pub const SCHEMA_VERSION: u32 = 2;

/// An image manifest: one config and an ordered list of layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// Spec: "This REQUIRED property specifies the image manifest schema version. For this
    /// version of the specification, this MUST be `2` to ensure backward compatibility with
    /// older versions of Docker."
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Spec: "This property SHOULD be used and remain compatible with earlier versions of
    /// this specification and with other similar external formats. When used, this field
    /// MUST contain the media type `application/vnd.oci.image.manifest.v1+json`." (Docker
    /// schema 2 requires its own manifest type here.)
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Spec: "This OPTIONAL property contains the type of an artifact when the manifest is
    /// used for an artifact. This MUST be set when `config.mediaType` is set to the empty
    /// value."
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<MediaType>,
    /// Spec: "This REQUIRED property references a configuration object for a container, by
    /// digest."
    pub config: Descriptor,
    /// Spec: "Each item in the array MUST be a descriptor. For portability, `layers` SHOULD
    /// have at least one entry. … The final filesystem layout MUST match the result of
    /// applying the layers to an empty directory." Base layer first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
    /// Spec: "This OPTIONAL property specifies a descriptor of another manifest. This value
    /// defines a weak association to a separate Merkle Directed Acyclic Graph (DAG)
    /// structure, and is used by the referrers API."
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Spec: "This OPTIONAL property contains arbitrary metadata for the image manifest."
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Properties this version of kiln does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageManifest {
    /// An OCI manifest (`schemaVersion` 2, OCI manifest media type) for `config` and `layers`.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            media_type: Some(MediaType::OciManifest),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The effective media type: the declared one, or by the config's type when absent
    /// (OCI allows omitting it; Docker schema 2 always has it).
    pub fn effective_media_type(&self) -> MediaType {
        match &self.media_type {
            Some(media_type) => media_type.clone(),
            None if self.config.media_type == MediaType::DockerConfig => MediaType::DockerManifest,
            None => MediaType::OciManifest,
        }
    }

    /// Checks the spec's structural MUSTs: schema version 2, a manifest media type when one
    /// is given, a layer (or no) media type on every layer, `artifactType` when the config
    /// is the empty descriptor.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ModelError::SchemaVersion {
                what: "image manifest",
                found: self.schema_version,
            });
        }
        if let Some(media_type) = &self.media_type
            && !media_type.is_manifest()
        {
            return Err(ModelError::UnexpectedMediaType {
                what: "image manifest",
                found: media_type.clone(),
            });
        }
        if self.config.media_type == MediaType::OciEmpty && self.artifact_type.is_none() {
            return Err(ModelError::MissingArtifactType);
        }
        Ok(())
    }
}

/// A pulled manifest of either kind, with its original bytes.
#[derive(Debug, Clone)]
pub enum AnyManifest {
    /// A single-platform image manifest.
    Image(Box<JsonBlob<ImageManifest>>),
    /// A multi-platform index or manifest list.
    Index(Box<JsonBlob<ImageIndex>>),
}

impl AnyManifest {
    /// Parses `bytes` as whichever kind they are: by `content_type` (a registry's
    /// `Content-Type`) when it names a manifest or index type, else by the document's own
    /// `mediaType`, else by shape (`manifests` → index, `config` → manifest). Docker schema 1
    /// manifests are refused.
    pub fn parse(
        bytes: Vec<u8>,
        content_type: Option<&MediaType>,
    ) -> Result<Self, AnyManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "schemaVersion", default)]
            schema_version: Option<u32>,
            #[serde(rename = "mediaType", default)]
            media_type: Option<MediaType>,
            #[serde(default)]
            manifests: Option<serde::de::IgnoredAny>,
            #[serde(default)]
            config: Option<serde::de::IgnoredAny>,
        }
        let digest = Digest::sha256_of(&bytes);
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|source| {
            AnyManifestError::Json(JsonError::Parse {
                what: "manifest",
                digest: digest.clone(),
                source,
            })
        })?;
        if probe.schema_version == Some(1) {
            return Err(AnyManifestError::SchemaV1 { digest });
        }
        let declared = content_type
            .filter(|t| t.is_manifest() || t.is_index())
            .or(probe.media_type.as_ref());
        let is_index = match declared {
            Some(t) if t.is_index() => true,
            Some(t) if t.is_manifest() => false,
            Some(other) => {
                return Err(AnyManifestError::NotAManifest {
                    digest,
                    media_type: other.clone(),
                });
            }
            None => probe.manifests.is_some() && probe.config.is_none(),
        };
        Ok(if is_index {
            let index = JsonBlob::<ImageIndex>::parse(bytes)?;
            index.value().validate()?;
            Self::Index(Box::new(index))
        } else {
            let manifest = JsonBlob::<ImageManifest>::parse(bytes)?;
            manifest.value().validate()?;
            Self::Image(Box::new(manifest))
        })
    }

    /// The digest of the original bytes.
    pub fn digest(&self) -> &Digest {
        match self {
            Self::Image(m) => m.digest(),
            Self::Index(i) => i.digest(),
        }
    }

    /// The original bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Image(m) => m.bytes(),
            Self::Index(i) => i.bytes(),
        }
    }

    /// The effective media type (declared, or inferred for documents that omit it).
    pub fn media_type(&self) -> MediaType {
        match self {
            Self::Image(m) => m.value().effective_media_type(),
            Self::Index(i) => i.value().media_type.clone().unwrap_or(MediaType::OciIndex),
        }
    }

    /// A descriptor of the original bytes.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type(),
            self.digest().clone(),
            self.bytes().len() as u64,
        )
    }
}

/// Why bytes are not a usable manifest or index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnyManifestError {
    /// Not JSON of the expected shape.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Breaks a spec MUST.
    #[error("manifest is invalid: {0}")]
    Model(#[from] ModelError),
    /// Docker image manifest schema 1 (deprecated, signed, unsupported).
    #[error(
        "manifest {digest} uses Docker schema 1, which is deprecated and not supported; rebuild or re-push the image with a current tool"
    )]
    SchemaV1 {
        /// The manifest.
        digest: Digest,
    },
    /// The declared media type is not a manifest or index type.
    #[error("{digest} has media type `{media_type}`, which is not an image manifest or index")]
    NotAManifest {
        /// The document.
        digest: Digest,
        /// Its declared media type.
        media_type: MediaType,
    },
}

/// A manifest or index that breaks one of the spec's MUSTs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `schemaVersion` is not 2.
    #[error("{what} has schemaVersion {found}; only schemaVersion 2 is supported")]
    SchemaVersion {
        /// The document kind.
        what: &'static str,
        /// The version found.
        found: u32,
    },
    /// The declared `mediaType` is not one this document kind may have.
    #[error("{what} declares media type `{found}`, which is not a {what} type")]
    UnexpectedMediaType {
        /// The document kind.
        what: &'static str,
        /// The media type found.
        found: MediaType,
    },
    /// An artifact manifest with an empty config but no `artifactType`.
    #[error(
        "manifest uses the empty config descriptor but has no artifactType (the OCI spec requires one)"
    )]
    MissingArtifactType,
    /// A REQUIRED field of an image config is empty or missing.
    #[error("image config has no `{field}`; the OCI spec requires it")]
    MissingConfigField {
        /// The JSON field name.
        field: &'static str,
    },
    /// `rootfs.type` is not `layers`.
    #[error("image config has rootfs type `{0}`; the OCI spec defines only `layers`")]
    UnknownRootfsType(String),
    /// The config's `rootfs.diff_ids` and the manifest's layers differ in number.
    #[error(
        "image config lists {diff_ids} diff_ids but the manifest has {layers} layers; they must correspond one to one"
    )]
    LayerCountMismatch {
        /// Number of diff ids in the config.
        diff_ids: usize,
        /// Number of layer descriptors.
        layers: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_schema2_manifest_parses_and_keeps_bytes() {
        let text = format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1470, "digest": "{c}"}},
   "layers": [{{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2220094, "digest": "{l}"}}]
}}"#,
            c = Digest::sha256_of(b"c"),
            l = Digest::sha256_of(b"l")
        );
        let blob: JsonBlob<ImageManifest> = JsonBlob::parse(text.clone().into_bytes()).unwrap();
        assert_eq!(blob.bytes(), text.as_bytes());
        let m = blob.value();
        m.validate().unwrap();
        assert_eq!(m.effective_media_type(), MediaType::DockerManifest);
        assert_eq!(m.layers[0].media_type, MediaType::DockerLayerTarGzip);
        assert_eq!(m.layers[0].size, 2_220_094);
    }

    #[test]
    fn oci_manifest_serializes_without_empty_optionals() {
        let config = Descriptor::of_bytes(MediaType::OciConfig, b"{}");
        let m = ImageManifest::new(config, Vec::new());
        let json: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(
            json["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(json["layers"], serde_json::json!([]));
        assert!(json.get("annotations").is_none() && json.get("subject").is_none());
    }

    #[test]
    fn any_manifest_detects_the_kind() {
        let manifest = ImageManifest::new(
            Descriptor::of_bytes(MediaType::OciConfig, b"{}"),
            Vec::new(),
        );
        let bytes = crate::to_canonical_json(&manifest).unwrap();
        let parsed = AnyManifest::parse(bytes.clone(), None).unwrap();
        assert!(matches!(parsed, AnyManifest::Image(_)));
        assert_eq!(parsed.bytes(), bytes.as_slice());
        assert_eq!(parsed.descriptor().digest, Digest::sha256_of(&bytes));

        let index = ImageIndex::new(Vec::new());
        let mut untyped = serde_json::to_value(&index).unwrap();
        untyped.as_object_mut().unwrap().remove("mediaType");
        let bytes = serde_json::to_vec(&untyped).unwrap();
        assert!(matches!(
            AnyManifest::parse(bytes.clone(), None).unwrap(),
            AnyManifest::Index(_)
        ));
        let hinted = AnyManifest::parse(bytes, Some(&MediaType::DockerManifestList)).unwrap();
        assert_eq!(hinted.media_type(), MediaType::OciIndex);

        let v1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#.to_vec();
        assert!(matches!(
            AnyManifest::parse(v1, None),
            Err(AnyManifestError::SchemaV1 { .. })
        ));
        let other = br#"{"schemaVersion":2,"mediaType":"text/plain"}"#.to_vec();
        assert!(matches!(
            AnyManifest::parse(other, None),
            Err(AnyManifestError::NotAManifest { .. })
        ));
    }

    #[test]
    fn validate_rejects_spec_violations() {
        let config = Descriptor::of_bytes(MediaType::OciConfig, b"{}");
        let mut m = ImageManifest::new(config, Vec::new());
        m.schema_version = 1;
        assert!(matches!(
            m.validate(),
            Err(ModelError::SchemaVersion { found: 1, .. })
        ));
        m.schema_version = 2;
        m.media_type = Some(MediaType::OciIndex);
        assert!(m.validate().is_err());
        m.media_type = None;
        m.config.media_type = MediaType::OciEmpty;
        assert_eq!(m.validate(), Err(ModelError::MissingArtifactType));
    }
}
