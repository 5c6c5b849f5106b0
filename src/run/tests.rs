//! The run pipeline's invariants over the in-memory cluster: fast, and independent of a node.
//! `tests/es_job.rs` holds the same pipeline to Elasticsearch's contract on a real node.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::Value;

use super::fake::{FakeCluster, Fault, Op};
use super::*;
use crate::alert::{self, SourceEvent};
use crate::config::{Config, HumanDuration};
use crate::generate::{GenerateSpec, Generator, TruthRecord};
use crate::state::{checkpoint_id, lease_id, CheckpointDoc, LeaseDoc};

/// 2026-11-18T06:13:20Z, the start of every generated range.
const T0: i64 = 1_795_000_000_000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn minutes(n: i64) -> i64 {
    n * 60_000
}

/// Generated events (`_index`, `_id`, `@timestamp` in ms, `_source`) and their ground truth.
type Generated = (
    Vec<(String, String, i64, Arc<Value>, Arc<str>)>,
    Vec<TruthRecord>,
);

/// The events of `[T0, T0 + span]` for a seed, generated once per test binary: several tests
/// start from the same data.
fn generated(span: i64, seed: u64, installs: f64) -> Arc<Generated> {
    type Key = (i64, u64, u64);
    static CACHE: std::sync::Mutex<Vec<(Key, Arc<Generated>)>> = std::sync::Mutex::new(Vec::new());
    let key = (span, seed, installs.to_bits());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, g)) = cache.iter().find(|(k, _)| *k == key) {
        return g.clone();
    }
    let mut generator = Generator::new(GenerateSpec {
        hosts: 4,
        rate: 0.2,
        from_ms: T0,
        to_ms: T0 + span,
        seed,
        installs_per_host_hour: installs,
        script_rate: 0.8,
        malicious_rate: 0.3,
    })
    .unwrap();
    let mut events = Vec::new();
    let mut truth = Vec::new();
    while let Some(hit) = generator.next() {
        events.push((
            hit.index.to_owned(),
            hit.id.clone(),
            hit.timestamp_ms,
            Arc::new(hit.source_value().unwrap()),
            Arc::from(hit.source.as_str()),
        ));
        truth.extend(generator.drain_truth());
    }
    truth.extend(generator.drain_truth());
    let g = Arc::new((events, truth));
    cache.push((key, g.clone()));
    g
}

struct World {
    fake: Arc<FakeCluster>,
    /// Each generated event's `@timestamp`, by (`_index`, `_id`).
    times: std::collections::HashMap<(String, String), DateTime<Utc>>,
    ctx: RunContext,
    rule: PreparedRule,
    truth: Vec<TruthRecord>,
}

impl World {
    /// Generated Defend and CrowdStrike events over `[T0, T0 + span]` in a fake cluster, and
    /// the built-in rule prepared with `config`.
    fn new(span: i64, seed: u64, edit: impl FnOnce(&mut Config)) -> World {
        World::with_rate(span, seed, 40.0, edit)
    }

    /// [`World::new`] with `installs` npm installs per host and hour.
    fn with_rate(span: i64, seed: u64, installs: f64, edit: impl FnOnce(&mut Config)) -> World {
        let mut config = Config::default();
        edit(&mut config);
        let fake = Arc::new(FakeCluster::new());
        let generated = generated(span, seed, installs);
        let mut times = std::collections::HashMap::new();
        for (index, id, ms, source, text) in &generated.0 {
            times.insert((index.clone(), id.clone()), at(*ms));
            fake.put_shared(index, id, source.clone(), text.clone());
        }
        let truth = generated.1.clone();
        let rule = PreparedRule::prepare(crate::rule::Rule::builtin().unwrap(), &config).unwrap();
        let ctx = RunContext::new(fake.clone(), Arc::new(config), "replica-a".into());
        World {
            fake,
            times,
            ctx,
            rule,
            truth,
        }
    }

    fn alerts_index(&self) -> String {
        self.ctx.config.alerts.write_target()
    }

    fn timestamp(&self, index: &str, id: &str) -> DateTime<Utc> {
        self.times[&(index.to_owned(), id.to_owned())]
    }

