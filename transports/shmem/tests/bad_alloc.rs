//! Backpressure instead of crashes (issue 4, Build 6), at the transport level:
//!
//! * a message larger than the segment fails at once, even with the default policy of waiting
//!   forever, with a typed error (`TransportError::BadAlloc`) naming the requested size, the
//!   free memory and the segment size;
//! * on a full segment, `--bad-alloc-max-attempts 3 --bad-alloc-attempt-interval 10` fails with
//!   that error after waiting (at least the 20 ms those options allow);
//! * with the default policy an allocation on a full segment waits, and returns as soon as
//!   another thread frees memory;
//! * `interrupt()` makes a waiting allocation return promptly with an error saying so, and after
//!   `resume()` the factory allocates again.
//!
//! Every test has its own session; afterwards /dev/shm holds nothing of it.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{wait_until, TestSession};
use fairmq_shmem::{ManagedSegment, SegmentOptions};
use fairmq_transport::{create_transport, FactoryPtr, MessagePtr, TransportConfig, TransportError};

const SEGMENT_SIZE: u64 = 32 << 20;
const CHUNK: usize = 1 << 20;
const PATIENCE: Duration = Duration::from_secs(20);

fn factory(session: &str, id: &str, extra: &[(&str, &str)]) -> FactoryPtr {
    let mut c = TransportConfig::new(id)
        .with("session", session)
        .with("shm-segment-size", SEGMENT_SIZE);
    for (k, v) in extra {
        c = c.with(*k, *v);
    }
    create_transport("shmem", &c).expect("shmem factory")
}

/// A factory that never waits for memory (one attempt), to fill the segment quickly.
fn filler(session: &str) -> FactoryPtr {
    factory(session, "filler", &[("bad-alloc-max-attempts", "1")])
}

/// Allocates `CHUNK`-byte messages until the segment has no room for another one.
fn fill(f: &FactoryPtr) -> Vec<MessagePtr> {
    let mut held = Vec::new();
    loop {
        match f.new_message_with_size(CHUNK, None) {
            Ok(m) => held.push(m),
            Err(TransportError::BadAlloc(_)) => break,
            Err(e) => panic!("unexpected error while filling the segment: {e}"),
        }
        assert!(
            held.len() <= (SEGMENT_SIZE as usize) / CHUNK,
            "segment never filled up"
        );
    }
    assert!(!held.is_empty());
    held
}

fn view(s: &TestSession) -> ManagedSegment {
    ManagedSegment::open(
        &s.id,
        0,
        &SegmentOptions {
            read_only: true,
            ..SegmentOptions::default()
        },
    )
    .expect("open the segment read-only")
}

fn bad_alloc_text(r: Result<MessagePtr, TransportError>) -> String {
    match r {
        Err(TransportError::BadAlloc(text)) => text,
        Err(other) => panic!("expected TransportError::BadAlloc, got {other:?}"),
        Ok(m) => panic!("allocation of {} bytes unexpectedly succeeded", m.size()),
    }
}

/// Runs an allocation of `size` on `f` in a thread; the result arrives on the channel.
fn allocate_in_thread(
    f: &FactoryPtr,
    size: usize,
) -> mpsc::Receiver<(Result<MessagePtr, TransportError>, Instant)> {
    let f = f.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = f.new_message_with_size(size, None);
        let done = Instant::now();
        // Release the factory before reporting, so that the test's own drop of the factory is
        // the last one (and removes the session).
        drop(f);
        let _ = tx.send((r, done));
    });
    rx
}

/// A message larger than the whole segment fails at once even though the default policy waits
/// forever for memory.
#[test]
fn message_larger_than_the_segment_fails_at_once() {
    let s = TestSession::new("ba-large");
    {
        let f = factory(&s.name, "dev", &[]);
        let v = view(&s);
        let free = v.free_memory();
        for requested in [SEGMENT_SIZE as usize + 1, 2 * SEGMENT_SIZE as usize] {
            let rx = allocate_in_thread(&f, requested);
            let (r, _) = rx
                .recv_timeout(PATIENCE)
                .expect("an allocation larger than the segment waits instead of failing");
            let text = bad_alloc_text(r);
            assert!(
                text.contains(&requested.to_string()),
                "error does not name the requested size {requested}: {text}"
            );
            assert!(
                text.contains(&SEGMENT_SIZE.to_string()),
                "error does not name the segment size {SEGMENT_SIZE}: {text}"
            );
            assert!(
                text.contains("free") && text.contains(&free.to_string()),
                "error does not name the free memory ({free} bytes): {text}"
            );
        }
        assert_eq!(
            v.free_memory(),
            free,
            "a failed allocation changed the heap"
        );
    }
    s.assert_clean();
}

