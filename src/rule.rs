//! Detection rules: loading Elastic detection-rules TOML files (`[metadata]`, `[rule]`,
//! `[[rule.threat]]`) into a typed [`Rule`] with its EQL query already parsed.
//!
//! Every error names the place: `file:line:column` in the TOML file, also for a bad EQL
//! query (the query's offset inside the TOML string is mapped back to the file). Only EQL
//! rules are accepted. Defaults follow Kibana: `interval` 5m, `max_signals` 100.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::eql::{self, ast, ParseError, SourceOrigin};

/// Kibana's default look-back of a rule.
const DEFAULT_FROM: &str = "now-6m";
/// Kibana's default rule interval.
const DEFAULT_INTERVAL: &str = "5m";
/// Kibana's default `max_signals`.
const DEFAULT_MAX_SIGNALS: u32 = 100;

/// The built-in rule shipped with seqwatch (written by us, after detection-rules v2).
const BUILTIN_RULE: &str = include_str!("../rules/nodejs-install-script.toml");
/// Origin name used in errors about the built-in rule.
const BUILTIN_ORIGIN: &str = "rules/nodejs-install-script.toml";
/// Kibana's ECS field map, which decides the `ecs` flag of a required field.
const KIBANA_ECS_FIELD_MAP: &str = include_str!("../mappings/kibana/ecs-field-map.json");

/// A loaded, validated EQL detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Where the rule came from (file path, or the built-in name).
    pub origin: String,
    /// `[rule] name`.
    pub name: String,
    /// `[rule] rule_id`: the static id shared by every install of the rule.
    pub rule_id: String,
    /// `[rule] description`.
    pub description: String,
    /// `[rule] query`, as written.
    pub query_text: String,
    /// The parsed query.
    pub query: ast::Query,
    /// `[rule] index`: index patterns searched.
    pub index: Vec<String>,
    /// `[rule] from` as written (`now-9m`).
    pub from: String,
    /// How far back from "now" each run looks (`now-9m` → 9 minutes).
    pub lookback: Duration,
    /// `[rule] interval` as written (default `5m`).
    pub interval_text: String,
    /// How often the rule runs.
    pub interval: Duration,
    /// `[rule] max_signals` (default 100).
    pub max_signals: u32,
    /// `[rule] risk_score`, 0–100.
    pub risk_score: u8,
    /// `[rule] severity`.
    pub severity: Severity,
    /// `[[rule.threat]]`: MITRE ATT&CK mapping.
    pub threat: Vec<Threat>,
    /// `[rule] tags`.
    pub tags: Vec<String>,
    /// `[rule] references`.
    pub references: Vec<String>,
    /// `[rule] author`.
    pub author: Vec<String>,
    /// `[rule] license`.
    pub license: Option<String>,
    /// `[rule] version`, when the file has one (upstream files keep it in a version lock).
    pub version: Option<u32>,
    /// `[rule] timestamp_override`.
    pub timestamp_override: Option<String>,
    /// `[rule] tiebreaker_field`.
    pub tiebreaker_field: Option<String>,
    /// `[rule] event_category_override`.
    pub event_category_override: Option<String>,
    /// What Kibana shows with the rule and writes into its alerts; the engine does not use it.
    pub details: RuleDetails,
}

/// The parts of a rule that describe it rather than decide what it detects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleDetails {
    /// `[rule] note`: the investigation guide (Markdown).
    pub note: Option<String>,
    /// `[rule] setup`: the setup guide (Markdown).
    pub setup: Option<String>,
    /// `[rule] false_positives`.
    pub false_positives: Vec<String>,
    /// `[[rule.related_integrations]]`, when the file carries them.
    pub related_integrations: Vec<RelatedIntegration>,
    /// `[[rule.required_fields]]`, when the file carries them.
    pub required_fields: Vec<RequiredField>,
    /// `[rule.investigation_fields]`.
    pub investigation_fields: Option<InvestigationFields>,
    /// `[rule] building_block_type` (`default` for a building-block rule).
    pub building_block_type: Option<String>,
    /// `[rule] timeline_id`: the Timeline template investigations open with.
    pub timeline_id: Option<String>,
    /// `[rule] timeline_title`.
    pub timeline_title: Option<String>,
    /// `[metadata] creation_date`.
    pub creation_date: Option<NaiveDate>,
    /// `[metadata] updated_date`.
    pub updated_date: Option<NaiveDate>,
    /// `[metadata] maturity` (`production`, `development`, `deprecated`); Kibana has no such field.
    pub maturity: Option<String>,
}

