//! Where a build's result goes: the `--output` specs of `docker buildx build`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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
    /// `type=image,name=REF[,push=true]`: a named image in the local store, pushed when asked.
    Image {
        /// Names (comma-separated in `name=`; quoted lists allowed by buildx).
        names: Vec<String>,
        /// Whether to push to the registry.
        push: bool,
    },
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

impl FromStr for Output {
    type Err = OutputSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| OutputSpecError {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        if spec.is_empty() {
            return Err(err("empty value"));
        }
        // buildx: a value without `=` is a local destination directory.
        if !spec.contains('=') {
            return Ok(Self::Local(PathBuf::from(spec)));
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
        let out = match kind.as_str() {
            "oci" => {
                let dest = dest.ok_or_else(|| err("type=oci needs dest=PATH"))?;
                if flag(&mut fields, "tar", true)? {
                    Self::OciTar(dest)
                } else {
                    Self::OciDir(dest)
                }
            }
            "docker" => {
                let dest = dest.ok_or_else(|| {
                    err("type=docker needs dest=FILE.tar (no docker daemon is used)")
                })?;
                Self::DockerTar(dest)
            }
            "local" => Self::Local(dest.ok_or_else(|| err("type=local needs dest=DIR"))?),
            "image" | "registry" => {
                let names: Vec<String> = fields
                    .remove("name")
                    .map(|n| {
                        n.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                let push = flag(&mut fields, "push", kind == "registry")?;
                Self::Image { names, push }
            }
            other => {
                return Err(err(&format!(
                    "unknown type `{other}`; use oci, docker, local, image or registry"
                )));
            }
        };
        // Options buildx accepts that do not change kiln's output.
        for ignored in [
            "compression",
            "compression-level",
            "force-compression",
            "oci-mediatypes",
            "name-canonical",
            "rewrite-timestamp",
        ] {
            fields.remove(ignored);
        }
        if let Some(k) = fields.keys().next() {
            return Err(err(&format!("unknown option `{k}`")));
        }
        Ok(out)
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
    fn rejects_bad_specs_with_a_reason() {
        for bad in [
            "type=oci",
            "type=tarball,dest=x",
            "type=oci,dest=x,tar=maybe",
            "type=local,dest=x,color=red",
            "",
        ] {
            let e = bad.parse::<Output>().unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }
}
