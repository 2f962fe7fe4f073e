//! Waiting for a condition: polled, with a generous bound, never a fixed sleep.

use std::time::{Duration, Instant};

/// Generous upper bound for a process or a condition in the tests (machines running several
/// test binaries at once can be slow).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `cond` until it holds; panics naming `what` after `timeout`. Polls every millisecond at
/// first, backing off to every 10 ms.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
