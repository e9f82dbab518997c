//! RUN: the step's process in kiln-sandbox on an overlay of the stage's snapshots, its
//! `--mount`s provided, its output streamed as events, its upperdir committed as the layer.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kiln_dockerfile::{NetworkMode, SecurityMode};
use kiln_oci::{ChainId, Platform};
use kiln_plan::{KeyInputs, RunAction, RunMount, SourceRef, StageId};
use kiln_sandbox::{ExtraMount, Isolation, Network, RunSpec, Security, Stream};

use super::cache_format::CACHE_MOUNT_ID_LEN;
use super::copy_exec::staging_dir;
use super::error::{MountError, StepError};
use super::local::{KeptRoot, Local};
use super::model::{LayerInfo, StageResult, StepContext};
use super::options::{Entitlement, NetworkDefault};
use super::ssh;
use crate::copy::digest::copy_plan_digest;
use crate::copy::{CopyAttrs, CopyRequest, plan_copy};
use crate::event::{Event, LogStream};

/// Lines of output kept for the error message of a failing RUN.
const TAIL_LINES: usize = 30;

/// Adds the content digests of bind-mounted sources to the key (cache mounts, tmpfs and
/// secrets never enter a key).
pub(crate) fn add_key_inputs(
    engine: &Local<'_>,
    run: &RunAction,
    deps: &BTreeMap<StageId, Arc<StageResult>>,
    platform: &Platform,
    inputs: &mut KeyInputs,
) -> Result<(), StepError> {
    for mount in &run.mounts {
        if let RunMount::Bind {
            target,
            from,
            source,
            ..
        } = mount
        {
            let plan = plan_mount_source(engine, from, source, deps, platform).map_err(|e| {
                MountError::BindSource {
                    source_path: source.clone(),
                    source: Box::new(e),
                }
            })?;
            let (digest, _) = copy_plan_digest(&plan, engine.memo)
                .map_err(super::error::CopyStepError::HashSources)?;
            inputs.add_input(format!("bind mount {target}"), digest);
        }
    }
    // What BuildKit keeps in the ExecOp's meta, only when set, so other keys stay as they were.
    let builder = engine.builder;
    if !builder.extra_hosts.is_empty() {
        let text: Vec<String> = builder
            .extra_hosts
            .iter()
            .map(|(host, address)| format!("{host}={address}"))
            .collect();
        inputs.add_input(
            "add-host".to_owned(),
            Digest::sha256_of(text.join(",").as_bytes()),
        );
    }
    if !builder.ulimits.is_empty() {
        let text: Vec<String> = builder
            .ulimits
            .iter()
            .map(|u| format!("{}={:?}:{:?}", u.name, u.soft, u.hard))
            .collect();
        inputs.add_input(
            "ulimit".to_owned(),
            Digest::sha256_of(text.join(",").as_bytes()),
        );
    }
    if let Some(bytes) = builder.shm_size {
        inputs.add_input(
            "shm-size".to_owned(),
            Digest::sha256_of(bytes.to_string().as_bytes()),
        );
    }
    Ok(())
}

