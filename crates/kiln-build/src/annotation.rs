//! OCI annotations of the built image: `--annotation` and the `annotation*` keys of `-o`, as
//! buildx and BuildKit's image exporters take them.
//!
//! An annotation goes to one of four places (its level):
//! - `manifest` (the default): each platform's image manifest, or only the platform named in
//!   `manifest[linux/arm64]:k=v`;
//! - `manifest-descriptor`: the descriptor of each manifest in the index (for a one-platform
//!   image, the descriptor in an OCI layout's `index.json`);
//! - `index`: the image index of a multi-platform build;
//! - `index-descriptor`: the index's descriptor in an OCI layout's `index.json`.
//!
//! As in BuildKit, index levels on a one-platform build are an error ("index annotations not
//! supported for single platform export"), and a level the output has no place for (an
//! `index-descriptor` on a pushed image) is not written.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use kiln_oci::Platform;

/// Where an annotation is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnnotationLevel {
    /// The image manifest (of each platform, or of one).
    Manifest,
    /// The manifest's descriptor in the index (or in an OCI layout's `index.json`).
    ManifestDescriptor,
    /// The image index.
    Index,
    /// The index's descriptor in an OCI layout's `index.json`.
    IndexDescriptor,
}

impl AnnotationLevel {
    const ALL: [Self; 4] = [
        Self::Manifest,
        Self::ManifestDescriptor,
        Self::Index,
        Self::IndexDescriptor,
    ];

    /// The level as buildx spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "manifest",
            Self::ManifestDescriptor => "manifest-descriptor",
            Self::Index => "index",
            Self::IndexDescriptor => "index-descriptor",
        }
    }

    /// Whether the level is the index's or its descriptor's.
    pub fn is_index(self) -> bool {
        matches!(self, Self::Index | Self::IndexDescriptor)
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// One annotation's place and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnnotationKey {
    /// Where it goes.
    pub level: AnnotationLevel,
    /// The one platform whose manifest (or manifest descriptor) gets it; `None`: every one.
    pub platform: Option<Platform>,
    /// The annotation's key (`org.opencontainers.image.title`).
    pub key: String,
}

impl fmt::Display for AnnotationKey {
    /// The `--annotation` form: `manifest[linux/arm64]:key`, `index:key`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.level.as_str())?;
        if let Some(platform) = &self.platform {
            write!(f, "[{platform}]")?;
        }
        write!(f, ":{}", self.key)
    }
}

/// Why an annotation does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid annotation `{spec}`: {reason}")]
pub struct AnnotationError {
    /// The annotation as given.
    pub spec: String,
    /// Why, and what is accepted.
    pub reason: String,
}

/// A set of annotations, each with its level; a later one with the same place and key
/// replaces an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    entries: BTreeMap<AnnotationKey, String>,
}

/// One `--annotation` value (`[TYPE[\[PLATFORM\]]:]KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Its place and key.
    pub key: AnnotationKey,
    /// Its value (may be empty).
    pub value: String,
}

impl FromStr for Annotation {
    type Err = AnnotationError;

    /// buildx's `--annotation` syntax: `key=value`, `manifest:key=value`,
    /// `index:key=value`, `manifest-descriptor:key=value`, `index-descriptor:key=value`,
    /// `manifest[linux/arm64]:key=value`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| AnnotationError {
            spec: spec.to_owned(),
            reason,
        };
        let (key, value) = spec
            .split_once('=')
            .ok_or_else(|| err("expected key=value".to_owned()))?;
        // buildx: `^(?:([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?:)?(\S+)$`
        let (prefix, name) = match key.split_once(':') {
            Some((prefix, name)) if is_level_prefix(prefix) => (Some(prefix), name),
            _ => (None, key),
        };
        let (level, platform) = match prefix {
            None => (AnnotationLevel::Manifest, None),
            Some(prefix) => parse_level(prefix).map_err(err)?,
        };
        let key = AnnotationKey {
            level,
            platform,
            key: check_name(name).map_err(err)?,
        };
        Ok(Self {
            key,
            value: value.to_owned(),
        })
    }
}

/// Whether `prefix` has the shape of buildx's `TYPE[PLATFORM]` (`[a-z-]+`, then optionally
/// `[A-Za-z0-9_/-]+` in brackets); a key such as `com.example:x` has none.
fn is_level_prefix(prefix: &str) -> bool {
    let (level, platform) = match prefix.split_once('[') {
        // An unclosed `[` is no prefix: the platform check below fails on the empty one.
        Some((level, rest)) => (level, Some(rest.strip_suffix(']').unwrap_or(""))),
        None => (prefix, None),
    };
    !level.is_empty()
        && level.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && platform.is_none_or(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_/-".contains(c))
        })
}

