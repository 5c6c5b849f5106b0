//! Architecture invariants that a grep can check (cf. rust-analyzer's `tidy.rs`).

use std::fs;
use std::path::{Path, PathBuf};

/// Modules that must stay pure: no I/O, no async runtime, no Elasticsearch client.
const PURE: &[&str] = &[
    "src/eql",
    "src/correlate",
    "src/event.rs",
    "src/event",
    "src/window.rs",
    "src/alert.rs",
    "src/engine.rs",
    "src/state.rs",
    "src/fuzzing.rs",
    "src/fetch_plan.rs",
];
const FORBIDDEN: &[&str] = &[
    "crate::es",
    "tokio",
    "elasticsearch::",
    "reqwest",
    "std::fs",
    "std::net::TcpStream",
    "Utc::now",
    "SystemTime::now",
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn pure_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in PURE {
        assert!(
            root.join(p).exists(),
            "{p} is listed as pure but does not exist"
        );
        rust_files(&root.join(p), &mut files);
    }
    assert!(
        files.iter().any(|f| f.ends_with("alert.rs")),
        "the pure-module list is stale"
    );
    let mut bad = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        // Tests inside a pure module may use anything; the module itself may not.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for word in FORBIDDEN {
                if l.contains(word) {
                    bad.push(format!(
                        "{}:{}: uses {word}",
                        f.strip_prefix(root).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "pure modules must not do I/O:\n{}",
        bad.join("\n")
    );
}

#[test]
fn main_rs_stays_thin() {
    let main =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    assert!(
        main.lines().count() <= 40,
        "src/main.rs should only hand over to app"
    );
}

/// Non-test code of `path` (a file, or every `.rs` file under a folder).
fn code_of(path: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(path), &mut files);
    files
        .into_iter()
        .filter(|f| !f.ends_with("tests.rs") && !f.ends_with("fake.rs"))
        .map(|f| {
            let text = fs::read_to_string(&f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            (f, code)
        })
        .collect()
}

/// The run pipeline and the daemon speak to a cluster only through the `Cluster` trait, so the
/// in-memory cluster of their tests stands in for Elasticsearch everywhere they go.
#[test]
fn the_run_path_reaches_clusters_only_through_the_trait() {
    let mut bad = Vec::new();
    for path in ["src/run", "src/daemon.rs"] {
        for (file, code) in code_of(path) {
            for (n, line) in code.lines().enumerate() {
                if line.contains("EsClient") || line.contains("elasticsearch::") {
                    bad.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "the run path names the HTTP client:\n{}", bad.join("\n"));
}

/// `anyhow` only at the binary's edge: everything below returns typed errors.
#[test]
fn anyhow_only_at_the_binarys_edge() {
    let mut bad = Vec::new();
    for (file, code) in code_of("src") {
        if file.ends_with("src/app.rs") || file.ends_with("src/main.rs") {
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            if line.contains("anyhow") {
                bad.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "anyhow below the edge:\n{}", bad.join("\n"));
}

/// The run path has no function of too many arguments: its stages take a plan and a context.
#[test]
fn the_run_path_has_no_long_argument_lists() {
    let mut bad = Vec::new();
    for path in ["src/run", "src/daemon.rs", "src/cluster.rs"] {
        for (file, code) in code_of(path) {
            if code.contains("too_many_arguments") {
                bad.push(file.display().to_string());
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
