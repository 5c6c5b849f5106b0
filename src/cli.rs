//! Command-line surface. Declarations only: every command is carried out in `app`.

use std::path::PathBuf;

use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{HumanDuration, LogFormat};

/// Runs Elastic Security EQL detection rules against Elasticsearch, without Kibana.
#[derive(Debug, Parser)]
#[command(name = "seqwatch", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Without it, `config.toml` in the working directory is read
    /// if it exists; settings can also come from `SEQWATCH_*` environment variables.
    #[arg(long, global = true, value_name = "FILE", env = "SEQWATCH_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Elasticsearch URL; overrides `elasticsearch.url` from the configuration.
    #[arg(long, global = true, value_name = "URL")]
    pub es_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format` takes the values of `[log] format`; the type is the configuration's, which
/// knows nothing of clap.
impl ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[LogFormat::Text, LogFormat::Json]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            LogFormat::Text => PossibleValue::new("text").help("Human-readable lines"),
            LogFormat::Json => PossibleValue::new("json").help("One JSON object per line"),
        })
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: run every rule on its schedule until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Run every rule once now, print the run documents, exit non-zero if a run failed.
    Once(OnceArgs),
    /// Produce the alerts the scheduled runs over a past range would have produced.
    Backfill(BackfillArgs),
    /// Check the configuration and the rules (and, with --check-es, the cluster).
    Validate(ValidateArgs),
    /// Install the index templates (alerts, run state; source templates with a flag).
    Setup(SetupArgs),
    /// Generate realistic process events, as NDJSON or straight into Elasticsearch.
    Generate(GenerateArgs),
    /// Run a rule over exported Elasticsearch hits (NDJSON), offline, and print the matches.
    Replay(ReplayArgs),
    /// Print the Elasticsearch query a rule's push-down sends.
    Explain(ExplainArgs),
    /// Ask a running daemon's /healthz (or /readyz) on `daemon.listen`; exit 0 if healthy,
    /// else 1. For container health checks: the image has no shell and no curl.
    Healthcheck(HealthcheckArgs),
}

// ---- setup -------------------------------------------------------------------------------

/// Arguments of `seqwatch setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Also install the data-stream templates for the sources
    /// (`logs-endpoint.events.process-*`, `logs-crowdstrike.fdr-*`). For test clusters only:
    /// production clusters get these from Fleet.
    #[arg(long)]
    pub with_source_templates: bool,
}

// ---- generate ----------------------------------------------------------------------------

/// Arguments of `seqwatch generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of hosts.
    #[arg(long, default_value_t = 10)]
    pub hosts: u32,
    /// Background events per second, over all hosts.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Start of the time range (RFC 3339). Default: `--duration` before now.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the time range (RFC 3339). Default: now.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Length of the range when `--from` is not given (e.g. 9m, 1h).
    #[arg(long, default_value = "9m")]
    pub duration: String,
    /// Random seed; the same seed and arguments give the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// npm install trees per host per hour.
    #[arg(long, default_value_t = 6.0)]
    pub installs_per_host_hour: f64,
    /// Share of install trees whose packages run lifecycle scripts (0..1).
    #[arg(long, default_value_t = 0.5)]
    pub script_rate: f64,
    /// Share of lifecycle-script trees that are Shai-Hulud-like (0..1).
    #[arg(long, default_value_t = 0.3)]
    pub malicious_rate: f64,
    /// Write hits as NDJSON here (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Bulk-load the events into Elasticsearch with `create` operations.
    #[arg(long)]
    pub load: bool,
    /// Write the planted sequences (ground truth) here as NDJSON.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
}

// ---- replay ------------------------------------------------------------------------------

/// Arguments of `seqwatch replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// NDJSON file of Elasticsearch hits (`{"_index","_id","_source"}` per line), any order.
    pub events: PathBuf,
    /// Rule file (detection-rules TOML). Default: the built-in rule.
    #[arg(long, value_name = "FILE")]
    pub rule: Option<PathBuf>,
    /// Keep at most this many sequences (the latest). Default: the rule's max_signals.
    #[arg(long, value_name = "N")]
    pub max_alerts: Option<usize>,
}

// ---- healthcheck -------------------------------------------------------------------------

/// Arguments of `seqwatch healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Ask /readyz (Elasticsearch reachable, every rule ran recently) instead of /healthz.
    #[arg(long)]
    pub ready: bool,
    /// Address of the daemon. Default: `daemon.listen`, with 0.0.0.0 or [::] probed on loopback.
    #[arg(long, value_name = "IP:PORT")]
    pub address: Option<String>,
    /// Limit on the whole exchange (e.g. 3s, 500ms).
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub timeout: HumanDuration,
}

// ---- explain -----------------------------------------------------------------------------

/// Arguments of `seqwatch explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Rule file (detection-rules TOML). Default: the built-in rule.
    #[arg(long, value_name = "FILE")]
    pub rule: Option<PathBuf>,
}

// ---- rules shared by the job commands ----------------------------------------------------

/// Which rules to run; overrides `rules.paths` from the configuration.
#[derive(Debug, Args, Default)]
pub struct RuleSelection {
    /// A rule file or a folder of rule files (repeatable). Default: `rules.paths`, or the
    /// built-in rule.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
}

// ---- run ---------------------------------------------------------------------------------

/// Arguments of `seqwatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Rules to run.
    #[command(flatten)]
    pub rules: RuleSelection,
}

// ---- once --------------------------------------------------------------------------------

/// Arguments of `seqwatch once`.
#[derive(Debug, Args)]
pub struct OnceArgs {
    /// Rules to run.
    #[command(flatten)]
    pub rules: RuleSelection,
    /// Run as if the time were T (RFC 3339). Default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

// ---- backfill ----------------------------------------------------------------------------

/// Arguments of `seqwatch backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Rules to run.
    #[command(flatten)]
    pub rules: RuleSelection,
    /// Start of the range (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End of the range (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Chunks searched at the same time.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// The span of one chunk (each also reads one lookback before it). Progress is saved
    /// per chunk, so a killed backfill started again loses at most the chunks in flight.
    #[arg(long, value_name = "DURATION", default_value = "1d")]
    pub chunk: crate::config::HumanDuration,
}

// ---- validate ----------------------------------------------------------------------------

/// Arguments of `seqwatch validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Rules to check.
    #[command(flatten)]
    pub rules: RuleSelection,
    /// Also check the cluster: reachable, templates installed, source indices readable.
    #[arg(long)]
    pub check_es: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--log-format X` and `[log] format = "X"` name the same formats.
    #[test]
    fn log_format_flag_values_are_the_configuration_values() {
        for format in LogFormat::value_variants() {
            let flag = format.to_possible_value().expect("a value");
            let key = serde_json::to_value(format).expect("serialises");
            assert_eq!(key.as_str(), Some(flag.get_name()));
            assert_eq!(LogFormat::from_str(flag.get_name(), false), Ok(*format));
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
