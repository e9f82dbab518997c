//! Git sources — a git build context (`kiln build https://host/repo.git#v1:dir`) and
//! `ADD <git URL> <dest>` — detected as BuildKit detects them (dockerfile's
//! `dfgitutil.ParseGitRef` over `util/gitutil.ParseURL`), and checked out with the `git`
//! binary, which handles every transport, ssh configuration, credential helper and submodule
//! the way the user's CI already has them set up.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Variables of the caller's environment that would point `git` at another repository
/// than the checkout's (a build started from a git hook has them).
const REPOSITORY_VARS: [&str; 9] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
];

/// Lines of git's stderr quoted in an error.
const STDERR_TAIL_LINES: usize = 10;

/// A git source: the repository, the ref to check out, the directory of it to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// What `git` fetches from (`https://host/repo.git`, `git@host:repo.git`), without the
    /// fragment and query.
    pub remote: String,
    /// A branch, a tag, a full ref name or a commit sha; empty for the remote's HEAD.
    pub reference: String,
    /// The directory of the checkout to use (`dir/sub`, no leading `/`); empty for the root.
    pub subdir: String,
    /// `?keep-git-dir=`: keep the `.git` directory.
    pub keep_git_dir: Option<bool>,
    /// `?submodules=`: check out submodules (the default).
    pub submodules: Option<bool>,
    /// `?checksum=` / `?commit=`: the commit (or a prefix of it) the ref must resolve to.
    pub checksum: Option<String>,
}

