//! The libzmq plumbing that the zeromq transport (payloads) and the shmem transport (its
//! metadata) share, in a crate below both so that neither imports the other: the context,
//! sockets with FairMQ's blocking model (interruptible slices, options by FairMQ name,
//! connected-peer counting), libzmq messages through `zmq-sys` ([`RawMsg`]), and the
//! per-transfer socket claim.

use fairmq_transport::{address, SocketType, TransferError, TransportError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

mod claim;
mod ffi;
mod pool;

use claim::Claimable;
pub use claim::Claimed;
#[cfg(test)]
use ffi::batch_size;
pub use ffi::RawMsg;
use ffi::{set_batch_size, Batch};

/// Which way a transfer goes (which socket timeout applies).
#[derive(Clone, Copy)]
enum Direction {
    Send,
    Receive,
}

/// A unique id for a factory created without one (FairMQ uses a random UUID).
pub fn generated_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{:x}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Longest single wait inside a blocking call; bounds how late an interrupt is noticed.
pub const SLICE_MS: i64 = 20;

/// The batch buffers of every socket's stream connections (tcp, ipc), in bytes: one `write`
/// carries up to this much of the queued messages and one `read` takes up to this much, where
/// libzmq's default of 8 KiB takes a system call per two 4 KiB messages. A message at least this
/// large still goes out of and comes into its own buffer without a copy. FairMQ keeps libzmq's
/// default; the wire format is the same.
pub const BATCH_BYTES: i32 = 64 << 10;

static MONITOR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A libzmq context plus the state every socket of one factory shares: the interrupt flag and
/// the inproc peer registry.
pub struct Context {
    ctx: zmq::Context,
    interrupted: Arc<AtomicBool>,
    inproc: Arc<Mutex<HashMap<String, Weak<AtomicI64>>>>,
}

impl Context {
    /// A new context with `io_threads` I/O threads.
    pub fn new(io_threads: i32) -> Result<Self, TransportError> {
        let ctx = zmq::Context::new();
        ctx.set_io_threads(io_threads.max(1)).map_err(|e| {
            TransportError::Other(format!(
                "could not set {io_threads} I/O threads (--io-threads): {e}"
            ))
        })?;
        Ok(Context {
            ctx,
            interrupted: Arc::new(AtomicBool::new(false)),
            inproc: Arc::default(),
        })
    }

    /// Makes blocking calls of every socket of this context return `Interrupted`.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }

    /// Clears the interrupt flag.
    pub fn resume(&self) {
        self.interrupted.store(false, Ordering::SeqCst);
    }

    /// The interrupt flag itself, for other blocking operations of the same transport (the
    /// shmem transport's allocations).
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupted.clone()
    }

    /// Whether the context is interrupted.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Polls the given sockets (in slices, returning early with nothing ready when
    /// interrupted). `events[i]` is `(want input, want output)`.
    pub fn poll(
        &self,
        cores: &[&SocketCore],
        timeout_ms: i64,
    ) -> Result<Vec<(bool, bool)>, TransportError> {
        let guards: Vec<Claimed<'_, zmq::Socket>> = cores.iter().map(|c| c.lock()).collect();
        let mut items: Vec<zmq::PollItem<'_>> = guards
            .iter()
            .zip(cores)
            .map(|(g, c)| g.as_poll_item(c.poll_events()))
            .collect();
        let start = Instant::now();
        loop {
            let slice = match remaining(timeout_ms, start) {
                Some(0) => 0,
                Some(ms) => ms.min(SLICE_MS),
                None => SLICE_MS,
            };
            match zmq::poll(&mut items, slice) {
                Ok(n) if n > 0 => {
                    return Ok(items
                        .iter()
                        .map(|i| (i.is_readable(), i.is_writable()))
                        .collect())
                }
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(zmq::Error::ETERM) => return Ok(vec![(false, false); cores.len()]),
                Err(e) => return Err(TransportError::Poll(format!("polling failed, reason: {e}"))),
            }
            if self.interrupted() || remaining(timeout_ms, start) == Some(0) {
                return Ok(vec![(false, false); cores.len()]);
            }
        }
    }
}

