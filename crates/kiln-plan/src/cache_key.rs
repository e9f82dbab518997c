//! Structural cache keys (DESIGN.md §6) and cache-miss explanations.
//!
//! A key is `sha256` over a length-prefixed encoding of a [`KeyInputs`] record: the schema
//! version, the parent key, the canonical step text after expansion, the build args, the
//! settings the step sees (env, user, workdir, shell, network, mounts …), the platform and the
//! content digests of its inputs. Never `Debug` strings, never history text. Secrets,
//! cache-mount contents and proxy args never enter a key.
//!
//! The executor stores the [`KeyInputs`] of each step of the last build and, on a miss,
//! asks [`explain_miss`] why: `file app/main.py changed`, `build arg VERSION changed`,
//! `parent changed`, `base image updated`, `instruction changed`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use kiln_oci::{Digest, Platform};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::args::is_proxy_arg;

/// Version of the key encoding; bump it whenever the encoding or the meaning of a field
/// changes, so old cache records stop matching.
pub const CACHE_KEY_SCHEMA: u32 = 2;

/// Domain separator hashed first, so kiln keys never collide with other sha256 uses.
const KEY_DOMAIN: &[u8] = b"kiln.cache-key";

/// The cache key of one build step: a sha256 over its [`KeyInputs`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

/// Why a string is not a cache key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache key `{0}`: expected 64 lowercase hex digits")]
pub struct CacheKeyError(pub String);

impl CacheKey {
    /// The key with these raw sha256 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw sha256 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits (the file name of a cache record).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..12])
    }
}

impl FromStr for CacheKey {
    type Err = CacheKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || CacheKeyError(s.to_owned());
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid());
        }
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| invalid())?;
        Ok(Self(bytes))
    }
}

impl Serialize for CacheKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for CacheKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A length-prefixed field encoder over sha256: every field is `tag ‖ len ‖ bytes`, so no two
/// different field sequences hash the same bytes. [`KeyInputs::key`] is built on it; the
/// executor may use it for other content keys (e.g. a digest over a file selection).
#[derive(Debug, Clone)]
pub struct CacheKeyBuilder {
    hasher: Sha256,
}

impl CacheKeyBuilder {
    /// A builder for keys of `domain` (hashed first, length-prefixed) at the current schema.
    pub fn new(domain: &str) -> Self {
        let mut builder = Self {
            hasher: Sha256::new(),
        };
        builder.bytes(KEY_DOMAIN);
        builder.bytes(domain.as_bytes());
        builder.hasher.update(CACHE_KEY_SCHEMA.to_be_bytes());
        builder
    }

    /// Adds a named field with a string value.
    pub fn field(&mut self, tag: &str, value: &str) -> &mut Self {
        self.bytes(tag.as_bytes());
        self.bytes(value.as_bytes());
        self
    }

    /// Adds a named field with raw bytes.
    pub fn field_bytes(&mut self, tag: &str, value: &[u8]) -> &mut Self {
        self.bytes(tag.as_bytes());
        self.bytes(value);
        self
    }

    /// Adds a named map, entries in key order, preceded by its length.
    pub fn map<'a, I>(&mut self, tag: &str, entries: I) -> &mut Self
    where
        I: ExactSizeIterator<Item = (&'a str, &'a str)>,
    {
        self.bytes(tag.as_bytes());
        self.hasher.update((entries.len() as u64).to_be_bytes());
        for (key, value) in entries {
            self.bytes(key.as_bytes());
            self.bytes(value.as_bytes());
        }
        self
    }

    /// The key.
    pub fn finish(self) -> CacheKey {
        CacheKey(self.hasher.finalize().into())
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
    }
}

/// Everything that went into one step's cache key, as a structured record the executor
/// stores with the step's cache record, so the next build can explain a miss.
///
/// Fill it from [`crate::Step::key_inputs`], add the content digests of the step's inputs
/// with [`KeyInputs::add_input`] (and [`KeyInputs::set_base_image`] for `FROM`), then call
/// [`KeyInputs::key`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// [`CACHE_KEY_SCHEMA`] when the record was made.
    pub schema: u32,
    /// The key of the previous step of the stage (`None` for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<CacheKey>,
    /// For `FROM`: the resolved manifest (or config) digest of the base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<Digest>,
    /// The canonical step text after expansion ([`crate::Step::cache_text`]).
    pub instruction: String,
    /// The platform the step runs for (`linux/amd64`).
    pub platform: String,
    /// Build args in scope, name → value (proxy args excluded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Other state the step sees: `env`, `user`, `workdir`, `shell`, `network`, `mounts`,
    /// `security` … name → canonical value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// Content digests of the step's inputs by label (`file app/main.py`,
    /// `stage builder:/opt/venv`, `url https://…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Digest>,
}

