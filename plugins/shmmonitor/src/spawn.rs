//! Starting the monitor daemon of a session (spec §6.8), guarded so that exactly one runs.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fairmq_shmem::monitor::{marker_pid, MonitorSpawnLock};
use fairmq_shmem::ShmId;

/// Name of the monitor executable.
pub const MONITOR_EXECUTABLE: &str = "fairmq-shmmonitor";
/// Heartbeat timeout the devices' monitor runs with (`-t`).
pub const SPAWNED_TIMEOUT_MS: u64 = 2000;
/// How long a started monitor has to take the session's `_ms` marker.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a device waits for another device's check-and-start.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no monitor could be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The shared-memory layer failed (the spawn lock, the marker).
    #[error("shared memory monitor for shared memory id {shm_id}: {source}")]
    Shm {
        /// The session.
        shm_id: String,
        /// What failed (boxed: the shared-memory error is large).
        #[source]
        source: Box<fairmq_shmem::Error>,
    },
    /// The executable could not be run.
    #[error("could not start {path}: {source}")]
    Exec {
        /// The executable.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The monitor exited with an error before detaching.
    #[error(
        "{path} -x -m --shmid {shm_id} -d -t {SPAWNED_TIMEOUT_MS} failed ({status}): {stderr}"
    )]
    Failed {
        /// The executable.
        path: String,
        /// The session.
        shm_id: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on standard error.
        stderr: String,
    },
    /// The monitor did not take the marker in time.
    #[error("Did not get response from fairmq-shmmonitor after {} milliseconds. Exiting.", RESPONSE_TIMEOUT.as_millis())]
    NoResponse,
}

/// What [`ensure_monitor`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorStatus {
    /// A monitor already watches the session.
    Found {
        /// Its pid.
        pid: u32,
    },
    /// This call started the monitor.
    Started {
        /// The daemon's pid (from the marker).
        pid: u32,
        /// The executable that was run.
        executable: PathBuf,
    },
    /// `fairmq-shmmonitor` was found nowhere.
    NotFound {
        /// The directories searched, `:`-separated.
        searched: String,
    },
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The directories searched for `fairmq-shmmonitor`, in order: the directory of the running
/// executable, then `$FAIRMQ_PATH`, then `$PATH`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    for var in ["FAIRMQ_PATH", "PATH"] {
        if let Some(v) = std::env::var_os(var) {
            dirs.extend(std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()));
        }
    }
    dirs
}

/// Finds `fairmq-shmmonitor` along [`search_dirs`].
pub fn find_monitor_executable() -> Option<PathBuf> {
    search_dirs()
        .into_iter()
        .map(|d| d.join(MONITOR_EXECUTABLE))
        .find(|p| is_executable(p))
}

fn shm_err(shm_id: &ShmId) -> impl Fn(fairmq_shmem::Error) -> SpawnError + '_ {
    move |source| SpawnError::Shm {
        shm_id: shm_id.to_string(),
        source: Box::new(source),
    }
}

/// Makes sure a monitor daemon watches session `shm_id` (see the crate documentation).
pub fn ensure_monitor(shm_id: &ShmId) -> Result<MonitorStatus, SpawnError> {
    if let Some(pid) = marker_pid(shm_id).map_err(shm_err(shm_id))? {
        return Ok(MonitorStatus::Found { pid });
    }
    let _lock = MonitorSpawnLock::acquire(shm_id, LOCK_TIMEOUT).map_err(shm_err(shm_id))?;
    // Another device may have started one while we waited for the lock.
    if let Some(pid) = marker_pid(shm_id).map_err(shm_err(shm_id))? {
        return Ok(MonitorStatus::Found { pid });
    }
    let Some(exe) = find_monitor_executable() else {
        let searched = search_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        return Ok(MonitorStatus::NotFound { searched });
    };
    let shown = exe.display().to_string();
    let mut cmd = Command::new(&exe);
    cmd.args(["-x", "-m", "--shmid", shm_id.as_str(), "-d", "-t"])
        .arg(SPAWNED_TIMEOUT_MS.to_string());
    if std::env::var("FAIRMQ_SHMMONITOR_VERBOSE").is_ok_and(|v| v == "true") {
        cmd.arg("--verbose");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        path: shown.clone(),
        source,
    })?;
    // The monitor forks into the background right away; its first process exits then.
    let status = child.wait().map_err(|source| SpawnError::Exec {
        path: shown.clone(),
        source,
    })?;
    let mut stderr_pipe = child.stderr.take();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.read_to_string(&mut stderr);
        }
        return Err(SpawnError::Failed {
            path: shown,
            shm_id: shm_id.to_string(),
            status,
            stderr: stderr.trim().to_owned(),
        });
    }
    drop(stderr_pipe);
    let deadline = Instant::now() + RESPONSE_TIMEOUT;
    loop {
        if let Some(pid) = marker_pid(shm_id).map_err(shm_err(shm_id))? {
            return Ok(MonitorStatus::Started {
                pid,
                executable: exe,
            });
        }
        if Instant::now() > deadline {
            return Err(SpawnError::NoResponse);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
