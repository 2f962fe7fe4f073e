//! Messages of the zeromq transport.
//!
//! A message holds its payload in one of two forms:
//! - small (up to [`crate::socket::COPY_MAX`] bytes, no alignment requested): a plain vector
//!   that is copied into a libzmq message when sent. The copy is cheaper than the system call
//!   that moving a libzmq message safely would need, and the vector's capacity is kept for the
//!   next `rebuild_with_size`.
//! - large: a view (offset, length) into a libzmq message shared through an `Arc`: `copy_from`
//!   shares it, `set_used_size` shrinks the view, alignment is a view that starts at an aligned
//!   address. A payload that wraps something to release later (a region block, a user buffer)
//!   carries a guard dropped with the last holder. Sending hands the libzmq message itself to
//!   libzmq when this message is its only holder and views all of it (no copy); otherwise the
//!   viewed bytes are copied into a new libzmq message (shared, shrunk or aligned messages).

use crate::socket::COPY_MAX;
use fairmq_transport::{Message, OwnedBuffer, TransportError};
use std::any::Any;
use std::sync::Arc;

/// What keeps an external buffer (a region block, a user buffer) alive until released.
pub(crate) type Guard = Box<dyn Send + Sync>;

pub(crate) struct Buf {
    pub(crate) msg: zmq::Message,
    pub(crate) _guard: Option<Guard>,
}

#[derive(Clone)]
pub(crate) struct View {
    pub(crate) buf: Arc<Buf>,
    pub(crate) off: usize,
    pub(crate) len: usize,
}

pub(crate) enum Storage {
    /// No payload; the vector keeps capacity for reuse.
    Small(Vec<u8>),
    /// A view into a shared libzmq message.
    Zmq(View),
}

/// A zeromq transport message.
pub struct ZmqMessage {
    pub(crate) storage: Storage,
    alignment: Option<usize>,
}

fn aligned_view(
    msg: zmq::Message,
    len: usize,
    alignment: Option<usize>,
    guard: Option<Guard>,
) -> View {
    let buf = Arc::new(Buf { msg, _guard: guard });
    let off = match alignment {
        Some(a) if a > 1 => {
            let addr = buf.msg.as_ptr() as usize;
            (a - addr % a) % a
        }
        _ => 0,
    };
    debug_assert!(off + len <= buf.msg.len());
    View { buf, off, len }
}

fn alignment_of(alignment: Option<usize>) -> Option<usize> {
    alignment.filter(|a| *a > 1)
}

impl ZmqMessage {
    /// An empty message; received payloads will be aligned to `alignment` if given.
    pub fn empty(alignment: Option<usize>) -> Self {
        ZmqMessage {
            storage: Storage::Small(Vec::new()),
            alignment: alignment_of(alignment),
        }
    }

    /// A message of `size` zeroed bytes, optionally aligned.
    pub fn with_size(size: usize, alignment: Option<usize>) -> Self {
        let mut m = Self::empty(alignment);
        m.resize(size);
        m
    }

    /// Replaces the payload by `size` zeroed bytes, reusing the small buffer where possible.
    fn resize(&mut self, size: usize) {
        match (&mut self.storage, self.alignment) {
            (Storage::Small(v), None) if size <= COPY_MAX => {
                v.clear();
                v.resize(size, 0);
            }
            _ if size == 0 => self.storage = Storage::Small(Vec::new()),
            (_, alignment) => {
                let extra = alignment.unwrap_or(0);
                self.storage = Storage::Zmq(aligned_view(
                    zmq::Message::with_size(size + extra),
                    size,
                    alignment,
                    None,
                ));
            }
        }
    }

    /// A message over an owned buffer: a vector is adopted without copying; another buffer is
    /// copied once and kept (not released) until the last holder of this message lets go.
    pub fn from_buffer(buffer: OwnedBuffer) -> Self {
        match buffer {
            OwnedBuffer::Vec(v) if v.len() <= COPY_MAX => ZmqMessage {
                storage: Storage::Small(v),
                alignment: None,
            },
            OwnedBuffer::Vec(v) => Self::from_zmq(zmq::Message::from(v), None),
            OwnedBuffer::External(ext) => {
                let msg = zmq::Message::from(ext.as_slice());
                Self::from_guarded(msg, Box::new(std::sync::Mutex::new(ext)))
            }
        }
    }

    /// A message over a libzmq message received or built elsewhere.
    pub(crate) fn from_zmq(msg: zmq::Message, alignment: Option<usize>) -> Self {
        let mut m = Self::empty(alignment);
        m.store(msg);
        m
    }

    /// Replaces the payload by a received libzmq message, reusing this message's buffer
    /// holder when it is the only one.
    pub(crate) fn store(&mut self, msg: zmq::Message) {
        let len = msg.len();
        if len == 0 {
            self.storage = Storage::Small(Vec::new());
            return;
        }
        if let Storage::Zmq(v) = &mut self.storage {
            if let Some(b) = Arc::get_mut(&mut v.buf) {
                b.msg = msg;
                b._guard = None;
                v.off = 0;
                v.len = len;
                self.realign();
                return;
            }
        }
        self.storage = Storage::Zmq(aligned_view(msg, len, None, None));
        self.realign();
    }

