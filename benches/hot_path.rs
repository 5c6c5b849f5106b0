//! The detection hot path alone, for profilers (`perf record`, `valgrind --tool=callgrind`):
//! reads the candidate hit lines from a cache file (written on the first run from the same
//! generated stream `correlate.rs` measures), then loops `push_source` + `finish` over them.
//! No divan and no fixture set-up in the profile beyond reading one file.
//!
//! `cargo bench --bench hot_path -- [ROUNDS] [candidates|full]`; the cache lives in the
//! directory `SEQWATCH_HOT_PATH_DIR` names (default: the system temporary directory); delete
//! it after changing the generator or the rule, or it keeps serving the old lines.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

fn cached_lines(full: bool) -> Vec<String> {
    let dir = std::env::var_os("SEQWATCH_HOT_PATH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let name = if full {
        "seqwatch-hot-path-full.ndjson"
    } else {
        "seqwatch-hot-path-candidates.ndjson"
    };
    let path = dir.join(name);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return text.lines().map(str::to_owned).collect();
    }
    eprintln!("hot_path: writing {} (once)", path.display());
    let lines = support::generated_lines();
    let lines = if full {
        lines
    } else {
        let (rule, compiled) = support::rule();
        let filters = support::stage_filters(&rule);
        let fetch = compiled
            .fetch_query(&rule, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
            .expect("push-down builds");
        let mut out = Vec::new();
        for line in &lines {
            let hit: serde_json::Value = serde_json::from_str(line).expect("generated JSON");
            let source = &hit["_source"];
            if filters.iter().any(|f| f.matches(source)) {
                out.push(support::candidate_line(
                    hit["_index"].as_str().unwrap_or_default(),
                    hit["_id"].as_str().unwrap_or_default(),
                    source,
                    &fetch.source_includes,
                ));
            }
        }
        out
    };
    let mut file = std::fs::File::create(&path).expect("cache file can be written");
    for line in &lines {
        writeln!(file, "{line}").expect("cache file can be written");
    }
    lines
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200);
    let full = args.iter().any(|a| a == "full");
    let lines = cached_lines(full);
    let (_, compiled) = support::rule();
    let started = Instant::now();
    let mut detections = 0;
    for _ in 0..rounds {
        detections = support::correlate_lines(&compiled, 100, &lines);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events = lines.len() as f64 * f64::from(rounds);
    println!(
        "hot_path: {} lines x {rounds} rounds, {detections} detections, {:.0} K events/s",
        lines.len(),
        events / elapsed / 1e3
    );
    assert!(detections > 0, "the stream must plant detections");
}
