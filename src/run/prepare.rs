//! What a run needs before it reads anything: the rule prepared once ([`PreparedRule`]) and
//! the privilege check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{RunContext, RunError};
use crate::alert::{RuleInfo, RuleSource};
use crate::cluster::PrivilegeRequest;
use crate::config::{AlertTarget, Config, ConfigError};
use crate::engine::{CompiledRule, EngineOptions};
use crate::entity_enrichment::EnrichmentIndex;
use crate::eql::value::FieldTypes;
use crate::rule::Rule;
use crate::state::RuleRef;
use crate::window::Schedule;

/// A rule with everything a run needs that does not change between runs.
#[derive(Debug, Clone)]
pub struct PreparedRule {
    /// The rule as loaded.
    pub rule: Rule,
    /// The uuid hashed into alert ids.
    pub uuid: String,
    /// Interval, lookback, catch-up bound.
    pub schedule: Schedule,
    /// Most new sequences alerted per run.
    pub max_signals: usize,
    /// What alerts say about the rule.
    pub info: RuleInfo,
    /// The rule compiled once without field types (its push-down and fields), and the last
    /// compile typed by the cluster's mapping, reused while the mapping is unchanged.
    compiled: Arc<CompileCache>,
}

impl PreparedRule {
    /// Applies the configuration's overrides and checks the schedule against the rule.
    pub fn prepare(rule: Rule, config: &Config) -> Result<PreparedRule, ConfigError> {
        if !matches!(rule.query, crate::eql::ast::Query::Sequence(_)) {
            return Err(ConfigError::Invalid {
                key: "rules.paths".into(),
                message: format!(
                    "rule {:?} ({}) is an event query; the detection job runs sequence rules (use `seqwatch replay` for event queries)",
                    rule.name, rule.origin
                ),
            });
        }
        let interval = config
            .schedule
            .interval
            .map(|d| d.0)
            .unwrap_or(rule.interval);
        let lookback = config
            .schedule
            .lookback
            .map(|d| d.0)
            .unwrap_or(rule.lookback);
        let maxspan = match &rule.query {
            crate::eql::ast::Query::Sequence(s) => s.maxspan_ms.map(Duration::from_millis),
            crate::eql::ast::Query::Event(_) => None,
        };
        Config::check_schedule(&rule.name, interval, lookback, maxspan)?;
        let uuid = config
            .rules
            .uuids
            .get(&rule.rule_id)
            .cloned()
            .unwrap_or_else(|| rule.rule_id.clone());
        let max_signals = config
            .schedule
            .max_signals
            .unwrap_or(rule.max_signals as usize);
        let source = if config.rules.prebuilt.contains(&rule.rule_id) {
            RuleSource::ElasticPrebuilt
        } else {
            RuleSource::Custom
        };
        let info = RuleInfo::from_rule(
            &rule,
            &uuid,
            &crate::config::HumanDuration(interval).to_string(),
            max_signals,
            source,
        );
        let rule_for_cache = rule.clone();
        Ok(PreparedRule {
            rule,
            uuid,
            schedule: Schedule {
                interval,
                lookback,
                max_catchup: config.schedule.max_catchup.0,
            },
            max_signals,
            info,
            compiled: Arc::new(CompileCache::new(&rule_for_cache)?),
        })
    }

    /// The rule compiled without field types: its push-down query and the fields it reads.
    pub fn untyped(&self) -> &CompiledRule {
        &self.compiled.untyped
    }

    /// The rule compiled for `field_types`, compiled again only when they changed since the
    /// last run.
    pub fn typed(&self, field_types: &FieldTypes) -> Result<Arc<CompiledRule>, RunError> {
        let mut last = self
            .compiled
            .typed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((types, compiled)) = last.as_ref() {
            if types == field_types {
                return Ok(compiled.clone());
            }
        }
        // Timestamps are compared in milliseconds, as Elasticsearch stores a `date`.
        let compiled = Arc::new(
            CompiledRule::compile(
                &self.rule,
                EngineOptions {
                    field_types: field_types.clone(),
                    timestamp_nanos: false,
                },
            )
            .map_err(RunError::Compile)?,
        );
        *last = Some((field_types.clone(), compiled.clone()));
        Ok(compiled)
    }

