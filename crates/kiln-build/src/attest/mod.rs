//! Build attestations, opt-in as in buildx: `--sbom`, `--provenance` and `--attest
//! type=sbom|provenance,…`, attached the way BuildKit attaches them.
//!
//! Each platform image gets an attestation manifest in the image index (see [`manifest`]):
//! its layers are in-toto statements ([`statement`]) about the image manifest: an SPDX 2.3
//! SBOM of the image's packages (predicate type `https://spdx.dev/Document`; with
//! `scan-stage`, one more per scanned stage, as BuildKit's `sbom-STAGE` scans), and SLSA v1
//! provenance ([`provenance`]). A one-platform build with attestations becomes an index.
//! `type=local` and `type=tar` outputs get the statements as files beside the root
//! filesystem (`sbom.spdx.json`, `sbom-STAGE.spdx.json`, `provenance.json`) about every file
//! of it, as BuildKit's local exporter writes them.

pub(crate) mod manifest;
pub(crate) mod provenance;
pub(crate) mod sbom;
pub(crate) mod statement;

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kiln_oci::{Digest, Platform};

use statement::{Statement, Subject};

/// `predicateType` of an SPDX SBOM statement.
pub(crate) const PREDICATE_SPDX: &str = "https://spdx.dev/Document";
/// The build arg BuildKit's Dockerfile frontend reads to scan the stages besides the final
/// one (`true`, `false` or stage names).
pub(crate) const SCAN_STAGE_ARG: &str = "BUILDKIT_SBOM_SCAN_STAGE";

/// Which of a build's stages (besides the final image) an SBOM also scans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ScanStages {
    /// None (the default).
    #[default]
    None,
    /// Every stage the build runs.
    All,
    /// The stages of these names.
    Named(Vec<String>),
}

impl ScanStages {
    /// BuildKit's `isEnabledForStage` value: a boolean, else comma-separated stage names.
    pub(crate) fn parse_value(value: &str) -> Self {
        match parse_bool(value) {
            Some(true) => Self::All,
            Some(false) => Self::None,
            None => Self::Named(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        }
    }

    /// Whether the stage `name` is scanned.
    pub(crate) fn includes(&self, name: &str) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

/// `--sbom` / `--attest type=sbom,…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SbomAttest {
    /// `scan-stage=`: the stages scanned besides the final image (each its own statement).
    pub scan_stage: ScanStages,
}

/// `mode=` of `--provenance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProvenanceMode {
    /// Only what identifies the build: no build args, labels, secret or ssh ids, no steps.
    #[default]
    Min,
    /// Everything `min` has, with the build args, labels, secret and ssh ids and every
    /// step's cache key inputs.
    Max,
}

/// `--provenance` / `--attest type=provenance,…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvenanceAttest {
    /// `mode=min|max` (BuildKit's default when the key is absent is `max`; buildx's
    /// `--provenance=true` is `min`).
    pub mode: ProvenanceMode,
    /// `builder-id=`: `runDetails.builder.id` (default: kiln's repository and version).
    pub builder_id: Option<String>,
}

/// The kind of an attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestKind {
    /// An SPDX SBOM.
    Sbom,
    /// SLSA provenance.
    Provenance,
}

impl fmt::Display for AttestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sbom => "sbom",
            Self::Provenance => "provenance",
        })
    }
}

/// One `--attest` value (or `--sbom`, `--provenance`): an attestation asked for, or turned
/// off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attest {
    /// An SBOM.
    Sbom(SbomAttest),
    /// Provenance.
    Provenance(ProvenanceAttest),
    /// `disabled=true`, `--sbom=false`, `--provenance=false`.
    Disabled(AttestKind),
}

/// Why an `--attest`, `--sbom` or `--provenance` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} `{spec}`: {reason}")]
pub struct AttestError {
    /// `--attest`, `--sbom` or `--provenance`.
    pub flag: &'static str,
    /// The value as given.
    pub spec: String,
    /// Why, and what is accepted.
    pub reason: String,
}

fn parse_bool(value: &str) -> Option<bool> {
    // Go's strconv.ParseBool, as buildx and BuildKit parse these values.
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Splits a CSV record as buildx does (`"scan-stage=a,b"` keeps its comma).
fn csv_fields(spec: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quote".to_owned());
    }
    fields.push(field);
    Ok(fields)
}

impl Attest {
    /// Parses `--attest SPEC` (`type=sbom|provenance[,KEY=VALUE…]`).
    pub fn parse_attest(spec: &str) -> Result<Self, AttestError> {
        Self::parse_with(spec, "--attest", None)
    }

