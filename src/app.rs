//! Composition root: turns a parsed command line into work. The binary's edge, so errors are
//! `anyhow` here and typed everywhere below.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, GenerateArgs};
use crate::generate::{self as gen, GenerateSpec, Generator};

/// Carries out one command line.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Setup(_) => anyhow::bail!("setup: not built yet"),
        Command::Generate(args) => generate(args),
        Command::Replay(_) => anyhow::bail!("replay: not built yet"),
        Command::Explain(_) => anyhow::bail!("explain: not built yet"),
    }
}

/// `seqwatch generate`: NDJSON hits to `--out` (or stdout) and truth to `--truth`; summary on stderr.
fn generate(args: GenerateArgs) -> Result<ExitCode> {
    use std::io::Write;
    if args.load {
        // Loading belongs to the Elasticsearch module; `gen::Generator` yields the hits it needs.
        anyhow::bail!(
            "generate --load is not wired yet: write NDJSON with --out FILE and load it separately"
        );
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (from_ms, to_ms) = gen::resolve_range(
        args.from.as_deref(),
        args.to.as_deref(),
        &args.duration,
        now_ms,
    )?;
    let spec = GenerateSpec {
        hosts: args.hosts,
        rate: args.rate,
        from_ms,
        to_ms,
        seed: args.seed,
        installs_per_host_hour: args.installs_per_host_hour,
        script_rate: args.script_rate,
        malicious_rate: args.malicious_rate,
    };
    let mut generator = Generator::new(spec)?;
    let mut events: Box<dyn Write> = match &args.out {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)
                .with_context(|| format!("cannot create --out {}", path.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        )),
    };
    let mut truth: Option<Box<dyn Write>> = match &args.truth {
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create --truth {}", path.display()))?,
        ))),
        None => None,
    };
    gen::write_streams(
        &mut generator,
        &mut events,
        truth.as_deref_mut().map(|w| w as &mut dyn Write),
    )?;
    eprintln!("{}", generator.summary());
    Ok(ExitCode::SUCCESS)
}
