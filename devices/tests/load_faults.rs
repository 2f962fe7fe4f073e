//! Load with faults (issue 11, item 8), with the real binaries: 16 devices in one shmem session,
//! half of them SIGKILLed at random moments and restarted, while another process fills
//! /dev/shm.
//!
//! The scenario, all in a private tmpfs of 256 MiB mounted over /dev/shm in a mount namespace of
//! its own (`unshare --mount`; the outer test re-runs this test binary in there, so neither the
//! machine's /dev/shm nor the tests running in parallel are touched; where that is not
//! possible the test is skipped with a message):
//!
//! * 4 chains `fairmq-bsampler → fairmq-proxy → fairmq-proxy → fairmq-sink` over ipc with
//!   `--transport shmem`, one `--session`, a 160 MiB segment (committed as it is used), 8 KiB
//!   messages at 500 msg/s per sampler; every input binds, every output connects; the sinks
//!   log their rates every second (`rateLogging=1`), which is how the test sees data move. The
//!   proxies run with `--multipart false`: with their default `true`, the shmem transport's
//!   libzmq descriptor path drops every single message a sampler sends them (its multipart
//!   receive reads the single-message descriptor's size as a part count).
//! * Fault phase (~12 s): 8 of the 16 devices (chosen with a seeded [`Rng`], the seed printed;
//!   `FMQ_LOAD_SEED` repeats a run) are SIGKILLed at random moments and each is restarted with
//!   the same arguments after a random pause. Meanwhile a filler process writes a file into
//!   /dev/shm until ENOSPC and holds it; one sink is then SIGSTOPped, so that its chain backs up
//!   and the segment has to commit memory that /dev/shm no longer has. Every sampler whose
//!   allocation fails must go to ERROR with the shmem transport's clear message (the segment,
//!   the bytes it could not reserve, "No space left on device", the bytes free, and
//!   `--shm-segment-size`); the test then stops it with SIGINT (exit code 1) and restarts it.
//!   As soon as the first such error is seen the sink is resumed; the filler holds /dev/shm
//!   full for 3 s more (the devices keep moving data within the memory already committed) and
//!   then releases it.
//! * Recovery: every chain delivers data again; then every device is stopped with SIGINT and
//!   must exit 0.
//!
//! `load_with_faults_zmq_path` runs it with the descriptors over libzmq,
//! `load_with_faults_queue_path` with the descriptors in shared-memory queues (the default);
//! there a device restarted while /dev/shm is full may also fail at start because its queue
//! object does not fit, which is the other clear error accepted.
//!
//! Asserted: no process ends by a signal other than the test's own SIGKILLs (no SIGBUS, no
//! SIGSEGV, no abort), no output mentions a bus error or a panic, every ERROR is the clear
//! commit error, at least one allocation failed while /dev/shm was full (the fill did bite),
//! data arrived at some sink in every 5 s of the fault phase, every chain delivered data during
//! the fault phase and after it, the devices never killed are the same processes at the end,
//! and after the graceful stop nothing of the session is left in /dev/shm (the last device to
//! exit removed it, leaked buffers of the killed devices included).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::{bin, Proc, Signal};
use fairmq_test_support::{Rng, Session};

/// The inner test, run inside the private /dev/shm.
const INNER: &str = "load_with_faults_inside_a_private_dev_shm";
/// Set for the inner test by the outer one.
const ENV: &str = "FMQ_LOAD_FAULTS_PRIVATE_DEV_SHM";
/// The name of the private tmpfs (its mount source), to recognise it.
const FS_NAME: &str = "fmqload";
/// The size of the private /dev/shm.
const TMPFS_SIZE: &str = "256m";
/// `--shm-segment-size`: 160 MiB (plus the 6.25 MiB management segment), which fits the tmpfs
/// when it is empty and cannot be committed any further when the filler has taken the rest.
const SEGMENT_SIZE: &str = "167772160";
const MSG_SIZE: &str = "8192";
const MSG_RATE: &str = "500";
const CHAINS: usize = 4;
const KILLS: usize = 8;
/// Over how long the kills are spread.
const KILL_SPAN_MS: u64 = 11_000;
/// When the filler starts, from the start of the fault phase.
const FILL_AT: Duration = Duration::from_millis(1500);
/// How long /dev/shm stays full after the stalled sink was resumed.
const HOLD_AFTER_STALL: Duration = Duration::from_secs(3);
/// Longest time without any data arriving at any sink during the fault phase.
const MAX_GAP: Duration = Duration::from_secs(5);
/// Generous bound for starting, stopping and recovering (two shared cores, debug builds).
const LONG: Duration = Duration::from_secs(30);
/// How often the test looks at its processes.
const TICK: Duration = Duration::from_millis(50);
/// Selects the shmem transport's descriptor path (`zmq` or `queue`).
const METADATA_PATH_VAR: &str = "FAIRMQ_SHM_METADATA_PATH";
/// The file of the filler in /dev/shm (no shmId in its name: it belongs to no session).
const FILLER_FILE: &str = "/dev/shm/fmq_load_faults_filler";