    /// How run and state documents name the rule.
    pub fn rule_ref(&self) -> RuleRef {
        RuleRef {
            rule_id: self.rule.rule_id.clone(),
            uuid: self.uuid.clone(),
            name: self.rule.name.clone(),
        }
    }
}

/// The compiled forms of one rule (see [`PreparedRule::typed`]).
struct CompileCache {
    untyped: CompiledRule,
    typed: Mutex<Option<(FieldTypes, Arc<CompiledRule>)>>,
}

impl CompileCache {
    fn new(rule: &Rule) -> Result<CompileCache, ConfigError> {
        let untyped = CompiledRule::compile(rule, EngineOptions::default()).map_err(|e| {
            ConfigError::Invalid {
                key: "rules.paths".into(),
                message: format!("rule {:?} ({}): {e}", rule.name, rule.origin),
            }
        })?;
        Ok(CompileCache {
            untyped,
            typed: Mutex::new(None),
        })
    }
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache").finish_non_exhaustive()
    }
}

/// The privileges a run needs (docs/least-privilege.md): `monitor`; `read` on the rule's
/// indices; on the alerts target `create_doc` and `read`, plus `create_index` on seqwatch's own
/// index or `view_index_metadata` on Kibana's alias; `read`, `index`, `create_index` on the
/// state index. With `alerts.enrichment`, `read` on the space's entity analytics indices too,
/// as optional: without it the alerts are written without enrichment (docs/enrichment.md).
pub fn required_privileges(config: &Config, rule: &PreparedRule) -> PrivilegeRequest {
    let alerts = match config.alerts.target {
        AlertTarget::Seqwatch => vec!["create_doc", "create_index", "read"],
        AlertTarget::Kibana => vec!["create_doc", "read", "view_index_metadata"],
    };
    let optional_indices = if config.alerts.enrichment {
        let names = EnrichmentIndex::ALL
            .iter()
            .map(|index| index.name(&config.alerts.kibana_space))
            .collect();
        vec![(names, vec!["read"])]
    } else {
        Vec::new()
    };
    PrivilegeRequest {
        cluster: vec!["monitor"],
        indices: vec![
            (rule.rule.index.clone(), vec!["read"]),
            (vec![config.alerts.write_target()], alerts),
            (
                vec![config.state.index.clone()],
                vec!["read", "index", "create_index"],
            ),
        ],
        optional_indices,
    }
}

/// Fails the run before it reads or writes anything when the credential lacks a privilege:
/// without `read` on the sources Elasticsearch would silently skip them, and the run would
/// look clean. Passes when the cluster has no security to ask. Returns the optional privileges
/// the credential lacks ("`read` on `name`"), which only turn enrichment off.
pub async fn check_privileges(
    ctx: &RunContext,
    rule: &PreparedRule,
) -> Result<Vec<String>, RunError> {
    let request = required_privileges(&ctx.config, rule);
    let Some(found) = ctx
        .cluster
        .missing_privileges(&request)
        .await
        .map_err(RunError::PrivilegeCheck)?
    else {
        return Ok(Vec::new());
    };
    let optional = request.optional_items();
    let (optional_missing, missing): (Vec<String>, Vec<String>) = found
        .missing
        .into_iter()
        .partition(|item| optional.contains(item));
    if missing.is_empty() {
        Ok(optional_missing)
    } else {
        Err(RunError::MissingPrivileges {
            username: found.username,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rules.prebuilt` decides, by `rule_id`, whether alerts call the rule Elastic's.
    #[test]
    fn rules_prebuilt_marks_a_rule_as_elastics() {
        let mut config = Config::default();
        let custom = PreparedRule::prepare(Rule::builtin().unwrap(), &config).unwrap();
        assert_eq!(custom.info.source, RuleSource::Custom);
        assert_eq!(custom.info.parameters()["immutable"], false);

        config.rules.prebuilt = vec![custom.rule.rule_id.clone()];
        let prebuilt = PreparedRule::prepare(Rule::builtin().unwrap(), &config).unwrap();
        assert_eq!(prebuilt.info.source, RuleSource::ElasticPrebuilt);
        assert_eq!(prebuilt.info.parameters()["immutable"], true);
    }
}
