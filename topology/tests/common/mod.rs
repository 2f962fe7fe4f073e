//! What the topology tests share: the binaries, a run of `fairmq-topology` with its own session
//! and run directory, its summary, the lifecycle a device's log shows, and the check that no
//! host keeps anything of the run in `/dev/shm` or `/tmp`.
//!
//! The device binaries are not part of this package: `cargo test --workspace` (or `cargo build
//! -p fairmq-devices` first) builds them next to `fairmq-topology`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use fairmq_test_support::{unique, wait_until, Proc};
use fairmq_topology::cleanup::shm_leftovers;
use fairmq_topology::plan::{host_session, ipc_prefix};
use serde_json::Value;

/// Generous bound for one topology run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// `fairmq-topology`.
pub fn topology_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fairmq-topology"))
}

/// A topology file of this package.
pub fn topology_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topologies")
        .join(name)
}

/// Panics unless the device binaries are built next to `fairmq-topology`.
pub fn require_devices() {
    let dir = topology_bin().parent().unwrap().to_owned();
    for d in ["fairmq-bsampler", "fairmq-proxy", "fairmq-sink"] {
        assert!(
            dir.join(d).is_file(),
            "{} is missing: build the devices too (cargo build -p fairmq-devices, or cargo test --workspace)",
            dir.join(d).display()
        );
    }
}

/// One run of `fairmq-topology`: its session, run directory and process.
pub struct Run {
    /// The run's session (each host's shm session is `<session>-<host>`).
    pub session: String,
    /// The hosts it runs on (`local`, or `n1`, `n2`, `n3`).
    pub hosts: Vec<String>,
    /// The run directory.
    pub dir: tempfile::TempDir,
    /// The controller (or the salloc around it).
    pub proc: Proc,
}

impl Run {
    /// Starts `fairmq-topology <file> --launcher <launcher> <extra>` on hosts `hosts`.
    pub fn start(file: &Path, launcher: &str, hosts: &[&str], extra: &[&str]) -> Run {
        require_devices();
        let session = unique("topo");
        let dir = tempfile::Builder::new()
            .prefix("fairmq-topology-test")
            .tempdir()
            .expect("temp dir");
        let run_dir = dir.path().display().to_string();
        let mut args = vec![
            file.to_str().unwrap(),
            "--launcher",
            launcher,
            "--session",
            &session,
            "--run-dir",
            &run_dir,
            "--progress",
            "plain",
            "--max-run-time",
            "180",
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(topology_bin(), &args);
        Run {
            session: session.clone(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            dir,
            proc,
        }
    }

    /// The run's `status.json` (during the run), if written yet.
    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until `status.json` satisfies `cond`.
    pub fn wait_status(&mut self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = None;
        wait_until(RUN_TIMEOUT, what, || {
            if let Some(s) = self.proc.try_status() {
                panic!(
                    "fairmq-topology ended ({s:?}) before {what}; output:\n{}",
                    self.proc.output()
                );
            }
            match self.status() {
                Some(s) if cond(&s) => {
                    last = Some(s);
                    true
                }
                _ => false,
            }
        });
        last.unwrap()
    }

    /// Waits for the controller to end; returns its exit code and output.
    pub fn finish(&mut self) -> (i32, String) {
        let status = self.proc.wait(RUN_TIMEOUT);
        let out = self.proc.output();
        (status.code().unwrap_or(-1), out)
    }

    /// The run's `summary.json`.
    pub fn summary(&self, out: &str) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("summary.json"))
            .unwrap_or_else(|e| panic!("no summary.json ({e}); output:\n{out}"));
        serde_json::from_str(&text).expect("summary.json")
    }

    /// Asserts that no host keeps anything of the run: no `fmq_<shmId>_*` of any host's
    /// session in `/dev/shm`, no ipc socket file of the run in `/tmp`.
    pub fn assert_clean(&self) {
        for h in &self.hosts {
            let s = host_session(&self.session, h);
            let left = shm_leftovers(&s);
            assert!(
                left.is_empty(),
                "host {h} keeps session {s} in /dev/shm: {left:?}"
            );
            let prefix = ipc_prefix(&s);
            let files: Vec<String> = std::fs::read_dir("/tmp")
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| format!("/tmp/{}", e.file_name().to_string_lossy()))
                .filter(|p| p.starts_with(&prefix))
                .collect();
            assert!(files.is_empty(), "host {h} keeps ipc files: {files:?}");
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // After a failed test: remove what is left (the assertions have spoken already).
        for h in &self.hosts {
            let s = host_session(&self.session, h);
            let _ = fairmq_topology::cleanup::clean_host(h, &s, &ipc_prefix(&s));
        }
    }
}

/// The devices of a summary, by id.
pub fn devices(summary: &Value) -> Vec<Value> {
    summary["devices"].as_array().unwrap().clone()
}

/// The device `id` of a summary.
pub fn device<'a>(summary: &'a Value, id: &str) -> &'a Value {
    summary["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no device {id} in {summary}"))
}

/// Messages in and out of channel `channel` of device `d`.
pub fn counts(d: &Value, channel: &str) -> (u64, u64) {
    let c = d["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == channel)
        .unwrap_or_else(|| panic!("no channel {channel} in {d}"));
    (
        c["msgs_in"].as_u64().unwrap(),
        c["msgs_out"].as_u64().unwrap(),
    )
}

/// Sum of the messages in and out of `channel` over the devices whose id starts with `prefix`.
pub fn total(summary: &Value, prefix: &str, channel: &str) -> (u64, u64) {
    devices(summary)
        .iter()
        .filter(|d| d["id"].as_str().unwrap().starts_with(prefix))
        .map(|d| counts(d, channel))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// The `OLD ---> NEW` state changes a device's log shows, as `NEW` names.
pub fn states_in_log(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("[STATE]"))
        .filter_map(|l| l.split(" ---> ").nth(1))
        .map(|s| s.trim().to_owned())
        .collect()
}

/// FairMQ's lifecycle from IDLE to EXITING through one run, as the controller drives it.
pub const LIFECYCLE: [&str; 14] = [
    "INITIALIZING DEVICE",
    "INITIALIZED",
    "BINDING",
    "BOUND",
    "CONNECTING",
    "DEVICE READY",
    "INITIALIZING TASK",
    "READY",
    "RUNNING",
    "READY",
    "RESETTING TASK",
    "DEVICE READY",
    "RESETTING DEVICE",
    "IDLE",
];

/// Asserts that every device of a successful run went through the whole lifecycle (and ended
/// in EXITING), from its log file.
pub fn assert_lifecycle(summary: &Value) {
    for d in devices(summary) {
        let log = PathBuf::from(d["log"].as_str().expect("log path"));
        let states = states_in_log(&log);
        let mut expected: Vec<&str> = LIFECYCLE.to_vec();
        expected.push("EXITING");
        assert_eq!(
            states,
            expected,
            "{}: the lifecycle in {}",
            d["id"],
            log.display()
        );
    }
}
