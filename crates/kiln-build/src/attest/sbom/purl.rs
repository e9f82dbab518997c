//! Package URLs (purl): `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`, written in the purl
//! specification's canonical form: each namespace segment, the name, the version and each
//! qualifier value percent-encoded, qualifiers sorted by key, empty ones left out.

use std::fmt::Write as _;

/// The parts of a package URL.
#[derive(Debug, Clone, Default)]
pub(super) struct Purl<'a> {
    /// The package type: `deb`, `apk`, `pypi`, `npm`, `golang`.
    pub(super) kind: &'a str,
    /// The namespace, `/`-separated segments (`debian`, `@types`, `github.com/foo`).
    pub(super) namespace: &'a str,
    /// The name.
    pub(super) name: &'a str,
    /// The version (left out when empty).
    pub(super) version: &'a str,
    /// Qualifiers (any order; empty values left out).
    pub(super) qualifiers: Vec<(&'a str, String)>,
}

impl Purl<'_> {
    /// The canonical text.
    pub(super) fn render(&self) -> String {
        let mut out = format!("pkg:{}/", self.kind);
        for segment in self.namespace.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(segment));
            out.push('/');
        }
        out.push_str(&encode(self.name));
        if !self.version.is_empty() {
            out.push('@');
            out.push_str(&encode(self.version));
        }
        let mut qualifiers: Vec<&(&str, String)> = self
            .qualifiers
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        qualifiers.sort_by_key(|(key, _)| *key);
        for (i, (key, value)) in qualifiers.into_iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(key);
            out.push('=');
            out.push_str(&encode(value));
        }
        out
    }
}

/// Percent-encodes everything but the purl specification's unencoded characters (ASCII
/// letters and digits, `.`, `-`, `_`, `~`): `+` becomes `%2B`, `@` `%40`, `:` `%3A`.
pub(super) fn encode(text: &str) -> String {
    encode_keeping(text, b"")
}

/// [`encode`], also keeping the bytes of `kept` as they are (`/` and `:` in an image
/// purl's name, as BuildKit writes it).
pub(crate) fn encode_keeping(text: &str, kept: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'.' | b'-' | b'_' | b'~')
            || kept.contains(&byte)
        {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_parts_and_sort_qualifiers() {
        let purl = Purl {
            kind: "deb",
            namespace: "debian",
            name: "libc6",
            version: "2.36-9+deb12u4",
            qualifiers: vec![
                ("upstream", "glibc".into()),
                ("distro", "debian-12".into()),
                ("arch", "amd64".into()),
                ("empty", String::new()),
            ],
        };
        assert_eq!(
            purl.render(),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        let scoped = Purl {
            kind: "npm",
            namespace: "@babel",
            name: "core",
            version: "7.0.0",
            ..Purl::default()
        };
        assert_eq!(scoped.render(), "pkg:npm/%40babel/core@7.0.0");
        let go = Purl {
            kind: "golang",
            namespace: "github.com/google",
            name: "uuid",
            version: "v1.3.0",
            ..Purl::default()
        };
        assert_eq!(go.render(), "pkg:golang/github.com/google/uuid@v1.3.0");
        assert_eq!(encode("1:2.38 x@y"), "1%3A2.38%20x%40y");
    }
}
