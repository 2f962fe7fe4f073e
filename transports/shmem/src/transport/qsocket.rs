//! Sockets of the descriptor-queue path (`shm-metadata-path queue`): descriptors move through
//! the shared-memory rings of `queue.rs`, one pair per connection made by `rendezvous.rs`.
//!
//! Semantics kept from the libzmq path: PAIR (one peer), PUSH round robin over the connected
//! peers with room, PULL fair queuing, REQ (answer only from the peer asked) and REP (answer to
//! the peer that asked; an answer to a peer that is gone is dropped, as libzmq does), PUB/SUB
//! (one buffer for every subscriber: one reference-count increment per subscriber beyond the
//! first, no copy; a subscriber whose queue is full misses the message, counted in
//! [`QueueSocket::dropped`], and never blocks the publisher or the others); multipart
//! atomic (one index store publishes all parts); timeouts; interruption (the factory rings the
//! bell every sleeper waits on); counters. The bound of a connection is the sender's snd-hwm
//! (in slots: one per part), rounded up to a power of two; rcv-hwm stays 0 as on the libzmq
//! path. Unlike libzmq, a send with no connected peer waits (or times out) instead of queueing
//! for a peer that may come.
//!
//! Waiting: read the factory's bell, arm the queues waited for, re-check them, sleep on the
//! bell for at most [`SLICE`] (the slice bounds how late a dead peer or a new connection is
//! noticed when no wake-up comes).

use super::factory::Shared;
use super::message::ShmMessage;
use super::queue::{PopError, RingMem, Slot, KIND_MULTI, KIND_SINGLE, SLOT_SIZE};
use super::queue_compat;
use super::rendezvous::{Endpoints, QueueContext, State};
use super::wire::MetaHeader;
use fairmq_transport::{
    Message, MessagePtr, Parts, Socket, SocketType, TransferError, TransferResult, TransportError,
};
use fairmq_zmq_core::Counters;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest single sleep of a blocked transfer or poll.
pub const SLICE: Duration = Duration::from_millis(20);
/// Pause instructions between two looks of a [`WaitBudget::spins`] step.
const SPIN_PAUSES: usize = 64;

/// How a blocked transfer or poll waits before it arms and sleeps on the bell, read once from
/// the environment.
struct WaitBudget {
    /// Looks one pause instruction apart (`FAIRMQ_SHM_QUEUE_LOOKS`, default 256): a peer in the
    /// middle of a transfer moves within a microsecond, and a look every pause sees it at once
    /// (64 pauses apart, about 1.5 µs here, it was noticed some 0.7 µs late on average).
    looks: usize,
    /// Then looks [`SPIN_PAUSES`] pauses apart (`FAIRMQ_SHM_QUEUE_SPINS`, default 10).
    spins: usize,
    /// Then looks after a `sched_yield` each (`FAIRMQ_SHM_QUEUE_YIELDS`, default 20), which
    /// hands the processor to the peer on a machine with fewer cores than runnable threads.
    yields: usize,
}

fn budget() -> &'static WaitBudget {
    static BUDGET: std::sync::OnceLock<WaitBudget> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| {
        let count = |var: &str, default: usize| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        WaitBudget {
            looks: count("FAIRMQ_SHM_QUEUE_LOOKS", 256),
            spins: count("FAIRMQ_SHM_QUEUE_SPINS", 10),
            yields: count("FAIRMQ_SHM_QUEUE_YIELDS", 20),
        }
    })
}

/// Waits step `k` of the [`WaitBudget`]; `false`: the budget is spent, arm and sleep.
fn wait_step(k: usize) -> bool {
    let b = budget();
    if k < b.looks {
        std::hint::spin_loop();
    } else if k < b.looks + b.spins {
        for _ in 0..SPIN_PAUSES {
            std::hint::spin_loop();
        }
    } else if k < b.looks + b.spins + b.yields {
        std::thread::yield_now();
    } else {
        return false;
    }
    true
}

