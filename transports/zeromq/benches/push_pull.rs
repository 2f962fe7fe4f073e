//! PUSH → PULL throughput over ipc: the zeromq transport against raw `zmq` sockets, in one run.
//!
//! `cargo bench -p fairmq-zeromq --bench push_pull` prints msg/s and GB/s per message size.
//! Set `FMQ_BENCH_SECONDS` to change the time per measurement (default 2), `FMQ_BENCH_SIZES`
//! (comma-separated bytes) to measure only some sizes.
//!
//! Both sides allocate with jemalloc, libzmq's `malloc`/`free` included, as the device
//! executables do (`fairmq-devices`, feature `jemalloc`).

use fairmq_transport::{create_transport, SocketType, TransportConfig};
use std::time::{Duration, Instant};

// Link the transport so that its registration is present.
use fairmq_zeromq as _;

/// The devices' allocator, for Rust and (unprefixed `malloc`/`free`) for libzmq.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tikv_jemalloc_sys as _;

/// One measurement: message size and count in, receiver time out.
type Run = fn(usize, u64) -> Duration;

/// Runs per variant and size.
const REPEATS: usize = 5;

const SIZES: [usize; 5] = [64, 4096, 65536, 1 << 20, 8 << 20];

fn seconds() -> f64 {
    std::env::var("FMQ_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0)
}

/// Number of messages for roughly `seconds()` at a rough first estimate of the rate.
fn count_for(size: usize) -> u64 {
    let per_sec = match size {
        0..=1024 => 2_000_000.0,
        1025..=16384 => 300_000.0,
        16385..=262144 => 40_000.0,
        262145..=2097152 => 4_000.0,
        _ => 500.0,
    };
    ((per_sec * seconds()) as u64).max(1000)
}

fn endpoint(tag: &str, size: usize) -> String {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "ipc:///tmp/fmq-bench-{}-{tag}-{size}-{run}",
        std::process::id()
    )
}

fn remove_endpoint(ep: &str) {
    let _ = std::fs::remove_file(ep.trim_start_matches("ipc://"));
}

/// One `zmq_msg_t` for the raw baseline.
fn raw_msg() -> zmq_sys::zmq_msg_t {
    zmq_sys::zmq_msg_t { __: [0; 64] }
}

/// Raw libzmq as FairMQ's zeromq transport uses it: `zmq_msg_init_size` (not initialised) and
/// `zmq_msg_send` per message, `zmq_msg_recv` into one message.
fn raw(size: usize, n: u64) -> Duration {
    let ctx = zmq::Context::new();
    let mut pull = ctx.socket(zmq::PULL).expect("pull");
    let mut push = ctx.socket(zmq::PUSH).expect("push");
    let ep = endpoint("raw", size);
    pull.bind(&ep).expect("bind");
    push.connect(&ep).expect("connect");
    let receiver = std::thread::spawn(move || {
        let mut msg = raw_msg();
        let sock = pull.as_mut_ptr();
        // SAFETY: `msg` is initialised before use and closed at the end; `sock` is the live
        // socket owned by this thread.
        unsafe {
            zmq_sys::zmq_msg_init(&mut msg);
            assert!(zmq_sys::zmq_msg_recv(&mut msg, sock, 0) >= 0);
            let start = Instant::now();
            for _ in 1..n {
                assert!(zmq_sys::zmq_msg_recv(&mut msg, sock, 0) >= 0);
                assert_eq!(zmq_sys::zmq_msg_size(&msg), size);
            }
            let d = start.elapsed();
            zmq_sys::zmq_msg_close(&mut msg);
            d
        }
    });
    let sock = push.as_mut_ptr();
    for _ in 0..n {
        let mut msg = raw_msg();
        // SAFETY: the message is initialised with its size and handed to libzmq by the send
        // (which leaves it empty); the close releases nothing then.
        unsafe {
            assert_eq!(zmq_sys::zmq_msg_init_size(&mut msg, size), 0);
            assert!(zmq_sys::zmq_msg_send(&mut msg, sock, 0) >= 0);
            zmq_sys::zmq_msg_close(&mut msg);
        }
    }
    let d = receiver.join().expect("receiver");
    remove_endpoint(&ep);
    d
}

