//! libzmq messages through `zmq-sys`, for the message path.
//!
//! The safe `zmq` crate costs a copy or an allocation per message where FairMQ's zeromq
//! transport costs none: it zero-fills new messages, and its `send` consumes the message, so a
//! send that times out drops it. [`RawMsg`] owns one `zmq_msg_t` and offers what FairMQ uses:
//! an uninitialised buffer from libzmq's allocator (`zmq_msg_init_size`), adoption of a Rust
//! buffer with a release function (`zmq_msg_init_data`), reference-counted sharing
//! (`zmq_msg_copy`), and `zmq_msg_send` / `zmq_msg_recv` on the message in place, which leave it
//! untouched when they fail (`EAGAIN`), so nothing is lost on a timeout.
//!
//! All `unsafe` of the zeromq transport lives in this module.

use crate::pool;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_void};

/// One owned libzmq message (`zmq_msg_t`), always initialised, closed on drop unless it holds
/// nothing.
///
/// The `zmq_msg_t` sits in an `UnsafeCell` because libzmq writes to the source of a
/// `zmq_msg_copy` (it marks it shared), which [`RawMsg::share`] does through `&self`.
///
/// Two kinds of message hold nothing to release, and are not closed: the `zmq_msg_t` that a
/// successful `zmq_msg_send` leaves behind (libzmq's documentation: "You do not need to call
/// zmq_msg_close() after a successful zmq_msg_send()"; libzmq re-initialises it empty), and an
/// empty message of `zmq_msg_init` (no content, no metadata, a short group: libzmq 4.3.4's close
/// would only mark it invalid). That saves one `zmq_msg_close` per sent message, which FairMQ's
/// messages pay.
pub struct RawMsg {
    msg: UnsafeCell<zmq_sys::zmq_msg_t>,
    /// Holds nothing to release: made by `zmq_msg_init`, or emptied by a successful send.
    bare: bool,
}

// SAFETY: a zmq_msg_t may be moved to and used from another thread (libzmq's reference counts
// of shared contents are atomic); RawMsg is not Sync, so only one thread uses it at a time.
unsafe impl Send for RawMsg {}

/// What keeps an adopted buffer alive until libzmq releases the message's content.
type Keeper = Box<dyn Send>;

/// Called by libzmq (from any thread, possibly its I/O thread) when the last message sharing an
/// adopted buffer is closed.
unsafe extern "C" fn release_keeper(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the pointer Box::into_raw made in `RawMsg::adopt`, handed to libzmq
    // once; libzmq calls this function exactly once per content.
    drop(unsafe { Box::from_raw(hint.cast::<Keeper>()) });
}

/// Called by libzmq when the last share of a message over a pooled buffer is closed: the
/// buffer goes back to the pool.
unsafe extern "C" fn release_pooled(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the pointer Box::into_raw made in `RawMsg::with_size`, handed to libzmq
    // once; libzmq calls this function exactly once per content.
    pool::give_back(unsafe { Box::from_raw(hint.cast::<pool::PoolBuf>()) });
}

/// The last libzmq error as a `zmq::Error`.
fn last_error() -> zmq::Error {
    // SAFETY: zmq_errno only reads the calling thread's errno.
    zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() })
}

