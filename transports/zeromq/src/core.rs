//! The socket machinery shared by every transport that moves frames over libzmq (this
//! transport for payloads, the shmem transport for its metadata): context, blocking in
//! interruptible slices, options by FairMQ name, connected-peer counting.

use fairmq_transport::{address, SocketType, TransferError, TransportError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

/// Longest single wait inside a blocking call; bounds how late an interrupt is noticed.
pub const SLICE_MS: i64 = 20;

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
        let guards: Vec<MutexGuard<'_, zmq::Socket>> = cores.iter().map(|c| c.lock()).collect();
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
/// `core: SocketCore` and `counters: Counters` fields (counters, peers, upcast).
#[macro_export]
macro_rules! forward_socket_counters {
    () => {
        fn bytes_tx(&self) -> u64 {
            self.counters.bytes_tx()
        }
        fn bytes_rx(&self) -> u64 {
            self.counters.bytes_rx()
        }
        fn messages_tx(&self) -> u64 {
            self.counters.messages_tx()
        }
        fn messages_rx(&self) -> u64 {
            self.counters.messages_rx()
        }
        fn connected_peers(&self) -> usize {
            self.core.connected_peers()
        }
        fn as_any(&self) -> &dyn ::std::any::Any {
            self
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
    sock: Mutex<zmq::Socket>,
    id: String,
    socket_type: SocketType,
    interrupted: Arc<AtomicBool>,
    monitor: Mutex<zmq::Socket>,
    monitored_peers: AtomicI64,
    inproc_registry: Arc<Mutex<HashMap<String, Weak<AtomicI64>>>>,
    inproc_peers: Arc<AtomicI64>,
    inproc_remote: Mutex<Vec<Arc<AtomicI64>>>,
    rcvtimeo: AtomicI64,
}

impl SocketCore {
    /// Creates a socket of `socket_type` with id `id` (FairMQ: `<device>.<name>.<type>`),
    /// linger 1000 ms, SUB subscribed to everything, and a monitor for peer counting.
    pub fn new(ctx: &Context, socket_type: SocketType, id: String) -> Result<Self, TransportError> {
        let err = |what: &str, e: zmq::Error| {
            TransportError::Other(format!("could not {what} for socket {id}: {e}"))
        };
        let sock = ctx
            .ctx
            .socket(zmq_type(socket_type))
            .map_err(|e| err("create libzmq socket", e))?;
        let identity = id.as_bytes();
        sock.set_identity(&identity[..identity.len().min(255)])
            .map_err(|e| err("set identity", e))?;
        sock.set_linger(1000).map_err(|e| err("set linger", e))?;
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
            sock: Mutex::new(sock),
            id,
            socket_type,
            interrupted: ctx.interrupted.clone(),
            monitor: Mutex::new(monitor),
            monitored_peers: AtomicI64::new(0),
            inproc_registry: ctx.inproc.clone(),
            inproc_peers: Arc::new(AtomicI64::new(0)),
            inproc_remote: Mutex::new(Vec::new()),
            rcvtimeo: AtomicI64::new(-1),
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

    fn lock(&self) -> MutexGuard<'_, zmq::Socket> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
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

    fn fail(&self, e: zmq::Error) -> TransferError {
        if e == zmq::Error::ETERM {
            tracing::debug!("Terminating socket {}", self.id);
        }
        TransferError::Other {
            socket: self.id.clone(),
            reason: format!("errno {}: {}", e.to_raw(), e),
        }
    }

    /// Waits (in slices) until `sock` has `ev`, honouring the timeout and the interrupt flag.
    /// With `check_first`, the socket's current events are read first (costs a system call).
    fn wait(
        &self,
        sock: &zmq::Socket,
        ev: zmq::PollEvents,
        timeout_ms: i64,
        start: Instant,
        check_first: bool,
    ) -> Result<(), TransferError> {
        if check_first && sock.get_events().map_err(|e| self.fail(e))?.contains(ev) {
            return Ok(());
        }
        loop {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(TransferError::Interrupted);
            }
            let slice = match remaining(timeout_ms, start) {
                Some(0) => return Err(TransferError::Timeout),
                Some(ms) => ms.min(SLICE_MS),
                None => SLICE_MS,
            };
            match sock.poll(ev, slice) {
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    fn lost(&self, e: zmq::Error) -> TransferError {
        // Only reachable if libzmq changed its mind between the readiness check and the send
        // (a peer disconnecting in between): the frame is gone; say so.
        let mut err = self.fail(e);
        if let TransferError::Other { reason, .. } = &mut err {
            reason.push_str(
                " (the socket stopped being writable during the send; the message was dropped)",
            );
        }
        err
    }

    /// Sends copies of `parts` as one (multipart) message. Nothing of the caller's is consumed,
    /// so a send that would block simply waits and retries: the cheapest path for small
    /// messages, where a copy costs less than asking libzmq whether the socket is writable.
    pub fn send_copies(&self, timeout_ms: i64, parts: &[&[u8]]) -> Result<(), TransferError> {
        let sock = self.lock();
        let start = Instant::now();
        let n = parts.len();
        let more = |i: usize| if i + 1 < n { zmq::SNDMORE } else { 0 };
        loop {
            match sock.send(parts[0], zmq::DONTWAIT | more(0)) {
                Ok(()) => break,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                    if timeout_ms == 0 {
                        return Err(TransferError::Timeout);
                    }
                    self.wait(&sock, zmq::POLLOUT, timeout_ms, start, false)?
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        // libzmq accepts the remaining parts of a message whose first part it took.
        for (i, part) in parts.iter().enumerate().skip(1) {
            sock.send(*part, zmq::DONTWAIT | more(i))
                .map_err(|e| self.lost(e))?;
        }
        Ok(())
    }

    /// Sends frames produced by `produce` once the socket is writable. `produce` is only called
    /// when the send can proceed, so on timeout or interrupt nothing was consumed. Each frame
    /// but the last is sent with SNDMORE.
    pub fn send_frames(
        &self,
        timeout_ms: i64,
        produce: impl FnOnce() -> Vec<zmq::Message>,
    ) -> Result<(), TransferError> {
        let sock = self.lock();
        self.wait(&sock, zmq::POLLOUT, timeout_ms, Instant::now(), true)?;
        let frames = produce();
        let n = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            let flags = zmq::DONTWAIT | if i + 1 < n { zmq::SNDMORE } else { 0 };
            sock.send(frame, flags).map_err(|e| self.lost(e))?;
        }
        Ok(())
    }

    /// Receives one message (all its frames) once available. Blocking receives wait inside
    /// libzmq in slices (the socket's receive timeout), so no extra system call is made while
    /// messages are queued.
    pub fn receive_frames(&self, timeout_ms: i64) -> Result<Frames, TransferError> {
        let sock = self.lock();
        let start = Instant::now();
        let mut first = zmq::Message::new();
        loop {
            let (flags, slice) = match remaining(timeout_ms, start) {
                _ if timeout_ms == 0 => (zmq::DONTWAIT, SLICE_MS),
                Some(0) => return Err(TransferError::Timeout),
                Some(ms) => (0, ms.min(SLICE_MS)),
                None => (0, SLICE_MS),
            };
            if slice != self.rcvtimeo.load(Ordering::Relaxed) {
                sock.set_rcvtimeo(slice as i32).map_err(|e| self.fail(e))?;
                self.rcvtimeo.store(slice, Ordering::Relaxed);
            }
            match sock.recv(&mut first, flags) {
                Ok(()) => break,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                    if self.interrupted.load(Ordering::SeqCst) {
                        return Err(TransferError::Interrupted);
                    }
                    if timeout_ms == 0 {
                        return Err(TransferError::Timeout);
                    }
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        let mut more = first.get_more();
        let mut rest = Vec::new();
        while more {
            let mut m = zmq::Message::new();
            sock.recv(&mut m, 0).map_err(|e| self.fail(e))?;
            more = m.get_more();
            rest.push(m);
        }
        Ok(Frames { first, rest })
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
        let sock = self.sock.get_mut().unwrap_or_else(|p| p.into_inner());
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

/// The frames of one received message; a single-frame message allocates nothing beyond
/// libzmq's own buffer.
pub struct Frames {
    /// The first frame.
    pub first: zmq::Message,
    /// The frames after the first (empty for a single-frame message).
    pub rest: Vec<zmq::Message>,
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
    type Item = zmq::Message;
    type IntoIter =
        std::iter::Chain<std::iter::Once<zmq::Message>, std::vec::IntoIter<zmq::Message>>;
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
}
