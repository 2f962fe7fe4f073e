//! Connections of the descriptor-queue path: the handshake over libzmq that pairs two shmem
//! sockets, and the per-connection state (two queue objects, the peer's bell, liveness).
//!
//! # Handshake
//!
//! The channel address (ipc://, tcp://, inproc://) is only a rendezvous name: every shmem peer
//! runs in the same session on the same host. A socket that binds opens a libzmq ROUTER on the
//! address; each address it connects gets a DEALER of its own. A connecting socket creates its
//! end object (`queue.rs`: its outgoing ring, exclusively flocked) and sends
//! `FMQH1 <type> <object> <bell> <secret>` until answered (every [`HELLO_INTERVAL`]; libzmq
//! carries it once the binder exists, so bind and connect come in any order). `<secret>` is the
//! session's secret from `_mng` (hex): a hello or answer without it is ignored, so only a
//! participant of the session can connect. The binder checks the socket types (pair-pair,
//! push-pull, req-rep, pub-sub), opens and unlinks the connector's object, creates its own and
//! answers `FMQA1 <object> <bell> <secret>` (or `FMQR1 <reason>`: a PAIR already has its peer,
//! or the types do not match); the connector opens and unlinks the binder's object, and the
//! connection is up. Duplicate hellos (naming an object already connected, or an unlinked one)
//! are answered again or ignored. Nothing else travels over libzmq. Descriptors from the queues
//! are still checked like those from libzmq: each carries its buffer's tag, and adoption refuses
//! a descriptor that names no live buffer of the session with that tag.
//!
//! # Liveness
//!
//! Each socket's handshake thread checks every [`LIVENESS_INTERVAL`] whether the peer still
//! holds its object's flock. When it does not (closed or killed), the connection is marked dead:
//! what this side queued towards the peer is freed at once, what the peer queued towards this
//! side is still delivered and freed when the socket closes; a connecting side then starts a new
//! handshake, so a peer that comes back is connected again.

use super::factory::Shared;
use super::message::ShmMessage;
use super::queue::{Consumer, PopError, Producer, QueueObject, RingKind, RingMem, MAX_CAPACITY};
use super::wire::MetaHeader;
use crate::ids::ShmId;
use fairmq_transport::{address, SocketType, TransportError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often an unanswered hello is repeated.
pub const HELLO_INTERVAL: Duration = Duration::from_millis(50);
/// How often the handshake thread checks that peers are alive.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);
/// Longest poll of the handshake thread (bounds how long bind/connect wait for it).
const POLL_MS: i64 = 10;

/// What the queue path of one factory shares: the session, the bell its threads sleep on, the
/// bells of peers, and the libzmq context of the handshakes.
pub(crate) struct QueueContext {
    pub(crate) shm_id: ShmId,
    pub(crate) bell: Arc<QueueObject>,
    bells: Mutex<HashMap<String, Arc<QueueObject>>>,
    zctx: zmq::Context,
    pub(crate) interrupted: Arc<AtomicBool>,
}

impl QueueContext {
    pub(crate) fn new(
        shm_id: ShmId,
        interrupted: Arc<AtomicBool>,
    ) -> Result<QueueContext, TransportError> {
        Ok(QueueContext {
            bell: Arc::new(QueueObject::create(&shm_id, RingKind::Bell, 0)?),
            shm_id,
            bells: Mutex::new(HashMap::new()),
            zctx: zmq::Context::new(),
            interrupted,
        })
    }

    /// The bell `name` (ours, or a peer's opened once and kept).
    fn peer_bell(&self, name: &str) -> Result<Arc<QueueObject>, TransportError> {
        if name == self.bell.name() {
            return Ok(self.bell.clone());
        }
        let mut bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = bells.get(name) {
            return Ok(b.clone());
        }
        let b = Arc::new(QueueObject::open(&self.shm_id, name, RingKind::Bell)?);
        bells.insert(name.to_string(), b.clone());
        Ok(b)
    }

    /// Wakes every thread of this factory that sleeps on the bell.
    pub(crate) fn wake(&self) {
        use super::queue::Bell;
        self.bell.ring();
    }
}

impl Drop for QueueContext {
    fn drop(&mut self) {
        self.bell.unlink();
    }
}

/// Where a connection came from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Accepted on our ROUTER from this identity.
    Bound(Vec<u8>),
    /// Made by our DEALER number `n`.
    Connected(usize),
}

