//! The multiple-channels example run as FairMQ's `test-ex-multiple-channels.sh` runs it, over
//! zeromq and over shmem (FairMQ's script runs on zeromq only: FairMQ's shmem transport refuses
//! pub/sub; here the shmem runs give every device `--shm-metadata-path queue`, the shmem
//! descriptor queues, which carry pub/sub).
//!
//! - `test_script_*`: sink and sampler with `--max-iterations 1`, then the broadcaster; sink
//!   and sampler must exit 0 by themselves, the broadcaster on SIGINT; the sink must have had
//!   the sampler's text and a broadcast.
//! - `sampler_polls_*`: the sampler joins a running broadcast with `--max-iterations 3`; it
//!   must have printed broadcasts between its sends (its poller over both channels), and the
//!   sink (no limit) must have received exactly its three messages.
//!
//! - `sampler_polls_over_shmem_with_a_zeromq_broadcast`: the same with the broadcast channels on
//!   zeromq and the rest on shmem's default descriptor path: the sampler's poller spans both.
//!
//! Every test ends with nothing of the session left in /dev/shm.

use fairmq_test_support::example::lines_with;
use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{wait_until, Proc, Session, Signal, TIMEOUT};

const SAMPLER: &str = env!("CARGO_BIN_EXE_fairmq-ex-multiple-channels-sampler");
const SINK: &str = env!("CARGO_BIN_EXE_fairmq-ex-multiple-channels-sink");
const BROADCASTER: &str = env!("CARGO_BIN_EXE_fairmq-ex-multiple-channels-broadcaster");

/// The run's devices and their channel configurations.
struct Run<'a> {
    s: Script<'a>,
    data: String,
    broadcast: String,
    /// `,transport=zeromq` on the broadcast channels of shmem devices (on shmem's default
    /// descriptor path, which refuses pub/sub), or nothing.
    broadcast_transport: &'static str,
}

impl<'a> Run<'a> {
    fn new(session: &'a Session, transport: &'a str) -> Self {
        let s = Script::new(session, transport);
        let (data, broadcast) = (s.address("data"), s.address("broadcast"));
        Run {
            s,
            data,
            broadcast,
            broadcast_transport: "",
        }
    }

    /// Shmem devices whose broadcast channels use zeromq: the sampler's poller spans both.
    fn with_zeromq_broadcast(mut self) -> Self {
        self.broadcast_transport = ",transport=zeromq";
        self
    }

    /// Starts a device with the script's options, the channels given and, over shmem, the
    /// descriptor queues (which carry pub/sub).
    fn device(&self, program: &str, id: &str, args: &[&str], channels: &[String]) -> Proc {
        let mut all: Vec<&str> = args.to_vec();
        if self.s.transport == "shmem" && self.broadcast_transport.is_empty() {
            all.extend(["--shm-metadata-path", "queue"]);
        }
        all.push("--channel-config");
        all.extend(channels.iter().map(String::as_str));
        self.s.device(program, id, &all)
    }

    fn sub(&self) -> String {
        format!(
            "name=broadcast,type=sub,method=connect,rateLogging=0,address={}{}",
            self.broadcast, self.broadcast_transport
        )
    }

    fn sink(&self, args: &[&str]) -> Proc {
        let pull = format!(
            "name=data,type=pull,method=connect,rateLogging=0,address={}",
            self.data
        );
        self.device(SINK, "sink1", args, &[pull, self.sub()])
    }

    fn sampler(&self, args: &[&str]) -> Proc {
        let push = format!(
            "name=data,type=push,method=bind,rateLogging=0,address={}",
            self.data
        );
        self.device(SAMPLER, "sampler1", args, &[push, self.sub()])
    }

    fn broadcaster(&self) -> Proc {
        let publ = format!(
            "name=broadcast,type=pub,method=bind,rateLogging=0,address={}{}",
            self.broadcast, self.broadcast_transport
        );
        self.device(BROADCASTER, "broadcaster1", &[], &[publ])
    }
}

fn test_script(transport: &str) {
    let session = Session::new("exmc");
    let run = Run::new(&session, transport);
    let mut sink = run.sink(&["--max-iterations", "1"]);
    // FairMQ's script sleeps a second here; this waits for the sink to run instead.
    sink.wait_for_output("---> RUNNING", TIMEOUT);
    let mut sampler = run.sampler(&["--max-iterations", "1"]);
    let mut broadcaster = run.broadcaster();

    let sent = sampler.success();
    let out = sink.success();
    broadcaster.signal(Signal::INT);
    let published = broadcaster.success();

    assert_eq!(lines_with(&sent, "Sent \"Hello\"").len(), 1, "{sent}");
    assert_eq!(
        lines_with(&out, "Received message: \"Hello\"").len(),
        1,
        "{out}"
    );
    assert!(
        !lines_with(&out, "Received broadcast: \"OK\"").is_empty(),
        "{out}"
    );
    assert!(
        out.contains("Configured maximum number of iterations reached & Received messages from both sources."),
        "{out}"
    );
    assert!(
        !lines_with(&published, "Sending OK").is_empty(),
        "{published}"
    );
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

fn sampler_polls(transport: &str, zeromq_broadcast: bool) {
    let session = Session::new("exmcp");
    let mut run = Run::new(&session, transport);
    if zeromq_broadcast {
        run = run.with_zeromq_broadcast();
    }
    let mut sink = run.sink(&[]);
    let mut broadcaster = run.broadcaster();
    // The broadcast is on (the sink hears it) before the sampler starts.
    sink.wait_for_output("Received broadcast: \"OK\"", TIMEOUT);
    let mut sampler = run.sampler(&["--max-iterations", "3", "--text", "multiplexed"]);
    let sent = sampler.success();
    wait_until(TIMEOUT, "the sink to receive the 3 messages", || {
        lines_with(&sink.output(), "Received message: ").len() >= 3
    });
    sink.signal(Signal::INT);
    let out = sink.success();
    broadcaster.signal(Signal::INT);
    broadcaster.success();

    assert_eq!(lines_with(&sent, "Sent \"multiplexed\"").len(), 3, "{sent}");
    // The sampler's loop ran at least three seconds while "OK" was published every second.
    assert!(
        !lines_with(&sent, "Received broadcast: \"OK\"").is_empty(),
        "{sent}"
    );
    assert_eq!(lines_with(&out, "Received message: ").len(), 3, "{out}");
    assert_eq!(
        lines_with(&out, "Received message: \"multiplexed\"").len(),
        3,
        "{out}"
    );
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(test_script => test_script_over_zeromq, test_script_over_shmem);

over_each_transport!(|t| sampler_polls(t, false) => sampler_polls_over_zeromq, sampler_polls_over_shmem);

/// Shmem devices on the default descriptor path with the broadcast on zeromq: the sampler's
/// poller spans two transports (FairMQ refuses to build such a poller).
#[test]
fn sampler_polls_over_shmem_with_a_zeromq_broadcast() {
    sampler_polls("shmem", true);
}
