//! `seqwatch generate`: a deterministic, streaming generator of realistic process events for
//! the Node.js install-script rule, with ground truth. It owns host simulation, event shapes
//! (Elastic Defend and CrowdStrike FDR), the planted sequences and near-misses, and the
//! truth file. It never talks to Elasticsearch: [`Generator`] yields hits
//! (`{_index, _id, _source}`) in time order for whoever loads them.
//!
//! Determinism: all randomness comes from the module's own xoshiro256** ([`rng`]), so a seed
//! and the arguments fix the output byte for byte. Memory: events are produced from a small
//! time-ordered queue that holds only open process trees, never the whole range.

mod model;
mod render;
mod rng;
mod scenario;
mod text;
mod truth;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;

pub use render::{DEFEND_INDEX, FDR_INDEX};
pub use truth::{NearMiss, TreeKind, TruthEventRef, TruthRecord, MAXSPAN_MS};

use model::{Ctx, Host, Mark, Queue, Scheduled, Sensor};
use rng::{mix64, Rng};
use scenario::{noise_weight, InstallOutcome, NOISE};
use truth::{HostLabel, Trees};

/// Errors from argument checking and output.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A command-line argument is out of range or malformed.
    #[error("invalid --{name}: {reason}")]
    InvalidArgument {
        /// The argument's name, without dashes.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing the events or the truth failed.
    #[error("cannot write {what}")]
    Write {
        /// Which output.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> GenerateError {
    GenerateError::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// Everything that determines a generated stream.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateSpec {
    /// Number of hosts (about 70 % Elastic Defend, 30 % CrowdStrike).
    pub hosts: u32,
    /// Background events per second over all hosts.
    pub rate: f64,
    /// Start of the range, epoch ms (inclusive).
    pub from_ms: i64,
    /// End of the range, epoch ms (exclusive).
    pub to_ms: i64,
    /// Random seed.
    pub seed: u64,
    /// npm install trees per host per hour.
    pub installs_per_host_hour: f64,
    /// Share of install trees whose packages run lifecycle scripts.
    pub script_rate: f64,
    /// Share of lifecycle-script trees that are Shai-Hulud-like.
    pub malicious_rate: f64,
}

impl GenerateSpec {
    /// Checks ranges; names the offending argument.
    pub fn validate(&self) -> Result<(), GenerateError> {
        if self.hosts == 0 {
            return Err(invalid("hosts", "must be at least 1"));
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return Err(invalid(
                "rate",
                format!("must be a number >= 0, got {}", self.rate),
            ));
        }
        if !(self.installs_per_host_hour.is_finite() && self.installs_per_host_hour >= 0.0) {
            return Err(invalid(
                "installs-per-host-hour",
                format!("must be a number >= 0, got {}", self.installs_per_host_hour),
            ));
        }
        for (name, p) in [
            ("script-rate", self.script_rate),
            ("malicious-rate", self.malicious_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(name, format!("must be within 0..1, got {p}")));
            }
        }
        if self.from_ms >= self.to_ms {
            return Err(invalid(
                "from",
                "the range is empty: --from must be before --to",
            ));
        }
        Ok(())
    }
}

/// Parses a duration such as `500ms`, `30s`, `9m`, `2h`, `1d` into milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, GenerateError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| invalid("duration", format!("{text:?} is not <integer><ms|s|m|h|d>")))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(invalid(
                "duration",
                format!("{text:?}: unit must be ms, s, m, h or d"),
            ))
        }
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0).ok_or_else(|| {
        invalid(
            "duration",
            format!("{text:?} must be positive and not huge"),
        )
    })
}

fn parse_time(name: &'static str, text: &str) -> Result<i64, GenerateError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| invalid(name, format!("{text:?} is not an RFC 3339 time: {e}")))
}

/// Resolves `--from`/`--to`/`--duration` into `[from, to)` epoch ms. Both ends given: used as
/// is. One end: the other is `duration` away. Neither: the range ends at `now_ms`.
pub fn resolve_range(
    from: Option<&str>,
    to: Option<&str>,
    duration: &str,
    now_ms: i64,
) -> Result<(i64, i64), GenerateError> {
    let overflow = || {
        invalid(
            "duration",
            format!("{duration:?} takes the range out of bounds"),
        )
    };
    let (from_ms, to_ms) = match (from, to) {
        (Some(f), Some(t)) => (parse_time("from", f)?, parse_time("to", t)?),
        (Some(f), None) => {
            let f = parse_time("from", f)?;
            (
                f,
                f.checked_add(parse_duration(duration)?)
                    .ok_or_else(overflow)?,
            )
        }
        (None, Some(t)) => {
            let t = parse_time("to", t)?;
            (
                t.checked_sub(parse_duration(duration)?)
                    .ok_or_else(overflow)?,
                t,
            )
        }
        (None, None) => (
            now_ms
                .checked_sub(parse_duration(duration)?)
                .ok_or_else(overflow)?,
            now_ms,
        ),
    };
    if from_ms >= to_ms {
        return Err(invalid(
            "from",
            "the range is empty: --from must be before --to",
        ));
    }
    Ok((from_ms, to_ms))
}