    /// The shell ids of the expected sequences lying wholly inside `[from, to]`.
    fn expected_shells(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeSet<String> {
        self.truth
            .iter()
            .filter(|t| t.expected)
            .filter(|t| {
                t.events.iter().all(|e| {
                    let ts = self.timestamp(&e.index, &e.id);
                    from <= ts && ts <= to
                })
            })
            .map(|t| {
                let events: Vec<SourceEvent<'_>> = t
                    .events
                    .iter()
                    .map(|e| SourceEvent {
                        index: &e.index,
                        id: &e.id,
                        source: &Value::Null,
                    })
                    .collect();
                alert::shell_id(&self.rule.uuid, &events)
            })
            .collect()
    }

    fn shells(&self) -> BTreeSet<String> {
        self.fake
            .docs(&self.alerts_index())
            .into_iter()
            .filter(|(_, d)| d.get("kibana.alert.group.index").is_none())
            .map(|(id, _)| id)
            .collect()
    }

    fn alert_count(&self) -> usize {
        self.fake.docs(&self.alerts_index()).len()
    }

    fn checkpoint(&self) -> Option<CheckpointDoc> {
        let doc = self.fake.doc(
            &self.ctx.config.state.index,
            &checkpoint_id(&self.rule.uuid),
        )?;
        serde_json::from_value(doc).ok()
    }

    async fn run(&self, plan: RunPlan) -> RunReport {
        match run(&self.ctx, &self.rule, &plan).await {
            RunOutcome::Ran(report) => *report,
            RunOutcome::Skipped(h) => panic!("skipped: {h:?}"),
        }
    }
}

#[tokio::test]
async fn a_run_alerts_exactly_the_sequences_of_its_window_and_moves_the_checkpoint() {
    let w = World::new(minutes(20), 11, |_| {});
    let now = at(T0 + minutes(20));
    let report = w.run(RunPlan::scheduled(now)).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let from = now - Span::minutes(9);
    let expected = w.expected_shells(from, now);
    assert!(
        expected.len() >= 5,
        "the seed plants too few: {}",
        expected.len()
    );
    assert_eq!(w.shells(), expected);
    assert_eq!(report.doc.counts.alerts_created, expected.len() as u64);
    assert_eq!(
        w.alert_count(),
        3 * expected.len(),
        "a shell and two building blocks each"
    );
    assert_eq!(w.checkpoint().unwrap().last_success.to, now);
    assert_eq!(report.doc.mode, "scheduled");
    assert!(w
        .fake
        .doc(&w.ctx.config.state.index, &report.doc.run_id)
        .is_some());
}

#[tokio::test]
async fn the_checkpoint_moves_only_after_every_alert_is_written() {
    let w = World::new(minutes(20), 12, |_| {});
    let now = at(T0 + minutes(20));
    assert!(w
        .run(RunPlan::scheduled(now - Span::minutes(5)))
        .await
        .error
        .is_none());
    let written = w.alert_count();
    // The next run's alerts are refused for good.
    w.fake.fail_next(
        Op::Bulk,
        Fault::PartialBulk {
            from_item: 0,
            status: 400,
        },
    );
    let failed = w.run(RunPlan::scheduled(now)).await;
    assert!(
        matches!(
            failed.error,
            Some(RunError::AlertRefused { status: 400, .. })
        ),
        "{:?}",
        failed.error
    );
    assert_eq!(failed.doc.error_kind.as_deref(), Some("alert_refused"));
    assert_eq!(
        w.checkpoint().unwrap().last_success.to,
        now - Span::minutes(5),
        "a failed write must not move the checkpoint"
    );
    assert_eq!(w.alert_count(), written);

    let later = now + Span::minutes(5);
    let retried = w.run(RunPlan::scheduled(later)).await;
    assert!(retried.error.is_none(), "{:?}", retried.error);
    assert_eq!(
        retried.doc.window.from,
        now - Span::minutes(9),
        "the next run reaches back over the failed window"
    );
    assert_eq!(
        w.shells(),
        w.expected_shells(now - Span::minutes(14), later)
    );
    assert_eq!(
        retried.doc.counts.write_conflicts, 0,
        "nothing is written twice"
    );
    // Every bulk write came before the checkpoint's write.
    let calls = w.fake.calls();
    let last_bulk = calls.iter().rposition(|c| *c == Op::Bulk).unwrap();
    let last_state = calls.iter().rposition(|c| *c == Op::PutState).unwrap();
    assert!(last_bulk < last_state);
    assert_eq!(w.checkpoint().unwrap().last_success.to, later);
}

#[tokio::test]
async fn dedup_comes_before_the_cap() {
    let w = World::new(minutes(20), 13, |c| c.schedule.max_signals = Some(2));
    let now = at(T0 + minutes(20));
    let all = w.expected_shells(now - Span::minutes(9), now);
    assert!(all.len() >= 5, "{}", all.len());
    let mut written = Vec::new();
    for _ in 0..all.len().div_ceil(2) {
        // Same window each time: the latest sequences exist, so they do not use up the cap.
        let r = w.run(RunPlan::once(now)).await;
        assert!(r.error.is_none(), "{:?}", r.error);
        written.push(r.doc.counts.alerts_created);
        assert_eq!(
            r.doc.counts.alerts_created,
            2.min(all.len() as u64 - written[..written.len() - 1].iter().sum::<u64>())
        );
    }
    assert_eq!(w.shells(), all, "every sequence alerted after enough runs");
    let last = w.run(RunPlan::once(now)).await;
    assert_eq!(last.doc.counts.alerts_created, 0);
    assert_eq!(last.doc.counts.duplicates_skipped, all.len() as u64);
    assert_eq!(last.doc.counts.alerts_truncated, 0);
}

#[tokio::test]
async fn overlapping_runs_write_nothing_twice() {
    let w = World::new(minutes(30), 14, |_| {});
    let mut created = 0;
    for k in 0..4 {
        let now = at(T0 + minutes(15 + 5 * k));
        let r = w.run(RunPlan::scheduled(now)).await;
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(r.doc.counts.write_conflicts, 0);
        created += r.doc.counts.alerts_created;
    }
    let expected = w.expected_shells(at(T0 + minutes(6)), at(T0 + minutes(30)));
    assert_eq!(w.shells(), expected);
    assert_eq!(created, expected.len() as u64, "each alert counted once");
}

#[tokio::test]
async fn downtime_is_caught_up_within_max_catchup_and_beyond_it_is_a_gap() {
    let w = World::with_rate(minutes(200), 15, 4.0, |c| {
        c.schedule.max_catchup = HumanDuration(std::time::Duration::from_secs(3600))
    });
    let first = at(T0 + minutes(20));
    assert!(w.run(RunPlan::scheduled(first)).await.error.is_none());
    // 30 minutes down: the next run widens back to the checkpoint, less the overlap.
    let second = first + Span::minutes(30);
    let r = w.run(RunPlan::scheduled(second)).await;
    assert!(r.error.is_none());
    assert_eq!(r.doc.window.from, first - Span::minutes(4));
    assert!(r.doc.gap.is_none());
    // Two hours down with max_catchup of one hour: the hour before is a gap, recorded.
    let third = second + Span::minutes(120);
    let r = w.run(RunPlan::scheduled(third)).await;
    assert_eq!(r.doc.window.from, third - Span::minutes(60));
    let gap = r.doc.gap.expect("a gap");
    assert_eq!((gap.from, gap.to), (second, third - Span::minutes(60)));
    assert_eq!(
        r.doc.status,
        crate::state::RunStatus::Failed,
        "a gap fails the run"
    );
    assert!(r.doc.warnings.iter().any(|w| w.contains("max_catchup")));
    assert_eq!(
        w.checkpoint().unwrap().last_success.to,
        third,
        "a gap still advances the checkpoint"
    );
}

#[tokio::test]
async fn the_lease_holds_against_another_replica_and_once_gives_it_back() {
    let w = World::new(minutes(20), 16, |_| {});
    let now = at(T0 + minutes(20));
    let lease = LeaseDoc {
        doc_type: "lease".into(),
        rule: w.rule.rule_ref(),
        owner: "replica-b".into(),
        expires_at: now + Span::minutes(3),
    };
    let state = w.ctx.config.state.index.clone();
    w.fake.put(
        &state,
        &lease_id(&w.rule.uuid),
        serde_json::to_value(&lease).unwrap(),
    );
    match run(&w.ctx, &w.rule, &RunPlan::scheduled(now)).await {
        RunOutcome::Skipped(h) => assert_eq!(h.owner, "replica-b"),
        RunOutcome::Ran(r) => panic!("ran while another replica holds the lease: {:?}", r.doc),
    }
    assert_eq!(w.alert_count(), 0);
    assert!(!w.fake.calls().contains(&Op::OpenPit), "nothing was read");
    // Once it expired, this replica takes it and holds it across scheduled runs.
    let later = now + Span::minutes(5);
    assert!(w.run(RunPlan::scheduled(later)).await.error.is_none());
    let held: LeaseDoc =
        serde_json::from_value(w.fake.doc(&state, &lease_id(&w.rule.uuid)).unwrap()).unwrap();
    assert_eq!(held.owner, "replica-a");
    assert!(held.expires_at > later);
    // `once` gives it back when done.
    let r = w.run(RunPlan::once(later + Span::minutes(5))).await;
    assert!(r.error.is_none());
    let held: LeaseDoc =
        serde_json::from_value(w.fake.doc(&state, &lease_id(&w.rule.uuid)).unwrap()).unwrap();
    assert_eq!(held.expires_at, later + Span::minutes(5));
    // A replica that loses the race for the lease skips the run.
    w.fake.fail_next(Op::PutState, Fault::Conflict);
    let b = RunContext::new(w.fake.clone(), w.ctx.config.clone(), "replica-b".into());
    let outcome = run(&b, &w.rule, &RunPlan::scheduled(later + Span::minutes(10))).await;
    assert!(matches!(outcome, RunOutcome::Skipped(_)), "{outcome:?}");
}

#[tokio::test]
async fn throttled_bulk_items_are_retried_and_conflicts_are_not_errors() {
    let w = World::new(minutes(20), 17, |_| {});
    let now = at(T0 + minutes(20));
    w.fake.fail_next(
        Op::Bulk,
        Fault::PartialBulk {
            from_item: 0,
            status: 429,
        },
    );
    let r = w.run(RunPlan::scheduled(now)).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(w.shells(), w.expected_shells(now - Span::minutes(9), now));
    assert_eq!(
        w.fake.calls().iter().filter(|c| **c == Op::Bulk).count(),
        3,
        "the building blocks, one retry of them, then the shells"
    );
}

#[tokio::test]
async fn a_refusal_or_timeout_fails_the_run_by_stage_and_leaves_the_checkpoint() {
    let cases: Vec<(Op, Fault, &str)> = vec![
        (Op::Search, Fault::Status(503), "paging"),
        (Op::Search, Fault::Timeout, "paging"),
        (Op::OpenPit, Fault::Status(403), "open_point_in_time"),
        (Op::FieldCaps, Fault::Status(500), "field_caps"),
        (Op::ExistingIds, Fault::Status(403), "dedup"),
        (Op::Mget, Fault::Timeout, "enrich"),
        (Op::Bulk, Fault::Status(413), "write"),
        (Op::GetState, Fault::Status(503), "lease"),
        (Op::Privileges, Fault::Status(401), "privilege_check"),
    ];
    for (op, fault, kind) in cases {
        let w = World::new(minutes(20), 18, |_| {});
        let now = at(T0 + minutes(20));
        w.fake.fail_next(op, fault.clone());
        let r = w.run(RunPlan::scheduled(now)).await;
        let error = r
            .error
            .unwrap_or_else(|| panic!("{op:?} {fault:?} did not fail the run"));
        assert_eq!(error.kind(), kind, "{op:?} {fault:?}: {error}");
        assert_eq!(r.doc.error_kind.as_deref(), Some(kind));
        assert_eq!(r.doc.status, crate::state::RunStatus::Failed);
        assert!(w.checkpoint().is_none(), "{op:?}: the checkpoint moved");
        // The next run, healthy, writes everything.
        let next = w.run(RunPlan::scheduled(now + Span::minutes(5))).await;
        assert!(next.error.is_none(), "{op:?}: {:?}", next.error);
    }
}

#[tokio::test]
async fn missing_privileges_stop_the_run_before_it_reads_anything() {
    let w = World::new(minutes(20), 19, |_| {});
    w.fake
        .lack_privileges(vec!["`read` on `logs-endpoint.events.process*`".into()]);
    let r = w.run(RunPlan::once(at(T0 + minutes(20)))).await;
    assert!(
        matches!(r.error, Some(RunError::MissingPrivileges { ref missing, .. }) if missing.len() == 1)
    );
    assert_eq!(
        w.fake.calls(),
        vec![Op::Privileges, Op::PutDoc],
        "only the run document is written"
    );
}

#[tokio::test]
async fn run_documents_the_cluster_refused_are_written_by_the_next_run() {
    let w = World::new(minutes(20), 20, |_| {});
    let now = at(T0 + minutes(20));
    w.fake.fail_next(Op::Privileges, Fault::Status(503));
    w.fake.fail_next(Op::PutDoc, Fault::Status(503));
    let failed = w.run(RunPlan::scheduled(now)).await;
    assert!(failed.error.is_some());
    assert_eq!(w.ctx.recorder.waiting(), 1);
    let ok = w.run(RunPlan::scheduled(now + Span::minutes(5))).await;
    assert!(ok.error.is_none());
    assert_eq!(w.ctx.recorder.waiting(), 0);
    let state = w.fake.docs(&w.ctx.config.state.index);
    assert!(state.contains_key(&failed.doc.run_id) && state.contains_key(&ok.doc.run_id));
}

#[tokio::test]
async fn a_cancelled_run_stops_at_a_safe_point_and_writes_nothing() {
    let w = World::new(minutes(20), 21, |_| {});
    w.ctx.cancel.cancel();
    let r = w.run(RunPlan::scheduled(at(T0 + minutes(20)))).await;
    assert!(
        matches!(r.error, Some(RunError::Cancelled)),
        "{:?}",
        r.error
    );
    assert_eq!(w.alert_count(), 0);
    assert!(w.checkpoint().is_none());
    assert!(!w.fake.calls().contains(&Op::OpenPit));
}

#[tokio::test]
async fn a_run_cancelled_while_it_fetches_writes_no_alert() {
    let w = World::new(minutes(20), 22, |_| {});
    w.fake.fail_next(
        Op::Search,
        Fault::Delay(std::time::Duration::from_millis(200)),
    );
    let cancel = w.ctx.cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let r = w.run(RunPlan::scheduled(at(T0 + minutes(20)))).await;
    canceller.await.unwrap();
    assert!(
        matches!(r.error, Some(RunError::Cancelled)),
        "{:?}",
        r.error
    );
    assert_eq!(w.alert_count(), 0);
    assert!(!w.fake.calls().contains(&Op::Bulk));
    assert!(
        w.fake.calls().contains(&Op::ClosePit),
        "the point in time is closed"
    );
}

#[tokio::test]
async fn backfill_equals_the_union_of_its_runs_and_resumes_after_a_failed_chunk() {
    let w = World::with_rate(minutes(120), 23, 12.0, |_| {});
    let (from, to) = (at(T0 + minutes(10)), at(T0 + minutes(120)));
    let options = BackfillOptions {
        parallel: 2,
        chunk: std::time::Duration::from_secs(20 * 60),
    };
    // The third search of the backfill fails: its chunk is left for the rerun.
    w.fake
        .fail_next(Op::Search, Fault::Delay(std::time::Duration::ZERO));
    w.fake
        .fail_next(Op::Search, Fault::Delay(std::time::Duration::ZERO));
    w.fake.fail_next(Op::Search, Fault::Status(503));
    let first = backfill(&w.ctx, &w.rule, from, to, options).await.unwrap();
    assert_eq!(first.failed_chunks, 1, "{first:?}");
    assert!(first.chunks >= 6, "{first:?}");
    let second = backfill(&w.ctx, &w.rule, from, to, options).await.unwrap();
    assert_eq!(second.failed_chunks, 0, "{second:?}");
    assert_eq!(second.chunks_resumed, first.chunks - 1);
    assert_eq!(second.chunks_run, 1);
    // Every sequence inside some scheduled run's window, and nothing else.
    let ticks = w.rule.schedule.ticks(from, to);
    let mut union = BTreeSet::new();
    for t in &ticks {
        union.extend(w.expected_shells(*t - Span::minutes(9), *t));
    }
    assert_eq!(w.shells(), union);
    assert_eq!(
        first.counts.alerts_created + second.counts.alerts_created,
        union.len() as u64,
        "nothing written twice"
    );
    // Each chunk ran as a run: one run document each, in backfill mode.
    let runs = w
        .fake
        .docs(&w.ctx.config.state.index)
        .into_values()
        .filter(|d| d["type"] == "run" && d["mode"] == "backfill")
        .count();
    assert_eq!(runs, first.chunks_run + second.chunks_run);
    assert!(
        w.checkpoint().is_none(),
        "a backfill leaves the checkpoint alone"
    );
}

/// An expected sequence: its events (`_index`, `_id`), shell id and building-block ids.
type ExpectedSequence = (Vec<(String, String)>, String, Vec<String>);

/// The expected sequences wholly inside `[from, to]`.
fn expected_sequences(w: &World, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<ExpectedSequence> {
    w.truth
        .iter()
        .filter(|t| t.expected)
        .filter(|t| {
            t.events.iter().all(|e| {
                let ts = w.timestamp(&e.index, &e.id);
                from <= ts && ts <= to
            })
        })
        .map(|t| {
            let refs: Vec<(String, String)> = t
                .events
                .iter()
                .map(|e| (e.index.clone(), e.id.clone()))
                .collect();
            let events: Vec<SourceEvent<'_>> = refs
                .iter()
                .map(|(index, id)| SourceEvent {
                    index,
                    id,
                    source: &Value::Null,
                })
                .collect();
            let shell = alert::shell_id(&w.rule.uuid, &events);
            let blocks = alert::building_block_ids(&w.rule.uuid, &events);
            (refs, shell, blocks)
        })
        .collect()
}

#[tokio::test]
async fn a_field_the_alerts_index_refuses_is_removed_and_the_alert_written_without_it() {
    let w = World::new(minutes(20), 21, |_| {});
    let now = at(T0 + minutes(20));
    let sequences = expected_sequences(&w, now - Span::minutes(9), now);
    let (index, id) = sequences[0].0[0].clone();
    // A field outside ECS (so the ECS check keeps it) that the alerts index maps as long.
    let mut source = w.fake.doc(&index, &id).unwrap();
    source["npm_audit"] = serde_json::json!({"count": "lots", "level": "high"});
    w.fake.put(&index, &id, source);
    w.fake.map_long("npm_audit.count");

    let r = w.run(RunPlan::scheduled(now)).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(w.shells(), w.expected_shells(now - Span::minutes(9), now));
    let block = w.fake.doc(&w.alerts_index(), &sequences[0].2[0]).unwrap();
    assert_eq!(block["npm_audit"], serde_json::json!({"level": "high"}));
    assert_eq!(r.doc.counts.alert_fields_removed, 1);
    assert!(
        r.doc
            .warnings
            .iter()
            .any(|m| m.starts_with("field npm_audit.count was removed from 1 alert(s)")),
        "{:?}",
        r.doc.warnings
    );
}

#[tokio::test]
async fn a_sequence_refused_for_good_is_written_not_at_all_and_every_other_in_full() {
    let w = World::new(minutes(20), 22, |_| {});
    let now = at(T0 + minutes(20));
    let sequences = expected_sequences(&w, now - Span::minutes(9), now);
    assert!(sequences.len() >= 3, "{}", sequences.len());
    // One sequence's second building block, another's shell: refused with no field named.
    let (_, bad_block_shell, bad_blocks) = &sequences[0];
    let (_, bad_shell, bad_shell_blocks) = &sequences[1];
    w.fake.refuse_unparseable(&bad_blocks[1]);
    w.fake.refuse_unparseable(bad_shell);

    let r = w.run(RunPlan::scheduled(now)).await;
    match &r.error {
        Some(RunError::AlertRefused {
            sequences, status, ..
        }) => {
            assert_eq!((*sequences, *status), (2, 400));
        }
        other => panic!("{other:?}"),
    }
    let written = w.fake.docs(&w.alerts_index());
    for id in std::iter::once(bad_block_shell)
        .chain(bad_blocks)
        .chain(std::iter::once(bad_shell))
        .chain(bad_shell_blocks)
    {
        assert!(
            !written.contains_key(id),
            "{id} of a refused sequence stayed"
        );
    }
    for (_, shell, blocks) in &sequences[2..] {
        assert!(written.contains_key(shell));
        assert!(blocks.iter().all(|b| written.contains_key(b)));
    }
    assert_eq!(written.len(), 3 * (sequences.len() - 2));
    assert_eq!(r.doc.counts.alerts_created, sequences.len() as u64 - 2);
    assert_eq!(
        r.doc.counts.building_blocks_created,
        2 * (sequences.len() as u64 - 2)
    );
    assert!(
        w.checkpoint().is_none(),
        "a run with a refused sequence does not move the checkpoint"
    );
    // The next run writes nothing new and fails again on the same sequences.
    let again = w.run(RunPlan::scheduled(now)).await;
    assert!(matches!(
        again.error,
        Some(RunError::AlertRefused { sequences: 2, .. })
    ));
    assert_eq!(again.doc.counts.alerts_created, 0);
    assert_eq!(w.fake.docs(&w.alerts_index()).len(), written.len());
}

/// Kibana's entity analytics indices of the default space.
fn enrichment_index(index: crate::entity_enrichment::EnrichmentIndex) -> String {
    index.name("default")
}

/// The distinct `host.name`s and `user.name`s of World `(span, seed)`'s generated events.
fn entity_names(span: i64, seed: u64) -> (BTreeSet<String>, BTreeSet<String>) {
    let g = generated(span, seed, 40.0);
    let mut hosts = BTreeSet::new();
    let mut users = BTreeSet::new();
    for (_, _, _, source, _) in &g.0 {
        if let Some(h) = source["host"]["name"].as_str() {
            hosts.insert(h.to_owned());
        }
        if let Some(u) = source["user"]["name"].as_str() {
            users.insert(u.to_owned());
        }
    }
    (hosts, users)
}

impl World {
    /// An asset criticality entry, as Kibana's asset criticality data client writes it.
    fn put_criticality(&self, id_field: &str, name: &str, level: &str) {
        use crate::entity_enrichment::EnrichmentIndex;
        self.fake.put(
            &enrichment_index(EnrichmentIndex::AssetCriticality),
            &format!("{id_field}:{name}"),
            serde_json::json!({
                "@timestamp": "2026-11-18T00:00:00Z",
                "id_field": id_field,
                "id_value": name,
                "criticality_level": level,
                "asset": {"criticality": level}
            }),
        );
    }

    /// A latest risk score of `kind` (`host`, `user`), as the risk engine writes it.
    fn put_risk(&self, kind: &str, name: &str, level: &str, score: f64) {
        use crate::entity_enrichment::EnrichmentIndex;
        self.fake.put(
            &enrichment_index(EnrichmentIndex::RiskScore),
            &format!("{kind}:{name}"),
            serde_json::json!({
                "@timestamp": "2026-11-18T00:00:00Z",
                kind: {"name": name, "risk": {
                    "id_field": format!("{kind}.name"), "id_value": name,
                    "calculated_level": level, "calculated_score_norm": score
                }}
            }),
        );
    }

    fn entity_searches(&self) -> usize {
        self.fake
            .calls()
            .iter()
            .filter(|c| **c == Op::EntitySearch)
            .count()
    }
}

/// Kibana enriches every alert of a bulk create, shells and building blocks: criticality as a
/// dotted key, risk nested, each from the entity the alert names; entities without an entry
/// get nothing. The lookups are made once for the batch, not per alert.
#[tokio::test]
async fn alerts_carry_the_asset_criticality_and_risk_of_their_entities() {
    let w = World::new(minutes(20), 24, |_| {});
    let (hosts, users) = entity_names(minutes(20), 24);
    let risky_host = hosts.iter().next().expect("hosts").clone();
    for host in &hosts {
        w.put_criticality("host.name", host, "high_impact");
    }
    w.put_risk("host", &risky_host, "High", 81.5);
    for user in &users {
        w.put_risk("user", user, "Moderate", 44.0);
        // A host entry of the user's name is not the user's.
        w.put_criticality("host.name", user, "low_impact");
    }
    let now = at(T0 + minutes(20));
    let r = w.run(RunPlan::scheduled(now)).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.doc.status, crate::state::RunStatus::Succeeded, "{r:?}");
    assert_eq!(w.shells(), w.expected_shells(now - Span::minutes(9), now));
    let alerts = w.fake.docs(&w.alerts_index());
    assert!(alerts.len() >= 15, "{}", alerts.len());
    let mut risky = 0;
    for (id, alert) in &alerts {
        let host = alert["host"]["name"].as_str().expect("alerts name a host");
        assert_eq!(
            alert["host.asset.criticality"],
            serde_json::json!("high_impact"),
            "{id}"
        );
        if *host == risky_host {
            risky += 1;
            assert_eq!(
                alert["host"]["risk"],
                serde_json::json!({"calculated_level": "High", "calculated_score_norm": 81.5}),
                "{id}"
            );
        } else {
            assert!(alert["host"].get("risk").is_none(), "{id}: {alert}");
        }
        match alert["user"]["name"].as_str() {
            Some(_) => {
                assert_eq!(
                    alert["user"]["risk"]["calculated_level"],
                    serde_json::json!("Moderate"),
                    "{id}"
                );
                assert!(alert.get("user.asset.criticality").is_none(), "{id}");
            }
            None => assert!(alert.get("user").and_then(|u| u.get("risk")).is_none()),
        }
    }
    assert!(risky > 0, "the seed puts no alert on {risky_host}");
    assert_eq!(r.doc.counts.alerts_enriched, alerts.len() as u64);
    assert_eq!(r.doc.counts.enrichment_failures, 0);
    assert_eq!(
        w.entity_searches(),
        4,
        "one search per index and kind of entity (hosts, users) for the run's one batch"
    );
}

/// Kibana uses an enrichment index only when it exists; without them the alerts are written
/// as they are and the run is clean.
#[tokio::test]
async fn absent_enrichment_indices_are_skipped() {
    let w = World::new(minutes(20), 25, |_| {});
    let now = at(T0 + minutes(20));
    let r = w.run(RunPlan::scheduled(now)).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.doc.status, crate::state::RunStatus::Succeeded, "{r:?}");
    assert!(r.doc.warnings.is_empty(), "{:?}", r.doc.warnings);
    assert_eq!(w.shells(), w.expected_shells(now - Span::minutes(9), now));
    for (id, alert) in w.fake.docs(&w.alerts_index()) {
        assert!(alert.get("host.asset.criticality").is_none(), "{id}");
        assert!(alert["host"].get("risk").is_none(), "{id}");
    }
    assert_eq!(r.doc.counts.alerts_enriched, 0);
    assert_eq!(
        w.entity_searches(),
        2,
        "each index answers its first search with 'no such index'; the rest are not made"
    );
}

