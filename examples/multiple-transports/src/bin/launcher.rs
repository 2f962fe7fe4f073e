//! `fairmq-ex-multiple-transports-launcher`: runs the multiple-transports topology (sink,
//! sampler1, sampler2; see the `fairmq_example_multiple_transports` crate), shows the
//! per-channel rates every second, stops the devices and reports what happened.
//!
//! The device binaries are taken from the launcher's own directory (or `--bin-dir`); build them
//! together with `cargo build --release -p fairmq-example-multiple-transports` (add `-p
//! fairmq-shmmonitor` for `--shm-monitor true`).
//!
//! Every run uses its own session (shared memory `/dev/shm/fmq_<shmId>_*`) and ipc socket
//! files `/tmp/fmq_<session>_<channel>`, and keeps the devices' logs in `--log-dir`.
//!
//! Stopping: the sink gets SIGINT first and the launcher waits for it to leave; then sampler1
//! and sampler2 get SIGINT. Stopping the sink first means every acknowledgement it published
//! reaches sampler1 while sampler1 still listens, so sampler1's `Acknowledged <n> messages`
//! equals what the sink received on data1 (data1 messages still queued towards the stopped
//! sink are discarded with the session). With `--messages N` the devices stop by themselves
//! after N messages on each channel (`--max-iterations N`).
//!
//! Exit codes: 0 when every device that was not killed on purpose exited with 0, every
//! process named by `--kill` died of that SIGKILL, nothing of the session is left in
//! `/dev/shm` (within `--cleanup-timeout`), and the report is consistent: without `--kill`,
//! both data1 and data2 were received (neither sampler starved), sampler1's acknowledged count
//! equals what the sink received on data1 and the acknowledgements it sent, and with
//! `--messages N` exactly N messages went each way; with `--kill`, the survivors' reports are
//! complete. 1 when any of that failed (the summary says which check); 2 when the launcher
//! itself could not run (bad options, missing binaries).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Parser, ValueEnum};
use fairmq_example_multiple_transports::report::DeviceReport;
use fairmq_example_multiple_transports::topology::{
    self, device_args, ipc_path, rewrite_json_addresses, shm_leftovers, ConfigKind, LaunchSettings,
    CHANNELS, DEVICES, SHIPPED_JSON,
};
use fairmq_example_multiple_transports::{DATA1_MESSAGE_SIZE, DATA2_MESSAGE_SIZE};
use fairmq_shmem::ShmId;

const BIN_PREFIX: &str = "fairmq-ex-multiple-transports-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConfigArg {
    /// `--channel-config` arguments.
    Channel,
    /// `--mq-config` with the shipped multiple-transports.json (addresses per session).
    Json,
}

/// `<device>:<seconds>`.
#[derive(Debug, Clone, PartialEq)]
struct KillSpec {
    device: String,
    at: f64,
}

fn parse_kill(s: &str) -> Result<KillSpec, String> {
    let (device, at) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': expected <sampler1|sampler2|sink>:<seconds>"))?;
    if !DEVICES.contains(&device) {
        return Err(format!(
            "'{device}': unknown device (expected sampler1, sampler2 or sink)"
        ));
    }
    let at: f64 = at
        .parse()
        .map_err(|_| format!("'{at}': the time must be a number of seconds"))?;
    if !(at >= 0.0 && at.is_finite()) {
        return Err(format!(
            "'{at}': the time must be a non-negative number of seconds"
        ));
    }
    Ok(KillSpec {
        device: device.to_owned(),
        at,
    })
}