/// A shmem socket on the descriptor-queue path.
pub struct QueueSocket {
    ep: Arc<Endpoints>,
    thread: Option<JoinHandle<()>>,
    counters: Counters,
    linger: AtomicI64,
    /// The slots of the message being received (reused).
    scratch: Mutex<Vec<Slot>>,
    dropped: std::sync::atomic::AtomicU64,
    snd_size: AtomicI64,
    rcv_size: AtomicI64,
}

/// What a ready check found.
enum Ready<T> {
    Done(T),
    NotYet,
}

impl QueueSocket {
    pub(crate) fn new(
        ctx: Arc<QueueContext>,
        shared: Arc<Shared>,
        ty: SocketType,
        id: String,
    ) -> Result<QueueSocket, TransportError> {
        let ep = Arc::new(Endpoints::new(id, ty, ctx, shared));
        let thread = Some(ep.spawn()?);
        Ok(QueueSocket {
            ep,
            thread,
            counters: Counters::default(),
            linger: AtomicI64::new(1000),
            scratch: Mutex::new(Vec::new()),
            dropped: std::sync::atomic::AtomicU64::new(0),
            snd_size: AtomicI64::new(0),
            rcv_size: AtomicI64::new(0),
        })
    }

    /// PUB: messages a subscriber missed because its queue was full (one per subscriber and
    /// message).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// PUB: hands `parts` (one message) to every subscriber with room, without blocking. The
    /// last subscriber takes the caller's references, every other one a zero-copy copy.
    /// Afterwards the caller's messages are empty (sent, or released if nobody took them).
    fn publish(&self, parts: &mut [&mut ShmMessage], multi: bool) {
        let n = parts.len().max(1) as u64;
        let mut st = self.ep.lock();
        let mut targets = Vec::new();
        for (i, c) in st.conns.iter_mut().enumerate() {
            if !c.alive {
                continue;
            }
            if c.out.has_room(n) {
                targets.push(i);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let slots_of = |ms: &[&ShmMessage]| -> Vec<[u8; SLOT_SIZE]> {
            if ms.is_empty() {
                return vec![Slot {
                    parts: 0,
                    kind: KIND_MULTI,
                    meta: MetaHeader::EMPTY,
                    tag: 0,
                }
                .encode()];
            }
            ms.iter()
                .map(|m| {
                    Slot {
                        parts: if multi { ms.len() as u32 } else { 1 },
                        kind: if multi { KIND_MULTI } else { KIND_SINGLE },
                        meta: m.wire_meta(),
                        tag: queue_compat::tag(m),
                    }
                    .encode()
                })
                .collect()
        };
        let mut delivered = false;
        for (k, &i) in targets.iter().enumerate() {
            let last = k + 1 == targets.len();
            if last {
                let originals: Vec<&ShmMessage> = parts.iter().map(|m| &**m).collect();
                let slots = slots_of(&originals);
                let c = &mut st.conns[i];
                if c.out.push(&slots, &*c.peer_bell) {
                    parts.iter_mut().for_each(|m| m.mark_sent());
                    delivered = true;
                }
                continue;
            }
            let mut copies = Vec::with_capacity(parts.len());
            for m in parts.iter() {
                let mut c = ShmMessage::empty(self.ep.shared.clone(), None);
                if c.copy_from(&**m).is_err() {
                    break;
                }
                copies.push(c);
            }
            if copies.len() != parts.len() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue; // the copies made are released on drop
            }
            let refs: Vec<&ShmMessage> = copies.iter().collect();
            let slots = slots_of(&refs);
            let c = &mut st.conns[i];
            if c.out.push(&slots, &*c.peer_bell) {
                copies.iter_mut().for_each(|m| m.mark_sent());
            }
        }
        drop(st);
        if !delivered {
            parts.iter_mut().for_each(|m| m.rebuild());
        }
    }

    fn other(&self, reason: impl Into<String>) -> TransferError {
        TransferError::Other {
            socket: self.ep.id.clone(),
            reason: reason.into(),
        }
    }

    /// Runs `attempt` until it is done, re-arming and sleeping on the bell in between.
    fn blocking<T>(
        &self,
        timeout_ms: i64,
        mut attempt: impl FnMut(&mut State, bool) -> Result<Ready<T>, TransferError>,
    ) -> Result<T, TransferError> {
        let ctx = &self.ep.ctx;
        // The clock is read only once a transfer has to wait.
        let mut start: Option<Instant> = None;
        loop {
            if ctx.interrupted.load(Ordering::SeqCst) {
                return Err(TransferError::Interrupted);
            }
            let seen = ctx.bell.bell_word().load(Ordering::Acquire);
            {
                let mut st = self.ep.lock();
                if let Ready::Done(v) = attempt(&mut st, false)? {
                    return Ok(v);
                }
                if timeout_ms == 0 {
                    return Err(TransferError::Timeout);
                }
            }
            // A busy peer is likely to move within microseconds: look again before sleeping.
            let mut k = 0;
            while wait_step(k) {
                k += 1;
                let mut st = self.ep.lock();
                if let Ready::Done(v) = attempt(&mut st, false)? {
                    return Ok(v);
                }
            }
            {
                let mut st = self.ep.lock();
                // Armed: the other side wakes us if it moves after this check.
                if let Ready::Done(v) = attempt(&mut st, true)? {
                    return Ok(v);
                }
            }
            let slice = if timeout_ms < 0 {
                SLICE
            } else {
                let start = *start.get_or_insert_with(Instant::now);
                let left = Duration::from_millis(timeout_ms as u64).saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(TransferError::Timeout);
                }
                left.min(SLICE)
            };
            ctx.bell.wait_bell(seen, slice);
        }
    }

