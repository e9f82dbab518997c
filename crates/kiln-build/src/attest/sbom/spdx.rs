//! The SBOM as an SPDX 2.3 JSON document (SPDX specification 2.3; the JSON schema
//! `schemas/spdx-schema.json` of spdx/spdx-spec at v2.3 is vendored under
//! `tests/data/schemas/` and the tests validate against it).
//!
//! Licences: a package's declared licence is written as is when it is a valid SPDX licence
//! expression over the SPDX licence list (deprecated identifiers included, as SPDX 2.3
//! still allows them); `NOASSERTION` when there is none. Anything else (`Apache 2.0`,
//! `BSD`, `SEE LICENSE IN LICENSE.txt`, or an expression using its own `LicenseRef-`) is kept
//! rather than lost: it becomes `LicenseRef-<the text, sanitised>`, with the original text in
//! a `hasExtractedLicensingInfos` entry, as the specification asks of every `LicenseRef`
//! (section 10) and as syft writes it.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::Package;

/// The value SPDX uses for "the creator of this document says nothing about it".
const NOASSERTION: &str = "NOASSERTION";

/// The SPDX identifier of the package standing for the image itself.
const ROOT_ID: &str = "SPDXRef-DocumentRoot-Image";

/// The longest identifier suffix derived from a name (SPDX sets no limit; readers like short
/// ones).
const MAX_ID_TEXT: usize = 64;

/// Licence expressions accepted as declared: the SPDX licence list's identifiers, deprecated
/// ones included (still valid in SPDX 2.3), and only the specification's syntax.
const LICENSE_PARSE_MODE: spdx::ParseMode = spdx::ParseMode {
    allow_slash_as_or_operator: false,
    allow_imprecise_license_names: false,
    // `GPL-2.0+` is the SPDX syntax `license-id "+"` on a (deprecated) identifier.
    allow_postfix_plus_on_gpl: true,
    allow_deprecated: true,
    allow_unknown: false,
};

/// What the document is made of; the caller chooses every value that would otherwise make
/// two runs differ (namespace, time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpdxInput<'a> {
    /// The document name (the image name, or `kiln-build`); also the root package's name.
    pub(crate) name: &'a str,
    /// The `documentNamespace` URI (unique per document, chosen deterministically).
    pub(crate) namespace: &'a str,
    /// `creationInfo.created`, RFC 3339 UTC (from `SOURCE_DATE_EPOCH` when set).
    pub(crate) created: &'a str,
    /// The tool in `creationInfo.creators`, e.g. `kiln-0.1.0` (written `Tool: kiln-0.1.0`).
    pub(crate) creator_tool: &'a str,
    /// The packages, in the order they are written.
    pub(crate) packages: &'a [Package],
}

/// The SPDX 2.3 JSON document for `input`: a root package for the image that the document
/// `DESCRIBES` and that `CONTAINS` each package. Object keys are sorted and identifiers are
/// derived from the input alone, so the same input gives the same bytes.
pub(crate) fn spdx_json(input: &SpdxInput<'_>) -> Vec<u8> {
    let mut ids = HashSet::from([ROOT_ID.to_owned(), "SPDXRef-DOCUMENT".to_owned()]);
    let mut extracted = ExtractedLicenses::default();
    let mut packages = vec![json!({
        "SPDXID": ROOT_ID,
        "name": input.name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "supplier": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": ROOT_ID,
    })];
    for package in input.packages {
        let id = unique(
            &mut ids,
            &format!(
                "SPDXRef-Package-{}-{}-{}",
                package.kind.as_str(),
                id_text(&package.name),
                id_text(&package.version)
            ),
        );
        packages.push(json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": extracted.declared(package.license.as_deref()),
            "copyrightText": NOASSERTION,
            "supplier": supplier(package.supplier.as_deref()),
            "sourceInfo": format!("acquired package info from {}", package.source),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": ROOT_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.name,
        "documentNamespace": input.namespace,
        "creationInfo": {
            "created": input.created,
            "creators": [format!("Tool: {}", input.creator_tool)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.by_text.is_empty()
        && let Value::Object(map) = &mut document
    {
        let mut infos: Vec<(&String, &String)> = extracted.by_text.iter().collect();
        infos.sort_by(|a, b| a.1.cmp(b.1));
        let infos: Vec<Value> = infos
            .into_iter()
            .map(|(text, id)| json!({"licenseId": id, "extractedText": text, "name": text}))
            .collect();
        map.insert("hasExtractedLicensingInfos".to_owned(), Value::Array(infos));
    }
    sort_keys(&mut document);
    let mut bytes = format!("{document:#}").into_bytes();
    bytes.push(b'\n');
    bytes
}

/// Licence texts that are no SPDX expression, each with the `LicenseRef-` standing for it.
#[derive(Debug, Default)]
struct ExtractedLicenses {
    /// Text → identifier.
    by_text: BTreeMap<String, String>,
    /// Identifiers handed out.
    ids: HashSet<String>,
}

impl ExtractedLicenses {
    /// The `licenseDeclared` value for a package's licence (see the module docs).
    fn declared(&mut self, license: Option<&str>) -> String {
        let Some(license) = license.map(str::trim).filter(|l| !l.is_empty()) else {
            return NOASSERTION.to_owned();
        };
        if license == NOASSERTION || license == "NONE" || is_valid_expression(license) {
            return license.to_owned();
        }
        if let Some(id) = self.by_text.get(license) {
            return id.clone();
        }
        let id = unique(&mut self.ids, &format!("LicenseRef-{}", id_text(license)));
        self.by_text.insert(license.to_owned(), id.clone());
        id
    }
}

/// Whether `license` is an SPDX licence expression over the licence list, with no
/// `LicenseRef-`/`DocumentRef-` of its own (those would need their own extracted text).
pub(super) fn is_valid_expression(license: &str) -> bool {
    !license.contains("LicenseRef-")
        && !license.contains("DocumentRef-")
        && spdx::Expression::parse_mode(license, LICENSE_PARSE_MODE).is_ok()
}

/// `Name <email>` as `Person: Name (email)`, plain text as `Person: text`, none as
/// `NOASSERTION` (syft's reading of dpkg maintainers and package authors).
fn supplier(raw: Option<&str>) -> String {
    let Some(raw) = raw
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|r| !r.is_empty())
    else {
        return NOASSERTION.to_owned();
    };
    if let Some((name, rest)) = raw.split_once('<')
        && let Some((email, _)) = rest.split_once('>')
    {
        let name = name.trim().trim_matches('"').trim();
        let name = if name.is_empty() { email.trim() } else { name };
        return format!("Person: {name} ({})", email.trim());
    }
    format!("Person: {raw}")
}

/// `text` reduced to SPDX identifier characters (`[A-Za-z0-9.-]`): anything else becomes
/// `-`, runs of `-` one, at most [`MAX_ID_TEXT`] characters.
fn id_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '.' {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
        if out.len() >= MAX_ID_TEXT {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "unknown".to_owned()
    } else {
        out.to_owned()
    }
}

/// `base`, or `base-2`, `base-3`, … whichever is not yet in `used`; recorded there.
fn unique(used: &mut HashSet<String>, base: &str) -> String {
    let mut candidate = base.to_owned();
    let mut n = 1;
    while used.contains(&candidate) {
        n += 1;
        candidate = format!("{base}-{n}");
    }
    used.insert(candidate.clone());
    candidate
}

/// Sorts every object's keys, at every depth.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}
