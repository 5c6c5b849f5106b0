//! Tests of `seqwatch generate`: determinism, rate, time order, document shapes, and the truth
//! file checked against an independent brute-force evaluation of the rule over the generated
//! JSON (it never looks at the generator's internals or planted list).

mod shared_data;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use clap::Parser;
use serde_json::Value;

use seqwatch::generate::{
    write_streams, GenerateSpec, GeneratedHit, Generator, TruthRecord, DEFEND_INDEX, FDR_INDEX,
};

const FROM_MS: i64 = 1_763_978_400_000; // 2025-11-24T10:00:00Z

fn spec(seed: u64, minutes: i64) -> GenerateSpec {
    GenerateSpec {
        hosts: 10,
        rate: 20.0,
        from_ms: FROM_MS,
        to_ms: FROM_MS + minutes * 60_000,
        seed,
        installs_per_host_hour: 30.0,
        script_rate: 0.6,
        malicious_rate: 0.3,
    }
}

fn run(spec: GenerateSpec) -> (Vec<u8>, Vec<u8>, seqwatch::generate::Summary) {
    let mut g = Generator::new(spec).expect("valid spec");
    let mut events = Vec::new();
    let mut truth = Vec::new();
    write_streams(&mut g, &mut events, Some(&mut truth)).expect("write to memory");
    (events, truth, g.summary().clone())
}

struct Doc {
    index: String,
    id: String,
    ts: i64,
    src: Value,
}

fn parse_events(bytes: &[u8]) -> Vec<Doc> {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            let ts_text = v["_source"]["@timestamp"]
                .as_str()
                .expect("@timestamp string");
            let ts = chrono::DateTime::parse_from_rfc3339(ts_text)
                .expect("RFC 3339")
                .timestamp_millis();
            Doc {
                index: v["_index"].as_str().expect("_index").to_string(),
                id: v["_id"].as_str().expect("_id").to_string(),
                ts,
                src: v["_source"].clone(),
            }
        })
        .collect()
}

fn parse_truth(bytes: &[u8]) -> Vec<TruthRecord> {
    std::str::from_utf8(bytes)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("truth line parses"))
        .collect()
}

/// Looks up a dotted path through nested objects.
fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

/// Term-query semantics: true if the field (or any element of an array field) equals `want`
/// exactly and case-sensitively (ES `==` on keyword; eql-syntax.md "Multi-valued fields").
fn any_eq(v: &Value, path: &str, want: &str) -> bool {
    match get(v, path) {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|x| x.as_str() == Some(want)),
        _ => false,
    }
}