/// Runs the step; returns its layer (`None` when it changed nothing).
pub(crate) fn run(
    engine: &Local<'_>,
    run: &RunAction,
    ctx: &StepContext<'_>,
) -> Result<Option<LayerInfo>, StepError> {
    let parent = ctx.parent_chain();
    let (layers, deps, platform, step, cancel) =
        (ctx.layers, ctx.deps, ctx.platform, ctx.number, ctx.cancel);
    let (sandbox, isolation) = engine.sandbox()?;
    let scratch = staging_dir(engine, "run")?;
    let cleanup = Cleanup(scratch.clone());
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let extras = scratch.join("extras");
    for d in [&upper, &work, &extras] {
        fs_err::create_dir(d).map_err(StepError::Fs)?;
    }
    fs_err::set_permissions(&upper, fs::Permissions::from_mode(0o755)).map_err(StepError::Fs)?;
    let mut lowers = engine.snapshot_dirs(layers)?;
    if lowers.is_empty() {
        let empty = scratch.join("empty");
        fs_err::create_dir(&empty).map_err(StepError::Fs)?;
        lowers.push(empty);
    }
    let mut spec = RunSpec::new(lowers, &upper, &work, run.argv.clone());
    spec.isolation = isolation;
    spec.extra_hosts.clone_from(&engine.builder.extra_hosts);
    spec.ulimits.clone_from(&engine.builder.ulimits);
    spec.shm_size = engine.builder.shm_size;
    // Chroot isolation copies the stage's rootfs for a RUN; the next RUN of the stage starts
    // from what this one leaves, with only the layers made since applied on top.
    let chains: Vec<ChainId> = layers.iter().map(|l| l.chain.clone()).collect();
    let mut reused = None;
    if isolation == Isolation::Chroot {
        spec.chroot_keep = true;
        if let Some(kept) = engine.take_kept_root(ctx.platform, ctx.stage)
            && chains.starts_with(&kept.chains)
        {
            spec.chroot_reuse = Some(kiln_sandbox::ChrootReuse {
                rootfs: kept.rootfs(),
                applied: kept.chains.len(),
            });
            // Deleted, if the sandbox did not move it away, when this step ends.
            reused = Some(kept);
        }
    }
    spec.env.clone_from(&run.env);
    spec.user.clone_from(&run.user);
    spec.workdir.clone_from(&run.workdir);
    spec.network = match (run.network, engine.builder.network) {
        (NetworkMode::None, _) | (NetworkMode::Default, NetworkDefault::None) => Network::None,
        _ => Network::Host,
    };
    spec.security = match run.security {
        SecurityMode::Sandbox => Security::Sandbox,
        SecurityMode::Insecure => {
            if !engine.builder.is_allowed(Entitlement::SecurityInsecure) {
                return Err(StepError::InsecureNotAllowed);
            }
            Security::Insecure
        }
    };
    spec.cancel = Some(cancel.clone());
    let mut counter = 0usize;
    // Served until the step ends (dropped after the sandbox returns).
    let mut agents = Vec::new();
    for mount in &run.mounts {
        counter += 1;
        let extra = extras.join(counter.to_string());
        let provided = if let RunMount::Ssh { .. } = mount {
            provide_ssh(engine, mount, &mut agents)?
        } else {
            provide_mount(engine, mount, deps, platform, &extra, &mut spec.env)?
        };
        if let Some(m) = provided {
            spec.mounts.push(m);
        }
    }
    // BuildKit (llb ExecOp.Marshal): with any ssh mount, SSH_AUTH_SOCK is the first one's
    // target unless the environment sets it; provided or not, so the key (which holds the
    // mounts) decides it.
    if let Some(target) = run.mounts.iter().find_map(|m| match m {
        RunMount::Ssh { target, .. } => Some(target),
        _ => None,
    }) && !spec.env.iter().any(|e| {
        e.split_once('=')
            .is_some_and(|(k, _)| k == ssh::AUTH_SOCK_VAR)
    }) {
        spec.env.push(format!("{}={target}", ssh::AUTH_SOCK_VAR));
    }
    for file in &run.inline_files {
        counter += 1;
        let host = extras.join(counter.to_string());
        fs_err::write(&host, &file.content).map_err(StepError::Fs)?;
        fs_err::set_permissions(&host, fs::Permissions::from_mode(file.mode))
            .map_err(StepError::Fs)?;
        spec.mounts.push(ExtraMount::Bind {
            source: host,
            target: PathBuf::from(&file.path),
            is_readonly: true,
            owner: None,
        });
    }

    let started = Instant::now();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut on_output = |stream: Stream, bytes: &[u8]| {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        engine.events.emit(Event::Log {
            step,
            elapsed: started.elapsed().as_secs_f64(),
            stream: match stream {
                Stream::Stdout => LogStream::Stdout,
                Stream::Stderr => LogStream::Stderr,
            },
            line,
        });
    };
    let outcome =
        tracing::debug_span!("run_sandbox").in_scope(|| sandbox.run(&spec, &mut on_output));
    let outcome = match outcome {
        Ok(o) => o,
        Err(kiln_sandbox::SandboxError::Cancelled { .. }) => return Err(StepError::Cancelled),
        Err(e) => return Err(e.into()),
    };
    if !outcome.status.is_success() {
        return Err(StepError::RunFailed {
            command: run.argv.join(" "),
            status: buildkit_status(outcome.status),
            tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
        });
    }
    engine.notice(&outcome.notices);
    if outcome.mode == kiln_sandbox::RootfsMode::CopyFallback {
        engine.events.emit(Event::Warning {
            message: "overlayfs is unavailable: RUN used the copy-based fallback (slower)"
                .to_owned(),
        });
    }
    let layer = engine.commit(&upper, parent, ctx.in_image)?;
    drop(reused);
    let kept = work.join("rootfs");
    if isolation == Isolation::Chroot && kept.is_dir() {
        let dir = staging_dir(engine, "chroot")?;
        fs_err::rename(&kept, dir.join("rootfs")).map_err(StepError::Fs)?;
        let mut chains = chains;
        chains.extend(layer.as_ref().map(|l| l.chain.clone()));
        engine.keep_root(ctx.platform, ctx.stage, KeptRoot { dir, chains });
    }
    drop(agents);
    tracing::debug_span!("run_cleanup").in_scope(|| drop(cleanup));
    Ok(layer)
}

