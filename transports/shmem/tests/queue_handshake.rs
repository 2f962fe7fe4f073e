//! The handshake of the descriptor-queue path trusts only participants of the session: a hello
//! without the session's secret (or malformed, or naming an object of another session) gets
//! no answer and no connection, and the socket keeps serving its real peers.

mod common;

use common::TestSession;
use fairmq_transport::{create_transport, FactoryPtr, SocketType, TransportConfig};
use std::time::Duration;

fn factory(session: &str, id: &str) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new(id)
            .with("session", session)
            .with("shm-segment-size", 16u64 << 20)
            .with("shm-metadata-path", "queue"),
    )
    .expect("shmem factory")
}

#[test]
fn hellos_without_the_session_secret_are_ignored() {
    let session = TestSession::new("qhello");
    {
        let f = factory(&session.name, "rx");
        let pull = f.new_socket(SocketType::Pull, "data").expect("pull");
        let ep = pull.bind("tcp://127.0.0.1:*").expect("bind");
        let ctx = zmq::Context::new();
        let evil = ctx.socket(zmq::DEALER).expect("dealer");
        evil.set_linger(0).unwrap();
        evil.set_rcvtimeo(300).unwrap();
        evil.connect(&ep).unwrap();
        let other = fairmq_shmem::ShmId::from_session("some-other-session");
        for hello in [
            "garbage".to_string(),
            format!(
                "FMQH1 push {}q_1_1 {}q_1_2",
                session.id.prefix(),
                session.id.prefix()
            ),
            format!(
                "FMQH1 push {}q_1_1 {}q_1_2 0123456789abcdef",
                session.id.prefix(),
                session.id.prefix()
            ),
            format!(
                "FMQH1 push {}q_1_1 {}q_1_2 0123456789abcdef",
                other.prefix(),
                other.prefix()
            ),
        ] {
            evil.send(hello.as_bytes(), 0).unwrap();
            assert!(evil.recv_bytes(0).is_err(), "no answer to {hello:?}");
        }
        assert_eq!(pull.connected_peers(), 0);
        // A real peer still connects and delivers.
        let push = f.new_socket(SocketType::Push, "data").expect("push");
        push.connect(&ep).expect("connect");
        let mut m = f.new_message_with_size(3, None).unwrap();
        m.data_mut().copy_from_slice(b"abc");
        assert_eq!(push.send(&mut m, 5_000), Ok(3));
        let mut r = f.new_message();
        assert_eq!(pull.receive(&mut r, 5_000), Ok(3));
        assert_eq!(r.data(), b"abc");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pull.connected_peers(), 1);
    }
    session.assert_clean();
}
