//! FairMQ's `test-ex-1-n-1.sh`, over zeromq and over shmem: a sampler and a sink with
//! `--max-iterations 2`, two processors between them that are stopped with SIGINT once the
//! sink is done. Every device must exit 0, the sink must have received the sampler's text as
//! a processor modified it, and nothing of the session may be left in /dev/shm.

use fairmq_test_support::example::lines_with;
use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{Session, Signal, TIMEOUT};

const SAMPLER: &str = env!("CARGO_BIN_EXE_fairmq-ex-1-n-1-sampler");
const PROCESSOR: &str = env!("CARGO_BIN_EXE_fairmq-ex-1-n-1-processor");
const SINK: &str = env!("CARGO_BIN_EXE_fairmq-ex-1-n-1-sink");

fn run(transport: &str) {
    let session = Session::new("ex1n1");
    let s = Script::new(&session, transport);
    let (chan1, chan2) = (s.address("data1"), s.address("data2"));
    let push1 = format!("name=data1,type=push,method=bind,address={chan1},rateLogging=0");
    let pull1 = format!("name=data1,type=pull,method=connect,address={chan1},rateLogging=0");
    let push2 = format!("name=data2,type=push,method=connect,address={chan2},rateLogging=0");
    let pull2 = format!("name=data2,type=pull,method=bind,address={chan2},rateLogging=0");
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &["--max-iterations", "2", "--channel-config", &push1],
    );
    let mut processors = ["processor1", "processor2"]
        .map(|id| s.device(PROCESSOR, id, &["--channel-config", &pull1, &push2]));
    let mut sink = s.device(
        SINK,
        "sink1",
        &["--max-iterations", "2", "--channel-config", &pull2],
    );

    sampler.success();
    let out = sink.success();
    for p in &processors {
        p.signal(Signal::INT);
    }
    for p in &mut processors {
        p.success();
    }
    let received = lines_with(&out, "Received: ");
    assert_eq!(received.len(), 2, "{out}");
    for line in received {
        assert!(
            line.contains("\"Hello (modified by processor1)\"")
                || line.contains("\"Hello (modified by processor2)\""),
            "{line}"
        );
    }
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(run);