/// An integration package the rule's data comes from (Kibana's `RelatedIntegration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelatedIntegration {
    /// Package name, e.g. `endpoint`.
    pub package: String,
    /// Semver range of the package versions the rule works with, e.g. `^8.2.0`.
    pub version: String,
    /// The package's integration (policy template), when it has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
}

/// A field the rule's query needs (Kibana's `RequiredField`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequiredField {
    /// Field name.
    pub name: String,
    /// Elasticsearch field type, e.g. `keyword`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// Whether ECS defines the field with this type. Computed as Kibana computes it on install
    /// (`addEcsToRequiredFields`, `common/detection_engine/rule_management/utils.ts`): what a
    /// file says is ignored.
    pub ecs: bool,
}

/// Fields the alert flyout shows first (Kibana's `InvestigationFields`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvestigationFields {
    /// The field names.
    pub field_names: Vec<String>,
}

/// Rule severity, as Kibana spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
    /// `critical`
    Critical,
}

impl Severity {
    /// The lowercase name Kibana writes into alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[rule.threat]]` entry: a tactic and the techniques under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threat {
    /// Always `MITRE ATT&CK` in practice.
    pub framework: String,
    /// The tactic, e.g. `TA0003 Persistence`.
    pub tactic: ThreatTactic,
    /// Techniques under the tactic (may be empty). Always written, `[]` when empty: the
    /// detection-rules packaging fills it in (`_post_dict_conversion`), so Kibana has it.
    #[serde(default)]
    pub technique: Vec<ThreatTechnique>,
}

/// A MITRE ATT&CK tactic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatTactic {
    /// `TA0003`
    pub id: String,
    /// `Persistence`
    pub name: String,
    /// Link to the tactic page.
    pub reference: String,
}

/// A MITRE ATT&CK technique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatTechnique {
    /// `T1059`
    pub id: String,
    /// `Command and Scripting Interpreter`
    pub name: String,
    /// Link to the technique page.
    pub reference: String,
    /// Sub-techniques (may be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtechnique: Vec<ThreatSubtechnique>,
}

/// A MITRE ATT&CK sub-technique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatSubtechnique {
    /// `T1059.004`
    pub id: String,
    /// `Unix Shell`
    pub name: String,
    /// Link to the sub-technique page.
    pub reference: String,
}

