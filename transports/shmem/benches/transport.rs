//! PUSH → PULL throughput of the shmem transport in one process (two factories of one session,
//! two threads), over ipc: `cargo bench -p fairmq-shmem --bench transport`.
//! `FMQ_BENCH_SECONDS` sets the time per size (default 2), `FMQ_BENCH_MEMSET=1` writes every
//! payload.

use fairmq_transport::{create_transport, SocketType, TransportConfig};
use std::time::{Duration, Instant};

use fairmq_shmem as _;

const SIZES: [usize; 5] = [64, 4096, 65536, 1 << 20, 8 << 20];

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let seconds: f64 = std::env::var("FMQ_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let memset = std::env::var("FMQ_BENCH_MEMSET").is_ok_and(|v| v == "1");
    let session = format!("bench-{}", std::process::id());
    let cfg = |id: &str| {
        TransportConfig::new(id)
            .with("session", &session)
            .with("shm-segment-size", 2u64 << 30)
    };
    let fa = create_transport("shmem", &cfg("sender")).expect("factory");
    let fb = create_transport("shmem", &cfg("receiver")).expect("factory");
    println!("shmem push -> pull over ipc, 2 GiB segment, memset={memset}");
    for (i, size) in SIZES.into_iter().enumerate() {
        let ep = format!("ipc:///tmp/fmq-shm-bench-{}-{i}", std::process::id());
        let pull = fb.new_socket(SocketType::Pull, "pull").expect("pull");
        let push = fa.new_socket(SocketType::Push, "push").expect("push");
        pull.bind(&ep).expect("bind");
        push.connect(&ep).expect("connect");
        let fr = fb.clone();
        let deadline = Duration::from_secs_f64(seconds);
        let receiver = std::thread::spawn(move || {
            let mut msg = fr.new_message();
            let mut n = 0u64;
            pull.receive(&mut msg, -1).expect("receive");
            let start = Instant::now();
            loop {
                pull.receive(&mut msg, -1).expect("receive");
                if msg.size() == 0 {
                    break;
                }
                n += 1;
            }
            (n, start.elapsed())
        });
        let start = Instant::now();
        while start.elapsed() < deadline {
            let mut msg = fa.new_message_with_size(size, None).expect("alloc");
            if memset {
                msg.data_mut().fill(0);
            }
            push.send(&mut msg, -1).expect("send");
        }
        let mut end = fa.new_message();
        push.send(&mut end, -1).expect("send");
        let (n, d) = receiver.join().expect("receiver");
        let rate = n as f64 / d.as_secs_f64();
        println!(
            "{size:>9} B  {rate:>12.0} msg/s  {:>8.2} GB/s",
            rate * size as f64 / 1e9
        );
        let _ = std::fs::remove_file(ep.trim_start_matches("ipc://"));
    }
}
