//! Configuration: one typed tree, loaded in layers with figment and validated before anything
//! runs.
//!
//! Layers, later ones winning: built-in defaults, the TOML file, `SEQWATCH_*` environment
//! variables (`__` separates sections: `SEQWATCH_ELASTICSEARCH__URL`), then command-line flags.
//!
//! Secrets never travel through figment: its environment provider parses values as TOML
//! scalars, so an API key such as `0123` would become the integer `123` and then fail as "found
//! unsigned int, expected a string". They are read by [`Secrets::load`] from
//! dedicated variables or files and kept in [`SecretString`], whose `Debug` prints nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Environment prefix of every setting.
pub const ENV_PREFIX: &str = "SEQWATCH_";
/// Variable holding the Elasticsearch password (never read through figment).
pub const ENV_PASSWORD: &str = "SEQWATCH_ES_PASSWORD";
/// Variable holding the Elasticsearch API key, `id:key` or the base64 encoded form.
pub const ENV_API_KEY: &str = "SEQWATCH_ES_API_KEY";

/// Why the configuration could not be used. Each variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// figment could not extract the tree (unknown key, wrong type, bad duration …). Its
    /// message names the key path and the layer (file or environment) it came from.
    #[error("{}", describe_figment(.0))]
    Extract(Box<figment::Error>),
    /// A value parsed but is not acceptable.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key path, e.g. `elasticsearch.url`.
        key: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// A secret file could not be read. The message names the file, never its content.
    #[error("{key}: cannot read {path}: {source}")]
    SecretFile {
        /// The key that named the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Extract(Box::new(e))
    }
}

