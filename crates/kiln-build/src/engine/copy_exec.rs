//! COPY/ADD and WORKDIR: plan the entries (kiln-build's `copy` rules), digest them for the
//! cache key, and materialize them into a staging directory that becomes the layer.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_dockerfile::encode_text;
use kiln_oci::{ChainId, Digest, ExtractOptions, Platform, extract_layer};
use kiln_plan::{AGGREGATE_INPUT_SUFFIX, CopyAction, KeyInputs, SourceRef, StageId};

use super::download::{fetch, is_git_source, is_http_url};
use super::error::{CopyStepError, StepError};
use super::local::Local;
use super::model::{LayerInfo, StageResult};
use crate::copy::digest::copy_plan_digest_listing;
use crate::copy::owners::{Chmod, parse_chmod, resolve_chown};
use crate::copy::source::{Entry, EntryKind, SourceTree, clean_rel, host_path};
use crate::copy::write::{
    Linker, apply_entry_meta, apply_meta, set_mtime, snapshots_dir, write_items,
};
use crate::copy::{CopyAttrs, CopyPlan, CopyRequest, for_each_new_ancestor, plan_copy};

/// Per-file digests are kept for miss explanations up to this many files; larger copies
/// are keyed by their aggregate digest only.
mod add_sources;

use add_sources::{
    Download, GitSource, download_dir, fetch_unchecked, plan_downloads, resolve_git_source,
    split_archives,
};

const MAX_LISTED_INPUTS: usize = 2000;

/// A planned COPY, ready to be keyed and executed.
pub(crate) struct PreparedCopy {
    plan: CopyPlan,
    aggregate: Digest,
    files: Vec<(String, Digest)>,
    /// More files than `MAX_LISTED_INPUTS`: `files` holds only those not from the plan.
    files_overflow: bool,
    inline: Vec<InlineFile>,
    archives: Vec<ArchiveSource>,
    downloads: Vec<Download>,
    /// `ADD <git URL>` sources, resolved to commits; checked out when the step runs.
    git_sources: Vec<GitSource>,
    /// Holds the bodies fetched while keying (removed with the plan).
    _download_dir: Option<tempfile::TempDir>,
    dest_dirs: BTreeMap<String, Entry>,
    label: String,
    /// How a copied file is named in miss explanations: `file ` + `app/main.py` for the
    /// context, `stage builder:/` + `opt/venv/x` otherwise (DESIGN.md §6).
    file_prefix: String,
}

/// A heredoc source: destination, content, mode and owner.
type InlineFile = (String, String, u32, (u32, u32));

/// A local archive ADD extracts: the archive, the directory it lands in, its owner.
type ArchiveSource = (PathBuf, String, (u32, u32));

impl PreparedCopy {
    pub(crate) fn add_key_inputs(&self, inputs: &mut KeyInputs) {
        inputs.add_input(
            format!("{}{AGGREGATE_INPUT_SUFFIX}", self.label),
            self.aggregate.clone(),
        );
        if !self.files_overflow && self.files.len() <= MAX_LISTED_INPUTS {
            for (path, digest) in &self.files {
                inputs.add_input(
                    format!("{}{}", self.file_prefix, path.trim_start_matches('/')),
                    digest.clone(),
                );
            }
        }
        for (name, content, mode, owner) in &self.inline {
            inputs.add_input(
                format!("heredoc {name} mode {mode:o} owner {}:{}", owner.0, owner.1),
                Digest::sha256_of(content.as_bytes()),
            );
        }
        for download in &self.downloads {
            let digest = download
                .fetched
                .as_ref()
                .map(|f| &f.digest)
                .or(download.checksum.as_ref());
            if let Some(digest) = digest {
                inputs.add_input(format!("url {}", download.url), digest.clone());
            }
        }
        for git in &self.git_sources {
            inputs.add_input(format!("git {}", git.url), git.key_digest());
        }
    }

