//! The transport conformance suite, written once and run by every transport.
//!
//! A transport crate runs it from its tests with [`conformance_suite!`](crate::conformance_suite),
//! naming a constructor `fn(session: &str, id: &str) -> FactoryPtr`. Every scenario runs on
//! `inproc://`, `ipc://` and `tcp://`. For inproc both ends use one factory (inproc needs a shared
//! context); for ipc and tcp each end has its own factory, as two devices would. Each scenario gets
//! its own session name, and [`Capabilities::after_test`] is called with it at the end (the shmem
//! transport checks there that /dev/shm holds nothing of the session).
//!
//! The checks compare contents and order message by message, so a transport that drops,
//! reorders, truncates or corrupts messages fails.

use crate::{
    FactoryPtr, MessagePtr, Parts, RegionBlock, RegionCallback, RegionConfig, Socket, SocketPtr,
    SocketType, TransferError, TransportError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous upper bound for anything that should happen "soon" on a busy machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Which kind of endpoint a scenario uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// `inproc://`
    Inproc,
    /// `ipc://`
    Ipc,
    /// `tcp://127.0.0.1`
    Tcp,
}

/// What a transport supports, and what it checks after each scenario.
#[derive(Clone, Copy)]
pub struct Capabilities {
    /// Whether PUB/SUB sockets are supported (if not, creating one must be an error).
    pub pubsub: bool,
    /// Called with the scenario's session name after the scenario (not after a failure).
    pub after_test: Option<fn(&str)>,
    /// The receive high-water mark the transport really applies whatever is asked (the shmem
    /// transport keeps its metadata queue unbounded), if any.
    pub fixed_rcv_hwm: Option<i64>,
}

/// Makes a factory for a session and an id.
pub type MakeFactory = fn(session: &str, id: &str) -> FactoryPtr;

/// One scenario's environment: address kind, session, factory constructor.
pub struct Env {
    kind: AddressKind,
    make: MakeFactory,
    caps: Capabilities,
    session: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Env {
    /// A new environment with a fresh session name.
    pub fn new(kind: AddressKind, make: MakeFactory, caps: Capabilities) -> Self {
        Env {
            kind,
            make,
            caps,
            session: format!("conf-{}", unique()),
        }
    }

    /// The session name of this scenario.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Two factories: the same one twice for inproc, two separate ones otherwise.
    pub fn factories(&self) -> (FactoryPtr, FactoryPtr) {
        let a = (self.make)(&self.session, "a");
        let b = match self.kind {
            AddressKind::Inproc => a.clone(),
            _ => (self.make)(&self.session, "b"),
        };
        (a, b)
    }

    /// A fresh endpoint to bind to.
    pub fn endpoint(&self) -> String {
        match self.kind {
            AddressKind::Inproc => format!("inproc://fmq-conf-{}", unique()),
            AddressKind::Ipc => format!("ipc:///tmp/fmq-conf-{}", unique()),
            AddressKind::Tcp => "tcp://127.0.0.1:*".to_string(),
        }
    }

    /// Binds `a` to a fresh endpoint and connects `b` to it.
    pub fn link(&self, a: &dyn Socket, b: &dyn Socket) -> String {
        let ep = a.bind(&self.endpoint()).expect("bind");
        b.connect(&ep).expect("connect");
        ep
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if let Some(check) = self.caps.after_test {
                check(&self.session);
            }
        }
        if self.kind == AddressKind::Ipc {
            // ipc endpoints of this process are files in /tmp; remove ours.
            let prefix = format!("fmq-conf-{}-", std::process::id());
            if let Ok(dir) = std::fs::read_dir("/tmp") {
                for e in dir.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
    }
}

fn socket(f: &FactoryPtr, t: SocketType, name: &str) -> SocketPtr {
    f.new_socket(t, name).expect("create socket")
}

fn msg_with(f: &FactoryPtr, bytes: &[u8]) -> MessagePtr {
    let mut m = f.new_message_with_size(bytes.len(), None).expect("alloc");
    m.data_mut().copy_from_slice(bytes);
    m
}

fn recv(s: &dyn Socket, f: &FactoryPtr) -> Vec<u8> {
    let mut m = f.new_message();
    let n = s.receive(&mut m, 20_000).expect("receive");
    assert_eq!(n, m.size(), "returned byte count equals the message size");
    m.data().to_vec()
}

fn send(s: &dyn Socket, f: &FactoryPtr, bytes: &[u8]) {
    let mut m = msg_with(f, bytes);
    assert_eq!(s.send(&mut m, 20_000).expect("send"), bytes.len());
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k * 7) as u8).collect()
}

