//! The results: medians, the machine, the memcpy limit, and the markdown report.

use std::fmt::Write as _;

use crate::runner::{Measurement, Point};

/// All runs of one point.
#[derive(Debug, Clone)]
pub struct PointResult {
    /// The configuration.
    pub point: Point,
    /// One entry per run: a measurement or why it failed.
    pub runs: Vec<Result<Measurement, String>>,
}

impl PointResult {
    /// The median message rate of the successful runs (`None` if none succeeded).
    pub fn median_rate(&self) -> Option<f64> {
        let rates: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|m| m.msg_rate))
            .collect();
        median(&rates)
    }

    /// The median GB/s.
    pub fn median_gbps(&self) -> Option<f64> {
        self.median_rate().map(|r| r * self.point.size as f64 / 1e9)
    }
}

/// The median (mean of the middle two for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The machine the report was made on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `nproc`.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Single-thread memcpy bandwidth in GB/s.
    pub memcpy_gbps: f64,
    /// The date (UTC), `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
}

/// `model name` of the first CPU in /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Measures single-thread memcpy bandwidth (GB/s, bytes copied per second) with `buffer`-byte
/// copies, best of `repeats`.
pub fn measure_memcpy(buffer: usize, repeats: usize) -> f64 {
    let src: Vec<u8> = (0..buffer).map(|i| i as u8).collect();
    let mut dst = vec![1u8; buffer];
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = std::time::Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    buffer as f64 / 1e9 / best
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch.
pub fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// `64 B`, `4 KiB`, `1 MiB`.
pub fn size_label(size: u64) -> String {
    if size >= 1 << 20 && size & ((1 << 20) - 1) == 0 {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size & ((1 << 10) - 1) == 0 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// A message rate with a k/M suffix.
pub fn rate_label(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

/// The series of the report in a fixed order: (transport, protocol).
pub const SERIES: [(&str, &str); 4] = [
    ("shmem", "ipc"),
    ("shmem", "tcp"),
    ("zeromq", "ipc"),
    ("zeromq", "tcp"),
];

fn find<'a>(
    results: &'a [PointResult],
    transport: &str,
    protocol: &str,
    size: u64,
    memset: bool,
) -> Option<&'a PointResult> {
    results.iter().find(|r| {
        r.point.transport == transport
            && r.point.protocol == protocol
            && r.point.size == size
            && r.point.memset == memset
    })
}

/// The compact tables (one per memset setting): rows are sizes, columns the four series, cells
/// `GB/s (msg/s)` medians.
pub fn summary_tables(results: &[PointResult], sizes: &[u64]) -> String {
    let mut s = String::new();
    for memset in [false, true] {
        if !results.iter().any(|r| r.point.memset == memset) {
            continue;
        }
        let _ = writeln!(
            s,
            "\n**{}** — median GB/s (msg/s)\n",
            if memset {
                "`--memset true` (the sampler writes every byte)"
            } else {
                "`--memset false` (payloads untouched)"
            }
        );
        let _ = writeln!(
            s,
            "| size | {} |",
            SERIES
                .iter()
                .map(|(t, p)| format!("{t} {p}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|---|{}", "---:|".repeat(SERIES.len()));
        for &size in sizes {
            let cells: Vec<String> = SERIES
                .iter()
                .map(|(t, p)| match find(results, t, p, size, memset) {
                    None => "–".to_owned(),
                    Some(r) => match (r.median_gbps(), r.median_rate()) {
                        (Some(g), Some(m)) => format!("{g:.3} ({})", rate_label(m)),
                        _ => "failed".to_owned(),
                    },
                })
                .collect();
            let _ = writeln!(s, "| {} | {} |", size_label(size), cells.join(" | "));
        }
    }
    s
}

/// The full markdown report.
pub fn markdown(
    results: &[PointResult],
    sizes: &[u64],
    machine: &Machine,
    seconds: f64,
    repeats: usize,
    command: &str,
    png_name: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# fairmq-rs benchmark report: fairmq-bsampler → fairmq-sink\n"
    );
    let _ = writeln!(
        s,
        "{} · {} × {} (`nproc` {}) · memcpy {:.1} GB/s (one thread, 256 MiB copies, best of 5)\n",
        machine.date, machine.cpus, machine.cpu_model, machine.cpus, machine.memcpy_gbps
    );
    let _ = writeln!(
        s,
        "Command: `{command}`. Each point is the median of {repeats} runs of {seconds} s; a run is \
         `fairmq-bsampler` (push, bind) → `fairmq-sink` (pull, connect), two processes, both with \
         the same `--transport`; the rate is the sink's own (`Received <n> messages in <ms>ms`, \
         from its first message to the stop). Queues: FairMQ's 1000 messages, at most 256 MiB \
         (`sndBufSize`/`rcvBufSize` = clamp(256 MiB / size, 10, 1000)). GB = 10^9 bytes. The \
         shmem transport moves only a descriptor per message, so without `--memset` its GB/s is \
         not limited by memory bandwidth; `--memset true` makes the sampler write every byte \
         (into buffers the sink has just freed, often still in the CPU cache, so writing can \
         beat the memcpy line, which copies 256 MiB from memory to memory)."
    );
    s.push_str(&summary_tables(results, sizes));
    let _ = writeln!(s, "\n![throughput by message size]({png_name})\n");
    let _ = writeln!(s, "## All runs\n");
    let _ = writeln!(
        s,
        "| transport | protocol | memset | size | median msg/s | median GB/s | runs (msg/s) |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---|");
    for r in results {
        let runs: Vec<String> = r
            .runs
            .iter()
            .map(|m| match m {
                Ok(m) => format!("{:.0}", m.msg_rate),
                Err(_) => "failed".to_owned(),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.point.transport,
            r.point.protocol,
            r.point.memset,
            size_label(r.point.size),
            r.median_rate()
                .map_or("failed".to_owned(), |v| format!("{v:.0}")),
            r.median_gbps()
                .map_or("failed".to_owned(), |v| format!("{v:.3}")),
            runs.join(", ")
        );
    }
    let failures: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.runs.iter().filter_map(move |m| {
                m.as_ref().err().map(|e| {
                    format!(
                        "- {} {} {} memset {}: {}",
                        r.point.transport,
                        r.point.protocol,
                        size_label(r.point.size),
                        r.point.memset,
                        e.lines().next().unwrap_or("")
                    )
                })
            })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\n## Failed runs\n\n{}", failures.join("\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn labels() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(8 << 20), "8 MiB");
        assert_eq!(rate_label(1_234_567.0), "1.23M");
        assert_eq!(rate_label(4_321.0), "4.3k");
        assert_eq!(rate_label(12.0), "12");
    }

    #[test]
    fn tables() {
        let point = |t: &str, p: &str, memset| Point {
            transport: t.into(),
            protocol: p.into(),
            size: 4096,
            memset,
        };
        let m = |rate| {
            Ok(Measurement {
                messages: 1,
                millis: 1,
                msg_rate: rate,
            })
        };
        let results = vec![
            PointResult {
                point: point("shmem", "ipc", false),
                runs: vec![m(1000.0), m(3000.0), m(2000.0)],
            },
            PointResult {
                point: point("zeromq", "tcp", false),
                runs: vec![Err("boom".into())],
            },
        ];
        let t = summary_tables(&results, &[4096]);
        assert!(
            t.contains("| 4 KiB | 0.008 (2.0k) | – | – | failed |"),
            "{t}"
        );
        let machine = Machine {
            cpus: 2,
            cpu_model: "CPU".into(),
            memcpy_gbps: 10.0,
            date: "d".into(),
        };
        let md = markdown(&results, &[4096], &machine, 2.0, 3, "cmd", "x.png");
        assert!(md.contains("| shmem | ipc | false | 4 KiB | 2000 | 0.008 | 1000, 3000, 2000 |"));
        assert!(md.contains("## Failed runs"));
    }
}
