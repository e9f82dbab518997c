//! Where a build's cache comes from and goes to: the `--cache-from` / `--cache-to` specs of
//! `docker buildx build` ([`CacheSource`], [`CacheExport`]).
//!
//! A cache is an OCI image manifest whose config holds kiln's cache records and whose layers
//! are the layer blobs they name, kept in a registry (`type=registry,ref=…`) or in an OCI
//! image layout directory (`type=local,dest=…` / `src=…`). Parsing is strict: an unknown
//! type or key is an error naming it, and so is a buildx key kiln does not implement yet,
//! never an option silently dropped.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use kiln_oci::{Compression, ImageRef, ReferenceError};

/// Where a cache is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheLocation {
    /// `type=registry,ref=REG/REPO:TAG`: a manifest in a registry.
    Registry(ImageRef),
    /// `type=local,dest=DIR` / `type=local,src=DIR`: an OCI image layout directory.
    Local(PathBuf),
    /// `--cache-to type=inline`: the records ride in the built image's manifest (its
    /// layers are the image's), and `--cache-from IMAGE-REF` reads them back.
    Inline,
}

impl fmt::Display for CacheLocation {
    /// How progress names the cache: the reference, or the directory.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(reference) => write!(f, "{reference}"),
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::Inline => f.write_str("inline"),
        }
    }
}

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// `mode=min` (buildx's default): the steps of the exported image's stages (the target
    /// and the stages it is built `FROM`).
    #[default]
    Min,
    /// `mode=max`: every step of every stage that ran, builder stages too.
    Max,
}

/// A `--cache-from`: a cache whose records the build may reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSource {
    /// Where the cache is.
    pub location: CacheLocation,
}

impl CacheSource {
    /// The cache at `location`.
    pub fn new(location: CacheLocation) -> Self {
        Self { location }
    }
}

/// A `--cache-to`: where the build exports its cache after it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    /// Where the cache goes.
    pub location: CacheLocation,
    /// Which steps.
    pub mode: CacheMode,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
    /// `compression=…`: the layer blobs' compression (default: the build's).
    pub compression: Option<Compression>,
    /// `max-age=…`: records of the cache already at this location that no build has used
    /// for longer are not carried into the new export (default 7 days).
    pub max_age: std::time::Duration,
    /// `max-size=…`: the carried records' layers, with this build's, stay under this many
    /// bytes; the least recently used are dropped first (default 10 GiB).
    pub max_size: u64,
    /// `cache-mounts=true`: the `RUN --mount=type=cache` directories this build's steps
    /// used travel in the cache too, one layer each (default false).
    pub cache_mounts: bool,
    /// `cache-mounts-max-size=…`: the exported cache mounts' contents stay under this many
    /// bytes; the smallest go first, and each one left out is a warning (default 1 GiB).
    pub cache_mounts_max_size: u64,
}

/// Default [`CacheExport::max_age`]: a week.
pub(crate) const DEFAULT_CACHE_MAX_AGE: std::time::Duration =
    std::time::Duration::from_hours(7 * 24);
/// Default [`CacheExport::max_size`]: 10 GiB.
pub(crate) const DEFAULT_CACHE_MAX_SIZE: u64 = 10 << 30;
/// Default [`CacheExport::cache_mounts_max_size`]: 1 GiB.
pub(crate) const DEFAULT_CACHE_MOUNTS_MAX_SIZE: u64 = 1 << 30;

impl CacheExport {
    /// An export to `location` with buildx's defaults (`mode=min`, errors fail the build,
    /// the build's compression).
    pub fn new(location: CacheLocation) -> Self {
        Self {
            location,
            mode: CacheMode::Min,
            ignore_error: false,
            compression: None,
            max_age: DEFAULT_CACHE_MAX_AGE,
            max_size: DEFAULT_CACHE_MAX_SIZE,
            cache_mounts: false,
            cache_mounts_max_size: DEFAULT_CACHE_MOUNTS_MAX_SIZE,
        }
    }

