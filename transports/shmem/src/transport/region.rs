//! Unmanaged regions of the shmem transport (spec §5.7).
//!
//! A region `fmq_<shmId>_rg_<id>` (or a file `<path>fmq_<shmId>_rg_<id>`) is filled by its
//! creator; messages point into it by offset. When the last holder of a block releases it (in
//! any process), the block goes into the region's acknowledgement queue `fmq_<shmId>_rgq_<id>`,
//! from which the creator's ack thread delivers it to the single or bulk callback. Copies of a
//! region message share a reference count in `fmq_<shmId>_rrc_<id>`.
//!
//! Unlike FairMQ, a region without a callback does not accumulate acknowledgements (releases
//! are dropped when no consumer is registered), and file-backed regions are registered in the
//! session like any other, so events, remote lookups and cleanup find them.

use super::wire::MetaHeader;
use crate::alloc::{AllocationPolicy, ManagedSegment, SegmentOptions};
use crate::ids::ShmId;
use crate::segment::{CreateOptions, Location, ObjectKind, OpenOptions, SharedObject};
use crate::sync::{futex_wait, futex_wake_all, RawRobustMutex};
use fairmq_transport::{RegionBlock, RegionCallback, TransportError, UnmanagedRegion};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Capacity of an acknowledgement queue, in blocks.
pub const QUEUE_CAPACITY: u64 = 65_536;
/// Size of the reference-count segment when the region config says 0.
const MIN_RC_SEGMENT: u64 = 1 << 20;
/// Most blocks handed to one bulk callback.
const MAX_BATCH: usize = 256;

fn err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Region(e.to_string())
}

#[repr(C)]
struct QueueHeader {
    mutex: RawRobustMutex,
    head: AtomicU64,
    tail: AtomicU64,
    capacity: AtomicU64,
    /// 1 while the creator consumes acknowledgements.
    consumer: AtomicU32,
    /// Futex word: bumped on every push and pop.
    signal: AtomicU32,
}

#[repr(C)]
struct Entry {
    offset: AtomicU64,
    size: AtomicU64,
    hint: AtomicU64,
}

const QUEUE_HDR: u64 = 0;
fn entries_off() -> u64 {
    (std::mem::size_of::<QueueHeader>() as u64).next_multiple_of(64)
}

/// The acknowledgement queue of one region: many producers (any process), one consumer (the
/// creator), guarded by a robust lock so that a producer killed mid-push blocks nobody.
pub(crate) struct AckQueue {
    obj: SharedObject,
}

impl AckQueue {
    fn open_or_create(shm_id: &ShmId, id: u16) -> Result<AckQueue, TransportError> {
        let size = crate::segment::HEADER_SIZE
            + entries_off()
            + QUEUE_CAPACITY * std::mem::size_of::<Entry>() as u64;
        let mut co = CreateOptions::new(size);
        co.size_option = String::new();
        let (obj, _) = SharedObject::open_or_create_with(
            &Location::shm(shm_id.region_queue_name(id)),
            ObjectKind::RegionQueue,
            &co,
            &OpenOptions::default(),
            |o| {
                // SAFETY: QueueHeader consists of a pthread mutex and atomics; the object is
                // not yet visible to other processes.
                let h: &QueueHeader = unsafe { o.ref_at(o.data_offset() + QUEUE_HDR) };
                // SAFETY: initialised once, before publication.
                unsafe { h.mutex.init() }
                    .map_err(|e| crate::Error::io("pthread_mutex_init", o.name(), e))?;
                h.capacity.store(QUEUE_CAPACITY, Ordering::Relaxed);
                Ok(())
            },
        )
        .map_err(err)?;
        Ok(AckQueue { obj })
    }

    fn hdr(&self) -> &QueueHeader {
        // SAFETY: the header was initialised before publication; it holds only atomics and a
        // robust process-shared mutex.
        unsafe { self.obj.ref_at(self.obj.data_offset() + QUEUE_HDR) }
    }

    fn entry(&self, i: u64) -> &Entry {
        let cap = self
            .hdr()
            .capacity
            .load(Ordering::Relaxed)
            .clamp(1, QUEUE_CAPACITY);
        let off = self.obj.data_offset()
            + entries_off()
            + (i % cap) * std::mem::size_of::<Entry>() as u64;
        // SAFETY: within the object (capacity is clamped to what was allocated); atomics only.
        unsafe { self.obj.ref_at(off) }
    }

    fn set_consumer(&self, on: bool) {
        self.hdr().consumer.store(u32::from(on), Ordering::Release);
        self.hdr().signal.fetch_add(1, Ordering::AcqRel);
        futex_wake_all(&self.hdr().signal);
    }

