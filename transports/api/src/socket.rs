//! Sockets: typed endpoints that send and receive messages, and poll results.

use crate::{MessagePtr, Parts, TransferResult, TransportError};
use std::any::Any;
use std::fmt;
use std::str::FromStr;

/// FairMQ's socket patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// Exclusive pair.
    Pair,
    /// Pipeline sender.
    Push,
    /// Pipeline receiver.
    Pull,
    /// Publisher.
    Pub,
    /// Subscriber (subscribes to everything).
    Sub,
    /// Raw publisher.
    XPub,
    /// Raw subscriber.
    XSub,
    /// Request.
    Req,
    /// Reply.
    Rep,
    /// Asynchronous request.
    Dealer,
    /// Asynchronous reply.
    Router,
}

impl SocketType {
    /// Every socket type, in FairMQ's order.
    pub const ALL: [SocketType; 11] = [
        SocketType::Sub,
        SocketType::Pub,
        SocketType::XSub,
        SocketType::XPub,
        SocketType::Push,
        SocketType::Pull,
        SocketType::Req,
        SocketType::Rep,
        SocketType::Dealer,
        SocketType::Router,
        SocketType::Pair,
    ];

    /// FairMQ's name of the type (`"push"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Pair => "pair",
            SocketType::Push => "push",
            SocketType::Pull => "pull",
            SocketType::Pub => "pub",
            SocketType::Sub => "sub",
            SocketType::XPub => "xpub",
            SocketType::XSub => "xsub",
            SocketType::Req => "req",
            SocketType::Rep => "rep",
            SocketType::Dealer => "dealer",
            SocketType::Router => "router",
        }
    }

    /// Whether a poll on this type waits for input.
    pub fn polls_input(self) -> bool {
        !matches!(self, SocketType::Push | SocketType::Pub | SocketType::XPub)
    }

    /// Whether a poll on this type waits for output.
    pub fn polls_output(self) -> bool {
        !matches!(self, SocketType::Pull | SocketType::Sub | SocketType::XSub)
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SocketType {
    type Err = TransportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SocketType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| TransportError::UnknownSocketType(s.to_string()))
    }
}

/// A socket of some transport.
///
/// Methods take `&self`: a socket may be shared between threads (for example a rate logger
/// reading counters while the device thread transfers), but transfers on one socket from two
/// threads at once are serialised.
///
/// Timeouts are in milliseconds: `-1` waits until done or interrupted, `0` never blocks, a
/// positive value waits at most that long.
pub trait Socket: Send + Sync {
    /// `<device id>.<name>.<type>`.
    fn id(&self) -> &str;
    /// The socket type.
    fn socket_type(&self) -> SocketType;
    /// Name of the transport that made this socket.
    fn transport(&self) -> &'static str;
    /// Binds one endpoint; returns the effective endpoint (e.g. the chosen port).
    fn bind(&self, endpoint: &str) -> Result<String, TransportError>;
    /// Connects one endpoint.
    fn connect(&self, endpoint: &str) -> Result<(), TransportError>;
    /// Sends one message. On success the payload belongs to the transport and `msg` is empty;
    /// on failure `msg` is unchanged.
    fn send(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult;
    /// Receives one message into `msg` (its previous payload is released).
    fn receive(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult;
    /// Sends all parts atomically. On success `parts` is emptied; on failure it is unchanged.
    fn send_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult;
    /// Receives one multipart message, appending its parts to `parts`.
    fn receive_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult;
    /// Sets an option by FairMQ name: `linger`, `snd-hwm`, `rcv-hwm`, `snd-size`, `rcv-size`.
    fn set_option(&self, name: &str, value: i64) -> Result<(), TransportError>;
    /// Reads an option by FairMQ name.
    fn get_option(&self, name: &str) -> Result<i64, TransportError>;
    /// Payload bytes sent.
    fn bytes_tx(&self) -> u64;
    /// Payload bytes received.
    fn bytes_rx(&self) -> u64;
    /// Messages sent (a multipart message counts once).
    fn messages_tx(&self) -> u64;
    /// Messages received (a multipart message counts once).
    fn messages_rx(&self) -> u64;
    /// Number of peers currently connected to this socket.
    fn connected_peers(&self) -> usize;
    /// Upcast for pollers that need the concrete type.
    fn as_any(&self) -> &dyn Any;

    /// Sets `linger` (ms).
    fn set_linger(&self, ms: i32) -> Result<(), TransportError> {
        self.set_option("linger", ms.into())
    }
    /// Reads `linger` (ms).
    fn linger(&self) -> Result<i32, TransportError> {
        self.get_option("linger").map(|v| v as i32)
    }
    /// Sets the send high-water mark (messages).
    fn set_snd_hwm(&self, n: i32) -> Result<(), TransportError> {
        self.set_option("snd-hwm", n.into())
    }
    /// Reads the send high-water mark.
    fn snd_hwm(&self) -> Result<i32, TransportError> {
        self.get_option("snd-hwm").map(|v| v as i32)
    }
    /// Sets the receive high-water mark (messages).
    fn set_rcv_hwm(&self, n: i32) -> Result<(), TransportError> {
        self.set_option("rcv-hwm", n.into())
    }
    /// Reads the receive high-water mark.
    fn rcv_hwm(&self) -> Result<i32, TransportError> {
        self.get_option("rcv-hwm").map(|v| v as i32)
    }
    /// Sets the kernel send buffer size (bytes).
    fn set_snd_kernel_size(&self, n: i32) -> Result<(), TransportError> {
        self.set_option("snd-size", n.into())
    }
    /// Reads the kernel send buffer size.
    fn snd_kernel_size(&self) -> Result<i32, TransportError> {
        self.get_option("snd-size").map(|v| v as i32)
    }
    /// Sets the kernel receive buffer size (bytes).
    fn set_rcv_kernel_size(&self, n: i32) -> Result<(), TransportError> {
        self.set_option("rcv-size", n.into())
    }
    /// Reads the kernel receive buffer size.
    fn rcv_kernel_size(&self) -> Result<i32, TransportError> {
        self.get_option("rcv-size").map(|v| v as i32)
    }
}

/// An owned, boxed socket of any transport.
pub type SocketPtr = Box<dyn Socket>;

/// Which sockets of a poll are ready, by index in the polled slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollResult {
    ready: Vec<(bool, bool)>,
}

impl PollResult {
    /// Builds a result from `(input ready, output ready)` per socket.
    pub fn new(ready: Vec<(bool, bool)>) -> Self {
        PollResult { ready }
    }
    /// Whether socket `i` can receive without blocking.
    pub fn check_input(&self, i: usize) -> bool {
        self.ready.get(i).is_some_and(|r| r.0)
    }
    /// Whether socket `i` can send without blocking.
    pub fn check_output(&self, i: usize) -> bool {
        self.ready.get(i).is_some_and(|r| r.1)
    }
    /// Whether any socket is ready.
    pub fn any(&self) -> bool {
        self.ready.iter().any(|r| r.0 || r.1)
    }
}