/// Polls `sockets`, which must all be sockets of type `T` of one transport; `core` finds the
/// [`SocketCore`] of each. A socket of another type is an error naming it.
pub fn poll_sockets<T: 'static>(
    ctx: &Context,
    sockets: &[&dyn fairmq_transport::Socket],
    timeout_ms: i64,
    transport: &str,
    core: impl Fn(&T) -> &SocketCore,
) -> Result<fairmq_transport::PollResult, TransportError> {
    let cores = sockets
        .iter()
        .map(|s| {
            s.as_any().downcast_ref::<T>().map(&core).ok_or_else(|| {
                TransportError::Poll(format!(
                    "socket {} is a {} socket; a {transport} poller cannot mix transports",
                    s.id(),
                    s.transport()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fairmq_transport::PollResult::new(
        ctx.poll(&cores, timeout_ms)?,
    ))
}

/// Implements the [`fairmq_transport::Socket`] methods that only forward to a socket's
/// `counters: Counters` field, its peer count and the upcast. Without arguments the peers come
/// from a `core: SocketCore` field; `forward_socket_counters!(self => <expr>)` gives them
/// otherwise.
#[macro_export]
macro_rules! forward_socket_counters {
    () => {
        $crate::forward_socket_counters!(self => self.core.connected_peers());
    };
    ($s:ident => $peers:expr) => {
        fn bytes_tx(&$s) -> u64 {
            $s.counters.bytes_tx()
        }
        fn bytes_rx(&$s) -> u64 {
            $s.counters.bytes_rx()
        }
        fn messages_tx(&$s) -> u64 {
            $s.counters.messages_tx()
        }
        fn messages_rx(&$s) -> u64 {
            $s.counters.messages_rx()
        }
        fn connected_peers(&$s) -> usize {
            $peers
        }
        fn as_any(&$s) -> &dyn ::std::any::Any {
            $s
        }
    };
}

/// Milliseconds left of `timeout_ms` since `start`: `None` for "forever".
fn remaining(timeout_ms: i64, start: Instant) -> Option<i64> {
    if timeout_ms < 0 {
        return None;
    }
    let elapsed = start.elapsed().as_millis() as i64;
    Some((timeout_ms - elapsed).max(0))
}

fn zmq_type(t: SocketType) -> zmq::SocketType {
    match t {
        SocketType::Pair => zmq::PAIR,
        SocketType::Push => zmq::PUSH,
        SocketType::Pull => zmq::PULL,
        SocketType::Pub => zmq::PUB,
        SocketType::Sub => zmq::SUB,
        SocketType::XPub => zmq::XPUB,
        SocketType::XSub => zmq::XSUB,
        SocketType::Req => zmq::REQ,
        SocketType::Rep => zmq::REP,
        SocketType::Dealer => zmq::DEALER,
        SocketType::Router => zmq::ROUTER,
    }
}

/// One libzmq socket with FairMQ's blocking model: waits happen in slices of at most
/// [`SLICE_MS`], so an interrupt is noticed promptly; a message is only handed to libzmq once
/// the socket is ready for it, so a send that times out leaves the message with the caller.
pub struct SocketCore {
    sock: Claimable<zmq::Socket>,
    id: String,
    socket_type: SocketType,
    interrupted: Arc<AtomicBool>,
    monitor: Mutex<zmq::Socket>,
    monitored_peers: AtomicI64,
    inproc_registry: Arc<Mutex<HashMap<String, Weak<AtomicI64>>>>,
    inproc_peers: Arc<AtomicI64>,
    inproc_remote: Mutex<Vec<Arc<AtomicI64>>>,
    rcvtimeo: AtomicI64,
    sndtimeo: AtomicI64,
}

impl SocketCore {
    /// Creates a socket of `socket_type` with id `id` (FairMQ: `<device>.<name>.<type>`),
    /// linger 1000 ms, SUB subscribed to everything, and a monitor for peer counting.
    pub fn new(ctx: &Context, socket_type: SocketType, id: String) -> Result<Self, TransportError> {
        let err = |what: &str, e: zmq::Error| {
            TransportError::Other(format!("could not {what} for socket {id}: {e}"))
        };
        let mut sock = ctx
            .ctx
            .socket(zmq_type(socket_type))
            .map_err(|e| err("create libzmq socket", e))?;
        for batch in [Batch::In, Batch::Out] {
            set_batch_size(&mut sock, batch, BATCH_BYTES)
                .map_err(|e| err("set the batch size", e))?;
        }
        let identity = id.as_bytes();
        sock.set_identity(&identity[..identity.len().min(255)])
            .map_err(|e| err("set identity", e))?;
        sock.set_linger(1000).map_err(|e| err("set linger", e))?;
        // A connect that comes before the peer's bind is retried after 10 ms, backing off to
        // 100 ms (libzmq's default is 100 ms plus up to 100 ms: a device pair started in the
        // "wrong" order paid ~190 ms at start).
        sock.set_reconnect_ivl(10)
            .map_err(|e| err("set reconnect interval", e))?;
        sock.set_reconnect_ivl_max(100)
            .map_err(|e| err("set reconnect interval", e))?;
        if socket_type == SocketType::Sub {
            sock.set_subscribe(b"").map_err(|e| err("subscribe", e))?;
        }
        let endpoint = format!(
            "inproc://fmq-monitor-{}-{}",
            std::process::id(),
            MONITOR_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let events = zmq::SocketEvent::CONNECTED as i32
            | zmq::SocketEvent::ACCEPTED as i32
            | zmq::SocketEvent::DISCONNECTED as i32;
        sock.monitor(&endpoint, events)
            .map_err(|e| err("start monitor", e))?;
        let monitor = ctx
            .ctx
            .socket(zmq::PAIR)
            .map_err(|e| err("create monitor socket", e))?;
        // Unbounded: libzmq's I/O thread blocks on a full monitor pipe, and events are only
        // read when somebody asks for the peer count.
        monitor
            .set_rcvhwm(0)
            .map_err(|e| err("configure monitor socket", e))?;
        monitor
            .connect(&endpoint)
            .map_err(|e| err("connect monitor", e))?;
        Ok(SocketCore {
            sock: Claimable::new(sock),
            id,
            socket_type,
            interrupted: ctx.interrupted.clone(),
            monitor: Mutex::new(monitor),
            monitored_peers: AtomicI64::new(0),
            inproc_registry: ctx.inproc.clone(),
            inproc_peers: Arc::new(AtomicI64::new(0)),
            inproc_remote: Mutex::new(Vec::new()),
            rcvtimeo: AtomicI64::new(-1),
            sndtimeo: AtomicI64::new(-1),
        })
    }

    /// The socket id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The socket type.
    pub fn socket_type(&self) -> SocketType {
        self.socket_type
    }

    #[inline]
    fn lock(&self) -> Claimed<'_, zmq::Socket> {
        self.sock.claim()
    }

    fn poll_events(&self) -> zmq::PollEvents {
        let mut ev = zmq::PollEvents::empty();
        if self.socket_type.polls_input() {
            ev |= zmq::POLLIN;
        }
        if self.socket_type.polls_output() {
            ev |= zmq::POLLOUT;
        }
        ev
    }

    /// Binds one endpoint and returns the effective one (e.g. with the port chosen for `*`).
    pub fn bind(&self, endpoint: &str) -> Result<String, TransportError> {
        let ep = address::parse_endpoint(endpoint)?;
        let sock = self.lock();
        sock.bind(endpoint).map_err(|e| TransportError::Bind {
            socket: self.id.clone(),
            address: endpoint.to_string(),
            reason: match e {
                zmq::Error::EADDRINUSE => {
                    "address already in use; pick another port or path".into()
                }
                other => other.to_string(),
            },
        })?;
        let effective = match sock.get_last_endpoint() {
            Ok(Ok(s)) if !s.is_empty() => s,
            _ => endpoint.to_string(),
        };
        if ep.scheme == address::Scheme::Inproc {
            self.inproc_registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(effective.clone(), Arc::downgrade(&self.inproc_peers));
        }
        Ok(effective)
    }

    /// Connects one endpoint.
    pub fn connect(&self, endpoint: &str) -> Result<(), TransportError> {
        let ep = address::parse_endpoint(endpoint)?;
        self.lock()
            .connect(endpoint)
            .map_err(|e| TransportError::Connect {
                socket: self.id.clone(),
                address: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        if ep.scheme == address::Scheme::Inproc {
            // libzmq reports no monitor events for inproc: count those peers ourselves.
            let registry = self
                .inproc_registry
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(remote) = registry.get(endpoint).and_then(Weak::upgrade) {
                remote.fetch_add(1, Ordering::SeqCst);
                self.inproc_peers.fetch_add(1, Ordering::SeqCst);
                self.inproc_remote
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(remote);
            }
        }
        Ok(())
    }

    #[cold]
    fn fail(&self, e: zmq::Error) -> TransferError {
        if e == zmq::Error::ETERM {
            tracing::debug!("Terminating socket {}", self.id);
        }
        TransferError::Other {
            socket: self.id.clone(),
            reason: format!("errno {}: {}", e.to_raw(), e),
        }
    }

    /// Sets the socket's send or receive timeout to `ms` unless it already is (libzmq only
    /// stores the value; the cache saves the call).
    fn set_timeout(
        &self,
        sock: &zmq::Socket,
        dir: Direction,
        ms: i64,
    ) -> Result<(), TransferError> {
        let cached = match dir {
            Direction::Send => &self.sndtimeo,
            Direction::Receive => &self.rcvtimeo,
        };
        if cached.load(Ordering::Relaxed) != ms {
            match dir {
                Direction::Send => sock.set_sndtimeo(ms as i32),
                Direction::Receive => sock.set_rcvtimeo(ms as i32),
            }
            .map_err(|e| self.fail(e))?;
            cached.store(ms, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Runs `op` (one `zmq_msg_send` or `zmq_msg_recv` with the given flags) until it succeeds,
    /// as FairMQ does: a blocking call with the socket's timeout set to a slice of at most
    /// [`SLICE_MS`], retried on `EAGAIN` until `timeout_ms` has passed (`Timeout`) or the
    /// context is interrupted (`Interrupted`). `timeout_ms` 0 is one non-blocking attempt, a
    /// negative one waits forever. A failed `op` must leave its message untouched (libzmq
    /// does), so nothing is lost on a timeout or an interrupt.
    ///
    /// The first attempt is always non-blocking: a transfer that can proceed costs that one call
    /// and nothing else (no timeout to set, no clock read); only one that has to wait goes on to
    /// [`Self::wait_and_transfer`].
    #[inline]
    fn transfer(
        &self,
        sock: &mut zmq::Socket,
        dir: Direction,
        timeout_ms: i64,
        mut op: impl FnMut(&mut zmq::Socket, i32) -> Result<(), zmq::Error>,
    ) -> Result<(), TransferError> {
        loop {
            match op(sock, zmq::DONTWAIT) {
                Ok(()) => return Ok(()),
                Err(zmq::Error::EINTR) => {}
                Err(zmq::Error::EAGAIN) if timeout_ms == 0 => return Err(TransferError::Timeout),
                Err(zmq::Error::EAGAIN) => {
                    return self.wait_and_transfer(sock, dir, timeout_ms, &mut op)
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// The waiting part of [`Self::transfer`], after a non-blocking attempt found the socket
    /// not ready.
    #[cold]
    #[inline(never)]
    fn wait_and_transfer(
        &self,
        sock: &mut zmq::Socket,
        dir: Direction,
        timeout_ms: i64,
        op: &mut dyn FnMut(&mut zmq::Socket, i32) -> Result<(), zmq::Error>,
    ) -> Result<(), TransferError> {
        let first = if timeout_ms < 0 {
            SLICE_MS
        } else {
            timeout_ms.min(SLICE_MS)
        };
        let mut slice = first;
        let mut deadline: Option<Instant> = None;
        loop {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(TransferError::Interrupted);
            }
            self.set_timeout(sock, dir, slice)?;
            match op(sock, 0) {
                Ok(()) => return Ok(()),
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                    if timeout_ms > 0 {
                        let now = Instant::now();
                        // The first blocking attempt waited (about) `first` ms before the clock
                        // started.
                        let end = *deadline.get_or_insert_with(|| {
                            now + Duration::from_millis((timeout_ms - first) as u64)
                        });
                        if now >= end {
                            return Err(TransferError::Timeout);
                        }
                        let left = (end - now).as_micros().div_ceil(1000) as i64;
                        slice = left.clamp(1, SLICE_MS);
                    }
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Sends `first` and then `rest` as one message (every frame but the last with SNDMORE).
    /// On success the messages are empty (libzmq owns their contents) and the socket is still
    /// claimed by the returned guard (count the transfer with `Counters::sent_claimed` before
    /// dropping it); when the first frame cannot be sent in time, every message is left as it
    /// was.
    #[inline]
    pub fn send_raw<'a>(
        &self,
        timeout_ms: i64,
        first: &mut RawMsg,
        rest: impl ExactSizeIterator<Item = &'a mut RawMsg>,
    ) -> Result<Claimed<'_, zmq::Socket>, TransferError> {
        let mut sock = self.lock();
        let n = rest.len();
        let more = if n > 0 { zmq::SNDMORE } else { 0 };
        self.transfer(&mut sock, Direction::Send, timeout_ms, |s, flags| {
            first.send(s, flags | more)
        })?;
        // libzmq accepts the remaining parts of a message whose first part it took.
        for (i, m) in rest.enumerate() {
            let flags = zmq::DONTWAIT | if i + 1 < n { zmq::SNDMORE } else { 0 };
            m.send(&mut sock, flags).map_err(|e| self.lost(e))?;
        }
        Ok(sock)
    }

    /// Receives one message in place: its first frame into `first`, every further frame handed
    /// to `more`. Returns the number of frames and the claim of the socket (see `send_raw`).
    #[inline]
    pub fn receive_raw(
        &self,
        timeout_ms: i64,
        first: &mut RawMsg,
        mut more: impl FnMut(RawMsg),
    ) -> Result<(usize, Claimed<'_, zmq::Socket>), TransferError> {
        let mut sock = self.lock();
        self.transfer(&mut sock, Direction::Receive, timeout_ms, |s, flags| {
            first.recv(s, flags)
        })?;
        let mut frames = 1;
        let mut pending = first.more();
        while pending {
            let mut m = RawMsg::new();
            m.recv(&mut sock, 0).map_err(|e| self.fail(e))?;
            pending = m.more();
            more(m);
            frames += 1;
        }
        Ok((frames, sock))
    }

    fn lost(&self, e: zmq::Error) -> TransferError {
        // Only reachable if libzmq refused a later part of a message whose first part it took
        // (which it does not do): the message is incomplete; say so.
        let mut err = self.fail(e);
        if let TransferError::Other { reason, .. } = &mut err {
            reason.push_str(
                " (libzmq refused a later part of a multipart message; the message was dropped)",
            );
        }
        err
    }

    /// Sends copies of `parts` as one (multipart) message. Nothing of the caller's is
    /// consumed, so a send that times out loses nothing.
    pub fn send_copies(&self, timeout_ms: i64, parts: &[&[u8]]) -> Result<(), TransferError> {
        let copy = |p: &[u8]| {
            RawMsg::copy_of(p).map_err(|e| TransferError::Other {
                socket: self.id.clone(),
                reason: format!("could not allocate a frame of {} bytes: {e}", p.len()),
            })
        };
        let mut first = copy(parts[0])?;
        if parts.len() == 1 {
            return self
                .send_raw(timeout_ms, &mut first, std::iter::empty())
                .map(drop);
        }
        let mut rest = parts[1..]
            .iter()
            .map(|p| copy(p))
            .collect::<Result<Vec<_>, _>>()?;
        self.send_raw(timeout_ms, &mut first, rest.iter_mut())
            .map(drop)
    }

    /// Receives one message (all its frames) once available.
    pub fn receive_frames(&self, timeout_ms: i64) -> Result<Frames, TransferError> {
        let mut first = RawMsg::new();
        let mut rest = Vec::new();
        self.receive_raw(timeout_ms, &mut first, |m| rest.push(Frame(m)))?;
        Ok(Frames {
            first: Frame(first),
            rest,
        })
    }

    /// Sets an option by FairMQ name.
    pub fn set_option(&self, name: &str, value: i64) -> Result<(), TransportError> {
        let sock = self.lock();
        let v = value as i32;
        let r = match name {
            "linger" => sock.set_linger(v),
            "snd-hwm" => sock.set_sndhwm(v),
            "rcv-hwm" => sock.set_rcvhwm(v),
            "snd-size" => sock.set_sndbuf(v),
            "rcv-size" => sock.set_rcvbuf(v),
            other => return Err(TransportError::UnknownOption(other.to_string())),
        };
        r.map_err(|e| {
            TransportError::Other(format!(
                "could not set option {name}={value} on socket {}: {e}",
                self.id
            ))
        })
    }

    /// Reads an option by FairMQ name.
    pub fn get_option(&self, name: &str) -> Result<i64, TransportError> {
        let sock = self.lock();
        let r = match name {
            "linger" => sock.get_linger(),
            "snd-hwm" => sock.get_sndhwm(),
            "rcv-hwm" => sock.get_rcvhwm(),
            "snd-size" => sock.get_sndbuf(),
            "rcv-size" => sock.get_rcvbuf(),
            other => return Err(TransportError::UnknownOption(other.to_string())),
        };
        r.map(i64::from).map_err(|e| {
            TransportError::Other(format!(
                "could not read option {name} of socket {}: {e}",
                self.id
            ))
        })
    }

    /// Peers currently connected, from libzmq's monitor events (tcp, ipc) and our own inproc
    /// bookkeeping.
    pub fn connected_peers(&self) -> usize {
        let monitor = self.monitor.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
            if let Some(ev) = frames.first().filter(|f| f.len() >= 2) {
                let event = u16::from_le_bytes([ev[0], ev[1]]);
                let delta = match zmq::SocketEvent::from_raw(event) {
                    zmq::SocketEvent::CONNECTED | zmq::SocketEvent::ACCEPTED => 1,
                    zmq::SocketEvent::DISCONNECTED => -1,
                    _ => 0,
                };
                self.monitored_peers.fetch_add(delta, Ordering::SeqCst);
            }
        }
        let n =
            self.monitored_peers.load(Ordering::SeqCst) + self.inproc_peers.load(Ordering::SeqCst);
        n.max(0) as usize
    }

    /// Whether the factory is interrupted.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

impl Drop for SocketCore {
    fn drop(&mut self) {
        // libzmq emits the last events (DISCONNECTED, ...) from its I/O thread after the socket
        // is closed; if our end of the monitor pipe is gone by then, that thread blocks forever.
        // So drain the events, then replace the monitor by one that reports nothing.
        self.connected_peers();
        let quiet = format!(
            "inproc://fmq-monitor-off-{}-{}",
            std::process::id(),
            MONITOR_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let sock = self.sock.get_mut();
        if let Err(e) = sock.monitor(&quiet, 0) {
            tracing::debug!("could not stop the monitor of socket {}: {e}", self.id);
        }
        for remote in self
            .inproc_remote
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            remote.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One received frame: its bytes through `Deref`.
pub struct Frame(RawMsg);

impl Frame {
    /// A metadata property of the frame (see [`RawMsg::property`]), e.g. `Peer-Address`.
    pub fn property(&self, name: &str) -> Option<String> {
        self.0.property(name)
    }
}

impl std::ops::Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.data()
    }
}

/// The frames of one received message; a single-frame message allocates nothing beyond
/// libzmq's own buffer.
pub struct Frames {
    /// The first frame.
    pub first: Frame,
    /// The frames after the first (empty for a single-frame message).
    pub rest: Vec<Frame>,
}

impl Frames {
    /// Number of frames.
    pub fn len(&self) -> usize {
        1 + self.rest.len()
    }

    /// Always false: a message has at least one frame.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl IntoIterator for Frames {
    type Item = Frame;
    type IntoIter = std::iter::Chain<std::iter::Once<Frame>, std::vec::IntoIter<Frame>>;
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.rest)
    }
}

/// Transfer counters of one socket (payload bytes and messages).
#[derive(Default)]
pub struct Counters {
    /// Bytes sent.
    pub bytes_tx: AtomicU64,
    /// Bytes received.
    pub bytes_rx: AtomicU64,
    /// Messages sent.
    pub messages_tx: AtomicU64,
    /// Messages received.
    pub messages_rx: AtomicU64,
}

impl Counters {
    /// Payload bytes sent.
    pub fn bytes_tx(&self) -> u64 {
        self.bytes_tx.load(Ordering::Relaxed)
    }
    /// Payload bytes received.
    pub fn bytes_rx(&self) -> u64 {
        self.bytes_rx.load(Ordering::Relaxed)
    }
    /// Messages sent.
    pub fn messages_tx(&self) -> u64 {
        self.messages_tx.load(Ordering::Relaxed)
    }
    /// Messages received.
    pub fn messages_rx(&self) -> u64 {
        self.messages_rx.load(Ordering::Relaxed)
    }
    /// Records one sent message of `bytes`.
    pub fn sent(&self, bytes: usize) {
        self.bytes_tx.fetch_add(bytes as u64, Ordering::Relaxed);
        self.messages_tx.fetch_add(1, Ordering::Relaxed);
    }
    /// Records one received message of `bytes`.
    pub fn received(&self, bytes: usize) {
        self.bytes_rx.fetch_add(bytes as u64, Ordering::Relaxed);
        self.messages_rx.fetch_add(1, Ordering::Relaxed);
    }
    /// Records one sent message of `bytes` with plain stores: only while the socket is claimed
    /// (one writer at a time; readers on other threads still see whole values).
    #[inline]
    pub fn sent_claimed(&self, bytes: usize) {
        bump(&self.bytes_tx, bytes as u64);
        bump(&self.messages_tx, 1);
    }
    /// Records one received message of `bytes`, as [`Counters::sent_claimed`].
    #[inline]
    pub fn received_claimed(&self, bytes: usize) {
        bump(&self.bytes_rx, bytes as u64);
        bump(&self.messages_rx, 1);
    }
}

/// Adds `n` to a counter that only one thread writes (no read-modify-write instruction).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_batch_their_stream_io_in_64_kib() {
        let ctx = Context::new(1).expect("context");
        let s = SocketCore::new(&ctx, SocketType::Push, "batch".into()).expect("socket");
        let mut sock = s.lock();
        for batch in [Batch::In, Batch::Out] {
            assert_eq!(
                batch_size(&mut sock, batch).expect("draft option"),
                BATCH_BYTES
            );
        }
        // libzmq's own default, on a socket made without SocketCore.
        let mut plain = ctx.ctx.socket(zmq::PUSH).expect("socket");
        assert_eq!(batch_size(&mut plain, Batch::Out).expect("option"), 8192);
    }
}
