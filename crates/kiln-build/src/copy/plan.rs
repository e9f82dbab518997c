//! COPY/ADD source selection and destination mapping, with BuildKit's rules:
//! - sources are relative to the tree root (`..` never leaves it); wildcards (`*`, `?`,
//!   `[…]`) match one path component each, like Go's `filepath.Match`;
//! - a non-wildcard source follows symlinks inside the tree (BuildKit `FollowSymlinks`);
//! - a directory source copies its *contents*; with `--parents` the source path is kept;
//! - several sources need a destination ending in `/`; a destination that ends in `/` or is
//!   an existing directory receives files by their base name, otherwise it is the file path;
//! - owners are 0:0 for the build context and preserved for `--from` sources unless
//!   `--chown`; `--chmod` sets the mode of every copied file and directory; missing parents of
//!   the destination are created (owned by the `--chown` user, like BuildKit's MkdirAll).

use std::collections::HashMap;
use std::io;
use std::sync::{Condvar, Mutex, PoisonError};

use kiln_dockerfile::class_char;

use crate::copy::owners::Chmod;
use crate::copy::source::{Entry, EntryKind, SourceTree, clean_rel, split};

/// Why a COPY cannot be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// A source does not exist (or is excluded by `.dockerignore`).
    #[error(
        "COPY source `{source_path}` not found in the {tree}; check the path, and that `.dockerignore` does not exclude it"
    )]
    NotFound {
        /// The source as written (after expansion).
        source_path: String,
        /// Which tree was searched.
        tree: String,
    },
    /// Several sources but the destination is not a directory.
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a /: `{dest}`"
    )]
    DestNotDir {
        /// The destination as written.
        dest: String,
    },
    /// A bad `--exclude` pattern.
    #[error("invalid --exclude pattern `{pattern}`: {reason}")]
    BadExclude {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Reading the source tree failed.
    #[error("reading `{path}` from the {tree}: {source}")]
    Io {
        /// The path being read.
        path: String,
        /// The tree.
        tree: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Owner and mode overrides of a COPY.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CopyAttrs {
    /// `--chown` resolved to numbers.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<Chmod>,
    /// Keep source owners when no `--chown` (true for `--from` sources, false for the context).
    pub keep_owners: bool,
}

/// Everything needed to plan one COPY.
#[derive(Debug, Clone)]
pub(crate) struct CopyRequest<'a> {
    /// Sources after expansion, as written.
    pub sources: &'a [String],
    /// Absolute destination after expansion and WORKDIR joining; a trailing `/` is kept.
    pub dest: &'a str,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: &'a [String],
    /// Owners and modes.
    pub attrs: CopyAttrs,
}

/// One entry of the resulting layer.
#[derive(Debug, Clone)]
pub(crate) struct CopyItem {
    /// Absolute path in the image, without a trailing slash.
    pub dest: String,
    /// The source entry (kind, host path, mtime); for created parents, synthesized.
    pub source: Entry,
    /// The entry's path relative to the source tree's root (`app/main.py`); empty for
    /// created parents. Miss explanations name files by it.
    pub source_path: String,
    /// Final mode bits.
    pub mode: u32,
    /// Final owner.
    pub uid: u32,
    /// Final group.
    pub gid: u32,
    /// Whether this is a parent directory created for the destination.
    pub is_created_parent: bool,
}

/// A planned COPY: its entries sorted by destination path, one per path.
///
/// A sorted vector, not a map: a COPY of a large context plans 20k entries on every build,
/// cache hit or not, and a map keyed by a second copy of each path, with the entries in
/// half-full nodes, was a third of the time and most of the memory of that plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyPlan {
    items: Vec<CopyItem>,
}

impl CopyPlan {
    /// The entries, sorted by destination path (a directory before what it holds).
    pub(crate) fn items(&self) -> &[CopyItem] {
        &self.items
    }

    /// The entry for the destination path `dest`.
    pub(crate) fn get(&self, dest: &str) -> Option<&CopyItem> {
        self.items
            .binary_search_by(|i| i.dest.as_str().cmp(dest))
            .ok()
            .map(|i| &self.items[i])
    }

