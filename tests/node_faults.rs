//! Fault tests against a real Elasticsearch node that they may stop and restart: the node going
//! away mid-run, transient faults, partial bulk failures, a lost point in time and a failed
//! shard, and the daemon riding out a restart. `scripts/test` starts a dedicated 9.5.0 node for `tests/node_*.rs` and exports
//! `SEQWATCH_TEST_ES_URL` and `SEQWATCH_TEST_ES_PORT`; the tests stop and start it with
//! `scripts/es --port P stop` / `start --keep-data`, and put a fault-injecting proxy
//! (`node_faults/proxy.rs`) between seqwatch and the node. They share the node, so they run one
//! at a time (a global async mutex).
//!
//! Every test seeds its own data streams with `seqwatch::generate`, takes the generator's ground
//! truth as the baseline, runs with the fault and asserts the status, the checkpoint, the run
//! document's message, and that after the next clean run the alerts are exactly the baseline,
//! each id stored once. Each prints a `FIGURE` line (stderr) for `docs/reliability.md`.

mod common;
#[path = "es_job/fixture.rs"]
#[allow(dead_code)]
mod fixture;
#[path = "node_faults/node.rs"]
mod node;
#[path = "node_faults/proxy.rs"]
mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use seqwatch::config::{Config, HumanDuration};
use seqwatch::es::{EsClient, EsSettings};
use seqwatch::generate::GenerateSpec;
use seqwatch::run::{PreparedRule, RunContext};
use seqwatch::state::{RunDoc, RunStatus, StoredWindow};
use seqwatch::window::Window;

use fixture::{
    at_ms, minutes, rule_fields_mapping, run_at, JobFixture, TemplateKind, TruthSequence,
};
use proxy::{bulk_ids, Fault, FaultProxy, Rule};

/// The tests share one node that some of them stop: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 2026-11-18T06:13:20Z, as in tests/es_job.rs.
const T0: i64 = 1_795_000_000_000;
/// Retries of the client under test (small, so faults outlast them quickly).
const RETRIES: u32 = 2;

fn spec(seed: u64) -> GenerateSpec {
    GenerateSpec {
        hosts: 10,
        rate: 2.0,
        from_ms: T0,
        to_ms: T0 + minutes(14),
        seed,
        installs_per_host_hour: 36.0,
        script_rate: 0.7,
        malicious_rate: 0.3,
    }
}

fn window(from_ms: i64, to_ms: i64) -> Window {
    Window {
        from: at_ms(from_ms),
        to: at_ms(to_ms),
    }
}

/// Shell and building-block ids of the truth inside any of `windows`: what fault-free runs over
/// those windows write.
fn baseline(truth: &[TruthSequence], windows: &[Window]) -> BTreeSet<String> {
    truth
        .iter()
        .filter(|t| windows.iter().any(|w| t.inside(w)))
        .flat_map(|t| std::iter::once(t.shell_id()).chain(t.block_ids()))
        .collect()
}

/// A client of `url` (the proxy) with the retries and timeout under test.
fn client(url: &str, timeout: Duration) -> EsClient {
    let mut settings = EsSettings::new(url);
    settings.request_timeout = timeout;
    settings.max_retries = RETRIES;
    settings.retry_base = Duration::from_millis(50);
    EsClient::connect(&settings).expect("client")
}

/// The fixture's configuration with its own alerts and state indices for `case`.
fn case_config(fx: &JobFixture, case: &str, page_size: u32) -> Config {
    let mut config = fx.config();
    config.alerts.index = format!("{}-{case}", fx.alerts);
    config.state.index = format!("{}-{case}", fx.state);
    config.elasticsearch.page_size = page_size;
    config
}

fn ctx(config: &Config, es: EsClient) -> RunContext {
    RunContext::new(Arc::new(es), Arc::new(config.clone()), "faults-test".into())
}

/// Documents per `kibana.alert.uuid` in `index` (read from the node itself; a missing index
/// has none), and the index's document count, which must agree.
async fn alert_counts(es: &EsClient, index: &str) -> BTreeMap<String, usize> {
    // Alerts are written without a refresh (deduplication reads them in real time), so make
    // them searchable first; a missing index has nothing to refresh.
    let _ = es.refresh(index).await;
    let docs = es
        .search_docs(index, json!({"match_all": {}}), "@timestamp", 10_000)
        .await
        .expect("reading alerts");
    let mut counts = BTreeMap::new();
    for d in &docs {
        let id = d["kibana.alert.uuid"].as_str().expect("kibana.alert.uuid");
        *counts.entry(id.to_owned()).or_insert(0) += 1;
    }
    let total = match es.count(index, &json!({"match_all": {}})).await {
        Ok(n) => n as usize,
        Err(e) if e.status() == Some(404) => 0,
        Err(e) => panic!("counting alerts: {e}"),
    };
    assert_eq!(total, docs.len(), "every alert document was read");
    counts
}

