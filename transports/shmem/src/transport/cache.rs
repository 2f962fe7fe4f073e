//! A lock-free cache of freed message buffers in front of a managed segment's allocator.
//!
//! The shmem pattern is "the sender allocates, the receiver frees", in two processes, at up to
//! millions of messages per second. Going through the allocator's robust lock twice per message
//! makes the two processes contend on one futex. Instead, a freed buffer of a common size goes
//! onto a lock-free stack of its size class (one compare-and-swap), and the next allocation of
//! that class takes it from there (one compare-and-swap). Only misses reach the allocator.
//!
//! Each class has two stacks, each head alone on its cache line: frees push onto the class's
//! *freed* stack, allocations pop from its *ready* stack, and an allocation that finds the
//! ready stack empty takes the whole freed stack at once (one exchange) and makes the rest of it
//! the ready stack. With one stack, the sender's pop and the receiver's push moved the head's
//! cache line between the two processes twice per message; now each process keeps its head in
//! its own cache, and the line moves once per batch of buffers.
//!
//! The cache lives in the segment itself (its first allocation), so every process that maps the
//! segment uses it. It only ever touches memory the allocator has reserved (see
//! [`crate::alloc`], "Memory committed as it is used"): its header is an allocated block in the
//! segment's first chunk, and a stack link is the first word of a cached block, which is an
//! allocated block too. The stacks are Treiber stacks over segment offsets with a generation count
//! against ABA, so every step is a single atomic commit: a process killed at any instruction
//! leaves them consistent and at worst leaks the one block it was moving. Blocks in the cache
//! are not available to the allocator: when it runs out of memory, the cache is drained back
//! into it, and while anyone waits for memory, freed blocks go straight to the allocator so
//! that the waiter is woken.
//!
//! # Model checking
//!
//! The stacks are written once over [`CacheMemory`]: a managed segment's mapping (std's
//! atomics) or [`PlainMemory`] (plain process memory, with [`crate::sync::atomic`], which is
//! loom's under `cfg(loom)`). The loom models in `cache::loom_models` check concurrent pushes,
//! a push racing a pop, and the ABA interleaving (a pop that read a head and its link while
//! another thread popped both blocks and pushed the first one back): in every interleaving each
//! block ends up exactly once either with a thread that popped it or on the stack. Run them
//! with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p fairmq-shmem --lib --release cache::loom
//! ```
//!
//! (`LOOM_MAX_PREEMPTIONS=3` bounds a longer run; the defaults explore every interleaving of
//! these small models.)

use crate::alloc::ManagedSegment;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Number of size classes: four per power of two, from 64 B to 112 MiB.
pub(crate) const CLASSES: usize = 84;
/// Largest request (header included) that is cached.
pub(crate) const MAX_CACHED: u64 = 64 << 20;
const MAGIC: u64 = u64::from_le_bytes(*b"FMQCACH6");
const EMPTY: u64 = u64::MAX;

// The cache header: the magic word at its start, then two cache lines per class from the first
// 64-byte boundary after CLASS_BASE, holding the heads of the class's ready and freed stacks
// (`generation << 32 | (offset / 16)`, or EMPTY's low half for an empty stack). Nothing else
// is written per message: the sender pops from the ready line, the receiver pushes to the
// freed line, and only taking the freed stack over touches both. (Shared counters of the bytes
// and buffers held, on another line, cost 15 % of a 64-byte message's throughput, and on the
// head's line as much again.)
const MAGIC_OFF: u64 = 0;
const CLASS_BASE: u64 = 8;
const LINE: u64 = 64;

/// From this class size on, freed buffers go straight onto the ready stack (see
/// [`BlockCache::push`]).
pub(crate) const HOT_REUSE: u64 = 64 << 10;

/// Bytes the cache header takes in the segment (the lines of the classes, and room to align
/// them).
pub(crate) const HEADER_BYTES: u64 = CLASS_BASE + LINE - 1 + 2 * LINE * CLASSES as u64;

