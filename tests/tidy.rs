//! Architecture invariants that a grep can check (cf. rust-analyzer's `tidy.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use quote::ToTokens;

/// Modules that must stay pure: no I/O, no async runtime, no Elasticsearch client.
const PURE: &[&str] = &[
    "src/eql",
    "src/correlate",
    "src/event.rs",
    "src/event",
    "src/window.rs",
    "src/alert.rs",
    "src/ecs",
    "src/engine.rs",
    "src/state.rs",
    "src/fuzzing.rs",
    "src/fetch_plan.rs",
    "src/entity_enrichment.rs",
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
    for p in PURE {
        bad.extend(lines_with(p, FORBIDDEN, &[]));
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
/// files named `tests.rs` and `fake.rs` left out, the rest parsed and without its
/// `#[cfg(test)]` items.
fn code_of(path: &str) -> Vec<(PathBuf, syn::File)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(path), &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| !f.ends_with("tests.rs") && !f.ends_with("fake.rs"))
        .map(|f| {
            let text = fs::read_to_string(&f).unwrap();
            let code = non_test_code(&text);
            (f.strip_prefix(root).unwrap().to_path_buf(), code)
        })
        .collect()
}

/// `file:line: code` for every line of `path`'s non-test code that contains one of `words`.
fn lines_with(path: &str, words: &[&str], skip: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (file, code) in code_of(path) {
        if skip.iter().any(|s| file.ends_with(s)) {
            continue;
        }
        for (line, text) in token_lines(&code) {
            if let Some(word) = words.iter().find(|w| text.contains(*w)) {
                found.push(format!("{}:{line}: {word} in `{text}`", file.display()));
            }
        }
    }
    found
}

/// The run pipeline and the daemon speak to a cluster only through the `Cluster` trait, so the
/// in-memory cluster of their tests stands in for Elasticsearch everywhere they go.
#[test]
fn the_run_path_reaches_clusters_only_through_the_trait() {
    let mut bad = lines_with("src/run", &["EsClient", "elasticsearch::"], &[]);
    bad.extend(lines_with(
        "src/daemon.rs",
        &["EsClient", "elasticsearch::"],
        &[],
    ));
    assert!(
        bad.is_empty(),
        "the run path names the HTTP client:\n{}",
        bad.join("\n")
    );
}

/// `anyhow` only at the binary's edge: everything below returns typed errors.
#[test]
fn anyhow_only_at_the_binarys_edge() {
    let bad = lines_with("src", &["anyhow"], &["src/app.rs", "src/main.rs"]);
    assert!(bad.is_empty(), "anyhow below the edge:\n{}", bad.join("\n"));
}

