//! The generator's world model: hosts (one sensor each), processes (identity plus the image
//! they currently run), scheduled events, and `Ctx::spawn`, which turns "process P starts
//! program X at time T" into the events each sensor would report (Elastic Defend:
//! `fork`, `exec`, `end`; CrowdStrike FDR: `ProcessRollup2`, `TerminateProcess`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::rng::Rng;
use super::text::{base64_std, SECS_1601_TO_1970};

/// Which sensor reports a host's process events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sensor {
    /// Elastic Defend (`logs-endpoint.events.process-default`).
    Defend,
    /// CrowdStrike Falcon Data Replicator (`logs-crowdstrike.fdr-default`).
    CrowdStrike,
}

/// The host's operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    /// Linux (the rule's target).
    Linux,
    /// macOS (`host.os.type: macos`, never matched by the v2 rule).
    Macos,
}

/// A program image: what a process runs after an exec.
#[derive(Debug)]
pub(crate) struct Image {
    /// `process.executable`.
    pub(crate) executable: String,
    /// `process.args`, argv as the kernel saw it.
    pub(crate) args: Vec<String>,
    /// `process.command_line` as the sensor reports it (may keep shell quoting).
    pub(crate) command_line: String,
}

impl Image {
    /// `process.name`: the executable's base name.
    pub(crate) fn name(&self) -> &str {
        self.executable
            .rsplit('/')
            .next()
            .unwrap_or(&self.executable)
    }
}

/// A session, group or entry leader as Defend reports it.
#[derive(Debug)]
pub(crate) struct Leader {
    pub(crate) entity_id: Arc<str>,
    pub(crate) pid: u32,
    pub(crate) start_ms: i64,
    pub(crate) image: Arc<Image>,
    /// `entry_meta.type` for entry leaders (`sshd`, `init`, `terminal`).
    pub(crate) entry_type: &'static str,
}

/// A user account on a host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct User {
    pub(crate) id: u32,
    pub(crate) name: &'static str,
}

/// A process at one moment: identity (pid, entity id, start) and current image.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    pub(crate) entity_id: Arc<str>,
    pub(crate) start_ms: i64,
    pub(crate) image: Arc<Image>,
    pub(crate) cwd: Arc<str>,
    pub(crate) user: User,
    /// Entity ids of the ancestors, parent first (Defend `process.Ext.ancestry`).
    pub(crate) ancestry: Arc<Vec<Arc<str>>>,
    pub(crate) group_leader: Option<Arc<Leader>>,
    pub(crate) session_leader: Option<Arc<Leader>>,
    pub(crate) entry_leader: Option<Arc<Leader>>,
}

impl Proc {
    fn as_leader(&self, entry_type: &'static str) -> Arc<Leader> {
        Arc::new(Leader {
            entity_id: self.entity_id.clone(),
            pid: self.pid,
            start_ms: self.start_ms,
            image: self.image.clone(),
            entry_type,
        })
    }
}

/// A host and its per-host counters.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub(crate) sensor: Sensor,
    pub(crate) os: Os,
    /// `host.id` (Defend Linux: machine-id; macOS: platform UUID; FDR: `aid`).
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) agent_id: String,
    pub(crate) agent_version: &'static str,
    /// FDR customer id.
    pub(crate) cid: String,
    pub(crate) ip: String,
    pub(crate) mac: String,
    pub(crate) os_flavor: usize,
    next_pid: u32,
    next_cs_id: u64,
    /// Next `event.sequence` (Defend), assigned at emission so it rises with time.
    pub(crate) event_sequence: i64,
    /// Long-lived processes that scenarios use as parents.
    pub(crate) init: Option<Proc>,
    pub(crate) sshd: Option<Proc>,
    pub(crate) cron: Option<Proc>,
    pub(crate) shells: Vec<Proc>,
    pub(crate) node_server: Option<Proc>,
}

/// The users that own generated processes.
pub(crate) const ROOT: User = User {
    id: 0,
    name: "root",
};
/// Linux interactive/CI users.
pub(crate) const LINUX_USERS: [User; 3] = [
    User {
        id: 1000,
        name: "ubuntu",
    },
    User {
        id: 1001,
        name: "ci",
    },
    User {
        id: 1002,
        name: "dev",
    },
];
/// The macOS desktop user.
pub(crate) const MAC_USER: User = User {
    id: 501,
    name: "alice",
};