/// The scenario with the descriptors over libzmq (`FAIRMQ_SHM_METADATA_PATH=zmq`, as FairMQ).
#[test]
fn load_with_faults_zmq_path() {
    in_private_dev_shm(Some("zmq"));
}

/// The scenario with the descriptors in shared-memory queues (`FAIRMQ_SHM_METADATA_PATH=queue`,
/// the default).
#[test]
fn load_with_faults_queue_path() {
    in_private_dev_shm(Some("queue"));
}

/// Runs the inner test in a new mount namespace with a private tmpfs on /dev/shm; skips with a
/// message where that is not possible. `metadata_path` sets `FAIRMQ_SHM_METADATA_PATH` for every
/// device (`None`: the transport's default).
fn in_private_dev_shm(metadata_path: Option<&str>) {
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={TMPFS_SIZE} {FS_NAME} /dev/shm"
        ))
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipping: no private /dev/shm (unshare/mount): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipping: unshare not available: {e}");
            return;
        }
    }
    let exe = std::env::current_exe().expect("the test executable");
    let exe = exe.to_str().expect("a UTF-8 path");
    let script =
        format!("mount -t tmpfs -o size={TMPFS_SIZE} {FS_NAME} /dev/shm && exec \"$0\" \"$@\"");
    let mut inner = Proc::spawn_with(
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            exe,
            INNER,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ],
        |cmd| {
            cmd.env(ENV, "1");
            match metadata_path {
                Some(path) => cmd.env(METADATA_PATH_VAR, path),
                None => cmd.env_remove(METADATA_PATH_VAR),
            };
        },
    );
    let status = inner.wait(Duration::from_secs(300));
    let out = inner.output();
    eprintln!("{out}");
    assert!(
        status.success() && out.contains("1 passed"),
        "the inner test failed ({status:?}); its output is above"
    );
}

/// One of the four kinds of device in a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Sampler,
    Processor1,
    Processor2,
    Sink,
}

const ROLES: [Role; 4] = [
    Role::Sampler,
    Role::Processor1,
    Role::Processor2,
    Role::Sink,
];

/// A device of the topology: what it runs with, its current process and what became of the
/// earlier ones.
struct Slot {
    id: String,
    role: Role,
    binary: &'static str,
    args: Vec<String>,
    proc: Option<Proc>,
    /// Messages its earlier processes (a sink's) reported in their rate lines.
    earlier_received: f64,
    /// SIGKILLed by the test (once at most).
    killed: bool,
    /// Restarts after an allocation error.
    error_restarts: u32,
    /// When to start it again (after a kill or an allocation error).
    restart_at: Option<Instant>,
    /// SIGSTOPped by the test (the stalled sink).
    stopped: bool,
}

impl Slot {
    fn spawn(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.proc = Some(Proc::device(bin(self.binary), &args));
    }

    /// Messages received so far according to the rate lines of all its processes.
    fn received(&self) -> f64 {
        self.earlier_received + self.proc.as_ref().map_or(0.0, |p| rate_sum(&p.output()))
    }

    fn running(&self) -> bool {
        self.proc
            .as_ref()
            .is_some_and(|p| p.output().contains("---> RUNNING"))
    }
}

