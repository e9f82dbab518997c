//! `RUN --mount=...` and `RUN --device=...` specifications (BuildKit's
//! `commands_runmount.go` and `commands_rundevice.go`).
//!
//! A specification is a CSV record of `key=value` fields. Values are kept unexpanded; a
//! field whose value holds a `$` reference cannot be checked until the planner has expanded
//! it, so the mount is marked [`Mount::needs_expansion`] and the planner re-parses
//! [`Mount::spec`] with [`Mount::parse`] and its expander.

use serde::Serialize;

use crate::ExpandError;

/// ` (did you mean x?)` after a message, or nothing.
fn did_you_mean(suggestion: Option<&String>) -> String {
    suggestion
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// Why a `--mount` or `--device` specification was rejected (BuildKit's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The specification is not one CSV record (`what` is `mounts` or `devices`).
    #[error("failed to parse csv {what}: {reason}")]
    Csv {
        what: &'static str,
        reason: CsvError,
    },
    /// A field without `=` that is not a known flag.
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue { field: String },
    /// A key the mount type does not take (`required` on a bind, `size` on a cache).
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType {
        key: &'static str,
        kind: &'static str,
    },
    /// `from=$X`: stage references are resolved before expansion.
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromExpansion,
    /// Expanding a field value failed (the planner's expander).
    #[error(transparent)]
    Expansion(#[from] ExpandError),
    /// `type=` is not bind, cache, tmpfs, secret or ssh.
    #[error("unsupported mount type \"{value}\"{}", did_you_mean(.suggestion.as_ref()))]
    UnsupportedType {
        value: String,
        suggestion: Option<String>,
    },
    /// A boolean or size field with a value it cannot take.
    #[error("invalid value for {key}: {value}")]
    InvalidValue { key: String, value: String },
    /// `mode=`, `uid=` or `gid=` that is not a number (octal for `mode`).
    #[error("invalid value {value} for {key}")]
    InvalidNumber { key: String, value: String },
    /// `sharing=` is not shared, private or locked.
    #[error("unsupported sharing value \"{value}\"")]
    UnsupportedSharing { value: String },
    /// A key no mount takes.
    #[error("unexpected key '{key}' in '{field}'{}", did_you_mean(.suggestion.as_ref()))]
    UnknownKey {
        key: String,
        field: String,
        suggestion: Option<String>,
    },
    /// `mode`, `uid` or `gid` on a bind or tmpfs mount.
    #[error("{name} not allowed for \"{kind}\" type mounts")]
    FileInfoNotAllowed {
        name: &'static str,
        kind: &'static str,
    },
    #[error("secret mount should not have a from")]
    SecretWithFrom,
    #[error("secret mount should not define sharing")]
    SecretWithSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretWithoutTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    /// `sharing=` on anything but a cache mount.
    #[error("invalid cache sharing set for {kind} mount")]
    SharingNotCache { kind: &'static str },
    /// A second device name.
    #[error("device name already set to {name}")]
    DeviceNameSet { name: String },
}

/// Why a specification is not one CSV record (Go `encoding/csv`'s messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    #[error("extraneous or missing \" in quoted-field")]
    QuotedField,
    #[error("bare \" in non-quoted-field")]
    BareQuote,
}

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A read-only (by default) bind of the context or a stage.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or environment variable).
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// Concurrent writers share the directory.
    Shared,
    /// Each writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A parsed `--mount` specification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The specification as written.
    pub spec: String,
    /// `type=` (default `bind`).
    pub kind: MountType,
    /// `from=`: a stage or image for bind/cache mounts.
    pub from: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `readonly`/`ro`/`rw`; defaults to true except for cache and tmpfs.
    pub read_only: bool,
    /// `size=` of a tmpfs, in bytes.
    pub size_limit: Option<i64>,
    /// `id=` of a cache or secret.
    pub id: Option<String>,
    /// `sharing=` of a cache.
    pub sharing: Option<CacheSharing>,
    /// `required` for secret and ssh mounts.
    pub required: bool,
    /// `env=`: the environment variable a secret is exposed as.
    pub env: Option<String>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// Some field holds a `$` reference: parse [`Mount::spec`] again after expansion.
    pub needs_expansion: bool,
}

/// Expands one field value (the planner passes its ARG/ENV expander).
pub type Expander<'a> = &'a mut dyn FnMut(&str) -> Result<String, ExpandError>;

impl Mount {
    /// Parses a `--mount` specification, expanding each value with `expand` (BuildKit's
    /// `parseMount` with an expander). Errors name the offending field.
    pub fn parse(spec: &str, expand: Expander<'_>) -> Result<Self, MountError> {
        parse_mount(spec, Some(expand))
    }
}