fn ours(size: usize, n: u64) -> Duration {
    ours_with(size, n, false)
}

fn ours_reuse(size: usize, n: u64) -> Duration {
    ours_with(size, n, true)
}

/// The transport, creating a new message per send (as FairMQ's bsampler) or rebuilding one.
fn ours_with(size: usize, n: u64, reuse: bool) -> Duration {
    let f = create_transport("zeromq", &TransportConfig::new("bench")).expect("factory");
    let pull = f.new_socket(SocketType::Pull, "pull").expect("pull");
    let push = f.new_socket(SocketType::Push, "push").expect("push");
    let ep = endpoint("ours", size);
    pull.bind(&ep).expect("bind");
    push.connect(&ep).expect("connect");
    let fr = f.clone();
    let receiver = std::thread::spawn(move || {
        let mut msg = fr.new_message();
        pull.receive(&mut msg, -1).expect("receive");
        let start = Instant::now();
        for _ in 1..n {
            pull.receive(&mut msg, -1).expect("receive");
            assert_eq!(msg.size(), size);
        }
        start.elapsed()
    });
    let mut msg = f.new_message();
    for _ in 0..n {
        if reuse {
            msg.rebuild_with_size(size, None).expect("alloc");
        } else {
            msg = f.new_message_with_size(size, None).expect("alloc");
        }
        push.send(&mut msg, -1).expect("send");
    }
    let d = receiver.join().expect("receiver");
    remove_endpoint(&ep);
    d
}

fn report(label: &str, size: usize, n: u64, d: Duration) -> f64 {
    let rate = (n - 1) as f64 / d.as_secs_f64();
    println!(
        "{label:>8} {size:>8} B  {rate:>12.0} msg/s  {:>7.3} GB/s",
        rate * size as f64 / 1e9
    );
    rate
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing else: run small.
    let quick = std::env::args().any(|a| a == "--test");
    println!("push -> pull over ipc, one process, two threads (median of {REPEATS} interleaved runs each);\n'fairmq' makes a new message per send like FairMQ's bsampler, 'reuse' rebuilds one");
    // FMQ_BENCH_SIZES=64,4096 limits the sizes (for profiling one point).
    let sizes: Vec<usize> = match std::env::var("FMQ_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    for size in sizes {
        let n = if quick { 100 } else { count_for(size) };
        let all: [(&str, Run); 3] = [("raw zmq", raw), ("fairmq", ours), ("reuse", ours_reuse)];
        // FMQ_BENCH_ONLY=fairmq runs one of the three alone (for profiling it).
        let only = std::env::var("FMQ_BENCH_ONLY").ok();
        let runs: Vec<(&str, Run)> = all
            .into_iter()
            .filter(|(label, _)| only.as_deref().is_none_or(|o| label.starts_with(o)))
            .collect();
        if runs.is_empty() {
            eprintln!("FMQ_BENCH_ONLY={only:?} names none of raw, fairmq, reuse");
            std::process::exit(2);
        }
        // Interleaved (raw, ours, reuse, raw, ...), so that a change of the machine's speed
        // hits all three alike; the median of REPEATS each.
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
        for _ in 0..REPEATS {
            for (i, (_, run)) in runs.iter().enumerate() {
                times[i].push(run(size, n));
            }
        }
        let results: Vec<f64> = runs
            .iter()
            .zip(&mut times)
            .map(|((label, _), t)| {
                t.sort();
                report(label, size, n, t[REPEATS / 2])
            })
            .collect();
        if results.len() < all.len() {
            continue;
        }
        println!(
            "{:>8} {size:>8} B  ours/raw = {:.2} (new message per send), {:.2} (rebuilt message)",
            "ratio",
            results[1] / results[0],
            results[2] / results[0]
        );
    }
}
