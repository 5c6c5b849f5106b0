//! Unit tests of the client against canned HTTP answers from a tiny loopback server: status
//! handling, `_bulk` item outcomes, missing headers, timeouts, and that no error message ever
//! carries a credential. The real-node tests are in `tests/es_foundation.rs`.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

const PASSWORD: &str = "hunter2-do-not-print";

/// A raw HTTP answer; `content_type` None leaves the header out.
fn answer(status: &str, content_type: Option<&str>, body: &str) -> String {
    let content_type = content_type
        .map(|ct| format!("content-type: {ct}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 {status}\r\n{content_type}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `answers` to successive connections, one request each, and returns what it received.
async fn canned_server(answers: Vec<String>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let handle = tokio::spawn(async move {
        let mut requests = Vec::new();
        for canned in answers {
            let (mut socket, _) = listener.accept().await.expect("accept");
            requests.push(read_request(&mut socket).await);
            socket.write_all(canned.as_bytes()).await.expect("write");
            socket.shutdown().await.ok();
        }
        requests
    });
    (url, handle)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

fn client(url: &str) -> EsClient {
    let mut settings = EsSettings::new(url);
    settings.request_timeout = Duration::from_secs(5);
    settings.auth = Some(EsAuth::Basic {
        username: "elastic".into(),
        password: SecretString::from(PASSWORD),
    });
    EsClient::connect(&settings).expect("connect")
}

#[test]
fn urls_with_credentials_or_odd_schemes_are_refused_without_echoing_secrets() {
    for (raw, needle) in [
        (
            format!("http://elastic:{PASSWORD}@127.0.0.1:9200"),
            "credentials",
        ),
        ("ftp://127.0.0.1:9200".to_owned(), "scheme"),
        ("127.0.0.1:9200".to_owned(), "invalid Elasticsearch URL"),
        ("http://127.0.0.1:9200/?pretty".to_owned(), "query"),
    ] {
        let err = EsClient::connect(&EsSettings::new(raw.clone())).expect_err(&raw);
        let text = err.to_string();
        assert!(text.contains(needle), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(matches!(err, EsError::InvalidUrl { .. }));
    }
    assert_eq!(
        redact_url("https://u:p@es.example:9243/base"),
        "https://***@es.example:9243/base"
    );
}

#[test]
fn bad_credentials_are_refused_before_the_crate_can_panic_on_them() {
    let mut settings = EsSettings::new("http://127.0.0.1:9200");
    settings.auth = Some(EsAuth::EncodedApiKey(SecretString::from("abc\ndef")));
    let err = EsClient::connect(&settings).expect_err("newline in key");
    assert!(matches!(err, EsError::InvalidCredentials { .. }));
    assert!(!err.to_string().contains("abc"));
    settings.auth = Some(EsAuth::Basic {
        username: "a:b".into(),
        password: SecretString::from(PASSWORD),
    });
    assert!(EsClient::connect(&settings).is_err());
    settings.request_timeout = Duration::ZERO;
    settings.auth = None;
    assert!(EsClient::connect(&settings).is_err());
}

#[test]
fn debug_of_settings_and_client_hides_secrets() {
    let mut settings = EsSettings::new("http://127.0.0.1:9200");
    settings.auth = Some(EsAuth::Basic {
        username: "elastic".into(),
        password: SecretString::from(PASSWORD),
    });
    let client = EsClient::connect(&settings).expect("connect");
    assert!(!format!("{settings:?}").contains(PASSWORD));
    assert!(!format!("{client:?}").contains(PASSWORD));
}

#[tokio::test]
async fn health_is_parsed_and_sends_basic_auth() {
    let body = r#"{"cluster_name":"c","status":"yellow","number_of_nodes":1,"timed_out":false}"#;
    let (url, server) = canned_server(vec![answer("200 OK", Some("application/json"), body)]).await;
    let health = client(&url).health().await.expect("health");
    assert_eq!(health.status, HealthStatus::Yellow);
    assert_eq!(health.number_of_nodes, 1);
    let requests = server.await.expect("server");
    assert!(
        requests[0].starts_with("GET /_cluster/health "),
        "{}",
        requests[0]
    );
    assert!(requests[0]
        .to_ascii_lowercase()
        .contains("authorization: basic "));
}

/// Compressed answers only when asked for: next to the node, gzip costs more CPU than the
/// bytes it saves (`EsSettings::compress_responses`).
#[tokio::test]
async fn answers_are_uncompressed_unless_compression_is_asked_for() {
    let body = r#"{"cluster_name":"c","status":"green","number_of_nodes":1,"timed_out":false}"#;
    for (compress, expected) in [
        (false, "accept-encoding: identity"),
        (true, "accept-encoding: gzip"),
    ] {
        let (url, server) =
            canned_server(vec![answer("200 OK", Some("application/json"), body)]).await;
        let mut settings = EsSettings::new(url);
        settings.compress_responses = compress;
        let es = EsClient::connect(&settings).expect("connect");
        es.health().await.expect("health");
        let requests = server.await.expect("server");
        let request = requests[0].to_ascii_lowercase();
        assert!(request.contains(expected), "compress {compress}: {request}");
        assert_eq!(request.matches("accept-encoding:").count(), 1, "{request}");
    }
}

#[tokio::test]
async fn http_errors_are_typed_and_carry_no_credentials() {
    let body = r#"{"error":{"root_cause":[],"type":"security_exception","reason":"unable to authenticate user [elastic] for REST request [/_cluster/health]"},"status":401}"#;
    let (url, server) = canned_server(vec![
        answer("401 Unauthorized", Some("application/json"), body),
        answer(
            "405 Method Not Allowed",
            Some("application/json"),
            r#"{"error":"Incorrect HTTP method","status":405}"#,
        ),
        answer(
            "502 Bad Gateway",
            Some("text/html"),
            "<html>proxy says no</html>",
        ),
    ])
    .await;
    let es = client(&url);
    let err = es.health().await.expect_err("401");
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.error_type(), Some("security_exception"));
    assert!(
        err.to_string().contains("HTTP 401 (security_exception)"),
        "{err}"
    );
    assert!(!err.to_string().contains(PASSWORD));
    assert!(!format!("{err:?}").contains(PASSWORD));

    let err = es
        .count("x", &json!({"match_all": {}}))
        .await
        .expect_err("405");
    assert_eq!(err.status(), Some(405));
    assert!(err.to_string().contains("Incorrect HTTP method"), "{err}");

    let err = es.refresh("x").await.expect_err("502");
    assert_eq!(err.status(), Some(502));
    assert!(err.to_string().contains("proxy says no"), "{err}");
    server.await.expect("server");
}

/// The crate's `Response::content_type()` unwraps the header; we must never go through it.
#[tokio::test]
async fn answers_without_content_type_or_json_do_not_panic() {
    let (url, server) = canned_server(vec![
        answer("200 OK", None, r#"{"count":3,"_shards":{"failed":0}}"#),
        answer("200 OK", None, "not json at all"),
    ])
    .await;
    let es = client(&url);
    assert_eq!(
        es.count("x", &json!({"match_all": {}}))
            .await
            .expect("count"),
        3
    );
    let err = es
        .count("x", &json!({"match_all": {}}))
        .await
        .expect_err("not json");
    assert!(matches!(err, EsError::Response { .. }), "{err}");
    server.await.expect("server");
}

fn ops() -> Vec<BulkCreate> {
    ["a", "b", "c", "d"]
        .iter()
        .map(|id| {
            BulkCreate::new(
                "logs-x",
                *id,
                json!({"@timestamp": "2026-01-01T00:00:00Z", "n": id}),
            )
        })
        .collect()
}

/// HTTP 200 with `errors: true` is not success: each item is judged by its own status.
#[tokio::test]
async fn bulk_reads_each_item_created_duplicate_or_failed() {
    let body = json!({
        "errors": true,
        "items": [
            {"create": {"_index": "logs-x", "_id": "a", "status": 201}},
            {"create": {"_index": "logs-x", "_id": "b", "status": 409,
                "error": {"type": "version_conflict_engine_exception", "reason": "[b]: version conflict, document already exists"}}},
            {"create": {"_index": "logs-x", "_id": "c", "status": 400,
                "error": {"type": "document_parsing_exception", "reason": "failed to parse field [n]"}}},
            {"create": {"_index": "logs-x", "_id": "d", "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "rejected"}}}
        ]
    });
    let (url, server) = canned_server(vec![answer("200 OK", None, &body.to_string())]).await;
    let items = client(&url)
        .bulk_create(&ops())
        .await
        .expect("bulk answered");
    let outcomes: Vec<_> = items.iter().map(|item| &item.outcome).collect();
    assert_eq!(outcomes[0], &BulkOutcome::Created);
    assert_eq!(outcomes[1], &BulkOutcome::AlreadyExists);
    assert!(
        matches!(outcomes[2], BulkOutcome::Failed { status: 400, error_type, .. } if error_type == "document_parsing_exception")
    );
    assert!(!outcomes[2].is_retryable());
    assert!(outcomes[3].is_retryable());
    assert_eq!(
        BulkSummary::of(&items),
        BulkSummary {
            created: 1,
            already_existed: 1,
            failed: 2
        }
    );

    let request = &server.await.expect("server")[0];
    assert!(request.starts_with("POST /_bulk?filter_path="), "{request}");
    let ndjson = request.split("\r\n\r\n").nth(1).expect("body");
    let lines: Vec<&str> = ndjson.lines().collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(
        serde_json::from_str::<Value>(lines[0]).expect("action"),
        json!({"create": {"_index": "logs-x", "_id": "a"}})
    );
    assert_eq!(
        serde_json::from_str::<Value>(lines[7]).expect("doc")["n"],
        "d"
    );
}

#[tokio::test]
async fn bulk_answers_that_do_not_match_the_request_are_errors() {
    let short = json!({"errors": false, "items": [{"create": {"_id": "a", "status": 201}}]});
    let swapped = json!({"errors": false, "items": [
        {"create": {"_id": "b", "status": 201}}, {"create": {"_id": "a", "status": 201}},
        {"create": {"_id": "c", "status": 201}}, {"create": {"_id": "d", "status": 201}}]});
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), &short.to_string()),
        answer("200 OK", Some("application/json"), &swapped.to_string()),
        answer("413 Payload Too Large", Some("application/json"), ""),
    ])
    .await;
    let es = client(&url);
    let err = es.bulk_create(&ops()).await.expect_err("short");
    assert!(
        err.to_string()
            .contains("4 operations sent but 1 items answered"),
        "{err}"
    );
    let err = es.bulk_create(&ops()).await.expect_err("swapped");
    assert!(err.to_string().contains("answers id `b`"), "{err}");
    let err = es.bulk_create(&ops()).await.expect_err("413");
    assert_eq!(err.status(), Some(413));
    server.await.expect("server");
}

#[tokio::test]
async fn bulk_refuses_bad_operations_before_sending() {
    let es = client("http://127.0.0.1:9");
    assert!(es
        .bulk_create(&[])
        .await
        .expect("empty is a no-op")
        .is_empty());
    let long_id = "x".repeat(MAX_ID_BYTES + 1);
    for op in [
        BulkCreate::new("logs-x", "", json!({})),
        BulkCreate::new("logs-x", long_id, json!({})),
        BulkCreate::new("", "a", json!({})),
        BulkCreate::new("logs-x", "a", json!([1, 2])),
    ] {
        let err = es.bulk_create(&[op]).await.expect_err("invalid");
        assert!(matches!(err, EsError::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().starts_with("bulk operation 0"), "{err}");
    }
}

#[tokio::test]
async fn unreachable_node_is_a_transport_error_naming_the_url() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let err = client(&url).health().await.expect_err("closed port");
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(!err.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn a_silent_node_times_out_after_the_request_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let mut settings = EsSettings::new(url);
    settings.request_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = EsClient::connect(&settings)
        .expect("connect")
        .health()
        .await
        .expect_err("timeout");
    assert!(matches!(err, EsError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.abort();
}

#[test]
fn names_that_would_change_the_request_path_are_refused() {
    for name in ["", "a/b", "a?b", "a b", "a#b", "../x"] {
        assert!(check_name("index", name).is_err(), "{name:?}");
    }
    for name in [
        "logs-endpoint.events.process-*",
        ".seqwatch-alerts-default",
        "a,b",
    ] {
        assert!(check_name("index", name).is_ok(), "{name:?}");
    }
}

fn retrying_client(url: &str, retries: u32) -> EsClient {
    let mut settings = EsSettings::new(url);
    settings.request_timeout = Duration::from_secs(5);
    settings.max_retries = retries;
    settings.retry_base = Duration::from_millis(20);
    EsClient::connect(&settings).expect("connect")
}

const HEALTH: &str = r#"{"cluster_name":"c","status":"green","number_of_nodes":1}"#;

#[tokio::test]
async fn transient_statuses_are_retried_until_an_answer_comes() {
    let (url, server) = canned_server(vec![
        answer("503 Service Unavailable", Some("application/json"), "{}"),
        answer("502 Bad Gateway", None, "bad gateway"),
        answer("504 Gateway Timeout", None, ""),
        answer("200 OK", Some("application/json"), HEALTH),
    ])
    .await;
    let health = retrying_client(&url, 5)
        .health()
        .await
        .expect("healthy after retries");
    assert_eq!(health.cluster_name, "c");
    assert_eq!(
        server.await.expect("server").len(),
        4,
        "three retries, then the answer"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let throttled = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_owned();
    let (url, server) = canned_server(vec![
        throttled,
        answer("200 OK", Some("application/json"), HEALTH),
    ])
    .await;
    let started = std::time::Instant::now();
    retrying_client(&url, 3)
        .health()
        .await
        .expect("healthy after the wait");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.await.expect("server").len(), 2);
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_failure_is_returned() {
    let (url, server) = canned_server(vec![
        answer("503 Service Unavailable", Some("application/json"), "{}"),
        answer("503 Service Unavailable", Some("application/json"), "{}"),
        answer("503 Service Unavailable", Some("application/json"), "{}"),
    ])
    .await;
    let err = retrying_client(&url, 2)
        .health()
        .await
        .expect_err("still unavailable");
    assert_eq!(err.status(), Some(503));
    assert_eq!(
        server.await.expect("server").len(),
        3,
        "one attempt and two retries"
    );
}

#[tokio::test]
async fn answers_that_say_no_are_not_retried() {
    let (url, server) = canned_server(vec![answer(
        "400 Bad Request",
        Some("application/json"),
        r#"{"error":{"type":"parsing_exception","reason":"bad"},"status":400}"#,
    )])
    .await;
    let err = retrying_client(&url, 5).health().await.expect_err("400");
    assert_eq!(err.status(), Some(400));
    assert_eq!(server.await.expect("server").len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let started = std::time::Instant::now();
    let err = retrying_client(&format!("http://127.0.0.1:{port}"), 2)
        .health()
        .await
        .expect_err("closed");
    assert!(err.is_unreachable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded backoff"
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    for attempt in 1..=20 {
        let wait = backoff(Duration::from_millis(100), attempt);
        let ceiling = Duration::from_millis(100)
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(MAX_BACKOFF);
        assert!(wait <= ceiling, "attempt {attempt}: {wait:?} > {ceiling:?}");
    }
}

#[tokio::test]
async fn an_unreadable_source_is_one_skipped_hit_not_a_failed_page() {
    // 300 levels: beyond serde_json's recursion limit of 128 for a `Value`.
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let page = format!(
        r#"{{"pit_id":"p2","timed_out":false,"_shards":{{"total":1,"successful":1,"failed":0}},
            "hits":{{"hits":[
              {{"_index":"i","_id":"deep","_source":{{"process":{{"name":{deep}}}}},"sort":[1,1]}},
              {{"_index":"i","_id":"fine","_source":{{"process":{{"name":"node"}}}},"sort":[2,2]}}]}}}}"#
    );
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), r#"{"id":"p1"}"#),
        answer("200 OK", Some("application/json"), &page),
    ])
    .await;
    let es = client(&url);
    let mut pager = es
        .open_pager(
            &["i".to_owned()],
            "1m",
            10,
            json!({"match_all": {}}),
            &[],
            json!([]),
        )
        .await
        .expect("pit opens");
    let hits = es
        .next_page(&mut pager)
        .await
        .expect("the page is read")
        .expect("hits");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, "deep");
    assert!(
        hits[0]
            .source_error
            .as_deref()
            .is_some_and(|e| e.contains("_source cannot be read")),
        "{:?}",
        hits[0].source_error
    );
    assert_eq!(hits[1].source, json!({"process": {"name": "node"}}));
    assert_eq!(hits[1].source_error, None);
    let requests = server.await.expect("server");
    assert!(
        requests[1].contains("\"pit\""),
        "the page request carries the point in time"
    );
}

/// The body Elasticsearch 9.0.0 answers to a page whose point in time was closed (measured on
/// a real node: `DELETE _pit`, then `POST _search` with the id).
const PIT_GONE: &str = r#"{"error":{"root_cause":[{"type":"search_context_missing_exception","reason":"No search context found for id [1]"}],"type":"search_phase_execution_exception","reason":"all shards failed","phase":"query","grouped":true,"failed_shards":[{"shard":0,"index":"i","node":"n","reason":{"type":"search_context_missing_exception","reason":"No search context found for id [1]"}}]},"status":404}"#;

#[tokio::test]
async fn a_point_in_time_gone_mid_paging_is_named_as_such_and_not_retried() {
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), r#"{"id":"p1"}"#),
        answer("404 Not Found", Some("application/json"), PIT_GONE),
    ])
    .await;
    let es = retrying_client(&url, 3);
    let mut pager = es
        .open_pager(
            &["i".to_owned()],
            "1m",
            10,
            json!({"match_all": {}}),
            &[],
            json!([]),
        )
        .await
        .expect("pit opens");
    let err = es.next_page(&mut pager).await.expect_err("the pit is gone");
    let text = err.to_string();
    assert!(
        text.contains("the point in time expired or was closed before paging finished")
            && text.contains("No search context found for id [1]")
            && text.contains("pit_keep_alive"),
        "{text}"
    );
    assert_eq!(
        server.await.expect("server").len(),
        2,
        "a 404 is not retried"
    );
}