/// A lookup that fails never holds an alert back: the batch is written without that index's
/// fields, the run warns and counts it, and the checkpoint moves.
#[tokio::test]
async fn a_failed_enrichment_lookup_writes_the_alerts_without_it_and_counts_it() {
    use crate::entity_enrichment::EnrichmentIndex;
    let cases: Vec<(Vec<Fault>, u64, bool)> = vec![
        // The risk index's first search fails: criticality still comes.
        (vec![Fault::Status(503)], 1, true),
        // Both indices fail.
        (vec![Fault::Timeout, Fault::Status(403)], 2, false),
    ];
    for (faults, failures, criticality) in cases {
        let w = World::new(minutes(20), 26, |_| {});
        let (hosts, _) = entity_names(minutes(20), 26);
        for host in &hosts {
            w.put_criticality("host.name", host, "medium_impact");
            w.put_risk("host", host, "Low", 10.0);
        }
        for fault in &faults {
            w.fake.fail_next(Op::EntitySearch, fault.clone());
        }
        let now = at(T0 + minutes(20));
        let r = w.run(RunPlan::scheduled(now)).await;
        assert!(r.error.is_none(), "{faults:?}: {:?}", r.error);
        assert_eq!(
            r.doc.status,
            crate::state::RunStatus::PartialFailure,
            "{faults:?}"
        );
        assert_eq!(r.doc.counts.enrichment_failures, failures, "{faults:?}");
        let risk = enrichment_index(EnrichmentIndex::RiskScore);
        assert!(
            r.doc
                .warnings
                .iter()
                .any(|m| m.contains(&format!("enrichment lookup in {risk} failed"))),
            "{:?}",
            r.doc.warnings
        );
        assert_eq!(
            w.shells(),
            w.expected_shells(now - Span::minutes(9), now),
            "{faults:?}: every alert is written"
        );
        assert_eq!(w.checkpoint().unwrap().last_success.to, now, "{faults:?}");
        let alerts = w.fake.docs(&w.alerts_index());
        for (id, alert) in &alerts {
            assert!(alert["host"].get("risk").is_none(), "{faults:?} {id}");
            assert_eq!(
                alert.get("host.asset.criticality").is_some(),
                criticality,
                "{faults:?} {id}"
            );
        }
        let enriched = if criticality { alerts.len() as u64 } else { 0 };
        assert_eq!(r.doc.counts.alerts_enriched, enriched, "{faults:?}");
    }
}