/// Why a rule could not be loaded. Every variant names the file and, where there is one,
/// the line and column.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file could not be read.
    #[error("{path}: cannot read rule file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory could not be listed.
    #[error("{path}: cannot list rule directory: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field has the wrong type or is missing.
    #[error("{origin}:{line}:{column}: {message}")]
    Toml {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the TOML reader said.
        message: String,
    },
    /// A `[metadata]` field has a value we cannot use.
    #[error("{origin}:{line}:{column}: [metadata].{field}: {message}")]
    Metadata {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field under `[metadata]`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A field has a value we cannot use.
    #[error("{origin}:{line}:{column}: [rule].{field}: {message}")]
    Field {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field under `[rule]`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The EQL query does not parse; `rendered` points into the TOML file.
    #[error("{rendered}")]
    Query {
        /// The rendered error, `file:line:column: message` plus source line and carets.
        rendered: String,
        /// The error in query coordinates.
        error: ParseError,
    },
}

/// All errors met while loading a directory of rules.
#[derive(Debug, thiserror::Error)]
#[error("{} rule file(s) failed to load:\n{}", .errors.len(), join_errors(.errors))]
pub struct RuleDirError {
    /// One entry per failing file (or per directory problem), in file-name order.
    pub errors: Vec<RuleError>,
}

fn join_errors(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The TOML shape of a rule file; keys seqwatch does not use are ignored.
#[derive(Deserialize)]
struct RuleFile {
    #[serde(default)]
    metadata: RawMetadata,
    rule: RawRule,
}

#[derive(Default, Deserialize)]
struct RawMetadata {
    creation_date: Option<Spanned<String>>,
    updated_date: Option<Spanned<String>>,
    maturity: Option<String>,
}

#[derive(Deserialize)]
struct RawRelatedIntegration {
    package: Spanned<String>,
    version: Spanned<String>,
    integration: Option<Spanned<String>>,
}

/// A required field as a file writes it; its `ecs` flag, if any, is recomputed.
#[derive(Deserialize)]
struct RawRequiredField {
    name: Spanned<String>,
    #[serde(rename = "type")]
    field_type: Spanned<String>,
}

#[derive(Deserialize)]
struct RawRule {
    name: String,
    rule_id: String,
    #[serde(default)]
    description: String,
    query: Spanned<String>,
    index: Option<Spanned<Vec<String>>>,
    from: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    max_signals: Option<Spanned<i64>>,
    risk_score: Spanned<i64>,
    severity: Spanned<String>,
    #[serde(default)]
    threat: Vec<Threat>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    author: Vec<String>,
    license: Option<String>,
    version: Option<Spanned<i64>>,
    language: Option<Spanned<String>>,
    #[serde(rename = "type")]
    rule_type: Spanned<String>,
    timestamp_override: Option<String>,
    tiebreaker_field: Option<String>,
    event_category_override: Option<String>,
    note: Option<String>,
    setup: Option<String>,
    #[serde(default)]
    false_positives: Vec<String>,
    #[serde(default)]
    related_integrations: Vec<RawRelatedIntegration>,
    #[serde(default)]
    required_fields: Vec<RawRequiredField>,
    investigation_fields: Option<InvestigationFields>,
    building_block_type: Option<String>,
    timeline_id: Option<String>,
    timeline_title: Option<String>,
}

impl Rule {
    /// The built-in rule ("Node.js Pre or Post-Install Script Execution"), compiled in.
    pub fn builtin() -> Result<Rule, RuleError> {
        Rule::from_toml_str(BUILTIN_RULE, BUILTIN_ORIGIN)
    }

    /// Reads and validates one rule file.
    pub fn load(path: &Path) -> Result<Rule, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Rule::from_toml_str(&text, &path.display().to_string())
    }

    /// Loads every `*.toml` file of `dir`, sorted by file name, collecting all errors.
    pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, RuleDirError> {
        let entries = std::fs::read_dir(dir).map_err(|source| RuleDirError {
            errors: vec![RuleError::ReadDir {
                path: dir.to_path_buf(),
                source,
            }],
        })?;
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                        paths.push(path);
                    }
                }
                Err(source) => errors.push(RuleError::ReadDir {
                    path: dir.to_path_buf(),
                    source,
                }),
            }
        }
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let mut rules = Vec::new();
        for path in paths {
            match Rule::load(&path) {
                Ok(rule) => rules.push(rule),
                Err(err) => errors.push(err),
            }
        }
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(RuleDirError { errors })
        }
    }

    /// Parses and validates a rule from TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Rule, RuleError> {
        let file: RuleFile = toml::from_str(text).map_err(|err| {
            let at = err.span().map_or(0, |span| span.start);
            let pos = eql::error::line_col(text, at);
            RuleError::Toml {
                origin: origin.to_string(),
                line: pos.line,
                column: pos.column,
                message: err.message().trim_end().to_string(),
            }
        })?;
        let raw = file.rule;
        let field_error = |field: &'static str, span: std::ops::Range<usize>, message: String| {
            let pos = eql::error::line_col(text, span.start);
            RuleError::Field {
                origin: origin.to_string(),
                line: pos.line,
                column: pos.column,
                field,
                message,
            }
        };

        if raw.rule_type.get_ref() != "eql" {
            return Err(field_error(
                "type",
                raw.rule_type.span(),
                format!(
                    "rule type is \"{}\"; only \"eql\" rules are supported",
                    raw.rule_type.get_ref()
                ),
            ));
        }
        if let Some(language) = &raw.language {
            if language.get_ref() != "eql" {
                return Err(field_error(
                    "language",
                    language.span(),
                    format!(
                        "query language is \"{}\"; only \"eql\" rules are supported",
                        language.get_ref()
                    ),
                ));
            }
        }

        let query_text = raw.query.get_ref().clone();
        let query = eql::parse(&query_text)
            .map_err(|error| query_error(text, origin, &raw.query, error))?;
        // Compile every filter once now, so that what the evaluator refuses (an untranslatable
        // regex, a type error) is reported here, at its place in the file, not at the first run.
        check_compiles(&query, raw.event_category_override.as_deref())
            .map_err(|error| query_error(text, origin, &raw.query, error))?;

        // Kibana falls back to the space's default index patterns when a rule names none;
        // seqwatch has no such setting, and an empty pattern list would search every index.
        let index = match &raw.index {
            None => {
                let at = text.find("[rule]").unwrap_or(0);
                return Err(field_error(
                    "index",
                    at..at,
                    "is missing; list the index patterns to search (e.g. index = [\"logs-endpoint.events.process*\"])".into(),
                ));
            }
            Some(index) if index.get_ref().iter().all(|p| p.trim().is_empty()) => {
                return Err(field_error(
                    "index",
                    index.span(),
                    "lists no index pattern; list the index patterns to search".into(),
                ));
            }
            Some(index) if index.get_ref().iter().any(|p| p.trim().is_empty()) => {
                return Err(field_error(
                    "index",
                    index.span(),
                    "has an empty index pattern".into(),
                ));
            }
            Some(index) => index.get_ref().clone(),
        };

        let (from, lookback) = match &raw.from {
            None => (DEFAULT_FROM.to_string(), Duration::from_secs(360)),
            Some(from) => (
                from.get_ref().clone(),
                parse_from(from.get_ref())
                    .map_err(|e| field_error("from", from.span(), e.to_string()))?,
            ),
        };
        let (interval_text, interval) = match &raw.interval {
            None => (DEFAULT_INTERVAL.to_string(), Duration::from_secs(300)),
            Some(interval) => (
                interval.get_ref().clone(),
                parse_interval(interval.get_ref())
                    .map_err(|e| field_error("interval", interval.span(), e.to_string()))?,
            ),
        };
        let max_signals = match &raw.max_signals {
            None => DEFAULT_MAX_SIGNALS,
            Some(value) => u32::try_from(*value.get_ref())
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    field_error(
                        "max_signals",
                        value.span(),
                        format!("must be a positive integer, found {}", value.get_ref()),
                    )
                })?,
        };
        let risk_score = u8::try_from(*raw.risk_score.get_ref())
            .ok()
            .filter(|v| *v <= 100)
            .ok_or_else(|| {
                field_error(
                    "risk_score",
                    raw.risk_score.span(),
                    format!(
                        "must be an integer from 0 to 100, found {}",
                        raw.risk_score.get_ref()
                    ),
                )
            })?;
        let severity = match raw.severity.get_ref().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(field_error(
                    "severity",
                    raw.severity.span(),
                    format!("must be one of low, medium, high, critical; found \"{other}\""),
                ))
            }
        };
        let version = match &raw.version {
            None => None,
            Some(value) => Some(u32::try_from(*value.get_ref()).map_err(|_| {
                field_error(
                    "version",
                    value.span(),
                    format!("must be a non-negative integer, found {}", value.get_ref()),
                )
            })?),
        };

        let non_empty = |field: &'static str, value: &Spanned<String>| {
            if value.get_ref().trim().is_empty() {
                Err(field_error(
                    field,
                    value.span(),
                    "has an empty value".into(),
                ))
            } else {
                Ok(value.get_ref().clone())
            }
        };
        let mut related_integrations = Vec::with_capacity(raw.related_integrations.len());
        for entry in &raw.related_integrations {
            related_integrations.push(RelatedIntegration {
                package: non_empty("related_integrations", &entry.package)?,
                version: non_empty("related_integrations", &entry.version)?,
                integration: match &entry.integration {
                    None => None,
                    Some(integration) => Some(non_empty("related_integrations", integration)?),
                },
            });
        }
        let mut required_fields = Vec::with_capacity(raw.required_fields.len());
        for entry in &raw.required_fields {
            let name = non_empty("required_fields", &entry.name)?;
            let field_type = non_empty("required_fields", &entry.field_type)?;
            let ecs = ecs_field_type(&name) == Some(field_type.as_str());
            required_fields.push(RequiredField {
                name,
                field_type,
                ecs,
            });
        }
        let metadata_date = |field: &'static str, value: &Option<Spanned<String>>| match value {
            None => Ok(None),
            Some(value) => parse_metadata_date(value.get_ref())
                .map(Some)
                .ok_or_else(|| {
                    let pos = eql::error::line_col(text, value.span().start);
                    RuleError::Metadata {
                        origin: origin.to_string(),
                        line: pos.line,
                        column: pos.column,
                        field,
                        message: format!(
                            "expected a date written YYYY/MM/DD (e.g. 2025/09/18), found \"{}\"",
                            value.get_ref()
                        ),
                    }
                }),
        };
        let details = RuleDetails {
            note: raw.note,
            setup: raw.setup,
            false_positives: raw.false_positives,
            related_integrations,
            required_fields,
            investigation_fields: raw.investigation_fields,
            building_block_type: raw.building_block_type,
            timeline_id: raw.timeline_id,
            timeline_title: raw.timeline_title,
            creation_date: metadata_date("creation_date", &file.metadata.creation_date)?,
            updated_date: metadata_date("updated_date", &file.metadata.updated_date)?,
            maturity: file.metadata.maturity,
        };

        Ok(Rule {
            origin: origin.to_string(),
            name: raw.name,
            rule_id: raw.rule_id,
            description: raw.description,
            query_text,
            query,
            index,
            from,
            lookback,
            interval_text,
            interval,
            max_signals,
            risk_score,
            severity,
            threat: raw.threat,
            tags: raw.tags,
            references: raw.references,
            author: raw.author,
            license: raw.license,
            version,
            timestamp_override: raw.timestamp_override,
            tiebreaker_field: raw.tiebreaker_field,
            event_category_override: raw.event_category_override,
            details,
        })
    }
}

