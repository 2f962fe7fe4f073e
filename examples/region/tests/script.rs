//! FairMQ's `test-ex-region.sh`, over zeromq and over shmem: a sampler (`--max-iterations 1
//! --msg-size 1000000 --region-linger 500`) sends one 64-part message out of its unmanaged
//! region to a sink (`--max-iterations 1`). Both must exit 0, the sink must have received the
//! 64 parts of 1000000 bytes, the sampler's region callback must have acknowledged every one
//! of the 64 parts (counted from its "Received <n> acks" lines), and nothing of the session
//! may be left in /dev/shm.
//!
//! A second test per transport runs the topology of FairMQ's `fairmq-start-ex-region-advanced`
//! script in small: the sampler on `data1`, a processor copying to `data2` and `data3`, and
//! one sink on each.

use fairmq_test_support::example::lines_with;
use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{Session, Signal, TIMEOUT};

const SAMPLER: &str = env!("CARGO_BIN_EXE_fairmq-ex-region-sampler");
const PROCESSOR: &str = env!("CARGO_BIN_EXE_fairmq-ex-region-processor");
const SINK: &str = env!("CARGO_BIN_EXE_fairmq-ex-region-sink");

/// The parts of every message the sampler sends.
const PARTS: u64 = 64;

/// Sum of the acknowledgements the sampler's region callback reported.
fn acks(sampler_out: &str) -> u64 {
    sampler_out
        .lines()
        .filter_map(|l| l.split("Received ").nth(1)?.strip_suffix(" acks"))
        .map(|n| n.trim().parse::<u64>().expect("a count of acks"))
        .sum()
}

/// Checks the sampler's log: `iterations` messages sent, every part acknowledged.
fn check_sampler(out: &str, iterations: u64) {
    assert!(
        out.contains("Configured maximum number of iterations reached. Stopping sending."),
        "{out}"
    );
    assert_eq!(acks(out), iterations * PARTS, "{out}");
    assert!(out.contains("All acknowledgements received."), "{out}");
    assert!(!out.contains("still not acknowledged"), "{out}");
    // The region events are logged (their timing over shmem is the event thread's).
    assert!(out.contains("Region event: "), "{out}");
}

/// Checks a sink's log: `iterations` messages of 64 parts of `msg_size` bytes.
fn check_sink(out: &str, iterations: usize, msg_size: u64) {
    let expected = format!("Received {PARTS} parts, {} bytes", PARTS * msg_size);
    let received = lines_with(out, "Received ");
    assert_eq!(received.len(), iterations, "{out}");
    assert!(received.iter().all(|l| l.contains(&expected)), "{out}");
    assert!(
        out.contains("Configured max number of iterations reached. Leaving RUNNING state."),
        "{out}"
    );
}

fn run(transport: &str) {
    let session = Session::new("exregion");
    let s = Script::new(&session, transport);
    let chan = s.address("data");
    let push = format!("name=data,type=push,method=bind,address={chan}");
    let pull = format!("name=data,type=pull,method=connect,address={chan}");
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &[
            "--max-iterations",
            "1",
            "--msg-size",
            "1000000",
            "--region-linger",
            "500",
            "--channel-config",
            &push,
        ],
    );
    let mut sink = s.device(
        SINK,
        "sink1",
        &["--max-iterations", "1", "--channel-config", &pull],
    );
    let sampler_out = sampler.success();
    let sink_out = sink.success();
    check_sampler(&sampler_out, 1);
    check_sink(&sink_out, 1, 1_000_000);
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

fn run_advanced(transport: &str) {
    const ITERATIONS: u64 = 3;
    let session = Session::new("exregionadv");
    let s = Script::new(&session, transport);
    let (a1, a2, a3) = (s.address("data1"), s.address("data2"), s.address("data3"));
    let iterations = ITERATIONS.to_string();
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &[
            "--max-iterations",
            &iterations,
            "--msg-size",
            "10000",
            "--chan-name",
            "data1",
            "--channel-config",
            &format!("name=data1,type=push,method=bind,address={a1}"),
        ],
    );
    let mut processor = s.device(
        PROCESSOR,
        "processor1",
        &[
            "--channel-config",
            &format!("name=data1,type=pull,method=connect,address={a1}"),
            &format!("name=data2,type=push,method=bind,address={a2}"),
            &format!("name=data3,type=push,method=bind,address={a3}"),
        ],
    );
    let mut sinks = [("sink1", "data2", &a2), ("sink2", "data3", &a3)].map(|(id, name, a)| {
        s.device(
            SINK,
            id,
            &[
                "--max-iterations",
                &iterations,
                "--chan-name",
                name,
                "--channel-config",
                &format!("name={name},type=pull,method=connect,address={a}"),
            ],
        )
    });
    let sampler_out = sampler.success();
    let sink_outs = sinks.each_mut().map(|s| s.success());
    processor.signal(Signal::INT);
    processor.success();
    check_sampler(&sampler_out, ITERATIONS);
    for out in &sink_outs {
        check_sink(out, ITERATIONS as usize, 10_000);
    }
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(run);

over_each_transport!(run_advanced => advanced_over_zeromq, advanced_over_shmem);
