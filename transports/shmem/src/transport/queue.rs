//! Descriptor queues: bounded single-producer single-consumer rings of 64-byte slots in shared
//! memory, one per connection and direction, that carry [`MetaHeader`]s between the two ends of
//! a shmem connection without libzmq and without a system call while both sides are busy.
//!
//! # Objects
//!
//! Every end of a connection creates one object `fmq_<shmId>_q_<pid>_<n>` (`O_EXCL`, the
//! session's access: 0600, or 0660 for the group of `--shm-group`,
//! `posix_fallocate`d whole) and holds an **exclusive `flock`** on it for as long as the
//! connection lives; the object holds the ring this end *produces* into (capacity 0 for an end
//! that never sends, a PULL). The other end opens it by the name it learned in the handshake
//! (see `rendezvous.rs`), consumes from it, and **unlinks the name** right away: from then on the
//! object lives only in the two mappings, so a crash of either side leaves nothing in /dev/shm.
//! Every factory also creates one *bell* object of the same format (capacity 0) whose `bell`
//! word is the futex its threads sleep on, whatever queue they wait for; it is unlinked when the
//! factory goes (a SIGKILLed factory's bell is removed with the session, see the monitor's
//! cleanup, which removes every `fmq_<shmId>_*` leftover).
//!
//! # Layout (native endianness, every offset from the object start)
//!
//! ```text
//! 0     magic u64 = QUEUE_MAGIC (stored last, with Release, once the rest is written)
//! 8     version u32 = QUEUE_VERSION      12  kind u32 (1 ring, 2 bell)
//! 16    capacity u32 (slots, 0 or a power of two)   20 creator pid u32
//! 24    size u64 (the object's total size)
//! 64    tail u64      producer: slots published (monotonic; slot i lives at i % capacity)
//! 128   head u64      consumer: slots consumed (monotonic)
//! 192   consumer_waiting u32   set by a consumer about to sleep, cleared by the producer
//! 256   producer_waiting u32   set by a producer about to sleep (ring full), cleared by the consumer
//! 320   bell u32      the futex word of a bell object (unused in a ring)
//! 4096  slots: capacity x 64 bytes
//! ```
//!
//! Each field of the control block has a cache line of its own. A slot is `parts u32, kind u32
//! (1 single, 2 multipart), MetaHeader (40 bytes, spec §5.5), buffer tag u64, padding`. A message of n parts
//! takes max(n, 1) consecutive slots; the first says n. A single-message send is kind 1, so the
//! format is self-describing (FairMQ's [quirk] of §5.5 does not apply here).
//!
//! # Protocol and invariants
//!
//! - Only the producer stores `tail`, only the consumer stores `head`; `head <= tail <=
//!   head + capacity` always. The producer writes the slots of a message, then publishes them
//!   all with one Release store of `tail` (multipart is atomic); the consumer reads `tail` with
//!   Acquire, copies the message's slots out, and releases them with one Release store of `head`.
//! - Wake-ups: a side that wants to sleep reads its factory's `bell`, sets the `*_waiting` flag
//!   of every queue it waits for (SeqCst), issues a SeqCst fence, re-checks the queues, and only
//!   then `futex_wait`s on the bell with the value it read. The other side, after its Release
//!   store, issues a SeqCst fence and loads the flag; only when it is set does it swap it to 0,
//!   increment the sleeper's bell and `futex_wake` it (a consumer wakes a waiting producer only
//!   once at most half the ring is occupied, so a full ring costs no wake-up per message; a
//!   producer whose consumer stops short of that re-checks at the end of its wait slice). Both
//!   sides spin briefly, then yield, before they arm and sleep. The two fences make the store-buffer
//!   pattern safe: either the sleeper sees the new index or the other side sees the flag. Busy
//!   sides thus cost a store, a fence and a load per message, no system call; the `loom` model
//!   (`RUSTFLAGS="--cfg loom" cargo test -p fairmq-shmem --release --lib queue`) checks that no wake-up is lost and
//!   that every message arrives whole and in order.
//! - Ownership of a descriptor's buffer moves with the index stores: before `tail` covers it,
//!   it is the producer's; after, the consumer's. The consumer stores `head` *before* it adopts
//!   the messages it copied out, so a consumer killed in between leaks them (never a double free).
//!
//! # Crash recovery
//!
//! A side learns that its peer is gone when it can take a shared `flock` on the peer's object
//! (the kernel drops the exclusive one with the peer's last descriptor, on a clean close as on
//! SIGKILL). It then frees what it had queued towards the peer (it becomes the consumer of its
//! own ring: the peer will never read again) and still delivers what the peer had published
//! towards it (complete messages only, by the invariants above); what is left of that when the
//! socket closes is freed then. Indices and counts read from the other side are never trusted:
//! a part count beyond what is published, or indices that break `head <= tail <= head +
//! capacity`, make the connection broken, not undefined behaviour.

