//! Messages of the zeromq transport.
//!
//! A message is a view (offset, length) into a libzmq message shared through an `Arc`: `copy`
//! shares it, `set_used_size` shrinks the view, and alignment is a view that starts at an
//! aligned address. A message whose buffer wraps something that must be released later (a
//! region block, a user buffer) carries a guard that is dropped with the last holder.
//!
//! Sending hands the libzmq message itself to libzmq when this message is its only holder and
//! views all of it (the common case: no copy); otherwise the viewed bytes are copied into a new
//! libzmq message (shared, shrunk or aligned messages).

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

/// A zeromq transport message.
pub struct ZmqMessage {
    pub(crate) view: Option<View>,
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

impl ZmqMessage {
    /// An empty message; received payloads will be aligned to `alignment` if given.
    pub fn empty(alignment: Option<usize>) -> Self {
        ZmqMessage {
            view: None,
            alignment,
        }
    }

    /// A message of `size` zeroed bytes, optionally aligned.
    pub fn with_size(size: usize, alignment: Option<usize>) -> Self {
        let mut m = Self::empty(alignment);
        m.view = Self::alloc(size, alignment);
        m
    }

    fn alloc(size: usize, alignment: Option<usize>) -> Option<View> {
        if size == 0 {
            return None;
        }
        let extra = alignment.filter(|a| *a > 1).unwrap_or(0);
        Some(aligned_view(
            zmq::Message::with_size(size + extra),
            size,
            alignment,
            None,
        ))
    }

    /// A message over an owned buffer: a vector is adopted without copying; another buffer is
    /// copied once and kept (not released) until the last holder of this message lets go.
    pub fn from_buffer(buffer: OwnedBuffer) -> Self {
        match buffer {
            OwnedBuffer::Vec(v) => Self::from_zmq(zmq::Message::from(v), None),
            OwnedBuffer::External(ext) => {
                let msg = zmq::Message::from(ext.as_slice());
                Self::from_guarded(msg, Box::new(std::sync::Mutex::new(ext)))
            }
        }
    }

    /// A message over a libzmq message received or built elsewhere.
    pub(crate) fn from_zmq(msg: zmq::Message, alignment: Option<usize>) -> Self {
        let len = msg.len();
        let mut m = Self::empty(alignment);
        if len > 0 {
            let view = aligned_view(msg, len, None, None);
            m.view = Some(view);
            m.realign();
        }
        m
    }

    /// A message whose buffer must keep `guard` until released.
    pub(crate) fn from_guarded(msg: zmq::Message, guard: Guard) -> Self {
        let len = msg.len();
        ZmqMessage {
            view: Some(aligned_view(msg, len, None, Some(guard))),
            alignment: None,
        }
    }

    /// Copies into an aligned buffer if the payload is not aligned as requested.
    fn realign(&mut self) {
        let Some(a) = self.alignment.filter(|a| *a > 1) else {
            return;
        };
        if (self.data().as_ptr() as usize).is_multiple_of(a) {
            return;
        }
        let mut fresh = Self::alloc(self.size(), Some(a));
        if let Some(v) = fresh.as_mut() {
            let src = self.data();
            let dst = Arc::get_mut(&mut v.buf).map(|b| &mut b.msg[v.off..v.off + v.len]);
            if let Some(dst) = dst {
                dst.copy_from_slice(src);
            }
        }
        self.view = fresh;
    }

    /// Takes the payload out as a libzmq message for sending: the libzmq message itself when
    /// this is its only holder and the view covers it, a copy of the viewed bytes otherwise.
    pub(crate) fn take_for_send(&mut self) -> zmq::Message {
        let Some(view) = self.view.take() else {
            return zmq::Message::new();
        };
        let View { buf, off, len } = view;
        match Arc::try_unwrap(buf) {
            // The guard (if any) is released here: the libzmq message already holds the bytes.
            Ok(Buf { msg, .. }) if off == 0 && len == msg.len() => msg,
            Ok(b) => zmq::Message::from(&b.msg[off..off + len]),
            Err(shared) => zmq::Message::from(&shared.msg[off..off + len]),
        }
    }
}

impl Message for ZmqMessage {
    fn transport(&self) -> &'static str {
        crate::NAME
    }

    fn data(&self) -> &[u8] {
        match &self.view {
            Some(v) => &v.buf.msg[v.off..v.off + v.len],
            None => &[],
        }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // Copy on write: a payload shared with a copy is detached before it is modified.
        let shared = self
            .view
            .as_mut()
            .is_some_and(|v| Arc::get_mut(&mut v.buf).is_none());
        if shared {
            let bytes = self.data().to_vec();
            let alignment = self.alignment;
            self.view = Self::alloc(bytes.len(), alignment);
            if let Some(v) = self.view.as_mut() {
                if let Some(b) = Arc::get_mut(&mut v.buf) {
                    b.msg[v.off..v.off + v.len].copy_from_slice(&bytes);
                }
            }
        }
        match self.view.as_mut() {
            Some(v) => match Arc::get_mut(&mut v.buf) {
                Some(b) => &mut b.msg[v.off..v.off + v.len],
                None => &mut [],
            },
            None => &mut [],
        }
    }

    fn size(&self) -> usize {
        self.view.as_ref().map_or(0, |v| v.len)
    }

    fn set_used_size(&mut self, size: usize) -> bool {
        let current = self.size();
        if size > current {
            tracing::error!("cannot set used size higher than original.");
            return false;
        }
        if size == 0 {
            self.view = None;
        } else if let Some(v) = self.view.as_mut() {
            v.len = size;
        }
        true
    }

    fn rebuild(&mut self) {
        self.view = None;
    }

    fn rebuild_with_size(
        &mut self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<(), TransportError> {
        self.alignment = alignment;
        self.view = Self::alloc(size, alignment);
        Ok(())
    }

    fn rebuild_from_buffer(&mut self, buffer: OwnedBuffer) -> Result<(), TransportError> {
        *self = Self::from_buffer(buffer);
        Ok(())
    }

    fn copy_from(&mut self, other: &dyn Message) -> Result<(), TransportError> {
        match other.as_any().downcast_ref::<ZmqMessage>() {
            Some(o) => {
                self.view = o.view.clone();
                self.alignment = o.alignment;
            }
            None => {
                // A message of another transport: copy its bytes.
                self.view = Self::alloc(other.size(), self.alignment);
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