#[tokio::test]
async fn an_umbrella_error_names_its_root_cause() {
    let (url, _server) = canned_server(vec![answer(
        "404 Not Found",
        Some("application/json"),
        PIT_GONE,
    )])
    .await;
    let err = client(&url).health().await.expect_err("404");
    assert_eq!(err.error_type(), Some("search_phase_execution_exception"));
    let text = err.to_string();
    assert!(
        text.contains("all shards failed (root cause: search_context_missing_exception: No search context found for id [1])"),
        "{text}"
    );
}

/// The wait between `_bulk` item retries (job.rs) is the client's jittered exponential
/// backoff: within the doubling ceiling, and not one fixed value.
#[test]
fn retry_backoff_is_jittered_within_its_ceiling() {
    let es = retrying_client("http://127.0.0.1:9", 3);
    let mut seen = std::collections::BTreeSet::new();
    for attempt in 1..=4u32 {
        for _ in 0..50 {
            let wait = es.retry_backoff(attempt);
            assert!(
                wait <= Duration::from_millis(20 << (attempt - 1)),
                "{wait:?}"
            );
            seen.insert(wait);
        }
    }
    assert!(seen.len() > 10, "jittered: {} distinct waits", seen.len());
}

/// `_resolve/index` names the data streams with their backing indices (as 9.5.0 and 8.19.21
/// answer it); plain indices and aliases are not data streams.
#[tokio::test]
async fn data_streams_are_resolved_with_their_backing_indices() {
    let resolved = r#"{"indices":[{"name":"plain","attributes":["open"]}],"aliases":[],"data_streams":[{"name":"logs-x-default","backing_indices":[".ds-logs-x-default-2026.12.08-000001",".ds-logs-x-default-2026.12.08-000002"],"timestamp_field":"@timestamp"}]}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), resolved),
        answer(
            "200 OK",
            Some("application/json"),
            r#"{"indices":[],"aliases":[]}"#,
        ),
    ])
    .await;
    let es = client(&url);
    let streams = es.data_streams("logs-x-*,plain").await.expect("resolve");
    assert_eq!(
        streams,
        [DataStream {
            name: "logs-x-default".into(),
            backing_indices: vec![
                ".ds-logs-x-default-2026.12.08-000001".into(),
                ".ds-logs-x-default-2026.12.08-000002".into()
            ],
        }]
    );
    assert!(es.data_streams("none*").await.expect("resolve").is_empty());
    let requests = server.await.expect("server");
    assert!(
        requests[0].starts_with(
            "GET /_resolve/index/logs-x-*,plain?expand_wildcards=all&ignore_unavailable=true "
        ),
        "{}",
        requests[0]
    );
}