/// A detection-rules `[metadata]` date: `YYYY/MM/DD`, as its schema requires.
fn parse_metadata_date(text: &str) -> Option<NaiveDate> {
    let digits_at = |range: std::ops::Range<usize>| {
        text.get(range)
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
    };
    let shaped = text.len() == 10
        && digits_at(0..4)
        && digits_at(5..7)
        && digits_at(8..10)
        && text.as_bytes()[4] == b'/'
        && text.as_bytes()[7] == b'/';
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y/%m/%d").ok()
}

/// The type Kibana's ECS field map gives `name`, if it has the field.
fn ecs_field_type(name: &str) -> Option<&'static str> {
    #[derive(Deserialize)]
    struct FieldMap {
        fields: HashMap<String, FieldEntry>,
    }
    #[derive(Deserialize)]
    struct FieldEntry {
        #[serde(rename = "type")]
        field_type: String,
    }
    static TYPES: OnceLock<HashMap<String, String>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            // Compiled in and read by the tests below; were it unreadable, no field would be ECS.
            serde_json::from_str::<FieldMap>(KIBANA_ECS_FIELD_MAP)
                .map(|map| {
                    map.fields
                        .into_iter()
                        .map(|(name, entry)| (name, entry.field_type))
                        .collect()
                })
                .unwrap_or_default()
        })
        .get(name)
        .map(String::as_str)
}

