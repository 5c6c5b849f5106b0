//! Renders scheduled events as the `_source` documents each sensor's integration indexes:
//! Elastic Defend `logs-endpoint.events.process-*` (field set from the endpoint package's
//! `linux_process_fork_exec_exit.yaml`) and CrowdStrike FDR `logs-crowdstrike.fdr-*` (shape of
//! the integration's pipeline test output).

use super::model::{Action, Host, Image, Leader, Os, PendingEvent, Proc};
use super::scenario::{LINUX_FLAVORS, MAC_FLAVOR};
use super::text::{split_windows_command_line, JsonWriter};

/// Index (data stream) of Elastic Defend process events.
pub const DEFEND_INDEX: &str = "logs-endpoint.events.process-default";
/// Index (data stream) of CrowdStrike FDR events.
pub const FDR_INDEX: &str = "logs-crowdstrike.fdr-default";

/// Per-emission values decided by the generator, not by the scheduled event.
pub(crate) struct Emission<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) sequence: i64,
}

/// Renders `ev` on `host` as a JSON document.
pub(crate) fn render(ev: &PendingEvent, host: &Host, em: &Emission<'_>) -> String {
    match host.sensor {
        super::model::Sensor::Defend => render_defend(ev, host, em),
        super::model::Sensor::CrowdStrike => render_fdr(ev, host, em),
    }
}

fn defend_command_line(img: &Image) -> String {
    // Defend builds command_line by joining args with single spaces (no re-quoting).
    img.args.join(" ")
}

fn leader(w: &mut JsonWriter, key: &'static str, l: &Leader, same: bool) {
    w.obj(key);
    w.kv("entity_id", &l.entity_id);
    w.ki("pid", i64::from(l.pid));
    w.kv("name", l.image.name());
    w.kv("executable", &l.image.executable);
    w.key("args").strs(&l.image.args);
    w.ki("args_count", l.image.args.len() as i64);
    w.key("start").time(l.start_ms);
    w.key("same_as_process").bool(same);
    if key == "entry_leader" && !l.entry_type.is_empty() {
        w.obj("entry_meta").kv("type", l.entry_type).end_obj();
    }
    w.end_obj();
}

fn render_defend(ev: &PendingEvent, host: &Host, em: &Emission<'_>) -> String {
    let mut w = JsonWriter::new();
    let p: &Proc = &ev.process;
    w.begin_obj();
    w.key("@timestamp").time(ev.ts_ms);
    w.obj("agent")
        .kv("id", &host.agent_id)
        .kv("type", "endpoint")
        .kv("version", host.agent_version)
        .end_obj();
    w.obj("data_stream")
        .kv("dataset", "endpoint.events.process")
        .kv("namespace", "default")
        .kv("type", "logs")
        .end_obj();
    w.obj("ecs").kv("version", "8.10.0").end_obj();
    w.obj("event");
    w.kv("action", ev.action.as_str());
    w.key("category").strs(&["process"]);
    w.key("created").time(ev.ts_ms);
    w.kv("dataset", "endpoint.events.process");
    w.kv("id", em.event_id);
    w.kv("kind", "event");
    w.kv("module", "endpoint");
    w.ki("sequence", em.sequence);
    w.key("type").strs(&[ev.action.event_type()]);
    w.end_obj();
    w.obj("group")
        .key("id")
        .int_str(i64::from(p.user.id))
        .kv("name", p.user.name)
        .end_obj();
    host_block(&mut w, host, true);
    w.kv("message", "Endpoint process event");
    w.obj("process");
    w.obj("Ext").key("ancestry").strs(&p.ancestry).end_obj();
    w.key("args").strs(&p.image.args);
    w.ki("args_count", p.image.args.len() as i64);
    w.kv("command_line", &defend_command_line(&p.image));
    w.kv("entity_id", &p.entity_id);
    w.kv("executable", &p.image.executable);
    if ev.action == Action::End {
        w.key("end").time(ev.ts_ms);
        w.ki("exit_code", ev.exit_code);
    }
    w.kv("name", p.image.name());
    w.ki("pid", i64::from(p.pid));
    w.key("start").time(p.start_ms);
    w.kv("working_directory", &p.cwd);
    w.obj("user")
        .key("id")
        .int_str(i64::from(p.user.id))
        .kv("name", p.user.name)
        .end_obj();
    if let Some(parent) = &ev.parent {
        w.obj("parent");
        w.key("args").strs(&parent.image.args);
        w.ki("args_count", parent.image.args.len() as i64);
        w.kv("command_line", &defend_command_line(&parent.image));
        w.kv("entity_id", &parent.entity_id);
        w.kv("executable", &parent.image.executable);
        w.kv("name", parent.image.name());
        w.ki("pid", i64::from(parent.pid));
        w.key("start").time(parent.start_ms);
        w.end_obj();
    }
    if let Some(prev) = &ev.previous {
        // ECS process.previous is an array of earlier images.
        w.key("previous").begin_arr();
        w.begin_obj();
        w.key("args").strs(&prev.args);
        w.ki("args_count", prev.args.len() as i64);
        w.kv("executable", &prev.executable);
        w.end_obj();
        w.end_arr();
    }
    for (key, l) in [
        ("group_leader", &p.group_leader),
        ("session_leader", &p.session_leader),
        ("entry_leader", &p.entry_leader),
    ] {
        if let Some(l) = l {
            leader(&mut w, key, l, l.entity_id == p.entity_id);
        }
    }
    w.end_obj();
    w.obj("user")
        .key("id")
        .int_str(i64::from(p.user.id))
        .kv("name", p.user.name)
        .end_obj();
    w.end_obj();
    w.finish()
}