/// What the truth tracker learns from an event when it is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// The candidate stage-0 event of tracked tree `n`.
    Stage0(u64),
    /// A candidate stage-1 (first-child) event of tracked tree `n`.
    Child(u64),
}

/// What a scheduled event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Defend `fork` (`event.type: start`): the child still runs the parent's image.
    Fork,
    /// Defend `exec` (`event.type: start`).
    Exec,
    /// Defend `end` (`event.type: end`).
    End,
    /// FDR `ProcessRollup2` (`event.type: start`).
    ProcessRollup2,
    /// FDR `SyntheticProcessRollup2` (`event.type: start`), sensor-reconstructed.
    SyntheticProcessRollup2,
    /// FDR `TerminateProcess` (`event.type: end`).
    TerminateProcess,
}

impl Action {
    /// `event.action`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Fork => "fork",
            Action::Exec => "exec",
            Action::End => "end",
            Action::ProcessRollup2 => "ProcessRollup2",
            Action::SyntheticProcessRollup2 => "SyntheticProcessRollup2",
            Action::TerminateProcess => "TerminateProcess",
        }
    }

    /// `event.type`.
    pub(crate) fn event_type(self) -> &'static str {
        match self {
            Action::End | Action::TerminateProcess => "end",
            _ => "start",
        }
    }
}

/// One event waiting in the queue; rendered to JSON only when emitted.
#[derive(Debug)]
pub(crate) struct PendingEvent {
    pub(crate) ts_ms: i64,
    pub(crate) host: u32,
    pub(crate) action: Action,
    pub(crate) process: Proc,
    pub(crate) parent: Option<Proc>,
    /// The image before this exec (Defend `process.previous`).
    pub(crate) previous: Option<Arc<Image>>,
    /// FDR: whether `ParentBaseFileName` (hence `process.parent.name`) is present.
    pub(crate) parent_name_known: bool,
    /// FDR: cloud-receive lag between process start and `@timestamp`.
    pub(crate) cs_lag_ms: i64,
    pub(crate) exit_code: i64,
    pub(crate) marks: Vec<Mark>,
}

/// Queue entry: ordered by time, then by insertion so ties come out in the order scheduled.
pub(crate) enum Scheduled {
    /// An event to emit.
    Event(Box<PendingEvent>),
    /// Time for the next background scenario.
    NoiseArrival,
    /// Time for the next npm install tree.
    InstallArrival,
}

struct Entry {
    ts_ms: i64,
    order: u64,
    item: Scheduled,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ms, self.order) == (other.ts_ms, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.ts_ms, other.order).cmp(&(self.ts_ms, self.order))
    }
}

/// The time-ordered queue of scheduled work. Its size is bounded by the open trees.
#[derive(Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Entry>,
    next_order: u64,
}

impl Queue {
    /// Schedules `item` at `ts_ms`.
    pub(crate) fn push(&mut self, ts_ms: i64, item: Scheduled) {
        let order = self.next_order;
        self.next_order += 1;
        self.heap.push(Entry { ts_ms, order, item });
    }

    /// The earliest item.
    pub(crate) fn pop(&mut self) -> Option<(i64, Scheduled)> {
        self.heap.pop().map(|e| (e.ts_ms, e.item))
    }

    /// Number of queued items.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// How a process is started.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpawnOpts {
    /// The program is a `#!/usr/bin/env node` script: Defend sees `exec env` then `exec node`.
    pub(crate) via_env: bool,
    /// The child starts a new session (and is its entry leader of this type).
    pub(crate) new_session: Option<&'static str>,
    /// The child becomes its own process-group leader (job control).
    pub(crate) new_group: bool,
    /// Fork only, no exec (a subshell, or a spawn whose exec failed).
    pub(crate) fork_only: bool,
    /// FDR: report the start as `SyntheticProcessRollup2`.
    pub(crate) synthetic: bool,
    /// FDR: no `ParentBaseFileName`, so no `process.parent.name`.
    pub(crate) hide_parent_name: bool,
    /// Marks for the start event (exec/PR2, or the fork when `fork_only`).
    pub(crate) marks: Vec<Mark>,
    /// Raw command line to report instead of the joined argv (keeps quoting).
    pub(crate) command_line: Option<String>,
    /// Working directory; the parent's when `None`.
    pub(crate) cwd: Option<Arc<str>>,
    /// Owner; the parent's when `None`.
    pub(crate) user: Option<User>,
    /// Exit code for the end event.
    pub(crate) exit_code: i64,
}

