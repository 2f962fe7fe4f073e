//! Messages and multipart messages.
//!
//! A [`Message`] owns (or shares) one payload buffer of some transport. Sockets take messages by
//! `&mut MessagePtr`: a successful send moves the payload into the transport and leaves the
//! message empty, ready to be rebuilt; a failed send leaves it untouched with the caller.

use crate::TransportError;
use std::any::Any;

/// A payload buffer of some transport.
pub trait Message: Send + Any {
    /// Name of the transport that made this message (`"zeromq"`, `"shmem"`, …).
    fn transport(&self) -> &'static str;
    /// The payload bytes (empty for an empty message).
    fn data(&self) -> &[u8];
    /// The payload bytes, writable in place.
    fn data_mut(&mut self) -> &mut [u8];
    /// Payload size in bytes.
    fn size(&self) -> usize {
        self.data().len()
    }
    /// Shrinks the payload to `size` bytes in place. Returns `false` (and changes nothing) if
    /// `size` is larger than the current size. Size 0 releases the buffer.
    fn set_used_size(&mut self, size: usize) -> bool;
    /// Releases the buffer; the message becomes empty.
    fn rebuild(&mut self);
    /// Releases the buffer and allocates a new one of `size` bytes (optionally aligned).
    fn rebuild_with_size(
        &mut self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<(), TransportError>;
    /// Releases the buffer and takes over `buffer` instead.
    fn rebuild_from_buffer(&mut self, buffer: OwnedBuffer) -> Result<(), TransportError>;
    /// Makes this message share `other`'s payload without copying it (a reference count in the
    /// transport keeps the payload alive until the last holder releases it). `other` must be of
    /// the same transport.
    fn copy_from(&mut self, other: &dyn Message) -> Result<(), TransportError>;
    /// The alignment this message was asked for, if any.
    fn alignment(&self) -> Option<usize>;
    /// Upcast for transports that need their concrete type back.
    fn as_any(&self) -> &dyn Any;
    /// Mutable upcast.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// An owned, boxed message of any transport.
pub type MessagePtr = Box<dyn Message>;

/// A user buffer whose release is signalled by dropping it.
///
/// Implement it for a type whose `Drop` is the release callback (FairMQ's `ffn(data, hint)`),
/// or use [`OwnedBuffer::with_release`].
pub trait ExternalBuffer: Send {
    /// The bytes.
    fn as_slice(&self) -> &[u8];
    /// The bytes, writable.
    fn as_mut_slice(&mut self) -> &mut [u8];
}

/// A buffer handed to [`crate::TransportFactory::new_message_from_buffer`].
pub enum OwnedBuffer {
    /// A plain vector: transports may adopt it without copying.
    Vec(Vec<u8>),
    /// Any buffer with its own release behaviour.
    External(Box<dyn ExternalBuffer>),
}

impl OwnedBuffer {
    /// A buffer over `bytes` that calls `release(bytes)` once no message needs it any more.
    pub fn with_release<F>(bytes: Box<[u8]>, release: F) -> Self
    where
        F: FnOnce(Box<[u8]>) + Send + 'static,
    {
        OwnedBuffer::External(Box::new(CallbackBuffer {
            bytes: Some(bytes),
            release: Some(Box::new(release)),
        }))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            OwnedBuffer::Vec(v) => v,
            OwnedBuffer::External(b) => b.as_slice(),
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<u8>> for OwnedBuffer {
    fn from(v: Vec<u8>) -> Self {
        OwnedBuffer::Vec(v)
    }
}

impl std::fmt::Debug for OwnedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnedBuffer::Vec(v) => write!(f, "OwnedBuffer::Vec({} bytes)", v.len()),
            OwnedBuffer::External(b) => {
                write!(f, "OwnedBuffer::External({} bytes)", b.as_slice().len())
            }
        }
    }
}

type ReleaseFn = Box<dyn FnOnce(Box<[u8]>) + Send>;

struct CallbackBuffer {
    bytes: Option<Box<[u8]>>,
    release: Option<ReleaseFn>,
}

impl ExternalBuffer for CallbackBuffer {
    fn as_slice(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or(&[])
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.bytes.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for CallbackBuffer {
    fn drop(&mut self) {
        if let (Some(bytes), Some(release)) = (self.bytes.take(), self.release.take()) {
            release(bytes);
        }
    }
}

/// An ordered group of messages sent and received atomically; counts as one message.
#[derive(Default)]
pub struct Parts {
    parts: Vec<MessagePtr>,
}

impl Parts {
    /// An empty multipart message.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends one part.
    pub fn add_part(&mut self, msg: MessagePtr) {
        self.parts.push(msg);
    }
    /// Appends all parts of `other`.
    pub fn add_parts(&mut self, other: Parts) {
        self.parts.extend(other.parts);
    }
    /// Number of parts.
    pub fn len(&self) -> usize {
        self.parts.len()
    }
    /// Whether there are no parts.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
    /// Removes all parts.
    pub fn clear(&mut self) {
        self.parts.clear();
    }
    /// Part `i`, if it exists.
    pub fn at(&self, i: usize) -> Option<&MessagePtr> {
        self.parts.get(i)
    }
    /// Part `i`, writable, if it exists.
    pub fn at_mut(&mut self, i: usize) -> Option<&mut MessagePtr> {
        self.parts.get_mut(i)
    }
    /// Iterates over the parts.
    pub fn iter(&self) -> std::slice::Iter<'_, MessagePtr> {
        self.parts.iter()
    }
    /// Iterates mutably over the parts.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, MessagePtr> {
        self.parts.iter_mut()
    }
    /// Sum of the part sizes.
    pub fn total_size(&self) -> usize {
        self.parts.iter().map(|p| p.size()).sum()
    }
    /// The parts as a vector.
    pub fn into_vec(self) -> Vec<MessagePtr> {
        self.parts
    }
    /// Mutable access to the underlying vector (for transports).
    pub fn as_mut_vec(&mut self) -> &mut Vec<MessagePtr> {
        &mut self.parts
    }
}

impl From<Vec<MessagePtr>> for Parts {
    fn from(parts: Vec<MessagePtr>) -> Self {
        Parts { parts }
    }
}

impl std::ops::Index<usize> for Parts {
    type Output = MessagePtr;
    fn index(&self, i: usize) -> &MessagePtr {
        &self.parts[i]
    }
}

impl std::ops::IndexMut<usize> for Parts {
    fn index_mut(&mut self, i: usize) -> &mut MessagePtr {
        &mut self.parts[i]
    }
}

impl IntoIterator for Parts {
    type Item = MessagePtr;
    type IntoIter = std::vec::IntoIter<MessagePtr>;
    fn into_iter(self) -> Self::IntoIter {
        self.parts.into_iter()
    }
}

impl<'a> IntoIterator for &'a Parts {
    type Item = &'a MessagePtr;
    type IntoIter = std::slice::Iter<'a, MessagePtr>;
    fn into_iter(self) -> Self::IntoIter {
        self.parts.iter()
    }
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.parts.iter().map(|p| (p.transport(), p.size())))
            .finish()
    }
}