/// Enrichment is optional: a credential without `read` on an enrichment index does not stop
/// the run (the privilege check stops it for any other privilege); that index is skipped with
/// one warning, the other still enriches.
#[tokio::test]
async fn without_read_on_an_enrichment_index_its_fields_are_left_out() {
    use crate::entity_enrichment::EnrichmentIndex;
    let w = World::new(minutes(20), 27, |_| {});
    let (hosts, _) = entity_names(minutes(20), 27);
    for host in &hosts {
        w.put_criticality("host.name", host, "extreme_impact");
        w.put_risk("host", host, "Critical", 99.0);
    }
    let risk = enrichment_index(EnrichmentIndex::RiskScore);
    w.fake
        .lack_privileges(vec![crate::es::index_privilege_item("read", &risk)]);
    let now = at(T0 + minutes(20));
    let r = w.run(RunPlan::scheduled(now)).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.doc.status, crate::state::RunStatus::PartialFailure);
    assert_eq!(
        r.doc.warnings,
        vec![format!("alerts are written without enrichment from {risk}: the credential lacks `read` on it (grant it, or set alerts.enrichment = false; see docs/enrichment.md)")]
    );
    assert_eq!(w.shells(), w.expected_shells(now - Span::minutes(9), now));
    for (id, alert) in w.fake.docs(&w.alerts_index()) {
        assert!(alert["host"].get("risk").is_none(), "{id}");
        assert_eq!(
            alert["host.asset.criticality"],
            serde_json::json!("extreme_impact"),
            "{id}"
        );
    }
    assert_eq!(
        w.entity_searches(),
        2,
        "only the criticality index is searched (for hosts and users)"
    );
    assert_eq!(r.doc.counts.enrichment_failures, 0);
}

