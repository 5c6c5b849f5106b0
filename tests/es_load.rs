//! Load and soak, CI-sized (`scripts/load` is the full-size run with 1M
//! candidates and 200 daemon runs): one window where every event is a candidate of the built-in
//! rule and the number of complete sequences is known exactly, and the real `seqwatch run`
//! binary on a 1-second cron over events arriving in real time, sampled for open file
//! descriptors and memory between runs. Each test has its own data streams and indices
//! (tests/es_job/fixture.rs), emptied and deleted at the end. The tests are ignored unless asked for (`--include-ignored`, as
//! `scripts/test` does); run without a node they fail.

mod common;
#[allow(dead_code)] // This file uses part of the job fixture.
#[path = "es_job/fixture.rs"]
mod fixture;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use seqwatch::es::BulkCreate;
use seqwatch::state::RunStatus;
use seqwatch::window::Window;

use fixture::{
    at_ms, expected_shells, run_at, JobFixture, ProcessStart, Sensor, TruthEvent, TruthSequence,
};

/// The rule's maxspan.
const MAXSPAN_MS: i64 = 10_000;

/// Events of a planted workload, and the sequences among them (naming the data streams until
/// placed).
struct Planted {
    events: Vec<BulkCreate>,
    truth: Vec<TruthSequence>,
}

/// Delay from a planted sequence's install to its child: 1..9 s, and exactly maxspan for every
/// 100th, which still matches: ES rejects only `(now - first) > maxspan`
/// (`x-pack/plugin/eql/src/main/java/org/elasticsearch/xpack/eql/execution/sequence/SequenceMatcher.java`,
/// `match`).
fn child_delay(i: usize) -> i64 {
    if i % 100 == 0 {
        MAXSPAN_MS
    } else {
        1_000 + (i % 9) as i64 * 1_000
    }
}

fn sensor_of(n: usize) -> Sensor {
    if n % 2 == 0 {
        Sensor::Defend
    } else {
        Sensor::CrowdStrike
    }
}

