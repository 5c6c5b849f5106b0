//! Hand-built replay cases for the default rule, each pinned to what Elasticsearch returns.
//!
//! A case is `tests/fixtures/replay/<case>.ndjson` (hits as an export gives them: realistic
//! Elastic Defend and CrowdStrike FDR process documents) plus one or more `<name>.expected`
//! files. An `.expected` file lists the sequences ES returns, one JSON line each, exactly as
//! `seqwatch replay` prints them, in order. Its `#` lines say why, citing the ES source or the
//! notes section that decides it; `# @key: value` lines are directives:
//! - `@events: FILE` — the input (default: the `.ndjson` with the same stem);
//! - `@rule: FILE` — a rule file under the fixture directory (default: the built-in rule);
//! - `@max-alerts: N` — the cap (default: the rule's `max_signals`);
//! - `@candidates: N` — hits that match at least one stage with all their keys, so an empty
//!   expectation cannot pass because nothing was evaluated at all;
//! - `@skipped: ORIGIN:LINE:COLUMN` — an input line that must be reported and skipped.
//!
//! Each case runs through the library exactly as the binary runs it (`replay::read_hits`,
//! `EngineOptions::ecs_process`, `replay::correlate`, `replay::detection_json`); a few also
//! run through the binary in `tests/replay_cli.rs`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
mod shared_data;

use std::path::{Path, PathBuf};

use serde_json::Value;

use seqwatch::engine::{CompiledRule, EngineOptions, Hit};
use seqwatch::event::event_timestamp;
use seqwatch::replay::{correlate, detection_json, read_hits};
use seqwatch::rule::Rule;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay")
}

/// One `.expected` file, parsed.
#[derive(Debug)]
struct Expectation {
    name: String,
    events: String,
    rule: Option<String>,
    max_alerts: Option<usize>,
    candidates: Option<u64>,
    skipped: Vec<String>,
    lines: Vec<Value>,
}

fn parse_expectation(path: &Path) -> Expectation {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("fixture names are UTF-8")
        .to_owned();
    let text = std::fs::read_to_string(path).expect("readable fixture");
    let mut exp = Expectation {
        events: format!("{name}.ndjson"),
        name,
        rule: None,
        max_alerts: None,
        candidates: None,
        skipped: Vec::new(),
        lines: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), n + 1);
        if let Some(comment) = line.strip_prefix('#') {
            let Some(directive) = comment.trim().strip_prefix('@') else {
                continue;
            };
            let (key, value) = directive
                .split_once(':')
                .unwrap_or_else(|| panic!("{at}: a directive is `@key: value`"));
            let value = value.trim().to_owned();
            match key.trim() {
                "events" => exp.events = value,
                "rule" => exp.rule = Some(value),
                "max-alerts" => exp.max_alerts = Some(value.parse().expect("@max-alerts: N")),
                "candidates" => exp.candidates = Some(value.parse().expect("@candidates: N")),
                "skipped" => exp.skipped.push(value),
                other => panic!("{at}: unknown directive @{other}"),
            }
        } else if !line.trim().is_empty() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{at}: expected line is not JSON: {e}"));
            exp.lines.push(value);
        }
    }
    exp
}

fn expectations() -> Vec<Expectation> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "expected"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse_expectation(p)).collect()
}

fn load_rule(exp: &Expectation) -> Rule {
    match &exp.rule {
        Some(file) => Rule::load(&fixture_dir().join(file))
            .unwrap_or_else(|e| panic!("{}: rule {file}: {e}", exp.name)),
        None => Rule::builtin().expect("the built-in rule loads"),
    }
}

fn read_events(exp: &Expectation) -> (Vec<Hit>, Vec<String>) {
    let file = File::open(fixture_dir().join(&exp.events))
        .unwrap_or_else(|e| panic!("{}: {}: {e}", exp.name, exp.events));
    let read = read_hits(BufReader::new(file), &exp.events).expect("fixture is readable");
    let skipped = read
        .bad_lines
        .iter()
        .map(|b| format!("{}:{}:{}", b.origin, b.line, b.column))
        .collect();
    (read.hits, skipped)
}

/// What a replay printed, and how many candidates it saw.
struct Run {
    lines: Vec<Value>,
    candidates: u64,
    bad_events: u64,
}