    /// Appends a released block; waits while the queue is full and a consumer exists; drops the
    /// block when nobody consumes acknowledgements.
    fn push(&self, offset: u64, size: u64, hint: u64) {
        let h = self.hdr();
        loop {
            if h.consumer.load(Ordering::Acquire) == 0 {
                return;
            }
            let seen = h.signal.load(Ordering::Acquire);
            {
                // SAFETY: the mutex was initialised at creation.
                let Ok(mut guard) = (unsafe { h.mutex.lock() }) else {
                    return;
                };
                if guard.owner_died() {
                    // head/tail are single stores made after the entry is complete: the queue
                    // is consistent whatever instruction the dead owner was at.
                    guard.mark_consistent();
                }
                let (head, tail) = (
                    h.head.load(Ordering::Acquire),
                    h.tail.load(Ordering::Acquire),
                );
                if tail - head < h.capacity.load(Ordering::Relaxed) {
                    let e = self.entry(tail);
                    e.offset.store(offset, Ordering::Relaxed);
                    e.size.store(size, Ordering::Relaxed);
                    e.hint.store(hint, Ordering::Relaxed);
                    h.tail.store(tail + 1, Ordering::Release);
                    drop(guard);
                    h.signal.fetch_add(1, Ordering::AcqRel);
                    futex_wake_all(&h.signal);
                    return;
                }
            }
            futex_wait(&h.signal, seen, Duration::from_millis(100));
        }
    }

    /// Takes up to `max` blocks, waiting up to `wait` for the first.
    fn pop(&self, max: usize, wait: Duration, out: &mut Vec<(u64, u64, u64)>) {
        let h = self.hdr();
        let seen = h.signal.load(Ordering::Acquire);
        if h.tail.load(Ordering::Acquire) == h.head.load(Ordering::Acquire) {
            futex_wait(&h.signal, seen, wait);
        }
        // SAFETY: the mutex was initialised at creation.
        let Ok(mut guard) = (unsafe { h.mutex.lock() }) else {
            return;
        };
        if guard.owner_died() {
            guard.mark_consistent();
        }
        let (mut head, tail) = (
            h.head.load(Ordering::Acquire),
            h.tail.load(Ordering::Acquire),
        );
        while head < tail && out.len() < max {
            let e = self.entry(head);
            out.push((
                e.offset.load(Ordering::Relaxed),
                e.size.load(Ordering::Relaxed),
                e.hint.load(Ordering::Relaxed),
            ));
            head += 1;
        }
        h.head.store(head, Ordering::Release);
        drop(guard);
        if !out.is_empty() {
            h.signal.fetch_add(1, Ordering::AcqRel);
            futex_wake_all(&h.signal);
        }
    }
}

/// This process's mapping of one region, shared by the creator object and all messages.
pub(crate) struct RegionHandle {
    id: u16,
    shm_id: ShmId,
    obj: SharedObject,
    size: u64,
    queue: AckQueue,
    rc_segment_size: u64,
    rrc: OnceLock<Arc<ManagedSegment>>,
}

impl RegionHandle {
    pub(crate) fn id(&self) -> u16 {
        self.id
    }

    pub(crate) fn base(&self) -> usize {
        self.obj.data_ptr() as usize
    }

