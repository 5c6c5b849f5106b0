//! `seqwatch healthcheck`: asks a running daemon's `/healthz` (or `/readyz`) and turns the answer
//! into an exit code. It exists for the container image, which has neither a shell nor curl: the
//! image's `HEALTHCHECK` runs the binary itself.
//!
//! The daemon serves these endpoints over plain HTTP/1.1 on `daemon.listen`, so one request line
//! over a TCP stream is all it takes; no HTTP client crate is involved. An unspecified listen
//! address (`0.0.0.0`, `::`) is probed on the loopback address of the same family, which is
//! where the daemon can be reached from inside its own container or pod.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes of an answer read; the endpoints answer with a line.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;
/// Most characters of an unhealthy answer's body repeated in the error.
const MAX_BODY_CHARS: usize = 200;

/// Which endpoint to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: the process serves HTTP (liveness).
    Live,
    /// `/readyz`: Elasticsearch is reachable and every rule ran recently (readiness).
    Ready,
}

impl Probe {
    /// The endpoint's path.
    pub fn path(self) -> &'static str {
        match self {
            Probe::Live => "/healthz",
            Probe::Ready => "/readyz",
        }
    }
}

/// Why a health check did not find the daemon healthy. Messages name the address and path.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The address to probe is not `host:port` with an IP address.
    #[error("{key}: {value:?} is not an address like 0.0.0.0:9108")]
    InvalidAddress {
        /// Where the address came from (`daemon.listen` or `--address`).
        key: &'static str,
        /// The address as given.
        value: String,
    },
    /// Nothing accepted the connection (the daemon is not running or listens elsewhere).
    #[error("http://{addr}{path}: cannot connect: {source}")]
    Connect {
        /// The address probed.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The connection broke while sending or reading.
    #[error("http://{addr}{path}: {source}")]
    Io {
        /// The address probed.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// No complete answer within the timeout.
    #[error("http://{addr}{path}: no answer within {timeout:?}")]
    Timeout {
        /// The address probed.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The answer is not HTTP.
    #[error("http://{addr}{path}: the answer is not HTTP: {first_line:?}")]
    NotHttp {
        /// The address probed.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// The start of what came back.
        first_line: String,
    },
    /// The daemon answered with a status other than 200.
    #[error("http://{addr}{path}: HTTP {status}: {body}")]
    Unhealthy {
        /// The address probed.
        addr: SocketAddr,
        /// The path asked for.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the body (the daemon says why, e.g. "not ready: …").
        body: String,
    },
}

/// The address to probe for a daemon listening on `listen`: the same port, and the loopback
/// address instead of an unspecified one. `key` names where `listen` came from, for the error.
pub fn probe_address(key: &'static str, listen: &str) -> Result<SocketAddr, HealthcheckError> {
    let mut addr: SocketAddr =
        listen
            .trim()
            .parse()
            .map_err(|_| HealthcheckError::InvalidAddress {
                key,
                value: listen.to_owned(),
            })?;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    Ok(addr)
}

/// Asks `http://<addr><probe path>` and succeeds on HTTP 200, returning the body's first line.
/// The whole exchange, connecting included, must finish within `timeout`.
pub async fn check(
    addr: SocketAddr,
    probe: Probe,
    timeout: Duration,
) -> Result<String, HealthcheckError> {
    let path = probe.path();
    match tokio::time::timeout(timeout, exchange(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(HealthcheckError::Timeout {
            addr,
            path,
            timeout,
        }),
    }
}

async fn exchange(addr: SocketAddr, path: &'static str) -> Result<String, HealthcheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HealthcheckError::Connect { addr, path, source })?;
    let io = |source| HealthcheckError::Io { addr, path, source };
    // `Connection: close` lets the answer end at EOF, so no body framing is needed.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: seqwatch-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .await
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let status = parse_status(status_line).ok_or_else(|| HealthcheckError::NotHttp {
        addr,
        path,
        first_line: status_line.chars().take(MAX_BODY_CHARS).collect(),
    })?;
    let body: String = body.trim().chars().take(MAX_BODY_CHARS).collect();
    if status == 200 {
        Ok(body.lines().next().unwrap_or("").to_owned())
    } else {
        Err(HealthcheckError::Unhealthy {
            addr,
            path,
            status,
            body,
        })
    }
}

/// The status code of an HTTP/1.x status line such as `HTTP/1.1 503 Service Unavailable`.
fn parse_status(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot server on a free loopback port that reads the request and answers `answer`
    /// (or never answers, with `None`). Returns its address and the request it saw.
    async fn serve_once(
        answer: Option<&'static str>,
    ) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            match answer {
                Some(a) => socket.write_all(a.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
            String::from_utf8_lossy(&seen).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn ok_on_200_and_asks_the_right_path() {
        let (addr, server) =
            serve_once(Some("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")).await;
        let body = check(addr, Probe::Live, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(body, "ok");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Connection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn readiness_failure_carries_status_and_reason() {
        let (addr, server) = serve_once(Some(
            "HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: Elasticsearch is not reachable\n",
        ))
        .await;
        let err = check(addr, Probe::Ready, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(server.await.unwrap().starts_with("GET /readyz "));
        match &err {
            HealthcheckError::Unhealthy { status, body, .. } => {
                assert_eq!(*status, 503);
                assert_eq!(body, "not ready: Elasticsearch is not reachable");
            }
            other => panic!("expected Unhealthy, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("http://{addr}/readyz: HTTP 503: not ready: Elasticsearch is not reachable")
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        // Bind and drop to find a port nobody listens on.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let err = check(addr, Probe::Live, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HealthcheckError::Connect { .. }),
            "expected Connect, got {err:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (addr, _server) = serve_once(None).await;
        let err = check(addr, Probe::Live, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HealthcheckError::Timeout { .. }),
            "expected Timeout, got {err:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_is_refused() {
        let (addr, _server) = serve_once(Some("SSH-2.0-OpenSSH_9.6\r\n")).await;
        let err = check(addr, Probe::Live, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HealthcheckError::NotHttp { .. }),
            "expected NotHttp, got {err:?}"
        );
    }

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        assert_eq!(
            probe_address("daemon.listen", "0.0.0.0:9108").unwrap(),
            "127.0.0.1:9108".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_address("daemon.listen", "[::]:9108").unwrap(),
            "[::1]:9108".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            probe_address("daemon.listen", "10.1.2.3:80").unwrap(),
            "10.1.2.3:80".parse::<SocketAddr>().unwrap(),
            "a specific address is probed as is"
        );
        let err = probe_address("--address", "localhost:9108").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--address: \"localhost:9108\" is not an address like 0.0.0.0:9108"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status("HTTP/2 200"), None);
        assert_eq!(parse_status("HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status(""), None);
    }
}