/// One generated document as Elasticsearch would return it in a hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedHit {
    /// `_index` (the data stream name).
    pub index: &'static str,
    /// `_id`: 20 characters, URL-safe base64 like Elasticsearch's auto ids; stable per seed.
    pub id: String,
    /// `@timestamp` in epoch ms.
    pub timestamp_ms: i64,
    /// `_source` as JSON text.
    pub source: String,
}

impl GeneratedHit {
    /// The hit as one NDJSON line (without the newline): `{"_index":…,"_id":…,"_source":…}`.
    pub fn to_ndjson(&self) -> String {
        let mut line = String::with_capacity(self.source.len() + 64);
        line.push_str("{\"_index\":");
        text::json_string(self.index, &mut line);
        line.push_str(",\"_id\":");
        text::json_string(&self.id, &mut line);
        line.push_str(",\"_source\":");
        line.push_str(&self.source);
        line.push('}');
        line
    }

    /// `_source` parsed into a JSON value.
    pub fn source_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.source)
    }
}

/// Counts for the stderr summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Emitted events per `_index`.
    pub events_per_index: BTreeMap<String, u64>,
    /// Emitted events per `event.action`.
    pub events_per_action: BTreeMap<String, u64>,
    /// Background scenarios started.
    pub noise_scenarios: u64,
    /// npm install trees started, by outcome (`no-scripts`, `benign`, `shai-hulud-1`, ...).
    pub install_trees: BTreeMap<String, u64>,
    /// Expected sequences written to the truth, by kind.
    pub planted: BTreeMap<String, u64>,
    /// Near-misses written to the truth, by code.
    pub near_misses: BTreeMap<String, u64>,
    /// Largest number of queued events seen (the memory bound).
    pub max_queue: usize,
    /// Largest number of trees waiting for their truth verdict.
    pub max_open_trees: usize,
}

impl Summary {
    /// Total emitted events.
    pub fn total_events(&self) -> u64 {
        self.events_per_index.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "generated {} events", self.total_events())?;
        for (title, map) in [
            ("events per index", &self.events_per_index),
            ("events per action", &self.events_per_action),
            ("install trees", &self.install_trees),
            ("planted sequences by kind", &self.planted),
            ("near-misses", &self.near_misses),
        ] {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                f,
                "  {title}: {}",
                if parts.is_empty() {
                    "none".into()
                } else {
                    parts.join(", ")
                }
            )?;
        }
        write!(
            f,
            "  background scenarios: {}; peak queue {} events, peak open trees {}",
            self.noise_scenarios, self.max_queue, self.max_open_trees
        )
    }
}

/// The event stream. Iterate it for hits; call [`Generator::drain_truth`] between items for
/// the truth records decided so far.
pub struct Generator {
    spec: GenerateSpec,
    hosts: Vec<Host>,
    queue: Queue,
    trees: Trees,
    arrivals: Rng,
    scenarios: Rng,
    id_seed: u64,
    emitted: u64,
    noise_gap_ms: f64,
    noise_clock: f64,
    install_gap_ms: f64,
    install_clock: f64,
    weights_defend: Vec<f64>,
    weights_crowdstrike: Vec<f64>,
    truth: VecDeque<TruthRecord>,
    summary: Summary,
    finished: bool,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("spec", &self.spec)
            .field("emitted", &self.emitted)
            .finish()
    }
}

