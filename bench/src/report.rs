//! The results of both systems, their medians and ratios, the machine, and the markdown report.

use std::fmt::Write as _;

use crate::runner::{Measurement, Point};

/// One run: a measurement or why it failed.
pub type Run = Result<Measurement, String>;

/// All runs of one point, of both systems.
#[derive(Debug, Clone)]
pub struct PointResult {
    /// The configuration.
    pub point: Point,
    /// The sink's `--max-iterations` of the measured runs (`None`: results.json of a timed run,
    /// or the calibration failed).
    pub iterations: Option<u64>,
    /// Our runs.
    pub ours: Vec<Run>,
    /// The peer's (FairMQ's) runs; empty without `--peer`.
    pub peer: Vec<Run>,
}

/// The medians of one system's successful runs at one point.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// msg/s.
    pub rate: Option<f64>,
    /// GB/s.
    pub gbps: Option<f64>,
    /// The sampler's peak RSS, MiB.
    pub sampler_rss_mib: Option<f64>,
    /// The sink's peak RSS, MiB.
    pub sink_rss_mib: Option<f64>,
    /// Wall time of a run, s.
    pub wall_s: Option<f64>,
}

impl Stats {
    /// The medians of `runs` for messages of `size` bytes.
    pub fn of(runs: &[Run], size: u64) -> Stats {
        let ok: Vec<&Measurement> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        let med = |f: &dyn Fn(&Measurement) -> Option<f64>| {
            median(&ok.iter().filter_map(|m| f(m)).collect::<Vec<_>>())
        };
        let rate = med(&|m| Some(m.msg_rate));
        Stats {
            rate,
            gbps: rate.map(|r| r * size as f64 / 1e9),
            sampler_rss_mib: med(&|m| m.sampler_rss_kib().map(|k| k as f64 / 1024.0)),
            sink_rss_mib: med(&|m| m.sink_rss_kib().map(|k| k as f64 / 1024.0)),
            wall_s: med(&|m| m.wall_ms.map(|w| w / 1e3)),
        }
    }

    /// Sampler + sink RSS, MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        Some(self.sampler_rss_mib? + self.sink_rss_mib?)
    }
}

impl PointResult {
    /// The medians of our runs.
    pub fn ours_stats(&self) -> Stats {
        Stats::of(&self.ours, self.point.size)
    }

    /// The medians of the peer's runs.
    pub fn peer_stats(&self) -> Stats {
        Stats::of(&self.peer, self.point.size)
    }

    /// ours / peer of the median msg/s.
    pub fn rate_ratio(&self) -> Option<f64> {
        ratio(self.ours_stats().rate, self.peer_stats().rate)
    }

    /// Every run of both systems succeeded.
    pub fn all_ok(&self) -> bool {
        self.ours.iter().chain(&self.peer).all(Result::is_ok)
    }
}

/// `ours / theirs`, if both are there and theirs is positive.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    let (o, t) = (ours?, theirs?);
    (t > 0.0 && o.is_finite() && t.is_finite()).then_some(o / t)
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

/// The peer of a run, as the report names it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerMeta {
    /// `--peer`.
    pub dir: String,
    /// `FairMQ 1.10.0`, or `peer (not FairMQ)`.
    pub label: String,
    /// Whether its binaries are FairMQ's.
    pub is_fairmq: bool,
    /// The options its devices got beyond the common ones.
    pub args: Vec<String>,
    /// The `LD_LIBRARY_PATH` entry the tool added, if any.
    pub lib_dir: Option<String>,
}

impl PeerMeta {
    /// The short name in table headers: `FairMQ` or `peer`.
    pub fn short(&self) -> &'static str {
        if self.is_fairmq {
            "FairMQ"
        } else {
            "peer"
        }
    }
}

/// Everything about a run of the tool except the results.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The machine.
    pub machine: Machine,
    /// `--seconds`.
    pub seconds: f64,
    /// `--repeats`.
    pub repeats: usize,
    /// The command line of the tool.
    pub command: String,
    /// The options our devices got beyond the common ones.
    pub ours_args: Vec<String>,
    /// The peer, if `--peer` was given.
    pub peer: Option<PeerMeta>,
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

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".to_owned())
}