    /// A message whose buffer must keep `guard` until released.
    pub(crate) fn from_guarded(msg: zmq::Message, guard: Guard) -> Self {
        let len = msg.len();
        ZmqMessage {
            storage: Storage::Zmq(aligned_view(msg, len, None, Some(guard))),
            alignment: None,
        }
    }

    /// Copies into an aligned buffer if the payload is not aligned as requested.
    fn realign(&mut self) {
        let Some(a) = self.alignment else { return };
        if (self.data().as_ptr() as usize).is_multiple_of(a) {
            return;
        }
        let bytes = self.data().to_vec();
        self.resize(bytes.len());
        self.data_mut().copy_from_slice(&bytes);
    }

    /// Takes the payload out as a libzmq message for sending: the libzmq message itself when
    /// this is its only holder and the view covers it, a copy of the bytes otherwise.
    pub(crate) fn take_for_send(&mut self) -> zmq::Message {
        match std::mem::replace(&mut self.storage, Storage::Small(Vec::new())) {
            Storage::Small(v) => zmq::Message::from(v),
            Storage::Zmq(View { buf, off, len }) => match Arc::try_unwrap(buf) {
                // The guard (if any) is released here: the libzmq message holds the bytes.
                Ok(Buf { msg, .. }) if off == 0 && len == msg.len() => msg,
                Ok(b) => zmq::Message::from(&b.msg[off..off + len]),
                Err(shared) => zmq::Message::from(&shared.msg[off..off + len]),
            },
        }
    }

    /// Marks a sent small message empty, keeping its capacity.
    pub(crate) fn clear_sent(&mut self) {
        match &mut self.storage {
            Storage::Small(v) => v.clear(),
            Storage::Zmq(_) => self.storage = Storage::Small(Vec::new()),
        }
    }
}

impl Message for ZmqMessage {
    fn transport(&self) -> &'static str {
        crate::NAME
    }

    fn data(&self) -> &[u8] {
        match &self.storage {
            Storage::Small(v) => v,
            Storage::Zmq(v) => &v.buf.msg[v.off..v.off + v.len],
        }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // Copy on write: a payload shared with a copy is detached before it is modified.
        if let Storage::Zmq(v) = &mut self.storage {
            if Arc::get_mut(&mut v.buf).is_none() {
                let bytes = self.data().to_vec();
                self.storage = Storage::Small(Vec::new());
                self.resize(bytes.len());
                if let Storage::Small(v) = &mut self.storage {
                    v.copy_from_slice(&bytes);
                } else if let Storage::Zmq(v) = &mut self.storage {
                    if let Some(b) = Arc::get_mut(&mut v.buf) {
                        b.msg[v.off..v.off + v.len].copy_from_slice(&bytes);
                    }
                }
            }
        }
        match &mut self.storage {
            Storage::Small(v) => v,
            Storage::Zmq(v) => match Arc::get_mut(&mut v.buf) {
                Some(b) => &mut b.msg[v.off..v.off + v.len],
                None => &mut [],
            },
        }
    }

    fn size(&self) -> usize {
        match &self.storage {
            Storage::Small(v) => v.len(),
            Storage::Zmq(v) => v.len,
        }
    }

    fn set_used_size(&mut self, size: usize) -> bool {
        if size > self.size() {
            tracing::error!("cannot set used size higher than original.");
            return false;
        }
        match &mut self.storage {
            Storage::Small(v) => v.truncate(size),
            Storage::Zmq(_) if size == 0 => self.storage = Storage::Small(Vec::new()),
            Storage::Zmq(v) => v.len = size,
        }
        true
    }

    fn rebuild(&mut self) {
        self.storage = Storage::Small(Vec::new());
    }

    fn rebuild_with_size(
        &mut self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<(), TransportError> {
        self.alignment = alignment_of(alignment);
        self.resize(size);
        Ok(())
    }

    fn rebuild_from_buffer(&mut self, buffer: OwnedBuffer) -> Result<(), TransportError> {
        *self = Self::from_buffer(buffer);
        Ok(())
    }

    fn copy_from(&mut self, other: &dyn Message) -> Result<(), TransportError> {
        match other.as_any().downcast_ref::<ZmqMessage>() {
            Some(ZmqMessage {
                storage: Storage::Zmq(v),
                alignment,
            }) => {
                self.storage = Storage::Zmq(v.clone());
                self.alignment = *alignment;
            }
            // Small payloads (and messages of other transports) are copied.
            _ => {
                self.alignment = alignment_of(other.alignment());
                self.resize(other.size());
                self.data_mut().copy_from_slice(other.data());
            }
        }
        Ok(())
    }

    fn alignment(&self) -> Option<usize> {
        self.alignment
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