/// A join key value; a missing or null key drops the event (ES optimizer
/// `AddMandatoryJoinKeyFilter`, x-pack/plugin/eql/.../optimizer/Optimizer.java).
fn key(v: &Value, path: &str) -> Option<String> {
    match get(v, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            assert!(
                items.len() <= 1,
                "multi-valued join key {path} is not generated"
            );
            items.first().and_then(|x| x.as_str()).map(str::to_string)
        }
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Conditions shared by both stages of rule v2 (`process where` adds event.category == "process").
fn common(v: &Value) -> bool {
    any_eq(v, "event.category", "process")
        && any_eq(v, "host.os.type", "linux")
        && any_eq(v, "event.type", "start")
        && (any_eq(v, "event.action", "exec") || any_eq(v, "event.action", "ProcessRollup2"))
}

fn stage0_key(v: &Value) -> Option<(String, String)> {
    if common(v) && any_eq(v, "process.name", "node") && any_eq(v, "process.args", "install") {
        Some((key(v, "host.id")?, key(v, "process.entity_id")?))
    } else {
        None
    }
}

fn stage1_key(v: &Value) -> Option<(String, String)> {
    if common(v) && any_eq(v, "process.parent.name", "node") {
        Some((key(v, "host.id")?, key(v, "process.parent.entity_id")?))
    } else {
        None
    }
}

/// The rule evaluated directly over the documents, as ES does it:
/// - a stage-1 hit takes the *latest* pending stage-0 with the same key whose ordinal is
///   strictly lower, and removes it and every older one (`OrdinalGroup.trimBefore`,
///   x-pack/plugin/eql/.../execution/sequence/OrdinalGroup.java);
/// - the maxspan check comes after that removal and rejects only `delta > 10s`
///   (`SequenceMatcher.match` / `exceedsMaxSpan`, .../execution/sequence/SequenceMatcher.java);
/// - completed sequences are ordered by their last event (`Sequence.compareTo`).
///
/// Ordinal = (@timestamp ms, position in the stream); the position stands in for `_shard_doc`,
/// and `no_equal_ms_ties` below proves it never decides anything.
fn brute_force(docs: &[Doc]) -> Vec<(Vec<String>, usize, usize)> {
    let mut pending: HashMap<(String, String), Vec<usize>> = HashMap::new();
    let mut completed = Vec::new();
    for (pos, d) in docs.iter().enumerate() {
        if let Some(k) = stage1_key(&d.src) {
            if let Some(list) = pending.get_mut(&k) {
                let ord = (d.ts, pos);
                if let Some(i) = list.iter().rposition(|&p0| (docs[p0].ts, p0) < ord) {
                    let p0 = list[i];
                    list.drain(..=i);
                    if d.ts - docs[p0].ts <= 10_000 {
                        completed.push((vec![k.0.clone(), k.1.clone()], p0, pos));
                    }
                }
            }
        }
        if let Some(k) = stage0_key(&d.src) {
            pending.entry(k).or_default().push(pos);
        }
    }
    completed
}

/// No stage-0 and stage-1 candidate with the same key share a millisecond, so ES's
/// `_shard_doc` tie-break (ES orders equal timestamps by `_shard_doc`, shard then doc order,
/// when no tiebreaker field is set, as for this rule: `Ordinal.compareTo`) can never change
/// the result.
fn assert_no_equal_ms_ties(docs: &[Doc]) {
    let mut s0: HashMap<(String, String), HashSet<i64>> = HashMap::new();
    for d in docs {
        if let Some(k) = stage0_key(&d.src) {
            s0.entry(k).or_default().insert(d.ts);
        }
    }
    for d in docs {
        if let Some(k) = stage1_key(&d.src) {
            let tie = s0.get(&k).is_some_and(|set| set.contains(&d.ts));
            assert!(
                !tie,
                "stage-1 {} ties a stage-0 with key {k:?} at {}",
                d.id, d.ts
            );
        }
    }
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
    let (a_ev, a_tr, _) = run(spec(42, 10));
    let (b_ev, b_tr, _) = run(spec(42, 10));
    assert!(!a_ev.is_empty() && !a_tr.is_empty());
    assert!(
        a_ev == b_ev,
        "events differ between two runs with the same seed"
    );
    assert!(
        a_tr == b_tr,
        "truth differs between two runs with the same seed"
    );
    let (c_ev, c_tr, _) = run(spec(43, 10));
    assert!(
        a_ev != c_ev && a_tr != c_tr,
        "a different seed must give a different stream"
    );
}

#[test]
fn cli_writes_the_same_files_twice_and_fails_clearly_without_a_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut outputs = Vec::new();
    for round in 0..2 {
        let out = dir.path().join(format!("ev{round}.ndjson"));
        let truth = dir.path().join(format!("truth{round}.ndjson"));
        let cli = seqwatch::cli::Cli::parse_from([
            "seqwatch",
            "generate",
            "--hosts",
            "5",
            "--rate",
            "15",
            "--from",
            "2025-11-24T10:00:00Z",
            "--duration",
            "5m",
            "--seed",
            "11",
            "--installs-per-host-hour",
            "60",
            "--out",
            out.to_str().expect("utf-8 path"),
            "--truth",
            truth.to_str().expect("utf-8 path"),
        ]);
        let code = seqwatch::app::main(cli).expect("generate succeeds");
        assert_eq!(code, std::process::ExitCode::SUCCESS);
        outputs.push((
            std::fs::read(&out).expect("events"),
            std::fs::read(&truth).expect("truth"),
        ));
    }
    assert!(!outputs[0].0.is_empty());
    assert!(
        outputs[0] == outputs[1],
        "CLI output must be byte-identical for the same arguments"
    );
    let docs = parse_events(&outputs[0].0);
    assert!(docs
        .iter()
        .all(|d| d.ts >= FROM_MS && d.ts < FROM_MS + 5 * 60_000));

    // `--load` against a node that is not there fails clearly (loading itself is tested
    // against a real node in tests/es_generate.rs).
    let cli = seqwatch::cli::Cli::parse_from([
        "seqwatch",
        "--es-url",
        "http://127.0.0.1:1",
        "generate",
        "--load",
        "--duration",
        "1m",
    ]);
    let err = seqwatch::app::main(cli).expect_err("nothing listens on port 1");
    assert!(format!("{err:#}").contains("127.0.0.1:1"), "{err:#}");

    let cli = seqwatch::cli::Cli::parse_from(["seqwatch", "generate", "--duration", "9 parsecs"]);
    let err = seqwatch::app::main(cli).expect_err("bad duration");
    assert!(err.to_string().contains("--duration"), "{err}");
}

