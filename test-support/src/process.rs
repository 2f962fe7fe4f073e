//! Child processes of a test: spawned with their output in a temp file, killed on drop, waited
//! for with a timeout, signalled.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;

use crate::wait::TIMEOUT;

/// How often a wait looks at a child.
const POLL: Duration = Duration::from_millis(5);

/// A spawned process; killed (SIGKILL) and reaped on drop if still running, e.g. when a test
/// fails. Its stdout and stderr go to one temp file, so [`Proc::output`] keeps their order.
pub struct Proc {
    /// The file name of the binary, for messages.
    pub name: String,
    child: Child,
    out: tempfile::NamedTempFile,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `program` with `args`: stdin closed, stdout and stderr to one temp file,
    /// `FAIRMQ_SEVERITY` removed from the environment.
    pub fn spawn(program: impl AsRef<Path>, args: &[&str]) -> Proc {
        Self::spawn_with(program, args, |_| {})
    }

    /// [`Proc::spawn`] with a hook that adjusts the command last (environment, working
    /// directory, a piped stdin).
    pub fn spawn_with(
        program: impl AsRef<Path>,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Proc {
        let program = program.as_ref();
        let out = tempfile::NamedTempFile::new().expect("temp file for the output");
        // One open file for both streams (a dup shares the offset): two separate opens would
        // each write from offset 0 and overwrite each other.
        let file = out.reopen().expect("reopen the output file");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup the output file"))
            .stderr(file)
            .env_remove("FAIRMQ_SEVERITY");
        adjust(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: program
                .file_name()
                .unwrap_or(OsStr::new("?"))
                .to_string_lossy()
                .into_owned(),
            child,
            out,
            status: None,
        }
    }

    /// A FairMQ device: [`Proc::spawn`] with `--color false`, so that its log lines parse.
    pub fn device(program: impl AsRef<Path>, args: &[&str]) -> Proc {
        Self::device_with(program, args, |_| {})
    }

    /// [`Proc::device`] with a hook that adjusts the command last.
    pub fn device_with(
        program: impl AsRef<Path>,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Proc {
        Self::spawn_with(program, args, |cmd| {
            cmd.args(["--color", "false"]);
            adjust(cmd);
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
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

    /// The exit status if the process has exited (does not block).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit; kills it and panics with its output
    /// otherwise.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return s;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits (up to [`TIMEOUT`]) and returns the exit code; panics if a signal ended it.
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

    /// Waits (up to [`TIMEOUT`]), asserts exit code 0 and returns the output.
    pub fn success(&mut self) -> String {
        let s = self.wait(TIMEOUT);
        let out = self.output();
        assert_eq!(
            s.code(),
            Some(0),
            "{} failed ({s:?}); output:\n{out}",
            self.name
        );
        out
    }

    /// Waits until the output contains `text`; panics if the process exits first or after
    /// `timeout`.
    pub fn wait_for_output(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            if let Some(s) = self.try_status() {
                // It may have printed the text just before it exited.
                if self.output().contains(text) {
                    return;
                }
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
            std::thread::sleep(POLL);
        }
    }

    /// Sends `sig` (`Signal::INT`, `Signal::KILL`, `Signal::STOP`, ...) to the running process.
    pub fn signal(&self, sig: Signal) {
        assert!(
            self.status.is_none(),
            "{} has already exited; not signalling {sig:?}",
            self.name
        );
        signal(self.pid(), sig);
    }

    /// SIGKILL (which also ends a stopped process) and reap.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let _ = self.child.kill();
        let s = self.child.wait().expect("wait");
        self.status = Some(s);
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` to process `pid`; panics if that fails.
pub fn signal(pid: u32, sig: Signal) {
    try_signal(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig:?}): {e}"));
}

/// Sends `sig` to process `pid`.
pub(crate) fn try_signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    Ok(rustix::process::kill_process(target, sig)?)
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
    }
}

/// Waits for `child` at most `timeout`; kills it and panics after that.
pub fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not finish within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends SIGKILL to `child` (not yet reaped) and reaps it.
pub fn kill_child(child: &mut Child) -> ExitStatus {
    signal(child.id(), Signal::KILL);
    wait_child(child, Duration::from_secs(30))
}

/// Kills (SIGKILL) and reaps the children it holds when dropped, e.g. when a test fails.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
