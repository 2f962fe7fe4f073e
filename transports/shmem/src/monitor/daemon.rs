//! Detaching from the parent (`fairmq-shmmonitor --daemonize`), as FairMQ does (spec §6.2):
//! skip if the parent is already `init`; fork, the parent leaves; in the child `umask(0)`,
//! `setsid()`, `chdir("/")` and standard input, output and error to `/dev/null`.
//!
//! This is the only place of the monitor that forks; it lives in this crate because the
//! workspace confines `unsafe` to the shared-memory layer, so the binary stays safe.

use std::io::Write as _;
use std::os::fd::AsRawFd;

use crate::error::{Error, Result};

/// Which side of [`daemonize`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemonized {
    /// The original process: it should exit (with 0) right away.
    Parent {
        /// Pid of the daemon.
        child: u32,
    },
    /// The daemon (or the original process, if it already was one: parent pid 1).
    Daemon,
}

fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Forks into the background (see the module documentation).
///
/// Must be called while the process has a single thread (a forked child of a multi-threaded
/// process may only call async-signal-safe functions); otherwise fails with
/// [`Error::InvalidArgument`]. Files opened before (e.g. a log file) stay open in the daemon.
pub fn daemonize() -> Result<Daemonized> {
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } == 1 {
        return Ok(Daemonized::Daemon);
    }
    if let Some(n) = thread_count() {
        if n != 1 {
            return Err(Error::InvalidArgument(format!(
                "daemonize: the process has {n} threads; daemonize before starting any thread"
            )));
        }
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the process is single-threaded (checked above), so the child may run arbitrary
    // code after fork; both sides only use their own copies of the address space.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io(
            "fork",
            "fairmq-shmmonitor",
            std::io::Error::last_os_error(),
        ));
    }
    if pid > 0 {
        return Ok(Daemonized::Parent { child: pid as u32 });
    }
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0) };
    // SAFETY: setsid has no preconditions; the child of a fork is never a process group
    // leader, so it succeeds.
    if unsafe { libc::setsid() } < 0 {
        return Err(Error::io(
            "setsid",
            "fairmq-shmmonitor",
            std::io::Error::last_os_error(),
        ));
    }
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir", "/", e))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))?;
    for fd in 0..3 {
        // SAFETY: both descriptors are valid; dup2 atomically replaces `fd`.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(Error::io(
                "dup2",
                "/dev/null",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(Daemonized::Daemon)
}