    /// Publishes one message of `slots` through a connection chosen as the socket type says.
    /// `Ok(false)`: dropped (a REP answer to a peer that is gone).
    fn send_slots(
        &self,
        slots: &[[u8; SLOT_SIZE]],
        timeout_ms: i64,
    ) -> Result<bool, TransferError> {
        let ty = self.ep.ty;
        let n = slots.len() as u64;
        match ty {
            SocketType::Pull | SocketType::Sub => {
                return Err(self.other(format!(
                    "a {ty} socket cannot send (operation not supported)"
                )))
            }
            SocketType::Rep => {
                let mut st = self.ep.lock();
                let Some(key) = st.last.take() else {
                    return Err(self.other(
                        "a REP socket must receive a request before it sends (operation cannot be accomplished in current state)",
                    ));
                };
                drop(st);
                return self.blocking(timeout_ms, |st, arm| {
                    let Some(c) = st.conns.iter_mut().find(|c| c.key == key && c.alive) else {
                        return Ok(Ready::Done(false));
                    };
                    if c.out.push(slots, &*c.peer_bell) {
                        return Ok(Ready::Done(true));
                    }
                    if arm {
                        c.out.arm();
                    }
                    Ok(Ready::NotYet)
                });
            }
            _ => {}
        }
        let cap_ok = |st: &State| {
            st.conns
                .iter()
                .filter(|c| c.alive)
                .any(|c| c.out.mem().capacity() >= n)
        };
        self.blocking(timeout_ms, |st, arm| {
            let len = st.conns.len();
            if len > 0 && !cap_ok(st) && st.conns.iter().any(|c| c.alive) {
                return Err(self.other(format!(
                    "a message of {n} parts does not fit the connection's queue; raise the channel's sndBufSize (snd-hwm) above {n}"
                )));
            }
            for k in 0..len {
                let i = (st.rr_send + k) % len;
                let c = &mut st.conns[i];
                if !c.alive {
                    continue;
                }
                if c.out.push(slots, &*c.peer_bell) {
                    let key = c.key;
                    st.rr_send = (i + 1) % len;
                    if ty == SocketType::Req {
                        st.last = Some(key);
                    }
                    return Ok(Ready::Done(true));
                }
                if arm {
                    c.out.arm();
                }
            }
            Ok(Ready::NotYet)
        })
    }