/// The run path has no function of too many arguments: its stages take a plan and a context.
#[test]
fn the_run_path_has_no_long_argument_lists() {
    let mut bad = Vec::new();
    for path in ["src/run", "src/daemon.rs", "src/cluster.rs"] {
        bad.extend(lines_with(path, &["too_many_arguments"], &[]));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Whether `attr` is `#[cfg(test)]`.
fn is_cfg_test(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg")
        && attr.meta.to_token_stream().to_string().replace(' ', "") == "cfg(test)"
}

/// The outer attributes of an item.
fn attrs_of(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `items` without their `#[cfg(test)]` items, in inline modules and impl blocks too.
fn strip_tests(items: &mut Vec<syn::Item>) {
    items.retain(|item| !attrs_of(item).iter().any(is_cfg_test));
    for item in items {
        match item {
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &mut m.content {
                    strip_tests(inner);
                }
            }
            syn::Item::Impl(i) => i.items.retain(|member| match member {
                syn::ImplItem::Fn(f) => !f.attrs.iter().any(is_cfg_test),
                syn::ImplItem::Const(c) => !c.attrs.iter().any(is_cfg_test),
                syn::ImplItem::Type(t) => !t.attrs.iter().any(is_cfg_test),
                _ => true,
            }),
            _ => {}
        }
    }
}

/// The non-test code of a source text, parsed (`#![cfg(test)]` files are empty).
fn non_test_code(text: &str) -> syn::File {
    let mut file = syn::parse_file(text).expect("the source parses");
    if file.attrs.iter().any(is_cfg_test) {
        file.items.clear();
    }
    strip_tests(&mut file.items);
    file
}

/// The tokens of `file` per source line, as text: words apart, punctuation joined, string
/// literals emptied (what they say is not code). Comments are not tokens.
fn token_lines(file: &syn::File) -> Vec<(usize, String)> {
    use proc_macro2::{Delimiter, TokenTree};
    fn walk(
        tokens: proc_macro2::TokenStream,
        lines: &mut std::collections::BTreeMap<usize, String>,
    ) {
        for token in tokens {
            let line = token.span().start().line;
            let text = lines.entry(line).or_default();
            let word = |t: &str, text: &mut String| {
                if text.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '"') {
                    text.push(' ');
                }
                text.push_str(t);
            };
            match token {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::None => ("", ""),
                    };
                    text.push_str(open);
                    walk(g.stream(), lines);
                    lines
                        .entry(g.span_close().start().line)
                        .or_default()
                        .push_str(close);
                }
                TokenTree::Ident(i) => word(&i.to_string(), text),
                TokenTree::Punct(p) => text.push(p.as_char()),
                TokenTree::Literal(l) => {
                    let l = l.to_string();
                    let quoted = l.starts_with('"') || l.starts_with('r') || l.starts_with('b');
                    word(if quoted { "\"\"" } else { &l }, text);
                }
            }
        }
    }
    let mut lines = std::collections::BTreeMap::new();
    walk(file.to_token_stream(), &mut lines);
    lines.into_iter().collect()
}

/// Every `Result<_, String>` in `file` (nested, turbofish, over several lines), and every
/// `type Err = String` or `type Error = String`, by line.
fn string_errors(file: &syn::File) -> Vec<(usize, String)> {
    use syn::visit::Visit;
    fn is_string(ty: &syn::Type) -> bool {
        matches!(ty, syn::Type::Path(p) if p.qself.is_none()
            && p.path.segments.last().is_some_and(|s| s.ident == "String" && s.arguments.is_none()))
    }
    struct Finder(Vec<(usize, String)>);
    impl<'a> Visit<'a> for Finder {
        fn visit_path_segment(&mut self, seg: &'a syn::PathSegment) {
            if seg.ident == "Result" {
                if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
                    let types: Vec<&syn::Type> = args
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            syn::GenericArgument::Type(t) => Some(t),
                            _ => None,
                        })
                        .collect();
                    if types.len() == 2 && is_string(types[1]) {
                        let text = seg.to_token_stream().to_string();
                        self.0.push((seg.ident.span().start().line, text));
                    }
                }
            }
            syn::visit::visit_path_segment(self, seg);
        }
        fn visit_impl_item_type(&mut self, t: &'a syn::ImplItemType) {
            if (t.ident == "Err" || t.ident == "Error") && is_string(&t.ty) {
                self.0.push((
                    t.ident.span().start().line,
                    format!("type {} = String", t.ident),
                ));
            }
            syn::visit::visit_impl_item_type(self, t);
        }
    }
    let mut finder = Finder(Vec::new());
    finder.visit_file(file);
    finder.0.sort();
    finder.0
}

/// Errors are typed (`thiserror`), so a function's error says what went wrong and where:
/// no `Result<_, String>` in the library or the binary. Test code may keep them.
#[test]
fn no_string_errors_outside_tests() {
    let files = code_of("src");
    assert!(
        files.iter().any(|(f, _)| f.ends_with("src/engine.rs")),
        "src/ was not read"
    );
    let mut bad = Vec::new();
    for (file, code) in &files {
        for (line, ty) in string_errors(code) {
            bad.push(format!("{}:{line}: {ty}", file.display()));
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
    let found = |text: &str| string_errors(&non_test_code(text));
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
        "Result < HashMap < String , (u8 , String) > , std :: string :: String , >"
    );
    assert!(found("#![cfg(test)]\nfn a() -> Result<(), String> {}\n").is_empty());
}
