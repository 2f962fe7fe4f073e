//! Error types of the transport API: failed transfers and everything else.

use thiserror::Error;

/// Why a send or receive did not move a message.
///
/// FairMQ encodes these as negative return values (`-1` error, `-2` timeout, `-3` interrupted);
/// [`TransferError::code`] gives that number.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransferError {
    /// The timeout given to the call ran out first.
    #[error("transfer timed out")]
    Timeout,
    /// The transport was interrupted (a state change is pending).
    #[error("transfer interrupted")]
    Interrupted,
    /// The transfer failed and the message was not delivered. It is still with the caller,
    /// except where `reason` says that the transport dropped it.
    #[error("transfer failed on socket {socket}: {reason}")]
    Other {
        /// Id of the socket.
        socket: String,
        /// What went wrong.
        reason: String,
    },
}

impl TransferError {
    /// The timeout ran out (the message is still with the caller).
    pub fn is_timeout(&self) -> bool {
        matches!(self, TransferError::Timeout)
    }

    /// A state change interrupted the transfer (the message is still with the caller).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, TransferError::Interrupted)
    }

    /// FairMQ's numeric transfer code for this error (`-1`, `-2` or `-3`).
    pub fn code(&self) -> i64 {
        match self {
            TransferError::Other { .. } => -1,
            TransferError::Timeout => -2,
            TransferError::Interrupted => -3,
        }
    }
}

/// Result of a transfer: the number of payload bytes moved.
pub type TransferResult = Result<usize, TransferError>;

/// What a transfer did when it did not fail: FairMQ's `Send`/`Receive` return one number for
/// all three (bytes, `-2` timeout, `-3` interrupted), and `-1` for a failure; here a failure
/// is the `Err` of [`TransferResultExt::outcome`], which a hook can pass on with `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Transferred; the number of payload bytes.
    Done(usize),
    /// The timeout ran out first; the message is still with the caller.
    TimedOut,
    /// A state change is pending; the message is still with the caller. A loop should end.
    Interrupted,
}

impl Outcome {
    /// Whether the message was transferred.
    pub fn is_done(self) -> bool {
        matches!(self, Outcome::Done(_))
    }
}

/// Splits a [`TransferResult`] into what a device loop goes on with ([`Outcome`]) and what it
/// cannot (a failure).
pub trait TransferResultExt {
    /// `Ok(Outcome)` for a transfer, a timeout or an interruption; `Err` for a failure.
    fn outcome(self) -> Result<Outcome, TransferError>;
}

impl TransferResultExt for TransferResult {
    fn outcome(self) -> Result<Outcome, TransferError> {
        match self {
            Ok(n) => Ok(Outcome::Done(n)),
            Err(TransferError::Timeout) => Ok(Outcome::TimedOut),
            Err(TransferError::Interrupted) => Ok(Outcome::Interrupted),
            Err(e) => Err(e),
        }
    }
}

/// Every failure of the transport API other than a transfer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// An endpoint that cannot be used, with the reason and how to fix it.
    #[error("invalid address '{address}': {reason}")]
    InvalidAddress {
        /// The endpoint as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket type name that does not exist.
    #[error("unknown socket type '{0}'; known types are: pair, push, pull, pub, sub, xpub, xsub, req, rep, dealer, router")]
    UnknownSocketType(String),
    /// Binding failed.
    #[error("could not bind socket {socket} to '{address}': {reason}")]
    Bind {
        /// Socket id.
        socket: String,
        /// Endpoint.
        address: String,
        /// Reason from the transport.
        reason: String,
    },
    /// Connecting failed.
    #[error("could not connect socket {socket} to '{address}': {reason}")]
    Connect {
        /// Socket id.
        socket: String,
        /// Endpoint.
        address: String,
        /// Reason from the transport.
        reason: String,
    },
    /// A socket option name that does not exist.
    #[error("unknown socket option '{0}'; known options are: linger, snd-hwm, rcv-hwm, snd-size, rcv-size")]
    UnknownOption(String),
    /// A transport that is not registered.
    #[error("unknown transport '{name}'; available transports are: {}", available.join(", "))]
    UnknownTransport {
        /// The requested name.
        name: String,
        /// The registered names.
        available: Vec<String>,
    },
    /// Something this transport does not support, with what to use instead.
    #[error("{0}")]
    Unsupported(String),
    /// Memory for a message could not be had.
    #[error("{0}")]
    BadAlloc(String),
    /// A misuse of a message.
    #[error("message error: {0}")]
    Message(String),
    /// A region could not be created or used.
    #[error("region error: {0}")]
    Region(String),
    /// A poll failed.
    #[error("poll failed: {0}")]
    Poll(String),
    /// Anything else, with its context.
    #[error("{0}")]
    Other(String),
}
