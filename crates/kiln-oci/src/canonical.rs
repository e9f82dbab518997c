//! Canonical JSON and byte-faithful JSON blobs.
//!
//! Content addressing needs two habits: what kiln *writes* is serialized one way only
//! ([`to_canonical_json`]: object keys sorted at every depth, including inside unknown
//! fields, compact, no trailing newline), and what kiln *reads* is never re-serialized
//! ([`JsonBlob`] keeps the original bytes next to the parsed value, so a pulled manifest or
//! config is hashed and pushed exactly as it came).
//!
//! Key order is imposed here explicitly: the workspace enables serde_json's
//! `preserve_order`, so `serde_json::Map` keeps insertion order and cannot be relied on.

use std::fmt;
use std::io::Write as _;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{Descriptor, Digest, MediaType};

/// Why a JSON document could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The value cannot be represented as JSON (e.g. a map with non-string keys).
    #[error("cannot serialize {what} as JSON: {source}")]
    Serialize {
        /// The kind of document.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The bytes are not valid JSON for this kind of document.
    #[error("invalid {what} JSON in blob {digest}: {source}")]
    Parse {
        /// The kind of document.
        what: &'static str,
        /// The digest of the offending bytes.
        digest: Digest,
        /// The underlying error (with line and column).
        #[source]
        source: serde_json::Error,
    },
}

/// Serializes `value` as canonical JSON: keys sorted (by their UTF-8 bytes) in every object
/// at every depth, no insignificant whitespace, no trailing newline. The same value always
/// gives the same bytes.
pub fn to_canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JsonError> {
    let tree = serde_json::to_value(value).map_err(|source| JsonError::Serialize {
        what: short_type_name::<T>(),
        source,
    })?;
    let mut out = Vec::with_capacity(256);
    write_canonical(&tree, &mut out);
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is fixed (`"`, `\`, control characters only), and writing
    // a &str into a Vec<u8> has no failure mode.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Deserializes `null` as the type's default (Go writes `null` for nil slices and maps
/// without `omitempty`, e.g. `"Cmd": null` in older Docker configs).
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A JSON document together with the exact bytes it was read from (or canonically written
/// as) and their digest. The parsed value is read-only: changing it would desynchronize it
/// from the bytes; build a new value and call [`JsonBlob::from_value`] instead.
#[derive(Clone, PartialEq)]
pub struct JsonBlob<T> {
    value: T,
    bytes: Vec<u8>,
    digest: Digest,
}

impl<T: DeserializeOwned> JsonBlob<T> {
    /// Parses `bytes`, keeping them unchanged.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, JsonError> {
        let digest = Digest::sha256_of(&bytes);
        let value = serde_json::from_slice(&bytes).map_err(|source| JsonError::Parse {
            what: short_type_name::<T>(),
            digest: digest.clone(),
            source,
        })?;
        Ok(Self {
            value,
            bytes,
            digest,
        })
    }
}

impl<T: Serialize> JsonBlob<T> {
    /// Serializes `value` canonically.
    pub fn from_value(value: T) -> Result<Self, JsonError> {
        let bytes = to_canonical_json(&value)?;
        let digest = Digest::sha256_of(&bytes);
        Ok(Self {
            value,
            bytes,
            digest,
        })
    }
}

impl<T> JsonBlob<T> {
    /// The parsed document.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The exact bytes (hash and push these, never a re-serialization).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The sha256 digest of [`JsonBlob::bytes`].
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Length of the bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A descriptor of these bytes with `media_type`.
    pub fn descriptor(&self, media_type: MediaType) -> Descriptor {
        Descriptor::new(media_type, self.digest.clone(), self.size())
    }

    /// The value and the bytes.
    pub fn into_parts(self) -> (T, Vec<u8>) {
        (self.value, self.bytes)
    }
}

impl<T> fmt::Debug for JsonBlob<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonBlob")
            .field("type", &short_type_name::<T>())
            .field("digest", &self.digest)
            .field("size", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn keys_are_sorted_at_every_depth_even_with_preserve_order() {
        let value: Value =
            serde_json::from_str(r#"{"b":{"z":1,"a":[{"y":null,"x":"\u0001"}]},"a":true}"#)
                .unwrap();
        let out = to_canonical_json(&value).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":true,"b":{"a":[{"x":"\u0001","y":null}],"z":1}}"#
        );
    }

    #[test]
    fn five_serializations_give_the_same_bytes() {
        let mut map = BTreeMap::new();
        for (k, v) in [("z", 1), ("é", 2), ("a", 3), ("Z", 4)] {
            map.insert(k.to_owned(), v);
        }
        let first = to_canonical_json(&map).unwrap();
        for _ in 0..5 {
            assert_eq!(to_canonical_json(&map).unwrap(), first);
        }
        assert_eq!(
            String::from_utf8(first).unwrap(),
            r#"{"Z":4,"a":3,"z":1,"é":2}"#
        );
    }

    #[test]
    fn json_blob_keeps_original_bytes() {
        let original = b"{ \"b\": 1,\n  \"a\": 2 }\n".to_vec();
        let blob: JsonBlob<Value> = JsonBlob::parse(original.clone()).unwrap();
        assert_eq!(blob.bytes(), original.as_slice());
        assert_eq!(blob.digest(), &Digest::sha256_of(&original));
        assert_eq!(blob.value()["a"], 2);
        let canonical = JsonBlob::from_value(blob.value().clone()).unwrap();
        assert_eq!(canonical.bytes(), br#"{"a":2,"b":1}"#);
        assert_ne!(canonical.digest(), blob.digest());
    }

    #[test]
    fn parse_error_names_the_document_and_digest() {
        let err = JsonBlob::<Descriptor>::parse(b"{".to_vec()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Descriptor"), "{text}");
        assert!(
            text.contains(&Digest::sha256_of(b"{").to_string()),
            "{text}"
        );
    }
}