/// Runs FairMQ's multiple-transports example: sampler1 (shmem, 1 MB messages on data1) and
/// sampler2 (zeromq, 1000-byte messages on data2) feed a sink that acknowledges every data1
/// message over zeromq PUB/SUB.
#[derive(Debug, Parser)]
#[command(name = "fairmq-ex-multiple-transports-launcher", version)]
struct Cli {
    /// How the devices get their channels.
    #[arg(long, value_enum, default_value = "channel")]
    config: ConfigArg,
    /// Stop the devices after this many seconds (default 10 s, or no limit with --messages).
    #[arg(long)]
    duration: Option<f64>,
    /// Send this many messages on data1 and on data2 (--max-iterations); the devices then stop
    /// by themselves.
    #[arg(long)]
    messages: Option<u64>,
    /// Give the devices --shm-monitor true (a fairmq-shmmonitor daemon watches the session and
    /// removes it when all its devices died).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    shm_monitor: bool,
    /// SIGKILL a device mid-run: `<sampler1|sampler2|sink>:<seconds after the start>`; may be
    /// given more than once (e.g. sink and sampler1, so that no device is left to remove the
    /// shared memory and the monitor has to).
    #[arg(long = "kill", value_parser = parse_kill)]
    kill: Vec<KillSpec>,
    /// Size of the shared-memory segment in bytes (--shm-segment-size).
    #[arg(long, default_value_t = 2_147_483_648)]
    shm_segment_size: u64,
    /// Session name (default: a new unique one).
    #[arg(long)]
    session: Option<String>,
    /// Directory of the device binaries (default: the launcher's own).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory for the devices' logs and the generated JSON (default /tmp/fmq-ex-mt-<session>).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Seconds to wait for each device to stop after SIGINT before killing it.
    #[arg(long, default_value_t = 30.0)]
    stop_timeout: f64,
    /// Seconds to wait for /dev/shm to be clean of the session after the devices exited (with
    /// --shm-monitor; without it at most 2 s).
    #[arg(long, default_value_t = 20.0)]
    cleanup_timeout: f64,
    /// With --messages and no --duration: give up (and stop the devices) after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Do not print the per-second rates.
    #[arg(long)]
    quiet: bool,
    /// Also print every line the devices log.
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// One running device.
struct Device {
    name: &'static str,
    child: Child,
    report: Arc<Mutex<DeviceReport>>,
    readers: Vec<(JoinHandle<()>, mpsc::Receiver<()>)>,
    status: Option<ExitStatus>,
    exited_at: Option<f64>,
    killed_at: Option<f64>,
    interrupted_at: Option<f64>,
    log: PathBuf,
}

impl Device {
    fn poll(&mut self, now: f64) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                self.exited_at = Some(now);
            }
        }
        self.status
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    fn report(&self) -> DeviceReport {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Watches the session's objects in `/dev/shm` (the monitor's marker and spawn lock aside):
/// which appeared, and when they were all gone.
struct ShmWatch {
    session: String,
    seen: Vec<String>,
    gone_at: Option<f64>,
}

impl ShmWatch {
    fn tick(&mut self, now: f64) {
        let objects: Vec<String> = shm_leftovers(&self.session)
            .into_iter()
            // Not the monitor's marker and lock, nor objects still being created.
            .filter(|n| !n.ends_with("_ms") && !n.ends_with("_ms.lock") && !n.contains("_tmp."))
            .collect();
        if objects.is_empty() {
            if !self.seen.is_empty() && self.gone_at.is_none() {
                self.gone_at = Some(now);
            }
        } else {
            self.gone_at = None;
            for o in objects {
                if !self.seen.contains(&o) {
                    self.seen.push(o);
                }
            }
        }
    }
}

fn spawn_reader(
    name: &'static str,
    stream: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<File>>,
    report: Arc<Mutex<DeviceReport>>,
    verbose: bool,
) -> Result<(JoinHandle<()>, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("{name}-output"))
        .spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                {
                    let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = writeln!(f, "{line}");
                }
                report.lock().unwrap_or_else(|p| p.into_inner()).feed(&line);
                if verbose {
                    eprintln!("{name:>8} | {line}");
                }
            }
            let _ = tx.send(());
        })?;
    Ok((handle, rx))
}

