//! What a stored JSON blob points to: a manifest's config and layers, an index's manifests,
//! a config's layer chain. A deliberately loose view (any of Docker's or OCI's media types,
//! unknown fields ignored) so GC and verify follow every edge without a full model.

use kiln_oci::{ChainId, DiffId, Digest};
use serde::Deserialize;

/// JSON blobs larger than this are not manifests, indexes or configs worth parsing.
const MAX_JSON_BLOB: u64 = 8 * 1024 * 1024;

#[derive(Deserialize, Default)]
struct Node {
    #[serde(default)]
    config: Option<Edge>,
    #[serde(default)]
    layers: Vec<Edge>,
    #[serde(default)]
    manifests: Vec<Edge>,
    #[serde(default)]
    subject: Option<Edge>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

/// A descriptor — or, for an image config's `config` member, the container config, which
/// has no digest.
#[derive(Deserialize)]
struct Edge {
    #[serde(default)]
    digest: Option<Digest>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

/// Media types of an uncompressed layer (OCI's and Docker's).
const UNCOMPRESSED_LAYER_TYPES: [&str; 2] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
];

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<DiffId>,
}

/// The outgoing edges of one blob.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Edges {
    /// Blobs that must be present for this one to be usable (config, layers).
    pub(crate) required: Vec<Digest>,
    /// Blobs that may be absent (an index's manifests for platforms never pulled).
    pub(crate) optional: Vec<Digest>,
    /// The layers among `required` that are uncompressed tars: an image a `-t` build kept
    /// in the store lists the layers it made so, digest = diffID, and has no blob for them
    /// (their snapshots stand for them until `kiln push`/`save` compresses them).
    pub(crate) uncompressed: Vec<Digest>,
    /// A config's layers: each diffID with the chain id of the stack up to it (the
    /// snapshots of every prefix of the layer stack the config describes).
    pub(crate) layers: Vec<(DiffId, ChainId)>,
}

/// The edges of a blob given its size and a way to read it; non-JSON blobs have none.
pub(crate) fn edges_of(len: u64, read: impl FnOnce() -> Option<Vec<u8>>) -> Edges {
    if len > MAX_JSON_BLOB || len == 0 {
        return Edges::default();
    }
    let Some(bytes) = read() else {
        return Edges::default();
    };
    if bytes.first() != Some(&b'{') {
        return Edges::default();
    }
    let Ok(node) = serde_json::from_slice::<Node>(&bytes) else {
        return Edges::default();
    };
    let mut edges = Edges::default();
    edges.required.extend(node.config.and_then(|c| c.digest));
    for layer in node.layers {
        let Some(digest) = layer.digest else { continue };
        if layer
            .media_type
            .as_deref()
            .is_some_and(|t| UNCOMPRESSED_LAYER_TYPES.contains(&t))
        {
            edges.uncompressed.push(digest.clone());
        }
        edges.required.push(digest);
    }
    edges
        .optional
        .extend(node.manifests.into_iter().filter_map(|m| m.digest));
    edges.optional.extend(node.subject.and_then(|s| s.digest));
    if let Some(rootfs) = node.rootfs {
        for n in 1..=rootfs.diff_ids.len() {
            if let Some(chain) = ChainId::from_diff_ids(&rootfs.diff_ids[..n]) {
                edges.layers.push((rootfs.diff_ids[n - 1].clone(), chain));
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_manifests_indexes_and_configs() {
        let (c, l1, l2) = (
            Digest::sha256_of(b"c"),
            Digest::sha256_of(b"1"),
            Digest::sha256_of(b"2"),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": c, "size": 1, "mediaType": "x"},
            "layers": [{"digest": l1, "size": 1}, {"digest": l2, "size": 1}],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let edges = edges_of(bytes.len() as u64, || Some(bytes));
        assert_eq!(edges.required, vec![c.clone(), l1.clone(), l2.clone()]);

        let index = serde_json::json!({"manifests": [{"digest": c}]});
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(
            edges_of(bytes.len() as u64, || Some(bytes)).optional,
            vec![c]
        );

        let (d1, d2) = (DiffId(l1), DiffId(l2));
        let config = serde_json::json!({
            "config": {"Env": ["A=1"], "Cmd": null},
            "rootfs": {"type": "layers", "diff_ids": [d1, d2]},
        });
        let bytes = serde_json::to_vec(&config).unwrap();
        let chains: Vec<ChainId> = edges_of(bytes.len() as u64, || Some(bytes))
            .layers
            .into_iter()
            .map(|(_, chain)| chain)
            .collect();
        assert_eq!(
            chains,
            vec![
                ChainId::from_diff_ids(std::slice::from_ref(&d1)).unwrap(),
                ChainId::from_diff_ids(&[d1, d2]).unwrap()
            ]
        );
        assert_eq!(
            edges_of(3, || Some(b"\x1f\x8b\x08".to_vec())),
            Edges::default()
        );
    }
}
