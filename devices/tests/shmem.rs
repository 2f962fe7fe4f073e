//! Device-level proofs of issue 4 (the shared-memory transport), with the real binaries:
//!
//! * `fairmq-bsampler` → `fairmq-sink` with `--transport shmem`, the default 2 GiB segment, no
//!   rate limit, 20000 messages of 1 MiB and 20000 of 8 MiB: both exit 0, the sink reports
//!   exactly 20000, no allocation error anywhere, and the segment's used memory, sampled while
//!   the devices run, never exceeds the segment (FairMQ v1.10 aborts with bad_alloc here). The
//!   metadata goes over tcp: see `sampler_to_sink_default_segment` for why not ipc.
//! * Kill rounds: a sampler or a sink (alternating) is SIGKILLed at a random moment, then either
//!   the survivor is stopped with SIGINT (and must exit 0 promptly: a sink blocked in receive, a
//!   sampler blocked in send or waiting for memory) or the killed side is restarted and the
//!   transfer goes on. Whenever the last device of the session has exited gracefully, nothing
//!   of the session is left in /dev/shm.
//! * A sampler waiting for memory on a full segment (its sink SIGSTOPped) stops on SIGINT with
//!   exit 0; the sink, continued and stopped, removes the session.
//! * A `--shm-segment-size` larger than /dev/shm: a clear error at start naming the bytes
//!   needed, the bytes free and the option; a normal non-zero exit (no SIGBUS); nothing left.
//! * A sub channel on shmem's libzmq descriptor path: the device exits non-zero saying to use
//!   the descriptor queues or zeromq for that channel.
//!
//! Every test uses its own session and checks /dev/shm for that session's shmId at the end.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bin, received, Ipc, Proc, Signal};
use fairmq_shmem::{ManagedSegment, SegmentOptions, ShmId};
use fairmq_test_support::{Rng, Session};

/// How long a device may take to stop after SIGINT, or to finish a bounded run.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

fn chan(ty: &str, method: &str, address: &str) -> String {
    format!("name=data,type={ty},method={method},address={address},rateLogging=0")
}

fn common_args<'a>(id: &'a str, session: &'a str) -> Vec<&'a str> {
    vec![
        "--id",
        id,
        "--transport",
        "shmem",
        "--session",
        session,
        "--control",
        "static",
    ]
}

/// Asserts that the output shows no allocation failure.
fn assert_no_bad_alloc(name: &str, out: &str) {
    for needle in [
        "bad-alloc",
        "bad_alloc",
        "BadAlloc",
        "could not create a message",
        "could not allocate",
    ] {
        assert!(
            !out.contains(needle),
            "{name} reported an allocation failure ('{needle}'):\n{out}"
        );
    }
}

/// Samples the used memory of managed segment 0 of a session in a thread, as soon as the
/// segment exists, until stopped.
struct UsageSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Usage>>,
}

#[derive(Debug, Default)]
struct Usage {
    /// Total size of the segment object (0 if it was never seen).
    segment_size: u64,
    /// Bytes managed by its allocator.
    heap_size: u64,
    /// Largest number of bytes in use (allocated blocks, headers included) seen.
    peak_used: u64,
    /// Largest number of live allocations seen.
    peak_blocks: u64,
    samples: u64,
}

