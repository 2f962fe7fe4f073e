//! Channels with sockets (spec §3, §4.7): a [`Channel`] is one sub-channel (`data[0]`), i.e.
//! one socket of one transport, with its configuration, default timeouts, the attach step
//! (validate, create the socket, set options, bind/connect every endpoint with auto-bind),
//! and transfers that copy messages of another transport automatically.
//!
//! A [`Poller`] polls sub-channels of one transport, addressed by name and index.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use fairmq_transport::{
    FactoryPtr, MessagePtr, Parts, PollResult, Socket, SocketPtr, SocketType, Timeout,
    TransferError, TransferResult, TransportError,
};
use rand::Rng as _;

use crate::channel_config::address::{
    resolve_endpoint, split_endpoints, ConnectionMethod, Endpoint, SystemResolver, TcpAddress,
};
use crate::channel_config::{
    sub_channel_name, validate_sub_channel, ChannelConfigError, SubChannelSpec, Validation,
};
use crate::error::RuntimeError;

/// How many random ports auto-bind tries.
pub const AUTO_BIND_ATTEMPTS: usize = 1000;

/// One sub-channel: a socket of one transport and its settings.
pub struct Channel {
    name: String,
    index: usize,
    full_name: String,
    method: ConnectionMethod,
    spec: RwLock<SubChannelSpec>,
    /// `spec.snd_timeout_ms` and `spec.rcv_timeout_ms`, read on every transfer without the
    /// lock (only the address of a spec changes after construction).
    snd_timeout: Timeout,
    rcv_timeout: Timeout,
    transport: FactoryPtr,
    socket: OnceLock<SocketPtr>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.full_name)
            .field("transport", &self.transport.name())
            .field("attached", &self.socket.get().is_some())
            .finish()
    }
}

/// The outcome of one attach attempt.
#[derive(Debug)]
pub enum AttachOutcome {
    /// Bound/connected; the effective address (to write back).
    Attached(String),
    /// Not attachable yet (e.g. no address); retry later. The message says why.
    NotYet(String),
}

impl Channel {
    /// A sub-channel `name[index]` of `transport`, classified as binding or connecting.
    pub fn new(
        name: &str,
        index: usize,
        spec: SubChannelSpec,
        method: ConnectionMethod,
        transport: FactoryPtr,
    ) -> Self {
        Channel {
            name: name.to_owned(),
            index,
            full_name: sub_channel_name(name, index),
            method,
            snd_timeout: Timeout::from_millis(i64::from(spec.snd_timeout_ms)),
            rcv_timeout: Timeout::from_millis(i64::from(spec.rcv_timeout_ms)),
            spec: RwLock::new(spec),
            transport,
            socket: OnceLock::new(),
        }
    }

    /// The channel name (`data`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sub-channel index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The full name (`data[0]`).
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Whether this sub-channel is in the binding or the connecting list.
    pub fn method(&self) -> ConnectionMethod {
        self.method
    }

