//! Composition root: turns a parsed command line into work. The binary's edge, so errors are
//! `anyhow` here and typed everywhere below.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command, ExplainArgs, GenerateArgs, ReplayArgs};
use crate::engine::{CompiledRule, EngineOptions};
use crate::generate::{self as gen, GenerateSpec, Generator};
use crate::rule::Rule;

/// Carries out one command line.
pub fn main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Setup(args) => setup(cli.es_url.as_deref(), args.with_source_templates),
        Command::Generate(args) => generate(args, cli.es_url.as_deref()),
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
    let compiled = CompiledRule::compile(&rule, EngineOptions::default())?;
    let origin = args.events.display().to_string();
    let file = File::open(&args.events).with_context(|| format!("cannot open {origin}"))?;
    let read = crate::replay::read_hits(BufReader::new(file), &origin)
        .with_context(|| format!("reading {origin}"))?;
    for bad in &read.bad_lines {
        eprintln!("skipped {bad}");
    }
    let max = args.max_alerts.unwrap_or(rule.max_signals as usize);
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

/// `seqwatch generate`: NDJSON hits to `--out` (or stdout) and truth to `--truth`; summary on stderr.
fn generate(args: GenerateArgs, es_url: Option<&str>) -> Result<ExitCode> {
    use std::io::Write;
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
    // NDJSON goes to --out, or to stdout unless the events go into Elasticsearch instead.
    let mut events: Option<Box<dyn Write>> = match &args.out {
        Some(path) if path.as_os_str() != "-" => Some(Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            File::create(path)
                .with_context(|| format!("cannot create --out {}", path.display()))?,
        ))),
        Some(_) => Some(Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))),
        None if args.load => None,
        None => Some(Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))),
    };
    let mut truth: Option<Box<dyn Write>> = match &args.truth {
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            File::create(path)
                .with_context(|| format!("cannot create --truth {}", path.display()))?,
        ))),
        None => None,
    };
    if !args.load {
        let mut events = events.expect("stdout when not loading");
        gen::write_streams(
            &mut generator,
            &mut events,
            truth.as_deref_mut().map(|w| w as &mut dyn Write),
        )?;
        eprintln!("{}", generator.summary());
        return Ok(ExitCode::SUCCESS);
    }

    let settings = crate::es::EsSettings::new(es_url.unwrap_or(crate::es::DEFAULT_URL));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = crate::es::EsClient::connect(&settings)?;
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    let mut total = crate::es::BulkSummary::default();
    let mut indices = std::collections::BTreeSet::new();
    let mut first_failure = None;
    let mut flush = |batch: &mut Vec<crate::es::BulkCreate>| -> Result<()> {
        let items = runtime.block_on(client.bulk_create(batch))?;
        let s = crate::es::BulkSummary::of(&items);
        total.created += s.created;
        total.already_existed += s.already_existed;
        total.failed += s.failed;
        if first_failure.is_none() {
            first_failure = items
                .into_iter()
                .find(|i| matches!(i.outcome, crate::es::BulkOutcome::Failed { .. }));
        }
        batch.clear();
        Ok(())
    };
    while let Some(hit) = generator.next() {
        if let Some(out) = events.as_mut() {
            writeln!(out, "{}", hit.to_ndjson())?;
        }
        if let Some(out) = truth.as_mut() {
            for rec in generator.drain_truth() {
                writeln!(out, "{}", serde_json::to_string(&rec)?)?;
            }
        } else {
            generator.drain_truth();
        }
        indices.insert(hit.index);
        let document = hit
            .source_value()
            .context("generated event is not JSON (a bug)")?;
        batch.push(crate::es::BulkCreate::new(hit.index, hit.id, document));
        if batch.len() == LOAD_BATCH {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    for out in events.iter_mut().chain(truth.iter_mut()) {
        out.flush()?;
    }
    for index in &indices {
        runtime.block_on(client.refresh(index))?;
    }
    eprintln!("{}", generator.summary());
    eprintln!(
        "loaded into {}: {} created, {} already there, {} failed",
        client.url(),
        total.created,
        total.already_existed,
        total.failed
    );
    if let Some(item) = first_failure {
        anyhow::bail!(
            "{} events were refused; the first: {}/{}: {:?}",
            total.failed,
            item.index,
            item.id,
            item.outcome
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Events per `_bulk` request when loading generated data.
const LOAD_BATCH: usize = 2_000;

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
