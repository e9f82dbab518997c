//! `kiln login [-u USER] [--password-stdin] [REGISTRY]` and `kiln logout [REGISTRY]`: check
//! credentials against the registry and keep them in docker's config file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, through its credential helper when
//! one is configured), so docker, skopeo and kiln share one login.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_registry::{Client, Credentials, DockerConfig};

use crate::pull::{RegistryArgs, runtime};

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

/// `docker login` accepts URLs and Hub aliases; the registry is the host part.
fn registry_name(arg: Option<&str>) -> String {
    let Some(text) = arg else {
        return kiln_oci::DOCKER_HUB.to_owned();
    };
    let stripped = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let host = stripped.split('/').next().unwrap_or(stripped);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            kiln_oci::DOCKER_HUB.to_owned()
        }
        other => other.to_owned(),
    }
}

/// Runs `kiln login`.
pub(crate) fn run_login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
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
    if username.is_empty() || password.is_empty() {
        bail!("user name and password for {registry} must not be empty");
    }
    let credentials = Credentials::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let config = args
        .connection
        .client_config()
        .without_docker_config()
        .credentials(registry.clone(), credentials);
    let client = Client::new(config)?;
    runtime()?
        .block_on(client.check_login(&registry))
        .with_context(|| format!("logging in to {registry}"))?;
    let mut docker_config = DockerConfig::load_default()?;
    docker_config.store(&registry, &username, &password)?;
    eprintln!("Credentials saved in {}", docker_config.path().display());
    eprintln!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiln logout`.
pub(crate) fn run_logout(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
    let mut docker_config = DockerConfig::load_default()?;
    if docker_config.erase(&registry)? {
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
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning off echo")?;
    let result = prompt(text);
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    restored.context("restoring terminal settings")?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_like_docker_login() {
        assert_eq!(registry_name(None), "docker.io");
        assert_eq!(
            registry_name(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_name(Some("localhost:5000")), "localhost:5000");
        assert_eq!(registry_name(Some("https://ghcr.io")), "ghcr.io");
    }
}
