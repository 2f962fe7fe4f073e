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

/// A PAIR takes one peer: a second connector is refused (and keeps asking), and gets the
/// connection once the first peer is gone.
#[test]
fn pair_refuses_a_second_peer_until_the_first_is_gone() {
    let session = TestSession::new("qpair");
    {
        let f = factory(&session.name, "a");
        let a = f.new_socket(SocketType::Pair, "a").expect("pair");
        let ep = a.bind(&session.ipc("pair")).expect("bind");
        let b = f.new_socket(SocketType::Pair, "b").expect("pair");
        b.connect(&ep).expect("connect");
        common::wait_until(Duration::from_secs(20), "b connected", || {
            b.connected_peers() == 1
        });
        let c = f.new_socket(SocketType::Pair, "c").expect("pair");
        c.connect(&ep).expect("connect");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(c.connected_peers(), 0, "refused while b is there");
        assert_eq!(a.connected_peers(), 1);
        drop(b);
        common::wait_until(Duration::from_secs(20), "c connected", || {
            c.connected_peers() == 1
        });
        let mut m = f.new_message_with_size(2, None).unwrap();
        m.data_mut().copy_from_slice(b"hi");
        assert_eq!(c.send(&mut m, 5_000), Ok(2));
        let mut r = f.new_message();
        assert_eq!(a.receive(&mut r, 5_000), Ok(2));
        assert_eq!(r.data(), b"hi");
    }
    session.assert_clean();
}
