//! Helpers for the monitor's process tests: the real binaries (`fairmq-shmmonitor` of this
//! package, the built-in devices `fairmq-sink` / `fairmq-bsampler` next to it) started in a
//! session's directory. Sessions (which on drop also kill the session's monitor daemons),
//! processes and waits come from fairmq-test-support.
//!
//! The device binaries are not part of this package: cargo builds them with `cargo test
//! --workspace` or `cargo test -p fairmq-shmmonitor -p fairmq-devices` (they are in the same
//! directory as `fairmq-shmmonitor`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(unused_imports)]
pub use fairmq_test_support::{monitor_processes, process_gone, wait_until, Proc, Session, Signal};

/// Generous upper bound for waiting on a condition.
pub const LONG: Duration = Duration::from_secs(60);

/// Small segments, so that parallel tests do not fill /dev/shm.
pub const SEGMENT_SIZE: &str = "10000000";

/// `fairmq-shmmonitor`.
pub fn monitor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fairmq-shmmonitor"))
}

/// The directory of the binaries.
pub fn bin_dir() -> PathBuf {
    monitor_bin().parent().unwrap().to_path_buf()
}

/// A device binary next to `fairmq-shmmonitor`.
pub fn device_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the devices too (cargo test -p fairmq-shmmonitor -p fairmq-devices, or cargo test --workspace)",
        p.display()
    );
    p
}

/// Starts the device `name` with `args` in the session's directory; `adjust` changes the
/// command last.
pub fn device_in(
    s: &Session,
    name: &str,
    args: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> Proc {
    Proc::device_with(device_bin(name), args, |c| {
        c.current_dir(s.dir.path());
        adjust(c);
    })
}

/// Starts `fairmq-shmmonitor` with `args` in the session's directory; `adjust` changes the
/// command last.
pub fn monitor_in(s: &Session, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Proc {
    Proc::spawn_with(monitor_bin(), args, |c| {
        c.current_dir(s.dir.path());
        adjust(c);
    })
}

/// Spawns a shmem `fairmq-sink` (bind) of the session, running until signalled.
pub fn sink(s: &Session, id: &str, address: &str, extra: &[&str]) -> Proc {
    sink_with(s, id, address, extra, |_| {})
}

/// [`sink`] with a hook that adjusts the command last.
pub fn sink_with(
    s: &Session,
    id: &str,
    address: &str,
    extra: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> Proc {
    let chan = format!("name=data,type=pull,method=bind,address={address}");
    let args = shmem_device_args(s, id, &[], &chan, extra);
    device_in(s, "fairmq-sink", &args, adjust)
}

/// Spawns a shmem `fairmq-bsampler` (connect) of the session, 1000-byte messages at a modest
/// rate, running until signalled.
pub fn sampler(s: &Session, id: &str, address: &str, extra: &[&str]) -> Proc {
    sampler_with(s, id, address, extra, |_| {})
}

/// [`sampler`] with a hook that adjusts the command last.
pub fn sampler_with(
    s: &Session,
    id: &str,
    address: &str,
    extra: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> Proc {
    let chan = format!("name=data,type=push,method=connect,address={address}");
    let rate = ["--msg-size", "1000", "--msg-rate", "200"];
    let args = shmem_device_args(s, id, &rate, &chan, extra);
    device_in(s, "fairmq-bsampler", &args, adjust)
}

/// The arguments of a shmem device of the session with one channel, running until signalled.
fn shmem_device_args<'a>(
    s: &'a Session,
    id: &'a str,
    own: &[&'a str],
    channel: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--id",
        id,
        "--transport",
        "shmem",
        "--session",
        &s.name,
        "--control",
        "static",
        "--max-iterations",
        "0",
        "--shm-segment-size",
        SEGMENT_SIZE,
    ];
    args.extend_from_slice(own);
    args.extend_from_slice(&["--channel-config", channel]);
    args.extend_from_slice(extra);
    args
}

/// Runs `fairmq-shmmonitor` with `args`: (exit code, stdout, stderr).
pub fn run_monitor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(monitor_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run fairmq-shmmonitor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first line of `text` that contains `needle`.
pub fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}
