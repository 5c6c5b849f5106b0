//! Stopping and starting the dedicated test node (`scripts/test` starts it and exports
//! `SEQWATCH_TEST_ES_PORT`) through `scripts/es`, data kept across restarts, and a guard that
//! brings the node back if a test ends (or panics) while it is down.

use std::process::Command;
use std::time::Duration;

/// The port of the node the tests may stop: `SEQWATCH_TEST_ES_PORT`. Without it the node
/// cannot be restarted, and the test fails saying so.
pub fn node_port(test: &str) -> u16 {
    std::env::var("SEQWATCH_TEST_ES_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{test}: this test needs a node it may stop and restart, on the port in \
                 SEQWATCH_TEST_ES_PORT (scripts/test starts one and sets it)"
            )
        })
}

fn scripts_es(port: u16, args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/es");
    let output = Command::new(script)
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        output.status.success(),
        "scripts/es --port {port} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Stops the node (blocking; call through `spawn_blocking` from async code).
pub fn stop_node(port: u16) {
    scripts_es(port, &["stop"]);
}

/// Starts the node again on its old data and waits until it is yellow.
pub fn start_node(port: u16) {
    scripts_es(port, &["start", "--keep-data"]);
}

/// Stops the node from async code.
pub async fn stop(port: u16) {
    tokio::task::spawn_blocking(move || stop_node(port))
        .await
        .expect("stopping the node");
}

/// Starts the node from async code.
pub async fn start(port: u16) -> Duration {
    let t = std::time::Instant::now();
    tokio::task::spawn_blocking(move || start_node(port))
        .await
        .expect("starting the node");
    t.elapsed()
}

/// Makes sure the node is up when dropped (a test that fails while it is down must not take
/// the other tests down with it).
pub struct NodeGuard(pub u16);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let port = self.0;
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !up {
            let _ = std::thread::spawn(move || start_node(port)).join();
        }
    }
}
