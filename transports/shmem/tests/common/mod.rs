//! Helpers for the multi-process tests: child processes that re-execute this test binary,
//! their environment, a private /dev/shm. Sessions (with the /dev/shm leak check), bounded
//! waits, kill-on-drop children and the seeded generator come from fairmq-test-support.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

#[allow(unused_imports)]
pub use fairmq_test_support::{
    kill_child, wait_child, wait_until, Children, Rng, Session as TestSession,
};

/// Environment variable selecting the child mode of the test binary.
pub const CHILD_ENV: &str = "FMQ_SHMEM_TEST_CHILD";

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