    /// `mode=`.
    #[must_use]
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.mode = mode;
        self
    }

    /// `ignore-error=`.
    #[must_use]
    pub fn ignore_error(mut self, yes: bool) -> Self {
        self.ignore_error = yes;
        self
    }

    /// `compression=`.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// `max-age=`.
    #[must_use]
    pub fn max_age(mut self, age: std::time::Duration) -> Self {
        self.max_age = age;
        self
    }

    /// `max-size=`.
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// `cache-mounts=`.
    #[must_use]
    pub fn cache_mounts(mut self, yes: bool) -> Self {
        self.cache_mounts = yes;
        self
    }

    /// `cache-mounts-max-size=`.
    #[must_use]
    pub fn cache_mounts_max_size(mut self, bytes: u64) -> Self {
        self.cache_mounts_max_size = bytes;
        self
    }
}

/// `30m`, `168h`, `7d`, `90s`: a whole number and one unit.
fn parse_age(value: &str) -> Option<std::time::Duration> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(number.checked_mul(unit)?))
}

/// `500MB`, `10GiB`, `1048576`: a whole number of bytes with an optional decimal (kB, MB,
/// GB) or binary (KiB, MiB, GiB) unit.
fn parse_size(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit: u64 = match unit {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Why a `--cache-from` / `--cache-to` value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheSpecError {
    /// A part without `=`.
    #[error("invalid {flag} `{spec}`: `{part}` is not key=value")]
    NotKeyValue {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The part.
        part: String,
    },
    /// No `type=`.
    #[error("invalid {flag} `{spec}`: type=… is required (registry or local)")]
    MissingType {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
    },
    /// A type kiln does not know.
    #[error(
        "invalid {flag} `{spec}`: unknown type `{kind}` (kiln knows registry, local and, for --cache-to, inline)"
    )]
    UnknownType {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The type given.
        kind: String,
    },
    /// A buildx type or key kiln does not implement yet.
    #[error("invalid {flag} `{spec}`: {what} is not supported yet")]
    NotSupportedYet {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// `type=inline`, `key cache-mounts`, …
        what: String,
    },
    /// A key this type does not take.
    #[error("invalid {flag} `{spec}`: unknown key `{key}` for type={kind} ({known})")]
    UnknownKey {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The type.
        kind: &'static str,
        /// The key.
        key: String,
        /// The keys it takes.
        known: &'static str,
    },
    /// A key given twice.
    #[error("invalid {flag} `{spec}`: `{key}` is given twice")]
    DuplicateKey {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The key.
        key: String,
    },
    /// A required key is missing.
    #[error("invalid {flag} `{spec}`: type={kind} needs {key}=…")]
    MissingKey {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The type.
        kind: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A value that is not one of those accepted.
    #[error("invalid {flag} `{spec}`: {key}={value} is not valid (expected {expected})")]
    InvalidValue {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// `ref=` is not an image reference.
    #[error("invalid {flag} `{spec}`: ref `{reference}`: {source}")]
    InvalidRef {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The whole value.
        spec: String,
        /// The reference given.
        reference: String,
        /// Why it does not parse.
        source: Box<ReferenceError>,
    },
}

const FROM_FLAG: &str = "--cache-from";
const TO_FLAG: &str = "--cache-to";

/// buildx cache options kiln does not implement yet: refused by name, not ignored.
const NOT_YET_KEYS: &[&str] = &["force-compression"];

/// A spec split into its type and its other `key=value` pairs, in order.
struct Parts<'a> {
    flag: &'static str,
    spec: &'a str,
    kind: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Parts<'a> {
    fn split(flag: &'static str, spec: &'a str) -> Result<Self, CacheSpecError> {
        let mut kind = None;
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for part in spec.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| CacheSpecError::NotKeyValue {
                    flag,
                    spec: spec.to_owned(),
                    part: part.to_owned(),
                })?;
            let key = key.trim();
            if key == "type" && kind.is_none() {
                kind = Some(value);
                continue;
            }
            if key == "type" || pairs.iter().any(|(k, _)| *k == key) {
                return Err(CacheSpecError::DuplicateKey {
                    flag,
                    spec: spec.to_owned(),
                    key: key.to_owned(),
                });
            }
            pairs.push((key, value));
        }
        let kind = kind.ok_or_else(|| CacheSpecError::MissingType {
            flag,
            spec: spec.to_owned(),
        })?;
        let inline = kind == "inline" && flag == TO_FLAG;
        if kind != "registry" && kind != "local" && !inline {
            return Err(CacheSpecError::UnknownType {
                flag,
                spec: spec.to_owned(),
                kind: kind.to_owned(),
            });
        }
        if let Some((key, _)) = pairs.iter().find(|(k, _)| NOT_YET_KEYS.contains(k)) {
            return Err(CacheSpecError::NotSupportedYet {
                flag,
                spec: spec.to_owned(),
                what: format!("key `{key}`"),
            });
        }
        Ok(Self {
            flag,
            spec,
            kind,
            pairs,
        })
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            "registry" => "registry",
            "inline" => "inline",
            _ => "local",
        }
    }

    fn unknown_key(&self, key: &str, known: &'static str) -> CacheSpecError {
        CacheSpecError::UnknownKey {
            flag: self.flag,
            spec: self.spec.to_owned(),
            kind: self.kind_name(),
            key: key.to_owned(),
            known,
        }
    }

    fn invalid(&self, key: &str, value: &str, expected: &'static str) -> CacheSpecError {
        CacheSpecError::InvalidValue {
            flag: self.flag,
            spec: self.spec.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            expected,
        }
    }

    /// The location from `ref=` (registry) or `path_key=` (local).
    fn location(
        &self,
        reference: Option<&str>,
        path: Option<&str>,
        path_key: &'static str,
    ) -> Result<CacheLocation, CacheSpecError> {
        let missing = |key| CacheSpecError::MissingKey {
            flag: self.flag,
            spec: self.spec.to_owned(),
            kind: self.kind_name(),
            key,
        };
        if self.kind == "inline" {
            Ok(CacheLocation::Inline)
        } else if self.kind == "registry" {
            let reference = reference.ok_or_else(|| missing("ref"))?;
            parse_ref(self.flag, self.spec, reference).map(CacheLocation::Registry)
        } else {
            let path = path
                .filter(|p| !p.is_empty())
                .ok_or_else(|| missing(path_key))?;
            Ok(CacheLocation::Local(PathBuf::from(path)))
        }
    }
}