    /// Parses `--sbom VALUE`: `true`/`false`, or the keys of `--attest type=sbom,…`.
    pub fn parse_sbom_flag(value: &str) -> Result<Self, AttestError> {
        Self::parse_flag(value, "--sbom", AttestKind::Sbom)
    }

    /// Parses `--provenance VALUE`: `true`/`false`, or the keys of `--attest
    /// type=provenance,…` (`mode=min|max`, `version=v1`, `builder-id=…`).
    pub fn parse_provenance_flag(value: &str) -> Result<Self, AttestError> {
        Self::parse_flag(value, "--provenance", AttestKind::Provenance)
    }

    /// buildx's `canonicalizeAttest`: a boolean turns the kind on or off, anything else is
    /// its keys.
    fn parse_flag(value: &str, flag: &'static str, kind: AttestKind) -> Result<Self, AttestError> {
        match parse_bool(value) {
            Some(false) => Ok(Self::Disabled(kind)),
            Some(true) => Self::parse_with("", flag, Some(kind)),
            None => Self::parse_with(value, flag, Some(kind)),
        }
    }

    fn parse_with(
        spec: &str,
        flag: &'static str,
        kind: Option<AttestKind>,
    ) -> Result<Self, AttestError> {
        let err = |reason: String| AttestError {
            flag,
            spec: spec.to_owned(),
            reason,
        };
        let mut kind = kind;
        let mut disabled = false;
        let mut pairs = Vec::new();
        for field in csv_fields(spec).map_err(err)? {
            if field.is_empty() {
                continue;
            }
            let (key, value) = field.split_once('=').unwrap_or((field.as_str(), ""));
            let key = key.trim().to_ascii_lowercase();
            match key.as_str() {
                "type" => {
                    let asked = match value {
                        "sbom" => AttestKind::Sbom,
                        "provenance" => AttestKind::Provenance,
                        other => {
                            return Err(err(format!(
                                "unknown attestation type `{other}` (sbom or provenance)"
                            )));
                        }
                    };
                    if kind.is_some_and(|k| k != asked) {
                        return Err(err(format!("type={asked} does not belong in {flag}")));
                    }
                    kind = Some(asked);
                }
                "disabled" => {
                    disabled = parse_bool(value)
                        .ok_or_else(|| err(format!("disabled=`{value}` is not a boolean")))?;
                }
                _ => pairs.push((key, value.to_owned())),
            }
        }
        let kind = kind.ok_or_else(|| {
            err("attestation type not specified (type=sbom or type=provenance)".to_owned())
        })?;
        if disabled {
            return Ok(Self::Disabled(kind));
        }
        match kind {
            AttestKind::Sbom => {
                let mut sbom = SbomAttest::default();
                for (key, value) in pairs {
                    match key.as_str() {
                        "scan-stage" => sbom.scan_stage = ScanStages::parse_value(&value),
                        "generator" => {
                            return Err(err(format!(
                                "generator=`{value}`: kiln scans the image with its built-in \
                                 scanner and runs no generator image; drop the key"
                            )));
                        }
                        other => {
                            return Err(err(format!(
                                "unknown sbom key `{other}` (scan-stage, disabled)"
                            )));
                        }
                    }
                }
                Ok(Self::Sbom(sbom))
            }
            AttestKind::Provenance => {
                // buildx's `--provenance=true` is mode=min; a spec without mode= too.
                let mut provenance = ProvenanceAttest::default();
                for (key, value) in pairs {
                    match key.as_str() {
                        "mode" => {
                            provenance.mode = match value.as_str() {
                                "min" => ProvenanceMode::Min,
                                "max" | "full" => ProvenanceMode::Max,
                                other => {
                                    return Err(err(format!(
                                        "unknown provenance mode `{other}` (min or max)"
                                    )));
                                }
                            };
                        }
                        "version" => {
                            if value != "v1" {
                                return Err(err(format!(
                                    "provenance version `{value}` is not supported: kiln writes \
                                     SLSA provenance v1 only (version=v1)"
                                )));
                            }
                        }
                        "builder-id" => {
                            if value.is_empty() {
                                return Err(err("builder-id must not be empty".to_owned()));
                            }
                            provenance.builder_id = Some(value);
                        }
                        other => {
                            return Err(err(format!(
                                "unknown provenance key `{other}` (mode, version, builder-id, \
                                 disabled)"
                            )));
                        }
                    }
                }
                Ok(Self::Provenance(provenance))
            }
        }
    }
}

impl FromStr for Attest {
    type Err = AttestError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Self::parse_attest(spec)
    }
}