/// Waits until `cond` holds, up to [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// PAIR ping-pong: empty messages, then text, in both directions.
pub fn pair_ping_pong(env: &Env) {
    let (fa, fb) = env.factories();
    let a = socket(&fa, SocketType::Pair, "left");
    let b = socket(&fb, SocketType::Pair, "right");
    env.link(&*a, &*b);
    for round in 0..10 {
        let mut empty = fb.new_message();
        assert_eq!(b.send(&mut empty, 20_000), Ok(0));
        assert_eq!(recv(&*a, &fa), Vec::<u8>::new());
        let ping = format!("ping {round} testdata1234");
        send(&*b, &fb, ping.as_bytes());
        assert_eq!(recv(&*a, &fa), ping.as_bytes());
        let pong = format!("pong {round}");
        send(&*a, &fa, pong.as_bytes());
        assert_eq!(recv(&*b, &fb), pong.as_bytes());
    }
}

/// PUSH/PULL: 200 messages of varying size arrive complete and in order; counters agree.
pub fn push_pull_single(env: &Env) {
    let (fa, fb) = env.factories();
    let pull = socket(&fa, SocketType::Pull, "pull");
    let push = socket(&fb, SocketType::Push, "push");
    env.link(&*pull, &*push);
    let n = 200;
    let sizes: Vec<usize> = (0..n)
        .map(|i| [0, 1, 13, 64, 4096, 70_000][i % 6])
        .collect();
    let total: usize = sizes.iter().sum();
    let pusher = {
        let sizes = sizes.clone();
        std::thread::spawn(move || {
            for (i, len) in sizes.iter().enumerate() {
                send(&*push, &fb, &payload(i, *len));
            }
            (push, fb)
        })
    };
    for (i, len) in sizes.iter().enumerate() {
        let got = recv(&*pull, &fa);
        assert_eq!(got.len(), *len, "message {i} has the sent size");
        assert_eq!(got, payload(i, *len), "message {i} has the sent bytes");
    }
    let (push, _fb) = pusher.join().expect("pusher");
    assert_eq!(pull.messages_rx(), n as u64);
    assert_eq!(push.messages_tx(), n as u64);
    assert_eq!(pull.bytes_rx(), total as u64);
    assert_eq!(push.bytes_tx(), total as u64);
}

/// PUSH/PULL multipart: 3-part and 1-part messages keep their parts, order and contents, and
/// count as one message each.
pub fn push_pull_multipart(env: &Env) {
    let (fa, fb) = env.factories();
    let pull = socket(&fa, SocketType::Pull, "pull");
    let push = socket(&fb, SocketType::Push, "push");
    env.link(&*pull, &*push);
    let shapes: Vec<Vec<usize>> = vec![vec![10, 0, 5000], vec![7], vec![3, 3, 3], vec![100_000]];
    for round in 0..5 {
        for (s, shape) in shapes.iter().enumerate() {
            let mut parts = Parts::new();
            for (p, len) in shape.iter().enumerate() {
                parts.add_part(msg_with(&fb, &payload(round * 100 + s * 10 + p, *len)));
            }
            let total: usize = shape.iter().sum();
            assert_eq!(push.send_parts(&mut parts, 20_000), Ok(total));
            assert!(parts.is_empty(), "a sent Parts is emptied");
        }
    }
    for round in 0..5 {
        for (s, shape) in shapes.iter().enumerate() {
            let mut parts = Parts::new();
            let total: usize = shape.iter().sum();
            assert_eq!(pull.receive_parts(&mut parts, 20_000), Ok(total));
            assert_eq!(
                parts.len(),
                shape.len(),
                "round {round} shape {s}: part count"
            );
            for (p, len) in shape.iter().enumerate() {
                assert_eq!(
                    parts[p].data(),
                    &payload(round * 100 + s * 10 + p, *len)[..]
                );
            }
        }
    }
    assert_eq!(pull.messages_rx(), 20);
    assert_eq!(push.messages_tx(), 20);
    // Receiving into a non-empty Parts appends.
    let mut parts = Parts::new();
    parts.add_part(msg_with(&fb, b"first"));
    push.send_parts(&mut parts, 20_000).expect("send");
    let mut acc = Parts::new();
    acc.add_part(msg_with(&fa, b"kept"));
    pull.receive_parts(&mut acc, 20_000).expect("receive");
    assert_eq!(acc.len(), 2);
    assert_eq!(acc[0].data(), b"kept");
    assert_eq!(acc[1].data(), b"first");
}