    /// The address of `len` bytes at `offset`, bounds-checked.
    pub(crate) fn address_of(&self, offset: u64, len: u64) -> Result<usize, TransportError> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(TransportError::Region(format!(
                "trying to create region message with data from outside the region: offset {offset} + size {len} > region {} size {}",
                self.id, self.size
            )));
        }
        Ok(self.base() + offset as usize)
    }

    fn rrc(&self) -> Result<&Arc<ManagedSegment>, TransportError> {
        if let Some(s) = self.rrc.get() {
            return Ok(s);
        }
        let size = self.rc_segment_size.max(MIN_RC_SEGMENT);
        let loc = Location::shm(self.shm_id.region_refcount_name(self.id));
        let opts = SegmentOptions::default();
        let mut attempt = 0;
        let seg = loop {
            match ManagedSegment::open_at(&loc, self.id, &opts) {
                Ok(s) => break s,
                Err(crate::Error::NotFound { .. }) if attempt < 100 => {}
                Err(e) => return Err(err(e)),
            }
            match ManagedSegment::create_at(
                &loc,
                self.id,
                size,
                AllocationPolicy::SimpleSeqFit,
                &opts,
            ) {
                Ok(s) => break s,
                Err(crate::Error::AlreadyExists { .. }) => attempt += 1,
                Err(e) => return Err(err(e)),
            }
        };
        Ok(self.rrc.get_or_init(|| Arc::new(seg)))
    }

    fn counter(&self, handle: i64) -> Result<&AtomicU32, TransportError> {
        let seg = self.rrc()?;
        let p = seg.ptr(handle as u64, 4).map_err(err)?;
        // SAFETY: 4 bounds-checked, 16-aligned bytes of a live counter allocation; only accessed
        // atomically; the mapping lives as long as `self`.
        Ok(unsafe { &*(p as *const AtomicU32) })
    }

    /// A copy of a region message is being made: returns the shared count's handle, creating it
    /// (with value 2) on the first copy.
    pub(crate) fn share(&self, rc: &AtomicI64) -> Result<i64, TransportError> {
        loop {
            let cur = rc.load(Ordering::Acquire);
            if cur >= 0 {
                self.counter(cur)?.fetch_add(1, Ordering::AcqRel);
                return Ok(cur);
            }
            let seg = self.rrc()?;
            let h = seg.allocate(4, 16).map_err(|e| {
                TransportError::BadAlloc(format!(
                    "Insufficient space in the reference count segment {}: {e}",
                    self.id
                ))
            })? as i64;
            self.counter(h)?.store(2, Ordering::Release);
            if rc
                .compare_exchange(-1, h, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(h);
            }
            let _ = seg.free(h as u64);
        }
    }

    /// Checks that `handle` (the `shared` field of a received header) names a live reference
    /// count of this region's refcount segment.
    pub(crate) fn check_shared(&self, handle: i64) -> Result<(), TransportError> {
        self.rrc()?.check_live(handle as u64, 4).map_err(err)
    }

    pub(crate) fn refcount_value(&self, handle: i64) -> u32 {
        if handle < 0 {
            return 1;
        }
        self.counter(handle)
            .map(|c| c.load(Ordering::Acquire))
            .unwrap_or(1)
    }

    /// This holder lets go of a block: the last one acknowledges it to the creator.
    pub(crate) fn release(&self, meta: &MetaHeader) {
        if meta.shared >= 0 {
            match self.counter(meta.shared) {
                Ok(c) => {
                    if c.fetch_sub(1, Ordering::AcqRel) != 1 {
                        return;
                    }
                    if let Ok(seg) = self.rrc() {
                        let _ = seg.free(meta.shared as u64);
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "region {}: could not release a copied message: {e}",
                        self.id
                    );
                    return;
                }
            }
        }
        self.queue.push(meta.handle as u64, meta.size, meta.hint);
    }

    /// Opens a region that another process created (a viewer).
    pub(crate) fn open(
        shm_id: &ShmId,
        info: &crate::management::RegionInfo,
    ) -> Result<Arc<RegionHandle>, TransportError> {
        let loc = region_location(shm_id, info.id, &info.path);
        let obj =
            SharedObject::open(&loc, ObjectKind::Region, &OpenOptions::default()).map_err(|e| {
                TransportError::Region(format!(
                    "Could not open view for region {} ({}): {e}",
                    info.id,
                    loc.display_name()
                ))
            })?;
        Ok(Arc::new(RegionHandle {
            id: info.id,
            shm_id: shm_id.clone(),
            size: obj.data_len(),
            obj,
            queue: AckQueue::open_or_create(shm_id, info.id)?,
            rc_segment_size: info.rc_segment_size,
            rrc: OnceLock::new(),
        }))
    }
}

/// Where region `id` lives: `fmq_<shmId>_rg_<id>` in /dev/shm, or `<path>fmq_<shmId>_rg_<id>`.
pub(crate) fn region_location(shm_id: &ShmId, id: u16, path: &str) -> Location {
    if path.is_empty() {
        Location::shm(shm_id.region_name(id))
    } else {
        Location::file(format!("{path}{}", shm_id.region_name(id)))
    }
}

/// What the creator's region object needs to unregister itself.
pub(crate) trait RegionOwner: Send + Sync {
    /// Marks the region destroyed in the session registry.
    fn region_destroyed(&self, id: u16);
}

/// A region created by this process.
pub struct ShmRegion {
    handle: Arc<RegionHandle>,
    linger: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    remove_on_destruction: bool,
    location: Location,
    owner: Arc<dyn RegionOwner>,
}