/// Every error of a figment extraction as `key.path (where): message`, where "where" is the
/// file, the exact `SEQWATCH_…` variable or the command line; figment's own rendering says
/// `default.elasticsearch.page_size` or `ELASTICSEARCH.PAGE_SIZE in SEQWATCH_ environment
/// variable(s)`, and a TOML syntax error without its file.
fn describe_figment(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|err| {
            // For an unknown key the path already ends with it.
            let path: Vec<String> = err.path.iter().map(|p| p.to_lowercase()).collect();
            let key = path.join(".");
            let place = match err.metadata.as_ref() {
                Some(m) => match &m.source {
                    Some(figment::Source::File(file)) => file.display().to_string(),
                    _ if m.name.contains("environment variable") => {
                        if path.is_empty() {
                            format!("{ENV_PREFIX}… environment variables")
                        } else {
                            format!(
                                "environment variable {ENV_PREFIX}{}",
                                path.join("__").to_uppercase()
                            )
                        }
                    }
                    _ => "command line".to_owned(),
                },
                None => "configuration".to_owned(),
            };
            let message = err.kind.to_string();
            if key.is_empty() {
                format!("{place}: {message}")
            } else {
                format!("{key} ({place}): {message}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A duration written with a unit: `500ms`, `30s`, `5m`, `1h`, `1d`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Shorthand for whole seconds.
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

/// Why a text is not a [`HumanDuration`]. Each variant carries the text as written; figment
/// and clap put the key or flag in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HumanDurationError {
    /// Digits alone, or nothing.
    #[error("duration {text:?} has no unit; write e.g. \"30s\", \"5m\" or \"1h\"")]
    NoUnit {
        /// The text as written.
        text: String,
    },
    /// The unit is not preceded by a whole number (a sign, a fraction, no digits, too many).
    #[error("duration {text:?} must start with a whole number, e.g. \"5m\"")]
    NoNumber {
        /// The text as written.
        text: String,
    },
    /// A unit other than `ms`, `s`, `m`, `h` or `d`.
    #[error("duration {text:?} has unknown unit {unit:?}; use ms, s, m, h or d")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// More milliseconds than a `u64` holds.
    #[error("duration {text:?} is too large")]
    TooLarge {
        /// The text as written.
        text: String,
    },
}

impl FromStr for HumanDuration {
    type Err = HumanDurationError;
    fn from_str(s: &str) -> Result<Self, HumanDurationError> {
        let text = || s.to_owned();
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| HumanDurationError::NoUnit { text: text() })?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| HumanDurationError::NoNumber { text: text() })?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => {
                return Err(HumanDurationError::UnknownUnit {
                    text: text(),
                    unit: unit.to_owned(),
                })
            }
        }
        .ok_or_else(|| HumanDurationError::TooLarge { text: text() })?;
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = HumanDurationError;
    fn try_from(s: String) -> Result<Self, HumanDurationError> {
        s.parse()
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> String {
        d.to_string()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in units {
            if ms != 0 && ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The whole configuration. `config.toml` at the top of the repository documents every key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Connection to Elasticsearch.
    pub elasticsearch: EsConfig,
    /// Which rules run.
    pub rules: RulesConfig,
    /// When they run and over which window.
    pub schedule: ScheduleConfig,
    /// Where alerts go.
    pub alerts: AlertsConfig,
    /// Where run state goes.
    pub state: StateConfig,
    /// The daemon's HTTP endpoints and shutdown.
    pub daemon: DaemonConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[elasticsearch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsConfig {
    /// Base URL of the cluster.
    pub url: String,
    /// User for basic auth; the password comes from `SEQWATCH_ES_PASSWORD` or `password_file`.
    pub username: Option<String>,
    /// File holding the password (a mounted secret).
    pub password_file: Option<PathBuf>,
    /// File holding the API key (`id:key` or encoded); or set `SEQWATCH_ES_API_KEY`.
    pub api_key_file: Option<PathBuf>,
    /// PEM file of the CA that signed the cluster's certificate. Verification is always on.
    pub ca_file: Option<PathBuf>,
    /// Limit on each request, connection included (the client sets none by default).
    pub request_timeout: HumanDuration,
    /// Hits per search page. Every page runs the query again in the point in time, so fewer,
    /// larger pages are faster: 5,000 took 0.59 to 0.70 of the time of 1,000 over a 5M-event
    /// window (docs/benchmarks.md), at about the same peak RSS.
    pub page_size: u32,
    /// How long a point in time stays open between two pages.
    pub pit_keep_alive: HumanDuration,
    /// Retries of a request that failed with 429, 502, 503, 504 or a connection error.
    pub max_retries: u32,
    /// Fetch a keyed sequence in two steps (stage 1's keys, then later stages restricted to
    /// them); `false` forces the single query over every stage.
    pub two_step_fetch: bool,
    /// Ask Elasticsearch for gzip-compressed answers (Kibana's `elasticsearch.compression`,
    /// off by default there too): fewer bytes, more CPU on the node and here.
    pub compress_responses: bool,
}

impl Default for EsConfig {
    fn default() -> Self {
        EsConfig {
            url: "http://127.0.0.1:9200".into(),
            username: None,
            password_file: None,
            api_key_file: None,
            ca_file: None,
            request_timeout: HumanDuration::secs(60),
            page_size: 5000,
            pit_keep_alive: HumanDuration::secs(120),
            max_retries: 5,
            two_step_fetch: true,
            compress_responses: false,
        }
    }
}

/// `[rules]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Rule files (detection-rules TOML) or folders of them. Empty: the built-in rule.
    pub paths: Vec<PathBuf>,
    /// `rule_id`s of Elastic's prebuilt rules, unmodified: their alerts say `immutable: true`
    /// and `rule_source: external`, as Kibana's do for an installed prebuilt rule. Every other
    /// rule is custom (`immutable: false`, `rule_source: internal`).
    pub prebuilt: Vec<String>,
    /// Rule uuid (Kibana's saved-object id, hashed into alert ids) per `rule_id`. A rule not
    /// listed uses its `rule_id`.
    pub uuids: BTreeMap<String, String>,
}

/// `[schedule]`. Unset values come from each rule (`interval`, `from`, `max_signals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Time between runs. Default: the rule's `interval` (5m).
    pub interval: Option<HumanDuration>,
    /// Six-field cron expression (seconds first), used instead of `interval` when set.
    pub cron: Option<String>,
    /// How far back each run looks. Default: the rule's `from` (now-9m → 9m).
    pub lookback: Option<HumanDuration>,
    /// Most new sequences alerted per run. Default: the rule's `max_signals` (100).
    pub max_signals: Option<usize>,
    /// After downtime, how far back a run may widen to the last success; older time is
    /// recorded as a gap.
    pub max_catchup: HumanDuration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            interval: None,
            cron: None,
            lookback: None,
            max_signals: None,
            max_catchup: HumanDuration::secs(24 * 3600),
        }
    }
}

/// Where alerts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertTarget {
    /// seqwatch's own index (`alerts.index`).
    Seqwatch,
    /// Kibana's `.alerts-security.alerts-<space>` alias, with `require_alias`.
    Kibana,
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// `seqwatch` or `kibana`.
    pub target: AlertTarget,
    /// Index (or alias) for `target = "seqwatch"`.
    pub index: String,
    /// Kibana space: the alerts' `kibana.space_ids`, Kibana's alias for `target = "kibana"`,
    /// and the entity analytics indices that alerts are enriched from.
    pub kibana_space: String,
    /// The Kibana version the alerts are written for: every alert's `kibana.version`.
    pub kibana_version: String,
    /// Add asset criticality and entity risk to alerts from the space's entity analytics
    /// indices when they exist, as Kibana does (docs/enrichment.md).
    pub enrichment: bool,
}

/// The newest Kibana version whose alerts seqwatch's follow; the Elasticsearch version the tests
/// pin, and the stack of the compose example.
pub const DEFAULT_KIBANA_VERSION: &str = "9.5.0";

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            target: AlertTarget::Seqwatch,
            index: ".seqwatch-alerts-default".into(),
            kibana_space: "default".into(),
            kibana_version: DEFAULT_KIBANA_VERSION.into(),
            enrichment: true,
        }
    }
}

