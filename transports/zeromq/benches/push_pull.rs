//! PUSH → PULL throughput over ipc: the zeromq transport against raw `zmq` sockets, in one run.
//!
//! `cargo bench -p fairmq-zeromq --bench push_pull` prints msg/s and GB/s per message size.
//! Set `FMQ_BENCH_SECONDS` to change the time per measurement (default 2).

use fairmq_transport::{create_transport, SocketType, TransportConfig};
use std::time::{Duration, Instant};

// Link the transport so that its registration is present.
use fairmq_zeromq as _;

/// One measurement: message size and count in, receiver time out.
type Run = fn(usize, u64) -> Duration;

const SIZES: [usize; 4] = [64, 4096, 65536, 1 << 20];

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
        _ => 4_000.0,
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

fn raw(size: usize, n: u64) -> Duration {
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).expect("pull");
    let push = ctx.socket(zmq::PUSH).expect("push");
    let ep = endpoint("raw", size);
    pull.bind(&ep).expect("bind");
    push.connect(&ep).expect("connect");
    let receiver = std::thread::spawn(move || {
        let mut msg = zmq::Message::new();
        pull.recv(&mut msg, 0).expect("recv");
        let start = Instant::now();
        for _ in 1..n {
            pull.recv(&mut msg, 0).expect("recv");
            assert_eq!(msg.len(), size);
        }
        start.elapsed()
    });
    for _ in 0..n {
        push.send(zmq::Message::with_size(size), 0).expect("send");
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
    println!("push -> pull over ipc, one process, two threads (median of 3 runs each);\n'fairmq' makes a new message per send like FairMQ's bsampler, 'reuse' rebuilds one");
    for size in SIZES {
        let n = if quick { 100 } else { count_for(size) };
        let mut results = Vec::new();
        let runs: [(&str, Run); 3] = [("raw zmq", raw), ("fairmq", ours), ("reuse", ours_reuse)];
        for (label, run) in runs {
            let mut runs: Vec<Duration> = (0..3).map(|_| run(size, n)).collect();
            runs.sort();
            results.push(report(label, size, n, runs[1]));
        }
        println!(
            "{:>8} {size:>8} B  ours/raw = {:.2} (new message per send), {:.2} (rebuilt message)",
            "ratio",
            results[1] / results[0],
            results[2] / results[0]
        );
    }
}