/// A rollover names the old and the new write index; an answer that did not roll over, or a
/// refusal, is an error.
#[tokio::test]
async fn a_rollover_names_the_new_write_index_and_a_refusal_is_an_error() {
    let rolled = r#"{"acknowledged":true,"shards_acknowledged":true,"old_index":".ds-s-2026.12.08-000001","new_index":".ds-s-2026.12.08-000002","rolled_over":true,"dry_run":false,"lazy":false,"conditions":{}}"#;
    let lazy = r#"{"acknowledged":true,"old_index":".ds-s-2026.12.08-000002","new_index":".ds-s-2026.12.08-000003","rolled_over":false,"dry_run":false,"lazy":true,"conditions":{}}"#;
    let missing = r#"{"error":{"root_cause":[],"type":"index_not_found_exception","reason":"no such index [t]"},"status":404}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), rolled),
        answer("200 OK", Some("application/json"), lazy),
        answer("404 Not Found", Some("application/json"), missing),
    ])
    .await;
    let es = client(&url);
    let rollover = es.rollover("s").await.expect("rollover");
    assert_eq!(rollover.old_index, ".ds-s-2026.12.08-000001");
    assert_eq!(rollover.new_index, ".ds-s-2026.12.08-000002");
    let not_rolled = es.rollover("s").await.expect_err("not rolled over");
    assert!(
        not_rolled.to_string().contains("did not roll over"),
        "{not_rolled}"
    );
    let refused = es.rollover("t").await.expect_err("no such stream");
    assert_eq!(refused.status(), Some(404), "{refused}");
    assert!(es.rollover("a/b").await.is_err(), "a name with a slash");
    let requests = server.await.expect("server");
    assert!(
        requests[0].starts_with("POST /s/_rollover "),
        "{}",
        requests[0]
    );
}