/// Removes a scratch directory on every exit path.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Rootless, the upperdir holds files of the sandbox's subordinate ids and the
        // overlay's mode-0 work directory, which a plain removal leaves behind.
        if let Err(err) = kiln_store::remove_tree(&self.0) {
            tracing::warn!(path = %self.0.display(), %err, "cannot remove a RUN step's scratch directory");
        }
    }
}

fn provide_mount(
    engine: &Local<'_>,
    mount: &RunMount,
    deps: &BTreeMap<StageId, Arc<StageResult>>,
    platform: &Platform,
    extra: &std::path::Path,
    env: &mut Vec<String>,
) -> Result<Option<ExtraMount>, StepError> {
    Ok(match mount {
        RunMount::Bind {
            target,
            from,
            source,
            read_write,
        } => {
            let dir = materialize(engine, from, source, deps, platform, extra)?;
            Some(ExtraMount::Bind {
                source: dir,
                target: PathBuf::from(target),
                is_readonly: !read_write,
                owner: None,
            })
        }
        RunMount::Cache {
            target,
            id,
            from,
            source,
            read_only,
            mode,
            uid,
            gid,
            ..
        } => {
            let digest = Digest::sha256_of(id.as_bytes());
            let store_id = &digest.hex()[..CACHE_MOUNT_ID_LEN];
            let dir = engine.store.cache_mount_dir(store_id)?;
            // An empty mount an imported cache has content for gets that content first
            // (`--cache-from`; never part of the key).
            let is_restored =
                engine
                    .cache_mounts
                    .before_run(engine.store, store_id, id, &dir, engine.events);
            let is_new = is_restored || is_new_cache_dir(&dir)?;
            if is_new {
                if !is_restored && !matches!(from, SourceRef::Scratch) {
                    let seed = materialize(engine, from, source, deps, platform, extra)?;
                    copy_tree(&seed, &dir)?;
                }
                fs_err::set_permissions(&dir, fs::Permissions::from_mode(mode.unwrap_or(0o755)))
                    .map_err(StepError::Fs)?;
            }
            // A new cache directory gets its owner inside the sandbox's user namespace: as
            // root that is the same host ids, rootless the caller cannot chown on the host.
            Some(ExtraMount::Bind {
                source: dir,
                target: PathBuf::from(target),
                is_readonly: *read_only,
                owner: is_new.then(|| (uid.unwrap_or(0), gid.unwrap_or(0))),
            })
        }
        RunMount::Tmpfs { target, size } => {
            let size = match size {
                None => None,
                Some(bytes) => Some(u64::try_from(*bytes).ok().filter(|b| *b > 0).ok_or_else(
                    || MountError::TmpfsSize {
                        target: target.clone(),
                        size: *bytes,
                    },
                )?),
            };
            Some(ExtraMount::Tmpfs {
                target: PathBuf::from(target),
                size,
            })
        }
        RunMount::Secret {
            id,
            target,
            env: as_env,
            required,
            mode,
            uid,
            gid,
        } => {
            let Some(secret) = engine.builder.secrets.iter().find(|s| &s.id == id) else {
                if *required {
                    return Err(MountError::SecretRequired { id: id.clone() }.into());
                }
                return Ok(None);
            };
            let value = match (&secret.src, &secret.env) {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "SecretUnreadable names the path; fs_err would name it twice"
                )]
                (Some(src), _) => {
                    std::fs::read(src).map_err(|source| MountError::SecretUnreadable {
                        id: id.clone(),
                        path: src.clone(),
                        source,
                    })?
                }
                (None, Some(var)) => std::env::var(var)
                    .map_err(|_| MountError::SecretEnvUnset {
                        id: id.clone(),
                        var: var.clone(),
                    })?
                    .into_bytes(),
                (None, None) => {
                    return Err(MountError::SecretWithoutSource { id: id.clone() }.into());
                }
            };
            if let Some(var) = as_env {
                env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
            }
            match target {
                Some(target) => {
                    fs_err::write(extra, &value).map_err(StepError::Fs)?;
                    fs_err::set_permissions(extra, fs::Permissions::from_mode(*mode))
                        .map_err(StepError::Fs)?;
                    Some(ExtraMount::Bind {
                        source: extra.to_path_buf(),
                        target: PathBuf::from(target),
                        is_readonly: true,
                        owner: Some((*uid, *gid)),
                    })
                }
                None => None,
            }
        }
        other => {
            return Err(MountError::Unsupported {
                description: format!("{other:?}"),
            }
            .into());
        }
    })
}

