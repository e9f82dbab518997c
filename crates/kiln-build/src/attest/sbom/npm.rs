//! npm packages: the `package.json` of each package directory under a `node_modules`
//! directory (`node_modules/x/package.json`, `node_modules/@scope/x/package.json`, nested
//! `node_modules` too). A `package.json` elsewhere is an application's own or a file inside
//! a package, not an installed package.

use std::ffi::OsStr;
use std::path::{Component, Path};

use serde_json::Value;

use super::purl::Purl;
use super::{Package, PackageKind};

/// The directory npm installs packages into.
const NODE_MODULES: &str = "node_modules";

/// Whether the file at `rel` (below the root) is the `package.json` of an installed package.
pub(super) fn is_candidate(rel: &Path) -> bool {
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [.., modules, scope, _, file]
            if *file == "package.json"
                && *modules == NODE_MODULES
                && scope.as_encoded_bytes().starts_with(b"@") =>
        {
            true
        }
        [.., modules, package, file] => {
            *file == "package.json"
                && *modules == NODE_MODULES
                && !package.as_encoded_bytes().starts_with(b"@")
        }
        _ => false,
    }
}

/// The package a `package.json` at `source` describes, or `None` (logged) when it is not
/// JSON or names no name or version.
pub(super) fn parse_package_json(bytes: &[u8], source: &str) -> Option<Package> {
    let json: Value = match serde_json::from_slice(bytes) {
        Ok(json) => json,
        Err(error) => {
            tracing::warn!(source, %error, "SBOM scan: invalid package.json skipped");
            return None;
        }
    };
    let (Some(name), Some(version)) = (
        json.get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
        json.get("version")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
    ) else {
        tracing::warn!(
            source,
            "SBOM scan: package.json without name or version skipped"
        );
        return None;
    };
    let (namespace, short_name) = match name.split_once('/') {
        Some((scope, rest)) if scope.starts_with('@') => (scope, rest),
        _ => ("", name),
    };
    let purl = Purl {
        kind: "npm",
        namespace,
        name: short_name,
        version,
        ..Purl::default()
    }
    .render();
    Some(Package {
        kind: PackageKind::Npm,
        name: name.to_owned(),
        version: version.to_owned(),
        purl,
        license: license(&json),
        supplier: json.get("author").and_then(person),
        source: source.to_owned(),
    })
}

/// `license` (a string, or the deprecated `{"type": …}` object), else the deprecated
/// `licenses` array (several mean a choice: `A OR B`).
fn license(json: &Value) -> Option<String> {
    let of = |value: &Value| match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Object(o) => o
            .get("type")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_owned()),
        _ => None,
    };
    if let Some(license) = json.get("license").and_then(of) {
        return Some(license).filter(|l| !l.is_empty());
    }
    let list: Vec<String> = json
        .get("licenses")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(of)
        .filter(|l| !l.is_empty())
        .collect();
    match list.len() {
        0 => None,
        1 => list.into_iter().next(),
        _ => Some(
            list.iter()
                .map(|l| format!("({l})"))
                .collect::<Vec<_>>()
                .join(" OR "),
        ),
    }
}

/// `"Name <email> (url)"` or `{"name", "email"}` as `Name <email>`.
fn person(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => {
            // Drop the `(url)` part.
            s.split_once('(')
                .map_or(s.as_str(), |(before, _)| before)
                .trim()
                .to_owned()
        }
        Value::Object(o) => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim();
            match o.get("email").and_then(Value::as_str).map(str::trim) {
                Some(email) if !email.is_empty() => format!("{name} <{email}>").trim().to_owned(),
                _ => name.to_owned(),
            }
        }
        _ => String::new(),
    };
    Some(text).filter(|t| !t.is_empty())
}