    /// A copy of the current settings.
    pub fn spec(&self) -> SubChannelSpec {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current address.
    pub fn address(&self) -> String {
        self.spec
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .address
            .clone()
    }

    /// Replaces the address (before attaching; e.g. re-read from the configuration).
    pub fn update_address(&self, address: &str) {
        self.spec.write().unwrap_or_else(|p| p.into_inner()).address = address.to_owned();
    }

    /// The transport factory of this sub-channel.
    pub fn transport(&self) -> &FactoryPtr {
        &self.transport
    }

    /// The socket, once attached.
    pub fn socket(&self) -> Option<&dyn Socket> {
        self.socket.get().map(|s| s.as_ref())
    }

    /// Whether the socket exists (bound/connected).
    pub fn is_attached(&self) -> bool {
        self.socket.get().is_some()
    }

    fn attached_socket(&self) -> Result<&dyn Socket, TransferError> {
        self.socket().ok_or_else(|| TransferError::Other {
            socket: self.full_name.clone(),
            reason: "the channel is not initialized (no socket yet); transfers work from \
                     the BINDING/CONNECTING states on"
                .to_owned(),
        })
    }

    /// Default send timeout (`sndTimeoutMs`).
    pub fn snd_timeout(&self) -> Timeout {
        self.snd_timeout
    }

    /// Default receive timeout (`rcvTimeoutMs`).
    pub fn rcv_timeout(&self) -> Timeout {
        self.rcv_timeout
    }

    /// Rate logging interval in seconds (`rateLogging`).
    pub fn rate_logging(&self) -> i32 {
        self.spec
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rate_logging
    }

    /// Number of peers connected to the socket (0 before attaching).
    pub fn connected_peers(&self) -> usize {
        self.socket().map(|s| s.connected_peers()).unwrap_or(0)
    }

    // ----- messages -----

    /// An empty message of this sub-channel's transport.
    pub fn new_message(&self) -> MessagePtr {
        self.transport.new_message()
    }

    /// A message of `size` bytes of this sub-channel's transport (no later copy on send).
    pub fn new_message_with_size(&self, size: usize) -> Result<MessagePtr, TransportError> {
        self.transport.new_message_with_size(size, None)
    }

    /// A message of `size` bytes aligned to `alignment`, of this sub-channel's transport.
    pub fn new_message_aligned(
        &self,
        size: usize,
        alignment: usize,
    ) -> Result<MessagePtr, TransportError> {
        self.transport
            .new_message_with_size(size, (alignment > 0).then_some(alignment))
    }

    /// A message of this sub-channel's transport over `data` (adopted without copying where
    /// the transport can).
    pub fn new_message_from(&self, data: Vec<u8>) -> Result<MessagePtr, TransportError> {
        self.transport.new_message_from_buffer(data.into())
    }

    /// A message of this channel's transport holding a copy of `msg`'s bytes (§4.7).
    fn foreign_copy(&self, msg: &MessagePtr) -> Result<MessagePtr, TransferError> {
        let size = msg.size();
        if size == 0 {
            return Ok(self.transport.new_message());
        }
        let mut copy = self
            .transport
            .new_message_with_size(size, msg.alignment())
            .map_err(|e| TransferError::Other {
                socket: self.full_name.clone(),
                reason: format!("cannot allocate the cross-transport copy: {e}"),
            })?;
        copy.data_mut().copy_from_slice(msg.data());
        Ok(copy)
    }

    fn is_foreign(&self, msg: &MessagePtr) -> bool {
        let (a, b) = (msg.transport(), self.transport.name());
        // Transport names are static strings: the same pointer is the common, cheap case.
        !(std::ptr::eq(a, b) || a == b)
    }

    // ----- transfers -----

    /// Sends with the default timeout (`sndTimeoutMs`).
    pub fn send(&self, msg: &mut MessagePtr) -> TransferResult {
        self.send_timeout(msg, self.snd_timeout())
    }

    /// Sends one message. A message of another transport is copied into one of this
    /// channel's transport first (spec §4.7); on success the original is released (left
    /// empty), on failure it stays with the caller unchanged.
    pub fn send_timeout(&self, msg: &mut MessagePtr, timeout: Timeout) -> TransferResult {
        let socket = self.attached_socket()?;
        let timeout_ms = timeout.as_millis();
        if self.is_foreign(msg) {
            let mut copy = self.foreign_copy(msg)?;
            let n = socket.send(&mut copy, timeout_ms)?;
            msg.rebuild();
            return Ok(n);
        }
        socket.send(msg, timeout_ms)
    }

    /// Receives with the default timeout (`rcvTimeoutMs`).
    pub fn receive(&self, msg: &mut MessagePtr) -> TransferResult {
        self.receive_timeout(msg, self.rcv_timeout())
    }

    /// Receives one message; a message of another transport is first replaced by an empty
    /// one of this channel's transport.
    pub fn receive_timeout(&self, msg: &mut MessagePtr, timeout: Timeout) -> TransferResult {
        let socket = self.attached_socket()?;
        if self.is_foreign(msg) {
            *msg = self.transport.new_message();
        }
        socket.receive(msg, timeout.as_millis())
    }

    /// Sends all parts with the default timeout.
    pub fn send_parts(&self, parts: &mut Parts) -> TransferResult {
        self.send_parts_timeout(parts, self.snd_timeout())
    }

    /// Sends all parts atomically; parts of another transport are copied first.
    pub fn send_parts_timeout(&self, parts: &mut Parts, timeout: Timeout) -> TransferResult {
        let socket = self.attached_socket()?;
        let timeout_ms = timeout.as_millis();
        if parts.iter().any(|p| self.is_foreign(p)) {
            let mut copies = Parts::new();
            for part in parts.iter() {
                copies.add_part(if self.is_foreign(part) {
                    self.foreign_copy(part)?
                } else {
                    // Same transport: share the payload (zero-copy).
                    let mut shared = self.transport.new_message();
                    shared
                        .copy_from(part.as_ref())
                        .map_err(|e| TransferError::Other {
                            socket: self.full_name.clone(),
                            reason: e.to_string(),
                        })?;
                    shared
                });
            }
            let n = socket.send_parts(&mut copies, timeout_ms)?;
            parts.clear();
            return Ok(n);
        }
        socket.send_parts(parts, timeout_ms)
    }

    /// Receives a multipart message with the default timeout (appending to `parts`).
    pub fn receive_parts(&self, parts: &mut Parts) -> TransferResult {
        self.receive_parts_timeout(parts, self.rcv_timeout())
    }

    /// Receives a multipart message, appending its parts to `parts`.
    pub fn receive_parts_timeout(&self, parts: &mut Parts, timeout: Timeout) -> TransferResult {
        self.attached_socket()?
            .receive_parts(parts, timeout.as_millis())
    }

    // ----- attaching -----

    /// Validates (spec §3.4). `Err` for configuration errors (the device goes to ERROR).
    pub fn validate(&self) -> Result<Option<String>, ChannelConfigError> {
        match validate_sub_channel(&self.full_name, &self.spec()) {
            Validation::Valid => Ok(None),
            Validation::NotYetValid(why) => Ok(Some(why)),
            Validation::Invalid(e) => Err(e),
        }
    }

    /// One attach attempt: validate, create the socket `<name>[<i>]`, set linger, HWMs and
    /// kernel sizes, then bind/connect every endpoint (modifiers honoured, TCP hosts resolved,
    /// auto-bind on random ports). On success the socket is kept and the effective address
    /// returned (the caller writes it back to the configuration).
    pub fn attach(&self) -> Result<AttachOutcome, RuntimeError> {
        if self.is_attached() {
            return Ok(AttachOutcome::Attached(self.address()));
        }
        if let Some(why) = self.validate()? {
            return Ok(AttachOutcome::NotYet(why));
        }
        let spec = self.spec();
        let socket_type: SocketType = spec.socket_type.parse()?;
        let socket = self.transport.new_socket(socket_type, &self.full_name)?;
        let set = |what: &str, r: Result<(), TransportError>| {
            r.map_err(|e| {
                RuntimeError::Attach(format!(
                    "failed to set {what} on channel {}: {e}",
                    self.full_name
                ))
            })
        };
        set("linger", socket.set_linger(spec.linger))?;
        set("send buffer size", socket.set_snd_hwm(spec.snd_buf_size))?;
        set("receive buffer size", socket.set_rcv_hwm(spec.rcv_buf_size))?;
        if spec.snd_kernel_size != 0 {
            set(
                "kernel send size",
                socket.set_snd_kernel_size(spec.snd_kernel_size),
            )?;
        }
        if spec.rcv_kernel_size != 0 {
            set(
                "kernel receive size",
                socket.set_rcv_kernel_size(spec.rcv_kernel_size),
            )?;
        }
        let mut effective = Vec::new();
        for endpoint in split_endpoints(&spec.address) {
            let method = endpoint.method(&spec.method).ok_or_else(|| {
                RuntimeError::ChannelConfig(ChannelConfigError::InvalidChannel {
                    channel: self.full_name.clone(),
                    message: format!(
                        "Invalid endpoint connection method: '{}' for {}",
                        spec.method, endpoint.address
                    ),
                })
            })?;
            let address = match method {
                ConnectionMethod::Bind => self.bind_endpoint(socket.as_ref(), &endpoint, &spec)?,
                ConnectionMethod::Connect => {
                    let resolved = match resolve_endpoint(&endpoint.address, &SystemResolver) {
                        Ok(a) => a,
                        Err(e) => {
                            return Ok(AttachOutcome::NotYet(format!(
                                "failed to attach channel {} (connect on {}): {e}",
                                self.full_name, endpoint.address
                            )))
                        }
                    };
                    if let Err(e) = socket.connect(&resolved) {
                        return Ok(AttachOutcome::NotYet(format!(
                            "failed to attach channel {} (connect on {}): {e}",
                            self.full_name, resolved
                        )));
                    }
                    resolved
                }
            };
            effective.push(Endpoint {
                modifier: endpoint.modifier,
                address,
            });
        }
        let address = crate::channel_config::join_endpoints(&effective);
        self.update_address(&address);
        let _ = self.socket.set(socket);
        Ok(AttachOutcome::Attached(address))
    }

    fn bind_endpoint(
        &self,
        socket: &dyn Socket,
        endpoint: &Endpoint,
        spec: &SubChannelSpec,
    ) -> Result<String, RuntimeError> {
        let fail = |e: &dyn std::fmt::Display| {
            RuntimeError::Attach(format!(
                "failed to attach channel {} (bind on {}): {e}",
                self.full_name, endpoint.address
            ))
        };
        if !endpoint.address.starts_with("tcp://") {
            return socket.bind(&endpoint.address).map_err(|e| fail(&e));
        }
        let tcp = TcpAddress::parse(&endpoint.address).map_err(|e| fail(&e))?;
        let host = if tcp.is_wildcard() || tcp.is_literal() {
            tcp.host.clone()
        } else {
            let resolved =
                resolve_endpoint(&endpoint.address, &SystemResolver).map_err(|e| fail(&e))?;
            TcpAddress::parse(&resolved).map_err(|e| fail(&e))?.host
        };
        // Port 1 is the placeholder of a bind channel without address: go straight to
        // auto-bind (binding it would succeed when running as root).
        let placeholder = tcp.port.to_string() == "1";
        if !placeholder {
            let address = format!("tcp://{host}:{}", tcp.port);
            match socket.bind(&address) {
                Ok(a) => return Ok(a),
                Err(e) if !spec.auto_bind => return Err(fail(&e)),
                Err(e) => tracing::debug!(
                    "Could not bind to configured (TCP) port ({address}): {e}; trying random port in range {}-{}",
                    spec.port_range_min,
                    spec.port_range_max
                ),
            }
        } else if !spec.auto_bind {
            return Err(fail(&"no port given and autoBind is false"));
        }
        let (min, max) = (spec.port_range_min, spec.port_range_max);
        if min < 1 || max > 65535 || min > max {
            return Err(fail(&format!(
                "invalid port range {min}-{max} (portRangeMin/portRangeMax)"
            )));
        }
        let mut rng = rand::rng();
        for _ in 0..AUTO_BIND_ATTEMPTS {
            let port = rng.random_range(min..=max);
            if let Ok(a) = socket.bind(&format!("tcp://{host}:{port}")) {
                return Ok(a);
            }
        }
        Err(fail(&format!(
            "could not bind to any (TCP) port in the given range after {AUTO_BIND_ATTEMPTS} attempts"
        )))
    }
}

/// Polls sub-channels, addressed by name and index; built by
/// [`crate::DeviceContext::poller`]. The sub-channels may use different transports (FairMQ
/// refuses that): each transport polls its own, see [`Poller::poll`].
pub struct Poller {
    entries: Vec<Arc<Channel>>,
    /// The positions in `entries` of each transport's sub-channels, in first-seen order.
    groups: Vec<(FactoryPtr, Vec<usize>)>,
}

/// How long a poll over several transports waits in one transport before it looks at the
/// others again: the most it adds to the latency of an event on another transport.
pub const MIXED_POLL_SLICE: Duration = Duration::from_millis(1);

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|c| c.full_name()))
            .finish()
    }
}