/// The alert ids of `index`, or `None` while it cannot be read (an index being created, or
/// recovering after a restart, answers 503 `no_shard_available_action_exception`).
async fn alert_ids_now(es: &EsClient, index: &str) -> Option<BTreeSet<String>> {
    let _ = es.refresh(index).await;
    let docs = es
        .search_docs(index, json!({"match_all": {}}), "@timestamp", 10_000)
        .await
        .ok()?;
    docs.iter()
        .map(|d| d["kibana.alert.uuid"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts the alerts of `index` are exactly `expected`, each stored once; returns
/// (present, lost, duplicated).
async fn assert_baseline(
    es: &EsClient,
    index: &str,
    expected: &BTreeSet<String>,
) -> (usize, usize, usize) {
    let counts = alert_counts(es, index).await;
    let present: BTreeSet<String> = counts.keys().cloned().collect();
    let lost = expected.difference(&present).count();
    let extra = present.difference(expected).count();
    let duplicated: usize = counts.values().map(|n| n - 1).sum();
    assert_eq!(
        (lost, extra, duplicated),
        (0, 0, 0),
        "alerts of {index} differ from the baseline"
    );
    (present.len(), lost, duplicated)
}

/// One row of the figures for docs/reliability.md.
#[allow(clippy::too_many_arguments)]
fn figure(
    fault: &str,
    runs: usize,
    expected: usize,
    present: usize,
    lost: usize,
    duplicated: usize,
    retries: usize,
) {
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE | {fault} | runs {runs} | expected {expected} | present {present} | lost {lost} | duplicated {duplicated} | crashes 0 | retries {retries}"
    );
}

async fn checkpoint_to(fx: &JobFixture, state: &str) -> Option<chrono::DateTime<Utc>> {
    fx.checkpoint(state).await.map(|c| c.last_success.to)
}

/// Seeds the fixture and returns it with the truth.
async fn seeded(test: &str, seed: u64) -> (JobFixture, Vec<TruthSequence>) {
    let fx = JobFixture::new(test).await;
    let truth = fx.load_generated(spec(seed)).await;
    (fx, truth)
}

/// The node stops while `rule` fires (a hook before forwarding), the run fails and
/// leaves the checkpoint, the node comes back, the next run covers the window: alerts equal
/// the baseline. Runs: a clean one at T0+4m, the faulty one at T0+9m, the recovery at T0+14m.
async fn node_stops_during(test: &str, what: &str, rule: impl Fn(Fault) -> Rule, error_has: &str) {
    let _serial = SERIAL.lock().await;
    let port = node::node_port(test);
    let (fx, truth) = seeded(test, 51).await;
    let _node = node::NodeGuard(port);
    let proxy = FaultProxy::start(&common::es_url()).await;
    let config = case_config(&fx, "stop", 25);
    let rule_ = fx.rule(&config);
    let ctx = ctx(&config, client(&proxy.url, Duration::from_secs(10)));
    let (t1, t2, t3) = (T0 + minutes(4), T0 + minutes(9), T0 + minutes(14));

    let first = run_at(&ctx, &rule_, at_ms(t1)).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    let before = alert_counts(&fx.es, &config.alerts.index).await;

    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stopped.clone();
    let hook: proxy::Hook = Arc::new(move |_seen| {
        let flag = flag.clone();
        Box::pin(async move {
            node::stop(port).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    });
    let n = proxy.add(rule(Fault::Hook(hook)));
    let failed = run_at(&ctx, &rule_, at_ms(t2)).await;
    assert!(
        stopped.load(std::sync::atomic::Ordering::SeqCst),
        "the hook stopped the node"
    );
    assert_eq!(proxy.fired(n), 1);
    assert_eq!(failed.status, RunStatus::Failed, "{failed:#?}");
    let error = failed.error.clone().expect("an error");
    assert!(
        error.contains(error_has) && error.contains("could not reach Elasticsearch"),
        "{error}"
    );
    // Retries: the request the hook fired on, sent again (same path and body).
    let seen = proxy.seen();
    let hooked = seen
        .iter()
        .find(|s| s.fired == Some(n))
        .expect("the hooked request")
        .clone();
    let retried = seen
        .iter()
        .filter(|s| s.fired.is_none() && s.path == hooked.path && s.body == hooked.body)
        .count();
    assert_eq!(
        retried, RETRIES as usize,
        "bounded retries against the stopped node"
    );
    let restart = node::start(port).await;
    let _ = writeln!(std::io::stderr(), "{test}: node restarted in {restart:?}");
    assert_eq!(
        checkpoint_to(&fx, &config.state.index).await,
        Some(at_ms(t1)),
        "the failed run leaves the checkpoint"
    );
    assert_eq!(
        alert_counts(&fx.es, &config.alerts.index).await,
        before,
        "the failed run wrote no alert"
    );

    let recovered = run_at(&ctx, &rule_, at_ms(t3)).await;
    assert_eq!(recovered.status, RunStatus::Succeeded, "{recovered:#?}");
    assert_eq!(
        recovered.window,
        StoredWindow::from(window(t1 - minutes(4), t3)),
        "back to the last success minus the overlap: the failed window is covered"
    );
    assert_eq!(
        checkpoint_to(&fx, &config.state.index).await,
        Some(at_ms(t3))
    );
    let windows = [window(t1 - minutes(9), t1), window(t1 - minutes(4), t3)];
    let expected = baseline(&truth, &windows);
    assert!(
        expected.len() > before.len(),
        "the failed window had sequences to alert"
    );
    let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;

    // The failed run's document was kept while the node was down and written after it.
    let runs: Vec<RunDoc> = fx.run_docs(&config.state.index).await;
    let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Succeeded
        ],
        "{runs:#?}"
    );
    assert_eq!(runs[1].error.as_deref(), Some(error.as_str()));
    figure(what, 3, expected.len(), present, lost, dup, retried);
}

fn proxy_matches(rule: &Rule, seen: &proxy::Seen) -> bool {
    rule.method.is_none_or(|m| m == seen.method)
        && seen.path.contains(rule.path)
        && rule.body.is_none_or(|b| seen.body.contains(b))
}

/// The node stops before the second page of the point in time is fetched.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stopping_mid_paging_fails_the_run_and_the_next_run_covers_the_window() {
    node_stops_during(
        "faults-stop-paging",
        "node stops mid-paging (before page 2)",
        |fault| {
            Rule::new("POST", "/_search", 1, fault)
                .body("\"pit\"")
                .starting_at(2)
        },
        "paging: POST _search (point in time)",
    )
    .await;
}

/// The node stops before the alerts' `_bulk` reaches it.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stopping_mid_write_fails_the_run_and_the_next_run_covers_the_window() {
    node_stops_during(
        "faults-stop-write",
        "node stops mid-write (before _bulk)",
        |fault| Rule::new("POST", "/_bulk", 1, fault),
        "writing alerts: POST _bulk",
    )
    .await;
}

