//! Runs one benchmark run: `fairmq-bsampler` (push, bind) → `fairmq-sink` (pull, connect), of
//! either system (ours, or FairMQ's own binaries from `--peer`), exactly the same way for both:
//!
//! 1. the sampler is started and the tool waits until it logs `fair::mq::Device running...`
//!    (so that both systems' sinks find a running sender: FairMQ's sink starts its clock when it
//!    enters RUNNING, ours at its first message, and with the sender already running the two
//!    moments coincide);
//! 2. the sink is started, with `--max-iterations N` ([`Length::Messages`]), and runs until it
//!    has received N messages and exits by itself; for the calibration ([`Length::Timed`]) it is
//!    stopped with SIGINT after a fixed time instead;
//! 3. the sampler (which sends without limit, so that no message the sink still needs is lost
//!    when a sender exits: libzmq #4660) is stopped with SIGINT.
//!
//! The rate is the sink's own final line, which both print: FairMQ's
//! `Received <n> messages in <ms>ms.` (`<ms>` fractional) and ours
//! `Received <n> messages in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).`; rate = n / ms. Both
//! devices are reaped with `wait4`, which gives each one's peak RSS (`ru_maxrss`; where that does
//! not exceed the tool's own peak, which a child inherits, the device's own `VmHWM`, polled every
//! 10 ms: see [`rusage`]); the wall time runs from the sampler's spawn to both having exited. Every run has its own session; afterwards nothing of it
//! may remain in /dev/shm ([`clean_session`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

use crate::rusage::{self, Ending, Exited, PeakRss};

/// One configuration of the benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// `shmem` or `zeromq`.
    pub transport: String,
    /// `ipc` or `tcp`.
    pub protocol: String,
    /// Message size in bytes.
    pub size: u64,
    /// `--memset true`.
    pub memset: bool,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Messages the sink says it received.
    pub messages: u64,
    /// Milliseconds the sink says it took.
    pub millis: f64,
    /// messages / seconds.
    pub msg_rate: f64,
    /// Spawn of the sampler to both devices exited, in ms (`None` in old results.json).
    pub wall_ms: Option<f64>,
    /// The sampler's peak RSS.
    pub sampler_rss: Option<PeakRss>,
    /// The sink's peak RSS.
    pub sink_rss: Option<PeakRss>,
    /// What the run left in /dev/shm and how it was removed, and how the sampler ended if not
    /// with exit code 0 when stopped (empty: nothing to note).
    pub notes: Vec<String>,
}

impl Measurement {
    /// The sampler's peak RSS in KiB.
    pub fn sampler_rss_kib(&self) -> Option<u64> {
        self.sampler_rss.and_then(|r| r.kib())
    }

    /// The sink's peak RSS in KiB.
    pub fn sink_rss_kib(&self) -> Option<u64> {
        self.sink_rss.and_then(|r| r.kib())
    }

    /// GB/s (10^9 bytes) for messages of `size` bytes.
    pub fn gbps(&self, size: u64) -> f64 {
        self.msg_rate * size as f64 / 1e9
    }
}

/// What a device logs when it enters RUNNING (both systems).
const RUNNING: &str = "fair::mq::Device running...";

/// How long a run lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    /// The sink stops by itself after this many messages (`--max-iterations`); the run fails
    /// if that takes longer than `timeout`.
    Messages {
        /// `--max-iterations` of the sink.
        count: u64,
        /// Give up (SIGINT, then SIGKILL) after this long.
        timeout: Duration,
    },
    /// The sink is stopped with SIGINT this long after it is RUNNING (the calibration).
    Timed(Duration),
}

/// One system's devices and how to start them.
#[derive(Debug, Clone)]
pub struct Devices {
    /// Directory of `fairmq-bsampler` and `fairmq-sink`.
    pub bin_dir: PathBuf,
    /// Options both devices get after the common ones.
    pub extra_args: Vec<String>,
    /// Environment both devices get (`LD_LIBRARY_PATH` for FairMQ's shared libraries).
    pub env: Vec<(String, String)>,
    /// This system's `fairmq-shmmonitor`, to remove what a run leaves in /dev/shm.
    pub shmmonitor: Option<PathBuf>,
    /// Whether anything left in /dev/shm, or a sampler that does not exit with 0 when stopped
    /// with SIGINT, fails the run (ours: that is our bug), or is only removed and noted
    /// (FairMQ's: v1.10's sampler exits with 1 when interrupted while it waits for shared
    /// memory, by an uncaught `MessageBadAlloc`). The sink's measurement is the same either way.
    pub strict: bool,
}