fn ratio_cell(r: Option<f64>) -> String {
    or_dash(r.map(|r| format!("**×{r:.2}**")))
}

fn rss_cell(s: &Stats) -> String {
    or_dash(
        s.sampler_rss_mib
            .zip(s.sink_rss_mib)
            .map(|(a, b)| format!("{a:.0} + {b:.0}")),
    )
}

fn wall_cell(s: &Stats) -> String {
    or_dash(s.wall_s.map(|w| format!("{w:.2}")))
}

fn rate_cell(s: &Stats, ran: bool) -> String {
    match s.rate {
        Some(r) => rate_label(r),
        None if ran => "failed".to_owned(),
        None => "–".to_owned(),
    }
}

fn gbps_cell(s: &Stats) -> String {
    or_dash(s.gbps.map(|g| format!("{g:.3}")))
}

/// What was compared with what, one paragraph.
pub fn comparison_note(meta: &Meta) -> String {
    match &meta.peer {
        None => "**No FairMQ peer given (`--peer`)**: fairmq-rs ran alone, so no ratio to \
                 FairMQ was taken and these figures are not a comparison with FairMQ."
            .to_owned(),
        Some(p) if !p.is_fairmq => format!(
            "**The peer is not FairMQ**: `--peer {}` holds binaries that neither link \
             libfairmq nor embed FairMQ's URL, so its columns are headed `peer` and the ratios \
             are not a comparison with FairMQ.",
            p.dir
        ),
        Some(p) => format!(
            "Side by side with **{}** (`--peer {}`), in the same run on the same machine: each \
             ratio is fairmq-rs / FairMQ of the medians (msg/s: above 1 is faster; RSS and \
             wall time: below 1 is less).",
            p.label, p.dir
        ),
    }
}

