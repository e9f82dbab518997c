//! Content descriptors (OCI image-spec descriptor.md) and the well-known annotation keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical::null_as_default;
use crate::{Digest, MediaType, Platform};

/// `org.opencontainers.image.ref.name`: the tag of a manifest in an OCI layout's `index.json`
/// (BuildKit and skopeo write the tag alone, e.g. `latest`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `io.containerd.image.name`: the full image name in an OCI layout's `index.json`
/// (`docker.io/library/busybox:latest`), as containerd, BuildKit and Docker 25+ write it.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// `org.opencontainers.image.created`: creation time, RFC 3339.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// `org.opencontainers.image.base.name`: the base image's reference.
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
/// `org.opencontainers.image.base.digest`: the base image's manifest digest.
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// A reference to a blob: what it is, its digest and its size (OCI descriptor.md).
///
/// Unknown properties are kept in [`Descriptor::extra`] so foreign descriptors round-trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Spec: "This REQUIRED property contains the media type of the referenced content."
    #[serde(rename = "mediaType")]
    pub media_type: MediaType,
    /// Spec: "This REQUIRED property is the digest of the targeted content."
    pub digest: Digest,
    /// Spec: "This REQUIRED property specifies the size, in bytes, of the raw content. This
    /// property exists so that a client will have an expected size for the content before
    /// processing. If the length of the retrieved content does not match the specified
    /// length, the content SHOULD NOT be trusted."
    pub size: u64,
    /// Spec: "This OPTIONAL property specifies a list of URIs from which this object MAY be
    /// downloaded."
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub urls: Vec<String>,
    /// Spec: "This OPTIONAL property contains arbitrary metadata for this descriptor."
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Only in an index's `manifests`: the platform the manifest is for. Spec: "This
    /// OPTIONAL property describes the minimum runtime requirements of the image."
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Spec: "This OPTIONAL property contains the type of an artifact when the descriptor
    /// points to an artifact."
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<MediaType>,
    /// Spec: "This OPTIONAL property contains an embedded representation of the referenced
    /// content. Values MUST conform to the Base 64 encoding, as defined in RFC 4648." Kept
    /// as its base64 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Properties this version of kiln does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with only the three required properties.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Self {
        Self {
            media_type,
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
            data: None,
            extra: BTreeMap::new(),
        }
    }

    /// The descriptor of `bytes` (digest and size computed here).
    pub fn of_bytes(media_type: MediaType, bytes: &[u8]) -> Self {
        Self::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
    }

    /// Adds the platform.
    #[must_use]
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    /// Adds (or replaces) an annotation.
    #[must_use]
    pub fn with_annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The `org.opencontainers.image.ref.name` annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    /// The `io.containerd.image.name` annotation, if any.
    pub fn image_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_IMAGE_NAME)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_canonical_json;

    #[test]
    fn required_fields_only_and_omits_empty_optionals() {
        let d = Descriptor::of_bytes(MediaType::OciConfig, b"{}");
        let json = String::from_utf8(to_canonical_json(&d).unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"digest":"{}","mediaType":"application/vnd.oci.image.config.v1+json","size":2}}"#,
                Digest::sha256_of(b"{}")
            )
        );
    }

    #[test]
    fn unknown_properties_and_nulls_survive() {
        let text = format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":7,
               "urls":null,"annotations":{{"b":"2","a":"1"}},"x-vendor":{{"z":1,"y":[true]}}}}"#,
            Digest::sha256_of(b"layer")
        );
        let d: Descriptor = serde_json::from_str(&text).unwrap();
        assert!(d.urls.is_empty());
        assert_eq!(d.annotations.len(), 2);
        assert_eq!(d.extra["x-vendor"]["z"], 1);
        let out = String::from_utf8(to_canonical_json(&d).unwrap()).unwrap();
        assert!(out.contains(r#""x-vendor":{"y":[true],"z":1}"#), "{out}");
        let again: Descriptor = serde_json::from_str(&out).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn missing_required_field_is_an_error() {
        assert!(serde_json::from_str::<Descriptor>(r#"{"mediaType":"x","size":1}"#).is_err());
    }
}