/// `manifest`, `index-descriptor`, `manifest[linux/arm64]`…
fn parse_level(prefix: &str) -> Result<(AnnotationLevel, Option<Platform>), String> {
    let (level, platform) = match prefix.split_once('[') {
        Some((level, rest)) => {
            let platform = rest
                .strip_suffix(']')
                .filter(|p| !p.is_empty())
                .ok_or_else(|| format!("`{prefix}`: expected TYPE[PLATFORM]"))?;
            (level, Some(platform))
        }
        None => (prefix, None),
    };
    let level = AnnotationLevel::parse(level).ok_or_else(|| {
        format!(
            "unknown annotation type `{level}` (manifest, manifest-descriptor, index or index-descriptor)"
        )
    })?;
    let platform = match platform {
        None => None,
        Some(_) if level.is_index() => {
            return Err(format!(
                "`{prefix}`: an {} annotation is the whole index's; only manifest and \
                 manifest-descriptor take a [platform]",
                level.as_str()
            ));
        }
        Some(p) => Some(
            p.parse::<Platform>()
                .map_err(|e| format!("invalid platform `{p}`: {e}"))?,
        ),
    };
    Ok((level, platform))
}

/// An annotation key: not empty, no whitespace.
fn check_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the annotation key is empty".to_owned());
    }
    if name.chars().any(char::is_whitespace) {
        return Err(format!("the annotation key `{name}` contains whitespace"));
    }
    Ok(name.to_owned())
}