    /// Whether the plan writes `dest`.
    pub(crate) fn contains(&self, dest: &str) -> bool {
        self.get(dest).is_some()
    }

    /// How many entries it writes.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The destination paths, sorted.
    pub(crate) fn dests(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.items.iter().map(|i| i.dest.as_str())
    }

    /// Sorts entries added in any order, keeping the last one added for a path (as
    /// inserting into a map would).
    fn sort_dedup(&mut self) {
        // Stable: entries for one path stay in the order they were added.
        self.items.sort_by(|a, b| a.dest.cmp(&b.dest));
        let mut kept = 0;
        for i in 0..self.items.len() {
            if self
                .items
                .get(i + 1)
                .is_some_and(|next| next.dest == self.items[i].dest)
            {
                continue;
            }
            self.items.swap(kept, i);
            kept += 1;
        }
        self.items.truncate(kept);
    }
}

/// Whether a component contains glob syntax.
pub(crate) fn has_wildcard(path: &str) -> bool {
    path.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Matches one path component against a `filepath.Match`-style pattern (`*`, `?`, `[…]`,
/// `[^…]`/`[!…]`, `\` escapes). A malformed class matches nothing.
///
/// `name` is an escaped name (see [`kiln_dockerfile::encode_name`]). As in Go, where a byte
/// that is not UTF-8 decodes to a one-byte `RuneError`, such a byte is one character: `?`
/// and `*` match it, a class compares it as U+FFFD, and a literal in the pattern (UTF-8
/// text) never equals it.
pub(crate) fn match_component(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

fn glob(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p[pi..], class_char(n[ni])) {
                        if matched {
                            pi += next;
                            ni += 1;
                            continue;
                        }
                    } else {
                        return false;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {}
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (`[` …). Returns (matched, length of
/// the class in `p`), or `None` for a malformed class.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(p.get(i), Some('^' | '!'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &ch = p.get(i)?;
        if ch == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&x| x != ']') {
            i += 1;
            let h = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            h
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

fn io_err(tree: &dyn SourceTree, path: &str, source: io::Error) -> CopyError {
    CopyError::Io {
        path: path.to_owned(),
        tree: tree.describe(),
        source,
    }
}

/// Expands a wildcard source to the matching paths (sorted), component by component.
fn expand_wildcard(tree: &dyn SourceTree, pattern: &str) -> Result<Vec<String>, CopyError> {
    let mut current = vec![String::new()];
    for component in split(pattern) {
        let mut next = Vec::new();
        for base in &current {
            if has_wildcard(component) {
                let entry = tree.lookup(base).map_err(|e| io_err(tree, base, e))?;
                if !entry.is_some_and(|e| e.is_dir()) {
                    continue;
                }
                for name in tree.read_dir(base).map_err(|e| io_err(tree, base, e))? {
                    if match_component(component, &name) {
                        next.push(join(base, &name));
                    }
                }
            } else {
                let path = join(base, component);
                if tree
                    .lookup(&path)
                    .map_err(|e| io_err(tree, &path, e))?
                    .is_some()
                {
                    next.push(path);
                }
            }
        }
        current = next;
    }
    current.sort();
    Ok(current)
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}/{name}")
    }
}

fn join_abs(dir: &str, rel: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if rel.is_empty() {
        if dir.is_empty() {
            "/".to_owned()
        } else {
            dir.to_owned()
        }
    } else {
        format!("{dir}/{rel}")
    }
}

/// A compiled list of `--exclude` patterns.
struct Excludes(Vec<Vec<String>>);

impl Excludes {
    fn new(patterns: &[String]) -> Self {
        Self(
            patterns
                .iter()
                .map(|p| split(&clean_rel(p)).map(str::to_owned).collect())
                .collect(),
        )
    }

    /// Whether `rel` (relative to the copied source) or any of its parents matches.
    fn excludes(&self, rel: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let parts: Vec<&str> = split(rel).collect();
        self.0.iter().any(|pat| {
            (1..=parts.len()).any(|n| path_match(pat, &parts[..n]))
                || (pat.len() == 1 && parts.iter().any(|c| match_component(&pat[0], c)))
        })
    }
}

/// Matches path components against pattern components; `**` matches any number of them.
fn path_match(pat: &[String], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=parts.len()).any(|skip| path_match(rest, &parts[skip..]))
        }
        Some((first, rest)) => parts
            .split_first()
            .is_some_and(|(p, more)| match_component(first, p) && path_match(rest, more)),
    }
}

