//! The sources as real clusters hold them, against a real Elasticsearch (run by `scripts/test`
//! on each pinned major): Elastic Defend and CrowdStrike FDR events in data streams that roll
//! over between runs and in the middle of a sequence. Alert ids hash each event's concrete
//! `_index`, its backing index, not the stream's name (Kibana's
//! `generate_building_block_ids.ts` and `build_alert_group_from_sequence.ts` take `_index` from
//! the hit, under `x-pack/solutions/security/plugins/security_solution/server/lib/detection_engine/rule_types/eql/`
//! in elastic/kibana), so deduplication holds across rollovers, building blocks name the right
//! backing index, and a backfill over the rolled-over data equals the scheduled runs. The tests
//! are ignored unless asked for (`--include-ignored`, as `scripts/test` does); run without a
//! node they fail.

mod common;
#[allow(dead_code)] // This file uses part of the job fixture.
#[path = "es_job/fixture.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use seqwatch::es::BulkOutcome;
use seqwatch::run::BackfillOptions;
use seqwatch::state::{RunStatus, StoredWindow};
use seqwatch::window::Window;

use common::is_backing_index_of;
use fixture::{
    all_ids, at_ms, install_sequence, minutes, run_at, JobFixture, Sensor, TruthSequence, RULE_UUID,
};

/// 2026-11-18T06:13:20Z, as in `es_job.rs`.
const T0: i64 = 1_795_000_000_000;

