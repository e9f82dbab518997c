//! Where a build's result goes: the `--output` specs of `docker buildx build`.
//!
//! Destinations are checked before the build runs ([`Output::check_destination`]): a tar
//! output (`type=oci`, `type=docker`, `type=tar`) replaces only a regular file, a directory output
//! (`type=oci,tar=false`, `type=local`) only a directory; anything else that exists there
//! (a device such as `/dev/full`, a FIFO, a socket, a symbolic link — even one to a
//! regular file or a directory) is refused and left alone. `dest=-` writes a tar output to
//! stdout, as buildx does.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::annotation::{Annotations, parse_output_key};
use kiln_oci::{Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};

/// One export destination.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// `type=oci,dest=OUT.tar`: an OCI image layout in a tar file.
    OciTar(PathBuf),
    /// `type=oci,dest=DIR,tar=false`: an OCI image layout directory.
    OciDir(PathBuf),
    /// `type=docker,dest=OUT.tar`: a tar `docker load` accepts.
    DockerTar(PathBuf),
    /// `type=local,dest=DIR`: the final root filesystem as a directory.
    Local(PathBuf),
    /// `type=tar,dest=FILE` (or `-o -`): the final root filesystem as one tar, what
    /// `type=local` writes to a directory.
    Tar(PathBuf),
    /// `type=image,name=REF[,push=true]`: a named image in the local store, pushed when asked.
    Image {
        /// Names (comma-separated in `name=`; quoted lists allowed by buildx).
        names: Vec<String>,
        /// Whether to push to the registry.
        push: bool,
    },
}

/// How an image output encodes the image: the `-o` keys of buildx's image exporters
/// (`type=oci`, `type=docker`, `type=image`/`registry`). Each is applied, none is dropped: a
/// key kiln does not implement is an [`OutputSpecError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportOptions {
    /// `compression=gzip|zstd|uncompressed` (with `compression-level=N`): how the layers
    /// this build made are compressed in this output; `None` is the build's `--compression`.
    pub compression: Option<Compression>,
    /// `force-compression=true`: the base image's layers are recompressed too (else they keep
    /// the compression their registry gave them, as in BuildKit).
    pub force_compression: bool,
    /// `oci-mediatypes=`: OCI media types (`true`) or Docker's (`false`) for the manifest,
    /// the config, the layers and the index; `None` is the exporter's default (OCI, as
    /// buildx's image and oci exporters write; kiln writes OCI to docker archives too).
    pub oci_mediatypes: Option<bool>,
    /// `name=` of `type=oci`/`type=docker`: the names the archive records (as `-t` does).
    pub names: Vec<String>,
    /// `push-by-digest=true` (`type=image`): pushed as `name@digest`, with no tag.
    pub push_by_digest: bool,
    /// `store=false` (`type=image`): not kept under its names in the local store.
    pub store: bool,
    /// `rewrite-timestamp=`: `true` clamps file times in the build's layers to
    /// `SOURCE_DATE_EPOCH`, which kiln always does when it is set; so `false` with
    /// `SOURCE_DATE_EPOCH` set is refused before the build.
    pub rewrite_timestamp: Option<bool>,
    /// `annotation.KEY=…`, `annotation-index.KEY=…`, `annotation[linux/arm64].KEY=…`…:
    /// annotations of this output's image (see [`crate::Annotations`]).
    pub annotations: Annotations,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            compression: None,
            force_compression: false,
            oci_mediatypes: None,
            names: Vec::new(),
            push_by_digest: false,
            store: true,
            rewrite_timestamp: None,
            annotations: Annotations::new(),
        }
    }
}

impl ExportOptions {
    /// Whether the output's image is encoded as the build's default image is.
    pub(crate) fn is_default_encoding(&self, build: Compression) -> bool {
        self.compression.is_none_or(|c| c == build)
            && !self.force_compression
            && self.oci_mediatypes != Some(false)
            && self.annotations.is_empty()
    }
}

/// An `--output`: where the result goes and how it is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// The destination.
    pub output: Output,
    /// Its exporter options.
    pub options: ExportOptions,
}

impl From<Output> for OutputSpec {
    fn from(output: Output) -> Self {
        Self {
            output,
            options: ExportOptions::default(),
        }
    }
}

/// A `compression=` or `compression-level=` value that is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompressionKeyError {
    /// `compression` or `compression-level`.
    pub(crate) key: &'static str,
    /// The value given.
    pub(crate) value: String,
    /// What is accepted.
    pub(crate) expected: &'static str,
}