/// Deduplication reads alert ids with `_mget`, which is real time: alerts written without a
/// refresh are seen, so the alert bulk needs no `refresh=wait_for`.
#[tokio::test]
async fn existing_ids_are_read_in_real_time_and_a_missing_index_means_none() {
    let found = r#"{"docs":[{"_index":"a","_id":"x","found":true},{"_index":"a","_id":"y","found":false}]}"#;
    let missing = r#"{"docs":[{"_index":"a","_id":"x","error":{"type":"index_not_found_exception","reason":"no such index [a]"}}]}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), found),
        answer("200 OK", Some("application/json"), missing),
    ])
    .await;
    let es = client(&url);
    let (ids, how) = es
        .existing_ids_realtime("a", &["x".to_owned(), "y".to_owned()])
        .await
        .expect("read");
    assert_eq!(ids, std::collections::HashSet::from(["x".to_owned()]));
    assert_eq!(how, IdLookup::Realtime);
    let (ids, how) = es
        .existing_ids_realtime("a", &["x".to_owned()])
        .await
        .expect("a missing index is no alert");
    assert!(ids.is_empty());
    assert_eq!(how, IdLookup::Realtime);
    let requests = server.await.expect("server");
    assert!(requests[0].starts_with("POST /a/_mget"), "{}", requests[0]);
}