impl Generator {
    /// Builds the hosts, calibrates the background rate and schedules the first arrivals.
    pub fn new(spec: GenerateSpec) -> Result<Generator, GenerateError> {
        spec.validate()?;
        let mut root = Rng::new(spec.seed);
        let mut host_rng = root.fork(1);
        let arrivals = root.fork(2);
        let scenarios = root.fork(3);
        let mut calibration = root.fork(4);
        let id_seed = root.next_u64();
        let hosts = scenario::build_hosts(spec.hosts, &mut host_rng, spec.from_ms);
        let weights = |s: Sensor| -> Vec<f64> {
            NOISE.iter().map(|(n, w)| noise_weight(*n, *w, s)).collect()
        };
        let weights_defend = weights(Sensor::Defend);
        let weights_crowdstrike = weights(Sensor::CrowdStrike);
        // Mean events per background scenario, measured by dry runs on copies of the hosts,
        // so that scenario arrivals at rate/mean give `rate` events per second.
        let mut mean_by_sensor = |s: Sensor, w: &[f64]| -> f64 {
            let Some(host) = hosts.iter().find(|h| h.sensor == s) else {
                return 0.0;
            };
            let (mut num, mut den) = (0.0, 0.0);
            for (i, (kind, _)) in NOISE.iter().enumerate() {
                if w[i] <= 0.0 {
                    continue;
                }
                const RUNS: usize = 24;
                let mut events = 0usize;
                for _ in 0..RUNS {
                    let mut h = host.clone();
                    let mut q = Queue::default();
                    let mut t = Trees::default();
                    let mut ctx = Ctx {
                        rng: &mut calibration,
                        host: &mut h,
                        host_index: 0,
                        queue: &mut q,
                        trees: &mut t,
                    };
                    ctx.noise(*kind, spec.from_ms);
                    events += q.len();
                }
                num += w[i] * events as f64 / RUNS as f64;
                den += w[i];
            }
            if den > 0.0 {
                num / den
            } else {
                0.0
            }
        };
        let mean_defend = mean_by_sensor(Sensor::Defend, &weights_defend);
        let mean_cs = mean_by_sensor(Sensor::CrowdStrike, &weights_crowdstrike);
        let mean_events = hosts
            .iter()
            .map(|h| {
                if h.sensor == Sensor::Defend {
                    mean_defend
                } else {
                    mean_cs
                }
            })
            .sum::<f64>()
            / hosts.len() as f64;
        let noise_gap_ms = if spec.rate > 0.0 && mean_events > 0.0 {
            1000.0 * mean_events / spec.rate
        } else {
            0.0
        };
        let installs_per_ms = spec.installs_per_host_hour * f64::from(spec.hosts) / 3_600_000.0;
        let install_gap_ms = if installs_per_ms > 0.0 {
            1.0 / installs_per_ms
        } else {
            0.0
        };
        let mut g = Generator {
            noise_clock: spec.from_ms as f64,
            install_clock: spec.from_ms as f64,
            spec,
            hosts,
            queue: Queue::default(),
            trees: Trees::default(),
            arrivals,
            scenarios,
            id_seed,
            emitted: 0,
            noise_gap_ms,
            install_gap_ms,
            weights_defend,
            weights_crowdstrike,
            truth: VecDeque::new(),
            summary: Summary::default(),
            finished: false,
        };
        g.schedule_noise();
        g.schedule_install();
        Ok(g)
    }

    fn schedule_noise(&mut self) {
        if self.noise_gap_ms > 0.0 {
            self.noise_clock += self.arrivals.exponential(self.noise_gap_ms);
            if self.noise_clock < self.spec.to_ms as f64 {
                self.queue
                    .push(self.noise_clock as i64, Scheduled::NoiseArrival);
            }
        }
    }

    fn schedule_install(&mut self) {
        if self.install_gap_ms > 0.0 {
            self.install_clock += self.arrivals.exponential(self.install_gap_ms);
            if self.install_clock < self.spec.to_ms as f64 {
                self.queue
                    .push(self.install_clock as i64, Scheduled::InstallArrival);
            }
        }
    }

    /// Truth records decided so far (expected sequences and near-misses), in the order the
    /// matcher would emit them (by their last event).
    pub fn drain_truth(&mut self) -> Vec<TruthRecord> {
        self.truth.drain(..).collect()
    }

    /// Counts so far (complete once the iterator is exhausted).
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The spec this generator runs.
    pub fn spec(&self) -> &GenerateSpec {
        &self.spec
    }

