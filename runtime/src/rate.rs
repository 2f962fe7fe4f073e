//! Pacing and throughput: the [`RateLimiter`] behind `--rate` / `--msg-rate`, and the
//! per-sub-channel rate logger of spec §8.7.
//!
//! The rate logger reports true per-second rates: bytes and messages since the previous
//! report divided by the time since the previous report (FairMQ divides an N-second delta
//! by about one second when `rateLogging` is N > 1, a [quirk] fixed here).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::state_machine::StateMachine;

/// Paces a loop to a target rate (Hz) by sleeping after each iteration; rate ≤ 0 means
/// unlimited. Sleeps are cut short by a pending transition when a state machine is given.
/// The schedule is absolute, so oversleeping is made up by later iterations (but a lag of
/// more than 100 ms is forgiven rather than caught up in a burst).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    period: Option<Duration>,
    next: Option<Instant>,
}

impl RateLimiter {
    /// A limiter for `rate` iterations per second.
    pub fn new(rate: f64) -> Self {
        let period = (rate > 0.0 && rate.is_finite()).then(|| Duration::from_secs_f64(1.0 / rate));
        RateLimiter { period, next: None }
    }

    /// Whether this limiter never sleeps.
    pub fn is_unlimited(&self) -> bool {
        self.period.is_none()
    }

    /// Call once per iteration: sleeps until the next iteration is due.
    pub fn maybe_sleep(&mut self, sm: Option<&StateMachine>) {
        let Some(period) = self.period else { return };
        let now = Instant::now();
        let next = self.next.map_or(now + period, |n| n + period);
        let next = if now > next + Duration::from_millis(100) {
            now
        } else {
            next
        };
        self.next = Some(next);
        if next > now {
            let wait = next - now;
            match sm {
                Some(sm) => {
                    sm.wait_for(wait);
                }
                None => std::thread::sleep(wait),
            }
        }
    }
}

/// Formats like C++'s default stream output (`%g` with 6 significant digits).
pub fn fmt_g(x: f64) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".to_owned()
        } else if x > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        };
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", strip(mantissa), exp.abs())
    } else {
        let decimals = (5 - exp).max(0) as usize;
        strip(&format!("{x:.decimals$}"))
    }
}

struct Counter {
    channel: Arc<Channel>,
    interval: u32,
    ticks: u32,
    since: Instant,
    bytes_in: u64,
    msgs_in: u64,
    bytes_out: u64,
    msgs_out: u64,
}

/// One rate line: `<name right-aligned>: in: <msg/s> (<MB/s> MB) out: <msg/s> (<MB/s> MB)`.
pub fn format_rate_line(
    name: &str,
    width: usize,
    msgs_in: f64,
    mb_in: f64,
    msgs_out: f64,
    mb_out: f64,
) -> String {
    format!(
        "{name:>width$}: in: {} ({} MB) out: {} ({} MB)",
        fmt_g(msgs_in),
        fmt_g(mb_in),
        fmt_g(msgs_out),
        fmt_g(mb_out)
    )
}

/// Starts the rate logger for the sub-channels with `rateLogging > 0`; it ends when a
/// transition is pending. `None` if no sub-channel logs.
pub fn start_rate_logger(channels: Vec<Arc<Channel>>, sm: StateMachine) -> Option<JoinHandle<()>> {
    let now = Instant::now();
    let mut counters: Vec<Counter> = channels
        .into_iter()
        .filter(|c| c.rate_logging() > 0 && c.socket().is_some())
        .map(|c| {
            let s = c.socket().expect("filtered");
            Counter {
                interval: c.rate_logging() as u32,
                ticks: 0,
                since: now,
                bytes_in: s.bytes_rx(),
                msgs_in: s.messages_rx(),
                bytes_out: s.bytes_tx(),
                msgs_out: s.messages_tx(),
                channel: c,
            }
        })
        .collect();
    if counters.is_empty() {
        return None;
    }
    let width = counters
        .iter()
        .map(|c| c.channel.full_name().len())
        .max()
        .unwrap_or(0);
    let spawned = std::thread::Builder::new()
        .name("rate-logger".to_owned())
        .spawn(move || {
            let mut tick = Instant::now();
            loop {
                tick += Duration::from_secs(1);
                let wait = tick.saturating_duration_since(Instant::now());
                if !sm.wait_for(wait) {
                    break;
                }
                for c in &mut counters {
                    c.ticks += 1;
                    if c.ticks < c.interval {
                        continue;
                    }
                    c.ticks = 0;
                    let Some(s) = c.channel.socket() else {
                        continue;
                    };
                    let now = Instant::now();
                    let secs = now.duration_since(c.since).as_secs_f64().max(1e-9);
                    let (bi, mi, bo, mo) =
                        (s.bytes_rx(), s.messages_rx(), s.bytes_tx(), s.messages_tx());
                    let line = format_rate_line(
                        c.channel.full_name(),
                        width,
                        mi.saturating_sub(c.msgs_in) as f64 / secs,
                        bi.saturating_sub(c.bytes_in) as f64 / 1e6 / secs,
                        mo.saturating_sub(c.msgs_out) as f64 / secs,
                        bo.saturating_sub(c.bytes_out) as f64 / 1e6 / secs,
                    );
                    tracing::info!("{}", line);
                    c.since = now;
                    c.bytes_in = bi;
                    c.msgs_in = mi;
                    c.bytes_out = bo;
                    c.msgs_out = mo;
                }
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!("cannot start the rate logger thread: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_formatting_like_cpp() {
        assert_eq!(fmt_g(0.0), "0");
        assert_eq!(fmt_g(1.0), "1");
        assert_eq!(fmt_g(1234.5678), "1234.57");
        assert_eq!(fmt_g(123456.7), "123457");
        assert_eq!(fmt_g(1234567.0), "1.23457e+06");
        assert_eq!(fmt_g(0.0001234), "0.0001234");
        assert_eq!(fmt_g(0.00001234), "1.234e-05");
        assert_eq!(fmt_g(99999.95), "99999.9");
        assert_eq!(fmt_g(999999.5), "1e+06");
        assert_eq!(fmt_g(0.5), "0.5");
        assert_eq!(fmt_g(-2.5), "-2.5");
    }

    #[test]
    fn rate_line_format() {
        assert_eq!(
            format_rate_line("data[0]", 9, 1000.0, 1.0, 0.0, 0.0),
            "  data[0]: in: 1000 (1 MB) out: 0 (0 MB)"
        );
    }

    #[test]
    fn limiter_paces() {
        let mut l = RateLimiter::new(200.0);
        let start = Instant::now();
        for _ in 0..20 {
            l.maybe_sleep(None);
        }
        // 20 iterations at 200 Hz: at least ~100 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(95),
            "{:?}",
            start.elapsed()
        );
        assert!(RateLimiter::new(0.0).is_unlimited());
        assert!(RateLimiter::new(-1.0).is_unlimited());
    }

    #[test]
    fn limiter_sleep_is_cut_short_by_transition() {
        let sm = StateMachine::new();
        assert!(sm.change_state(crate::state::Transition::InitDevice));
        let mut l = RateLimiter::new(0.01); // one per 100 s
        let start = Instant::now();
        l.maybe_sleep(Some(&sm));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