/// Renders a query parse error so that it points into the TOML file.
///
/// For literal strings (`'''…'''`, `'…'`) and basic strings without escapes the query text is
/// the file text verbatim, so the error is rendered against the file itself. Otherwise
/// (escapes change offsets) it is rendered against the query with the start of the string
/// as line/column offset.
/// Compiles each filter of the query with the evaluator; the first refusal, as a parse error.
fn check_compiles(query: &ast::Query, category_field: Option<&str>) -> Result<(), ParseError> {
    let mut opts = eql::eval::EvalOptions::default();
    if let Some(field) = category_field {
        opts.event_category_field = field.to_owned();
    }
    let filters: Vec<&ast::EventFilter> = match query {
        ast::Query::Event(f) => vec![f],
        ast::Query::Sequence(s) => s
            .stages
            .iter()
            .chain(s.until.iter())
            .map(|st| &st.filter)
            .collect(),
    };
    for f in filters {
        eql::eval::CompiledFilter::compile(f, &opts)
            .map_err(|e| ParseError::new(e.span, e.message))?;
    }
    Ok(())
}

fn query_error(text: &str, origin: &str, query: &Spanned<String>, error: ParseError) -> RuleError {
    let span = query.span();
    let raw = text.get(span.clone()).unwrap_or("");
    let (open, close) = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        (3, 3)
    } else {
        (1, 1)
    };
    let mut content_start = span.start + open.min(raw.len());
    // TOML trims a newline directly after the opening delimiter of a multi-line string.
    if open == 3 {
        if text[content_start..].starts_with("\r\n") {
            content_start += 2;
        } else if text[content_start..].starts_with('\n') {
            content_start += 1;
        }
    }
    let content_end = span.end.saturating_sub(close).max(content_start);
    let verbatim = text.get(content_start..content_end) == Some(query.get_ref().as_str());

    let rendered = if verbatim {
        let shifted = ParseError::new(
            error.span.start + content_start..error.span.end + content_start,
            error.message.clone(),
        );
        shifted.render(
            text,
            &SourceOrigin {
                name: Some(origin),
                ..SourceOrigin::default()
            },
        )
    } else {
        let start = eql::error::line_col(text, content_start);
        error.render(
            query.get_ref(),
            &SourceOrigin {
                name: Some(origin),
                line_offset: start.line - 1,
                column_offset: start.column - 1,
            },
        )
    };
    RuleError::Query { rendered, error }
}