/// One connection: our ring towards the peer, the peer's ring towards us, its bell.
pub(crate) struct Conn {
    pub(crate) key: u64,
    pub(crate) origin: Origin,
    pub(crate) peer_name: String,
    pub(crate) out: Producer<Arc<QueueObject>>,
    pub(crate) inb: Consumer<Arc<QueueObject>>,
    pub(crate) peer_bell: Arc<QueueObject>,
    /// The peer holds its object; cleared by the handshake thread (or on a broken ring).
    pub(crate) alive: bool,
}

impl Conn {
    fn own(&self) -> &Arc<QueueObject> {
        self.out.mem()
    }
    fn peer(&self) -> &Arc<QueueObject> {
        self.inb.mem()
    }
}

/// The connections of one socket and the data path's cursors.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) conns: Vec<Conn>,
    pub(crate) rr_send: usize,
    pub(crate) rr_recv: usize,
    /// REQ: the connection the request went to; REP: the one the request came from.
    pub(crate) last: Option<u64>,
}

/// A connecting end: one DEALER per address.
struct Dealer {
    sock: zmq::Socket,
    pending: Option<Arc<QueueObject>>,
    last_hello: Option<Instant>,
    conn: Option<u64>,
    /// The last refusal logged (each new reason is logged once).
    last_refusal: Option<String>,
}

#[derive(Default)]
struct ZSockets {
    router: Option<zmq::Socket>,
    dealers: Vec<Dealer>,
}

/// What a socket's handshake thread and its data path share.
pub(crate) struct Endpoints {
    pub(crate) id: String,
    pub(crate) ty: SocketType,
    pub(crate) ctx: Arc<QueueContext>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Mutex<State>,
    zs: Mutex<ZSockets>,
    stop: AtomicBool,
    next_key: AtomicU64,
    pub(crate) snd_hwm: AtomicU64,
    pub(crate) peers: AtomicUsize,
}

fn peer_type(t: SocketType) -> Option<SocketType> {
    Some(match t {
        SocketType::Pair => SocketType::Pair,
        SocketType::Push => SocketType::Pull,
        SocketType::Pull => SocketType::Push,
        SocketType::Req => SocketType::Rep,
        SocketType::Rep => SocketType::Req,
        SocketType::Pub => SocketType::Sub,
        SocketType::Sub => SocketType::Pub,
        _ => return None,
    })
}

/// Whether sockets of this type use the descriptor queues (the others keep libzmq).
pub(crate) fn supported(t: SocketType) -> bool {
    peer_type(t).is_some()
}

/// Frees the buffer a descriptor names (queued towards a peer that is gone).
pub(crate) fn free_descriptor(shared: &Arc<Shared>, meta: MetaHeader, tag: u64) {
    let mut m = ShmMessage::empty(shared.clone(), None);
    if super::queue_compat::adopt(&mut m, meta, tag).is_err() {
        tracing::debug!("could not free a queued descriptor {meta:?}");
    }
}