/// One 8-byte atomic word of the memory a cache lives in: std's atomics over a mapping (or
/// plain memory), loom's in the model.
pub(crate) trait Word {
    fn load(&self, o: Ordering) -> u64;
    fn store(&self, v: u64, o: Ordering);
    fn compare_exchange_weak(
        &self,
        cur: u64,
        new: u64,
        s: Ordering,
        f: Ordering,
    ) -> Result<u64, u64>;
    fn compare_exchange(&self, cur: u64, new: u64, s: Ordering, f: Ordering) -> Result<u64, u64>;
}

macro_rules! impl_word {
    ($t:ty) => {
        impl Word for $t {
            fn load(&self, o: Ordering) -> u64 {
                <$t>::load(self, o)
            }
            fn store(&self, v: u64, o: Ordering) {
                <$t>::store(self, v, o)
            }
            fn compare_exchange_weak(
                &self,
                cur: u64,
                new: u64,
                s: Ordering,
                f: Ordering,
            ) -> Result<u64, u64> {
                <$t>::compare_exchange_weak(self, cur, new, s, f)
            }
            fn compare_exchange(
                &self,
                cur: u64,
                new: u64,
                s: Ordering,
                f: Ordering,
            ) -> Result<u64, u64> {
                <$t>::compare_exchange(self, cur, new, s, f)
            }
        }
    };
}
impl_word!(std::sync::atomic::AtomicU64);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicU64);

/// The memory a cache lives in: a managed segment's mapping, or plain process memory
/// ([`PlainMemory`], for tests and the loom model).
pub(crate) trait CacheMemory {
    /// The kind of word.
    type W: Word;
    /// The 8-byte word at offset `off`, if it is in bounds and aligned.
    fn word(&self, off: u64) -> Option<&Self::W>;
    /// Gives a block back to the allocator; whether that worked.
    fn free_block(&self, off: u64) -> bool;
}

impl CacheMemory for ManagedSegment {
    type W = std::sync::atomic::AtomicU64;

    fn word(&self, off: u64) -> Option<&Self::W> {
        let p = self.ptr(off, 8).ok()?;
        if !(p as usize).is_multiple_of(8) {
            return None;
        }
        // SAFETY: 8 bounds-checked, aligned bytes of the segment mapping (alive as long as
        // `self`); accessed atomically only. The word may belong to a block another process
        // just took (then the value read is stale, and the generation check rejects it).
        Some(unsafe { &*(p as *const std::sync::atomic::AtomicU64) })
    }

    fn free_block(&self, off: u64) -> bool {
        self.free(off).is_ok()
    }
}

