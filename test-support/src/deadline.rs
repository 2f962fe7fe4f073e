//! The hang guard and case budget of the property tests (`tests/prop_*.rs`): a parser of
//! outside input must return, so each case runs on a thread of its own and fails if it is not
//! back within a deadline; and the number of cases comes from `PROPTEST_CASES` (as proptest
//! itself reads it), with a default small enough for `cargo test --workspace`.

use std::fmt::Debug;
use std::sync::mpsc;
use std::time::Duration;

/// How long one parse may take before the case counts as a hang. Generous: the machine is
/// shared and debug builds are slow; a real hang never returns.
pub const PARSE_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `f` on a thread of its own and returns its result; panics if it panics (with its
/// payload, so proptest shrinks the input) or if it has not returned within `limit` (naming
/// `input`). A hung thread is left behind: the test fails anyway.
pub fn within<T, F>(limit: Duration, input: &impl Debug, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = worker.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the worker returns only after sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("no result within {limit:?} (a hang?) for input {input:?}")
        }
    }
}

/// The number of cases of a property test: `PROPTEST_CASES` if set (e.g. 100000 for a long
/// local run), else `default`.
pub fn prop_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}