impl Endpoints {
    pub(crate) fn new(
        id: String,
        ty: SocketType,
        ctx: Arc<QueueContext>,
        shared: Arc<Shared>,
    ) -> Endpoints {
        Endpoints {
            id,
            ty,
            ctx,
            shared,
            state: Mutex::new(State::default()),
            zs: Mutex::new(ZSockets::default()),
            stop: AtomicBool::new(false),
            next_key: AtomicU64::new(1),
            snd_hwm: AtomicU64::new(1000),
            peers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn zsockets(&self) -> std::sync::MutexGuard<'_, ZSockets> {
        self.zs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sends(&self) -> bool {
        !matches!(self.ty, SocketType::Pull | SocketType::Sub)
    }

    /// Our end object of a new connection.
    fn new_end(&self) -> Result<Arc<QueueObject>, TransportError> {
        let cap = if self.sends() {
            let hwm = self.snd_hwm.load(Ordering::Relaxed);
            let hwm = if hwm == 0 {
                u64::from(MAX_CAPACITY)
            } else {
                hwm
            };
            (hwm.clamp(1, u64::from(MAX_CAPACITY)) as u32).next_power_of_two()
        } else {
            0
        };
        Ok(Arc::new(QueueObject::create(
            &self.ctx.shm_id,
            RingKind::Ring,
            cap,
        )?))
    }

    pub(crate) fn bind(&self, endpoint: &str) -> Result<String, TransportError> {
        let ep = address::parse_endpoint(endpoint)?;
        let _ = ep;
        let mut zs = self.zsockets();
        if zs.router.is_none() {
            let s = self
                .ctx
                .zctx
                .socket(zmq::ROUTER)
                .map_err(|e| TransportError::Other(format!("socket {}: {e}", self.id)))?;
            let _ = s.set_linger(0);
            zs.router = Some(s);
        }
        let router = zs.router.as_ref().expect("router");
        router.bind(endpoint).map_err(|e| TransportError::Bind {
            socket: self.id.clone(),
            address: endpoint.to_string(),
            reason: match e {
                zmq::Error::EADDRINUSE => {
                    "address already in use; pick another port or path".into()
                }
                other => other.to_string(),
            },
        })?;
        Ok(match router.get_last_endpoint() {
            Ok(Ok(s)) if !s.is_empty() => s,
            _ => endpoint.to_string(),
        })
    }

    pub(crate) fn connect(&self, endpoint: &str) -> Result<(), TransportError> {
        address::parse_endpoint(endpoint)?;
        let err = |e: zmq::Error| TransportError::Connect {
            socket: self.id.clone(),
            address: endpoint.to_string(),
            reason: e.to_string(),
        };
        let sock = self.ctx.zctx.socket(zmq::DEALER).map_err(err)?;
        let _ = sock.set_linger(0);
        let _ = sock.set_reconnect_ivl(10);
        let _ = sock.set_reconnect_ivl_max(100);
        sock.connect(endpoint).map_err(err)?;
        let mut d = Dealer {
            sock,
            pending: None,
            last_hello: None,
            conn: None,
            last_refusal: None,
        };
        self.hello(&mut d)?;
        self.zsockets().dealers.push(d);
        Ok(())
    }

    fn hello(&self, d: &mut Dealer) -> Result<(), TransportError> {
        if d.pending.as_ref().is_some_and(|p| !p.name_exists()) {
            // Unlinked by a binder that then lost the connection (or by a cleanup): a hello
            // naming it would be ignored forever. Start over with a new end.
            d.pending = None;
        }
        if d.pending.is_none() {
            d.pending = Some(self.new_end()?);
        }
        let own = d.pending.as_ref().expect("pending");
        let msg = format!(
            "FMQH1 {} {} {} {:016x}",
            self.ty,
            own.name(),
            self.ctx.bell.name(),
            self.shared.secret()
        );
        let _ = d.sock.send(msg.as_bytes(), zmq::DONTWAIT);
        d.last_hello = Some(Instant::now());
        Ok(())
    }

    fn add_conn(
        &self,
        origin: Origin,
        own: Arc<QueueObject>,
        peer: QueueObject,
        peer_bell: Arc<QueueObject>,
    ) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            key,
            origin,
            peer_name: peer.name().to_string(),
            out: Producer::attach(own),
            inb: Consumer::attach(Arc::new(peer)),
            peer_bell,
            alive: true,
        };
        self.lock().conns.push(conn);
        self.peers.fetch_add(1, Ordering::SeqCst);
        // Wake a sender or poller waiting for a peer.
        self.ctx.wake();
        key
    }

    /// Whether `hex` is the session's secret (kept in `_mng`, readable only by the session's
    /// participants): the peer belongs to the session.
    fn proves_session(&self, hex: &str) -> bool {
        u64::from_str_radix(hex, 16).is_ok_and(|s| s == self.shared.secret())
    }