/// Plans a COPY from `tree`. `dest_is_dir` answers whether an absolute path is an existing
/// directory in the destination stage.
pub(crate) fn plan_copy(
    tree: &dyn SourceTree,
    req: &CopyRequest<'_>,
    dest_is_dir: &dyn Fn(&str) -> bool,
) -> Result<CopyPlan, CopyError> {
    // (cleaned path as matched, resolved, entry, `--parents` pivot prefix)
    let mut matches: Vec<(String, String, Entry, Option<String>)> = Vec::new();
    let mut any_wildcard = false;
    for source in req.sources {
        let cleaned = clean_rel(source);
        // Cleaning drops a `/./` pivot, so it is taken from the source as written.
        let pivot = source
            .split_once("/./")
            .map(|(before, _)| clean_rel(before));
        if has_wildcard(&cleaned) {
            any_wildcard = true;
            let found = expand_wildcard(tree, &cleaned)?;
            if found.is_empty() {
                return Err(CopyError::NotFound {
                    source_path: source.clone(),
                    tree: tree.describe(),
                });
            }
            for path in found {
                let entry = tree
                    .lookup(&path)
                    .map_err(|e| io_err(tree, &path, e))?
                    .ok_or_else(|| CopyError::NotFound {
                        source_path: path.clone(),
                        tree: tree.describe(),
                    })?;
                matches.push((path.clone(), path, entry, pivot.clone()));
            }
        } else {
            let (resolved, entry) = tree
                .resolve(&cleaned)
                .map_err(|e| io_err(tree, &cleaned, e))?
                .ok_or_else(|| CopyError::NotFound {
                    source_path: source.clone(),
                    tree: tree.describe(),
                })?;
            matches.push((cleaned, resolved, entry, pivot));
        }
    }

    let dest_has_slash = req.dest.ends_with('/');
    let dest = {
        let d = req.dest.trim_end_matches('/');
        if d.is_empty() {
            "/".to_owned()
        } else {
            d.to_owned()
        }
    };
    if req.sources.len() > 1 && !dest_has_slash && !dest_is_dir(&dest) {
        return Err(CopyError::DestNotDir {
            dest: req.dest.to_owned(),
        });
    }
    let into_dir = dest_has_slash || dest_is_dir(&dest) || (any_wildcard && matches.len() > 1);

    let excludes = Excludes::new(req.exclude);
    let mut plan = CopyPlan::default();
    let owner = |e: &Entry| match req.attrs.chown {
        Some(ids) => ids,
        None if req.attrs.keep_owners => (e.uid, e.gid),
        None => (0, 0),
    };
    let mode_of = |e: &Entry| match (&req.attrs.chmod, &e.kind) {
        (_, EntryKind::Symlink(_)) => 0o777,
        (Some(m), _) => m.apply(e.mode, e.is_dir()),
        (None, _) => e.mode,
    };
    let add = |plan: &mut CopyPlan, dest: String, source_path: String, entry: Entry| {
        let (uid, gid) = owner(&entry);
        let mode = mode_of(&entry);
        plan.items.push(CopyItem {
            dest,
            source: entry,
            source_path,
            mode,
            uid,
            gid,
            is_created_parent: false,
        });
    };

    for (written, resolved, entry, pivot) in matches {
        let base_dest = if req.parents {
            // --parents keeps the source path, or its part after a `/./` pivot.
            let rel = pivot_rel(&written, pivot.as_deref());
            join_abs(&dest, &rel)
        } else if entry.is_dir() {
            dest.clone()
        } else if into_dir {
            let name = resolved.rsplit('/').next().unwrap_or(&resolved);
            join_abs(&dest, name)
        } else {
            dest.clone()
        };
        if entry.is_dir() {
            if !req.parents || !excludes.excludes("") {
                add(
                    &mut plan,
                    base_dest.clone(),
                    resolved.clone(),
                    entry.clone(),
                );
            }
            let mut listings = list_dirs(tree, &resolved, "", &excludes)?;
            plan.items
                .reserve(listings.values().map(Vec::len).sum::<usize>());
            emit(&mut listings, "", &mut |rel, e| {
                let source_path = if resolved.is_empty() {
                    rel.to_owned()
                } else {
                    format!("{resolved}/{rel}")
                };
                add(&mut plan, join_abs(&base_dest, rel), source_path, e);
            });
        } else if !excludes.excludes(resolved.rsplit('/').next().unwrap_or(&resolved)) {
            add(&mut plan, base_dest, resolved, entry);
        }
    }

    plan.sort_dedup();

    // Parents of every item that are not themselves copied are created (if missing in the
    // destination stage), owned like BuildKit's MkdirAll for the copy.
    let mut parents = std::collections::BTreeSet::new();
    for_each_new_ancestor(plan.dests(), |parent| {
        if !plan.contains(parent) && !dest_is_dir(parent) {
            parents.insert(parent);
        }
    });
    let (puid, pgid) = req.attrs.chown.unwrap_or((0, 0));
    let created: Vec<CopyItem> = parents
        .into_iter()
        .map(|parent| CopyItem {
            dest: parent.to_owned(),
            source: synthetic_dir(),
            source_path: String::new(),
            mode: 0o755,
            uid: puid,
            gid: pgid,
            is_created_parent: true,
        })
        .collect();
    if !created.is_empty() {
        plan.items.extend(created);
        plan.sort_dedup();
    }
    Ok(plan)
}