#[test]
fn background_volume_is_near_the_requested_rate() {
    let mut s = spec(5, 40);
    s.rate = 40.0;
    s.installs_per_host_hour = 0.0;
    let mut g = Generator::new(s.clone()).expect("valid");
    let n = g.by_ref().count() as f64;
    let want = s.rate * 40.0 * 60.0;
    let ratio = n / want;
    eprintln!("background events: {n} for {want} requested (ratio {ratio:.3})");
    assert!(
        (0.95..=1.05).contains(&ratio),
        "got {n} events, wanted about {want}"
    );
    assert!(g.summary().install_trees.is_empty());
    assert!(
        g.summary().planted.is_empty(),
        "noise alone must plant no expected sequence"
    );

    // Install trees add on top of the background, at about the requested rate per host-hour.
    let mut s2 = spec(5, 60);
    s2.installs_per_host_hour = 20.0;
    let mut g2 = Generator::new(s2).expect("valid");
    g2.by_ref().for_each(drop);
    let trees: u64 = g2.summary().install_trees.values().sum();
    assert!(
        (150..=250).contains(&trees),
        "10 hosts x 20/h x 1 h gave {trees} trees"
    );
}

#[test]
fn events_are_in_time_order_inside_the_range_with_rising_sequences() {
    let s = spec(8, 15);
    let hits: Vec<GeneratedHit> = Generator::new(s.clone()).expect("valid").collect();
    assert!(hits.len() > 10_000);
    let mut last = i64::MIN;
    let mut seq_by_host: HashMap<String, i64> = HashMap::new();
    for h in &hits {
        assert!(h.timestamp_ms >= last, "out of order at {}", h.id);
        last = h.timestamp_ms;
        assert!(
            h.timestamp_ms >= s.from_ms && h.timestamp_ms < s.to_ms,
            "{} outside range",
            h.id
        );
        let v = h.source_value().expect("source is JSON");
        let ts = v["@timestamp"].as_str().expect("@timestamp");
        assert_eq!(ts.len(), 24, "millisecond precision with Z: {ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(ts)
                .expect("RFC 3339")
                .timestamp_millis(),
            h.timestamp_ms
        );
        if h.index == DEFEND_INDEX {
            let host = v["host"]["id"].as_str().expect("host.id").to_string();
            let seq = v["event"]["sequence"]
                .as_i64()
                .expect("event.sequence is a long");
            if let Some(prev) = seq_by_host.insert(host, seq) {
                assert!(seq > prev, "event.sequence must rise per host");
            }
        }
    }
}