impl KeyInputs {
    /// A record for a step with this canonical text, on `platform`.
    pub fn new(instruction: impl Into<String>, platform: &Platform) -> Self {
        Self {
            schema: CACHE_KEY_SCHEMA,
            instruction: instruction.into(),
            platform: platform.to_string(),
            ..Self::default()
        }
    }

    /// Sets the parent key.
    pub fn set_parent(&mut self, parent: Option<CacheKey>) -> &mut Self {
        self.parent = parent;
        self
    }

    /// Sets the resolved base image digest (for `FROM`).
    pub fn set_base_image(&mut self, digest: Digest) -> &mut Self {
        self.base_image = Some(digest);
        self
    }

    /// Records a build arg; proxy args (`HTTP_PROXY` …) are ignored, as BuildKit keeps them
    /// out of keys.
    pub fn add_arg(&mut self, name: &str, value: &str) -> &mut Self {
        if !is_proxy_arg(name) {
            self.args.insert(name.to_owned(), value.to_owned());
        }
        self
    }

    /// Records a setting the step sees (`user`, `workdir`, …).
    pub fn add_setting(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.settings.insert(name.to_owned(), value.into());
        self
    }

    /// Records the content digest of an input under a label that reads well in
    /// `cache miss: <label> changed` (`file app/main.py`, `stage builder:/opt/venv`).
    ///
    /// A label ending in [`AGGREGATE_INPUT_SUFFIX`] is a digest over inputs that may also be
    /// listed one by one; [`explain_miss`] names a specific input before it.
    pub fn add_input(&mut self, label: impl Into<String>, digest: Digest) -> &mut Self {
        self.inputs.insert(label.into(), digest);
        self
    }

    /// The cache key over all fields (length-prefixed, in a fixed order).
    pub fn key(&self) -> CacheKey {
        let mut builder = CacheKeyBuilder::new("step");
        builder.field("schema", &self.schema.to_string());
        builder.field(
            "parent",
            &self.parent.map(|k| k.to_hex()).unwrap_or_default(),
        );
        builder.field(
            "base",
            &self
                .base_image
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
        builder.field("instruction", &self.instruction);
        builder.field("platform", &self.platform);
        builder.map(
            "args",
            self.args.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        builder.map(
            "settings",
            self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let inputs: Vec<(String, String)> = self
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        builder.map(
            "inputs",
            inputs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        builder.finish()
    }
}

/// Why a step missed the cache, from comparing its [`KeyInputs`] with the last build's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MissReason {
    /// No record of this step from a previous build.
    NoPreviousBuild,
    /// The previous record used another key schema (kiln was upgraded).
    SchemaChanged,
    /// `FROM`: the base image resolved to another digest.
    BaseImageUpdated,
    /// The expanded instruction text differs.
    InstructionChanged,
    /// The platform differs.
    PlatformChanged,
    /// A build arg in scope has another value (or appeared/disappeared).
    BuildArgChanged {
        /// The arg's name.
        name: String,
    },
    /// Input contents differ.
    InputChanged {
        /// The label of the first differing input (`file app/main.py`).
        label: String,
        /// How it differs.
        change: InputChange,
        /// How many other inputs differ too.
        others: usize,
    },
    /// A setting the step sees differs (`user`, `workdir`, `env`, `mounts` …).
    SettingChanged {
        /// The setting's name.
        name: String,
    },
    /// Only the parent step's key differs.
    ParentChanged,
    /// Every input is identical: the record or its blobs are gone (GC, `--no-cache`).
    RecordMissing,
}

/// How one input differs from the previous build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputChange {
    /// Present in both with different digests.
    Changed,
    /// New in this build.
    Added,
    /// Gone since the previous build.
    Removed,
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPreviousBuild => f.write_str("no previous build"),
            Self::SchemaChanged => f.write_str("cache schema changed"),
            Self::BaseImageUpdated => f.write_str("base image updated"),
            Self::InstructionChanged => f.write_str("instruction changed"),
            Self::PlatformChanged => f.write_str("platform changed"),
            Self::BuildArgChanged { name } => write!(f, "build arg {name} changed"),
            Self::InputChanged {
                label,
                change,
                others,
            } => {
                let verb = match change {
                    InputChange::Changed => "changed",
                    InputChange::Added => "added",
                    InputChange::Removed => "removed",
                };
                write!(f, "{label} {verb}")?;
                match others {
                    0 => Ok(()),
                    1 => f.write_str(" (and 1 other input)"),
                    n => write!(f, " (and {n} other inputs)"),
                }
            }
            Self::SettingChanged { name } => write!(f, "{name} changed"),
            Self::ParentChanged => f.write_str("parent changed"),
            Self::RecordMissing => f.write_str("no cached result"),
        }
    }
}

