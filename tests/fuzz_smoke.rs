//! The fuzz targets (`seqwatch::fuzzing`) on stable, in CI: every committed regression input
//! under `fuzz/regressions/<target>/`, the seed corpus under `fuzz/seeds/<target>/`, and a few
//! thousand deterministic pseudo-random inputs per target. No coverage guidance: the long,
//! guided runs are `scripts/fuzz` (nightly, cargo-fuzz). Kept well under 20 s.

use std::path::{Path, PathBuf};
use std::time::Instant;

use seqwatch::fuzzing::{self, Target, TARGETS};

/// Pseudo-random inputs per target, in the order of `TARGETS` (the correlator and the alert
/// builder cost more per input, the scanner reads a dozen texts per input; the whole file
/// stays well under 20 s in a debug build).
const RANDOM_INPUTS: [usize; 5] = [3_000, 3_000, 1_500, 1_500, 1_000];

/// xorshift64*: deterministic, so a failure names an input that reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() % (max as u64 + 1)) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(name: &str, target: Target, input: &[u8], label: &str) {
    if let Err(broken) = target(input) {
        panic!("{name} on {label}: {broken}\ninput: {input:?}");
    }
}

/// Text inputs that steer the EQL target: the rules and query fixtures of the repository.
fn eql_texts() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["rules", "tests/fixtures/eql/ok", "tests/fixtures/eql/err"] {
        for f in files_under(&root().join(dir)) {
            if let Ok(bytes) = std::fs::read(&f) {
                out.push(bytes);
            }
        }
    }
    out
}

#[test]
fn the_fixed_filters_and_rules_all_compile() {
    // Two typings of every condition plus the built-in rule's two stages: a refused condition
    // would silently shrink what the evaluator target exercises.
    assert_eq!(
        fuzzing::eval_filter_count(),
        2 * fuzzing::eval_condition_count() + 2
    );
    // The built-in rule and three more shapes, each typed two ways.
    assert_eq!(fuzzing::correlate_rule_count(), 8);
    // The built-in rule's plan, an awkward one, and one the scanner cannot route.
    assert_eq!(fuzzing::scan_plan_counts(), (3, 2));
}

#[test]
fn scan_target_on_the_repository_s_export_lines() {
    // Every line of the replay fixtures (real exports, and broken lines among them), whole and
    // as the target splices it.
    let started = Instant::now();
    let mut lines = 0;
    for f in files_under(&root().join("tests/fixtures/replay")) {
        if f.extension().is_none_or(|e| e != "ndjson") {
            continue;
        }
        let text = std::fs::read(&f).expect("readable fixture");
        for line in text.split(|&b| b == b'\n') {
            if line.starts_with(b"#") || line.is_empty() {
                continue;
            }
            run(
                "scan_json",
                fuzzing::scan_json,
                line,
                &f.display().to_string(),
            );
            lines += 1;
        }
    }
    assert!(lines > 100, "only {lines} fixture lines");
    eprintln!(
        "scan_json: {lines} fixture lines in {:?}",
        started.elapsed()
    );
}

#[test]
fn committed_regressions_and_seeds_pass() {
    let mut ran = 0;
    for (name, target) in TARGETS {
        for kind in ["regressions", "seeds"] {
            for f in files_under(&root().join("fuzz").join(kind).join(name)) {
                let input = std::fs::read(&f).expect("readable corpus file");
                run(name, *target, &input, &f.display().to_string());
                ran += 1;
            }
        }
    }
    assert!(
        ran >= TARGETS.len(),
        "each target has at least one committed input (found {ran} in all)"
    );
}

#[test]
fn eql_target_on_repository_queries_and_their_mutations() {
    let mut rng = Rng(0x5eed_0001);
    for text in eql_texts() {
        run("eql_parse", fuzzing::eql_parse, &text, "a repository file");
        // Flip, cut and splice bytes of real queries: closer to the grammar than noise.
        for _ in 0..20 {
            let mut m = text.clone();
            for _ in 0..1 + rng.next() % 4 {
                if m.is_empty() {
                    break;
                }
                let i = (rng.next() as usize) % m.len();
                match rng.next() % 3 {
                    0 => m[i] = rng.next() as u8,
                    1 => {
                        m.truncate(i);
                    }
                    _ => {
                        let j = (rng.next() as usize) % m.len();
                        let piece = m[j..].iter().take(8).copied().collect::<Vec<_>>();
                        m.splice(i..i, piece);
                    }
                }
            }
            run(
                "eql_parse",
                fuzzing::eql_parse,
                &m,
                "a mutated repository file",
            );
        }
    }
}

#[test]
fn every_target_on_pseudo_random_inputs() {
    let started = Instant::now();
    for (k, (name, target)) in TARGETS.iter().enumerate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (k as u64 + 1));
        for i in 0..RANDOM_INPUTS[k] {
            let input = rng.bytes(if i % 10 == 0 { 2_000 } else { 200 });
            run(name, *target, &input, &format!("random input #{i}"));
        }
    }
    assert_eq!(TARGETS.len(), RANDOM_INPUTS.len());
    eprintln!(
        "fuzz smoke: {} inputs over {} targets in {:?}",
        RANDOM_INPUTS.iter().sum::<usize>(),
        TARGETS.len(),
        started.elapsed()
    );
}
