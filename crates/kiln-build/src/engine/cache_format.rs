//! The format of an exported build cache (`--cache-to`, read back by `--cache-from`): an OCI
//! image manifest — not an index, so registries without OCI 1.1 artifact support accept it —
//! whose config blob, of media type [`CACHE_CONFIG_MEDIA_TYPE`], holds kiln's cache records
//! ([`CacheConfig`]) and whose layers are the layer blobs those records name.
//!
//! A cache read from a registry or a directory is untrusted input. [`parse_cache`] checks it
//! whole before any record is used: the manifest's type and its config's, size caps, a
//! version it knows (a newer or unknown one is [`ParsedCache::UnknownVersion`], ignored with
//! a warning by the caller), no unknown fields, every record's key recomputed from its inputs,
//! and every layer it names listed in the manifest with the same size and type. The blobs
//! themselves are verified by digest when they are fetched. Pure: no I/O here.
//!
//! With `cache-mounts=true` the config also names the cache mounts' layers
//! ([`CacheConfig::cache_mounts`]): each a tar of one `RUN --mount=type=cache` directory, a
//! layer of the manifest like the records' layers.

use std::collections::{BTreeMap, BTreeSet};

use kiln_oci::{DiffId, Digest, ImageManifest, MediaType};
use kiln_plan::{CACHE_KEY_SCHEMA, CacheKey, KeyInputs};
use serde::{Deserialize, Serialize};

/// The image manifest annotation an inline cache (`--cache-to type=inline`) keeps its
/// [`CacheConfig`] in.
pub(crate) const INLINE_ANNOTATION: &str = "dev.kiln.cache.config.v1";
/// Largest inline cache kept in an image manifest (registries cap manifests at 4 MiB).
pub(crate) const MAX_INLINE_BYTES: usize = 1024 * 1024;

/// Media type of the cache config blob.
pub(crate) const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";
/// The version of [`CacheConfig`] this kiln writes and reads.
pub(crate) const CACHE_FORMAT_VERSION: u32 = 1;
/// Largest cache config read (records are small: ~1 KiB a step).
pub(crate) const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;
/// Most records one cache may hold.
pub(crate) const MAX_RECORDS: usize = 100_000;
/// Most layers one cache manifest may list.
pub(crate) const MAX_LAYERS: usize = 50_000;
/// Longest `created` or `step` string in a record.
const MAX_FIELD_LEN: usize = 256;
/// Longest label of a COPY key input (a path in the copied tree).
const MAX_LABEL_LEN: usize = 8192;
/// Most COPY key inputs one cache may hold, over all its memos.
const MAX_COPY_INPUTS: usize = 2_000_000;
/// Most cache mounts one cache may hold.
pub(crate) const MAX_CACHE_MOUNTS: usize = 1_000;
/// The length of a cache mount id as the store names its directory: the first 32 hex digits
/// of the SHA-256 of the Dockerfile's `id=` (what `Store::cache_mount_dir` receives).
pub(crate) const CACHE_MOUNT_ID_LEN: usize = 32;

/// The config blob: the records of a cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CacheConfig {
    /// [`CACHE_FORMAT_VERSION`].
    pub(crate) version: u32,
    /// One per step key, sorted by key.
    pub(crate) records: Vec<ExportedRecord>,
    /// The key inputs of the `COPY --from=<stage>` steps, by their memo key (a digest of the
    /// copy, its destination chain and its source chain): with them a fresh runner computes
    /// such a step's key without the source stage's files, so a hit downloads nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) copy_inputs: BTreeMap<String, BTreeMap<String, Digest>>,
    /// The cache mounts' contents (`cache-mounts=true`), by mount id: each a layer of the
    /// manifest, a tar of the directory, restored by `--cache-from` into an empty mount.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) cache_mounts: BTreeMap<String, ExportedLayer>,
}

/// What the cache remembers of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExportedRecord {
    /// The step's cache key: the digest of `inputs`.
    pub(crate) key: CacheKey,
    /// The key of the stage's previous step (`inputs.parent`), `None` for a first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<CacheKey>,
    /// The step as build histories name it (`stage:position`), for miss reasons.
    pub(crate) step: String,
    /// When the step originally ran (history `created`).
    pub(crate) created: String,
    /// The layer it made, `None` when it changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) layer: Option<ExportedLayer>,
    /// Everything the key was computed from: why a later build misses.
    pub(crate) inputs: KeyInputs,
    /// When a build last answered the step and exported this record (RFC 3339): what
    /// `max-age` and `max-size` measure when a later export carries the record over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_used: Option<String>,
}

