//! Logging, decided once: text on a terminal, one JSON object per line with `log.format =
//! "json"`, filtered by `log.level` (or `RUST_LOG`). Logs go to stderr; stdout carries the
//! commands' output (`once` prints its run documents there).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. A second call (tests) leaves the first in place.
pub fn init(log: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<EnvFilter>().ok())
        .or_else(|| {
            // The scheduler crate logs its own bookkeeping at info; keep it out unless asked for.
            let quiet = if log.level.contains("tokio_cron_scheduler") {
                log.level.clone()
            } else {
                format!("{},tokio_cron_scheduler=warn", log.level)
            };
            quiet.parse::<EnvFilter>().ok()
        })
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
