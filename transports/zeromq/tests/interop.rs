//! Interoperability: the zeromq transport's wire is plain ZeroMQ frames.
//!
//! A pyzmq peer (not ours: the pinned pyzmq in a virtual environment under the target directory,
//! which the test creates on first use) echoes every message it receives back as it received it.
//! Our PAIR socket exchanges single and multipart messages with it over tcp.

use fairmq_test_support::{pyzmq, wait_until, Proc, TIMEOUT};
use fairmq_transport::{create_transport, Parts, SocketType, TransportConfig};

use fairmq_zeromq as _;

const ECHO: &str = r#"
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PAIR)
port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
s.RCVTIMEO = 30000
while True:
    frames = s.recv_multipart()
    if frames == [b"quit"]:
        break
    s.send_multipart(frames)
s.close(linger=1000)
"#;

#[test]
fn single_and_multipart_messages_round_trip_through_pyzmq() {
    let mut peer = Proc::spawn(pyzmq::python(), &["-c", ECHO]);
    // The peer prints its port on a line of its own.
    let port = |out: &str| out.lines().find_map(|l| l.trim().parse::<u16>().ok());
    wait_until(TIMEOUT, "the pyzmq peer's port", || {
        port(&peer.output()).is_some() || peer.try_status().is_some()
    });
    let out = peer.output();
    let port = port(&out).unwrap_or_else(|| panic!("the pyzmq peer did not start: {out:?}"));

    let f = create_transport("zeromq", &TransportConfig::new("interop")).expect("factory");
    let s = f.new_socket(SocketType::Pair, "pair").expect("socket");
    s.connect(&format!("tcp://127.0.0.1:{port}"))
        .expect("connect");

    for payload in [&b"hello from fairmq-rs"[..], b"", &[0xAB; 100_000][..]] {
        let mut m = f.new_message_with_size(payload.len(), None).expect("msg");
        m.data_mut().copy_from_slice(payload);
        assert_eq!(s.send(&mut m, 20_000), Ok(payload.len()));
        let mut r = f.new_message();
        assert_eq!(s.receive(&mut r, 20_000), Ok(payload.len()));
        assert_eq!(r.data(), payload);
    }

    let shapes: [&[&[u8]]; 3] = [
        &[b"header", b"", b"body of the message"],
        &[b"one part"],
        &[&[1u8; 5000], &[2u8; 70_000]],
    ];
    for shape in shapes {
        let mut parts = Parts::new();
        for p in shape {
            let mut m = f.new_message_with_size(p.len(), None).expect("msg");
            m.data_mut().copy_from_slice(p);
            parts.add_part(m);
        }
        let total: usize = shape.iter().map(|p| p.len()).sum();
        assert_eq!(s.send_parts(&mut parts, 20_000), Ok(total));
        let mut back = Parts::new();
        assert_eq!(s.receive_parts(&mut back, 20_000), Ok(total));
        assert_eq!(back.len(), shape.len());
        for (got, want) in back.iter().zip(shape) {
            assert_eq!(got.data(), *want);
        }
    }

    let mut quit = f.new_message_with_size(4, None).expect("msg");
    quit.data_mut().copy_from_slice(b"quit");
    s.send(&mut quit, 20_000).expect("send quit");
    peer.success();
}