use super::wire::{MetaHeader, META_SIZE};

/// The atomic operations the lock-free protocol uses, implemented by std's atomics (shared
/// memory) and, under `cfg(loom)`, by loom's (the model): the protocol is generic over them.
pub trait AtomicWord<T>: Send + Sync {
    /// Atomic load.
    fn load(&self, o: Ordering) -> T;
    /// Atomic store.
    fn store(&self, v: T, o: Ordering);
    /// Atomic swap.
    fn swap(&self, v: T, o: Ordering) -> T;
    /// Atomic add, returning the previous value.
    fn fetch_add(&self, v: T, o: Ordering) -> T;
}

macro_rules! atomic_word {
    ($atomic:ty, $t:ty) => {
        impl AtomicWord<$t> for $atomic {
            fn load(&self, o: Ordering) -> $t {
                <$atomic>::load(self, o)
            }
            fn store(&self, v: $t, o: Ordering) {
                <$atomic>::store(self, v, o)
            }
            fn swap(&self, v: $t, o: Ordering) -> $t {
                <$atomic>::swap(self, v, o)
            }
            fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                <$atomic>::fetch_add(self, v, o)
            }
        }
    };
}
atomic_word!(std::sync::atomic::AtomicU64, u64);
atomic_word!(std::sync::atomic::AtomicU32, u32);
#[cfg(loom)]
atomic_word!(loom::sync::atomic::AtomicU64, u64);
#[cfg(loom)]
atomic_word!(loom::sync::atomic::AtomicU32, u32);

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Identifies a queue object ("FMQ_QUE1").
pub const QUEUE_MAGIC: u64 = 0x3145_5551_5f51_4d46;
/// Layout version of queue objects.
pub const QUEUE_VERSION: u32 = 1;
/// Bytes of one slot.
pub const SLOT_SIZE: usize = 64;
/// Offset of the first slot.
pub const SLOTS_OFFSET: usize = 4096;
/// The most slots a ring may have (4 MiB of slots).
pub const MAX_CAPACITY: u32 = 1 << 16;

/// Slot kind of a single-message send.
pub const KIND_SINGLE: u32 = 1;
/// Slot kind of a multipart send.
pub const KIND_MULTI: u32 = 2;

/// One slot's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// In the first slot of a message: its number of parts.
    pub parts: u32,
    /// [`KIND_SINGLE`] or [`KIND_MULTI`].
    pub kind: u32,
    /// One part's descriptor.
    pub meta: MetaHeader,
    /// The buffer's tag (see `message.rs`), 0 if none.
    pub tag: u64,
}

impl Slot {
    /// Encodes into 64 bytes.
    pub fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        b[0..4].copy_from_slice(&self.parts.to_ne_bytes());
        b[4..8].copy_from_slice(&self.kind.to_ne_bytes());
        self.meta.encode(&mut b[8..8 + META_SIZE]);
        b[48..56].copy_from_slice(&self.tag.to_ne_bytes());
        b
    }

    /// Decodes 64 bytes.
    pub fn decode(b: &[u8; SLOT_SIZE]) -> Slot {
        Slot {
            parts: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            kind: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            meta: MetaHeader::decode(&b[8..8 + META_SIZE]),
            tag: u64::from_ne_bytes(b[48..56].try_into().unwrap_or([0; 8])),
        }
    }
}

/// An atomic on a cache line of its own.
#[repr(C, align(64))]
pub struct Line<T>(pub T);

/// The control block at offset 64 of a queue object (`W64`/`W32`: std's atomics in shared
/// memory, loom's in the model).
#[repr(C)]
pub struct ControlOf<W64, W32> {
    /// Slots published by the producer.
    pub tail: Line<W64>,
    /// Slots consumed by the consumer.
    pub head: Line<W64>,
    /// The consumer sleeps (or is about to).
    pub consumer_waiting: Line<W32>,
    /// The producer sleeps (or is about to).
    pub producer_waiting: Line<W32>,
    /// A bell object's futex word.
    pub bell: Line<W32>,
}

