//! Composition root: turns a parsed command line into work. The binary's edge, so errors are
//! `anyhow` here and typed everywhere below.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, ExplainArgs, ReplayArgs};
use crate::engine::{CompiledRule, EngineOptions};
use crate::rule::Rule;

/// Carries out one command line.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Setup(_) => anyhow::bail!("setup: not built yet"),
        Command::Generate(_) => anyhow::bail!("generate: not built yet"),
        Command::Replay(args) => replay(args),
        Command::Explain(args) => explain(args),
    }
}

/// The rule in `path`, or the built-in one.
fn load_rule(path: Option<&Path>) -> Result<Rule> {
    Ok(match path {
        Some(p) => Rule::load(p)?,
        None => Rule::builtin().context("the built-in rule does not load (a bug)")?,
    })
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let rule = load_rule(args.rule.as_deref())?;
    let max = args.max_alerts.unwrap_or(rule.max_signals as usize);
    // Like a rule's max_signals; the matcher would otherwise quietly keep one.
    anyhow::ensure!(
        max > 0,
        "--max-alerts must be at least 1, like a rule's max_signals"
    );
    // Exports carry no mapping; type the ECS fields as Elastic's data streams map them.
    let compiled = CompiledRule::compile(&rule, EngineOptions::ecs_process())?;
    let origin = args.events.display().to_string();
    let file = File::open(&args.events).with_context(|| format!("cannot open {origin}"))?;
    let read = crate::replay::read_hits(BufReader::new(file), &origin)
        .with_context(|| format!("reading {origin}"))?;
    for bad in &read.bad_lines {
        eprintln!("skipped {bad}");
    }
    let hits = read.hits.len();
    let result = crate::replay::correlate(&compiled, read.hits, max)?;
    let stdout = std::io::stdout();
    crate::replay::write_detections(&mut stdout.lock(), &result, compiled.is_sequence())?;
    for bad in &result.stats.bad_event_samples {
        eprintln!("skipped event {bad}");
    }
    let s = &result.stats;
    eprintln!(
        "replay: {hits} hits, {} lines skipped, {} candidates, {} bad events, {} detections, {} dropped by the cap of {max}",
        read.bad_line_count, s.candidates, s.bad_events, s.detections, s.dropped_by_cap
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let rule = load_rule(args.rule.as_deref())?;
    let compiled = CompiledRule::compile(&rule, EngineOptions::default())?;
    // Date math keeps the printed query runnable as is; runs use absolute instants.
    let from = format!("now-{}s", rule.lookback.as_secs());
    let fetch = compiled.fetch_query(&rule, &from, "now")?;
    let body = serde_json::json!({
        "index": rule.index,
        "query": fetch.query,
        "_source": {"includes": fetch.source_includes},
        "sort": compiled.sort(),
        "exact_push_down_per_stage": fetch.stages_exact,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &body)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