/// The high-water mark (messages queued per socket) used for messages of `size` bytes: FairMQ's
/// default of 1000, but at most 256 MiB per queue (at least 10 messages), so that 8 MiB messages
/// with zeromq cannot queue 16 GB.
pub fn high_water_mark(size: u64) -> u64 {
    ((256u64 << 20) / size.max(1)).clamp(10, 1000)
}

/// Parses the sink's final line, FairMQ's (`Received 100000 messages in 57.3428ms.`) or ours
/// (`Received 2000 messages in 1000ms (2000 msg/s, 2.000 GB/s).`): the last such line counts.
pub fn parse_sink_line(text: &str) -> Option<Measurement> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        // FairMQ prints the milliseconds with ostream's default format (6 significant digits,
        // scientific from 1e6 on).
        Regex::new(r"Received (\d+) messages in (\d+(?:\.\d*)?(?:[eE][+-]?\d+)?) ?ms")
            .expect("valid regex")
    });
    let c = re.captures_iter(text).last()?;
    let messages: u64 = c[1].parse().ok()?;
    let millis: f64 = c[2].parse().ok()?;
    if messages < 2 || !(millis > 0.0 && millis.is_finite()) {
        return None; // too short to be a rate
    }
    Some(Measurement {
        messages,
        millis,
        // From the counts (ours prints a rounded rate, FairMQ none).
        msg_rate: messages as f64 * 1000.0 / millis,
        wall_ms: None,
        sampler_rss: None,
        sink_rss: None,
        notes: Vec::new(),
    })
}

fn unique_session() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench{}n{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn free_tcp_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free tcp port")?;
    Ok(l.local_addr()?.port())
}

