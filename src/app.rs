//! Composition root: turns a parsed command line into work. The binary's edge, so errors are
//! `anyhow` here and typed everywhere below.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Carries out one command line.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Setup(args) => setup(cli.es_url.as_deref(), args.with_source_templates),
        Command::Generate(_) => anyhow::bail!("generate: not built yet"),
        Command::Replay(_) => anyhow::bail!("replay: not built yet"),
        Command::Explain(_) => anyhow::bail!("explain: not built yet"),
    }
}

/// `seqwatch setup`: installs the index templates on the node at `es_url` (default
/// [`crate::es::DEFAULT_URL`]).
fn setup(es_url: Option<&str>, with_source_templates: bool) -> Result<ExitCode> {
    use anyhow::Context as _;
    let settings = crate::es::EsSettings::new(es_url.unwrap_or(crate::es::DEFAULT_URL));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let installed = runtime.block_on(async {
        let client = crate::es::EsClient::connect(&settings)?;
        client.setup(with_source_templates).await
    })?;
    for name in installed {
        println!("installed index template {name}");
    }
    Ok(ExitCode::SUCCESS)
}
