//! FairMQ's `test-ex-copypush.sh`, over zeromq and over shmem: a sampler whose one `data`
//! channel binds two addresses (two sub-channels), and two sinks, each connected to one of
//! them, all with `--max-iterations 1`. Every device must exit 0 on its own, the sampler must
//! have seen two sub-channels, each sink must have received the first counter (0) exactly
//! once (the message and its copy), and nothing of the session may be left in /dev/shm.

use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{Session, TIMEOUT};

const SAMPLER: &str = env!("CARGO_BIN_EXE_fairmq-ex-copypush-sampler");
const SINK: &str = env!("CARGO_BIN_EXE_fairmq-ex-copypush-sink");

const DONE: &str = "Configured maximum number of iterations reached. Leaving RUNNING state.";

fn run(transport: &str) {
    let session = Session::new("excopypush");
    let s = Script::new(&session, transport);
    let (chan1, chan2) = (s.address("data_1"), s.address("data_2"));
    let push =
        format!("name=data,type=push,method=bind,rateLogging=0,address={chan1},address={chan2}");
    let pull1 = format!("name=data,type=pull,method=connect,rateLogging=0,address={chan1}");
    let pull2 = format!("name=data,type=pull,method=connect,rateLogging=0,address={chan2}");
    let mut sampler = s.device(
        SAMPLER,
        "sampler1",
        &["--max-iterations", "1", "--channel-config", &push],
    );
    let mut sinks = [("sink1", &pull1), ("sink2", &pull2)].map(|(id, chan)| {
        s.device(
            SINK,
            id,
            &["--max-iterations", "1", "--channel-config", chan],
        )
    });

    let sent = sampler.success();
    assert!(
        sent.contains("Sending to 2 sub-channels of 'data'"),
        "{sent}"
    );
    assert!(sent.contains(DONE), "{sent}");
    for sink in &mut sinks {
        let out = sink.success();
        let received: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("Received message: "))
            .collect();
        assert_eq!(received.len(), 1, "{out}");
        assert!(received[0].contains("Received message: \"0\""), "{out}");
        assert!(out.contains(DONE), "{out}");
    }
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(run);
