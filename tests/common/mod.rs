//! Shared helpers for the tests that need a real Elasticsearch (`tests/es_*.rs`): where the node
//! is (`SEQWATCH_TEST_ES_URL`, optional basic auth from `SEQWATCH_TEST_ES_USER` and
//! `SEQWATCH_TEST_ES_PASSWORD_FILE`, the CA to pin from `SEQWATCH_TEST_ES_CA_FILE` when the node
//! speaks HTTPS), failing when it is absent (the tests are ignored unless asked for), unique
//! index names per test, cleanup that also runs when a test panics, and users and roles added to the node's file
//! realm (`SEQWATCH_TEST_ES_CONFIG_DIR`). `scripts/test` starts a node and sets these variables.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod bent;

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

/// The CA file of the test node, when it speaks HTTPS (`scripts/es --tls` sets
/// `SEQWATCH_TEST_ES_CA_FILE`).
pub fn es_ca_file() -> Option<std::path::PathBuf> {
    std::env::var_os("SEQWATCH_TEST_ES_CA_FILE")
        .filter(|file| !file.is_empty())
        .map(Into::into)
}

/// PEM of the test node's CA, read from [`es_ca_file`].
pub fn es_ca_pem() -> Option<Vec<u8>> {
    let file = es_ca_file()?;
    Some(std::fs::read(&file).unwrap_or_else(|err| {
        panic!(
            "SEQWATCH_TEST_ES_CA_FILE={} cannot be read: {err}",
            file.display()
        )
    }))
}

/// Settings for the test node, with credentials and its CA when configured.
pub fn es_settings() -> EsSettings {
    let mut settings = EsSettings::new(es_url());
    settings.request_timeout = Duration::from_secs(60);
    settings.auth = es_auth();
    settings.ca_pem = es_ca_pem();
    settings
}

/// [`es_settings`] with basic auth as `username` / `password` instead of the superuser.
pub fn es_settings_as(username: &str, password: &str) -> EsSettings {
    let mut settings = es_settings();
    settings.auth = Some(EsAuth::Basic {
        username: username.to_owned(),
        password: SecretString::from(password.to_owned()),
    });
    settings
}

/// The node's config directory, where its file realm lives, when security is on
/// (`SEQWATCH_TEST_ES_CONFIG_DIR`, set by `scripts/es --security`).
pub fn es_config_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("SEQWATCH_TEST_ES_CONFIG_DIR")
        .filter(|dir| !dir.is_empty())
        .map(Into::into)
}