/// A libzmq return code as a result: negative is the calling thread's last error.
#[inline]
fn check(rc: c_int) -> Result<(), zmq::Error> {
    if rc >= 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

impl RawMsg {
    /// A message initialised by `f` (one of libzmq's `zmq_msg_init*`, which write the whole
    /// `zmq_msg_t`), or `f`'s error.
    #[inline(always)]
    fn init(f: impl FnOnce(*mut zmq_sys::zmq_msg_t) -> c_int) -> Result<Self, zmq::Error> {
        let mut m = MaybeUninit::<zmq_sys::zmq_msg_t>::uninit();
        if f(m.as_mut_ptr()) == 0 {
            // SAFETY: libzmq's init functions initialise the zmq_msg_t when they return 0.
            Ok(RawMsg {
                msg: UnsafeCell::new(unsafe { m.assume_init() }),
                bare: false,
            })
        } else {
            // The zmq_msg_t was not initialised; nothing owns anything to close.
            Err(last_error())
        }
    }

    /// An empty message (no allocation).
    #[inline]
    pub fn new() -> Self {
        // SAFETY: zmq_msg_init initialises the zmq_msg_t it is given and cannot fail.
        let mut m = Self::init(|m| unsafe { zmq_sys::zmq_msg_init(m) }).unwrap_or_else(|e| {
            unreachable!("zmq_msg_init cannot fail, yet it reported {e}");
        });
        m.bare = true;
        m
    }

    /// A message of `size` bytes from libzmq's allocator, not initialised (as FairMQ's). The
    /// bytes are whatever the allocator returned: foreign memory, which the Rust abstract machine
    /// sees as bytes of unknown but fixed value, never as uninitialised Rust memory.
    ///
    /// Large messages take a recycled buffer instead (see `pool`): the same uninitialised
    /// contract, without a page fault per page of every message.
    #[inline(always)]
    pub fn with_size(size: usize) -> Result<Self, zmq::Error> {
        if pool::class_of(size).is_some() {
            return Self::pooled(size);
        }
        // SAFETY: zmq_msg_init_size initialises the zmq_msg_t or fails (ENOMEM) leaving it
        // uninitialised, which `init` handles.
        Self::init(|m| unsafe { zmq_sys::zmq_msg_init_size(m, size) })
    }

    /// [`RawMsg::with_size`] of a size the pool serves (libzmq's `malloc` if it has none).
    #[inline(never)]
    fn pooled(size: usize) -> Result<Self, zmq::Error> {
        if let Some(mut buf) = pool::take(size) {
            let ptr = buf.as_mut_ptr();
            let hint = Box::into_raw(buf);
            // SAFETY: the buffer has at least `size` bytes and is reachable only through this
            // message until libzmq hands `hint` back to release_pooled, once.
            let r = Self::init(|m| unsafe {
                zmq_sys::zmq_msg_init_data(m, ptr.cast(), size, Some(release_pooled), hint.cast())
            });
            if r.is_err() {
                // libzmq did not take the buffer (ENOMEM for its reference count).
                // SAFETY: `hint` came from Box::into_raw above and was not handed over.
                pool::give_back(unsafe { Box::from_raw(hint) });
            }
            return r;
        }
        // SAFETY: zmq_msg_init_size initialises the zmq_msg_t or fails (ENOMEM) leaving it
        // uninitialised, which `init` handles.
        Self::init(|m| unsafe { zmq_sys::zmq_msg_init_size(m, size) })
    }

    /// Replaces the content by `size` new bytes, as [`RawMsg::with_size`] does, reusing this
    /// `zmq_msg_t` in place (no new message to build and move). On failure the message is left
    /// empty.
    #[inline(always)]
    pub fn reset_with_size(&mut self, size: usize) -> Result<(), zmq::Error> {
        if pool::class_of(size).is_some() {
            return self.reset_pooled(size);
        }
        // SAFETY: the zmq_msg_t is initialised; it is closed (unless a send emptied it) and
        // initialised again at once (zmq_msg_init_size, or zmq_msg_init, which cannot fail,
        // when that fails), so it is initialised again whenever this returns.
        unsafe {
            if !std::mem::take(&mut self.bare) {
                zmq_sys::zmq_msg_close(self.ptr());
            }
            if zmq_sys::zmq_msg_init_size(self.ptr(), size) == 0 {
                return Ok(());
            }
            let e = last_error();
            zmq_sys::zmq_msg_init(self.ptr());
            Err(e)
        }
    }

    /// [`RawMsg::reset_with_size`] to a size the pool serves.
    #[inline(never)]
    fn reset_pooled(&mut self, size: usize) -> Result<(), zmq::Error> {
        let (m, r) = match Self::pooled(size) {
            Ok(m) => (m, Ok(())),
            Err(e) => (Self::new(), Err(e)),
        };
        *self = m;
        r
    }

    /// A message over the bytes `keeper` owns at `ptr..ptr + len`, without copying; `keeper` is
    /// dropped when libzmq releases the content (the last share closed, possibly on libzmq's
    /// I/O thread after a send).
    ///
    /// # Safety
    /// `ptr..ptr + len` must stay valid, and not be written through anything else, for as long
    /// as `keeper` lives (its heap data: moving the box does not move them).
    unsafe fn adopt(ptr: *mut u8, len: usize, keeper: Keeper) -> Result<Self, zmq::Error> {
        let hint = Box::into_raw(Box::new(keeper));
        // SAFETY: the caller guarantees the bytes; libzmq hands `hint` back to release_keeper
        // once.
        let r = Self::init(|m| unsafe {
            zmq_sys::zmq_msg_init_data(m, ptr.cast(), len, Some(release_keeper), hint.cast())
        });
        if r.is_err() {
            // libzmq did not take the hint: release it here.
            // SAFETY: `hint` came from Box::into_raw above and was not handed over.
            drop(unsafe { Box::from_raw(hint) });
        }
        r
    }

    /// A message that adopts `v` without copying (libzmq frees it through its release
    /// function).
    pub fn from_vec(v: Vec<u8>) -> Result<Self, zmq::Error> {
        Self::from_vec_keeping(v, ())
    }

    /// Like [`RawMsg::from_vec`], and `guard` is dropped together with the vector (a region
    /// block's release report).
    pub fn from_vec_keeping<G: Send + 'static>(
        mut v: Vec<u8>,
        guard: G,
    ) -> Result<Self, zmq::Error> {
        let (ptr, len) = (v.as_mut_ptr(), v.len());
        // SAFETY: the vector's heap buffer does not move when the vector itself is moved into
        // the keeper, and nothing else can reach it.
        unsafe { Self::adopt(ptr, len, Box::new((v, guard))) }
    }

    /// A message that adopts an external buffer without copying; the buffer is dropped (its
    /// release) when libzmq lets go of the last share.
    pub fn from_external(
        mut buffer: Box<dyn fairmq_transport::ExternalBuffer>,
    ) -> Result<Self, zmq::Error> {
        let slice = buffer.as_mut_slice();
        let (ptr, len) = (slice.as_mut_ptr(), slice.len());
        // SAFETY: the buffer is boxed, so its bytes stay where they are while the box is moved
        // into the keeper; the message is the buffer's only user from now on.
        unsafe { Self::adopt(ptr, len, Box::new(buffer)) }
    }

    /// A copy of `bytes` in a new message.
    pub fn copy_of(bytes: &[u8]) -> Result<Self, zmq::Error> {
        let mut m = Self::with_size(bytes.len())?;
        m.data_mut().copy_from_slice(bytes);
        Ok(m)
    }

    #[inline]
    fn ptr(&self) -> *mut zmq_sys::zmq_msg_t {
        self.msg.get()
    }

    /// Payload size.
    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: the zmq_msg_t is initialised.
        unsafe { zmq_sys::zmq_msg_size(self.ptr()) }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        let len = self.len();
        if len == 0 {
            return &[];
        }
        // SAFETY: zmq_msg_data points at `len` bytes that live as long as the content, which
        // this message keeps until it is closed or changed through `&mut self`.
        unsafe { std::slice::from_raw_parts(zmq_sys::zmq_msg_data(self.ptr()).cast(), len) }
    }

    /// The payload, writable. Callers make sure the content is not shared with another message
    /// (see `ZmqMessage`'s copy-on-write).
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        if len == 0 {
            return &mut [];
        }
        // SAFETY: as in `data`; `&mut self` makes this the only access through this message.
        unsafe { std::slice::from_raw_parts_mut(zmq_sys::zmq_msg_data(self.ptr()).cast(), len) }
    }

    /// A metadata property of a received message (libzmq's `zmq_msg_gets`), e.g.
    /// `Peer-Address` (the sending peer's IP address on tcp), if the transport provides it.
    pub fn property(&self, name: &str) -> Option<String> {
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: the zmq_msg_t is initialised and `name` is NUL-terminated; the returned
        // string belongs to the message's metadata, alive while the message is, and is copied
        // at once.
        let p = unsafe { zmq_sys::zmq_msg_gets(self.ptr(), name.as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string from libzmq (see above).
        Some(
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// Whether more frames of the same message follow (after a receive).
    #[inline]
    pub fn more(&self) -> bool {
        // SAFETY: the zmq_msg_t is initialised.
        unsafe { zmq_sys::zmq_msg_more(self.ptr()) == 1 }
    }

    /// A second message sharing this one's content (reference counted by libzmq; very small
    /// messages are copied by libzmq instead).
    pub fn share(&self) -> Result<Self, zmq::Error> {
        let mut copy = Self::new();
        // SAFETY: both zmq_msg_t are initialised; libzmq writes only the source's flags and its
        // atomic reference count, through the UnsafeCell.
        check(unsafe { zmq_sys::zmq_msg_copy(copy.ptr(), self.ptr()) })?;
        copy.bare = false;
        Ok(copy)
    }

    /// `zmq_msg_send` of this message on `socket`. On success the content belongs to libzmq and
    /// this message is empty; on failure it is unchanged.
    #[inline]
    pub fn send(&mut self, socket: &mut zmq::Socket, flags: i32) -> Result<(), zmq::Error> {
        // SAFETY: the socket pointer is valid while `socket` is borrowed mutably (nobody else
        // uses it meanwhile) and the message is initialised.
        let rc = unsafe { zmq_sys::zmq_msg_send(self.ptr(), socket.as_mut_ptr(), flags) };
        check(rc)?;
        self.bare = true;
        Ok(())
    }

    /// `zmq_msg_recv` into this message (its previous content is released by libzmq). On failure
    /// the message is unchanged.
    #[inline]
    pub fn recv(&mut self, socket: &mut zmq::Socket, flags: i32) -> Result<(), zmq::Error> {
        // SAFETY: as in `send`.
        let rc = unsafe { zmq_sys::zmq_msg_recv(self.ptr(), socket.as_mut_ptr(), flags) };
        // Whatever the outcome, libzmq has (re)initialised the message: closing it is right.
        self.bare = false;
        check(rc)
    }
}

/// libzmq's `ZMQ_IN_BATCH_SIZE` and `ZMQ_OUT_BATCH_SIZE` (draft options, which the vendored
/// build enables with `ZMQ_BUILD_DRAFT_API` in `.cargo/config.toml`).
const ZMQ_IN_BATCH_SIZE: c_int = 101;
const ZMQ_OUT_BATCH_SIZE: c_int = 102;

/// Which of a socket's two batch buffers an option names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// What one `read` of a stream connection (tcp, ipc) takes at most (`ZMQ_IN_BATCH_SIZE`).
    In,
    /// What one `write` of a stream connection gives at most (`ZMQ_OUT_BATCH_SIZE`).
    Out,
}

impl Batch {
    fn option(self) -> c_int {
        match self {
            Batch::In => ZMQ_IN_BATCH_SIZE,
            Batch::Out => ZMQ_OUT_BATCH_SIZE,
        }
    }
}

/// Sets the size in bytes of one of `socket`'s batch buffers, for the connections it makes or
/// accepts from now on.
pub(crate) fn set_batch_size(
    socket: &mut zmq::Socket,
    batch: Batch,
    bytes: i32,
) -> Result<(), zmq::Error> {
    // SAFETY: `socket` is a live libzmq socket; the value is one int, read during the call.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            batch.option(),
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>(),
        )
    };
    check(rc)
}

