//! The robust, offset-based allocator that lives inside a managed segment.
//!
//! Any process that maps the segment can allocate and any can free (the sender allocates, the
//! last holder frees). Everything in the heap refers to other places by offset from the start of
//! the object, so each process may map it at another address.
//!
//! # Layout
//!
//! ```text
//! heap header (256 bytes): magic, policy, bounds, index root, counters, committed mark,
//!                          commit count, futex word, waiters, robust process-shared pthread mutex
//! arena:  [block][block]...[block][sentinel]
//! block:  +0  prev_size u64   size of the physically previous block (boundary tag)
//!         +8  size_flags u64  0xB10C magic (bits 48..63) | size (multiple of 16) | flags
//!                             (FREE=1, FREEING=2, SENTINEL=4)
//!         +16 user data (allocated; 16-aligned)    or    left u64, right u64, max u64 (free)
//! ```
//!
//! The block chain (each block's `size_flags`, walked forward from the arena start to the
//! sentinel) is the **ground truth**. The free-block index is a treap (a balanced binary search
//! tree with hash-of-offset priorities, expected O(log n) per operation) threaded through the
//! free blocks themselves and augmented with each subtree's largest block:
//!
//! * `rbtree_best_fit` orders the treap by (size, offset) and takes the smallest free block that
//!   fits (lowest address among equals): best fit, like boost's red-black-tree best fit.
//! * `simple_seq_fit` orders it by offset and descends along the subtree maxima to the
//!   lowest-addressed block that fits: first fit in address order, like boost's sequential fit,
//!   but in O(log n) instead of a linear scan.
//!
//! Requests are rounded up to a multiple of 16 plus a 16-byte header (at least 48 bytes); user
//! data is aligned to `max(align, 16)` by splitting off a leading free block when needed.
//! Freeing coalesces with both neighbours through the boundary tags.
//!
//! # Robustness
//!
//! All mutations happen under a robust process-shared mutex in the heap header. A process killed
//! at any instruction — also inside `allocate` or `free` — leaves the mutex to the next locker
//! with `EOWNERDEAD`, and every intermediate state is repairable:
//!
//! * Each change to the block chain is committed by **one** aligned 8-byte store (a split's new
//!   headers are written inside the still-free block first, then the block's own `size_flags` is
//!   replaced; a coalescing free replaces the surviving block's `size_flags`). Before and after
//!   that store the chain is consistent; only derived data (boundary tags, index, counters) may be
//!   stale.
//! * `free` first marks the block `FREEING` (a single store): if it dies after that, the repair
//!   completes the free, so a killed receiver does not leak the buffer it was releasing.
//! * On `EOWNERDEAD` the next locker walks the chain (bounds-checked), completes `FREEING`
//!   blocks, coalesces neighbours, rewrites every boundary tag, rebuilds the index and the
//!   counters from scratch, then marks the mutex consistent. A repair that is itself killed is
//!   simply redone by the next locker.
//!
//! At worst a killed process leaks the block it had just allocated (and, of course, the blocks it
//! still held) until the session is cleaned. Memory corruption by a user (an overrun into a block
//! header) is detected by the bounds and magic checks and reported as [`Error::HeapCorrupted`];
//! no shared-memory content can make this code read or write outside the mapping.
//!
//! A waiting allocator ([`Allocator::allocate_blocking`]) sleeps on a futex word that every free
//! bumps and wakes, in slices of at most 100 ms so that it notices its interrupt flag.
//!
//! # Memory committed as it is used
//!
//! A managed segment is a sparse object (see [`crate::segment`]): creating the default 2 GiB
//! segment reserves nothing but what its first allocations need, so an idle device costs no
//! RAM. The heap header's **committed mark** `C` (an offset from the object start, a multiple
//! of 4096 or the heap's end) says what is reserved in the filesystem (`posix_fallocate`):
//!
//! ```text
//! [0, C)                         reserved: object header, heap header, every block in use
//! [C, tail)                      not reserved: lies inside the last (free) block, never touched
//! [tail, heap end)               reserved at creation: the page holding the end marker
//! ```
//!
//! Creation reserves the first [`COMMIT_CHUNK`] and the end marker's page
//! ([`HeapCommit::OnDemand`]); the management segment and segments created with
//! `--shm-zero-segment`/`--shm-mlock-segment` reserve everything at once ([`HeapCommit::Full`],
//! `C` = heap end). **Invariant**: every allocated block lies below `C`, and so do the first
//! [`MIN_BLOCK`] bytes (header and index words) of every free block. The allocator's own
//! metadata writes (a split's new header, boundary tags, index words) only ever land there, and
//! so do the users' writes into the blocks they get, the buffer cache's header (the first
//! allocation) and its links (inside cached blocks). Before an allocation hands out a block
//! that reaches beyond `C`, or splits off a remainder whose header would lie beyond it, the
//! allocating process, under the heap lock and before changing anything else, reserves
//! `[C, C')` where `C'` rounds the end needed up to a [`COMMIT_CHUNK`] (or exactly to the page
//! when the chunk does not fit), and only then publishes `C'` with one store. Frees never give
//! memory back to the filesystem, so reusing freed memory never reserves again.
//!
//! A full filesystem (`ENOSPC`) fails the allocation with [`Error::CommitFailed`], naming the
//! request, the bytes needed, the bytes free and `--shm-segment-size`, before the heap was
//! touched; the heap stays as it was, and smaller requests that fit below `C` still succeed.
//! Readers ([`Allocator::ptr`]) refuse ranges beyond `C`, so no descriptor can make a process
//! touch an unreserved page. **Crash**: a process killed after its `posix_fallocate` but before
//! publishing `C'` leaves reserved pages above `C`; they are unused, and the next process that
//! needs them reserves them again (a no-op for pages already there) and publishes the mark. A
//! process killed inside `posix_fallocate` reserved nothing or part of the range, with the same
//! outcome. The mark is never ahead of the reservation, which is all the invariant needs.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ids::ShmId;
use crate::segment::{
    Access, CreateOptions, Location, ObjectKind, OpenOptions, SharedObject, DEFAULT_SIZE_OPTION,
    HEADER_SIZE,
};
use crate::sync::{futex_wait, futex_wake_all, store_tick, RawRobustMutex, RobustGuard};

/// The allocation algorithm of a managed segment (`--shm-allocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum AllocationPolicy {
    /// `rbtree_best_fit` (default): the smallest free block that fits.
    #[default]
    RbTreeBestFit = 0,
    /// `simple_seq_fit`: the lowest-addressed free block that fits.
    SimpleSeqFit = 1,
}

impl AllocationPolicy {
    /// The FairMQ name.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationPolicy::RbTreeBestFit => "rbtree_best_fit",
            AllocationPolicy::SimpleSeqFit => "simple_seq_fit",
        }
    }

    /// The policy with FairMQ's enum value `v` (0 = best fit, 1 = first fit).
    pub fn from_u32(v: u32) -> Option<AllocationPolicy> {
        match v {
            0 => Some(AllocationPolicy::RbTreeBestFit),
            1 => Some(AllocationPolicy::SimpleSeqFit),
            _ => None,
        }
    }
}

impl fmt::Display for AllocationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AllocationPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<AllocationPolicy> {
        match s {
            "rbtree_best_fit" => Ok(AllocationPolicy::RbTreeBestFit),
            "simple_seq_fit" => Ok(AllocationPolicy::SimpleSeqFit),
            other => Err(Error::InvalidAlgorithm(other.to_owned())),
        }
    }
}

/// Minimum alignment of user data (and granularity of block sizes).
pub const MIN_ALIGN: u64 = 16;
/// Per-block overhead: the boundary tag and the size word.
pub const BLOCK_HEADER: u64 = 16;
/// Smallest block (header + the three index words of a free block, rounded to 16).
pub const MIN_BLOCK: u64 = 48;
/// Bytes reserved for the heap header at the start of a heap.
pub const HEAP_HEADER_SIZE: u64 = 256;
/// Longest a blocking allocation sleeps before re-checking its interrupt flag.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Granularity in which a heap created with [`HeapCommit::OnDemand`] reserves memory.
pub const COMMIT_CHUNK: u64 = 2 << 20;
/// The page size the committed mark is aligned to.
const PAGE: u64 = 4096;

/// How a heap's memory is reserved in its object's filesystem (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapCommit {
    /// The object was reserved whole at creation.
    Full,
    /// The object was created sparse: reserve as the allocator hands ranges out.
    OnDemand,
}

const HEAP_MAGIC: u64 = u64::from_le_bytes(*b"FMQHEAP1");
const BLOCK_MAGIC: u64 = 0xB10C << 48;
const MAGIC_MASK: u64 = 0xFFFF << 48;
const SIZE_MASK: u64 = ((1u64 << 48) - 1) & !0xF;
const FLAG_MASK: u64 = 0xF;
const F_FREE: u64 = 1;
const F_FREEING: u64 = 2;
const F_SENTINEL: u64 = 4;
const NIL: u64 = 0;
const MAX_DEPTH: u32 = 1024;

#[repr(C)]
struct HeapHeader {
    magic: AtomicU64,
    policy: AtomicU32,
    corrupted: AtomicU32,
    heap_len: AtomicU64,
    arena_start: AtomicU64,
    arena_end: AtomicU64,
    root: AtomicU64,
    free_bytes: AtomicU64,
    free_blocks: AtomicU64,
    used_blocks: AtomicU64,
    repairs: AtomicU64,
    allocations: AtomicU64,
    frees: AtomicU64,
    /// Offset below which the object is reserved (the committed mark, see the module docs).
    committed: AtomicU64,
    /// How many reservations (posix_fallocate calls) have extended the committed mark.
    commits: AtomicU64,
    free_gen: AtomicU32,
    waiters: AtomicU32,
    mutex: RawRobustMutex,
}

const _: () = assert!(std::mem::size_of::<HeapHeader>() as u64 <= HEAP_HEADER_SIZE);

/// Internal: the heap's metadata is inconsistent (detected by a bounds or magic check).
#[derive(Debug)]
struct Corrupt(String);

type CResult<T> = std::result::Result<T, Corrupt>;

fn corrupt<T>(msg: impl Into<String>) -> CResult<T> {
    Err(Corrupt(msg.into()))
}

fn enc(size: u64, flags: u64) -> u64 {
    BLOCK_MAGIC | size | flags
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Summary of a heap, as checked by [`Allocator::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeapStats {
    /// Bytes managed by the allocator (heap header and sentinel included).
    pub size: u64,
    /// Bytes in free blocks (their headers included).
    pub free: u64,
    /// Bytes in allocated blocks (their headers included).
    pub used: u64,
    /// Heap header, sentinel and alignment padding: `free + used + overhead == size`.
    pub overhead: u64,
    /// Number of free blocks.
    pub free_blocks: u64,
    /// Number of allocated blocks.
    pub used_blocks: u64,
    /// Size of the largest free block.
    pub largest_free: u64,
    /// How often the heap was repaired after a process died holding its lock.
    pub repairs: u64,
    /// Bytes of the heap's object reserved in its filesystem ([`Allocator::committed_bytes`]).
    pub committed: u64,
}

/// One block of the heap, from [`Allocator::blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// Offset of the user data from the object start (what [`Allocator::allocate`] returns).
    pub offset: u64,
    /// Block size, header included.
    pub block_size: u64,
    /// Whether the block is free.
    pub free: bool,
}

/// A process-local handle on a heap inside a shared object (see the module documentation).
///
/// Offsets taken and returned are relative to the start of the object. The handle keeps the
/// object mapped.
pub struct Allocator {
    obj: Arc<SharedObject>,
    hdr_off: u64,
    heap_len: u64,
    arena_start: u64,
    arena_end: u64,
    policy: AllocationPolicy,
}

impl fmt::Debug for Allocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocator")
            .field("object", &self.obj.name())
            .field("policy", &self.policy)
            .field("size", &self.heap_len)
            .field("free", &self.free_memory())
            .finish()
    }
}