#[test]
fn both_document_kinds_have_the_expected_shape() {
    let (ev, _, summary) = run(spec(3, 20));
    let docs = parse_events(&ev);
    assert!(summary.events_per_index.contains_key(DEFEND_INDEX));
    assert!(summary.events_per_index.contains_key(FDR_INDEX));
    let mut actions: HashSet<String> = HashSet::new();
    let mut hosts: HashMap<String, (String, String)> = HashMap::new();
    for d in &docs {
        let v = &d.src;
        let action = v["event"]["action"]
            .as_str()
            .expect("event.action")
            .to_string();
        actions.insert(action.clone());
        assert_eq!(v["event"]["category"], serde_json::json!(["process"]));
        assert_eq!(v["event"]["kind"], "event");
        let host_id = v["host"]["id"].as_str().expect("host.id").to_string();
        let host_name = v["host"]["name"].as_str().expect("host.name").to_string();
        // A host is reported by exactly one sensor under one name.
        let prev = hosts.insert(host_id.clone(), (d.index.clone(), host_name.clone()));
        assert!(
            prev.is_none_or(|p| p == (d.index.clone(), host_name)),
            "host {host_id} changed"
        );
        let start = v["event"]["type"] == serde_json::json!(["start"]);
        if d.index == DEFEND_INDEX {
            assert_eq!(d.id.len(), 20);
            assert_eq!(v["event"]["dataset"], "endpoint.events.process");
            assert_eq!(v["event"]["module"], "endpoint");
            assert_eq!(v["agent"]["type"], "endpoint");
            assert_eq!(v["data_stream"]["dataset"], "endpoint.events.process");
            assert!(v["ecs"]["version"].is_string());
            assert!(v["event"]["sequence"].is_i64());
            assert!(
                ["fork", "exec", "end"].contains(&action.as_str()),
                "{action}"
            );
            assert_eq!(start, action != "end");
            for f in [
                "os.type",
                "os.family",
                "os.name",
                "os.kernel",
                "os.platform",
                "architecture",
                "hostname",
            ] {
                assert!(
                    get(v, &format!("host.{f}")).is_some_and(Value::is_string),
                    "host.{f}"
                );
            }
            let p = &v["process"];
            let args = p["args"].as_array().expect("process.args array");
            assert_eq!(p["args_count"].as_u64(), Some(args.len() as u64));
            let joined: Vec<&str> = args
                .iter()
                .map(|a| a.as_str().expect("string arg"))
                .collect();
            assert_eq!(p["command_line"].as_str(), Some(joined.join(" ").as_str()));
            assert!(p["pid"].is_u64() && p["parent"]["pid"].is_u64());
            for f in [
                "name",
                "executable",
                "entity_id",
                "working_directory",
                "parent.name",
                "parent.entity_id",
                "parent.executable",
            ] {
                assert!(get(p, f).is_some_and(Value::is_string), "process.{f}");
            }
            assert!(p["Ext"]["ancestry"].is_array());
            assert_eq!(
                p["Ext"]["ancestry"][0], p["parent"]["entity_id"],
                "ancestry starts at the parent"
            );
            // entity_id = base64("<agent.id>-<pid>-<seconds since 1601>.<fraction>").
            let decoded = decode_b64(p["entity_id"].as_str().expect("entity_id"));
            let agent = v["agent"]["id"].as_str().expect("agent.id");
            let rest = decoded
                .strip_prefix(&format!("{agent}-"))
                .expect("entity_id starts with agent.id");
            let (pid, start_secs) = rest.split_once('-').expect("pid-start");
            assert_eq!(pid.parse::<u64>().ok(), p["pid"].as_u64());
            let (secs, frac) = start_secs.split_once('.').expect("fractional seconds");
            assert_eq!(frac.len(), 9);
            let secs: i64 = secs.parse().expect("seconds");
            assert!(
                (secs - 11_644_473_600) * 1000 <= d.ts,
                "start is before the event"
            );
            if action == "exec" {
                assert!(
                    p["previous"][0]["executable"].is_string(),
                    "exec carries process.previous"
                );
            }
            if action == "end" {
                assert!(p["exit_code"].is_i64() && p["end"].is_string());
            }
        } else {
            assert_eq!(d.index, FDR_INDEX);
            assert_eq!(v["event"]["dataset"], "crowdstrike.fdr");
            assert_eq!(v["event"]["module"], "crowdstrike");
            assert_eq!(v["observer"]["vendor"], "crowdstrike");
            assert_eq!(v["data_stream"]["dataset"], "crowdstrike.fdr");
            assert_eq!(v["host"]["os"]["type"], "linux");
            assert!(v["host"]["os"]["platform"].is_string());
            assert!(
                host_id.len() == 32 && host_id.bytes().all(|b| b.is_ascii_hexdigit()),
                "aid"
            );
            let id = v["event"]["id"].as_str().expect("event.id");
            let parts: Vec<&str> = id.split('|').collect();
            assert_eq!(parts.len(), 3, "event.id is id|aid|cid");
            assert_eq!(parts[1], host_id);
            assert_eq!(
                parts[2],
                v["crowdstrike"]["cid"].as_str().expect("crowdstrike.cid")
            );
            assert!([
                "ProcessRollup2",
                "SyntheticProcessRollup2",
                "TerminateProcess"
            ]
            .contains(&action.as_str()));
            assert_eq!(start, action != "TerminateProcess");
            let p = &v["process"];
            let eid = p["entity_id"].as_str().expect("entity_id");
            assert!(
                eid.bytes().all(|b| b.is_ascii_digit()),
                "TargetProcessId is decimal"
            );
            if start {
                let line = p["command_line"].as_str().expect("command_line");
                let args = p["args"].as_array().expect("args");
                assert_eq!(p["args_count"].as_u64(), Some(args.len() as u64));
                // Single quotes survive the Windows-style split: they are no quote
                // characters under `CommandLineToArgvW` rules.
                if line.contains(" -c '") {
                    assert!(
                        args.iter()
                            .any(|a| a.as_str().is_some_and(|s| s.starts_with('\''))),
                        "{line}"
                    );
                }
                let exe = p["executable"].as_str().expect("executable");
                assert_eq!(
                    p["name"].as_str(),
                    exe.rsplit('/').next(),
                    "name is the basename"
                );
                assert!(p["parent"]["entity_id"].is_string());
                assert!(v["user"]["id"].is_string() && v["user"]["name"].is_string());
            }
        }
    }
    for a in [
        "fork",
        "exec",
        "end",
        "ProcessRollup2",
        "SyntheticProcessRollup2",
        "TerminateProcess",
    ] {
        assert!(actions.contains(a), "no {a} events");
    }
    let fdr_hosts = hosts.values().filter(|(i, _)| i == FDR_INDEX).count();
    assert_eq!(hosts.len(), 10);
    assert_eq!(
        fdr_hosts, 3,
        "the 70/30 mix gives 3 CrowdStrike hosts out of 10"
    );
    // Defend's fork of `node npm install` keeps the npm image: name node, args with install,
    // parent node — every stage condition except the action. It must exist (and not match).
    assert!(docs.iter().any(|d| any_eq(&d.src, "event.action", "fork")
        && any_eq(&d.src, "process.name", "node")
        && any_eq(&d.src, "process.args", "install")
        && any_eq(&d.src, "process.parent.name", "node")));
}

