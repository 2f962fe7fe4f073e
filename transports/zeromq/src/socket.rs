//! Sockets of the zeromq transport: one libzmq frame per message part.

use crate::core::{Counters, SocketCore};
use crate::message::ZmqMessage;
use fairmq_transport::{
    MessagePtr, Parts, Socket, SocketType, TransferError, TransferResult, TransportError,
};

/// Messages up to this size are sent as copies: copying them costs less than the system call
/// that checks whether the socket can take a message without dropping it on failure.
pub const COPY_MAX: usize = 16384;

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

/// The payload of `msg` as a libzmq message, leaving `msg` empty.
fn take_frame(msg: &mut MessagePtr) -> zmq::Message {
    if let Some(z) = msg.as_any_mut().downcast_mut::<ZmqMessage>() {
        return z.take_for_send();
    }
    // A message of another transport: copy its bytes (channels avoid this, see new_message_for).
    let frame = zmq::Message::from(msg.data());
    msg.rebuild();
    frame
}

fn store_frame(msg: &mut MessagePtr, frame: zmq::Message) {
    match msg.as_any_mut().downcast_mut::<ZmqMessage>() {
        Some(z) => z.store(frame),
        None => *msg = Box::new(ZmqMessage::from_zmq(frame, None)),
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
        let size = msg.size();
        if size <= COPY_MAX {
            self.core.send_copies(timeout_ms, &[msg.data()])?;
            match msg.as_any_mut().downcast_mut::<ZmqMessage>() {
                Some(z) => z.clear_sent(),
                None => msg.rebuild(),
            }
        } else {
            self.core
                .send_frames(timeout_ms, || vec![take_frame(msg)])?;
        }
        self.counters.sent(size);
        Ok(size)
    }

    fn receive(&self, msg: &mut MessagePtr, timeout_ms: i64) -> TransferResult {
        let frames = self.core.receive_frames(timeout_ms)?;
        if frames.len() != 1 {
            return Err(TransferError::Other {
                socket: self.id().to_string(),
                reason: format!(
                    "received a multipart message ({} parts) with a single-message receive; the sender uses send_parts, so receive with receive_parts",
                    frames.len()
                ),
            });
        }
        let frame = frames.first;
        let size = frame.len();
        store_frame(msg, frame);
        self.counters.received(size);
        Ok(size)
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
        self.core
            .send_frames(timeout_ms, || parts.iter_mut().map(take_frame).collect())?;
        parts.clear();
        self.counters.sent(size);
        Ok(size)
    }

    fn receive_parts(&self, parts: &mut Parts, timeout_ms: i64) -> TransferResult {
        let frames = self.core.receive_frames(timeout_ms)?;
        let mut size = 0;
        for f in frames {
            size += f.len();
            parts.add_part(Box::new(ZmqMessage::from_zmq(f, None)));
        }
        self.counters.received(size);
        Ok(size)
    }

    fn set_option(&self, name: &str, value: i64) -> Result<(), TransportError> {
        self.core.set_option(name, value)
    }
    fn get_option(&self, name: &str) -> Result<i64, TransportError> {
        self.core.get_option(name)
    }
    crate::forward_socket_counters!();
}