/// Why a rule's `from` (`now-9m`) or `interval` (`5m`) is not a duration we can use. Shown
/// after `file:line:column: [rule].<field>: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// `from` is not of the form `now-<N><unit>`.
    #[error("expected date math of the form now-<number><unit> (e.g. now-9m), found \"{text}\"")]
    NotDateMath {
        /// The text as written.
        text: String,
    },
    /// The amount of a `from` cannot be used.
    #[error("{problem} in \"{text}\"")]
    Lookback {
        /// The whole `from`, as written.
        text: String,
        /// What is wrong with its amount.
        problem: AmountProblem,
    },
    /// An `interval` cannot be used.
    #[error("{problem} in \"{text}\" (expected e.g. 5m)")]
    Interval {
        /// The interval, as written.
        text: String,
        /// What is wrong with it.
        problem: AmountProblem,
    },
}

/// What is wrong with the `<N><unit>` of a [`DurationError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountProblem {
    /// No digits before the unit.
    #[error("missing number")]
    MissingNumber,
    /// More digits than a `u64` holds.
    #[error("number {digits} is too large")]
    NumberTooLarge {
        /// The digits as written.
        digits: String,
    },
    /// Zero.
    #[error("the duration must be positive")]
    NotPositive,
    /// Digits alone.
    #[error("missing unit (s, m, h or d)")]
    MissingUnit,
    /// A unit other than `s`, `m`, `h` or `d`.
    #[error("unknown unit \"{unit}\" (use s, m, h or d)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// More seconds than a `u64` holds.
    #[error("duration {amount} is too large")]
    TooLarge {
        /// The amount as written.
        amount: String,
    },
}

