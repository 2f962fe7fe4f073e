//! Cleanup of one host after a run: the host's shared-memory session and the run's ipc socket
//! files, and a check that nothing of either is left.
//!
//! The session is removed only if it is dead (no process holds its management segment open,
//! the `flock` liveness of `fairmq-shmem`), atomically under the exclusive lock; a live
//! session is reported, never removed. Normally there is nothing to remove (the last device
//! that leaves removes its session); after a SIGKILL this removes what the killed device
//! could not.

use std::path::Path;

use fairmq_shmem::monitor::cleanup_if_dead;
use fairmq_shmem::{CleanupScope, ShmId};
use serde::{Deserialize, Serialize};

/// What the cleanup of one host did and found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostCleanup {
    /// The host.
    pub host: String,
    /// Its shared-memory session.
    pub session: String,
    /// The session's shmId.
    pub shm_id: String,
    /// Objects and files removed.
    pub removed: Vec<String>,
    /// Objects and files of the run still there afterwards.
    pub left: Vec<String>,
    /// The session was alive (held open by a process), so it was not removed.
    pub alive: bool,
    /// An error of the cleanup itself.
    pub error: Option<String>,
}

impl HostCleanup {
    /// Nothing left, nothing alive, no error.
    pub fn is_clean(&self) -> bool {
        self.left.is_empty() && !self.alive && self.error.is_none()
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}: session {} (shmId {}): ",
            self.host, self.session, self.shm_id
        );
        if self.removed.is_empty() {
            s.push_str("nothing to remove");
        } else {
            s.push_str(&format!("removed {}", self.removed.join(", ")));
        }
        if self.alive {
            s.push_str("; the session is still in use by a process, not removed");
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("; error: {e}"));
        }
        if self.left.is_empty() {
            s.push_str("; nothing left in /dev/shm");
        } else {
            s.push_str(&format!("; LEFT: {}", self.left.join(", ")));
        }
        s
    }
}

fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What `/dev/shm` holds of session `session` (names of `fmq_<id>_*` and `sem.fmq_<id>_*`).
pub fn shm_leftovers(session: &str) -> Vec<String> {
    let id = ShmId::from_session(session);
    let dir = Path::new("/dev/shm");
    let mut left = entries_with_prefix(dir, &id.prefix());
    left.extend(entries_with_prefix(dir, &format!("sem.{}", id.prefix())));
    left
}

/// Cleans `host`: its session `session` if dead, and the ipc files whose path starts with
/// `ipc_prefix` (e.g. `/tmp/fmqt-<session>-`).
pub fn clean_host(host: &str, session: &str, ipc_prefix: &str) -> HostCleanup {
    let id = ShmId::from_session(session);
    let mut report = HostCleanup {
        host: host.to_owned(),
        session: session.to_owned(),
        shm_id: id.to_string(),
        ..HostCleanup::default()
    };
    match cleanup_if_dead(&id, CleanupScope::Full, false) {
        Ok(Some(removed)) => report
            .removed
            .extend(removed.into_iter().filter(|(_, r)| *r).map(|(n, _)| n)),
        Ok(None) => report.alive = true,
        Err(e) => report.error = Some(e.to_string()),
    }
    let ipc = Path::new(ipc_prefix);
    let dir = ipc.parent().unwrap_or(Path::new("/tmp")).to_owned();
    let file_prefix = ipc
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file_prefix.is_empty() {
        report.error = Some(format!("ipc prefix '{ipc_prefix}' names no file prefix"));
        report.left = shm_leftovers(session);
        return report;
    }
    for name in entries_with_prefix(&dir, &file_prefix) {
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => report.removed.push(path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                report.error = Some(format!("cannot remove {}: {e}", path.display()));
            }
        }
    }
    report.left = shm_leftovers(session);
    report.left.extend(
        entries_with_prefix(&dir, &file_prefix)
            .into_iter()
            .map(|n| dir.join(n).display().to_string()),
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_session_is_clean_and_ipc_files_go() {
        let session = format!("fmqt-cleanup-test-{}", std::process::id());
        let prefix = format!("/tmp/fmqt-{session}-");
        let file = format!("{prefix}dev-0.data");
        std::fs::write(&file, b"").unwrap();
        let r = clean_host("local", &session, &prefix);
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.removed, vec![file.clone()]);
        assert!(!Path::new(&file).exists());
        assert!(
            r.describe().contains("nothing left in /dev/shm"),
            "{}",
            r.describe()
        );
    }
}
