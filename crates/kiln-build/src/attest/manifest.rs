//! The attestation manifest of one platform image, as BuildKit's image writer
//! (`commitAttestationsManifest`) makes it: an OCI image manifest whose layers are the
//! in-toto statements (`application/vnd.in-toto+json`, each annotated with its predicate
//! type), whose config is an `unknown/unknown` image config listing them as diff ids, and
//! whose index entry has platform `unknown/unknown` and the `vnd.docker.reference.type:
//! attestation-manifest` and `vnd.docker.reference.digest: <image manifest>` annotations.

use kiln_oci::{
    ANNOTATION_DOCKER_REFERENCE_TYPE, Descriptor, ImageManifest, JsonBlob, JsonError, MediaType,
    Platform,
};

use super::statement::{IN_TOTO_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION, Statement};

/// `vnd.docker.reference.digest`: the image manifest an attestation manifest is about.
pub(crate) const ANNOTATION_DOCKER_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of `vnd.docker.reference.type` on an attestation manifest.
pub(crate) const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";

/// An attestation manifest and the blobs it is made of.
#[derive(Debug)]
pub(crate) struct AttestationManifest {
    /// Its entry in the index (platform `unknown/unknown`, the reference annotations).
    pub(crate) descriptor: Descriptor,
    /// Every blob: the statements, the config and the manifest.
    pub(crate) blobs: Vec<Vec<u8>>,
}

/// The platform BuildKit gives attestation manifests (`intotoPlatform`).
pub(crate) fn unknown_platform() -> Platform {
    Platform::new("unknown", "unknown")
}

/// The attestation manifest of `statements` about the image manifest `image`.
pub(crate) fn attestation_manifest(
    image: &Descriptor,
    statements: &[Statement],
) -> Result<AttestationManifest, JsonError> {
    let mut blobs = Vec::with_capacity(statements.len() + 2);
    let mut layers = Vec::with_capacity(statements.len());
    for statement in statements {
        let bytes = statement.to_layer_bytes();
        layers.push(
            Descriptor::of_bytes(MediaType::from(IN_TOTO_MEDIA_TYPE), &bytes)
                .with_annotation(PREDICATE_TYPE_ANNOTATION, &statement.predicate_type),
        );
        blobs.push(bytes);
    }
    let config = attestation_config(&layers);
    let config_descriptor = Descriptor::of_bytes(MediaType::OciConfig, &config);
    blobs.push(config);
    let manifest = JsonBlob::from_value(ImageManifest::new(config_descriptor, layers))?;
    let descriptor = manifest
        .descriptor(MediaType::OciManifest)
        .with_platform(unknown_platform())
        .with_annotation(ANNOTATION_DOCKER_REFERENCE_TYPE, REFERENCE_TYPE_ATTESTATION)
        .with_annotation(
            ANNOTATION_DOCKER_REFERENCE_DIGEST,
            &image.digest.to_string(),
        );
    blobs.push(manifest.bytes().to_vec());
    Ok(AttestationManifest { descriptor, blobs })
}

/// BuildKit's `attestationsConfig`: an image config of platform `unknown/unknown` whose
/// diff ids are the statements' digests (they are stored uncompressed).
fn attestation_config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::statement::Subject;
    use kiln_oci::Digest;

    #[test]
    fn manifest_has_buildkit_shape() {
        let image = Descriptor::of_bytes(MediaType::OciManifest, b"image");
        let statement = Statement::new(
            "https://slsa.dev/provenance/v1",
            vec![Subject::new("_", &image.digest)],
            serde_json::json!({}),
        );
        let made = attestation_manifest(&image, std::slice::from_ref(&statement)).unwrap();
        assert_eq!(made.descriptor.media_type, MediaType::OciManifest);
        assert_eq!(made.descriptor.platform, Some(unknown_platform()));
        assert_eq!(
            made.descriptor.annotations[ANNOTATION_DOCKER_REFERENCE_TYPE],
            "attestation-manifest"
        );
        assert_eq!(
            made.descriptor.annotations[ANNOTATION_DOCKER_REFERENCE_DIGEST],
            image.digest.to_string()
        );
        let manifest: serde_json::Value = serde_json::from_slice(&made.blobs[2]).unwrap();
        assert_eq!(Digest::sha256_of(&made.blobs[2]), made.descriptor.digest);
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        assert_eq!(
            layer["annotations"]["in-toto.io/predicate-type"],
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(
            layer["digest"],
            Digest::sha256_of(&made.blobs[0]).to_string()
        );
        let config: serde_json::Value = serde_json::from_slice(&made.blobs[1]).unwrap();
        assert_eq!(
            String::from_utf8(made.blobs[1].clone()).unwrap(),
            format!(
                r#"{{"architecture":"unknown","os":"unknown","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
                Digest::sha256_of(&made.blobs[0])
            )
        );
        assert_eq!(config["rootfs"]["diff_ids"][0], layer["digest"]);
    }
}