impl ShmRegion {
    /// Creates (or, for an existing object, opens) region `id` and starts delivering
    /// acknowledgements to `callback`.
    pub(crate) fn create(
        shm_id: &ShmId,
        id: u16,
        config: &fairmq_transport::RegionConfig,
        callback: RegionCallback,
        owner: Arc<dyn RegionOwner>,
    ) -> Result<(ShmRegion, bool), TransportError> {
        if config.size == 0 {
            return Err(TransportError::Region(
                "region size is 0; give RegionConfig::size in bytes".into(),
            ));
        }
        let location = region_location(shm_id, id, &config.path);
        let mut co = CreateOptions::new(crate::segment::HEADER_SIZE + config.size as u64);
        co.lock_memory = config.lock;
        co.zero = config.zero;
        co.size_option = "RegionConfig::size".into();
        let oo = OpenOptions {
            lock_memory: config.lock,
            ..OpenOptions::default()
        };
        let (obj, created) =
            SharedObject::open_or_create_with(&location, ObjectKind::Region, &co, &oo, |_| Ok(()))
                .map_err(err)?;
        if obj.data_len() != config.size as u64 {
            return Err(TransportError::Region(format!(
                "Created/opened region size ({}) does not match configured size ({})",
                obj.data_len(),
                config.size
            )));
        }
        let handle = Arc::new(RegionHandle {
            id,
            shm_id: shm_id.clone(),
            size: obj.data_len(),
            obj,
            queue: AckQueue::open_or_create(shm_id, id)?,
            rc_segment_size: config.rc_segment_size as u64,
            rrc: OnceLock::new(),
        });
        let linger = Arc::new(AtomicU32::new(config.linger_ms));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match callback {
            RegionCallback::None => None,
            cb => {
                handle.queue.set_consumer(true);
                let (h, s, l) = (handle.clone(), stop.clone(), linger.clone());
                Some(
                    std::thread::Builder::new()
                        .name(format!("fmq-region-{id}-acks"))
                        .spawn(move || ack_loop(h, cb, s, l))
                        .map_err(err)?,
                )
            }
        };
        Ok((
            ShmRegion {
                handle,
                linger,
                stop,
                thread,
                remove_on_destruction: config.remove_on_destruction,
                location,
                owner,
            },
            created,
        ))
    }

    pub(crate) fn handle(&self) -> &Arc<RegionHandle> {
        &self.handle
    }
}

fn ack_loop(
    h: Arc<RegionHandle>,
    cb: RegionCallback,
    stop: Arc<AtomicBool>,
    linger: Arc<AtomicU32>,
) {
    let base = h.base();
    let mut raw = Vec::with_capacity(MAX_BATCH);
    let mut blocks = Vec::with_capacity(MAX_BATCH);
    let mut stop_at: Option<Instant> = None;
    loop {
        raw.clear();
        h.queue.pop(MAX_BATCH, Duration::from_millis(50), &mut raw);
        blocks.clear();
        blocks.extend(raw.iter().map(|&(offset, size, hint)| RegionBlock {
            ptr: base + offset as usize,
            offset: offset as usize,
            size: size as usize,
            hint,
        }));
        cb.deliver(&blocks);
        if stop.load(Ordering::Acquire) {
            let deadline = *stop_at.get_or_insert_with(|| {
                Instant::now() + Duration::from_millis(linger.load(Ordering::Relaxed).into())
            });
            if raw.is_empty() && Instant::now() >= deadline {
                break;
            }
        }
    }
    h.queue.set_consumer(false);
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.owner.region_destroyed(self.handle.id);
        let shm_id = &self.handle.shm_id;
        if self.remove_on_destruction {
            let _ = SharedObject::remove(&self.location);
            let _ =
                SharedObject::remove(&Location::shm(shm_id.region_refcount_name(self.handle.id)));
        }
        let _ = SharedObject::remove(&Location::shm(shm_id.region_queue_name(self.handle.id)));
    }
}

impl UnmanagedRegion for ShmRegion {
    fn id(&self) -> u16 {
        self.handle.id
    }
    fn size(&self) -> usize {
        self.handle.size as usize
    }
    fn base_address(&self) -> usize {
        self.handle.base()
    }
    fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), TransportError> {
        let addr = self.handle.address_of(offset as u64, bytes.len() as u64)?;
        // SAFETY: bounds-checked range of the region mapping, which `self` keeps alive. Region
        // memory is the creator's to write; blocks in flight are the caller's responsibility,
        // as in FairMQ (the callback says when a block is free again).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
        Ok(())
    }
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let addr = self.handle.address_of(offset as u64, out.len() as u64)?;
        // SAFETY: bounds-checked range of the live mapping.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }
    fn linger_ms(&self) -> u32 {
        self.linger.load(Ordering::Relaxed)
    }
    fn set_linger_ms(&self, ms: u32) {
        self.linger.store(ms, Ordering::Relaxed);
    }
    fn transport(&self) -> &'static str {
        crate::transport::NAME
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
