//! Shared helpers for the tests that need a real Elasticsearch (`tests/es_*.rs`): where the node
//! is (`SEQWATCH_TEST_ES_URL`, optional basic auth from `SEQWATCH_TEST_ES_USER` and
//! `SEQWATCH_TEST_ES_PASSWORD_FILE`), skipping when it is absent (failing when `CI=true`),
//! unique index names per test, and cleanup that also runs when a test panics.
//! `scripts/test` starts a node and sets these variables.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::Write as _;
use std::time::Duration;

use secrecy::SecretString;
use seqwatch::es::{EsAuth, EsClient, EsSettings};

/// Default node when `SEQWATCH_TEST_ES_URL` is unset.
pub const DEFAULT_TEST_ES_URL: &str = "http://127.0.0.1:9200";

/// The node the tests use: `SEQWATCH_TEST_ES_URL`, else [`DEFAULT_TEST_ES_URL`].
pub fn es_url() -> String {
    std::env::var("SEQWATCH_TEST_ES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_ES_URL.to_owned())
}

/// True when running under CI (`CI=true`), where a missing node is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true"))
}

/// Basic-auth credentials for the test node, when `SEQWATCH_TEST_ES_PASSWORD_FILE` names one
/// (`scripts/es --security` writes it; the user defaults to `elastic`).
pub fn es_auth() -> Option<EsAuth> {
    let file = std::env::var("SEQWATCH_TEST_ES_PASSWORD_FILE").ok()?;
    let password = std::fs::read_to_string(&file).unwrap_or_else(|err| {
        panic!("SEQWATCH_TEST_ES_PASSWORD_FILE={file} cannot be read: {err}")
    });
    Some(EsAuth::Basic {
        username: std::env::var("SEQWATCH_TEST_ES_USER").unwrap_or_else(|_| "elastic".to_owned()),
        password: SecretString::from(password.trim().to_owned()),
    })
}

/// Settings for the test node, with credentials when configured.
pub fn es_settings() -> EsSettings {
    let mut settings = EsSettings::new(es_url());
    settings.request_timeout = Duration::from_secs(60);
    settings.auth = es_auth();
    settings
}

/// A client for the test node if it answers; otherwise prints "skipped: no Elasticsearch at …"
/// and returns `None`, or panics when `CI=true`. Any answer other than a healthy cluster (bad
/// credentials, say) panics too: that is a broken setup, not a missing node.
pub async fn require_es(test: &str) -> Option<EsClient> {
    let url = es_url();
    let client = EsClient::connect(&es_settings())
        .unwrap_or_else(|err| panic!("{test}: SEQWATCH_TEST_ES_URL is unusable: {err}"));
    match client.health().await {
        Ok(_) => Some(client),
        Err(err) if err.is_unreachable() => {
            if in_ci() {
                panic!("{test}: CI=true but no Elasticsearch answers at {url}: {err}");
            }
            // Straight to stderr: libtest captures print!/eprint! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: no Elasticsearch at {url} ({test}; start one with scripts/es start)"
            );
            None
        }
        Err(err) => panic!("{test}: Elasticsearch at {url} answered, but not healthily: {err}"),
    }
}

/// A name unique to this test run: `it-<test>-<8 hex>`, lower case as index names must be.
pub fn unique_name(test: &str) -> String {
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("it-{test}-{}", &random[..8])
}

/// Deletes the given index patterns when dropped, also when the test panics. Uses its own
/// client on its own thread, because the test's runtime may be gone or blocked by then.
pub struct IndexCleanup {
    patterns: Vec<String>,
}

impl IndexCleanup {
    /// Deletes `patterns` (names or wildcards) at drop.
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        IndexCleanup {
            patterns: patterns.into_iter().collect(),
        }
    }
}

impl Drop for IndexCleanup {
    fn drop(&mut self) {
        let patterns = std::mem::take(&mut self.patterns);
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let client = EsClient::connect(&es_settings()).map_err(|err| err.to_string())?;
                for pattern in &patterns {
                    client
                        .delete_indices(pattern)
                        .await
                        .map_err(|err| err.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(err)) = outcome {
            let _ = writeln!(std::io::stderr(), "cleanup of test indices failed: {err}");
        }
    }
}
