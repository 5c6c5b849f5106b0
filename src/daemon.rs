//! `seqwatch run`: every rule on its schedule until SIGTERM or SIGINT, with `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! Scheduling is tokio-cron-scheduler's. Its runner spawns each tick without waiting for the
//! previous one (tokio-cron-scheduler issue #83), so each rule has a lock taken with
//! `try_lock`: a tick that finds the rule still running is skipped and counted, never run twice
//! at once. Its `shutdown` only stops new ticks, so shutdown here cancels the runs (each stops
//! at its next safe point: between stages, or between write batches) and gives them
//! `daemon.shutdown_timeout` to get there. A rule's lease is given back only when no run of it
//! is going; a run still going at the deadline keeps its lease until it expires, and its
//! checkpoint where it was, so the next start covers that window again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::Utc;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::run::{run, PreparedRule, RunContext, RunOutcome, RunPlan};

/// Why the daemon is not ready (`/readyz` answers 503 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotReady {
    /// The last health check did not reach the cluster.
    #[error("Elasticsearch is not reachable")]
    Unreachable,
    /// A rule has not completed a run for three of the longest intervals.
    #[error("rule {rule:?} has not completed a run for {seconds}s")]
    Stale {
        /// The rule's name.
        rule: String,
        /// Since when, in seconds.
        seconds: u64,
    },
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `daemon.listen` cannot be bound.
    #[error("daemon.listen: cannot listen on {listen}: {source}")]
    Listen {
        /// The configured address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The metrics recorder cannot be installed.
    #[error("installing the metrics recorder: {0}")]
    Metrics(String),
    /// The scheduler refused to start or to take a rule.
    #[error("{what}: {source}")]
    Scheduler {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: tokio_cron_scheduler::JobSchedulerError,
    },
}

fn scheduler_error(
    what: impl Into<String>,
) -> impl FnOnce(tokio_cron_scheduler::JobSchedulerError) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Scheduler { what, source }
}

/// What the HTTP endpoints report.
#[derive(Default)]
struct Health {
    /// Last time a health check reached Elasticsearch.
    es_ok_at: std::sync::Mutex<Option<Instant>>,
    /// Per rule: last time a run finished without failing.
    last_success: std::sync::Mutex<HashMap<String, Instant>>,
    started: std::sync::OnceLock<Instant>,
    /// The longest interval of the rules; a run older than three of them is not recent.
    max_interval: std::sync::OnceLock<Duration>,
    rules: std::sync::OnceLock<Vec<String>>,
}

impl Health {
    /// Health for `rules`, started now.
    fn for_rules(rules: &[PreparedRule]) -> Health {
        let health = Health::default();
        let _ = health.started.set(Instant::now());
        let interval = rules.iter().map(|r| r.schedule.interval).max();
        let _ = health.max_interval.set(interval.unwrap_or_default());
        let _ = health
            .rules
            .set(rules.iter().map(|r| r.rule.name.clone()).collect());
        health
    }

    fn ready(&self) -> Result<(), NotReady> {
        let now = Instant::now();
        let es_ok = self
            .es_ok_at
            .lock()
            .ok()
            .and_then(|g| *g)
            .is_some_and(|t| now - t < Duration::from_secs(30));
        if !es_ok {
            return Err(NotReady::Unreachable);
        }
        let limit = 3 * *self.max_interval.get().unwrap_or(&Duration::from_secs(300));
        let started = *self.started.get().unwrap_or(&now);
        let last = self
            .last_success
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        for rule in self.rules.get().into_iter().flatten() {
            let since = last.get(rule).copied().unwrap_or(started);
            if now - since > limit {
                return Err(NotReady::Stale {
                    rule: rule.clone(),
                    seconds: (now - since).as_secs(),
                });
            }
        }
        Ok(())
    }
}