/// PUB/SUB with two subscribers (or, for transports without pub/sub, a clear error).
pub fn pub_sub(env: &Env) {
    let (fa, fb) = env.factories();
    if !env.caps.pubsub {
        for t in [SocketType::Pub, SocketType::Sub] {
            let err = fa
                .new_socket(t, "ps")
                .err()
                .expect("pub/sub must be refused");
            assert!(
                err.to_string().contains("zeromq"),
                "the error says what to use instead: {err}"
            );
        }
        return;
    }
    let publisher = socket(&fa, SocketType::Pub, "pub");
    let ep = publisher.bind(&env.endpoint()).expect("bind");
    let subs: Vec<SocketPtr> = (0..2)
        .map(|i| {
            let s = socket(&fb, SocketType::Sub, &format!("sub{i}"));
            s.connect(&ep).expect("connect");
            s
        })
        .collect();
    // Subscriptions propagate asynchronously: publish "sync" until every subscriber has one.
    let mut synced = [false, false];
    let start = Instant::now();
    while !synced.iter().all(|s| *s) {
        assert!(start.elapsed() < PATIENCE, "subscribers never received");
        send(&*publisher, &fa, b"sync");
        for (i, s) in subs.iter().enumerate() {
            let mut m = fb.new_message();
            if s.receive(&mut m, 0).is_ok() {
                assert_eq!(m.data(), b"sync");
                synced[i] = true;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in 0..10 {
        send(&*publisher, &fa, format!("data {i}").as_bytes());
    }
    for s in &subs {
        let mut seen = Vec::new();
        while seen.len() < 10 {
            let got = recv(&**s, &fb);
            if got != b"sync" {
                seen.push(String::from_utf8(got).expect("utf8"));
            }
        }
        let want: Vec<String> = (0..10).map(|i| format!("data {i}")).collect();
        assert_eq!(seen, want);
    }
}

/// REQ/REP: one server answers two clients, each gets its own answer.
pub fn req_rep(env: &Env) {
    let (fa, fb) = env.factories();
    let rep = socket(&fa, SocketType::Rep, "rep");
    let ep = rep.bind(&env.endpoint()).expect("bind");
    let clients: Vec<SocketPtr> = (0..2)
        .map(|i| {
            let s = socket(&fb, SocketType::Req, &format!("req{i}"));
            s.connect(&ep).expect("connect");
            s
        })
        .collect();
    let server = {
        let fa = fa.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                let req = recv(&*rep, &fa);
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(&req);
                send(&*rep, &fa, &answer);
            }
            rep
        })
    };
    for round in 0..10 {
        for (i, c) in clients.iter().enumerate() {
            let q = format!("client {i} round {round}");
            send(&**c, &fb, q.as_bytes());
            assert_eq!(recv(&**c, &fb), format!("re:{q}").as_bytes());
        }
    }
    server.join().expect("server");
}