/// `alerts.enrichment = false`: no lookup, no privilege asked for it, alerts as built.
#[tokio::test]
async fn enrichment_can_be_turned_off() {
    let w = World::new(minutes(20), 28, |c| c.alerts.enrichment = false);
    let (hosts, _) = entity_names(minutes(20), 28);
    for host in &hosts {
        w.put_criticality("host.name", host, "high_impact");
    }
    assert!(required_privileges(&w.ctx.config, &w.rule)
        .optional_indices
        .is_empty());
    let r = w.run(RunPlan::scheduled(at(T0 + minutes(20)))).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(w.entity_searches(), 0);
    assert!(w.alert_count() > 0);
    for (id, alert) in w.fake.docs(&w.alerts_index()) {
        assert!(alert.get("host.asset.criticality").is_none(), "{id}");
    }
    assert_eq!(r.doc.counts.alerts_enriched, 0);
    // On, the two indices are asked about, as optional.
    let on = World::new(minutes(20), 28, |_| {});
    assert_eq!(
        required_privileges(&on.ctx.config, &on.rule).optional_indices,
        vec![(
            vec![
                "risk-score.risk-score-latest-default".to_owned(),
                ".asset-criticality.asset-criticality-default".to_owned()
            ],
            vec!["read"]
        )]
    );
}