fn decode_b64(s: &str) -> String {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    String::from_utf8(BASE64_STANDARD.decode(s).expect("standard base64")).expect("utf-8")
}

#[test]
fn same_process_keeps_its_entity_id_from_fork_to_exec() {
    let (ev, _, _) = run(spec(21, 5));
    let docs = parse_events(&ev);
    let mut fork_eid: HashMap<(String, u64), String> = HashMap::new();
    let mut checked = 0;
    for d in docs.iter().filter(|d| d.index == DEFEND_INDEX) {
        let host = d.src["host"]["id"].as_str().expect("host.id").to_string();
        let pid = d.src["process"]["pid"].as_u64().expect("pid");
        let eid = d.src["process"]["entity_id"]
            .as_str()
            .expect("eid")
            .to_string();
        match d.src["event"]["action"].as_str() {
            Some("fork") => {
                fork_eid.insert((host, pid), eid);
            }
            Some("exec") => {
                if let Some(f) = fork_eid.get(&(host, pid)) {
                    assert_eq!(f, &eid, "exec of pid {pid} must keep the fork's entity_id");
                    checked += 1;
                }
            }
            _ => {}
        }
    }
    assert!(checked > 1_000, "only {checked} fork/exec pairs");
}

#[test]
fn truth_matches_a_brute_force_run_of_the_rule() {
    let mut s = spec(77, 60);
    s.rate = 10.0;
    s.installs_per_host_hour = 100.0;
    s.script_rate = 0.9;
    s.malicious_rate = 0.3;
    let (ev, tr, summary) = run(s);
    let docs = parse_events(&ev);
    let truth = parse_truth(&tr);
    eprintln!("{summary}");
    assert_no_equal_ms_ties(&docs);

    let found = brute_force(&docs);
    let expected: Vec<&TruthRecord> = truth.iter().filter(|r| r.expected).collect();
    assert!(
        expected.len() > 300,
        "too few planted sequences: {}",
        expected.len()
    );
    let found_view: Vec<(Vec<String>, [&str; 2])> = found
        .iter()
        .map(|(k, a, b)| (k.clone(), [docs[*a].id.as_str(), docs[*b].id.as_str()]))
        .collect();
    let truth_view: Vec<(Vec<String>, [&str; 2])> = expected
        .iter()
        .map(|r| {
            assert_eq!(r.events.len(), 2);
            (
                r.join_keys.clone(),
                [r.events[0].id.as_str(), r.events[1].id.as_str()],
            )
        })
        .collect();
    if found_view != truth_view {
        let f: HashSet<_> = found_view.iter().collect();
        let t: HashSet<_> = truth_view.iter().collect();
        let extra: Vec<_> = f.difference(&t).take(5).collect();
        let missing: Vec<_> = t.difference(&f).take(5).collect();
        panic!(
            "truth ({}) and brute force ({}) disagree; found but not in truth: {extra:?}; in truth but not found: {missing:?}",
            truth_view.len(),
            found_view.len()
        );
    }

    let by_id: HashMap<&str, &Doc> = docs.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut notes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &expected {
        *kinds.entry(r.kind.as_str()).or_default() += 1;
        if let Some(n) = &r.note {
            *notes.entry(n.as_str()).or_default() += 1;
        }
        let (a, b) = (
            by_id[r.events[0].id.as_str()],
            by_id[r.events[1].id.as_str()],
        );
        assert_eq!(Some(b.ts - a.ts), r.delay_ms);
        assert_eq!(r.events[0].index, a.index);
        assert_eq!(
            r.join_keys[0],
            a.src["host"]["id"].as_str().expect("host.id")
        );
        assert_eq!(r.host, a.src["host"]["name"].as_str().expect("host.name"));
    }
    for k in ["benign", "shai-hulud-1", "shai-hulud-2"] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 5,
            "kind {k}: {kinds:?}"
        );
    }
    assert!(
        expected.iter().any(|r| r.delay_ms == Some(10_000)),
        "the inclusive maxspan boundary (exactly 10.000 s) must be planted"
    );
    assert!(
        notes.keys().any(|n| n.starts_with("husky")),
        "nested husky match missing: {notes:?}"
    );
    // On FDR one document is stage 2 of the outer npm and stage 1 of the nested one.
    let lasts: HashSet<&str> = expected.iter().map(|r| r.events[1].id.as_str()).collect();
    assert!(
        expected
            .iter()
            .any(|r| lasts.contains(r.events[0].id.as_str()) && r.events[0].index == FDR_INDEX),
        "no event plays both roles"
    );

    // Near-misses: every kind is present, and each fails the rule for the reason it gives.
    let first_events: HashSet<usize> = found.iter().map(|(_, a, _)| *a).collect();
    let pos: HashMap<&str, usize> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in truth.iter().filter(|r| !r.expected) {
        let code = r.near_miss.as_deref().expect("near_miss code");
        assert!(
            r.why.as_deref().is_some_and(|w| !w.is_empty()),
            "near-miss without why"
        );
        *codes.entry(code).or_default() += 1;
        let s0 = by_id[r.events[0].id.as_str()];
        assert!(
            !first_events.contains(&pos[r.events[0].id.as_str()]),
            "near-miss {code} matched"
        );
        let child = r.events.get(1).map(|e| by_id[e.id.as_str()]);
        match code {
            "case" | "synthetic-parent" | "macos" | "no-install-arg" => {
                assert!(stage0_key(&s0.src).is_none(), "{code}: stage 1 must fail")
            }
            "synthetic-child" | "no-parent-name" | "fork-only" => {
                assert!(stage0_key(&s0.src).is_some(), "{code}: stage 1 holds");
                assert!(
                    stage1_key(&child.expect("child").src).is_none(),
                    "{code}: stage 2 must fail"
                );
            }
            "late" => {
                let c = child.expect("child");
                assert!(
                    c.ts - s0.ts > 10_000,
                    "late child only {} ms after",
                    c.ts - s0.ts
                );
            }
            "ignore-scripts" => assert_eq!(r.events.len(), 1),
            other => panic!("unknown near-miss code {other}"),
        }
    }
    for c in [
        "case",
        "late",
        "ignore-scripts",
        "synthetic-parent",
        "synthetic-child",
        "no-parent-name",
        "fork-only",
        "macos",
        "no-install-arg",
    ] {
        assert!(
            codes.contains_key(c),
            "near-miss {c} never generated: {codes:?}"
        );
    }
    assert!(
        truth
            .iter()
            .any(|r| !r.expected && r.delay_ms == Some(10_001)),
        "10.001 s near-miss missing"
    );
}