impl fmt::Display for CompressionKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}={}` must be {}", self.key, self.value, self.expected)
    }
}

/// `compression=` and `compression-level=` as buildx spells them for outputs and caches
/// (the level of gzip unless `compression=` says otherwise).
pub(crate) fn parse_compression(
    kind: Option<&str>,
    level: Option<&str>,
) -> Result<Option<Compression>, CompressionKeyError> {
    let compression = match kind {
        None => None,
        Some("gzip") => Some(Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }),
        Some("zstd") => Some(Compression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }),
        Some("uncompressed") => Some(Compression::None),
        Some(other) => {
            return Err(CompressionKeyError {
                key: "compression",
                value: other.to_owned(),
                expected: if other == "estargz" {
                    "gzip, zstd or uncompressed (kiln does not write estargz)"
                } else {
                    "gzip, zstd or uncompressed"
                },
            });
        }
    };
    let Some(value) = level else {
        return Ok(compression);
    };
    let invalid = |expected| CompressionKeyError {
        key: "compression-level",
        value: value.to_owned(),
        expected,
    };
    Ok(Some(
        match compression.unwrap_or(Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }) {
            Compression::Gzip { .. } => Compression::Gzip {
                level: value
                    .parse()
                    .ok()
                    .filter(|l| *l <= 9)
                    .ok_or_else(|| invalid("0 to 9 for gzip"))?,
            },
            Compression::Zstd { .. } => Compression::Zstd {
                level: value
                    .parse()
                    .ok()
                    .filter(|l| (1..=22).contains(l))
                    .ok_or_else(|| invalid("1 to 22 for zstd"))?,
            },
            Compression::None => {
                return Err(invalid("absent: compression=uncompressed has no level"));
            }
        },
    ))
}

/// Why an `--output` value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --output `{spec}`: {reason}")]
pub struct OutputSpecError {
    /// The value given.
    pub spec: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

/// Why an output's destination cannot be written (checked before the build runs).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// Something that is not what the output writes is already there.
    #[error("--output {output}: destination {} is {what}; {hint}", path.display())]
    WrongKind {
        /// The output.
        output: String,
        /// The destination.
        path: PathBuf,
        /// What is there (`a character device`, `a symbolic link`, …).
        what: &'static str,
        /// What the output needs.
        hint: &'static str,
    },
    /// A `type=local` destination that is a directory with files in it.
    #[error("--output {output}: destination {} exists and is not empty; choose a new or empty directory", path.display())]
    NotEmpty {
        /// The output.
        output: String,
        /// The destination.
        path: PathBuf,
    },
    /// The destination cannot be inspected.
    #[error("--output {output}: inspecting the destination: {source}")]
    Inspect {
        /// The output.
        output: String,
        /// The destination.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `dest=-` while stdout is a terminal.
    #[error(
        "--output {output}: refusing to write a tar archive to a terminal; redirect stdout or choose a file"
    )]
    StdoutIsTerminal {
        /// The output.
        output: String,
    },
}

/// What a file of this type is, in words for an error.
pub(crate) fn describe_file_type(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file or directory"
    }
}

/// `dest=-`: the output goes to stdout.
pub(crate) fn is_stdout_path(path: &Path) -> bool {
    path.as_os_str() == "-"
}

impl Output {
    /// Whether this output writes to stdout (`dest=-`).
    pub fn is_stdout(&self) -> bool {
        match self {
            Self::OciTar(p) | Self::DockerTar(p) | Self::Tar(p) => is_stdout_path(p),
            _ => false,
        }
    }

    /// Checks, before the build runs, that the destination can be written without
    /// replacing something else: a tar output may only replace a regular file, a directory
    /// output only a directory (`type=local`: an empty one); a symbolic link is refused
    /// whatever it points to. Writing checks again (the destination may change meanwhile).
    pub fn check_destination(&self) -> Result<(), DestinationError> {
        let (path, wants_dir) = match self {
            Self::OciTar(p) | Self::DockerTar(p) | Self::Tar(p) => (p, false),
            Self::OciDir(p) | Self::Local(p) => (p, true),
            Self::Image { .. } => return Ok(()),
        };
        if self.is_stdout() {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(DestinationError::StdoutIsTerminal {
                    output: self.to_string(),
                });
            }
            return Ok(());
        }
        let meta = match fs_err::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(DestinationError::Inspect {
                    output: self.to_string(),
                    path: path.clone(),
                    source,
                });
            }
        };
        let is_right_kind = if wants_dir {
            meta.is_dir()
        } else {
            meta.is_file()
        };
        if !is_right_kind {
            return Err(DestinationError::WrongKind {
                output: self.to_string(),
                path: path.clone(),
                what: describe_file_type(&meta),
                hint: if meta.file_type().is_symlink() {
                    "kiln does not follow or replace symbolic links; name the real path"
                } else if wants_dir {
                    "this output writes a directory: choose a new or empty directory"
                } else {
                    "this output writes a tar file: choose a new path or an existing regular file"
                },
            });
        }
        if let Self::Local(_) = self {
            let is_empty = fs_err::read_dir(path)
                .map_err(|source| DestinationError::Inspect {
                    output: self.to_string(),
                    path: path.clone(),
                    source,
                })?
                .next()
                .is_none();
            if !is_empty {
                return Err(DestinationError::NotEmpty {
                    output: self.to_string(),
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

impl FromStr for Output {
    type Err = OutputSpecError;

    /// The destination of an `--output` that has no exporter options; one with options
    /// (`compression=zstd`…) is an error here, never dropped: parse an [`OutputSpec`].
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let parsed: OutputSpec = spec.parse()?;
        if parsed.options != ExportOptions::default() {
            return Err(OutputSpecError {
                spec: spec.to_owned(),
                reason: "it has exporter options; parse it as an OutputSpec to keep them"
                    .to_owned(),
            });
        }
        Ok(parsed.output)
    }
}

impl FromStr for OutputSpec {
    type Err = OutputSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| OutputSpecError {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        if spec.is_empty() {
            return Err(err("empty value"));
        }
        // buildx: a value without `=` is a local destination directory, and `-` the root
        // filesystem as a tar on stdout.
        if spec == "-" {
            return Ok(Output::Tar(PathBuf::from(spec)).into());
        }
        if !spec.contains('=') {
            return Ok(Output::Local(PathBuf::from(spec)).into());
        }
        let mut fields = BTreeMap::new();
        for part in split_csv(spec) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(&format!("`{part}` is not key=value")))?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let kind = fields.remove("type").unwrap_or_else(|| "local".to_owned());
        let dest = fields.remove("dest").map(PathBuf::from);
        let flag = |fields: &mut BTreeMap<String, String>,
                    name: &str,
                    default: bool|
         -> Result<bool, OutputSpecError> {
            match fields.remove(name).as_deref() {
                None => Ok(default),
                Some("true" | "1") => Ok(true),
                Some("false" | "0") => Ok(false),
                Some(other) => Err(err(&format!("`{name}={other}` must be true or false"))),
            }
        };
        let names_of = |fields: &mut BTreeMap<String, String>| -> Vec<String> {
            fields
                .remove("name")
                .map(|n| {
                    n.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut options = ExportOptions::default();
        let is_image_exporter = matches!(kind.as_str(), "oci" | "docker" | "image" | "registry");
        if is_image_exporter {
            let compression = fields.remove("compression");
            let level = fields.remove("compression-level");
            options.compression = parse_compression(compression.as_deref(), level.as_deref())
                .map_err(|e| err(&e.to_string()))?;
            options.force_compression = flag(&mut fields, "force-compression", false)?;
            options.oci_mediatypes = match fields.remove("oci-mediatypes").as_deref() {
                None => None,
                Some("true" | "1") => Some(true),
                Some("false" | "0") => Some(false),
                Some(other) => {
                    return Err(err(&format!(
                        "`oci-mediatypes={other}` must be true or false"
                    )));
                }
            };
            if fields.contains_key("rewrite-timestamp") {
                options.rewrite_timestamp = Some(flag(&mut fields, "rewrite-timestamp", false)?);
            }
            let annotation_keys: Vec<String> = fields
                .keys()
                .filter(|k| k.starts_with("annotation"))
                .cloned()
                .collect();
            for field in annotation_keys {
                if let Some(key) = parse_output_key(&field).map_err(|e| err(&e))? {
                    let value = fields.remove(&field).unwrap_or_default();
                    options.annotations.insert(key, value);
                }
            }
        }
        let out = match kind.as_str() {
            "oci" => {
                let dest = dest.ok_or_else(|| err("type=oci needs dest=PATH"))?;
                options.names = names_of(&mut fields);
                if flag(&mut fields, "tar", true)? {
                    Output::OciTar(dest)
                } else {
                    Output::OciDir(dest)
                }
            }
            "docker" => {
                let dest = dest.ok_or_else(|| {
                    err("type=docker needs dest=FILE.tar (no docker daemon is used)")
                })?;
                options.names = names_of(&mut fields);
                Output::DockerTar(dest)
            }
            "local" => Output::Local(dest.ok_or_else(|| err("type=local needs dest=DIR"))?),
            "tar" => {
                let dest =
                    dest.ok_or_else(|| err("type=tar needs dest=FILE (or dest=- for stdout)"))?;
                // BuildKit's tar exporter has no image options: every other key is refused.
                if let Some(k) = fields.keys().next() {
                    return Err(err(&format!(
                        "unknown option `{k}` for type=tar (it takes dest=)"
                    )));
                }
                Output::Tar(dest)
            }
            "image" | "registry" => {
                let names = names_of(&mut fields);
                let push = flag(&mut fields, "push", kind == "registry")?;
                options.push_by_digest = flag(&mut fields, "push-by-digest", false)?;
                options.store = flag(&mut fields, "store", true)?;
                if options.push_by_digest && !push {
                    return Err(err(
                        "push-by-digest=true needs push=true (or type=registry)",
                    ));
                }
                Output::Image { names, push }
            }
            other => {
                return Err(err(&format!(
                    "unknown type `{other}`; use oci, docker, local, tar, image or registry"
                )));
            }
        };
        if let Output::OciDir(p) | Output::Local(p) = &out
            && is_stdout_path(p)
        {
            return Err(err(
                "dest=- (stdout) is only for tar outputs (type=oci, type=docker or type=tar)",
            ));
        }
        if let Some(k) = fields.keys().next() {
            let known = match kind.as_str() {
                "oci" | "docker" => {
                    "dest, tar (oci), name, compression, compression-level, force-compression, oci-mediatypes, rewrite-timestamp, annotation*"
                }
                "image" | "registry" => {
                    "name, push, push-by-digest, store, compression, compression-level, force-compression, oci-mediatypes, rewrite-timestamp, annotation*"
                }
                _ => "dest",
            };
            return Err(err(&format!(
                "unknown option `{k}` for type={kind} (kiln takes {known})"
            )));
        }
        Ok(Self {
            output: out,
            options,
        })
    }
}

/// Splits on commas outside double quotes (buildx allows `name="a,b"`).
fn split_csv(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OciTar(p) => write!(f, "type=oci,dest={}", p.display()),
            Self::OciDir(p) => write!(f, "type=oci,dest={},tar=false", p.display()),
            Self::DockerTar(p) => write!(f, "type=docker,dest={}", p.display()),
            Self::Local(p) => write!(f, "type=local,dest={}", p.display()),
            Self::Tar(p) => write!(f, "type=tar,dest={}", p.display()),
            Self::Image { names, push } => {
                write!(f, "type=image,name={},push={push}", names.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_contract_form() {
        assert_eq!(
            "type=oci,dest=out.tar".parse::<Output>().unwrap(),
            Output::OciTar("out.tar".into())
        );
        assert_eq!(
            "type=oci,dest=dir,tar=false".parse::<Output>().unwrap(),
            Output::OciDir("dir".into())
        );
        assert_eq!(
            "type=docker,dest=d.tar".parse::<Output>().unwrap(),
            Output::DockerTar("d.tar".into())
        );
        assert_eq!(
            "type=local,dest=root".parse::<Output>().unwrap(),
            Output::Local("root".into())
        );
        assert_eq!(
            "type=tar,dest=root.tar".parse::<Output>().unwrap(),
            Output::Tar("root.tar".into())
        );
        assert_eq!("-".parse::<Output>().unwrap(), Output::Tar("-".into()));
        assert_eq!(
            "outdir".parse::<Output>().unwrap(),
            Output::Local("outdir".into())
        );
        assert_eq!(
            "type=image,name=127.0.0.1:5000/app:1,push=true"
                .parse::<Output>()
                .unwrap(),
            Output::Image {
                names: vec!["127.0.0.1:5000/app:1".into()],
                push: true
            }
        );
        assert_eq!(
            "type=registry,\"name=a:1,b:2\"".parse::<Output>().unwrap(),
            Output::Image {
                names: vec!["a:1".into(), "b:2".into()],
                push: true
            }
        );
    }

    #[test]
    fn exporter_keys_are_kept_not_dropped() {
        let spec: OutputSpec = "type=oci,dest=o.tar,compression=zstd,compression-level=19,force-compression=true,oci-mediatypes=false,name=a:1,rewrite-timestamp=true"
            .parse()
            .unwrap();
        assert_eq!(spec.output, Output::OciTar("o.tar".into()));
        assert_eq!(
            spec.options.compression,
            Some(Compression::Zstd { level: 19 })
        );
        assert!(spec.options.force_compression);
        assert_eq!(spec.options.oci_mediatypes, Some(false));
        assert_eq!(spec.options.names, ["a:1"]);
        assert_eq!(spec.options.rewrite_timestamp, Some(true));
        let image: OutputSpec = "type=registry,name=r/x:1,push-by-digest=true,store=false"
            .parse()
            .unwrap();
        assert!(image.options.push_by_digest && !image.options.store);
        assert_eq!(
            "type=image,name=x,compression=uncompressed"
                .parse::<OutputSpec>()
                .unwrap()
                .options
                .compression,
            Some(Compression::None)
        );
        // An Output has no room for options: refused, not dropped.
        let err = "type=oci,dest=o.tar,compression=zstd"
            .parse::<Output>()
            .unwrap_err();
        assert!(err.reason.contains("OutputSpec"), "{err}");
        for (bad, says) in [
            (
                "type=oci,dest=o,compression=lz4",
                "gzip, zstd or uncompressed",
            ),
            ("type=oci,dest=o,compression=estargz", "estargz"),
            ("type=oci,dest=o,compression-level=10", "0 to 9 for gzip"),
            (
                "type=oci,dest=o,compression=zstd,compression-level=0",
                "1 to 22",
            ),
            (
                "type=oci,dest=o,compression=uncompressed,compression-level=1",
                "absent",
            ),
            (
                "type=oci,dest=o,name-canonical=true",
                "unknown option `name-canonical`",
            ),
            ("type=oci,dest=o,store=false", "unknown option `store`"),
            (
                "type=local,dest=o,compression=zstd",
                "unknown option `compression`",
            ),
            ("type=image,name=x,push-by-digest=true", "needs push=true"),
            ("type=docker,dest=o,oci-mediatypes=maybe", "true or false"),
        ] {
            let err = bad.parse::<OutputSpec>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn dest_dash_is_stdout_for_tar_outputs() {
        assert!("type=oci,dest=-".parse::<Output>().unwrap().is_stdout());
        assert!("type=docker,dest=-".parse::<Output>().unwrap().is_stdout());
        assert!("type=tar,dest=-".parse::<Output>().unwrap().is_stdout());
        assert!("-".parse::<Output>().unwrap().is_stdout());
        assert!(!"type=oci,dest=x".parse::<Output>().unwrap().is_stdout());
    }

    fn check(spec: &str, dest: &Path) -> Result<(), DestinationError> {
        spec.replace("DEST", &dest.display().to_string())
            .parse::<Output>()
            .unwrap()
            .check_destination()
    }

    #[test]
    fn destinations_of_the_wrong_kind_are_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs_err::write(&file, "x").unwrap();
        let sub = dir.path().join("dir");
        fs_err::create_dir(&sub).unwrap();
        let link = dir.path().join("link");
        fs_err::os::unix::fs::symlink(&file, &link).unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Accepted: absent, a regular file for a tar, an empty directory for a directory.
        check("type=oci,dest=DEST", &dir.path().join("new.tar")).unwrap();
        check("type=docker,dest=DEST", &file).unwrap();
        check("type=local,dest=DEST", &sub).unwrap();
        check("type=oci,dest=DEST,tar=false", &sub).unwrap();
        for (spec, dest, what) in [
            ("type=oci,dest=DEST", &sub, "a directory"),
            ("type=docker,dest=DEST", &fifo, "a FIFO"),
            ("type=tar,dest=DEST", &sub, "a directory"),
            ("type=tar,dest=DEST", &link, "a symbolic link"),
            ("type=docker,dest=DEST", &link, "a symbolic link"),
            ("type=local,dest=DEST", &file, "a regular file"),
            ("type=oci,dest=DEST,tar=false", &link, "a symbolic link"),
        ] {
            let e = check(spec, dest).unwrap_err().to_string();
            assert!(
                e.contains(&dest.display().to_string()) && e.contains(what),
                "{e}"
            );
        }
        fs_err::write(sub.join("f"), "x").unwrap();
        let e = check("type=local,dest=DEST", &sub).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
    }

    #[test]
    fn tar_refuses_every_key_but_dest_and_names_it() {
        for key in ["compression=gzip", "tar=false", "name=x", "color=red"] {
            let e = format!("type=tar,dest=x,{key}")
                .parse::<Output>()
                .unwrap_err();
            let name = key.split('=').next().unwrap();
            assert!(e.reason.contains(&format!("`{name}`")), "{}", e.reason);
        }
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for bad in [
            "type=oci",
            "type=tarball,dest=x",
            "type=oci,dest=x,tar=maybe",
            "type=local,dest=x,color=red",
            "",
            "type=tar",
            "type=local,dest=-",
            "type=oci,dest=-,tar=false",
        ] {
            let e = bad.parse::<Output>().unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }
}
