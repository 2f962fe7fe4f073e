//! FairMQ's `test-ex-req-rep.sh`, over zeromq and over shmem: a client (`req`, connect) and a
//! server (`rep`, bind), started in that order, both with `--max-iterations 1`. Both must exit
//! 0 on their own, the server must have received the client's text once and the client the
//! server's thanks for it once, and nothing of the session may be left in /dev/shm.

use fairmq_test_support::example::lines_with;
use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{Session, TIMEOUT};

const CLIENT: &str = env!("CARGO_BIN_EXE_fairmq-ex-req-rep-client");
const SERVER: &str = env!("CARGO_BIN_EXE_fairmq-ex-req-rep-server");

const DONE: &str = "Configured maximum number of iterations reached. Leaving RUNNING state.";

fn run(transport: &str) {
    let session = Session::new("exreqrep");
    let s = Script::new(&session, transport);
    let chan = s.address("data");
    let req = format!("name=data,type=req,method=connect,rateLogging=0,address={chan}");
    let rep = format!("name=data,type=rep,method=bind,rateLogging=0,address={chan}");
    let mut client = s.device(
        CLIENT,
        "client",
        &["--max-iterations", "1", "--channel-config", &req],
    );
    let mut server = s.device(
        SERVER,
        "server",
        &["--max-iterations", "1", "--channel-config", &rep],
    );

    let cout = client.success();
    let sout = server.success();
    let requests = lines_with(&sout, "Received request from client: ");
    assert_eq!(requests.len(), 1, "{sout}");
    assert!(requests[0].contains("client: \"Hello\""), "{sout}");
    assert_eq!(
        lines_with(&sout, "Sending reply to client.").len(),
        1,
        "{sout}"
    );
    assert!(sout.contains(DONE), "{sout}");
    let replies = lines_with(&cout, "Received reply from server: ");
    assert_eq!(replies.len(), 1, "{cout}");
    assert!(
        replies[0].contains("server: \"Thank you for the \"Hello\"!\""),
        "{cout}"
    );
    assert!(cout.contains(DONE), "{cout}");
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(run);
