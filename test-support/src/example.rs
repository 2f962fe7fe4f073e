//! FairMQ's example test scripts (`examples/<name>/test-ex-<name>.sh` in FairMQ), as a helper:
//! every device gets the options those scripts give it, on its own session, with its channel
//! addresses in the session's temp directory.

use std::path::Path;

use crate::process::Proc;
use crate::session::Session;

/// Two tests of one scenario, as FairMQ's example scripts run on each transport given as
/// `$1`: `over_each_transport!(run)` makes `over_zeromq` and `over_shmem`, which call
/// `run("zeromq")` and `run("shmem")`; `over_each_transport!(f => a, b)` names them `a` and `b`
/// (`f` may be a closure).
#[macro_export]
macro_rules! over_each_transport {
    ($run:expr) => {
        $crate::over_each_transport!($run => over_zeromq, over_shmem);
    };
    ($run:expr => $zeromq:ident, $shmem:ident) => {
        #[test]
        fn $zeromq() {
            ($run)("zeromq");
        }

        #[test]
        fn $shmem() {
            ($run)("shmem");
        }
    };
}

/// The lines of a device's output that contain `text`.
pub fn lines_with<'a>(out: &'a str, text: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(text)).collect()
}

/// One run of an example over one transport, as FairMQ's test script runs it.
pub struct Script<'a> {
    /// The run's session (`--session`); its `/dev/shm` check ends the test.
    pub session: &'a Session,
    /// `zeromq` or `shmem` (`--transport`).
    pub transport: &'a str,
}

impl<'a> Script<'a> {
    /// A run over `transport` in `session`.
    pub fn new(session: &'a Session, transport: &'a str) -> Self {
        Script { session, transport }
    }

    /// The `ipc://` address of channel `chan` (FairMQ's scripts use
    /// `/tmp/fmq_<session>_<chan>_<transport>`; here it lives in the session's directory).
    pub fn address(&self, chan: &str) -> String {
        self.session.ipc(&format!("{chan}_{}", self.transport))
    }

    /// The options every device of FairMQ's example scripts gets: `--id`, `--transport`,
    /// `--verbosity veryhigh`, `--session`, `--severity debug`, `--shm-segment-size 100000000`,
    /// `--shm-monitor true`, `--control static` (and `--color false`, which [`Proc::device`]
    /// adds).
    pub fn common_options(&self, id: &str) -> Vec<String> {
        [
            "--id",
            id,
            "--transport",
            self.transport,
            "--verbosity",
            "veryhigh",
            "--session",
            &self.session.name,
            "--severity",
            "debug",
            "--shm-segment-size",
            "100000000",
            "--shm-monitor",
            "true",
            "--control",
            "static",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Starts `program` as device `id` with [`Script::common_options`] followed by `args`.
    pub fn device(&self, program: impl AsRef<Path>, id: &str, args: &[&str]) -> Proc {
        let mut all = self.common_options(id);
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Proc::device(program, &all)
    }
}
