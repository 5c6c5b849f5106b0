//! Composition root: turns a parsed command line into work. The binary's edge, so errors are
//! `anyhow` here and typed everywhere below.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{
    BackfillArgs, Cli, Command, ExplainArgs, GenerateArgs, HealthcheckArgs, OnceArgs, ReplayArgs,
    RuleSelection, ValidateArgs,
};
use crate::config::{CliOverrides, Config, Secrets};
use crate::engine::{CompiledRule, EngineOptions};
use crate::generate::{self as gen, GenerateSpec, Generator};
use crate::rule::Rule;
use crate::run::{PreparedRule, RunContext, RunOutcome, RunPlan};

/// Carries out one command line.
pub fn main(cli: Cli) -> Result<ExitCode> {
    let overrides = CliOverrides {
        es_url: cli.es_url.clone(),
        log_format: cli.log_format,
    };
    let config_path = cli.config.clone();
    let load = || load_config(config_path.as_deref(), &overrides);
    match cli.command {
        Command::Once(args) => once(load()?, args),
        Command::Backfill(args) => backfill(load()?, args),
        Command::Validate(args) => validate(load(), args),
        Command::Run(args) => daemon(load()?, &args.rules),
        Command::Setup(args) => setup(&load()?, args.with_source_templates),
        Command::Generate(args) => {
            // Loading goes to the configured cluster with the configured credentials.
            let settings = if args.load {
                Some(es_settings(&load()?)?)
            } else {
                None
            };
            generate(args, settings)
        }
        Command::Replay(args) => replay(args),
        Command::Explain(args) => explain(args),
        Command::Healthcheck(args) => Ok(healthcheck(
            Config::load(config_path.as_deref(), &overrides),
            args,
        )),
    }
}