fn find_binaries(cli: &Cli) -> Result<PathBuf> {
    let dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("cannot find the launcher's own path")?
            .parent()
            .map(Path::to_path_buf)
            .context("the launcher's path has no directory")?,
    };
    for d in DEVICES {
        let p = dir.join(format!("{BIN_PREFIX}{d}"));
        if !p.is_file() {
            bail!(
                "{} not found; build the example's binaries with `cargo build --release -p fairmq-example-multiple-transports` (or give --bin-dir)",
                p.display()
            );
        }
    }
    if cli.shm_monitor && !dir.join("fairmq-shmmonitor").is_file() {
        let in_path = std::env::var_os("FAIRMQ_PATH")
            .into_iter()
            .chain(std::env::var_os("PATH"))
            .flat_map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
            .any(|d| d.join("fairmq-shmmonitor").is_file());
        if !in_path {
            bail!(
                "--shm-monitor true needs fairmq-shmmonitor next to the devices ({}), in $FAIRMQ_PATH or in $PATH; build it with `cargo build --release -p fairmq-shmmonitor`",
                dir.display()
            );
        }
    }
    Ok(dir)
}

fn unique_session() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("mt{}x{nanos:x}", std::process::id())
}

fn fmt_rate(sample: Option<(f64, f64)>, with_mb: bool) -> String {
    match sample {
        None => format!("{:>24}", "-"),
        Some((msgs, mb)) if with_mb => format!("{msgs:>9.0} msg/s {mb:>8.1} MB/s"),
        Some((msgs, _)) => format!("{msgs:>9.0} msg/s{:>15}", ""),
    }
}

struct Outcome {
    ok: bool,
    lines: Vec<String>,
}

impl Outcome {
    fn check(&mut self, ok: bool, text: String) {
        self.ok &= ok;
        self.lines
            .push(format!("  [{}] {text}", if ok { " OK " } else { "FAIL" }));
    }
    fn note(&mut self, text: String) {
        self.lines.push(format!("         {text}"));
    }
}

