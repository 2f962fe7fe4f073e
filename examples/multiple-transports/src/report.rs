//! The log lines the three devices print, and the parsers the launcher reads them with.
//!
//! The devices log through the runtime's logger, so every line carries a prefix such as
//! `[12:00:01][INFO] `; the parsers look for the message anywhere in the line.
//!
//! | device | line |
//! |---|---|
//! | sampler1, sampler2 | `Sent <n> messages of <size> bytes on <channel>.` |
//! | sampler1 | `Acknowledged <n> messages` (FairMQ's text) |
//! | sink | `Received <n> messages (<bytes> bytes) on <channel> in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).` |
//! | sink | `Sent <n> acknowledgements on ack.` |
//! | all (rate logger) | `<channel>[<i>]: in: <msg/s> (<MB/s> MB) out: <msg/s> (<MB/s> MB)` |

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

/// `Sent <n> messages of <size> bytes on <channel>.`
pub fn sent_line(n: u64, size: usize, channel: &str) -> String {
    format!("Sent {n} messages of {size} bytes on {channel}.")
}

/// `Acknowledged <n> messages`
pub fn acknowledged_line(n: u64) -> String {
    format!("Acknowledged {n} messages")
}

/// `Received <n> messages (<bytes> bytes) on <channel> in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).`
/// (rates over the time from the first to the last message of the channel).
pub fn received_line(n: u64, bytes: u64, channel: &str, secs: f64) -> String {
    let (rate, gbps) = if n > 0 && secs > 0.0 {
        (n as f64 / secs, bytes as f64 / 1e9 / secs)
    } else {
        (0.0, 0.0)
    };
    format!(
        "Received {n} messages ({bytes} bytes) on {channel} in {}ms ({rate:.0} msg/s, {gbps:.3} GB/s).",
        (secs * 1000.0).round() as u64
    )
}

/// `Sent <n> acknowledgements on ack.`
pub fn acks_sent_line(n: u64) -> String {
    format!("Sent {n} acknowledgements on ack.")
}

/// What the sink said about one input channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Received {
    /// Messages received.
    pub messages: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Milliseconds from the first to the last message.
    pub millis: u64,
    /// Messages per second over that time.
    pub rate: f64,
    /// GB/s (10^9 bytes) over that time.
    pub gbps: f64,
}

/// One line of the rate logger (spec §8.7).
#[derive(Debug, Clone, PartialEq)]
pub struct RateSample {
    /// The sub-channel, e.g. `data1[0]`.
    pub channel: String,
    /// Messages per second received.
    pub msgs_in: f64,
    /// MB/s (10^6 bytes) received.
    pub mb_in: f64,
    /// Messages per second sent.
    pub msgs_out: f64,
    /// MB/s sent.
    pub mb_out: f64,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// Parses a rate-logger line.
pub fn parse_rate_line(line: &str) -> Option<RateSample> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let c = re(
        &RE,
        r"(\S+\[\d+\]): in: (\S+) \((\S+) MB\) out: (\S+) \((\S+) MB\)",
    )
    .captures(line)?;
    Some(RateSample {
        channel: c[1].to_owned(),
        msgs_in: c[2].parse().ok()?,
        mb_in: c[3].parse().ok()?,
        msgs_out: c[4].parse().ok()?,
        mb_out: c[5].parse().ok()?,
    })
}

/// Everything the launcher learned from one device's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReport {
    /// `Sent <n> messages of <size> bytes on <channel>.`: channel → (n, size).
    pub sent: BTreeMap<String, (u64, usize)>,
    /// `Acknowledged <n> messages`.
    pub acknowledged: Option<u64>,
    /// The sink's `Received ...` lines, by channel.
    pub received: BTreeMap<String, Received>,
    /// `Sent <n> acknowledgements on ack.`
    pub acks_sent: Option<u64>,
    /// The latest rate-logger line of each sub-channel.
    pub rates: BTreeMap<String, RateSample>,
    /// Lines at ERROR or FATAL severity, and panics.
    pub errors: Vec<String>,
    /// The device reached the EXITING state (`... ---> EXITING`).
    pub exiting: bool,
}