    /// Takes the next message: its slots (first says the kind and count).
    fn receive_slots(&self, timeout_ms: i64) -> Result<MutexGuard<'_, Vec<Slot>>, TransferError> {
        let ty = self.ep.ty;
        if matches!(ty, SocketType::Push | SocketType::Pub) {
            return Err(self.other(format!(
                "a {ty} socket cannot receive (operation not supported)"
            )));
        }
        let req_key = if ty == SocketType::Req {
            let st = self.ep.lock();
            Some(st.last.ok_or_else(|| {
                self.other("a REQ socket must send a request before it receives (operation cannot be accomplished in current state)")
            })?)
        } else {
            None
        };
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        self.blocking(timeout_ms, |st, arm| {
            let len = st.conns.len();
            for k in 0..len {
                let i = (st.rr_recv + k) % len;
                let c = &mut st.conns[i];
                if req_key.is_some_and(|r| r != c.key) {
                    continue;
                }
                match c.inb.pop(&mut scratch, &*c.peer_bell) {
                    Ok(()) => {
                        let key = c.key;
                        st.rr_recv = (i + 1) % len;
                        if ty == SocketType::Rep {
                            st.last = Some(key);
                        }
                        return Ok(Ready::Done(()));
                    }
                    Err(PopError::Empty) => {
                        if arm {
                            c.inb.arm();
                        }
                    }
                    Err(PopError::Corrupt(e)) => {
                        c.alive = false;
                        return Err(self.other(format!(
                            "the queue from peer {} is inconsistent ({e}); connection dropped",
                            c.peer_name
                        )));
                    }
                }
            }
            Ok(Ready::NotYet)
        })?;
        if ty == SocketType::Req {
            self.ep.lock().last = None;
        }
        Ok(scratch)
    }

    fn convert(&self, msg: &MessagePtr) -> Result<ShmMessage, TransferError> {
        let mut m = ShmMessage::allocate(self.ep.shared.clone(), msg.size(), msg.alignment())
            .map_err(|e| self.other(e.to_string()))?;
        m.data_mut().copy_from_slice(msg.data());
        Ok(m)
    }

    fn adopt(&self, meta: MetaHeader, tag: u64) -> Result<ShmMessage, TransferError> {
        let mut m = ShmMessage::empty(self.ep.shared.clone(), None);
        queue_compat::adopt(&mut m, meta, tag).map_err(|e| self.other(e.to_string()))?;
        Ok(m)
    }

    /// Readiness for a poll: (has input, can output).
    pub(crate) fn readiness(&self, arm: bool) -> (bool, bool) {
        let mut st = self.ep.lock();
        let last = st.last;
        let ty = self.ep.ty;
        let mut input = false;
        let mut output = false;
        for c in st.conns.iter_mut() {
            if ty.polls_input() && (ty != SocketType::Req || last == Some(c.key)) {
                if !c.inb.is_empty() {
                    input = true;
                } else if arm {
                    c.inb.arm();
                }
            }
            if ty == SocketType::Pub {
                output = true;
                continue;
            }
            if ty.polls_output() && ty != SocketType::Pull && c.alive {
                if ty == SocketType::Rep && last != Some(c.key) {
                    continue;
                }
                if c.out.has_room(1) {
                    output = true;
                } else if arm {
                    c.out.arm();
                }
            }
        }
        // A publisher never waits (a full subscriber misses the message).
        (input, output || ty == SocketType::Pub)
    }

    /// Polls queue sockets of one factory.
    pub(crate) fn poll(
        ctx: &QueueContext,
        sockets: &[&QueueSocket],
        timeout_ms: i64,
    ) -> Vec<(bool, bool)> {
        let start = Instant::now();
        // One look at every socket, into `r` (reused: the wait below looks hundreds of times);
        // `true` if any is ready. `arm` as in `readiness`.
        let mut r = Vec::with_capacity(sockets.len());
        let look = |r: &mut Vec<(bool, bool)>, arm: bool| {
            r.clear();
            r.extend(sockets.iter().map(|s| s.readiness(arm)));
            r.iter().any(|(i, o)| *i || *o)
        };
        loop {
            let seen = ctx.bell.bell_word().load(Ordering::Acquire);
            if look(&mut r, false) || timeout_ms == 0 {
                return r;
            }
            let mut k = 0;
            while wait_step(k) {
                k += 1;
                if look(&mut r, false) {
                    return r;
                }
            }
            if look(&mut r, true) || ctx.interrupted.load(Ordering::SeqCst) {
                return r;
            }
            let slice = if timeout_ms < 0 {
                SLICE
            } else {
                let left = Duration::from_millis(timeout_ms as u64).saturating_sub(start.elapsed());
                if left.is_zero() {
                    return r;
                }
                left.min(SLICE)
            };
            ctx.bell.wait_bell(seen, slice);
        }
    }
}