/// The tables (one per memset setting): one row per transport, protocol and size; the peer's
/// figure, ours and the ratio for msg/s, max RSS and wall time (ours alone without a peer).
pub fn summary_tables(results: &[PointResult], sizes: &[u64], meta: &Meta) -> String {
    let mut s = String::new();
    for memset in [false, true] {
        if !results.iter().any(|r| r.point.memset == memset) {
            continue;
        }
        let _ = writeln!(
            s,
            "\n**{}** — medians; RSS = peak resident MiB of sampler + sink\n",
            if memset {
                "`--memset true` (the sampler writes every byte)"
            } else {
                "`--memset false` (payloads untouched)"
            }
        );
        match &meta.peer {
            Some(p) => {
                let f = p.short();
                let _ = writeln!(
                    s,
                    "| series | size | {f} msg/s | ours msg/s | ours/{f} | {f} GB/s | ours GB/s \
                     | {f} RSS | ours RSS | ours/{f} | {f} wall s | ours wall s | ours/{f} |"
                );
                let _ = writeln!(
                    s,
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
            }
            None => {
                let _ = writeln!(s, "| series | size | msg/s | GB/s | RSS | wall s |");
                let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
            }
        }
        for (t, p) in SERIES {
            for &size in sizes {
                let Some(r) = find(results, t, p, size, memset) else {
                    continue;
                };
                let (o, f) = (r.ours_stats(), r.peer_stats());
                let lead = format!("| {t} {p} | {} |", size_label(size));
                if meta.peer.is_some() {
                    let _ = writeln!(
                        s,
                        "{lead} {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        rate_cell(&f, !r.peer.is_empty()),
                        rate_cell(&o, !r.ours.is_empty()),
                        ratio_cell(ratio(o.rate, f.rate)),
                        gbps_cell(&f),
                        gbps_cell(&o),
                        rss_cell(&f),
                        rss_cell(&o),
                        ratio_cell(ratio(o.rss_mib(), f.rss_mib())),
                        wall_cell(&f),
                        wall_cell(&o),
                        ratio_cell(ratio(o.wall_s, f.wall_s)),
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "{lead} {} | {} | {} | {} |",
                        rate_cell(&o, !r.ours.is_empty()),
                        gbps_cell(&o),
                        rss_cell(&o),
                        wall_cell(&o)
                    );
                }
            }
        }
    }
    s
}

/// The method of results.json files written before `--peer` (no `iterations`).
const LEGACY_METHOD: &str = "Method (of the tool that measured these results, before `--peer`): \
    a run is `fairmq-bsampler` (push, bind) → `fairmq-sink` (pull, connect), two processes, both \
    with the same `--transport`; after a fixed time the sink and then the sampler are stopped \
    with SIGINT, and the rate is the sink's own (`Received <n> messages in <ms>ms`, from its \
    first message to the stop). RSS and wall time were not recorded. Queues: FairMQ's 1000 \
    messages, at most 256 MiB (`sndBufSize`/`rcvBufSize` = clamp(256 MiB / size, 10, 1000)). \
    GB = 10^9 bytes.";

fn method(meta: &Meta) -> String {
    let ours_args = if meta.ours_args.is_empty() {
        "our default segment".to_owned()
    } else {
        format!("`{}`", meta.ours_args.join(" "))
    };
    let peer = match &meta.peer {
        Some(p) => format!(
            " The {} devices also get `{}` (a segment for 1000 queued 8 MiB messages, and \
             waiting for memory instead of throwing at the first failed allocation); ours run \
             with {ours_args}.{} Per repeat and point the two systems run one after the other, \
             {} first in even repeats, ours first in odd ones. The calibration is one {}-s run of \
             each system, stopped with SIGINT; `--max-iterations` N = `--seconds` × the faster \
             system's rate (at least 100), the same N for both.",
            p.short(),
            p.args.join(" "),
            p.lib_dir.as_ref().map_or(String::new(), |l| format!(
                " Their `LD_LIBRARY_PATH` starts with `{l}`."
            )),
            p.short(),
            CALIBRATION_SECONDS
        ),
        None => format!(
            " Our devices run with {ours_args}. The calibration is one {CALIBRATION_SECONDS}-s \
             run stopped with SIGINT; `--max-iterations` N = `--seconds` × its rate (at least 100)."
        ),
    };
    format!(
        "Method: a run is `fairmq-bsampler` (push, bind; sends without limit) → `fairmq-sink` \
         (pull, connect, `--max-iterations N`), two processes, both with the same `--transport`, \
         `--control static`, their own `--session`, and the same `--channel-config`. The sampler \
         is started first; once it logs RUNNING the sink is started; when the sink has received \
         N messages and exited, the sampler is stopped with SIGINT. msg/s is the sink's own line \
         (FairMQ: `Received N messages in X ms.`, timed from the start of its Run, when the \
         sampler is already sending; ours: `Received N messages in Xms (...)`, timed from the \
         first message; FairMQ's sink receives N+1 messages for N, as its loop checks the limit \
         before counting), msg/s = N / X. Wall time: the sampler's spawn to both devices exited \
         (start-up, segment creation, N messages, shutdown). RSS: each device's peak resident \
         set, `ru_maxrss` from `wait4` where it exceeds the tool's own peak RSS (a child spawned \
         with vfork inherits that as a floor), else the device's own `VmHWM` polled every 10 ms \
         (results.json keeps all three); shared-memory pages a device touched count too. Queues: \
         FairMQ's 1000 messages, at most 256 MiB (`sndBufSize`/`rcvBufSize` = clamp(256 MiB / \
         size, 10, 1000)). After every run /dev/shm must hold nothing of its session \
         (`fmq_<shmId>_*`); whatever is left is removed (FairMQ's own `fairmq-shmmonitor -c -s \
         <session>` if the peer has it) and listed below. A FairMQ sampler that does not exit \
         with 0 when stopped is listed there too (its sink's figure stands); for ours, either \
         fails the run.{peer} GB = 10^9 bytes. The shmem \
         transport moves only a descriptor per message, so without `--memset` its GB/s is not \
         limited by memory bandwidth; `--memset true` makes the sampler write every byte (into \
         buffers the sink has just freed, often still in the CPU cache, so writing can beat the \
         memcpy line, which copies 256 MiB from memory to memory)."
    )
}

/// Seconds of a calibration run.
pub const CALIBRATION_SECONDS: f64 = 0.5;

fn run_list(runs: &[Run], f: impl Fn(&Measurement) -> String) -> String {
    runs.iter()
        .map(|m| match m {
            Ok(m) => f(m),
            Err(_) => "failed".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The full markdown report.
pub fn markdown(results: &[PointResult], sizes: &[u64], meta: &Meta, png_name: &str) -> String {
    let machine = &meta.machine;
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
    let _ = writeln!(s, "{}\n", comparison_note(meta));
    let _ = writeln!(
        s,
        "Command: `{}`. Each figure is the median of {} runs of about {} s.\n",
        meta.command, meta.repeats, meta.seconds
    );
    if results.iter().all(|r| r.iterations.is_none()) {
        let _ = writeln!(s, "{LEGACY_METHOD}");
    } else {
        let _ = writeln!(s, "{}", method(meta));
    }
    s.push_str(&summary_tables(results, sizes, meta));
    let _ = writeln!(s, "\n![throughput by message size]({png_name})\n");
    let _ = writeln!(s, "## All runs\n");
    let _ = writeln!(
        s,
        "| system | transport | protocol | memset | size | N | msg/s | wall s | RSS MiB (sampler + sink) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---:|---:|---|---|---|");
    let peer_label = meta.peer.as_ref().map(|p| p.label.clone());
    for r in results {
        let systems = [
            (peer_label.clone(), &r.peer),
            (Some("fairmq-rs".to_owned()), &r.ours),
        ];
        for (label, runs) in systems {
            let Some(label) = label else { continue };
            if runs.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.point.transport,
                r.point.protocol,
                r.point.memset,
                size_label(r.point.size),
                r.iterations.map_or("–".to_owned(), |n| n.to_string()),
                run_list(runs, |m| format!("{:.0}", m.msg_rate)),
                run_list(runs, |m| m
                    .wall_ms
                    .map_or("–".to_owned(), |w| format!("{:.2}", w / 1e3))),
                run_list(runs, |m| match (m.sampler_rss_kib(), m.sink_rss_kib()) {
                    (Some(a), Some(b)) =>
                        format!("{:.0} + {:.0}", a as f64 / 1024.0, b as f64 / 1024.0),
                    _ => "–".to_owned(),
                }),
            );
        }
    }
    let mut cleanups = Vec::new();
    let mut failures = Vec::new();
    for r in results {
        let systems = [
            (peer_label.as_deref(), &r.peer),
            (Some("fairmq-rs"), &r.ours),
        ];
        for (label, runs) in systems {
            let label = label.unwrap_or("peer");
            let what = format!(
                "{label} {} {} {} memset {}",
                r.point.transport,
                r.point.protocol,
                size_label(r.point.size),
                r.point.memset
            );
            for (i, run) in runs.iter().enumerate() {
                match run {
                    Ok(m) if !m.notes.is_empty() => {
                        cleanups.push(format!("- {what}, run {}: {}", i + 1, m.notes.join("; ")));
                    }
                    Ok(_) => {}
                    Err(e) => failures.push(format!(
                        "- {what}, run {}: {}",
                        i + 1,
                        e.lines().next().unwrap_or("")
                    )),
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\n## Notes on runs (shared memory left behind, samplers' exits)\n"
    );
    if cleanups.is_empty() {
        let _ = writeln!(
            s,
            "None: after every successful run /dev/shm held nothing of its session, and every \
             sampler exited with 0 when stopped."
        );
    } else {
        let _ = writeln!(s, "{}", cleanups.join("\n"));
    }
    if !failures.is_empty() {
        let _ = writeln!(s, "\n## Failed runs\n\n{}", failures.join("\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rusage::PeakRss;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
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

    pub(crate) fn run(rate: f64, rss_kib: u64, wall_ms: f64) -> Run {
        Ok(Measurement {
            messages: 1000,
            millis: 1000.0,
            msg_rate: rate,
            wall_ms: Some(wall_ms),
            sampler_rss: Some(PeakRss::exact(rss_kib)),
            sink_rss: Some(PeakRss::exact(rss_kib)),
            notes: Vec::new(),
        })
    }

    fn meta(peer: Option<PeerMeta>) -> Meta {
        Meta {
            machine: Machine {
                cpus: 2,
                cpu_model: "CPU".into(),
                memcpy_gbps: 10.0,
                date: "d".into(),
            },
            seconds: 2.0,
            repeats: 3,
            command: "cmd".into(),
            ours_args: Vec::new(),
            peer,
        }
    }

    fn fairmq() -> PeerMeta {
        PeerMeta {
            dir: "/fmq/bin".into(),
            label: "FairMQ 1.10.0".into(),
            is_fairmq: true,
            args: vec!["--shm-segment-size".into(), "8589934592".into()],
            lib_dir: None,
        }
    }

    fn point(t: &str, p: &str, memset: bool) -> Point {
        Point {
            transport: t.into(),
            protocol: p.into(),
            size: 4096,
            memset,
        }
    }

    #[test]
    fn tables_without_a_peer_say_so() {
        let results = vec![
            PointResult {
                point: point("shmem", "ipc", false),
                iterations: Some(4000),
                ours: vec![
                    run(1000.0, 10240, 1000.0),
                    run(3000.0, 30720, 3000.0),
                    run(2000.0, 20480, 2000.0),
                ],
                peer: Vec::new(),
            },
            PointResult {
                point: point("zeromq", "tcp", false),
                iterations: None,
                ours: vec![Err("boom".into())],
                peer: Vec::new(),
            },
        ];
        let m = meta(None);
        let t = summary_tables(&results, &[4096], &m);
        assert!(
            t.contains("| shmem ipc | 4 KiB | 2.0k | 0.008 | 20 + 20 | 2.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| zeromq tcp | 4 KiB | failed | – | – | – |"),
            "{t}"
        );
        assert!(!t.contains("FairMQ"), "{t}");
        let md = markdown(&results, &[4096], &m, "x.png");
        assert!(md.contains("No FairMQ peer given"), "{md}");
        assert!(md.contains("`--max-iterations N`"), "{md}");
        assert!(md.contains(
            "| fairmq-rs | shmem | ipc | false | 4 KiB | 4000 | 1000, 3000, 2000 | 1.00, 3.00, 2.00 | 10 + 10, 30 + 30, 20 + 20 |"
        ), "{md}");
        assert!(
            md.contains("## Failed runs\n\n- fairmq-rs zeromq tcp 4 KiB memset false, run 1: boom")
        );
        let mut legacy = results.clone();
        for r in &mut legacy {
            r.iterations = None;
        }
        let md = markdown(&legacy, &[4096], &m, "x.png");
        assert!(md.contains("before `--peer`"), "{md}");
        assert!(!md.contains("`--max-iterations N`"), "{md}");
    }

    #[test]
    fn tables_with_fairmq_show_both_and_the_ratio() {
        let mut left = run(500.0, 2048, 1000.0);
        if let Ok(m) = &mut left {
            m.notes = vec!["left in /dev/shm: fmq_x_mng".into()];
        }
        let results = vec![PointResult {
            point: point("shmem", "tcp", true),
            iterations: Some(4000),
            ours: vec![run(2000.0, 10240, 500.0)],
            peer: vec![left],
        }];
        let m = meta(Some(fairmq()));
        let t = summary_tables(&results, &[4096], &m);
        assert!(
            t.contains("| FairMQ msg/s | ours msg/s | ours/FairMQ |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| shmem tcp | 4 KiB | 500 | 2.0k | **×4.00** | 0.002 | 0.008 | 2 + 2 | 10 + 10 | **×5.00** | 1.00 | 0.50 | **×0.50** |"
            ),
            "{t}"
        );
        let md = markdown(&results, &[4096], &m, "x.png");
        assert!(md.contains("Side by side with **FairMQ 1.10.0**"), "{md}");
        assert!(
            md.contains("| FairMQ 1.10.0 | shmem | tcp | true | 4 KiB | 4000 | 500 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "- FairMQ 1.10.0 shmem tcp 4 KiB memset true, run 1: left in /dev/shm: fmq_x_mng"
            ),
            "{md}"
        );
        let not = PeerMeta {
            is_fairmq: false,
            label: "peer (not FairMQ)".into(),
            ..fairmq()
        };
        let t = summary_tables(&results, &[4096], &meta(Some(not.clone())));
        assert!(t.contains("| peer msg/s | ours msg/s | ours/peer |"), "{t}");
        assert!(!t.contains("FairMQ"), "{t}");
        assert!(comparison_note(&meta(Some(not))).contains("not a comparison with FairMQ"));
    }
}