/// `--bad-alloc-max-attempts 3 --bad-alloc-attempt-interval 10` on a full segment: waits, then
/// the typed error.
#[test]
fn bounded_wait_on_a_full_segment_fails_with_the_error() {
    let s = TestSession::new("ba-bounded");
    {
        let f = factory(
            &s.name,
            "dev",
            &[
                ("bad-alloc-max-attempts", "3"),
                ("bad-alloc-attempt-interval", "10"),
            ],
        );
        let held = fill(&f);
        let v = view(&s);
        let free = v.free_memory();
        assert!(
            free < CHUNK as u64,
            "the segment is not full: {free} bytes free"
        );
        let start = Instant::now();
        let rx = allocate_in_thread(&f, CHUNK);
        let (r, done) = rx
            .recv_timeout(PATIENCE)
            .expect("a bounded wait did not end");
        let waited = done - start;
        let text = bad_alloc_text(r);
        // 3 attempts, 10 ms apart: at least 20 ms of waiting.
        assert!(
            waited >= Duration::from_millis(20),
            "failed after {waited:?} without waiting"
        );
        assert!(
            text.contains(&CHUNK.to_string()),
            "error does not name the requested size {CHUNK}: {text}"
        );
        assert!(
            text.contains(&SEGMENT_SIZE.to_string()),
            "error does not name the segment size {SEGMENT_SIZE}: {text}"
        );
        assert!(
            text.contains("free") && text.contains(&free.to_string()),
            "error does not name the free memory ({free} bytes): {text}"
        );
        eprintln!(
            "bounded wait: {} messages filled the segment, failed after {waited:?}: {text}",
            held.len()
        );
        drop(held);
        // With memory back, the same factory allocates again.
        f.new_message_with_size(CHUNK, None)
            .expect("allocation after freeing");
    }
    s.assert_clean();
}

/// The default policy waits on a full segment and is woken when another thread frees memory.
#[test]
fn default_policy_waits_and_is_woken_by_a_free() {
    let s = TestSession::new("ba-wake");
    {
        let f = factory(&s.name, "dev", &[]);
        let fill_f = filler(&s.name);
        let mut held = fill(&fill_f);
        let v = view(&s);
        let rx = allocate_in_thread(&f, CHUNK);
        // The allocation is waiting for memory (not failed, not done).
        wait_until(PATIENCE, "the allocation to wait for memory", || {
            v.waiters() >= 1
        });
        assert!(
            matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)),
            "the allocation returned on a full segment"
        );
        // Another thread frees one message.
        let victim = held.pop().unwrap();
        let freed = std::thread::spawn(move || {
            drop(victim);
            Instant::now()
        })
        .join()
        .unwrap();
        let (r, done) = rx
            .recv_timeout(PATIENCE)
            .expect("the waiting allocation was not woken by the free");
        let m = r.expect("the allocation fails instead of using the freed memory");
        assert_eq!(m.size(), CHUNK);
        eprintln!(
            "woken {:?} after the free",
            done.saturating_duration_since(freed)
        );
        drop(m);
        drop(held);
    }
    s.assert_clean();
}

/// `interrupt()` ends a waiting allocation promptly; `resume()` lets the factory allocate again.
#[test]
fn interrupt_ends_a_waiting_allocation() {
    let s = TestSession::new("ba-intr");
    {
        let f = factory(&s.name, "dev", &[]);
        let fill_f = filler(&s.name);
        let held = fill(&fill_f);
        let v = view(&s);
        let rx = allocate_in_thread(&f, CHUNK);
        wait_until(PATIENCE, "the allocation to wait for memory", || {
            v.waiters() >= 1
        });
        let start = Instant::now();
        f.interrupt();
        let (r, done) = rx
            .recv_timeout(PATIENCE)
            .expect("interrupt() did not end the waiting allocation");
        let text = bad_alloc_text(r);
        assert!(
            text.contains("interrupted"),
            "error does not say it was interrupted: {text}"
        );
        eprintln!(
            "interrupted allocation returned {:?} after interrupt(): {text}",
            done.saturating_duration_since(start)
        );
        f.resume();
        drop(held);
        f.new_message_with_size(CHUNK, None)
            .expect("allocation after resume()");
    }
    s.assert_clean();
}