impl AlertsConfig {
    /// The index or alias alerts are written to.
    pub fn write_target(&self) -> String {
        match self.target {
            AlertTarget::Seqwatch => self.index.clone(),
            AlertTarget::Kibana => format!(".alerts-security.alerts-{}", self.kibana_space),
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Index holding run documents, checkpoints and leases.
    pub index: String,
    /// How long a lease on a rule lasts without renewal (another replica may take over after).
    pub lease_ttl: HumanDuration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            index: ".seqwatch-state-default".into(),
            lease_ttl: HumanDuration::secs(600),
        }
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
    /// On SIGTERM/SIGINT, how long the current run may take to finish before it is abandoned.
    pub shutdown_timeout: HumanDuration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: "127.0.0.1:9108".into(),
            shutdown_timeout: HumanDuration::secs(30),
        }
    }
}

/// Log output formats (`[log] format`, `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `seqwatch=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Overrides from the command line, applied last.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    /// `--es-url`.
    pub es_url: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads the layers. `path` is the `--config` flag: when given it must exist; when not,
    /// `./config.toml` is read if present. No parent-directory search (figment's `Toml::file`
    /// would search upwards, which surprises in containers).
    pub fn load(path: Option<&Path>, cli: &CliOverrides) -> Result<Config, ConfigError> {
        Self::figment(path, cli)?
            .extract()
            .map_err(ConfigError::from)
    }

    /// The layered figment, exposed so callers can ask which layer supplied a value.
    pub fn figment(path: Option<&Path>, cli: &CliOverrides) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => fig = fig.merge(Toml::file_exact(p)),
            None if Path::new("config.toml").exists() => {
                fig = fig.merge(Toml::file_exact("config.toml"))
            }
            None => {}
        }
        // Only `SECTION__KEY` variables are settings: this keeps `SEQWATCH_ES_PASSWORD`,
        // `SEQWATCH_ES_API_KEY` and unrelated `SEQWATCH_*` variables out of the tree (and out of
        // unknown-key errors), while a misspelt `SEQWATCH_ELASTICSEARCH__URLL` is still refused.
        fig = fig.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        if let Some(url) = &cli.es_url {
            fig = fig.merge(Serialized::default("elasticsearch.url", url));
        }
        if let Some(format) = cli.log_format {
            fig = fig.merge(Serialized::default("log.format", format));
        }
        Ok(fig)
    }

    /// Checks what types cannot: URLs, sizes, cron syntax, file presence. Rule-dependent checks
    /// (lookback against interval + maxspan) are in [`Config::check_schedule`].
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut invalid = |key: &str, message: String| {
            errors.push(ConfigError::Invalid {
                key: key.into(),
                message,
            });
        };
        match url::Url::parse(&self.elasticsearch.url) {
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => invalid(
                "elasticsearch.url",
                format!("scheme must be http or https, not {:?}", u.scheme()),
            ),
            Ok(u) if u.host_str().is_none() => invalid("elasticsearch.url", "has no host".into()),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => invalid(
                "elasticsearch.url",
                "must not carry credentials; use elasticsearch.username with SEQWATCH_ES_PASSWORD, or an API key".into(),
            ),
            Ok(_) => {}
            Err(e) => invalid("elasticsearch.url", format!("is not a valid URL: {e}")),
        }
        if self.elasticsearch.page_size == 0 || self.elasticsearch.page_size > 10_000 {
            invalid(
                "elasticsearch.page_size",
                "must be between 1 and 10000".into(),
            );
        }
        if self.elasticsearch.request_timeout.0.is_zero() {
            invalid(
                "elasticsearch.request_timeout",
                "must be more than 0".into(),
            );
        }
        if self.elasticsearch.password_file.is_some() && self.elasticsearch.username.is_none() {
            invalid(
                "elasticsearch.password_file",
                "is set but elasticsearch.username is not".into(),
            );
        }
        for (key, file) in [
            ("elasticsearch.ca_file", &self.elasticsearch.ca_file),
            (
                "elasticsearch.password_file",
                &self.elasticsearch.password_file,
            ),
            (
                "elasticsearch.api_key_file",
                &self.elasticsearch.api_key_file,
            ),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    invalid(key, format!("{} is not a readable file", f.display()));
                }
            }
        }
        if let Some(cron) = &self.schedule.cron {
            if let Err(e) =
                tokio_cron_scheduler::Job::new_async(cron.as_str(), |_, _| Box::pin(async {}))
            {
                invalid(
                    "schedule.cron",
                    format!("{cron:?} is not a six-field cron expression (seconds first): {e}"),
                );
            }
        }
        if let Some(i) = self.schedule.interval {
            if i.0 < Duration::from_secs(1) {
                invalid("schedule.interval", "must be at least 1s".into());
            }
        }
        if self.schedule.max_signals == Some(0) {
            invalid("schedule.max_signals", "must be at least 1".into());
        }
        if self.alerts.index.is_empty() || self.alerts.index.contains(['*', ',', ' ']) {
            invalid(
                "alerts.index",
                "must be one concrete index or alias name".into(),
            );
        }
        if !is_version(&self.alerts.kibana_version) {
            invalid(
                "alerts.kibana_version",
                format!(
                    "{:?} is not a Kibana version like {DEFAULT_KIBANA_VERSION} (major.minor.patch, optionally -suffix)",
                    self.alerts.kibana_version
                ),
            );
        }
        if self.rules.prebuilt.iter().any(|id| id.trim().is_empty()) {
            invalid("rules.prebuilt", "lists an empty rule_id".into());
        }
        if self.state.index.is_empty() || self.state.index.contains(['*', ',', ' ']) {
            invalid("state.index", "must be one concrete index name".into());
        }
        if self.daemon.listen.parse::<std::net::SocketAddr>().is_err() {
            invalid(
                "daemon.listen",
                format!(
                    "{:?} is not an address like 0.0.0.0:9108",
                    self.daemon.listen
                ),
            );
        }
        if let Err(e) = self.log.level.parse::<tracing_subscriber::EnvFilter>() {
            invalid(
                "log.level",
                format!("{:?} is not a tracing filter: {e}", self.log.level),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The schedule check that needs the rule: a run must look back at least one interval plus
    /// the sequence's maxspan, or a sequence straddling two runs' windows could be missed.
    pub fn check_schedule(
        rule_name: &str,
        interval: Duration,
        lookback: Duration,
        maxspan: Option<Duration>,
    ) -> Result<(), ConfigError> {
        let needed = interval + maxspan.unwrap_or_default();
        if lookback < needed {
            return Err(ConfigError::Invalid {
                key: "schedule.lookback".into(),
                message: format!(
                    "{} for rule {rule_name:?} is shorter than interval {} + maxspan {} = {}; sequences spanning two runs would be missed",
                    HumanDuration(lookback),
                    HumanDuration(interval),
                    HumanDuration(maxspan.unwrap_or_default()),
                    HumanDuration(needed)
                ),
            });
        }
        Ok(())
    }
}

/// `major.minor.patch` with an optional `-suffix` (`9.5.0`, `9.5.0-SNAPSHOT`): what Kibana's
/// `kibana.version` holds, and what Elasticsearch's `version` field type orders as a release.
fn is_version(text: &str) -> bool {
    let (release, suffix) = match text.split_once('-') {
        Some((release, suffix)) => (release, Some(suffix)),
        None => (text, None),
    };
    let numbers: Vec<&str> = release.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|s| {
            !s.is_empty()
                && s.split('.').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
}

/// Credentials, kept apart from [`Config`] so that serialising or printing the configuration can
/// never show them.
#[derive(Default)]
pub struct Secrets {
    /// Basic-auth password.
    pub password: Option<SecretString>,
    /// API key.
    pub api_key: Option<SecretString>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Secrets {
    /// Reads the secrets: a file named in the configuration wins over the environment variable.
    /// Values are taken verbatim (trailing newline trimmed), never parsed.
    pub fn load(es: &EsConfig) -> Result<Secrets, ConfigError> {
        let read = |key: &'static str,
                    file: &Option<PathBuf>,
                    var: &str|
         -> Result<Option<SecretString>, ConfigError> {
            if let Some(path) = file {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        key,
                        path: path.clone(),
                        source,
                    })?;
                return Ok(Some(SecretString::from(
                    text.trim_end_matches(['\n', '\r']).to_owned(),
                )));
            }
            Ok(std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .map(SecretString::from))
        };
        Ok(Secrets {
            password: read(
                "elasticsearch.password_file",
                &es.password_file,
                ENV_PASSWORD,
            )?,
            api_key: read("elasticsearch.api_key_file", &es.api_key_file, ENV_API_KEY)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;
    use secrecy::ExposeSecret;

    fn load_in(jail: &Jail, toml: &str) -> Result<Config, ConfigError> {
        jail.create_file("c.toml", toml).unwrap();
        Config::load(Some(Path::new("c.toml")), &CliOverrides::default())
    }

    #[test]
    fn defaults_are_the_rules_schedule() {
        let c = Config::default();
        assert_eq!(c.elasticsearch.url, "http://127.0.0.1:9200");
        assert_eq!(
            c.schedule.interval, None,
            "interval comes from the rule (5m) unless set"
        );
        assert_eq!(c.alerts.write_target(), ".seqwatch-alerts-default");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn layers_cli_over_env_over_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[elasticsearch]\nurl = \"http://file:9200\"\npage_size = 500\n",
            )?;
            jail.set_env("SEQWATCH_ELASTICSEARCH__URL", "http://env:9200");
            let c = Config::load(Some(Path::new("c.toml")), &CliOverrides::default()).unwrap();
            assert_eq!(c.elasticsearch.url, "http://env:9200");
            assert_eq!(c.elasticsearch.page_size, 500);
            let cli = CliOverrides {
                es_url: Some("http://cli:9200".into()),
                ..Default::default()
            };
            let c = Config::load(Some(Path::new("c.toml")), &cli).unwrap();
            assert_eq!(c.elasticsearch.url, "http://cli:9200");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_names_the_key() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[elasticsearch]\nurll = \"x\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown field: found `urll`"), "{err}");
            assert!(err.contains("elasticsearch"), "{err}");
            assert!(err.contains("c.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_setting_is_refused_but_unrelated_vars_are_not() {
        Jail::expect_with(|jail| {
            jail.set_env("SEQWATCH_TEST_ES_URL", "http://x");
            jail.set_env("SEQWATCH_ES_PASSWORD", "0123");
            assert!(Config::load(None, &CliOverrides::default()).is_ok());
            jail.set_env("SEQWATCH_ELASTICSEARCH__URLL", "http://x");
            let err = Config::load(None, &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("urll"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_duration_names_key_and_value() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[schedule]\ninterval = \"5 minutes\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("schedule.interval"), "{err}");
            assert!(err.contains("unknown unit"), "{err}");
            let err = load_in(jail, "[schedule]\ninterval = \"300\"\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("has no unit"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Config::load(
            Some(Path::new("/nonexistent/seqwatch.toml")),
            &CliOverrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "configuration file /nonexistent/seqwatch.toml does not exist"
        );
    }

    #[test]
    fn validate_names_each_bad_key() {
        let mut c = Config::default();
        c.elasticsearch.url = "ftp://x".into();
        c.daemon.listen = "nowhere".into();
        c.schedule.cron = Some("*/5 * * * *".into());
        let errs: Vec<String> = c
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("elasticsearch.url: scheme must be http or https")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("daemon.listen:")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("schedule.cron:")),
            "{errs:?}"
        );
        c = Config::default();
        c.elasticsearch.url = "http://elastic:hunter2@h:9200".into();
        let errs: Vec<String> = c
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(errs[0].contains("must not carry credentials"));
        assert!(
            !errs[0].contains("hunter2"),
            "a secret leaked into an error"
        );
        c = Config::default();
        c.elasticsearch.url = "not a url".into();
        assert!(c.validate().unwrap_err()[0]
            .to_string()
            .starts_with("elasticsearch.url: is not a valid URL"));
    }

    #[test]
    fn kibana_version_is_a_version_and_errors_name_the_key() {
        assert_eq!(Config::default().alerts.kibana_version, "9.5.0");
        Jail::expect_with(|jail| {
            let c = load_in(jail, "[alerts]\nkibana_version = \"8.19.21\"\n").unwrap();
            assert_eq!(c.alerts.kibana_version, "8.19.21");
            assert!(c.validate().is_ok());
            jail.set_env("SEQWATCH_ALERTS__KIBANA_VERSION", "9.1.0-SNAPSHOT");
            let c = load_in(jail, "").unwrap();
            assert_eq!(c.alerts.kibana_version, "9.1.0-SNAPSHOT");
            assert!(c.validate().is_ok());
            Ok(())
        });
        for bad in ["9.5", "9.5.0.1", "v9.5.0", "9.x.0", "", "9.5.0-", "9.5.0 "] {
            let mut c = Config::default();
            c.alerts.kibana_version = bad.into();
            let errs: Vec<String> = c
                .validate()
                .unwrap_err()
                .iter()
                .map(|e| e.to_string())
                .collect();
            assert_eq!(
                errs,
                [format!(
                    "alerts.kibana_version: {bad:?} is not a Kibana version like 9.5.0 (major.minor.patch, optionally -suffix)"
                )],
                "{bad:?}"
            );
        }
        // A bare number in the file is refused by type, naming the key and the file.
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[alerts]\nkibana_version = 9.5\n")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("alerts.kibana_version (") && err.contains("c.toml"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn prebuilt_lists_rule_ids() {
        Jail::expect_with(|jail| {
            let c = load_in(
                jail,
                "[rules]\nprebuilt = [\"0871a5d8-6b5f-4a12-a568-fd7bc05bd8db\"]\n",
            )
            .unwrap();
            assert_eq!(c.rules.prebuilt, ["0871a5d8-6b5f-4a12-a568-fd7bc05bd8db"]);
            assert!(c.validate().is_ok());
            Ok(())
        });
        let mut c = Config::default();
        c.rules.prebuilt = vec![" ".into()];
        assert_eq!(
            c.validate().unwrap_err()[0].to_string(),
            "rules.prebuilt: lists an empty rule_id"
        );
    }

    #[test]
    fn lookback_must_cover_interval_plus_maxspan() {
        let m = Duration::from_secs(60);
        assert!(Config::check_schedule("r", 5 * m, 9 * m, Some(Duration::from_secs(10))).is_ok());
        assert!(Config::check_schedule(
            "r",
            5 * m,
            5 * m + Duration::from_secs(10),
            Some(Duration::from_secs(10))
        )
        .is_ok());
        let err = Config::check_schedule("r", 5 * m, 5 * m, Some(Duration::from_secs(10)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "schedule.lookback: 5m for rule \"r\" is shorter than interval 5m + maxspan 10s = 310s; sequences spanning two runs would be missed"
        );
    }

    #[test]
    fn secrets_are_verbatim_and_never_debug_printed() {
        Jail::expect_with(|jail| {
            jail.set_env(ENV_API_KEY, "0123");
            jail.create_file("pw", "s3cret\n")?;
            let es = EsConfig {
                username: Some("u".into()),
                password_file: Some("pw".into()),
                ..Default::default()
            };
            let s = Secrets::load(&es).unwrap();
            assert_eq!(
                s.api_key.as_ref().unwrap().expose_secret(),
                "0123",
                "leading zero kept"
            );
            assert_eq!(s.password.as_ref().unwrap().expose_secret(), "s3cret");
            let dbg = format!("{s:?}");
            assert!(!dbg.contains("s3cret") && !dbg.contains("0123"), "{dbg}");
            Ok(())
        });
    }

    /// The shipped `config.toml` documents the defaults: loading it changes nothing.
    #[test]
    fn shipped_config_toml_equals_the_defaults() {
        Jail::expect_with(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
            let c = Config::load(Some(&path), &CliOverrides::default()).unwrap();
            assert_eq!(c, Config::default());
            Ok(())
        });
    }

    #[test]
    fn human_durations_round_trip() {
        for s in ["500ms", "30s", "5m", "1h", "2d", "90s"] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().to_string(), s);
        }
        let text = |s: &str| s.to_owned();
        assert_eq!(
            "5".parse::<HumanDuration>(),
            Err(HumanDurationError::NoUnit { text: text("5") })
        );
        assert_eq!(
            "-5m".parse::<HumanDuration>(),
            Err(HumanDurationError::NoNumber { text: text("-5m") })
        );
        assert_eq!(
            "5w".parse::<HumanDuration>(),
            Err(HumanDurationError::UnknownUnit {
                text: text("5w"),
                unit: text("w")
            })
        );
        assert_eq!(
            "99999999999999999d".parse::<HumanDuration>(),
            Err(HumanDurationError::TooLarge {
                text: text("99999999999999999d")
            })
        );
    }

    /// Every configuration error names the key path and where the bad value came from: the
    /// file, the exact environment variable, or the command line.
    #[test]
    fn errors_name_the_key_path_and_its_source() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, "[elasticsearch]\npage_size = \"many\"\n")
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                "elasticsearch.page_size (c.toml): invalid type: found string \"many\", expected u32"
            );
            let err = load_in(jail, "[elasticsearch]\nurll = \"x\"\n")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("elasticsearch.urll (c.toml): unknown field: found `urll`"),
                "{err}"
            );
            let err = load_in(jail, "[elasticsearch\npage_size = 1\n")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("c.toml: TOML parse error at line 1, column 15"),
                "{err}"
            );
            jail.create_file("c.toml", "")?;
            jail.set_env("SEQWATCH_ELASTICSEARCH__PAGE_SIZE", "many");
            let err = Config::load(None, &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                "elasticsearch.page_size (environment variable SEQWATCH_ELASTICSEARCH__PAGE_SIZE): invalid type: found string \"many\", expected u32"
            );
            jail.clear_env();
            jail.set_env("SEQWATCH_SCHEDULE__INTERVAL", "5 parsecs");
            let err = Config::load(None, &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                "schedule.interval (environment variable SEQWATCH_SCHEDULE__INTERVAL): duration \"5 parsecs\" has unknown unit \" parsecs\"; use ms, s, m, h or d"
            );
            jail.clear_env();
            // A bad --es-url passes extraction (it is a string) and is named by validation.
            let cli = CliOverrides {
                es_url: Some("not a url".into()),
                ..Default::default()
            };
            let errs = Config::load(None, &cli).unwrap().validate().unwrap_err();
            assert_eq!(
                errs[0].to_string(),
                "elasticsearch.url: is not a valid URL: relative URL without a base"
            );
            Ok(())
        });
    }

    /// Files named by the configuration that do not exist are named by their key, both when
    /// validating and when reading the secrets, without any secret in the message.
    #[test]
    fn missing_files_are_named_by_their_key() {
        let mut c = Config::default();
        c.elasticsearch.username = Some("u".into());
        c.elasticsearch.password_file = Some("/nonexistent/pw".into());
        c.elasticsearch.ca_file = Some("/nonexistent/ca.crt".into());
        let errs: Vec<String> = c
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        for key in ["elasticsearch.ca_file", "elasticsearch.password_file"] {
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(key) && e.contains("/nonexistent/")),
                "{key}: {errs:?}"
            );
        }
        let err = Secrets::load(&c.elasticsearch).unwrap_err().to_string();
        assert!(
            err.starts_with("elasticsearch.password_file: cannot read /nonexistent/pw: "),
            "{err}"
        );
    }
}
