//! Messages of the zeromq transport: one libzmq message each, as in FairMQ.
//!
//! A message owns a [`RawMsg`] and views `len` bytes of it from offset `off` (`off` is non-zero
//! only when an alignment was asked for; `len` is below the content's size only after
//! `set_used_size`). New messages are not initialised (FairMQ does not initialise them either);
//! a received message is the libzmq message itself, filled in place; sending hands the libzmq
//! message to libzmq without a copy when the view covers all of it (otherwise the viewed bytes
//! are copied once into a message of their own, as FairMQ's `ApplyUsedSize` does).
//!
//! `copy_from` shares the content through libzmq's reference count. Unlike FairMQ, writing to a
//! shared message first detaches it (copy on write), so two messages never alias writable bytes.

use fairmq_transport::{Message, OwnedBuffer, TransportError};
use fairmq_zmq_core::RawMsg;
use std::any::Any;
use std::cell::Cell;

/// A zeromq transport message.
pub struct ZmqMessage {
    raw: RawMsg,
    off: usize,
    len: usize,
    /// The view is all of `raw` (`off == 0 && len == raw.len()`): sendable as it is.
    whole: bool,
    alignment: Option<usize>,
    /// Set on both sides of a `copy_from`: the content may be reachable from another message.
    shared: Cell<bool>,
}

/// libzmq stores contents up to this size inside the `zmq_msg_t` itself (`ZMQ_MAX_VSM_SIZE`).
const VSM_LIMIT: usize = 33;

fn alignment_of(alignment: Option<usize>) -> Option<usize> {
    alignment.filter(|a| *a > 1)
}

/// The offset at which `ptr` reaches a multiple of `alignment`.
fn align_offset(ptr: *const u8, alignment: Option<usize>) -> usize {
    match alignment {
        Some(a) => (a - ptr as usize % a) % a,
        None => 0,
    }
}

#[cold]
pub(crate) fn alloc_error(size: usize, e: zmq::Error) -> TransportError {
    TransportError::Other(format!(
        "could not allocate a zeromq message of {size} bytes: {e}"
    ))
}

impl ZmqMessage {
    fn over(raw: RawMsg, alignment: Option<usize>) -> Self {
        let len = raw.len();
        Self::over_sized(raw, len, alignment)
    }

    /// [`Self::over`] for a `raw` whose size the caller knows (saves asking libzmq).
    #[inline(always)]
    fn over_sized(raw: RawMsg, len: usize, alignment: Option<usize>) -> Self {
        ZmqMessage {
            raw,
            off: 0,
            len,
            whole: true,
            alignment: alignment_of(alignment),
            shared: Cell::new(false),
        }
    }

    /// An empty message; received payloads will be aligned to `alignment` if given.
    pub fn empty(alignment: Option<usize>) -> Self {
        Self::over_sized(RawMsg::new(), 0, alignment)
    }

    /// A message of `size` bytes (not initialised), optionally aligned, built in its box: an
    /// empty message is boxed and libzmq then initialises the payload where the message stays
    /// (FairMQ's `CreateMessage`: one libzmq allocation and the message object's own).
    #[inline(always)]
    pub fn with_size(size: usize, alignment: Option<usize>) -> Result<Box<Self>, TransportError> {
        let mut m = Box::new(Self::empty(alignment));
        m.resize(size)?;
        Ok(m)
    }

    /// Replaces the payload by `size` new (not initialised) bytes at this message's alignment.
    /// The common case (no alignment, not empty) reuses the libzmq message in place and costs
    /// one `zmq_msg_close` and one `zmq_msg_init_size`; the others go to [`Self::resize_slow`].
    #[inline(always)]
    fn resize(&mut self, size: usize) -> Result<(), TransportError> {
        if self.alignment.is_some() || size == 0 {
            return self.resize_slow(size);
        }
        self.shared.set(false);
        self.off = 0;
        self.whole = true;
        match self.raw.reset_with_size(size) {
            Ok(()) => {
                self.len = size;
                Ok(())
            }
            Err(e) => {
                // The message is empty now.
                self.len = 0;
                Err(alloc_error(size, e))
            }
        }
    }

    /// [`Self::resize`] to an empty or an aligned payload.
    #[cold]
    #[inline(never)]
    fn resize_slow(&mut self, size: usize) -> Result<(), TransportError> {
        self.shared.set(false);
        self.off = 0;
        self.len = 0;
        self.whole = true;
        let Some(a) = self.alignment.filter(|_| size > 0) else {
            self.raw = RawMsg::new();
            return Ok(());
        };
        // Room to align, and never a very small message: libzmq keeps those inside the
        // zmq_msg_t, which moves with this message and would lose the alignment.
        self.raw
            .reset_with_size((size + a - 1).max(VSM_LIMIT + 1))
            .map_err(|e| alloc_error(size, e))?;
        self.off = align_offset(self.raw.data().as_ptr(), self.alignment);
        self.len = size;
        self.whole = false;
        Ok(())
    }