/// Why a git source cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// A git URL whose query BuildKit would refuse.
    #[error("invalid git URL {url}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// No `git` in `PATH`.
    #[error(
        "building from the git repository {remote} needs the `git` program, which is not installed or not in PATH: install git (e.g. `apt-get install git`)"
    )]
    NotInstalled {
        /// The repository.
        remote: String,
    },
    /// `git` could not be started or waited for.
    #[error("running git for {remote}: {source}")]
    Spawn {
        /// The repository.
        remote: String,
        /// Why.
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("git {action} of {remote} failed ({status}): {stderr}")]
    Failed {
        /// What was being done (`ls-remote`, `fetch v1.2`).
        action: String,
        /// The repository.
        remote: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its stderr.
        stderr: String,
    },
    /// The ref is not on the remote.
    #[error("git ref `{reference}` not found in {remote}")]
    RefNotFound {
        /// The repository.
        remote: String,
        /// The ref.
        reference: String,
    },
    /// `--checksum` (or `?checksum=`) is not a hex commit sha.
    #[error("invalid checksum {checksum} for git URL {remote}, expected hex commit hash")]
    InvalidChecksum {
        /// The repository.
        remote: String,
        /// The checksum given.
        checksum: String,
    },
    /// The ref resolved to another commit than the checksum.
    #[error("git source {remote}#{reference}: expected checksum to match {expected}, got {actual}")]
    ChecksumMismatch {
        /// The repository.
        remote: String,
        /// The ref.
        reference: String,
        /// The checksum given.
        expected: String,
        /// The commit the ref resolved to.
        actual: String,
    },
    /// The ref moved between its resolution and the fetch.
    #[error(
        "git source {remote}#{reference} moved while it was fetched (resolved to {expected}, fetched {actual}); build again"
    )]
    Moved {
        /// The repository.
        remote: String,
        /// The ref.
        reference: String,
        /// What `ls-remote` said.
        expected: String,
        /// What was fetched.
        actual: String,
    },
    /// The subdirectory is not in the checkout.
    #[error("git source {remote}#{reference}: subdirectory `{subdir}` does not exist")]
    NoSubdir {
        /// The repository.
        remote: String,
        /// The ref.
        reference: String,
        /// The subdirectory.
        subdir: String,
    },
    /// The checkout's files could not be handled.
    #[error("git checkout of {remote} in {}: {source}", .path.display())]
    Checkout {
        /// The repository.
        remote: String,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl GitRef {
    /// Parses `source` as a git source when BuildKit would (`Ok(None)` when it is not one):
    /// `http(s)://…/repo.git`, `git://…`, `ssh://…`, scp-style `user@host:path`, and
    /// `github.com/owner/repo`, each with an optional `#ref[:subdir]` fragment and
    /// BuildKit's query (`?ref=`, `tag=`, `branch=`, `subdir=`, `checksum=`, `keep-git-dir=`,
    /// `submodules=`).
    pub fn parse(source: &str) -> Result<Option<Self>, GitError> {
        // dfgitutil.ParseGitRef: a relative path is never a git source.
        if source.starts_with("./") || source.starts_with("../") {
            return Ok(None);
        }
        let invalid = |reason: String| GitError::InvalidUrl {
            url: source.to_owned(),
            reason,
        };
        let (remote, query, fragment) = if let Some(rest) = source.strip_prefix("github.com/") {
            // Deprecated but accepted: `github.com/owner/repo` is fetched over https.
            let url = reqwest::Url::parse(&format!("https://github.com/{rest}"))
                .map_err(|e| invalid(e.to_string()))?;
            url_parts(&url)
        } else if let Some(scheme) = scheme_of(source) {
            let scheme = scheme.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
                return Ok(None);
            }
            let Ok(url) = reqwest::Url::parse(source) else {
                return Ok(None);
            };
            // An http(s) URL is a repository only when its path ends in `.git`; otherwise it
            // is a file to download.
            #[expect(
                clippy::case_sensitive_file_extension_comparisons,
                reason = "BuildKit's strings.HasSuffix(path, \".git\") is case-sensitive"
            )]
            let is_repository_path = url.path().ends_with(".git");
            if (scheme == "http" || scheme == "https") && !is_repository_path {
                return Ok(None);
            }
            url_parts(&url)
        } else if let Some((remote, query, fragment)) = scp_style(source) {
            (remote, query, fragment)
        } else {
            return Ok(None);
        };
        let mut git = Self {
            remote,
            reference: String::new(),
            subdir: String::new(),
            keep_git_dir: None,
            submodules: None,
            checksum: None,
        };
        if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
            let (reference, subdir) = fragment.split_once(':').unwrap_or((&fragment, ""));
            reference.clone_into(&mut git.reference);
            git.subdir = clean_subdir(subdir);
        }
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            git.load_query(&query).map_err(invalid)?;
        }
        // No ref name starts with `-` (git check-ref-format); one that does would be read as
        // an option of `git fetch`.
        if git.reference.starts_with('-') {
            return Err(invalid(format!(
                "`{}` is not a git ref (a ref cannot start with `-`)",
                git.reference
            )));
        }
        Ok(Some(git))
    }

    /// BuildKit's `loadQuery`: each key once, refs that agree with the fragment's.
    fn load_query(&mut self, query: &str) -> Result<(), String> {
        let mut tag = None;
        let mut branch = None;
        let mut seen = std::collections::BTreeSet::new();
        for (key, value) in reqwest::Url::parse(&format!("x:?{query}"))
            .map_err(|e| e.to_string())?
            .query_pairs()
        {
            if !seen.insert(key.to_string()) {
                return Err(format!("query {key:?} has multiple values"));
            }
            let flag = |value: &str| -> Result<bool, String> {
                match value {
                    "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                    other => Err(format!("invalid {key} value: {other:?}")),
                }
            };
            if value.is_empty() && !matches!(&*key, "submodules" | "keep-git-dir") {
                return Err(format!("query {key:?} has no value"));
            }
            match &*key {
                "ref" => set_agreeing("ref", &mut self.reference, &value)?,
                "tag" => tag = Some(prefixed("refs/tags/", &value)),
                "branch" => branch = Some(prefixed("refs/heads/", &value)),
                "subdir" => set_agreeing("subdir", &mut self.subdir, &clean_subdir(&value))?,
                "checksum" | "commit" => self.checksum = Some(value.into_owned()),
                "keep-git-dir" => self.keep_git_dir = Some(flag(&value)?),
                "submodules" => self.submodules = Some(flag(&value)?),
                other => return Err(format!("unexpected query {other:?}")),
            }
        }
        if tag.is_some() && branch.is_some() {
            return Err("branch conflicts with tag".to_owned());
        }
        if let Some(reference) = tag.or(branch) {
            set_agreeing("ref", &mut self.reference, &reference)?;
        }
        Ok(())
    }

    /// How the source is named in messages: `remote#ref:subdir`.
    pub fn display_name(&self) -> String {
        let mut name = self.remote.clone();
        if !self.reference.is_empty() || !self.subdir.is_empty() {
            name.push('#');
            name.push_str(&self.reference);
            if !self.subdir.is_empty() {
                name.push(':');
                name.push_str(&self.subdir);
            }
        }
        name
    }

    /// The commit the ref names now, asked of the remote (`git ls-remote`) without fetching
    /// anything; a ref that is already a commit sha is its own answer. Checked against
    /// `checksum` (BuildKit: the commit must start with it).
    pub(crate) fn resolve_commit(&self, checksum: Option<&str>) -> Result<String, GitError> {
        let checksum = checksum.or(self.checksum.as_deref());
        if let Some(checksum) = checksum
            && (checksum.is_empty() || !checksum.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(GitError::InvalidChecksum {
                remote: self.remote.clone(),
                checksum: checksum.to_owned(),
            });
        }
        let commit = if is_commit_sha(&self.reference) {
            self.reference.to_ascii_lowercase()
        } else {
            let wanted = if self.reference.is_empty() {
                "HEAD"
            } else {
                &self.reference
            };
            // A pattern matches a ref's tail by whole components: an annotated tag's peeled
            // line (`refs/tags/v1^{}`) is only listed when asked for too.
            let peeled = format!("{wanted}^{{}}");
            let output = run_git(
                &self.remote,
                "ls-remote",
                None,
                [
                    OsStr::new("ls-remote"),
                    OsStr::new("--"),
                    OsStr::new(&self.remote),
                    OsStr::new(wanted),
                    OsStr::new(&peeled),
                ],
            )?;
            pick_ref(&output, wanted).ok_or_else(|| GitError::RefNotFound {
                remote: self.remote.clone(),
                reference: wanted.to_owned(),
            })?
        };
        if let Some(checksum) = checksum
            && !commit.starts_with(&checksum.to_ascii_lowercase())
        {
            return Err(GitError::ChecksumMismatch {
                remote: self.remote.clone(),
                reference: self.reference.clone(),
                expected: checksum.to_owned(),
                actual: commit,
            });
        }
        Ok(commit)
    }

    /// Checks the ref out into `dir` (an empty directory): shallow for a branch or a tag, a
    /// full fetch for a commit sha; submodules recursively unless `?submodules=false`; `.git`
    /// removed unless `keep_git_dir`. With `expected`, a fetch of another commit (the branch
    /// moved since [`GitRef::resolve_commit`]) is an error. Returns the commit checked out.
    pub(crate) fn checkout(
        &self,
        dir: &Path,
        expected: Option<&str>,
        keep_git_dir: bool,
    ) -> Result<String, GitError> {
        let remote = &self.remote;
        let git = |action: &str, args: &[&OsStr]| {
            run_git(remote, action, Some(dir), args.iter().copied())
        };
        git(
            "init",
            &[
                OsStr::new("-c"),
                OsStr::new("init.defaultBranch=kiln"),
                OsStr::new("init"),
                OsStr::new("-q"),
            ],
        )?;
        git(
            "remote add",
            &[
                OsStr::new("remote"),
                OsStr::new("add"),
                OsStr::new("origin"),
                OsStr::new(remote),
            ],
        )?;
        let target = if is_commit_sha(&self.reference) {
            // A commit may be on no branch tip: fetch everything (BuildKit does the same when
            // the server refuses a fetch by sha).
            git(
                &format!("fetch of {}", self.reference),
                &[
                    OsStr::new("fetch"),
                    OsStr::new("-q"),
                    OsStr::new("--tags"),
                    OsStr::new("--recurse-submodules=no"),
                    OsStr::new("origin"),
                    OsStr::new("+refs/heads/*:refs/remotes/origin/*"),
                ],
            )?;
            self.reference.clone()
        } else {
            let wanted = if self.reference.is_empty() {
                "HEAD"
            } else {
                &self.reference
            };
            git(
                &format!("fetch of {wanted}"),
                &[
                    OsStr::new("fetch"),
                    OsStr::new("-q"),
                    OsStr::new("--depth=1"),
                    OsStr::new("--no-tags"),
                    OsStr::new("--recurse-submodules=no"),
                    OsStr::new("origin"),
                    OsStr::new(wanted),
                ],
            )?;
            "FETCH_HEAD".to_owned()
        };
        git(
            &format!("checkout of {target}"),
            &[
                OsStr::new("-c"),
                OsStr::new("advice.detachedHead=false"),
                OsStr::new("checkout"),
                OsStr::new("-q"),
                OsStr::new("--detach"),
                OsStr::new(&target),
                OsStr::new("--"),
            ],
        )?;
        let commit = git(
            "rev-parse",
            &[OsStr::new("rev-parse"), OsStr::new("HEAD^{commit}")],
        )?
        .trim()
        .to_owned();
        if let Some(expected) = expected
            && expected != commit
        {
            return Err(GitError::Moved {
                remote: remote.clone(),
                reference: self.reference.clone(),
                expected: expected.to_owned(),
                actual: commit,
            });
        }
        if self.submodules != Some(false) {
            git(
                "submodule update",
                &[
                    OsStr::new("submodule"),
                    OsStr::new("update"),
                    OsStr::new("-q"),
                    OsStr::new("--init"),
                    OsStr::new("--recursive"),
                ],
            )?;
        }
        if !keep_git_dir {
            remove_git_dirs(dir).map_err(|(path, source)| GitError::Checkout {
                remote: remote.clone(),
                path,
                source,
            })?;
        }
        Ok(commit)
    }

    /// The directory of a checkout at `dir` this source names (its subdir), which must exist.
    pub(crate) fn subdir_of(&self, dir: &Path) -> Result<PathBuf, GitError> {
        if self.subdir.is_empty() {
            return Ok(dir.to_path_buf());
        }
        let path = dir.join(&self.subdir);
        // The subdir must be a directory of the checkout, not a symlink out of it.
        let inside = fs_err::canonicalize(&path)
            .ok()
            .zip(fs_err::canonicalize(dir).ok())
            .is_some_and(|(path, dir)| path.starts_with(dir) && path.is_dir());
        if !inside {
            return Err(GitError::NoSubdir {
                remote: self.remote.clone(),
                reference: self.reference.clone(),
                subdir: self.subdir.clone(),
            });
        }
        Ok(path)
    }
}

