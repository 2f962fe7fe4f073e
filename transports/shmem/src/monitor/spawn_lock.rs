//! The lock that devices hold while they check whether a monitor watches their session and
//! start one if not (`--shm-monitor true`), so that devices starting at the same moment start
//! exactly one monitor.
//!
//! It is an exclusive `flock` on `/dev/shm/fmq_<shmId>_ms.lock`. The file belongs to the
//! session (its name starts with the session's prefix), so every cleanup of the session removes
//! a leftover one; the holder removes it itself before unlocking. Because the name can be
//! removed while others wait for the lock, a waiter that got the lock checks that the name
//! still refers to the file it locked, and starts over otherwise.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ids::ShmId;
use crate::segment::{apply_access, flock_fd, Access, Location, DEFAULT_MODE, SHM_DIR};

/// The held lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct MonitorSpawnLock {
    file: File,
    path: PathBuf,
}

impl MonitorSpawnLock {
    /// The lock file of `shm_id`: `/dev/shm/fmq_<shmId>_ms.lock`.
    pub fn path(shm_id: &ShmId) -> PathBuf {
        Path::new(SHM_DIR).join(format!("{}ms.lock", shm_id.prefix()))
    }

    /// Waits (up to `timeout`) for the session's spawn lock.
    pub fn acquire(shm_id: &ShmId, timeout: Duration) -> Result<MonitorSpawnLock> {
        let path = Self::path(shm_id);
        let shown = path.display().to_string();
        let deadline = Instant::now() + timeout;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(DEFAULT_MODE)
                .open(&path)
                .map_err(|e| Error::io("open", shown.clone(), e))?;
            loop {
                match flock_fd(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                        if Instant::now() > deadline {
                            return Err(Error::Lock {
                                name: shown,
                                reason: format!(
                                    "another process held it for more than {} ms",
                                    timeout.as_millis()
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(Error::io("flock", shown, e)),
                }
            }
            let locked = file
                .metadata()
                .map_err(|e| Error::io("fstat", shown.clone(), e))?;
            if locked.uid() == crate::ids::effective_uid() {
                // Ours (we probably created it): the session's access, as every object of it.
                let loc = Location::File(path.clone());
                let _ = apply_access(file.as_raw_fd(), &shown, Access::Session.resolve(&loc));
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.dev() == locked.dev() && m.ino() == locked.ino() => {
                    return Ok(MonitorSpawnLock { file, path })
                }
                // Removed (or replaced) while we waited: start over with the current file.
                _ => continue,
            }
        }
    }
}

impl Drop for MonitorSpawnLock {
    fn drop(&mut self) {
        // Still ours (we hold the lock, nobody else removes it under the lock but cleanups).
        if let (Ok(a), Ok(b)) = (self.file.metadata(), std::fs::metadata(&self.path)) {
            if a.dev() == b.dev() && a.ino() == b.ino() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        // Closing the file releases the lock.
    }
}