/// The names in `/dev/shm` that belong to `session` (`fmq_<shmId>_*`; the shmId is the same for
/// both systems).
pub fn shm_leftovers(session: &str) -> Vec<String> {
    let prefix = fairmq_shmem::ShmId::from_session(session).prefix();
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Makes sure /dev/shm holds nothing of `session`: what is left is removed with the system's
/// own `fairmq-shmmonitor -c -s <session>` if it has one, and whatever remains after that
/// directly. Returns what was found and how it went (empty: nothing was left).
pub fn clean_session(session: &str, devices: &Devices) -> Vec<String> {
    let left = shm_leftovers(session);
    if left.is_empty() {
        return Vec::new();
    }
    let mut notes = vec![format!("left in /dev/shm: {}", left.join(" "))];
    if let Some(monitor) = &devices.shmmonitor {
        let out = Command::new(monitor)
            .args(["-c", "-s", session])
            .envs(devices.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output();
        let after = shm_leftovers(session);
        match out {
            Ok(o) if o.status.success() && after.is_empty() => {
                notes.push(format!("removed with `fairmq-shmmonitor -c -s {session}`"));
                return notes;
            }
            Ok(o) => notes.push(format!(
                "`fairmq-shmmonitor -c -s {session}` ({})",
                o.status
            )),
            Err(e) => notes.push(format!("cannot run {}: {e}", monitor.display())),
        }
    }
    let mut failed = Vec::new();
    for name in shm_leftovers(session) {
        if let Err(e) = std::fs::remove_file(Path::new("/dev/shm").join(&name)) {
            failed.push(format!("{name}: {e}"));
        }
    }
    if failed.is_empty() {
        notes.push("removed from /dev/shm by fairmq-bench-report".to_owned());
    } else {
        notes.push(format!("could not remove {}", failed.join(", ")));
    }
    notes
}

/// A started device, reaped with `wait4`.
struct Proc {
    name: &'static str,
    child: Child,
    out: PathBuf,
    exited: Option<(Exited, Instant)>,
    /// The tool's own peak RSS when it spawned this device (see [`rusage`]).
    floor_kib: Option<u64>,
    /// The device's own `VmHWM`, last polled, and when.
    polled: Option<u64>,
    polled_at: Instant,
}

impl Proc {
    fn spawn(name: &'static str, devices: &Devices, args: &[String], out: PathBuf) -> Result<Proc> {
        let exe = devices.bin_dir.join(name);
        let file = std::fs::File::create(&out)?;
        let floor_kib = rusage::own_peak_rss_kib();
        let child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .env_remove("FAIRMQ_SEVERITY")
            .envs(devices.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(Proc {
            name,
            child,
            out,
            exited: None,
            floor_kib,
            polled: None,
            polled_at: Instant::now(),
        })
    }

    /// Reaps the process if it has exited; samples its `VmHWM` every 10 ms before.
    fn poll(&mut self) -> Result<Option<Exited>> {
        if self.exited.is_none() && self.polled_at.elapsed() >= Duration::from_millis(10) {
            if let Some(h) = rusage::vm_hwm_kib(self.child.id()) {
                self.polled = Some(h.max(self.polled.unwrap_or(0)));
            }
            self.polled_at = Instant::now();
        }
        if self.exited.is_none() {
            if let Some(e) = rusage::try_reap(self.child.id())
                .with_context(|| format!("cannot wait for {}", self.name))?
            {
                self.exited = Some((e, Instant::now()));
            }
        }
        Ok(self.exited.map(|(e, _)| e))
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if self.exited.is_some() {
            return; // reaped: the pid may belong to someone else now
        }
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Sends SIGINT and waits for the exit; SIGKILL after `timeout` (an error).
    fn stop(&mut self, timeout: Duration) -> Result<Exited> {
        self.signal(rustix::process::Signal::INT);
        self.wait(timeout, "after SIGINT")
    }

    /// Waits for the exit; SIGKILL after `timeout` (an error).
    fn wait(&mut self, timeout: Duration, what: &str) -> Result<Exited> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.poll()? {
                return Ok(e);
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "{} did not exit within {:.0} s {what}",
                    self.name,
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.poll(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The raw figures of the device's peak RSS.
    fn peak_rss(&self, exit: &Exited) -> PeakRss {
        PeakRss {
            ru_maxrss_kib: exit.max_rss_kib,
            floor_kib: self.floor_kib,
            polled_kib: self.polled,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// An error unless the process is still running.
    fn check_running(&mut self) -> Result<()> {
        if let Some(e) = self.poll()? {
            bail!(
                "{} exited early ({}):\n{}",
                self.name,
                e.ending,
                tail(&self.output())
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.kill();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

/// The last lines of a device's output, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The last `[ERROR]` or `[FATAL]` line of a device's output, without its prefix.
pub fn last_error(text: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        ["[ERROR] ", "[FATAL] "]
            .iter()
            .find_map(|tag| l.find(tag).map(|i| l[i + tag.len()..].trim().to_owned()))
    })
}

/// The options of both devices of a run, in order: (sampler, sink).
pub fn device_args(
    point: &Point,
    devices: &Devices,
    session: &str,
    address: &str,
    length: Length,
) -> (Vec<String>, Vec<String>) {
    let hwm = high_water_mark(point.size);
    let common = |id: &str| -> Vec<String> {
        let mut v: Vec<String> = [
            "--id",
            id,
            "--transport",
            &point.transport,
            "--session",
            session,
            "--control",
            "static",
            "--color",
            "false",
            "--severity",
            "info",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.extend(devices.extra_args.iter().cloned());
        v
    };
    let mut sampler = common("sampler");
    sampler.extend([
        "--msg-size".to_owned(),
        point.size.to_string(),
        "--memset".to_owned(),
        point.memset.to_string(),
        "--channel-config".to_owned(),
        format!("name=data,type=push,method=bind,address={address},sndBufSize={hwm},rateLogging=0"),
    ]);
    let mut sink = common("sink");
    if let Length::Messages { count, .. } = length {
        sink.extend(["--max-iterations".to_owned(), count.to_string()]);
    }
    sink.extend([
        "--channel-config".to_owned(),
        format!(
            "name=data,type=pull,method=connect,address={address},rcvBufSize={hwm},rateLogging=0"
        ),
    ]);
    (sampler, sink)
}

/// Runs `point` once with `devices`; a session of its own, cleaned afterwards.
pub fn run_once(
    point: &Point,
    devices: &Devices,
    length: Length,
    stop_timeout: Duration,
) -> Result<Measurement> {
    let session = unique_session();
    let ipc = PathBuf::from(format!("/tmp/fmq-bench-{session}"));
    let address = match point.protocol.as_str() {
        "ipc" => format!("ipc://{}", ipc.display()),
        "tcp" => format!("tcp://127.0.0.1:{}", free_tcp_port()?),
        other => bail!("unknown protocol '{other}'"),
    };
    let result = run_devices(point, devices, &session, &address, length, stop_timeout);
    let _ = std::fs::remove_file(&ipc);
    // Also after a failure (a device killed by the timeout leaves its session behind).
    let cleanup = clean_session(&session, devices);
    let mut m = match result {
        Ok(m) => m,
        Err(e) if cleanup.is_empty() => return Err(e),
        Err(e) => return Err(e.context(format!("afterwards: {}", cleanup.join("; ")))),
    };
    if !cleanup.is_empty() && devices.strict {
        bail!("the run {}", cleanup.join("; "));
    }
    m.notes.extend(cleanup);
    Ok(m)
}

fn run_devices(
    point: &Point,
    devices: &Devices,
    session: &str,
    address: &str,
    length: Length,
    stop_timeout: Duration,
) -> Result<Measurement> {
    let (sampler_args, sink_args) = device_args(point, devices, session, address, length);
    let tmp = std::env::temp_dir();
    let started = Instant::now();
    let mut sampler = Proc::spawn(
        "fairmq-bsampler",
        devices,
        &sampler_args,
        tmp.join(format!("fmq-bench-{session}-sampler.log")),
    )?;
    // The sampler first, up to RUNNING (creating a segment takes a while).
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !sampler.output().contains(RUNNING) {
        sampler.check_running()?;
        if Instant::now() > ready_by {
            bail!(
                "fairmq-bsampler did not reach RUNNING within 60 s:\n{}",
                tail(&sampler.output())
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut sink = Proc::spawn(
        "fairmq-sink",
        devices,
        &sink_args,
        tmp.join(format!("fmq-bench-{session}-sink.log")),
    )?;
    let sink_exit = match length {
        Length::Messages { count, timeout } => {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(e) = sink.poll()? {
                    break e;
                }
                sampler.check_running()?;
                if Instant::now() > deadline {
                    let _ = sink.stop(stop_timeout);
                    bail!(
                        "fairmq-sink did not receive {count} messages within {:.0} s:\n{}",
                        timeout.as_secs_f64(),
                        tail(&sink.output())
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Length::Timed(time) => {
            let ready_by = Instant::now() + Duration::from_secs(60);
            while !sink.output().contains(RUNNING) {
                sink.check_running()?;
                sampler.check_running()?;
                if Instant::now() > ready_by {
                    bail!(
                        "fairmq-sink did not reach RUNNING within 60 s:\n{}",
                        tail(&sink.output())
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let deadline = Instant::now() + time;
            while Instant::now() < deadline {
                sink.check_running()?;
                sampler.check_running()?;
                std::thread::sleep(Duration::from_millis(5));
            }
            sink.stop(stop_timeout)?
        }
    };
    let sampler_exit = sampler.stop(stop_timeout)?;
    let wall = started.elapsed();
    let sink_out = sink.output();
    if sink_exit.ending != Ending::Code(0) {
        bail!(
            "fairmq-sink failed ({}):\n{}",
            sink_exit.ending,
            tail(&sink_out)
        );
    }
    let mut notes = Vec::new();
    if sampler_exit.ending != Ending::Code(0) {
        let out = sampler.output();
        if devices.strict {
            bail!(
                "fairmq-bsampler failed ({}) when stopped with SIGINT:\n{}",
                sampler_exit.ending,
                tail(&out)
            );
        }
        notes.push(format!(
            "fairmq-bsampler ended with {} when stopped with SIGINT after the sink{}",
            sampler_exit.ending,
            last_error(&out).map_or(String::new(), |e| format!(": {e}"))
        ));
    }
    let mut m = parse_sink_line(&sink_out).with_context(|| {
        format!(
            "no 'Received <n> messages in <ms>ms' line with at least 2 messages from fairmq-sink:\n{}",
            tail(&sink_out)
        )
    })?;
    m.wall_ms = Some(wall.as_secs_f64() * 1e3);
    m.notes = notes;
    m.sampler_rss = Some(sampler.peak_rss(&sampler_exit));
    m.sink_rss = Some(sink.peak_rss(&sink_exit));
    Ok(m)
}

/// `--max-iterations` for a point from the calibrated rates (msg/s) of the systems: enough for
/// the faster one to take `seconds`, at least 100.
pub fn iterations_for(rates: &[f64], seconds: f64) -> Option<u64> {
    let fastest = rates
        .iter()
        .copied()
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))?;
    Some(((fastest * seconds).ceil() as u64).max(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_sink_line() {
        let m = parse_sink_line(
            "[12:00:00][INFO] Received 2000 messages in 1000ms (2000 msg/s, 2.000 GB/s).\n",
        )
        .expect("parsed");
        assert_eq!(m.messages, 2000);
        assert_eq!(m.millis, 1000.0);
        assert_eq!(m.msg_rate, 2000.0);
        assert_eq!(m.gbps(1_000_000), 2.0);
        assert!(parse_sink_line("nothing").is_none());
        assert!(parse_sink_line("Received 1 messages in 0ms (1e9 msg/s, 1.000 GB/s).").is_none());
        assert!(parse_sink_line("Received 10 messages in 0ms (0 msg/s, 0.000 GB/s).").is_none());
    }

    #[test]
    fn fairmq_sink_line() {
        // FairMQ v1.10's sink, stopped by --max-iterations (as printed by a real run).
        let out = "[15:03:14][INFO] Starting sink and expecting to receive 100000 messages.\n\
                   [15:03:14][INFO] Configured maximum number of iterations reached.\n\
                   [15:03:14][INFO] Received 100000 messages in 57.3428ms.\n\
                   [15:03:14][INFO] Leaving RUNNING state.\n";
        let m = parse_sink_line(out).expect("parsed");
        assert_eq!(m.messages, 100_000);
        assert_eq!(m.millis, 57.3428);
        assert!((m.msg_rate - 100_000.0 / 0.0573428).abs() < 1e-3);
        // Stopped by SIGINT: the shutdown line also starts with "Received" and is not a rate.
        let out = "[15:03:26][INFO] Received device shutdown request (signal 2).\n\
                   [15:03:26][INFO] Received 244 messages in 1006.76ms.\n";
        let m = parse_sink_line(out).expect("parsed");
        assert_eq!((m.messages, m.millis), (244, 1006.76));
        // ostream switches to scientific notation at 10^6 ms.
        let m = parse_sink_line("Received 5000000 messages in 1.23457e+06ms.").expect("parsed");
        assert_eq!(m.millis, 1_234_570.0);
        // Only the last line counts.
        let m = parse_sink_line("Received 10 messages in 1ms.\nReceived 20 messages in 4ms.\n")
            .expect("parsed");
        assert_eq!(m.msg_rate, 5000.0);
        assert!(parse_sink_line("Received device shutdown request (signal 2).").is_none());
    }

    #[test]
    fn hwm_bounds_the_queue() {
        assert_eq!(high_water_mark(64), 1000);
        assert_eq!(high_water_mark(65536), 1000);
        assert_eq!(high_water_mark(1 << 20), 256);
        assert_eq!(high_water_mark(8 << 20), 32);
        assert_eq!(high_water_mark(1 << 30), 10);
    }

    #[test]
    fn iterations_follow_the_faster_system() {
        assert_eq!(iterations_for(&[1000.0, 3000.5], 2.0), Some(6001));
        assert_eq!(iterations_for(&[f64::NAN, 500.0], 2.0), Some(1000));
        assert_eq!(iterations_for(&[10.0], 1.0), Some(100));
        assert_eq!(iterations_for(&[], 1.0), None);
        assert_eq!(iterations_for(&[0.0], 1.0), None);
    }

    fn devices(extra: &[&str]) -> Devices {
        Devices {
            bin_dir: PathBuf::from("/x"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            shmmonitor: None,
            strict: true,
        }
    }

    #[test]
    fn last_error_line() {
        let out = "[15:18:13][INFO] Successfully removed 'fmq_a18192e3_mng'.\n\
                   [15:18:13][ERROR] Uncaught exception reached the top of main: shmem: could not \
                   create a message of size 8388608, alignment: 16, free memory: 8355712\n";
        assert_eq!(
            last_error(out).as_deref(),
            Some(
                "Uncaught exception reached the top of main: shmem: could not create a message \
                 of size 8388608, alignment: 16, free memory: 8355712"
            )
        );
        assert_eq!(last_error("[12:00:00][INFO] fine\n"), None);
    }

    #[test]
    fn cleans_what_a_run_left() {
        let session = format!("benchclean{}", std::process::id());
        let id = fairmq_shmem::ShmId::from_session(&session);
        let names = [id.management_name(), id.segment_name(0)];
        let create = || {
            for n in &names {
                std::fs::write(Path::new("/dev/shm").join(n), b"x").expect("create in /dev/shm");
            }
        };
        assert!(
            clean_session(&session, &devices(&[])).is_empty(),
            "nothing left"
        );
        create();
        let mut sorted = names.to_vec();
        sorted.sort();
        assert_eq!(shm_leftovers(&session), sorted);
        let notes = clean_session(&session, &devices(&[]));
        assert_eq!(
            notes,
            vec![
                format!("left in /dev/shm: {}", sorted.join(" ")),
                "removed from /dev/shm by fairmq-bench-report".to_owned()
            ]
        );
        assert!(shm_leftovers(&session).is_empty());
        // A monitor that fails: said so, and the names are removed directly.
        create();
        let mut d = devices(&[]);
        d.shmmonitor = Some(PathBuf::from("/bin/false"));
        let notes = clean_session(&session, &d);
        assert!(notes[1].contains("fairmq-shmmonitor -c -s"), "{notes:?}");
        assert_eq!(notes[2], "removed from /dev/shm by fairmq-bench-report");
        assert!(shm_leftovers(&session).is_empty());
    }

    #[test]
    fn both_systems_get_the_same_channels() {
        let p = Point {
            transport: "shmem".into(),
            protocol: "tcp".into(),
            size: 1 << 20,
            memset: true,
        };
        let length = Length::Messages {
            count: 5000,
            timeout: Duration::from_secs(1),
        };
        let (s1, k1) = device_args(&p, &devices(&[]), "S", "tcp://127.0.0.1:1", length);
        let (s2, k2) = device_args(
            &p,
            &devices(&["--shm-segment-size", "8589934592"]),
            "S",
            "tcp://127.0.0.1:1",
            length,
        );
        let channel = |v: &[String]| v.iter().find(|a| a.starts_with("name=")).cloned();
        assert_eq!(channel(&s1), channel(&s2));
        assert_eq!(channel(&k1), channel(&k2));
        assert_eq!(
            channel(&k1).as_deref(),
            Some("name=data,type=pull,method=connect,address=tcp://127.0.0.1:1,rcvBufSize=256,rateLogging=0")
        );
        let joined = k1.join(" ");
        assert!(joined.contains("--max-iterations 5000"), "{joined}");
        // The sampler sends without limit (it is stopped after the sink).
        assert!(!s1.join(" ").contains("--max-iterations"));
        assert!(s2.join(" ").contains("--shm-segment-size 8589934592"));
        assert!(s1.join(" ").contains("--msg-size 1048576 --memset true"));
        let (_, timed) = device_args(&p, &devices(&[]), "S", "x", Length::Timed(Duration::ZERO));
        assert!(!timed.join(" ").contains("--max-iterations"));
    }
}
