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
const RANDOM_INPUTS: [usize; 5] = [3_000, 3_000, 1_500, 1_500, 500];

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

/// The scanner target's seeds and every line of the replay fixtures (real exports, broken
/// lines among them).
fn scan_texts() -> Vec<String> {
    let mut out = Vec::new();
    for f in files_under(&root().join("fuzz/seeds/scan_json")) {
        out.push(std::fs::read_to_string(&f).expect("readable seed"));
    }
    for f in files_under(&root().join("tests/fixtures/replay")) {
        if f.extension().is_none_or(|e| e != "ndjson") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable fixture");
        out.extend(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(str::to_owned),
        );
    }
    out
}

#[test]
fn scan_target_on_real_answers_and_lines_and_their_mutations() {
    // Random bytes almost never make JSON the scanner reads; pieces that break JSON or spell
    // its rare cases, put into real answers and lines, do (the scanner's proptests' method).
    let started = Instant::now();
    let texts = scan_texts();
    assert!(texts.len() > 100, "only {} texts", texts.len());
    let mut rng = Rng(0x5eed_5ca7);
    let mut ran = 0;
    for (k, text) in texts.iter().enumerate() {
        let check = |t: &str, label: &str| {
            if let Err(broken) = fuzzing::scan_json_text(t) {
                panic!("scan_json on {label}: {broken}\ntext: {t}");
            }
        };
        check(text, &format!("text #{k}"));
        // Seeds and one line in ten: a few mutants each (a debug build reads slowly).
        let mutants = if k < 12 {
            40
        } else if k % 10 == 0 {
            4
        } else {
            0
        };
        for m in 0..mutants {
            let mut t = text.clone();
            for _ in 0..1 + rng.next() % 2 {
                let at = (rng.next() as usize) % (t.len() + 1);
                let at = (0..=at).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                if rng.next() % 4 == 0 {
                    let end = (at + 1 + (rng.next() as usize) % 8).min(t.len());
                    let end = (end..=t.len())
                        .find(|&i| t.is_char_boundary(i))
                        .unwrap_or(t.len());
                    t.replace_range(at..end, "");
                } else {
                    let piece =
                        fuzzing::JSON_PIECES[(rng.next() as usize) % fuzzing::JSON_PIECES.len()];
                    t.insert_str(at, piece);
                }
            }
            check(&t, &format!("mutant {m} of text #{k}"));
            ran += 1;
        }
    }
    eprintln!(
        "scan_json: {} texts and {ran} mutants in {:?}",
        texts.len(),
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
