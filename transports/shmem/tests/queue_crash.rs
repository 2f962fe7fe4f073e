//! Crash tests of the descriptor-queue path (`shm-metadata-path queue`): a peer process is
//! SIGKILLed while the queue of its connection is empty, half full and full, in both
//! directions. The survivor never hangs, what was queued is delivered (from the dead peer) or
//! freed (towards it), no message is left alive in the segment, a peer that comes back is
//! connected again, and afterwards /dev/shm holds nothing of the session.

mod common;

use common::{env_str, env_u64, spawn_child, wait_child, wait_until, Children, TestSession};
use fairmq_shmem::transport::{transport_blocks, QueueSocket};
use fairmq_shmem::{ManagedSegment, SegmentOptions, ShmId};
use fairmq_transport::{
    create_transport, FactoryPtr, SocketPtr, SocketType, TransferError, TransportConfig,
};
use std::time::{Duration, Instant};

const ENTRY: &str = "child_process_entry";
const CAP: usize = 16;
const PATIENCE: Duration = Duration::from_secs(20);

/// Dispatches child modes; a no-op in normal test runs.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(common::CHILD_ENV) else {
        return;
    };
    common::die_with_parent();
    let code = match mode.as_str() {
        "pusher" => child_pusher(),
        "puller" => child_puller(),
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
            .with("shm-segment-size", 16u64 << 20)
            .with("shm-metadata-path", "queue"),
    )
    .expect("shmem factory")
}

fn socket(f: &FactoryPtr, t: SocketType) -> SocketPtr {
    let s = f.new_socket(t, "data").expect("socket");
    s.set_snd_hwm(CAP as i32).expect("snd-hwm");
    assert!(
        s.as_any().downcast_ref::<QueueSocket>().is_some(),
        "the queue path is in use"
    );
    s
}

/// Live messages in segment 0 of the session (allocations less the transport's own blocks).
fn live_messages(id: &ShmId) -> u64 {
    let seg = ManagedSegment::open(id, 0, &SegmentOptions::default()).expect("segment 0");
    seg.live_allocations()
        .saturating_sub(transport_blocks(&seg).len() as u64)
}

fn ready_file(dir: &str) -> std::path::PathBuf {
    std::path::Path::new(dir).join("ready")
}

/// Connects a PUSH to `FMQ_ADDR`, sends `FMQ_COUNT` messages (then one more, which blocks
/// when the count fills the queue), and waits to be killed.
fn child_pusher() -> i32 {
    let f = factory(&env_str("FMQ_SESSION"), "child");
    let s = socket(&f, SocketType::Push);
    s.connect(&env_str("FMQ_ADDR")).expect("connect");
    let n = env_u64("FMQ_COUNT") as usize;
    for i in 0..n {
        let mut m = f.new_message_with_size(1000, None).expect("msg");
        m.data_mut()[0] = i as u8;
        s.send(&mut m, 20_000).expect("send");
    }
    std::fs::write(ready_file(&env_str("FMQ_DIR")), b"ready").expect("ready");
    if n == CAP {
        let mut m = f.new_message_with_size(1000, None).expect("msg");
        assert_eq!(s.send(&mut m, 60_000), Err(TransferError::Timeout));
    }
    std::thread::sleep(Duration::from_secs(60));
    1
}

