//! The index templates seqwatch installs and the index names they govern: the one place in code
//! that names them. The bodies are the JSON files under `mappings/`, embedded at build time so
//! the binary installs exactly what the repository reviews.

use serde_json::Value;

use super::EsError;

/// Template for the alerts indices.
pub const ALERTS_TEMPLATE: &str = "seqwatch-alerts";
/// Pattern of the alerts indices (hidden, one per Kibana-like space).
pub const ALERTS_INDEX_PATTERN: &str = ".seqwatch-alerts-*";
/// Template for the run-state indices.
pub const STATE_TEMPLATE: &str = "seqwatch-state";
/// Pattern of the run-state indices (hidden, one per space).
pub const STATE_INDEX_PATTERN: &str = ".seqwatch-state-*";
/// The space used when none is configured, as in Kibana.
pub const DEFAULT_SPACE: &str = "default";

/// Test-cluster template for Elastic Defend process events. Not named like Fleet's own
/// template (`logs-endpoint.events.process`) so that it can never replace it.
pub const DEFEND_PROCESS_TEMPLATE: &str = "seqwatch-test-logs-endpoint.events.process";
/// Pattern of the Elastic Defend process data streams (`logs-endpoint.events.process-<namespace>`).
pub const DEFEND_PROCESS_INDEX_PATTERN: &str = "logs-endpoint.events.process-*";
/// Test-cluster template for CrowdStrike FDR events (not Fleet's name, as above).
pub const CROWDSTRIKE_FDR_TEMPLATE: &str = "seqwatch-test-logs-crowdstrike.fdr";
/// Pattern of the CrowdStrike FDR data streams (`logs-crowdstrike.fdr-<namespace>`).
pub const CROWDSTRIKE_FDR_INDEX_PATTERN: &str = "logs-crowdstrike.fdr-*";

/// The alerts index of `space`, e.g. `.seqwatch-alerts-default`.
pub fn alerts_index(space: &str) -> String {
    format!("{}{space}", ALERTS_INDEX_PATTERN.trim_end_matches('*'))
}

/// The run-state index of `space`, e.g. `.seqwatch-state-default`.
pub fn state_index(space: &str) -> String {
    format!("{}{space}", STATE_INDEX_PATTERN.trim_end_matches('*'))
}

/// One composable index template, as installed by `PUT _index_template/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTemplate {
    /// The template's name.
    pub name: &'static str,
    /// The one index pattern it applies to.
    pub index_pattern: &'static str,
    /// Its file under `mappings/`.
    pub file: &'static str,
    /// The file's text.
    pub json: &'static str,
    /// True for the source templates, which belong on test clusters only (production clusters
    /// get theirs from Fleet). They are data-stream templates, as Fleet's are.
    pub source_indices: bool,
}

impl IndexTemplate {
    /// The template body as JSON.
    pub fn body(&self) -> Result<Value, EsError> {
        serde_json::from_str(self.json).map_err(|err| EsError::Template {
            name: self.name.to_owned(),
            file: self.file.to_owned(),
            reason: err.to_string(),
        })
    }
}

/// Every template, service templates first.
pub const ALL: [IndexTemplate; 4] = [
    IndexTemplate {
        name: ALERTS_TEMPLATE,
        index_pattern: ALERTS_INDEX_PATTERN,
        file: "seqwatch-alerts.json",
        json: include_str!("../../mappings/seqwatch-alerts.json"),
        source_indices: false,
    },
    IndexTemplate {
        name: STATE_TEMPLATE,
        index_pattern: STATE_INDEX_PATTERN,
        file: "seqwatch-state.json",
        json: include_str!("../../mappings/seqwatch-state.json"),
        source_indices: false,
    },
    IndexTemplate {
        name: DEFEND_PROCESS_TEMPLATE,
        index_pattern: DEFEND_PROCESS_INDEX_PATTERN,
        file: "logs-endpoint.events.process.json",
        json: include_str!("../../mappings/logs-endpoint.events.process.json"),
        source_indices: true,
    },
    IndexTemplate {
        name: CROWDSTRIKE_FDR_TEMPLATE,
        index_pattern: CROWDSTRIKE_FDR_INDEX_PATTERN,
        file: "logs-crowdstrike.fdr.json",
        json: include_str!("../../mappings/logs-crowdstrike.fdr.json"),
        source_indices: true,
    },
];

