//! The clap definition of the `kiln` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln: a daemonless, multi-stage container image builder.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a Dockerfile and print its syntax tree.
    Parse(crate::parse::ParseArgs),
}

impl Cli {
    /// Runs the selected subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Parse(args) => crate::parse::run(&args),
        }
    }
}
