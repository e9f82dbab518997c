//! Target platforms (`os/arch[/variant]`) as used by image indexes, image configs and the
//! `--platform` flag, with containerd's normalization and compatibility rules
//! (`containerd/platforms`: `Normalize`, `Only`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The platform an image runs on (OCI image-index.md `platform` object).
///
/// Spec: `architecture` "REQUIRED … Image indexes SHOULD use, and implementations SHOULD
/// understand, values listed in the Go Language document for `GOARCH`"; `os` "REQUIRED …
/// values listed for `GOOS`"; `os.version`, `os.features` and `variant` are OPTIONAL.
///
/// Unlike the document types, `Platform` is a closed identity type (it is compared, hashed
/// and used as a map key), so unknown properties such as the deprecated `features` are not
/// kept here. Pulled indexes still keep them: their original bytes are what kiln stores and
/// pushes ([`crate::JsonBlob`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, …).
    pub os: String,
    /// Operating system version (Windows build numbers).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Mandatory OS features (`win32k`).
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (`v7` for arm, `v8` for arm64, `v2`/`v3` for amd64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a platform string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// Empty text or an empty component.
    #[error(
        "invalid platform `{0}`: expected `os/arch[/variant]`, e.g. `linux/amd64` or `linux/arm64/v8`"
    )]
    Malformed(String),
    /// An operating system Go (and so containerd and BuildKit) does not know.
    #[error("invalid platform `{text}`: unknown operating system `{os}` (e.g. linux, windows)")]
    UnknownOs {
        /// The text given.
        text: String,
        /// The operating system part.
        os: String,
    },
    /// An architecture Go does not know.
    #[error(
        "invalid platform `{text}`: unknown architecture `{architecture}` (known: {})",
        KNOWN_ARCH.join(", ")
    )]
    UnknownArchitecture {
        /// The text given.
        text: String,
        /// The architecture part.
        architecture: String,
    },
    /// A variant the architecture does not have.
    #[error("invalid platform `{text}`: `{variant}` is not a variant of {architecture} ({known})")]
    UnknownVariant {
        /// The text given.
        text: String,
        /// The architecture.
        architecture: String,
        /// The variant part.
        variant: String,
        /// The variants the architecture has.
        known: &'static str,
    },
}

impl Platform {
    /// A platform from os and architecture, normalized.
    pub fn new(os: &str, architecture: &str) -> Self {
        Self::with_variant(os, architecture, None)
    }