/// The control block in shared memory.
pub type Control = ControlOf<AtomicU64, AtomicU32>;

/// The memory of one ring: its control block and its slots, in a mapping or in process memory.
pub trait RingMem: Send + Sync {
    /// 64-bit atomic of the control block.
    type W64: AtomicWord<u64>;
    /// 32-bit atomic of the control block.
    type W32: AtomicWord<u32>;
    /// The control block.
    fn control(&self) -> &ControlOf<Self::W64, Self::W32>;
    /// A sequentially consistent fence of this memory's atomics.
    fn fence(&self);
    /// Number of slots (0 or a power of two).
    fn capacity(&self) -> u64;
    /// Writes slot `i % capacity`.
    ///
    /// # Safety
    /// Only the producer calls it, for a slot between `tail` and `head + capacity`.
    unsafe fn write(&self, i: u64, bytes: &[u8; SLOT_SIZE]);
    /// Reads slot `i % capacity`.
    ///
    /// # Safety
    /// Only the consumer calls it, for a slot between `head` and `tail`.
    unsafe fn read(&self, i: u64) -> [u8; SLOT_SIZE];
}

/// Something to wake: the other side's bell.
pub trait Bell {
    /// Increments the bell word and wakes its sleepers.
    fn ring(&self);
}

/// Why a pop failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopError {
    /// Nothing published.
    Empty,
    /// The other side broke the invariants (named).
    Corrupt(String),
}

/// The producing end of a ring.
pub struct Producer<M> {
    mem: M,
    tail: u64,
    head_cache: u64,
}

impl<M: RingMem> Producer<M> {
    /// The producer of `mem`, continuing at its published tail.
    pub fn attach(mem: M) -> Self {
        let c = mem.control();
        let tail = c.tail.0.load(Ordering::Relaxed);
        let head_cache = c.head.0.load(Ordering::Acquire);
        Producer {
            mem,
            tail,
            head_cache,
        }
    }

    /// The ring's memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Whether `n` slots are free now (refreshes the view of the consumer's head if needed).
    pub fn has_room(&mut self, n: u64) -> bool {
        let cap = self.mem.capacity();
        if self.tail + n <= self.head_cache + cap {
            return true;
        }
        self.head_cache = self.mem.control().head.0.load(Ordering::Acquire);
        self.tail + n <= self.head_cache + cap
    }

    /// Publishes `slots` as one message if they fit; wakes the consumer (`peer`) if it sleeps.
    pub fn push(&mut self, slots: &[[u8; SLOT_SIZE]], peer: &dyn Bell) -> bool {
        let n = slots.len() as u64;
        if n == 0 || !self.has_room(n) {
            return false;
        }
        for (k, s) in slots.iter().enumerate() {
            // SAFETY: has_room: slots tail..tail+n are free, and only we write them.
            unsafe { self.mem.write(self.tail + k as u64, s) };
        }
        self.tail += n;
        let c = self.mem.control();
        c.tail.0.store(self.tail, Ordering::Release);
        self.mem.fence();
        if c.consumer_waiting.0.load(Ordering::Relaxed) != 0
            && c.consumer_waiting.0.swap(0, Ordering::SeqCst) != 0
        {
            peer.ring();
        }
        true
    }

    /// Announces that the producer is about to sleep for room; the caller re-checks
    /// [`Producer::has_room`] before it sleeps.
    pub fn arm(&self) {
        self.mem
            .control()
            .producer_waiting
            .0
            .store(1, Ordering::SeqCst);
        self.mem.fence();
    }
}

/// The consuming end of a ring.
pub struct Consumer<M> {
    mem: M,
    head: u64,
}

impl<M: RingMem> Consumer<M> {
    /// The consumer of `mem`, continuing at its released head.
    pub fn attach(mem: M) -> Self {
        let head = mem.control().head.0.load(Ordering::Acquire);
        Consumer { mem, head }
    }

    /// The ring's memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Whether nothing is published.
    pub fn is_empty(&self) -> bool {
        self.mem.capacity() == 0 || self.mem.control().tail.0.load(Ordering::Acquire) == self.head
    }