fn arena_bounds(hdr_off: u64, heap_len: u64) -> (u64, u64) {
    let start = hdr_off + HEAP_HEADER_SIZE;
    let end = (hdr_off + heap_len - BLOCK_HEADER) & !(MIN_ALIGN - 1);
    (start, end)
}

/// Where the always-reserved last page of a heap whose arena ends at `arena_end` starts.
fn tail_start(arena_end: u64) -> u64 {
    arena_end & !(PAGE - 1)
}

/// Why reserving memory for an allocation failed.
struct CommitFailure {
    /// Bytes that would have had to be reserved.
    needed: u64,
    source: std::io::Error,
}

/// What an allocation attempt under the lock found.
enum Placed {
    /// Allocated; the user-data offset.
    At(u64),
    /// No free block is large enough.
    NoFit,
    /// A block fits, but its memory could not be reserved.
    NoSpace(CommitFailure),
}

impl Allocator {
    /// Formats a fresh heap of `heap_len` bytes at `hdr_off` in `obj`. Must run before the object
    /// is published (e.g. inside [`SharedObject::create_with`]). With [`HeapCommit::OnDemand`]
    /// (a sparse object) it first reserves the pages it writes: the first [`COMMIT_CHUNK`] and
    /// the end marker's page; a full filesystem is an [`Error::InsufficientSpace`].
    pub(crate) fn init_in(
        obj: &SharedObject,
        hdr_off: u64,
        heap_len: u64,
        policy: AllocationPolicy,
        commit: HeapCommit,
    ) -> Result<()> {
        if !hdr_off.is_multiple_of(64)
            || hdr_off.checked_add(heap_len).is_none_or(|e| e > obj.size())
            || heap_len < HEAP_HEADER_SIZE + MIN_BLOCK + 2 * BLOCK_HEADER
        {
            return Err(Error::InvalidArgument(format!(
                "a heap of {heap_len} bytes at offset {hdr_off} does not fit into '{}' ({} bytes)",
                obj.name(),
                obj.size()
            )));
        }
        if obj.is_read_only() {
            return Err(Error::ReadOnly {
                name: obj.name().to_owned(),
            });
        }
        let (start, end) = arena_bounds(hdr_off, heap_len);
        let heap_end = hdr_off + heap_len;
        let committed = match commit {
            HeapCommit::Full => heap_end,
            HeapCommit::OnDemand => {
                let first = align_up(start + MIN_BLOCK, COMMIT_CHUNK);
                let mark = if first >= tail_start(end) {
                    heap_end
                } else {
                    first
                };
                let reserve = obj
                    .commit(0, mark)
                    .and_then(|()| obj.commit(tail_start(end), heap_end));
                if let Err(e) = reserve {
                    let dir = obj.location().dir();
                    if !crate::segment::is_no_space(&e) {
                        return Err(Error::io("posix_fallocate", obj.name(), e));
                    }
                    return Err(Error::InsufficientSpace {
                        name: obj.name().to_owned(),
                        needed: if mark >= heap_end {
                            heap_end
                        } else {
                            mark + heap_end - tail_start(end)
                        },
                        free: crate::segment::free_space(&dir).unwrap_or(0),
                        dir: dir.display().to_string(),
                        option: DEFAULT_SIZE_OPTION.to_owned(),
                    });
                }
                mark
            }
        };
        // SAFETY: HeapHeader consists of atomics and a RawRobustMutex (UnsafeCell); every bit
        // pattern is valid and all access is atomic or through pthread functions.
        let h: &HeapHeader = unsafe { obj.ref_at(hdr_off) };
        // SAFETY: the object is not yet visible to any other process or thread.
        unsafe { h.mutex.init() }.map_err(|e| Error::io("pthread_mutex_init", obj.name(), e))?;
        let r = Ordering::Relaxed;
        h.policy.store(policy as u32, r);
        h.corrupted.store(0, r);
        h.heap_len.store(heap_len, r);
        h.arena_start.store(start, r);
        h.arena_end.store(end, r);
        let size = end - start;
        obj.atomic_u64(start).store(0, r);
        obj.atomic_u64(start + 8).store(enc(size, F_FREE), r);
        obj.atomic_u64(start + 16).store(NIL, r);
        obj.atomic_u64(start + 24).store(NIL, r);
        obj.atomic_u64(start + 32).store(size, r);
        obj.atomic_u64(end).store(size, r);
        obj.atomic_u64(end + 8).store(BLOCK_MAGIC | F_SENTINEL, r);
        h.root.store(start, r);
        h.free_bytes.store(size, r);
        h.free_blocks.store(1, r);
        h.used_blocks.store(0, r);
        h.repairs.store(0, r);
        h.allocations.store(0, r);
        h.frees.store(0, r);
        h.committed.store(committed, r);
        h.commits.store(0, r);
        h.free_gen.store(0, r);
        h.waiters.store(0, r);
        h.magic.store(HEAP_MAGIC, Ordering::Release);
        Ok(())
    }

    /// Attaches to the heap at `hdr_off` in `obj`, validating its header.
    pub(crate) fn attach(obj: Arc<SharedObject>, hdr_off: u64) -> Result<Allocator> {
        let bad = |reason: String| Error::CorruptObject {
            name: obj.name().to_owned(),
            reason,
        };
        if !hdr_off.is_multiple_of(64) || hdr_off + HEAP_HEADER_SIZE > obj.size() {
            return Err(bad(format!(
                "no room for a heap header at offset {hdr_off}"
            )));
        }
        // SAFETY: see init_in; in bounds and aligned (checked above).
        let h: &HeapHeader = unsafe { obj.ref_at(hdr_off) };
        let magic = h.magic.load(Ordering::Acquire);
        if magic != HEAP_MAGIC {
            return Err(bad(format!(
                "no allocator header (magic {magic:#018x}) at offset {hdr_off}"
            )));
        }
        let policy = h.policy.load(Ordering::Relaxed);
        let policy = AllocationPolicy::from_u32(policy)
            .ok_or_else(|| bad(format!("unknown allocation algorithm {policy}")))?;
        let heap_len = h.heap_len.load(Ordering::Relaxed);
        if hdr_off.checked_add(heap_len).is_none_or(|e| e > obj.size())
            || heap_len < HEAP_HEADER_SIZE + MIN_BLOCK + 2 * BLOCK_HEADER
        {
            return Err(bad(format!(
                "heap length {heap_len} does not fit the object"
            )));
        }
        let (start, end) = arena_bounds(hdr_off, heap_len);
        if h.arena_start.load(Ordering::Relaxed) != start
            || h.arena_end.load(Ordering::Relaxed) != end
        {
            return Err(bad("inconsistent heap bounds".into()));
        }
        let committed = h.committed.load(Ordering::Acquire);
        if committed > hdr_off + heap_len || committed < start + MIN_BLOCK {
            return Err(bad(format!(
                "committed mark {committed} outside of the heap"
            )));
        }
        Ok(Allocator {
            obj,
            hdr_off,
            heap_len,
            arena_start: start,
            arena_end: end,
            policy,
        })
    }

    fn hdr(&self) -> &HeapHeader {
        // SAFETY: validated in attach (in bounds, aligned); see init_in for the bit patterns. The
        // mapping lives as long as self.obj.
        unsafe { self.obj.ref_at(self.hdr_off) }
    }

    /// The object holding the heap.
    pub fn object(&self) -> &Arc<SharedObject> {
        &self.obj
    }

    /// The allocation algorithm.
    pub fn policy(&self) -> AllocationPolicy {
        self.policy
    }

    /// Bytes managed by the allocator (heap header and sentinel included).
    pub fn size(&self) -> u64 {
        self.heap_len
    }

    /// Bytes in free blocks (block headers included). Read without the lock: exact whenever no
    /// operation is in progress.
    pub fn free_memory(&self) -> u64 {
        self.hdr().free_bytes.load(Ordering::Relaxed)
    }

    /// Number of allocations ever made in this heap.
    pub fn allocation_count(&self) -> u64 {
        self.hdr().allocations.load(Ordering::Relaxed)
    }

    /// Number of live allocations (allocated blocks), read without the lock: exact whenever no
    /// operation is in progress. In a message segment every live message holds one (the
    /// monitor's `msgs:` column).
    pub fn live_allocations(&self) -> u64 {
        self.hdr().used_blocks.load(Ordering::Relaxed)
    }

    /// How often the heap was repaired after a process died while holding its lock.
    pub fn repairs(&self) -> u64 {
        self.hdr().repairs.load(Ordering::Relaxed)
    }

    /// The committed mark: offset below which the object is reserved in its filesystem.
    fn committed_mark(&self) -> u64 {
        self.hdr().committed.load(Ordering::Acquire)
    }

    fn heap_end(&self) -> u64 {
        self.hdr_off + self.heap_len
    }

    /// Bytes of the object that the heap has reserved in its filesystem so far (object header
    /// and end-marker page included); the whole object when it was reserved at creation.
    /// Memory is reserved as allocations first reach it and stays reserved after frees.
    pub fn committed_bytes(&self) -> u64 {
        let mark = self.committed_mark();
        if mark >= self.heap_end() {
            self.obj.size()
        } else {
            mark + (self.heap_end() - tail_start(self.arena_end))
        }
    }

    /// How many reservations (`posix_fallocate` calls) have extended the committed memory since
    /// the heap was created.
    pub fn commit_count(&self) -> u64 {
        self.hdr().commits.load(Ordering::Relaxed)
    }

    /// Under the lock: makes sure `[0, end)` is reserved, extending the committed mark (see the
    /// module documentation). Nothing else is touched, so a failure leaves the heap unchanged.
    fn commit_to(&self, end: u64) -> std::result::Result<(), CommitFailure> {
        let mark = self.committed_mark();
        if end <= mark {
            return Ok(());
        }
        let heap_end = self.heap_end();
        let tail = tail_start(self.arena_end);
        let round = |v: u64| if v >= tail { heap_end } else { v };
        let exact = round(align_up(end, PAGE).min(heap_end));
        let chunked = round(align_up(end, COMMIT_CHUNK).min(heap_end));
        let target = match self.obj.commit(mark, chunked) {
            Ok(()) => chunked,
            // The chunk does not fit, but perhaps what this allocation needs does.
            Err(e) if crate::segment::is_no_space(&e) && exact < chunked => {
                match self.obj.commit(mark, exact) {
                    Ok(()) => exact,
                    Err(source) => {
                        return Err(CommitFailure {
                            needed: exact - mark,
                            source,
                        })
                    }
                }
            }
            Err(source) => {
                return Err(CommitFailure {
                    needed: exact - mark,
                    source,
                })
            }
        };
        // PUBLISH: from here on the range is usable. A crash before this store leaves reserved
        // pages above the mark, which the next commit reserves again (a no-op) and publishes.
        Self::hst(&self.hdr().committed, target);
        Self::hadd(&self.hdr().commits, 1);
        Ok(())
    }