/// Everything a scenario needs to schedule events on one host.
pub(crate) struct Ctx<'a> {
    pub(crate) rng: &'a mut Rng,
    pub(crate) host: &'a mut Host,
    pub(crate) host_index: u32,
    pub(crate) queue: &'a mut Queue,
    pub(crate) trees: &'a mut super::truth::Trees,
}

/// Builds an image from an executable and argv.
pub(crate) fn image(executable: &str, args: &[&str]) -> Arc<Image> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let command_line = super::text::join_command_line(&args);
    Arc::new(Image {
        executable: executable.to_string(),
        args,
        command_line,
    })
}

impl Host {
    /// A new host with empty process tables; `populate` fills the long-lived processes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sensor: Sensor,
        os: Os,
        id: String,
        name: String,
        agent_id: String,
        cid: String,
        ip: String,
        mac: String,
        os_flavor: usize,
        rng: &mut Rng,
    ) -> Host {
        Host {
            sensor,
            os,
            id,
            name,
            agent_id,
            agent_version: if sensor == Sensor::Defend {
                "8.17.4"
            } else {
                "7.20.17308"
            },
            cid,
            ip,
            mac,
            os_flavor,
            next_pid: rng.range(2_000, 40_000) as u32,
            next_cs_id: rng.range(10_000_000_000_000, 90_000_000_000_000) as u64,
            event_sequence: rng.range(10_000, 5_000_000),
            init: None,
            sshd: None,
            cron: None,
            shells: Vec::new(),
            node_server: None,
        }
    }

    fn alloc_pid(&mut self, rng: &mut Rng) -> u32 {
        self.next_pid += rng.range(1, 40) as u32;
        if self.next_pid > 4_194_000 {
            self.next_pid = 300;
        }
        self.next_pid
    }

    /// A fresh entity id for a process started at `start_ms` (with sub-ms jitter for realism).
    fn alloc_entity_id(&mut self, pid: u32, start_ms: i64, rng: &mut Rng) -> Arc<str> {
        match self.sensor {
            Sensor::Defend => {
                // Defend: base64("<agent.id>-<pid>-<seconds since 1601>.<fraction>"), fraction
                // in 100 ns ticks padded to nine digits: the form Elastic Defend's sample events
                // decode to (see the round-trip test in text.rs).
                let secs = start_ms.div_euclid(1000) + SECS_1601_TO_1970;
                let ticks = start_ms.rem_euclid(1000) * 10_000 + rng.range(0, 9_999);
                let text = format!("{}-{}-{}.{:07}00", self.agent_id, pid, secs, ticks);
                base64_std(text.as_bytes()).into()
            }
            Sensor::CrowdStrike => {
                // FDR: TargetProcessId, a decimal id unique per host.
                self.next_cs_id += rng.range(1, 5_000) as u64;
                self.next_cs_id.to_string().into()
            }
        }
    }

    /// A process that was already running before the generated range (no start event).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn existing_process(
        &mut self,
        rng: &mut Rng,
        parent: Option<&Proc>,
        img: Arc<Image>,
        start_ms: i64,
        user: User,
        cwd: &str,
        entry_type: Option<&'static str>,
    ) -> Proc {
        let pid = self.alloc_pid(rng);
        let entity_id = self.alloc_entity_id(pid, start_ms, rng);
        let mut p = Proc {
            pid,
            entity_id,
            start_ms,
            image: img,
            cwd: cwd.into(),
            user,
            ancestry: Arc::new(Vec::new()),
            group_leader: None,
            session_leader: None,
            entry_leader: None,
        };
        inherit(&mut p, parent);
        if let Some(kind) = entry_type {
            let me = p.as_leader(kind);
            p.session_leader = Some(me.clone());
            p.group_leader = Some(me.clone());
            p.entry_leader = Some(me);
        }
        p
    }
}