/// The enrichment search: each hit's `fields`; a missing index is `None`; a refusal, a failed
/// shard or a timeout is an error (a half-read answer would enrich some alerts and not others).
#[tokio::test]
async fn enrichment_searches_read_fields_and_a_missing_index_is_none() {
    let hits = r#"{"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"hits":[
        {"_index":"risk-score.risk-score-latest-default","_id":"1","fields":{"host.name":["h1"],"host.risk.calculated_level":["High"]}},
        {"_index":"risk-score.risk-score-latest-default","_id":"2"}]}}"#;
    let missing = r#"{"error":{"type":"index_not_found_exception","reason":"no such index [risk-score.risk-score-latest-default]"},"status":404}"#;
    let refused = r#"{"error":{"type":"security_exception","reason":"action [indices:data/read/search] is unauthorized"},"status":403}"#;
    let shard_failed = r#"{"timed_out":false,"_shards":{"total":1,"successful":0,"skipped":0,"failed":1},"hits":{"hits":[]}}"#;
    let timed_out = r#"{"timed_out":true,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"hits":[]}}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), hits),
        answer("404 Not Found", Some("application/json"), missing),
        answer("403 Forbidden", Some("application/json"), refused),
        answer("200 OK", Some("application/json"), shard_failed),
        answer("200 OK", Some("application/json"), timed_out),
    ])
    .await;
    let es = client(&url);
    let index = "risk-score.risk-score-latest-default";
    let body = json!({"size": 1, "query": {"match_all": {}}});
    let found = es
        .search_fields(index, &body)
        .await
        .expect("read")
        .expect("the index exists");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0]["host.risk.calculated_level"], json!(["High"]));
    assert!(found[1].is_empty(), "a hit without fields is an empty map");
    assert_eq!(es.search_fields(index, &body).await.expect("404"), None);
    let error = es.search_fields(index, &body).await.expect_err("403");
    assert_eq!(error.status(), Some(403));
    for what in ["a failed shard", "a timeout"] {
        let error = es.search_fields(index, &body).await.expect_err(what);
        assert!(matches!(error, EsError::Response { .. }), "{what}: {error}");
    }
    let requests = server.await.expect("server");
    assert!(
        requests[0].starts_with(&format!("POST /{index}/_search ")),
        "{}",
        requests[0]
    );
    assert!(requests[0].ends_with(&body.to_string()), "{}", requests[0]);
}