#[test]
fn hundred_thousand_events_in_debug_mode() {
    let mut s = spec(99, 120);
    s.rate = 14.0;
    let start = Instant::now();
    let mut g = Generator::new(s).expect("valid");
    let mut sink = std::io::sink();
    write_streams(&mut g, &mut sink, None).expect("write");
    let n = g.summary().total_events();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "generated and serialised {n} events in {secs:.2} s (debug build): {:.0} events/s",
        n as f64 / secs
    );
    assert!(n >= 100_000, "{n}");
    // A generous ceiling for a debug build on two shared cores; release is much faster.
    assert!(secs < 60.0);
}

// ---- mapping check against the shared reference data ----------------------------------------

/// Field path -> type from an integrations-style `fields.yml` (nested `- name:` items; dotted
/// names allowed; `multi_fields` children become sub-paths, which is harmless here).
fn parse_fields_yml(text: &str) -> HashMap<String, String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- name: ") {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, name.trim().trim_matches('\'').to_string()));
        } else if let Some(ty) = t.strip_prefix("type: ") {
            // The item owning this key sits two columns left of it.
            if let Some(pos) = stack.iter().rposition(|(i, _)| *i + 2 == indent) {
                let path: Vec<&str> = stack[..=pos].iter().map(|(_, n)| n.as_str()).collect();
                out.insert(path.join("."), ty.trim().to_string());
            }
        }
    }
    out
}