    /// A hello on our ROUTER.
    fn on_hello(&self, router: &zmq::Socket, identity: &[u8], body: &str) {
        let answer = |text: String| {
            let _ = router.send_multipart([identity, text.as_bytes()], zmq::DONTWAIT);
        };
        let mut words = body.split(' ');
        let (Some("FMQH1"), Some(ty), Some(obj), Some(bell), Some(secret)) = (
            words.next(),
            words.next(),
            words.next(),
            words.next(),
            words.next(),
        ) else {
            tracing::warn!("socket {}: ignoring a malformed handshake", self.id);
            return;
        };
        if !self.proves_session(secret) {
            // Not a peer of this session: say nothing that would help it.
            tracing::warn!(
                "socket {}: ignoring a handshake without the session secret (a process outside the session on this channel's address?)",
                self.id
            );
            return;
        }
        if ty.parse::<SocketType>().ok() != peer_type(self.ty) {
            answer(format!(
                "FMQR1 a {ty} socket cannot talk to {} socket {}",
                self.ty, self.id
            ));
            return;
        }
        {
            let st = self.lock();
            if let Some(c) = st.conns.iter().find(|c| c.peer_name == obj && c.alive) {
                answer(format!(
                    "FMQA1 {} {} {:016x}",
                    c.own().name(),
                    self.ctx.bell.name(),
                    self.shared.secret()
                ));
                return;
            }
            if self.ty == SocketType::Pair && st.conns.iter().any(|c| c.alive) {
                answer(format!("FMQR1 pair socket {} has its peer", self.id));
                return;
            }
        }
        let peer = match QueueObject::open(&self.ctx.shm_id, obj, RingKind::Ring) {
            Ok(p) => p,
            // An old hello naming an object already connected and unlinked, or one whose
            // creator is gone: nothing to answer.
            Err(e) => {
                tracing::debug!("socket {}: handshake ignored: {e}", self.id);
                return;
            }
        };
        let result = (|| {
            let bell = self.ctx.peer_bell(bell)?;
            let own = self.new_end()?;
            Ok::<_, TransportError>((bell, own))
        })();
        match result {
            Ok((bell, own)) => {
                // Only now: after a refusal the connector's object must still be there for
                // its next hello.
                peer.unlink();
                answer(format!(
                    "FMQA1 {} {} {:016x}",
                    own.name(),
                    self.ctx.bell.name(),
                    self.shared.secret()
                ));
                self.add_conn(Origin::Bound(identity.to_vec()), own, peer, bell);
            }
            Err(e) => {
                tracing::warn!("socket {}: could not accept a connection: {e}", self.id);
                answer(format!("FMQR1 {e}"));
            }
        }
    }

    /// An answer on dealer `n`.
    fn on_answer(&self, n: usize, d: &mut Dealer, body: &str) {
        let mut words = body.split(' ');
        match words.next() {
            Some("FMQA1") if d.conn.is_none() && d.pending.is_some() => {
                let (Some(obj), Some(bell), Some(secret)) =
                    (words.next(), words.next(), words.next())
                else {
                    return;
                };
                if !self.proves_session(secret) {
                    tracing::warn!(
                        "socket {}: ignoring an answer without the session secret",
                        self.id
                    );
                    return;
                }
                let opened = QueueObject::open(&self.ctx.shm_id, obj, RingKind::Ring)
                    .and_then(|p| Ok((p, self.ctx.peer_bell(bell)?)));
                match opened {
                    Ok((peer, bell)) => {
                        peer.unlink();
                        let own = d.pending.take().expect("pending");
                        d.conn = Some(self.add_conn(Origin::Connected(n), own, peer, bell));
                    }
                    Err(e) => tracing::debug!("socket {}: answer ignored: {e}", self.id),
                }
            }
            Some("FMQR1") if d.last_refusal.as_deref() != Some(body) => {
                tracing::warn!(
                    "socket {}: the peer refused the connection ({}); retrying",
                    self.id,
                    body.trim_start_matches("FMQR1 ")
                );
                d.last_refusal = Some(body.to_string());
            }
            _ => {}
        }
    }

    /// One round of the handshake thread: hellos, answers, liveness.
    fn round(&self, last_check: &mut Instant) {
        {
            let mut zs = self.zsockets();
            let ZSockets { router, dealers } = &mut *zs;
            let mut items: Vec<zmq::PollItem<'_>> = Vec::with_capacity(1 + dealers.len());
            if let Some(r) = router.as_ref() {
                items.push(r.as_poll_item(zmq::POLLIN));
            }
            for d in dealers.iter() {
                items.push(d.sock.as_poll_item(zmq::POLLIN));
            }
            let timeout = if items.is_empty() { 0 } else { POLL_MS };
            let ready: Vec<bool> = match zmq::poll(&mut items, timeout) {
                Ok(_) => items.iter().map(|i| i.is_readable()).collect(),
                Err(_) => vec![false; items.len()],
            };
            drop(items);
            let mut k = 0;
            if let Some(r) = router.as_ref() {
                if ready[k] {
                    while let Ok(frames) = r.recv_multipart(zmq::DONTWAIT) {
                        if frames.len() == 2 {
                            let body = String::from_utf8_lossy(&frames[1]).into_owned();
                            self.on_hello(r, &frames[0], &body);
                        }
                    }
                }
                k += 1;
            }
            for (n, d) in dealers.iter_mut().enumerate() {
                if ready[k + n] {
                    while let Ok(frame) = d.sock.recv_bytes(zmq::DONTWAIT) {
                        let body = String::from_utf8_lossy(&frame).into_owned();
                        self.on_answer(n, d, &body);
                    }
                }
                if d.conn.is_none() && d.last_hello.is_none_or(|t| t.elapsed() >= HELLO_INTERVAL) {
                    if let Err(e) = self.hello(d) {
                        // Retried every HELLO_INTERVAL (a full /dev/shm may get room again):
                        // each new reason is logged once.
                        d.last_hello = Some(Instant::now());
                        let why = e.to_string();
                        if d.last_refusal.as_deref() != Some(why.as_str()) {
                            tracing::warn!("socket {}: handshake failed: {why}; retrying", self.id);
                            d.last_refusal = Some(why);
                        }
                    }
                }
            }
        }
        if last_check.elapsed() >= LIVENESS_INTERVAL {
            *last_check = Instant::now();
            self.check_liveness();
        }
    }