    fn next_ids(&mut self, sensor: Sensor) -> (String, String) {
        let n = self.emitted;
        self.emitted += 1;
        let a = mix64(self.id_seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let b = mix64(a ^ 0xD1B5_4A32_D192_ED03);
        let c = mix64(b ^ 0x8CB9_2BA7_2F3D_8DD7);
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..16].copy_from_slice(&b.to_be_bytes());
        bytes[16..].copy_from_slice(&c.to_be_bytes());
        let id = text::base64_url(&bytes[..15]);
        let event_id = match sensor {
            Sensor::Defend => text::base64_std(&bytes[6..24]),
            Sensor::CrowdStrike => {
                let h: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                )
            }
        };
        (id, event_id)
    }

    fn materialize_noise(&mut self, ts: i64) {
        let host_index = self.scenarios.index(self.hosts.len());
        let weights = match self.hosts[host_index].sensor {
            Sensor::Defend => &self.weights_defend,
            Sensor::CrowdStrike => &self.weights_crowdstrike,
        };
        let kind = NOISE[self.scenarios.weighted(weights)].0;
        let mut ctx = Ctx {
            rng: &mut self.scenarios,
            host: &mut self.hosts[host_index],
            host_index: host_index as u32,
            queue: &mut self.queue,
            trees: &mut self.trees,
        };
        ctx.noise(kind, ts);
        self.summary.noise_scenarios += 1;
    }

    fn materialize_install(&mut self, ts: i64) {
        let host_index = self.scenarios.index(self.hosts.len());
        let mut ctx = Ctx {
            rng: &mut self.scenarios,
            host: &mut self.hosts[host_index],
            host_index: host_index as u32,
            queue: &mut self.queue,
            trees: &mut self.trees,
        };
        let outcome = ctx.install_tree(ts, self.spec.script_rate, self.spec.malicious_rate);
        let label = match outcome {
            InstallOutcome::NoScripts => "no-scripts",
            InstallOutcome::Scripts(k) => k.as_str(),
        };
        let label = if self.hosts[host_index].os == model::Os::Macos {
            format!("{label} (macos)")
        } else {
            label.to_string()
        };
        *self.summary.install_trees.entry(label).or_default() += 1;
    }
}

impl Iterator for Generator {
    type Item = GeneratedHit;

