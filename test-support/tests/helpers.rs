//! The helpers themselves: a process's output, exit code, signals and timeouts; sessions.

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use fairmq_test_support::{process_gone, unique, wait_until, Proc, Rng, Session, Signal};

#[test]
fn proc_collects_output_and_exit_code() {
    let mut p = Proc::spawn("/bin/sh", &["-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(p.code(), 3);
    assert_eq!(p.output(), "out\nerr\n");
    assert_eq!(p.name, "sh");
}

/// SIGTERM, not SIGINT: a test run started in the background of a non-interactive shell
/// (`cargo test &` in a script) hands SIGINT ignored to its children, and `sleep` keeps it so.
#[test]
fn proc_waits_for_output_and_takes_signals() {
    let mut p = Proc::spawn("/bin/sh", &["-c", "echo ready; exec sleep 60"]);
    p.wait_for_output("ready", Duration::from_secs(30));
    let pid = p.pid();
    p.signal(Signal::TERM);
    let status = p.wait(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(15));
    wait_until(Duration::from_secs(30), "the process to be reaped", || {
        process_gone(pid)
    });
}

#[test]
#[should_panic(expected = "did not exit within")]
fn proc_wait_times_out() {
    let mut p = Proc::spawn("/bin/sleep", &["60"]);
    p.wait(Duration::from_millis(100));
}

#[test]
fn dropped_proc_is_killed() {
    let p = Proc::spawn("/bin/sleep", &["60"]);
    let pid = p.pid();
    drop(p);
    assert!(process_gone(pid));
}

#[test]
fn names_and_sessions_are_unique_and_clean() {
    assert_ne!(unique("t"), unique("t"));
    let a = Session::new("a");
    let b = Session::new("a");
    assert_ne!(a.name, b.name);
    assert_ne!(a.id.as_str(), b.id.as_str());
    assert!(a.ipc("data").starts_with("ipc:///"));
    a.assert_clean();
}

#[test]
fn rng_repeats_with_its_seed() {
    let (mut a, mut b) = (Rng::new(7), Rng::new(7));
    for _ in 0..100 {
        let x = a.below(10);
        assert_eq!(x, b.below(10));
        assert!(x < 10);
    }
}
