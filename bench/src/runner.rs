//! Runs one benchmark point: `fairmq-bsampler` (push, bind) → `fairmq-sink` (pull, connect)
//! for a fixed time, then stops the sink and the sampler with SIGINT and reads the sink's
//! `Received <n> messages in <ms>ms (<msg/s> msg/s, <GB/s> GB/s).` line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use regex::Regex;

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

/// What the sink measured in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Messages received.
    pub messages: u64,
    /// Milliseconds from the first message to the stop.
    pub millis: u64,
    /// Messages per second.
    pub msg_rate: f64,
}

impl Measurement {
    /// GB/s (10^9 bytes) for messages of `size` bytes.
    pub fn gbps(&self, size: u64) -> f64 {
        self.msg_rate * size as f64 / 1e9
    }
}

/// What a device logs when it enters RUNNING.
const RUNNING: &str = "fair::mq::Device running...";

/// How the runs are done.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Directory of `fairmq-bsampler` and `fairmq-sink`.
    pub bin_dir: PathBuf,
    /// How long each run sends.
    pub seconds: f64,
    /// `--shm-segment-size` for shmem.
    pub segment_size: u64,
    /// Seconds to wait for a device to stop after SIGINT.
    pub stop_timeout: f64,
}

/// The high-water mark (messages queued per socket) used for messages of `size` bytes: FairMQ's
/// default of 1000, but at most 256 MiB per queue (at least 10 messages), so that 8 MiB messages
/// with zeromq cannot queue 16 GB.
pub fn high_water_mark(size: u64) -> u64 {
    ((256u64 << 20) / size.max(1)).clamp(10, 1000)
}