/// `scheme` of `scheme://…` (BuildKit's `^[a-zA-Z0-9]+://`).
fn scheme_of(source: &str) -> Option<&str> {
    let (scheme, _) = source.split_once("://")?;
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(scheme)
}

/// The remote (without query and fragment), the query and the fragment of a URL.
fn url_parts(url: &reqwest::Url) -> (String, Option<String>, Option<String>) {
    let mut remote = url.clone();
    remote.set_fragment(None);
    remote.set_query(None);
    (
        remote.to_string(),
        url.query().map(str::to_owned),
        url.fragment().map(str::to_owned),
    )
}

/// BuildKit's scp-style URL (`sshutil.gitSSHRegex`):
/// `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:\?(.*?))?(?:#(.*))?$`.
fn scp_style(source: &str) -> Option<(String, Option<String>, Option<String>)> {
    let (user, rest) = source.split_once('@')?;
    let (host, path) = rest.split_once(':')?;
    let is_user = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let is_host = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    if user.is_empty()
        || !user.bytes().all(is_user)
        || host.is_empty()
        || !host.bytes().all(is_host)
    {
        return None;
    }
    let (path, fragment) = match path.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment.to_owned())),
        None => (path, None),
    };
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (path, None),
    };
    Some((format!("{user}@{host}:{path}"), query, fragment))
}