/// Two runs, a rollover, two more runs, another rollover and a last run over both streams:
///
/// - generation 1 holds two complete sequences (one per sensor) and the installs of two more
///   (one per sensor) whose children arrive after the rollover, in generation 2, with two
///   sequences wholly in generation 2;
/// - the first run alerts the two complete sequences, a second run over the same window
///   writes nothing, the run after the rollover alerts the four new sequences and skips the
///   two old ones before writing (no 409), and the run after the second rollover writes
///   nothing;
/// - every alert id is Kibana's formula over each event's backing index, the ids computed from
///   the stream's name are nowhere, and each building block's ancestor names its event's
///   backing index, the two halves of a split sequence naming two;
/// - a backfill over the same ticks, in chunks that cross the rollover, writes exactly the
///   alerts of the scheduled runs.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_across_rollovers_hash_the_backing_index_and_are_written_once() {
    let fx = JobFixture::new("ds-rollover").await;
    let config = fx.config();
    let rule = fx.rule(&config);
    let ctx = fx.ctx(&config, "datastreams-test");
    let t1 = T0 + minutes(60);

    // Generation 1.
    let (gen1_d_docs, gen1_d) = install_sequence(
        &fx,
        Sensor::Defend,
        "gen1-d",
        "host-gen1-d",
        t1 - 120_000,
        t1 - 118_000,
    );
    let (gen1_c_docs, gen1_c) = install_sequence(
        &fx,
        Sensor::CrowdStrike,
        "gen1-c",
        "host-gen1-c",
        t1 - 100_000,
        t1 - 95_000,
    );
    let (mid_d_docs, mid_d) = install_sequence(
        &fx,
        Sensor::Defend,
        "mid-d",
        "host-mid-d",
        t1 - 3_000,
        t1 + 4_000,
    );
    let (mid_c_docs, mid_c) = install_sequence(
        &fx,
        Sensor::CrowdStrike,
        "mid-c",
        "host-mid-c",
        t1 - 2_000,
        t1 + 3_000,
    );
    let first_half = fx
        .load(
            &[
                gen1_d_docs,
                gen1_c_docs,
                mid_d_docs[..1].to_vec(),
                mid_c_docs[..1].to_vec(),
            ]
            .concat(),
        )
        .await;
    let mut first_generation = Vec::new();
    for stream in [&fx.defend, &fx.crowdstrike] {
        let streams = fx.es.data_streams(stream).await.expect("resolving");
        assert_eq!(
            streams.len(),
            1,
            "the first write made {stream} a data stream"
        );
        assert_eq!(streams[0].name, *stream);
        assert_eq!(streams[0].backing_indices.len(), 1, "{streams:?}");
        assert!(is_backing_index_of(&streams[0].backing_indices[0], stream));
        first_generation.push(streams[0].backing_indices[0].clone());
    }

    let w1 = Window {
        from: at_ms(t1 - minutes(9)),
        to: at_ms(t1),
    };
    let first = run_at(&ctx, &rule, at_ms(t1)).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:#?}");
    assert_eq!(first.window, StoredWindow::from(w1));
    assert_eq!(first.counts.candidates, 6, "two sequences and two installs");
    assert_eq!(first.counts.alerts_created, 2);
    let again = run_at(&ctx, &rule, at_ms(t1)).await;
    assert_eq!(again.window, StoredWindow::from(w1));
    assert_eq!(
        (
            again.counts.alerts_created,
            again.counts.building_blocks_created
        ),
        (0, 0),
        "the second run writes nothing"
    );
    assert_eq!(again.counts.duplicates_skipped, 2);

    // The rollover, between runs and in the middle of the two split sequences.
    let second_generation = [
        fx.rollover(Sensor::Defend).await,
        fx.rollover(Sensor::CrowdStrike).await,
    ];
    let (gen2_d_docs, gen2_d) = install_sequence(
        &fx,
        Sensor::Defend,
        "gen2-d",
        "host-gen2-d",
        t1 + 60_000,
        t1 + 61_000,
    );
    let (gen2_c_docs, gen2_c) = install_sequence(
        &fx,
        Sensor::CrowdStrike,
        "gen2-c",
        "host-gen2-c",
        t1 + 90_000,
        t1 + 100_000,
    );
    let second_half = fx
        .load(
            &[
                mid_d_docs[1..].to_vec(),
                mid_c_docs[1..].to_vec(),
                gen2_d_docs,
                gen2_c_docs,
            ]
            .concat(),
        )
        .await;
    let placed = first_half.and(second_half);
    let by_stream: Vec<TruthSequence> = vec![
        gen1_d.clone(),
        gen1_c.clone(),
        mid_d.clone(),
        mid_c.clone(),
        gen2_d.clone(),
        gen2_c.clone(),
    ];
    let [gen1_d, gen1_c, mid_d, mid_c, gen2_d, gen2_c] =
        [gen1_d, gen1_c, mid_d, mid_c, gen2_d, gen2_c].map(|t| placed.place(t));
    for (seq, generations) in [
        (&gen1_d, [&first_generation[0], &first_generation[0]]),
        (&gen1_c, [&first_generation[1], &first_generation[1]]),
        (&mid_d, [&first_generation[0], &second_generation[0]]),
        (&mid_c, [&first_generation[1], &second_generation[1]]),
        (&gen2_d, [&second_generation[0], &second_generation[0]]),
        (&gen2_c, [&second_generation[1], &second_generation[1]]),
    ] {
        let went: Vec<&String> = seq.events.iter().map(|e| &e.index).collect();
        assert_eq!(went, generations, "{seq:?}");
    }
    for (stream, generations) in [
        (&fx.defend, [&first_generation[0], &second_generation[0]]),
        (
            &fx.crowdstrike,
            [&first_generation[1], &second_generation[1]],
        ),
    ] {
        let streams = fx.es.data_streams(stream).await.expect("resolving");
        assert_eq!(
            streams[0].backing_indices.iter().collect::<Vec<_>>(),
            generations,
            "oldest first, the write index last"
        );
    }

    let w2 = Window {
        from: at_ms(t1 - minutes(4)),
        to: at_ms(t1 + minutes(5)),
    };
    let second = run_at(&ctx, &rule, at_ms(t1 + minutes(5))).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{second:#?}");
    assert_eq!(second.window, StoredWindow::from(w2));
    assert_eq!(second.counts.candidates, 12, "both generations are read");
    assert_eq!(second.counts.sequences, 6);
    assert_eq!(
        second.counts.duplicates_skipped, 2,
        "the sequences of generation 1 are known by their ids"
    );
    assert_eq!(second.counts.alerts_created, 4);
    assert_eq!(second.counts.building_blocks_created, 8);
    assert_eq!(
        second.counts.write_conflicts, 0,
        "dedup happens before the write"
    );

    // A second rollover, with nothing new: the last run alerts nothing again.
    fx.rollover(Sensor::Defend).await;
    fx.rollover(Sensor::CrowdStrike).await;
    let third = run_at(&ctx, &rule, at_ms(t1 + minutes(10))).await;
    assert_eq!(third.status, RunStatus::Succeeded, "{third:#?}");
    assert_eq!(
        third.window,
        StoredWindow::from(Window {
            from: at_ms(t1 + minutes(1)),
            to: at_ms(t1 + minutes(10)),
        })
    );
    assert_eq!(third.counts.sequences, 2, "the two of generation 2");
    assert_eq!(
        (third.counts.alerts_created, third.counts.duplicates_skipped),
        (0, 2)
    );
    assert_eq!(third.counts.write_conflicts, 0);

    // The ids: Kibana's formula over the backing indices, none over the stream names.
    let every: Vec<&TruthSequence> = vec![&gen1_d, &gen1_c, &mid_d, &mid_c, &gen2_d, &gen2_c];
    let stored = fx.alerts_in(&fx.alerts).await;
    let stored_ids: BTreeSet<String> = stored.keys().cloned().collect();
    assert_eq!(stored_ids, all_ids(&every));
    let by_stream_ids = all_ids(&by_stream.iter().collect::<Vec<_>>());
    assert!(
        stored_ids.is_disjoint(&by_stream_ids),
        "an id was computed from a data stream's name"
    );

    // The ancestors name each event's backing index.
    for seq in &every {
        let shell_id = seq.shell_id();
        let shell = &stored[&shell_id];
        let blocks = seq.block_ids();
        assert_eq!(
            shell["kibana.alert.ancestors"],
            json!([
                {"id": seq.events[0].id, "type": "event", "index": seq.events[0].index, "depth": 0},
                {"id": blocks[0], "type": "signal", "index": "", "depth": 1, "rule": RULE_UUID},
                {"id": seq.events[1].id, "type": "event", "index": seq.events[1].index, "depth": 0},
                {"id": blocks[1], "type": "signal", "index": "", "depth": 1, "rule": RULE_UUID},
            ])
        );
        for (stage, (block_id, event)) in blocks.iter().zip(&seq.events).enumerate() {
            let block = &stored[block_id];
            assert_eq!(block["kibana.alert.group.id"], json!(shell_id));
            assert_eq!(block["kibana.alert.group.index"], json!(stage));
            assert_eq!(
                block["kibana.alert.ancestors"],
                json!([{"id": event.id, "type": "event", "index": event.index, "depth": 0}])
            );
        }
    }
    for seq in [&mid_d, &mid_c] {
        assert_ne!(
            seq.events[0].index, seq.events[1].index,
            "a sequence split by the rollover spans two backing indices"
        );
    }

    // A backfill over the ticks of the three runs, in chunks that cross the rollovers, into
    // its own alerts and state indices.
    let mut by_backfill = fx.config();
    by_backfill.alerts.index = format!("{}-backfill", fx.alerts);
    by_backfill.state.index = format!("{}-backfill", fx.state);
    let backfill_rule = fx.rule(&by_backfill);
    let report = seqwatch::run::backfill(
        &fx.ctx(&by_backfill, "datastreams-test"),
        &backfill_rule,
        at_ms(t1),
        at_ms(t1 + minutes(10)),
        BackfillOptions {
            parallel: 1,
            chunk: Duration::from_secs(4 * 60),
        },
    )
    .await
    .expect("backfill");
    assert_eq!(report.scheduled_runs, 3);
    assert!(report.chunks >= 2, "{report:?}");
    assert_eq!(report.failed_chunks, 0, "{:?}", report.errors);
    assert_eq!(report.counts.alerts_created, 6);
    let backfilled: BTreeSet<String> = fx
        .alerts_in(&by_backfill.alerts.index)
        .await
        .into_keys()
        .collect();
    assert_eq!(
        backfilled, stored_ids,
        "the scheduled runs' alerts, id for id"
    );
}

