//! A fault-injecting HTTP/1.1 proxy in front of a real Elasticsearch node, for the fault tests
//! (`tests/node_faults.rs`). It forwards every request to the node and, by rules the test sets
//! (method, path substring, body substring, from the Nth matching request on, how many times),
//! answers with a status (and `Retry-After`), resets the connection, delays the answer, fails
//! chosen `_bulk` items with 429 without forwarding them, or runs a hook before forwarding. It
//! records every request it saw, so tests can assert what the client really sent.
//!
//! Raw TCP on purpose: a reset must be a real RST (zero linger), and a node that is gone must
//! look gone (the client's connection is dropped). Requests are read by `Content-Length` (the
//! client never sends chunked bodies); answers are read from the node with `Connection: close`,
//! de-chunked, and sent back with a `Content-Length`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// The body as text.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
    /// The rule that acted on it, if any.
    pub fired: Option<usize>,
}

/// A hook run before a request is forwarded (it may stop the node, close a PIT, ...).
pub type Hook = Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a rule does to a request it fires on.
#[derive(Clone)]
pub enum Fault {
    /// Answer `status` without forwarding, with `Retry-After: <value>` when given.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header value.
        retry_after: Option<String>,
    },
    /// Reset the client's connection (RST) without forwarding.
    Reset,
    /// Forward, then hold the answer back this long before sending it.
    Delay(Duration),
    /// `_bulk` only: items at positions `p` with `p % every == 0` fail with 429 and are not
    /// forwarded; the others are forwarded and their real answers kept.
    FailBulkItems {
        /// Every how many items one fails (1 = all).
        every: usize,
    },
    /// Run the hook, then forward.
    Hook(Hook),
}

/// When a rule fires and what it does.
#[derive(Clone)]
pub struct Rule {
    /// Method to match, any when `None`.
    pub method: Option<&'static str>,
    /// Substring of the path (with query) to match.
    pub path: &'static str,
    /// Substring of the body to match, any when `None`.
    pub body: Option<&'static str>,
    /// The first matching request it fires on (1 = the first).
    pub from_nth: usize,
    /// How many times it fires.
    pub times: usize,
    /// What it does.
    pub fault: Fault,
}

impl Rule {
    /// A rule firing on the first `times` requests with `method` whose path contains `path`.
    pub fn new(method: &'static str, path: &'static str, times: usize, fault: Fault) -> Rule {
        Rule {
            method: Some(method),
            path,
            body: None,
            from_nth: 1,
            times,
            fault,
        }
    }

    /// Only requests whose body contains `needle`.
    pub fn body(mut self, needle: &'static str) -> Rule {
        self.body = Some(needle);
        self
    }

    /// Starting at the `n`th matching request (1-based).
    pub fn starting_at(mut self, n: usize) -> Rule {
        self.from_nth = n;
        self
    }

    fn matches(&self, method: &str, path: &str, body: &str) -> bool {
        self.method.is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(self.path)
            && self.body.is_none_or(|b| body.contains(b))
    }
}

#[derive(Default)]
struct State {
    rules: Vec<(Rule, usize, usize)>, // rule, matched, fired
    seen: Vec<Seen>,
}

/// The proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>` of the proxy.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to the node at `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let url = format!("http://{}", listener.local_addr().expect("proxy addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, upstream.clone(), shared.clone()));
            }
        });
        FaultProxy { url, state, task }
    }

    /// Adds a rule; returns its number for [`FaultProxy::fired`].
    pub fn add(&self, rule: Rule) -> usize {
        let mut s = self.state.lock().expect("proxy state");
        s.rules.push((rule, 0, 0));
        s.rules.len() - 1
    }

    /// Removes every rule (numbers stay valid for counts taken before).
    pub fn clear_rules(&self) {
        let mut s = self.state.lock().expect("proxy state");
        for r in &mut s.rules {
            r.0.times = 0;
        }
    }

    /// How often rule `n` fired.
    pub fn fired(&self, n: usize) -> usize {
        self.state.lock().expect("proxy state").rules[n].2
    }

    /// How many requests rule `n` matched (fired or not).
    pub fn matched(&self, n: usize) -> usize {
        self.state.lock().expect("proxy state").rules[n].1
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("proxy state").seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.state.lock().expect("proxy state").seen.clear();
    }
}