/// Parses an `-o` key of BuildKit's form (`annotation.KEY`, `annotation-index.KEY`,
/// `annotation[linux/arm64].KEY`, `annotation-manifest-descriptor[linux/amd64].KEY`);
/// `Ok(None)` when the key is not an annotation's.
pub(crate) fn parse_output_key(key: &str) -> Result<Option<AnnotationKey>, String> {
    // BuildKit: `^annotation[-.\[]` marks an annotation key, and
    // `^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$` parses it.
    let Some(rest) = key.strip_prefix("annotation") else {
        return Ok(None);
    };
    if !rest.starts_with(['-', '.', '[']) {
        return Ok(None);
    }
    let (level_part, rest) = match rest.strip_prefix('-') {
        Some(rest) => {
            let end = rest.find(['[', '.']).unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        None => (None, rest),
    };
    let (platform_part, rest) = match rest.strip_prefix('[') {
        Some(rest) => {
            let (platform, rest) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{key}`: unclosed [platform]"))?;
            (Some(platform), rest)
        }
        None => (None, rest),
    };
    let name = rest
        .strip_prefix('.')
        .ok_or_else(|| format!("`{key}`: expected annotation[-TYPE][[PLATFORM]].KEY"))?;
    let mut prefix = level_part.unwrap_or("manifest").to_owned();
    if let Some(p) = platform_part {
        prefix = format!("{prefix}[{p}]");
    }
    let (level, platform) = parse_level(&prefix).map_err(|e| format!("`{key}`: {e}"))?;
    Ok(Some(AnnotationKey {
        level,
        platform,
        key: check_name(name).map_err(|e| format!("`{key}`: {e}"))?,
    }))
}

impl Annotations {
    /// No annotations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one.
    pub fn insert(&mut self, key: AnnotationKey, value: String) {
        self.entries.insert(key, value);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every annotation, by place and key.
    pub fn iter(&self) -> impl Iterator<Item = (&AnnotationKey, &String)> {
        self.entries.iter()
    }

    /// These annotations with `over`'s laid over them (`over` wins on the same place and key).
    #[must_use]
    pub fn merged(&self, over: &Self) -> Self {
        let mut entries = self.entries.clone();
        entries.extend(over.entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self { entries }
    }

    /// The annotations of `level` for `platform` (`None`: the index's): the ones for every
    /// platform, then the platform's own over them, as BuildKit merges them.
    pub(crate) fn at(
        &self,
        level: AnnotationLevel,
        platform: Option<&Platform>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for only_platform in [false, true] {
            for (key, value) in &self.entries {
                let matches = match (&key.platform, only_platform) {
                    (None, false) => true,
                    (Some(p), true) => platform.is_some_and(|q| same_platform(p, q)),
                    _ => false,
                };
                if key.level == level && matches {
                    out.insert(key.key.clone(), value.clone());
                }
            }
        }
        out
    }

    /// The first annotation of an index level, for an image that has no index.
    pub(crate) fn first_index_level(&self) -> Option<&AnnotationKey> {
        self.entries.keys().find(|k| k.level.is_index())
    }

    /// The first annotation naming a platform not in `platforms`.
    pub(crate) fn first_unknown_platform(&self, platforms: &[Platform]) -> Option<&AnnotationKey> {
        self.entries.keys().find(|k| {
            k.platform
                .as_ref()
                .is_some_and(|p| !platforms.iter().any(|q| same_platform(p, q)))
        })
    }
}

/// Whether two platforms name the same one (`linux/arm64/v8` is `linux/arm64`).
fn same_platform(a: &Platform, b: &Platform) -> bool {
    a.normalized() == b.normalized()
}

impl From<Annotation> for Annotations {
    fn from(annotation: Annotation) -> Self {
        let mut out = Self::new();
        out.insert(annotation.key, annotation.value);
        out
    }
}

impl FromIterator<Annotation> for Annotations {
    fn from_iter<I: IntoIterator<Item = Annotation>>(iter: I) -> Self {
        let mut out = Self::new();
        for a in iter {
            out.insert(a.key, a.value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Annotation {
        s.parse().unwrap()
    }

    #[test]
    fn every_buildx_form_parses() {
        let a = parse("org.opencontainers.image.title=Hello=World");
        assert_eq!(a.key.level, AnnotationLevel::Manifest);
        assert_eq!(a.key.platform, None);
        assert_eq!(a.key.key, "org.opencontainers.image.title");
        assert_eq!(a.value, "Hello=World");
        assert_eq!(parse("index:k=v").key.level, AnnotationLevel::Index);
        assert_eq!(parse("manifest:k=").value, "");
        assert_eq!(
            parse("manifest-descriptor:k=v").key.level,
            AnnotationLevel::ManifestDescriptor
        );
        assert_eq!(
            parse("index-descriptor:k=v").key.level,
            AnnotationLevel::IndexDescriptor
        );
        let a = parse("manifest[linux/arm64/v8]:k=v");
        assert_eq!(a.key.platform, Some("linux/arm64".parse().unwrap()));
        assert_eq!(a.key.to_string(), "manifest[linux/arm64]:k");
        // A key with a colon and no known type is a plain key (`a:b`), as buildx reads it.
        assert_eq!(
            parse("com.example:x=1").key.level,
            AnnotationLevel::Manifest
        );
    }

    #[test]
    fn bad_annotations_are_refused_with_a_reason() {
        for (spec, needle) in [
            ("novalue", "key=value"),
            ("=v", "empty"),
            ("indx:k=v", "unknown annotation type `indx`"),
            ("manifest[linux/bogus]:k=v", "linux/bogus"),
            ("index[linux/amd64]:k=v", "whole index"),
            ("manifest[linux/amd64]:=v", "empty"),
            ("manifest:a b=v", "whitespace"),
        ] {
            let err = spec.parse::<Annotation>().unwrap_err();
            assert!(
                err.to_string().contains(needle) && err.to_string().contains(spec),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn output_keys_follow_buildkit() {
        let k = parse_output_key("annotation.a.b").unwrap().unwrap();
        assert_eq!(
            (k.level, k.key.as_str()),
            (AnnotationLevel::Manifest, "a.b")
        );
        let k = parse_output_key("annotation-index.a").unwrap().unwrap();
        assert_eq!(k.level, AnnotationLevel::Index);
        let k = parse_output_key("annotation-manifest-descriptor[linux/amd64].a")
            .unwrap()
            .unwrap();
        assert_eq!(k.level, AnnotationLevel::ManifestDescriptor);
        assert_eq!(k.platform, Some("linux/amd64".parse().unwrap()));
        let k = parse_output_key("annotation[linux/arm64].a")
            .unwrap()
            .unwrap();
        assert_eq!(k.level, AnnotationLevel::Manifest);
        assert_eq!(parse_output_key("annotations").unwrap(), None);
        assert_eq!(parse_output_key("compression").unwrap(), None);
        assert!(parse_output_key("annotation-bogus.a").is_err());
        assert!(parse_output_key("annotation.").is_err());
        assert!(parse_output_key("annotation[linux/amd64.a").is_err());
    }

    #[test]
    fn platform_annotations_override_the_general_ones() {
        let set: Annotations = [
            parse("k=all"),
            parse("manifest[linux/arm64]:k=arm"),
            parse("other=1"),
            parse("index:i=1"),
        ]
        .into_iter()
        .collect();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let amd: Platform = "linux/amd64".parse().unwrap();
        let at_arm = set.at(AnnotationLevel::Manifest, Some(&arm));
        assert_eq!(at_arm["k"], "arm");
        assert_eq!(at_arm["other"], "1");
        assert_eq!(set.at(AnnotationLevel::Manifest, Some(&amd))["k"], "all");
        assert_eq!(set.at(AnnotationLevel::Index, None)["i"], "1");
        assert!(set.at(AnnotationLevel::IndexDescriptor, None).is_empty());
        assert_eq!(set.first_index_level().unwrap().key, "i");
        assert!(
            set.first_unknown_platform(std::slice::from_ref(&arm))
                .is_none()
        );
        assert_eq!(
            set.first_unknown_platform(&[amd]).unwrap().to_string(),
            "manifest[linux/arm64]:k"
        );
    }

    #[test]
    fn later_values_replace_earlier_ones_and_merge_prefers_over() {
        let base: Annotations = [parse("k=1"), parse("k=2")].into_iter().collect();
        assert_eq!(base.at(AnnotationLevel::Manifest, None)["k"], "2");
        let over: Annotations = [parse("k=3")].into_iter().collect();
        assert_eq!(
            base.merged(&over).at(AnnotationLevel::Manifest, None)["k"],
            "3"
        );
    }
}
