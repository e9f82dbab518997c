//! The clap definition of the `kiln` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln: a daemonless, multi-stage container image builder.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    /// The local store's directory (default: $KILN_ROOT, else $XDG_DATA_HOME/kiln, else
    /// /var/lib/kiln as root, else ~/.local/share/kiln).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (flags follow `docker buildx build`).
    Build(Box<crate::build::BuildArgs>),
    /// Run BuildKit's build checks on a Dockerfile (text, JSON or SARIF).
    Lint(crate::lint::LintArgs),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(crate::parse::ParseArgs),
    /// Create a one-layer image from a root filesystem directory or tarball.
    Import(crate::import::ImportArgs),
    /// List the images in the local store.
    Images(crate::images::ImagesArgs),
    /// Run a command in an image (flags follow `docker run`).
    Run(Box<crate::run::RunArgs>),
    /// Show the history of an image's layers.
    History(crate::history::HistoryArgs),
    /// Show an image's manifest and config as JSON.
    Inspect(crate::inspect::InspectArgs),
    /// Give a local image another name.
    Tag(crate::tag::TagArgs),
    /// Write local images to a tar archive (docker-archive or OCI).
    Save(crate::save::SaveArgs),
    /// Load images from a tar archive (docker-archive or OCI).
    Load(crate::save::LoadArgs),
    /// Remove image names from the local store.
    Rmi(crate::rmi::RmiArgs),
    /// Remove unused data from the local store.
    Prune(crate::prune::PruneArgs),
    /// Show what the local store holds and what prune would reclaim (alias: du).
    #[command(visible_alias = "du")]
    Df(crate::df::DfArgs),
    /// Manage the local store.
    Store(crate::store_cmd::StoreArgs),
    /// Download an image from a registry into the local store.
    Pull(crate::pull::PullArgs),
    /// Upload a local image to a registry.
    Push(crate::push::PushArgs),
    /// Save registry credentials (in docker's config.json).
    Login(crate::login::LoginArgs),
    /// Remove saved registry credentials.
    Logout(crate::login::LogoutArgs),
}

impl Cli {
    /// Runs the selected subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Build(args) => crate::build::run(&args, self.root.as_deref()),
            Command::Lint(args) => crate::lint::run_lint(&args, self.root.as_deref()),
            Command::Parse(args) => crate::parse::run(&args),
            Command::Import(args) => crate::import::run(&args, self.root.as_deref()),
            Command::Images(args) => crate::images::run(&args, self.root.as_deref()),
            Command::Run(args) => Ok(crate::run::run(&args, self.root.as_deref())),
            Command::History(args) => crate::history::run(&args, self.root.as_deref()),
            Command::Inspect(args) => crate::inspect::run(&args, self.root.as_deref()),
            Command::Tag(args) => crate::tag::run(&args, self.root.as_deref()),
            Command::Save(args) => crate::save::run_save(&args, self.root.as_deref()),
            Command::Load(args) => crate::save::run_load(&args, self.root.as_deref()),
            Command::Rmi(args) => crate::rmi::run(&args, self.root.as_deref()),
            Command::Prune(args) => crate::prune::run(&args, self.root.as_deref()),
            Command::Df(args) => crate::df::run(&args, self.root.as_deref()),
            Command::Store(args) => crate::store_cmd::run(&args, self.root.as_deref()),
            Command::Pull(args) => crate::pull::run(&args, self.root.as_deref()),
            Command::Push(args) => crate::push::run(&args, self.root.as_deref()),
            Command::Login(args) => crate::login::run_login(&args),
            Command::Logout(args) => crate::login::run_logout(&args),
        }
    }
}