    fn commit_error(&self, requested: u64, f: CommitFailure) -> Error {
        let dir = self.obj.location().dir();
        Error::CommitFailed {
            name: self.obj.name().to_owned(),
            requested,
            needed: f.needed,
            free: crate::segment::free_space(&dir).unwrap_or(0),
            dir: dir.display().to_string(),
            committed: self.committed_bytes(),
            segment_size: self.obj.size(),
            option: DEFAULT_SIZE_OPTION,
            source: f.source,
        }
    }

    /// Reserves the whole heap now (before zeroing or mlocking it). Fails with
    /// [`Error::CommitFailed`] (requested 0) if the filesystem cannot hold it.
    pub fn commit_all(&self) -> Result<()> {
        if self.committed_mark() >= self.heap_end() {
            return Ok(());
        }
        let _guard = self.lock()?;
        self.commit_to(self.heap_end())
            .map_err(|f| self.commit_error(0, f))
    }

    /// Number of blocking allocations currently waiting for memory (may over-count waiters that
    /// were killed while waiting; that only costs spurious wake-ups).
    pub fn waiters(&self) -> u32 {
        self.hdr().waiters.load(Ordering::Relaxed)
    }

    /// Bytes a block for `size` bytes with the default alignment occupies (header included,
    /// rounded to 16, at least [`MIN_BLOCK`]).
    pub fn block_size_for(size: u64) -> u64 {
        align_up(size.saturating_add(BLOCK_HEADER), MIN_ALIGN).max(MIN_BLOCK)
    }

