//! FairMQ's single-message and multipart descriptor frames cannot be told apart (spec §5.5
//! [quirk]): a multipart receive of a single message read its size as a part count. Ours can:
//! a multipart receive takes a single message as one part, a single receive takes a one-part
//! multipart message, and a single receive of a several-part message is refused clearly (on the
//! libzmq descriptor path, where both go through the same frames).

use fairmq_test_support::Session;
use fairmq_transport::{create_transport, FactoryPtr, Parts, SocketType, TransportConfig};

const TIMEOUT_MS: i64 = 20_000;

fn factory(s: &Session, id: &str) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new(id)
            .with("session", s.name.as_str())
            .with("shm-segment-size", 32u64 << 20)
            .with("shm-metadata-path", "zmq"),
    )
    .expect("shmem factory")
}

fn message(f: &FactoryPtr, byte: u8, len: usize) -> fairmq_transport::MessagePtr {
    let mut m = f.new_message_with_size(len, None).expect("allocate");
    m.data_mut().fill(byte);
    m
}

#[test]
fn single_and_multipart_sends_reach_either_receive() {
    let s = Session::new("mixed-api");
    {
        let (fa, fb) = (factory(&s, "a"), factory(&s, "b"));
        let push = fa.new_socket(SocketType::Push, "push").expect("push");
        let pull = fb.new_socket(SocketType::Pull, "pull").expect("pull");
        let ep = pull.bind(&s.ipc("mixed")).expect("bind");
        push.connect(&ep).expect("connect");

        // send -> receive_parts: one part.
        let mut m = message(&fa, 1, 1000);
        assert_eq!(push.send(&mut m, TIMEOUT_MS), Ok(1000));
        let mut parts = Parts::new();
        assert_eq!(pull.receive_parts(&mut parts, TIMEOUT_MS), Ok(1000));
        assert_eq!(parts.len(), 1);
        assert_eq!(
            parts.iter().next().map(|p| p.data().to_vec()),
            Some(vec![1; 1000])
        );

        // send_parts of one part -> receive.
        let mut one = Parts::new();
        one.add_part(message(&fa, 2, 300));
        assert_eq!(push.send_parts(&mut one, TIMEOUT_MS), Ok(300));
        let mut got = fb.new_message();
        assert_eq!(pull.receive(&mut got, TIMEOUT_MS), Ok(300));
        assert_eq!(got.data(), &[2; 300][..]);

        // send_parts of two parts -> receive: refused (the frame is dropped), then the next
        // message still arrives.
        let mut two = Parts::new();
        two.add_part(message(&fa, 3, 10));
        two.add_part(message(&fa, 4, 20));
        assert_eq!(push.send_parts(&mut two, TIMEOUT_MS), Ok(30));
        let mut next = message(&fa, 5, 50);
        assert_eq!(push.send(&mut next, TIMEOUT_MS), Ok(50));
        let mut got = fb.new_message();
        assert_eq!(pull.receive(&mut got, TIMEOUT_MS), Ok(50));
        assert_eq!(got.data(), &[5; 50][..]);
    }
    s.assert_clean();
}