    /// A platform from os, architecture and variant, normalized.
    pub fn with_variant(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            architecture: architecture.to_owned(),
            os: os.to_owned(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_owned),
        }
        .normalized()
    }

    /// The platform kiln itself was compiled for (Go's GOOS/GOARCH names).
    pub fn host() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            "loongarch64" => ("loong64", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            other => (other, None),
        };
        Self::with_variant(os, arch, variant)
    }

    /// The containerd-normalized form: lowercase, `x86_64`→`amd64`, `aarch64`→`arm64`,
    /// `armhf`→`arm/v7`, `armel`→`arm/v6`, `arm`→`arm/v7`, `arm64/v8`→`arm64`,
    /// `amd64/v1`→`amd64`, `i386`→`386`, `macos`→`darwin`. An empty variant becomes `None`.
    #[must_use]
    pub fn normalized(&self) -> Self {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_owned(),
            other => other.to_owned(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self
            .variant
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let (arch, variant) = normalize_arch(&arch, &variant);
        Self {
            architecture: arch,
            os,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// Platforms this one can run, best first (containerd `platforms.Only`): itself, then
    /// older variants of its architecture (`amd64/v3` → v2, v1; `arm/v7` → v6, v5), `386`
    /// for `amd64`, and `arm/v8`…`arm/v5` for `arm64`.
    pub fn compatible_platforms(&self) -> Vec<Self> {
        let me = self.normalized();
        let mut out = vec![me.clone()];
        let same = |variant: Option<String>, arch: &str| Self {
            architecture: arch.to_owned(),
            os: me.os.clone(),
            os_version: None,
            os_features: Vec::new(),
            variant,
        };
        let level = |variant: &Option<String>| {
            variant
                .as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|v| v.parse::<u32>().ok())
        };
        match me.architecture.as_str() {
            "amd64" => {
                if let Some(version) = level(&me.variant) {
                    for older in (2..version).rev() {
                        out.push(same(Some(format!("v{older}")), "amd64"));
                    }
                    if version > 1 {
                        out.push(same(None, "amd64"));
                    }
                }
                out.push(same(None, "386"));
            }
            "arm" => {
                if let Some(version) = level(&me.variant) {
                    for older in (5..version).rev() {
                        out.push(same(Some(format!("v{older}")), "arm"));
                    }
                }
            }
            "arm64" => {
                let version = level(&me.variant).unwrap_or(8).min(8);
                for older in (5..=version).rev() {
                    out.push(same(Some(format!("v{older}")), "arm"));
                }
            }
            _ => {}
        }
        out
    }

    /// Whether an image built for `candidate` runs on this platform.
    pub fn can_run(&self, candidate: &Self) -> bool {
        self.compatibility_rank(candidate).is_some()
    }

    /// How well `candidate` suits this platform: `Some(0)` for an exact match (after
    /// normalization), larger numbers for older compatible variants, `None` when it cannot
    /// run here. `os.version` and `os.features` are ignored (they matter only on Windows).
    pub fn compatibility_rank(&self, candidate: &Self) -> Option<usize> {
        let candidate = candidate.normalized();
        self.compatible_platforms().iter().position(|p| {
            p.os == candidate.os
                && p.architecture == candidate.architecture
                && p.variant == candidate.variant
        })
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, variant) = match arch {
        "i386" | "i686" => ("386", ""),
        "x86_64" | "x86-64" | "amd64" => ("amd64", if variant == "v1" { "" } else { variant }),
        "aarch64" | "arm64" => (
            "arm64",
            match variant {
                "8" | "v8" | "v8.0" => "",
                "9" | "9.0" | "v9.0" => "v9",
                other => other,
            },
        ),
        "armhf" => ("arm", "v7"),
        "armel" => ("arm", "v6"),
        "arm" => (
            "arm",
            match variant {
                "" | "7" => "v7",
                "5" => "v5",
                "6" => "v6",
                "8" => "v8",
                other => other,
            },
        ),
        other => (other, variant),
    };
    (arch.to_owned(), variant.to_owned())
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// Parses `os/arch[/variant]`; a lone architecture (`arm64`) means `linux/arm64`, a lone
    /// os (`linux`) the host's architecture on that os. The result is normalized, and its
    /// os and architecture must be ones Go knows (as a `GOOS`/`GOARCH`): `linux/bogus` is
    /// an error, not a platform no image has.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = parse_loose(s)?;
        parsed.check_known(s)?;
        Ok(parsed)
    }
}

/// `os/arch[/variant]` split and normalized, not checked against the known names.
fn parse_loose(s: &str) -> Result<Platform, PlatformError> {
    let malformed = || PlatformError::Malformed(s.to_owned());
    let parts: Vec<&str> = s.trim().split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(malformed());
    }
    match parts.as_slice() {
        [single] => {
            let lower = single.to_ascii_lowercase();
            if KNOWN_OS.contains(&lower.as_str()) {
                let host = Platform::host();
                Ok(Platform::with_variant(
                    &lower,
                    &host.architecture,
                    host.variant.as_deref(),
                ))
            } else {
                Ok(Platform::new("linux", single))
            }
        }
        [os, arch] => Ok(Platform::new(os, arch)),
        [os, arch, variant] => Ok(Platform::with_variant(os, arch, Some(variant))),
        _ => Err(malformed()),
    }
}

