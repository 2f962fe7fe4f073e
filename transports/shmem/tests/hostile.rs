//! Hostile input on a shmem channel bound on tcp (issue 11, item 4): a peer that reaches the
//! port but is not part of the session sends garbage, forged descriptors (offsets inside the
//! segment, single and multipart), a genuine descriptor with a wrong session secret, and replays
//! of genuine descriptors that were already consumed. The peer is a raw libzmq PUSH socket.
//!
//! Every such frame is dropped and counted (`ShmSocket::rejected`), the receiver keeps
//! receiving the legitimate messages of a real sender, the allocator's `verify()` passes and its
//! figures do not move for a refused frame: nothing was freed that was not allocated.
//!
//! Each test has its own session; afterwards /dev/shm holds nothing of it.

mod common;

use std::time::Duration;

use common::{wait_until, TestSession};
use fairmq_shmem::transport::{ShmMessage, ShmSocket};
use fairmq_shmem::{HeapStats, ManagedSegment, ManagementSegment, SegmentOptions};
use fairmq_transport::{
    create_transport, FactoryPtr, MessagePtr, Parts, Socket, SocketType, TransferError,
    TransportConfig,
};

const TIMEOUT_MS: i64 = 10_000;

fn factory(session: &str, id: &str) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new(id)
            .with("session", session)
            .with("shm-segment-size", 16u64 << 20)
            // Descriptors over libzmq (what a peer on the tcp port can reach), whatever
            // FAIRMQ_SHM_METADATA_PATH says.
            .with("shm-metadata-path", "zmq"),
    )
    .expect("shmem factory")
}

fn rejected(s: &dyn Socket) -> u64 {
    s.as_any()
        .downcast_ref::<ShmSocket>()
        .expect("a shmem socket")
        .rejected()
}

/// What a refused frame must leave as it was: the verified heap and its counters.
fn heap_state(seg: &ManagedSegment) -> (HeapStats, u64, u64) {
    (
        seg.verify().expect("the heap verifies"),
        seg.allocation_count(),
        seg.live_allocations(),
    )
}

/// A FairMQ `MetaHeader` (40 bytes) of a managed buffer.
fn header(size: u64, handle: i64, segment: u16) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    b[0..8].copy_from_slice(&size.to_le_bytes());
    b[16..24].copy_from_slice(&handle.to_le_bytes());
    b[24..32].copy_from_slice(&(-1i64).to_le_bytes());
    b[34..36].copy_from_slice(&segment.to_le_bytes());
    b[36] = 1;
    b
}

fn sealed_single(h: &[u8], secret: u64, tag: u64) -> Vec<u8> {
    let mut b = h.to_vec();
    b.extend_from_slice(&secret.to_le_bytes());
    b.extend_from_slice(&tag.to_le_bytes());
    b
}

fn multipart(hs: &[Vec<u8>], seal: Option<u64>) -> Vec<u8> {
    let mut b = (hs.len() as u64).to_le_bytes().to_vec();
    for h in hs {
        b.extend_from_slice(h);
    }
    if let Some(secret) = seal {
        b.extend_from_slice(&secret.to_le_bytes());
        for (i, _) in hs.iter().enumerate() {
            b.extend_from_slice(&(0x1234_5678_9ABC_DEF0u64 ^ i as u64).to_le_bytes());
        }
    }
    b
}

/// Waits until `pull` has refused `expected` frames in all, receiving (and failing the test on
/// any message it would deliver meanwhile).
fn expect_rejected(pull: &dyn Socket, f: &FactoryPtr, expected: u64, multi: bool) {
    wait_until(
        Duration::from_secs(20),
        "the hostile frames to be refused",
        || {
            let r = if multi {
                let mut parts = Parts::new();
                pull.receive_parts(&mut parts, 50).map(|_| parts.len())
            } else {
                let mut m = f.new_message();
                pull.receive(&mut m, 50).map(|_| 1)
            };
            match r {
            Err(TransferError::Timeout) => {}
            other => panic!(
                "a hostile frame was delivered or failed the socket: {other:?} ({} of {expected} refused)",
                rejected(pull)
            ),
        }
            rejected(pull) >= expected
        },
    );
    assert_eq!(
        rejected(pull),
        expected,
        "each hostile frame is counted once"
    );
}