fn host_block(w: &mut JsonWriter, host: &Host, full: bool) {
    let (family, name, version, full_name, kernel) = match host.os {
        Os::Macos => MAC_FLAVOR,
        Os::Linux => LINUX_FLAVORS[host.os_flavor % LINUX_FLAVORS.len()],
    };
    let (os_type, platform) = match host.os {
        Os::Macos => ("macos", "darwin"),
        Os::Linux => ("linux", if full { family } else { "linux" }),
    };
    w.obj("host");
    if full {
        w.kv(
            "architecture",
            if host.os == Os::Macos {
                "arm64"
            } else {
                "x86_64"
            },
        );
    }
    w.kv("hostname", &host.name);
    w.kv("id", &host.id);
    if full {
        w.key("ip").strs(&[host.ip.as_str()]);
        w.key("mac").strs(&[host.mac.as_str()]);
    }
    w.kv("name", &host.name);
    w.obj("os");
    if full {
        w.obj("Ext").kv("variant", name).end_obj();
        w.kv("family", family);
        w.kv("full", full_name);
        w.kv("kernel", kernel);
        w.kv("name", name);
    }
    w.kv("platform", platform);
    w.kv("type", os_type);
    if full {
        w.kv("version", version);
    }
    w.end_obj();
    w.end_obj();
}

fn render_fdr(ev: &PendingEvent, host: &Host, em: &Emission<'_>) -> String {
    let mut w = JsonWriter::new();
    let p: &Proc = &ev.process;
    let start_ms = ev.ts_ms - ev.cs_lag_ms;
    let is_start = ev.action.event_type() == "start";
    w.begin_obj();
    w.key("@timestamp").time(ev.ts_ms);
    // A few raw FDR fields the pipeline keeps under crowdstrike.* (see test-linux.log-expected.json).
    w.obj("crowdstrike");
    w.kv("cid", &host.cid);
    w.kv("ConfigBuild", "1007.4.0019408.1");
    w.kv("EffectiveTransmissionClass", "2");
    w.kv("EventOrigin", "1");
    w.kv("id", em.event_id);
    w.kv(
        "name",
        match ev.action {
            Action::TerminateProcess => "TerminateProcessLinV1",
            Action::SyntheticProcessRollup2 => "SyntheticProcessRollup2LinV4",
            _ => "ProcessRollup2LinV12",
        },
    );
    if is_start {
        w.key("RUID").int_str(i64::from(p.user.id));
        w.key("RGID").int_str(i64::from(p.user.id));
        if let Some(parent) = &ev.parent {
            w.kv("SourceProcessId", &parent.entity_id);
        }
        if let Some(s) = &p.session_leader {
            w.kv("SessionProcessId", &s.entity_id);
        }
        if ev.action == Action::SyntheticProcessRollup2 {
            w.kv("SyntheticPR2Flags", "4");
        }
    } else {
        w.kv("ContextProcessId", &p.entity_id);
    }
    w.end_obj();
    w.obj("data_stream")
        .kv("dataset", "crowdstrike.fdr")
        .kv("namespace", "default")
        .kv("type", "logs")
        .end_obj();
    w.obj("device").kv("id", &host.id).end_obj();
    w.obj("ecs").kv("version", "8.17.0").end_obj();
    w.obj("event");
    w.kv("action", ev.action.as_str());
    w.key("category").strs(&["process"]);
    w.key("created").time(ev.ts_ms);
    w.kv("dataset", "crowdstrike.fdr");
    let event_id = format!("{}|{}|{}", em.event_id, host.id, host.cid);
    w.kv("id", &event_id);
    w.kv("kind", "event");
    w.kv("module", "crowdstrike");
    w.kv("outcome", "success");
    w.key("type").strs(&[ev.action.event_type()]);
    w.end_obj();
    host_block(&mut w, host, false);
    w.kv("message", ev.action.as_str());
    w.obj("observer")
        .kv("serial_number", &host.id)
        .kv("type", "agent")
        .kv("vendor", "crowdstrike")
        .kv("version", "1007.4.0019408.1")
        .end_obj();
    w.obj("process");
    if is_start {
        // The CrowdStrike integration's pipeline splits CommandLine the Windows way
        // (`CommandLineToArgvW` rules) even on Linux.
        let args = split_windows_command_line(&p.image.command_line);
        w.key("args").strs(&args);
        w.ki("args_count", args.len() as i64);
        w.kv("command_line", &p.image.command_line);
    }
    w.kv("entity_id", &p.entity_id);
    if is_start {
        w.kv("executable", &p.image.executable);
        if let Some(g) = &p.group_leader {
            w.obj("group_leader")
                .kv("entity_id", &g.entity_id)
                .end_obj();
        }
        w.kv("name", p.image.name());
        if let Some(parent) = &ev.parent {
            w.obj("parent");
            w.kv("entity_id", &parent.entity_id);
            if ev.parent_name_known {
                w.kv("name", parent.image.name());
            }
            w.end_obj();
        }
        if let Some(g) = &p.group_leader {
            if let Ok(pgid) = g.entity_id.parse::<i64>() {
                w.ki("pgid", pgid);
            }
        }
    }
    w.ki("pid", i64::from(p.pid));
    if is_start {
        w.key("start").time(start_ms);
    } else {
        w.key("end").time(start_ms);
    }
    w.end_obj();
    if is_start {
        w.obj("related")
            .key("user")
            .begin_arr()
            .str(p.user.name)
            .int_str(i64::from(p.user.id))
            .end_arr()
            .end_obj();
        w.obj("user")
            .key("id")
            .int_str(i64::from(p.user.id))
            .kv("name", p.user.name)
            .end_obj();
    }
    w.end_obj();
    w.finish()
}
