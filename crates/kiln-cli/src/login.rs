//! `kiln login [-u USER] [--password-stdin] [REGISTRY]` and `kiln logout [REGISTRY]`: check
//! credentials against the registry and keep them in docker's config file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, through its credential helper when
//! one is configured), so docker, skopeo and kiln share one login.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::pull::RegistryArgs;

/// Arguments of `kiln login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry (`ghcr.io`, `localhost:5000`; default: Docker Hub).
    registry: Option<String>,
    /// The user name.
    #[arg(short, long)]
    username: Option<String>,
    /// The password (visible in the process list: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    connection: RegistryArgs,
}

/// Arguments of `kiln logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// The registry (default: Docker Hub).
    registry: Option<String>,
}

/// Runs `kiln login`.
pub(crate) fn run_login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = kiln_build::registry_host(args.registry.as_deref());
    let username = match &args.username {
        Some(user) => user.clone(),
        None if std::io::stdin().is_terminal() && !args.password_stdin => prompt("Username: ")?,
        None => bail!("no user name for {registry}: pass -u USER"),
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(password) = &args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        password.clone()
    } else if std::io::stdin().is_terminal() {
        prompt_hidden("Password: ")?
    } else {
        bail!("no password for {registry}: pass --password-stdin and write it to standard input")
    };
    let path = kiln_build::login(
        &registry,
        &username,
        &password,
        args.connection.client_config(),
    )?;
    eprintln!("Credentials saved in {}", path.display());
    eprintln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiln logout`.
pub(crate) fn run_logout(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = kiln_build::registry_host(args.registry.as_deref());
    if kiln_build::logout(&registry)? {
        eprintln!("Removing login credentials for {registry}");
    } else {
        eprintln!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}

fn prompt(text: &str) -> anyhow::Result<String> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// Reads a line from the terminal with echo off (restored afterwards, even on error).
fn prompt_hidden(text: &str) -> anyhow::Result<String> {
    let result = kiln_build::without_echo(|| prompt(text))
        .context("turning off the terminal's echo for the password prompt");
    eprintln!();
    result?
}
