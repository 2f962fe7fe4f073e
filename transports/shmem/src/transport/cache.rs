//! A lock-free cache of freed message buffers in front of a managed segment's allocator.
//!
//! The shmem pattern is "the sender allocates, the receiver frees", in two processes, at up to
//! millions of messages per second. Going through the allocator's robust lock twice per message
//! makes the two processes contend on one futex. Instead, a freed buffer of a common size goes
//! onto a lock-free stack of its size class (one compare-and-swap), and the next allocation of
//! that class takes it from there (one compare-and-swap). Only misses reach the allocator.
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

use crate::alloc::ManagedSegment;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Number of size classes: four per power of two, from 64 B to 112 MiB.
pub(crate) const CLASSES: usize = 84;
/// Largest request (header included) that is cached.
pub(crate) const MAX_CACHED: u64 = 64 << 20;
const MAGIC: u64 = u64::from_le_bytes(*b"FMQCACH4");
const EMPTY: u64 = u64::MAX;

#[repr(C)]
struct CacheHeader {
    magic: AtomicU64,
    /// Bytes currently held by the cache.
    cached: AtomicU64,
    /// Buffers currently held by the cache.
    count: AtomicU64,

    /// Per class: `generation << 32 | (offset / 16)`, or EMPTY's low half for an empty stack.
    heads: [AtomicU64; CLASSES],
}

/// Bytes the cache header takes in the segment.
pub(crate) const HEADER_BYTES: u64 = std::mem::size_of::<CacheHeader>() as u64;

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
    limit: u64,
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
        let cache = BlockCache {
            header: off,
            limit: seg.segment_size(),
        };
        let h = cache.hdr(seg)?;
        h.cached.store(0, Ordering::Relaxed);
        h.count.store(0, Ordering::Relaxed);

        for head in &h.heads {
            head.store(EMPTY, Ordering::Relaxed);
        }
        h.magic.store(MAGIC, Ordering::Release);
        Some(cache)
    }

    /// Finds the cache of an existing segment (its first block), if it has one.
    pub(crate) fn find(seg: &ManagedSegment) -> Option<BlockCache> {
        if seg.segment_size() >= 1 << 36 {
            return None;
        }
        let cache = BlockCache {
            header: seg.first_block_offset(),
            limit: seg.segment_size(),
        };
        (cache.hdr(seg)?.magic.load(Ordering::Acquire) == MAGIC).then_some(cache)
    }

    fn hdr<'a>(&self, seg: &'a ManagedSegment) -> Option<&'a CacheHeader> {
        let p = seg.ptr(self.header, HEADER_BYTES).ok()?;
        if !(p as usize).is_multiple_of(std::mem::align_of::<CacheHeader>()) {
            return None;
        }
        // SAFETY: HEADER_BYTES bounds-checked, aligned bytes inside the mapping, which lives as
        // long as `seg`; the header holds only atomics, valid for any bit pattern.
        Some(unsafe { &*(p as *const CacheHeader) })
    }

    fn next_word(seg: &ManagedSegment, block: u64) -> Option<&AtomicU64> {
        let p = seg.ptr(block, 8).ok()?;
        if !(p as usize).is_multiple_of(8) {
            return None;
        }
        // SAFETY: 8 bounds-checked, aligned bytes of the segment mapping (alive as long as
        // `seg`); accessed atomically. The word may belong to a block another process just took
        // (then the value read is stale, and the generation check rejects it).
        Some(unsafe { &*(p as *const AtomicU64) })
    }

    /// Takes a cached block of class `c`.
    pub(crate) fn pop(&self, seg: &ManagedSegment, c: usize) -> Option<u64> {
        let head = &self.hdr(seg)?.heads[c];
        let mut cur = head.load(Ordering::Acquire);
        loop {
            let (generation, block) = unpack(cur);
            let block = block?;
            let next = Self::next_word(seg, block)?.load(Ordering::Acquire);
            match head.compare_exchange_weak(
                cur,
                pack(generation + 1, (next != EMPTY).then_some(next)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let h = self.hdr(seg)?;
                    h.cached.fetch_sub(class_size(c), Ordering::Relaxed);
                    h.count.fetch_sub(1, Ordering::Relaxed);
                    return Some(block);
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Offers a freed block of class `c` to the cache; `false` if the cache is full (the caller
    /// frees it to the allocator then).
    pub(crate) fn push(&self, seg: &ManagedSegment, c: usize, block: u64) -> bool {
        let Some(h) = self.hdr(seg) else { return false };
        let size = class_size(c);
        if h.cached.fetch_add(size, Ordering::Relaxed) + size > self.limit {
            h.cached.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        let Some(next) = Self::next_word(seg, block) else {
            h.cached.fetch_sub(size, Ordering::Relaxed);
            return false;
        };
        let head = &h.heads[c];
        let mut cur = head.load(Ordering::Acquire);
        loop {
            let (generation, top) = unpack(cur);
            next.store(top.unwrap_or(EMPTY), Ordering::Release);
            match head.compare_exchange_weak(
                cur,
                pack(generation + 1, Some(block)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    h.count.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns every cached block to the allocator (when it ran out of memory).
    pub(crate) fn drain(&self, seg: &ManagedSegment) -> u64 {
        let mut freed = 0;
        for c in 0..CLASSES {
            while let Some(b) = self.pop(seg, c) {
                if seg.free(b).is_ok() {
                    freed += class_size(c);
                }
            }
        }
        freed
    }
}

/// The blocks of `seg` that belong to the transport rather than to messages: the cache header
/// and the free buffers the cache holds (a snapshot; it may be off by buffers moving meanwhile).
/// Lock-free and read-only, so the monitor can use it on a view.
pub fn transport_blocks(seg: &ManagedSegment) -> Vec<u64> {
    let Some(cache) = BlockCache::find(seg) else {
        return Vec::new();
    };
    let mut out = vec![cache.header];
    let Some(h) = cache.hdr(seg) else { return out };
    let bound = h.count.load(Ordering::Relaxed) as usize + CLASSES;
    for head in &h.heads {
        let mut next = unpack(head.load(Ordering::Acquire)).1;
        while let Some(b) = next.filter(|_| out.len() <= bound) {
            out.push(b);
            next = BlockCache::next_word(seg, b)
                .map(|w| w.load(Ordering::Acquire))
                .filter(|n| *n != EMPTY);
        }
    }
    out
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

    #[test]
    fn packing_round_trips() {
        assert_eq!(unpack(pack(7, Some(4096))), (7, Some(4096)));
        assert_eq!(unpack(pack(9, None)), (9, None));
        assert_eq!(unpack(EMPTY).1, None);
    }
}
