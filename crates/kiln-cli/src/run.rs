//! `kiln run [OPTIONS] IMAGE [CMD...]`: runs a command in an image from the local store (pulled
//! when missing), like `docker run --rm` for smoke tests. The sandbox and the config rules are
//! `kiln_build::ContainerRun`'s and the image is found or pulled by
//! `kiln_build::find_or_pull_image`; this module parses the flags, streams the
//! output to kiln's stdout/stderr, cancels on SIGINT/SIGTERM/SIGHUP and maps the outcome to
//! docker's exit codes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use kiln_build::oci::{Platform, ResolvedImage};
use kiln_build::{
    CancelToken, ClientConfig, ContainerRun, Network, RunImageError, SandboxError, Store, Stream,
};

/// docker's exit code when the container could not be created or started.
const EXIT_CANNOT_START: u8 = 125;
/// `timeout(1)`'s exit code for a command killed at its deadline (docker has no timeout).
const EXIT_TIMED_OUT: u8 = 124;
/// The shell's offset for "killed by signal N".
const SIGNAL_EXIT_BASE: i32 = 128;

/// Arguments of `kiln run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Remove the container afterwards (always done; accepted for docker compatibility).
    #[arg(long)]
    rm: bool,
    /// User to run as: `name`, `uid`, `name:group` or `uid:gid` (default: the image's User).
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Working directory inside the container (default: the image's WorkingDir).
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Set an environment variable; `-e KEY` takes its value from kiln's environment.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (`KEY=VALUE` lines, `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// The network: the host's, or a private one with only loopback.
    #[arg(long, value_enum, default_value_t = NetworkArg::Host)]
    network: NetworkArg,
    /// How the command is isolated: auto (probe; fall back to chroot as root in an
    /// unprivileged container), namespaces or chroot.
    #[arg(long, value_enum, env = "KILN_ISOLATION", default_value = "auto")]
    isolation: crate::flags::IsolationArg,
    /// Add an /etc/hosts entry (HOST:IP or HOST=IP); repeatable.
    #[arg(long = "add-host", value_name = "HOST:IP", value_parser = crate::flags::parse_add_host)]
    add_hosts: Vec<(String, std::net::IpAddr)>,
    /// A resource limit (NAME=SOFT[:HARD], e.g. nofile=1024:4096; -1 is unlimited).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]", value_parser = crate::flags::parse_ulimit)]
    ulimits: Vec<kiln_build::Ulimit>,
    /// Size of /dev/shm (bytes, or with a b, k, m or g suffix; default 64m).
    #[arg(long = "shm-size", value_name = "SIZE", value_parser = crate::flags::parse_shm_size)]
    shm_size: Option<u64>,
    /// Hostname inside the container (default: a random 12-hex-digit container ID).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Replace the image's Entrypoint (and drop its Cmd); `""` clears it.
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,
    /// Kill the command after this many seconds (exit code 124).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// The platform of the image to run: the variant chosen from a multi-platform image
    /// (pulled when the store lacks it; default: this host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = crate::flags::parse_platform)]
    platform: Option<Platform>,
    /// The image (a name in the local store, else pulled from its registry).
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The command and its arguments (default: the image's Cmd).
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NetworkArg {
    Host,
    None,
}

/// Runs `kiln run`.
pub(crate) fn run(args: &RunArgs, root: Option<&Path>) -> ExitCode {
    let mut container = match container_of(args) {
        Ok(container) => container,
        Err(err) => return cannot_start(&err),
    };
    let (store, image) = match open_image(&args.image, args.platform.as_ref(), root) {
        Ok(found) => found,
        Err(err) => return cannot_start(&err),
    };
    let cancel = CancelToken::new();
    let caught = match crate::signals::cancel_on_signals(cancel.clone(), "kiln-run-signals") {
        Ok(caught) => caught,
        Err(err) => return cannot_start(&err),
    };
    container = container.cancel_token(cancel);
    let mut output = Output::default();
    let result = container.run(&store, &image, &mut |stream, line| {
        output.write(stream, line);
    });
    if let Some(err) = output.error {
        eprintln!("warning: cannot forward the command's output: {err}");
    }
    let signal = caught.load(Ordering::SeqCst);
    match result {
        Ok(outcome) => {
            // The isolation's fallback and limits, after the command's own output.
            for notice in &outcome.notices {
                eprintln!("warning: {notice}");
            }
            exit_code(outcome.status.code())
        }
        // A terminal's Ctrl-C also reaches the sandbox helper (same process group), which may
        // die before the cancellation is seen: any failure after a signal is the signal's (the
        // token is only cancelled by a signal).
        Err(_) if signal != 0 => exit_code(SIGNAL_EXIT_BASE + signal),
        Err(err @ RunImageError::Sandbox(SandboxError::TimedOut { .. })) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_TIMED_OUT)
        }
        Err(RunImageError::Sandbox(err @ SandboxError::Exec { code, .. })) => {
            eprintln!("error: {err}");
            exit_code(code)
        }
        Err(err) => cannot_start(&anyhow::Error::new(err)),
    }
}