/// Calls `visit` with the ancestors (`/a/b`, `/a` for `/a/b/c`; never `/`) of each of the
/// absolute `paths`, but stops a path's walk at the previous path's parent, whose ancestors
/// that path's walk has seen. In path order, a run of siblings is walked once.
pub(crate) fn for_each_new_ancestor<'a>(
    paths: impl Iterator<Item = &'a str>,
    mut visit: impl FnMut(&'a str),
) {
    let mut last_parent = None;
    for path in paths {
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if parent.is_empty() || last_parent == Some(parent) {
                break;
            }
            visit(parent);
            p = parent;
        }
        last_parent = path.rsplit_once('/').map(|(parent, _)| parent);
    }
}

/// The part of a `--parents` match that is kept: what follows the pivot prefix (the cleaned
/// source before its `/./`, BuildKit's pivot) if any, else the whole cleaned path.
fn pivot_rel(matched: &str, pivot: Option<&str>) -> String {
    let matched = clean_rel(matched);
    match pivot {
        Some(prefix) if !prefix.is_empty() => matched
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map_or_else(|| matched.clone(), str::to_owned),
        _ => matched,
    }
}

fn synthetic_dir() -> Entry {
    Entry {
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        ctime: 0,
        ctime_nsec: 0,
        dev: 0,
        ino: 0,
        host_path: std::path::PathBuf::new(),
        xattrs: Vec::new(),
    }
}

/// Visits the listing of `rel` depth first, each directory before what it holds.
fn emit(
    listings: &mut HashMap<String, Vec<(String, Entry)>>,
    rel: &str,
    visit: &mut dyn FnMut(&str, Entry),
) {
    let Some(children) = listings.remove(rel) else {
        return;
    };
    for (child_rel, entry) in children {
        let is_dir = entry.is_dir();
        visit(&child_rel, entry);
        if is_dir {
            emit(listings, &child_rel, visit);
        }
    }
}