fn single_slot(meta: MetaHeader, tag: u64) -> [u8; SLOT_SIZE] {
    Slot {
        parts: 1,
        kind: KIND_SINGLE,
        meta,
        tag,
    }
    .encode()
}

impl Drop for QueueSocket {
    fn drop(&mut self) {
        self.ep.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.ep.close();
    }
}

impl Socket for QueueSocket {
    fn id(&self) -> &str {
        &self.ep.id
    }
    fn socket_type(&self) -> SocketType {
        self.ep.ty
    }
    fn transport(&self) -> &'static str {
        super::NAME
    }
    fn bind(&self, endpoint: &str) -> Result<String, TransportError> {
        self.ep.bind(endpoint)
    }
    fn connect(&self, endpoint: &str) -> Result<(), TransportError> {
        self.ep.connect(endpoint)
    }

    fn send(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        let size = msg.size();
        let mut converted = None;
        let m = match msg.as_any().downcast_ref::<ShmMessage>() {
            Some(m) => m,
            None => converted.insert(self.convert(msg)?),
        };
        if self.ep.ty == SocketType::Pub {
            match converted.as_mut() {
                Some(c) => {
                    self.publish(&mut [c], false);
                    msg.rebuild();
                }
                None => {
                    if let Some(m) = msg.as_any_mut().downcast_mut::<ShmMessage>() {
                        self.publish(&mut [m], false);
                    }
                }
            }
            self.counters.sent(size);
            return Ok(size);
        }
        let slot = single_slot(m.wire_meta(), queue_compat::tag(m));
        let delivered = self.send_slots(&[slot], timeout_ms)?;
        match converted {
            Some(mut c) => {
                if delivered {
                    c.mark_sent();
                }
                msg.rebuild();
            }
            None => {
                if let Some(m) = msg.as_any_mut().downcast_mut::<ShmMessage>() {
                    if delivered {
                        m.mark_sent();
                    } else {
                        m.rebuild();
                    }
                }
            }
        }
        self.counters.sent(size);
        Ok(size)
    }

    fn receive(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        let slots = self.receive_slots(timeout_ms)?;
        let first = slots[0];
        if first.kind == KIND_MULTI && first.parts != 1 {
            // The message is consumed: release its parts.
            for s in slots.iter().take(first.parts as usize) {
                super::rendezvous::free_descriptor(&self.ep.shared, s.meta, s.tag);
            }
            return Err(self.other(format!(
                "received a multipart message of {} parts with a single-message receive; use receive_parts (the message was dropped)",
                first.parts
            )));
        }
        match msg.as_any_mut().downcast_mut::<ShmMessage>() {
            // Into the caller's message, which keeps its alignment request.
            Some(target) => queue_compat::adopt(target, first.meta, first.tag)
                .map_err(|e| self.other(e.to_string()))?,
            None => *msg = Box::new(self.adopt(first.meta, first.tag)?),
        }
        let size = msg.size();
        self.counters.received(size);
        Ok(size)
    }

    fn send_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        let size = parts.total_size();
        let n = parts.len() as u32;
        let mut converted: Vec<Option<ShmMessage>> = Vec::with_capacity(parts.len());
        let mut slots = Vec::with_capacity(parts.len().max(1));
        for p in parts.iter() {
            let c = match p.as_any().downcast_ref::<ShmMessage>() {
                Some(_) => None,
                None => Some(self.convert(p)?),
            };
            let m = match &c {
                Some(c) => c,
                None => p
                    .as_any()
                    .downcast_ref::<ShmMessage>()
                    .expect("a shmem message"),
            };
            slots.push(
                Slot {
                    parts: n,
                    kind: KIND_MULTI,
                    meta: m.wire_meta(),
                    tag: queue_compat::tag(m),
                }
                .encode(),
            );
            converted.push(c);
        }
        if self.ep.ty == SocketType::Pub {
            let mut refs: Vec<&mut ShmMessage> = Vec::with_capacity(parts.len());
            for (p, c) in parts.iter_mut().zip(converted.iter_mut()) {
                match c {
                    Some(c) => refs.push(c),
                    None => {
                        if let Some(m) = p.as_any_mut().downcast_mut::<ShmMessage>() {
                            refs.push(m);
                        }
                    }
                }
            }
            self.publish(&mut refs, true);
            drop(refs);
            parts.clear();
            self.counters.sent(size);
            return Ok(size);
        }
        if slots.is_empty() {
            slots.push(
                Slot {
                    parts: 0,
                    kind: KIND_MULTI,
                    meta: MetaHeader::EMPTY,
                    tag: 0,
                }
                .encode(),
            );
        }
        let delivered = self.send_slots(&slots, timeout_ms)?;
        for (p, c) in parts.iter_mut().zip(converted) {
            match c {
                Some(mut c) => {
                    if delivered {
                        c.mark_sent();
                    }
                    p.rebuild();
                }
                None => {
                    if let Some(m) = p.as_any_mut().downcast_mut::<ShmMessage>() {
                        if delivered {
                            m.mark_sent();
                        }
                    }
                }
            }
        }
        parts.clear();
        self.counters.sent(size);
        Ok(size)
    }

    fn receive_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        let slots = self.receive_slots(timeout_ms)?;
        let first = slots[0];
        let n = if first.kind == KIND_MULTI {
            first.parts as usize
        } else {
            1
        };
        let mut got = Vec::with_capacity(n);
        let mut size = 0;
        let mut failed = None;
        for (i, s) in slots.iter().take(n).enumerate() {
            if failed.is_some() {
                super::rendezvous::free_descriptor(&self.ep.shared, s.meta, s.tag);
                continue;
            }
            match self.adopt(s.meta, s.tag) {
                Ok(m) => {
                    size += m.size();
                    got.push(m);
                }
                Err(e) => failed = Some((i, e)),
            }
        }
        if let Some((i, e)) = failed {
            return Err(self.other(format!("part {i} of a received message: {e}")));
        }
        for m in got {
            parts.add_part(Box::new(m));
        }
        self.counters.received(size);
        Ok(size)
    }

    fn set_option(&self, name: &str, value: i64) -> Result<(), TransportError> {
        match name {
            "linger" => self.linger.store(value, Ordering::Relaxed),
            "snd-hwm" => self
                .ep
                .snd_hwm
                .store(value.max(0) as u64, Ordering::Relaxed),
            // The receive side adds no bound of its own (see the module documentation).
            "rcv-hwm" => {}
            "snd-size" => self.snd_size.store(value, Ordering::Relaxed),
            "rcv-size" => self.rcv_size.store(value, Ordering::Relaxed),
            other => return Err(TransportError::UnknownOption(other.to_string())),
        }
        Ok(())
    }
    fn get_option(&self, name: &str) -> Result<i64, TransportError> {
        Ok(match name {
            "linger" => self.linger.load(Ordering::Relaxed),
            "snd-hwm" => self.ep.snd_hwm.load(Ordering::Relaxed) as i64,
            "rcv-hwm" => 0,
            "snd-size" => self.snd_size.load(Ordering::Relaxed),
            "rcv-size" => self.rcv_size.load(Ordering::Relaxed),
            other => return Err(TransportError::UnknownOption(other.to_string())),
        })
    }
    fairmq_zmq_core::forward_socket_counters!(self => self.ep.peers.load(Ordering::SeqCst));
}