/// The size in bytes of one of `socket`'s batch buffers.
#[cfg(test)]
pub(crate) fn batch_size(socket: &mut zmq::Socket, batch: Batch) -> Result<i32, zmq::Error> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>();
    // SAFETY: `socket` is a live libzmq socket; libzmq writes at most `len` bytes to `value`
    // and the actual length to `len`, both valid for the call.
    let rc = unsafe {
        zmq_sys::zmq_getsockopt(
            socket.as_mut_ptr(),
            batch.option(),
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    check(rc).map(|()| value)
}

impl Default for RawMsg {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RawMsg {
    fn drop(&mut self) {
        if self.bare {
            // An empty message of zmq_msg_init, or emptied by libzmq's send: nothing to release.
            return;
        }
        // SAFETY: the zmq_msg_t is initialised and closed exactly once, here.
        unsafe {
            zmq_sys::zmq_msg_close(self.ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn sizes_and_bytes() {
        assert_eq!(RawMsg::new().len(), 0);
        assert!(RawMsg::new().data().is_empty());
        let mut m = RawMsg::with_size(1000).unwrap();
        assert_eq!(m.len(), 1000);
        m.data_mut().fill(7);
        assert!(m.data().iter().all(|b| *b == 7));
        let c = RawMsg::copy_of(b"abc").unwrap();
        assert_eq!(c.data(), b"abc");
        let v = RawMsg::from_vec(vec![1, 2, 3, 4]).unwrap();
        assert_eq!(v.data(), &[1, 2, 3, 4]);
    }

    struct Counted(Vec<u8>, Arc<AtomicUsize>);
    impl fairmq_transport::ExternalBuffer for Counted {
        fn as_slice(&self) -> &[u8] {
            &self.0
        }
        fn as_mut_slice(&mut self) -> &mut [u8] {
            &mut self.0
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn adopted_buffer_is_released_once_after_the_last_share() {
        let released = Arc::new(AtomicUsize::new(0));
        let m = RawMsg::from_external(Box::new(Counted(vec![9; 4096], released.clone()))).unwrap();
        let s = m.share().unwrap();
        assert_eq!(s.data().as_ptr(), m.data().as_ptr(), "shared, not copied");
        drop(m);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        assert_eq!(s.data(), &[9; 4096][..]);
        drop(s);
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_large_message_returns_its_buffer_to_the_pool_when_libzmq_releases_it() {
        // 3 MiB: the 4 MiB class, which no other test of this crate uses.
        let size = 3 << 20;
        let mut m = RawMsg::with_size(size).unwrap();
        assert_eq!(m.len(), size);
        m.data_mut()[size - 1] = 7;
        let buffer = m.data().as_ptr();
        let ctx = zmq::Context::new();
        let mut pull = ctx.socket(zmq::PULL).unwrap();
        let mut push = ctx.socket(zmq::PUSH).unwrap();
        pull.bind("inproc://pool-release").unwrap();
        push.connect("inproc://pool-release").unwrap();
        m.send(&mut push, 0).unwrap();
        let mut r = RawMsg::new();
        r.recv(&mut pull, 0).unwrap();
        assert_eq!(r.data().as_ptr(), buffer, "inproc hands the content over");
        assert_eq!(r.data()[size - 1], 7);
        // Still in use: a new message takes another buffer.
        let other = RawMsg::with_size(size).unwrap();
        assert_ne!(other.data().as_ptr(), buffer);
        drop(r);
        // Released by libzmq: the next message of the class reuses the buffer (the idle list is
        // a stack, so the buffer released last comes first).
        let again = RawMsg::with_size(size).unwrap();
        assert_eq!(again.data().as_ptr(), buffer);
    }

    #[test]
    fn failed_send_keeps_the_message() {
        let ctx = zmq::Context::new();
        let mut push = ctx.socket(zmq::PUSH).unwrap();
        // No peer: a non-blocking send cannot proceed.
        let mut m = RawMsg::copy_of(&[5; 100]).unwrap();
        assert_eq!(m.send(&mut push, zmq::DONTWAIT), Err(zmq::Error::EAGAIN));
        assert_eq!(m.data(), &[5; 100][..]);
    }

    /// A sent message is not closed again (libzmq emptied it), yet every content is released
    /// exactly once: after a send, after a failed send, and when a sent message is reused.
    #[test]
    fn contents_are_released_once_whether_sent_or_not() {
        assert!(
            RawMsg::new().bare,
            "zmq_msg_init's empty message holds nothing"
        );
        let ctx = zmq::Context::new();
        let mut pull = ctx.socket(zmq::PULL).unwrap();
        let mut push = ctx.socket(zmq::PUSH).unwrap();
        pull.bind("inproc://sent-not-closed").unwrap();
        push.connect("inproc://sent-not-closed").unwrap();
        let released = Arc::new(AtomicUsize::new(0));
        let counted = |byte| {
            RawMsg::from_external(Box::new(Counted(vec![byte; 256], released.clone()))).unwrap()
        };

        let mut m = counted(1);
        m.send(&mut push, 0).unwrap();
        assert!(m.bare && m.is_empty(), "emptied by the send");
        let mut r = RawMsg::new();
        r.recv(&mut pull, 0).unwrap();
        assert_eq!(r.data(), &[1; 256][..]);
        assert!(!r.bare, "a received message is closed when dropped");
        drop(m);
        assert_eq!(released.load(Ordering::SeqCst), 0, "the receiver holds it");
        drop(r);
        assert_eq!(released.load(Ordering::SeqCst), 1);

        // Reused after a send: a receive into it, or a new content of its own.
        let mut m = counted(2);
        m.send(&mut push, 0).unwrap();
        m.recv(&mut pull, 0).unwrap();
        assert_eq!(m.data(), &[2; 256][..]);
        assert!(!m.bare, "holds a content again");
        drop(m);
        assert_eq!(
            released.load(Ordering::SeqCst),
            2,
            "closed after the receive"
        );
        let mut m = counted(3);
        m.send(&mut push, 0).unwrap();
        m.reset_with_size(100).unwrap();
        assert!(!m.bare, "holds a content again");
        drop(m);
        let mut r = RawMsg::new();
        r.recv(&mut pull, 0).unwrap();
        drop(r);
        assert_eq!(released.load(Ordering::SeqCst), 3);

        // A failed send keeps the content, released with the message.
        let mut lone = ctx.socket(zmq::PUSH).unwrap();
        let mut m = counted(4);
        assert_eq!(m.send(&mut lone, zmq::DONTWAIT), Err(zmq::Error::EAGAIN));
        assert!(!m.bare);
        drop(m);
        assert_eq!(released.load(Ordering::SeqCst), 4);
    }
}