/// Transient faults through the proxy. Each case has its own alerts and state
/// indices, one run over [T0, T0+9m]: bounded retries, then success, alerts = baseline. Then
/// faults that outlast the retries: a clean failure, state unchanged, no alert written; the
/// next clean run = baseline.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_boundedly_and_lose_or_duplicate_nothing() {
    let _serial = SERIAL.lock().await;
    let (fx, truth) = seeded("faults-transient", 52).await;
    let proxy = FaultProxy::start(&common::es_url()).await;
    let now = T0 + minutes(9);
    let expected = baseline(&truth, &[window(now - minutes(9), now)]);
    assert!(
        expected.len() > 30,
        "enough alerts to matter: {}",
        expected.len()
    );
    let timeout = Duration::from_millis(2_500);
    let status = |status: u16, retry_after: Option<&str>| Fault::Status {
        status,
        retry_after: retry_after.map(str::to_owned),
    };
    let page2 = |times, fault| Rule::new("POST", "/_search", times, fault).body("search_after");
    // Runs of (case, rule, times it fires); the faults of one run hit different requests.
    let groups: Vec<Vec<(&str, Rule, usize)>> = vec![
        vec![
            (
                "502 on opening the point in time",
                Rule::new("POST", "/_pit", 2, status(502, None)),
                2,
            ),
            (
                "429 + Retry-After: 1 on a search page",
                page2(2, status(429, Some("1"))),
                2,
            ),
            (
                "504 on _mget (event fetch)",
                Rule::new("POST", "/_mget", 2, status(504, None)),
                2,
            ),
            (
                "503 on _bulk (whole request)",
                Rule::new("POST", "/_bulk", 2, status(503, None)),
                2,
            ),
        ],
        vec![
            ("503 on a search page", page2(2, status(503, None)), 2),
            (
                "connection reset on _bulk",
                Rule::new("POST", "/_bulk", 1, Fault::Reset),
                1,
            ),
        ],
        vec![
            (
                "connection reset on a search page",
                page2(2, Fault::Reset),
                2,
            ),
            (
                "answer slower than the timeout on _bulk (written, answer lost)",
                Rule::new("POST", "/_bulk", 1, Fault::Delay(Duration::from_secs(4))),
                1,
            ),
        ],
        vec![
            (
                "slow answers (1 s, under the 2.5 s timeout)",
                page2(3, Fault::Delay(Duration::from_secs(1))),
                3,
            ),
            (
                "answer slower than the timeout (4 s > 2.5 s) on _mget",
                Rule::new("POST", "/_mget", 1, Fault::Delay(Duration::from_secs(4))),
                1,
            ),
        ],
    ];
    for (i, group) in groups.into_iter().enumerate() {
        let config = case_config(&fx, &format!("t{i}"), 25);
        let prepared = fx.rule(&config);
        let ctx = ctx(&config, client(&proxy.url, timeout));
        proxy.clear_seen();
        let added: Vec<(&str, Rule, usize, usize)> = group
            .into_iter()
            .map(|(case, rule, fired)| (case, rule.clone(), fired, proxy.add(rule)))
            .collect();
        let run = run_at(&ctx, &prepared, at_ms(now)).await;
        let names: Vec<&str> = added.iter().map(|a| a.0).collect();
        assert_eq!(run.status, RunStatus::Succeeded, "{names:?}: {run:#?}");
        assert_eq!(
            checkpoint_to(&fx, &config.state.index).await,
            Some(at_ms(now)),
            "{names:?}"
        );
        let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;
        for (case, reference, fired, n) in added {
            assert_eq!(proxy.fired(n), fired, "{case}");
            let slow = matches!(reference.fault, Fault::Delay(d) if d < timeout);
            let seen: Vec<proxy::Seen> = proxy
                .seen()
                .into_iter()
                .filter(|s| proxy_matches(&reference, s))
                .collect();
            // Retries: requests right after a faulty one that repeat it (same path and body).
            let retries = seen
                .windows(2)
                .filter(|w| {
                    w[0].fired == Some(n) && w[0].body == w[1].body && w[0].path == w[1].path
                })
                .count();
            if slow {
                assert_eq!(
                    retries, 0,
                    "{case}: a slow answer within the timeout is not retried"
                );
            } else {
                assert_eq!(retries, fired, "{case}: each fault retried once, no more");
            }
            if case.starts_with("429") {
                for w in seen.windows(2).filter(|w| w[0].fired == Some(n)) {
                    let waited = w[1].at - w[0].at;
                    assert!(
                        waited >= Duration::from_millis(950),
                        "{case}: Retry-After: 1 honoured, waited {waited:?}"
                    );
                    assert!(waited < Duration::from_secs(5), "{case}: waited {waited:?}");
                }
            }
            if case.contains("on _bulk (written") {
                // The slow answer is the first `_bulk`'s, the building blocks' (two of each
                // sequence's three alerts); the shells go in a later request.
                assert_eq!(
                    run.counts.write_conflicts as usize,
                    expected.len() / 3 * 2,
                    "{case}: the retry found every block already written: {run:#?}"
                );
            }
            figure(case, 1, expected.len(), present, lost, dup, retries);
        }
        proxy.clear_rules();
    }

    // Faults outlasting the retries: 1 + RETRIES attempts, then a clean failure.
    let attempts = 1 + RETRIES as usize;
    let outlasting: Vec<(&str, Rule, &str)> = vec![
        (
            "503 on every attempt of a search page",
            page2(attempts, status(503, None)),
            "Elasticsearch answered HTTP 503",
        ),
        (
            "connection reset on every attempt of _bulk",
            Rule::new("POST", "/_bulk", attempts, Fault::Reset),
            "writing alerts: POST _bulk",
        ),
        (
            "every attempt of a page slower than the timeout",
            page2(attempts, Fault::Delay(Duration::from_secs(3))),
            "no answer from Elasticsearch",
        ),
    ];
    for (i, (case, rule, error_has)) in outlasting.into_iter().enumerate() {
        let config = case_config(&fx, &format!("o{i}"), 40);
        let prepared = fx.rule(&config);
        let ctx = ctx(&config, client(&proxy.url, timeout));
        let n = proxy.add(rule);
        let failed = run_at(&ctx, &prepared, at_ms(now)).await;
        assert_eq!(failed.status, RunStatus::Failed, "{case}: {failed:#?}");
        assert!(
            failed
                .error
                .as_deref()
                .is_some_and(|e| e.contains(error_has)),
            "{case}: {:?}",
            failed.error
        );
        assert_eq!(proxy.fired(n), attempts, "{case}: bounded");
        assert_eq!(
            proxy.matched(n),
            attempts,
            "{case}: no attempt beyond the bound"
        );
        assert_eq!(
            checkpoint_to(&fx, &config.state.index).await,
            None,
            "{case}: state unchanged"
        );
        assert!(
            alert_counts(&fx.es, &config.alerts.index).await.is_empty(),
            "{case}: no alert written"
        );
        let stored = fx.run_docs(&config.state.index).await;
        assert_eq!(stored.len(), 1, "{case}: the failure is recorded");
        assert_eq!(stored[0].error, failed.error);
        proxy.clear_rules();
        let clean = run_at(&ctx, &prepared, at_ms(now)).await;
        assert_eq!(clean.status, RunStatus::Succeeded, "{case}: {clean:#?}");
        let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;
        figure(
            &format!("{case} (outlasts {RETRIES} retries)"),
            2,
            expected.len(),
            present,
            lost,
            dup,
            attempts - 1,
        );
    }
}