    fn next(&mut self) -> Option<GeneratedHit> {
        if self.finished {
            return None;
        }
        loop {
            self.summary.max_queue = self.summary.max_queue.max(self.queue.len());
            let Some((ts, item)) = self.queue.pop() else {
                self.finished = true;
                return None;
            };
            if ts >= self.spec.to_ms {
                // The queue is time-ordered: everything left is past the range.
                self.finished = true;
                return None;
            }
            let ev = match item {
                Scheduled::NoiseArrival => {
                    self.materialize_noise(ts);
                    self.schedule_noise();
                    continue;
                }
                Scheduled::InstallArrival => {
                    self.materialize_install(ts);
                    self.schedule_install();
                    continue;
                }
                Scheduled::Event(ev) => ev,
            };
            let host_index = ev.host as usize;
            let sensor = self.hosts[host_index].sensor;
            let (id, event_id) = self.next_ids(sensor);
            let host = &mut self.hosts[host_index];
            host.event_sequence += 1;
            let emission = render::Emission {
                event_id: &event_id,
                sequence: host.event_sequence,
            };
            let source = render::render(&ev, host, &emission);
            let index = match sensor {
                Sensor::Defend => DEFEND_INDEX,
                Sensor::CrowdStrike => FDR_INDEX,
            };
            for mark in &ev.marks {
                let at = TruthEventRef {
                    index: index.to_string(),
                    id: id.clone(),
                };
                let label = HostLabel {
                    id: &host.id,
                    name: &host.name,
                };
                match *mark {
                    Mark::Stage0(t) => {
                        self.trees
                            .on_stage0(t, at, ev.ts_ms, &ev.process.entity_id, label)
                    }
                    Mark::Child(t) => self.trees.on_child(t, at, ev.ts_ms, label),
                }
            }
            for rec in self.trees.drain() {
                let counter = if rec.expected {
                    self.summary.planted.entry(rec.kind.clone())
                } else {
                    self.summary
                        .near_misses
                        .entry(rec.near_miss.clone().unwrap_or_default())
                };
                *counter.or_default() += 1;
                self.truth.push_back(rec);
            }
            self.summary.max_open_trees = self.summary.max_open_trees.max(self.trees.open_len());
            bump(&mut self.summary.events_per_index, index);
            bump(&mut self.summary.events_per_action, ev.action.as_str());
            return Some(GeneratedHit {
                index,
                id,
                timestamp_ms: ev.ts_ms,
                source,
            });
        }
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    // Look up by &str first so the hot path allocates nothing.
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

/// Runs `generator` to the end, writing hits as NDJSON to `events` and, if given, truth
/// records as NDJSON to `truth`.
pub fn write_streams(
    generator: &mut Generator,
    events: &mut dyn Write,
    mut truth: Option<&mut dyn Write>,
) -> Result<(), GenerateError> {
    let ev_err = |source| GenerateError::Write {
        what: "events",
        source,
    };
    let tr_err = |source| GenerateError::Write {
        what: "truth",
        source,
    };
    while let Some(hit) = generator.next() {
        let mut line = hit.to_ndjson();
        line.push('\n');
        events.write_all(line.as_bytes()).map_err(ev_err)?;
        if let Some(out) = truth.as_deref_mut() {
            for rec in generator.drain_truth() {
                let mut text =
                    serde_json::to_string(&rec).map_err(|e| tr_err(std::io::Error::other(e)))?;
                text.push('\n');
                out.write_all(text.as_bytes()).map_err(tr_err)?;
            }
        } else {
            generator.truth.clear();
        }
    }
    events.flush().map_err(ev_err)?;
    if let Some(out) = truth {
        out.flush().map_err(tr_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> GenerateSpec {
        GenerateSpec {
            hosts: 6,
            rate: 30.0,
            from_ms: 1_760_000_000_000,
            to_ms: 1_760_000_000_000 + 10 * 60_000,
            seed,
            installs_per_host_hour: 60.0,
            script_rate: 0.7,
            malicious_rate: 0.3,
        }
    }

    #[test]
    fn durations_parse_with_units_and_reject_junk() {
        assert_eq!(parse_duration("9m").ok(), Some(540_000));
        assert_eq!(parse_duration("500ms").ok(), Some(500));
        assert_eq!(parse_duration("2h").ok(), Some(7_200_000));
        for bad in ["", "9", "1.5h", "m", "0s", "-1s", "3w"] {
            let err = parse_duration(bad).expect_err(bad).to_string();
            assert!(err.contains("--duration"), "{err}");
        }
    }

    #[test]
    fn ranges_resolve_from_either_end() {
        let (f, t) =
            resolve_range(Some("2025-01-01T00:00:00Z"), None, "1m", 0).expect("from + duration");
        assert_eq!(t - f, 60_000);
        let (f2, t2) =
            resolve_range(None, Some("2025-01-01T00:01:00Z"), "1m", 0).expect("to + duration");
        assert_eq!((f2, t2), (f, t));
        assert_eq!(
            resolve_range(None, None, "1s", 5_000).ok(),
            Some((4_000, 5_000))
        );
        let err = resolve_range(
            Some("2025-01-02T00:00:00Z"),
            Some("2025-01-01T00:00:00Z"),
            "1m",
            0,
        )
        .expect_err("reversed range");
        assert!(err.to_string().contains("--from"));
        let err = resolve_range(Some("yesterday"), None, "1m", 0).expect_err("bad time");
        assert!(err.to_string().contains("--from") && err.to_string().contains("yesterday"));
    }

    #[test]
    fn spec_validation_names_the_argument() {
        let mut s = spec(1);
        s.script_rate = 1.5;
        assert!(Generator::new(s)
            .expect_err("rate > 1")
            .to_string()
            .contains("--script-rate"));
        let mut s = spec(1);
        s.hosts = 0;
        assert!(Generator::new(s)
            .expect_err("no hosts")
            .to_string()
            .contains("--hosts"));
        let mut s = spec(1);
        s.rate = f64::NAN;
        assert!(Generator::new(s)
            .expect_err("nan")
            .to_string()
            .contains("--rate"));
    }

    #[test]
    fn ids_are_twenty_url_safe_chars_and_unique() {
        let hits: Vec<GeneratedHit> = Generator::new(spec(9))
            .expect("valid")
            .take(5_000)
            .collect();
        let mut seen = std::collections::HashSet::new();
        for h in &hits {
            assert_eq!(h.id.len(), 20, "{}", h.id);
            assert!(h
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert!(seen.insert(h.id.clone()), "duplicate id {}", h.id);
        }
    }

    #[test]
    fn the_queue_stays_small() {
        let mut g = Generator::new(spec(2)).expect("valid");
        let n = g.by_ref().count();
        assert!(n > 10_000, "{n}");
        // Bounded by open trees (a few seconds of events), not by the 10-minute range.
        assert!(
            g.summary().max_queue < 2_000,
            "peak queue {}",
            g.summary().max_queue
        );
        assert!(
            g.summary().max_open_trees < 200,
            "open trees {}",
            g.summary().max_open_trees
        );
    }
}