/// The layer of an [`ExportedRecord`]: its diffID and its blob (a layer of the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExportedLayer {
    /// Digest of the uncompressed tar.
    pub(crate) diff_id: DiffId,
    /// The compressed blob.
    pub(crate) digest: Digest,
    /// Its size.
    pub(crate) size: u64,
    /// Its media type.
    pub(crate) media_type: MediaType,
}

/// A cache of this version, checked.
#[derive(Debug, Default)]
pub(crate) struct CacheRecords {
    /// Its records by key.
    pub(crate) records: BTreeMap<CacheKey, ExportedRecord>,
    /// Its COPY key inputs by memo key ([`CacheConfig::copy_inputs`]).
    pub(crate) copy_inputs: BTreeMap<String, BTreeMap<String, Digest>>,
    /// Its cache mounts' layers by mount id ([`CacheConfig::cache_mounts`]).
    pub(crate) cache_mounts: BTreeMap<String, ExportedLayer>,
}

/// What [`parse_cache`] found.
#[derive(Debug)]
pub(crate) enum ParsedCache {
    /// A cache of this version.
    Records(CacheRecords),
    /// A cache of a version this kiln does not read.
    UnknownVersion(u32),
}

/// Why a cache manifest or config is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CacheFormatError {
    /// The manifest is not JSON of an image manifest.
    #[error("the cache manifest is not an OCI image manifest: {0}")]
    Manifest(String),
    /// A manifest, but of something else.
    #[error(
        "the manifest is not a kiln cache: its config is {found}, expected {CACHE_CONFIG_MEDIA_TYPE}"
    )]
    Foreign {
        /// The config's media type.
        found: MediaType,
    },
    /// Something is larger than its cap.
    #[error("the cache {what} has {found}, more than the limit of {limit}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size or count.
        found: u64,
        /// The cap.
        limit: u64,
    },
    /// The config is not the records of this version.
    #[error("the cache config is malformed: {0}")]
    Config(String),
    /// A record that does not hold together.
    #[error("cache record {key}: {reason}")]
    Record {
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl CacheConfig {
    /// The config's bytes (canonical JSON: the same records give the same digest).
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, kiln_oci::JsonError> {
        kiln_oci::to_canonical_json(self)
    }
}

/// Checks a cache's manifest (already parsed from bytes of at most the registry's manifest
/// size) and the config it names before the config is fetched: a kiln cache manifest with
/// a config under [`MAX_CONFIG_BYTES`] and at most [`MAX_LAYERS`] layers.
pub(crate) fn check_manifest(manifest: &ImageManifest) -> Result<(), CacheFormatError> {
    manifest
        .validate()
        .map_err(|e| CacheFormatError::Manifest(e.to_string()))?;
    if manifest.effective_media_type() != MediaType::OciManifest {
        return Err(CacheFormatError::Manifest(format!(
            "its media type is {}",
            manifest.effective_media_type()
        )));
    }
    if manifest.config.media_type.as_str() != CACHE_CONFIG_MEDIA_TYPE {
        return Err(CacheFormatError::Foreign {
            found: manifest.config.media_type.clone(),
        });
    }
    if manifest.config.size > MAX_CONFIG_BYTES {
        return Err(CacheFormatError::TooLarge {
            what: "config",
            found: manifest.config.size,
            limit: MAX_CONFIG_BYTES,
        });
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(CacheFormatError::TooLarge {
            what: "manifest's layer list",
            found: manifest.layers.len() as u64,
            limit: MAX_LAYERS as u64,
        });
    }
    Ok(())
}

/// Parses and checks a cache: `manifest` (see [`check_manifest`]) and the bytes of its
/// config (already verified against the config descriptor's digest).
pub(crate) fn parse_cache(
    manifest: &ImageManifest,
    config: &[u8],
) -> Result<ParsedCache, CacheFormatError> {
    check_manifest(manifest)?;
    parse_records(manifest, config)
}

/// Parses the inline cache of an image manifest (its [`INLINE_ANNOTATION`]); `None` when it
/// has none. The records may only name the image's own layers.
pub(crate) fn parse_inline(
    manifest: &ImageManifest,
) -> Result<Option<ParsedCache>, CacheFormatError> {
    let Some(text) = manifest.annotations.get(INLINE_ANNOTATION) else {
        return Ok(None);
    };
    manifest
        .validate()
        .map_err(|e| CacheFormatError::Manifest(e.to_string()))?;
    if text.len() > MAX_INLINE_BYTES {
        return Err(CacheFormatError::TooLarge {
            what: "inline cache",
            found: text.len() as u64,
            limit: MAX_INLINE_BYTES as u64,
        });
    }
    parse_records(manifest, text.as_bytes()).map(Some)
}

/// The records of `config`, checked against the layers `manifest` lists.
fn parse_records(manifest: &ImageManifest, config: &[u8]) -> Result<ParsedCache, CacheFormatError> {
    /// Only the version: read first, so a newer format is recognised, not refused.
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    if config.len() as u64 > MAX_CONFIG_BYTES {
        return Err(CacheFormatError::TooLarge {
            what: "config",
            found: config.len() as u64,
            limit: MAX_CONFIG_BYTES,
        });
    }
    let version = serde_json::from_slice::<VersionOnly>(config)
        .map_err(|e| CacheFormatError::Config(e.to_string()))?
        .version;
    if version != CACHE_FORMAT_VERSION {
        return Ok(ParsedCache::UnknownVersion(version));
    }
    let parsed: CacheConfig =
        serde_json::from_slice(config).map_err(|e| CacheFormatError::Config(e.to_string()))?;
    if parsed.records.len() > MAX_RECORDS {
        return Err(CacheFormatError::TooLarge {
            what: "record list",
            found: parsed.records.len() as u64,
            limit: MAX_RECORDS as u64,
        });
    }
    let layers: BTreeMap<&Digest, (u64, &MediaType)> = manifest
        .layers
        .iter()
        .map(|d| (&d.digest, (d.size, &d.media_type)))
        .collect();
    let mut records = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for record in parsed.records {
        let bad = |reason: String| CacheFormatError::Record {
            key: record.key.to_hex(),
            reason,
        };
        if !seen.insert(record.key) {
            return Err(bad("appears twice".to_owned()));
        }
        if record.created.len() > MAX_FIELD_LEN
            || record.step.len() > MAX_FIELD_LEN
            || record
                .last_used
                .as_ref()
                .is_some_and(|t| t.len() > MAX_FIELD_LEN)
        {
            return Err(bad(format!("a field is longer than {MAX_FIELD_LEN} bytes")));
        }
        if record.parent != record.inputs.parent {
            return Err(bad("its parent is not its inputs' parent".to_owned()));
        }
        if let Some(layer) = &record.layer {
            check_layer(layer, &layers).map_err(bad)?;
        }
        // A record of another key schema can never match a key of this kiln: skip it. One of
        // this schema must be what its inputs hash to, or it could answer for another step.
        if record.inputs.schema != CACHE_KEY_SCHEMA {
            continue;
        }
        if record.inputs.key() != record.key {
            return Err(bad("its key is not the digest of its inputs".to_owned()));
        }
        records.insert(record.key, record);
    }
    let mut inputs_seen = 0;
    for (memo, inputs) in &parsed.copy_inputs {
        let bad = |reason: String| CacheFormatError::Record {
            key: format!("copy inputs {memo}"),
            reason,
        };
        if !is_lower_hex(memo, 64) {
            return Err(bad("the memo key is not 64 lowercase hex digits".to_owned()));
        }
        inputs_seen += inputs.len();
        if inputs_seen > MAX_COPY_INPUTS {
            return Err(CacheFormatError::TooLarge {
                what: "COPY key inputs",
                found: inputs_seen as u64,
                limit: MAX_COPY_INPUTS as u64,
            });
        }
        if let Some(label) = inputs.keys().find(|l| l.len() > MAX_LABEL_LEN) {
            return Err(bad(format!(
                "the label {}… is longer than {MAX_LABEL_LEN} bytes",
                label.chars().take(40).collect::<String>()
            )));
        }
    }
    check_cache_mounts(&parsed.cache_mounts, &layers)?;
    Ok(ParsedCache::Records(CacheRecords {
        records,
        copy_inputs: parsed.copy_inputs,
        cache_mounts: parsed.cache_mounts,
    }))
}

/// Why `layer` cannot be used: not a layer of the manifest (`layers`) of that size and type,
/// or not of a layer media type.
fn check_layer(
    layer: &ExportedLayer,
    layers: &BTreeMap<&Digest, (u64, &MediaType)>,
) -> Result<(), String> {
    match layers.get(&layer.digest) {
        Some((size, media_type)) if *size == layer.size && **media_type == layer.media_type => {}
        _ => {
            return Err(format!(
                "its layer {} is not a layer of the manifest of that size and type",
                layer.digest
            ));
        }
    }
    if !layer.media_type.is_layer() {
        return Err(format!(
            "its layer has media type {}, not a layer type",
            layer.media_type
        ));
    }
    Ok(())
}

/// Whether `text` is exactly `len` lowercase hex digits.
fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// At most [`MAX_CACHE_MOUNTS`] mounts, each named by a store mount id and its layer one of
/// the manifest's, of that size and a layer type.
fn check_cache_mounts(
    mounts: &BTreeMap<String, ExportedLayer>,
    layers: &BTreeMap<&Digest, (u64, &MediaType)>,
) -> Result<(), CacheFormatError> {
    if mounts.len() > MAX_CACHE_MOUNTS {
        return Err(CacheFormatError::TooLarge {
            what: "cache mount list",
            found: mounts.len() as u64,
            limit: MAX_CACHE_MOUNTS as u64,
        });
    }
    for (id, layer) in mounts {
        let bad = |reason: String| CacheFormatError::Record {
            key: format!(
                "cache mount {}",
                id.chars().take(CACHE_MOUNT_ID_LEN + 8).collect::<String>()
            ),
            reason,
        };
        if !is_lower_hex(id, CACHE_MOUNT_ID_LEN) {
            return Err(bad(format!(
                "the mount id is not {CACHE_MOUNT_ID_LEN} lowercase hex digits"
            )));
        }
        check_layer(layer, layers).map_err(bad)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kiln_oci::{Descriptor, Platform};

    use super::*;

    fn layer_blob(n: u8) -> ExportedLayer {
        ExportedLayer {
            diff_id: DiffId(Digest::sha256_of(&[n, 0])),
            digest: Digest::sha256_of(&[n]),
            size: 100 + u64::from(n),
            media_type: MediaType::OciLayerTarGzip,
        }
    }

    fn record(
        text: &str,
        parent: Option<CacheKey>,
        layer: Option<ExportedLayer>,
    ) -> ExportedRecord {
        let mut inputs = KeyInputs::new(text, &Platform::host());
        inputs.set_parent(parent);
        ExportedRecord {
            key: inputs.key(),
            parent,
            step: "0:1".to_owned(),
            created: "2024-01-01T00:00:00Z".to_owned(),
            layer,
            inputs,
            last_used: None,
        }
    }

    fn cache(records: Vec<ExportedRecord>) -> (ImageManifest, Vec<u8>) {
        let config = CacheConfig {
            version: CACHE_FORMAT_VERSION,
            records,
            copy_inputs: BTreeMap::new(),
            cache_mounts: BTreeMap::new(),
        };
        let bytes = config.to_bytes().unwrap();
        let layers = config
            .records
            .iter()
            .filter_map(|r| r.layer.as_ref())
            .map(|l| Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size))
            .collect();
        let manifest = ImageManifest::new(
            Descriptor::of_bytes(MediaType::from(CACHE_CONFIG_MEDIA_TYPE), &bytes),
            layers,
        );
        (manifest, bytes)
    }

    #[test]
    fn a_cache_round_trips_through_its_bytes() {
        let first = record("RUN a", None, Some(layer_blob(1)));
        let second = record("RUN b", Some(first.key), None);
        let (manifest, bytes) = cache(vec![first.clone(), second.clone()]);
        let ParsedCache::Records(CacheRecords { records, .. }) =
            parse_cache(&manifest, &bytes).unwrap()
        else {
            panic!("not records");
        };
        assert_eq!(records.len(), 2);
        assert_eq!(records[&first.key], first);
        assert_eq!(records[&second.key], second);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""diffId":"sha256:"#), "{text}");
    }

    #[test]
    fn copy_inputs_round_trip_and_bad_memo_keys_are_refused() {
        let (manifest, _) = cache(Vec::new());
        let memo = "ab".repeat(32);
        let inputs = BTreeMap::from([("file app/main.py".to_owned(), Digest::sha256_of(b"x"))]);
        let config = CacheConfig {
            version: CACHE_FORMAT_VERSION,
            records: Vec::new(),
            copy_inputs: BTreeMap::from([(memo.clone(), inputs.clone())]),
            cache_mounts: BTreeMap::new(),
        };
        let ParsedCache::Records(parsed) =
            parse_cache(&manifest, &config.to_bytes().unwrap()).unwrap()
        else {
            panic!("not records");
        };
        assert_eq!(parsed.copy_inputs[&memo], inputs);
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            format!("{}/x", "a".repeat(62)),
        ] {
            let config = CacheConfig {
                copy_inputs: BTreeMap::from([(bad.clone(), inputs.clone())]),
                ..config.clone()
            };
            let error = parse_cache(&manifest, &config.to_bytes().unwrap()).unwrap_err();
            assert!(
                error.to_string().contains("64 lowercase hex"),
                "{bad}: {error}"
            );
        }
    }

    /// A cache whose config has one record and the mount `id` with `mount`'s layer; the
    /// manifest lists the record's layer and `listed`.
    fn cache_with_mount(
        id: &str,
        mount: ExportedLayer,
        listed: Option<&ExportedLayer>,
    ) -> (ImageManifest, Vec<u8>) {
        let record = record("RUN a", None, Some(layer_blob(1)));
        let config = CacheConfig {
            version: CACHE_FORMAT_VERSION,
            records: vec![record.clone()],
            copy_inputs: BTreeMap::new(),
            cache_mounts: BTreeMap::from([(id.to_owned(), mount)]),
        };
        let bytes = config.to_bytes().unwrap();
        let layers = record
            .layer
            .iter()
            .chain(listed)
            .map(|l| Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size))
            .collect();
        let manifest = ImageManifest::new(
            Descriptor::of_bytes(MediaType::from(CACHE_CONFIG_MEDIA_TYPE), &bytes),
            layers,
        );
        (manifest, bytes)
    }

    #[test]
    fn cache_mounts_round_trip_through_the_config() {
        let id = "0123456789abcdef0123456789abcdef";
        let mount = layer_blob(7);
        let (manifest, bytes) = cache_with_mount(id, mount.clone(), Some(&mount));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""cacheMounts":{"0123456789abcdef"#),
            "{text}"
        );
        let ParsedCache::Records(parsed) = parse_cache(&manifest, &bytes).unwrap() else {
            panic!("not records");
        };
        assert_eq!(
            parsed.cache_mounts,
            BTreeMap::from([(id.to_owned(), mount)])
        );
        assert_eq!(parsed.records.len(), 1);
        // A config without mounts does not name the field (older kilns read it).
        let (_, bytes) = cache(Vec::new());
        assert!(!String::from_utf8(bytes).unwrap().contains("cacheMounts"));
    }

    #[test]
    fn a_cache_mount_not_in_the_manifest_or_badly_named_is_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        let mount = layer_blob(7);
        // Not listed at all.
        let (manifest, bytes) = cache_with_mount(id, mount.clone(), None);
        let error = parse_cache(&manifest, &bytes).unwrap_err().to_string();
        assert!(error.contains("not a layer of the manifest"), "{error}");
        assert!(error.contains(&format!("cache mount {id}")), "{error}");
        // Listed with another size.
        let mut other_size = mount.clone();
        other_size.size += 1;
        let (manifest, bytes) = cache_with_mount(id, mount.clone(), Some(&other_size));
        let error = parse_cache(&manifest, &bytes).unwrap_err().to_string();
        assert!(error.contains("not a layer of the manifest"), "{error}");
        // Listed, but not a layer type.
        let mut not_a_layer = mount.clone();
        not_a_layer.media_type = MediaType::OciConfig;
        let (manifest, bytes) = cache_with_mount(id, not_a_layer.clone(), Some(&not_a_layer));
        let error = parse_cache(&manifest, &bytes).unwrap_err().to_string();
        assert!(error.contains("not a layer type"), "{error}");
        // Ids that are not a store mount id.
        for bad in [
            "../../etc",
            "ABCDEF0123456789ABCDEF0123456789",
            &"a".repeat(300),
            "",
        ] {
            let (manifest, bytes) = cache_with_mount(bad, mount.clone(), Some(&mount));
            let error = parse_cache(&manifest, &bytes).unwrap_err().to_string();
            assert!(error.contains("lowercase hex digits"), "{bad}: {error}");
        }
    }

    #[test]
    fn too_many_cache_mounts_are_refused() {
        let mount = layer_blob(7);
        let config = CacheConfig {
            version: CACHE_FORMAT_VERSION,
            records: Vec::new(),
            copy_inputs: BTreeMap::new(),
            cache_mounts: (0..=MAX_CACHE_MOUNTS)
                .map(|n| (format!("{n:032x}"), mount.clone()))
                .collect(),
        };
        let bytes = config.to_bytes().unwrap();
        let manifest = ImageManifest::new(
            Descriptor::of_bytes(MediaType::from(CACHE_CONFIG_MEDIA_TYPE), &bytes),
            vec![Descriptor::new(
                mount.media_type.clone(),
                mount.digest.clone(),
                mount.size,
            )],
        );
        let error = parse_cache(&manifest, &bytes).unwrap_err().to_string();
        assert!(error.contains("cache mount list"), "{error}");
    }

    #[test]
    fn an_inline_cache_names_only_the_images_layers() {
        let first = record("RUN a", None, Some(layer_blob(1)));
        let (mut manifest, bytes) = cache(vec![first.clone()]);
        manifest.config.media_type = MediaType::OciConfig;
        assert!(
            parse_inline(&manifest).unwrap().is_none(),
            "no annotation: no cache"
        );
        manifest.annotations.insert(
            INLINE_ANNOTATION.to_owned(),
            String::from_utf8(bytes).unwrap(),
        );
        let Some(ParsedCache::Records(parsed)) = parse_inline(&manifest).unwrap() else {
            panic!("not records");
        };
        assert_eq!(parsed.records[&first.key], first);
        manifest.layers.clear();
        let error = parse_inline(&manifest).unwrap_err();
        assert!(
            error.to_string().contains("not a layer of the manifest"),
            "{error}"
        );
    }

    #[test]
    fn a_newer_version_is_reported_not_parsed() {
        let (manifest, _) = cache(Vec::new());
        let bytes = br#"{"version":2,"records":[],"shiny":true}"#;
        assert!(matches!(
            parse_cache(&manifest, bytes).unwrap(),
            ParsedCache::UnknownVersion(2)
        ));
    }

    #[test]
    fn a_foreign_manifest_is_refused() {
        let (mut manifest, bytes) = cache(Vec::new());
        manifest.config.media_type = MediaType::OciConfig;
        let error = parse_cache(&manifest, &bytes).unwrap_err();
        assert!(error.to_string().contains("not a kiln cache"), "{error}");
    }

    #[test]
    fn an_oversized_config_is_refused_before_it_is_fetched() {
        let (mut manifest, _) = cache(Vec::new());
        manifest.config.size = MAX_CONFIG_BYTES + 1;
        let error = check_manifest(&manifest).unwrap_err();
        assert!(error.to_string().contains("more than the limit"), "{error}");
    }

    #[test]
    fn malformed_and_inconsistent_records_are_refused() {
        let (manifest, _) = cache(Vec::new());
        for garbage in [
            &b"not json"[..],
            br#"{"version":1}"#,
            br#"{"version":1,"records":[],"x":1}"#,
        ] {
            assert!(parse_cache(&manifest, garbage).is_err());
        }
        // A key that is not the digest of its inputs.
        let mut forged = record("RUN a", None, None);
        forged.inputs.instruction = "RUN evil".to_owned();
        let (manifest, bytes) = cache(vec![forged]);
        let error = parse_cache(&manifest, &bytes).unwrap_err();
        assert!(
            error.to_string().contains("not the digest of its inputs"),
            "{error}"
        );
        // A layer the manifest does not list.
        let good = record("RUN a", None, Some(layer_blob(1)));
        let (mut manifest, bytes) = cache(vec![good]);
        manifest.layers.clear();
        let error = parse_cache(&manifest, &bytes).unwrap_err();
        assert!(
            error.to_string().contains("not a layer of the manifest"),
            "{error}"
        );
    }
}