/// A partial bulk failure: half the items of the first `_bulk` fail with 429 (and never
/// reach the node); only those are sent again. When items keep failing past the job's write
/// attempts, the run fails, the checkpoint stays, and the next run writes the rest.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_failed_bulk_items_are_sent_again() {
    let _serial = SERIAL.lock().await;
    let (fx, truth) = seeded("faults-bulk-items", 53).await;
    let proxy = FaultProxy::start(&common::es_url()).await;
    let now = T0 + minutes(9);
    let expected = baseline(&truth, &[window(now - minutes(9), now)]);

    let config = case_config(&fx, "partial", 200);
    let prepared = fx.rule(&config);
    let ctx = ctx(&config, client(&proxy.url, Duration::from_secs(10)));
    let n = proxy.add(Rule::new(
        "POST",
        "/_bulk",
        1,
        Fault::FailBulkItems { every: 2 },
    ));
    let run = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(proxy.fired(n), 1);
    let bulks: Vec<Vec<String>> = proxy
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/_bulk"))
        .map(|s| bulk_ids(&s.body))
        .collect();
    // Building blocks first, then the shells of the sequences whose blocks are all in.
    assert_eq!(bulks.len(), 3, "the blocks, one retry of them, the shells");
    let failed_first: Vec<String> = bulks[0].iter().step_by(2).cloned().collect();
    assert_eq!(
        bulks[1], failed_first,
        "exactly the failed items are sent again, in order"
    );
    assert_eq!(bulks[0].len() + bulks[2].len(), expected.len());
    assert_eq!(bulks[0].len(), 2 * bulks[2].len(), "two blocks per shell");
    assert_eq!(run.counts.write_conflicts, 0, "nothing written twice");
    let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;
    figure(
        "bulk: every 2nd item 429 once",
        1,
        expected.len(),
        present,
        lost,
        dup,
        failed_first.len(),
    );

    // Items failing on every one of the job's 4 write attempts.
    proxy.clear_rules();
    proxy.clear_seen();
    let config = case_config(&fx, "stubborn", 200);
    let prepared = fx.rule(&config);
    let ctx = RunContext {
        config: Arc::new(config.clone()),
        ..ctx
    };
    let n = proxy.add(Rule::new(
        "POST",
        "/_bulk",
        4,
        Fault::FailBulkItems { every: 3 },
    ));
    let failed = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:#?}");
    assert_eq!(proxy.fired(n), 4, "the job's write attempts are bounded");
    let error = failed.error.clone().expect("error");
    assert!(
        error.contains("refused: HTTP 429 es_rejected_execution_exception"),
        "{error}"
    );
    assert_eq!(
        checkpoint_to(&fx, &config.state.index).await,
        None,
        "state unchanged"
    );
    let bulks: Vec<Vec<String>> = proxy
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/_bulk"))
        .map(|s| bulk_ids(&s.body))
        .filter(|ids| !ids.is_empty())
        .collect();
    assert_eq!(bulks.len(), 5, "4 attempts of the blocks, then the shells");
    // The blocks still refused after the 4th attempt sink their sequences: no shell is sent
    // for them and their written blocks are deleted again; every other sequence is written.
    let refused: BTreeSet<&String> = bulks[3].iter().step_by(3).collect();
    let sinking: Vec<&TruthSequence> = truth
        .iter()
        .filter(|t| t.block_ids().iter().any(|b| refused.contains(b)))
        .collect();
    assert!(!sinking.is_empty());
    let written = alert_counts(&fx.es, &config.alerts.index).await;
    for t in &truth {
        let ids: Vec<String> = std::iter::once(t.shell_id()).chain(t.block_ids()).collect();
        if !expected.contains(&ids[0]) {
            continue;
        }
        let present = ids.iter().filter(|id| written.contains_key(*id)).count();
        let sunk = sinking.iter().any(|s| s.shell_id() == ids[0]);
        assert_eq!(
            present,
            if sunk { 0 } else { ids.len() },
            "a sequence is written whole or not at all"
        );
    }
    assert_eq!(
        written.len(),
        expected.len() - 3 * sinking.len(),
        "every other sequence stays written"
    );
    proxy.clear_rules();
    let clean = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(clean.status, RunStatus::Succeeded, "{clean:#?}");
    let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;
    let retried: usize = bulks[1..].iter().map(Vec::len).sum();
    figure(
        "bulk: every 3rd item 429 on all 4 attempts, then a clean run",
        2,
        expected.len(),
        present,
        lost,
        dup,
        retried,
    );
}

