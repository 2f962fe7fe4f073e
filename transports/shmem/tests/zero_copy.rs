//! Proves that the shmem transport moves payloads without copying them (issue 4, "Done when":
//! "the receiver reads the sender's bytes at the same offset of the segment, and nothing was
//! copied").
//!
//! * Two factories of one session in one process, and a sender in another process (this test
//!   binary re-executed in child mode): the received message lies at the very segment id and
//!   offset (`ShmMessage::segment_offset`) at which the sender allocated and wrote it, and the
//!   bytes match.
//! * Exactly one allocation happened in the segment for the whole transfer: the receiver made
//!   no buffer of its own.
//! * A write into the segment at that offset made *after* the transfer (through a separate
//!   mapping, in the sender's process for the cross-process test) is what the receiver's message
//!   reads: the receiver reads the shared bytes in place, not a private copy.
//! * The reference count lives in shared memory: `copy()` in one process and drop in the
//!   other move it 1 → 2 → 3 → 2 → 1 as seen from both processes, and the last holder releases
//!   the buffer for reuse.
//!
//! Every test has its own session; afterwards /dev/shm holds nothing of it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use common::{env_str, env_u64, wait_child, Children, TestSession};
use fairmq_shmem::transport::ShmMessage;
use fairmq_shmem::{ManagedSegment, SegmentOptions, ShmId};
use fairmq_transport::{create_transport, FactoryPtr, Message, SocketType, TransportConfig};

const ENTRY: &str = "child_process_entry";
const SEGMENT_SIZE: u64 = 64 << 20;
const LEN: usize = 1 << 20;
const TRANSFER_TIMEOUT_MS: i64 = 20_000;
const PATIENCE: Duration = Duration::from_secs(20);

/// Dispatches child modes; a no-op in normal test runs.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(common::CHILD_ENV) else {
        return;
    };
    common::die_with_parent();
    let code = match mode.as_str() {
        "zc-sender" => child_sender(),
        other => {
            eprintln!("unknown child mode {other}");
            2
        }
    };
    std::process::exit(code);
}

fn factory(session: &str, id: &str) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new(id)
            .with("session", session)
            .with("shm-segment-size", SEGMENT_SIZE),
    )
    .expect("shmem factory")
}

fn shm(m: &dyn Message) -> &ShmMessage {
    m.as_any()
        .downcast_ref::<ShmMessage>()
        .expect("a shmem message")
}

/// Pattern `seed` of `len` bytes (differs for every seed and position).
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u64)
                .wrapping_mul(131)
                .wrapping_add(u64::from(seed) * 7919) as u8
                ^ seed
        })
        .collect()
}

/// The `len` bytes at `off` of `seg`, read through this mapping.
fn bytes_at(seg: &ManagedSegment, off: u64, len: usize) -> Vec<u8> {
    let p = seg.ptr(off, len as u64).expect("offset inside the segment");
    // SAFETY: `ptr` checked that `off..off+len` lies inside the mapping, which lives as long as
    // `seg`. The bytes belong to a live buffer that nobody writes concurrently in this test.
    unsafe { std::slice::from_raw_parts(p, len).to_vec() }
}

/// Overwrites the `bytes.len()` bytes at `off` of `seg` through this mapping.
fn write_at(seg: &ManagedSegment, off: u64, bytes: &[u8]) {
    let p = seg
        .ptr(off, bytes.len() as u64)
        .expect("offset inside the segment");
    // SAFETY: in bounds (checked by `ptr`); the buffer is live (a message holds it) and no
    // other thread or process accesses it while the test writes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
}

/// After the last holder dropped the only message buffer of the segment: allocating another
/// one of the same size leaves exactly one live buffer, so the dropped one was released for
/// reuse (to the allocator, or to the transport's cache of freed buffers, which also counts as
/// allocated in the heap).
fn assert_released(view: &ManagedSegment, f: &FactoryPtr, live0: u64) {
    let again = f.new_message_with_size(LEN, None).unwrap();
    assert_eq!(
        view.live_allocations(),
        live0 + 1,
        "the dropped buffer was not released by its last holder"
    );
    drop(again);
}

/// A unique ipc endpoint, its socket file removed on drop.
struct Endpoint(std::path::PathBuf);