use kiln_oci::Digest;

/// `--mount=type=ssh`: the `--ssh` agent with the mount's id, served on a socket of its own
/// (the mount's mode on the host, its owner set in the sandbox as for a secret) bound at the
/// target. An id no `--ssh` gave fails a `required` mount and skips the others (BuildKit's
/// `getSSHMountable`).
fn provide_ssh(
    engine: &Local<'_>,
    mount: &RunMount,
    agents: &mut Vec<ssh::ServedAgent>,
) -> Result<Option<ExtraMount>, StepError> {
    let RunMount::Ssh {
        id,
        target,
        required,
        mode,
        uid,
        gid,
    } = mount
    else {
        return Ok(None);
    };
    let Some(agent) = ssh::agent_for(&engine.builder.ssh, id) else {
        if *required {
            return Err(MountError::SshRequired { id: id.clone() }.into());
        }
        return Ok(None);
    };
    let agent = agent.map_err(MountError::from)?;
    let served = ssh::ServedAgent::start(agent, *mode).map_err(|source| MountError::SshSocket {
        id: id.clone(),
        source,
    })?;
    let source = served.socket().to_path_buf();
    agents.push(served);
    Ok(Some(ExtraMount::Bind {
        source,
        target: PathBuf::from(target),
        is_readonly: true,
        owner: Some((*uid, *gid)),
    }))
}

