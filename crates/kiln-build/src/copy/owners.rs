//! `--chown` owners resolved in the destination stage's `/etc/passwd` and `/etc/group`
//! (BuildKit reads them from the stage's filesystem, not the host's).
//!
//! Docker: "Providing a username without groupname or a UID without GID will use the same
//! numeric UID as the GID."

use crate::copy::source::{EntryKind, SourceTree};

/// Why an owner cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// A user name missing from the stage's `/etc/passwd`.
    #[error(
        "unable to find user `{name}` in the stage's /etc/passwd (for `{spec}`); create it in an earlier RUN or use a numeric uid"
    )]
    NoSuchUser {
        /// The name.
        name: String,
        /// The whole `--chown` value.
        spec: String,
    },
    /// A group name missing from the stage's `/etc/group`.
    #[error(
        "unable to find group `{name}` in the stage's /etc/group (for `{spec}`); create it in an earlier RUN or use a numeric gid"
    )]
    NoSuchGroup {
        /// The name.
        name: String,
        /// The whole `--chown` value.
        spec: String,
    },
    /// An empty or malformed value.
    #[error("invalid --chown value `{spec}`: expected USER[:GROUP] with names or numbers")]
    Invalid {
        /// The value.
        spec: String,
    },
}

/// Reads a file of the tree (following symlinks inside it); `None` when absent.
fn read_tree_file(tree: &dyn SourceTree, path: &str) -> Option<String> {
    let (_, entry) = tree.resolve(path).ok()??;
    if entry.kind != EntryKind::File {
        return None;
    }
    fs_err::read_to_string(&entry.host_path).ok()
}

/// Looks `name` up in a colon-separated database (`/etc/passwd`, `/etc/group`): returns
/// (field 3, field 4) of the first matching line.
fn lookup(db: Option<&str>, name: &str) -> Option<(u32, Option<u32>)> {
    db?.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        let id = fields.next()?.trim().parse().ok()?;
        let primary = fields.next().and_then(|g| g.trim().parse().ok());
        Some((id, primary))
    })
}

/// Resolves `USER[:GROUP]` to numbers using the tree's passwd/group files.
pub(crate) fn resolve_chown(spec: &str, tree: &dyn SourceTree) -> Result<(u32, u32), OwnerError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(OwnerError::Invalid {
            spec: spec.to_owned(),
        });
    }
    let passwd = read_tree_file(tree, "etc/passwd");
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(passwd.as_deref(), user)
            .map(|(uid, _)| uid)
            .ok_or_else(|| OwnerError::NoSuchUser {
                name: user.to_owned(),
                spec: spec.to_owned(),
            })?,
    };
    let gid = match group {
        None => uid,
        Some(g) => {
            if let Ok(n) = g.parse::<u32>() {
                n
            } else {
                let groups = read_tree_file(tree, "etc/group");
                lookup(groups.as_deref(), g)
                    .map(|(gid, _)| gid)
                    .ok_or_else(|| OwnerError::NoSuchGroup {
                        name: g.to_owned(),
                        spec: spec.to_owned(),
                    })?
            }
        }
    };
    Ok((uid, gid))
}

/// Why a `--chmod` value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChmodError {
    /// An octal mode above 7777.
    #[error("invalid --chmod `{spec}`: mode is larger than 7777")]
    TooLarge {
        /// The value.
        spec: String,
    },
    /// Neither octal nor symbolic clauses.
    #[error("invalid --chmod `{spec}`: expected an octal mode or symbolic clauses like u+x,go-w")]
    NotAMode {
        /// The value.
        spec: String,
    },
    /// A symbolic clause with other letters than `ugoa` / `rwxXst`.
    #[error("invalid --chmod `{spec}`: bad clause `{clause}`")]
    BadClause {
        /// The value.
        spec: String,
        /// The clause.
        clause: String,
    },
}

