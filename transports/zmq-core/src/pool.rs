//! Recycled buffers for large messages.
//!
//! libzmq allocates a new message's content with `malloc` (libzmq's header and the payload in
//! one block) on the sender's thread, and its I/O thread frees it once sent. Under glibc the
//! large sizes (from 128 KiB) are fresh mappings, unmapped again at the free; a sender at its
//! high-water mark is woken only after the I/O thread has sent half of the queue, so contents
//! are freed and made again in bursts of hundreds, and every page of every large message costs
//! a page fault and the kernel's zero-fill. Under jemalloc (the devices' allocator) a 64 KiB
//! payload plus libzmq's header rounds up to 17 pages, the 17th holding 40 bytes. Here a
//! message from 64 KiB on takes a buffer of its own from a pool of anonymous mappings instead,
//! and libzmq's release function (called on whichever thread lets go of the last share,
//! usually libzmq's I/O thread) puts it back, so the sender reuses buffers whose pages are
//! mapped, and a 64 KiB message takes 16 pages.
//!
//! Measured in one run against the same devices without the pool (`fairmq-bench-report
//! --bin-dir <with> --peer <without> --transports zeromq --sizes 65536,1048576,8388608`, glibc):
//! 1 MiB ×1.07–1.26, 8 MiB ×1.00–1.17. At 64 KiB under jemalloc, the sampler's peak RSS with
//! `--memset true` went from 80 to 72 MiB (FairMQ's 77 MiB) at the same rate.
//!
//! Buffers are grouped in classes by power of two (a 1.5 MiB message takes a 2 MiB buffer; the
//! pages beyond 1.5 MiB are never touched, so they take no memory). Each class keeps at most
//! [`IDLE_BYTES`] (and at least one buffer) idle, enough for a burst of a full queue at
//! 1 MiB; a buffer beyond that is unmapped at once. So a process keeps, per size class, up to
//! that much of its peak of messages in flight after the peak (resident only for pages that
//! were written). A new buffer is mapped zero-filled, so the bytes of a message are always
//! initialised: old bytes of an earlier message of this process, or zeros. A mapping that
//! fails (out of memory, or the process's limit of mappings) falls back to libzmq's `malloc`.

use memmap2::MmapMut;
use std::sync::Mutex;

/// The smallest message that takes a pooled buffer: 2^16 = 64 KiB. Smaller ones are kept and
/// reused by the allocator's own caches without faults, and packed more tightly than pages.
const MIN_SHIFT: u32 = 16;
/// The largest class, 2^28 = 256 MiB; larger messages are `malloc`ed by libzmq as before.
const MAX_SHIFT: u32 = 28;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;

/// Idle bytes kept per class (at least one buffer is always kept).
pub(crate) const IDLE_BYTES: usize = 512 << 20;

/// One pooled buffer: an anonymous mapping of its class's size.
pub(crate) struct PoolBuf {
    map: MmapMut,
    class: usize,
}

impl PoolBuf {
    /// The first byte of the buffer.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The buffer's bytes.
    #[cfg(test)]
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// Idle buffers of one class. They stay boxed: the box's address is the hint libzmq hands back
/// to the release function, so taking and returning a buffer allocates nothing.
#[allow(clippy::vec_box)]
type IdleList = Vec<Box<PoolBuf>>;

/// Idle buffers, one list per class.
static IDLE: [Mutex<IdleList>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];

/// The class of a message of `size` bytes, if pooled.
#[inline]
pub(crate) fn class_of(size: usize) -> Option<usize> {
    if !(1 << MIN_SHIFT..=1 << MAX_SHIFT).contains(&size) {
        return None;
    }
    let shift = size.next_power_of_two().trailing_zeros();
    Some((shift - MIN_SHIFT) as usize)
}

fn class_size(class: usize) -> usize {
    1 << (class as u32 + MIN_SHIFT)
}

/// How many idle buffers `class` keeps.
fn idle_cap(class: usize) -> usize {
    (IDLE_BYTES / class_size(class)).max(1)
}

fn idle(class: usize) -> std::sync::MutexGuard<'static, IdleList> {
    // A panic while holding the lock cannot leave the list inconsistent (push and pop only).
    IDLE[class].lock().unwrap_or_else(|p| p.into_inner())
}

/// A buffer of at least `size` bytes, from the pool or newly mapped; `None` when `size` is not
/// pooled, or the mapping failed (the caller falls back to libzmq's allocator, which reports
/// the shortage).
pub(crate) fn take(size: usize) -> Option<Box<PoolBuf>> {
    let class = class_of(size)?;
    if let Some(buf) = idle(class).pop() {
        return Some(buf);
    }
    let map = MmapMut::map_anon(class_size(class)).ok()?;
    Some(Box::new(PoolBuf { map, class }))
}

/// Returns a buffer to its class, or unmaps it when the class already keeps enough.
pub(crate) fn give_back(buf: Box<PoolBuf>) {
    let class = buf.class;
    let mut list = idle(class);
    if list.len() < idle_cap(class) {
        list.push(buf);
    } else {
        drop(list);
        drop(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_powers_of_two_within_range() {
        assert_eq!(class_of((1 << 16) - 1), None);
        assert_eq!(class_of(1 << 16), Some(0));
        assert_eq!(class_of((1 << 16) + 1), Some(1));
        assert_eq!(class_of(3 << 19), Some(5)); // 1.5 MiB -> 2 MiB
        assert_eq!(class_of(1 << 28), Some(12));
        assert_eq!(class_of((1 << 28) + 1), None);
        assert_eq!(class_size(class_of(3 << 19).unwrap()), 2 << 20);
        assert_eq!(idle_cap(class_of(1 << 16).unwrap()), 8192);
        assert_eq!(idle_cap(class_of(1 << 20).unwrap()), 512);
        assert_eq!(idle_cap(class_of(8 << 20).unwrap()), 64);
        assert_eq!(idle_cap(class_of(256 << 20).unwrap()), 2);
    }

    #[test]
    fn a_returned_buffer_is_reused_and_keeps_its_bytes() {
        // The 256 MiB class, which no other test of this crate uses (tests run in parallel in
        // one process); the buffers are only mapped, and one page of one is written.
        let size = 200 << 20;
        let class = class_of(size).unwrap();
        let mut a = take(size).expect("mapped");
        let ptr = a.as_mut_ptr();
        a.bytes_mut()[size - 1] = 42;
        give_back(a);
        let mut b = take(size).expect("from the pool");
        assert_eq!(b.as_mut_ptr(), ptr, "the idle buffer is taken again");
        assert_eq!(b.bytes_mut()[size - 1], 42);
        // Beyond the cap, a returned buffer is unmapped rather than kept.
        let more: Vec<_> = (0..idle_cap(class)).map(|_| take(size).unwrap()).collect();
        give_back(b);
        more.into_iter().for_each(give_back);
        assert_eq!(idle(class).len(), idle_cap(class));
    }
}