/// Users and roles added to the node's file realm (`roles.yml`, `users`, `users_roles` in its
/// config directory), as `scripts/check-deploy`'s `FileRealm` does; the node reloads the files
/// within seconds. The original files are put back when this is dropped, also on a panic.
pub struct FileRealm {
    dir: std::path::PathBuf,
    saved: Vec<(&'static str, String)>,
}

impl FileRealm {
    const FILES: [&'static str; 3] = ["roles.yml", "users", "users_roles"];

    /// Adds one user per `(role name, role descriptor)`, named after the role, with a random
    /// password, and waits (up to 60 s) until the node authenticates every one of them.
    /// Returns `(role, user, password)` in the order given.
    pub async fn install(
        dir: &std::path::Path,
        roles: &[(String, serde_json::Value)],
    ) -> (FileRealm, Vec<(String, String, String)>) {
        let mut saved = Vec::new();
        for name in Self::FILES {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
                panic!(
                    "{} is missing ({err}): is this a node started by scripts/es --security?",
                    path.display()
                )
            });
            saved.push((name, text));
        }
        let realm = FileRealm {
            dir: dir.to_owned(),
            saved,
        };
        let (mut role_lines, mut user_lines, mut role_users) =
            (String::new(), String::new(), String::new());
        let mut users = Vec::new();
        for (role, descriptor) in roles {
            let user = format!("{}-{}", role.replace('_', "-"), &random_hex()[..6]);
            let password = random_hex();
            // JSON is YAML: each descriptor goes in as one flow mapping.
            role_lines.push_str(&format!("{role}:\n  {descriptor}\n"));
            user_lines.push_str(&format!("{user}:{}\n", pbkdf2_hash(&password)));
            role_users.push_str(&format!("{role}:{user}\n"));
            users.push((role.clone(), user, password));
        }
        realm.append("roles.yml", &role_lines);
        realm.append("users", &user_lines);
        realm.append("users_roles", &role_users);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for (_, user, password) in &users {
            let client = EsClient::connect(&es_settings_as(user, password))
                .expect("a client for a file-realm user");
            loop {
                match client.health().await {
                    Ok(_) => break,
                    // 401 until the node has reloaded the files; 403 (no `monitor`) means the
                    // user authenticated.
                    Err(err) if err.status() == Some(403) => break,
                    Err(err) if std::time::Instant::now() > deadline => {
                        panic!("the node did not load file-realm user {user} within 60s: {err}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
        (realm, users)
    }

    fn append(&self, name: &str, text: &str) {
        let base = &self
            .saved
            .iter()
            .find(|(file, _)| *file == name)
            .expect("a saved realm file")
            .1;
        let separator = if base.is_empty() || base.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        // Writing in place keeps the file's owner (the node's user) and mode.
        std::fs::write(self.dir.join(name), format!("{base}{separator}{text}"))
            .expect("writing a file-realm file");
    }
}

impl Drop for FileRealm {
    fn drop(&mut self) {
        for (name, text) in &self.saved {
            if let Err(err) = std::fs::write(self.dir.join(name), text) {
                let _ = writeln!(std::io::stderr(), "restoring {name} failed: {err}");
            }
        }
    }
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A file-realm password hash in Elasticsearch's `{PBKDF2}` form: 10000 iterations of
/// PBKDF2-HMAC-SHA512 with a 32-byte salt and a 32-byte key, both base64 (the format that
/// `Hasher.PBKDF2` in x-pack core reads, as `scripts/check-deploy` writes it).
pub fn pbkdf2_hash(password: &str) -> String {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let salt: Vec<u8> = (0..2)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    let key = pbkdf2_hmac_sha512(password.as_bytes(), &salt, 10_000);
    format!(
        "{{PBKDF2}}10000${}${}",
        BASE64_STANDARD.encode(&salt),
        BASE64_STANDARD.encode(key)
    )
}

/// A 32-byte key of PBKDF2 (RFC 8018) with HMAC-SHA512.
pub fn pbkdf2_hmac_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut key);
    key
}

/// A client for the test node; panics, saying how to start one, when none answers there, and
/// when it answers but not healthily (bad credentials, say). Every test that calls this is
/// `#[ignore = "needs Elasticsearch; scripts/test runs it"]`: run explicitly without a node it
/// fails, it never passes without having run.
pub async fn require_es(test: &str) -> EsClient {
    let url = es_url();
    let client = EsClient::connect(&es_settings())
        .unwrap_or_else(|err| panic!("{test}: SEQWATCH_TEST_ES_URL is unusable: {err}"));
    match client.health().await {
        Ok(_) => client,
        Err(err) if err.is_unreachable() => panic!(
            "{test}: this test needs Elasticsearch, and none answers at {url} ({err}); run \
             scripts/test, or start a node with scripts/es start and set SEQWATCH_TEST_ES_URL"
        ),
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

/// Whether `index` is a backing index of data stream `stream`: `.ds-<stream>-<yyyy.MM.dd>-<generation>`.
pub fn is_backing_index_of(index: &str, stream: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    index
        .strip_prefix(".ds-")
        .and_then(|rest| rest.strip_prefix(stream))
        .and_then(|rest| rest.strip_prefix('-'))
        // Nothing more than date and generation, so stream `x` does not claim those of `x-y`.
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(date, generation)| {
            date.len() == 10
                && date.split('.').filter(|p| digits(p)).count() == 3
                && digits(generation)
        })
}

/// Empties every data stream that `pattern` names: rolls it over, then deletes each backing
/// index but the new, empty write index. The integ-test distribution has no `DELETE
/// _data_stream` (mappings/README.md), so the stream itself stays. Returns the backing indices
/// deleted.
pub async fn empty_data_streams(
    es: &EsClient,
    pattern: &str,
) -> Result<usize, seqwatch::es::EsError> {
    let mut deleted = 0;
    for stream in es.data_streams(pattern).await? {
        let rollover = es.rollover(&stream.name).await?;
        for index in &stream.backing_indices {
            if *index != rollover.new_index {
                es.delete_indices(index).await?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Deletes the given index patterns when dropped, also when the test panics, and empties the
/// data streams they name ([`empty_data_streams`]). Uses its own client on its own thread,
/// because the test's runtime may be gone or blocked by then.
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
                    empty_data_streams(&client, pattern)
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

/// Any request to the test node, sent with curl, as (HTTP status, parsed JSON body): for the
/// APIs seqwatch's client has no call for (component templates, aliases, aggregations). The
/// body goes through a temporary file (mappings outgrow a command line); the credentials reach
/// curl on its standard input, never on its command line; an HTTPS node's CA is pinned.
pub fn es_request(
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut body_file = tempfile::NamedTempFile::new().expect("a temporary file");
    if let Some(body) = body {
        body_file
            .write_all(body.to_string().as_bytes())
            .expect("writing the request body");
    }
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-X", method, "-K", "-", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    if body.is_some() {
        cmd.arg("--data-binary")
            .arg(format!("@{}", body_file.path().display()));
    }
    if let Some(ca) = es_ca_file() {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.arg(format!("{}{path}", es_url()));
    let mut child = cmd.spawn().expect("curl runs");
    let config = match es_auth() {
        Some(EsAuth::Basic { username, password }) => {
            use secrecy::ExposeSecret as _;
            format!("user = \"{username}:{}\"\n", password.expose_secret())
        }
        Some(_) => panic!("es_request supports basic auth only"),
        None => String::new(),
    };
    child
        .stdin
        .take()
        .expect("curl's stdin")
        .write_all(config.as_bytes())
        .expect("passing curl its configuration");
    let out = child.wait_with_output().expect("curl finishes");
    assert!(out.status.success(), "curl failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, status) = text.rsplit_once('\n').expect("curl printed the status");
    let status: u16 = status.parse().expect("an HTTP status");
    let answer = if answer.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(answer).unwrap_or_else(|err| {
            panic!("{method} {path}: HTTP {status}, not JSON ({err}): {answer}")
        })
    };
    (status, answer)
}

/// [`es_request`] that must succeed (2xx); returns the answer.
pub fn es_request_ok(
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> serde_json::Value {
    let (status, answer) = es_request(method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: HTTP {status}: {answer}"
    );
    answer
}