    /// A message over an owned buffer, adopted without copying (a vector, or an external
    /// buffer released when libzmq lets go of the last share).
    pub fn from_buffer(buffer: OwnedBuffer) -> Result<Self, TransportError> {
        let size = buffer.len();
        let raw = match buffer {
            OwnedBuffer::Vec(v) => RawMsg::from_vec(v),
            OwnedBuffer::External(ext) => RawMsg::from_external(ext),
        }
        .map_err(|e| alloc_error(size, e))?;
        Ok(Self::over(raw, None))
    }

    /// A message over a received libzmq message.
    pub(crate) fn from_raw(raw: RawMsg) -> Self {
        Self::over(raw, None)
    }

    /// A message over a copy of a region block; `guard` reports the block released when libzmq
    /// lets go of the message's content.
    pub(crate) fn from_region_block(
        bytes: Vec<u8>,
        guard: crate::region::BlockGuard,
    ) -> Result<Self, TransportError> {
        let size = bytes.len();
        let raw = RawMsg::from_vec_keeping(bytes, guard).map_err(|e| alloc_error(size, e))?;
        Ok(Self::over(raw, None))
    }

    /// A message holding a copy of `bytes`.
    pub(crate) fn copy_of(bytes: &[u8]) -> Result<Self, TransportError> {
        let raw = RawMsg::copy_of(bytes).map_err(|e| alloc_error(bytes.len(), e))?;
        Ok(Self::over(raw, None))
    }

    /// The libzmq message to receive into: the caller fills it, then calls [`Self::received`].
    #[inline]
    pub(crate) fn receive_target(&mut self) -> &mut RawMsg {
        &mut self.raw
    }

    /// Takes a freshly received content into account (size, alignment).
    #[inline]
    pub(crate) fn received(&mut self) {
        self.off = 0;
        self.len = self.raw.len();
        self.whole = true;
        self.shared.set(false);
        if self.alignment.is_some() {
            self.realign();
        }
    }

    /// Copies a received payload that is not at this message's alignment into one that is
    /// (FairMQ's `Realign`): libzmq chose the address.
    #[cold]
    #[inline(never)]
    fn realign(&mut self) {
        if let Some(a) = self.alignment {
            if !(self.raw.data().as_ptr() as usize).is_multiple_of(a) {
                let bytes = std::mem::take(&mut self.raw);
                if self.resize(bytes.len()).is_ok() {
                    self.data_mut().copy_from_slice(bytes.data());
                } else {
                    // Out of memory for the aligned copy: keep the unaligned payload.
                    self.raw = bytes;
                    self.off = 0;
                    self.len = self.raw.len();
                    self.whole = true;
                }
            }
        }
    }

    /// Makes the libzmq message hold exactly the viewed bytes, so that it can be sent as it
    /// is: a shrunk or aligned message is copied once here (FairMQ's `ApplyUsedSize`).
    #[inline]
    pub(crate) fn prepare_send(&mut self) -> Result<&mut RawMsg, TransportError> {
        if !self.whole {
            self.copy_view()?;
        }
        Ok(&mut self.raw)
    }

    /// The copy of [`Self::prepare_send`]: the viewed bytes into a message of their own.
    #[cold]
    #[inline(never)]
    fn copy_view(&mut self) -> Result<(), TransportError> {
        self.raw = RawMsg::copy_of(self.data()).map_err(|e| alloc_error(self.len, e))?;
        self.off = 0;
        self.whole = true;
        Ok(())
    }

    /// Records a successful send: libzmq owns the content, this message is empty.
    #[inline]
    pub(crate) fn sent(&mut self) {
        self.off = 0;
        self.len = 0;
        self.whole = true;
        self.shared.set(false);
    }
}

