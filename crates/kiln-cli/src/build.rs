//! `kiln build`: the flags of `docker buildx build`, rendered progress, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_build::oci::{Compression, Platform};
use kiln_build::{
    BuildError, Builder, CacheExport, CacheSource, ContextSource, Entitlement, NetworkDefault,
    Output, OutputSpec, SecretSource, SshSource, Ulimit,
};

use crate::progress::{ProgressMode, Renderer};

/// `kiln build` options (a subset of `docker buildx build`, same spelling).
#[derive(Debug, Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, one per buildx flag"
)]
#[expect(
    clippy::struct_field_names,
    reason = "`build_args` mirrors --build-arg"
)]
pub(crate) struct BuildArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name (and optionally tag) for the image, stored in the local store; repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// Build only this stage and what it needs.
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Set a build-time variable (K=V, or K to take it from the environment).
    #[arg(long = "build-arg", value_name = "K=V", value_parser = parse_build_arg)]
    build_args: Vec<BuildArg>,
    /// Set a label of the image (K=V), over the Dockerfile's `LABEL K=…`; repeatable.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Add an OCI annotation to the image: KEY=VALUE (on each manifest), or
    /// TYPE[PLATFORM]:KEY=VALUE with TYPE manifest, manifest-descriptor, index or
    /// index-descriptor (as buildx); repeatable.
    #[arg(long = "annotation", value_name = "[TYPE:]K=V", value_parser = parse_annotation)]
    annotations: Vec<kiln_build::Annotation>,
    /// Attach an SBOM attestation (true|false, or scan-stage=…) as buildx's `--sbom`:
    /// shorthand for `--attest type=sbom`.
    #[arg(long = "sbom", value_name = "VALUE", value_parser = parse_sbom)]
    sbom: Option<kiln_build::Attest>,
    /// Attach SLSA v1 provenance (true|false, or mode=min|max[,version=v1][,builder-id=URI])
    /// as buildx's `--provenance`: shorthand for `--attest type=provenance`.
    #[arg(long = "provenance", value_name = "VALUE", value_parser = parse_provenance)]
    provenance: Option<kiln_build::Attest>,
    /// Attestation to attach: type=sbom[,scan-stage=…] or type=provenance[,mode=min|max],
    /// disabled=true turns one off; repeatable. Off by default.
    #[arg(long = "attest", value_name = "type=…", value_parser = parse_attest)]
    attests: Vec<kiln_build::Attest>,
    /// Additional build context (NAME=DIR, NAME=docker-image://REF, NAME=oci-layout://PATH[:TAG]).
    #[arg(long = "build-context", value_name = "NAME=SRC", value_parser = parse_build_context)]
    build_contexts: Vec<(String, String)>,
    /// Target platforms (os/arch[/variant]), comma-separated or repeated: one image per
    /// platform under one OCI index. RUN steps of a foreign platform run through the
    /// kernel's binfmt_misc emulator (qemu-user-static).
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',', value_parser = parse_platform)]
    platforms: Vec<Platform>,
    /// Do not use the cache when building.
    #[arg(long)]
    no_cache: bool,
    /// Do not use the cache for these stages (comma-separated or repeated).
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Always re-resolve base images against their registries.
    #[arg(long)]
    pull: bool,
    /// Progress output: auto, tty, plain, rawjson or quiet.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Only print the image ID on success (same as --progress quiet).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Default network for RUN: host or none.
    #[arg(long, value_enum, default_value = "host")]
    network: NetworkArg,
    /// How RUN steps are isolated: auto (probe once, use the strongest that works),
    /// namespaces (user/mount/pid namespaces + overlayfs) or chroot (root in an unprivileged
    /// container, no user namespaces).
    #[arg(long, value_enum, env = "KILN_ISOLATION", default_value = "auto")]
    isolation: crate::flags::IsolationArg,
    /// Add an /etc/hosts entry for RUN (HOST:IP or HOST=IP); repeatable.
    #[arg(long = "add-host", value_name = "HOST:IP", value_parser = crate::flags::parse_add_host)]
    add_hosts: Vec<(String, std::net::IpAddr)>,
    /// A resource limit for RUN (NAME=SOFT[:HARD], e.g. nofile=1024:4096; -1 is unlimited).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = crate::flags::parse_ulimit)]
    ulimits: Vec<Ulimit>,
    /// Size of RUN's /dev/shm (bytes, or with a b, k, m or g suffix; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE", value_parser = crate::flags::parse_shm_size)]
    shm_size: Option<u64>,
    /// Grant an entitlement: security.insecure (for RUN --security=insecure) or network.host.
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_delimiter = ',', value_parser = parse_entitlement)]
    allow: Vec<Entitlement>,
    /// Secret for RUN --mount=type=secret (id=ID,src=FILE or id=ID,env=VAR).
    #[arg(long = "secret", value_name = "id=…,src=…", value_parser = parse_secret)]
    secrets: Vec<SecretSource>,
    /// SSH agent or keys for RUN --mount=type=ssh (default|ID[=SOCKET|KEYFILE[,KEYFILE…]]; default is $SSH_AUTH_SOCK).
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY[,KEY…]]", value_parser = parse_ssh)]
    ssh: Vec<SshSource>,
    /// Output destination (type=oci|docker|local|tar|image,…; dest=- writes a tar to stdout).
    #[arg(short = 'o', long = "output", value_name = "SPEC", value_parser = parse_output)]
    outputs: Vec<OutputSpec>,
    /// Import build cache (type=registry,ref=REG/REPO:TAG | type=local,src=DIR | an image
    /// REF built with --cache-to type=inline); repeatable, searched in order after the local
    /// store.
    #[arg(long = "cache-from", value_name = "SPEC", value_parser = parse_cache_from)]
    cache_from: Vec<CacheSource>,
    /// Export build cache after a successful build (type=registry,ref=REG/REPO:TAG |
    /// type=local,dest=DIR, with mode=min|max, ignore-error=true|false,
    /// compression=gzip|zstd|uncompressed, compression-level=N, max-age=DURATION, max-size=SIZE,
    /// cache-mounts=true|false, cache-mounts-max-size=SIZE | type=inline); repeatable.
    #[arg(long = "cache-to", value_name = "SPEC", value_parser = parse_cache_to)]
    cache_to: Vec<CacheExport>,
    /// Push the `-t` names to their registries (same as --output type=image,push=true).
    #[arg(long)]
    push: bool,
    /// Keep the image in kiln's local store under the `-t` names (buildx's `--load` loads
    /// it into docker; kiln has no daemon: `kiln save` writes it for `docker load`).
    #[arg(long)]
    load: bool,
    /// At most N stages run at once (default: every stage whose inputs are ready, as BuildKit).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Build every stage, not only those the target needs (buildx: BUILDKIT_SKIP_UNUSED_STAGES=false).
    #[arg(long)]
    all_stages: bool,
    /// Layer compression: gzip, zstd or uncompressed.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Registry reachable over plain HTTP (loopback registries always are); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Write the build result's metadata (digests, descriptor, names) to this file as JSON.
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Evaluate the build another way instead of building: check (the build checks),
    /// outline (the target's build args and secrets) or targets (the stages), with
    /// `,format=json` for JSON.
    #[arg(long = "call", value_name = "METHOD[,format=json]")]
    call: Option<String>,
    /// Shorthand for --call=check.
    #[arg(long)]
    check: bool,
    /// The output of --call/--check: text or json (kiln's shorthand for `,format=` in --call).
    #[arg(long, value_name = "text|json")]
    format: Option<String>,
    /// The build context: a directory, `-` (a tar archive of the context, or a Dockerfile,
    /// on stdin), an http(s) URL of a tarball, or a git repository
    /// (`https://host/repo.git#ref:subdir`, `git@host:repo.git`, `git://…`, `ssh://…`).
    #[arg(value_name = "CONTEXT")]
    context: PathBuf,
}