fn inherit(child: &mut Proc, parent: Option<&Proc>) {
    if let Some(parent) = parent {
        let mut ancestry = Vec::with_capacity(parent.ancestry.len() + 1);
        ancestry.push(parent.entity_id.clone());
        ancestry.extend(parent.ancestry.iter().take(19).cloned());
        child.ancestry = Arc::new(ancestry);
        child.group_leader = parent.group_leader.clone();
        child.session_leader = parent.session_leader.clone();
        child.entry_leader = parent.entry_leader.clone();
    }
}

/// The result of a spawn: the child as it runs after its exec, and when that exec happened.
pub(crate) struct Spawned {
    pub(crate) proc: Proc,
    /// Timestamp of the event a rule would see as the start (exec / PR2).
    pub(crate) start_ts: i64,
}

impl Ctx<'_> {
    fn push(&mut self, ev: PendingEvent) {
        self.queue.push(ev.ts_ms, Scheduled::Event(Box::new(ev)));
    }

    /// Starts `img` as a child of `parent`. The start event (exec / PR2) is at `exec_at`; a
    /// Defend fork precedes it by 0–2 ms (callers keep `exec_at` >= 3 ms after the parent's
    /// start and the current time). The end event comes `life_ms` after the start.
    pub(crate) fn spawn(
        &mut self,
        parent: &Proc,
        exec_at: i64,
        img: Arc<Image>,
        life_ms: i64,
        opts: SpawnOpts,
    ) -> Spawned {
        let rng = &mut *self.rng;
        let fork_at = exec_at - if opts.via_env { 2 } else { rng.range(0, 2) };
        let pid = self.host.alloc_pid(rng);
        let entity_id = self.host.alloc_entity_id(pid, fork_at, rng);
        let mut child = Proc {
            pid,
            entity_id,
            start_ms: fork_at,
            image: parent.image.clone(),
            cwd: opts.cwd.clone().unwrap_or_else(|| parent.cwd.clone()),
            user: opts.user.unwrap_or(parent.user),
            ancestry: Arc::new(Vec::new()),
            group_leader: None,
            session_leader: None,
            entry_leader: None,
        };
        inherit(&mut child, Some(parent));
        let end_at = exec_at + life_ms.max(1);
        let exit_code = opts.exit_code;
        match self.host.sensor {
            Sensor::Defend => {
                let forked = child.clone();
                self.push(PendingEvent {
                    ts_ms: fork_at,
                    host: self.host_index,
                    action: Action::Fork,
                    process: forked.clone(),
                    parent: Some(parent.clone()),
                    previous: None,
                    parent_name_known: true,
                    cs_lag_ms: 0,
                    exit_code: 0,
                    marks: if opts.fork_only {
                        opts.marks.clone()
                    } else {
                        Vec::new()
                    },
                });
                if opts.fork_only {
                    self.push(self_end(self.host_index, end_at, forked, parent, exit_code));
                    return Spawned {
                        proc: child,
                        start_ts: fork_at,
                    };
                }
                let mut previous = parent.image.clone();
                // With a `#!/usr/bin/env node` script the process's *first* exec is `env`, and
                // that exec (parent still the same) is already a stage-2 candidate; stage-1
                // candidacy needs the final `node` image. Place the marks accordingly.
                let (first_exec_marks, final_marks): (Vec<Mark>, Vec<Mark>) = if opts.via_env {
                    opts.marks.iter().partition(|m| matches!(m, Mark::Child(_)))
                } else {
                    (Vec::new(), opts.marks.clone())
                };
                if opts.via_env {
                    let mut env_args = vec!["/usr/bin/env".to_string()];
                    env_args.push("node".to_string());
                    env_args.extend(img.args.iter().skip(1).cloned());
                    let env_img = Arc::new(Image {
                        executable: "/usr/bin/env".to_string(),
                        command_line: env_args.join(" "),
                        args: env_args,
                    });
                    let mut as_env = child.clone();
                    as_env.image = env_img.clone();
                    self.push(PendingEvent {
                        ts_ms: exec_at - 1,
                        host: self.host_index,
                        action: Action::Exec,
                        process: as_env,
                        parent: Some(parent.clone()),
                        previous: Some(previous),
                        parent_name_known: true,
                        cs_lag_ms: 0,
                        exit_code: 0,
                        marks: first_exec_marks,
                    });
                    previous = env_img;
                }
                child.image = with_command_line(img, opts.command_line.as_deref());
                self.apply_leaders(&mut child, &opts);
                self.push(PendingEvent {
                    ts_ms: exec_at,
                    host: self.host_index,
                    action: Action::Exec,
                    process: child.clone(),
                    parent: Some(parent.clone()),
                    previous: Some(previous),
                    parent_name_known: true,
                    cs_lag_ms: 0,
                    exit_code: 0,
                    marks: final_marks,
                });
                self.push(self_end(
                    self.host_index,
                    end_at,
                    child.clone(),
                    parent,
                    exit_code,
                ));
            }
            Sensor::CrowdStrike => {
                if opts.fork_only {
                    // FDR has no fork events; a fork-only spawn leaves no trace.
                    return Spawned {
                        proc: child,
                        start_ts: fork_at,
                    };
                }
                child.image = with_command_line(img, opts.command_line.as_deref());
                self.apply_leaders(&mut child, &opts);
                let lag = self.rng.range(80, 900);
                self.push(PendingEvent {
                    ts_ms: exec_at,
                    host: self.host_index,
                    action: if opts.synthetic {
                        Action::SyntheticProcessRollup2
                    } else {
                        Action::ProcessRollup2
                    },
                    process: child.clone(),
                    parent: Some(parent.clone()),
                    previous: None,
                    parent_name_known: !opts.hide_parent_name,
                    cs_lag_ms: lag,
                    exit_code: 0,
                    marks: opts.marks.clone(),
                });
                self.push(PendingEvent {
                    ts_ms: end_at,
                    host: self.host_index,
                    action: Action::TerminateProcess,
                    process: child.clone(),
                    parent: Some(parent.clone()),
                    previous: None,
                    parent_name_known: false,
                    cs_lag_ms: lag,
                    exit_code,
                    marks: Vec::new(),
                });
            }
        }
        Spawned {
            proc: child,
            start_ts: exec_at,
        }
    }

    /// Reports an already-running process as FDR `SyntheticProcessRollup2` (sensor start-up
    /// inventory); on Defend hosts nothing is emitted.
    pub(crate) fn synthetic_inventory(&mut self, at: i64, p: &Proc, parent: &Proc) {
        if self.host.sensor != Sensor::CrowdStrike {
            return;
        }
        let lag = self.rng.range(80, 900);
        self.push(PendingEvent {
            ts_ms: at,
            host: self.host_index,
            action: Action::SyntheticProcessRollup2,
            process: p.clone(),
            parent: Some(parent.clone()),
            previous: None,
            parent_name_known: true,
            cs_lag_ms: lag,
            exit_code: 0,
            marks: Vec::new(),
        });
    }

    fn apply_leaders(&self, child: &mut Proc, opts: &SpawnOpts) {
        if let Some(kind) = opts.new_session {
            let me = child.as_leader(kind);
            child.session_leader = Some(me.clone());
            child.group_leader = Some(me.clone());
            child.entry_leader = Some(me);
        } else if opts.new_group {
            child.group_leader = Some(child.as_leader(""));
        }
    }
}

fn with_command_line(img: Arc<Image>, raw: Option<&str>) -> Arc<Image> {
    match raw {
        None => img,
        Some(line) => Arc::new(Image {
            executable: img.executable.clone(),
            args: img.args.clone(),
            command_line: line.to_string(),
        }),
    }
}

fn self_end(host: u32, ts: i64, process: Proc, parent: &Proc, exit_code: i64) -> PendingEvent {
    PendingEvent {
        ts_ms: ts,
        host,
        action: Action::End,
        process,
        parent: Some(parent.clone()),
        previous: None,
        parent_name_known: true,
        cs_lag_ms: 0,
        exit_code,
        marks: Vec::new(),
    }
}
