//! Process tests of the multiple-transports example through its launcher: the topology runs a
//! few seconds with both configuration variants and with `--messages`, and a variant SIGKILLs
//! the two shmem devices under `--shm-monitor true`. Each test checks the launcher's exit code
//! and verdict, and independently re-reads the devices' logs (acknowledgements against what the
//! sink received, neither sampler starved) and `/dev/shm` (nothing of the session left).
//!
//! Small segments (100 MB) and unique sessions; throughput runs last a fixed 2-3 s, conditions
//! are polled by the launcher with timeouts.

use std::path::{Path, PathBuf};
use std::process::Command;

use fairmq_example_multiple_transports::report::DeviceReport;
use fairmq_example_multiple_transports::topology::{ipc_path, CHANNELS};
use fairmq_test_support::{Proc, Session, TIMEOUT};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_fairmq-ex-multiple-transports-launcher");

struct Run {
    code: Option<i32>,
    /// The launcher's stdout and stderr.
    output: String,
    session: Session,
    logs: tempfile::TempDir,
}

impl Run {
    fn device(&self, name: &str) -> DeviceReport {
        let text = std::fs::read_to_string(self.logs.path().join(format!("{name}.log")))
            .unwrap_or_else(|e| panic!("{name}.log: {e}\n{}", self.output));
        let mut r = DeviceReport::default();
        for line in text.lines() {
            r.feed(line);
        }
        r
    }