/// `now-<N><unit>` (Kibana date math, as rules write `from`) → the look-back duration.
pub fn parse_from(text: &str) -> Result<Duration, DurationError> {
    let Some(amount) = text.strip_prefix("now-") else {
        return Err(DurationError::NotDateMath {
            text: text.to_owned(),
        });
    };
    parse_amount(amount).map_err(|problem| DurationError::Lookback {
        text: text.to_owned(),
        problem,
    })
}

/// `<N><unit>` (Kibana interval, e.g. `5m`) → duration.
pub fn parse_interval(text: &str) -> Result<Duration, DurationError> {
    parse_amount(text).map_err(|problem| DurationError::Interval {
        text: text.to_owned(),
        problem,
    })
}

/// `<N><unit>` with unit `s`, `m`, `h` or `d` and N a positive integer.
fn parse_amount(text: &str) -> Result<Duration, AmountProblem> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(AmountProblem::MissingNumber);
    }
    let value: u64 = digits.parse().map_err(|_| AmountProblem::NumberTooLarge {
        digits: digits.to_owned(),
    })?;
    if value == 0 {
        return Err(AmountProblem::NotPositive);
    }
    let seconds_per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "" => return Err(AmountProblem::MissingUnit),
        other => {
            return Err(AmountProblem::UnknownUnit {
                unit: other.to_owned(),
            })
        }
    };
    value
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| AmountProblem::TooLarge {
            amount: text.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_math_and_intervals() {
        assert_eq!(parse_from("now-9m"), Ok(Duration::from_secs(540)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("2h"), Ok(Duration::from_secs(7200)));
        let message = |r: Result<Duration, DurationError>| r.unwrap_err().to_string();
        assert_eq!(
            message(parse_from("now+9m")),
            "expected date math of the form now-<number><unit> (e.g. now-9m), found \"now+9m\""
        );
        assert_eq!(
            message(parse_interval("5x")),
            "unknown unit \"x\" (use s, m, h or d) in \"5x\" (expected e.g. 5m)"
        );
        assert_eq!(
            message(parse_from("now-0s")),
            "the duration must be positive in \"now-0s\""
        );
        assert_eq!(
            parse_interval("99999999999999999999s"),
            Err(DurationError::Interval {
                text: "99999999999999999999s".into(),
                problem: AmountProblem::NumberTooLarge {
                    digits: "99999999999999999999".into()
                }
            })
        );
        assert_eq!(
            message(parse_from("now-999999999999999999d")),
            "duration 999999999999999999d is too large in \"now-999999999999999999d\""
        );
    }

    /// A minimal rule with `{metadata}` and `{extra}` `[rule]` lines filled in.
    fn rule_text(metadata: &str, extra: &str) -> String {
        format!(
            "[metadata]\n{metadata}\n[rule]\nname = \"r\"\nrule_id = \"id-1\"\ntype = \"eql\"\nrisk_score = 47\nseverity = \"medium\"\nindex = [\"logs-*\"]\n{extra}query = '''\nprocess where true\n'''\n"
        )
    }

    #[test]
    fn metadata_dates_and_kibana_defaults() {
        let rule = Rule::from_toml_str(
            &rule_text(
                "creation_date = \"2020/03/25\"\nupdated_date = \"2026/04/22\"\nmaturity = \"production\"",
                "",
            ),
            "x.toml",
        )
        .unwrap();
        assert_eq!(
            rule.details.creation_date,
            NaiveDate::from_ymd_opt(2020, 3, 25)
        );
        assert_eq!(
            rule.details.updated_date,
            NaiveDate::from_ymd_opt(2026, 4, 22)
        );
        assert_eq!(rule.details.maturity.as_deref(), Some("production"));
        // No `from`: Kibana's `RULE_DEFAULTS.from`.
        assert_eq!(rule.from, "now-6m");
        assert_eq!(rule.lookback, Duration::from_secs(360));
        assert_eq!(
            rule.details,
            RuleDetails {
                creation_date: rule.details.creation_date,
                updated_date: rule.details.updated_date,
                maturity: rule.details.maturity.clone(),
                ..RuleDetails::default()
            }
        );

        let bare = Rule::from_toml_str(&rule_text("", ""), "x.toml").unwrap();
        assert_eq!(bare.details, RuleDetails::default());
    }

    #[test]
    fn bad_metadata_and_details_name_their_place() {
        // `tables` go after the query, where a file may open sub-tables of `[rule]`.
        let message = |metadata: &str, tables: &str| {
            Rule::from_toml_str(&(rule_text(metadata, "") + tables), "x.toml")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            message("creation_date = \"2020-03-25\"", ""),
            "x.toml:2:17: [metadata].creation_date: expected a date written YYYY/MM/DD (e.g. 2025/09/18), found \"2020-03-25\""
        );
        assert_eq!(
            message("updated_date = \"2026/02/30\"", ""),
            "x.toml:2:16: [metadata].updated_date: expected a date written YYYY/MM/DD (e.g. 2025/09/18), found \"2026/02/30\""
        );
        assert_eq!(
            message(
                "",
                "[[rule.related_integrations]]\npackage = \" \"\nversion = \"^1.0.0\"\n"
            ),
            "x.toml:14:11: [rule].related_integrations: has an empty value"
        );
        assert!(
            message("", "[[rule.required_fields]]\nname = \"process.name\"\n")
                .starts_with("x.toml:13:1: missing field `type`"),
            "a required field without a type is refused at its place"
        );
    }

    /// The built-in rule lists as required exactly the fields its query reads, and Kibana's
    /// ECS map knows each of them with that type.
    #[test]
    fn builtin_required_fields_are_the_querys_fields() {
        fn walk(e: &ast::Expr, out: &mut std::collections::BTreeSet<String>) {
            use ast::ExprKind as K;
            match &e.kind {
                K::Field(f) => {
                    out.insert(f.path.clone());
                }
                K::Literal(_) => {}
                K::Not(x) | K::Neg(x) => walk(x, out),
                K::And(a, b) | K::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                K::Compare { left, right, .. } | K::Arith { left, right, .. } => {
                    walk(left, out);
                    walk(right, out);
                }
                K::In { value, list, .. } => {
                    walk(value, out);
                    list.iter().for_each(|x| walk(x, out));
                }
                K::Pattern { value, .. } => walk(value, out),
                K::Call { args, .. } => args.iter().for_each(|x| walk(x, out)),
            }
        }
        let rule = Rule::builtin().unwrap();
        let ast::Query::Sequence(seq) = &rule.query else {
            panic!("the built-in rule is a sequence");
        };
        let mut fields = std::collections::BTreeSet::new();
        for key in &seq.by {
            fields.insert(key.field.path.clone());
        }
        for stage in &seq.stages {
            walk(&stage.filter.condition, &mut fields);
            for key in &stage.keys {
                fields.insert(key.field.path.clone());
            }
        }
        let required: Vec<&str> = rule
            .details
            .required_fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            required,
            fields.iter().map(String::as_str).collect::<Vec<_>>()
        );
        for field in &rule.details.required_fields {
            assert!(field.ecs, "{} is an ECS {}", field.name, field.field_type);
        }
    }

    #[test]
    fn kibanas_ecs_field_map_is_readable() {
        assert_eq!(ecs_field_type("@timestamp"), Some("date"));
        assert_eq!(ecs_field_type("process.name"), Some("keyword"));
        assert_eq!(ecs_field_type("process.pid"), Some("long"));
        // Kibana's map leaves out constant_keyword fields.
        assert_eq!(ecs_field_type("data_stream.dataset"), None);
        assert_eq!(ecs_field_type("custom.thing"), None);
    }
}