    /// Marks connections whose peer is gone, frees what we queued towards them, drops the
    /// dead connections that have nothing left to deliver.
    pub(crate) fn check_liveness(&self) {
        let mut died = false;
        let mut redial = Vec::new();
        {
            let mut st = self.lock();
            for c in st.conns.iter_mut() {
                if c.alive && !c.peer().creator_alive() {
                    c.alive = false;
                    died = true;
                    self.peers.fetch_sub(1, Ordering::SeqCst);
                    drain_own(&self.shared, c);
                    c.own().unlink();
                    if let Origin::Connected(n) = c.origin {
                        redial.push(n);
                    }
                }
            }
            st.conns.retain(|c| c.alive || !c.inb.is_empty());
        }
        if died {
            let mut zs = self.zsockets();
            for n in redial {
                if let Some(d) = zs.dealers.get_mut(n) {
                    d.conn = None;
                    d.last_hello = None;
                }
            }
            self.ctx.wake();
        }
    }

    pub(crate) fn spawn(self: &Arc<Self>) -> Result<JoinHandle<()>, TransportError> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("fmq-shm-conn".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !me.stop.load(Ordering::Acquire) {
                    let t = Instant::now();
                    me.round(&mut last);
                    if t.elapsed() < Duration::from_millis(2) {
                        // Nothing to poll (no endpoint yet): do not spin.
                        std::thread::sleep(Duration::from_millis(POLL_MS as u64));
                    }
                }
            })
            .map_err(|e| TransportError::Other(format!("could not start a thread: {e}")))
    }

    /// Stops the thread's loop (joined by the owner), and releases every connection: what
    /// nobody will read any more is freed.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(crate) fn close(&self) {
        let mut st = self.lock();
        for mut c in st.conns.drain(..) {
            let peer_gone = !c.alive || !c.peer().creator_alive();
            if peer_gone {
                drain_own(&self.shared, &mut c);
                let mut out = Vec::new();
                while c.inb.pop(&mut out, &*c.peer_bell).is_ok() {
                    free_slots(&self.shared, &out);
                }
            }
            c.own().unlink();
        }
        drop(st);
        let mut zs = self.zsockets();
        for d in zs.dealers.drain(..) {
            if let Some(p) = d.pending {
                p.unlink();
            }
        }
        zs.router = None;
    }
}

fn free_slots(shared: &Arc<Shared>, slots: &[super::queue::Slot]) {
    let n = slots.first().map_or(0, |s| {
        if s.kind == super::queue::KIND_MULTI {
            s.parts as usize
        } else {
            1
        }
    });
    for s in slots.iter().take(n) {
        free_descriptor(shared, s.meta, s.tag);
    }
}

/// Frees what we queued towards a peer that will not read it: we consume our own ring.
fn drain_own(shared: &Arc<Shared>, c: &mut Conn) {
    if c.own().capacity() == 0 {
        return;
    }
    let mut cons = Consumer::attach(c.own().clone());
    let mut out = Vec::new();
    struct NoBell;
    impl super::queue::Bell for NoBell {
        fn ring(&self) {}
    }
    loop {
        match cons.pop(&mut out, &NoBell) {
            Ok(()) => free_slots(shared, &out),
            Err(PopError::Empty) => break,
            Err(PopError::Corrupt(e)) => {
                tracing::warn!("own queue {} inconsistent: {e}", c.own().name());
                break;
            }
        }
    }
    // Our producer's view of the head is stale now; re-attach it.
    c.out = Producer::attach(c.own().clone());
}
