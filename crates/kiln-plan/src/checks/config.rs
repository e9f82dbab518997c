//! The `# check=` options: which rules are skipped, which experimental rules run, and whether
//! a warning fails the build (BuildKit `linter.ParseLintOptions`, `Linter.WithMergedConfig`).

use std::collections::BTreeSet;

use kiln_dockerfile::go_quote;

use super::rule::Rule;

/// Parsed `skip=…;experimental=…;error=…` options.
///
/// ```
/// use kiln_plan::CheckConfig;
/// let config = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
/// assert!(config.is_error);
/// assert!(config.skip.contains("StageNameCasing"));
/// assert!(CheckConfig::parse("skip").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub is_skip_all: bool,
    /// `skip=Rule1,Rule2`.
    pub skip: BTreeSet<String>,
    /// `experimental=all`.
    pub is_experimental_all: bool,
    /// `experimental=Rule1,Rule2`.
    pub experimental: BTreeSet<String>,
    /// `error=true`: any warning fails the build.
    pub is_error: bool,
}

/// Why a `# check=` value (or `BUILDKIT_DOCKERFILE_CHECK`) was rejected; the message is
/// BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CheckConfigError {
    message: String,
}

impl CheckConfig {
    /// Parses an option string as BuildKit's `ParseLintOptions` does: at most three
    /// `;`-separated `key=value` parts, keys `skip`, `experimental` and `error`.
    pub fn parse(text: &str) -> Result<Self, CheckConfigError> {
        let text = go_trim(text);
        let mut config = Self::default();
        if text.is_empty() {
            return Ok(config);
        }
        for part in text.splitn(3, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(CheckConfigError {
                    message: format!("invalid check option {}", go_quote(part)),
                });
            };
            let value = go_trim(value);
            match go_trim(key) {
                "skip" if value == "all" => config.is_skip_all = true,
                "skip" => config.skip = value.split(',').map(|r| go_trim(r).to_owned()).collect(),
                "experimental" if value == "all" => config.is_experimental_all = true,
                "experimental" => {
                    config.experimental = value.split(',').map(|r| go_trim(r).to_owned()).collect();
                }
                "error" => {
                    config.is_error = parse_go_bool(value).ok_or_else(|| CheckConfigError {
                        message: format!(
                            "failed to parse check option {}: strconv.ParseBool: parsing {}: invalid syntax",
                            go_quote(part),
                            go_quote(value)
                        ),
                    })?;
                }
                other => {
                    return Err(CheckConfigError {
                        message: format!("invalid check option {}", go_quote(other)),
                    });
                }
            }
        }
        Ok(config)
    }

    /// Whether `rule` runs under these options: an experimental rule only when enabled
    /// (whatever `skip` says), any other rule unless skipped.
    pub fn is_enabled(&self, rule: &Rule) -> bool {
        if rule.is_experimental {
            self.is_experimental_all || self.experimental.contains(rule.name)
        } else {
            !(self.is_skip_all || self.skip.contains(rule.name))
        }
    }

    /// These options with `other`'s skips and experimental rules added (`error` is kept):
    /// what a `# check=` comment above one instruction does.
    #[must_use]
    pub fn merged(&self, other: &Self) -> Self {
        let mut merged = self.clone();
        merged.is_skip_all |= other.is_skip_all;
        merged.is_experimental_all |= other.is_experimental_all;
        merged.skip.extend(other.skip.iter().cloned());
        merged
            .experimental
            .extend(other.experimental.iter().cloned());
        merged
    }
}

/// Go `strings.TrimSpace` (ASCII and Unicode white space).
pub(super) fn go_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace())
}

/// Go `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The `check` options of a comment line above an instruction (its text after `#`,
/// trimmed), as `Linter.WithMergedConfigFromComments` reads it: `check=<value>`, the value cut
/// at its first space. `None` when the comment is no `check` directive or does not parse.
pub(super) fn parse_comment_directive(comment: &str) -> Option<Result<CheckConfig, ()>> {
    let (key, value) = comment.split_once('=')?;
    let key = go_trim(key);
    let mut chars = key.chars();
    let is_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if !is_name || !key.eq_ignore_ascii_case("check") {
        return None;
    }
    let value = go_trim(value);
    if value.is_empty() {
        return None;
    }
    let value = value.split(' ').next().unwrap_or_default();
    Some(CheckConfig::parse(value).map_err(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_like_buildkit() {
        let config = CheckConfig::parse(" skip = a , b ; experimental=all;error=1").unwrap();
        assert_eq!(config.skip.len(), 2);
        assert!(config.is_experimental_all && config.is_error);
        assert_eq!(
            CheckConfig::parse("foo=bar").unwrap_err().to_string(),
            r#"invalid check option "foo""#
        );
        assert_eq!(
            CheckConfig::parse("error=yes").unwrap_err().to_string(),
            r#"failed to parse check option "error=yes": strconv.ParseBool: parsing "yes": invalid syntax"#
        );
        assert_eq!(CheckConfig::parse("  ").unwrap(), CheckConfig::default());
    }

    #[test]
    fn comment_directives() {
        let parsed = parse_comment_directive("check=skip=all // why")
            .unwrap()
            .unwrap();
        assert!(parsed.is_skip_all);
        assert!(parse_comment_directive("warning: x=y").is_none());
        assert!(parse_comment_directive("check=bogus").unwrap().is_err());
    }
}
