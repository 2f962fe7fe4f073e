//! The multipart example run as FairMQ runs it, over zeromq and over shmem:
//!
//! - `test-ex-multipart.sh`: a sampler with `--max-iterations 1` and a sink on a `pair`
//!   channel over ipc; both must exit 0 and the sink must have received the seven parts with
//!   their sizes and the stop flag 1.
//! - the start script's topology (`push`/`pull` over tcp, the sampler's default of 5
//!   iterations): five messages, stop flags 0, 0, 0, 0, 1.
//! - `ex-multipart-multiple-endpoints.json` (`--mq-config`): one sampler pushing to two sinks
//!   over two endpoints of one channel (one of them bound by `@` on a connect channel); the
//!   tcp ports of the shipped file are replaced by free ones.
//!
//! Every test ends with nothing of the session left in /dev/shm.

use std::path::Path;

use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{wait_until, Session, Signal, TIMEOUT};

const SAMPLER: &str = env!("CARGO_BIN_EXE_fairmq-ex-multipart-sampler");
const SINK: &str = env!("CARGO_BIN_EXE_fairmq-ex-multipart-sink");

/// The stop flags of the messages a sink's output shows, in order; asserts that each message
/// had the seven parts with the expected sizes.
fn received_flags(out: &str) -> Vec<i32> {
    let lines: Vec<&str> = out.lines().collect();
    let mut flags = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("Received message with ") {
            continue;
        }
        assert!(line.ends_with("Received message with 7 parts"), "{out}");
        let flag = lines[i + 1]
            .rsplit_once("Received part 1 (header) with stopFlag: ")
            .unwrap_or_else(|| panic!("no header line after {line}:\n{out}"))
            .1;
        flags.push(flag.trim().parse().expect("a number"));
        for (k, size) in [1000, 500, 600, 700, 0, 100].into_iter().enumerate() {
            let want = format!("Received part {} of size: {size}", k + 2);
            assert!(lines[i + 2 + k].ends_with(&want), "{want}:\n{out}");
        }
    }
    flags
}

/// The stop flags the sampler says it sent, in order.
fn sent_flags(out: &str) -> Vec<i32> {
    out.lines()
        .filter_map(|l| l.rsplit_once("Sending header with stopFlag: "))
        .map(|(_, f)| f.trim().parse().expect("a number"))
        .collect()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

fn test_script(transport: &str) {
    let session = Session::new("exmp");
    let s = Script::new(&session, transport);
    let addr = s.address("data");
    let pair_connect =
        format!("name=data,type=pair,method=connect,rateLogging=0,address={addr},linger=1000");
    let pair_bind = format!("name=data,type=pair,method=bind,rateLogging=0,address={addr}");
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &["--max-iterations", "1", "--channel-config", &pair_connect],
    );
    let mut sink = s.device(SINK, "sink1", &["--channel-config", &pair_bind]);
    let sent = sampler.success();
    let out = sink.success();
    assert_eq!(sent_flags(&sent), [1], "{sent}");
    assert!(sent.contains("Sending body of size: 1000"), "{sent}");
    assert_eq!(received_flags(&out), [1], "{out}");
    assert!(out.contains("stopFlag is 1, going IDLE"), "{out}");
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

fn start_script(transport: &str) {
    let session = Session::new("exmps");
    let s = Script::new(&session, transport);
    let addr = format!("tcp://127.0.0.1:{}", free_port());
    let push = format!("name=data,type=push,method=connect,rateLogging=0,address={addr}");
    let pull = format!("name=data,type=pull,method=bind,rateLogging=0,address={addr}");
    // No --max-iterations: the sampler's default is 5.
    let mut sampler = s.device(SAMPLER, "sampler1", &["--channel-config", &push]);
    let mut sink = s.device(SINK, "sink1", &["--channel-config", &pull]);
    let sent = sampler.success();
    let out = sink.success();
    assert_eq!(sent_flags(&sent), [0, 0, 0, 0, 1], "{sent}");
    assert_eq!(received_flags(&out), [0, 0, 0, 0, 1], "{out}");
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

fn multiple_endpoints(transport: &str) {
    let session = Session::new("exmpe");
    let s = Script::new(&session, transport);
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ex-multipart-multiple-endpoints.json");
    let json = std::fs::read_to_string(&shipped).expect("the shipped JSON config");
    assert!(json.contains(":5555") && json.contains(":5556"), "{json}");
    let (p1, p2) = (free_port(), free_port());
    let json = json
        .replace(":5555", &format!(":{p1}"))
        .replace(":5556", &format!(":{p2}"));
    let config = session
        .dir
        .path()
        .join("ex-multipart-multiple-endpoints.json");
    std::fs::write(&config, json).expect("write the config");
    let config = config.to_str().expect("a UTF-8 path");

    let mut sinks = ["sink1", "sink2"].map(|id| s.device(SINK, id, &["--mq-config", config]));
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &["--max-iterations", "4", "--mq-config", config],
    );
    let sent = sampler.success();
    assert_eq!(sent_flags(&sent), [0, 0, 0, 1], "{sent}");
    // The sink that got the last message (stop flag 1) leaves RUNNING and exits by itself;
    // the other one is stopped with SIGINT.
    let mut last = None;
    wait_until(TIMEOUT, "a sink to receive the stop flag", || {
        last = sinks
            .iter()
            .position(|p| p.output().contains("stopFlag is 1, going IDLE"));
        last.is_some()
    });
    let last = last.expect("found above");
    let out_last = sinks[last].success();
    let other = 1 - last;
    sinks[other].signal(Signal::INT);
    let out_other = sinks[other].success();
    let (flags_last, flags_other) = (received_flags(&out_last), received_flags(&out_other));
    assert_eq!(flags_last.last(), Some(&1), "{out_last}");
    assert!(!flags_other.contains(&1), "{out_other}");
    assert_eq!(
        flags_last.len() + flags_other.len(),
        4,
        "sink{}:\n{out_last}\nsink{}:\n{out_other}",
        last + 1,
        other + 1
    );
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(test_script => test_script_over_zeromq, test_script_over_shmem);

over_each_transport!(start_script => start_script_topology_over_zeromq, start_script_topology_over_shmem);

over_each_transport!(multiple_endpoints => multiple_endpoints_json_over_zeromq, multiple_endpoints_json_over_shmem);
