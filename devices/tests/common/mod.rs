//! Helpers for the devices' process tests: this package's binaries and what the devices print.
//! Processes, unique names, ipc addresses, sessions and waits come from fairmq-test-support.

#![allow(dead_code)]

use std::path::PathBuf;

#[allow(unused_imports)]
pub use fairmq_test_support::{unique, Ipc, Proc, Signal, TIMEOUT};

/// The path of one of this package's binaries.
pub fn bin(name: &str) -> PathBuf {
    let var = match name {
        "fairmq-bsampler" => env!("CARGO_BIN_EXE_fairmq-bsampler"),
        "fairmq-sink" => env!("CARGO_BIN_EXE_fairmq-sink"),
        "fairmq-proxy" => env!("CARGO_BIN_EXE_fairmq-proxy"),
        "fairmq-splitter" => env!("CARGO_BIN_EXE_fairmq-splitter"),
        "fairmq-merger" => env!("CARGO_BIN_EXE_fairmq-merger"),
        "fairmq-multiplier" => env!("CARGO_BIN_EXE_fairmq-multiplier"),
        "fairmq-testdevice" => env!("CARGO_BIN_EXE_fairmq-testdevice"),
        other => panic!("unknown binary {other}"),
    };
    PathBuf::from(var)
}

/// Runs a device to completion and returns (exit code, output).
pub fn run(binary: &str, args: &[&str]) -> (i32, String) {
    let mut p = Proc::device(bin(binary), args);
    let code = p.code();
    (code, p.output())
}

/// The single `error: ...` line of a startup error, checked to be one line without panic.
pub fn assert_clean_error(code: i32, out: &str, needle: &str) {
    assert_ne!(code, 0, "expected failure; output:\n{out}");
    assert!(!out.contains("panicked"), "panic in output:\n{out}");
    let line = out
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line contains '{needle}'; output:\n{out}"));
    assert!(line.len() < 600, "error line too long: {line}");
}

/// The number in `Received <n> messages` of a sink's output.
pub fn received(out: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            let rest = l.split("Received ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no 'Received <n> messages' line in:\n{out}"))
}