/// The sum of the `in:` rates of a sink's rate lines (`data[0]: in: <msg/s> (<MB/s> MB) ...`,
/// one a second): the messages it received, to a second.
fn rate_sum(out: &str) -> f64 {
    out.lines()
        .filter_map(|l| {
            let rest = l.split_once("data[0]: in: ")?.1;
            rest.split(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

/// What the shmem transport says when the segment cannot commit memory on a full /dev/shm
/// (`Error::CommitFailed`, reported as a bad allocation).
fn is_clear_commit_error(line: &str) -> bool {
    [
        "could not create a message of size",
        "could not reserve the",
        "No space left on device",
        "bytes free in /dev/shm",
        "--shm-segment-size",
    ]
    .iter()
    .all(|needle| line.contains(needle))
}

/// What a device on the queue metadata path (`FAIRMQ_SHM_METADATA_PATH=queue`) says when it
/// starts while /dev/shm is full: its descriptor queue object cannot be created.
fn is_clear_queue_error(line: &str) -> bool {
    [
        "could not reserve",
        "for queue object",
        "in /dev/shm (is it full?)",
        "No space left on device",
    ]
    .iter()
    .all(|needle| line.contains(needle))
}

/// The bytes the segment could not reserve and the bytes free in /dev/shm, as a commit error
/// names them (`could not reserve the <n> more bytes ...; <f> bytes free in /dev/shm`).
fn commit_error_sizes(line: &str) -> Option<(u64, u64)> {
    let needed = line
        .split_once("could not reserve the ")?
        .1
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let free = line
        .split_once(" bytes free in /dev/shm")?
        .0
        .rsplit(' ')
        .next()?
        .parse()
        .ok()?;
    Some((needed, free))
}

/// Fails on anything in a device's output that shows a crash.
fn assert_no_crash_output(name: &str, out: &str) {
    for needle in ["SIGBUS", "Bus error", "bus error", "panicked", "SIGSEGV"] {
        assert!(
            !out.contains(needle),
            "{name}'s output mentions '{needle}':\n{out}"
        );
    }
}

/// Fails unless `status` is the end of a process that the test SIGKILLed, or a plain exit.
fn assert_not_crashed(name: &str, status: ExitStatus, killed_by_test: bool, out: &str) {
    match status.signal() {
        None => {}
        Some(9) if killed_by_test => {}
        Some(sig) => panic!("{name} was killed by signal {sig} ({status:?}); output:\n{out}"),
    }
}

/// How far the filler and the stalled sink are.
enum Fill {
    Waiting,
    Filling(Proc),
    /// /dev/shm is full and the sink of this chain is stopped.
    Stalled(Proc, usize, Instant),
    /// The sink was resumed at that moment; /dev/shm is still full.
    Holding(Proc, Instant),
    Released,
}

impl Fill {
    fn describe(&self) -> &'static str {
        match self {
            Fill::Waiting => "waiting to fill /dev/shm",
            Fill::Filling(_) => "filling /dev/shm",
            Fill::Stalled(..) => "/dev/shm full, a sink stopped",
            Fill::Holding(..) => "/dev/shm full, the sink resumed",
            Fill::Released => "/dev/shm released",
        }
    }
}

#[test]
#[ignore = "runs inside the private /dev/shm of load_with_faults_*_path"]
fn load_with_faults_inside_a_private_dev_shm() {
    assert_eq!(
        std::env::var(ENV).as_deref(),
        Ok("1"),
        "run through load_with_faults_zmq_path or load_with_faults_queue_path"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /dev/shm ") && l.contains(&format!(" {FS_NAME} "))),
        "/dev/shm is not the private tmpfs"
    );
    let started = Instant::now();
    let seed = std::env::var("FMQ_LOAD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock")
                .as_nanos() as u64
        });
    let path = std::env::var(METADATA_PATH_VAR).unwrap_or_else(|_| "default".to_owned());
    eprintln!(
        "load with faults: seed {seed} (set FMQ_LOAD_SEED to repeat), descriptor path {path}"
    );
    let mut rng = Rng::new(seed);
    let s = Session::new("load");

    let mut slots = topology(&s);
    for slot in &mut slots {
        slot.spawn();
    }
    let deadline = Instant::now() + LONG;
    while !slots.iter().all(Slot::running) {
        for slot in &mut slots {
            let p = slot.proc.as_mut().expect("spawned");
            if let Some(st) = p.try_status() {
                panic!("{} exited at start ({st:?}):\n{}", slot.id, p.output());
            }
        }
        assert!(
            Instant::now() < deadline,
            "not all 16 devices got to RUNNING within {LONG:?}"
        );
        std::thread::sleep(TICK);
    }
    let sinks: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].role == Role::Sink)
        .collect();
    wait_all_sinks_move(&mut slots, &sinks, "before the faults");
    let warm = started.elapsed();

    // The kill schedule: 8 distinct devices at sorted random moments, each restarted after a
    // random pause.
    let mut order: Vec<usize> = (0..slots.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut times: Vec<u64> = (0..KILLS)
        .map(|_| 300 + rng.below(KILL_SPAN_MS - 300))
        .collect();
    times.sort_unstable();
    let faults_start = Instant::now();
    let mut kills: Vec<(Instant, usize, Duration)> = times
        .iter()
        .zip(&order)
        .map(|(&t, &victim)| {
            (
                faults_start + Duration::from_millis(t),
                victim,
                Duration::from_millis(rng.below(500)),
            )
        })
        .collect();
    let stall_chain = rng.below(CHAINS as u64) as usize;
    let mut fill = Fill::Waiting;
    let mut log: Vec<String> = Vec::new();
    let mut commit_errors: Vec<String> = Vec::new();
    let mut start_errors: Vec<String> = Vec::new();
    let mut errors_while_full = 0;
    let mut fill_window: Option<(Instant, Instant)> = None;
    let mut free_when_full = u64::MAX;
    let mut progress: Vec<(Instant, f64)> = Vec::new();
    let mut per_sink_start = vec![0.0; sinks.len()];
    for (k, &i) in sinks.iter().enumerate() {
        per_sink_start[k] = slots[i].received();
    }
    let at = |t: Instant| format!("{:.1}s", t.duration_since(faults_start).as_secs_f64());

    loop {
        let now = Instant::now();
        // Due kills (a stopped sink, or a device being restarted, waits for its turn).
        let mut k = 0;
        while k < kills.len() {
            let (when, victim, pause) = kills[k];
            let slot = &mut slots[victim];
            if when > now || slot.stopped || slot.proc.is_none() {
                k += 1;
                continue;
            }
            // A device that ended by itself since the last round (an allocation error sends it
            // to ERROR) is judged below first; its kill waits for the restart.
            if slot.proc.as_mut().is_some_and(|p| p.try_status().is_some()) {
                k += 1;
                continue;
            }
            kills.remove(k);
            let mut p = slot.proc.take().expect("running");
            let phase = if p.output().contains("---> RUNNING") {
                "running"
            } else {
                "starting"
            };
            p.signal(Signal::KILL);
            let status = p.wait(LONG);
            let out = p.output();
            assert_no_crash_output(&slot.id, &out);
            assert_eq!(
                status.signal(),
                Some(9),
                "{} had ended by itself before the SIGKILL ({status:?}):\n{out}",
                slot.id
            );
            slot.earlier_received += rate_sum(&out);
            slot.killed = true;
            slot.restart_at = Some(now + pause);
            log.push(format!(
                "{}: SIGKILL {} ({phase}), restart after {}ms",
                at(now),
                slot.id,
                pause.as_millis()
            ));
        }
        // Processes: unexpected ends, allocation errors, due restarts.
        let full = matches!(fill, Fill::Stalled(..) | Fill::Holding(..));
        for slot in &mut slots {
            if let Some(p) = slot.proc.as_mut() {
                let out = p.output();
                assert_no_crash_output(&slot.id, &out);
                let exited = p.try_status();
                if let Some(st) = exited {
                    assert_not_crashed(&slot.id, st, false, &out);
                }
                // A device whose allocation failed goes to ERROR and exits 1 (by itself, or on
                // SIGINT should it still wait).
                let out = p.output();
                if out.contains("---> ERROR") {
                    let line = out
                        .lines()
                        .find(|l| l.contains("[ERROR]"))
                        .unwrap_or_default()
                        .to_owned();
                    let what = if is_clear_commit_error(&line) {
                        // The error tells the truth: what it could not reserve did not fit.
                        let (needed, free) = commit_error_sizes(&line).unwrap_or_else(|| {
                            panic!("{}: no sizes in the commit error: {line}", slot.id)
                        });
                        assert!(
                            needed > free,
                            "{}: a commit of {needed} bytes failed with {free} bytes free: {line}",
                            slot.id
                        );
                        "allocation failed"
                    } else if is_clear_queue_error(&line) {
                        "no room for its descriptor queue at start"
                    } else {
                        panic!(
                            "{} went to ERROR without the clear error of a full /dev/shm:\n{out}",
                            slot.id
                        )
                    };
                    let how = if exited.is_some() {
                        "exited by itself"
                    } else {
                        p.signal(Signal::INT);
                        "stopped with SIGINT"
                    };
                    let st = p.wait(LONG);
                    let out = p.output();
                    assert_not_crashed(&slot.id, st, false, &out);
                    assert_eq!(
                        st.code(),
                        Some(1),
                        "{} in ERROR did not exit 1 ({how}):\n{out}",
                        slot.id
                    );
                    slot.earlier_received += rate_sum(&out);
                    slot.proc = None;
                    slot.error_restarts += 1;
                    slot.restart_at = Some(now + Duration::from_millis(300));
                    if full && what == "allocation failed" {
                        errors_while_full += 1;
                    }
                    log.push(format!(
                        "{}: {} in ERROR ({what}{}), {how}, exit 1",
                        at(now),
                        slot.id,
                        if full { ", /dev/shm full" } else { "" }
                    ));
                    if what == "allocation failed" {
                        commit_errors.push(format!("{}: {line}", slot.id));
                    } else {
                        start_errors.push(format!("{}: {line}", slot.id));
                    }
                } else if let Some(st) = exited {
                    panic!("{} exited by itself ({st:?}):\n{out}", slot.id);
                }
            }
            if slot.proc.is_none() && slot.restart_at.is_some_and(|t| t <= now) {
                slot.restart_at = None;
                slot.spawn();
                log.push(format!("{}: restarted {}", at(now), slot.id));
            }
        }
        // The filler and the stalled sink.
        fill = match fill {
            Fill::Waiting if now >= faults_start + FILL_AT => {
                log.push(format!("{}: filler starts", at(now)));
                Fill::Filling(Proc::spawn(
                    "sh",
                    &[
                        "-c",
                        &format!(
                            "cat /dev/zero > {FILLER_FILE} 2>/dev/null; echo full; exec sleep 600"
                        ),
                    ],
                ))
            }
            Fill::Filling(p) if p.output().contains("full") => {
                free_when_full =
                    fairmq_shmem::segment::free_space(Path::new("/dev/shm")).expect("statvfs");
                // The sink of the chosen chain, or of the next one that runs.
                let chain = (0..CHAINS)
                    .map(|c| (stall_chain + c) % CHAINS)
                    .find(|&c| slots[sinks[c]].running())
                    .expect("a running sink");
                let sink = &mut slots[sinks[chain]];
                sink.proc.as_ref().expect("running").signal(Signal::STOP);
                sink.stopped = true;
                fill_window = Some((now, now));
                log.push(format!(
                    "{}: /dev/shm full ({free_when_full} bytes free); SIGSTOP {}",
                    at(now),
                    sink.id
                ));
                Fill::Stalled(p, chain, now)
            }
            Fill::Stalled(p, chain, since) if !commit_errors.is_empty() => {
                let sink = &mut slots[sinks[chain]];
                sink.proc.as_ref().expect("stopped").signal(Signal::CONT);
                sink.stopped = false;
                log.push(format!(
                    "{}: SIGCONT {} (stalled for {:?})",
                    at(now),
                    sink.id,
                    now - since
                ));
                Fill::Holding(p, now)
            }
            Fill::Stalled(_, chain, since) if now - since > LONG => {
                panic!(
                    "no allocation failed within {LONG:?} of /dev/shm being full and {} \
                     being stopped",
                    slots[sinks[chain]].id
                )
            }
            Fill::Holding(mut p, since) if now - since >= HOLD_AFTER_STALL => {
                p.kill();
                std::fs::remove_file(FILLER_FILE).expect("remove the filler's file");
                if let Some(w) = fill_window.as_mut() {
                    w.1 = now;
                }
                log.push(format!("{}: filler released /dev/shm", at(now)));
                Fill::Released
            }
            other => other,
        };
        // Progress.
        let total: f64 = sinks.iter().map(|&i| slots[i].received()).sum();
        progress.push((now, total));
        let faults_over = kills.is_empty()
            && matches!(fill, Fill::Released)
            && slots.iter().all(|s| s.proc.is_some())
            && now - faults_start >= Duration::from_millis(KILL_SPAN_MS);
        if faults_over {
            break;
        }
        assert!(
            now - faults_start < Duration::from_secs(90),
            "the fault phase did not end; fill: {}; log:\n{}",
            fill.describe(),
            log.join("\n")
        );
        std::thread::sleep(TICK);
    }
    let faults_end = Instant::now();
    let fault_phase = faults_end - faults_start;

    // Data moved during the faults: some sink received data in every MAX_GAP, and every chain
    // delivered.
    let mut longest_gap = Duration::ZERO;
    let mut last_change = faults_start;
    let mut last_total = progress.first().map_or(0.0, |p| p.1);
    for &(t, total) in &progress {
        if total > last_total {
            last_total = total;
            last_change = t;
        }
        longest_gap = longest_gap.max(t - last_change);
    }
    let per_sink_faults: Vec<f64> = sinks
        .iter()
        .enumerate()
        .map(|(k, &i)| slots[i].received() - per_sink_start[k])
        .collect();

    // Recovery: every chain delivers again; nothing goes wrong any more.
    eprintln!(
        "load with faults: log of the fault phase:\n  {}",
        log.join("\n  ")
    );
    wait_all_sinks_move(&mut slots, &sinks, "after the faults");
    let survivors: Vec<String> = slots
        .iter()
        .filter(|s| !s.killed && s.error_restarts == 0)
        .map(|s| s.id.clone())
        .collect();

    // Graceful stop of everything at once.
    for slot in &slots {
        slot.proc.as_ref().expect("running").signal(Signal::INT);
    }
    let mut received_at_stop = Vec::new();
    for slot in &mut slots {
        let p = slot.proc.as_mut().expect("running");
        let st = p.wait(LONG);
        let out = p.output();
        assert_no_crash_output(&slot.id, &out);
        assert_not_crashed(&slot.id, st, false, &out);
        assert_eq!(
            st.code(),
            Some(0),
            "{} did not stop cleanly on SIGINT:\n{out}",
            slot.id
        );
        if slot.role == Role::Sink {
            received_at_stop.push(format!("{}:{}", slot.id, common::received(&out)));
        }
    }
    s.wait_clean(LONG);
    s.assert_clean();
    assert!(
        Path::new(FILLER_FILE).metadata().is_err(),
        "the filler's file is still there"
    );

    let report = format!(
        "seed {seed}; descriptor path {path}; warm-up {warm:?}; fault phase {fault_phase:?}; total {:?}\n\
         log:\n  {}\n\
         allocation errors: {} ({errors_while_full} while /dev/shm was full, {free_when_full} \
         bytes free then); first: {}\n\
         start errors for want of room in /dev/shm: {}; first: {}\n\
         longest time without data at any sink during the faults: {longest_gap:?}\n\
         messages per sink during the faults (from rate lines): {per_sink_faults:?}\n\
         devices never killed nor restarted ({}): {survivors:?}\n\
         last processes of the sinks at SIGINT: {received_at_stop:?}",
        started.elapsed(),
        log.join("\n  "),
        commit_errors.len(),
        commit_errors.first().map_or("-", String::as_str),
        start_errors.len(),
        start_errors.first().map_or("-", String::as_str),
        survivors.len()
    );
    eprintln!("{report}");
    assert!(
        free_when_full < 1 << 20,
        "the filler left {free_when_full} bytes free in /dev/shm:\n{report}"
    );
    assert!(
        errors_while_full > 0,
        "no allocation failed while /dev/shm was full:\n{report}"
    );
    assert!(
        longest_gap <= MAX_GAP,
        "no data arrived at any sink for {longest_gap:?} during the faults:\n{report}"
    );
    for (k, n) in per_sink_faults.iter().enumerate() {
        assert!(
            *n > 0.0,
            "chain {k} delivered nothing during the faults:\n{report}"
        );
    }
}