/// A poll over two PULL sockets reports exactly the one with input.
pub fn poller(env: &Env) {
    let (fa, fb) = env.factories();
    let pulls: Vec<SocketPtr> = (0..2)
        .map(|i| socket(&fa, SocketType::Pull, &format!("pull{i}")))
        .collect();
    let pushes: Vec<SocketPtr> = (0..2)
        .map(|i| socket(&fb, SocketType::Push, &format!("push{i}")))
        .collect();
    for i in 0..2 {
        env.link(&*pulls[i], &*pushes[i]);
    }
    let refs: Vec<&dyn Socket> = pulls.iter().map(|s| &**s).collect();
    let r = fa.poll(&refs, 0).expect("poll");
    assert!(!r.check_input(0) && !r.check_input(1), "nothing sent yet");
    for (target, other) in [(1usize, 0usize), (0, 1)] {
        send(&*pushes[target], &fb, format!("to {target}").as_bytes());
        let start = Instant::now();
        let r = loop {
            let r = fa.poll(&refs, 100).expect("poll");
            if r.any() {
                break r;
            }
            assert!(start.elapsed() < PATIENCE, "poll never saw input");
        };
        assert!(r.check_input(target), "socket {target} has input");
        assert!(!r.check_input(other), "socket {other} has none");
        assert!(!r.check_output(target), "a PULL socket is never writable");
        assert_eq!(
            recv(&*pulls[target], &fa),
            format!("to {target}").as_bytes()
        );
    }
}

fn expect_timeout(what: &str, ms: i64, f: impl FnOnce() -> Result<usize, TransferError>) {
    let start = Instant::now();
    assert_eq!(f(), Err(TransferError::Timeout), "{what}");
    if ms > 0 {
        // A lower bound only: the call must not give up early.
        assert!(
            start.elapsed() >= Duration::from_millis(ms as u64 * 3 / 4),
            "{what} waited {:?}",
            start.elapsed()
        );
    }
}

/// Timeouts of 200 ms and 0 ms on sockets without peers return `Timeout`, single and
/// multipart, and a failed send leaves the message with the caller.
pub fn transfer_timeout(env: &Env) {
    let (fa, _fb) = env.factories();
    let push = socket(&fa, SocketType::Push, "push");
    let pull = socket(&fa, SocketType::Pull, "pull");
    push.bind(&env.endpoint()).expect("bind");
    pull.bind(&env.endpoint()).expect("bind");
    for ms in [200, 0] {
        let mut m = msg_with(&fa, b"keep me");
        expect_timeout("send", ms, || push.send(&mut m, ms));
        assert_eq!(
            m.data(),
            b"keep me",
            "a failed send leaves the message intact"
        );
        let mut parts = Parts::new();
        parts.add_part(msg_with(&fa, b"one"));
        expect_timeout("send 1 part", ms, || push.send_parts(&mut parts, ms));
        parts.add_part(msg_with(&fa, b"two"));
        expect_timeout("send 2 parts", ms, || push.send_parts(&mut parts, ms));
        assert_eq!(parts.len(), 2, "a failed multipart send keeps the parts");
        assert_eq!(parts[1].data(), b"two");
        let mut r = fa.new_message();
        expect_timeout("receive", ms, || pull.receive(&mut r, ms));
        let mut rp = Parts::new();
        expect_timeout("receive parts", ms, || pull.receive_parts(&mut rp, ms));
        assert!(rp.is_empty());
    }
    assert_eq!(push.messages_tx(), 0);
    assert_eq!(pull.messages_rx(), 0);
}

