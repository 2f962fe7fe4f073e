//! PUB/SUB on the shmem descriptor-queue path: one buffer for every subscriber (the same
//! segment offset, one reference per holder, no copy), and a slow subscriber at its bound misses
//! messages (counted by the publisher) without blocking the publisher or the other subscriber.

mod common;

use common::{wait_until, TestSession};
use fairmq_shmem::transport::{transport_blocks, QueueSocket, ShmMessage};
use fairmq_shmem::{ManagedSegment, SegmentOptions};
use fairmq_transport::{create_transport, FactoryPtr, SocketType, TransportConfig};
use std::time::{Duration, Instant};

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

fn shm(m: &dyn fairmq_transport::Message) -> &ShmMessage {
    m.as_any().downcast_ref::<ShmMessage>().expect("shmem")
}

#[test]
fn one_buffer_many_readers_and_slow_subscribers_drop() {
    let session = TestSession::new("qpubsub");
    {
        let fa = factory(&session.name, "pub");
        let fb = factory(&session.name, "sub");
        let publisher = fa.new_socket(SocketType::Pub, "data").expect("pub");
        publisher.set_snd_hwm(4).expect("hwm");
        let ep = publisher.bind(&session.ipc("ps")).expect("bind");
        let subs: Vec<_> = (0..2)
            .map(|i| {
                let s = fb
                    .new_socket(SocketType::Sub, &format!("s{i}"))
                    .expect("sub");
                s.connect(&ep).expect("connect");
                s
            })
            .collect();
        wait_until(Duration::from_secs(20), "two subscribers", || {
            publisher.connected_peers() == 2
        });

        // One message, both subscribers: the very buffer the publisher wrote.
        let mut m = fa.new_message_with_size(4096, None).expect("msg");
        m.data_mut()[..5].copy_from_slice(b"hello");
        let at = shm(&*m).segment_offset().expect("in a segment");
        assert_eq!(publisher.send(&mut m, -1), Ok(4096));
        let got: Vec<_> = subs
            .iter()
            .map(|s| {
                let mut r = fb.new_message();
                assert_eq!(s.receive(&mut r, 5_000), Ok(4096));
                r
            })
            .collect();
        for r in &got {
            assert_eq!(shm(&**r).segment_offset(), Some(at), "no copy");
            assert_eq!(&r.data()[..5], b"hello");
            assert_eq!(
                shm(&**r).reference_count(),
                2,
                "one reference per subscriber"
            );
        }
        drop(got);

        // Subscriber 0 stops reading: after 4 queued messages it misses the rest; the publisher
        // never waits and subscriber 1 gets everything.
        let start = Instant::now();
        for i in 0..20u8 {
            let mut m = fa.new_message_with_size(100, None).expect("msg");
            m.data_mut()[0] = i;
            assert_eq!(publisher.send(&mut m, -1), Ok(100));
            let mut r = fb.new_message();
            assert_eq!(subs[1].receive(&mut r, 5_000), Ok(100));
            assert_eq!(r.data()[0], i);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the publisher never blocked"
        );
        let q = publisher
            .as_any()
            .downcast_ref::<QueueSocket>()
            .expect("queue path");
        assert_eq!(
            q.dropped(),
            16,
            "20 sent, 4 fit the slow subscriber's queue"
        );
        for i in 0..4u8 {
            let mut r = fb.new_message();
            assert_eq!(subs[0].receive(&mut r, 5_000), Ok(100));
            assert_eq!(r.data()[0], i, "the slow subscriber got the first four");
        }
        let seg = ManagedSegment::open(&session.id, 0, &SegmentOptions::default()).expect("seg");
        let live = seg.live_allocations() - transport_blocks(&seg).len() as u64;
        assert_eq!(live, 0, "every buffer released by its last holder");
    }
    session.assert_clean();
}