/// An alias over several indices (Kibana's alerts alias after a rollover) cannot be read by
/// `_mget`; the lookup searches instead and says so, so the writes wait for a refresh.
#[tokio::test]
async fn an_alias_over_several_indices_is_searched_and_said_so() {
    let refused = r#"{"docs":[{"_index":"al","_id":"x","error":{"type":"illegal_argument_exception","reason":"alias [al] has more than one index associated with it [i1, i2], can't execute a single index op"}}]}"#;
    let searched = r#"{"_shards":{"total":1,"successful":1,"failed":0},"hits":{"hits":[{"_index":"i1","_id":"x"}]}}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), refused),
        answer("200 OK", Some("application/json"), searched),
    ])
    .await;
    let es = client(&url);
    let (ids, how) = es
        .existing_ids_realtime("al", &["x".to_owned()])
        .await
        .expect("read");
    assert_eq!(ids, std::collections::HashSet::from(["x".to_owned()]));
    assert_eq!(how, IdLookup::Searched);
    let requests = server.await.expect("server");
    assert!(
        requests[1].starts_with("POST /al/_search"),
        "{}",
        requests[1]
    );
}

/// Any other per-document failure (a missing privilege, say) fails the lookup: deduplication
/// never quietly sees nothing.
#[tokio::test]
async fn an_unreadable_alerts_target_fails_the_lookup() {
    let denied = r#"{"docs":[{"_index":"a","_id":"x","error":{"type":"security_exception","reason":"action [indices:data/read/mget[shard]] is unauthorized"}}]}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), denied),
        answer(
            "403 Forbidden",
            Some("application/json"),
            r#"{"error":{"type":"security_exception","reason":"unauthorized"},"status":403}"#,
        ),
    ])
    .await;
    let es = client(&url);
    let err = es
        .existing_ids_realtime("a", &["x".to_owned()])
        .await
        .expect_err("a refused item fails");
    assert!(err.to_string().contains("unauthorized"), "{err}");
    let err = es
        .existing_ids_realtime("a", &["x".to_owned()])
        .await
        .expect_err("a refused request fails");
    assert!(err.to_string().contains("403"), "{err}");
    server.await.expect("server");
}

/// An alerts index another run has just created answers with a shard error until its primary
/// has started: the lookup asks again instead of failing the run.
#[tokio::test]
async fn an_alerts_index_without_a_started_primary_is_asked_again() {
    let starting = r#"{"docs":[{"_index":"a","_id":"x","error":{"type":"no_shard_available_action_exception","reason":"No shard available"}}]}"#;
    let found = r#"{"docs":[{"_index":"a","_id":"x","found":true}]}"#;
    let (url, server) = canned_server(vec![
        answer("200 OK", Some("application/json"), starting),
        answer("200 OK", Some("application/json"), found),
    ])
    .await;
    let es = client(&url);
    let (ids, how) = es
        .existing_ids_realtime("a", &["x".to_owned()])
        .await
        .expect("read on the second attempt");
    assert_eq!(ids, std::collections::HashSet::from(["x".to_owned()]));
    assert_eq!(how, IdLookup::Realtime);
    assert_eq!(server.await.expect("server").len(), 2);
}