/// The 4 chains of sampler → processor → processor → sink, every input bound, every output
/// connected, all in the session `s`.
fn topology(s: &Session) -> Vec<Slot> {
    let mut slots = Vec::new();
    for chain in 0..CHAINS {
        let addr = |hop: usize| s.ipc(&format!("c{chain}h{hop}"));
        for (hop, role) in ROLES.into_iter().enumerate() {
            let (name, binary) = match role {
                Role::Sampler => ("sampler", "fairmq-bsampler"),
                Role::Processor1 => ("proc1", "fairmq-proxy"),
                Role::Processor2 => ("proc2", "fairmq-proxy"),
                Role::Sink => ("sink", "fairmq-sink"),
            };
            let id = format!("c{chain}-{name}");
            let mut args: Vec<String> = [
                "--id",
                &id,
                "--transport",
                "shmem",
                "--session",
                &s.name,
                "--control",
                "static",
                "--shm-segment-size",
                SEGMENT_SIZE,
            ]
            .map(str::to_owned)
            .to_vec();
            let input = |a: String, name: &str, log: u8| {
                format!("name={name},type=pull,method=bind,address={a},rateLogging={log}")
            };
            let output = |a: String, name: &str| {
                format!("name={name},type=push,method=connect,address={a},rateLogging=0")
            };
            match role {
                Role::Sampler => {
                    args.extend(
                        ["--msg-size", MSG_SIZE, "--msg-rate", MSG_RATE].map(str::to_owned),
                    );
                    args.push("--channel-config".to_owned());
                    args.push(output(addr(hop), "data"));
                }
                Role::Processor1 | Role::Processor2 => {
                    // The samplers send single messages. (With the proxy's default
                    // `--multipart true` the shmem transport drops every one of them: its
                    // multipart receive cannot read a single-message descriptor.)
                    args.extend(["--multipart", "false"].map(str::to_owned));
                    args.push("--channel-config".to_owned());
                    args.push(input(addr(hop - 1), "data-in", 0));
                    args.push(output(addr(hop), "data-out"));
                }
                Role::Sink => {
                    args.push("--channel-config".to_owned());
                    args.push(input(addr(hop - 1), "data", 1));
                }
            }
            slots.push(Slot {
                id,
                role,
                binary,
                args,
                proc: None,
                earlier_received: 0.0,
                killed: false,
                error_restarts: 0,
                restart_at: None,
                stopped: false,
            });
        }
    }
    slots
}

