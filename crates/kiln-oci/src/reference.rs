//! Image references: `[registry[:port]/]repository[:tag][@digest]`, parsed with the grammar of
//! `distribution/reference` and normalised the way `docker pull` does.
//!
//! Normalisation (moby `reference.ParseNormalizedNamed`): a first path component is a
//! registry only when it contains `.` or `:`, is `localhost`, or is a bracketed IPv6
//! address; otherwise the registry is `docker.io`, and a single-component Docker Hub name
//! gets the `library/` namespace. `index.docker.io` is an alias of `docker.io`. A reference
//! with neither tag nor digest gets the tag `latest`. [`ImageRef::api_host`] maps Docker Hub
//! to its API endpoint `registry-1.docker.io`.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, DigestError};

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API endpoint (where `docker.io` references are pulled from).
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The tag of a reference that names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// distribution/reference: `NameTotalLengthMax`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// distribution/reference: tags are `[\w][\w.-]{0,127}`.
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalised image reference such as `docker.io/library/busybox:latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The empty string.
    #[error("invalid image reference: empty string")]
    Empty,
    /// Uppercase letters in the repository path (registries require lowercase).
    #[error("invalid image reference `{0}`: repository name must be lowercase")]
    Uppercase(String),
    /// A path component breaks the `[a-z0-9]+([._-][a-z0-9]+)*` grammar.
    #[error(
        "invalid image reference `{reference}`: bad repository path component `{component}` \
         (lowercase letters, digits and single `.`, `_`, `__` or `-` runs between them)"
    )]
    BadPathComponent {
        /// The whole reference.
        reference: String,
        /// The offending component.
        component: String,
    },
    /// The registry host or port is malformed.
    #[error("invalid image reference `{reference}`: bad registry host `{host}` ({why})")]
    BadRegistry {
        /// The whole reference.
        reference: String,
        /// The offending host part.
        host: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error(
        "invalid image reference `{reference}`: bad tag `{tag}` (up to 128 letters, digits, `_`, \
         `.` or `-`, not starting with `.` or `-`)"
    )]
    BadTag {
        /// The whole reference.
        reference: String,
        /// The offending tag.
        tag: String,
    },
    /// The part after `@` is not a digest.
    #[error("invalid image reference `{reference}`: {source}")]
    BadDigest {
        /// The whole reference.
        reference: String,
        /// Why the digest is invalid.
        #[source]
        source: DigestError,
    },
    /// The name is longer than the 255 characters registries accept.
    #[error("invalid image reference `{0}`: repository name longer than 255 characters")]
    NameTooLong(String),
}

impl ImageRef {
    /// Parses and normalises a reference (same as [`str::parse`]).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        text.parse()
    }

    /// The registry as written in the normalised reference: `docker.io`, `ghcr.io`,
    /// `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) to send API requests to: Docker Hub's `docker.io` becomes
    /// `registry-1.docker.io`; every other registry is its own endpoint.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (a reference parsed without tag or digest has `latest`).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        validate_tag(tag, &format!("{}:{tag}", self.name()))?;
        Ok(Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest`, keeping the tag (as `name:tag@digest`).
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form `docker` prints: `busybox:latest` for Docker Hub's library images,
    /// `user/app:1` for other Hub images, the full form elsewhere.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            self.name()
        };
        let mut out = name;
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest =
                    digest
                        .parse::<Digest>()
                        .map_err(|source| ReferenceError::BadDigest {
                            reference: text.to_owned(),
                            source,
                        })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // The tag is after the last `:` that follows the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&rest[..split], Some(&rest[split + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag, text)?;
        }
        let (registry, repository) = split_registry(name, text)?;
        validate_repository(&repository, text)?;
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong(text.to_owned()));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Splits `name` into (registry, repository) with Docker's normalisation.
fn split_registry(name: &str, reference: &str) -> Result<(String, String), ReferenceError> {
    // moby splitDockerDomain: the first component is a domain when it has `.` or `:`, is
    // `localhost`, or has uppercase letters (which then fail as a repository).
    let (registry, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':', '['])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            validate_registry(first, reference)?;
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder
    };
    Ok((registry, repository))
}

fn validate_registry(host: &str, reference: &str) -> Result<(), ReferenceError> {
    let bad = |why| ReferenceError::BadRegistry {
        reference: reference.to_owned(),
        host: host.to_owned(),
        why,
    };
    if host.bytes().any(|b| b.is_ascii_uppercase())
        && !host.contains(['.', ':'])
        && host != "localhost"
    {
        // moby: a first component with uppercase but no `.`/`:` is a bad repository name.
        return Err(ReferenceError::Uppercase(reference.to_owned()));
    }
    let (hostname, port) = if let Some(after) = host.strip_prefix('[') {
        let (inside, tail) = after
            .split_once(']')
            .ok_or_else(|| bad("unclosed `[` of an IPv6 address"))?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            || inside.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(bad("not an IPv6 address inside `[…]`"));
        }
        match tail {
            "" => (None, None),
            _ => match tail.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(bad("unexpected text after `]`")),
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(bad("port must be a number from 0 to 65535"));
    }
    if let Some(name) = hostname {
        if name.is_empty() {
            return Err(bad("empty host name"));
        }
        for component in name.split('.') {
            let bytes = component.as_bytes();
            let is_valid = !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-';
            if !is_valid {
                return Err(bad(
                    "host name components are letters, digits and inner `-`",
                ));
            }
        }
    }
    Ok(())
}

fn validate_repository(repository: &str, reference: &str) -> Result<(), ReferenceError> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase(reference.to_owned()));
    }
    for component in repository.split('/') {
        if !is_path_component(component) {
            return Err(ReferenceError::BadPathComponent {
                reference: reference.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// distribution/reference: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let is_separator =
            matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !is_separator {
            return false;
        }
    }
    true
}

fn validate_tag(tag: &str, reference: &str) -> Result<(), ReferenceError> {
    let bytes = tag.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let is_valid = !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && is_word(bytes[0])
        && bytes
            .iter()
            .all(|b| is_word(*b) || *b == b'.' || *b == b'-');
    if is_valid {
        Ok(())
    } else {
        Err(ReferenceError::BadTag {
            reference: reference.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parts(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(ToString::to_string),
        )
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        let cases = [
            ("busybox", "docker.io", "library/busybox", Some("latest")),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36")),
            (
                "library/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            ("user/app:v1", "docker.io", "user/app", Some("v1")),
            (
                "docker.io/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
            ),
            (
                "index.docker.io/busybox:1",
                "docker.io",
                "library/busybox",
                Some("1"),
            ),
            ("docker.io/a/b/c", "docker.io", "a/b/c", Some("latest")),
        ];
        for (text, registry, repository, tag) in cases {
            let (reg, repo, t, d) = parts(text);
            assert_eq!(
                (reg.as_str(), repo.as_str(), t.as_deref(), d),
                (registry, repository, tag, None),
                "{text}"
            );
        }
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(
            ImageRef::parse("user/app").unwrap().familiar(),
            "user/app:latest"
        );
    }

    #[test]
    fn hosts_ports_localhost_and_ipv6() {
        let cases = [
            ("localhost/app", "localhost", "app"),
            ("localhost:5000/app:1", "localhost:5000", "app"),
            ("127.0.0.1:5000/ns/app", "127.0.0.1:5000", "ns/app"),
            ("[::1]:5000/app", "[::1]:5000", "app"),
            ("[fe80::1]/app", "[fe80::1]", "app"),
            ("ghcr.io/owner/repo:tag", "ghcr.io", "owner/repo"),
            ("Registry.Example.com/x", "Registry.Example.com", "x"),
            ("my-registry:443/a/b", "my-registry:443", "a/b"),
        ];
        for (text, registry, repository) in cases {
            let (reg, repo, _, _) = parts(text);
            assert_eq!(
                (reg.as_str(), repo.as_str()),
                (registry, repository),
                "{text}"
            );
        }
        let r = ImageRef::parse("localhost:5000/app:1").unwrap();
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.to_string(), "localhost:5000/app:1");
        assert_eq!(r.familiar(), "localhost:5000/app:1");
    }

    #[test]
    fn tags_and_digests() {
        let (_, _, tag, digest) = parts(&format!("busybox@{DIGEST}"));
        assert_eq!((tag, digest.as_deref()), (None, Some(DIGEST)));
        let (_, _, tag, digest) = parts(&format!("localhost:5000/a:v2@{DIGEST}"));
        assert_eq!(
            (tag.as_deref(), digest.as_deref()),
            (Some("v2"), Some(DIGEST))
        );
        let r = ImageRef::parse(&format!("busybox:1@{DIGEST}")).unwrap();
        assert_eq!(r.manifest_reference(), DIGEST);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox:1@{DIGEST}")
        );
        assert_eq!(ImageRef::parse("a:_x.Y-1").unwrap().tag(), Some("_x.Y-1"));
        let tagged = r.with_tag("other").unwrap();
        assert_eq!(tagged.to_string(), "docker.io/library/busybox:other");
        assert_eq!(tagged.manifest_reference(), "other");
        let round: ImageRef = r.to_string().parse().unwrap();
        assert_eq!(round, r);
    }

    #[test]
    fn path_components_follow_the_grammar() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2/c3", "0"] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "-a", "a-", "a_", ".a", "a//b", "a/", "a/_b", "a.-b",
        ] {
            assert!(
                matches!(
                    ImageRef::parse(bad),
                    Err(ReferenceError::BadPathComponent { .. })
                ),
                "{bad}: {:?}",
                ImageRef::parse(bad)
            );
        }
    }

    #[test]
    fn invalid_references_are_refused_with_a_reason() {
        assert_eq!(ImageRef::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            ImageRef::parse("Busybox"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            ImageRef::parse("ghcr.io/Owner/x"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            ImageRef::parse("Upper/x"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            ImageRef::parse("a:"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a:.x"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a:-x"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a:x/y"),
            Err(ReferenceError::BadRegistry { .. })
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            ImageRef::parse(&long_tag),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(ImageRef::parse(&format!("a:{}", "t".repeat(128))).is_ok());
        assert!(matches!(
            ImageRef::parse("a@sha256:abc"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a@"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            ImageRef::parse("host:99999/a"),
            Err(ReferenceError::BadRegistry { .. })
        ));
        assert!(matches!(
            ImageRef::parse("host:x1/a"),
            Err(ReferenceError::BadRegistry { .. })
        ));
        assert!(matches!(
            ImageRef::parse("-host.io/a"),
            Err(ReferenceError::BadRegistry { .. })
        ));
        assert!(matches!(
            ImageRef::parse("[::1/a"),
            Err(ReferenceError::BadRegistry { .. })
        ));
        assert!(matches!(
            ImageRef::parse("[zz]:5000/a"),
            Err(ReferenceError::BadRegistry { .. })
        ));
        let long = format!("{}/{}", "a".repeat(200), "b".repeat(100));
        assert!(matches!(
            ImageRef::parse(&long),
            Err(ReferenceError::NameTooLong(_))
        ));
        let message = ImageRef::parse("a..b").unwrap_err().to_string();
        assert!(
            message.contains("`a..b`") && message.contains("component"),
            "{message}"
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let r = ImageRef::parse("busybox:1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:1\"");
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), r);
        assert!(serde_json::from_str::<ImageRef>("\"A\"").is_err());
    }
}
