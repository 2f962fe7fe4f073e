//! Unique names, a shared-memory session per test with its `/dev/shm` leak check, and ipc
//! addresses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fairmq_shmem::monitor;
use fairmq_shmem::{cleanup_session, list_session_objects, CleanupScope, ShmId};

use crate::process::{process_gone, try_signal, Signal};
use crate::wait::wait_until;

const DEV_SHM: &str = "/dev/shm";

/// A name unique to this test process and call, also across runs (`fmqt_<tag>_<pid>_<n>_<ns>`).
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "fmqt_{tag}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A session of its own for one test, with a temp directory for its ipc files and working
/// directories. On drop (also after a failed test) it SIGKILLs the `fairmq-shmmonitor` daemons
/// watching the session and removes whatever is left of it in `/dev/shm`.
pub struct Session {
    /// The session name (`--session`).
    pub name: String,
    /// Its shmId, as the shmem transport computes it for this user.
    pub id: ShmId,
    /// A temp directory of the session's own.
    pub dir: tempfile::TempDir,
}

impl Session {
    /// A new session with a [`unique`] name.
    pub fn new(tag: &str) -> Session {
        let name = unique(tag);
        let id = ShmId::from_session(&name);
        Session {
            name,
            id,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// An ipc address unique to the session (the socket file lives in its temp dir).
    pub fn ipc(&self, tag: &str) -> String {
        format!("ipc://{}/{tag}", self.dir.path().display())
    }

    /// Every `/dev/shm` entry of the session (whose name contains its shmId), sorted.
    pub fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(DEV_SHM)
            .expect("read /dev/shm")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(self.id.as_str()))
            .collect();
        v.sort();
        v
    }

    /// Asserts that `/dev/shm` holds nothing of the session (by name, and by the shmem crate's
    /// own listing of a session's objects).
    pub fn assert_clean(&self) {
        let left = self.objects();
        assert!(
            left.is_empty(),
            "session {} (shmId {}) left in /dev/shm: {left:?}",
            self.name,
            self.id.as_str()
        );
        let listed = list_session_objects(Path::new(DEV_SHM), &self.id).expect("list /dev/shm");
        assert!(
            listed.is_empty(),
            "session {} (shmId {}) left in /dev/shm: {listed:?}",
            self.name,
            self.id.as_str()
        );
    }

    /// Waits until nothing of the session is left in `/dev/shm`.
    pub fn wait_clean(&self, timeout: Duration) {
        wait_until(timeout, "/dev/shm to be clean of the session", || {
            self.objects().is_empty()
        });
    }

    /// The pid in the session's monitor marker (`_ms`), if a live monitor holds it.
    pub fn monitor_pid(&self) -> Option<u32> {
        monitor::marker_pid(&self.id).ok().flatten()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut pids = monitor_processes(&self.id);
        pids.extend(self.monitor_pid());
        for pid in pids {
            // Not this process (a test may run the monitor in-process).
            if pid != std::process::id() && !process_gone(pid) {
                let _ = try_signal(pid, Signal::KILL);
            }
        }
        if !self.objects().is_empty() {
            let _ = cleanup_session(&self.id, CleanupScope::Full);
        }
    }
}

/// Live (not zombie) `fairmq-shmmonitor` processes watching `shm_id` (`--shmid <id>` on their
/// command line, from `/proc`).
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

/// A unique ipc address in the temp directory; the socket file is removed on drop.
pub struct Ipc {
    /// The socket file.
    pub path: PathBuf,
}

impl Ipc {
    /// A new address with a [`unique`] name.
    pub fn new(tag: &str) -> Ipc {
        Ipc {
            path: std::env::temp_dir().join(unique(tag)),
        }
    }

    /// `ipc://<path>`.
    pub fn address(&self) -> String {
        format!("ipc://{}", self.path.display())
    }
}

impl Drop for Ipc {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