/// `total` events in `[start_ms, start_ms + length_ms]`, every one a candidate of the rule
/// (it passes a stage's filter and has its join keys), with exactly `sequences` complete
/// sequences: an `npm install` and, 1..10 s later, a `sh` it started. The other events rotate
/// over four kinds that complete nothing under ES's semantics (the same plan as `scripts/load`):
/// 0. an install no child follows;
/// 1. a child whose parent entity never ran;
/// 2. a second child of a planted sequence, 1 ms after the first, in the other index: the first
///    child consumed the pending sequence (`trimBefore` in ES's `SequenceMatcher.match`, via
///    `OrdinalGroup.trimBefore`), so the second finds nothing;
/// 3. a child of the kind-0 install three events earlier, maxspan + 1 ms after it.
fn plan(
    fx: &JobFixture,
    total: usize,
    sequences: usize,
    hosts: usize,
    start_ms: i64,
    length_ms: i64,
) -> Planted {
    let usable = length_ms - 12_000;
    assert!(
        total >= 2 * sequences && sequences > 0,
        "{total} events cannot hold {sequences} sequences"
    );
    let noise = total - 2 * sequences;
    let install = ["node", "/usr/bin/npm", "install"];
    let child = ["sh", "-c", "node install.js"];
    let at = |n: usize, of: usize| start_ms + 1_000 + (n as i64 * usable) / of as i64;
    let mut events = Vec::with_capacity(total);
    let mut truth = Vec::with_capacity(sequences);
    let mut push = |sensor: Sensor, id: String, start: ProcessStart<'_>| {
        events.push(BulkCreate::new(
            fx.index_of(sensor).to_owned(),
            id,
            start.source(),
        ));
    };
    for i in 0..sequences {
        let sensor = sensor_of(i);
        let host = format!("host-{}", i % hosts);
        let (parent_ms, child_ms) = (at(i, sequences), at(i, sequences) + child_delay(i));
        let (npm, bash, sh) = (format!("npm-{i}"), format!("bash-{i}"), format!("sh-{i}"));
        let (npm_id, sh_id) = (format!("seq-{i}-p"), format!("seq-{i}-c"));
        push(
            sensor,
            npm_id.clone(),
            ProcessStart {
                sensor,
                ts_ms: parent_ms,
                host: &host,
                name: "node",
                args: &install,
                entity_id: &npm,
                parent_name: Some("bash"),
                parent_entity_id: &bash,
            },
        );
        push(
            sensor,
            sh_id.clone(),
            ProcessStart {
                sensor,
                ts_ms: child_ms,
                host: &host,
                name: "sh",
                args: &child,
                entity_id: &sh,
                parent_name: Some("node"),
                parent_entity_id: &npm,
            },
        );
        let index = fx.index_of(sensor).to_owned();
        truth.push(TruthSequence {
            sensor,
            events: vec![
                TruthEvent {
                    index: index.clone(),
                    id: npm_id,
                    ts_ms: parent_ms,
                },
                TruthEvent {
                    index,
                    id: sh_id,
                    ts_ms: child_ms,
                },
            ],
        });
    }
    for j in 0..noise {
        let mut sensor = sensor_of(j);
        let mut host = format!("host-{}", j % hosts);
        let own = format!("noise-entity-{j}");
        let (ts_ms, name, args, parent_name, parent): (i64, &str, &[&str], &str, String) =
            match j % 4 {
                0 => (at(j, noise), "node", &install, "bash", format!("bash-n{j}")),
                1 => (at(j, noise), "sh", &child, "node", format!("ghost-{j}")),
                2 => {
                    let i = (j / 4) % sequences;
                    sensor = sensor_of(i + 1);
                    host = format!("host-{}", i % hosts);
                    let first_child = at(i, sequences) + child_delay(i);
                    (first_child + 1, "sh", &child, "node", format!("npm-{i}"))
                }
                _ => {
                    let lone = j - 3;
                    host = format!("host-{}", lone % hosts);
                    let late = at(lone, noise) + MAXSPAN_MS + 1;
                    (late, "sh", &child, "node", format!("noise-entity-{lone}"))
                }
            };
        push(
            sensor,
            format!("noise-{j}"),
            ProcessStart {
                sensor,
                ts_ms,
                host: &host,
                name,
                args,
                entity_id: &own,
                parent_name: Some(parent_name),
                parent_entity_id: &parent,
            },
        );
    }
    Planted { events, truth }
}

/// Bulk-loads the planted events and returns their truth, placed in the backing indices the
/// events went to.
async fn load(fx: &JobFixture, planted: Planted) -> Vec<TruthSequence> {
    fx.load(&planted.events).await.place_all(planted.truth)
}

