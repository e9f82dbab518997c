//! `USER` resolution against the image's `/etc/passwd` and `/etc/group`, following runc's
//! `user.GetExecUser` (what Docker and BuildKit use): a name must exist; a numeric uid need
//! not (gid 0, home `/`); an explicit group replaces the primary group and suppresses the
//! supplementary groups, otherwise the user's memberships in `/etc/group` are added.

use crate::error::UserError;

/// A resolved identity for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Home directory (for `HOME` when the environment has none).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || fields.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0],
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields.get(5).copied().unwrap_or("/"),
        })
    })
}

fn parse_group(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || fields.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: fields[0],
            gid: fields[2].parse().ok()?,
            members: fields
                .get(3)
                .map(|list| list.split(',').filter(|m| !m.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`) with the contents of the
/// image's `/etc/passwd` and `/etc/group` (empty strings when the files are missing).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let numeric_uid = user_part.parse::<u32>().ok();
    let matched = parse_passwd(passwd).find(|entry| match numeric_uid {
        Some(uid) => entry.uid == uid,
        None => entry.name == user_part,
    });
    let (uid, mut gid, home, name) = match (matched, numeric_uid) {
        (Some(entry), _) => (
            entry.uid,
            entry.gid,
            entry.home.to_owned(),
            Some(entry.name),
        ),
        (None, Some(uid)) => (uid, 0, "/".to_owned(), None),
        (None, None) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_owned(),
            });
        }
    };
    let mut groups = Vec::new();
    match group_part {
        Some(group_spec) => {
            let numeric_gid = group_spec.parse::<u32>().ok();
            let found = parse_group(group).find(|entry| match numeric_gid {
                Some(gid) => entry.gid == gid,
                None => entry.name == group_spec,
            });
            gid = match (found, numeric_gid) {
                (Some(entry), _) => entry.gid,
                (None, Some(gid)) => gid,
                (None, None) => {
                    return Err(UserError::UnknownGroup {
                        group: group_spec.to_owned(),
                    });
                }
            };
        }
        None => {
            if let Some(name) = name {
                groups = parse_group(group)
                    .filter(|entry| entry.members.contains(&name))
                    .map(|entry| entry.gid)
                    .collect();
                groups.dedup();
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\naudio:x:29:app\n";

    #[test]
    fn empty_user_is_root() {
        let user = resolve_user("", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid, user.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let user = resolve_user("app", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.groups, vec![10, 29]);
        assert_eq!(user.home, "/home/app");
    }

    #[test]
    fn explicit_group_drops_supplementary_groups() {
        let user = resolve_user("app:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid), (1000, 10));
        assert!(user.groups.is_empty());
    }

    #[test]
    fn unknown_numeric_ids_are_accepted() {
        let user = resolve_user("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!((user.uid, user.gid, user.home.as_str()), (4242, 4343, "/"));
        let user = resolve_user("4242", "", "").unwrap();
        assert_eq!((user.uid, user.gid), (4242, 0));
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = resolve_user("nobody", PASSWD, GROUP).unwrap_err();
        assert!(err.to_string().contains("nobody"), "{err}");
        let err = resolve_user("app:nogroup", PASSWD, GROUP).unwrap_err();
        assert!(err.to_string().contains("nogroup"), "{err}");
    }
}