fn parse_ref(flag: &'static str, spec: &str, reference: &str) -> Result<ImageRef, CacheSpecError> {
    ImageRef::parse(reference).map_err(|source| CacheSpecError::InvalidRef {
        flag,
        spec: spec.to_owned(),
        reference: reference.to_owned(),
        source: Box::new(source),
    })
}

fn parse_bool(parts: &Parts<'_>, key: &str, value: &str) -> Result<bool, CacheSpecError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(parts.invalid(key, value, "true or false")),
    }
}

impl FromStr for CacheSource {
    type Err = CacheSpecError;

    /// `type=registry,ref=REF`, `type=local,src=DIR`, or a bare `REF` (buildx: a registry
    /// cache).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if !spec.contains('=') {
            return parse_ref(FROM_FLAG, spec, spec).map(|r| Self::new(CacheLocation::Registry(r)));
        }
        let parts = Parts::split(FROM_FLAG, spec)?;
        let (mut reference, mut src) = (None, None);
        for &(key, value) in &parts.pairs {
            match (parts.kind, key) {
                ("registry", "ref") => reference = Some(value),
                ("local", "src") => src = Some(value),
                ("registry", _) => return Err(parts.unknown_key(key, "ref")),
                _ => return Err(parts.unknown_key(key, "src")),
            }
        }
        Ok(Self::new(parts.location(reference, src, "src")?))
    }
}

impl FromStr for CacheExport {
    type Err = CacheSpecError;

