//! Helpers for the process tests: unique names, spawning the real binaries with their output
//! in temporary files, waiting with generous timeouts, and killing leftovers on drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Generous upper bound for a device run in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A name unique to this test process and call.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "fmqt_{}_{}_{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A unique ipc address (the socket file is removed when the guard drops).
pub struct Ipc {
    pub path: PathBuf,
}

impl Ipc {
    pub fn new(tag: &str) -> Ipc {
        Ipc {
            path: std::env::temp_dir().join(unique(tag)),
        }
    }
    pub fn address(&self) -> String {
        format!("ipc://{}", self.path.display())
    }
}

impl Drop for Ipc {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A spawned device; killed on drop if still running.
pub struct Proc {
    pub name: String,
    child: Child,
    out: tempfile::NamedTempFile,
    status: Option<ExitStatus>,
}

/// The path of one of this package's binaries.
pub fn bin(name: &str) -> PathBuf {
    let var = match name {
        "fairmq-bsampler" => env!("CARGO_BIN_EXE_fairmq-bsampler"),
        "fairmq-sink" => env!("CARGO_BIN_EXE_fairmq-sink"),
        "fairmq-proxy" => env!("CARGO_BIN_EXE_fairmq-proxy"),
        "fairmq-splitter" => env!("CARGO_BIN_EXE_fairmq-splitter"),
        "fairmq-merger" => env!("CARGO_BIN_EXE_fairmq-merger"),
        "fairmq-multiplier" => env!("CARGO_BIN_EXE_fairmq-multiplier"),
        "fairmq-testdevice" => env!("CARGO_BIN_EXE_fairmq-testdevice"),
        other => panic!("unknown binary {other}"),
    };
    PathBuf::from(var)
}

impl Proc {
    /// Spawns `binary` with `args` (stdin closed, stdout+stderr to one temp file).
    pub fn spawn(binary: &str, args: &[&str]) -> Proc {
        Self::spawn_with(binary, args, |_| {})
    }

    /// Spawns with a hook to adjust the command (environment, stdin).
    pub fn spawn_with(binary: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Proc {
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let mut cmd = Command::new(bin(binary));
        cmd.args(args)
            .arg("--color")
            .arg("false")
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("reopen"))
            .stderr(out.reopen().expect("reopen"))
            .env_remove("FAIRMQ_SEVERITY");
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn device");
        Proc {
            name: binary.to_owned(),
            child,
            out,
            status: None,
        }
    }

    /// Writes to the child's stdin (spawned with a piped stdin).
    pub fn write_stdin(&mut self, bytes: &[u8]) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(bytes).expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit; panics (after killing it) otherwise.
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
                    "{} did not exit within {:?}; output:\n{}",
                    self.name,
                    timeout,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the process has exited (does not block).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits and returns the exit code (panics on death by signal).
    pub fn code(&mut self) -> i32 {
        let s = self.wait(TIMEOUT);
        s.code().unwrap_or_else(|| {
            panic!(
                "{} was killed by a signal: {s:?}; output:\n{}",
                self.name,
                self.output()
            )
        })
    }

    /// Waits until the output contains `text` (panics after `timeout`).
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
            if Instant::now() > deadline {
                panic!(
                    "{} did not print '{text}' within {timeout:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`INT`, `TERM`) with the system `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Asserts exit code 0 and returns the output.
    pub fn success(&mut self) -> String {
        let code = self.code();
        let out = self.output();
        assert_eq!(code, 0, "{} failed; output:\n{out}", self.name);
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// Runs a device to completion and returns (exit code, output).
pub fn run(binary: &str, args: &[&str]) -> (i32, String) {
    let mut p = Proc::spawn(binary, args);
    let code = p.code();
    (code, p.output())
}

/// The single `error: ...` line of a startup error, checked to be one line without panic.
pub fn assert_clean_error(code: i32, out: &str, needle: &str) {
    assert_ne!(code, 0, "expected failure; output:\n{out}");
    assert!(!out.contains("panicked"), "panic in output:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line contains '{needle}'; output:\n{out}"));
    assert!(line.len() < 600, "error line too long: {line}");
}

/// The number in `Received <n> messages` of a sink's output.
pub fn received(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            let rest = l.split("Received ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no 'Received <n> messages' line in:\n{out}"))
}