/// Whether a cache mount's directory is still as the store made it, and so to be seeded and
/// given its mode and owner: empty, and (rootless) still the caller's. A RUN that used it with
/// `uid=` gave it another owner, on the host a subordinate id the caller can neither `chmod`
/// nor, with `mode=0700`, read.
fn is_new_cache_dir(dir: &std::path::Path) -> Result<bool, StepError> {
    use std::os::unix::fs::MetadataExt as _;
    let owner = fs_err::metadata(dir).map_err(StepError::Fs)?.uid();
    let caller = rustix::process::geteuid();
    if !caller.is_root() && owner != caller.as_raw() {
        return Ok(false);
    }
    match fs_err::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(err) => Err(StepError::Fs(err)),
    }
}

/// What a mount of `source` from `from` holds, planned like `COPY source /` (owners kept
/// for stage and image sources): the same plan keys the step and provides the mount.
fn plan_mount_source(
    engine: &Local<'_>,
    from: &SourceRef,
    source: &str,
    deps: &BTreeMap<StageId, Arc<StageResult>>,
    platform: &Platform,
) -> Result<crate::copy::CopyPlan, StepError> {
    let (tree, keep) = engine.source_tree(from, deps, platform)?;
    let sources = vec![source.to_owned()];
    let request = CopyRequest {
        sources: &sources,
        dest: "/",
        parents: false,
        exclude: &[],
        attrs: CopyAttrs {
            keep_owners: keep,
            ..CopyAttrs::default()
        },
    };
    Ok(plan_copy(tree.as_ref(), &request, &|_| true)?)
}

/// Copies `source` of `from` into a fresh directory (a read-only view for a bind mount).
fn materialize(
    engine: &Local<'_>,
    from: &SourceRef,
    source: &str,
    deps: &BTreeMap<StageId, Arc<StageResult>>,
    platform: &Platform,
    extra: &std::path::Path,
) -> Result<PathBuf, StepError> {
    let plan = plan_mount_source(engine, from, source, deps, platform).map_err(|e| {
        MountError::Source {
            source_path: source.to_owned(),
            source: Box::new(e),
        }
    })?;
    fs_err::create_dir_all(extra).map_err(StepError::Fs)?;
    // A single file source mounts as a file.
    if let [item] = plan.items()
        && item.source.kind == crate::copy::source::EntryKind::File
    {
        let file = extra.with_extension("file");
        fs_err::copy(&item.source.host_path, &file).map_err(StepError::Fs)?;
        return Ok(file);
    }
    for item in plan.items() {
        let host = crate::copy::source::host_path(extra, item.dest.trim_start_matches('/'));
        match &item.source.kind {
            crate::copy::source::EntryKind::Dir => {
                fs_err::create_dir_all(&host).map_err(StepError::Fs)?;
            }
            crate::copy::source::EntryKind::File => {
                if let Some(p) = host.parent() {
                    fs_err::create_dir_all(p).map_err(StepError::Fs)?;
                }
                fs_err::copy(&item.source.host_path, &host).map_err(StepError::Fs)?;
            }
            crate::copy::source::EntryKind::Symlink(t) => {
                let _ = fs_err::os::unix::fs::symlink(t, &host);
            }
            crate::copy::source::EntryKind::Special => {}
        }
    }
    Ok(extra.to_path_buf())
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<(), StepError> {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(from).to_path_buf();
            StepError::Io {
                action: "reading",
                path,
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(&dest).map_err(StepError::Fs)?;
        } else if entry.file_type().is_symlink() {
            let target = fs_err::read_link(entry.path()).map_err(StepError::Fs)?;
            let _ = fs_err::os::unix::fs::symlink(target, &dest);
        } else {
            fs_err::copy(entry.path(), &dest).map_err(StepError::Fs)?;
        }
    }
    Ok(())
}

/// BuildKit's wording of a failed process: `exit code: 3` (moby's `ExitError`), so CI logs
/// that grep for it keep working.
fn buildkit_status(status: kiln_sandbox::ExitStatus) -> String {
    match status {
        kiln_sandbox::ExitStatus::Exited(code) => format!("exit code: {code}"),
        kiln_sandbox::ExitStatus::Signaled(signal) => format!("killed by signal {signal}"),
    }
}