/// One `--build-arg`: `NAME=VALUE`, or `NAME` alone (value from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BuildArg {
    name: String,
    value: Option<String>,
}

/// Parses `--build-arg`; an empty value or an empty name (`=v`) is a usage error.
fn parse_build_arg(spec: &str) -> Result<BuildArg, String> {
    let (name, value) = match spec.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(if spec.is_empty() {
            "empty build argument: expected NAME=VALUE or NAME".to_owned()
        } else {
            format!("`{spec}` has no name: expected NAME=VALUE or NAME")
        });
    }
    // The build's time: a number of seconds, as the environment variable (empty is unset).
    if name == "SOURCE_DATE_EPOCH"
        && let Some(v) = &value
        && !v.is_empty()
        && v.parse::<i64>().is_err()
    {
        return Err(format!(
            "`{spec}`: SOURCE_DATE_EPOCH must be a number of seconds since the epoch"
        ));
    }
    Ok(BuildArg {
        name: name.to_owned(),
        value,
    })
}

/// Parses `--label K=V`; a label without `=` or without a key is a usage error naming it.
fn parse_label(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err(format!("label `{spec}` has no key: expected K=V")),
        None => Err(format!("label `{spec}` has no value: expected K=V")),
    }
}

/// One `--platform` entry, validated and normalized as containerd does (`arm64` is
/// `linux/arm64`, `armhf` is `linux/arm/v7`); an unknown os or architecture is a usage error.
fn parse_platform(text: &str) -> Result<Platform, String> {
    text.parse::<Platform>().map_err(|e| e.to_string())
}

