//! Composition root: turns a parsed command line into work. The binary's edge, so errors are
//! `anyhow` here and typed everywhere below.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Carries out one command line.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Setup(_) => anyhow::bail!("setup: not built yet"),
        Command::Generate(_) => anyhow::bail!("generate: not built yet"),
        Command::Replay(_) => anyhow::bail!("replay: not built yet"),
        Command::Explain(_) => anyhow::bail!("explain: not built yet"),
    }
}
