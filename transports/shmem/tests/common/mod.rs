//! Helpers for the multi-process tests: unique sessions, child processes, bounded waits.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fairmq_shmem::{cleanup_session, list_session_objects, CleanupScope, ShmId};

/// Environment variable selecting the child mode of the test binary.
pub const CHILD_ENV: &str = "FMQ_SHMEM_TEST_CHILD";

/// A unique session per test; cleans up after a failed test.
pub struct TestSession {
    pub session: String,
    pub id: ShmId,
}

impl TestSession {
    pub fn new(tag: &str) -> TestSession {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let session = format!(
            "fmqrs-it-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let id = ShmId::from_session(&session);
        TestSession { session, id }
    }

    /// Every entry of /dev/shm whose name contains the shmId.
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
        assert!(list_session_objects(Path::new("/dev/shm"), &self.id)
            .unwrap()
            .is_empty());
    }
}

impl Drop for TestSession {
    fn drop(&mut self) {
        if !self.objects().is_empty() {
            let _ = cleanup_session(&self.id, CleanupScope::Full);
        }
    }
}

/// splitmix64
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Polls `cond` every millisecond; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Re-executes this test binary running only `entry_test`, in child mode `mode`.
pub fn spawn_child(entry_test: &str, mode: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        entry_test,
        "--nocapture",
        "--test-threads",
        "1",
        "-q",
    ])
    .env(CHILD_ENV, mode)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
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

/// Called first in a child: die with the parent test thread, so that a failed or aborted test
/// never leaves children behind.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid have no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            libc::_exit(1);
        }
    }
}

/// Waits for `child` at most `timeout` (killing it and panicking after that).
pub fn wait_child(child: &mut Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
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

/// Sends SIGKILL to `child` and reaps it.
pub fn kill_child(child: &mut Child) -> ExitStatus {
    // SAFETY: kill(2) with a pid of our own, not yet reaped child has no memory-safety
    // preconditions.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill {}", child.id());
    wait_child(child, Duration::from_secs(30))
}

pub fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

pub fn env_str(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// In a child process: moves into a private mount namespace and mounts a fresh tmpfs of `size`
/// (tmpfs's `size=` syntax, e.g. `64m`) on /dev/shm, so that the process sees a small, empty
/// /dev/shm of its own and the real one is never touched. `Err` says why that is not possible
/// here (no privileges or no namespaces): the caller skips.
pub fn private_dev_shm(size: &str) -> Result<(), String> {
    // SAFETY: unshare has no memory-safety preconditions.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "unshare(CLONE_NEWNS): {}",
            std::io::Error::last_os_error()
        ));
    }
    let root = std::ffi::CString::new("/").unwrap();
    let shm = std::ffi::CString::new("/dev/shm").unwrap();
    let tmpfs = std::ffi::CString::new("tmpfs").unwrap();
    let data = std::ffi::CString::new(format!("size={size}")).unwrap();
    // SAFETY: all pointers are valid NUL-terminated strings or null, as mount(2) expects; the
    // mounts only affect this process's private mount namespace.
    let ok = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) == 0
            && libc::mount(
                tmpfs.as_ptr(),
                shm.as_ptr(),
                tmpfs.as_ptr(),
                0,
                data.as_ptr() as *const libc::c_void,
            ) == 0
    };
    if !ok {
        return Err(format!("mount: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether /dev/shm (in this mount namespace) is empty.
pub fn dev_shm_is_empty() -> bool {
    std::fs::read_dir("/dev/shm").unwrap().next().is_none()
}