/// Whether `value` holds a variable reference (a `$` that is not the last character).
fn has_reference(value: &str) -> bool {
    value.find('$').is_some_and(|i| i + 1 != value.len())
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

pub(crate) fn parse_mount(
    spec: &str,
    mut expand: Option<Expander<'_>>,
) -> Result<Mount, MountError> {
    let fields = csv_fields(spec).map_err(|reason| MountError::Csv {
        what: "mounts",
        reason,
    })?;
    let mut m = Mount {
        spec: spec.to_owned(),
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        read_only: false,
        size_limit: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
        needs_expansion: false,
    };
    let mut ro_auto = true;
    let invalid = |key: &str, value: &str| MountError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            {
                match field.to_lowercase().as_str() {
                    "readonly" | "ro" => {
                        m.read_only = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.read_only = false;
                        ro_auto = false;
                    }
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true;
                    }
                    "required" => {
                        return Err(MountError::KeyNotForType {
                            key: "required",
                            kind: kind_name(m.kind),
                        });
                    }
                    _ => {
                        return Err(MountError::NotKeyValue {
                            field: field.clone(),
                        });
                    }
                }
                continue;
            }
        };
        let (key, value) = (key.to_lowercase(), value.to_owned());
        let value = match expand.as_mut() {
            Some(f) => f(&value)?,
            None if key == "from" && has_reference(&value) => {
                return Err(MountError::FromExpansion);
            }
            None if has_reference(&value) => {
                m.needs_expansion = true;
                // Strings are kept as written; typed fields wait for the expander.
                match key.as_str() {
                    "source" | "src" => m.source = Some(value),
                    "target" | "dst" | "destination" => m.target = Some(value),
                    "id" => m.id = Some(value),
                    "env" => m.env = Some(value),
                    _ => {}
                }
                continue;
            }
            None => value,
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let suggestion = crate::diagnostic::suggest(
                            &value,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                            true,
                        );
                        return Err(MountError::UnsupportedType { value, suggestion });
                    }
                };
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.read_only = parse_bool(&value).ok_or_else(|| invalid(&key, &value))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !parse_bool(&value).ok_or_else(|| invalid(&key, &value))?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(MountError::KeyNotForType {
                        key: "required",
                        kind: kind_name(m.kind),
                    });
                }
                m.required = parse_bool(&value).ok_or_else(|| invalid(&key, &value))?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(MountError::KeyNotForType {
                        key: "size",
                        kind: kind_name(m.kind),
                    });
                }
                m.size_limit = Some(ram_in_bytes(&value).ok_or_else(|| invalid(&key, &value))?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(MountError::UnsupportedSharing { value }),
                });
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .ok()
                        .filter(|_| !value.starts_with('+'))
                        .ok_or_else(|| MountError::InvalidNumber {
                            key: key.clone(),
                            value: value.clone(),
                        })?,
                );
            }
            "uid" | "gid" => {
                let id = value
                    .parse::<u32>()
                    .ok()
                    .filter(|_| !value.starts_with('+'))
                    .ok_or_else(|| MountError::InvalidNumber {
                        key: key.clone(),
                        value: value.clone(),
                    })?;
                if key == "uid" {
                    m.uid = Some(id);
                } else {
                    m.gid = Some(id);
                }
            }
            "env" => m.env = Some(value),
            _ => {
                const KEYS: [&str; 19] = [
                    "type",
                    "from",
                    "source",
                    "target",
                    "readonly",
                    "id",
                    "sharing",
                    "required",
                    "size",
                    "mode",
                    "uid",
                    "gid",
                    "src",
                    "dst",
                    "destination",
                    "ro",
                    "rw",
                    "readwrite",
                    "env",
                ];
                let suggestion = crate::diagnostic::suggest(&key, &KEYS, true);
                return Err(MountError::UnknownKey {
                    key,
                    field: field.clone(),
                    suggestion,
                });
            }
        }
    }
    if m.needs_expansion {
        // Cross-field checks need the deferred values; the planner re-parses after expansion.
        if ro_auto {
            m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        return Ok(m);
    }
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfoNotAllowed {
                    name,
                    kind: kind_name(m.kind),
                });
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretWithFrom);
        }
        if m.sharing.is_some() {
            return Err(MountError::SecretWithSharing);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::SecretWithoutTarget);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SecretSourceAndId);
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache {
            kind: kind_name(m.kind),
        });
    }
    Ok(m)
}

fn kind_name(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// go-units `RAMInBytes`: `<number>[ ]?[kmgtp]?[i]?[b]?`, binary multiples.
fn ram_in_bytes(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num_len = b
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'.')
        .count();
    let (num, mut rest) = (&text[..num_len], &text[num_len..]);
    if num.is_empty() || !num.as_bytes()[0].is_ascii_digit() || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut mul = 1f64;
    if let Some(c) = rest.chars().next() {
        let exp = match c.to_ascii_lowercase() {
            'k' => Some(1),
            'm' => Some(2),
            'g' => Some(3),
            't' => Some(4),
            'p' => Some(5),
            _ => None,
        };
        if let Some(exp) = exp {
            mul = 1024f64.powi(exp);
            rest = &rest[1..];
        }
    }
    rest = rest.strip_prefix(['i', 'I']).unwrap_or(rest);
    rest = rest.strip_prefix(['b', 'B']).unwrap_or(rest);
    if !rest.is_empty() {
        return None;
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "go-units truncates the float the same way"
    )]
    Some((value * mul) as i64)
}