    /// Remembers where the context's files now are in the layer's snapshot, for the next
    /// COPY of them to link (see `Linker`).
    pub(crate) fn remember_copies(&self, engine: &Local<'_>, chain: &ChainId) {
        let snapshots = snapshots_dir(engine.store);
        for item in self.plan.items() {
            if item.source.kind == EntryKind::File && !item.source.host_path.starts_with(&snapshots)
            {
                engine.memo.set_copy_location(
                    &item.source,
                    format!("{}/{}", chain.hex(), item.dest.trim_start_matches('/')),
                );
            }
        }
    }

    /// Writes the planned entries into a fresh staging directory.
    pub(crate) fn materialize(&self, engine: &Local<'_>) -> Result<PathBuf, StepError> {
        let _span = tracing::debug_span!("copy_materialize", entries = self.plan.len()).entered();
        // Sources keyed by `--checksum` are fetched (and verified) now that the step runs.
        let fetch_dir = if self.downloads.iter().any(|d| d.fetched.is_none()) {
            Some(download_dir(engine)?)
        } else {
            None
        };
        let mut fetched_now = Vec::new();
        for download in &self.downloads {
            fetched_now.push(match (&download.fetched, &fetch_dir) {
                (None, Some(dir)) => Some(fetch(
                    &download.url,
                    dir.path(),
                    download.checksum.as_ref(),
                )?),
                _ => None,
            });
        }
        let staging = staging_dir(engine, "copy")?;
        for git in &self.git_sources {
            if let Err(e) = git.write_into(engine, &staging) {
                let _ = fs_err::remove_dir_all(&staging);
                return Err(e);
            }
        }
        let result = (|| -> io::Result<()> {
            // Directories that exist in the destination and lie on the way get their current
            // metadata, so the layer does not change them.
            for (path, entry) in &self.dest_dirs {
                let host = host_path(&staging, path.trim_start_matches('/'));
                fs_err::create_dir_all(&host)?;
                apply_entry_meta(&host, entry)?;
            }
            let linker = Linker::new(engine.store, engine.memo);
            write_items(&staging, &self.plan, &linker)?;
            for (dest, content, mode, (uid, gid)) in &self.inline {
                let host = host_path(&staging, dest.trim_start_matches('/'));
                if let Some(parent) = host.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                fs_err::write(&host, content)?;
                apply_meta(&host, *mode, *uid, *gid, None, false)?;
            }
            for (archive, dest, _owner) in &self.archives {
                let host = host_path(&staging, dest.trim_start_matches('/'));
                fs_err::create_dir_all(&host)?;
                let reader = BufReader::new(fs_err::File::open(archive)?);
                let options = ExtractOptions::new().layer_name(archive.display().to_string());
                extract_layer(reader, &host, &options)
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            for (download, now) in self.downloads.iter().zip(&fetched_now) {
                let Some(body) = download.fetched.as_ref().or(now.as_ref()) else {
                    continue;
                };
                let host = host_path(&staging, download.dest.trim_start_matches('/'));
                if let Some(parent) = host.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                fs_err::copy(&body.path, &host)?;
                let (uid, gid) = download.owner;
                apply_meta(
                    &host,
                    download.mode,
                    uid,
                    gid,
                    body.last_modified.map(|s| (s, 0)),
                    false,
                )?;
            }
            // Directory mtimes last: writing children changed them.
            for item in self.plan.items().iter().rev() {
                if item.source.kind == EntryKind::Dir && !item.is_created_parent {
                    let host = host_path(&staging, item.dest.trim_start_matches('/'));
                    set_mtime(&host, item.source.mtime, item.source.mtime_nsec, false)?;
                }
            }
            Ok(())
        })();
        result.map_err(|e| {
            let _ = fs_err::remove_dir_all(&staging);
            CopyStepError::Materialize(e)
        })?;
        Ok(staging)
    }
}

/// A fresh directory under the store's `tmp/` (same filesystem as snapshots).
pub(crate) fn staging_dir(engine: &Local<'_>, what: &str) -> Result<PathBuf, StepError> {
    let tmp = engine.store.root().join("tmp");
    fs_err::create_dir_all(&tmp).map_err(StepError::Fs)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{what}-"))
        .tempdir_in(&tmp)
        .map_err(|e| io_error("creating a staging directory in", &tmp, e))?;
    let path = dir.keep();
    fs_err::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(StepError::Fs)?;
    Ok(path)
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> StepError {
    StepError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A digest of what a `COPY` from the build context reads — the source entries it selects
/// (names, kinds, modes, sizes, contents) — without looking at its destination. With the
/// copy and the destination's chain it names the step's key inputs (`local::copy_inputs_memo_key`),
/// so a warm or imported hit needs no walk of the destination, whose layers may be in a
/// registry cache and not here. `None` for what it does not cover (ADD, URLs, other
/// sources) and when the sources cannot be planned (the real plan reports that).
pub(crate) fn context_fingerprint(engine: &Local<'_>, copy: &CopyAction) -> Option<Digest> {
    if copy.is_add
        || !matches!(copy.from, SourceRef::Context)
        || copy.sources.is_empty()
        || copy.sources.iter().any(|s| is_http_url(s))
    {
        return None;
    }
    let tree = engine.context_ref();
    let sources: Vec<String> = copy
        .sources
        .iter()
        .map(|s| encode_text(s).into_owned())
        .collect();
    let exclude: Vec<String> = copy
        .exclude
        .iter()
        .map(|p| encode_text(p).into_owned())
        .collect();
    let request = CopyRequest {
        sources: &sources,
        dest: "/",
        parents: copy.parents,
        exclude: &exclude,
        attrs: CopyAttrs {
            chown: None,
            chmod: None,
            keep_owners: false,
        },
    };
    let plan = plan_copy(&tree, &request, &|_| false).ok()?;
    let (aggregate, _) = copy_plan_digest_listing(&plan, engine.memo, 0).ok()?;
    Some(aggregate)
}

/// Plans a COPY/ADD and digests its inputs.
pub(crate) fn prepare(
    engine: &Local<'_>,
    copy: &CopyAction,
    layers: &[LayerInfo],
    deps: &BTreeMap<StageId, Arc<StageResult>>,
    platform: &Platform,
) -> Result<PreparedCopy, StepError> {
    let _span = tracing::debug_span!("copy_prepare").entered();
    refuse_unsupported_sources(copy)?;
    let dest_tree = engine.layered(layers, "destination stage".to_owned())?;
    let chown = match &copy.chown {
        Some(spec) => Some(resolve_chown(spec, &dest_tree)?),
        None => None,
    };
    let chmod = match &copy.chmod {
        Some(spec) => Some(parse_chmod(spec)?),
        None => None,
    };
    // BuildKit resolves the destination inside the stage's root (`fs.RootPath`): a symlink
    // on the way (`/var/run -> /run`, `/link -> /real`) is followed, never replaced by a
    // directory in the layer.
    // Paths from the Dockerfile are compared with escaped names (see `host_path`).
    let resolved_dest = resolve_dest(&dest_tree, &encode_text(&copy.dest)).map_err(|source| {
        CopyStepError::ResolveDestination {
            dest: copy.dest.clone(),
            source,
        }
    })?;
    let copy_dest = &resolved_dest;
    let (tree, keep_owners) = engine.source_tree(&copy.from, deps, platform)?;
    let dest_is_dir = |p: &str| {
        dest_tree
            .resolve(&clean_rel(p))
            .ok()
            .flatten()
            .is_some_and(|(_, e)| e.is_dir())
    };
    // ADD auto-extracts local tar archives (from the context, not from other stages'
    // files? BuildKit extracts for every local source) into the destination directory.
    let (git_urls, other_sources): (Vec<String>, Vec<String>) = copy
        .sources
        .iter()
        .cloned()
        .partition(|s| copy.is_add && is_git_source(s));
    let (urls, local_sources): (Vec<String>, Vec<String>) =
        other_sources.into_iter().partition(|s| is_http_url(s));
    let exclude: Vec<String> = copy
        .exclude
        .iter()
        .map(|p| encode_text(p).into_owned())
        .collect();
    let (archives, plain_sources) = split_archives(copy, tree.as_ref(), &local_sources);
    let request = CopyRequest {
        sources: &plain_sources,
        dest: copy_dest,
        parents: copy.parents,
        exclude: &exclude,
        attrs: CopyAttrs {
            chown,
            chmod: chmod.clone(),
            keep_owners,
        },
    };
    let plan = if plain_sources.is_empty() {
        CopyPlan::default()
    } else {
        tracing::debug_span!("copy_plan")
            .in_scope(|| plan_copy(tree.as_ref(), &request, &dest_is_dir))?
    };
    check_destination(&plan, &dest_tree)?;
    let (mut aggregate, listed) = tracing::debug_span!("copy_digest")
        .in_scope(|| copy_plan_digest_listing(&plan, engine.memo, MAX_LISTED_INPUTS))
        .map_err(CopyStepError::HashSources)?;
    let files_overflow = listed.is_none();
    let mut files = listed.unwrap_or_default();
    let dest_dir = copy_dest.trim_end_matches('/');
    let dest_dir = if dest_dir.is_empty() { "/" } else { dest_dir };
    let mut archive_list = Vec::new();
    for (entry, source) in archives {
        let d = engine
            .memo
            .file_digest(&entry)
            .map_err(|e| CopyStepError::HashArchive {
                source_path: source.clone(),
                source: e,
            })?;
        files.push((format!("archive {source}"), d.clone()));
        aggregate = Digest::sha256_of(format!("{aggregate} {d} {dest_dir}").as_bytes());
        archive_list.push((
            entry.host_path.clone(),
            dest_dir.to_owned(),
            chown.unwrap_or((0, 0)),
        ));
    }
    let owner = chown.unwrap_or((0, 0));
    let inline = inline_files(
        copy,
        copy_dest,
        dest_dir,
        chmod.as_ref(),
        owner,
        &dest_is_dir,
    );
    let mut downloads = plan_downloads(copy, &urls, copy_dest, &dest_tree, chmod.as_ref(), owner)?;
    let download_dir = fetch_unchecked(engine, &mut downloads)?;
    let git_sources = git_urls
        .into_iter()
        .map(|url| {
            resolve_git_source(
                url,
                copy,
                copy_dest,
                CopyAttrs {
                    chown,
                    chmod: chmod.clone(),
                    keep_owners: false,
                },
                &exclude,
            )
        })
        .collect::<Result<Vec<_>, StepError>>()?;
    let dest_dirs = existing_dest_dirs(&plan, &inline, &archive_list, &downloads, &dest_tree);
    let source = source_label(engine, &copy.from);
    let file_prefix = match &copy.from {
        SourceRef::Context => "file ".to_owned(),
        _ => format!("{source}:/"),
    };
    let label = format!("{} {source}", if copy.is_add { "ADD" } else { "COPY" });
    Ok(PreparedCopy {
        plan,
        aggregate,
        files,
        files_overflow,
        inline,
        archives: archive_list,
        downloads,
        git_sources,
        _download_dir: download_dir,
        dest_dirs,
        label,
        file_prefix,
    })
}

/// The heredoc sources: each lands in `dest_dir` under its name, or at the destination
/// itself when it is the only one and the destination is not a directory.
fn inline_files(
    copy: &CopyAction,
    copy_dest: &str,
    dest_dir: &str,
    chmod: Option<&Chmod>,
    owner: (u32, u32),
    dest_is_dir: &dyn Fn(&str) -> bool,
) -> Vec<InlineFile> {
    copy.inline_sources
        .iter()
        .map(|f| {
            let dest = if copy_dest.ends_with('/')
                || copy.inline_sources.len() > 1
                || dest_is_dir(dest_dir)
            {
                format!(
                    "{}/{}",
                    dest_dir.trim_end_matches('/'),
                    f.path.trim_start_matches('/')
                )
            } else {
                dest_dir.to_owned()
            };
            let mode = chmod.map_or(f.mode, |c| c.apply(f.mode, false));
            (dest, f.content.clone(), mode, owner)
        })
        .collect()
}

/// A git source, or a URL given to COPY (not ADD): refused before anything is read.
fn refuse_unsupported_sources(copy: &CopyAction) -> Result<(), StepError> {
    if !copy.is_add
        && let Some(source) = copy.sources.iter().find(|s| is_git_source(s))
    {
        return Err(CopyStepError::CopyGit {
            source_url: source.clone(),
        }
        .into());
    }
    if !copy.is_add
        && let Some(source) = copy.sources.iter().find(|s| is_http_url(s))
    {
        return Err(CopyStepError::CopyUrl {
            source_url: source.clone(),
        }
        .into());
    }
    Ok(())
}

/// BuildKit's refusals against the destination stage: a directory over a file or symlink, a
/// file over a directory.
fn check_destination(plan: &CopyPlan, dest_tree: &dyn SourceTree) -> Result<(), StepError> {
    // BuildKit (fsutil copyDirectory): a directory is never merged onto a file or a symlink
    // of the destination stage below the (resolved) destination; the copy fails.
    // Nor is a file put where the stage has a directory (fsutil ensureEmptyFileTarget).
    // Items come in path order, a directory before what it holds: below a directory the stage
    // does not have, nothing exists to conflict with (a 20k-file COPY into a new directory
    // looks up one path, not 20k).
    let mut absent_dirs = std::collections::HashSet::new();
    // (parent, whether the stage lacks it) of the last item: siblings come in a run.
    let mut last: Option<(&str, bool)> = None;
    for item in plan.items() {
        let parent = item.dest.rsplit_once('/').map_or("", |(p, _)| p);
        let absent = match last {
            Some((p, absent)) if p == parent => absent,
            _ => absent_dirs.contains(parent),
        };
        last = Some((parent, absent));
        let existing = if absent {
            None
        } else {
            dest_tree
                .lookup(&clean_rel(&item.dest))
                .map_err(|source| CopyStepError::ReadStage {
                    path: item.dest.clone(),
                    source,
                })?
        };
        let Some(entry) = existing else {
            if item.source.kind == EntryKind::Dir {
                absent_dirs.insert(item.dest.trim_end_matches('/'));
            }
            continue;
        };
        if item.source.kind != EntryKind::Dir {
            if entry.is_dir() {
                return Err(CopyStepError::FileOverDirectory {
                    dest: item.dest.clone(),
                }
                .into());
            }
            continue;
        }
        if !entry.is_dir() {
            return Err(CopyStepError::DirectoryOverFile {
                dest: item.dest.clone(),
                kind: if matches!(entry.kind, EntryKind::Symlink(_)) {
                    "symlink"
                } else {
                    "file"
                },
            }
            .into());
        }
    }
    Ok(())
}

/// The directories of the destination stage on the way to every path the copy writes (they
/// keep their metadata in the layer).
fn existing_dest_dirs(
    plan: &CopyPlan,
    inline: &[InlineFile],
    archive_list: &[ArchiveSource],
    downloads: &[Download],
    dest_tree: &dyn SourceTree,
) -> BTreeMap<String, Entry> {
    let mut dest_dirs = BTreeMap::new();
    let archive_dirs: Vec<String> = archive_list
        .iter()
        .map(|(_, d, _)| format!("{d}/."))
        .collect();
    let written = plan
        .dests()
        .chain(inline.iter().map(|(d, ..)| d.as_str()))
        .chain(archive_dirs.iter().map(String::as_str))
        .chain(downloads.iter().map(|d| d.dest.as_str()));
    for_each_new_ancestor(written, |parent| {
        if !plan.contains(parent)
            && !dest_dirs.contains_key(parent)
            && let Some(entry) = dest_tree
                .lookup(&clean_rel(parent))
                .ok()
                .flatten()
                .filter(Entry::is_dir)
        {
            dest_dirs.insert(parent.to_owned(), entry);
        }
    });
    for (_, dir, _) in archive_list {
        if !dest_dirs.contains_key(dir)
            && dir != "/"
            && let Some(entry) = dest_tree
                .lookup(&clean_rel(dir))
                .ok()
                .flatten()
                .filter(Entry::is_dir)
        {
            dest_dirs.insert(dir.clone(), entry);
        }
    }
    dest_dirs
}

/// `dest` (absolute, trailing `/` kept) with the symlinks of its existing components
/// resolved inside `tree`; components past the first missing one are kept as written.
fn resolve_dest(tree: &dyn SourceTree, dest: &str) -> io::Result<String> {
    let has_slash = dest.ends_with('/');
    let mut current = String::new();
    let mut components = clean_rel(dest)
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    for component in components.by_ref() {
        let candidate = if current.is_empty() {
            component.clone()
        } else {
            format!("{current}/{component}")
        };
        if let Some((resolved, _)) = tree.resolve(&candidate)? {
            current = clean_rel(&resolved);
        } else {
            current = candidate;
            break;
        }
    }
    for component in components {
        current = format!("{current}/{component}");
    }
    let mut out = format!("/{current}");
    if has_slash && out != "/" {
        out.push('/');
    }
    Ok(out)
}

/// How miss explanations name a COPY source: `context`, `stage builder`, `image alpine:3`.
fn source_label(engine: &Local<'_>, from: &SourceRef) -> String {
    match from {
        SourceRef::Context => "context".to_owned(),
        SourceRef::Scratch => "scratch".to_owned(),
        SourceRef::Stage(id) => match engine.graph.stage(*id).and_then(|s| s.name.clone()) {
            Some(name) => format!("stage {name}"),
            None => format!("stage {id}"),
        },
        SourceRef::Image(reference) => format!("image {reference}"),
        SourceRef::NamedContext(name) => format!("build context {name}"),
    }
}

/// WORKDIR: creates `path` (and missing parents, owned by `user`) when it does not exist.
pub(crate) fn make_dir(
    engine: &Local<'_>,
    path: &str,
    user: &str,
    layers: &[LayerInfo],
    parent: Option<&ChainId>,
    in_image: bool,
) -> Result<Option<LayerInfo>, StepError> {
    let tree = engine.layered(layers, "stage".to_owned())?;
    let rel = clean_rel(&encode_text(path));
    let read_stage = |path: &str| -> Box<dyn FnOnce(io::Error) -> CopyStepError> {
        let path = format!("/{path}");
        Box::new(move |source| CopyStepError::ReadStage { path, source })
    };
    if rel.is_empty() || tree.resolve(&rel).map_err(read_stage(&rel))?.is_some() {
        return Ok(None);
    }
    let owner = if user.is_empty() {
        (0, 0)
    } else {
        let spec = user.split_once(':').map_or(user, |(u, _)| u);
        resolve_chown(spec, &tree).unwrap_or((0, 0))
    };
    let staging = staging_dir(engine, "workdir")?;
    let made = (|| -> Result<(), StepError> {
        let mut current = String::new();
        for component in rel.split('/') {
            current = if current.is_empty() {
                component.to_owned()
            } else {
                format!("{current}/{component}")
            };
            let host = host_path(&staging, &current);
            match tree.lookup(&current).map_err(read_stage(&current))? {
                Some(entry) if entry.is_dir() => {
                    fs_err::create_dir_all(&host).map_err(StepError::Fs)?;
                    apply_entry_meta(&host, &entry)
                        .map_err(|e| io_error("setting the metadata of", &host, e))?;
                }
                _ => {
                    fs_err::create_dir_all(&host).map_err(StepError::Fs)?;
                    apply_meta(&host, 0o755, owner.0, owner.1, None, false)
                        .map_err(|e| io_error("setting the metadata of", &host, e))?;
                }
            }
        }
        Ok(())
    })();
    if let Err(err) = made {
        // A failed step leaves nothing in the store's tmp/ (as a failed COPY does).
        let _ = fs_err::remove_dir_all(&staging);
        return Err(err);
    }
    Ok(engine.commit(&staging, parent, in_image)?)
}
