//! The vendored libzmq is built with its Linux platform defines (`.cargo/config.toml`): its
//! threads signal through an eventfd, every descriptor it opens is close-on-exec, and its
//! threads carry libzmq's names. Each of these fails on a build without the defines.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::fs;

/// The descriptors this process has open.
fn open_fds() -> BTreeSet<u32> {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The `flags:` line of `/proc/self/fdinfo/<fd>`, octal.
fn fd_flags(fd: u32) -> Option<u32> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u32::from_str_radix(flags.trim(), 8).ok()
}

/// `O_CLOEXEC`, which /proc shows in `flags:` as the open(2) flag bit.
const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;

#[test]
fn libzmq_opens_eventfds_and_close_on_exec_descriptors_and_names_its_threads() {
    let before = open_fds();
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).expect("pull");
    let push = ctx.socket(zmq::PUSH).expect("push");
    pull.bind("tcp://127.0.0.1:*").expect("bind");
    let ep = pull.get_last_endpoint().expect("endpoint").expect("utf-8");
    push.connect(&ep).expect("connect");
    push.send("x", 0).expect("send");
    assert_eq!(pull.recv_bytes(0).expect("receive"), b"x");

    // Other tests do not run in this binary, so what is new is libzmq's.
    let new: Vec<u32> = open_fds().difference(&before).copied().collect();
    assert!(!new.is_empty(), "libzmq opened no descriptor");
    let kinds: Vec<String> = new
        .iter()
        .filter_map(|fd| fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        kinds.iter().any(|k| k == "anon_inode:[eventfd]"),
        "libzmq signals without an eventfd (ZMQ_HAVE_EVENTFD unset?): {kinds:?}"
    );
    for fd in &new {
        // A descriptor may close between the listing and the look: skip only those.
        if let Some(flags) = fd_flags(*fd) {
            assert!(
                flags & O_CLOEXEC != 0,
                "fd {fd} ({:?}) is not close-on-exec: a spawned child would inherit it",
                fs::read_link(format!("/proc/self/fd/{fd}"))
            );
        }
    }

    let names: Vec<String> = fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("ZMQbg/IO")),
        "libzmq's I/O thread is unnamed (ZMQ_HAVE_PTHREAD_SETNAME_2 unset?): {names:?}"
    );
}