fn replay(exp: &Expectation, hits: Vec<Hit>, options: EngineOptions) -> Run {
    let rule = load_rule(exp);
    let compiled = CompiledRule::compile(&rule, options).expect("the rule compiles");
    let max = exp.max_alerts.unwrap_or(rule.max_signals as usize);
    let result = correlate(&compiled, hits, max).expect("a sorted stream correlates");
    Run {
        lines: result
            .detections
            .iter()
            .map(|d| detection_json(d, compiled.is_sequence()))
            .collect(),
        candidates: result.stats.candidates,
        bad_events: result.stats.bad_events,
    }
}

fn render(lines: &[Value]) -> String {
    if lines.is_empty() {
        return "    (no sequences)\n".into();
    }
    lines.iter().map(|l| format!("    {l}\n")).collect()
}

/// Every case returns exactly the sequences Elasticsearch returns for it.
#[test]
fn every_case_gives_what_elasticsearch_returns() {
    let all = expectations();
    assert!(
        all.len() >= 20,
        "expected the full case list, found {} .expected files",
        all.len()
    );
    let mut failures = Vec::new();
    for exp in &all {
        let (hits, skipped) = read_events(exp);
        assert!(!hits.is_empty(), "{}: no hits in {}", exp.name, exp.events);
        let run = replay(exp, hits, EngineOptions::ecs_process());
        let mut problems = Vec::new();
        if run.lines != exp.lines {
            problems.push(format!(
                "  expected:\n{}  got:\n{}",
                render(&exp.lines),
                render(&run.lines)
            ));
        }
        if skipped != exp.skipped {
            problems.push(format!(
                "  skipped lines: expected {:?}, got {skipped:?}",
                exp.skipped
            ));
        }
        if let Some(candidates) = exp.candidates {
            if run.candidates != candidates {
                problems.push(format!(
                    "  candidates: expected {candidates}, got {}",
                    run.candidates
                ));
            }
        }
        if run.bad_events != 0 {
            problems.push(format!(
                "  {} hits were skipped as unreadable",
                run.bad_events
            ));
        }
        if problems.is_empty() {
            println!("ok   {} ({} sequences)", exp.name, exp.lines.len());
        } else {
            println!("FAIL {}", exp.name);
            failures.push(format!("{}:\n{}", exp.name, problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Elasticsearch:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

/// Every input file is used by some expectation, and every expectation's input exists.
#[test]
fn every_fixture_has_an_expectation() {
    let all = expectations();
    let used: Vec<&str> = all.iter().map(|e| e.events.as_str()).collect();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(fixture_dir()).expect("fixture directory exists") {
        let path = entry.expect("readable directory entry").path();
        if path.extension().is_some_and(|x| x == "ndjson") {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !used.contains(&name) {
                orphans.push(name.to_owned());
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "inputs without expectations: {orphans:?}"
    );
}

/// A small deterministic generator (xorshift64*), so shuffles are reproducible without a crate.
struct Shuffler(u64);

impl Shuffler {
    fn new(seed: u64) -> Self {
        Shuffler(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    /// A random permutation that keeps the relative order of hits in the same millisecond:
    /// ES breaks those ties by `_shard_doc`, for which the input order stands in, so only
    /// the order *between* milliseconds is free.
    fn shuffle_keeping_ties(&mut self, hits: &[Hit]) -> Vec<Hit> {
        let ms = |h: &Hit| {
            event_timestamp(&h.source, "@timestamp")
                .map(|ns| ns.div_euclid(1_000_000))
                .unwrap_or(i64::MIN)
        };
        let mut order: Vec<usize> = (0..hits.len()).collect();
        for i in (1..order.len()).rev() {
            let j = self.below(i + 1);
            order.swap(i, j);
        }
        // Within each millisecond, hand the shuffled slots back out in input order.
        let mut slots: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (slot, &index) in order.iter().enumerate() {
            slots.entry(ms(&hits[index])).or_default().push(slot);
        }
        let mut out: Vec<Option<Hit>> = vec![None; hits.len()];
        let mut next: BTreeMap<i64, usize> = BTreeMap::new();
        for hit in hits {
            let key = ms(hit);
            let k = next.entry(key).or_insert(0);
            out[slots[&key][*k]] = Some(hit.clone());
            *k += 1;
        }
        out.into_iter()
            .map(|h| h.expect("every slot filled"))
            .collect()
    }
}

/// The input order of an export does not matter, except between hits of one millisecond
/// (`_shard_doc` order): replay sorts by timestamp as ES orders hits
/// (`execution/search/Ordinal.java`: timestamp, tiebreaker, implicit tiebreaker).
#[test]
fn shuffled_inputs_give_the_same_sequences() {
    for exp in expectations() {
        let (hits, _) = read_events(&exp);
        assert!(hits.len() > 1, "{}: nothing to shuffle", exp.name);
        for seed in 1..=8u64 {
            let seed = seed
                ^ exp
                    .name
                    .bytes()
                    .fold(0u64, |a, b| a.rotate_left(5) ^ u64::from(b));
            let shuffled = Shuffler::new(seed).shuffle_keeping_ties(&hits);
            let run = replay(&exp, shuffled, EngineOptions::ecs_process());
            assert_eq!(
                run.lines, exp.lines,
                "{}: a shuffle (seed {seed}) changed the result",
                exp.name
            );
        }
    }
}

/// The shuffler really moves hits (otherwise the test above proves nothing), and keeps ties.
#[test]
fn the_shuffler_permutes_but_keeps_same_millisecond_order() {
    let exp = parse_expectation(&fixture_dir().join("order_equal_millisecond.expected"));
    let (hits, _) = read_events(&exp);
    let ids = |hs: &[Hit]| hs.iter().map(|h| h.id.to_string()).collect::<Vec<_>>();
    let original = ids(&hits);
    let mut moved = false;
    for seed in 1..=8u64 {
        let shuffled = ids(&Shuffler::new(seed).shuffle_keeping_ties(&hits));
        moved |= shuffled != original;
        let mut sorted = shuffled.clone();
        sorted.sort();
        let mut expected = original.clone();
        expected.sort();
        assert_eq!(sorted, expected, "a permutation of the same hits");
        let position = |id: &str| shuffled.iter().position(|s| s == id).expect("present");
        assert!(
            position("tie-child-first-sh") < position("tie-child-first-npm"),
            "same-millisecond hits keep their input order"
        );
    }
    assert!(moved, "no seed moved any hit");
}

/// The decision behind `eval_numeric_keys`: ES joins `4242` and `"4242"` in a keyword field,
/// and only typing the ECS fields as keywords reproduces that. Typed from JSON values alone
/// (`EngineOptions::default()`), the number and the string are different keys, and the one
/// pair that still joins reports its key as a number, which ES never returns for a keyword.
#[test]
fn ecs_typing_is_what_makes_numeric_keys_join_as_es_does() {
    let exp = parse_expectation(&fixture_dir().join("eval_numeric_keys.expected"));
    let (hits, _) = read_events(&exp);
    let typed = replay(&exp, hits.clone(), EngineOptions::ecs_process());
    assert_eq!(typed.lines, exp.lines);
    assert_eq!(typed.lines.len(), 3);

    let untyped = replay(&exp, hits, EngineOptions::default());
    assert_eq!(untyped.lines.len(), 1, "{:?}", untyped.lines);
    assert_eq!(untyped.lines[0]["join_keys"][0], serde_json::json!(77));
    assert_eq!(typed.lines[2]["join_keys"][0], serde_json::json!("77"));
}

/// The v4 revision as published in elastic/detection-rules (the shared copy, not ours) matches
/// macOS and `start` events in `v2_scope`, exactly as our own v4 fixture rule does.
#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn published_v4_rule_matches_what_the_v4_fixture_rule_matches() {
    let shared = shared_data::require(
        "published_v4_rule_matches_what_the_v4_fixture_rule_matches",
        &["rules"],
    );
    let path = shared.join(
        "rules/v4-cross-platform-head/execution_nodejs_pre_or_post_install_script_execution.toml",
    );
    let exp = parse_expectation(&fixture_dir().join("v2_scope.v4.expected"));
    let (hits, _) = read_events(&exp);
    let rule = Rule::load(&path).expect("the published v4 rule loads");
    let compiled =
        CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("the rule compiles");
    let result = correlate(&compiled, hits, 100).expect("a sorted stream correlates");
    let lines: Vec<Value> = result
        .detections
        .iter()
        .map(|d| detection_json(d, true))
        .collect();
    assert_eq!(lines, exp.lines);
}
