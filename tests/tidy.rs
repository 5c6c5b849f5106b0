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
        let code = String::from_utf8(code_outside_tests(&text)).unwrap();
        for (n, l) in code.lines().enumerate() {
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

/// Non-test code of `path` (a file, or every `.rs` file under a folder), in file-name order:
/// files named `tests.rs` and `fake.rs` left out, and the rest as [`code_outside_tests`]
/// gives it (same lines, comments, literals and `#[cfg(test)]` items blanked).
fn code_of(path: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(path), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| !f.ends_with("tests.rs") && !f.ends_with("fake.rs"))
        .map(|f| {
            let text = fs::read_to_string(&f).unwrap();
            let code = String::from_utf8(code_outside_tests(&text)).unwrap();
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
    assert!(
        bad.is_empty(),
        "the run path names the HTTP client:\n{}",
        bad.join("\n")
    );
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

/// Where the text of a raw string starting at `i` (`r"`, `r#"`, `br"` …) begins, and how many
/// `#` close it; `None` when no raw string starts there.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let start = if b[i..].starts_with(b"br") {
        i + 2
    } else if b[i] == b'r' {
        i + 1
    } else {
        return None;
    };
    let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
    (b.get(start + hashes) == Some(&b'"')).then_some((start + hashes + 1, hashes))
}

/// `text` with comments and string, byte-string and character literals blanked: every byte of
/// them but newlines becomes a space, so offsets and line numbers stay the file's.
fn blank_comments_and_literals(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest.
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some((body, hashes)) = raw_string_start(b, i) {
            // A raw string: r"…", r#"…"#, br"…".
            let mut closing = vec![b'"'];
            closing.extend(std::iter::repeat_n(b'#', hashes));
            let end = b[body..]
                .windows(closing.len())
                .position(|w| w == closing.as_slice())
                .map_or(b.len(), |n| body + n + closing.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A character literal ('x', '\n', '\'', 'é'), or else a lifetime or label.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 3..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|n| i + 3 + n + 1)
            } else {
                let width = match b.get(i + 1) {
                    Some(&c) if c >= 0xF0 => 4,
                    Some(&c) if c >= 0xE0 => 3,
                    Some(&c) if c >= 0xC0 => 2,
                    _ => 1,
                };
                (b.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The end (exclusive) of the attribute `#[…]` starting at `at`.
fn attribute_end(code: &[u8], at: usize) -> usize {
    let mut depth = 0usize;
    for (j, &c) in code.iter().enumerate().skip(at + 1) {
        match c {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The end (exclusive) of the item starting at `at`: its closing `}` or its `;`.
fn item_end(code: &[u8], at: usize) -> usize {
    let mut i = at;
    loop {
        while i < code.len() && code[i].is_ascii_whitespace() {
            i += 1;
        }
        if code[i..].starts_with(b"#[") {
            i = attribute_end(code, i);
        } else {
            break;
        }
    }
    let mut depth = 0usize;
    while i < code.len() {
        match code[i] {
            b'(' | b'[' | b'<' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b'>' if code[i - 1] != b'-' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => return i + 1,
            b'{' => {
                let mut braces = 0usize;
                for (j, &c) in code.iter().enumerate().skip(i) {
                    match c {
                        b'{' => braces += 1,
                        b'}' => {
                            braces -= 1;
                            if braces == 0 {
                                return j + 1;
                            }
                        }
                        _ => {}
                    }
                }
                return code.len();
            }
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// The non-test code of a source file: comments and literals blanked (see
/// [`blank_comments_and_literals`]) and every item under `#[cfg(test)]` blanked with its
/// attributes, wherever it sits in the file (not only at the end); all of it for a file marked
/// `#![cfg(test)]`.
fn code_outside_tests(text: &str) -> Vec<u8> {
    let mut code = blank_comments_and_literals(text);
    let squeezed = |from: usize, to: usize, code: &[u8]| -> Vec<u8> {
        code[from..to]
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect()
    };
    let mut i = 0;
    while let Some(n) = code[i..].iter().position(|&c| c == b'#') {
        let at = i + n;
        let inner = code.get(at + 1) == Some(&b'!');
        let open = if inner { at + 2 } else { at + 1 };
        if code.get(open) != Some(&b'[') {
            i = at + 1;
            continue;
        }
        let end = attribute_end(&code, open - 1);
        let attribute = squeezed(open, end, &code);
        if attribute == b"[cfg(test)]" {
            let until = if inner {
                code.len()
            } else {
                item_end(&code, end)
            };
            for c in &mut code[at..until] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
            i = until;
        } else {
            i = end;
        }
    }
    code
}

/// The spellings of `String` as a type.
fn is_string_type(ty: &str) -> bool {
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    matches!(
        ty.as_str(),
        "String" | "std::string::String" | "::std::string::String" | "alloc::string::String"
    )
}

/// Every `Result<…, String>` in `code` (nested in other generics or spread over lines too, and
/// `Result::<…, String>`), and every `type Err = String;` / `type Error = String;` (which make
/// a `Result<Self, Self::Err>` one): the byte offset and the type, whitespace collapsed.
fn string_errors(code: &[u8]) -> Vec<(usize, String)> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let word_at = |at: usize, word: &[u8]| {
        code[at..].starts_with(word)
            && (at == 0 || !ident(code[at - 1]))
            && code.get(at + word.len()).is_none_or(|&c| !ident(c))
    };
    let skip_space = |mut i: usize| {
        while i < code.len() && code[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let collapse = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut found = Vec::new();
    for at in 0..code.len() {
        if word_at(at, b"Result") {
            let mut i = skip_space(at + b"Result".len());
            if code[i..].starts_with(b"::") {
                i = skip_space(i + 2);
            }
            if code.get(i) != Some(&b'<') {
                continue;
            }
            // The generic arguments, split at top-level commas.
            let (mut depth, mut args, mut start) = (0usize, Vec::new(), i + 1);
            let mut end = None;
            for j in i..code.len() {
                match code[j] {
                    b'<' | b'(' | b'[' => depth += 1,
                    b'>' if code[j - 1] == b'-' => {}
                    b'>' | b')' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            args.push(&code[start..j]);
                            end = Some(j + 1);
                            break;
                        }
                    }
                    b',' if depth == 1 => {
                        args.push(&code[start..j]);
                        start = j + 1;
                    }
                    // Not a type after all.
                    b';' | b'{' | b'}' => break,
                    _ => {}
                }
            }
            let Some(end) = end else {
                continue;
            };
            args.retain(|a| a.iter().any(|c| !c.is_ascii_whitespace()));
            if args.len() == 2 && is_string_type(&String::from_utf8_lossy(args[1])) {
                found.push((at, collapse(&code[at..end])));
            }
        } else if word_at(at, b"type") {
            let i = skip_space(at + b"type".len());
            let name_end = (i..code.len())
                .find(|&j| !ident(code[j]))
                .unwrap_or(code.len());
            if !matches!(&code[i..name_end], b"Err" | b"Error") {
                continue;
            }
            let eq = skip_space(name_end);
            if code.get(eq) != Some(&b'=') {
                continue;
            }
            let Some(semi) = code[eq..].iter().position(|&c| c == b';') else {
                continue;
            };
            if is_string_type(&String::from_utf8_lossy(&code[eq + 1..eq + semi])) {
                found.push((at, collapse(&code[at..eq + semi + 1])));
            }
        }
    }
    found
}

/// Errors are typed (`thiserror`), so a function's error says what went wrong and where:
/// no `Result<_, String>` in the library or the binary. Test code may keep them.
#[test]
fn no_string_errors_outside_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = code_of("src");
    assert!(
        files.iter().any(|(f, _)| f.ends_with("src/engine.rs")),
        "src/ was not read"
    );
    let mut bad = Vec::new();
    for (file, code) in &files {
        for (at, ty) in string_errors(code.as_bytes()) {
            let line = 1 + code[..at].matches('\n').count();
            bad.push(format!(
                "{}:{line}: {ty}",
                file.strip_prefix(root).unwrap().display()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "errors must be typed (a thiserror enum naming what went wrong and where), not String; found {}:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The check above finds what it must and nothing else.
#[test]
fn the_string_error_check_sees_through_layout_and_skips_tests() {
    let found = |text: &str| -> Vec<(usize, String)> {
        let code = code_outside_tests(text);
        string_errors(&code)
            .into_iter()
            .map(|(at, ty)| (1 + code[..at].iter().filter(|&&c| c == b'\n').count(), ty))
            .collect()
    };
    let text = r####"
fn a() -> Result<(), String> {}
fn b() -> Result<Option<Vec<Vec<u8>>>, String> {}
fn c() -> Result<
    HashMap<String, (u8, String)>,
    std::string::String,
> {}
type T = fn(&[u8]) -> Result<(), String>;
fn d(f: impl Fn(&str) -> Result<u8, String>) {}
fn e() -> Option<Result<u8, String>> { let x = Result::<u8, String>::Ok(1); }
impl FromStr for X { type Err = String; }
impl TryFrom<String> for X { type Error = String; }
fn fine() -> Result<String, E> { "Result<(), String>"; r#"Result<(), String>"#; '"'; }
fn fine_too<'a>(s: &'a str) -> Result<(HashSet<String>, u8), EsError> {}
// fn commented() -> Result<(), String>
/* fn block() -> Result<(), String> /* nested */ Result<(), String> */
#[cfg(test)]
fn helper() -> Result<(), String> {}
#[cfg(test)]
mod tests;
#[cfg(test)]
#[allow(dead_code)]
mod tests {
    fn t() -> Result<(), String> { if x { "}" } }
}
fn after_the_tests() -> Result<(), String> {}
"####;
    let lines: Vec<usize> = found(text).iter().map(|(line, _)| *line).collect();
    assert_eq!(
        lines,
        [2, 3, 4, 8, 9, 10, 10, 11, 12, 26],
        "{:#?}",
        found(text)
    );
    assert_eq!(
        found(text)[2].1,
        "Result< HashMap<String, (u8, String)>, std::string::String, >"
    );
    assert!(found("#![cfg(test)]\nfn a() -> Result<(), String> {}\n").is_empty());
}