/// The label suffix of an aggregate input ([`KeyInputs::add_input`]).
pub const AGGREGATE_INPUT_SUFFIX: &str = " (all files)";

/// Explains why `current` missed the cache given the last build's record of the same step.
///
/// The most specific cause wins: the step's own instruction, args, inputs and settings come
/// before `parent changed`, so touching one file reports that file on the step that copies
/// it and `parent changed` on the steps after it.
pub fn explain_miss(previous: Option<&KeyInputs>, current: &KeyInputs) -> MissReason {
    let Some(previous) = previous else {
        return MissReason::NoPreviousBuild;
    };
    if previous.schema != current.schema {
        return MissReason::SchemaChanged;
    }
    if previous.base_image != current.base_image {
        return MissReason::BaseImageUpdated;
    }
    if previous.instruction != current.instruction {
        return MissReason::InstructionChanged;
    }
    if previous.platform != current.platform {
        return MissReason::PlatformChanged;
    }
    if let Some(name) = first_difference(&previous.args, &current.args) {
        return MissReason::BuildArgChanged { name };
    }
    let mut input_changes = Vec::new();
    for (label, digest) in &current.inputs {
        match previous.inputs.get(label) {
            None => input_changes.push((label.clone(), InputChange::Added)),
            Some(old) if old != digest => input_changes.push((label.clone(), InputChange::Changed)),
            Some(_) => {}
        }
    }
    for label in previous.inputs.keys() {
        if !current.inputs.contains_key(label) {
            input_changes.push((label.clone(), InputChange::Removed));
        }
    }
    // An aggregate (`COPY context (all files)`) changes whenever one of the files listed
    // beside it does: name the file, and count only the specific inputs as "others".
    let (aggregates, specific): (Vec<_>, Vec<_>) = input_changes
        .into_iter()
        .partition(|(label, _)| label.ends_with(AGGREGATE_INPUT_SUFFIX));
    let changes = if specific.is_empty() {
        aggregates
    } else {
        specific
    };
    if let Some((label, change)) = changes.first().cloned() {
        return MissReason::InputChanged {
            label,
            change,
            others: changes.len() - 1,
        };
    }
    if let Some(name) = first_difference(&previous.settings, &current.settings) {
        return MissReason::SettingChanged { name };
    }
    if previous.parent != current.parent {
        return MissReason::ParentChanged;
    }
    MissReason::RecordMissing
}