/// Parses a `--chmod` value: octal (`755`, `0644`) or symbolic (`u+x,go-w`, `a=r`) applied
/// to `base` (the source mode).
pub(crate) fn parse_chmod(spec: &str) -> Result<Chmod, ChmodError> {
    if !spec.is_empty() && spec.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        // Digits 0-7 only: too many of them is the one way to fail.
        let mode = u32::from_str_radix(spec, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| ChmodError::TooLarge {
                spec: spec.to_owned(),
            })?;
        return Ok(Chmod::Octal(mode));
    }
    for clause in spec.split(',') {
        let op = clause
            .find(['+', '-', '='])
            .ok_or_else(|| ChmodError::NotAMode {
                spec: spec.to_owned(),
            })?;
        let (who, rest) = clause.split_at(op);
        if !who.bytes().all(|b| b"ugoa".contains(&b))
            || !rest[1..].bytes().all(|b| b"rwxXst".contains(&b))
        {
            return Err(ChmodError::BadClause {
                spec: spec.to_owned(),
                clause: clause.to_owned(),
            });
        }
    }
    Ok(Chmod::Symbolic(spec.to_owned()))
}

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    /// An absolute mode.
    Octal(u32),
    /// Symbolic clauses, applied per file.
    Symbolic(String),
}

impl Chmod {
    /// The mode for a file whose source mode is `base` (`is_dir` for `X`).
    pub(crate) fn apply(&self, base: u32, is_dir: bool) -> u32 {
        match self {
            Self::Octal(m) => *m,
            Self::Symbolic(spec) => {
                let mut mode = base & 0o7777;
                for clause in spec.split(',') {
                    let Some(op_at) = clause.find(['+', '-', '=']) else {
                        continue;
                    };
                    let (who, rest) = clause.split_at(op_at);
                    let op = rest.as_bytes()[0];
                    let who = if who.is_empty() { "a" } else { who };
                    let mut mask = 0;
                    for w in who.bytes() {
                        mask |= match w {
                            b'u' => 0o4700,
                            b'g' => 0o2070,
                            b'o' => 0o1007,
                            _ => 0o7777,
                        };
                    }
                    let mut bits = 0;
                    for p in rest[1..].bytes() {
                        bits |= match p {
                            b'r' => 0o444,
                            b'w' => 0o222,
                            b'x' => 0o111,
                            b'X' if is_dir || base & 0o111 != 0 => 0o111,
                            b's' => 0o6000,
                            b't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & mask;
                    mode = match op {
                        b'+' => mode | bits,
                        b'-' => mode & !bits,
                        _ => (mode & !mask) | bits,
                    };
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::source::{ContextTree, IncludeAll};

    #[test]
    fn owners_resolve_from_the_trees_passwd_and_group() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        fs_err::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs_err::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\napp:x:1001:\n",
        )
        .unwrap();
        let tree = ContextTree::new(dir.path(), IncludeAll);
        assert_eq!(resolve_chown("app", &tree).unwrap(), (1000, 1000));
        assert_eq!(resolve_chown("app:staff", &tree).unwrap(), (1000, 50));
        assert_eq!(resolve_chown("1234:app", &tree).unwrap(), (1234, 1001));
        assert_eq!(resolve_chown("42", &tree).unwrap(), (42, 42));
        assert!(matches!(
            resolve_chown("nobody", &tree),
            Err(OwnerError::NoSuchUser { .. })
        ));
        assert!(matches!(
            resolve_chown("app:wheel", &tree),
            Err(OwnerError::NoSuchGroup { .. })
        ));
        assert!(matches!(
            resolve_chown(":x", &tree),
            Err(OwnerError::Invalid { .. })
        ));
    }

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(parse_chmod("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(parse_chmod("0644").unwrap().apply(0o777, false), 0o644);
        assert_eq!(parse_chmod("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(parse_chmod("go-w").unwrap().apply(0o666, false), 0o644);
        assert_eq!(parse_chmod("a=r").unwrap().apply(0o777, false), 0o444);
        assert_eq!(parse_chmod("a+X").unwrap().apply(0o644, true), 0o755);
        assert_eq!(parse_chmod("a+X").unwrap().apply(0o644, false), 0o644);
        assert!(parse_chmod("99").is_err());
        assert!(parse_chmod("bogus").is_err());
        assert!(parse_chmod("17777").is_err());
    }
}