/// The privilege check fails closed: only Elasticsearch's own answer of a node with security
/// off (`is_security_off_answer`) means "nothing to check". Every other refusal is an error,
/// even one whose text mentions security.
#[tokio::test]
async fn the_privilege_check_reads_only_the_security_off_answer_as_no_security() {
    let security_off = r#"{"error":"no handler found for uri [/_security/user/_has_privileges] and method [POST]"}"#;
    let (url, server) = canned_server(vec![answer(
        "400 Bad Request",
        Some("application/json"),
        security_off,
    )])
    .await;
    let found = client(&url)
        .missing_privileges(&["monitor"], &[(vec!["logs-*".to_owned()], vec!["read"])])
        .await
        .expect("the security-off answer is not an error");
    assert_eq!(found, None);
    let requests = server.await.expect("server");
    assert!(
        requests[0].starts_with("POST /_security/user/_has_privileges HTTP/1.1\r\n"),
        "{}",
        requests[0]
    );

    let refusals = [
        // A malformed request: a 400 that names security for another reason.
        (
            "400 Bad Request",
            r#"{"error":{"root_cause":[{"type":"x_content_parse_exception","reason":"[1:2] [has_privileges_request] unknown field [clusters]"}],"type":"x_content_parse_exception","reason":"[1:2] [has_privileges_request] unknown field [clusters]"},"status":400}"#,
            Some(400),
        ),
        (
            "400 Bad Request",
            r#"{"error":{"root_cause":[],"type":"illegal_argument_exception","reason":"security is disabled for this realm"},"status":400}"#,
            Some(400),
        ),
        (
            "403 Forbidden",
            r#"{"error":{"root_cause":[],"type":"security_exception","reason":"action [cluster:admin/xpack/security/user/has_privileges] is unauthorized for user [x]"},"status":403}"#,
            Some(403),
        ),
        (
            "401 Unauthorized",
            r#"{"error":{"root_cause":[],"type":"security_exception","reason":"unable to authenticate user [elastic] for REST request [/_security/user/_has_privileges]"},"status":401}"#,
            Some(401),
        ),
        // Not Elasticsearch's answer: it never says 404 for a missing handler.
        ("404 Not Found", "<html>not found</html>", Some(404)),
        (
            "405 Method Not Allowed",
            r#"{"error":"Incorrect HTTP method","status":405}"#,
            Some(405),
        ),
        // "No handler" for another path or method, or with more in it, is not this answer.
        (
            "400 Bad Request",
            r#"{"error":"no handler found for uri [/_security/user/_has_privileges] and method [GET]"}"#,
            Some(400),
        ),
        (
            "400 Bad Request",
            r#"{"error":"no handler found for uri [/proxy/_security/user/_has_privileges] and method [POST]"}"#,
            Some(400),
        ),
        (
            "400 Bad Request",
            r#"{"error":"no handler found for uri [/_security/user/_has_privileges] and method [POST]","status":400}"#,
            Some(400),
        ),
        (
            "400 Bad Request",
            "no handler found for uri [/_security/user/_has_privileges] and method [POST]",
            Some(400),
        ),
        (
            "500 Internal Server Error",
            r#"{"error":{"root_cause":[],"type":"illegal_state_exception","reason":"Security is not enabled but a security rest handler is registered"},"status":500}"#,
            Some(500),
        ),
    ];
    let (url, server) = canned_server(
        refusals
            .iter()
            .map(|(status, body, _)| answer(status, Some("application/json"), body))
            .collect(),
    )
    .await;
    let es = client(&url);
    for (status, body, expected) in refusals {
        let err = es
            .missing_privileges(&["monitor"], &[])
            .await
            .expect_err(&format!("{status} {body} must fail the check"));
        assert_eq!(err.status(), expected, "{status} {body}: {err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");
    }
    server.await.expect("server");
}