/// `interrupt()` from another thread makes a blocking receive return `Interrupted`, and after
/// `resume()` transfers work again.
pub fn interrupt(env: &Env) {
    let (fa, fb) = env.factories();
    let pull = socket(&fa, SocketType::Pull, "pull");
    let push = socket(&fb, SocketType::Push, "push");
    env.link(&*pull, &*push);
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let fa2 = fa.clone();
    let t = std::thread::spawn(move || {
        let mut m = fa2.new_message();
        started_tx.send(()).expect("started");
        let r = pull.receive(&mut m, -1);
        done_tx.send(r).expect("done");
        pull
    });
    started_rx.recv_timeout(PATIENCE).expect("thread started");
    fa.interrupt();
    assert!(fa.interrupted());
    let r = done_rx
        .recv_timeout(PATIENCE)
        .expect("blocking receive returned");
    assert_eq!(r, Err(TransferError::Interrupted));
    let pull = t.join().expect("join");
    // While interrupted, blocking calls return at once.
    let mut m = fa.new_message();
    assert_eq!(pull.receive(&mut m, -1), Err(TransferError::Interrupted));
    fa.resume();
    assert!(!fa.interrupted());
    send(&*push, &fb, b"after resume");
    assert_eq!(recv(&*pull, &fa), b"after resume");
}

/// Socket options round-trip by name and through the typed accessors; unknown names fail.
pub fn options(env: &Env) {
    let (fa, _fb) = env.factories();
    let s = socket(&fa, SocketType::Push, "opts");
    for (name, value) in [
        ("linger", 333),
        ("snd-hwm", 77),
        ("rcv-hwm", env.caps.fixed_rcv_hwm.map_or(88, |_| 0)),
        ("snd-size", 65536),
        ("rcv-size", 131072),
    ] {
        s.set_option(name, value).expect("set");
        assert_eq!(s.get_option(name).expect("get"), value, "{name}");
    }
    s.set_linger(500).expect("set");
    assert_eq!(s.linger().expect("get"), 500);
    s.set_snd_hwm(1000).expect("set");
    assert_eq!(s.snd_hwm().expect("get"), 1000);
    s.set_rcv_hwm(2000).expect("set");
    let want = env.caps.fixed_rcv_hwm.unwrap_or(2000);
    assert_eq!(i64::from(s.rcv_hwm().expect("get")), want);
    s.set_snd_kernel_size(1 << 16).expect("set");
    assert_eq!(s.snd_kernel_size().expect("get"), 1 << 16);
    s.set_rcv_kernel_size(1 << 17).expect("set");
    assert_eq!(s.rcv_kernel_size().expect("get"), 1 << 17);
    assert!(matches!(
        s.set_option("no-such-option", 1),
        Err(TransportError::UnknownOption(_))
    ));
    assert!(matches!(
        s.get_option("no-such-option"),
        Err(TransportError::UnknownOption(_))
    ));
}

