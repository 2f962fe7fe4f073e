//! Sockets of the zeromq transport: one libzmq frame per message part.

use crate::message::ZmqMessage;
use fairmq_transport::{
    Message, MessagePtr, Parts, Socket, SocketType, TransferError, TransferResult, TransportError,
};
use fairmq_zmq_core::{Counters, SocketCore};

/// A zeromq transport socket.
pub struct ZmqSocket {
    pub(crate) core: SocketCore,
    counters: Counters,
}

impl ZmqSocket {
    pub(crate) fn new(core: SocketCore) -> Self {
        ZmqSocket {
            core,
            counters: Counters::default(),
        }
    }
}

/// A message of another transport as a zeromq message: its bytes are copied (channels avoid
/// this, see `new_message_for`).
fn foreign(msg: &dyn fairmq_transport::Message) -> Result<ZmqMessage, TransferError> {
    ZmqMessage::copy_of(msg.data()).map_err(|e| TransferError::Other {
        socket: String::new(),
        reason: e.to_string(),
    })
}

/// A transport error on the way to a transfer, as a transfer error of `socket`.
#[cold]
fn transfer_error(socket: &str, e: TransportError) -> TransferError {
    TransferError::Other {
        socket: socket.to_string(),
        reason: e.to_string(),
    }
}

/// A message of another transport given to a receive: replaced by an empty zeromq message of
/// the same alignment.
#[cold]
#[inline(never)]
fn replace_foreign(msg: &mut MessagePtr) {
    *msg = Box::new(ZmqMessage::empty(msg.alignment()));
}

impl ZmqSocket {
    /// [`Socket::receive`] into a zeromq message, filled in place.
    #[inline]
    fn receive_into(&self, z: &mut ZmqMessage, timeout_ms: i64) -> TransferResult {
        let (frames, _claim) = self
            .core
            .receive_raw(timeout_ms, z.receive_target(), drop)?;
        z.received();
        if frames != 1 {
            return Err(self.multipart_refused(z, frames));
        }
        let size = z.size();
        self.counters.received_claimed(size);
        Ok(size)
    }

    /// A multipart message received by a single-message receive: dropped, and an error that says
    /// which receive to use.
    #[cold]
    #[inline(never)]
    fn multipart_refused(&self, z: &mut ZmqMessage, frames: usize) -> TransferError {
        z.rebuild();
        TransferError::Other {
            socket: self.id().to_string(),
            reason: format!(
                "received a multipart message ({frames} parts) with a single-message receive; the sender uses send_parts, so receive with receive_parts"
            ),
        }
    }

    /// [`Socket::send`] of a message of another transport: a copy of its bytes is sent.
    #[cold]
    #[inline(never)]
    fn send_foreign(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        let size = msg.size();
        let mut copy = foreign(msg.as_ref())?;
        let raw = copy
            .prepare_send()
            .map_err(|e| transfer_error(self.id(), e))?;
        let _claim = self.core.send_raw(timeout_ms, raw, std::iter::empty())?;
        self.counters.sent_claimed(size);
        msg.rebuild();
        Ok(size)
    }
}

impl Socket for ZmqSocket {
    fn id(&self) -> &str {
        self.core.id()
    }
    fn socket_type(&self) -> SocketType {
        self.core.socket_type()
    }
    fn transport(&self) -> &'static str {
        crate::NAME
    }
    fn bind(&self, endpoint: &str) -> Result<String, TransportError> {
        self.core.bind(endpoint)
    }
    fn connect(&self, endpoint: &str) -> Result<(), TransportError> {
        self.core.connect(endpoint)
    }

    fn send(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        match msg.as_any_mut().downcast_mut::<ZmqMessage>() {
            Some(z) => {
                let size = z.size();
                let raw = z.prepare_send().map_err(|e| transfer_error(self.id(), e))?;
                let _claim = self.core.send_raw(timeout_ms, raw, std::iter::empty())?;
                self.counters.sent_claimed(size);
                z.sent();
                Ok(size)
            }
            None => self.send_foreign(msg, timeout_ms),
        }
    }

    fn receive(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        if let Some(z) = msg.as_any_mut().downcast_mut::<ZmqMessage>() {
            return self.receive_into(z, timeout_ms);
        }
        replace_foreign(msg);
        let Some(z) = msg.as_any_mut().downcast_mut::<ZmqMessage>() else {
            unreachable!("the message was just made a zeromq message");
        };
        self.receive_into(z, timeout_ms)
    }

    fn send_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        if parts.is_empty() {
            tracing::warn!("Will not send empty vector");
            return Err(TransferError::Other {
                socket: self.id().to_string(),
                reason: "will not send an empty multipart message".into(),
            });
        }
        let size = parts.total_size();
        // Parts of other transports are copied first; the caller's parts stay as they are
        // until the whole message is sent.
        let mut copies: Vec<Option<ZmqMessage>> = Vec::new();
        if parts.iter().any(|p| !p.as_any().is::<ZmqMessage>()) {
            copies = parts
                .iter()
                .map(|p| match p.as_any().is::<ZmqMessage>() {
                    true => Ok(None),
                    false => foreign(p.as_ref()).map(Some),
                })
                .collect::<Result<_, _>>()?;
        }
        let mut copied = copies
            .iter_mut()
            .map(Option::as_mut)
            .chain(std::iter::repeat_with(|| None));
        let mut raws = Vec::with_capacity(parts.len());
        for p in parts.iter_mut() {
            let z = match copied.next().flatten() {
                Some(c) => c,
                None => p
                    .as_any_mut()
                    .downcast_mut::<ZmqMessage>()
                    .expect("checked above: a zeromq message"),
            };
            raws.push(z.prepare_send().map_err(|e| transfer_error(self.id(), e))?);
        }
        let (first, rest) = raws.split_first_mut().expect("parts is not empty");
        let claim = self
            .core
            .send_raw(timeout_ms, first, rest.iter_mut().map(|r| &mut **r))?;
        self.counters.sent_claimed(size);
        drop(claim);
        parts.clear();
        Ok(size)
    }

    fn receive_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        let mut first = ZmqMessage::empty(None);
        let mut rest = Vec::new();
        let (_, claim) = self
            .core
            .receive_raw(timeout_ms, first.receive_target(), |m| rest.push(m))?;
        first.received();
        let mut size = first.size();
        parts.add_part(Box::new(first));
        for raw in rest {
            let m = ZmqMessage::from_raw(raw);
            size += m.size();
            parts.add_part(Box::new(m));
        }
        self.counters.received_claimed(size);
        drop(claim);
        Ok(size)
    }

    fn set_option(&self, name: &str, value: i64) -> Result<(), TransportError> {
        self.core.set_option(name, value)
    }
    fn get_option(&self, name: &str) -> Result<i64, TransportError> {
        self.core.get_option(name)
    }
    fairmq_zmq_core::forward_socket_counters!();
}