    /// `type=registry,ref=REF[,mode=min|max][,ignore-error=true|false][,compression=…]
    /// [,max-age=…][,max-size=…][,cache-mounts=true|false][,cache-mounts-max-size=…]`, or
    /// `type=local,dest=DIR[,…]`.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let parts = Parts::split(TO_FLAG, spec)?;
        let (mut reference, mut dest) = (None, None);
        let mut mode = CacheMode::Min;
        let mut ignore_error = false;
        let mut kind = None;
        let mut max_age = DEFAULT_CACHE_MAX_AGE;
        let mut max_size = DEFAULT_CACHE_MAX_SIZE;
        let mut cache_mounts = false;
        let mut cache_mounts_max_size = DEFAULT_CACHE_MOUNTS_MAX_SIZE;
        let mut level = None;
        for &(key, value) in &parts.pairs {
            match (parts.kind, key) {
                ("registry", "ref") => reference = Some(value),
                ("local", "dest") => dest = Some(value),
                ("inline", "mode") if value != "min" => {
                    return Err(parts.invalid(
                        key,
                        value,
                        "min (an inline cache holds the steps of the image's own stages)",
                    ));
                }
                ("inline", "mode") => {}
                ("inline", _) => return Err(parts.unknown_key(key, "mode=min")),
                (_, "mode") => {
                    mode = match value {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => return Err(parts.invalid(key, value, "min or max")),
                    };
                }
                (_, "ignore-error") => ignore_error = parse_bool(&parts, key, value)?,
                // What kiln always writes: accepted as buildx spells it, refused otherwise.
                (_, "oci-mediatypes" | "image-manifest") if value == "true" => {}
                (_, "oci-mediatypes") => {
                    return Err(parts.invalid(
                        key,
                        value,
                        "true: kiln writes OCI media types only",
                    ));
                }
                (_, "image-manifest") => {
                    return Err(parts.invalid(
                        key,
                        value,
                        "true: kiln's cache is always an image manifest, which every registry accepts",
                    ));
                }
                (_, "compression-level") => level = Some(value),
                (_, "compression") => kind = Some(value),
                (_, "max-age") => {
                    max_age = parse_age(value).ok_or_else(|| {
                        parts.invalid(key, value, "a duration such as 168h or 7d")
                    })?;
                }
                (_, "max-size") => {
                    max_size = parse_size(value).ok_or_else(|| {
                        parts.invalid(key, value, "a size such as 10GiB or 500MB")
                    })?;
                }
                (_, "cache-mounts") => cache_mounts = parse_bool(&parts, key, value)?,
                (_, "cache-mounts-max-size") => {
                    cache_mounts_max_size = parse_size(value)
                        .ok_or_else(|| parts.invalid(key, value, "a size such as 1GiB or 500MB"))?;
                }
                ("registry", _) => {
                    return Err(parts.unknown_key(
                        key,
                        "ref, mode, ignore-error, compression, compression-level, max-age, max-size, cache-mounts, cache-mounts-max-size, oci-mediatypes, image-manifest",
                    ));
                }
                _ => {
                    return Err(parts.unknown_key(
                        key,
                        "dest, mode, ignore-error, compression, compression-level, max-age, max-size, cache-mounts, cache-mounts-max-size, oci-mediatypes, image-manifest",
                    ));
                }
            }
        }
        // As buildx: the level of the cache's compression, gzip unless compression= says.
        let compression = crate::output::parse_compression(kind, level)
            .map_err(|e| parts.invalid(e.key, &e.value, e.expected))?;
        Ok(Self {
            location: parts.location(reference, dest, "dest")?,
            mode,
            ignore_error,
            compression,
            max_age,
            max_size,
            cache_mounts,
            cache_mounts_max_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(text: &str) -> CacheLocation {
        CacheLocation::Registry(ImageRef::parse(text).unwrap())
    }

    #[test]
    fn cache_to_registry_with_every_key() {
        let export: CacheExport =
            "type=registry,ref=localhost:5000/app/cache:main,mode=max,ignore-error=true,compression=zstd"
                .parse()
                .unwrap();
        assert_eq!(export.location, registry("localhost:5000/app/cache:main"));
        assert_eq!(export.mode, CacheMode::Max);
        assert!(export.ignore_error);
        assert_eq!(export.compression, Some(Compression::Zstd { level: 3 }));
    }

    #[test]
    fn cache_to_bounds_parse_and_bad_ones_are_refused() {
        let export: CacheExport = "type=local,dest=/c,max-age=48h,max-size=500MiB"
            .parse()
            .unwrap();
        assert_eq!(export.max_age, std::time::Duration::from_hours(48));
        assert_eq!(export.max_size, 500 << 20);
        let export: CacheExport = "type=local,dest=/c,max-age=7d,max-size=1048576"
            .parse()
            .unwrap();
        assert_eq!(export.max_age, DEFAULT_CACHE_MAX_AGE);
        assert_eq!(export.max_size, 1 << 20);
        for bad in [
            "max-age=7",
            "max-age=1w",
            "max-age=h",
            "max-size=10XB",
            "max-size=-1",
        ] {
            let error = format!("type=local,dest=/c,{bad}")
                .parse::<CacheExport>()
                .unwrap_err();
            assert!(error.to_string().contains("such as"), "{bad}: {error}");
        }
    }

    #[test]
    fn cache_mounts_keys_parse_and_bad_values_are_refused() {
        let export: CacheExport = "type=local,dest=/c,cache-mounts=true,cache-mounts-max-size=2GiB"
            .parse()
            .unwrap();
        assert!(export.cache_mounts);
        assert_eq!(export.cache_mounts_max_size, 2 << 30);
        let export: CacheExport = "type=registry,ref=r/c:t,cache-mounts=false"
            .parse()
            .unwrap();
        assert!(!export.cache_mounts);
        assert_eq!(export.cache_mounts_max_size, DEFAULT_CACHE_MOUNTS_MAX_SIZE);
        for (bad, expected) in [
            (
                "cache-mounts=yes",
                "cache-mounts=yes is not valid (expected true or false)",
            ),
            (
                "cache-mounts-max-size=1TB",
                "cache-mounts-max-size=1TB is not valid",
            ),
            (
                "cache-mounts-max-size=",
                "cache-mounts-max-size= is not valid",
            ),
        ] {
            let error = format!("type=local,dest=/c,{bad}")
                .parse::<CacheExport>()
                .unwrap_err();
            assert!(error.to_string().contains(expected), "{bad}: {error}");
        }
        // An import takes no export key.
        let error = "type=local,src=/c,cache-mounts=true"
            .parse::<CacheSource>()
            .unwrap_err();
        assert!(
            error.to_string().contains("unknown key `cache-mounts`"),
            "{error}"
        );
    }

    #[test]
    fn cache_to_defaults_are_buildx_defaults() {
        let export: CacheExport = "type=local,dest=/tmp/cache".parse().unwrap();
        assert_eq!(
            export,
            CacheExport::new(CacheLocation::Local("/tmp/cache".into()))
        );
        assert_eq!(export.mode, CacheMode::Min);
    }

    #[test]
    fn cache_from_registry_local_and_bare_ref() {
        let source: CacheSource = "type=registry,ref=ghcr.io/o/cache:main".parse().unwrap();
        assert_eq!(source.location, registry("ghcr.io/o/cache:main"));
        let source: CacheSource = "type=local,src=ci-cache".parse().unwrap();
        assert_eq!(source.location, CacheLocation::Local("ci-cache".into()));
        let source: CacheSource = "ghcr.io/o/cache:pr-1".parse().unwrap();
        assert_eq!(source.location, registry("ghcr.io/o/cache:pr-1"));
    }

    #[test]
    fn unknown_types_and_keys_are_errors_that_name_them() {
        let cases: &[(&str, bool, &str)] = &[
            ("type=gha,scope=x", true, "unknown type `gha`"),
            ("type=registry,ref=r/c:t,foo=1", true, "unknown key `foo`"),
            ("type=local,dest=d,src=d", true, "unknown key `src`"),
            ("type=local,src=d,dest=d", false, "unknown key `dest`"),
            (
                "type=registry,ref=r/c:t,mode=max",
                false,
                "unknown key `mode`",
            ),
            (
                "type=registry,ref=r/c:t,mode=all",
                true,
                "mode=all is not valid",
            ),
            (
                "type=registry,ref=r/c:t,ignore-error=yes",
                true,
                "ignore-error=yes",
            ),
            (
                "type=registry,ref=r/c:t,compression=lz4",
                true,
                "compression=lz4",
            ),
            ("type=registry", true, "needs ref="),
            ("type=local", false, "needs src="),
            ("ref=r/c:t", true, "type=… is required"),
            (
                "type=registry,ref=r/c:t,ref=r/d:t",
                true,
                "`ref` is given twice",
            ),
            ("type=registry,ref=Not A Ref", true, "ref `Not A Ref`"),
            (
                "type=registry,ref=r/c:t,mode",
                true,
                "`mode` is not key=value",
            ),
        ];
        for (spec, is_export, expected) in cases {
            let error = if *is_export {
                spec.parse::<CacheExport>().unwrap_err()
            } else {
                spec.parse::<CacheSource>().unwrap_err()
            };
            let message = error.to_string();
            assert!(message.contains(expected), "{spec}: {message}");
            assert!(message.contains(spec), "{spec}: {message}");
        }
    }

    #[test]
    fn buildx_options_not_implemented_yet_are_refused_by_name() {
        let spec = "type=registry,ref=r/c:t,force-compression=true";
        let message = spec.parse::<CacheExport>().unwrap_err().to_string();
        assert!(
            message.contains("key `force-compression` is not supported yet"),
            "{message}"
        );
    }

    #[test]
    fn compression_level_and_what_kiln_always_writes() {
        let export: CacheExport =
            "type=local,dest=/c,compression-level=9,oci-mediatypes=true,image-manifest=true"
                .parse()
                .unwrap();
        assert_eq!(export.compression, Some(Compression::Gzip { level: 9 }));
        let export: CacheExport = "type=local,dest=/c,compression=zstd,compression-level=19"
            .parse()
            .unwrap();
        assert_eq!(export.compression, Some(Compression::Zstd { level: 19 }));
        for (bad, expected) in [
            ("compression-level=10", "0 to 9 for gzip"),
            ("compression=zstd,compression-level=0", "1 to 22 for zstd"),
            (
                "compression=uncompressed,compression-level=1",
                "has no level",
            ),
            ("oci-mediatypes=false", "OCI media types only"),
            ("image-manifest=false", "always an image manifest"),
        ] {
            let error = format!("type=local,dest=/c,{bad}")
                .parse::<CacheExport>()
                .unwrap_err();
            assert!(error.to_string().contains(expected), "{bad}: {error}");
        }
    }

    #[test]
    fn inline_is_a_cache_to_of_the_image_steps_only() {
        let export: CacheExport = "type=inline".parse().unwrap();
        assert_eq!(export.location, CacheLocation::Inline);
        assert_eq!(export.mode, CacheMode::Min);
        assert!("type=inline,mode=min".parse::<CacheExport>().is_ok());
        for (spec, expected) in [
            ("type=inline,mode=max", "own stages"),
            ("type=inline,ref=r/c:t", "unknown key `ref`"),
            ("type=inline,compression=zstd", "unknown key `compression`"),
        ] {
            let message = spec.parse::<CacheExport>().unwrap_err().to_string();
            assert!(message.contains(expected), "{spec}: {message}");
        }
        // Reading an inline cache is `--cache-from IMAGE-REF`, as with buildx.
        let message = "type=inline"
            .parse::<CacheSource>()
            .unwrap_err()
            .to_string();
        assert!(message.contains("unknown type `inline`"), "{message}");
    }
}