/// The container the flags describe (environment resolved from kiln's own).
fn container_of(args: &RunArgs) -> anyhow::Result<ContainerRun> {
    let lookup = |key: &str| std::env::var(key).ok();
    let mut container = ContainerRun::new().cmd(args.command.iter().cloned());
    for file in &args.env_files {
        let text = fs_err::read_to_string(file).context("reading --env-file")?;
        for entry in parse_env_file(&text, lookup)
            .with_context(|| format!("--env-file {}", file.display()))?
        {
            container = container.env(entry);
        }
    }
    for entry in &args.env {
        if let Some(entry) = env_entry(entry, lookup)? {
            container = container.env(entry);
        }
    }
    if let Some(user) = &args.user {
        container = container.user(user);
    }
    if let Some(dir) = &args.workdir {
        if !dir.starts_with('/') {
            bail!("the working directory `{dir}` is invalid: it needs to be an absolute path");
        }
        container = container.workdir(dir);
    }
    if let Some(hostname) = &args.hostname {
        container = container.hostname(hostname);
    }
    if let Some(entrypoint) = &args.entrypoint {
        container = container.entrypoint(entrypoint);
    }
    if let Some(secs) = args.timeout {
        container = container.timeout(Duration::from_secs(secs));
    }
    for (host, address) in &args.add_hosts {
        container = container.add_host(host, *address);
    }
    for ulimit in &args.ulimits {
        container = container.ulimit(ulimit.clone());
    }
    if let Some(bytes) = args.shm_size {
        container = container.shm_size(bytes);
    }
    Ok(container
        .network(match args.network {
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        })
        .isolation(args.isolation.into()))
}

/// One `-e` value: `KEY=VALUE` as is; a bare `KEY` from kiln's environment, or nothing when
/// unset (docker's `opts.ValidateEnv`).
fn env_entry(
    entry: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<String>> {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    if key.is_empty() {
        bail!("invalid environment variable `{entry}`: the name is empty");
    }
    if key.contains(char::is_whitespace) {
        bail!("invalid environment variable `{key}`: it contains whitespace");
    }
    if entry.contains('=') {
        return Ok(Some(entry.to_owned()));
    }
    Ok(lookup(key).map(|value| format!("{key}={value}")))
}

/// docker's `--env-file` format: one `KEY=VALUE` or `KEY` per line, leading whitespace
/// ignored, empty lines and `#` comments skipped, values taken literally (no quotes removed).
fn parse_env_file(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(entry) =
            env_entry(line, &lookup).with_context(|| format!("line {}", number + 1))?
        {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The image `text` names for `platform`, from the local store, pulled (and named) first
/// when missing.
fn open_image(
    text: &str,
    platform: Option<&Platform>,
    root: Option<&Path>,
) -> anyhow::Result<(Store, ResolvedImage)> {
    let store = kiln_build::open_store(root)?;
    let view = crate::pull::TransferView::new(false);
    let config = ClientConfig::new().progress(Arc::new(view.clone()));
    let found = kiln_build::find_or_pull_image(&store, text, platform, config, |reference| {
        eprintln!("Unable to find image '{reference}' locally");
    })?;
    view.finish();
    if let Some(pulled) = &found.pulled {
        eprintln!("Digest: {}", pulled.digest);
    }
    if let Some(warning) = &found.platform_warning {
        eprintln!("WARNING: {warning}");
    }
    Ok((store, found.image))
}

/// Forwards the command's lines to kiln's stdout and stderr as they come.
#[derive(Debug, Default)]
struct Output {
    error: Option<std::io::Error>,
}

impl Output {
    fn write(&mut self, stream: Stream, line: &[u8]) {
        let result = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(line),
        };
        if let Err(err) = result
            && self.error.is_none()
        {
            self.error = Some(err);
        }
    }
}

/// Reports a failure to start the container; docker's exit code 125.
fn cannot_start(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::from(EXIT_CANNOT_START)
}

/// A process exit code from a status code.
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(low_byte(code))
}

/// The low 8 bits of a status code, as the kernel keeps them.
fn low_byte(code: i32) -> u8 {
    u8::try_from(code & 0xff).unwrap_or(EXIT_CANNOT_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &str) -> Option<String> {
        (key == "SET").then(|| "from-env".to_owned())
    }

    #[test]
    fn env_flags_follow_docker() {
        assert_eq!(env_entry("A=1=2", env).unwrap().unwrap(), "A=1=2");
        assert_eq!(env_entry("A=", env).unwrap().unwrap(), "A=");
        assert_eq!(env_entry("SET", env).unwrap().unwrap(), "SET=from-env");
        assert_eq!(env_entry("UNSET", env).unwrap(), None);
        assert!(env_entry("=x", env).is_err());
        assert!(env_entry("A B=x", env).is_err());
    }

    #[test]
    fn env_files_skip_comments_and_keep_values_literal() {
        let text = "# comment\n\n  A=\"quoted\" \nSET\nUNSET\nB=x#y\n";
        assert_eq!(
            parse_env_file(text, env).unwrap(),
            ["A=\"quoted\" ", "SET=from-env", "B=x#y"]
        );
        let err = parse_env_file("A=1\nBAD KEY\n", env).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }

    #[test]
    fn exit_codes_keep_the_low_byte() {
        assert_eq!(low_byte(3), 3);
        assert_eq!(low_byte(137), 137);
        assert_eq!(low_byte(256 + 1), 1);
    }
}