impl UsageSampler {
    fn start(id: &ShmId) -> UsageSampler {
        let id = id.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let opts = SegmentOptions {
                read_only: true,
                ..SegmentOptions::default()
            };
            let mut usage = Usage::default();
            let seg = loop {
                if let Ok(s) = ManagedSegment::open(&id, 0, &opts) {
                    break s;
                }
                if stop2.load(Ordering::Acquire) {
                    return usage;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            usage.segment_size = seg.segment_size();
            usage.heap_size = seg.size();
            while !stop2.load(Ordering::Acquire) {
                let used = seg.size().saturating_sub(seg.free_memory());
                usage.peak_used = usage.peak_used.max(used);
                usage.peak_blocks = usage.peak_blocks.max(seg.live_allocations());
                usage.samples += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            usage
        });
        UsageSampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Usage {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().expect("sampler thread")
    }
}

impl Drop for UsageSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// bsampler → sink over shmem with the default segment: no loss, no allocation error, bounded
/// memory.
fn sampler_to_sink_default_segment(tag: &str, msg_size: u64, messages: u64) {
    let s = Session::new(tag);
    // The metadata goes over tcp, not ipc: over ipc the bundled libzmq 4.3.4 drops the messages
    // still queued for a sink at its receive HWM when the sampler exits right after its last
    // send (libzmq #4660; reproduced in transports/shmem/tests/peer_exit.rs), which lost
    // 300-450 messages in about one run of twenty here. Over tcp nothing is lost.
    let port = free_port();
    let a = format!("tcp://127.0.0.1:{port}");
    let n = messages.to_string();
    let size = msg_size.to_string();
    let usage = UsageSampler::start(&s.id);
    let start = Instant::now();
    let mut sink_args = common_args("sink", &s.name);
    // autoBind=false: should the port be taken meanwhile, fail instead of binding elsewhere.
    let sink_chan = format!("{},autoBind=false", chan("pull", "bind", &a));
    sink_args.extend(["--max-iterations", &n, "--channel-config", &sink_chan]);
    let mut sink = Proc::device(bin("fairmq-sink"), &sink_args);
    let mut sampler_args = common_args("sampler", &s.name);
    let sampler_chan = chan("push", "connect", &a);
    sampler_args.extend([
        "--msg-size",
        &size,
        "--max-iterations",
        &n,
        "--channel-config",
        &sampler_chan,
    ]);
    let mut sampler = Proc::device(bin("fairmq-bsampler"), &sampler_args);
    let (sampler_out, sink_out) = wait_pair(&s, &mut sampler, &mut sink);
    let elapsed = start.elapsed();
    let usage = usage.finish();

    assert_eq!(received(&sink_out), messages, "{sink_out}");
    assert!(
        sampler_out.contains(&format!("Done {messages} iterations")),
        "{sampler_out}"
    );
    assert_no_bad_alloc("sampler", &sampler_out);
    assert_no_bad_alloc("sink", &sink_out);
    assert_eq!(
        usage.segment_size,
        2 << 30,
        "not the default 2 GiB segment (or never seen): {usage:?}"
    );
    assert!(usage.samples > 0, "memory never sampled: {usage:?}");
    assert!(
        usage.peak_used <= usage.heap_size && usage.heap_size <= usage.segment_size,
        "memory in flight exceeded the segment: {usage:?}"
    );
    let line = sink_out
        .lines()
        .find(|l| l.contains("Received "))
        .unwrap_or_default();
    eprintln!(
        "{messages} x {msg_size} B: {elapsed:?} in total; peak in flight {} MiB in {} blocks \
         (segment {} MiB, {} samples); sink: {line}",
        usage.peak_used >> 20,
        usage.peak_blocks,
        usage.segment_size >> 20,
        usage.samples
    );
    s.assert_clean();
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
            report.push_str(&format!(
                "  {:?} {} wchan={}\n",
                t.file_name(),
                read("comm"),
                read("wchan")
            ));
        }
    }
    report
}

/// The state of segment 0 of a session (for a report on a hang).
fn segment_state(id: &ShmId) -> String {
    let opts = SegmentOptions {
        read_only: true,
        ..SegmentOptions::default()
    };
    match ManagedSegment::open(id, 0, &opts) {
        Ok(seg) => format!(
            "free {} of {}, live blocks {}, allocations {}, waiters {}",
            seg.free_memory(),
            seg.size(),
            seg.live_allocations(),
            seg.allocation_count(),
            seg.waiters()
        ),
        Err(e) => format!("segment not open: {e}"),
    }
}