/// `encode_path_segment` gives what the hand-written encoder of document ids gave: unreserved
/// bytes as they are, every other byte as upper-case `%XX`.
#[test]
fn path_segments_are_percent_encoded_as_before() {
    let by_hand = |id: &str| -> String {
        id.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    for id in [
        "",
        "_JXO_iAKzfv-wGk9m6Cc",
        "a/b?c#d e%f+g",
        "esc\"aped\u{e9}",
        "\u{1F600}~.",
        "..",
    ] {
        assert_eq!(encode_path_segment(id), by_hand(id), "{id:?}");
    }
    assert_eq!(encode_path_segment("a/b é"), "a%2Fb%20%C3%A9");
    proptest::proptest!(|(id in ".{0,40}")| {
        proptest::prop_assert_eq!(encode_path_segment(&id), by_hand(&id));
    });
}

/// The answer of 9.5.0 and 8.19.21 (integ-test distribution) to a probe of a type they lack.
fn unknown_type_answer(field_type: &str) -> String {
    let cause = format!(
        "The mapper type [{field_type}] declared on field [probe] does not exist. It might have \
         been created within a future version or requires a plugin to be installed. Check the \
         documentation."
    );
    let body = json!({"error": {
        "root_cause": [{"type": "illegal_argument_exception", "reason": "composable template [simulate_template_x] template after composition is invalid"}],
        "type": "illegal_argument_exception",
        "reason": "composable template [simulate_template_x] template after composition is invalid",
        "caused_by": {"type": "illegal_argument_exception", "reason": "invalid composite mappings for [simulate_template_x]",
            "caused_by": {"type": "mapper_parsing_exception", "reason": format!("Failed to parse mapping: {cause}"),
                "caused_by": {"type": "mapper_parsing_exception", "reason": cause}}}},
        "status": 400});
    answer(
        "400 Bad Request",
        Some("application/json"),
        &body.to_string(),
    )
}

#[tokio::test]
async fn field_types_are_probed_one_by_one_and_only_their_absence_gives_them_up() {
    let simulated = answer(
        "200 OK",
        Some("application/json"),
        r#"{"template":{"settings":{},"mappings":{},"aliases":{}},"overlapping":[]}"#,
    );
    let (url, server) = canned_server(vec![
        unknown_type_answer("wildcard"),
        simulated.clone(),
        unknown_type_answer("scaled_float"),
    ])
    .await;
    let found = client(&url)
        .unsupported_field_types(&["wildcard", "version", "scaled_float"])
        .await
        .expect("probes");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["scaled_float", "wildcard"]
    );
    let requests = server.await.expect("server");
    assert_eq!(requests.len(), 3);
    assert!(requests[0].starts_with("POST /_index_template/_simulate "));
    assert!(
        requests[0].contains(r#""probe":{"type":"wildcard"}"#),
        "{}",
        requests[0]
    );
    assert!(
        requests[2].contains(r#""scaling_factor":100"#),
        "{}",
        requests[2]
    );

    // Another refusal (a 400 that names no unknown type, a 403) is an error, not a fallback.
    for refusal in [
        answer(
            "400 Bad Request",
            Some("application/json"),
            r#"{"error":{"type":"illegal_argument_exception","reason":"index template [x] has index patterns matching patterns from existing templates with the same priority"},"status":400}"#,
        ),
        answer(
            "403 Forbidden",
            Some("application/json"),
            r#"{"error":{"type":"security_exception","reason":"action [indices:admin/index_template/simulate] is unauthorized"},"status":403}"#,
        ),
        unknown_type_answer("match_only_text"),
    ] {
        let (url, server) = canned_server(vec![refusal]).await;
        let err = client(&url)
            .unsupported_field_types(&["version"])
            .await
            .expect_err("not an absent type");
        assert!(matches!(err, EsError::Status { .. }), "{err}");
        server.await.expect("server");
    }
}

#[tokio::test]
async fn setup_maps_the_types_a_cluster_lacks_as_their_fallbacks() {
    let acknowledged = answer(
        "200 OK",
        Some("application/json"),
        r#"{"acknowledged":true}"#,
    );
    let simulated = answer("200 OK", Some("application/json"), r#"{"template":{}}"#);
    // The alerts template's four types are probed once (wildcard, match_only_text and
    // scaled_float missing, version there); the state template has none of them.
    let (url, server) = canned_server(vec![
        unknown_type_answer("match_only_text"),
        unknown_type_answer("scaled_float"),
        simulated,
        unknown_type_answer("wildcard"),
        acknowledged.clone(),
        acknowledged,
    ])
    .await;
    let installed = client(&url).setup(false).await.expect("setup");
    assert_eq!(installed.len(), 2);
    assert_eq!(installed[0].name, templates::ALERTS_TEMPLATE);
    assert_eq!(
        installed[0]
            .type_fallbacks
            .iter()
            .map(|f| (f.kibana_type, f.fallback))
            .collect::<Vec<_>>(),
        [
            ("wildcard", "keyword"),
            ("match_only_text", "text"),
            ("scaled_float", "double")
        ]
    );
    assert_eq!(installed[1].name, templates::STATE_TEMPLATE);
    assert!(installed[1].type_fallbacks.is_empty());
    let requests = server.await.expect("server");
    let put = &requests[4];
    assert!(
        put.starts_with("PUT /_index_template/seqwatch-alerts "),
        "{put}"
    );
    let body: Value = serde_json::from_str(&put[put.find("\r\n\r\n").expect("a body") + 4..])
        .expect("the template as JSON");
    assert_eq!(
        body["_meta"]["type_fallbacks"],
        json!({"wildcard": "keyword", "match_only_text": "text", "scaled_float": "double"})
    );
    let installed_types = field_types::types_with_fallbacks(&body);
    assert_eq!(installed_types.into_iter().collect::<Vec<_>>(), ["version"]);
}
