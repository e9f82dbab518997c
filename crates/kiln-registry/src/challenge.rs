//! `WWW-Authenticate` parsing (RFC 7235 §4.1): `Bearer realm="…",service="…",scope="…"` or
//! `Basic realm="…"`, several challenges possibly in one header, parameters quoted or not,
//! with `\` escapes inside quotes.

use std::collections::BTreeMap;

/// One authentication challenge from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased: `bearer`, `basic`.
    pub scheme: String,
    /// Its parameters with lowercased names (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Whether this is a `Bearer` challenge.
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    /// Whether this is a `Basic` challenge.
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parses every challenge of a `WWW-Authenticate` header value; malformed trailing text is
/// ignored (registries are known to send odd spacing).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut lexer = Lexer {
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        lexer.skip_separators();
        let Some(word) = lexer.token() else { break };
        lexer.skip_spaces();
        if lexer.peek() == Some(b'=') {
            // `name=value`: a parameter of the current challenge.
            lexer.pos += 1;
            lexer.skip_spaces();
            let value = lexer.value();
            if let Some(current) = out.last_mut() {
                current.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// An RFC 7230 token (anything but separators, spaces, `=`, quotes).
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\t' | b',' | b'=' | b'"') {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            // A stray quote or `=`: skip it so parsing always advances.
            if self.peek().is_some() {
                self.pos += 1;
                return self.token();
            }
            return None;
        }
        Some(String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned())
    }

    fn value(&mut self) -> String {
        if self.peek() != Some(b'"') {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if matches!(b, b' ' | b'\t' | b',') {
                    break;
                }
                self.pos += 1;
            }
            return String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned();
        }
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.pos += 1;
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let challenges = parse_challenges(header);
        assert_eq!(challenges.len(), 1);
        let c = &challenges[0];
        assert!(c.is_bearer());
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn scope_with_commas_inside_quotes_and_error_param() {
        let header = r#"Bearer realm="https://ghcr.io/token", service="ghcr.io", scope="repository:a/b:pull,push", error="insufficient_scope""#;
        let c = &parse_challenges(header)[0];
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
        assert_eq!(c.params.len(), 4);
    }

    #[test]
    fn basic_challenge_unquoted_and_case_insensitive() {
        let c = &parse_challenges("BASIC Realm=registry")[0];
        assert!(c.is_basic());
        assert_eq!(c.param("realm"), Some("registry"));
        let c = &parse_challenges(r#"Basic realm="Registry Realm""#)[0];
        assert_eq!(c.param("realm"), Some("Registry Realm"));
    }

    #[test]
    fn several_challenges_and_escapes() {
        let header = r#"Basic realm="a \"b\"", Bearer realm="https://t/x",service=s"#;
        let challenges = parse_challenges(header);
        assert_eq!(challenges.len(), 2);
        assert_eq!(challenges[0].param("realm"), Some(r#"a "b""#));
        assert!(challenges[1].is_bearer());
        assert_eq!(challenges[1].param("service"), Some("s"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for header in [
            "",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer =",
        ] {
            let _ = parse_challenges(header);
        }
        assert!(parse_challenges("").is_empty());
        assert_eq!(
            parse_challenges("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
    }
}