/// The result of [`Poller::poll`], addressable by channel name and index.
#[derive(Debug, Clone)]
pub struct PollEvents {
    keys: Vec<(String, usize)>,
    result: PollResult,
}

impl PollEvents {
    fn position(&self, name: &str, index: usize) -> Option<usize> {
        self.keys.iter().position(|(n, i)| n == name && *i == index)
    }

    /// Whether sub-channel `name[index]` has input.
    pub fn check_input(&self, name: &str, index: usize) -> bool {
        self.position(name, index)
            .is_some_and(|p| self.result.check_input(p))
    }

    /// Whether sub-channel `name[index]` can send.
    pub fn check_output(&self, name: &str, index: usize) -> bool {
        self.position(name, index)
            .is_some_and(|p| self.result.check_output(p))
    }

    /// Whether the `i`-th polled sub-channel (in poller order) has input.
    pub fn check_input_at(&self, i: usize) -> bool {
        self.result.check_input(i)
    }
}

impl Poller {
    /// A poller over `channels`.
    pub fn new(channels: Vec<Arc<Channel>>) -> Result<Self, RuntimeError> {
        if channels.is_empty() {
            return Err(RuntimeError::Other(
                "poller: no channels given; name at least one channel".to_owned(),
            ));
        }
        let mut groups: Vec<(FactoryPtr, Vec<usize>)> = Vec::new();
        for (i, c) in channels.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|(f, _)| f.name() == c.transport().name())
            {
                Some((_, members)) => members.push(i),
                None => groups.push((c.transport().clone(), vec![i])),
            }
        }
        Ok(Poller {
            entries: channels,
            groups,
        })
    }

    /// The polled sub-channels, in order.
    pub fn channels(&self) -> &[Arc<Channel>] {
        &self.entries
    }

    /// Polls for up to `timeout`: returns once a sub-channel is ready, or when the time is up
    /// (nothing ready). Over one transport this is that transport's poll. Over several, each
    /// transport is asked in turn without waiting, and the wait between rounds is a poll of the
    /// first transport for at most [`MIXED_POLL_SLICE`].
    pub fn poll(&self, timeout: Timeout) -> Result<PollEvents, RuntimeError> {
        let sockets = self
            .entries
            .iter()
            .map(|c| {
                c.socket().ok_or_else(|| {
                    RuntimeError::Other(format!(
                        "poller: channel {} is not initialized",
                        c.full_name()
                    ))
                })
            })
            .collect::<Result<Vec<&dyn Socket>, _>>()?;
        let keys = self
            .entries
            .iter()
            .map(|c| (c.name().to_owned(), c.index()))
            .collect();
        let result = if let [(transport, _)] = self.groups.as_slice() {
            transport.poll(&sockets, timeout.as_millis())?
        } else {
            self.poll_mixed(&sockets, timeout)?
        };
        Ok(PollEvents { keys, result })
    }

    fn poll_mixed(
        &self,
        sockets: &[&dyn Socket],
        timeout: Timeout,
    ) -> Result<PollResult, TransportError> {
        let deadline = timeout.duration().map(|d| Instant::now() + d);
        let mut ready = vec![(false, false); sockets.len()];
        // Each transport's sockets, gathered once for all rounds.
        let subsets: Vec<Vec<&dyn Socket>> = self
            .groups
            .iter()
            .map(|(_, members)| members.iter().map(|&i| sockets[i]).collect())
            .collect();
        let mut first_wait = true;
        loop {
            let mut any = false;
            for (round, ((transport, members), subset)) in
                self.groups.iter().zip(&subsets).enumerate()
            {
                let wait = if round == 0 && !first_wait {
                    // Between rounds: wait in the first transport, briefly.
                    let left = deadline.map_or(MIXED_POLL_SLICE, |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    Timeout::from(left.min(MIXED_POLL_SLICE))
                } else {
                    Timeout::Immediately
                };
                let r = transport.poll(subset, wait.as_millis())?;
                for (k, &i) in members.iter().enumerate() {
                    ready[i] = (r.check_input(k), r.check_output(k));
                    any |= ready[i].0 || ready[i].1;
                }
            }
            first_wait = false;
            if any || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(PollResult::new(ready));
            }
        }
    }
}
