//! `seqwatch validate --check-es`: what would stop the job from working on this cluster,
//! found before the first run: reachability, the index templates, Kibana's alerts alias, and
//! data in every rule's indices.

use serde_json::json;

use crate::config::{AlertTarget, Config};
use crate::es::EsClient;
use crate::run::PreparedRule;

/// `validate --check-es`: what stops the job from working on this cluster, one line each.
pub async fn check_cluster(es: &EsClient, config: &Config, rules: &[PreparedRule]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = es.health().await {
        problems.push(format!("cluster: {e}"));
        return problems;
    }
    for (name, label) in [
        (crate::es::templates::ALERTS_TEMPLATE, "alerts"),
        (crate::es::templates::STATE_TEMPLATE, "run state"),
    ] {
        match es.get_index_template(name).await {
            Ok(Some(installed)) => {
                let shipped = crate::es::templates::shipped_version(name);
                let found = installed["version"].as_u64();
                if let (Some(shipped), Some(found)) = (shipped, found) {
                    if found < shipped {
                        problems.push(format!(
                            "index template {name} ({label}) is version {found}, this seqwatch installs version {shipped}: run `seqwatch setup` (docs/upgrading.md)"
                        ));
                    }
                }
            }
            Ok(None) => problems.push(format!(
                "index template {name} ({label}) is not installed: run `seqwatch setup`"
            )),
            Err(e) => problems.push(format!("index template {name}: {e}")),
        }
    }
    if config.alerts.target == AlertTarget::Kibana {
        let alias = config.alerts.write_target();
        if let Err(e) = es.get_mapping(&alias).await {
            problems.push(format!(
                "alerts alias {alias}: {e} (Kibana creates it when its Security app is first opened in space {:?})",
                config.alerts.kibana_space
            ));
        }
    }
    for rule in rules {
        match es
            .count(&rule.rule.index.join(","), &json!({"match_all": {}}))
            .await
        {
            Ok(0) => problems.push(format!(
                "rule {:?}: no documents in {} (no index matches yet, or no data)",
                rule.rule.name,
                rule.rule.index.join(", ")
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!(
                "rule {:?}: cannot read {}: {e}",
                rule.rule.name,
                rule.rule.index.join(", ")
            )),
        }
    }
    problems
}