/// Waits until every sink has received data (by its rate lines) since the call; fails if a
/// device exits or goes to ERROR meanwhile.
fn wait_all_sinks_move(slots: &mut [Slot], sinks: &[usize], when: &str) {
    let base: Vec<f64> = sinks.iter().map(|&i| slots[i].received()).collect();
    let deadline = Instant::now() + LONG;
    loop {
        let moved: Vec<bool> = sinks
            .iter()
            .zip(&base)
            .map(|(&i, &b)| slots[i].received() > b)
            .collect();
        if moved.iter().all(|&m| m) {
            return;
        }
        for slot in slots.iter_mut() {
            let p = slot.proc.as_mut().expect("running");
            let out = p.output();
            assert_no_crash_output(&slot.id, &out);
            assert!(
                !out.contains("---> ERROR"),
                "{} in ERROR {when}:\n{out}",
                slot.id
            );
            if let Some(st) = p.try_status() {
                panic!("{} exited {when} ({st:?}):\n{out}", slot.id);
            }
        }
        if Instant::now() > deadline {
            // What the devices of the chains that stand still say, and where they wait.
            let mut report = String::new();
            for (k, _) in moved.iter().enumerate().filter(|(_, m)| !**m) {
                for slot in slots.iter().skip(k * ROLES.len()).take(ROLES.len()) {
                    let p = slot.proc.as_ref().expect("running");
                    let out = p.output();
                    let tail: Vec<&str> = out.lines().rev().take(12).collect();
                    report.push_str(&format!(
                        "--- {} (pid {}):\n{}{}\n",
                        slot.id,
                        p.pid(),
                        threads_of(p.pid()),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
            }
            panic!("not every chain delivered data within {LONG:?} {when} (moved: {moved:?}):\n{report}");
        }
        std::thread::sleep(TICK);
    }
}

/// Where the threads of `pid` wait (for a report on a hang).
fn threads_of(pid: u32) -> String {
    let mut report = String::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let read = |f: &str| {
                std::fs::read_to_string(t.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            report.push_str(&format!("  {} wchan={}\n", read("comm"), read("wchan")));
        }
    }
    report
}