    /// Copies the next message's slots into `out` (cleared first) and releases them; wakes the
    /// producer (`peer`) if it sleeps for room.
    pub fn pop(&mut self, out: &mut Vec<Slot>, peer: &dyn Bell) -> Result<(), PopError> {
        out.clear();
        let cap = self.mem.capacity();
        if cap == 0 {
            return Err(PopError::Empty);
        }
        let c = self.mem.control();
        let tail = c.tail.0.load(Ordering::Acquire);
        if tail == self.head {
            return Err(PopError::Empty);
        }
        let avail = tail.wrapping_sub(self.head);
        if avail > cap {
            return Err(PopError::Corrupt(format!(
                "the producer's index {tail} is more than the capacity {cap} ahead of ours {}",
                self.head
            )));
        }
        // SAFETY: head < tail: the slot is published and not released.
        let first = Slot::decode(&unsafe { self.mem.read(self.head) });
        let n = u64::from(first.parts.max(1));
        if n > avail {
            return Err(PopError::Corrupt(format!(
                "a message announces {} parts but only {avail} slots are published",
                first.parts
            )));
        }
        out.push(first);
        for k in 1..n {
            // SAFETY: head + k < tail, as checked above.
            out.push(Slot::decode(&unsafe { self.mem.read(self.head + k) }));
        }
        self.head += n;
        c.head.0.store(self.head, Ordering::Release);
        self.mem.fence();
        // Hysteresis: a producer waiting for room is woken once half the ring is free, not at
        // every slot, so that a full ring does not cost a wake-up per message.
        if c.producer_waiting.0.load(Ordering::Relaxed) != 0
            && tail - self.head <= cap / 2
            && c.producer_waiting.0.swap(0, Ordering::SeqCst) != 0
        {
            peer.ring();
        }
        Ok(())
    }

    /// Announces that the consumer is about to sleep for data; the caller re-checks
    /// [`Consumer::is_empty`] before it sleeps.
    pub fn arm(&self) {
        if self.mem.capacity() == 0 {
            return;
        }
        self.mem
            .control()
            .consumer_waiting
            .0
            .store(1, Ordering::SeqCst);
        self.mem.fence();
    }
}

#[cfg(loom)]
type HeapW64 = loom::sync::atomic::AtomicU64;
#[cfg(loom)]
type HeapW32 = loom::sync::atomic::AtomicU32;
#[cfg(not(loom))]
type HeapW64 = AtomicU64;
#[cfg(not(loom))]
type HeapW32 = AtomicU32;

/// A ring in process memory (tests and the loom model).
pub struct HeapRing {
    control: ControlOf<HeapW64, HeapW32>,
    #[cfg(loom)]
    slots: Vec<loom::cell::UnsafeCell<[u8; SLOT_SIZE]>>,
    #[cfg(not(loom))]
    slots: Vec<std::cell::UnsafeCell<[u8; SLOT_SIZE]>>,
}

// SAFETY: slots are only accessed under the SPSC protocol (see RingMem's safety contracts).
unsafe impl Sync for HeapRing {}
// SAFETY: as above.
unsafe impl Send for HeapRing {}

impl HeapRing {
    /// A ring of `capacity` (a power of two) slots.
    pub fn new(capacity: u32) -> HeapRing {
        assert!(capacity == 0 || capacity.is_power_of_two());
        HeapRing {
            control: ControlOf {
                tail: Line(HeapW64::new(0)),
                head: Line(HeapW64::new(0)),
                consumer_waiting: Line(HeapW32::new(0)),
                producer_waiting: Line(HeapW32::new(0)),
                bell: Line(HeapW32::new(0)),
            },
            slots: (0..capacity)
                .map(|_| {
                    #[cfg(loom)]
                    let cell = loom::cell::UnsafeCell::new([0u8; SLOT_SIZE]);
                    #[cfg(not(loom))]
                    let cell = std::cell::UnsafeCell::new([0u8; SLOT_SIZE]);
                    cell
                })
                .collect(),
        }
    }
}

impl RingMem for HeapRing {
    type W64 = HeapW64;
    type W32 = HeapW32;
    fn control(&self) -> &ControlOf<HeapW64, HeapW32> {
        &self.control
    }
    fn fence(&self) {
        #[cfg(loom)]
        loom::sync::atomic::fence(Ordering::SeqCst);
        #[cfg(not(loom))]
        std::sync::atomic::fence(Ordering::SeqCst);
    }
    fn capacity(&self) -> u64 {
        self.slots.len() as u64
    }
    unsafe fn write(&self, i: u64, bytes: &[u8; SLOT_SIZE]) {
        let cell = &self.slots[(i % self.capacity()) as usize];
        #[cfg(loom)]
        // SAFETY: the caller owns the slot (RingMem::write).
        cell.with_mut(|p| unsafe { *p = *bytes });
        #[cfg(not(loom))]
        // SAFETY: as above.
        unsafe {
            *cell.get() = *bytes
        };
    }
    unsafe fn read(&self, i: u64) -> [u8; SLOT_SIZE] {
        let cell = &self.slots[(i % self.capacity()) as usize];
        #[cfg(loom)]
        // SAFETY: the caller owns the slot (RingMem::read).
        return cell.with(|p| unsafe { *p });
        #[cfg(not(loom))]
        // SAFETY: as above.
        unsafe {
            *cell.get()
        }
    }
}