/// The `_id`s of the `create` actions of a `_bulk` body, in order.
pub fn bulk_ids(body: &str) -> Vec<String> {
    body.lines()
        .step_by(2)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["create"]["_id"].as_str().map(str::to_owned))
        .collect()
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn serve(mut client: TcpStream, upstream: String, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut client, &mut buffer).await {
        let body_text = String::from_utf8_lossy(&request.body).into_owned();
        let fault = {
            let mut s = state.lock().expect("proxy state");
            let mut chosen = None;
            for (i, (rule, matched, fired)) in s.rules.iter_mut().enumerate() {
                if !rule.matches(&request.method, &request.path, &body_text) {
                    continue;
                }
                *matched += 1;
                if chosen.is_none() && *matched >= rule.from_nth && *fired < rule.times {
                    *fired += 1;
                    chosen = Some((i, rule.fault.clone()));
                }
            }
            s.seen.push(Seen {
                method: request.method.clone(),
                path: request.path.clone(),
                body: body_text.clone(),
                at: Instant::now(),
                fired: chosen.as_ref().map(|c| c.0),
            });
            chosen.map(|c| c.1)
        };
        let seen = Seen {
            method: request.method.clone(),
            path: request.path.clone(),
            body: body_text,
            at: Instant::now(),
            fired: None,
        };
        let answer = match fault {
            Some(Fault::Status {
                status,
                retry_after,
            }) => {
                let body = json!({"error": {"type": "injected_fault", "reason": format!("HTTP {status} injected by the test proxy")}, "status": status});
                let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
                if let Some(v) = retry_after {
                    headers.push(("retry-after".to_owned(), v));
                }
                Some((status, headers, body.to_string().into_bytes()))
            }
            Some(Fault::Reset) => None,
            Some(Fault::Delay(d)) => {
                let answer = forward(&upstream, &request).await;
                tokio::time::sleep(d).await;
                answer
            }
            Some(Fault::FailBulkItems { every }) => {
                fail_bulk_items(&upstream, &request, every).await
            }
            Some(Fault::Hook(hook)) => {
                hook(seen).await;
                forward(&upstream, &request).await
            }
            None => forward(&upstream, &request).await,
        };
        let Some((status, headers, body)) = answer else {
            // A reset, or the node is gone: the client sees its connection die.
            let _ = client.set_zero_linger();
            return;
        };
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        if client.write_all(head.as_bytes()).await.is_err()
            || client.write_all(&body).await.is_err()
        {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request (head and `Content-Length` body) from `socket`; `None` at end of stream.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + 4 + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = buffer[head_end + 4..head_end + 4 + length].to_vec();
    buffer.drain(..head_end + 4 + length);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// Sends `request` to the node on a fresh connection and reads the whole answer; `None` when
/// the node cannot be reached or hangs up.
async fn forward(upstream: &str, request: &Request) -> Option<Answer> {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "host" | "connection" | "keep-alive" | "accept-encoding" | "content-length"
            )
        })
        .cloned()
        .collect();
    headers.push(("host".into(), upstream.to_owned()));
    raw_request(
        upstream,
        &request.method,
        &request.path,
        &headers,
        &request.body,
    )
    .await
}

/// One HTTP/1.1 request to `host:port` with `Connection: close`; the status, headers (minus
/// framing) and de-chunked body. Also used by tests for requests the client has no method for.
pub async fn raw_request(
    upstream: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Answer> {
    let mut node = TcpStream::connect(upstream).await.ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n == "host") {
        head.push_str(&format!("host: {upstream}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n == "content-type") && !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    head.push_str(&format!(
        "connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    node.write_all(head.as_bytes()).await.ok()?;
    node.write_all(body).await.ok()?;
    let mut raw = Vec::new();
    node.read_to_end(&mut raw).await.ok()?;
    let end = find(&raw, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut out_headers = Vec::new();
    for (n, v) in lines.filter_map(|l| l.split_once(':')) {
        let (n, v) = (n.trim().to_ascii_lowercase(), v.trim().to_owned());
        match n.as_str() {
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "content-length" | "connection" | "keep-alive" => {}
            _ => out_headers.push((n, v)),
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some((status, out_headers, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Fails the items `p % every == 0` of a `_bulk` of `create`s with 429, forwards the others,
/// and answers with the real items spliced between the failed ones, in request order.
async fn fail_bulk_items(upstream: &str, request: &Request, every: usize) -> Option<Answer> {
    let text = String::from_utf8_lossy(&request.body).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let pairs: Vec<(&str, &str)> = lines
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or("{}")))
        .collect();
    let failing = |p: usize| every > 0 && p % every == 0;
    let mut kept = String::new();
    for (p, (action, doc)) in pairs.iter().enumerate() {
        if !failing(p) {
            kept.push_str(action);
            kept.push('\n');
            kept.push_str(doc);
            kept.push('\n');
        }
    }
    let mut real_items = Vec::new();
    if !kept.is_empty() {
        let forwarded = Request {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: kept.into_bytes(),
        };
        let (status, _, body) = forward(upstream, &forwarded).await?;
        let answer: Value = serde_json::from_slice(&body).ok()?;
        if status != 200 {
            return Some((
                status,
                vec![("content-type".into(), "application/json".into())],
                body,
            ));
        }
        real_items = answer["items"].as_array().cloned().unwrap_or_default();
    }
    let mut real = real_items.into_iter();
    let mut items = Vec::new();
    for (p, (action, _)) in pairs.iter().enumerate() {
        if failing(p) {
            let action: Value = serde_json::from_str(action).unwrap_or(Value::Null);
            items.push(json!({"create": {
                "_index": action["create"]["_index"], "_id": action["create"]["_id"], "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "rejected by the test proxy (429)"}
            }}));
        } else {
            items.push(real.next()?);
        }
    }
    let body = json!({"errors": true, "items": items})
        .to_string()
        .into_bytes();
    Some((
        200,
        vec![("content-type".into(), "application/json".into())],
        body,
    ))
}