/// 50,000 candidates with 1,200 sequences in one 9-minute window. `once` fetches and correlates
/// all of them, finds exactly 1,200 sequences and writes the latest 100 (ES `size` is a tail:
/// `TumblingWindow` with `result_position` tail, the default Kibana keeps); a backfill over the
/// window (no per-run cap) then writes exactly the planted 1,200, id for id, none twice, in
/// several write batches (the job writes 500 sequences per `_bulk`).
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_candidates_yields_exactly_the_planted_sequences() {
    let fx = JobFixture::new("load-window").await;
    const TOTAL: usize = 50_000;
    const SEQUENCES: usize = 1_200;
    // 2026-01-05T10:00:00Z, a fixed 9-minute window.
    let start_ms = 1_767_607_200_000;
    let length_ms = 9 * 60_000;
    let planted = plan(&fx, TOTAL, SEQUENCES, 50, start_ms, length_ms);
    assert_eq!(planted.events.len(), TOTAL);
    let truth = load(&fx, planted).await;

    let mut config = fx.config();
    // The one query, so that every one of the 50,000 candidates is fetched and correlated (the
    // two-step fetch would leave out the noise no stage-1 key admits; tests/es_fetch.rs).
    config.elasticsearch.two_step_fetch = false;
    let page_size = config.elasticsearch.page_size as usize;
    let rule = fx.rule(&config);
    let ctx = fx.ctx(&config, "load-test");
    let (from, to) = (at_ms(start_ms), at_ms(start_ms + length_ms));
    let run = run_at(&ctx, &rule, to).await;
    // Reaching max_signals is Kibana's partial failure, with its warning, and nothing else.
    assert_eq!(run.status, RunStatus::PartialFailure, "{run:#?}");
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(run.warnings[0].starts_with("This rule reached the maximum alert limit"));
    let c = &run.counts;
    assert_eq!(
        (c.events_fetched, c.candidates, c.bad_events),
        (TOTAL as u64, TOTAL as u64, 0)
    );
    assert_eq!(
        c.pages,
        TOTAL.div_ceil(page_size) as u64,
        "{page_size} hits a page"
    );
    assert_eq!(
        (c.sequences, c.sequences_dropped),
        (SEQUENCES as u64, 0),
        "exactly the planted sequences"
    );
    assert_eq!(
        (c.alerts_created, c.alerts_truncated),
        (100, SEQUENCES as u64 - 100)
    );

    let window = Window { from, to };
    let all = expected_shells(&truth, &window);
    assert_eq!(all.len(), SEQUENCES, "every planted sequence is inside");
    let mut by_end: Vec<&TruthSequence> = truth.iter().collect();
    by_end.sort_by_key(|t| std::cmp::Reverse(t.last_ms()));
    assert_ne!(
        by_end[99].last_ms(),
        by_end[100].last_ms(),
        "the 100th and 101st latest must not tie (then only _shard_doc decides)"
    );
    let latest: BTreeSet<String> = by_end[..100].iter().map(|t| t.shell_id()).collect();
    assert_eq!(fx.shells_in(&fx.alerts).await, latest);

    let report = seqwatch::run::backfill(&ctx, &rule, from, to, Default::default())
        .await
        .expect("backfill");
    assert_eq!(report.failed_chunks, 0, "{:?}", report.errors);
    assert_eq!(
        report.counts.alerts_created + report.counts.duplicates_skipped,
        SEQUENCES as u64
    );
    assert_eq!(report.counts.write_conflicts, 0);
    assert_eq!(fx.shells_in(&fx.alerts).await, all);
    // `alerts_in` fails on an alert uuid stored twice.
    assert_eq!(fx.alerts_in(&fx.alerts).await.len(), 3 * SEQUENCES);
}