impl Endpoint {
    fn new(s: &TestSession) -> Endpoint {
        Endpoint(std::env::temp_dir().join(format!("{}.ipc", s.name)))
    }
    fn address(&self) -> String {
        format!("ipc://{}", self.0.display())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Two factories of one session in this process: the received message is the sent one.
#[test]
fn two_factories_of_one_session_share_the_payload_in_place() {
    let s = TestSession::new("zc-local");
    let ep = Endpoint::new(&s);
    {
        let sender = factory(&s.name, "sender");
        let receiver = factory(&s.name, "receiver");
        let rx = receiver.new_socket(SocketType::Pair, "rx").unwrap();
        let tx = sender.new_socket(SocketType::Pair, "tx").unwrap();
        rx.bind(&ep.address()).unwrap();
        tx.connect(&ep.address()).unwrap();
        // A third, independent mapping of the segment to look at the bytes in shared memory.
        let view = ManagedSegment::open(&s.id, 0, &SegmentOptions::default()).unwrap();
        let live0 = view.live_allocations();
        let allocs0 = view.allocation_count();

        let a = pattern(1, LEN);
        let mut m = sender.new_message_with_size(LEN, None).unwrap();
        let (seg, off) = shm(&*m).segment_offset().expect("a managed payload");
        assert_eq!(shm(&*m).reference_count(), 1);
        m.data_mut().copy_from_slice(&a);
        // The sender wrote in place: the segment holds the pattern at that offset.
        assert_eq!(bytes_at(&view, off, LEN), a);
        let mut keep = sender.new_message();
        keep.copy_from(&*m).unwrap();
        assert_eq!(shm(&*keep).segment_offset(), Some((seg, off)));
        assert_eq!(shm(&*m).reference_count(), 2);

        assert_eq!(tx.send(&mut m, TRANSFER_TIMEOUT_MS), Ok(LEN));
        assert_eq!(m.size(), 0, "a sent message is empty");
        let mut r = receiver.new_message();
        assert_eq!(rx.receive(&mut r, TRANSFER_TIMEOUT_MS), Ok(LEN));
        assert_eq!(
            shm(&*r).segment_offset(),
            Some((seg, off)),
            "the receiver reads at the sender's segment and offset"
        );
        assert!(r.data() == a.as_slice(), "received bytes differ");
        assert_eq!(
            view.allocation_count() - allocs0,
            1,
            "one allocation for the whole transfer: the receiver made no buffer of its own"
        );
        // The copy still held by the sender and the received message share one count.
        assert_eq!(shm(&*r).reference_count(), 2);
        assert_eq!(shm(&*keep).reference_count(), 2);
        drop(keep);
        assert_eq!(shm(&*r).reference_count(), 1);

        // Bytes written into the segment after the transfer are what the receiver reads.
        let b = pattern(2, LEN);
        write_at(&view, off, &b);
        assert!(
            r.data() == b.as_slice(),
            "the receiver holds a private copy"
        );

        // The last holder releases the buffer for reuse.
        assert_eq!(view.live_allocations(), live0 + 1);
        drop(r);
        assert_released(&view, &sender, live0);
    }
    s.assert_clean();
}

/// Reads `ZC ...` lines of a child's stdout in a thread (the test harness prints other lines).
fn protocol_lines(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix("ZC ") {
                if tx.send(rest.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn expect_line(lines: &Receiver<String>, key: &str) -> Vec<u64> {
    match lines.recv_timeout(PATIENCE) {
        Ok(line) => {
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some(key), "unexpected child line '{line}'");
            words.map(|w| w.parse().expect("number")).collect()
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("child did not answer '{key}' within {PATIENCE:?}")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("child exited before answering '{key}'"),
    }
}

fn command(stdin: &mut ChildStdin, cmd: &str) {
    writeln!(stdin, "{cmd}").expect("write to child");
    stdin.flush().expect("flush child stdin");
}

/// The sender in another process: allocates and writes in its own mapping, sends, then writes
/// the segment again and copies/drops on command.
#[test]
fn receiver_reads_the_senders_bytes_in_place_across_processes() {
    let s = TestSession::new("zc-proc");
    let ep = Endpoint::new(&s);
    let mut children = Children::default();
    {
        let receiver = factory(&s.name, "receiver");
        let rx = receiver.new_socket(SocketType::Pair, "rx").unwrap();
        rx.bind(&ep.address()).unwrap();
        let view = ManagedSegment::open(&s.id, 0, &SegmentOptions::default()).unwrap();
        let live0 = view.live_allocations();
        let allocs0 = view.allocation_count();

        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", ENTRY, "--nocapture", "--test-threads", "1", "-q"])
            .env(common::CHILD_ENV, "zc-sender")
            .env("FMQ_T_SESSION", &s.name)
            .env("FMQ_T_SHMID", s.id.as_str())
            .env("FMQ_T_ENDPOINT", ep.address())
            .env("FMQ_T_LEN", LEN.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        children.0.push(cmd.spawn().expect("spawn child"));
        let child = &mut children.0[0];
        let lines = protocol_lines(child);
        let mut stdin = child.stdin.take().expect("piped stdin");

        let sent = expect_line(&lines, "sent");
        let (seg, off, rc_alloc, rc_copy, child_pid) =
            (sent[0] as u16, sent[1], sent[2], sent[3], sent[4]);
        assert_ne!(child_pid, u64::from(std::process::id()));
        assert_eq!(
            (rc_alloc, rc_copy),
            (1, 2),
            "sender: count after allocate, after copy"
        );

        let mut r = receiver.new_message();
        assert_eq!(rx.receive(&mut r, TRANSFER_TIMEOUT_MS), Ok(LEN));
        assert_eq!(
            shm(&*r).segment_offset(),
            Some((seg, off)),
            "the receiver reads at the segment and offset the other process allocated"
        );
        assert!(
            r.data() == pattern(1, LEN).as_slice(),
            "received bytes differ"
        );
        assert_eq!(
            view.allocation_count() - allocs0,
            1,
            "one allocation for the whole transfer: the receiver made no buffer of its own"
        );
        // The sender's copy and our message share the count in shared memory.
        assert_eq!(shm(&*r).reference_count(), 2);

        // The other process overwrites the payload in its own mapping; we read the new bytes.
        command(&mut stdin, "write");
        expect_line(&lines, "written");
        assert!(
            r.data() == pattern(2, LEN).as_slice(),
            "the receiver does not read the shared bytes in place"
        );

        // Our copy is seen by the other process.
        let mut c = receiver.new_message();
        c.copy_from(&*r).unwrap();
        assert_eq!(shm(&*r).reference_count(), 3);
        command(&mut stdin, "rc");
        assert_eq!(
            expect_line(&lines, "rc"),
            vec![3],
            "count seen by the sender"
        );
        drop(c);
        assert_eq!(shm(&*r).reference_count(), 2);
        command(&mut stdin, "rc");
        assert_eq!(
            expect_line(&lines, "rc"),
            vec![2],
            "count seen by the sender"
        );

        // The other process drops its copy: we are the last holder.
        command(&mut stdin, "drop");
        expect_line(&lines, "dropped");
        assert_eq!(shm(&*r).reference_count(), 1);
        assert_eq!(view.live_allocations(), live0 + 1);
        drop(r);
        assert_released(&view, &receiver, live0);

        command(&mut stdin, "exit");
        let status = wait_child(child, PATIENCE);
        assert!(status.success(), "sender child failed: {status:?}");
    }
    s.assert_clean();
}

fn child_sender() -> i32 {
    let session = env_str("FMQ_T_SESSION");
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    let len = env_u64("FMQ_T_LEN") as usize;
    let f = factory(&session, "sender");
    let tx = f.new_socket(SocketType::Pair, "tx").unwrap();
    tx.connect(&env_str("FMQ_T_ENDPOINT")).unwrap();
    let view = ManagedSegment::open(&id, 0, &SegmentOptions::default()).unwrap();

    let mut m = f.new_message_with_size(len, None).unwrap();
    m.data_mut().copy_from_slice(&pattern(1, len));
    let (seg, off) = shm(&*m).segment_offset().expect("a managed payload");
    let rc_alloc = shm(&*m).reference_count();
    let mut keep = f.new_message();
    keep.copy_from(&*m).unwrap();
    let rc_copy = shm(&*keep).reference_count();
    assert_eq!(tx.send(&mut m, TRANSFER_TIMEOUT_MS), Ok(len));
    println!(
        "ZC sent {seg} {off} {rc_alloc} {rc_copy} {}",
        std::process::id()
    );

    let mut keep = Some(keep);
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        match line.trim() {
            "write" => {
                write_at(&view, off, &pattern(2, len));
                println!("ZC written");
            }
            "rc" => println!(
                "ZC rc {}",
                shm(&**keep.as_ref().expect("copy held")).reference_count()
            ),
            "drop" => {
                keep = None;
                println!("ZC dropped");
            }
            "exit" => break,
            other => {
                eprintln!("unknown command '{other}'");
                return 2;
            }
        }
    }
    drop(keep);
    drop(view);
    drop(tx);
    drop(f);
    0
}

/// Without a requested alignment a payload starts on a cache line (64 bytes), for every size
/// and also when the buffer comes from the cache again; a requested alignment is kept.
#[test]
fn payloads_start_on_a_cache_line_unless_told_otherwise() {
    let session = TestSession::new("zc-align");
    {
        let f = factory(&session.name, "align");
        for round in 0..2 {
            let msgs: Vec<_> = [1usize, 7, 64, 100, 4096, 65_536, 300_000, 1 << 20]
                .iter()
                .map(|n| {
                    let m = f.new_message_with_size(*n, None).unwrap();
                    assert_eq!(
                        m.data().as_ptr() as usize % 64,
                        0,
                        "round {round}: {n} bytes at {:p}",
                        m.data().as_ptr()
                    );
                    m
                })
                .collect();
            drop(msgs);
        }
        let m = f.new_message_with_size(100, Some(4096)).unwrap();
        assert_eq!(
            m.data().as_ptr() as usize % 4096,
            0,
            "an explicit alignment"
        );
    }
    session.assert_clean();
}