/// `seqwatch healthcheck`: exit 0 when the daemon answers 200, else 1 — never 2, which Docker
/// reserves in health checks — so even a configuration error is reported as unhealthy.
fn healthcheck(
    config: Result<Config, crate::config::ConfigError>,
    args: HealthcheckArgs,
) -> ExitCode {
    use crate::healthcheck::{check, probe_address, Probe};
    let target = match (&args.address, config) {
        (Some(address), _) => probe_address("--address", address),
        (None, Ok(config)) => probe_address("daemon.listen", &config.daemon.listen),
        (None, Err(e)) => {
            eprintln!("unhealthy: the configuration does not load: {e}");
            return ExitCode::from(1);
        }
    };
    let probe = if args.ready {
        Probe::Ready
    } else {
        Probe::Live
    };
    let outcome = target.and_then(|addr| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| crate::healthcheck::HealthcheckError::Io {
                addr,
                path: probe.path(),
                source,
            })?;
        rt.block_on(check(addr, probe, args.timeout.0))
            .map(|body| (addr, body))
    });
    match outcome {
        Ok((addr, body)) => {
            println!("healthy: http://{addr}{} answered 200 {body}", probe.path());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
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
    let mut file = File::open(&args.events).with_context(|| format!("cannot open {origin}"))?;
    // The whole export as one text: each `_source` stays a slice of it until it is correlated.
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("reading {origin}"))?;
    // One pass when the export is already in order (the usual case); else scan, sort, correlate.
    let (result, hits, bad_line_count) =
        match crate::replay::correlate_sorted_text(&compiled, &text, max) {
            Some((result, hits)) => (result, hits, 0),
            None => {
                let read = crate::replay::scan_hits(&text, &origin, &compiled);
                for bad in &read.bad_lines {
                    eprintln!("skipped {bad}");
                }
                let hits = read.hits.len();
                let result = crate::replay::correlate_scanned(&compiled, read.hits, max)?;
                (result, hits, read.bad_line_count)
            }
        };
    let stdout = std::io::stdout();
    crate::replay::write_detections(&mut stdout.lock(), &result, compiled.is_sequence())?;
    for bad in &result.stats.bad_event_samples {
        eprintln!("skipped event {bad}");
    }
    let s = &result.stats;
    eprintln!(
        "replay: {hits} hits, {} lines skipped, {} candidates, {} bad events, {} detections, {} dropped by the cap of {max}",
        bad_line_count, s.candidates, s.bad_events, s.detections, s.dropped_by_cap
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
        // What the two-step fetch restricts (`scripts/bench-e2e` rebuilds its requests).
        "join_keys_per_stage": match &rule.query {
            crate::eql::ast::Query::Sequence(seq) => crate::fetch_plan::stage_key_fields(seq),
            crate::eql::ast::Query::Event(_) => Vec::new(),
        },
        "two_step_refusal": crate::fetch_plan::shape_refusal(&rule.query).map(|r| r.to_string()),
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &body)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// `seqwatch generate`: NDJSON hits to `--out` (or stdout) and truth to `--truth`; summary on stderr.
fn generate(args: GenerateArgs, settings: Option<crate::es::EsSettings>) -> Result<ExitCode> {
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

    let Some(settings) = settings else {
        anyhow::bail!("generate --load without connection settings (a bug)");
    };
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

/// `seqwatch setup`: installs the index templates on the configured cluster, with the
/// configured credentials (an administrator's: the runtime role cannot manage templates).
fn setup(config: &Config, with_source_templates: bool) -> Result<ExitCode> {
    use anyhow::Context as _;
    let settings = es_settings(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let installed = runtime.block_on(async {
        let client = crate::es::EsClient::connect(&settings)?;
        client.setup(with_source_templates).await
    })?;
    for template in installed {
        if template.type_fallbacks.is_empty() {
            println!("installed index template {}", template.name);
        } else {
            // Kibana's types the cluster lacks (mappings/README.md): said once, at install.
            let replaced: Vec<String> = template
                .type_fallbacks
                .iter()
                .map(|f| format!("{} as {}", f.kibana_type, f.fallback))
                .collect();
            println!(
                "installed index template {} (this cluster lacks some of Kibana's field types; mapped {})",
                template.name,
                replaced.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads and validates the configuration, then starts logging as it says.
fn load_config(path: Option<&Path>, overrides: &CliOverrides) -> Result<Config> {
    let config = Config::load(path, overrides)?;
    if let Err(errors) = config.validate() {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::bail!("the configuration is invalid:\n{}", list.join("\n"));
    }
    crate::telemetry::init(&config.log);
    Ok(config)
}

/// The rules to run: `--rules` paths, else `rules.paths`, else the built-in rule.
pub fn load_rules(config: &Config, selection: &RuleSelection) -> Result<Vec<PreparedRule>> {
    let paths = if selection.rules.is_empty() {
        &config.rules.paths
    } else {
        &selection.rules
    };
    let mut rules = Vec::new();
    if paths.is_empty() {
        rules.push(Rule::builtin().context("the built-in rule does not load (a bug)")?);
    }
    for p in paths {
        if p.is_dir() {
            rules.extend(Rule::load_dir(p)?);
        } else {
            rules.push(Rule::load(p)?);
        }
    }
    let mut prepared = Vec::new();
    let mut errors = Vec::new();
    for r in rules {
        match PreparedRule::prepare(r, config) {
            Ok(p) => prepared.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &prepared {
        if !seen.insert(p.uuid.clone()) {
            anyhow::bail!(
                "two rules share the uuid {:?} (rule_id {:?}); alert ids would collide",
                p.uuid,
                p.rule.rule_id
            );
        }
    }
    Ok(prepared)
}

/// Connection settings from the configuration and the secrets.
pub fn es_settings(config: &Config) -> Result<crate::es::EsSettings> {
    use secrecy::ExposeSecret;
    let es = &config.elasticsearch;
    let secrets = Secrets::load(es)?;
    let mut settings = crate::es::EsSettings::new(es.url.clone());
    settings.request_timeout = es.request_timeout.0;
    settings.max_retries = es.max_retries;
    settings.compress_responses = es.compress_responses;
    settings.auth = match (&secrets.api_key, &es.username, &secrets.password) {
        (Some(key), _, _) => Some(match key.expose_secret().split_once(':') {
            Some((id, k)) => crate::es::EsAuth::ApiKey { id: id.to_owned(), key: k.to_owned().into() },
            None => crate::es::EsAuth::EncodedApiKey(key.clone()),
        }),
        (None, Some(user), Some(password)) => {
            Some(crate::es::EsAuth::Basic { username: user.clone(), password: password.clone() })
        }
        (None, Some(_), None) => anyhow::bail!(
            "elasticsearch.username is set but no password: set SEQWATCH_ES_PASSWORD or elasticsearch.password_file"
        ),
        (None, None, _) => None,
    };
    if let Some(ca) = &es.ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("elasticsearch.ca_file: cannot read {}", ca.display()))?;
        // Said here, with the file's name, rather than by the TLS stack at connect time.
        anyhow::ensure!(
            String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----"),
            "elasticsearch.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            ca.display()
        );
        settings.ca_pem = Some(pem);
    }
    Ok(settings)
}

/// This replica's name: `SEQWATCH_INSTANCE`, else host name and process id.
pub fn instance_name() -> String {
    std::env::var("SEQWATCH_INSTANCE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn parse_time(flag: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| {
            format!("{flag} {text:?} is not an RFC 3339 time such as 2026-11-29T12:00:00Z")
        })
}

/// The context runs share: the configured cluster, the configuration, this replica's name.
fn run_context(config: Config) -> Result<RunContext> {
    let client = crate::es::EsClient::connect(&es_settings(&config)?)?;
    Ok(RunContext::new(
        std::sync::Arc::new(client),
        std::sync::Arc::new(config),
        instance_name(),
    ))
}

/// `seqwatch run`: the daemon, until SIGTERM or SIGINT.
fn daemon(config: Config, selection: &RuleSelection) -> Result<ExitCode> {
    let rules = load_rules(&config, selection)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let ctx = run_context(config)?;
        crate::daemon::serve(ctx, rules, crate::daemon::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `seqwatch once`: one run of every rule; exit 1 if one failed or was not run.
fn once(config: Config, args: OnceArgs) -> Result<ExitCode> {
    let rules = load_rules(&config, &args.rules)?;
    let now = match &args.now {
        Some(t) => parse_time("--now", t)?,
        None => chrono::Utc::now(),
    };
    let rt = runtime()?;
    let ctx = rt.block_on(async { run_context(config) })?;
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for rule in &rules {
        match rt.block_on(crate::run::run(&ctx, rule, &RunPlan::once(now))) {
            RunOutcome::Ran(report) => {
                failed |= report.error.is_some();
                serde_json::to_writer_pretty(&mut out, &report.doc)?;
                writeln!(out)?;
            }
            RunOutcome::Skipped(holder) => {
                failed = true;
                eprintln!(
                    "rule {:?}: not run, another replica ({}) holds its lease until {}",
                    rule.rule.name, holder.owner, holder.until
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `seqwatch backfill`: every rule over the range; exit 1 if a chunk failed. SIGINT or SIGTERM
/// stops it at the chunks' next safe point; what finished is recorded, so the same command
/// resumes.
fn backfill(config: Config, args: BackfillArgs) -> Result<ExitCode> {
    let rules = load_rules(&config, &args.rules)?;
    let from = parse_time("--from", &args.from)?;
    let to = parse_time("--to", &args.to)?;
    if from >= to {
        anyhow::bail!("--from must be before --to");
    }
    let options = crate::run::BackfillOptions {
        parallel: args.parallel.max(1),
        chunk: args.chunk.0,
    };
    let rt = runtime()?;
    let ctx = rt.block_on(async { run_context(config) })?;
    // The first SIGINT or SIGTERM stops the chunks at their next safe point; a second one
    // does not wait for that.
    let cancel = ctx.cancel.clone();
    rt.spawn(async move {
        crate::daemon::shutdown_signal().await;
        eprintln!(
            "stopping: the chunks in flight stop at their next safe point (again to stop now)"
        );
        cancel.cancel();
        crate::daemon::shutdown_signal().await;
        std::process::exit(130);
    });
    let mut failed = false;
    for rule in &rules {
        let report = rt.block_on(crate::run::backfill(&ctx, rule, from, to, options))?;
        failed |=
            report.failed_chunks > 0 || report.chunks_run + report.chunks_resumed < report.chunks;
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn validate(config: Result<Config>, args: ValidateArgs) -> Result<ExitCode> {
    // Report everything found, not just the first problem.
    let mut problems = Vec::new();
    let config = match config {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    let mut rules = Vec::new();
    if let Some(c) = &config {
        match load_rules(c, &args.rules) {
            Ok(r) => rules = r,
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    if args.check_es {
        if let Some(c) = &config {
            match es_settings(c).and_then(|s| Ok(crate::es::EsClient::connect(&s)?)) {
                Ok(client) => {
                    let rt = runtime()?;
                    problems
                        .extend(rt.block_on(crate::validate::check_cluster(&client, c, &rules)));
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    for r in &rules {
        println!(
            "ok: rule {:?} ({}), every {}, lookback {}, max {} alerts",
            r.rule.name,
            r.rule.origin,
            crate::config::HumanDuration(r.schedule.interval),
            crate::config::HumanDuration(r.schedule.lookback),
            r.max_signals
        );
    }
    if problems.is_empty() {
        println!("configuration and rules are valid");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        Ok(ExitCode::from(1))
    }
}