/// A free local port for the daemon's HTTP endpoints.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `seqwatch_runs_total` summed over statuses, from the daemon's `/metrics`; `None` while it
/// does not answer.
fn runs_so_far(port: u16) -> Option<u64> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(
        answer
            .lines()
            .filter(|l| l.starts_with("seqwatch_runs_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

/// Resident memory (MiB) and open file descriptors of process `pid`.
fn rss_and_fds(pid: u32) -> (f64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count();
    (rss_kb / 1024.0, fds)
}

/// Kills the daemon if the test ends before stopping it.
struct DaemonProcess(Child);

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The `seqwatch run` binary on a 1-second cron (a 30 s lookback: interval + maxspan fits)
/// over events that keep arriving, so every run searches, deduplicates the overlap and writes
/// the sequences completed since the last. After runs 5, 10, 15 and 20 the open descriptors
/// must not grow by more than 4 (pooled keep-alive connections to Elasticsearch come and go; a
/// leak grows by one or more per run, 15+ here) and resident memory by more than 8 MiB (allocator
/// arenas and a run's page buffers move it by a few MiB; a leak of half a MiB a run fails, smaller
/// ones are for the 200-run soak of `scripts/load`). Every run
/// succeeds, each sequence of the covered time is alerted exactly once, the process exits 0 on
/// SIGTERM.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_daemon_runs_keep_descriptors_and_memory_flat() {
    let fx = JobFixture::new("load-daemon").await;
    const RUNS: u64 = 20;
    let now_ms = Utc::now().timestamp_millis();
    // From a minute ago to well past the last run; two sequences and 20 other candidates a second.
    let (start_ms, length_ms) = (now_ms - 60_000, 240_000);
    let sequences = (2 * length_ms / 1_000) as usize;
    let total = 2 * sequences + (20 * length_ms / 1_000) as usize;
    let truth = load(&fx, plan(&fx, total, sequences, 20, start_ms, length_ms)).await;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let config_file = fx.binary_config(
        dir.path(),
        &fx.alerts,
        &format!(
            "[schedule]\ninterval = \"1s\"\ncron = \"*/1 * * * * *\"\nlookback = \"30s\"\n\
             [daemon]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("the daemon's log");
    let mut daemon = DaemonProcess(
        Command::new(env!("CARGO_BIN_EXE_seqwatch"))
            .arg("--config")
            .arg(&config_file)
            .arg("run")
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting seqwatch run"),
    );
    let pid = daemon.0.id();
    let log_text = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();

    let started = Instant::now();
    let mut samples = Vec::new();
    for mark in [5, 10, 15, RUNS] {
        loop {
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!(
                    "the daemon exited ({status}) before run {mark}:\n{}",
                    log_text()
                );
            }
            if runs_so_far(port).is_some_and(|n| n >= mark) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(150),
                "fewer than {mark} runs in {:?}:\n{}",
                started.elapsed(),
                log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples.push((mark, rss_and_fds(pid)));
    }
    let _ = writeln!(
        std::io::stderr(),
        "daemon samples (run, (RSS MiB, fds)): {samples:?}"
    );
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().expect("waiting for the daemon") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit {status}:\n{}", log_text());

    let (first_fds, last_fds) = (samples[0].1 .1, samples[3].1 .1);
    let max_fds = samples.iter().map(|s| s.1 .1).max().unwrap_or(0);
    assert!(
        max_fds <= first_fds + 4,
        "open descriptors grew: {samples:?}"
    );
    assert!(last_fds <= first_fds + 4, "{samples:?}");
    let (first_rss, last_rss) = (samples[0].1 .0, samples[3].1 .0);
    assert!(
        last_rss <= first_rss + 8.0,
        "resident memory grew: {samples:?}"
    );

    let runs = fx.run_docs(&fx.state).await;
    assert!(
        runs.len() as u64 >= RUNS,
        "{} run documents:\n{}",
        runs.len(),
        log_text()
    );
    for r in &runs {
        assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
        assert_eq!(r.mode, "scheduled");
    }
    assert_eq!(
        runs.iter().map(|r| r.counts.write_conflicts).sum::<u64>(),
        0
    );
    let writers = runs.iter().filter(|r| r.counts.alerts_created > 0).count();
    assert!(
        writers * 2 >= runs.len(),
        "most runs write alerts: {writers} of {}",
        runs.len()
    );
    // Consecutive windows overlap by lookback - interval = 29 s, more than maxspan, so a
    // sequence is inside some run's window exactly when it is inside their union.
    let covered = Window {
        from: runs.iter().map(|r| r.window.from).min().expect("runs"),
        to: runs.iter().map(|r| r.window.to).max().expect("runs"),
    };
    let expected = expected_shells(&truth, &covered);
    assert!(
        expected.len() as u64 >= RUNS,
        "{} sequences",
        expected.len()
    );
    assert_eq!(fx.shells_in(&fx.alerts).await, expected);
    assert_eq!(
        runs.iter().map(|r| r.counts.alerts_created).sum::<u64>(),
        expected.len() as u64
    );
    // `alerts_in` fails on an alert uuid stored twice.
    assert_eq!(fx.alerts_in(&fx.alerts).await.len(), 3 * expected.len());
}