/// One reachability check for `/readyz`. A failed check makes the daemon not ready at once:
/// keeping the last success for its 30 s would answer "ready" for half a minute after the node
/// went away.
async fn probe_es(cluster: &dyn crate::cluster::Cluster, health: &Health) {
    let up = cluster.reachable().await.is_ok();
    crate::metrics::record_es_up(up);
    if let Ok(mut g) = health.es_ok_at.lock() {
        *g = up.then(Instant::now);
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// The cron expression (six fields, seconds first) a rule runs on.
pub fn cron_for(config: &Config, interval: Duration) -> Option<String> {
    if let Some(c) = &config.schedule.cron {
        return Some(c.clone());
    }
    let s = interval.as_secs();
    if interval.subsec_nanos() != 0 || s == 0 {
        return None;
    }
    match s {
        s if s < 60 && 60 % s == 0 => Some(format!("*/{s} * * * * *")),
        s if s % 60 == 0 && s < 3600 && 60 % (s / 60) == 0 => {
            Some(format!("0 */{} * * * *", s / 60))
        }
        s if s % 3600 == 0 && s < 86_400 && 24 % (s / 3600) == 0 => {
            Some(format!("0 0 */{} * * *", s / 3600))
        }
        86_400 => Some("0 0 0 * * *".into()),
        _ => None,
    }
}

/// The process-wide Prometheus recorder, installed on first use (a second daemon in the same
/// process, as in tests, shares it).
fn prometheus_handle() -> Result<metrics_exporter_prometheus::PrometheusHandle, DaemonError> {
    // Check and install under one lock: two daemons starting at once would otherwise both
    // find no handle and the second install would fail.
    static HANDLE: std::sync::Mutex<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::Mutex::new(None);
    let mut slot = HANDLE
        .lock()
        .map_err(|_| DaemonError::Metrics("the recorder lock is poisoned".into()))?;
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let h = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| DaemonError::Metrics(e.to_string()))?;
    *slot = Some(h.clone());
    Ok(h)
}

/// The daemon proper, until `shutdown` resolves. Tests hand it their own future.
pub async fn serve(
    ctx: RunContext,
    rules: Vec<PreparedRule>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let health = Arc::new(Health::for_rules(&rules));
    let server = start_endpoints(&ctx, health.clone()).await?;
    info!(listen = %ctx.config.daemon.listen, rules = rules.len(), instance = %ctx.instance, "seqwatch daemon started");
    // Elasticsearch reachability, for /readyz and the metric.
    let probe = {
        let (cluster, health) = (ctx.cluster.clone(), health.clone());
        tokio::spawn(async move {
            loop {
                probe_es(cluster.as_ref(), &health).await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        })
    };
    let ticker = Ticker {
        ctx: ctx.clone(),
        health,
        stopping: Arc::new(AtomicBool::new(false)),
        tracker: TaskTracker::new(),
    };
    let slots: Vec<RuleSlot> = rules
        .into_iter()
        .map(|rule| RuleSlot {
            rule: Arc::new(rule),
            busy: Arc::new(Mutex::new(())),
        })
        .collect();
    let mut scheduler = schedule(&ticker, &slots).await?;

    shutdown.await;
    ticker.stopping.store(true, Ordering::SeqCst);
    ctx.cancel.cancel();
    info!("shutting down: no new runs; the current ones stop at their next safe point");
    let _ = scheduler.shutdown().await;
    ticker.tracker.close();
    let deadline = ctx.config.daemon.shutdown_timeout.0;
    if tokio::time::timeout(deadline, ticker.tracker.wait())
        .await
        .is_err()
    {
        warn!(timeout = ?deadline, "runs still going at the shutdown deadline are abandoned; their windows are covered again at the next start");
    }
    release_idle_leases(&ctx, &slots).await;
    probe.abort();
    server.abort();
    info!("seqwatch daemon stopped");
    Ok(())
}

/// `/healthz`, `/readyz` and `/metrics` on `daemon.listen`.
async fn start_endpoints(
    ctx: &RunContext,
    health: Arc<Health>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, DaemonError> {
    let prometheus = prometheus_handle()?;
    let listen = ctx.config.daemon.listen.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(h): State<Arc<Health>>| async move {
                match h.ready() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .with_state(health)
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        );
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| DaemonError::Listen {
            listen: listen.clone(),
            source,
        })?;
    Ok(tokio::spawn(
        async move { axum::serve(listener, app).await },
    ))
}

/// A rule of the daemon and the lock its runs take, so that one rule never runs twice at once.
struct RuleSlot {
    rule: Arc<PreparedRule>,
    busy: Arc<Mutex<()>>,
}

/// What every tick needs.
#[derive(Clone)]
struct Ticker {
    ctx: RunContext,
    health: Arc<Health>,
    /// Set when shutdown begins. The scheduler can still deliver a tick after its `shutdown`
    /// returns; such a tick must not run, or it would renew the lease after it was given back
    /// and lock the other replicas out for `state.lease_ttl`.
    stopping: Arc<AtomicBool>,
    /// The ticks in flight, which shutdown waits for.
    tracker: TaskTracker,
}

impl Ticker {
    /// Runs one tick of `slot` as a tracked task.
    fn spawn(&self, slot: &RuleSlot) -> tokio::task::JoinHandle<Tick> {
        let (ticker, rule, busy) = (self.clone(), slot.rule.clone(), slot.busy.clone());
        self.tracker.spawn(async move {
            run_tick(&ticker.ctx, &rule, &busy, &ticker.health, &ticker.stopping).await
        })
    }
}

/// Schedules every rule (and runs each once at start, as Kibana does when a rule is enabled).
async fn schedule(ticker: &Ticker, slots: &[RuleSlot]) -> Result<JobScheduler, DaemonError> {
    let scheduler = JobScheduler::new()
        .await
        .map_err(scheduler_error("starting the scheduler"))?;
    for slot in slots {
        let on_tick = {
            let (ticker, slot) = (
                ticker.clone(),
                RuleSlot {
                    rule: slot.rule.clone(),
                    busy: slot.busy.clone(),
                },
            );
            move |_id, _sched| {
                let task = ticker.spawn(&slot);
                Box::pin(async move {
                    let _ = task.await;
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            }
        };
        let interval = slot.rule.schedule.interval;
        let job = match cron_for(&ticker.ctx.config, interval) {
            Some(cron) => Job::new_async(cron.as_str(), on_tick),
            None => Job::new_repeated_async(interval, on_tick),
        }
        .map_err(scheduler_error(format!(
            "scheduling rule {:?}",
            slot.rule.rule.name
        )))?;
        scheduler.add(job).await.map_err(scheduler_error(format!(
            "scheduling rule {:?}",
            slot.rule.rule.name
        )))?;
        ticker.spawn(slot);
    }
    scheduler
        .start()
        .await
        .map_err(scheduler_error("starting the scheduler"))?;
    Ok(scheduler)
}

/// Gives back the lease of every rule with no run going. A rule whose run is still going (past
/// the deadline) keeps its lease until it expires: that run may still write, and another
/// replica must not take the rule meanwhile. The rule's lock is held while the lease is given
/// back, so no run can start in between.
async fn release_idle_leases(ctx: &RunContext, slots: &[RuleSlot]) {
    for slot in slots {
        match slot.busy.try_lock() {
            Ok(_idle) => crate::run::release_lease(ctx, &slot.rule, Utc::now()).await,
            Err(_) => {
                warn!(rule = %slot.rule.rule.name, "a run is still going; its lease is left to expire")
            }
        }
    }
}

/// What became of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tick {
    /// `run_once` was called.
    Ran,
    /// The rule's previous run was still going.
    Busy,
    /// The daemon is shutting down.
    Stopping,
}

async fn run_tick(
    ctx: &RunContext,
    rule: &PreparedRule,
    busy: &Mutex<()>,
    health: &Health,
    stopping: &AtomicBool,
) -> Tick {
    // Checked before and after taking the lock: a tick tracked before shutdown may run (the
    // shutdown waits for it), one that starts after shutdown began may not.
    if stopping.load(Ordering::SeqCst) {
        return Tick::Stopping;
    }
    let Ok(_guard) = busy.try_lock() else {
        warn!(rule = %rule.rule.name, "previous run still going; this tick is skipped");
        crate::metrics::record_skip(&rule.rule.name, "overlap");
        return Tick::Busy;
    };
    if stopping.load(Ordering::SeqCst) {
        return Tick::Stopping;
    }
    match run(ctx, rule, &RunPlan::scheduled(Utc::now())).await {
        RunOutcome::Ran(report) => {
            if report.error.is_none() {
                if let Ok(mut m) = health.last_success.lock() {
                    m.insert(rule.rule.name.clone(), Instant::now());
                }
                let lag = (Utc::now() - report.doc.window.to)
                    .num_milliseconds()
                    .max(0) as f64
                    / 1000.0;
                crate::metrics::record_lag(&rule.rule.name, lag);
            }
        }
        RunOutcome::Skipped(_) => {
            // Another replica runs the rule: that keeps the rule fresh for readiness too.
            if let Ok(mut m) = health.last_success.lock() {
                m.insert(rule.rule.name.clone(), Instant::now());
            }
        }
    }
    Tick::Ran
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable_ctx() -> (RunContext, PreparedRule) {
        let config = Config::default();
        let rule = PreparedRule::prepare(crate::rule::Rule::builtin().unwrap(), &config).unwrap();
        let es = crate::es::EsClient::connect(&crate::es::EsSettings::new("http://127.0.0.1:9"))
            .unwrap();
        let ctx = RunContext::new(Arc::new(es), Arc::new(config), "test".into());
        (ctx, rule)
    }

    /// A tick delivered once shutdown has begun does not run: it would take the lease again
    /// after `serve` gave it back (seen in tests/es_job.rs: the other daemon was locked out
    /// for the lease's ten minutes).
    #[tokio::test]
    async fn ticks_after_shutdown_began_do_not_run() {
        let (ctx, rule) = unreachable_ctx();
        let (busy, health) = (Mutex::new(()), Health::default());
        let stopping = AtomicBool::new(true);
        assert_eq!(
            run_tick(&ctx, &rule, &busy, &health, &stopping).await,
            Tick::Stopping
        );
        stopping.store(false, Ordering::SeqCst);
        let held = busy.try_lock().unwrap();
        assert_eq!(
            run_tick(&ctx, &rule, &busy, &health, &stopping).await,
            Tick::Busy
        );
        drop(held);
        assert_eq!(
            run_tick(&ctx, &rule, &busy, &health, &stopping).await,
            Tick::Ran,
            "a normal tick runs (and fails: nothing listens there)"
        );
    }

    /// A node that stops answering makes the daemon not ready at the next check, not 30 s
    /// after the last success: a daemon whose node is down must say so while it is down.
    #[tokio::test]
    async fn a_failed_check_makes_the_daemon_not_ready_at_once() {
        let (ctx, rule) = unreachable_ctx();
        let health = Health::default();
        let _ = health.started.set(Instant::now());
        let _ = health.rules.set(vec![rule.rule.name.clone()]);
        *health.es_ok_at.lock().unwrap() = Some(Instant::now());
        assert_eq!(health.ready(), Ok(()), "a fresh success is ready");
        probe_es(ctx.cluster.as_ref(), &health).await;
        assert_eq!(health.ready(), Err(NotReady::Unreachable));
    }

    /// At shutdown a rule whose run is still going keeps its lease (the run may still write,
    /// and another replica must not take the rule meanwhile); an idle rule's lease is given
    /// back at once.
    #[tokio::test]
    async fn shutdown_gives_back_only_the_leases_of_idle_rules() {
        use crate::run::fake::FakeCluster;
        use crate::state::{lease_id, LeaseDoc};
        let config = Config::default();
        let rule = PreparedRule::prepare(crate::rule::Rule::builtin().unwrap(), &config).unwrap();
        let fake = Arc::new(FakeCluster::new());
        let ctx = RunContext::new(fake.clone(), Arc::new(config), "replica-a".into());
        let until = Utc::now() + chrono::Duration::minutes(10);
        let lease = LeaseDoc {
            doc_type: "lease".into(),
            rule: rule.rule_ref(),
            owner: "replica-a".into(),
            expires_at: until,
        };
        let (index, id) = (ctx.config.state.index.clone(), lease_id(&rule.uuid));
        fake.put(&index, &id, serde_json::to_value(&lease).unwrap());
        let expiry =
            || -> LeaseDoc { serde_json::from_value(fake.doc(&index, &id).unwrap()).unwrap() };
        let slots = vec![RuleSlot {
            rule: Arc::new(rule),
            busy: Arc::new(Mutex::new(())),
        }];
        let running = slots[0].busy.clone().try_lock_owned().unwrap();
        release_idle_leases(&ctx, &slots).await;
        assert_eq!(expiry().expires_at, until, "a running rule keeps its lease");
        drop(running);
        release_idle_leases(&ctx, &slots).await;
        assert!(
            expiry().expires_at <= Utc::now(),
            "an idle rule's lease is given back"
        );
    }

    /// Two daemons starting at once in one process (as in tests/es_job.rs) both ask for the
    /// recorder; both must get it. The global recorder can be installed only once, so the
    /// check and the install must not race.
    #[test]
    fn concurrent_daemons_share_one_metrics_recorder() {
        let start = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    prometheus_handle()
                        .map(|_| ())
                        .map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread"), Ok(()));
        }
    }
}