/// A cache's memory in plain process memory (`len` bytes of atomic words from offset 0), for
/// tests without `/dev/shm` and for the loom model (with loom's atomics under `cfg(loom)`).
/// Freed blocks are only counted.
#[cfg(test)]
pub(crate) struct PlainMemory {
    words: Vec<crate::sync::atomic::AtomicU64>,
    pub(crate) freed: crate::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl PlainMemory {
    pub(crate) fn new(len: u64) -> PlainMemory {
        PlainMemory {
            words: (0..len.div_ceil(8))
                .map(|_| crate::sync::atomic::AtomicU64::new(0))
                .collect(),
            freed: crate::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
impl CacheMemory for PlainMemory {
    type W = crate::sync::atomic::AtomicU64;

    fn word(&self, off: u64) -> Option<&Self::W> {
        if !off.is_multiple_of(8) {
            return None;
        }
        self.words.get(usize::try_from(off / 8).ok()?)
    }

    fn free_block(&self, _off: u64) -> bool {
        self.freed.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// The size of class `c`.
pub(crate) fn class_size(c: usize) -> u64 {
    (4 + (c as u64 % 4)) << (c as u64 / 4 + 4)
}

/// The smallest class whose size is at least `n` (for `n <= MAX_CACHED`).
pub(crate) fn class_of(n: u64) -> usize {
    if n <= 64 {
        return 0;
    }
    let m = n - 1;
    let b = 63 - u64::from(m.leading_zeros());
    let e = b - 2;
    let s = (m >> e) - 4;
    ((e - 4) * 4 + s + 1) as usize
}

fn pack(generation: u64, offset: Option<u64>) -> u64 {
    (generation << 32) | offset.map_or(0xFFFF_FFFF, |o| o / 16)
}

fn unpack(v: u64) -> (u64, Option<u64>) {
    let low = v & 0xFFFF_FFFF;
    (v >> 32, (low != 0xFFFF_FFFF).then_some(low * 16))
}

/// The cache of one segment, as mapped in this process.
pub(crate) struct BlockCache {
    header: u64,
    /// An upper bound of the blocks the segment can hold: walks of the stacks stop there.
    max_blocks: u64,
}

impl BlockCache {
    /// Creates the cache in a fresh segment (must be its first allocation).
    pub(crate) fn create(seg: &ManagedSegment) -> Option<BlockCache> {
        if seg.segment_size() >= 1 << 36 {
            return None; // offsets / 16 must fit in 32 bits
        }
        let off = seg.allocate(HEADER_BYTES, 16).ok()?;
        if off != seg.first_block_offset() {
            // Not where other processes (and the monitor) look for it: run without a cache.
            let _ = seg.free(off);
            return None;
        }
        Self::init(seg, off, seg.segment_size())
    }

    /// Sets up a cache header at `header` in `mem` (nobody else uses it yet); `size` is the
    /// size of the memory (it bounds the walks of the stacks).
    pub(crate) fn init<M: CacheMemory>(mem: &M, header: u64, size: u64) -> Option<BlockCache> {
        let cache = BlockCache::at(header, size);
        for c in 0..CLASSES {
            cache.head(mem, c)?.store(EMPTY, Ordering::Relaxed);
            cache.freed_head(mem, c)?.store(EMPTY, Ordering::Relaxed);
        }
        mem.word(header + MAGIC_OFF)?
            .store(MAGIC, Ordering::Release);
        Some(cache)
    }

    fn at(header: u64, size: u64) -> BlockCache {
        BlockCache {
            header,
            max_blocks: size / class_size(0),
        }
    }

    /// Finds the cache of an existing segment (its first block), if it has one.
    pub(crate) fn find(seg: &ManagedSegment) -> Option<BlockCache> {
        if seg.segment_size() >= 1 << 36 {
            return None;
        }
        Self::open(seg, seg.first_block_offset(), seg.segment_size())
    }

    /// The cache whose header is at `header` in `mem` (of `size` bytes), if there is one.
    pub(crate) fn open<M: CacheMemory>(mem: &M, header: u64, size: u64) -> Option<BlockCache> {
        (mem.word(header + MAGIC_OFF)?.load(Ordering::Acquire) == MAGIC)
            .then(|| BlockCache::at(header, size))
    }

    /// The word at the start of line `k` (0: ready, 1: freed) of class `c`.
    fn line<'a, M: CacheMemory>(&self, mem: &'a M, c: usize, k: u64) -> Option<&'a M::W> {
        let first_line = (self.header + CLASS_BASE).next_multiple_of(LINE);
        mem.word(first_line + LINE * (2 * c as u64 + k))
    }

    /// The head of the ready stack of class `c` (allocations pop here), alone on its cache
    /// line.
    fn head<'a, M: CacheMemory>(&self, mem: &'a M, c: usize) -> Option<&'a M::W> {
        self.line(mem, c, 0)
    }

    /// The head of the freed stack of class `c` (frees push here), on the next line.
    fn freed_head<'a, M: CacheMemory>(&self, mem: &'a M, c: usize) -> Option<&'a M::W> {
        self.line(mem, c, 1)
    }