/// Parses the sink's final line.
pub fn parse_sink_line(text: &str) -> Option<Measurement> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"Received (\d+) messages in (\d+)ms \((\S+) msg/s, (\S+) GB/s\)")
            .expect("valid regex")
    });
    let c = re.captures_iter(text).last()?;
    let messages: u64 = c[1].parse().ok()?;
    let millis: u64 = c[2].parse().ok()?;
    if messages < 2 || millis == 0 {
        return None; // too short to be a rate
    }
    // Our own rate from the counts (the printed one is rounded).
    let msg_rate = messages as f64 * 1000.0 / millis as f64;
    Some(Measurement {
        messages,
        millis,
        msg_rate,
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

/// The names in `/dev/shm` that belong to `session`.
pub fn shm_leftovers(session: &str) -> Vec<String> {
    let prefix = fairmq_shmem::ShmId::from_session(session).prefix();
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

struct Proc {
    name: &'static str,
    child: Child,
    out: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, exe: &Path, args: &[String], out: PathBuf) -> Result<Proc> {
        let file = std::fs::File::create(&out)?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .env_remove("FAIRMQ_SEVERITY")
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        Ok(Proc { name, child, out })
    }

    fn interrupt(&self) {
        if let Some(pid) = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
    }

    /// Waits for the exit; kills after `timeout`. `Ok(code)`.
    fn wait(&mut self, timeout: f64) -> Result<i32> {
        let deadline = Instant::now() + Duration::from_secs_f64(timeout);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return s
                    .code()
                    .with_context(|| format!("{} died of a signal ({s})", self.name));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not stop within {timeout} s after SIGINT", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Runs `point` once.
pub fn run_point(point: &Point, s: &RunSettings) -> Result<Measurement> {
    let session = unique_session();
    let ipc = PathBuf::from(format!("/tmp/fmq-bench-{session}"));
    let address = match point.protocol.as_str() {
        "ipc" => format!("ipc://{}", ipc.display()),
        "tcp" => format!("tcp://127.0.0.1:{}", free_tcp_port()?),
        other => bail!("unknown protocol '{other}'"),
    };
    let hwm = high_water_mark(point.size);
    let common = |id: &str| -> Vec<String> {
        [
            "--id",
            id,
            "--transport",
            &point.transport,
            "--session",
            &session,
            "--shm-segment-size",
            &s.segment_size.to_string(),
            "--control",
            "static",
            "--color",
            "false",
            "--severity",
            "info",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let mut sink_args = common("sink");
    sink_args.extend([
        "--channel-config".to_owned(),
        format!(
            "name=data,type=pull,method=connect,address={address},rcvBufSize={hwm},rateLogging=0"
        ),
    ]);
    let mut sampler_args = common("sampler");
    sampler_args.extend([
        "--msg-size".to_owned(),
        point.size.to_string(),
        "--memset".to_owned(),
        point.memset.to_string(),
        "--channel-config".to_owned(),
        format!("name=data,type=push,method=bind,address={address},sndBufSize={hwm},rateLogging=0"),
    ]);
    let tmp = std::env::temp_dir();
    let mut sampler = Proc::spawn(
        "fairmq-bsampler",
        &s.bin_dir.join("fairmq-bsampler"),
        &sampler_args,
        tmp.join(format!("fmq-bench-{session}-sampler.log")),
    )?;
    let mut sink = Proc::spawn(
        "fairmq-sink",
        &s.bin_dir.join("fairmq-sink"),
        &sink_args,
        tmp.join(format!("fmq-bench-{session}-sink.log")),
    )?;
    // Both must be RUNNING first (creating a 2 GiB segment takes a while), then a fixed
    // measuring time; the sink times from its first message to the stop.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !(sink.output().contains(RUNNING) && sampler.output().contains(RUNNING)) {
        if Instant::now() > ready_by {
            bail!(
                "the devices did not reach RUNNING within 60 s:\n{}",
                sink.output()
            );
        }
        if let Some(st) = sink.child.try_wait()? {
            bail!("fairmq-sink exited early ({st}):\n{}", sink.output());
        }
        if let Some(st) = sampler.child.try_wait()? {
            bail!("fairmq-bsampler exited early ({st}):\n{}", sampler.output());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(s.seconds);
    while Instant::now() < deadline {
        if let Some(st) = sink.child.try_wait()? {
            bail!("fairmq-sink exited early ({st}):\n{}", sink.output());
        }
        if let Some(st) = sampler.child.try_wait()? {
            bail!("fairmq-bsampler exited early ({st}):\n{}", sampler.output());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sink.interrupt();
    let sink_code = sink.wait(s.stop_timeout);
    sampler.interrupt();
    let sampler_code = sampler.wait(s.stop_timeout);
    let _ = std::fs::remove_file(&ipc);
    let sink_out = sink.output();
    if sink_code? != 0 {
        bail!("fairmq-sink failed:\n{sink_out}");
    }
    if sampler_code? != 0 {
        bail!("fairmq-bsampler failed:\n{}", sampler.output());
    }
    let left = shm_leftovers(&session);
    if !left.is_empty() {
        bail!("the run left {left:?} in /dev/shm");
    }
    parse_sink_line(&sink_out).with_context(|| {
        format!("no 'Received ...' line with at least 2 messages from fairmq-sink:\n{sink_out}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_line() {
        let m = parse_sink_line(
            "[12:00:00][INFO] Received 2000 messages in 1000ms (2000 msg/s, 2.000 GB/s).\n",
        )
        .expect("parsed");
        assert_eq!(m.messages, 2000);
        assert_eq!(m.millis, 1000);
        assert_eq!(m.msg_rate, 2000.0);
        assert_eq!(m.gbps(1_000_000), 2.0);
        assert!(parse_sink_line("nothing").is_none());
        assert!(parse_sink_line("Received 1 messages in 0ms (1e9 msg/s, 1.000 GB/s).").is_none());
    }

    #[test]
    fn hwm_bounds_the_queue() {
        assert_eq!(high_water_mark(64), 1000);
        assert_eq!(high_water_mark(65536), 1000);
        assert_eq!(high_water_mark(1 << 20), 256);
        assert_eq!(high_water_mark(8 << 20), 32);
        assert_eq!(high_water_mark(1 << 30), 10);
    }
}