fn leaves<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(x, p, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for x in items {
                leaves(x, path.clone(), out);
            }
        }
        _ => out.push((path, v)),
    }
}

fn value_fits(ty: &str, v: &Value) -> bool {
    let scalars: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    scalars.iter().all(|s| match ty {
        "keyword" | "wildcard" | "constant_keyword" | "text" | "match_only_text" => s.is_string(),
        "long" => s.is_i64() || s.is_u64(),
        "boolean" => s.is_boolean(),
        "date" => s
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "ip" => s
            .as_str()
            .is_some_and(|t| t.parse::<std::net::IpAddr>().is_ok()),
        _ => false,
    })
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn defend_documents_fit_the_endpoint_mapping() {
    let data = shared_data::require(
        "defend_documents_fit_the_endpoint_mapping",
        &[
            "mappings-reference/endpoint-process/fields.yml",
            "mappings-reference/crowdstrike-fdr/ecs.yml",
        ],
    );
    let dir = data.join("..");
    let text =
        std::fs::read_to_string(dir.join("data/mappings-reference/endpoint-process/fields.yml"))
            .expect("read fields.yml");
    let mapping = parse_fields_yml(&text);
    assert_eq!(
        mapping.get("process.args").map(String::as_str),
        Some("keyword")
    );
    assert_eq!(
        mapping.get("event.sequence").map(String::as_str),
        Some("long")
    );
    let (ev, _, _) = run(spec(4, 10));
    let mut checked = HashSet::new();
    for d in parse_events(&ev).iter().filter(|d| d.index == DEFEND_INDEX) {
        let mut out = Vec::new();
        leaves(&d.src, String::new(), &mut out);
        for (path, v) in out {
            // The index template has `dynamic: false` (manifest.yml): unmapped fields would be
            // stored but never searchable, so every generated field must be mapped.
            let ty = mapping
                .get(&path)
                .unwrap_or_else(|| panic!("{path} is not in the endpoint mapping"));
            assert!(value_fits(ty, v), "{path}: {v} does not fit type {ty}");
            checked.insert(path);
        }
    }
    assert!(
        checked.len() > 60,
        "only {} distinct fields checked",
        checked.len()
    );
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn fdr_documents_use_declared_fields_with_ecs_types() {
    let data = shared_data::require(
        "fdr_documents_use_declared_fields_with_ecs_types",
        &[
            "mappings-reference/endpoint-process/fields.yml",
            "mappings-reference/crowdstrike-fdr/ecs.yml",
        ],
    );
    let dir = data.join("..");
    let mut declared = HashSet::new();
    for f in ["ecs.yml", "base-fields.yml"] {
        let text =
            std::fs::read_to_string(dir.join("data/mappings-reference/crowdstrike-fdr").join(f))
                .expect("read FDR field list");
        for line in text.lines() {
            if let Some(name) = line
                .trim_start()
                .trim_start_matches("- ")
                .strip_prefix("name: ")
            {
                declared.insert(name.trim().trim_matches('\'').to_string());
            }
        }
    }
    assert!(declared.contains("process.parent.name"));
    // ECS types of the fields the generator writes (ECS reference; all ids are keywords).
    let ecs_type = |p: &str| -> &str {
        match p {
            "@timestamp" | "event.created" | "process.start" | "process.end" => "date",
            "process.pid" | "process.args_count" | "process.pgid" => "long",
            _ => "keyword",
        }
    };
    // ECS fields the FDR integration gets from `ecs@mappings` rather than its field list
    // (the package's `ecs.yml` does not declare `host.id`, for one).
    let via_ecs_templates = [
        "host.id",
        "host.os.platform",
        "process.group_leader.entity_id",
        "observer.type",
        "message",
    ];
    let (ev, _, _) = run(spec(4, 10));
    let mut checked = 0;
    for d in parse_events(&ev).iter().filter(|d| d.index == FDR_INDEX) {
        let mut out = Vec::new();
        leaves(&d.src, String::new(), &mut out);
        for (path, v) in out {
            if path.starts_with("crowdstrike.") {
                assert!(v.is_string(), "{path} keeps the raw FDR string");
                continue;
            }
            assert!(
                declared.contains(&path) || via_ecs_templates.contains(&path.as_str()),
                "{path} is neither declared for logs-crowdstrike.fdr nor an ECS template field"
            );
            assert!(
                value_fits(ecs_type(&path), v),
                "{path}: {v} is not {}",
                ecs_type(&path)
            );
            checked += 1;
        }
    }
    assert!(checked > 1_000);
}

/// Pins the stream for one seed. The generator uses only its own PRNG and formatting, so no
/// dependency upgrade may change these bytes; an intended change to the generator updates the
/// digest here (and says so in its commit message).
#[test]
fn stream_for_a_fixed_seed_is_pinned() {
    use sha2::{Digest, Sha256};
    let (ev, tr, _) = run(spec(1, 3));
    assert!(!tr.is_empty(), "the pinned run must include truth lines");
    let digest = |b: &[u8]| -> String {
        Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let (got_ev, got_tr) = (digest(&ev), digest(&tr));
    eprintln!("events sha256 {got_ev}\ntruth sha256 {got_tr}");
    assert_eq!(
        got_ev,
        "35d43bbbc3259eb3f497649d1535d5bcca33590038abd52513cc81919ce2d795"
    );
    assert_eq!(
        got_tr,
        "7dc79d2a52189ebb68887c2d3a3f445cb8c5c2f7872983ded6190a15923049cd"
    );
}