fn send_legit(push: &dyn Socket, f: &FactoryPtr, byte: u8) {
    let mut m = f.new_message_with_size(1000, None).unwrap();
    m.data_mut().fill(byte);
    push.send(&mut m, TIMEOUT_MS).expect("legit send");
}

fn receive_legit(pull: &dyn Socket, f: &FactoryPtr, byte: u8) -> MessagePtr {
    let mut m = f.new_message();
    assert_eq!(
        pull.receive(&mut m, TIMEOUT_MS).expect("legit receive"),
        1000
    );
    assert!(m.data().iter().all(|b| *b == byte), "payload intact");
    m
}

#[test]
fn forged_and_replayed_descriptors_are_dropped_and_counted() {
    let s = TestSession::new("hostile");
    {
        let rx = factory(&s.name, "rx");
        let tx = factory(&s.name, "tx");
        let pull = rx.new_socket(SocketType::Pull, "data").unwrap();
        let ep = pull.bind("tcp://127.0.0.1:*").unwrap();
        let push = tx.new_socket(SocketType::Push, "data").unwrap();
        push.connect(&ep).unwrap();
        // The genuine frames a real sender puts on the wire, caught by a spy.
        let ctx = zmq::Context::new();
        let spy = ctx.socket(zmq::PULL).unwrap();
        spy.bind("tcp://127.0.0.1:*").unwrap();
        let spy_ep = spy.get_last_endpoint().unwrap().unwrap();
        spy.set_rcvtimeo(TIMEOUT_MS as i32).unwrap();
        let push_spy = tx.new_socket(SocketType::Push, "spy").unwrap();
        push_spy.connect(&spy_ep).unwrap();
        let evil = ctx.socket(zmq::PUSH).unwrap();
        evil.set_linger(0).unwrap();
        evil.connect(&ep).unwrap();

        let seg = ManagedSegment::open(&s.id, 0, &SegmentOptions::default()).unwrap();
        let secret = ManagementSegment::open_observer(&s.id).unwrap().secret();
        assert_ne!(secret, 0);

        // The channel works.
        send_legit(&*push, &tx, 1);
        drop(receive_legit(&*pull, &rx, 1));
        let before = heap_state(&seg);
        let mut n = 0;

        // Garbage and FairMQ-style (unsealed) forged descriptors, single form.
        let mut rng = common::Rng::new(11);
        let random: Vec<u8> = (0..40).map(|_| rng.next_u64() as u8).collect();
        evil.send(&random, 0).unwrap();
        n += 1;
        for handle in [16i64, 128, 4096, 1_000_000] {
            evil.send(header(64, handle, 0), 0).unwrap();
            n += 1;
        }
        expect_rejected(&*pull, &rx, n, false);
        assert_eq!(heap_state(&seg), before, "nothing was touched");

        // The same offsets in sealed frames that even carry the right secret (what a buggy
        // member of the session could send): the live-block checks refuse them.
        for handle in [16i64, 128, 4096, 1_000_000, 4112, -16, i64::MAX] {
            evil.send(sealed_single(&header(64, handle, 0), secret, 1), 0)
                .unwrap();
            n += 1;
        }
        // A segment that does not exist, a region that does not exist.
        evil.send(sealed_single(&header(64, 4096, 7), secret, 1), 0)
            .unwrap();
        let mut region = header(64, 0, 0);
        region[36] = 0;
        region[32..34].copy_from_slice(&1024u16.to_le_bytes());
        evil.send(sealed_single(&region, secret, 0), 0).unwrap();
        n += 2;
        expect_rejected(&*pull, &rx, n, false);
        assert_eq!(heap_state(&seg), before, "nothing was touched");

        // Multipart forms: unsealed, sealed with a wrong and with the right secret, a count
        // that does not fit, garbage.
        let hs: Vec<Vec<u8>> = [16i64, 128, 4096, 1_000_000]
            .iter()
            .map(|h| header(64, *h, 0))
            .collect();
        for frame in [
            multipart(&hs, None),
            multipart(&hs, Some(secret ^ 1)),
            multipart(&hs, Some(secret)),
            multipart(&hs[..1], Some(secret)),
            u64::MAX.to_le_bytes().repeat(6),
            random.clone(),
        ] {
            evil.send(frame, 0).unwrap();
            n += 1;
        }
        expect_rejected(&*pull, &rx, n, true);
        assert_eq!(heap_state(&seg), before, "nothing was touched");

        // A genuine descriptor of a live buffer, with a wrong secret: refused, the buffer is
        // not touched (the spy's frame still owns it).
        send_legit(&*push_spy, &tx, 2);
        let genuine = spy.recv_bytes(0).unwrap();
        assert_eq!(genuine.len(), 56, "a sealed single frame");
        let in_flight = heap_state(&seg);
        let mut wrong = genuine.clone();
        wrong[40] ^= 0x80;
        evil.send(&wrong, 0).unwrap();
        wrong[40..48].copy_from_slice(&0u64.to_le_bytes());
        evil.send(&wrong, 0).unwrap();
        evil.send(&genuine[..40], 0).unwrap();
        n += 3;
        expect_rejected(&*pull, &rx, n, false);
        assert_eq!(
            heap_state(&seg),
            in_flight,
            "the live buffer was not touched"
        );

        // The genuine frame itself is accepted (the spy hands it on), exactly once.
        evil.send(&genuine, 0).unwrap();
        let m = receive_legit(&*pull, &rx, 2);
        let first_offset = m
            .as_any()
            .downcast_ref::<ShmMessage>()
            .unwrap()
            .segment_offset();
        drop(m);
        let consumed = heap_state(&seg);
        // Replays of the consumed descriptor (a double free): refused.
        evil.send(&genuine, 0).unwrap();
        evil.send(&genuine, 0).unwrap();
        n += 2;
        expect_rejected(&*pull, &rx, n, false);
        assert_eq!(heap_state(&seg), consumed, "no double free");

        // The buffer is reused for a new message (the cache hands the same block out again):
        // a replay of the old descriptor still does not match it.
        let mut reuse = tx.new_message_with_size(1000, None).unwrap();
        reuse.data_mut().fill(3);
        let reuse_offset = reuse
            .as_any()
            .downcast_ref::<ShmMessage>()
            .unwrap()
            .segment_offset();
        assert_eq!(
            reuse_offset, first_offset,
            "the test exercises a reused block"
        );
        evil.send(&genuine, 0).unwrap();
        n += 1;
        expect_rejected(&*pull, &rx, n, false);
        assert!(
            reuse.data().iter().all(|b| *b == 3),
            "the new owner's bytes are intact"
        );
        push.send(&mut reuse, TIMEOUT_MS).unwrap();
        drop(receive_legit(&*pull, &rx, 3));

        // A genuine multipart frame: accepted once, its replay refused.
        let mut parts = Parts::new();
        for b in [4u8, 5] {
            let mut m = tx.new_message_with_size(1000, None).unwrap();
            m.data_mut().fill(b);
            parts.add_part(m);
        }
        push_spy.send_parts(&mut parts, TIMEOUT_MS).unwrap();
        let genuine_multi = spy.recv_bytes(0).unwrap();
        let mut wrong = genuine_multi.clone();
        wrong[8 + 80] ^= 1;
        evil.send(&wrong, 0).unwrap();
        n += 1;
        expect_rejected(&*pull, &rx, n, true);
        evil.send(&genuine_multi, 0).unwrap();
        let mut got = Parts::new();
        assert_eq!(pull.receive_parts(&mut got, TIMEOUT_MS).unwrap(), 2000);
        assert!(got
            .iter()
            .zip([4u8, 5])
            .all(|(m, b)| m.data().iter().all(|x| *x == b)));
        drop(got);
        let consumed = heap_state(&seg);
        evil.send(&genuine_multi, 0).unwrap();
        n += 1;
        expect_rejected(&*pull, &rx, n, true);
        assert_eq!(heap_state(&seg), consumed, "no double free");

        // The receiver still serves the real sender, single and multipart.
        for b in 10..20u8 {
            send_legit(&*push, &tx, b);
            drop(receive_legit(&*pull, &rx, b));
        }
        let mut parts = Parts::new();
        parts.add_part(tx.new_message_with_size(7, None).unwrap());
        push.send_parts(&mut parts, TIMEOUT_MS).unwrap();
        let mut got = Parts::new();
        assert_eq!(pull.receive_parts(&mut got, TIMEOUT_MS).unwrap(), 7);
        drop(got);
        assert_eq!(rejected(&*pull), n);
        seg.verify().expect("the heap verifies");
        drop((pull, push, push_spy, seg, tx, rx));
    }
    s.assert_clean();
}