/// `--build-context NAME=SOURCE`, both non-empty.
fn parse_build_context(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((name, source)) if !name.is_empty() && !source.is_empty() => {
            Ok((name.to_owned(), source.to_owned()))
        }
        Some(_) => Err(format!(
            "invalid --build-context `{spec}`: the name and the source must not be empty"
        )),
        None => Err(format!(
            "invalid --build-context `{spec}`: expected NAME=SOURCE"
        )),
    }
}

fn parse_annotation(spec: &str) -> Result<kiln_build::Annotation, kiln_build::AnnotationError> {
    spec.parse()
}

fn parse_sbom(value: &str) -> Result<kiln_build::Attest, kiln_build::AttestError> {
    kiln_build::Attest::parse_sbom_flag(value)
}

fn parse_provenance(value: &str) -> Result<kiln_build::Attest, kiln_build::AttestError> {
    kiln_build::Attest::parse_provenance_flag(value)
}

fn parse_attest(spec: &str) -> Result<kiln_build::Attest, kiln_build::AttestError> {
    spec.parse()
}

fn parse_secret(spec: &str) -> Result<SecretSource, kiln_build::SecretSpecError> {
    spec.parse()
}

fn parse_ssh(spec: &str) -> Result<SshSource, kiln_build::SshSpecError> {
    spec.parse()
}

fn parse_cache_from(spec: &str) -> Result<CacheSource, kiln_build::CacheSpecError> {
    spec.parse()
}

fn parse_cache_to(spec: &str) -> Result<CacheExport, kiln_build::CacheSpecError> {
    spec.parse()
}