/// Waits for both devices of a run to exit 0; on a hang or failure reports both outputs, the
/// threads of what still runs and the segment.
fn wait_pair(s: &Session, sampler: &mut Proc, sink: &mut Proc) -> (String, String) {
    let deadline = Instant::now() + common::TIMEOUT;
    let mut done = [None, None];
    while done.iter().any(Option::is_none) {
        for (i, p) in [&mut *sampler, &mut *sink].into_iter().enumerate() {
            if done[i].is_none() {
                done[i] = p.try_status();
            }
        }
        if Instant::now() > deadline || done.iter().flatten().any(|st| !st.success()) {
            let mut report = format!("segment: {}\n", segment_state(&s.id));
            for (i, p) in [&mut *sampler, &mut *sink].into_iter().enumerate() {
                let threads = if done[i].is_none() {
                    // Where it hangs, then what it says when stopped.
                    let t = threads_of(p.pid());
                    p.signal(Signal::INT);
                    let stop = Instant::now() + Duration::from_secs(10);
                    while p.try_status().is_none() && Instant::now() < stop {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    t
                } else {
                    String::new()
                };
                report.push_str(&format!(
                    "--- {} (pid {}): {:?}\n{threads}{}\n",
                    p.name,
                    p.pid(),
                    done[i],
                    p.output()
                ));
            }
            panic!(
                "the devices did not both exit 0 within {:?}:\n{report}",
                common::TIMEOUT
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (sampler.output(), sink.output())
}

#[test]
fn sampler_to_sink_1mib_messages_default_segment() {
    sampler_to_sink_default_segment("shm_1mib", 1 << 20, 20_000);
}

#[test]
fn sampler_to_sink_8mib_messages_default_segment() {
    sampler_to_sink_default_segment("shm_8mib", 8 << 20, 20_000);
}

/// A tcp port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// SIGKILL and reap; the status must say so (the device had not exited by itself before).
fn sigkill(p: &mut Proc, what: &str) {
    p.signal(Signal::KILL);
    let status = p.wait(STOP_TIMEOUT);
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "{what}: {} had exited by itself ({status:?}); output:\n{}",
        p.name,
        p.output()
    );
}

const SIGKILL: i32 = 9;

/// SIGINT and a graceful exit with code 0 within the timeout.
fn stop_gracefully(p: &mut Proc, what: &str) -> (Duration, String) {
    let t = Instant::now();
    p.signal(Signal::INT);
    let status = p.wait(STOP_TIMEOUT);
    let out = p.output();
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: {} did not stop cleanly on SIGINT ({status:?}); output:\n{out}",
        p.name
    );
    (t.elapsed(), out)
}

/// Kill rounds: SIGKILL of the sampler or the sink at random moments; the survivor stops on
/// SIGINT or keeps working with a restarted peer; the session is cleaned by the last graceful
/// exit.
#[test]
fn sigkill_at_random_moments_survivors_never_hang() {
    const ROUNDS: u64 = 10;
    const RESTART_MESSAGES: &str = "300";
    let seed = std::env::var("FMQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill rounds: seed {seed} (set FMQ_KILL_SEED to repeat)");
    // Seeded from the clock (or `FMQ_KILL_SEED`); the seed is printed.
    let mut rng = Rng::new(seed);
    let s = Session::new("shm_kill");
    let ipc = Ipc::new("shm_kill");
    let a = ipc.address();
    let sink_chan = chan("pull", "bind", &a);
    let sampler_chan = chan("push", "connect", &a);
    // 4 KiB messages and a 512 MiB segment: every kill leaks at most the buffers that were in
    // the killed process's queues (a few thousand), far from filling the segment.
    let seg_args = ["--shm-segment-size", "536870912", "--msg-size", "4096"];
    let counter = AtomicU64::new(0);
    let spawn = |binary: &str, iterations: &str| -> Proc {
        let id = format!("{binary}-{}", counter.fetch_add(1, Ordering::Relaxed));
        let mut args = common_args(&id, &s.name);
        args.extend(["--max-iterations", iterations]);
        if binary == "fairmq-sink" {
            args.extend(["--shm-segment-size", seg_args[1]]);
            args.extend(["--channel-config", &sink_chan]);
        } else {
            args.extend(seg_args);
            args.extend(["--channel-config", &sampler_chan]);
        }
        Proc::device(bin(binary), &args)
    };

    let mut sink: Option<Proc> = None;
    let mut sampler: Option<Proc> = None;
    let mut max_stop = Duration::ZERO;
    let mut cleanups = 0;
    let mut killed_after = Vec::new();
    let mut survivor_moved = Vec::new();
    for round in 0..ROUNDS {
        let kill_sampler = round % 2 == 0;
        let restart = (round / 2) % 2 == 1;
        if sink.is_none() {
            sink = Some(spawn("fairmq-sink", "0"));
        }
        if sampler.is_none() {
            sampler = Some(spawn("fairmq-bsampler", "0"));
        }
        // Every third round the kill may hit a device still starting up; the others wait until
        // both run (data flows), then kill at a random moment.
        let early = round % 3 == 0;
        if !early {
            for p in [sink.as_mut(), sampler.as_mut()].into_iter().flatten() {
                p.wait_for_output("---> RUNNING", STOP_TIMEOUT);
            }
        }
        let delay = Duration::from_millis(rng.below(if early { 600 } else { 300 }));
        std::thread::sleep(delay); // a random moment, not a synchronisation
        let (victim, survivor) = if kill_sampler {
            (&mut sampler, &mut sink)
        } else {
            (&mut sink, &mut sampler)
        };
        let mut v = victim.take().unwrap();
        let phase = if v.output().contains("---> RUNNING") {
            "running"
        } else {
            "starting"
        };
        let what = format!(
            "round {round}: {} killed {delay:?} after {} ({phase})",
            if kill_sampler { "sampler" } else { "sink" },
            if early { "its spawn" } else { "both ran" }
        );
        sigkill(&mut v, &what);
        killed_after.push(format!(
            "{}@{}ms/{phase}",
            if kill_sampler { "sampler" } else { "sink" },
            delay.as_millis()
        ));
        if restart {
            // The killed side comes back for a bounded run; the survivor keeps working with it.
            let binary = if kill_sampler {
                "fairmq-bsampler"
            } else {
                "fairmq-sink"
            };
            let mut again = spawn(binary, RESTART_MESSAGES);
            let status = again.wait(STOP_TIMEOUT);
            let out = again.output();
            assert_eq!(
                status.code(),
                Some(0),
                "{what}: the restarted {binary} failed ({status:?}); output:\n{out}"
            );
            if !kill_sampler {
                // The surviving sampler sent the restarted sink all it expected.
                assert_eq!(received(&out), 300, "{what}: restarted sink\n{out}");
            }
            let survivor = survivor.as_mut().unwrap();
            assert!(
                survivor.try_status().is_none(),
                "{what}: the surviving {} exited; output:\n{}",
                survivor.name,
                survivor.output()
            );
        } else {
            let mut p = survivor.take().unwrap();
            let (took, out) = stop_gracefully(&mut p, &what);
            max_stop = max_stop.max(took);
            assert!(!out.contains("panicked"), "{what}: panic:\n{out}");
            // What the survivor had moved: `Received <n> messages` or `Done <n> iterations`.
            let moved = out
                .lines()
                .find_map(|l| {
                    let (_, rest) = l
                        .split_once("] Received ")
                        .or_else(|| l.split_once("] Done "))?;
                    rest.split(' ').next()?.parse::<u64>().ok()
                })
                .map_or_else(|| "?".to_owned(), |n| n.to_string());
            survivor_moved.push(format!("{}:{moved}", p.name));
            // Both devices are gone, the survivor exited last and gracefully.
            let left = s.objects();
            assert!(left.is_empty(), "{what}, survivor stopped: left {left:?}");
            cleanups += 1;
        }
    }
    // Stop whoever is still running; the last one removes the session.
    for p in [sink.as_mut(), sampler.as_mut()].into_iter().flatten() {
        let (took, _) = stop_gracefully(p, "final stop");
        max_stop = max_stop.max(took);
    }
    s.assert_clean();
    eprintln!(
        "kill rounds: {ROUNDS} kills {killed_after:?}; survivors stopped by SIGINT moved \
         {survivor_moved:?} messages; {cleanups} sessions cleaned by the survivor's graceful \
         exit; slowest SIGINT stop {max_stop:?}"
    );
}

/// A sampler whose segment is full (its queue towards a stopped sink holds every buffer) waits
/// for memory; SIGINT interrupts that wait and the sampler exits 0. The sink, continued and
/// stopped with SIGINT, then removes the session, the buffers it never took included.
#[test]
fn sampler_waiting_for_memory_stops_on_sigint() {
    let s = Session::new("shm_memwait");
    let ipc = Ipc::new("shm_memwait");
    let a = ipc.address();
    // 64 MiB: fewer 1 MiB buffers than the sampler's send queue holds (1000).
    let segment = ["--shm-segment-size", "67108864"];
    let mut sink_args = common_args("sink", &s.name);
    // Rate lines every second: they show when messages flow.
    let sink_chan = chan("pull", "bind", &a).replace("rateLogging=0", "rateLogging=1");
    sink_args.extend(segment);
    sink_args.extend(["--channel-config", &sink_chan]);
    let mut sink = Proc::device(bin("fairmq-sink"), &sink_args);
    sink.wait_for_output("---> RUNNING", STOP_TIMEOUT);
    let mut sampler_args = common_args("sampler", &s.name);
    let sampler_chan = chan("push", "connect", &a);
    sampler_args.extend(segment);
    sampler_args.extend(["--msg-size", "1048576", "--channel-config", &sampler_chan]);
    let mut sampler = Proc::device(bin("fairmq-bsampler"), &sampler_args);
    sampler.wait_for_output("---> RUNNING", STOP_TIMEOUT);
    // Connected (on the queue path a sink stopped before the handshake would leave the sampler
    // waiting for a peer, not for memory): the sink has received messages.
    fairmq_test_support::wait_until(STOP_TIMEOUT, "messages to reach the sink", || {
        sink.output().lines().any(|l| {
            l.split_once("data[0]: in: ")
                .and_then(|(_, rest)| rest.split(' ').next()?.parse::<f64>().ok())
                .is_some_and(|rate| rate > 0.0)
        })
    });
    // A sink that takes nothing (alive: on the queue path its connection stays up).
    sink.signal(Signal::STOP);

    // The sampler fills the segment with queued messages and then waits for memory.
    let seg = ManagedSegment::open(
        &s.id,
        0,
        &SegmentOptions {
            read_only: true,
            ..SegmentOptions::default()
        },
    )
    .expect("open the segment");
    let deadline = Instant::now() + STOP_TIMEOUT;
    while seg.waiters() == 0 {
        assert!(
            sampler.try_status().is_none(),
            "the sampler exited: {}",
            sampler.output()
        );
        assert!(
            Instant::now() < deadline,
            "the sampler never waited for memory: {}",
            segment_state(&s.id)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let free = seg.free_memory();
    assert!(free < 1 << 20, "the segment is not full: {free} bytes free");
    drop(seg);

    let (took, out) = stop_gracefully(&mut sampler, "sampler waiting for memory");
    assert!(!out.contains("panicked"), "{out}");
    eprintln!("a sampler waiting for memory stopped {took:?} after SIGINT");
    sink.signal(Signal::CONT);
    stop_gracefully(&mut sink, "the continued sink");
    s.assert_clean();
}

/// `--shm-segment-size` beyond /dev/shm: a clean error at start, no SIGBUS, nothing left.
#[test]
fn segment_larger_than_dev_shm_is_a_clear_error() {
    let s = Session::new("shm_toobig");
    let ipc = Ipc::new("shm_toobig");
    let free = fairmq_shmem::segment::free_space(std::path::Path::new("/dev/shm"))
        .expect("statvfs /dev/shm");
    let total = dev_shm_total();
    // The free space + 1 GiB, but at least the whole filesystem + 1 GiB: then it can never
    // fit, even if other tests free memory in /dev/shm meanwhile.
    let size = (free + (1 << 30)).max(total + (1 << 30));
    let size_arg = size.to_string();
    let mut args = common_args("sink", &s.name);
    let c = chan("pull", "bind", &ipc.address());
    args.extend(["--shm-segment-size", &size_arg, "--channel-config", &c]);
    let mut p = Proc::device(bin("fairmq-sink"), &args);
    let status = p.wait(STOP_TIMEOUT);
    let out = p.output();
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal: {status:?}\n{out}"
    );
    assert!(
        matches!(status.code(), Some(c) if c != 0),
        "expected a non-zero exit: {status:?}\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("--shm-segment-size"))
        .unwrap_or_else(|| panic!("no error naming --shm-segment-size:\n{out}"));
    assert!(
        line.contains(&format!("{size} bytes needed")),
        "the error does not name the bytes needed ({size}): {line}"
    );
    assert!(
        line.contains("bytes free"),
        "the error does not name the bytes free: {line}"
    );
    assert!(
        !out.contains("RUNNING"),
        "the device got past initialisation:\n{out}"
    );
    s.assert_clean();
}

/// The size of the filesystem of /dev/shm in bytes (`df`).
fn dev_shm_total() -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=size", "/dev/shm"])
        .output()
        .expect("run df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse df output: {out:?}"))
}

/// A sub channel on shmem's libzmq descriptor path (`--shm-metadata-path zmq`, which carries
/// no pub/sub, as in FairMQ): a clear error naming zeromq, non-zero exit, nothing left.
#[test]
fn sub_channel_on_the_zmq_descriptor_path_is_a_clear_error() {
    let s = Session::new("shm_sub");
    let ipc = Ipc::new("shm_sub");
    let mut args = common_args("sink", &s.name);
    let c = chan("sub", "connect", &ipc.address());
    args.extend(["--shm-metadata-path", "zmq", "--channel-config", &c]);
    let mut p = Proc::device(bin("fairmq-sink"), &args);
    let status = p.wait(STOP_TIMEOUT);
    let out = p.output();
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal: {status:?}\n{out}"
    );
    assert!(
        matches!(status.code(), Some(c) if c != 0),
        "expected a non-zero exit: {status:?}\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("PUB/SUB") && l.contains("shared memory") && l.contains("zeromq")),
        "no error saying to use zeromq for the sub channel:\n{out}"
    );
    s.assert_clean();
}
