//! Instruction flags, checked the way BuildKit's `BFlags.Parse` checks them: each
//! instruction declares its flags and their kinds; unknown flags, duplicates of single-valued
//! flags, missing values and non-boolean values of boolean flags are errors.

use crate::diagnostic::{ParseError, ParseErrorKind, suggest};
use crate::syntax::Flag;

/// The kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--mount=x`, repeatable.
    Strings,
}

/// The flags an instruction accepts.
pub(crate) type FlagSpec = &'static [(&'static str, FlagKind)];

/// The values of an instruction's flags after checking.
#[derive(Debug)]
pub(crate) struct FlagValues<'a> {
    values: Vec<(&'static str, Vec<&'a Flag>)>,
}

impl<'a> FlagValues<'a> {
    fn get(&self, name: &str) -> &[&'a Flag] {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The value of a string flag, if given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.get(name).last().and_then(|f| f.value.clone())
    }

    /// The value of a boolean flag, if given (already checked to be a boolean).
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).last().map(|f| {
            f.value
                .as_deref()
                .is_none_or(|v| v.eq_ignore_ascii_case("true"))
        })
    }

    /// Every value of a repeatable flag, with its flag.
    pub(crate) fn strings(&self, name: &str) -> Vec<(&'a Flag, String)> {
        self.get(name)
            .iter()
            .map(|f| (*f, f.value.clone().unwrap_or_default()))
            .collect()
    }

    /// The flag itself, for its span.
    pub(crate) fn flag(&self, name: &str) -> Option<&'a Flag> {
        self.get(name).last().copied()
    }
}

/// Checks `flags` against `spec` for `instruction` (uppercase, for messages).
pub(crate) fn check_flags<'a>(
    instruction: &str,
    flags: &'a [Flag],
    spec: FlagSpec,
) -> Result<FlagValues<'a>, ParseError> {
    let mut values: Vec<(&'static str, Vec<&'a Flag>)> = Vec::new();
    for flag in flags {
        let (flag_name, value) = match flag.text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag.text.as_str(), None),
        };
        let bare = flag_name.get(2..).unwrap_or("");
        let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == bare) else {
            let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
            let err = ParseError::new(
                ParseErrorKind::UnknownFlag {
                    instruction: instruction.to_owned(),
                    flag: flag_name.to_owned(),
                },
                flag.span,
            );
            return Err(match suggest(bare, &names, true) {
                Some(s) => err.with_help(format!("did you mean `--{s}`?")),
                None if names.is_empty() => err.with_help(format!("{instruction} takes no flags")),
                None => err.with_help(format!(
                    "{instruction} accepts {}",
                    names
                        .iter()
                        .map(|n| format!("--{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        };
        let index = if let Some(i) = values.iter().position(|(n, _)| *n == name) {
            i
        } else {
            values.push((name, Vec::new()));
            values.len() - 1
        };
        let entry = &mut values[index].1;
        if !entry.is_empty() && kind != FlagKind::Strings {
            return Err(ParseError::new(
                ParseErrorKind::DuplicateFlag {
                    flag: flag_name.to_owned(),
                },
                flag.span,
            ));
        }
        let missing = || {
            ParseError::new(
                ParseErrorKind::FlagMissingValue {
                    flag: flag_name.to_owned(),
                },
                flag.span,
            )
        };
        match (kind, value) {
            (FlagKind::Bool, Some("")) | (FlagKind::String | FlagKind::Strings, None) => {
                return Err(missing());
            }
            (FlagKind::Bool, Some(v))
                if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") =>
            {
                return Err(ParseError::new(
                    ParseErrorKind::FlagNotBool {
                        flag: flag_name.to_owned(),
                        value: v.to_owned(),
                    },
                    flag.span,
                ));
            }
            _ => {}
        }
        entry.push(flag);
    }
    Ok(FlagValues { values })
}

pub(crate) const NO_FLAGS: FlagSpec = &[];
pub(crate) const FROM_FLAGS: FlagSpec = &[("platform", FlagKind::String)];
pub(crate) const RUN_FLAGS: FlagSpec = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
    ("device", FlagKind::Strings),
];
pub(crate) const COPY_FLAGS: FlagSpec = &[
    ("chown", FlagKind::String),
    ("from", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("parents", FlagKind::Bool),
];
pub(crate) const ADD_FLAGS: FlagSpec = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("unpack", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];
pub(crate) const HEALTHCHECK_FLAGS: FlagSpec = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];