impl<T: RingMem> RingMem for std::sync::Arc<T> {
    type W64 = T::W64;
    type W32 = T::W32;
    fn control(&self) -> &ControlOf<T::W64, T::W32> {
        (**self).control()
    }
    fn fence(&self) {
        (**self).fence()
    }
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    unsafe fn write(&self, i: u64, bytes: &[u8; SLOT_SIZE]) {
        // SAFETY: forwarded contract.
        unsafe { (**self).write(i, bytes) }
    }
    unsafe fn read(&self, i: u64) -> [u8; SLOT_SIZE] {
        // SAFETY: forwarded contract.
        unsafe { (**self).read(i) }
    }
}

pub use shm::{QueueObject, RingKind};

mod shm {
    use super::*;
    use crate::ids::ShmId;
    use fairmq_transport::TransportError;
    use memmap2::MmapRaw;
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    /// What a queue object is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum RingKind {
        /// One end of a connection: its outgoing ring.
        Ring = 1,
        /// A factory's bell.
        Bell = 2,
    }

    /// A mapped queue object (see the module documentation).
    pub struct QueueObject {
        name: String,
        file: File,
        map: MmapRaw,
        capacity: u32,
        created: bool,
    }

    // SAFETY: the mapping is shared memory accessed through atomics and the SPSC protocol.
    unsafe impl Send for QueueObject {}
    // SAFETY: as above.
    unsafe impl Sync for QueueObject {}

    fn c_name(name: &str) -> std::ffi::CString {
        std::ffi::CString::new(format!("/{name}")).unwrap_or_default()
    }

    fn os_err(what: String, e: std::io::Error) -> TransportError {
        TransportError::Other(format!("{what}: {e}"))
    }

    static NEXT: AtomicU64 = AtomicU64::new(0);

    impl QueueObject {
        /// Creates a new object of the session, `fmq_<shmId>_q_<pid>_<n>`, with an exclusive
        /// flock held while it is open.
        pub fn create(
            shm_id: &ShmId,
            kind: RingKind,
            capacity: u32,
        ) -> Result<QueueObject, TransportError> {
            assert!(capacity == 0 || capacity.is_power_of_two());
            assert!(capacity <= MAX_CAPACITY);
            let size = SLOTS_OFFSET + capacity as usize * SLOT_SIZE;
            loop {
                let name = format!(
                    "{}q_{}_{}",
                    shm_id.prefix(),
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                let cname = c_name(&name);
                // SAFETY: cname is a valid NUL-terminated string.
                let fd = unsafe {
                    libc::shm_open(
                        cname.as_ptr(),
                        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                        0o600 as libc::mode_t,
                    )
                };
                if fd < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EEXIST) {
                        continue; // a leftover of a dead process with our pid
                    }
                    return Err(os_err(format!("could not create queue object {name}"), e));
                }
                // SAFETY: fd is fresh and ours.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let unlink = |e: TransportError| {
                    // SAFETY: valid NUL-terminated name.
                    unsafe { libc::shm_unlink(cname.as_ptr()) };
                    e
                };
                crate::segment::flock_fd(fd.as_raw_fd(), libc::LOCK_EX)
                    .map_err(|e| unlink(os_err(format!("could not lock {name}"), e)))?;
                // The session's access (0600, or 0660 and the group of --shm-group), as every
                // other object of the session.
                let access =
                    crate::segment::Access::Session.resolve(&crate::segment::Location::shm(&name));
                crate::segment::apply_access(fd.as_raw_fd(), &name, access).map_err(|e| {
                    unlink(TransportError::Other(format!(
                        "could not set the access of {name}: {e}"
                    )))
                })?;
                // SAFETY: plain syscall on our fd.
                let rc = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, size as libc::off_t) };
                if rc != 0 {
                    return Err(unlink(os_err(
                        format!("could not reserve {size} bytes for queue object {name} in /dev/shm (is it full?)"),
                        std::io::Error::from_raw_os_error(rc),
                    )));
                }
                let file = File::from(fd);
                let map = MmapRaw::map_raw(&file)
                    .map_err(|e| unlink(os_err(format!("could not map {name}"), e)))?;
                let obj = QueueObject {
                    name,
                    file,
                    map,
                    capacity,
                    created: true,
                };
                let p = obj.map.as_mut_ptr();
                // SAFETY: the mapping is `size` >= SLOTS_OFFSET bytes, page aligned; nobody else
                // knows the name yet.
                unsafe {
                    (p.add(8) as *mut u32).write(QUEUE_VERSION);
                    (p.add(12) as *mut u32).write(kind as u32);
                    (p.add(16) as *mut u32).write(capacity);
                    (p.add(20) as *mut u32).write(std::process::id());
                    (p.add(24) as *mut u64).write(size as u64);
                }
                obj.magic().store(QUEUE_MAGIC, Ordering::Release);
                return Ok(obj);
            }
        }

        /// Opens the object `name` of this session (a peer's) and checks its header.
        pub fn open(
            shm_id: &ShmId,
            name: &str,
            kind: RingKind,
        ) -> Result<QueueObject, TransportError> {
            let bad = |why: String| {
                TransportError::Other(format!("queue object '{name}' refused: {why}"))
            };
            let rest = name
                .strip_prefix(&format!("{}q_", shm_id.prefix()))
                .ok_or_else(|| bad(format!("not a queue of session {shm_id}")))?;
            if !rest.chars().all(|c| c.is_ascii_digit() || c == '_') {
                return Err(bad("malformed name".into()));
            }
            let cname = c_name(name);
            // SAFETY: valid NUL-terminated name.
            let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
            if fd < 0 {
                return Err(os_err(
                    format!("could not open queue object {name}"),
                    std::io::Error::last_os_error(),
                ));
            }
            // SAFETY: fresh fd.
            let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let len = file
                .metadata()
                .map_err(|e| os_err(format!("could not stat {name}"), e))?
                .len() as usize;
            if len < SLOTS_OFFSET {
                return Err(bad(format!("{len} bytes, less than a header")));
            }
            let map =
                MmapRaw::map_raw(&file).map_err(|e| os_err(format!("could not map {name}"), e))?;
            let p = map.as_mut_ptr();
            let mut obj = QueueObject {
                name: name.to_string(),
                file,
                map,
                capacity: 0,
                created: false,
            };
            if obj.magic().load(Ordering::Acquire) != QUEUE_MAGIC {
                return Err(bad("bad magic (not a queue, or not initialised)".into()));
            }
            // SAFETY: len >= SLOTS_OFFSET; the header is immutable after the magic is stored.
            let (version, k, cap, size) = unsafe {
                (
                    (p.add(8) as *const u32).read(),
                    (p.add(12) as *const u32).read(),
                    (p.add(16) as *const u32).read(),
                    (p.add(24) as *const u64).read(),
                )
            };
            if version != QUEUE_VERSION {
                return Err(bad(format!(
                    "layout version {version}, this build reads {QUEUE_VERSION}"
                )));
            }
            if k != kind as u32 {
                return Err(bad(format!("kind {k}, expected {}", kind as u32)));
            }
            if (cap != 0 && !cap.is_power_of_two())
                || cap > MAX_CAPACITY
                || size != (SLOTS_OFFSET + cap as usize * SLOT_SIZE) as u64
                || size > len as u64
            {
                return Err(bad(format!(
                    "capacity {cap} and size {size} do not fit an object of {len} bytes"
                )));
            }
            obj.capacity = cap;
            Ok(obj)
        }

        fn magic(&self) -> &std::sync::atomic::AtomicU64 {
            // SAFETY: offset 0 is 8-aligned inside the mapping; shared memory is accessed atomically.
            unsafe { &*(self.map.as_mut_ptr() as *const std::sync::atomic::AtomicU64) }
        }

        /// The object's name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Whether the object's name is still in /dev/shm.
        pub fn name_exists(&self) -> bool {
            std::path::Path::new("/dev/shm").join(&self.name).exists()
        }

        /// Removes the name (the object lives on in its mappings). Errors are ignored: the
        /// peer may have unlinked it already.
        pub fn unlink(&self) {
            let cname = c_name(&self.name);
            // SAFETY: valid NUL-terminated name.
            unsafe { libc::shm_unlink(cname.as_ptr()) };
        }

        /// Whether the creator still holds the object (its exclusive flock). Only meaningful
        /// for an object this process opened, not created.
        pub fn creator_alive(&self) -> bool {
            if self.created {
                return true;
            }
            match crate::segment::flock_fd(self.file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) {
                Ok(()) => {
                    let _ = crate::segment::flock_fd(self.file.as_raw_fd(), libc::LOCK_UN);
                    false
                }
                Err(_) => true,
            }
        }

        /// The bell word.
        pub fn bell_word(&self) -> &std::sync::atomic::AtomicU32 {
            &self.control().bell.0
        }

        /// Sleeps on the bell until it differs from `seen`, a wake-up, or `timeout`.
        pub fn wait_bell(&self, seen: u32, timeout: Duration) {
            crate::sync::futex_wait(self.bell_word(), seen, timeout);
        }
    }

    impl Bell for QueueObject {
        fn ring(&self) {
            self.bell_word().fetch_add(1, Ordering::Release);
            crate::sync::futex_wake_all(self.bell_word());
        }
    }

    impl RingMem for QueueObject {
        type W64 = AtomicU64;
        type W32 = AtomicU32;
        fn fence(&self) {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        fn control(&self) -> &Control {
            // SAFETY: offset 64 is 64-aligned and Control fits below SLOTS_OFFSET.
            unsafe { &*(self.map.as_mut_ptr().add(64) as *const Control) }
        }
        fn capacity(&self) -> u64 {
            u64::from(self.capacity)
        }
        unsafe fn write(&self, i: u64, bytes: &[u8; SLOT_SIZE]) {
            let off = SLOTS_OFFSET + (i % self.capacity()) as usize * SLOT_SIZE;
            // SAFETY: off + 64 <= size (checked at open/create); the caller owns the slot.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr().add(off), 64)
            };
        }
        unsafe fn read(&self, i: u64) -> [u8; SLOT_SIZE] {
            let off = SLOTS_OFFSET + (i % self.capacity()) as usize * SLOT_SIZE;
            let mut b = [0u8; SLOT_SIZE];
            // SAFETY: as in write.
            unsafe {
                std::ptr::copy_nonoverlapping(self.map.as_mut_ptr().add(off), b.as_mut_ptr(), 64)
            };
            b
        }
    }

    const _: () = assert!(64 + std::mem::size_of::<Control>() <= SLOTS_OFFSET);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::Arc;

    #[derive(Default)]
    struct Count(Cell<u32>);
    impl Bell for Count {
        fn ring(&self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn slot(parts: u32, size: u64) -> [u8; SLOT_SIZE] {
        Slot {
            parts,
            kind: KIND_MULTI,
            meta: MetaHeader {
                size,
                ..MetaHeader::EMPTY
            },
            tag: 0,
        }
        .encode()
    }

    #[test]
    fn slot_round_trip() {
        let s = Slot {
            parts: 3,
            kind: KIND_SINGLE,
            meta: MetaHeader {
                size: 9,
                handle: 4096,
                ..MetaHeader::EMPTY
            },
            tag: 77,
        };
        assert_eq!(Slot::decode(&s.encode()), s);
    }

    #[test]
    fn bounded_fifo_multipart_and_wakeups_only_when_armed() {
        let ring = Arc::new(HeapRing::new(4));
        let mut p = Producer::attach(ring.clone());
        let mut c = Consumer::attach(ring.clone());
        let bell = Count::default();
        assert!(c.is_empty());
        assert!(p.push(&[slot(1, 1)], &bell));
        assert!(p.push(&[slot(3, 2), slot(0, 3), slot(0, 4)], &bell));
        assert!(!p.push(&[slot(1, 5)], &bell), "full");
        assert_eq!(bell.0.get(), 0, "nobody sleeps: no wake-up");
        let mut out = Vec::new();
        c.pop(&mut out, &bell).unwrap();
        assert_eq!(out.len(), 1);
        p.arm();
        c.pop(&mut out, &bell).unwrap();
        assert_eq!(
            out.iter().map(|s| s.meta.size).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(bell.0.get(), 1, "the armed producer is woken once");
        c.pop(&mut out, &bell).unwrap_err();
        c.arm();
        assert!(p.push(&[slot(1, 6)], &bell));
        assert_eq!(bell.0.get(), 2);
        assert!(p.push(&[slot(1, 7)], &bell));
        assert_eq!(bell.0.get(), 2, "flag cleared by the first wake-up");
    }

    #[test]
    fn lying_part_count_is_an_error_not_ub() {
        let ring = Arc::new(HeapRing::new(4));
        let mut p = Producer::attach(ring.clone());
        let mut c = Consumer::attach(ring.clone());
        let bell = Count::default();
        assert!(p.push(&[slot(9, 1)], &bell));
        assert!(matches!(
            c.pop(&mut Vec::new(), &bell),
            Err(PopError::Corrupt(_))
        ));
        ring.control().tail.0.store(100, Ordering::Release);
        assert!(matches!(
            c.pop(&mut Vec::new(), &bell),
            Err(PopError::Corrupt(_))
        ));
    }

    #[test]
    fn threads_move_a_million_slots_in_order() {
        let ring = Arc::new(HeapRing::new(64));
        let mut p = Producer::attach(ring.clone());
        let mut c = Consumer::attach(ring.clone());
        struct NoBell;
        impl Bell for NoBell {
            fn ring(&self) {}
        }
        let n = 200_000u64;
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < n {
                let parts = (i % 3 + 1) as u32;
                let slots: Vec<_> = (0..parts as u64).map(|k| slot(parts, i + k)).collect();
                if p.push(&slots, &NoBell) {
                    i += parts as u64;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let mut next = 0;
        let mut out = Vec::new();
        while next < n {
            match c.pop(&mut out, &NoBell) {
                Ok(()) => {
                    assert_eq!(out[0].parts as usize, out.len());
                    for s in &out {
                        assert_eq!(s.meta.size, next);
                        next += 1;
                    }
                }
                Err(PopError::Empty) => std::hint::spin_loop(),
                Err(e) => panic!("{e:?}"),
            }
        }
        t.join().unwrap();
    }
}

/// The loom model of the protocol: `RUSTFLAGS="--cfg loom" cargo test -p fairmq-shmem --lib
/// queue --release`.
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::AtomicU32;
    use loom::sync::Arc;

    /// A bell in process memory; a sleeper spins (yielding) until the word changes, so a lost
    /// wake-up is a livelock that loom reports.
    struct LoomBell(AtomicU32);
    impl Bell for LoomBell {
        fn ring(&self) {
            self.0.fetch_add(1, Ordering::Release);
        }
    }
    impl LoomBell {
        fn sleep_until_changed(&self, seen: u32) {
            while self.0.load(Ordering::Acquire) == seen {
                loom::thread::yield_now();
            }
        }
    }

    fn slot(parts: u32, v: u64) -> [u8; SLOT_SIZE] {
        Slot {
            parts,
            kind: KIND_MULTI,
            meta: MetaHeader {
                size: v,
                ..MetaHeader::EMPTY
            },
            tag: 0,
        }
        .encode()
    }

    #[test]
    fn no_lost_wakeup_and_whole_messages_in_order() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let ring = std::sync::Arc::new(HeapRing::new(2));
            let consumer_bell = Arc::new(LoomBell(AtomicU32::new(0)));
            let producer_bell = Arc::new(LoomBell(AtomicU32::new(0)));
            let (pb, cb) = (producer_bell.clone(), consumer_bell.clone());
            let mut p = Producer::attach(ring.clone());
            // Messages of 1 and 2 parts into a ring of 2 slots: the producer must wait.
            let t = loom::thread::spawn(move || {
                for (first, parts) in [(0u64, 1u32), (1, 2), (3, 1)] {
                    let slots: Vec<_> = (0..parts as u64).map(|k| slot(parts, first + k)).collect();
                    loop {
                        let seen = pb.0.load(Ordering::Acquire);
                        if p.push(&slots, &*cb) {
                            break;
                        }
                        p.arm();
                        if p.has_room(parts as u64) {
                            continue;
                        }
                        pb.sleep_until_changed(seen);
                    }
                }
            });
            let mut c = Consumer::attach(ring);
            let mut next = 0;
            let mut out = Vec::new();
            while next < 4 {
                let seen = consumer_bell.0.load(Ordering::Acquire);
                match c.pop(&mut out, &*producer_bell) {
                    Ok(()) => {
                        assert_eq!(out[0].parts as usize, out.len());
                        for s in &out {
                            assert_eq!(s.meta.size, next);
                            next += 1;
                        }
                    }
                    Err(PopError::Empty) => {
                        c.arm();
                        if c.is_empty() {
                            consumer_bell.sleep_until_changed(seen);
                        }
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            t.join().unwrap();
        });
    }
}