/// `path.Join("/", subdir)` without the leading `/`.
fn clean_subdir(subdir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in subdir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn prefixed(prefix: &str, name: &str) -> String {
    if name.starts_with(prefix) {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    }
}

fn set_agreeing(what: &str, slot: &mut String, value: &str) -> Result<(), String> {
    if !slot.is_empty() && slot != value {
        return Err(format!("{what} conflicts: {slot:?} vs {value:?}"));
    }
    value.clone_into(slot);
    Ok(())
}

/// A full commit sha (SHA-1 or SHA-256 object format), as BuildKit's `gitutil.IsCommitSHA`.
fn is_commit_sha(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `wanted` names in `git ls-remote` output: an exact ref name first, then a
/// branch, then a tag (peeled: an annotated tag's `^{}` line is its commit).
fn pick_ref(ls_remote: &str, wanted: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> = ls_remote
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let find = |name: &str| {
        lines
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(sha, _)| (*sha).to_owned())
    };
    let tag = |name: &str| find(&format!("{name}^{{}}")).or_else(|| find(name));
    if wanted.starts_with("refs/tags/") {
        return tag(wanted);
    }
    find(wanted)
        .or_else(|| find(&format!("refs/heads/{wanted}")))
        .or_else(|| tag(&format!("refs/tags/{wanted}")))
}

/// `git ARGS…` (in `dir` when given) with a clean environment for what matters: no prompt
/// (a CI job has no one to answer), no inherited repository variables, stdin closed. Returns
/// stdout; a failure quotes the end of stderr.
fn run_git<'a>(
    remote: &str,
    action: &str,
    dir: Option<&Path>,
    args: impl IntoIterator<Item = &'a OsStr>,
) -> Result<String, GitError> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    for var in REPOSITORY_VARS {
        command.env_remove(var);
    }
    command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = command.output().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            GitError::NotInstalled {
                remote: remote.to_owned(),
            }
        } else {
            GitError::Spawn {
                remote: remote.to_owned(),
                source,
            }
        }
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        return Err(GitError::Failed {
            action: action.to_owned(),
            remote: remote.to_owned(),
            status: output.status,
            stderr: tail,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Removes every `.git` of a checkout: the repository's directory and the `.git` files of
/// its submodules (which point into it).
fn remove_git_dirs(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_entry(|e| {
        // Nothing below a `.git` is walked: it goes as a whole.
        e.depth() == 0 || e.file_name() != ".git" || {
            found.push(e.path().to_path_buf());
            false
        }
    }) {
        entry.map_err(|e| {
            let path = e
                .path()
                .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
            (path, std::io::Error::other(e.to_string()))
        })?;
    }
    for path in found {
        let removed = if fs_err::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            fs_err::remove_dir_all(&path)
        } else {
            fs_err::remove_file(&path)
        };
        removed.map_err(|e| (path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Option<GitRef> {
        GitRef::parse(source).unwrap()
    }

    #[test]
    fn git_urls_are_detected_as_buildkit_does() {
        let git = parse("https://github.com/moby/buildkit.git#v0.12:frontend").unwrap();
        assert_eq!(git.remote, "https://github.com/moby/buildkit.git");
        assert_eq!(git.reference, "v0.12");
        assert_eq!(git.subdir, "frontend");
        let git = parse("git@github.com:moby/buildkit.git#main").unwrap();
        assert_eq!(git.remote, "git@github.com:moby/buildkit.git");
        assert_eq!(git.reference, "main");
        let git = parse("github.com/moby/buildkit#main:/a/../b/").unwrap();
        assert_eq!(git.remote, "https://github.com/moby/buildkit");
        assert_eq!(git.subdir, "b");
        assert!(parse("git://127.0.0.1:9418/repo.git").is_some());
        assert!(parse("ssh://git@host/repo").is_some());
        assert!(parse("http://127.0.0.1:8080/repo.git#v1").is_some());
        // Not repositories: a file URL over http, a path, another scheme.
        assert!(parse("https://example.com/ctx.tar.gz").is_none());
        assert!(parse("http://127.0.0.1/repo").is_none());
        assert!(parse("./git@host:x").is_none());
        assert!(parse("ftp://host/repo.git").is_none());
        assert!(parse("ctx").is_none());
        assert!(parse("/abs/dir").is_none());
    }

    #[test]
    fn the_query_sets_refs_and_options_that_agree() {
        let git = parse("https://h/r.git?tag=v1&keep-git-dir=true&subdir=x").unwrap();
        assert_eq!(git.reference, "refs/tags/v1");
        assert_eq!(git.keep_git_dir, Some(true));
        assert_eq!(git.subdir, "x");
        let err = GitRef::parse("https://h/r.git?tag=v1&branch=b").unwrap_err();
        assert!(
            err.to_string().contains("branch conflicts with tag"),
            "{err}"
        );
        assert!(GitRef::parse("https://h/r.git#--upload-pack=x").is_err());
        let err = GitRef::parse("https://h/r.git?bogus=1").unwrap_err();
        assert!(err.to_string().contains("https://h/r.git?bogus=1"), "{err}");
    }

    #[test]
    fn ls_remote_lines_resolve_branches_then_peeled_tags() {
        let out = "aaa\trefs/heads/main\nbbb\trefs/tags/v1\nccc\trefs/tags/v1^{}\nddd\tHEAD\n";
        assert_eq!(pick_ref(out, "main").as_deref(), Some("aaa"));
        assert_eq!(pick_ref(out, "v1").as_deref(), Some("ccc"));
        assert_eq!(pick_ref(out, "refs/tags/v1").as_deref(), Some("ccc"));
        assert_eq!(pick_ref(out, "HEAD").as_deref(), Some("ddd"));
        assert_eq!(pick_ref(out, "nope"), None);
    }

    #[test]
    fn a_checksum_must_be_hex_and_a_prefix_of_the_commit() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let git = parse(&format!("https://h/r.git#{sha}")).unwrap();
        assert_eq!(git.resolve_commit(Some("0123456")).unwrap(), sha);
        let err = git.resolve_commit(Some("fff")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("expected checksum to match fff, got {sha}")),
            "{err}"
        );
        assert!(matches!(
            git.resolve_commit(Some("sha256:zz")),
            Err(GitError::InvalidChecksum { .. })
        ));
    }
}