/// Connects a PULL to `FMQ_ADDR`, says ready once connected, never receives.
fn child_puller() -> i32 {
    let f = factory(&env_str("FMQ_SESSION"), "child");
    let s = socket(&f, SocketType::Pull);
    s.connect(&env_str("FMQ_ADDR")).expect("connect");
    let start = Instant::now();
    while s.connected_peers() == 0 {
        assert!(start.elapsed() < PATIENCE, "never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(ready_file(&env_str("FMQ_DIR")), b"ready").expect("ready");
    std::thread::sleep(Duration::from_secs(60));
    1
}

fn spawn(mode: &str, session: &TestSession, addr: &str, count: usize) -> Children {
    let dir = session.dir.path().display().to_string();
    let _ = std::fs::remove_file(ready_file(&dir));
    Children(vec![spawn_child(
        ENTRY,
        mode,
        &[
            ("FMQ_SESSION", session.name.clone()),
            ("FMQ_ADDR", addr.to_string()),
            ("FMQ_COUNT", count.to_string()),
            ("FMQ_DIR", dir.clone()),
        ],
    )])
}

fn wait_ready(session: &TestSession) {
    let f = ready_file(&session.dir.path().display().to_string());
    wait_until(PATIENCE, "the child to be ready", || f.exists());
}

fn kill(children: &mut Children) {
    let c = &mut children.0[0];
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    wait_child(c, PATIENCE);
}

/// The peer sends `count` messages into the queue towards the survivor, then dies.
fn peer_dies_sending(count: usize) {
    let session = TestSession::new("qcrash-rx");
    let f = factory(&session.name, "survivor");
    let pull = socket(&f, SocketType::Pull);
    let addr = pull.bind(&session.ipc("q")).expect("bind");
    for round in 0..2 {
        let mut child = spawn("pusher", &session, &addr, count);
        wait_ready(&session);
        wait_until(PATIENCE, "the peer", || pull.connected_peers() == 1);
        kill(&mut child);
        // What the dead peer published is delivered, complete and in order.
        for i in 0..count {
            let mut m = f.new_message();
            assert_eq!(
                pull.receive(&mut m, 5_000),
                Ok(1000),
                "round {round} message {i}"
            );
            assert_eq!(m.data()[0], i as u8);
        }
        let start = Instant::now();
        let mut m = f.new_message();
        assert_eq!(pull.receive(&mut m, 300), Err(TransferError::Timeout));
        assert!(start.elapsed() < Duration::from_secs(5), "no hang");
        wait_until(PATIENCE, "the dead peer to be noticed", || {
            pull.connected_peers() == 0
        });
        drop(m);
        // The killed sender's blocked message was its own: it leaks with the process, never
        // more than that one.
        let live = live_messages(&session.id);
        assert!(
            live <= u64::from(count == CAP) * (round + 1),
            "round {round}: {live} messages still alive"
        );
    }
    drop(pull);
    drop(f);
    session.assert_clean();
}

/// The survivor sends `count` messages towards the peer, which never reads, then dies.
fn peer_dies_receiving(count: usize) {
    let session = TestSession::new("qcrash-tx");
    let f = factory(&session.name, "survivor");
    let push = socket(&f, SocketType::Push);
    let addr = push.bind(&session.ipc("q")).expect("bind");
    for round in 0..2 {
        let mut child = spawn("puller", &session, &addr, 0);
        wait_ready(&session);
        wait_until(PATIENCE, "the peer", || push.connected_peers() == 1);
        for i in 0..count {
            let mut m = f.new_message_with_size(1000, None).expect("msg");
            m.data_mut()[0] = i as u8;
            assert_eq!(push.send(&mut m, 5_000), Ok(1000), "round {round}");
        }
        if count == CAP {
            let mut m = f.new_message_with_size(1000, None).expect("msg");
            assert_eq!(push.send(&mut m, 200), Err(TransferError::Timeout), "full");
            assert_eq!(m.size(), 1000, "a failed send keeps the message");
            drop(m);
        }
        assert_eq!(live_messages(&session.id), count as u64, "queued");
        kill(&mut child);
        wait_until(PATIENCE, "the dead peer to be noticed", || {
            push.connected_peers() == 0
        });
        // What was queued towards the dead peer is freed.
        wait_until(PATIENCE, "queued messages freed", || {
            live_messages(&session.id) == 0
        });
        let start = Instant::now();
        let mut m = f.new_message_with_size(10, None).expect("msg");
        assert_eq!(push.send(&mut m, 300), Err(TransferError::Timeout));
        assert!(start.elapsed() < Duration::from_secs(5), "no hang");
    }
    drop(push);
    drop(f);
    session.assert_clean();
}

#[test]
fn peer_killed_with_empty_queue_towards_survivor() {
    peer_dies_sending(0);
}

#[test]
fn peer_killed_with_half_full_queue_towards_survivor() {
    peer_dies_sending(CAP / 2);
}

#[test]
fn peer_killed_with_full_queue_towards_survivor() {
    peer_dies_sending(CAP);
}

#[test]
fn peer_killed_with_empty_queue_from_survivor() {
    peer_dies_receiving(0);
}

#[test]
fn peer_killed_with_half_full_queue_from_survivor() {
    peer_dies_receiving(CAP / 2);
}

#[test]
fn peer_killed_with_full_queue_from_survivor() {
    peer_dies_receiving(CAP);
}

/// A receiver blocked without timeout on a peer that is SIGKILLed is still interruptible,
/// and a restarted peer is served by the same socket.
#[test]
fn blocked_receiver_survives_peer_kill_and_restart() {
    let session = TestSession::new("qcrash-block");
    let f = factory(&session.name, "survivor");
    let pull = std::sync::Arc::new(socket(&f, SocketType::Pull));
    let addr = pull.bind(&session.ipc("q")).expect("bind");
    let mut child = spawn("pusher", &session, &addr, 0);
    wait_ready(&session);
    let (p, f2) = (pull.clone(), f.clone());
    let t = std::thread::spawn(move || {
        let mut m = f2.new_message();
        p.receive(&mut m, -1)
    });
    std::thread::sleep(Duration::from_millis(100));
    kill(&mut child);
    std::thread::sleep(Duration::from_millis(200));
    f.interrupt();
    assert_eq!(t.join().unwrap(), Err(TransferError::Interrupted));
    f.resume();
    let mut child = spawn("pusher", &session, &addr, 3);
    wait_ready(&session);
    for i in 0..3 {
        let mut m = f.new_message();
        assert_eq!(pull.receive(&mut m, 5_000), Ok(1000));
        assert_eq!(m.data()[0], i);
    }
    kill(&mut child);
    drop(pull);
    drop(f);
    session.assert_clean();
}
