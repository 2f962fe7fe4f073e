//! Helpers for the process tests: the real binaries (`fairmq-shmmonitor` of this package, the
//! built-in devices `fairmq-sink` / `fairmq-bsampler` next to it), unique sessions that clean
//! up after a failed test (killing the monitor daemon recorded in the `_ms` marker), processes
//! killed on drop, and waiting for conditions with generous timeouts.
//!
//! The device binaries are not part of this package: cargo builds them with `cargo test
//! --workspace` or `cargo test -p fairmq-shmmonitor -p fairmq-devices` (they are in the same
//! directory as `fairmq-shmmonitor`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fairmq_shmem::monitor;
use fairmq_shmem::ShmId;

/// Generous upper bound for waiting on a condition.
pub const LONG: Duration = Duration::from_secs(60);

/// Small segments, so that parallel tests do not fill /dev/shm.
pub const SEGMENT_SIZE: &str = "10000000";

/// `fairmq-shmmonitor`.
pub fn monitor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fairmq-shmmonitor"))
}

/// The directory of the binaries.
pub fn bin_dir() -> PathBuf {
    monitor_bin().parent().unwrap().to_path_buf()
}

/// A device binary next to `fairmq-shmmonitor`.
pub fn device_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the devices too (cargo test -p fairmq-shmmonitor -p fairmq-devices, or cargo test --workspace)",
        p.display()
    );
    p
}

/// A name unique to this test process and call.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "fmqmon_{tag}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Polls `cond` every 10 ms; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
    }
}

/// Sends `sig` (`KILL`, `STOP`, `CONT`, `INT`) with the system `kill`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Live (not zombie) `fairmq-shmmonitor` processes watching `shm_id` (from `/proc`).
pub fn monitor_processes(shm_id: &ShmId) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_monitor = args
            .first()
            .is_some_and(|a| a.ends_with("fairmq-shmmonitor"));
        let watches = args
            .windows(2)
            .any(|w| w[0] == "--shmid" && w[1] == shm_id.as_str());
        if is_monitor && watches && !process_gone(pid) {
            out.push(pid);
        }
    }
    out
}

/// A unique session. On drop (also after a failed test) kills the monitors of the session
/// and removes whatever is left of it.
pub struct Session {
    pub name: String,
    pub id: ShmId,
    pub dir: tempfile::TempDir,
}

impl Session {
    pub fn new(tag: &str) -> Session {
        let name = unique(tag);
        let id = ShmId::from_session(&name);
        Session {
            name,
            id,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// An ipc address unique to the session (the socket file lives in the temp dir).
    pub fn ipc(&self, tag: &str) -> String {
        format!("ipc://{}/{tag}", self.dir.path().display())
    }

    /// Every `/dev/shm` entry of the session.
    pub fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(self.id.as_str()))
            .collect();
        v.sort();
        v
    }

    pub fn assert_clean(&self) {
        let left = self.objects();
        assert!(left.is_empty(), "objects left in /dev/shm: {left:?}");
    }

    /// Waits until nothing of the session is left in /dev/shm.
    pub fn wait_clean(&self, timeout: Duration) {
        wait_until(timeout, "/dev/shm to be clean of the session", || {
            self.objects().is_empty()
        });
    }

    /// The pid in the session's `_ms` marker, if a live monitor holds it.
    pub fn monitor_pid(&self) -> Option<u32> {
        monitor::marker_pid(&self.id).ok().flatten()
    }

    /// Spawns a shmem `fairmq-sink` (bind) of this session, running until signalled.
    pub fn sink(&self, id: &str, address: &str, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--id",
            id,
            "--transport",
            "shmem",
            "--session",
            &self.name,
            "--control",
            "static",
            "--max-iterations",
            "0",
            "--shm-segment-size",
            SEGMENT_SIZE,
        ];
        let chan = format!("name=data,type=pull,method=bind,address={address}");
        args.extend_from_slice(&["--channel-config", &chan]);
        args.extend_from_slice(extra);
        Proc::spawn_in(&device_bin("fairmq-sink"), &args, self.dir.path())
    }

    /// Spawns a shmem `fairmq-bsampler` (connect) of this session, 1000-byte messages at a
    /// modest rate, running until signalled.
    pub fn sampler(&self, id: &str, address: &str, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--id",
            id,
            "--transport",
            "shmem",
            "--session",
            &self.name,
            "--control",
            "static",
            "--msg-size",
            "1000",
            "--msg-rate",
            "200",
            "--max-iterations",
            "0",
            "--shm-segment-size",
            SEGMENT_SIZE,
        ];
        let chan = format!("name=data,type=push,method=connect,address={address}");
        args.extend_from_slice(&["--channel-config", &chan]);
        args.extend_from_slice(extra);
        Proc::spawn_in(&device_bin("fairmq-bsampler"), &args, self.dir.path())
    }

    /// Runs `fairmq-shmmonitor` with `args` to completion: (exit code, stdout, stderr).
    pub fn shmmonitor(&self, args: &[&str]) -> (i32, String, String) {
        run_monitor(args)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut pids = monitor_processes(&self.id);
        pids.extend(self.monitor_pid().filter(|p| *p != std::process::id()));
        for pid in pids {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        if !self.objects().is_empty() {
            let _ = monitor::cleanup_full(&self.id, false);
        }
    }
}

/// Runs `fairmq-shmmonitor` with `args`: (exit code, stdout, stderr).
pub fn run_monitor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(monitor_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fairmq-shmmonitor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A spawned process with its output in a temp file; killed on drop if still running.
pub struct Proc {
    pub name: String,
    child: Child,
    out: tempfile::NamedTempFile,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `bin` with `args` in `cwd` (stdin closed, stdout+stderr to one temp file).
    pub fn spawn_in(bin: &Path, args: &[&str], cwd: &Path) -> Proc {
        Self::spawn_with(bin, args, cwd, |_| {})
    }

    /// Spawns with a hook to adjust the command (environment, stdin).
    pub fn spawn_with(
        bin: &Path,
        args: &[&str],
        cwd: &Path,
        adjust: impl FnOnce(&mut Command),
    ) -> Proc {
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("reopen"))
            .stderr(out.reopen().expect("reopen"))
            .env_remove("FAIRMQ_SEVERITY");
        if bin != monitor_bin() {
            cmd.args(["--color", "false"]);
        }
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn");
        Proc {
            name: bin.file_name().unwrap().to_string_lossy().into_owned(),
            child,
            out,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes to the child's stdin (spawned with a piped stdin).
    pub fn write_stdin(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes the child's stdin (end of input).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Waits until the output contains `text`.
    pub fn wait_for_output(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                panic!(
                    "{} exited ({s:?}) before printing '{text}'; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print '{text}' within {timeout:?}; output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit and asserts code 0; returns the output.
    pub fn success(&mut self) -> String {
        let s = self.wait(LONG);
        let out = self.output();
        assert_eq!(
            s.code(),
            Some(0),
            "{} failed ({s:?}); output:\n{out}",
            self.name
        );
        out
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.status = Some(self.child.wait().expect("wait"));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                // SIGKILL also ends a stopped process.
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// The first line of `text` that contains `needle`.
pub fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}