    fn context(&self) -> String {
        let mut s = format!("exit code {:?}\n--- output\n{}", self.code, self.output);
        for d in ["sink", "sampler1", "sampler2"] {
            let log = std::fs::read_to_string(self.logs.path().join(format!("{d}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            s.push_str(&format!(
                "\n--- {d}.log (last lines, newest first)\n{}",
                tail.join("\n")
            ));
        }
        s
    }

    fn assert_clean(&self) {
        let left = self.session.objects();
        assert!(
            left.is_empty(),
            "left in /dev/shm: {left:?}\n{}",
            self.context()
        );
        self.session.assert_clean();
        for c in CHANNELS {
            let p = ipc_path(&self.session.name, c);
            assert!(!p.exists(), "ipc file {} left behind", p.display());
        }
    }
}

fn launch(tag: &str, args: &[&str]) -> Run {
    let session = Session::new(tag);
    let logs = tempfile::tempdir().expect("temp dir");
    let log_dir = logs.path().to_str().expect("a UTF-8 temp dir");
    let mut launcher = Proc::spawn_with(LAUNCHER, args, |c| {
        c.args([
            "--session",
            &session.name,
            "--shm-segment-size",
            "100000000",
        ])
        .args(["--log-dir", log_dir]);
    });
    let status = launcher.wait(TIMEOUT);
    Run {
        code: status.code(),
        output: launcher.output(),
        session,
        logs,
    }
}

/// Both samplers delivered, every data1 message was acknowledged, all exited 0, nothing left.
fn assert_healthy_run(run: &Run) {
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(run.output.contains("RESULT: OK"), "{}", run.context());
    let sink = run.device("sink");
    let s1 = run.device("sampler1");
    let s2 = run.device("sampler2");
    let data1 = sink
        .received
        .get("data1")
        .expect("sink data1 line")
        .messages;
    let data2 = sink
        .received
        .get("data2")
        .expect("sink data2 line")
        .messages;
    assert!(data1 > 0, "sampler1 starved\n{}", run.context());
    assert!(data2 > 0, "sampler2 starved\n{}", run.context());
    assert_eq!(s1.acknowledged, Some(data1), "{}", run.context());
    assert_eq!(sink.acks_sent, Some(data1), "{}", run.context());
    assert!(s1.sent["data1"].0 >= data1, "{}", run.context());
    assert!(s2.sent["data2"].0 >= data2, "{}", run.context());
    for (name, r) in [("sink", &sink), ("sampler1", &s1), ("sampler2", &s2)] {
        assert!(r.exiting, "{name} did not reach EXITING\n{}", run.context());
        assert!(r.errors.is_empty(), "{name}: {:?}", r.errors);
    }
    run.assert_clean();
}

#[test]
fn channel_config_topology_runs_and_stops_cleanly() {
    let run = launch("ch", &["--config", "channel", "--duration", "3", "--quiet"]);
    assert_healthy_run(&run);
    // The launcher showed the per-channel rates while the topology ran.
    let quiet_free = launch("chr", &["--duration", "2.5"]);
    assert_healthy_run(&quiet_free);
    assert!(
        quiet_free
            .output
            .lines()
            .any(|l| l.trim_start().starts_with('2') && l.contains("msg/s")),
        "{}",
        quiet_free.context()
    );
}

#[test]
fn json_config_topology_runs_and_stops_cleanly() {
    let run = launch("js", &["--config", "json", "--duration", "3", "--quiet"]);
    assert_healthy_run(&run);
    // The devices really got their channels from the JSON file.
    let commands = std::fs::read_to_string(run.logs.path().join("commands.txt")).expect("commands");
    assert!(commands.contains("--mq-config"), "{commands}");
    assert!(!commands.contains("--channel-config"), "{commands}");
}

#[test]
fn messages_mode_sends_and_acknowledges_exactly_n() {
    let run = launch("n", &["--messages", "300", "--quiet", "--timeout", "60"]);
    assert_healthy_run(&run);
    let sink = run.device("sink");
    assert_eq!(sink.received["data1"].messages, 300);
    assert_eq!(sink.received["data2"].messages, 300);
    assert_eq!(run.device("sampler1").sent["data1"].0, 300);
    assert_eq!(run.device("sampler2").sent["data2"].0, 300);
    assert_eq!(run.device("sampler1").acknowledged, Some(300));
    assert!(
        run.output.contains("all devices finished"),
        "{}",
        run.context()
    );
}

fn monitor_available() -> Option<PathBuf> {
    let dir = Path::new(LAUNCHER).parent()?;
    let p = dir.join("fairmq-shmmonitor");
    p.is_file().then_some(p)
}

/// Both shmem devices are SIGKILLed mid-run, so no device is left to remove the session: the
/// monitor daemon started by `--shm-monitor true` does, and the launcher says so.
#[test]
fn sigkilled_shmem_devices_are_cleaned_up_by_the_monitor() {
    assert!(
        monitor_available().is_some(),
        "fairmq-shmmonitor is not built next to the launcher ({LAUNCHER}); run `cargo build -p fairmq-shmmonitor` (cargo test --workspace builds it)"
    );
    let run = launch(
        "k",
        &[
            "--duration",
            "3",
            "--shm-monitor",
            "true",
            "--kill",
            "sink:2",
            "--kill",
            "sampler1:2",
            "--quiet",
            "--cleanup-timeout",
            "30",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(run.output.contains("RESULT: OK"), "{}", run.context());
    assert!(
        run.output.contains(
            "every shmem device was SIGKILLed; the shmmonitor daemon removed the session"
        ),
        "{}",
        run.context()
    );
    assert!(
        run.output.contains("sink     killed by signal 9"),
        "{}",
        run.context()
    );
    assert!(
        run.output.contains("sampler1 killed by signal 9"),
        "{}",
        run.context()
    );
    assert!(run.device("sampler2").exiting, "{}", run.context());
    run.assert_clean();
}

/// One shmem device SIGKILLed: the survivor removes the session when it leaves (it can tell
/// that nobody else holds it open), the other devices exit 0 on SIGINT.
#[test]
fn sigkilled_sampler1_leaves_the_others_to_stop_cleanly() {
    let run = launch(
        "k1",
        &["--duration", "3", "--kill", "sampler1:2", "--quiet"],
    );
    assert_eq!(run.code, Some(0), "{}", run.context());
    assert!(
        run.output.contains(
            "sink removed it when it left as the last user (the SIGKILLed sampler1 no longer held the session open)"
        ),
        "{}",
        run.context()
    );
    assert!(run.device("sink").exiting, "{}", run.context());
    assert!(
        run.device("sink").received.contains_key("data1"),
        "{}",
        run.context()
    );
    run.assert_clean();
}

#[test]
fn bad_options_exit_with_2() {
    for args in [
        &["--kill", "nobody:1"][..],
        &["--messages", "0"],
        &["--duration", "-1"],
        &["--messages", "5", "--kill", "sink:1"],
    ] {
        let out = Command::new(LAUNCHER).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}
