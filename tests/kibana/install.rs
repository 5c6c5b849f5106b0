//! Kibana's security alerts index on a test node, as Kibana's alerting framework installs it
//! (from the fixtures in `mappings/kibana/`), for the tests that write beside it.

use std::collections::BTreeSet;

use serde_json::json;

use seqwatch::es::field_types::apply_type_fallbacks;

use crate::common::es_request_ok;
use crate::kibana;

/// Installs Kibana's component and index templates for `space` with this node's fallbacks,
/// then the write index behind its alias. Returns the index and the alias.
pub fn install_kibanas_alerts_index(
    space: &str,
    unsupported: &BTreeSet<String>,
) -> (String, String) {
    for component in kibana::component_templates() {
        let mut body = component.body;
        apply_type_fallbacks(&mut body, unsupported);
        es_request_ok(
            "PUT",
            &format!("/_component_template/{}", component.name),
            Some(&body),
        );
    }
    let (template, mut body) = kibana::index_template_for_space(space);
    let settings = body["template"]["settings"]
        .as_object_mut()
        .expect("settings");
    assert!(
        settings.remove("index.lifecycle").is_some(),
        "Kibana's template has ILM"
    );
    let needed = kibana::limit_for_mapping(
        kibana::kibana_total_fields_limit(),
        kibana::total_fields(&kibana::composed_mappings()),
    );
    settings.insert(kibana::TOTAL_FIELDS_LIMIT_SETTING.into(), json!(needed));
    es_request_ok("PUT", &format!("/_index_template/{template}"), Some(&body));
    let (index, alias) = kibana::write_index_for_space(space);
    es_request_ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({"aliases": {alias.clone(): {"is_write_index": true}}})),
    );
    (index, alias)
}