/// The point in time disappears before page 2 (closed by a hook, as an expiry would),
/// and a shard fails on a real node (a second source index maps `host.os.type` as `long`, so
/// the rule's term query cannot be built on its shard: `_shards.failed` = 1 with partial hits).
/// Both: the run fails naming the cause, writes no alert, leaves the checkpoint.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_point_in_time_or_a_failed_shard_fails_the_run_without_partial_alerts() {
    let _serial = SERIAL.lock().await;
    let (fx, truth) = seeded("faults-pit-shard", 54).await;
    let proxy = FaultProxy::start(&common::es_url()).await;
    let now = T0 + minutes(9);
    let expected = baseline(&truth, &[window(now - minutes(9), now)]);

    // (a) The PIT is closed before the second page.
    let config = case_config(&fx, "pit", 25);
    let prepared = fx.rule(&config);
    let ctx = ctx(&config, client(&proxy.url, Duration::from_secs(10)));
    let direct = fx.es.clone();
    let hook: proxy::Hook = Arc::new(move |seen| {
        let direct = direct.clone();
        Box::pin(async move {
            let body: Value = serde_json::from_str(&seen.body).expect("a search body");
            let pit = body["pit"]["id"].as_str().expect("a pit id").to_owned();
            assert!(direct
                .close_point_in_time(&pit)
                .await
                .expect("closing the pit"));
        })
    });
    let n = proxy.add(Rule::new("POST", "/_search", 1, Fault::Hook(hook)).body("search_after"));
    let failed = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(proxy.fired(n), 1);
    assert_eq!(failed.status, RunStatus::Failed, "{failed:#?}");
    let error = failed.error.clone().expect("error");
    assert!(
        error.starts_with("paging: ")
            && error.contains("the point in time expired or was closed before paging finished")
            && error.contains("search_context_missing_exception"),
        "{error}"
    );
    assert_eq!(proxy.matched(n), 1, "a lost point in time is not retried");
    assert!(
        alert_counts(&fx.es, &config.alerts.index).await.is_empty(),
        "no partial alert"
    );
    assert_eq!(checkpoint_to(&fx, &config.state.index).await, None);
    assert_eq!(
        fx.run_docs(&config.state.index).await[0].error.as_deref(),
        Some(error.as_str())
    );
    proxy.clear_rules();
    let clean = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(clean.status, RunStatus::Succeeded, "{clean:#?}");
    let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;
    figure(
        "PIT closed before page 2",
        2,
        expected.len(),
        present,
        lost,
        dup,
        0,
    );

    // (b) A shard failure. The broken index matches the rule's Defend pattern. A plain index,
    // deliberately: the test deletes it afterwards, and the integ-test distribution cannot
    // delete a data stream. The rule's other fields are mapped as in Defend's template: were
    // they unmapped, their clauses would rewrite the query to match nothing on this shard
    // before the `host.os.type` term is built, and no shard would fail.
    let broken = format!("{}-broken", fx.defend);
    let upstream = common::es_url().trim_start_matches("http://").to_owned();
    let keyword = json!({"type": "keyword", "ignore_above": 1024});
    fx.install_test_template(
        &format!("{}-broken", fx.name),
        &format!("{broken}*"),
        TemplateKind::PlainIndex,
        json!({}),
        rule_fields_mapping(json!({"host": {"properties": {"id": keyword,
            "os": {"properties": {"type": {"type": "long"}}}}}})),
    )
    .await;
    let ts = at_ms(now - minutes(1)).to_rfc3339();
    fx.es
        .put_doc(
            &broken,
            "numeric-os",
            &json!({"@timestamp": ts, "host": {"os": {"type": 7}}}),
        )
        .await
        .expect("a document in the broken index");
    // Searchable before the run opens its point in time: a shard with no visible document in
    // the window is skipped by the time-range pre-filter, and would fail nothing.
    fx.es
        .refresh(&broken)
        .await
        .expect("refreshing the broken index");
    // The real node's answer: one shard failed, the others' hits returned.
    let probe = json!({"size": 1, "query": {"term": {"host.os.type": "linux"}}});
    let (status, _, body) = proxy::raw_request(
        &upstream,
        "POST",
        &format!("/{}*/_search", fx.defend),
        &[],
        probe.to_string().as_bytes(),
    )
    .await
    .expect("probe search");
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["_shards"]["failed"], json!(1), "{answer}");
    assert_eq!(
        answer["hits"]["hits"].as_array().map(Vec::len),
        Some(1),
        "partial hits: {answer}"
    );

    let config = case_config(&fx, "shard", 25);
    let prepared = fx.rule(&config);
    let ctx = RunContext {
        config: Arc::new(config.clone()),
        ..ctx
    };
    let failed = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:#?}");
    let error = failed.error.clone().expect("error");
    assert!(
        error.starts_with("paging: ")
            && error.contains("1 shard(s) failed; the first: failed to create query"),
        "{error}"
    );
    assert!(
        alert_counts(&fx.es, &config.alerts.index).await.is_empty(),
        "no partial alert"
    );
    assert_eq!(checkpoint_to(&fx, &config.state.index).await, None);
    assert_eq!(
        fx.run_docs(&config.state.index).await[0].error.as_deref(),
        Some(error.as_str())
    );
    fx.es
        .delete_indices(&broken)
        .await
        .expect("deleting the broken index");
    let clean = run_at(&ctx, &prepared, at_ms(now)).await;
    assert_eq!(clean.status, RunStatus::Succeeded, "{clean:#?}");
    let (present, lost, dup) = assert_baseline(&fx.es, &config.alerts.index, &expected).await;
    figure(
        "shard failure (host.os.type mapped long)",
        2,
        expected.len(),
        present,
        lost,
        dup,
        0,
    );
}