/// The attestations a build asks for (both off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AttestOptions {
    pub(crate) sbom: Option<SbomAttest>,
    pub(crate) provenance: Option<ProvenanceAttest>,
}

impl AttestOptions {
    /// Applies one `--attest` (a later one of a kind replaces an earlier one).
    pub(crate) fn apply(&mut self, attest: Attest) {
        match attest {
            Attest::Sbom(sbom) => self.sbom = Some(sbom),
            Attest::Provenance(provenance) => self.provenance = Some(provenance),
            Attest::Disabled(AttestKind::Sbom) => self.sbom = None,
            Attest::Disabled(AttestKind::Provenance) => self.provenance = None,
        }
    }

    /// Whether any attestation is asked for.
    pub(crate) fn is_enabled(&self) -> bool {
        self.sbom.is_some() || self.provenance.is_some()
    }
}

/// The builder id provenance names by default: kiln's repository at its version.
pub(crate) fn default_builder_id() -> String {
    format!(
        "{}@v{}",
        env!("CARGO_PKG_REPOSITORY"),
        env!("CARGO_PKG_VERSION")
    )
}

/// The tool SBOMs name as their creator.
pub(crate) fn creator_tool() -> String {
    format!("kiln-{}", env!("CARGO_PKG_VERSION"))
}

/// One predicate of a platform image: it becomes a statement about each image (with the
/// names of the output it is written to) and a file of `type=local`.
#[derive(Debug, Clone)]
pub(crate) struct Predicate {
    /// Its `predicateType`.
    #[expect(clippy::struct_field_names, reason = "the in-toto field's name")]
    pub(crate) predicate_type: String,
    /// The predicate.
    pub(crate) body: serde_json::Value,
    /// The file a `type=local` output writes it to (`sbom.spdx.json`, `provenance.json`).
    pub(crate) file_name: String,
}

/// The predicates of each platform image of a build, in the build's platform order; each
/// platform's SBOM first (the final image's, then each stage's), provenance last, as
/// BuildKit orders them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attestations {
    pub(crate) platforms: Vec<Vec<Predicate>>,
}

/// The statements of one image manifest.
pub(crate) fn statements_for(predicates: &[Predicate], subjects: &[Subject]) -> Vec<Statement> {
    predicates
        .iter()
        .map(|p| Statement::new(&p.predicate_type, subjects.to_vec(), p.body.clone()))
        .collect()
}

/// An SBOM predicate: the SPDX document of the packages in the layer directories `dirs`.
pub(crate) fn sbom_predicate(
    name: &str,
    dirs: Vec<PathBuf>,
    namespace: &str,
    created: &str,
) -> Result<serde_json::Value, AttestationError> {
    let packages = sbom::scan(&sbom::RootFs::Layers(dirs)).map_err(|e| AttestationError::Sbom {
        scan: name.to_owned(),
        reason: e.to_string(),
    })?;
    let tool = creator_tool();
    let bytes = sbom::spdx_json(&sbom::SpdxInput {
        name,
        namespace,
        created,
        creator_tool: &tool,
        packages: &packages,
    });
    serde_json::from_slice(&bytes).map_err(|e| AttestationError::Sbom {
        scan: name.to_owned(),
        reason: format!("the SPDX document is not JSON: {e}"),
    })
}

/// The SPDX namespace of a scan: unique per image config and scan, the same for the same
/// image (no random part, so it stays reproducible).
pub(crate) fn spdx_namespace(config: &Digest, platform: &Platform, scan: &str) -> String {
    format!(
        "{}/spdx/{}/{}/{}",
        env!("CARGO_PKG_REPOSITORY"),
        config.hex(),
        platform.to_string().replace('/', "_"),
        scan
    )
}

/// Why an attestation could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// An SBOM scan failed.
    #[error("SBOM scan `{scan}`: {reason}")]
    Sbom {
        /// The scan (`sbom`, `sbom-STAGE`).
        scan: String,
        /// Why.
        reason: String,
    },
    /// A layer's snapshot (what the scan reads) could not be made.
    #[error("SBOM scan `{scan}`: unpacking layer {diff_id}: {source}")]
    Snapshot {
        /// The scan.
        scan: String,
        /// The layer.
        diff_id: String,
        /// Why.
        source: Box<kiln_store::StoreError>,
    },
    /// A layer of a scanned image is neither unpacked nor in the store.
    #[error("SBOM scan `{scan}`: layer {diff_id} is neither unpacked nor in the store")]
    MissingLayer {
        /// The scan.
        scan: String,
        /// The layer.
        diff_id: String,
    },
    /// An attestation manifest could not be serialized.
    #[error("making the attestation manifest of {image}: {reason}")]
    Manifest {
        /// The image manifest digest.
        image: String,
        /// Why.
        reason: String,
    },
    /// Writing a statement file of a `type=local` output failed.
    #[error("writing the attestation {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes the statements of `predicates` into `dir` (a `type=local` output's root, or a