/// Message rules: shrink/grow, copy after shrink, size 0, alignment through
/// send/receive/rebuild/copy, rebuild from a buffer.
pub fn message_rules(env: &Env) {
    let (fa, fb) = env.factories();
    let data = payload(5, 1000);
    let mut m = msg_with(&fa, &data);
    assert!(m.set_used_size(1000), "same size is fine");
    assert!(m.set_used_size(500), "shrink");
    assert_eq!(m.size(), 500);
    assert_eq!(m.data(), &data[..500], "shrink keeps the bytes");
    assert!(!m.set_used_size(700), "cannot grow");
    assert_eq!(m.size(), 500, "failed grow changes nothing");
    assert!(m.set_used_size(250));
    let mut c = fa.new_message();
    c.copy_from(&*m).expect("copy");
    assert_eq!(c.size(), 250, "copy after shrink");
    assert_eq!(c.data(), &data[..250]);
    drop(m);
    assert_eq!(c.data(), &data[..250], "copy outlives the original");
    let mut z = fa.new_message_with_size(0, None).expect("size 0");
    assert_eq!(z.size(), 0);
    assert!(z.data().is_empty());
    assert!(z.set_used_size(0));

    let push = socket(&fa, SocketType::Push, "push");
    let pull = socket(&fb, SocketType::Pull, "pull");
    env.link(&*pull, &*push);
    // shrunk message over the wire
    let mut s = msg_with(&fa, &data);
    assert!(s.set_used_size(321));
    assert_eq!(push.send(&mut s, 20_000), Ok(321));
    assert_eq!(recv(&*pull, &fb), &data[..321]);
    // size 0 over the wire
    assert_eq!(push.send(&mut z, 20_000), Ok(0));
    assert_eq!(recv(&*pull, &fb).len(), 0);
    // copies sent independently both arrive
    let mut orig = msg_with(&fa, b"shared payload");
    let mut copy = fa.new_message();
    copy.copy_from(&*orig).expect("copy");
    assert_eq!(push.send(&mut orig, 20_000), Ok(14));
    assert_eq!(push.send(&mut copy, 20_000), Ok(14));
    assert_eq!(recv(&*pull, &fb), b"shared payload");
    assert_eq!(recv(&*pull, &fb), b"shared payload");

    for align in [64usize, 32] {
        let mut a = fa.new_message_with_size(100, Some(align)).expect("aligned");
        assert_eq!(a.data().as_ptr() as usize % align, 0, "aligned {align}");
        a.data_mut().copy_from_slice(&payload(align, 100));
        let mut c = fa.new_message();
        c.copy_from(&*a).expect("copy");
        assert_eq!(
            c.data().as_ptr() as usize % align,
            0,
            "copy keeps alignment"
        );
        push.send(&mut a, 20_000).expect("send");
        let mut r = fb.new_message_aligned(align);
        assert_eq!(pull.receive(&mut r, 20_000), Ok(100));
        assert_eq!(
            r.data().as_ptr() as usize % align,
            0,
            "received aligned {align}"
        );
        assert_eq!(r.data(), &payload(align, 100)[..]);
        r.rebuild_with_size(200, Some(align)).expect("rebuild");
        assert_eq!(r.size(), 200);
        assert_eq!(
            r.data().as_ptr() as usize % align,
            0,
            "rebuilt aligned {align}"
        );
    }
    // rebuild variants
    let mut r = fa.new_message();
    r.rebuild_with_size(10, None).expect("rebuild");
    assert_eq!(r.size(), 10);
    r.rebuild();
    assert_eq!(r.size(), 0);
    r.rebuild_from_buffer(b"from a vector".to_vec().into())
        .expect("rebuild from buffer");
    assert_eq!(r.data(), b"from a vector");
    // a buffer with a release callback is released once, after the message is gone
    let released = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let rel = released.clone();
    let buf = crate::OwnedBuffer::with_release(b"external".to_vec().into_boxed_slice(), move |b| {
        rel.lock().expect("lock").push(b.to_vec())
    });
    let mut e = fa.new_message_from_buffer(buf).expect("from buffer");
    assert_eq!(e.data(), b"external");
    push.send(&mut e, 20_000).expect("send");
    assert_eq!(recv(&*pull, &fb), b"external");
    drop(e);
    wait_until("buffer release", || {
        released.lock().expect("lock").len() == 1
    });
    assert_eq!(released.lock().expect("lock")[0], b"external");
}

/// Connected peers go 0 → 1 → 0 as a peer connects and goes away.
pub fn connected_peers(env: &Env) {
    let (fa, fb) = env.factories();
    let a = socket(&fa, SocketType::Pair, "a");
    let ep = a.bind(&env.endpoint()).expect("bind");
    assert_eq!(a.connected_peers(), 0);
    let b = socket(&fb, SocketType::Pair, "b");
    b.connect(&ep).expect("connect");
    wait_until("one peer", || a.connected_peers() == 1);
    wait_until("peer sees us", || b.connected_peers() == 1);
    drop(b);
    wait_until("no peer", || a.connected_peers() == 0);
}