    /// Takes a cached block of class `c`: from the ready stack, or, when that is empty, the
    /// first of the freed stack, which it takes over whole (the rest becomes the ready stack).
    /// A pop in another thread during a take-over may find both stacks empty and miss (its
    /// caller allocates from the heap): blocks are never lost or handed out twice.
    pub(crate) fn pop<M: CacheMemory>(&self, mem: &M, c: usize) -> Option<u64> {
        let head = self.head(mem, c)?;
        let mut cur = head.load(Ordering::Acquire);
        loop {
            let (generation, block) = unpack(cur);
            let Some(block) = block else {
                return self.take_freed(mem, c, head, cur);
            };
            let next = mem.word(block)?.load(Ordering::Acquire);
            match head.compare_exchange_weak(
                cur,
                pack(generation + 1, (next != EMPTY).then_some(next)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(block),
                Err(actual) => cur = actual,
            }
        }
    }

    /// The ready stack was `empty` (its head's value): takes the freed stack over, keeps its
    /// first block and makes the others the ready stack.
    fn take_freed<M: CacheMemory>(
        &self,
        mem: &M,
        c: usize,
        head: &M::W,
        empty: u64,
    ) -> Option<u64> {
        let freed = self.freed_head(mem, c)?;
        let mut cur = freed.load(Ordering::Acquire);
        let first = loop {
            let (generation, first) = unpack(cur);
            first?;
            match freed.compare_exchange_weak(
                cur,
                pack(generation + 1, None),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break first?,
                Err(actual) => cur = actual,
            }
        };
        // The chain from `first` is ours alone now.
        let rest = mem.word(first)?.load(Ordering::Acquire);
        if rest == EMPTY {
            return Some(first);
        }
        let (generation, _) = unpack(empty);
        if head
            .compare_exchange(
                empty,
                pack(generation + 1, Some(rest)),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // Another thread made a ready stack meanwhile: put the rest on top of it. (A chain
            // that leaves the memory cannot be walked; its rest stays with the segment until
            // the session is cleaned, and `first` is still handed out.)
            if let Some(last) = self.last_of(mem, rest) {
                self.push_chain_to(mem, head, rest, last);
            }
        }
        Some(first)
    }

    /// The last block of the chain that starts at `first` (bounded by the blocks the segment
    /// can hold; `None` if the chain leaves the memory).
    fn last_of<M: CacheMemory>(&self, mem: &M, first: u64) -> Option<u64> {
        let mut last = first;
        for _ in 0..self.max_blocks {
            let next = mem.word(last)?.load(Ordering::Acquire);
            if next == EMPTY {
                return Some(last);
            }
            last = next;
        }
        None
    }

    /// Offers a freed block of class `c` to the cache (its freed stack); `false` if it cannot
    /// take it (the caller frees it to the allocator then). The cache holds at most what the
    /// segment holds, and is drained back into the allocator when an allocation finds no
    /// memory.
    ///
    /// A buffer of [`HOT_REUSE`] bytes or more goes onto the ready stack instead, so that the
    /// next allocation of its class takes the buffer freed last, whose bytes are still in the
    /// CPU cache: writing a large payload into a cold buffer costs more than the head's cache
    /// line does.
    pub(crate) fn push<M: CacheMemory>(&self, mem: &M, c: usize, block: u64) -> bool {
        let head = if class_size(c) >= HOT_REUSE {
            self.head(mem, c)
        } else {
            self.freed_head(mem, c)
        };
        head.is_some_and(|head| self.push_chain_to(mem, head, block, block))
    }

    /// Puts the chain `first`..=`last` (linked already, `last`'s link is overwritten) on the
    /// stack whose head is `head`.
    fn push_chain_to<M: CacheMemory>(&self, mem: &M, head: &M::W, first: u64, last: u64) -> bool {
        let Some(next) = mem.word(last) else {
            return false;
        };
        let mut cur = head.load(Ordering::Acquire);
        loop {
            let (generation, top) = unpack(cur);
            next.store(top.unwrap_or(EMPTY), Ordering::Release);
            match head.compare_exchange_weak(
                cur,
                pack(generation + 1, Some(first)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns every cached block to the allocator (when it ran out of memory).
    pub(crate) fn drain<M: CacheMemory>(&self, mem: &M) -> u64 {
        let mut freed = 0;
        for c in 0..CLASSES {
            while let Some(b) = self.pop(mem, c) {
                if mem.free_block(b) {
                    freed += class_size(c);
                }
            }
        }
        freed
    }

    /// The cache header and the blocks it holds (a snapshot, bounded by the blocks the segment
    /// can hold, so that a stack changing meanwhile cannot make it loop).
    fn blocks<M: CacheMemory>(&self, mem: &M) -> Vec<u64> {
        let mut out = vec![self.header];
        let bound = usize::try_from(self.max_blocks).unwrap_or(usize::MAX);
        let heads = (0..CLASSES).flat_map(|c| [self.head(mem, c), self.freed_head(mem, c)]);
        for head in heads {
            let Some(head) = head else { break };
            let mut next = unpack(head.load(Ordering::Acquire)).1;
            while let Some(b) = next.filter(|_| out.len() <= bound) {
                out.push(b);
                next = mem
                    .word(b)
                    .map(|w| w.load(Ordering::Acquire))
                    .filter(|n| *n != EMPTY);
            }
        }
        out
    }
}

/// The blocks of `seg` that belong to the transport rather than to messages: the cache header
/// and the free buffers the cache holds (a snapshot; it may be off by buffers moving meanwhile).
/// Lock-free and read-only, so the monitor can use it on a view.
pub fn transport_blocks(seg: &ManagedSegment) -> Vec<u64> {
    BlockCache::find(seg).map_or_else(Vec::new, |c| c.blocks(seg))
}

/// A managed segment together with its buffer cache, as this process maps it.
pub(crate) struct Segment {
    seg: ManagedSegment,
    cache: Option<BlockCache>,
}

impl std::ops::Deref for Segment {
    type Target = ManagedSegment;
    fn deref(&self) -> &ManagedSegment {
        &self.seg
    }
}

/// Buffer tag meaning "not from a size class" (freed straight to the allocator).
pub(crate) const NO_CLASS: u32 = 0;

impl Segment {
    /// A segment this process just created: sets up its cache.
    pub(crate) fn created(seg: ManagedSegment) -> Segment {
        let cache = BlockCache::create(&seg);
        Segment { seg, cache }
    }

    /// A segment created elsewhere: finds its cache.
    pub(crate) fn opened(seg: ManagedSegment) -> Segment {
        let cache = BlockCache::find(&seg);
        Segment { seg, cache }
    }

    /// Tries the cache for `need` bytes: `Ok(Some((handle, tag)))` on a hit, `Ok(None)` with the
    /// size to allocate and the tag to record otherwise.
    pub(crate) fn take_cached(&self, need: u64, align: u64) -> (Option<u64>, u64, u32) {
        match &self.cache {
            Some(cache) if align <= 16 && need <= MAX_CACHED => {
                let c = class_of(need);
                (cache.pop(&self.seg, c), class_size(c), c as u32 + 1)
            }
            _ => (None, need, NO_CLASS),
        }
    }

    /// Gives a freed buffer back (to its class's cache if it has one and the cache has room,
    /// else to the allocator) and wakes allocations waiting for memory.
    pub(crate) fn give_back(&self, handle: u64, tag: u32) -> crate::Result<()> {
        let Some(cache) = &self.cache else {
            return self.seg.free(handle);
        };
        let c = tag.wrapping_sub(1) as usize;
        let cached = tag != NO_CLASS && c < CLASSES && cache.push(&self.seg, c, handle);
        if !cached {
            self.seg.free(handle)?;
        }
        if cached && self.seg.waiters() > 0 {
            // Someone waits for memory: tell them a buffer came back (a free to the allocator
            // already did).
            self.seg.wake_waiters();
        }
        Ok(())
    }

    /// Waits until a buffer is given back or `timeout` passes; `seen` is
    /// [`Segment::freed_generation`] read before the failed attempt.
    pub(crate) fn wait_for_free(&self, seen: u32, timeout: Duration) {
        self.seg.wait_for_free(seen, timeout);
    }

    /// The current value of the "buffer given back" counter.
    pub(crate) fn freed_generation(&self) -> u32 {
        self.seg.free_generation()
    }

    /// Returns all cached buffers to the allocator; the number of bytes returned.
    pub(crate) fn drain_cache(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.drain(&self.seg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_tightly() {
        assert_eq!(class_size(0), 64);
        assert_eq!(class_size(CLASSES - 1), 112 << 20);
        for n in 1..=70_000u64 {
            let c = class_of(n);
            assert!(class_size(c) >= n, "{n} -> {c}");
            assert!(
                c == 0 || class_size(c - 1) < n,
                "{n} -> {c} is not the smallest"
            );
        }
        for n in [1u64 << 20, (1 << 20) + 1, 8 << 20, MAX_CACHED] {
            let c = class_of(n);
            assert!(class_size(c) >= n && class_size(c) <= n + n / 4 + 64);
        }
        assert!(class_of(MAX_CACHED) < CLASSES);
    }

    #[test]
    fn a_created_segment_has_a_cache_that_others_find_and_that_recycles_buffers() {
        use crate::alloc::{AllocationPolicy, SegmentOptions};
        use crate::test_util::TestSession;
        let s = TestSession::new("cache");
        {
            let opts = SegmentOptions::default();
            let seg =
                ManagedSegment::create(&s.id, 0, 1 << 20, AllocationPolicy::RbTreeBestFit, &opts)
                    .unwrap();
            let seg = Segment::created(seg);
            assert!(seg.cache.is_some(), "the creator sets up the cache");
            let other = Segment::opened(ManagedSegment::open(&s.id, 0, &opts).unwrap());
            assert!(other.cache.is_some(), "another mapping finds it");
            let (hit, need, tag) = seg.take_cached(100, 16);
            assert_eq!((hit, need), (None, class_size(class_of(100))));
            let b = seg.allocate(need, 16).unwrap();
            let used = seg.free_memory();
            other.give_back(b, tag).unwrap();
            assert_eq!(
                seg.free_memory(),
                used,
                "the freed buffer went to the cache"
            );
            assert_eq!(
                transport_blocks(&seg).len(),
                2,
                "cache header + one cached buffer"
            );
            let (hit, _, _) = seg.take_cached(105, 16);
            assert_eq!(hit, Some(b), "the same class reuses it");
            assert_eq!(transport_blocks(&other).len(), 1);
            seg.give_back(b, tag).unwrap();
            assert!(seg.drain_cache() > 0);
            assert_eq!(transport_blocks(&seg).len(), 1);
        }
        crate::management::cleanup_session(&s.id, crate::management::CleanupScope::Full).unwrap();
        s.assert_clean();
    }

    /// A cache over plain memory with room for `blocks` blocks after its header.
    pub(super) fn plain(blocks: usize) -> (PlainMemory, BlockCache, Vec<u64>) {
        let first = HEADER_BYTES.next_multiple_of(16);
        let mem = PlainMemory::new(first + 16 * blocks as u64);
        let cache = BlockCache::init(&mem, 0, 1 << 20).expect("header fits");
        let offs = (0..blocks as u64).map(|i| first + 16 * i).collect();
        (mem, cache, offs)
    }

    #[test]
    fn the_stacks_work_over_plain_memory() {
        let (mem, cache, b) = plain(4);
        assert!(
            BlockCache::open(&mem, 0, 1 << 20).is_some(),
            "the magic is set"
        );
        assert_eq!(cache.pop(&mem, 1), None);
        for x in &b {
            assert!(cache.push(&mem, 1, *x));
        }
        assert_eq!(cache.blocks(&mem).len(), 5, "header + 4");
        assert_eq!(cache.pop(&mem, 1), Some(b[3]), "LIFO");
        assert_eq!(cache.pop(&mem, 0), None, "another class is empty");
        assert_eq!(cache.drain(&mem), 3 * class_size(1));
        assert_eq!(mem.freed.load(Ordering::Relaxed), 3);
        assert_eq!(cache.blocks(&mem), [0], "only the header is left");
    }

    #[test]
    fn threads_pushing_and_popping_over_plain_memory_lose_nothing() {
        let (mem, cache, blocks) = plain(64);
        for b in &blocks {
            assert!(cache.push(&mem, 2, *b));
        }
        let taken: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut held = Vec::new();
                        for i in 0..20_000 {
                            if i % 3 != 2 {
                                if let Some(b) = cache.pop(&mem, 2) {
                                    held.push(b);
                                }
                            } else if let Some(b) = held.pop() {
                                assert!(cache.push(&mem, 2, b));
                            }
                        }
                        held
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = taken.into_iter().flatten().collect();
        while let Some(b) = cache.pop(&mem, 2) {
            all.push(b);
        }
        all.sort_unstable();
        assert_eq!(all, blocks, "every block exactly once");
    }

    #[test]
    fn the_cache_runs_in_front_of_a_heap_in_plain_memory() {
        use crate::alloc::AllocationPolicy;
        let seg = ManagedSegment::in_memory(0, 1 << 20, AllocationPolicy::SimpleSeqFit).unwrap();
        let seg = Segment::created(seg);
        assert!(seg.cache.is_some());
        let (hit, need, tag) = seg.take_cached(100, 16);
        assert_eq!(hit, None);
        let b = seg.allocate(need, 16).unwrap();
        let used = seg.free_memory();
        seg.give_back(b, tag).unwrap();
        assert_eq!(seg.free_memory(), used, "cached, not freed");
        assert_eq!(seg.take_cached(105, 16).0, Some(b), "the same class");
        seg.give_back(b, tag).unwrap();
        assert_eq!(seg.drain_cache(), class_size(class_of(100)));
        assert_eq!(transport_blocks(&seg).len(), 1);
        seg.verify().unwrap();
    }

    #[test]
    fn frees_go_to_the_freed_stack_and_an_empty_ready_stack_takes_it_over_whole() {
        let (mem, cache, b) = plain(4);
        const K: usize = 5;
        for x in &b[..3] {
            assert!(cache.push(&mem, K, *x));
        }
        assert_eq!(
            unpack(cache.head(&mem, K).unwrap().load(Ordering::Relaxed)).1,
            None,
            "frees do not touch the ready stack"
        );
        assert_eq!(
            cache.blocks(&mem).len(),
            4,
            "the monitor sees the freed ones"
        );
        // The ready stack is empty: the last freed block comes first, the rest becomes ready.
        assert_eq!(cache.pop(&mem, K), Some(b[2]));
        assert_eq!(
            unpack(cache.freed_head(&mem, K).unwrap().load(Ordering::Relaxed)).1,
            None,
            "taken over whole"
        );
        assert_eq!(
            unpack(cache.head(&mem, K).unwrap().load(Ordering::Relaxed)).1,
            Some(b[1])
        );
        // A free meanwhile waits on the freed stack until the ready one is empty again.
        assert!(cache.push(&mem, K, b[3]));
        assert_eq!(cache.pop(&mem, K), Some(b[1]));
        assert_eq!(cache.pop(&mem, K), Some(b[0]));
        assert_eq!(cache.pop(&mem, K), Some(b[3]));
        assert_eq!(cache.pop(&mem, K), None);
        assert_eq!(cache.blocks(&mem), [0]);
    }

    #[test]
    fn packing_round_trips() {
        assert_eq!(unpack(pack(7, Some(4096))), (7, Some(4096)));
        assert_eq!(unpack(pack(9, None)), (9, None));
        assert_eq!(unpack(EMPTY).1, None);
    }
}

/// loom models of the stacks (see the module documentation for how to run them).
#[cfg(all(test, loom))]
mod loom_models {
    use super::tests::plain;
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    const C: usize = 3;
    /// A class whose freed buffers go to the ready stack.
    const BIG: usize = 50;

    fn shared(blocks: usize) -> (Arc<(PlainMemory, BlockCache)>, Vec<u64>) {
        let (mem, cache, b) = plain(blocks);
        (Arc::new((mem, cache)), b)
    }

    /// Pops everything left; with `taken`, asserts that every block is there exactly once and
    /// that nothing else is left on the stacks.
    fn assert_exactly_once(
        s: &(PlainMemory, BlockCache),
        c: usize,
        mut taken: Vec<u64>,
        all: &[u64],
    ) {
        let (mem, cache) = s;
        while let Some(b) = cache.pop(mem, c) {
            taken.push(b);
        }
        taken.sort_unstable();
        assert_eq!(taken, all, "each block exactly once");
        assert_eq!(cache.blocks(mem), [0], "nothing left on the stacks");
    }

    /// The blocks the threads popped (each returns at most one).
    fn taken_by(threads: [thread::JoinHandle<Option<u64>>; 2]) -> Vec<u64> {
        threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect()
    }

    #[test]
    fn concurrent_pushes_lose_nothing() {
        loom::model(|| {
            let (s, b) = shared(2);
            let hs: Vec<_> = b
                .iter()
                .map(|x| {
                    let (s, x) = (s.clone(), *x);
                    thread::spawn(move || assert!(s.1.push(&s.0, C, x)))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_exactly_once(&s, C, Vec::new(), &b);
        });
    }

    #[test]
    fn a_push_racing_a_pop_loses_nothing() {
        // A small class (frees go to the freed stack) and a large one (to the ready stack).
        for c in [C, BIG] {
            loom::model(move || {
                let (s, b) = shared(2);
                assert!(s.1.push(&s.0, c, b[0]));
                let s1 = s.clone();
                let popper = thread::spawn(move || s1.1.pop(&s1.0, c));
                let s2 = s.clone();
                let x = b[1];
                let pusher = thread::spawn(move || assert!(s2.1.push(&s2.0, c, x)));
                pusher.join().unwrap();
                let got = popper.join().unwrap();
                assert!(got.is_some(), "a block was there all along");
                assert_exactly_once(&s, c, got.into_iter().collect(), &b);
            });
        }
    }

    #[test]
    fn two_pops_taking_the_freed_stack_over_lose_nothing() {
        loom::model(|| {
            // Freed: C -> B -> A, ready empty. Both threads pop; one takes the freed stack
            // over and installs B -> A as ready, possibly after the other made a ready stack
            // of its own (a block it freed again), so the rest goes on top of that.
            let (s, b) = shared(3);
            for x in &b {
                assert!(s.1.push(&s.0, C, *x));
            }
            let s1 = s.clone();
            let t1 = thread::spawn(move || s1.1.pop(&s1.0, C));
            let s2 = s.clone();
            let t2 = thread::spawn(move || {
                let got = s2.1.pop(&s2.0, C);
                if let Some(x) = got {
                    assert!(s2.1.push(&s2.0, C, x));
                }
                s2.1.pop(&s2.0, C)
            });
            let taken = taken_by([t1, t2]);
            // A pop that comes while the other thread holds the freed stack in its hands (taken
            // over, not yet made ready) misses: its caller allocates from the heap instead.
            assert!(!taken.is_empty(), "the first pop always finds a block");
            assert_exactly_once(&s, C, taken, &b);
        });
    }

    #[test]
    fn a_take_over_that_finds_a_new_ready_stack_puts_its_rest_on_top() {
        loom::model(|| {
            // Freed: B -> A. One thread pops (takes B -> A over); the other frees D and E and
            // pops, which can take E -> D over and make D the ready stack first: then the
            // first thread's rest (A) goes on top of it.
            let (s, b) = shared(4);
            let (a, bb, d, e) = (b[0], b[1], b[2], b[3]);
            assert!(s.1.push(&s.0, C, a));
            assert!(s.1.push(&s.0, C, bb));
            let s1 = s.clone();
            let t1 = thread::spawn(move || s1.1.pop(&s1.0, C));
            let s2 = s.clone();
            let t2 = thread::spawn(move || {
                assert!(s2.1.push(&s2.0, C, d));
                assert!(s2.1.push(&s2.0, C, e));
                s2.1.pop(&s2.0, C)
            });
            let taken = taken_by([t1, t2]);
            assert!(!taken.is_empty());
            assert_exactly_once(&s, C, taken, &b);
        });
    }

    #[test]
    fn the_aba_interleaving_is_caught_by_the_generation() {
        loom::model(|| {
            // Stack: A -> B. One thread pops; the other pops A and B and pushes A back. A pop
            // that read head A and link B before that must not install B (taken) as the head.
            let (s, b) = shared(2);
            let (a, bb) = (b[0], b[1]);
            assert!(s.1.push(&s.0, C, bb));
            assert!(s.1.push(&s.0, C, a));
            let s1 = s.clone();
            let t1 = thread::spawn(move || s1.1.pop(&s1.0, C));
            let s2 = s.clone();
            let t2 = thread::spawn(move || {
                let first = s2.1.pop(&s2.0, C);
                let second = s2.1.pop(&s2.0, C);
                let mut kept = Vec::new();
                if let Some(x) = first {
                    assert!(s2.1.push(&s2.0, C, x));
                }
                kept.extend(second);
                kept
            });
            let mut taken = t2.join().unwrap();
            taken.extend(t1.join().unwrap());
            assert_exactly_once(&s, C, taken, &[a, bb]);
        });
    }
}