impl Platform {
    /// Checks a parsed (normalized) platform against Go's `GOOS`/`GOARCH` lists and the
    /// variants containerd knows for arm, arm64 and amd64; `text` is what the user wrote.
    fn check_known(&self, text: &str) -> Result<(), PlatformError> {
        if !KNOWN_OS.contains(&self.os.as_str()) {
            return Err(PlatformError::UnknownOs {
                text: text.to_owned(),
                os: self.os.clone(),
            });
        }
        if !KNOWN_ARCH.contains(&self.architecture.as_str()) {
            return Err(PlatformError::UnknownArchitecture {
                text: text.to_owned(),
                architecture: self.architecture.clone(),
            });
        }
        let Some(variant) = self.variant.as_deref() else {
            return Ok(());
        };
        // `v8`, or `v8.N` with N digits.
        let level = |prefix: &str| {
            variant.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('.')
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        };
        let (is_known, known) = match self.architecture.as_str() {
            "arm" => (
                matches!(variant, "v5" | "v6" | "v7" | "v8"),
                "v5, v6, v7, v8",
            ),
            "arm64" => (level("v8") || level("v9"), "v8, v8.N, v9, v9.N"),
            "amd64" => (matches!(variant, "v2" | "v3" | "v4"), "v1, v2, v3, v4"),
            _ => (
                variant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_'),
                "letters, digits, `.` and `_`",
            ),
        };
        if is_known {
            Ok(())
        } else {
            Err(PlatformError::UnknownVariant {
                text: text.to_owned(),
                architecture: self.architecture.clone(),
                variant: variant.to_owned(),
                known,
            })
        }
    }
}

/// Go's `GOOS` values (`go/build/syslist.go`), plus `macos` (normalized to `darwin`).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "macos",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Go's `GOARCH` values (`go/build/syslist.go`), after normalization (`x86_64` is `amd64`).
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_normalize_like_containerd() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/amd64/v1").to_string(), "linux/amd64");
        assert_eq!(p("linux/amd64/v3").to_string(), "linux/amd64/v3");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armel").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("Linux/ARM64").to_string(), "linux/arm64");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux"), Platform::host());
        assert_eq!(p("linux/arm64/v8.2").to_string(), "linux/arm64/v8.2");
        assert_eq!(p("linux/riscv64").to_string(), "linux/riscv64");
        assert_eq!(p("s390x").to_string(), "linux/s390x");
        assert_eq!(p("linux/ppc64le").to_string(), "linux/ppc64le");
        assert_eq!(p("386").to_string(), "linux/386");
        for bad in [
            "",
            "/",
            "linux/",
            "a/b/c/d",
            "linux//v7",
            "linux/bogus",
            "bogus",
            "linux/amd64,linux/arm64",
            "plan10/amd64",
            "linux/arm/v9",
            "linux/amd64/v7",
            "linux/arm64/x",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} must be rejected");
        }
        let err = "linux/bogus".parse::<Platform>().unwrap_err().to_string();
        assert!(err.contains("unknown architecture `bogus`"), "{err}");
    }

    #[test]
    fn host_is_normalized_and_linux_on_linux() {
        let host = Platform::host();
        assert_eq!(host, host.normalized());
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn matching_treats_arm64_v8_as_arm64_and_prefers_exact() {
        let want = p("linux/arm64");
        let raw = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: Vec::new(),
            variant: Some("v8".into()),
        };
        assert_eq!(want.compatibility_rank(&raw), Some(0));
        assert!(want.can_run(&p("linux/arm/v7")));
        assert!(want.compatibility_rank(&p("linux/arm/v7")) > Some(0));
        assert!(!want.can_run(&p("linux/amd64")));
        assert!(!p("linux/arm/v6").can_run(&p("linux/arm/v7")));
        assert!(p("linux/arm/v7").can_run(&p("linux/arm/v6")));
        assert!(p("linux/amd64/v3").can_run(&p("linux/amd64")));
        assert!(p("linux/amd64").can_run(&p("linux/386")));
        assert!(!p("linux/amd64").can_run(&p("linux/amd64/v2")));
        assert!(!p("linux/amd64").can_run(&p("windows/amd64")));
    }

    #[test]
    fn serde_uses_spec_field_names() {
        let mut platform = p("windows/amd64");
        platform.os_version = Some("10.0.17763.1".into());
        let json = serde_json::to_value(&platform).unwrap();
        assert_eq!(json["os.version"], "10.0.17763.1");
        assert!(json.get("variant").is_none());
        assert!(json.get("os.features").is_none());
        let back: Platform = serde_json::from_value(json).unwrap();
        assert_eq!(back, platform);
    }
}