fn run(cli: &Cli) -> Result<bool> {
    let bin_dir = find_binaries(cli)?;
    let session = cli.session.clone().unwrap_or_else(unique_session);
    let shm_id = ShmId::from_session(&session);
    let log_dir = cli
        .log_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/fmq-ex-mt-{session}")));
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create the log directory {}", log_dir.display()))?;
    if !shm_leftovers(&session).is_empty() {
        bail!("/dev/shm already holds objects of session '{session}' (shmId {shm_id}); choose another --session");
    }
    let duration = match (cli.duration, cli.messages) {
        (Some(d), _) if !(d > 0.0 && d.is_finite()) => {
            bail!("--duration must be a positive number of seconds")
        }
        (Some(d), _) => Some(d),
        (None, None) => Some(10.0),
        (None, Some(_)) => None,
    };
    if !cli.kill.is_empty() && duration.is_none() {
        bail!("--kill needs --duration (the sink cannot receive --messages from a killed sampler)");
    }
    if cli.messages == Some(0) {
        bail!("--messages must be at least 1");
    }
    let json_path = log_dir.join("multiple-transports.json");
    let config = match cli.config {
        ConfigArg::Channel => ConfigKind::Channel,
        ConfigArg::Json => {
            std::fs::write(&json_path, rewrite_json_addresses(SHIPPED_JSON, &session)?)
                .with_context(|| format!("cannot write {}", json_path.display()))?;
            ConfigKind::Json
        }
    };
    let settings = LaunchSettings {
        session: session.clone(),
        config,
        json_path: json_path.clone(),
        segment_size: cli.shm_segment_size,
        shm_monitor: cli.shm_monitor,
        max_iterations: cli.messages.unwrap_or(0),
    };

    // Ctrl-C / SIGTERM of the launcher: stop the devices in order and report.
    let stop_requested = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop_requested.clone())
            .context("cannot install the signal handler")?;
    }

    println!(
        "multiple-transports: session {session} (shmId {shm_id}), {} config, segment {} bytes, shm-monitor {}, {}",
        match cli.config {
            ConfigArg::Channel => "--channel-config",
            ConfigArg::Json => "--mq-config (JSON)",
        },
        cli.shm_segment_size,
        cli.shm_monitor,
        match (duration, cli.messages) {
            (Some(d), Some(n)) => format!("{n} messages per channel or {d} s"),
            (Some(d), None) => format!("{d} s"),
            (None, Some(n)) => format!("{n} messages per channel"),
            (None, None) => unreachable!("a duration is set without --messages"),
        }
    );
    println!("logs: {}", log_dir.display());

    let mut commands = String::new();
    let start = Instant::now();
    let mut devices: Vec<Device> = Vec::new();
    for name in DEVICES {
        let exe = bin_dir.join(format!("{BIN_PREFIX}{name}"));
        let args = device_args(name, &settings)?;
        commands.push_str(&format!("{} {}\n", exe.display(), args.join(" ")));
        let log_path = log_dir.join(format!("{name}.log"));
        let log =
            Arc::new(Mutex::new(File::create(&log_path).with_context(|| {
                format!("cannot create {}", log_path.display())
            })?));
        let mut child = Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("FAIRMQ_SEVERITY")
            // Own process group: a Ctrl-C in the terminal reaches only the launcher, which
            // stops the devices in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let report = Arc::new(Mutex::new(DeviceReport::default()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_reader(
                name,
                out,
                log.clone(),
                report.clone(),
                cli.verbose,
            )?);
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_reader(
                name,
                err,
                log.clone(),
                report.clone(),
                cli.verbose,
            )?);
        }
        devices.push(Device {
            name,
            child,
            report,
            readers,
            status: None,
            exited_at: None,
            killed_at: None,
            interrupted_at: None,
            log: log_path,
        });
    }
    let _ = std::fs::write(log_dir.join("commands.txt"), &commands);

    let mut watch = ShmWatch {
        session: session.clone(),
        seen: Vec::new(),
        gone_at: None,
    };
    let result = supervise(
        cli,
        duration,
        &mut devices,
        start,
        &stop_requested,
        &mut watch,
    );
    // Whatever happened: stop what still runs, in order.
    stop_all(cli, &mut devices, start, &mut watch);
    for d in &mut devices {
        for (handle, done) in d.readers.drain(..) {
            // The pipes close when the device exits (unless a child process inherited them).
            if done.recv_timeout(Duration::from_secs(5)).is_ok() {
                let _ = handle.join();
            }
        }
    }
    let reason = result?;

    // Shared memory: the last device to leave removes the session; with --shm-monitor the
    // monitor removes it when every device of the session died.
    // Without a monitor nobody else will remove it: a short grace period is enough.
    let cleanup_wait = if cli.shm_monitor {
        cli.cleanup_timeout
    } else {
        cli.cleanup_timeout.min(2.0)
    };
    let deadline = Instant::now() + Duration::from_secs_f64(cleanup_wait);
    let mut left = shm_leftovers(&session);
    watch.tick(start.elapsed().as_secs_f64());
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        watch.tick(start.elapsed().as_secs_f64());
        left = shm_leftovers(&session);
    }
    let mut fallback_cleanup = None;
    if !left.is_empty() {
        fallback_cleanup = Some(
            fairmq_shmem::monitor::cleanup_checked(&shm_id, false, false)
                .map(|r| r.len())
                .map_err(|e| e.to_string()),
        );
    }
    for c in CHANNELS {
        let _ = std::fs::remove_file(ipc_path(&session, c));
    }

    // ----- the report -----
    let reports: BTreeMap<&str, DeviceReport> =
        devices.iter().map(|d| (d.name, d.report())).collect();
    let killed: Vec<&str> = cli.kill.iter().map(|k| k.device.as_str()).collect();
    let mut out = Outcome {
        ok: true,
        lines: Vec::new(),
    };
    println!();
    println!("Summary ({reason}):");
    for d in &devices {
        let status = match d.status {
            Some(s) if s.code().is_some() => format!("exit code {}", s.code().unwrap_or(-1)),
            Some(s) => format!("killed by signal {}", s.signal().unwrap_or(0)),
            None => "still running".to_owned(),
        };
        let when = d
            .exited_at
            .map(|t| format!(" at {t:.1} s"))
            .unwrap_or_default();
        if killed.contains(&d.name) {
            let ok = d.status.and_then(|s| s.signal()) == Some(9) && d.killed_at.is_some();
            out.check(
                ok,
                format!(
                    "{:<8} {status}{when} (SIGKILL planned at {:.1} s)",
                    d.name,
                    cli.kill
                        .iter()
                        .find(|k| k.device == d.name)
                        .map(|k| k.at)
                        .unwrap_or(0.0)
                ),
            );
        } else {
            let ok = d.status.and_then(|s| s.code()) == Some(0);
            let how = if d.interrupted_at.is_some() {
                " after SIGINT"
            } else {
                " by itself"
            };
            out.check(
                ok,
                format!(
                    "{:<8} {status}{}{when}",
                    d.name,
                    if d.status.is_some() { how } else { "" }
                ),
            );
        }
        let r = &reports[d.name];
        for e in r.errors.iter().take(5) {
            out.note(format!("{}: {e}", d.name));
        }
        if !out.ok && !r.errors.is_empty() {
            out.note(format!("{} log: {}", d.name, d.log.display()));
        }
    }

    let s1 = &reports["sampler1"];
    let s2 = &reports["sampler2"];
    let sink = &reports["sink"];
    let sent1 = s1.sent.get("data1").map(|s| s.0);
    let sent2 = s2.sent.get("data2").map(|s| s.0);
    let recv1 = sink.received.get("data1").copied();
    let recv2 = sink.received.get("data2").copied();
    let show = |v: Option<u64>| v.map_or("?".to_owned(), |n| n.to_string());
    let rate = |r: Option<fairmq_example_multiple_transports::report::Received>| {
        r.map_or(String::new(), |r| {
            format!(
                " in {:.1} s ({:.0} msg/s, {:.3} GB/s)",
                r.millis as f64 / 1000.0,
                r.rate,
                r.gbps
            )
        })
    };
    println!(
        "  data1 (shmem, {DATA1_MESSAGE_SIZE} B): sampler1 sent {}, sink received {}{}",
        show(sent1),
        show(recv1.map(|r| r.messages)),
        rate(recv1)
    );
    println!(
        "  data2 (zeromq, {DATA2_MESSAGE_SIZE} B): sampler2 sent {}, sink received {}{}",
        show(sent2),
        show(recv2.map(|r| r.messages)),
        rate(recv2)
    );
    println!(
        "  ack   (zeromq pub/sub): sink sent {}, sampler1 acknowledged {}",
        show(sink.acks_sent),
        show(s1.acknowledged)
    );
    if let (Some(s), Some(r)) = (sent1, recv1) {
        if s > r.messages && killed.is_empty() {
            println!(
                "  ({} data1 messages were still queued towards the sink when it stopped; they were discarded with the session)",
                s - r.messages
            );
        }
    }

    if killed.is_empty() {
        match (recv1, recv2) {
            (Some(a), Some(b)) => out.check(
                a.messages > 0 && b.messages > 0,
                format!(
                    "neither sampler starved: data1 {} and data2 {} messages received",
                    a.messages, b.messages
                ),
            ),
            _ => out.check(false, "the sink did not report what it received".to_owned()),
        }
        match (s1.acknowledged, recv1, sink.acks_sent) {
            (Some(acked), Some(r), Some(sent)) => out.check(
                acked == r.messages && sent == r.messages,
                format!(
                    "sampler1 acknowledged {acked} == sink received {} on data1 (acks sent {sent})",
                    r.messages
                ),
            ),
            _ => out.check(
                false,
                "acknowledgements: sampler1's or the sink's count is missing".to_owned(),
            ),
        }
        if let Some(n) = cli.messages {
            if duration.is_none() {
                let all = [
                    sent1,
                    sent2,
                    recv1.map(|r| r.messages),
                    recv2.map(|r| r.messages),
                ];
                out.check(
                    all.iter().all(|v| *v == Some(n)),
                    format!("exactly {n} messages sent and received on data1 and data2"),
                );
            }
        }
    } else {
        for survivor in DEVICES.iter().filter(|d| !killed.contains(d)) {
            let r = &reports[survivor];
            let complete = match *survivor {
                "sampler1" => r.sent.contains_key("data1") && r.acknowledged.is_some(),
                "sampler2" => r.sent.contains_key("data2"),
                _ => r.received.len() == 2 && r.acks_sent.is_some(),
            };
            out.check(
                complete,
                format!("{survivor} (not killed) reported its counts when it stopped"),
            );
        }
        if let (Some(acked), Some(sent)) = (s1.acknowledged, sent1) {
            out.note(format!(
                "sampler1 sent {sent} and got {acked} acknowledgements before the sink went away"
            ));
        }
    }

    // Shared memory: who removed it? Only the last shmem device to leave can (a process that
    // holds the session open keeps it), or the monitor once all of them died.
    if left.is_empty() {
        let end = |d: &Device| d.killed_at.or(d.exited_at).unwrap_or(f64::INFINITY);
        let last = devices
            .iter()
            .filter(|d| topology::device_transport(d.name).ok() == Some("shmem"))
            .max_by(|a, b| end(a).total_cmp(&end(b)));
        let who = match (last, watch.gone_at) {
            (_, None) => "no shared memory of the session was seen".to_owned(),
            (Some(last), Some(gone)) if last.killed_at.is_some() => {
                let what = if cli.shm_monitor {
                    "the shmmonitor daemon removed the session"
                } else {
                    "the session was removed (not by a device)"
                };
                format!(
                    "every shmem device was SIGKILLed; {what} ({}) at {gone:.1} s, {:.1} s after the last SIGKILL",
                    watch.seen.join(", "),
                    gone - end(last)
                )
            }
            (Some(last), Some(_)) => {
                let mut who = format!("{} removed it when it left as the last user", last.name);
                if !killed.is_empty() {
                    who.push_str(&format!(
                        " (the SIGKILLed {} no longer held the session open)",
                        killed.join(" and ")
                    ));
                }
                who
            }
            (None, Some(_)) => "removed".to_owned(),
        };
        out.check(
            true,
            format!("/dev/shm holds nothing of the session (shmId {shm_id}): {who}"),
        );
    } else {
        out.check(
            false,
            format!(
                "/dev/shm still holds {} after {:.0} s: {}",
                left.len(),
                cleanup_wait,
                left.join(", ")
            ),
        );
        match fallback_cleanup {
            Some(Ok(n)) => out.note(format!(
                "the launcher removed the dead session itself ({n} objects; fairmq-shmmonitor --cleanup)"
            )),
            Some(Err(e)) => out.note(format!(
                "the launcher could not remove it: {e}; try `fairmq-shmmonitor --cleanup -s {session}`"
            )),
            None => {}
        }
    }
    for l in &out.lines {
        println!("{l}");
    }
    println!(
        "RESULT: {} (logs in {})",
        if out.ok { "OK" } else { "FAILED" },
        log_dir.display()
    );
    Ok(out.ok)
}

