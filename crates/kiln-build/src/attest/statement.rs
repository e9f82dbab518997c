//! in-toto Statements (v1): the envelope each attestation layer holds, and the package URLs
//! (`pkg:docker/…`) that name images in them, as BuildKit's `util/purl` writes them.

use std::collections::BTreeMap;

use kiln_oci::{Digest, ImageRef, Platform};
use serde::Serialize;

/// `_type` of an in-toto Statement v1.
pub(crate) const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The media type of an attestation layer (in-toto's `PayloadType`).
pub(crate) const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The layer annotation naming a statement's predicate type.
pub(crate) const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// One subject of a statement: a name and the digests of the artifact.
///
/// Spec (in-toto Statement v1): "Each element MUST have `digest` set. … If the name is not
/// meaningful, leave the field unset or use `_`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Subject {
    /// `pkg:docker/NAME@TAG?platform=…` for an image, a path for a file, or `_`.
    pub(crate) name: String,
    /// Algorithm → lowercase hex.
    pub(crate) digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject of `digest` named `name`.
    pub(crate) fn new(name: impl Into<String>, digest: &Digest) -> Self {
        Self {
            name: name.into(),
            digest: digest_set(digest),
        }
    }
}

/// `{"sha256": "<hex>"}`: a DigestSet of one digest.
pub(crate) fn digest_set(digest: &Digest) -> BTreeMap<String, String> {
    BTreeMap::from([(
        digest.algorithm().as_str().to_owned(),
        digest.hex().to_owned(),
    )])
}

/// An in-toto Statement v1, its fields in the order BuildKit's (in-toto-golang's) writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Statement {
    /// Always [`STATEMENT_V1`].
    #[serde(rename = "_type")]
    #[expect(clippy::struct_field_names, reason = "the in-toto field's name")]
    pub(crate) statement_type: &'static str,
    /// What the predicate is (`https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`).
    #[serde(rename = "predicateType")]
    pub(crate) predicate_type: String,
    /// The artifacts it is about.
    pub(crate) subject: Vec<Subject>,
    /// The predicate.
    pub(crate) predicate: serde_json::Value,
}

impl Statement {
    /// A statement of `predicate` (of `predicate_type`) about `subject`.
    pub(crate) fn new(
        predicate_type: &str,
        subject: Vec<Subject>,
        predicate: serde_json::Value,
    ) -> Self {
        Self {
            statement_type: STATEMENT_V1,
            predicate_type: predicate_type.to_owned(),
            subject,
            predicate,
        }
    }

    /// The compact JSON an attestation layer holds (BuildKit's `json.Marshal`).
    pub(crate) fn to_layer_bytes(&self) -> Vec<u8> {
        // A Value of strings, maps and arrays always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The indented JSON a `type=local` output's file holds (BuildKit's `MarshalIndent`).
    pub(crate) fn to_file_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// The subjects of an image's statements: one per name the image is exported under (as
/// BuildKit's exporter makes them from its `name=`), each `pkg:docker/NAME@TAG?platform=…`
/// with the platform manifest's digest; `_` when the image has no name.
pub(crate) fn image_subjects(
    names: &[String],
    platform: &Platform,
    manifest: &Digest,
) -> Vec<Subject> {
    let mut subjects: Vec<Subject> = names
        .iter()
        .filter_map(|name| ImageRef::parse(name).ok())
        .map(|reference| Subject::new(image_purl(&reference, Some(platform)), manifest))
        .collect();
    if subjects.is_empty() {
        subjects.push(Subject::new("_", manifest));
    }
    subjects
}

/// BuildKit's `purl.RefToPURL("docker", ref, platform)`: the familiar name split into
/// namespace and name, the tag as version (`latest` when the reference has neither tag nor
/// digest), a pinned digest and the platform as qualifiers.
pub(crate) fn image_purl(reference: &ImageRef, platform: Option<&Platform>) -> String {
    let familiar = reference.familiar();
    // The familiar form is `name[:tag][@digest]`; the name is everything before them.
    let name_end = familiar
        .find('@')
        .map_or(familiar.len(), |at| at)
        .min(tag_start(&familiar).unwrap_or(familiar.len()));
    let name = &familiar[..name_end];
    let mut out = format!("pkg:docker/{}", escape(name, true));
    let version = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_owned()),
    };
    if let Some(version) = version {
        out.push('@');
        out.push_str(&escape(&version, false));
    }
    let mut qualifiers: Vec<(&str, String)> = Vec::new();
    if let Some(digest) = reference.digest() {
        qualifiers.push(("digest", digest.to_string()));
    }
    if let Some(platform) = platform {
        qualifiers.push(("platform", platform.to_string()));
    }
    for (i, (key, value)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&escape(value, false));
    }
    out
}

/// Where the tag of a familiar reference starts (its `:` after the last `/`), if it has one.
fn tag_start(familiar: &str) -> Option<usize> {
    let before_digest = familiar.split('@').next().unwrap_or(familiar);
    let last_slash = before_digest.rfind('/').map_or(0, |i| i + 1);
    before_digest[last_slash..]
        .find(':')
        .map(|i| last_slash + i)
}

/// Percent-encodes what a package URL component may not hold as is; `/` (and `:` of a
/// registry's port) stay in the namespace and name.
fn escape(text: &str, is_path: bool) -> String {
    super::sbom::purl::encode_keeping(text, if is_path { b"/:" } else { b"" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purl(reference: &str, platform: Option<&str>) -> String {
        let platform: Option<Platform> = platform.map(|p| p.parse().unwrap());
        image_purl(&ImageRef::parse(reference).unwrap(), platform.as_ref())
    }

    #[test]
    fn purls_match_buildkit() {
        assert_eq!(
            purl("alpine", Some("linux/amd64")),
            "pkg:docker/alpine@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            purl("docker.io/library/debian:bookworm", Some("linux/arm64/v8")),
            "pkg:docker/debian@bookworm?platform=linux%2Farm64"
        );
        assert_eq!(
            purl("localhost:5000/team/app:1.0", None),
            "pkg:docker/localhost:5000/team/app@1.0"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            purl(&format!("busybox@{digest}"), Some("linux/amd64")),
            format!(
                "pkg:docker/busybox?digest=sha256%3A{}&platform=linux%2Famd64",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn statement_fields_are_in_buildkit_order() {
        let digest = Digest::sha256_of(b"m");
        let statement = Statement::new(
            "https://slsa.dev/provenance/v1",
            image_subjects(&[], &"linux/amd64".parse().unwrap(), &digest),
            serde_json::json!({"a": 1}),
        );
        let text = String::from_utf8(statement.to_layer_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","subject":[{{"name":"_","digest":{{"sha256":"{}"}}}}],"predicate":{{"a":1}}}}"#,
                digest.hex()
            )
        );
    }
}