/// A single CSV record as Go's `encoding/csv` reads it (`tonistiigi/go-csvvalue`).
fn csv_fields(line: &str) -> Result<Vec<String>, CsvError> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        if let Some(mut quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            loop {
                let Some(i) = quoted.find('"') else {
                    return Err(CsvError::QuotedField);
                };
                field.push_str(&quoted[..i]);
                quoted = &quoted[i + 1..];
                if let Some(after) = quoted.strip_prefix('"') {
                    field.push('"');
                    quoted = after;
                    continue;
                }
                break;
            }
            fields.push(field);
            match quoted.strip_prefix(',') {
                Some(after) => rest = after,
                None if quoted.is_empty() => return Ok(fields),
                None => return Err(CsvError::QuotedField),
            }
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let field = &rest[..end];
            if field.contains('"') {
                return Err(CsvError::BareQuote);
            }
            fields.push(field.to_owned());
            if end == rest.len() {
                return Ok(fields);
            }
            rest = &rest[end + 1..];
        }
    }
}

/// A `RUN --device` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The device name (CDI name or path).
    pub name: String,
    /// Fail the build when the device is missing.
    pub required: bool,
}

pub(crate) fn parse_device(spec: &str) -> Result<Device, MountError> {
    let fields = csv_fields(spec).map_err(|reason| MountError::Csv {
        what: "devices",
        reason,
    })?;
    let mut d = Device {
        name: String::new(),
        required: false,
    };
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            if field.eq_ignore_ascii_case("required") {
                d.required = true;
            } else if d.name.is_empty() {
                d.name = field;
            } else {
                return Err(MountError::NotKeyValue { field });
            }
            continue;
        };
        match key.to_lowercase().as_str() {
            "name" if !d.name.is_empty() => {
                return Err(MountError::DeviceNameSet { name: d.name });
            }
            "name" => value.clone_into(&mut d.name),
            "required" => {
                d.required = parse_bool(value).ok_or_else(|| MountError::InvalidValue {
                    key: "required".to_owned(),
                    value: value.to_owned(),
                })?;
            }
            _ if d.name.is_empty() => d.name.clone_from(&field),
            other => {
                return Err(MountError::UnknownKey {
                    key: other.to_owned(),
                    field: field.clone(),
                    suggestion: None,
                });
            }
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(spec: &str) -> Result<Mount, String> {
        parse_mount(spec, None).map_err(|error| error.to_string())
    }

    #[test]
    fn parses_cache_and_secret_mounts() {
        let c =
            m("type=cache,target=/root/.cache,sharing=locked,id=pip,mode=0755,uid=1000").unwrap();
        assert_eq!(c.kind, MountType::Cache);
        assert_eq!(c.target.as_deref(), Some("/root/.cache"));
        assert_eq!(c.sharing, Some(CacheSharing::Locked));
        assert_eq!((c.mode, c.uid), (Some(0o755), Some(1000)));
        assert!(!c.read_only);
        let s = m("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(s.required && s.read_only);
        assert_eq!(s.env.as_deref(), Some("TOKEN"));
        let b = m("target=/src,from=builder,rw").unwrap();
        assert_eq!(b.kind, MountType::Bind);
        assert!(!b.read_only);
        let t = m("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(t.size_limit, Some(64 * 1024 * 1024));
    }

    #[test]
    fn rejects_bad_mounts() {
        assert!(
            m("type=volume,target=/x")
                .unwrap_err()
                .contains("unsupported mount type")
        );
        assert!(m("type=cache,sharing=everyone").is_err());
        assert!(
            m("type=bind,mode=0755")
                .unwrap_err()
                .contains("mode not allowed")
        );
        assert!(
            m("type=secret")
                .unwrap_err()
                .contains("one of source, target")
        );
        assert!(
            m("target=/x,colour=blue")
                .unwrap_err()
                .contains("unexpected key 'colour'")
        );
        assert!(m("type=cache,sharing=locked,uid=x").is_err());
        assert!(m("type=bind,required").is_err());
        assert!(m("from=$STAGE").unwrap_err().contains("variable expansion"));
        assert!(m("\"a,b").is_err());
    }

    #[test]
    fn references_wait_for_expansion() {
        let x = m("type=cache,target=$HOME/.cache,uid=${UID}").unwrap();
        assert!(x.needs_expansion);
        assert_eq!(x.target.as_deref(), Some("$HOME/.cache"));
        let mut expand = |v: &str| Ok::<_, ExpandError>(v.replace("${UID}", "1000"));
        let y = Mount::parse(&x.spec, &mut expand).unwrap();
        assert_eq!(y.uid, Some(1000));
        let z = m("type=$KIND,target=/x,mode=0755").unwrap();
        assert!(z.needs_expansion && z.mode.is_some());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_fields(r#"a,"b,c",d"#).unwrap(), vec!["a", "b,c", "d"]);
        assert_eq!(csv_fields(r#""x""y""#).unwrap(), vec![r#"x"y"#]);
        assert_eq!(
            parse_device("nvidia.com/gpu=all,required").unwrap().name,
            "nvidia.com/gpu=all"
        );
    }
}