/// Runs until the duration is over, the devices finished (`--messages`), a device exited
/// unexpectedly, or the launcher was asked to stop; kills devices as `--kill` says. Returns why
/// it stopped.
fn supervise(
    cli: &Cli,
    duration: Option<f64>,
    devices: &mut [Device],
    start: Instant,
    stop_requested: &AtomicBool,
    watch: &mut ShmWatch,
) -> Result<String> {
    let mut next_print = 1.0;
    let mut kills: Vec<KillSpec> = cli.kill.clone();
    if !cli.quiet {
        println!(
            "{:>6}  {:<38}{:<38}ack (zeromq) at sampler1",
            "time", "data1 (shmem) at the sink", "data2 (zeromq) at the sink",
        );
    }
    loop {
        let now = start.elapsed().as_secs_f64();
        watch.tick(now);
        if stop_requested.load(Ordering::Relaxed) {
            return Ok(format!(
                "stopped by a signal to the launcher after {now:.1} s"
            ));
        }
        // Planned kills.
        let mut i = 0;
        while i < kills.len() {
            if now >= kills[i].at {
                let k = kills.remove(i);
                if let Some(d) = devices.iter_mut().find(|d| d.name == k.device) {
                    if d.poll(now).is_none() {
                        let _ = d.child.kill(); // SIGKILL
                        d.killed_at = Some(now);
                        println!("{now:>5.1}s  SIGKILL {} (pid {})", d.name, d.child.id());
                    } else {
                        println!("{now:>5.1}s  {} had already exited, not killed", d.name);
                    }
                }
            } else {
                i += 1;
            }
        }
        // Exits.
        let mut all_done = true;
        for d in devices.iter_mut() {
            let was_running = d.status.is_none();
            match d.poll(now) {
                None => all_done = false,
                Some(s) if was_running && d.killed_at.is_none() => {
                    let expected = cli.messages.is_some() && s.code() == Some(0);
                    if !expected {
                        return Ok(format!(
                            "{} exited unexpectedly after {now:.1} s ({s})",
                            d.name
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        if all_done {
            return Ok(format!("all devices finished after {now:.1} s"));
        }
        if let Some(d) = duration {
            if now >= d {
                return Ok(format!("ran {d} s, then stopped with SIGINT"));
            }
        } else if now >= cli.timeout {
            return Ok(format!(
                "the devices did not finish within --timeout {} s",
                cli.timeout
            ));
        }
        if !cli.quiet && now >= next_print {
            next_print += 1.0;
            let sample = |dev: &str, chan: &str, input: bool| {
                devices
                    .iter()
                    .find(|d| d.name == dev && d.status.is_none())
                    .and_then(|d| d.report().rates.get(chan).cloned())
                    .map(|s| {
                        if input {
                            (s.msgs_in, s.mb_in)
                        } else {
                            (s.msgs_out, s.mb_out)
                        }
                    })
            };
            println!(
                "{:>5.0}s  {:<38}{:<38}{}",
                now,
                fmt_rate(sample("sink", "data1[0]", true), true),
                fmt_rate(sample("sink", "data2[0]", true), true),
                fmt_rate(sample("sampler1", "ack[0]", true), false).trim_end()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(d: &mut Device, timeout: f64, start: Instant, watch: &mut ShmWatch) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout);
    loop {
        watch.tick(start.elapsed().as_secs_f64());
        if d.poll(start.elapsed().as_secs_f64()).is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops the devices that still run: the sink first (so that its acknowledgements reach
/// sampler1), then both samplers; SIGKILL after `--stop-timeout`.
fn stop_all(cli: &Cli, devices: &mut [Device], start: Instant, watch: &mut ShmWatch) {
    let groups: [&[&str]; 2] = [&["sink"], &["sampler1", "sampler2"]];
    for group in groups {
        for d in devices.iter_mut().filter(|d| group.contains(&d.name)) {
            if d.poll(start.elapsed().as_secs_f64()).is_none() {
                d.signal(rustix::process::Signal::INT);
                d.interrupted_at = Some(start.elapsed().as_secs_f64());
            }
        }
        for d in devices.iter_mut().filter(|d| group.contains(&d.name)) {
            if !wait_exit(d, cli.stop_timeout, start, watch) {
                println!(
                    "{} did not stop within {} s after SIGINT; killing it",
                    d.name, cli.stop_timeout
                );
                let _ = d.child.kill();
                let _ = d.child.wait().map(|s| {
                    d.status = Some(s);
                    d.exited_at = Some(start.elapsed().as_secs_f64());
                });
            }
        }
    }
}
