//! Secrets never show: not in `--help`, not in validation output, not in the logs or the run
//! document of a run that fails against an unreachable cluster.

use std::process::Command;

const PASSWORD: &str = "pw-0123-must-not-leak";
const API_KEY: &str = "key-id:key-0456-must-not-leak";

fn seqwatch(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seqwatch"));
    cmd.args(args)
        .current_dir(dir.path())
        .env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("seqwatch runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, API_KEY, "key-0456"] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

#[test]
fn help_shows_no_secret() {
    let env = [
        ("SEQWATCH_ES_PASSWORD", PASSWORD),
        ("SEQWATCH_ES_API_KEY", API_KEY),
    ];
    for args in [
        &["--help"][..],
        &["once", "--help"],
        &["run", "--help"],
        &["backfill", "--help"],
    ] {
        let (code, text) = seqwatch(args, &env);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert!(text.contains("Usage"), "{text}");
        assert_clean(&format!("{args:?}"), &text);
    }
}

#[test]
fn failed_runs_and_validation_show_no_secret() {
    let basic = [
        ("SEQWATCH_ELASTICSEARCH__URL", "http://127.0.0.1:1"),
        ("SEQWATCH_ELASTICSEARCH__USERNAME", "seqwatch"),
        ("SEQWATCH_ELASTICSEARCH__REQUEST_TIMEOUT", "2s"),
        ("SEQWATCH_ELASTICSEARCH__MAX_RETRIES", "0"),
        ("SEQWATCH_ES_PASSWORD", PASSWORD),
    ];
    let (code, text) = seqwatch(&["--log-format", "json", "once"], &basic);
    assert_eq!(code, 1, "an unreachable cluster fails the run: {text}");
    assert!(
        text.contains("\"status\": \"failed\""),
        "the run document is printed: {text}"
    );
    assert!(
        text.contains("127.0.0.1:1"),
        "the error names the node: {text}"
    );
    assert_clean("once (basic auth)", &text);

    let (code, text) = seqwatch(&["validate", "--check-es"], &basic);
    assert_eq!(code, 1, "{text}");
    assert_clean("validate --check-es", &text);

    let key = [
        ("SEQWATCH_ELASTICSEARCH__URL", "http://127.0.0.1:1"),
        ("SEQWATCH_ELASTICSEARCH__REQUEST_TIMEOUT", "2s"),
        ("SEQWATCH_ELASTICSEARCH__MAX_RETRIES", "0"),
        ("SEQWATCH_ES_API_KEY", API_KEY),
    ];
    let (code, text) = seqwatch(&["once"], &key);
    assert_eq!(code, 1, "{text}");
    assert_clean("once (API key)", &text);
}

#[test]
fn credentials_in_the_url_are_refused_without_echoing_them() {
    let (code, text) = seqwatch(
        &["validate"],
        &[(
            "SEQWATCH_ELASTICSEARCH__URL",
            "http://elastic:hunter2-xyz@127.0.0.1:9200",
        )],
    );
    assert_ne!(code, 0);
    assert!(
        text.contains("elasticsearch.url"),
        "the key is named: {text}"
    );
    assert!(!text.contains("hunter2-xyz"), "{text}");
}

/// A stand-in for Elasticsearch on 127.0.0.1 that answers every request with a green cluster
/// health and records each request's `Authorization` header (`None` when absent).
fn header_recorder() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
            let (mut auth, mut length) = (None, 0usize);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "authorization" => auth = Some(value.trim().to_owned()),
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            record.lock().expect("the record").push(auth);
            let answer = r#"{"cluster_name":"recorder","status":"green","number_of_nodes":1}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, seen)
}

/// The exact header an API key becomes, in both accepted forms and from both sources
/// (`SEQWATCH_ES_API_KEY`, `elasticsearch.api_key_file` with a trailing newline):
/// `Authorization: ApiKey base64(id:key)`, Elasticsearch's scheme. The key itself is never
/// printed. (Real keys against a real node: tests/es_privileges.rs.)
#[test]
fn api_keys_are_sent_as_the_apikey_authorization_header() {
    let (id, key) = ("sw-key-id", "sw-key-secret-1618");
    let encoded = seqwatch_base64(format!("{id}:{key}").as_bytes());
    let expected = format!("ApiKey {encoded}");
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{encoded}\n")).expect("writing the key file");
    let from_env = [("SEQWATCH_ES_API_KEY", format!("{id}:{key}"))];
    let from_env_encoded = [("SEQWATCH_ES_API_KEY", encoded.clone())];
    let from_file = [(
        "SEQWATCH_ELASTICSEARCH__API_KEY_FILE",
        key_file.display().to_string(),
    )];
    for (what, extra) in [
        ("id:key in SEQWATCH_ES_API_KEY", &from_env[..]),
        ("encoded in SEQWATCH_ES_API_KEY", &from_env_encoded[..]),
        ("encoded in api_key_file", &from_file[..]),
    ] {
        let (url, seen) = header_recorder();
        let mut env = vec![
            ("SEQWATCH_ELASTICSEARCH__URL", url.clone()),
            ("SEQWATCH_ELASTICSEARCH__MAX_RETRIES", "0".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_, text) = seqwatch(&["validate", "--check-es"], &env);
        let seen = seen.lock().expect("the record").clone();
        assert!(
            !seen.is_empty(),
            "{what}: no request reached the recorder:\n{text}"
        );
        for header in &seen {
            assert_eq!(header.as_deref(), Some(expected.as_str()), "{what}");
        }
        for secret in [key, encoded.as_str()] {
            assert!(
                !text.contains(secret),
                "{what}: the output shows the key:\n{text}"
            );
        }
    }
}

fn seqwatch_base64(bytes: &[u8]) -> String {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    BASE64_STANDARD.encode(bytes)
}

/// `Debug` of every type that holds or leads to credentials shows none of them, so neither a
/// `{:?}` in a log line nor a panic message that carries one can leak a secret. The panic is
/// real: its message goes through a panic hook that captures what would be printed.
#[test]
fn debug_output_and_panics_show_no_secret() {
    use secrecy::SecretString;
    use seqwatch::es::{EsAuth, EsClient, EsSettings};
    let auths = [
        EsAuth::Basic {
            username: "seqwatch".into(),
            password: SecretString::from(PASSWORD.to_owned()),
        },
        EsAuth::ApiKey {
            id: "key-id".into(),
            key: SecretString::from("key-0456-must-not-leak".to_owned()),
        },
        EsAuth::EncodedApiKey(SecretString::from(seqwatch_base64(API_KEY.as_bytes()))),
    ];
    let encoded = seqwatch_base64(API_KEY.as_bytes());
    for auth in auths {
        let mut settings = EsSettings::new("https://127.0.0.1:9200");
        settings.auth = Some(auth.clone());
        settings.ca_pem = Some(b"-----BEGIN CERTIFICATE-----\n".to_vec());
        let client = EsClient::connect(&settings).map(|c| format!("{c:?}"));
        let debug = format!("{auth:?} {settings:?} {client:?} {settings:#?}");
        assert_clean("Debug of EsAuth/EsSettings/EsClient", &debug);
        assert!(!debug.contains(&encoded), "{debug}");

        let captured = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = captured.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            sink.lock().expect("the sink").push_str(&info.to_string());
        }));
        let outcome = std::panic::catch_unwind(|| -> () {
            panic!("forced panic while holding {settings:?}");
        });
        std::panic::set_hook(previous);
        assert!(outcome.is_err(), "the closure panicked");
        let printed = captured.lock().expect("the sink").clone();
        assert!(printed.contains("forced panic"), "{printed}");
        assert_clean("a panic message", &printed);
        assert!(!printed.contains(&encoded), "{printed}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, PASSWORD).expect("writing the password file");
    let mut config = seqwatch::config::Config::default();
    config.elasticsearch.username = Some("seqwatch".into());
    config.elasticsearch.password_file = Some(password_file);
    let secrets = seqwatch::config::Secrets::load(&config.elasticsearch).expect("secrets load");
    let settings = seqwatch::app::es_settings(&config).expect("settings");
    let debug = format!("{config:?} {secrets:?} {settings:?}");
    assert_clean("Debug of Config/Secrets/EsSettings", &debug);
    assert!(
        debug.contains("seqwatch"),
        "the user name is not a secret: {debug}"
    );
}

/// A CA file that is not a certificate is named by its key and path; the run fails before any
/// request, and the credentials do not appear.
#[test]
fn a_bad_ca_file_is_named_and_shows_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").expect("writing the CA file");
    let ca_path = ca.display().to_string();
    let env = [
        ("SEQWATCH_ELASTICSEARCH__URL", "https://127.0.0.1:1"),
        ("SEQWATCH_ELASTICSEARCH__CA_FILE", ca_path.as_str()),
        ("SEQWATCH_ELASTICSEARCH__USERNAME", "seqwatch"),
        ("SEQWATCH_ELASTICSEARCH__MAX_RETRIES", "0"),
        ("SEQWATCH_ES_PASSWORD", PASSWORD),
    ];
    let (code, text) = seqwatch(&["once"], &env);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("elasticsearch.ca_file") && text.contains(&ca_path),
        "{text}"
    );
    assert_clean("once with a bad CA file", &text);
}