fn region_roundtrip(env: &Env, bulk: bool) {
    let (fa, fb) = env.factories();
    let blocks = Arc::new(Mutex::new(Vec::<RegionBlock>::new()));
    let sink = blocks.clone();
    let callback = if bulk {
        RegionCallback::bulk(move |bs: &[RegionBlock]| {
            sink.lock().expect("lock").extend_from_slice(bs)
        })
    } else {
        RegionCallback::single(move |b| sink.lock().expect("lock").push(b))
    };
    let region = fa
        .new_unmanaged_region(RegionConfig::with_size(1 << 20), callback)
        .expect("region");
    assert_eq!(region.size(), 1 << 20);
    let push = socket(&fa, SocketType::Push, "push");
    let pull = socket(&fb, SocketType::Pull, "pull");
    env.link(&*pull, &*push);
    let specs: Vec<(usize, usize, u64)> = (0..4)
        .map(|i| (i * 4096 + 64, 1000 + i, 42 + i as u64))
        .collect();
    let mut msgs = Vec::new();
    for (i, (off, len, hint)) in specs.iter().enumerate() {
        region.write_at(*off, &payload(i, *len)).expect("write");
        msgs.push(
            fa.new_region_message(&region, *off, *len, *hint)
                .expect("region msg"),
        );
    }
    assert!(
        blocks.lock().expect("lock").is_empty(),
        "no release before the messages are released"
    );
    // keep one copy of the first message alive past the send
    let mut held = fa.new_message();
    held.copy_from(&*msgs[0]).expect("copy");
    for m in msgs.iter_mut() {
        push.send(m, 20_000).expect("send");
    }
    for (i, (_, len, _)) in specs.iter().enumerate() {
        assert_eq!(recv(&*pull, &fb), payload(i, *len), "region message {i}");
    }
    drop(msgs);
    wait_until("three releases", || blocks.lock().expect("lock").len() >= 3);
    assert!(
        !blocks
            .lock()
            .expect("lock")
            .iter()
            .any(|b| b.offset == specs[0].0),
        "the copied block is still held"
    );
    drop(held);
    wait_until("all releases", || blocks.lock().expect("lock").len() == 4);
    let mut got = blocks.lock().expect("lock").clone();
    got.sort_by_key(|b| b.offset);
    for (b, (off, len, hint)) in got.iter().zip(&specs) {
        assert_eq!((b.offset, b.size, b.hint), (*off, *len, *hint));
        assert_eq!(
            b.ptr,
            region.base_address() + off,
            "pointer in the creator's mapping"
        );
    }
}

/// Region messages deliver their bytes and release every block once to a single callback.
pub fn region_single_callback(env: &Env) {
    region_roundtrip(env, false)
}

/// The same with a bulk callback.
pub fn region_bulk_callback(env: &Env) {
    region_roundtrip(env, true)
}

/// Runs the whole conformance suite as `#[test]`s for inproc, ipc and tcp.
///
/// `$make` is a `fn(session: &str, id: &str) -> FactoryPtr`; `$caps` a
/// [`Capabilities`](crate::conformance::Capabilities) expression.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr, $caps:expr) => {
        $crate::conformance_suite!(@kind inproc, Inproc, $make, $caps);
        $crate::conformance_suite!(@kind ipc, Ipc, $make, $caps);
        $crate::conformance_suite!(@kind tcp, Tcp, $make, $caps);
    };
    (@kind $m:ident, $kind:ident, $make:expr, $caps:expr) => {
        mod $m {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as c;
            fn env() -> c::Env {
                c::Env::new(c::AddressKind::$kind, $make, $caps)
            }
            #[test]
            fn pair_ping_pong() { c::pair_ping_pong(&env()) }
            #[test]
            fn push_pull_single() { c::push_pull_single(&env()) }
            #[test]
            fn push_pull_multipart() { c::push_pull_multipart(&env()) }
            #[test]
            fn pub_sub() { c::pub_sub(&env()) }
            #[test]
            fn req_rep() { c::req_rep(&env()) }
            #[test]
            fn poller() { c::poller(&env()) }
            #[test]
            fn transfer_timeout() { c::transfer_timeout(&env()) }
            #[test]
            fn interrupt() { c::interrupt(&env()) }
            #[test]
            fn options() { c::options(&env()) }
            #[test]
            fn message_rules() { c::message_rules(&env()) }
            #[test]
            fn connected_peers() { c::connected_peers(&env()) }
            #[test]
            fn region_single_callback() { c::region_single_callback(&env()) }
            #[test]
            fn region_bulk_callback() { c::region_bulk_callback(&env()) }
        }
    };
}
