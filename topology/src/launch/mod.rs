//! Launchers: start every instance of a [`Plan`], tell how the processes end, stop them, and
//! clean every host afterwards. [`local::LocalLauncher`] runs the devices as children of the
//! controller on this machine; [`slurm::SlurmLauncher`] runs them as one Slurm job step.

pub mod local;
pub mod slurm;

use std::path::{Path, PathBuf};

use crate::cleanup::HostCleanup;
use crate::plan::Plan;

/// Errors of launching.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the run could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Slurm is not usable or said no.
    #[error("{0}")]
    Slurm(String),
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Plan instance.
    pub instance: usize,
    /// `exit code 0`, `killed by signal 9 (SIGKILL)`, …
    pub how: String,
    /// Whether this is a failure (non-zero code or a signal).
    pub failed: bool,
}

/// What the controller needs from a launcher.
pub trait Launcher {
    /// `local` or `slurm`.
    fn name(&self) -> &'static str;

    /// The Slurm job id, if any.
    fn job(&self) -> Option<String> {
        None
    }

    /// What the launcher wants the user to know about the run (e.g. how nodes are cleaned).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Starts every instance; `controller` is the `<host>:<port>` the devices connect to.
    fn start(&mut self, plan: &Plan, controller: &str) -> Result<(), LaunchError>;

    /// How processes ended since the last call.
    fn poll_exits(&mut self) -> Vec<Exit>;

    /// Whether every started process has ended.
    fn all_ended(&mut self) -> bool;

    /// Asks the remaining processes to stop (SIGTERM), or kills them (`force`).
    fn terminate(&mut self, force: bool);

    /// The log file (stdout and stderr) of instance `i`.
    fn log_file(&self, i: usize) -> Option<PathBuf>;

    /// Cleans every host of the plan (shared memory, ipc files) and reports per host.
    fn cleanup(&mut self, plan: &Plan) -> Vec<HostCleanup>;
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// `exit code 3` / `killed by signal 9 (SIGKILL)` of a status.
pub fn describe_status(status: std::process::ExitStatus) -> (String, bool) {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        (format!("exit code {code}"), code != 0)
    } else if let Some(sig) = status.signal() {
        (
            format!("killed by signal {sig} ({})", signal_name(sig)),
            true,
        )
    } else {
        (format!("{status}"), true)
    }
}

/// The name of a signal number.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}
