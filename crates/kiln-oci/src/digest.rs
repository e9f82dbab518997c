//! Content digests (`algorithm:hex`) as defined by the OCI image spec.
//!
//! Spec (descriptor.md): a digest "MUST" be `algorithm ":" encoded`; `sha256` encodings are
//! 64 lowercase hex characters and `sha512` 128. Values are checked once, in [`Digest::from_str`]
//! or [`Digest::sha256_of`]; everything holding a `Digest` holds a valid one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A hash algorithm registered by the OCI image spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default and the only algorithm kiln writes.
    Sha256,
    /// SHA-512, accepted when reading foreign content.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Number of hex characters in an encoded digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0c442…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error(
        "invalid digest `{0}`: expected `algorithm:hex`, e.g. `sha256:` followed by 64 hex characters"
    )]
    MissingAlgorithm(String),
    /// An algorithm the spec does not register.
    #[error("invalid digest `{0}`: unsupported algorithm (only sha256 and sha512 are supported)")]
    UnsupportedAlgorithm(String),
    /// Wrong length or non-lowercase-hex characters.
    #[error(
        "invalid digest `{digest}`: {algorithm} needs exactly {expected} lowercase hex characters"
    )]
    BadEncoding {
        /// The offending text.
        digest: String,
        /// The algorithm it named.
        algorithm: &'static str,
        /// The required length.
        expected: usize,
    },
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Self::from_sha256_bytes(&sha2::Sha256::digest(bytes))
    }

    /// A SHA-256 digest from a raw 32-byte hash value.
    pub fn from_sha256_bytes(hash: &[u8]) -> Self {
        debug_assert_eq!(hash.len(), 32, "sha256 hashes are 32 bytes");
        Self {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(hash),
        }
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding (without the `algorithm:` prefix).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `docker images` shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_owned()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(DigestError::UnsupportedAlgorithm(s.to_owned())),
        };
        let is_lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex.len() != algorithm.hex_len() || !is_lower_hex {
            return Err(DigestError::BadEncoding {
                digest: s.to_owned(),
                algorithm: algorithm.as_str(),
                expected: algorithm.hex_len(),
            });
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Streaming SHA-256 that yields a [`Digest`] and counts the bytes it saw.
#[derive(Debug, Clone, Default)]
pub struct Sha256Hasher {
    inner: sha2::Sha256,
    len: u64,
}

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest::from_sha256_bytes(&self.finish_bytes())
    }

    /// The raw 32-byte hash of everything fed.
    pub fn finish_bytes(self) -> [u8; 32] {
        self.inner.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// The OCI image-spec's formula, written out: ChainID(L0) = DiffID(L0),
    /// ChainID(L0|L1) = sha256(ChainID(L0) + " " + DiffID(L1)).
    #[test]
    fn chain_ids_follow_the_image_spec() {
        let diff = |s: &[u8]| DiffId(Digest::sha256_of(s));
        let (a, b, c) = (diff(b"a"), diff(b"b"), diff(b"c"));
        assert_eq!(ChainId::base(&a).digest(), &a.0);
        let ab = Digest::sha256_of(format!("{} {}", a.0, b.0).as_bytes());
        let abc = Digest::sha256_of(format!("{ab} {}", c.0).as_bytes());
        assert_eq!(ChainId::base(&a).child(&b).digest(), &ab);
        let stack = ChainId::from_diff_ids(&[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(stack.digest(), &abc);
        assert_eq!(stack.hex(), abc.hex());
        assert_eq!(ChainId::on(Some(&ChainId::base(&a).child(&b)), &c), stack);
        assert_eq!(ChainId::on(None, &a), ChainId::base(&a));
        assert_eq!(ChainId::from_diff_ids(&[]), None);
        assert_eq!(ChainId::from_stored(abc.clone()), stack);
    }

    #[test]
    fn sha256_of_empty_matches_the_well_known_value() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        let mut h = Sha256Hasher::new();
        h.update(b"");
        assert_eq!(h.finish().to_string(), EMPTY);
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert!(matches!(
            "e3b0".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            "md5:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            "sha256:ABC".parse::<Digest>(),
            Err(DigestError::BadEncoding { .. })
        ));
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::sha256_of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}

/// The digest of a layer's *uncompressed* tar stream (`rootfs.diff_ids` in an image config).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DiffId(pub Digest);

impl fmt::Display for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiffId({})", self.0)
    }
}

/// The identity of a stack of layers (OCI image-spec config.md "ChainID"):
/// `ChainID(L0) = DiffID(L0)`, `ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(Digest);

impl ChainId {
    /// The chain id of a stack holding only `diff_id`: the diff id itself.
    pub fn base(diff_id: &DiffId) -> Self {
        Self(diff_id.0.clone())
    }

    /// The chain id of this stack with `diff_id` on top.
    ///
    /// ```
    /// use kiln_oci::{ChainId, DiffId, Digest};
    /// let (a, b) = (DiffId(Digest::sha256_of(b"a")), DiffId(Digest::sha256_of(b"b")));
    /// let chain = ChainId::base(&a).child(&b);
    /// assert_eq!(Some(chain), ChainId::from_diff_ids(&[a, b]));
    /// ```
    #[must_use]
    pub fn child(&self, diff_id: &DiffId) -> Self {
        Self(Digest::sha256_of(
            format!("{} {diff_id}", self.0).as_bytes(),
        ))
    }

    /// The chain id of `diff_ids` applied bottom-up; `None` for an empty stack.
    pub fn from_diff_ids(diff_ids: &[DiffId]) -> Option<Self> {
        let (first, rest) = diff_ids.split_first()?;
        Some(
            rest.iter()
                .fold(Self::base(first), |chain, diff| chain.child(diff)),
        )
    }

    /// The chain id `parent` + `diff_id`, or the base chain without a parent.
    pub fn on(parent: Option<&Self>, diff_id: &DiffId) -> Self {
        parent.map_or_else(|| Self::base(diff_id), |parent| parent.child(diff_id))
    }

    /// A chain id kiln stored earlier (a snapshot directory's name, a cache record), read
    /// back. Never a way to compute one: use [`ChainId::base`] and [`ChainId::child`].
    pub fn from_stored(digest: Digest) -> Self {
        Self(digest)
    }

    /// The chain id as a digest.
    pub fn digest(&self) -> &Digest {
        &self.0
    }

    /// Lowercase hex of the chain id (a snapshot directory's name).
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}
