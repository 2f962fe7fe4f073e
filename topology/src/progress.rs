//! The progress view (per device: node, state, and per channel: transport, peers, rates and
//! totals; redrawn every second) and the summary at the end, as text and as JSON
//! (`status.json` during the run, `summary.json` after it, both in the run directory).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cleanup::HostCleanup;
use crate::controller::{Controller, Rates};
use crate::plan::Plan;
use fairmq_plugin_odc::protocol::ChannelStats;

/// How the progress view is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Redrawn in place on a terminal, else printed as frames.
    Auto,
    /// Redrawn in place (ANSI cursor movement).
    Tty,
    /// A frame after the other.
    Plain,
    /// Only the summary.
    None,
}

/// Draws frames on stdout.
#[derive(Debug)]
pub struct Progress {
    mode: ProgressMode,
    last_lines: usize,
    events_shown: usize,
}

impl Progress {
    /// A view in `mode` (`Auto` resolved against stdout).
    pub fn new(mode: ProgressMode) -> Progress {
        use std::io::IsTerminal as _;
        let mode = match mode {
            ProgressMode::Auto if std::io::stdout().is_terminal() => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        Progress {
            mode,
            last_lines: 0,
            events_shown: 0,
        }
    }

    /// Prints the events noted since the last call, then the frame.
    pub fn draw(&mut self, frame: &str, ctl: &Controller) {
        let mut out = std::io::stdout().lock();
        if self.mode == ProgressMode::Tty && self.last_lines > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", self.last_lines);
        }
        for e in &ctl.events_log[self.events_shown..] {
            let _ = writeln!(out, "fairmq-topology: {e}");
        }
        self.events_shown = ctl.events_log.len();
        match self.mode {
            ProgressMode::None => {}
            ProgressMode::Plain => {
                let _ = writeln!(out, "{frame}");
            }
            _ => {
                let _ = write!(out, "{frame}");
                self.last_lines = frame.lines().count();
            }
        }
        let _ = out.flush();
    }

    /// Prints the remaining events and leaves the last frame on screen.
    pub fn finish(&mut self, ctl: &Controller) {
        let mut out = std::io::stdout().lock();
        for e in &ctl.events_log[self.events_shown..] {
            let _ = writeln!(out, "fairmq-topology: {e}");
        }
        self.events_shown = ctl.events_log.len();
        self.last_lines = 0;
        let _ = out.flush();
    }
}

fn rate(x: f64) -> String {
    format!("{x:.0}")
}

fn mb(x: f64) -> String {
    format!("{x:.2}")
}

/// One frame of the progress view.
pub fn frame(plan: &Plan, ctl: &Controller, title: &str, elapsed: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{title} | {} devices on {} node(s) | {:.0} s",
        plan.instances.len(),
        plan.slots.len(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "{:<14} {:<6} {:<20} {:<13} {:<6} {:>5} {:>9} {:>7} {:>9} {:>7} {:>10} {:>10}",
        "DEVICE",
        "NODE",
        "STATE",
        "CHANNEL",
        "TRANSP",
        "PEERS",
        "IN msg/s",
        "MB/s",
        "OUT msg/s",
        "MB/s",
        "IN total",
        "OUT total"
    );
    for (i, inst) in plan.instances.iter().enumerate() {
        let d = &ctl.devices[i];
        let node = d
            .node()
            .unwrap_or_else(|| plan.hosts[inst.host].name.clone());
        let state = d.state_name();
        if d.stats.is_empty() {
            let _ = writeln!(s, "{:<14} {:<6} {:<20}", inst.id, node, state);
            continue;
        }
        for (k, c) in d.stats.iter().enumerate() {
            // Rates only while running (a last report after STOP says nothing about a rate).
            let r = if d.state == Some(fairmq::State::Running) && d.closed.is_none() {
                d.rates.get(k).copied().unwrap_or_default()
            } else {
                Rates::default()
            };
            let (id, node, state) = if k == 0 {
                (inst.id.as_str(), node.as_str(), state.as_str())
            } else {
                ("", "", "")
            };
            let _ = writeln!(
                s,
                "{:<14} {:<6} {:<20} {:<13} {:<6} {:>5} {:>9} {:>7} {:>9} {:>7} {:>10} {:>10}",
                id,
                node,
                state,
                c.full_name(),
                c.transport,
                c.peers,
                rate(r.msgs_in),
                mb(r.mb_in),
                rate(r.msgs_out),
                mb(r.mb_out),
                c.msgs_in,
                c.msgs_out
            );
        }
    }
    s
}

/// One device in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    /// Id.
    pub id: String,
    /// Node it ran on.
    pub node: String,
    /// Its process id, if it connected.
    pub pid: Option<u32>,
    /// Last state (or `GONE in ...`).
    pub state: String,
    /// How the process ended.
    pub exit: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Last counters (for a device that died: its last report).
    pub channels: Vec<ChannelStats>,
    /// Its log file (stdout and stderr).
    pub log: Option<String>,
}

/// What the summary says about the run besides the devices.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `local` or `slurm`.
    pub launcher: String,
    /// The Slurm job id.
    pub job: Option<String>,
    /// Log file of every instance.
    pub logs: Vec<Option<std::path::PathBuf>>,
}