fn parse_output(spec: &str) -> Result<OutputSpec, String> {
    spec.parse::<OutputSpec>().map_err(|e| e.reason)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NetworkArg {
    Host,
    None,
    Default,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
    Uncompressed,
}

/// Runs `kiln build`.
pub(crate) fn run(args: &BuildArgs, root: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let source = match args.context.to_str() {
        Some(text) => match ContextSource::parse(text) {
            Ok(source) => source,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(crate::EXIT_USAGE));
            }
        },
        None => ContextSource::Dir(args.context.clone()),
    };
    let call =
        match crate::lint::parse_call(args.call.as_deref(), args.check, args.format.as_deref()) {
            Ok(call) => call,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(crate::EXIT_USAGE));
            }
        };
    if call.is_some() && !matches!(source, ContextSource::Dir(_)) {
        eprintln!("error: --call and --check need a local directory as the build context");
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    let is_file_stdin = args.file.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if is_file_stdin && matches!(source, ContextSource::Stream(_)) {
        // buildx's wording; a usage error, checked before stdin is read.
        eprintln!("error: invalid argument: can't use stdin for both build context and dockerfile");
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    let mut builder = Builder::new(&args.context)
        .context_source(source)
        .store_root(crate::root::resolve_root(root)?);
    match args.file.as_deref() {
        Some(p) if p.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the Dockerfile from stdin")?;
            builder = builder.dockerfile_text(text);
        }
        Some(p) => builder = builder.dockerfile(p),
        None => {}
    }
    for tag in &args.tags {
        builder = builder.tag(tag);
    }
    if let Some(target) = &args.target {
        builder = builder.target(target);
    }
    for arg in &args.build_args {
        let value = match &arg.value {
            Some(value) => value.clone(),
            // buildx: `--build-arg NAME` takes the value from the environment (skipped when unset).
            None => match std::env::var(&arg.name) {
                Ok(value) => value,
                Err(_) => continue,
            },
        };
        builder = builder.build_arg(&arg.name, value);
    }
    for (key, value) in &args.labels {
        builder = builder.label(key, value);
    }
    for annotation in &args.annotations {
        builder = builder.annotation(annotation.clone());
    }
    // buildx: `--sbom` and `--provenance` are `--attest`s of their type; an `--attest` of
    // the same type, the more specific, is applied after them.
    for attest in args
        .sbom
        .iter()
        .chain(args.provenance.iter())
        .chain(args.attests.iter())
    {
        builder = builder.attest(attest.clone());
    }
    for (name, source) in &args.build_contexts {
        builder = builder.build_context(name, source);
    }
    for platform in &args.platforms {
        builder = builder.platform(platform.clone());
    }
    for secret in &args.secrets {
        builder = builder.secret(secret.clone());
    }
    for source in &args.ssh {
        builder = builder.ssh(source.clone());
    }
    let is_stdout_output = args.outputs.iter().any(|o| o.output.is_stdout());
    if is_stdout_output && args.progress == ProgressMode::Rawjson {
        // A usage error, as clap's: stdout carries the archive.
        eprintln!(
            "error: --progress rawjson writes to stdout, which --output …,dest=- already uses"
        );
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    // buildx (toControllerOptions): a root filesystem output has no image ID to write.
    if args.iidfile.is_some()
        && args
            .outputs
            .iter()
            .any(|o| matches!(o.output, Output::Local(_) | Output::Tar(_)))
    {
        eprintln!("error: local and tar exporters are incompatible with image ID file");
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    if args.isolation == crate::flags::IsolationArg::Chroot
        && matches!(args.network, NetworkArg::None)
    {
        eprintln!(
            "error: --network none cannot be honoured with --isolation chroot (no network \
             namespace): use --isolation namespaces where user namespaces are allowed"
        );
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    if args.load && args.tags.is_empty() {
        eprintln!(
            "error: --load keeps the image in kiln's local store, which holds images by name: \
             add -t NAME"
        );
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    }
    for output in &args.outputs {
        builder = builder.output(output.clone());
    }
    if args.load {
        // buildx: `--load` is `--output type=docker`; here, the local store under the -t names.
        builder = builder.output(OutputSpec::from(Output::Image {
            names: Vec::new(),
            push: false,
        }));
    }
    for host in &args.insecure_registries {
        builder = builder.insecure_registry(host);
    }
    for source in &args.cache_from {
        builder = builder.cache_from(source.clone());
    }
    for export in &args.cache_to {
        builder = builder.cache_to(export.clone());
    }
    if let Some(jobs) = args.jobs {
        builder = builder.jobs(jobs);
    }
    for stage in &args.no_cache_filter {
        builder = builder.no_cache_filter(stage);
    }
    for (host, address) in &args.add_hosts {
        builder = builder.add_host(host, *address);
    }
    for ulimit in &args.ulimits {
        builder = builder.ulimit(ulimit.clone());
    }
    if let Some(bytes) = args.shm_size {
        builder = builder.shm_size(bytes);
    }
    for entitlement in &args.allow {
        builder = builder.allow(*entitlement);
    }
    builder = builder
        .no_cache(args.no_cache)
        .pull(args.pull)
        .push(args.push)
        .all_stages(args.all_stages)
        .network(match args.network {
            NetworkArg::None => NetworkDefault::None,
            NetworkArg::Host | NetworkArg::Default => NetworkDefault::Host,
        })
        .isolation(args.isolation.into())
        .compression(match args.compression {
            CompressionArg::Gzip => Compression::Gzip { level: 6 },
            CompressionArg::Zstd => Compression::Zstd { level: 3 },
            CompressionArg::Uncompressed => Compression::None,
        });
    if let Some(call) = call {
        return Ok(crate::lint::run_call(&builder, call));
    }
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        args.progress
    };
    let renderer = Renderer::new(mode);
    let caught = crate::signals::cancel_on_signals(builder.cancel_token(), "kiln-build-signals")?;
    let result = builder.build(&|event| renderer.render(&event));
    renderer.finish();
    // A terminal's Ctrl-C also reaches the RUN's processes (same process group), which may
    // fail the step before the cancellation is seen: after a signal, any failure is the
    // cancellation (the token is only cancelled by a signal).
    let result = match result {
        Err(_) if caught.load(Ordering::SeqCst) != 0 => Err(BuildError::Cancelled),
        other => other,
    };
    match result {
        Ok(outcome) => {
            if let Some(path) = &args.iidfile {
                fs_err::write(path, outcome.image_id().to_string()).context("writing --iidfile")?;
            }
            if let Some(path) = &args.metadata_file {
                write_metadata(path, &metadata(args, &outcome))?;
            }
            if mode == ProgressMode::Quiet {
                if is_stdout_output {
                    // stdout carries the archive (dest=-).
                    eprintln!("{}", outcome.image_id());
                } else {
                    #[expect(
                        clippy::print_stdout,
                        reason = "the image ID is the command's output with --quiet"
                    )]
                    {
                        println!("{}", outcome.image_id());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(BuildError::Cancelled) => {
            eprintln!("error: build cancelled");
            Ok(ExitCode::from(crate::EXIT_FAILURE))
        }
        Err(err) => {
            eprintln!("{}", render_build_error(&err));
            Ok(ExitCode::from(crate::EXIT_FAILURE))
        }
    }
}

/// buildx's `--metadata-file` JSON: the manifest and config digests, the manifest's
/// descriptor and, when the image has names (`-t`, `type=image,name=`), `image.name`. For a
/// multi-platform build, the index's digest and descriptor, and no config digest (buildx
/// writes none: each platform has its own).
fn metadata(args: &BuildArgs, outcome: &kiln_build::BuildOutcome) -> serde_json::Value {
    let mut names: Vec<&str> = args.tags.iter().map(String::as_str).collect();
    for spec in &args.outputs {
        if let Output::Image { names: more, .. } = &spec.output {
            names.extend(more.iter().map(String::as_str));
        }
    }
    let descriptor = outcome.descriptor();
    let mut metadata = serde_json::json!({
        "containerimage.digest": descriptor.digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": descriptor.media_type.to_string(),
            "digest": descriptor.digest.to_string(),
            "size": descriptor.size,
        },
    });
    if outcome.index.is_none() {
        metadata["containerimage.config.digest"] = outcome.config_digest.to_string().into();
    }
    if !names.is_empty() {
        metadata["image.name"] = names.join(",").into();
    }
    metadata
}

/// Writes `metadata` to `path` through a temporary file beside it (`.NAME.PID.tmp`), renamed
/// into place: a reader never sees half a file.
fn write_metadata(path: &std::path::Path, metadata: &serde_json::Value) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("--metadata-file {}: not a file name", path.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let mut text = serde_json::to_vec_pretty(metadata).context("--metadata-file: encoding")?;
    text.push(b'\n');
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .context("writing --metadata-file")?;
    let written = std::io::Write::write_all(&mut file, &text)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs_err::rename(&temp, path));
    if let Err(e) = written {
        // A failed write leaves nothing behind (the file is the one this process created).
        let _ = fs_err::remove_file(&temp);
        return Err(e).context("writing --metadata-file");
    }
    Ok(())
}

fn parse_entitlement(text: &str) -> Result<Entitlement, kiln_build::UnknownEntitlement> {
    text.parse()
}

/// Characters of one message line printed; longer lines (a value quoted from a 10 MB line)
/// are cut in the middle, so stderr stays small whatever the Dockerfile holds.
const MAX_ERROR_LINE: usize = 1_000;

/// `error: …` for a failed build: a parse error displays as its whole diagnostic (`error:`,
/// file:line:col, a caret); every other error gets the `error: ` prefix. Every line is bounded.
fn render_build_error(err: &BuildError) -> String {
    let text = match err {
        BuildError::Parse { .. } => err.to_string().trim_end().to_owned(),
        other => format!("error: {other}"),
    };
    text.lines()
        .map(bounded_line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn bounded_line(line: &str) -> String {
    if line.chars().count() <= MAX_ERROR_LINE {
        return line.to_owned();
    }
    let head: String = line.chars().take(MAX_ERROR_LINE / 2).collect();
    let tail: Vec<char> = line.chars().rev().take(MAX_ERROR_LINE / 4).collect();
    let tail: String = tail.into_iter().rev().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_need_a_name() {
        assert_eq!(
            parse_build_arg("A=1").unwrap(),
            BuildArg {
                name: "A".into(),
                value: Some("1".into())
            }
        );
        assert_eq!(parse_build_arg("A=").unwrap().value.as_deref(), Some(""));
        assert_eq!(parse_build_arg("A").unwrap().value, None);
        assert!(parse_build_arg("").unwrap_err().contains("empty"));
        assert!(parse_build_arg("=v").unwrap_err().contains("`=v`"));
        assert!(parse_build_arg("SOURCE_DATE_EPOCH=0").is_ok());
        assert!(parse_build_arg("SOURCE_DATE_EPOCH=").is_ok());
        assert!(
            parse_build_arg("SOURCE_DATE_EPOCH=yesterday")
                .unwrap_err()
                .contains("`SOURCE_DATE_EPOCH=yesterday`")
        );
    }

    #[test]
    fn labels_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_label("a=b=c").unwrap(),
            ("a".to_owned(), "b=c".to_owned())
        );
        assert_eq!(parse_label("a=").unwrap(), ("a".to_owned(), String::new()));
        assert!(parse_label("novalue").unwrap_err().contains("`novalue`"));
        assert!(parse_label("=v").unwrap_err().contains("`=v`"));
    }

    #[test]
    fn build_errors_are_prefixed_once_and_bounded() {
        let text = "FROM scratch\nCOPPY a /a\n";
        let parse = BuildError::Parse {
            dockerfile: "Dockerfile".to_owned(),
            text: text.into(),
            source: Box::new(kiln_build::dockerfile::parse(text).unwrap_err()),
        };
        assert!(render_build_error(&parse).starts_with("error: unknown instruction `COPPY`"));
        let dir = tempfile::tempdir().unwrap();
        let step = Builder::new(dir.path())
            .dockerfile_text(format!("FROM scratch\nEXPOSE {}\n", "9".repeat(5_000)))
            .store_root(dir.path().join("store"))
            .build(&|_| {})
            .unwrap_err();
        assert!(
            matches!(step, BuildError::Plan { .. }),
            "{}",
            step.to_string().len()
        );
        let text = render_build_error(&step);
        assert!(
            text.starts_with("error: Dockerfile: line 2: invalid port"),
            "{text}"
        );
        assert!(text.chars().count() < MAX_ERROR_LINE + 50, "{}", text.len());
    }
}
