//! `seqwatch healthcheck` as the container image's HEALTHCHECK runs it: the binary against a
//! small stand-in HTTP server on loopback. Exit codes are what Docker reads (0 healthy, 1
//! unhealthy; 2 is reserved by Docker and must never come out), and the probed address follows
//! `daemon.listen` from the environment, as the image sets it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::thread::JoinHandle;

/// Serves one connection: reads the request head, answers `answer`, returns the request.
fn serve_once(answer: &'static str) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).expect("read the request");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        socket.write_all(answer.as_bytes()).expect("answer");
        String::from_utf8_lossy(&seen).into_owned()
    });
    (addr, server)
}

/// Runs the binary in an empty directory (no `config.toml` to pick up) with only the given
/// `SEQWATCH_*` variables.
fn seqwatch(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seqwatch"));
    cmd.args(args).current_dir(dir.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("SEQWATCH_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run seqwatch")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn healthy_daemon_exits_0_and_the_liveness_path_is_asked() {
    let (addr, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
    let out = seqwatch(&["healthcheck", "--address", &addr.to_string()], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("healthy: http://{addr}/healthz answered 200 ok")
    );
    assert!(server
        .join()
        .unwrap()
        .starts_with("GET /healthz HTTP/1.1\r\n"));
}

#[test]
fn not_ready_exits_1_with_the_daemons_reason() {
    let (addr, server) = serve_once(
        "HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready: Elasticsearch is not reachable\n",
    );
    let out = seqwatch(
        &["healthcheck", "--ready", "--address", &addr.to_string()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(server
        .join()
        .unwrap()
        .starts_with("GET /readyz HTTP/1.1\r\n"));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "unhealthy: http://{addr}/readyz: HTTP 503: not ready: Elasticsearch is not reachable"
        )
    );
}

#[test]
fn no_daemon_exits_1_never_2() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = seqwatch(
        &[
            "healthcheck",
            "--address",
            &addr.to_string(),
            "--timeout",
            "2s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

/// The image sets `SEQWATCH_DAEMON__LISTEN=0.0.0.0:9108`; the probe must follow it, on loopback.
#[test]
fn the_address_comes_from_daemon_listen_in_the_environment() {
    let (addr, server) = serve_once("HTTP/1.1 200 OK\r\n\r\nok\n");
    let listen = format!("0.0.0.0:{}", addr.port());
    let out = seqwatch(&["healthcheck"], &[("SEQWATCH_DAEMON__LISTEN", &listen)]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("http://127.0.0.1:{}/healthz", addr.port())));
    server.join().unwrap();
}

/// `SEQWATCH_CONFIG` stands for `--config` (the image sets it); a configuration that does not
/// load is unhealthy (1), not Docker's reserved 2.
#[test]
fn seqwatch_config_names_the_file_and_a_bad_one_is_unhealthy() {
    let out = seqwatch(
        &["healthcheck"],
        &[("SEQWATCH_CONFIG", "/nonexistent/seqwatch/config.toml")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "unhealthy: the configuration does not load: configuration file /nonexistent/seqwatch/config.toml does not exist"
    );
    let out = seqwatch(&["healthcheck", "--address", "localhost:9108"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--address: \"localhost:9108\" is not an address"));
}