/// The visible children (relative path, entry) of `rel` and of every directory below it,
/// keyed by directory. Directories are listed by a few threads at once: a COPY of a large
/// context stats every entry on every build, cache hit or not.
fn list_dirs(
    tree: &dyn SourceTree,
    root: &str,
    rel: &str,
    excludes: &Excludes,
) -> Result<HashMap<String, Vec<(String, Entry)>>, CopyError> {
    struct Work {
        pending: Vec<String>,
        busy: usize,
        listings: HashMap<String, Vec<(String, Entry)>>,
        error: Option<CopyError>,
    }
    let list_one = |dir_rel: &str| -> Result<Vec<(String, Entry)>, CopyError> {
        let dir = join(root, dir_rel);
        let listed = tree
            .read_dir_entries(&dir)
            .map_err(|e| io_err(tree, &dir, e))?;
        let mut children = Vec::with_capacity(listed.len());
        for (name, entry) in listed {
            let child_rel = join(dir_rel, &name);
            if !excludes.excludes(&child_rel) {
                children.push((child_rel, entry));
            }
        }
        Ok(children)
    };
    let work = Mutex::new(Work {
        pending: vec![rel.to_owned()],
        busy: 0,
        listings: HashMap::new(),
        error: None,
    });
    let wake = Condvar::new();
    let worker = || {
        let mut guard = work.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if guard.error.is_some() {
                return;
            }
            let Some(dir_rel) = guard.pending.pop() else {
                if guard.busy == 0 {
                    wake.notify_all();
                    return;
                }
                guard = wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            guard.busy += 1;
            drop(guard);
            let listed = list_one(&dir_rel);
            guard = work.lock().unwrap_or_else(PoisonError::into_inner);
            guard.busy -= 1;
            match listed {
                Ok(children) => {
                    let before = guard.pending.len();
                    guard.pending.extend(
                        children
                            .iter()
                            .filter(|(_, e)| e.is_dir())
                            .map(|(r, _)| r.clone()),
                    );
                    guard.listings.insert(dir_rel, children);
                    if guard.pending.len() > before || guard.pending.is_empty() {
                        wake.notify_all();
                    }
                }
                Err(e) => {
                    guard.error.get_or_insert(e);
                    wake.notify_all();
                }
            }
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 4);
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        worker();
    });
    let work = work.into_inner().unwrap_or_else(PoisonError::into_inner);
    match work.error {
        Some(e) => Err(e),
        None => Ok(work.listings),
    }
}

#[cfg(test)]
mod against_trees;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_match_like_filepath_match() {
        assert!(match_component("*.py", "main.py"));
        assert!(!match_component("*.py", "main.pyc"));
        assert!(match_component("a?c", "abc"));
        assert!(match_component("[a-c]x", "bx"));
        assert!(!match_component("[^a-c]x", "bx"));
        assert!(match_component("\\*", "*"));
        assert!(!match_component("[", "["));
        assert!(match_component("*", ""));
        assert!(match_component("re*me*", "readme.md"));
    }

    #[test]
    fn components_match_names_with_invalid_utf8_by_byte() {
        use kiln_dockerfile::encode_name;
        let name = encode_name(b"bad\xff\xfename");
        assert!(match_component("bad*", &name));
        assert!(match_component("*name", &name));
        assert!(match_component("bad??name", &name));
        assert!(!match_component("bad?name", &name));
        assert!(match_component("bad[^a][!a]name", &name));
        assert!(!match_component("bad[a-z]?name", &name));
        // filepath.Match compares literals byte by byte: U+FFFD is not the byte 0xff.
        assert!(!match_component("bad\u{fffd}\u{fffd}name", &name));
        assert!(match_component(&name, &name));
        assert!(!match_component(&name, &encode_name(b"bad\xfe\xffname")));
    }

    #[test]
    fn exclude_patterns_match_paths_and_parents() {
        let ex = Excludes::new(&["*.pyc".into(), "tests".into(), "**/cache".into()]);
        assert!(ex.excludes("a.pyc"));
        assert!(ex.excludes("pkg/a.pyc"));
        assert!(ex.excludes("tests/test_x.py"));
        assert!(ex.excludes("x/y/cache"));
        assert!(!ex.excludes("pkg/a.py"));
    }
}