/// A data stream keeps `_id`s unique within a backing index only: after a rollover, a `create`
/// with the `_id` of a document in an older backing index is written, a second event. Alert
/// ids hash `_index` too, so the two never share an alert.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn an_id_created_again_after_a_rollover_is_a_second_event() {
    let fx = JobFixture::new("ds-id-again").await;
    let (docs, _) = install_sequence(&fx, Sensor::Defend, "again", "host-again", T0, T0 + 1_000);
    let before = fx.load(&docs[..1]).await;
    let duplicate = fx.es.bulk_create(&docs[..1]).await.expect("bulk");
    assert_eq!(
        duplicate[0].outcome,
        BulkOutcome::AlreadyExists,
        "within a backing index"
    );
    let second_generation = fx.rollover(Sensor::Defend).await;
    let after = fx.load(&docs[..1]).await;
    let id = &docs[0].id;
    assert_eq!(after.concrete_index(&fx.defend, id), second_generation);
    assert_ne!(
        before.concrete_index(&fx.defend, id),
        after.concrete_index(&fx.defend, id)
    );
    let hits = fx
        .es
        .search_docs(
            &fx.defend,
            json!({"ids": {"values": [id]}}),
            "@timestamp",
            10,
        )
        .await
        .expect("search");
    assert_eq!(hits.len(), 2, "{hits:?}");
}