/// One connection in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionSummary {
    /// `#<i> (<from> -> <to>)`.
    pub name: String,
    /// Transport.
    pub transport: String,
    /// Messages sent by the `from` side.
    pub sent: u64,
    /// Messages received by the `to` side.
    pub received: u64,
    /// Messages sent back by the `to` side (request/reply patterns).
    pub sent_back: u64,
    /// Messages received back by the `from` side.
    pub received_back: u64,
}

/// The run's status (during the run) or summary (after it).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Topology name.
    pub topology: String,
    /// `local` or `slurm`.
    pub launcher: String,
    /// Slurm job id.
    pub job: Option<String>,
    /// Session.
    pub session: String,
    /// `running`, `ok`, `failed` or `interrupted`.
    pub result: String,
    /// What went wrong.
    pub error: Option<String>,
    /// Seconds since the start.
    pub elapsed_s: f64,
    /// Devices.
    pub devices: Vec<DeviceSummary>,
    /// Connections.
    pub connections: Vec<ConnectionSummary>,
    /// Cleanup, per host.
    pub cleanup: Vec<HostCleanup>,
    /// What happened.
    pub events: Vec<String>,
}

fn channel_total(ctl: &Controller, plan: &Plan, instances: &[usize], channel: &str) -> (u64, u64) {
    let _ = plan;
    let mut msgs_in = 0;
    let mut msgs_out = 0;
    for &i in instances {
        for c in ctl.devices[i].stats.iter().filter(|c| c.name == channel) {
            msgs_in += c.msgs_in;
            msgs_out += c.msgs_out;
        }
    }
    (msgs_in, msgs_out)
}

/// Collects the summary.
pub fn summary(
    plan: &Plan,
    ctl: &Controller,
    info: &RunInfo,
    result: &str,
    error: Option<String>,
    elapsed: Duration,
    cleanup: Vec<HostCleanup>,
) -> Summary {
    let t = &plan.topology;
    let devices = plan
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let d = &ctl.devices[i];
            DeviceSummary {
                id: inst.id.clone(),
                node: d
                    .node()
                    .unwrap_or_else(|| plan.hosts[inst.host].name.clone()),
                pid: d.hello.as_ref().map(|h| h.pid),
                state: d.state_name(),
                exit: d.exit.clone(),
                failure: d.failure.clone(),
                channels: d.stats.clone(),
                log: info
                    .logs
                    .get(i)
                    .cloned()
                    .flatten()
                    .map(|p| p.display().to_string()),
            }
        })
        .collect();
    let connections = t
        .connections
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let of = |dev: usize| -> Vec<usize> {
                (0..plan.instances.len())
                    .filter(|&i| plan.instances[i].device == dev)
                    .collect()
            };
            let from_name = &t.devices[c.from.device].channels[c.from.channel].name;
            let to_name = &t.devices[c.to.device].channels[c.to.channel].name;
            let (from_in, from_out) = channel_total(ctl, plan, &of(c.from.device), from_name);
            let (to_in, to_out) = channel_total(ctl, plan, &of(c.to.device), to_name);
            ConnectionSummary {
                name: t.connection_name(ci),
                transport: plan.connections[ci].transport.name().to_owned(),
                sent: from_out,
                received: to_in,
                sent_back: to_out,
                received_back: from_in,
            }
        })
        .collect();
    Summary {
        topology: t.name.clone(),
        launcher: info.launcher.clone(),
        job: info.job.clone(),
        session: plan.session.clone(),
        result: result.to_owned(),
        error,
        elapsed_s: elapsed.as_secs_f64(),
        devices,
        connections,
        cleanup,
        events: ctl.events_log.clone(),
    }
}

impl Summary {
    /// The summary as text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let job = self
            .job
            .as_ref()
            .map(|j| format!(", slurm job {j}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "summary: topology '{}' ({}{job}, session {}): {} after {:.1} s",
            self.topology, self.launcher, self.session, self.result, self.elapsed_s
        );
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  error: {e}");
        }
        for d in &self.devices {
            let totals: Vec<String> = d
                .channels
                .iter()
                .map(|c| format!("{} in {} out {}", c.full_name(), c.msgs_in, c.msgs_out))
                .collect();
            let _ = writeln!(
                s,
                "  {:<14} {:<6} {:<20} {:<26} {}",
                d.id,
                d.node,
                d.state,
                d.exit.as_deref().unwrap_or("-"),
                totals.join(", ")
            );
        }
        for c in &self.connections {
            let back = if c.sent_back > 0 || c.received_back > 0 {
                format!("; back: sent {}, received {}", c.sent_back, c.received_back)
            } else {
                String::new()
            };
            let lost = if c.sent == c.received {
                "nothing lost".to_owned()
            } else if self.result == "ok" {
                format!("{} not received", c.sent.abs_diff(c.received))
            } else {
                format!("{} apart", c.sent.abs_diff(c.received))
            };
            let _ = writeln!(
                s,
                "  connection {} ({}): sent {}, received {} ({lost}){back}",
                c.name, c.transport, c.sent, c.received
            );
        }
        let gone: Vec<&str> = self
            .devices
            .iter()
            .filter(|d| d.state.starts_with("GONE"))
            .map(|d| d.id.as_str())
            .collect();
        if !gone.is_empty() {
            let _ = writeln!(
                s,
                "  (the counters of {} are from its last report, up to 1 s before it ended)",
                gone.join(", ")
            );
        }
        for c in &self.cleanup {
            let _ = writeln!(s, "  cleanup {}", c.describe());
        }
        s
    }
}
