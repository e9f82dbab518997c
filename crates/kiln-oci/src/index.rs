//! Image indexes (OCI image-spec image-index.md) and Docker manifest lists (same shape,
//! `application/vnd.docker.distribution.manifest.list.v2+json`); also the `index.json` of an
//! OCI image layout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical::null_as_default;
use crate::manifest::SCHEMA_VERSION;
use crate::{Descriptor, MediaType, ModelError, Platform};

/// A list of manifests, usually one per platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// Spec: "This REQUIRED property specifies the image manifest schema version. For this
    /// version of the specification, this MUST be `2`."
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Spec: "This property SHOULD be used … When used, this field MUST contain the media type
    /// `application/vnd.oci.image.index.v1+json`." (Docker manifest lists use theirs.)
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Spec: "This OPTIONAL property contains the type of an artifact when the manifest is
    /// used for an artifact."
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<MediaType>,
    /// Spec: "This REQUIRED property contains a list of manifests for specific platforms.
    /// While this property MUST be present, the size of the array MAY be zero."
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
    /// Spec: "This OPTIONAL property specifies a descriptor of another manifest."
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Spec: "This OPTIONAL property contains arbitrary metadata for the image index."
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

impl ImageIndex {
    /// An OCI index of `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            media_type: Some(MediaType::OciIndex),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The image manifest for `platform`: an exact match (after normalization) first, then
    /// the most compatible one (containerd `platforms.Only` order); entries without a
    /// platform, attestation manifests (`vnd.docker.reference.type`), nested indexes and
    /// unknown media types (artifacts) are not candidates. Among equally good entries the first wins.
    pub fn select_platform(&self, platform: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| d.media_type.is_manifest())
            .filter(|d| !d.annotations.contains_key(ANNOTATION_DOCKER_REFERENCE_TYPE))
            .filter_map(|d| Some((platform.compatibility_rank(d.platform.as_ref()?)?, d)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, d)| d)
    }

    /// Checks the spec's structural MUSTs (schema version, index media type).
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ModelError::SchemaVersion {
                what: "image index",
                found: self.schema_version,
            });
        }
        if let Some(media_type) = &self.media_type
            && !media_type.is_index()
        {
            return Err(ModelError::UnexpectedMediaType {
                what: "image index",
                found: media_type.clone(),
            });
        }
        Ok(())
    }
}

/// `vnd.docker.reference.type`: marks BuildKit's attestation manifests in an index (their
/// platform is `unknown/unknown`); they are never an image to run.
pub const ANNOTATION_DOCKER_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn entry(platform: &str, content: &[u8]) -> Descriptor {
        Descriptor::of_bytes(MediaType::OciManifest, content)
            .with_platform(platform.parse().unwrap())
    }

    #[test]
    fn selects_exact_then_compatible_platforms() {
        let mut v8 = entry("linux/arm64", b"arm64");
        v8.platform.as_mut().unwrap().variant = Some("v8".into());
        let index = ImageIndex::new(vec![
            entry("linux/amd64", b"amd64"),
            entry("linux/arm/v7", b"armv7"),
            v8.clone(),
            entry("linux/386", b"386"),
        ]);
        let pick = |p: &str| {
            index
                .select_platform(&p.parse().unwrap())
                .map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64"), Some(Digest::sha256_of(b"amd64")));
        assert_eq!(pick("linux/arm64/v8"), Some(v8.digest.clone()));
        assert_eq!(pick("linux/arm/v7"), Some(Digest::sha256_of(b"armv7")));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
        let only_386 = ImageIndex::new(vec![entry("linux/386", b"386")]);
        assert!(
            only_386
                .select_platform(&"linux/amd64".parse().unwrap())
                .is_some()
        );
    }

    #[test]
    fn artifacts_are_never_selected() {
        let artifact = Descriptor::of_bytes(MediaType::from("application/vnd.example+json"), b"a")
            .with_platform("linux/amd64".parse().unwrap());
        let index = ImageIndex::new(vec![artifact, entry("linux/386", b"386")]);
        let picked = index
            .select_platform(&"linux/amd64".parse().unwrap())
            .unwrap();
        assert_eq!(picked.digest, Digest::sha256_of(b"386"));
    }

    #[test]
    fn attestations_are_never_selected() {
        let attestation = entry("linux/amd64", b"att")
            .with_annotation(ANNOTATION_DOCKER_REFERENCE_TYPE, "attestation-manifest");
        let index = ImageIndex::new(vec![attestation]);
        assert!(
            index
                .select_platform(&"linux/amd64".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn docker_manifest_list_parses() {
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
              "manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,
              "digest":"{}","platform":{{"architecture":"arm","os":"linux","variant":"v6"}}}}]}}"#,
            Digest::sha256_of(b"m")
        );
        let index: ImageIndex = serde_json::from_str(&text).unwrap();
        index.validate().unwrap();
        assert!(
            index
                .select_platform(&"linux/arm/v7".parse().unwrap())
                .is_some()
        );
        let mut wrong = index.clone();
        wrong.schema_version = 3;
        assert!(wrong.validate().is_err());
    }
}