/// `GET path` on the daemon: status and body (connection refused counts as status 0).
async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `check` every 250 ms until it holds or `limit` passes; returns the time it took.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    started.elapsed()
}

/// The daemon (every 2 s) keeps running while the node stops and comes back:
/// `/readyz` turns 503 while the node is down and 200 again after, without restarting seqwatch;
/// events that arrive after the restart are alerted; alerts = the truth of both batches.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rides_out_a_node_restart_and_recovers_on_its_own() {
    let _serial = SERIAL.lock().await;
    let test = "faults-daemon";
    let port = node::node_port(test);
    let fx = JobFixture::new(test).await;
    let _node = node::NodeGuard(port);
    let real_now = Utc::now().timestamp_millis();
    let batch = |from_ms: i64, to_ms: i64, seed: u64| GenerateSpec {
        from_ms,
        to_ms,
        seed,
        hosts: 6,
        rate: 1.0,
        installs_per_host_hour: 120.0,
        ..spec(seed)
    };
    let first = fx
        .load_generated(batch(real_now - minutes(4), real_now - minutes(2), 55))
        .await;
    assert!(!first.is_empty());

    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut config = case_config(&fx, "daemon", 100);
    config.daemon.listen = format!("127.0.0.1:{listen}");
    config.daemon.shutdown_timeout = HumanDuration::secs(20);
    config.schedule.cron = Some("*/2 * * * * *".into());
    let prepared: PreparedRule = fx.rule(&config);
    let mut settings = EsSettings::new(common::es_url());
    settings.request_timeout = Duration::from_secs(5);
    settings.max_retries = 1;
    settings.retry_base = Duration::from_millis(50);
    let ctx = ctx(&config, EsClient::connect(&settings).expect("client"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(seqwatch::daemon::serve(ctx, vec![prepared], async move {
        let _ = stopped.await;
    }));

    let es = fx.es.clone();
    let alerts = config.alerts.index.clone();
    let want1: BTreeSet<String> = first
        .iter()
        .flat_map(|t| std::iter::once(t.shell_id()).chain(t.block_ids()))
        .collect();
    wait_until("first batch alerted", Duration::from_secs(30), || {
        let (es, alerts, want) = (es.clone(), alerts.clone(), want1.clone());
        async move { alert_ids_now(&es, &alerts).await == Some(want) }
    })
    .await;
    wait_until("ready", Duration::from_secs(15), || async {
        http_get(listen, "/readyz").await.0 == 200
    })
    .await;

    node::stop(port).await;
    let down_for = wait_until(
        "not ready while the node is down",
        Duration::from_secs(20),
        || async {
            let (status, body) = http_get(listen, "/readyz").await;
            status == 503 && body.contains("Elasticsearch is not reachable")
        },
    )
    .await;
    assert!(
        !daemon.is_finished(),
        "the daemon keeps running while the node is down"
    );
    assert_eq!(
        http_get(listen, "/healthz").await.0,
        200,
        "alive while not ready"
    );
    let restart = node::start(port).await;

    let now2 = Utc::now().timestamp_millis();
    let second = fx
        .load_generated(batch(now2 - 60_000, now2 - 5_000, 56))
        .await;
    assert!(!second.is_empty());
    let want_all: BTreeSet<String> = want1
        .iter()
        .cloned()
        .chain(
            second
                .iter()
                .flat_map(|t| std::iter::once(t.shell_id()).chain(t.block_ids())),
        )
        .collect();
    let recovered_in = wait_until("ready again", Duration::from_secs(30), || async {
        http_get(listen, "/readyz").await.0 == 200
    })
    .await;
    wait_until("second batch alerted", Duration::from_secs(30), || {
        let (es, alerts, want) = (es.clone(), alerts.clone(), want_all.clone());
        async move { alert_ids_now(&es, &alerts).await == Some(want) }
    })
    .await;
    assert!(!daemon.is_finished(), "the same daemon recovered");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(40), daemon)
        .await
        .expect("the daemon stops")
        .expect("daemon task")
        .expect("the daemon ends cleanly");

    let (present, lost, dup) = assert_baseline(&fx.es, &alerts, &want_all).await;
    let runs = fx.run_docs(&config.state.index).await;
    // The stop above can land while a tick's run is going (on the 2 s schedule a run of over a
    // second often is): that run stops at a safe point and is recorded as failed with the
    // error kind `cancelled`. Only the last run may be that one, and it is no outage failure.
    let last_started = runs.iter().map(|r| r.started_at).max();
    let (cancelled, outage): (Vec<&RunDoc>, Vec<&RunDoc>) = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .partition(|r| r.error_kind.as_deref() == Some("cancelled"));
    assert!(
        cancelled.iter().all(|r| Some(r.started_at) == last_started),
        "only the run going when the daemon was told to stop may be cancelled: {runs:#?}"
    );
    let failed = outage.len();
    assert!(
        failed >= 1,
        "the runs during the outage are recorded as failed: {runs:#?}"
    );
    assert!(
        outage.iter().all(|r| r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("Elasticsearch"))),
        "{runs:#?}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{test}: not ready {down_for:?} after the stop; node restart {restart:?}; ready again {recovered_in:?} after it; {} runs, {failed} failed",
        runs.len()
    );
    figure(
        "node restart under the daemon (2 s schedule)",
        runs.len(),
        want_all.len(),
        present,
        lost,
        dup,
        0,
    );
}