    fn lock(&self) -> Result<RobustGuard<'_>> {
        if self.obj.is_read_only() {
            return Err(Error::ReadOnly {
                name: self.obj.name().to_owned(),
            });
        }
        let h = self.hdr();
        // SAFETY: the mutex was initialised by init_in before the heap magic was published, and
        // attach validated the magic.
        let mut guard = unsafe { h.mutex.lock() }.map_err(|e| Error::Lock {
            name: self.obj.name().to_owned(),
            reason: e.to_string(),
        })?;
        if guard.owner_died() {
            tracing::warn!(
                "a process died while holding the allocator lock of '{}'; repairing the heap",
                self.obj.name()
            );
            let result = self.repair_locked("owner died");
            guard.mark_consistent();
            result?;
        }
        if h.corrupted.load(Ordering::Relaxed) != 0 {
            return Err(Error::HeapCorrupted {
                name: self.obj.name().to_owned(),
                reason: "an earlier repair failed".into(),
            });
        }
        Ok(guard)
    }

    // ---- raw word access (bounds-checked; every store is counted by the crash hook) ----

    fn word(&self, off: u64) -> CResult<&AtomicU64> {
        if off < self.arena_start
            || off + 8 > self.arena_end + BLOCK_HEADER
            || !off.is_multiple_of(8)
        {
            return corrupt(format!("offset {off} outside of the heap"));
        }
        Ok(self.obj.atomic_u64(off))
    }

    fn ld(&self, off: u64) -> CResult<u64> {
        Ok(self.word(off)?.load(Ordering::Acquire))
    }

    fn st(&self, off: u64, v: u64) -> CResult<()> {
        let w = self.word(off)?;
        store_tick();
        w.store(v, Ordering::Release);
        Ok(())
    }

    fn hst(field: &AtomicU64, v: u64) {
        store_tick();
        field.store(v, Ordering::Release);
    }

    fn hadd(field: &AtomicU64, delta: i64) {
        store_tick();
        if delta >= 0 {
            field.fetch_add(delta as u64, Ordering::AcqRel);
        } else {
            field.fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
        }
    }

    /// Size and flags of the block at `b`, validated.
    fn block(&self, b: u64) -> CResult<(u64, u64)> {
        if !b.is_multiple_of(MIN_ALIGN) || b < self.arena_start || b > self.arena_end {
            return corrupt(format!("block offset {b} outside of the arena"));
        }
        let w = self.ld(b + 8)?;
        if w & MAGIC_MASK != BLOCK_MAGIC {
            return corrupt(format!("bad block header {w:#018x} at offset {b}"));
        }
        let (size, flags) = (w & SIZE_MASK, w & FLAG_MASK);
        if b == self.arena_end {
            if flags != F_SENTINEL || size != 0 {
                return corrupt("the heap's end marker is overwritten");
            }
            return Ok((0, flags));
        }
        if flags & F_SENTINEL != 0
            || flags & !(F_FREE | F_FREEING) != 0
            || size < MIN_BLOCK
            || size > self.arena_end - b
        {
            return corrupt(format!("bad block header {w:#018x} at offset {b}"));
        }
        Ok((size, flags))
    }

    // ---- the free-block index: a treap over the free blocks ----

    fn root(&self) -> u64 {
        self.hdr().root.load(Ordering::Acquire)
    }

    fn set_root(&self, v: u64) {
        if self.root() != v {
            Self::hst(&self.hdr().root, v);
        }
    }

    fn left(&self, n: u64) -> CResult<u64> {
        self.ld(n + 16)
    }

    fn right(&self, n: u64) -> CResult<u64> {
        self.ld(n + 24)
    }

    fn maxv(&self, n: u64) -> CResult<u64> {
        self.ld(n + 32)
    }

    fn set_left(&self, n: u64, v: u64) -> CResult<()> {
        if self.left(n)? != v {
            self.st(n + 16, v)?;
        }
        Ok(())
    }

    fn set_right(&self, n: u64, v: u64) -> CResult<()> {
        if self.right(n)? != v {
            self.st(n + 24, v)?;
        }
        Ok(())
    }

    fn node_size(&self, n: u64) -> CResult<u64> {
        let (size, flags) = self.block(n)?;
        if flags != F_FREE {
            return corrupt(format!(
                "the free index refers to block {n}, which is not free"
            ));
        }
        Ok(size)
    }

    fn key(&self, n: u64) -> CResult<(u64, u64)> {
        Ok((self.node_size(n)?, n))
    }

    fn less(&self, a: (u64, u64), b: (u64, u64)) -> bool {
        match self.policy {
            AllocationPolicy::RbTreeBestFit => a < b,
            AllocationPolicy::SimpleSeqFit => a.1 < b.1,
        }
    }

    fn prio(n: u64) -> u64 {
        splitmix64(n)
    }

    /// Recomputes the subtree maximum of `n`.
    fn fix(&self, n: u64) -> CResult<()> {
        let mut m = self.node_size(n)?;
        for child in [self.left(n)?, self.right(n)?] {
            if child != NIL {
                m = m.max(self.maxv(child)?);
            }
        }
        if self.maxv(n)? != m {
            self.st(n + 32, m)?;
        }
        Ok(())
    }

    /// Splits `t` into (keys < key, keys >= key).
    fn split(&self, t: u64, key: (u64, u64), depth: u32) -> CResult<(u64, u64)> {
        if t == NIL {
            return Ok((NIL, NIL));
        }
        if depth > MAX_DEPTH {
            return corrupt("the free index is too deep (cycle?)");
        }
        if self.less(self.key(t)?, key) {
            let (l, r) = self.split(self.right(t)?, key, depth + 1)?;
            self.set_right(t, l)?;
            self.fix(t)?;
            Ok((t, r))
        } else {
            let (l, r) = self.split(self.left(t)?, key, depth + 1)?;
            self.set_left(t, r)?;
            self.fix(t)?;
            Ok((l, t))
        }
    }

    /// Merges `a` and `b` where every key of `a` is smaller than every key of `b`.
    fn merge(&self, a: u64, b: u64, depth: u32) -> CResult<u64> {
        if a == NIL {
            return Ok(b);
        }
        if b == NIL {
            return Ok(a);
        }
        if depth > MAX_DEPTH {
            return corrupt("the free index is too deep (cycle?)");
        }
        if Self::prio(a) > Self::prio(b) {
            let m = self.merge(self.right(a)?, b, depth + 1)?;
            self.set_right(a, m)?;
            self.fix(a)?;
            Ok(a)
        } else {
            let m = self.merge(a, self.left(b)?, depth + 1)?;
            self.set_left(b, m)?;
            self.fix(b)?;
            Ok(b)
        }
    }

    fn tree_insert(&self, n: u64) -> CResult<()> {
        let size = self.node_size(n)?;
        self.st(n + 16, NIL)?;
        self.st(n + 24, NIL)?;
        self.st(n + 32, size)?;
        let (l, r) = self.split(self.root(), (size, n), 0)?;
        let t = self.merge(l, n, 0)?;
        let t = self.merge(t, r, 0)?;
        self.set_root(t);
        Ok(())
    }

    fn tree_remove(&self, n: u64) -> CResult<()> {
        let key = self.key(n)?;
        let (l, r) = self.split(self.root(), key, 0)?;
        let (m, r2) = self.split(r, (key.0, key.1 + 1), 0)?;
        if m != n || self.left(m)? != NIL || self.right(m)? != NIL {
            return corrupt(format!("free block {n} is missing from the free index"));
        }
        let t = self.merge(l, r2, 0)?;
        self.set_root(t);
        Ok(())
    }

    /// The free block to allocate `need` bytes from, per policy; NIL if none fits.
    fn tree_find(&self, need: u64) -> CResult<u64> {
        let mut cur = self.root();
        if cur == NIL || self.maxv(cur)? < need {
            return Ok(NIL);
        }
        let mut depth = 0;
        match self.policy {
            AllocationPolicy::RbTreeBestFit => {
                let mut best = NIL;
                while cur != NIL {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return corrupt("the free index is too deep (cycle?)");
                    }
                    if self.node_size(cur)? >= need {
                        best = cur;
                        cur = self.left(cur)?;
                    } else {
                        cur = self.right(cur)?;
                    }
                }
                Ok(best)
            }
            AllocationPolicy::SimpleSeqFit => loop {
                depth += 1;
                if depth > MAX_DEPTH {
                    return corrupt("the free index is too deep (cycle?)");
                }
                let l = self.left(cur)?;
                if l != NIL && self.maxv(l)? >= need {
                    cur = l;
                    continue;
                }
                if self.node_size(cur)? >= need {
                    return Ok(cur);
                }
                let r = self.right(cur)?;
                if r != NIL && self.maxv(r)? >= need {
                    cur = r;
                    continue;
                }
                return corrupt("the free index's size maxima are inconsistent");
            },
        }
    }

    // ---- allocation ----

    /// (block size, effective alignment, bytes to search for)
    fn request(&self, size: u64, align: u64) -> Result<(u64, u64, u64)> {
        let align = if align == 0 { MIN_ALIGN } else { align };
        if !align.is_power_of_two() {
            return Err(Error::InvalidAlignment(align));
        }
        let align = align.max(MIN_ALIGN);
        let too_large = || Error::TooLarge {
            name: self.obj.name().to_owned(),
            requested: size,
            segment_size: self.obj.size(),
        };
        let req = size
            .checked_add(BLOCK_HEADER + MIN_ALIGN - 1)
            .ok_or_else(too_large)?
            & !(MIN_ALIGN - 1);
        let req = req.max(MIN_BLOCK);
        let need = if align == MIN_ALIGN {
            req
        } else {
            req.checked_add(align + MIN_BLOCK).ok_or_else(too_large)?
        };
        if need > self.arena_end - self.arena_start {
            return Err(too_large());
        }
        Ok((req, align, need))
    }

    /// Allocates `size` bytes with the user data aligned to `max(align, 16)` (`align` 0 means
    /// 16). Returns the offset of the user data from the start of the object. Fails immediately
    /// with [`Error::OutOfMemory`] if no free block fits, or [`Error::TooLarge`] if the request
    /// can never fit.
    pub fn allocate(&self, size: u64, align: u64) -> Result<u64> {
        self.allocate_inner(size, align, false).map_err(|(e, _)| e)
    }

    /// Like [`Allocator::allocate`], but waits for memory to be freed (by any process) until
    /// `timeout` passes ([`Error::Timeout`]; `None` waits forever) or `interrupted` is set
    /// ([`Error::Interrupted`], noticed within 100 ms, or at once after
    /// [`Allocator::wake_waiters`]).
    pub fn allocate_blocking(
        &self,
        size: u64,
        align: u64,
        timeout: Option<Duration>,
        interrupted: &AtomicBool,
    ) -> Result<u64> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let h = self.hdr();
        loop {
            if interrupted.load(Ordering::Acquire) {
                return Err(Error::Interrupted {
                    name: self.obj.name().to_owned(),
                    requested: size,
                });
            }
            match self.allocate_inner(size, align, true) {
                Ok(off) => return Ok(off),
                Err((Error::OutOfMemory { free, .. }, Some(gen))) => {
                    let now = Instant::now();
                    let slice = match deadline {
                        Some(d) if now >= d => {
                            self.leave_waiters();
                            return Err(Error::Timeout {
                                name: self.obj.name().to_owned(),
                                requested: size,
                                free,
                            });
                        }
                        Some(d) => (d - now).min(WAIT_SLICE),
                        None => WAIT_SLICE,
                    };
                    futex_wait(&h.free_gen, gen, slice);
                    self.leave_waiters();
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn leave_waiters(&self) {
        let _ = self
            .hdr()
            .waiters
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |w| w.checked_sub(1));
    }

    /// The offset that the first allocation of a fresh heap returns (with alignment 16): a
    /// place that every process can find without a lock.
    pub fn first_block_offset(&self) -> u64 {
        self.arena_start + BLOCK_HEADER
    }

    /// The counter that every free (and [`Allocator::wake_waiters`]) bumps; read it before an
    /// attempt, then [`Allocator::wait_for_free`] with it.
    pub fn free_generation(&self) -> u32 {
        self.hdr().free_gen.load(Ordering::Acquire)
    }

    /// Waits, registered as a waiter, until the free counter differs from `seen` or `timeout`
    /// passes. For callers that keep memory of their own in front of this heap (and signal
    /// returns to it with [`Allocator::wake_waiters`] while [`Allocator::waiters`] is non-zero).
    pub fn wait_for_free(&self, seen: u32, timeout: Duration) {
        let h = self.hdr();
        h.waiters.fetch_add(1, Ordering::AcqRel);
        if h.free_gen.load(Ordering::Acquire) == seen {
            futex_wait(&h.free_gen, seen, timeout);
        }
        self.leave_waiters();
    }

    /// Wakes every blocking allocation of this heap (in all processes) so that they re-check
    /// their interrupt flags and free memory at once.
    pub fn wake_waiters(&self) {
        let h = self.hdr();
        if !self.obj.is_read_only() {
            h.free_gen.fetch_add(1, Ordering::AcqRel);
        }
        futex_wake_all(&h.free_gen);
    }

    /// On out-of-memory with `wait`, registers as a waiter and returns the futex value to wait on.
    fn allocate_inner(
        &self,
        size: u64,
        align: u64,
        wait: bool,
    ) -> std::result::Result<u64, (Error, Option<u32>)> {
        let (req, align, need) = self.request(size, align).map_err(|e| (e, None))?;
        let _guard = self.lock().map_err(|e| (e, None))?;
        let h = self.hdr();
        for _attempt in 0..2 {
            match self.alloc_locked(req, align, need) {
                Ok(Placed::At(off)) => return Ok(off),
                Ok(Placed::NoSpace(f)) => return Err((self.commit_error(size, f), None)),
                Ok(Placed::NoFit) => {
                    let free = h.free_bytes.load(Ordering::Relaxed);
                    let gen = wait.then(|| {
                        store_tick();
                        h.waiters.fetch_add(1, Ordering::AcqRel);
                        h.free_gen.load(Ordering::Acquire)
                    });
                    return Err((
                        Error::OutOfMemory {
                            name: self.obj.name().to_owned(),
                            requested: size,
                            align,
                            free,
                        },
                        gen,
                    ));
                }
                Err((c, committed)) => {
                    self.repair_locked(&c.0).map_err(|e| (e, None))?;
                    if let Some(off) = committed {
                        return Ok(off);
                    }
                }
            }
        }
        Err((
            Error::HeapCorrupted {
                name: self.obj.name().to_owned(),
                reason: "the free index stays inconsistent after a repair".into(),
            },
            None,
        ))
    }

    /// Under the lock. `Err((_, Some(off)))`: the allocation was committed but derived state
    /// could not be updated (repair, then return `off`).
    fn alloc_locked(
        &self,
        req: u64,
        align: u64,
        need: u64,
    ) -> std::result::Result<Placed, (Corrupt, Option<u64>)> {
        let pre = |c| (c, None);
        let b = self.tree_find(need).map_err(pre)?;
        if b == NIL {
            return Ok(Placed::NoFit);
        }
        let (s, flags) = self.block(b).map_err(pre)?;
        if flags != F_FREE || s < need {
            return Err((
                Corrupt(format!("the free index returned unsuitable block {b}")),
                None,
            ));
        }
        let data = b + BLOCK_HEADER;
        let mut gap = 0;
        if align > MIN_ALIGN {
            gap = align_up(data, align) - data;
            while gap != 0 && gap < MIN_BLOCK {
                gap += align;
            }
        }
        let a = b + gap;
        let rest = s - gap - req;
        let (asize, remainder) = if rest >= MIN_BLOCK {
            (req, Some(a + req))
        } else {
            (s - gap, None)
        };
        let after = b + s;
        // Reserve what this allocation will touch before changing anything: the allocated block
        // and the header and index words of the remainder (the block after b is in use or the
        // end marker, so its header is reserved already).
        let touched = remainder.map_or(after, |r| r + MIN_BLOCK);
        if let Err(f) = self.commit_to(touched) {
            return Ok(Placed::NoSpace(f));
        }
        self.tree_remove(b).map_err(pre)?;
        // Prepare: new headers inside the (still free) block b. Invisible to a chain walk.
        if let Some(r) = remainder {
            self.st(r, asize).map_err(pre)?;
            self.st(r + 8, enc(rest, F_FREE)).map_err(pre)?;
        }
        if gap > 0 {
            self.st(a, gap).map_err(pre)?;
            self.st(a + 8, enc(asize, 0)).map_err(pre)?;
            // COMMIT: b shrinks to the leading gap; a (and the remainder) appear.
            self.st(b + 8, enc(gap, F_FREE)).map_err(pre)?;
        } else {
            // COMMIT: b becomes the allocated block (and the remainder appears).
            self.st(b + 8, enc(asize, 0)).map_err(pre)?;
        }
        let off = a + BLOCK_HEADER;
        let post = |c| (c, Some(off));
        // Derived state.
        self.st(after, if remainder.is_some() { rest } else { asize })
            .map_err(post)?;
        if gap > 0 {
            self.tree_insert(b).map_err(post)?;
        }
        if let Some(r) = remainder {
            self.tree_insert(r).map_err(post)?;
        }
        let h = self.hdr();
        Self::hadd(&h.free_bytes, -(asize as i64));
        let new_free = i64::from(gap > 0) + i64::from(remainder.is_some()) - 1;
        Self::hadd(&h.free_blocks, new_free);
        Self::hadd(&h.used_blocks, 1);
        Self::hadd(&h.allocations, 1);
        Ok(Placed::At(off))
    }

    /// Validates that `offset` is the user-data offset of a live allocation; returns the block
    /// offset and size.
    fn live_block(&self, offset: u64) -> Result<(u64, u64)> {
        let invalid = |reason| Error::InvalidFree {
            name: self.obj.name().to_owned(),
            offset,
            reason,
        };
        let b = offset.wrapping_sub(BLOCK_HEADER);
        if !offset.is_multiple_of(MIN_ALIGN) || b < self.arena_start || b >= self.arena_end {
            return Err(invalid("not an offset of user data in this heap"));
        }
        let (s, flags) = self
            .block(b)
            .map_err(|_| invalid("there is no block header before this offset"))?;
        if flags & F_FREE != 0 {
            return Err(invalid("double free: the block is already free"));
        }
        if flags & F_FREEING != 0 {
            return Err(invalid("double free: the block is already being freed"));
        }
        if self.ld(b + s).ok() != Some(s) {
            return Err(invalid("not the start of an allocated block"));
        }
        Ok((b, s))
    }

    /// Checks, without taking the lock, that `offset` is the user-data offset of a live
    /// allocation with at least `len` usable bytes: inside the arena and below the committed
    /// mark, 16-aligned, right behind a block header (magic, size within the arena) whose
    /// block is allocated (neither free nor being freed) and whose boundary tag matches. For
    /// offsets that arrive from outside (received descriptors): a forged offset fails here
    /// instead of being read or freed as a block. A snapshot: a block freed concurrently may
    /// still pass, which is why the transport also checks a tag of its own in the buffer.
    pub fn check_live(&self, offset: u64, len: u64) -> Result<()> {
        let invalid = |reason| Error::NotAllocated {
            name: self.obj.name().to_owned(),
            offset,
            len,
            reason,
        };
        let b = offset.wrapping_sub(BLOCK_HEADER);
        if !offset.is_multiple_of(MIN_ALIGN) || b < self.arena_start || b >= self.arena_end {
            return Err(invalid("not an offset of user data in this heap"));
        }
        let mark = self.committed_mark().min(self.arena_end);
        if offset > mark {
            return Err(invalid("beyond the memory the heap has handed out"));
        }
        let (s, flags) = self
            .block(b)
            .map_err(|_| invalid("no block starts at this offset"))?;
        if flags != 0 {
            return Err(invalid("the block is free"));
        }
        if b + s > mark || self.ld(b + s).ok() != Some(s) {
            return Err(invalid("no block starts at this offset"));
        }
        if s - BLOCK_HEADER < len {
            return Err(invalid("the block is smaller than the length given"));
        }
        Ok(())
    }

    /// Frees the allocation whose user data starts at `offset` (from any process). Invalid or
    /// double frees are detected (best effort) and reported as [`Error::InvalidFree`].
    pub fn free(&self, offset: u64) -> Result<()> {
        let guard = self.lock()?;
        let (b, s) = self.live_block(offset)?;
        // Intent: from here on, a repair completes this free.
        self.st(b + 8, enc(s, F_FREEING))
            .map_err(|c| self.corrupted_error(c))?;
        let wake = match self.free_locked(b, s) {
            Ok(wake) => wake,
            Err(c) => {
                self.repair_locked(&c.0)?;
                true
            }
        };
        drop(guard);
        if wake {
            futex_wake_all(&self.hdr().free_gen);
        }
        Ok(())
    }

    fn free_locked(&self, b: u64, s: u64) -> CResult<bool> {
        let n = b + s;
        let (ns, nflags) = self.block(n)?;
        let next_free = nflags == F_FREE;
        let (p, ps, prev_free) = if b == self.arena_start {
            (NIL, 0, false)
        } else {
            let ps = self.ld(b)?;
            let p = b
                .checked_sub(ps)
                .filter(|p| *p >= self.arena_start)
                .map_or_else(|| corrupt(format!("bad boundary tag {ps} at {b}")), Ok)?;
            let (pss, pflags) = self.block(p)?;
            if pss != ps {
                return corrupt(format!("boundary tag {ps} at {b} does not match block {p}"));
            }
            (p, ps, pflags == F_FREE)
        };
        if next_free {
            self.tree_remove(n)?;
        }
        if prev_free {
            self.tree_remove(p)?;
        }
        let start = if prev_free { p } else { b };
        let total = if prev_free { ps } else { 0 } + s + if next_free { ns } else { 0 };
        // COMMIT: one store frees b and merges it with its free neighbours.
        self.st(start + 8, enc(total, F_FREE))?;
        self.st(start + total, total)?;
        self.tree_insert(start)?;
        let h = self.hdr();
        Self::hadd(&h.free_bytes, s as i64);
        Self::hadd(
            &h.free_blocks,
            1 - i64::from(prev_free) - i64::from(next_free),
        );
        Self::hadd(&h.used_blocks, -1);
        Self::hadd(&h.frees, 1);
        store_tick();
        h.free_gen.fetch_add(1, Ordering::AcqRel);
        Ok(h.waiters.load(Ordering::Acquire) > 0)
    }

    fn corrupted_error(&self, c: Corrupt) -> Error {
        Error::HeapCorrupted {
            name: self.obj.name().to_owned(),
            reason: c.0,
        }
    }

    // ---- repair ----

    /// Under the lock: rebuilds all derived state from the block chain.
    fn repair_locked(&self, why: &str) -> Result<()> {
        let h = self.hdr();
        match self.rebuild() {
            Ok(()) => {
                Self::hadd(&h.repairs, 1);
                tracing::info!("repaired the heap of '{}' ({why})", self.obj.name());
                Ok(())
            }
            Err(c) => {
                store_tick();
                h.corrupted.store(1, Ordering::Release);
                tracing::error!(
                    "the heap of '{}' cannot be repaired ({why}): {}",
                    self.obj.name(),
                    c.0
                );
                Err(self.corrupted_error(c))
            }
        }
    }

    fn rebuild(&self) -> CResult<()> {
        let mut off = self.arena_start;
        // (offset, size, free) of the previous block
        let mut prev: Option<(u64, u64, bool)> = None;
        let mut frees = Vec::new();
        let (mut free_bytes, mut used_blocks) = (0u64, 0u64);
        while off < self.arena_end {
            let (size, flags) = self.block(off)?;
            let is_free = flags & (F_FREE | F_FREEING) != 0;
            if let Some((po, psize, true)) = prev {
                if is_free {
                    // Two adjacent free blocks (a free was interrupted): merge with one store.
                    let merged = psize + size;
                    self.st(po + 8, enc(merged, F_FREE))?;
                    prev = Some((po, merged, true));
                    free_bytes += size;
                    off += size;
                    continue;
                }
            }
            if flags & F_FREEING != 0 {
                // A free was interrupted after its intent was recorded: complete it.
                self.st(off + 8, enc(size, F_FREE))?;
            }
            let tag = prev.map_or(0, |p| p.1);
            if self.ld(off)? != tag {
                self.st(off, tag)?;
            }
            if is_free {
                frees.push(off);
                free_bytes += size;
            } else {
                used_blocks += 1;
            }
            prev = Some((off, size, is_free));
            off += size;
        }
        if off != self.arena_end {
            return corrupt("the block chain overruns the heap's end");
        }
        self.block(self.arena_end)?;
        let tag = prev.map_or(0, |p| p.1);
        if self.ld(self.arena_end)? != tag {
            self.st(self.arena_end, tag)?;
        }
        let h = self.hdr();
        self.set_root(NIL);
        for &f in &frees {
            self.tree_insert(f)?;
        }
        Self::hst(&h.free_bytes, free_bytes);
        Self::hst(&h.free_blocks, frees.len() as u64);
        Self::hst(&h.used_blocks, used_blocks);
        Ok(())
    }

    // ---- inspection ----

    /// Checks the whole heap under the lock: every block header, boundary tag and the end
    /// marker; that no two free blocks are adjacent; that the index holds exactly the free blocks
    /// in order with correct subtree maxima and priorities; that the counters match; and that
    /// `free + used + overhead == size`. Returns the figures.
    pub fn verify(&self) -> Result<HeapStats> {
        let _guard = self.lock()?;
        self.verify_locked().map_err(|c| self.corrupted_error(c))
    }

    fn verify_locked(&self) -> CResult<HeapStats> {
        let mut st = HeapStats {
            size: self.heap_len,
            overhead: self.heap_len - (self.arena_end - self.arena_start),
            repairs: self.repairs(),
            committed: self.committed_bytes(),
            ..HeapStats::default()
        };
        let mark = self.committed_mark();
        if mark < self.heap_end()
            && (!mark.is_multiple_of(PAGE) || mark >= tail_start(self.arena_end))
        {
            return corrupt(format!(
                "committed mark {mark} is not a page below the end marker"
            ));
        }
        let mut frees = Vec::new();
        let mut off = self.arena_start;
        let (mut prev_size, mut prev_free) = (0, false);
        while off < self.arena_end {
            let (size, flags) = self.block(off)?;
            if flags & F_FREEING != 0 {
                return corrupt(format!("block {off} is still marked as being freed"));
            }
            if self.ld(off)? != prev_size {
                return corrupt(format!("wrong boundary tag at {off}"));
            }
            let free = flags == F_FREE;
            if free && prev_free {
                return corrupt(format!("adjacent free blocks at {off}"));
            }
            let touched = off + if free { MIN_BLOCK } else { size };
            if touched > mark {
                return corrupt(format!(
                    "block {off} reaches beyond the committed mark {mark}"
                ));
            }
            if free {
                st.free += size;
                st.free_blocks += 1;
                st.largest_free = st.largest_free.max(size);
                frees.push(off);
            } else {
                st.used += size;
                st.used_blocks += 1;
            }
            prev_size = size;
            prev_free = free;
            off += size;
        }
        if off != self.arena_end {
            return corrupt("the block chain overruns the heap's end");
        }
        self.block(self.arena_end)?;
        if self.ld(self.arena_end)? != prev_size {
            return corrupt("wrong boundary tag at the heap's end");
        }
        let mut count = 0;
        let root = self.root();
        if root != NIL {
            let max = self.check_tree(root, None, None, u64::MAX, 0, &frees, &mut count)?;
            if max != st.largest_free {
                return corrupt("the index's maximum differs from the largest free block");
            }
        }
        if count != st.free_blocks {
            return corrupt(format!(
                "the index holds {count} blocks, the heap {} free blocks",
                st.free_blocks
            ));
        }
        let h = self.hdr();
        if h.free_bytes.load(Ordering::Relaxed) != st.free
            || h.free_blocks.load(Ordering::Relaxed) != st.free_blocks
            || h.used_blocks.load(Ordering::Relaxed) != st.used_blocks
        {
            return corrupt("the heap's counters differ from its blocks");
        }
        if st.free + st.used + st.overhead != st.size {
            return corrupt("free + used + overhead != size");
        }
        Ok(st)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_tree(
        &self,
        n: u64,
        lo: Option<(u64, u64)>,
        hi: Option<(u64, u64)>,
        parent_prio: u64,
        depth: u32,
        frees: &[u64],
        count: &mut u64,
    ) -> CResult<u64> {
        if depth > MAX_DEPTH {
            return corrupt("the free index is too deep (cycle?)");
        }
        if frees.binary_search(&n).is_err() {
            return corrupt(format!("the index holds {n}, which is not a free block"));
        }
        let key = self.key(n)?;
        if lo.is_some_and(|lo| !self.less(lo, key)) || hi.is_some_and(|hi| !self.less(key, hi)) {
            return corrupt(format!("the index is out of order at {n}"));
        }
        if Self::prio(n) > parent_prio {
            return corrupt(format!("the index violates the heap order at {n}"));
        }
        *count += 1;
        let mut max = key.0;
        let (l, r) = (self.left(n)?, self.right(n)?);
        if l != NIL {
            max = max.max(self.check_tree(
                l,
                lo,
                Some(key),
                Self::prio(n),
                depth + 1,
                frees,
                count,
            )?);
        }
        if r != NIL {
            max = max.max(self.check_tree(
                r,
                Some(key),
                hi,
                Self::prio(n),
                depth + 1,
                frees,
                count,
            )?);
        }
        if self.maxv(n)? != max {
            return corrupt(format!("wrong subtree maximum at {n}"));
        }
        Ok(max)
    }

    /// Every block of the heap in address order (under the lock).
    pub fn blocks(&self) -> Result<Vec<BlockInfo>> {
        let _guard = self.lock()?;
        let mut out = Vec::new();
        let mut off = self.arena_start;
        while off < self.arena_end {
            let (size, flags) = self.block(off).map_err(|c| self.corrupted_error(c))?;
            out.push(BlockInfo {
                offset: off + BLOCK_HEADER,
                block_size: size,
                free: flags & F_FREE != 0,
            });
            off += size;
        }
        Ok(out)
    }

    /// Usable bytes of the live allocation at `offset` (at least the requested size).
    pub fn usable_size(&self, offset: u64) -> Result<u64> {
        let _guard = self.lock()?;
        let (_, s) = self.live_block(offset)?;
        Ok(s - BLOCK_HEADER)
    }

    /// This process's address of `len` bytes at `offset` in the object (bounds-checked, also
    /// against the committed mark: memory that is not reserved yet is never handed out, so a
    /// range reaching into it is refused rather than risking a SIGBUS).
    pub fn ptr(&self, offset: u64, len: u64) -> Result<*mut u8> {
        let mark = self.committed_mark();
        let limit = if mark >= self.heap_end() {
            self.obj.size()
        } else {
            mark
        };
        if offset.checked_add(len).is_none_or(|e| e > limit) {
            return Err(Error::OutOfBounds {
                name: self.obj.name().to_owned(),
                offset,
                len,
            });
        }
        // SAFETY: offset + len lies within the mapping (checked above).
        Ok(unsafe { self.obj.as_ptr().add(offset as usize) })
    }

    /// Fills the free memory with zeros (FairMQ's `--shm-zero-segment`), leaving block headers
    /// and index words intact. Reserves the whole heap first ([`Allocator::commit_all`]).
    pub fn zero_free_memory(&self) -> Result<()> {
        self.commit_all()?;
        let _guard = self.lock()?;
        let mut off = self.arena_start;
        while off < self.arena_end {
            let (size, flags) = self.block(off).map_err(|c| self.corrupted_error(c))?;
            if flags & F_FREE != 0 {
                let start = off + MIN_BLOCK;
                // SAFETY: [start, off + size) lies inside a free block within the mapping (size
                // was validated by `block`, and free blocks have at least MIN_BLOCK bytes). Free
                // memory is not used by anyone, and we hold the lock that guards it.
                unsafe {
                    std::ptr::write_bytes(
                        self.obj.as_ptr().add(start as usize),
                        0,
                        (off + size - start) as usize,
                    )
                };
            }
            off += size;
        }
        Ok(())
    }

    /// Test hook: overwrites the index root, simulating a damaged free index.
    #[cfg(test)]
    fn damage_index(&self) {
        self.hdr()
            .root
            .store(self.arena_start + 7, Ordering::Relaxed);
    }
}

/// Options for opening or creating a managed segment (FairMQ's `--shm-mlock-segment`,
/// `--shm-zero-segment` and their `-on-creation` variants).
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// mlock the segment when this process creates it.
    pub mlock_on_creation: bool,
    /// Zero the free memory when this process creates it.
    pub zero_on_creation: bool,
    /// mlock the segment whenever this process opens or creates it.
    pub mlock: bool,
    /// Zero the free memory whenever this process opens or creates it.
    pub zero: bool,
    /// Open read-only (observers; allocation is refused).
    pub read_only: bool,
    /// Who may open the segment when it is created (see [`Access`]; by default the session's).
    pub access: Access,
    /// See [`CreateOptions::space_precheck`]. Applies when the segment is reserved whole at
    /// creation (with zeroing or mlock); otherwise memory is reserved as it is used, and a
    /// segment larger than the free space only gets a warning.
    pub space_precheck: bool,
}

impl Default for SegmentOptions {
    fn default() -> SegmentOptions {
        SegmentOptions {
            mlock_on_creation: false,
            zero_on_creation: false,
            mlock: false,
            zero: false,
            read_only: false,
            access: Access::Session,
            space_precheck: true,
        }
    }
}

/// A managed segment `fmq_<shmId>_m_<id>`: an object whose whole data area is one heap.
/// Dereferences to its [`Allocator`].
#[derive(Debug)]
pub struct ManagedSegment {
    id: u16,
    alloc: Allocator,
}

impl ManagedSegment {
    /// Smallest segment size accepted.
    pub const MIN_SIZE: u64 = 2 * HEADER_SIZE;

    /// Creates `fmq_<shm_id>_m_<id>` with `size` bytes in total.
    pub fn create(
        shm_id: &ShmId,
        id: u16,
        size: u64,
        policy: AllocationPolicy,
        opts: &SegmentOptions,
    ) -> Result<ManagedSegment> {
        Self::create_at(
            &Location::shm(shm_id.segment_name(id)),
            id,
            size,
            policy,
            opts,
        )
    }

    /// Creates a managed segment at an explicit location.
    pub fn create_at(
        loc: &Location,
        id: u16,
        size: u64,
        policy: AllocationPolicy,
        opts: &SegmentOptions,
    ) -> Result<ManagedSegment> {
        if size < Self::MIN_SIZE {
            return Err(Error::InvalidArgument(format!(
                "segment size {size} is smaller than the minimum of {} bytes (--shm-segment-size)",
                Self::MIN_SIZE
            )));
        }
        // Zeroing and mlock touch every page: reserve everything at creation for them. Otherwise
        // the segment is sparse and its memory is reserved as the allocator hands it out.
        let full = opts.zero || opts.zero_on_creation || opts.mlock || opts.mlock_on_creation;
        let mut co = CreateOptions::new(size);
        co.access = opts.access;
        co.lock_memory = opts.mlock || opts.mlock_on_creation;
        co.size_option = DEFAULT_SIZE_OPTION.to_owned();
        co.space_precheck = opts.space_precheck;
        co.sparse = !full;
        if !full {
            check_sparse_size(loc, size)?;
        }
        let commit = if full {
            HeapCommit::Full
        } else {
            HeapCommit::OnDemand
        };
        let obj = SharedObject::create_with(loc, ObjectKind::ManagedSegment, &co, |o| {
            Allocator::init_in(o, HEADER_SIZE, size - HEADER_SIZE, policy, commit)
        })?;
        let seg = ManagedSegment {
            id,
            alloc: Allocator::attach(Arc::new(obj), HEADER_SIZE)?,
        };
        if opts.zero || opts.zero_on_creation {
            seg.alloc.zero_free_memory()?;
        }
        Ok(seg)
    }

    /// A managed segment in plain process memory ([`SharedObject::in_memory`]): the same heap
    /// (sparse, reserved as it is handed out) without `/dev/shm`, for tests and models. Other
    /// processes cannot open it; everything else works as on a named segment.
    pub fn in_memory(id: u16, size: u64, policy: AllocationPolicy) -> Result<ManagedSegment> {
        if size < Self::MIN_SIZE {
            return Err(Error::InvalidArgument(format!(
                "segment size {size} is smaller than the minimum of {} bytes",
                Self::MIN_SIZE
            )));
        }
        let mut co = CreateOptions::new(size);
        co.sparse = true;
        let obj = SharedObject::in_memory(
            &format!("fmq-segment-{id}"),
            ObjectKind::ManagedSegment,
            &co,
            |o| {
                Allocator::init_in(
                    o,
                    HEADER_SIZE,
                    size - HEADER_SIZE,
                    policy,
                    HeapCommit::OnDemand,
                )
            },
        )?;
        Ok(ManagedSegment {
            id,
            alloc: Allocator::attach(Arc::new(obj), HEADER_SIZE)?,
        })
    }

    /// Opens the existing `fmq_<shm_id>_m_<id>` (with the algorithm it was created with).
    pub fn open(shm_id: &ShmId, id: u16, opts: &SegmentOptions) -> Result<ManagedSegment> {
        Self::open_at(&Location::shm(shm_id.segment_name(id)), id, opts)
    }

    /// Opens a managed segment at an explicit location.
    pub fn open_at(loc: &Location, id: u16, opts: &SegmentOptions) -> Result<ManagedSegment> {
        let oo = OpenOptions {
            read_only: opts.read_only,
            lock_memory: false,
            flock: None,
        };
        let obj = SharedObject::open(loc, ObjectKind::ManagedSegment, &oo)?;
        let seg = ManagedSegment {
            id,
            alloc: Allocator::attach(Arc::new(obj), HEADER_SIZE)?,
        };
        if opts.mlock {
            // mlock faults every page in: reserve them first (a writable mapping only; a
            // read-only one only locks what is reserved already).
            if !opts.read_only {
                seg.alloc.commit_all()?;
            }
            seg.alloc.object().lock_memory()?;
        }
        if opts.zero && !opts.read_only {
            seg.alloc.zero_free_memory()?;
        }
        Ok(seg)
    }

    /// Opens the segment, or creates it if it does not exist; returns whether it was created.
    /// An existing segment keeps its size and algorithm (compare [`Allocator::policy`]).
    pub fn open_or_create(
        shm_id: &ShmId,
        id: u16,
        size: u64,
        policy: AllocationPolicy,
        opts: &SegmentOptions,
    ) -> Result<(ManagedSegment, bool)> {
        let mut last = None;
        for _ in 0..100 {
            match Self::open(shm_id, id, opts) {
                Ok(s) => return Ok((s, false)),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            match Self::create(shm_id, id, size, policy, opts) {
                Ok(s) => return Ok((s, true)),
                Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotFound {
            name: shm_id.segment_name(id),
        }))
    }

    /// Removes `fmq_<shm_id>_m_<id>`; `Ok(false)` if it did not exist.
    pub fn remove(shm_id: &ShmId, id: u16) -> Result<bool> {
        SharedObject::remove(&Location::shm(shm_id.segment_name(id)))
    }

    /// The segment id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The object name.
    pub fn name(&self) -> &str {
        self.alloc.object().name()
    }

    /// Total size of the segment object (FairMQ's `GetSize`).
    pub fn segment_size(&self) -> u64 {
        self.alloc.object().size()
    }

    /// The heap.
    pub fn allocator(&self) -> &Allocator {
        &self.alloc
    }
}

/// RAM plus swap of this machine (`/proc/meminfo`), if known.
fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(field("MemTotal:")? + field("SwapTotal:").unwrap_or(0))
}

/// A sparse segment may be larger than the free space of its filesystem (memory is reserved as
/// it is used, and an allocation that does not fit fails clearly), but not larger than what the
/// machine could ever back: that is a mistake in `--shm-segment-size`, refused at creation.
fn check_sparse_size(loc: &Location, size: u64) -> Result<()> {
    let dir = loc.dir();
    let free = crate::segment::free_space(&dir).ok();
    if let Some(memory) = machine_memory().filter(|m| size > *m) {
        return Err(Error::LargerThanMemory {
            name: loc.display_name(),
            needed: size,
            memory,
            free: free.unwrap_or(0),
            dir: dir.display().to_string(),
            option: DEFAULT_SIZE_OPTION.to_owned(),
        });
    }
    if let Some(free) = free.filter(|f| size > *f) {
        tracing::warn!(
            "shared memory segment {} ({size} bytes) is larger than the free space in {} ({free} bytes): \
             memory is reserved as it is used, and allocations fail once {} is full; \
             consider a smaller {DEFAULT_SIZE_OPTION}",
            loc.display_name(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

impl Deref for ManagedSegment {
    type Target = Allocator;

    fn deref(&self) -> &Allocator {
        &self.alloc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, TestSession};
    use std::collections::BTreeMap;

    const POLICIES: [AllocationPolicy; 2] = [
        AllocationPolicy::RbTreeBestFit,
        AllocationPolicy::SimpleSeqFit,
    ];

    fn segment(s: &TestSession, id: u16, size: u64, policy: AllocationPolicy) -> ManagedSegment {
        ManagedSegment::create(&s.id, id, size, policy, &SegmentOptions::default()).unwrap()
    }

    #[test]
    fn policy_names() {
        assert_eq!(
            "rbtree_best_fit".parse::<AllocationPolicy>().unwrap(),
            AllocationPolicy::RbTreeBestFit
        );
        assert_eq!(
            "simple_seq_fit".parse::<AllocationPolicy>().unwrap(),
            AllocationPolicy::SimpleSeqFit
        );
        let err = "best".parse::<AllocationPolicy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Provided shared memory allocation algorithm 'best' is not supported. Supported are 'rbtree_best_fit'/'simple_seq_fit'"
        );
        assert_eq!(AllocationPolicy::default().to_string(), "rbtree_best_fit");
    }

    fn remove(s: &TestSession, ids: &[u16]) {
        for &id in ids {
            assert!(
                ManagedSegment::remove(&s.id, id).unwrap(),
                "segment {id} existed"
            );
        }
    }

    fn fill(seg: &ManagedSegment, off: u64, len: u64, byte: u8) {
        let p = seg.ptr(off, len).unwrap();
        // SAFETY: the allocation [off, off+len) is owned by this test.
        unsafe { std::ptr::write_bytes(p, byte, len as usize) };
    }

    fn check(seg: &ManagedSegment, off: u64, len: u64, byte: u8) {
        let p = seg.ptr(off, len).unwrap();
        // SAFETY: as in fill; nobody else writes to it.
        let data = unsafe { std::slice::from_raw_parts(p, len as usize) };
        assert!(
            data.iter().all(|b| *b == byte),
            "allocation at {off} was overwritten"
        );
    }

    #[test]
    fn random_operations_against_a_model() {
        let s = TestSession::new("alloc-model");
        for (i, policy) in POLICIES.into_iter().enumerate() {
            model_run(
                &segment(&s, i as u16, 256 * 1024, policy),
                0x5eed + i as u64,
            );
        }
        remove(&s, &[0, 1]);
        s.assert_clean();
    }

    /// The same heap in plain process memory (a memfd): no /dev/shm involved.
    #[test]
    fn random_operations_against_a_model_in_plain_memory() {
        for (i, policy) in POLICIES.into_iter().enumerate() {
            let seg = ManagedSegment::in_memory(i as u16, 256 * 1024, policy).unwrap();
            assert!(seg.name().starts_with("memfd:"), "{}", seg.name());
            model_run(&seg, 0x5eed + i as u64);
        }
    }

    /// Random allocations and frees of `seg` checked against a model of the live blocks.
    fn model_run(seg: &ManagedSegment, seed: u64) {
        let initial = seg.verify().unwrap();
        assert_eq!(initial.free_blocks, 1);
        assert_eq!(initial.used_blocks, 0);
        assert_eq!(initial.free, seg.free_memory());
        let mut rng = Rng::new(seed);
        // offset -> (size, fill byte)
        let mut live: BTreeMap<u64, (u64, u8)> = BTreeMap::new();
        let mut ooms = 0;
        let mut allocs = 0;
        for step in 0..3000u32 {
            if live.is_empty() || rng.below(100) < 55 {
                let size = match rng.below(10) {
                    0 => 0,
                    1..=6 => rng.below(600),
                    _ => rng.below(20_000),
                };
                let align = [0, 16, 32, 64, 128, 4096][rng.below(6) as usize];
                match seg.allocate(size, align) {
                    Ok(off) => {
                        assert_eq!(off % align.max(16), 0, "alignment of {off}");
                        assert!(seg.usable_size(off).unwrap() >= size);
                        let byte = (step % 251) as u8 + 1;
                        fill(seg, off, size, byte);
                        for (&o, &(sz, _)) in &live {
                            assert!(off + size <= o || o + sz <= off, "overlap");
                        }
                        live.insert(off, (size, byte));
                        allocs += 1;
                    }
                    Err(Error::OutOfMemory { .. }) => ooms += 1,
                    Err(e) => panic!("{e}"),
                }
            } else {
                let k = rng.below(live.len() as u64) as usize;
                let off = *live.keys().nth(k).unwrap();
                let (size, byte) = live.remove(&off).unwrap();
                check(seg, off, size, byte);
                seg.free(off).unwrap();
            }
            let st = seg.verify().unwrap();
            assert_eq!(st.used_blocks, live.len() as u64);
            assert_eq!(st.free, seg.free_memory());
            assert_eq!(st.free + st.used + st.overhead, seg.size());
            let min_used: u64 = live
                .values()
                .map(|(sz, _)| Allocator::block_size_for(*sz))
                .sum();
            assert!(st.used >= min_used);
        }
        assert!(ooms > 0, "the test should also exercise out-of-memory");
        for (off, (size, byte)) in std::mem::take(&mut live) {
            check(seg, off, size, byte);
            seg.free(off).unwrap();
        }
        let end = seg.verify().unwrap();
        assert_eq!(end.free_blocks, 1, "everything coalesced again");
        assert_eq!(end.free, initial.free);
        assert_eq!(seg.allocation_count(), allocs);
    }

    #[test]
    fn best_fit_and_first_fit_differ() {
        let s = TestSession::new("alloc-fit");
        let mut picks = Vec::new();
        for (i, policy) in POLICIES.into_iter().enumerate() {
            let seg = segment(&s, i as u16, 64 * 1024, policy);
            // [big hole 2000][sep][small hole 500][sep][rest]
            let big = seg.allocate(2000, 0).unwrap();
            let _sep1 = seg.allocate(64, 0).unwrap();
            let small = seg.allocate(500, 0).unwrap();
            let _sep2 = seg.allocate(64, 0).unwrap();
            seg.free(big).unwrap();
            seg.free(small).unwrap();
            let got = seg.allocate(400, 0).unwrap();
            match policy {
                AllocationPolicy::RbTreeBestFit => assert_eq!(got, small, "best fit"),
                AllocationPolicy::SimpleSeqFit => assert_eq!(got, big, "first fit"),
            }
            // Nothing fits below the tail: both take the tail for a large request.
            let tail = seg.allocate(10_000, 0).unwrap();
            assert!(tail > small);
            picks.push(got);
            seg.verify().unwrap();
        }
        assert_ne!(picks[0], picks[1]);
        remove(&s, &[0, 1]);
        s.assert_clean();
    }

    #[test]
    fn alignment() {
        let s = TestSession::new("alloc-align");
        let seg = segment(&s, 0, 1 << 20, AllocationPolicy::RbTreeBestFit);
        let mut offs = Vec::new();
        for align in [1u64, 2, 8, 16, 32, 64, 256, 4096, 65536] {
            for size in [1u64, 17, 4096] {
                let off = seg.allocate(size, align).unwrap();
                assert_eq!(off % align.max(16), 0, "size {size} align {align}");
                // The address in this process is aligned too (the mapping is page-aligned).
                assert_eq!(
                    seg.ptr(off, size).unwrap() as usize % align.clamp(16, 4096) as usize,
                    0
                );
                offs.push(off);
                seg.verify().unwrap();
            }
        }
        let err = seg.allocate(10, 24).unwrap_err();
        assert!(matches!(err, Error::InvalidAlignment(24)), "{err}");
        for off in offs {
            seg.free(off).unwrap();
        }
        assert_eq!(seg.verify().unwrap().free_blocks, 1);
        remove(&s, &[0]);
        s.assert_clean();
    }

    #[test]
    fn free_from_a_second_mapping() {
        let s = TestSession::new("alloc-second-map");
        let a = segment(&s, 0, 128 * 1024, AllocationPolicy::SimpleSeqFit);
        let b = ManagedSegment::open(&s.id, 0, &SegmentOptions::default()).unwrap();
        assert_eq!(b.policy(), AllocationPolicy::SimpleSeqFit);
        assert_ne!(a.object().as_ptr(), b.object().as_ptr());
        let initial = a.free_memory();
        let off = a.allocate(1000, 64).unwrap();
        fill(&a, off, 1000, 0xAB);
        check(&b, off, 1000, 0xAB);
        assert_eq!(b.free_memory(), a.free_memory());
        b.free(off).unwrap();
        assert_eq!(a.free_memory(), initial);
        let err = a.free(off).unwrap_err();
        assert!(matches!(err, Error::InvalidFree { .. }), "{err}");
        a.verify().unwrap();
        // Allocations from both sides interleave.
        let x = b.allocate(100, 0).unwrap();
        let y = a.allocate(100, 0).unwrap();
        assert_ne!(x, y);
        a.free(x).unwrap();
        b.free(y).unwrap();
        assert_eq!(b.verify().unwrap().free, initial);
        remove(&s, &[0]);
        s.assert_clean();
    }

    #[test]
    fn invalid_requests_and_frees() {
        let s = TestSession::new("alloc-invalid");
        let seg = segment(&s, 0, 64 * 1024, AllocationPolicy::RbTreeBestFit);
        let err = seg.allocate(64 * 1024, 0).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(
            err.to_string().contains("exceeds segment size (65536)"),
            "{err}"
        );
        let err = seg.allocate(u64::MAX, 0).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        let a = seg.allocate(100, 0).unwrap();
        for bad in [0, 1, a + 16, a - 16, a + 8, seg.segment_size(), u64::MAX] {
            let err = seg.free(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidFree { .. }), "{bad}: {err}");
        }
        seg.free(a).unwrap();
        let err = seg.free(a).unwrap_err();
        assert!(err.to_string().contains("double free"), "{err}");
        assert!(seg.ptr(seg.segment_size() - 8, 16).is_err());
        seg.verify().unwrap();

        let ro = ManagedSegment::open(
            &s.id,
            0,
            &SegmentOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ro.free_memory(), seg.free_memory());
        assert!(matches!(ro.allocate(1, 0), Err(Error::ReadOnly { .. })));
        let err = ManagedSegment::create(
            &s.id,
            1,
            100,
            AllocationPolicy::default(),
            &SegmentOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        remove(&s, &[0]);
        s.assert_clean();
    }

    #[test]
    fn blocking_allocation_is_woken_by_a_free() {
        let s = TestSession::new("alloc-block");
        let seg = Arc::new(segment(&s, 0, 64 * 1024, AllocationPolicy::RbTreeBestFit));
        let big = seg.allocate(40_000, 0).unwrap();
        assert!(matches!(
            seg.allocate(40_000, 0),
            Err(Error::OutOfMemory { .. })
        ));
        let never = Arc::new(AtomicBool::new(false));
        let (seg2, never2) = (seg.clone(), never.clone());
        let start = Instant::now();
        let waiter = std::thread::spawn(move || {
            seg2.allocate_blocking(40_000, 0, Some(Duration::from_secs(60)), &never2)
        });
        crate::test_util::wait_until(Duration::from_secs(30), || seg.waiters() > 0);
        seg.free(big).unwrap();
        let got = waiter.join().unwrap().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "woken by the free, not the timeout"
        );
        assert_eq!(got, big);
        assert_eq!(seg.waiters(), 0);

        // Timeout.
        let t0 = Instant::now();
        let err = seg
            .allocate_blocking(40_000, 0, Some(Duration::from_millis(150)), &never)
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(150));

        // Interruption while waiting, made prompt by wake_waiters.
        let flag = Arc::new(AtomicBool::new(false));
        let (seg3, flag3) = (seg.clone(), flag.clone());
        let waiter = std::thread::spawn(move || seg3.allocate_blocking(40_000, 0, None, &flag3));
        crate::test_util::wait_until(Duration::from_secs(30), || seg.waiters() > 0);
        flag.store(true, Ordering::Release);
        seg.wake_waiters();
        let err = waiter.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{err}");
        // Already interrupted: fails before trying.
        assert!(matches!(
            seg.allocate_blocking(1, 0, None, &flag),
            Err(Error::Interrupted { .. })
        ));
        assert_eq!(seg.waiters(), 0);
        seg.free(got).unwrap();
        seg.verify().unwrap();
        drop(seg);
        remove(&s, &[0]);
        s.assert_clean();
    }

    #[test]
    fn zero_free_memory_and_options() {
        let s = TestSession::new("alloc-zero");
        let opts = SegmentOptions {
            mlock_on_creation: true,
            zero_on_creation: true,
            ..Default::default()
        };
        let seg =
            ManagedSegment::create(&s.id, 0, 64 * 1024, AllocationPolicy::SimpleSeqFit, &opts)
                .unwrap();
        let off = seg.allocate(1000, 0).unwrap();
        fill(&seg, off, 1000, 0xFF);
        seg.free(off).unwrap();
        seg.zero_free_memory().unwrap();
        let again = seg.allocate(1000, 0).unwrap();
        assert_eq!(again, off);
        // The first 32 bytes of a free block's payload hold index words; the rest is zeroed.
        check(&seg, again + 32, 1000 - 32, 0);
        seg.verify().unwrap();
        let reopened = ManagedSegment::open(
            &s.id,
            0,
            &SegmentOptions {
                mlock: true,
                zero: true,
                ..Default::default()
            },
        )
        .unwrap();
        reopened.verify().unwrap();
        remove(&s, &[0]);
        s.assert_clean();
    }

    #[test]
    fn damaged_index_is_rebuilt_and_damaged_chain_is_an_error() {
        let s = TestSession::new("alloc-damage");
        let seg = segment(&s, 0, 64 * 1024, AllocationPolicy::RbTreeBestFit);
        let a = seg.allocate(100, 0).unwrap();
        let b = seg.allocate(100, 0).unwrap();
        seg.free(a).unwrap();
        seg.damage_index();
        let c = seg.allocate(100, 0).unwrap();
        assert_eq!(seg.repairs(), 1);
        assert_eq!(c, a);
        let st = seg.verify().unwrap();
        assert_eq!(st.used_blocks, 2);
        assert_eq!(st.repairs, 1);

        // A buffer overrun into the next block's header.
        let p = seg.ptr(b, 200).unwrap();
        // SAFETY: deliberately corrupting the heap of this test's own segment, inside the mapping.
        unsafe { std::ptr::write_bytes(p, 0x5A, 200) };
        seg.damage_index();
        let err = seg.allocate(100, 0).unwrap_err();
        assert!(matches!(err, Error::HeapCorrupted { .. }), "{err}");
        assert!(matches!(seg.verify(), Err(Error::HeapCorrupted { .. })));
        assert!(matches!(seg.free(c), Err(Error::HeapCorrupted { .. })));
        drop(seg);
        ManagedSegment::remove(&s.id, 0).unwrap();
        s.assert_clean();
    }

    #[test]
    fn open_or_create_keeps_the_registered_algorithm() {
        let s = TestSession::new("alloc-ooc");
        let (a, created) = ManagedSegment::open_or_create(
            &s.id,
            3,
            64 * 1024,
            AllocationPolicy::SimpleSeqFit,
            &SegmentOptions::default(),
        )
        .unwrap();
        assert!(created);
        assert_eq!(a.id(), 3);
        assert_eq!(a.name(), s.id.segment_name(3));
        let (b, created) = ManagedSegment::open_or_create(
            &s.id,
            3,
            1 << 20,
            AllocationPolicy::RbTreeBestFit,
            &SegmentOptions::default(),
        )
        .unwrap();
        assert!(!created);
        assert_eq!(b.policy(), AllocationPolicy::SimpleSeqFit);
        assert_eq!(b.segment_size(), 64 * 1024);
        assert!(ManagedSegment::remove(&s.id, 3).unwrap());
        s.assert_clean();
    }

    // ---- memory committed as it is used ----

    /// Bytes of the segment's file that its filesystem holds (`st_blocks * 512`).
    fn allocated(seg: &ManagedSegment) -> u64 {
        seg.object().allocated_bytes().unwrap()
    }

    /// Whether tmpfs may back the segment with huge pages (`shmem_enabled` = force), in which
    /// case the file's blocks are not an exact page count of what was reserved or touched.
    fn huge_shmem_pages() -> bool {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
            .is_ok_and(|s| s.contains("[force]"))
    }

    /// The file holds exactly what the heap reserved: no page outside the reservation was
    /// touched (a touched hole would add a page) and the mark is not ahead of the reservation.
    fn assert_touches_only_reserved(seg: &ManagedSegment) {
        if !huge_shmem_pages() {
            assert_eq!(
                allocated(seg),
                seg.committed_bytes(),
                "pages outside of the reservation were touched"
            );
        }
    }

    #[test]
    fn an_idle_default_size_segment_reserves_only_its_first_chunk() {
        let s = TestSession::new("commit-idle");
        let size = 2 << 30;
        for (i, policy) in POLICIES.into_iter().enumerate() {
            let seg = segment(&s, i as u16, size, policy);
            assert_eq!(seg.segment_size(), size);
            let st = seg.verify().unwrap();
            assert_eq!(st.free_blocks, 1);
            assert_eq!(st.free, seg.free_memory());
            assert!(st.free > size - (1 << 20), "the whole segment is available");
            // The first chunk (object header, heap header, first block) and the end marker's page.
            assert_eq!(seg.committed_bytes(), COMMIT_CHUNK + 4096);
            assert_eq!(st.committed, seg.committed_bytes());
            assert_eq!(seg.commit_count(), 0);
            let used = allocated(&seg);
            assert!(used < 64 << 20, "an idle 2 GiB segment holds {used} bytes");
            assert_touches_only_reserved(&seg);
            let path = Location::shm(s.id.segment_name(i as u16)).fs_path();
            assert_eq!(std::fs::metadata(path).unwrap().len(), size);
        }
        remove(&s, &[0, 1]);
        s.assert_clean();
    }

    #[test]
    fn allocations_reserve_progressively_and_reuse_reserves_nothing() {
        let s = TestSession::new("commit-progress");
        const MIB: u64 = 1 << 20;
        for (i, policy) in POLICIES.into_iter().enumerate() {
            let seg = segment(&s, i as u16, 2 << 30, policy);
            let mut offs = Vec::new();
            let mut last = seg.committed_bytes();
            for k in 0..40u64 {
                let off = seg.allocate(MIB, 0).unwrap();
                // Touch every page of the block: it must have been reserved.
                fill(&seg, off, MIB, k as u8 + 1);
                let c = seg.committed_bytes();
                assert!(c >= last, "the reservation never shrinks");
                assert!(
                    c <= off + MIB + COMMIT_CHUNK + 4096,
                    "reserved at most a chunk ahead: {c} for a block ending at {}",
                    off + MIB
                );
                assert_touches_only_reserved(&seg);
                last = c;
                offs.push(off);
            }
            seg.verify().unwrap();
            let commits = seg.commit_count();
            let high = seg.committed_bytes();
            assert!(
                (19..=21).contains(&commits),
                "{commits} reservations for 40 MiB in 2 MiB chunks"
            );
            assert!((40 * MIB..44 * MIB).contains(&high), "{high}");
            // Frees keep the memory; the same allocations again reserve nothing new.
            for off in offs.drain(..) {
                seg.free(off).unwrap();
            }
            assert_eq!(seg.committed_bytes(), high);
            for k in 0..40u64 {
                let off = seg.allocate(MIB, 0).unwrap();
                fill(&seg, off, MIB, k as u8 + 7);
                offs.push(off);
            }
            assert_eq!(seg.commit_count(), commits, "reuse reserved again");
            assert_eq!(seg.committed_bytes(), high);
            assert_touches_only_reserved(&seg);
            // Neither do smaller pieces, odd sizes and alignments below the mark.
            for off in offs.drain(..) {
                seg.free(off).unwrap();
            }
            for (k, align) in [0u64, 64, 4096, 65536]
                .into_iter()
                .cycle()
                .take(200)
                .enumerate()
            {
                let size = 1000 + 997 * k as u64;
                let off = seg.allocate(size, align).unwrap();
                fill(&seg, off, size, 3);
                offs.push(off);
            }
            assert_eq!(seg.commit_count(), commits);
            for off in offs.drain(..) {
                seg.free(off).unwrap();
            }
            // One large block reserves what it needs, rounded up to a chunk: its data, and the
            // header and index words of the free remainder behind it.
            let big = seg.allocate(100 * MIB, 0).unwrap();
            let touched = big + 100 * MIB + MIN_BLOCK;
            assert_eq!(
                seg.committed_bytes(),
                align_up(touched, COMMIT_CHUNK) + 4096
            );
            assert_eq!(seg.commit_count(), commits + 1);
            fill(&seg, big, 100 * MIB, 9);
            assert_touches_only_reserved(&seg);
            seg.free(big).unwrap();
            let end = seg.verify().unwrap();
            assert_eq!(end.free_blocks, 1);
            assert_eq!(end.used_blocks, 0);
        }
        remove(&s, &[0, 1]);
        s.assert_clean();
    }

    #[test]
    fn random_operations_touch_only_reserved_memory() {
        let s = TestSession::new("commit-model");
        for (i, policy) in POLICIES.into_iter().enumerate() {
            let seg = segment(&s, i as u16, 48 << 20, policy);
            let mut rng = Rng::new(0xC0_4417 + i as u64);
            let mut live: BTreeMap<u64, u64> = BTreeMap::new();
            let mut ooms = 0;
            for step in 0..1500u32 {
                if live.is_empty() || rng.below(100) < 60 {
                    let size = match rng.below(10) {
                        0..=5 => rng.below(4000),
                        6..=8 => rng.below(300_000),
                        _ => rng.below(3 << 20),
                    };
                    let align = [0, 16, 64, 4096, 65536][rng.below(5) as usize];
                    match seg.allocate(size, align) {
                        Ok(off) => {
                            fill(&seg, off, size, (step % 251) as u8 + 1);
                            live.insert(off, size);
                        }
                        Err(Error::OutOfMemory { .. }) => ooms += 1,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    let k = rng.below(live.len() as u64) as usize;
                    let off = *live.keys().nth(k).unwrap();
                    live.remove(&off);
                    seg.free(off).unwrap();
                }
                // verify() also checks that every block lies below the committed mark.
                let st = seg.verify().unwrap();
                assert_eq!(st.used_blocks, live.len() as u64);
                assert_touches_only_reserved(&seg);
            }
            assert!(ooms > 0, "the test should also exercise out-of-memory");
            assert!(
                seg.commit_count() > 5,
                "the test should reserve memory often"
            );
            for off in std::mem::take(&mut live).into_keys() {
                seg.free(off).unwrap();
            }
            assert_eq!(seg.verify().unwrap().free_blocks, 1);
        }
        remove(&s, &[0, 1]);
        s.assert_clean();
    }

    #[test]
    fn zeroing_and_locking_reserve_the_whole_segment() {
        let s = TestSession::new("commit-full");
        let size = 16 << 20;
        let zeroed = ManagedSegment::create(
            &s.id,
            0,
            size,
            AllocationPolicy::RbTreeBestFit,
            &SegmentOptions {
                zero_on_creation: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(zeroed.committed_bytes(), size);
        assert_eq!(allocated(&zeroed), size);
        let locked = ManagedSegment::create(
            &s.id,
            1,
            size,
            AllocationPolicy::SimpleSeqFit,
            &SegmentOptions {
                mlock_on_creation: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(locked.committed_bytes(), size);
        // A lazily reserved segment that a later user opens with zeroing or mlock: reserved
        // whole before its pages are touched.
        let lazy = segment(&s, 2, size, AllocationPolicy::RbTreeBestFit);
        assert!(lazy.committed_bytes() < size);
        for opts in [
            SegmentOptions {
                zero: true,
                ..Default::default()
            },
            SegmentOptions {
                mlock: true,
                ..Default::default()
            },
        ] {
            let other = ManagedSegment::open(&s.id, 2, &opts).unwrap();
            assert_eq!(other.committed_bytes(), size);
            other.verify().unwrap();
        }
        assert_eq!(lazy.committed_bytes(), size, "the mark is shared");
        assert_eq!(allocated(&lazy), size);
        drop((zeroed, locked, lazy));
        remove(&s, &[0, 1, 2]);
        s.assert_clean();
    }

    #[test]
    fn ranges_beyond_the_reservation_are_refused() {
        let s = TestSession::new("commit-ptr");
        let seg = segment(&s, 0, 64 << 20, AllocationPolicy::RbTreeBestFit);
        let mark = seg.committed_bytes() - 4096;
        assert!(seg.ptr(mark - 8, 8).is_ok());
        let err = seg.ptr(mark, 8).unwrap_err();
        assert!(matches!(err, Error::OutOfBounds { .. }), "{err}");
        // The end marker's page is reserved, but it is the allocator's, not a user's.
        assert!(seg.ptr(seg.segment_size() - 64, 8).is_err());
        let off = seg.allocate(8 << 20, 0).unwrap();
        assert!(
            seg.ptr(off, 8 << 20).is_ok(),
            "an allocated block is reachable"
        );
        seg.free(off).unwrap();
        assert_touches_only_reserved(&seg);
        remove(&s, &[0]);
        s.assert_clean();
    }

    #[test]
    fn segments_larger_than_the_machine_are_refused_and_larger_than_dev_shm_are_not() {
        let s = TestSession::new("commit-size");
        let memory = machine_memory().unwrap();
        let err = ManagedSegment::create(
            &s.id,
            0,
            memory + (1 << 30),
            AllocationPolicy::RbTreeBestFit,
            &SegmentOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::LargerThanMemory { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{} bytes needed", memory + (1 << 30)))
                && msg.contains("bytes free")
                && msg.contains("--shm-segment-size"),
            "{msg}"
        );
        s.assert_clean();
        // Larger than the free space of /dev/shm but not than the machine: created (memory is
        // reserved as it is used). Only meaningful where /dev/shm is smaller than the machine.
        let free =
            crate::segment::free_space(std::path::Path::new(crate::segment::SHM_DIR)).unwrap();
        if free + (1 << 30) < memory {
            let seg = segment(&s, 1, free + (1 << 30), AllocationPolicy::RbTreeBestFit);
            assert!(seg.committed_bytes() < 64 << 20);
            drop(seg);
            remove(&s, &[1]);
        }
        s.assert_clean();
    }
}