/// The `version` of the template named `name` as this seqwatch installs it (raised whenever
/// its mappings or settings change), if there is such a template and it has one.
pub fn shipped_version(name: &str) -> Option<u64> {
    let template = ALL.iter().find(|t| t.name == name)?;
    template.body().ok()?["version"].as_u64()
}

/// The templates `seqwatch setup` installs: the service templates, and the source-index ones
/// when asked.
pub fn for_setup(with_source_templates: bool) -> impl Iterator<Item = &'static IndexTemplate> {
    ALL.iter()
        .filter(move |template| with_source_templates || !template.source_indices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::mapped_field_type;

    fn body(template: &IndexTemplate) -> Value {
        template.body().expect("embedded template parses")
    }

    fn mappings(template: &IndexTemplate) -> Value {
        body(template)["template"]["mappings"].clone()
    }

    #[test]
    fn every_template_is_json_for_exactly_its_declared_pattern() {
        for template in &ALL {
            let body = body(template);
            assert_eq!(
                body["index_patterns"],
                serde_json::json!([template.index_pattern]),
                "{}",
                template.file
            );
            assert!(
                body["_meta"]["description"]
                    .as_str()
                    .is_some_and(|d| d.len() > 40),
                "{} needs a _meta.description",
                template.file
            );
            assert!(
                body["priority"].as_u64().is_some(),
                "{} needs a priority",
                template.file
            );
        }
    }

    #[test]
    fn template_names_and_patterns_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|t| t.name).collect();
        let mut patterns: Vec<_> = ALL.iter().map(|t| t.index_pattern).collect();
        names.sort_unstable();
        names.dedup();
        patterns.sort_unstable();
        patterns.dedup();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(patterns.len(), ALL.len());
    }

    /// Every type a template maps, by `properties` (any depth), multi-fields and dynamic
    /// templates.
    fn types_of(body: &Value) -> std::collections::BTreeSet<String> {
        fn walk(value: &Value, out: &mut std::collections::BTreeSet<String>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(ty)) = map.get("type") {
                        out.insert(ty.clone());
                    }
                    map.values().for_each(|child| walk(child, out));
                }
                Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
                _ => {}
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk(&body["template"]["mappings"], &mut out);
        out
    }

    /// The types the integ-test distribution maps (9.5.0 and 8.19.21 accept them in
    /// `_index_template/_simulate`; it has no mapper-extras, wildcard, version,
    /// constant-keyword or unsigned-long modules).
    const INTEG_TEST_TYPES: [&str; 15] = [
        "alias",
        "boolean",
        "date",
        "date_range",
        "double",
        "flattened",
        "float",
        "geo_point",
        "integer",
        "ip",
        "keyword",
        "long",
        "nested",
        "object",
        "text",
    ];

    /// The source templates use only the distribution's own types; the service templates may
    /// use Kibana's, but with every fallback applied (a cluster that lacks them all) nothing
    /// else is left, so `seqwatch setup` installs them on any distribution.
    #[test]
    fn templates_install_on_the_integ_test_distribution() {
        use crate::es::field_types::{apply_type_fallbacks, TYPE_FALLBACKS};
        let all_missing: std::collections::BTreeSet<String> = TYPE_FALLBACKS
            .iter()
            .map(|f| f.kibana_type.to_owned())
            .collect();
        for template in &ALL {
            let mut body = body(template);
            if !template.source_indices {
                apply_type_fallbacks(&mut body, &all_missing);
            }
            let bad: Vec<String> = types_of(&body)
                .into_iter()
                .filter(|ty| !INTEG_TEST_TYPES.contains(&ty.as_str()))
                .collect();
            assert!(
                bad.is_empty(),
                "{}: unsupported types {bad:?}",
                template.file
            );
        }
        // The alerts template does use Kibana's own types where a cluster has them.
        let alerts = types_of(&body(&ALL[0]));
        for ty in ["wildcard", "match_only_text", "version", "scaled_float"] {
            assert!(alerts.contains(ty), "{ty}");
        }
    }

    #[test]
    fn source_templates_map_the_rules_fields_with_ecs_types() {
        let expected = [
            ("@timestamp", "date"),
            ("event.created", "date"),
            ("event.ingested", "date"),
            ("process.start", "date"),
            ("process.pid", "long"),
            ("process.args_count", "long"),
            ("host.ip", "ip"),
            ("event.category", "keyword"),
            ("event.type", "keyword"),
            ("event.action", "keyword"),
            ("host.id", "keyword"),
            ("host.os.type", "keyword"),
            ("process.name", "keyword"),
            ("process.args", "keyword"),
            ("process.command_line", "keyword"),
            ("process.entity_id", "keyword"),
            ("process.parent.name", "keyword"),
            ("process.parent.entity_id", "keyword"),
        ];
        for template in ALL.iter().filter(|t| t.source_indices) {
            let mappings = mappings(template);
            for (field, ty) in expected {
                assert_eq!(
                    mapped_field_type(&mappings, field),
                    Some(ty),
                    "{} {field}",
                    template.file
                );
            }
        }
        let defend = mappings(&ALL[2]);
        assert_eq!(mapped_field_type(&defend, "event.sequence"), Some("long"));
        assert_eq!(
            mapped_field_type(&defend, "process.name.caseless"),
            Some("keyword")
        );
    }

    /// Sources are data streams, as Fleet makes them: the first write to
    /// `logs-endpoint.events.process-<namespace>` creates one, which needs `@timestamp` mapped
    /// as a date. The alerts and state indices stay plain: the state documents are rewritten in
    /// place with guarded `index` writes, which a data stream refuses.
    #[test]
    fn source_templates_make_data_streams_and_service_templates_plain_indices() {
        for template in &ALL {
            let body = body(template);
            if template.source_indices {
                assert_eq!(
                    body["data_stream"],
                    serde_json::json!({}),
                    "{}",
                    template.file
                );
                assert_eq!(
                    mapped_field_type(&body["template"]["mappings"], "@timestamp"),
                    Some("date"),
                    "{}",
                    template.file
                );
            } else {
                assert!(body.get("data_stream").is_none(), "{}", template.file);
            }
        }
    }

    #[test]
    fn defend_template_is_not_dynamic_like_production_and_crowdstrike_maps_strings_as_keyword() {
        assert_eq!(mappings(&ALL[2])["dynamic"], Value::Bool(false));
        let crowdstrike = mappings(&ALL[3]);
        assert_eq!(crowdstrike["dynamic"], Value::Bool(true));
        assert_eq!(
            crowdstrike["dynamic_templates"][0]["strings_as_keyword"]["mapping"]["type"],
            "keyword"
        );
    }

    #[test]
    fn service_templates_are_hidden_not_dynamic_and_map_the_alert_keys() {
        for template in ALL.iter().filter(|t| !t.source_indices) {
            let body = body(template);
            assert_eq!(
                body["template"]["settings"]["index"]["hidden"],
                Value::Bool(true)
            );
            assert_eq!(body["template"]["mappings"]["dynamic"], Value::Bool(false));
        }
        let alerts = mappings(&ALL[0]);
        for (field, ty) in [
            ("@timestamp", "date"),
            ("kibana.alert.uuid", "keyword"),
            ("kibana.alert.rule.uuid", "keyword"),
            ("kibana.alert.group.id", "keyword"),
            ("kibana.alert.original_time", "date"),
            ("event.kind", "keyword"),
        ] {
            assert_eq!(mapped_field_type(&alerts, field), Some(ty), "{field}");
        }
    }

    /// The alerts template follows Kibana's alerts index from version 4 on (field types that
    /// changed, so an older template must be replaced: docs/upgrading.md), and the indices it
    /// creates record the version in their own mapping.
    #[test]
    fn the_alerts_template_version_is_recorded_in_the_indices_it_creates() {
        assert_eq!(shipped_version(ALERTS_TEMPLATE), Some(4));
        assert!(shipped_version(STATE_TEMPLATE).is_some());
        assert_eq!(shipped_version("no-such-template"), None);
        let alerts = body(&ALL[0]);
        assert_eq!(
            alerts["template"]["mappings"]["_meta"]["template_version"],
            alerts["version"]
        );
    }

    #[test]
    fn setup_selection_and_index_names() {
        let service: Vec<_> = for_setup(false).map(|t| t.name).collect();
        assert_eq!(service, [ALERTS_TEMPLATE, STATE_TEMPLATE]);
        assert_eq!(for_setup(true).count(), 4);
        assert_eq!(alerts_index(DEFAULT_SPACE), ".seqwatch-alerts-default");
        assert_eq!(state_index("ops"), ".seqwatch-state-ops");
    }
}