impl Message for ZmqMessage {
    fn transport(&self) -> &'static str {
        crate::NAME
    }

    fn data(&self) -> &[u8] {
        &self.raw.data()[self.off..self.off + self.len]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        if self.shared.get() && self.len > 0 {
            // Copy on write: detach from the messages that share the content.
            let old = std::mem::take(&mut self.raw);
            let (off, len) = (self.off, self.len);
            match self.resize(len) {
                Ok(()) => {
                    let (o, l) = (self.off, self.len);
                    self.raw.data_mut()[o..o + l].copy_from_slice(&old.data()[off..off + len]);
                }
                Err(e) => {
                    // No memory for the private copy: no bytes can be handed out safely.
                    tracing::error!("{e}; the message is left empty");
                    self.raw = RawMsg::new();
                    self.off = 0;
                    self.len = 0;
                    self.whole = true;
                }
            }
        }
        let (o, l) = (self.off, self.len);
        &mut self.raw.data_mut()[o..o + l]
    }

    fn size(&self) -> usize {
        self.len
    }

    fn set_used_size(&mut self, size: usize) -> bool {
        if size > self.len {
            tracing::error!("cannot set used size higher than original.");
            return false;
        }
        if size == 0 {
            self.raw = RawMsg::new();
            self.off = 0;
            self.whole = true;
            self.shared.set(false);
        } else if size < self.len {
            self.whole = false;
        }
        self.len = size;
        true
    }

    fn rebuild(&mut self) {
        self.raw = RawMsg::new();
        self.off = 0;
        self.len = 0;
        self.whole = true;
        self.shared.set(false);
    }

    fn rebuild_with_size(
        &mut self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<(), TransportError> {
        self.alignment = alignment_of(alignment);
        self.resize(size)
    }

    fn rebuild_from_buffer(&mut self, buffer: OwnedBuffer) -> Result<(), TransportError> {
        *self = Self::from_buffer(buffer)?;
        Ok(())
    }

    fn copy_from(&mut self, other: &dyn Message) -> Result<(), TransportError> {
        match other.as_any().downcast_ref::<ZmqMessage>() {
            Some(o) => {
                self.raw = o.raw.share().map_err(|e| {
                    TransportError::Other(format!("could not share a zeromq message: {e}"))
                })?;
                self.off = o.off;
                self.len = o.len;
                self.whole = o.whole;
                self.alignment = o.alignment;
                o.shared.set(true);
                self.shared.set(true);
                // Very small contents are copied by libzmq (into the message itself): realign.
                if self.off != align_offset(self.raw.data().as_ptr(), self.alignment) {
                    let bytes = o.data();
                    self.resize(bytes.len())?;
                    self.data_mut().copy_from_slice(bytes);
                }
            }
            // Messages of other transports are copied.
            None => {
                self.alignment = alignment_of(other.alignment());
                self.resize(other.size())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_on_write_detaches_both_sides() {
        let mut a = ZmqMessage::copy_of(&[1u8; 5000]).unwrap();
        let mut b = ZmqMessage::empty(None);
        b.copy_from(&a).unwrap();
        assert_eq!(b.data().as_ptr(), a.data().as_ptr(), "shared");
        b.data_mut()[0] = 2;
        assert_eq!(a.data()[0], 1, "writing the copy leaves the original");
        a.data_mut()[1] = 3;
        assert_eq!(b.data()[1], 1, "writing the original leaves the copy");
    }

    #[test]
    fn rebuilding_in_place_releases_only_this_share() {
        let a = ZmqMessage::copy_of(&[6u8; 5000]).unwrap();
        let mut b = ZmqMessage::empty(None);
        b.copy_from(&a).unwrap();
        // The libzmq message of `b` is closed and made again in place: `a` keeps the content.
        b.rebuild_with_size(100, None).unwrap();
        assert_eq!(b.size(), 100);
        assert_ne!(b.data().as_ptr(), a.data().as_ptr());
        b.data_mut().fill(1);
        assert_eq!(a.data(), &[6u8; 5000][..]);
        // And again to a pooled size, and to an aligned one, and to nothing.
        b.rebuild_with_size(1 << 18, None).unwrap();
        assert_eq!(b.size(), 1 << 18);
        b.rebuild_with_size(300, Some(256)).unwrap();
        assert_eq!(b.size(), 300);
        assert_eq!(b.data().as_ptr() as usize % 256, 0);
        b.rebuild_with_size(0, None).unwrap();
        assert_eq!(b.size(), 0);
        assert_eq!(a.data(), &[6u8; 5000][..]);
    }

    #[test]
    fn aligned_and_shrunk_messages_prepare_exact_frames() {
        for align in [Some(64usize), None] {
            let mut m = ZmqMessage::with_size(300, align).unwrap();
            if let Some(a) = align {
                assert_eq!(m.data().as_ptr() as usize % a, 0);
            }
            m.data_mut().copy_from_slice(&[4; 300]);
            assert!(m.set_used_size(100));
            let raw = m.prepare_send().unwrap();
            assert_eq!(raw.data(), &[4; 100][..]);
        }
    }
}