fn first_difference(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<String> {
    new.iter()
        .find(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .or_else(|| old.keys().find(|k| !new.contains_key(*k)).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        Platform::new("linux", "amd64")
    }

    fn sample() -> KeyInputs {
        let mut inputs = KeyInputs::new("COPY app/ /app/", &platform());
        inputs
            .set_parent(Some(CacheKey::from_bytes([7; 32])))
            .add_arg("VERSION", "1")
            .add_setting("user", "app")
            .add_input("file app/main.py", Digest::sha256_of(b"print(1)"))
            .add_input("file app/util.py", Digest::sha256_of(b"x = 1"));
        inputs
    }

    #[test]
    fn miss_names_the_file_not_the_aggregate() {
        let mut old = KeyInputs::new("COPY . /app/", &platform());
        old.add_input("COPY context (all files)", Digest::sha256_of(b"1"))
            .add_input("file a.txt", Digest::sha256_of(b"a"))
            .add_input("file b.txt", Digest::sha256_of(b"b"));
        let mut new = KeyInputs::new("COPY . /app/", &platform());
        new.add_input("COPY context (all files)", Digest::sha256_of(b"2"))
            .add_input("file a.txt", Digest::sha256_of(b"a2"))
            .add_input("file b.txt", Digest::sha256_of(b"b"));
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "file a.txt changed"
        );
        // Only the aggregate differs (a mode change, say): it is named.
        let mut meta = old.clone();
        meta.add_input("COPY context (all files)", Digest::sha256_of(b"3"));
        assert_eq!(
            explain_miss(Some(&old), &meta).to_string(),
            "COPY context (all files) changed"
        );
    }

    #[test]
    fn same_inputs_same_key_and_roundtrip() {
        let a = sample();
        assert_eq!(a.key(), sample().key());
        let json = serde_json::to_string(&a).unwrap();
        let back: KeyInputs = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.key(), a.key());
        let hex = a.key().to_hex();
        assert_eq!(hex.parse::<CacheKey>().unwrap(), a.key());
        assert!("ABC".parse::<CacheKey>().is_err());
        assert!(hex.to_uppercase().parse::<CacheKey>().is_err());
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = sample().key();
        let mut changed = Vec::new();
        let mut k = sample();
        k.set_parent(None);
        changed.push(k);
        let mut k = sample();
        k.instruction.push(' ');
        changed.push(k);
        let mut k = sample();
        k.add_arg("VERSION", "2");
        changed.push(k);
        let mut k = sample();
        k.add_setting("user", "root");
        changed.push(k);
        let mut k = sample();
        k.add_input("file app/main.py", Digest::sha256_of(b"print(2)"));
        changed.push(k);
        let mut k = sample();
        k.set_base_image(Digest::sha256_of(b"base"));
        changed.push(k);
        let mut k = sample();
        k.platform = "linux/arm64".into();
        changed.push(k);
        for k in changed {
            assert_ne!(k.key(), base, "{k:?}");
        }
    }

    #[test]
    fn length_prefixing_prevents_field_shifting() {
        let mut a = KeyInputs::new("RUN a", &platform());
        a.add_setting("user", "bc");
        let mut b = KeyInputs::new("RUN ab", &platform());
        b.add_setting("user", "c");
        assert_ne!(a.key(), b.key());
        let mut a = KeyInputs::new("RUN", &platform());
        a.add_arg("A", "1=B");
        let mut b = KeyInputs::new("RUN", &platform());
        b.add_arg("A", "1").add_arg("B", "");
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn proxy_args_never_enter_the_key() {
        let base = sample().key();
        let mut k = sample();
        k.add_arg("HTTP_PROXY", "http://proxy:3128")
            .add_arg("no_proxy", "localhost");
        assert_eq!(k.key(), base);
    }

    #[test]
    fn misses_are_explained_most_specific_first() {
        let old = sample();
        assert_eq!(explain_miss(None, &old).to_string(), "no previous build");
        let mut new = sample();
        new.add_input("file app/main.py", Digest::sha256_of(b"print(2)"));
        new.set_parent(Some(CacheKey::from_bytes([8; 32])));
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "file app/main.py changed"
        );
        let mut new = sample();
        new.add_arg("VERSION", "2");
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "build arg VERSION changed"
        );
        let mut new = sample();
        new.args.clear();
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "build arg VERSION changed"
        );
        let mut new = sample();
        new.set_parent(Some(CacheKey::from_bytes([8; 32])));
        assert_eq!(explain_miss(Some(&old), &new).to_string(), "parent changed");
        let mut new = sample();
        new.set_base_image(Digest::sha256_of(b"new base"));
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "base image updated"
        );
        let mut new = sample();
        new.instruction = "COPY app/ /srv/".into();
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "instruction changed"
        );
        let mut new = sample();
        new.inputs.remove("file app/util.py");
        new.add_input("file app/new.py", Digest::sha256_of(b""));
        assert_eq!(
            explain_miss(Some(&old), &new).to_string(),
            "file app/new.py added (and 1 other input)"
        );
        let mut new = sample();
        new.add_setting("user", "root");
        assert_eq!(explain_miss(Some(&old), &new).to_string(), "user changed");
        assert_eq!(
            explain_miss(Some(&old), &sample()),
            MissReason::RecordMissing
        );
    }
}