/// platform's directory of it) as BuildKit's local exporter does: about every regular file
/// under `dir` (its path relative to `dir`, its sha256), indented, mode 0600, named after
/// each predicate's file name.
pub(crate) fn write_local_statements(
    dir: &Path,
    predicates: &[Predicate],
    mtime: Option<i64>,
) -> Result<(), AttestationError> {
    if predicates.is_empty() {
        return Ok(());
    }
    let write_error = |path: &Path, source: std::io::Error| AttestationError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut subjects = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            write_error(&path, std::io::Error::other(e.to_string()))
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        let digest = sha256_of_file(entry.path()).map_err(|e| write_error(entry.path(), e))?;
        subjects.push(Subject::new(relative, &digest));
    }
    for statement_and_name in predicates.iter().map(|p| {
        (
            Statement::new(&p.predicate_type, subjects.clone(), p.body.clone()),
            &p.file_name,
        )
    }) {
        let (statement, name) = statement_and_name;
        let path = dir.join(name);
        fs_err::write(&path, statement.to_file_bytes()).map_err(|e| write_error(&path, e))?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| write_error(&path, e))?;
        if let Some(epoch) = mtime {
            let time = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(epoch).unwrap_or(0));
            fs_err::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(time))
                .map_err(|e| write_error(&path, e))?;
        }
    }
    Ok(())
}

/// The sha256 of a file's bytes, read in pieces.
fn sha256_of_file(path: &Path) -> std::io::Result<Digest> {
    use std::io::Read as _;
    let mut file = fs_err::File::open(path)?;
    let mut hasher = kiln_oci::Sha256Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_buildx_canonicalizes_them() {
        assert_eq!(
            Attest::parse_sbom_flag("true").unwrap(),
            Attest::Sbom(SbomAttest::default())
        );
        assert_eq!(
            Attest::parse_sbom_flag("false").unwrap(),
            Attest::Disabled(AttestKind::Sbom)
        );
        assert_eq!(
            Attest::parse_provenance_flag("mode=max").unwrap(),
            Attest::Provenance(ProvenanceAttest {
                mode: ProvenanceMode::Max,
                builder_id: None
            })
        );
        assert_eq!(
            Attest::parse_provenance_flag("true").unwrap(),
            Attest::Provenance(ProvenanceAttest::default())
        );
        assert_eq!(
            "type=provenance,disabled=true".parse::<Attest>().unwrap(),
            Attest::Disabled(AttestKind::Provenance)
        );
        assert_eq!(
            "type=sbom,\"scan-stage=build,deps\""
                .parse::<Attest>()
                .unwrap(),
            Attest::Sbom(SbomAttest {
                scan_stage: ScanStages::Named(vec!["build".to_owned(), "deps".to_owned()])
            })
        );
        assert_eq!(
            "type=sbom,scan-stage=true".parse::<Attest>().unwrap(),
            Attest::Sbom(SbomAttest {
                scan_stage: ScanStages::All
            })
        );
        assert_eq!(
            Attest::parse_provenance_flag("mode=min,version=v1").unwrap(),
            Attest::Provenance(ProvenanceAttest::default())
        );
    }

    #[test]
    fn bad_values_name_what_is_wrong() {
        let e = Attest::parse_provenance_flag("mode=fast").unwrap_err();
        assert!(e.to_string().contains("`fast`"), "{e}");
        let e = "type=foo".parse::<Attest>().unwrap_err();
        assert!(e.to_string().contains("`foo`"), "{e}");
        let e = "type=sbom,colour=blue".parse::<Attest>().unwrap_err();
        assert!(e.to_string().contains("`colour`"), "{e}");
        let e = Attest::parse_provenance_flag("version=v0.2").unwrap_err();
        assert!(e.to_string().contains("`v0.2`"), "{e}");
        let e = "mode=max".parse::<Attest>().unwrap_err();
        assert!(e.to_string().contains("type"), "{e}");
        let e = Attest::parse_sbom_flag("type=provenance").unwrap_err();
        assert!(e.to_string().contains("--sbom"), "{e}");
    }

    #[test]
    fn scan_stages_select_by_name() {
        assert!(ScanStages::parse_value("true").includes("x"));
        assert!(!ScanStages::parse_value("false").includes("x"));
        let named = ScanStages::parse_value("a,b");
        assert!(named.includes("b") && !named.includes("c"));
    }
}