impl DeviceReport {
    /// Takes one line of output into account; returns the rate sample if it was a rate line.
    pub fn feed(&mut self, line: &str) -> Option<RateSample> {
        static SENT: OnceLock<Regex> = OnceLock::new();
        static ACKED: OnceLock<Regex> = OnceLock::new();
        static RECEIVED: OnceLock<Regex> = OnceLock::new();
        static ACKS_SENT: OnceLock<Regex> = OnceLock::new();
        if let Some(sample) = parse_rate_line(line) {
            self.rates.insert(sample.channel.clone(), sample.clone());
            return Some(sample);
        }
        if let Some(c) = re(&SENT, r"Sent (\d+) messages of (\d+) bytes on (\S+)\.").captures(line)
        {
            if let (Ok(n), Ok(size)) = (c[1].parse(), c[2].parse()) {
                self.sent.insert(c[3].to_owned(), (n, size));
            }
        } else if let Some(c) = re(&ACKED, r"Acknowledged (\d+) messages").captures(line) {
            self.acknowledged = c[1].parse().ok();
        } else if let Some(c) = re(
            &RECEIVED,
            r"Received (\d+) messages \((\d+) bytes\) on (\S+) in (\d+)ms \((\S+) msg/s, (\S+) GB/s\)",
        )
        .captures(line)
        {
            let parsed = (|| {
                Some(Received {
                    messages: c[1].parse().ok()?,
                    bytes: c[2].parse().ok()?,
                    millis: c[4].parse().ok()?,
                    rate: c[5].parse().ok()?,
                    gbps: c[6].parse().ok()?,
                })
            })();
            if let Some(r) = parsed {
                self.received.insert(c[3].to_owned(), r);
            }
        } else if let Some(c) =
            re(&ACKS_SENT, r"Sent (\d+) acknowledgements on ack\.").captures(line)
        {
            self.acks_sent = c[1].parse().ok();
        } else if line.contains("[ERROR]") || line.contains("[FATAL]") || line.contains("panicked")
        {
            self.errors.push(line.trim().to_owned());
        } else if line.contains("---> EXITING") {
            self.exiting = true;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let mut r = DeviceReport::default();
        r.feed(&format!(
            "[12:00:00][INFO] {}",
            sent_line(42, 1_000_000, "data1")
        ));
        r.feed(&format!("[12:00:00][INFO] {}", acknowledged_line(41)));
        r.feed(&received_line(40, 40_000_000, "data1", 2.0));
        r.feed(&acks_sent_line(40));
        r.feed("[12:00:00][STATE] RESETTING DEVICE ---> EXITING");
        r.feed("[12:00:00][ERROR] something broke");
        assert_eq!(r.sent["data1"], (42, 1_000_000));
        assert_eq!(r.acknowledged, Some(41));
        let got = r.received["data1"];
        assert_eq!(got.messages, 40);
        assert_eq!(got.bytes, 40_000_000);
        assert_eq!(got.millis, 2000);
        assert_eq!(got.rate, 20.0);
        assert_eq!(got.gbps, 0.02);
        assert_eq!(r.acks_sent, Some(40));
        assert!(r.exiting);
        assert_eq!(r.errors.len(), 1);
    }

    #[test]
    fn received_line_without_messages() {
        assert_eq!(
            received_line(0, 0, "data2", 0.0),
            "Received 0 messages (0 bytes) on data2 in 0ms (0 msg/s, 0.000 GB/s)."
        );
    }

    #[test]
    fn rate_lines() {
        let line = format!(
            "[12:00:01][INFO] {}",
            fairmq::rate::format_rate_line("data1[0]", 8, 1998.0, 1998.0, 0.0, 0.0)
        );
        let mut r = DeviceReport::default();
        let s = r.feed(&line).expect("a rate line");
        assert_eq!(s.channel, "data1[0]");
        assert_eq!(s.msgs_in, 1998.0);
        assert_eq!(s.mb_in, 1998.0);
        assert_eq!(s.msgs_out, 0.0);
        let big = parse_rate_line("  data2[0]: in: 1.23457e+06 (1234.57 MB) out: 0 (0 MB)")
            .expect("parsed");
        assert_eq!(big.msgs_in, 1.23457e6);
        assert!(parse_rate_line("data1: in: x").is_none());
    }
}
