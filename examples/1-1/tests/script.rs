//! FairMQ's `test-ex-1-1.sh`, over zeromq and over shmem: a sampler (`--rate 1
//! --max-iterations 1`, push, bind) and a sink (`--max-iterations 1`, pull, connect). Both
//! must exit 0 on their own, the sink must have received exactly the sampler's text once, and
//! nothing of the session may be left in /dev/shm.

use fairmq_test_support::example::lines_with;
use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{Session, TIMEOUT};

const SAMPLER: &str = env!("CARGO_BIN_EXE_fairmq-ex-1-1-sampler");
const SINK: &str = env!("CARGO_BIN_EXE_fairmq-ex-1-1-sink");

const DONE: &str = "Configured maximum number of iterations reached. Leaving RUNNING state.";

fn run(transport: &str) {
    let session = Session::new("ex11");
    let s = Script::new(&session, transport);
    let chan = s.address("data");
    let push = format!("name=data,type=push,method=bind,address={chan},rateLogging=0");
    let pull = format!("name=data,type=pull,method=connect,address={chan},rateLogging=0");
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &[
            "--rate",
            "1",
            "--max-iterations",
            "1",
            "--channel-config",
            &push,
        ],
    );
    let mut sink = s.device(
        SINK,
        "sink1",
        &["--max-iterations", "1", "--channel-config", &pull],
    );

    let sent = sampler.success();
    let out = sink.success();
    let sending = lines_with(&sent, "Sending ");
    assert_eq!(sending.len(), 1, "{sent}");
    assert!(sending[0].contains("Sending \"Hello\""), "{sent}");
    assert!(sent.contains(DONE), "{sent}");
    let received = lines_with(&out, "Received: ");
    assert_eq!(received.len(), 1, "{out}");
    assert!(received[0].contains("Received: \"Hello\""), "{out}");
    assert!(out.contains(DONE), "{out}");
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(run);
