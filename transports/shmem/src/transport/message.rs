//! Messages of the shmem transport: a [`MetaHeader`] plus this process's view of the payload.
//!
//! A managed buffer starts with an 8-byte header `{refcount: u32, user_offset: u16, size class:
//! u16}` at the allocation's offset (the *handle* that travels on the wire), followed by the
//! buffer's 8-byte **tag**; the payload follows at `handle + user_offset`, aligned as requested
//! (at least 16, so the tag always fits in front of it), or, without a requested alignment, on
//! the next 64-byte boundary (a cache line). The sender allocates and writes in
//! place; a successful send hands the buffer to the receiver without touching the count; the
//! last holder (in whichever process) frees it. `copy_from` increments the count.
//!
//! # Received descriptors are checked before use
//!
//! A received header is outside input. [`ShmMessage::adopt_sealed`] accepts it only if it names
//! a live buffer of this session, before anything is read through it or could be freed:
//!
//! * managed: the segment exists in this session; the handle is the user-data offset of an
//!   allocated block below the heap's committed mark ([`crate::Allocator::check_live`], lock
//!   free); the buffer header's user offset is sane and the block covers `user_offset + size`;
//!   the reference count is not 0; and the tag is not 0 (0 = released) and equals the tag the
//!   sender's frame carries. Tags are drawn anew for every allocation (also for a buffer the
//!   cache hands out again) and cleared when the last holder releases the buffer, before it
//!   goes back to the cache or the allocator: a replayed descriptor of a consumed buffer fails
//!   this check even after the block was reused.
//! * region: the region is registered (and not destroyed); `handle + size` lies inside it; a
//!   shared reference count (`shared`) names a live allocation of the region's refcount segment.
//!
//! The frame's session secret is checked by the socket before any of this (see
//! [`super::wire`]). A refused header leaves the message empty and touches nothing.

use super::cache::Segment;
use super::factory::Shared;
use super::region::RegionHandle;
use super::wire::MetaHeader;
use fairmq_transport::{Message, OwnedBuffer, TransportError};
use std::any::Any;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Size of the per-buffer header in front of a managed payload.
pub(crate) const BUF_HEADER: u64 = 8;
/// Offset of the buffer's tag from the handle (between the header and the payload).
const TAG_OFFSET: u64 = 8;
/// Where a payload starts without a requested alignment: the next multiple of this after the
/// buffer header and tag (a cache line).
const DEFAULT_LINE: u64 = 64;

/// Where a message's payload is mapped in this process.
#[derive(Clone)]
pub(crate) enum Mapping {
    /// No payload.
    None,
    /// A managed segment buffer.
    Managed(Arc<Segment>),
    /// A block of an unmanaged region.
    Region(Arc<RegionHandle>),
}

/// A shmem transport message.
pub struct ShmMessage {
    pub(crate) shared: Arc<Shared>,
    pub(crate) meta: MetaHeader,
    /// Address of the payload in this process (0 when there is none).
    pub(crate) addr: usize,
    pub(crate) mapping: Mapping,
    alignment: Option<usize>,
    /// For region payloads: handle of the shared reference count once the block was copied
    /// (-1 before). Atomic because `copy_from` sets it on the message being copied.
    pub(crate) region_rc: AtomicI64,
}

/// The reference count of a managed buffer.
pub(crate) fn refcount(seg: &Segment, handle: u64) -> Result<&AtomicU32, TransportError> {
    let p = seg
        .ptr(handle, BUF_HEADER)
        .map_err(|e| TransportError::Message(e.to_string()))?;
    // SAFETY: `p` points to BUF_HEADER bytes inside the mapping (bounds-checked by `ptr`),
    // 4-aligned (allocations are 16-aligned), and the mapping lives as long as `seg`, which the
    // returned reference borrows. The count is only accessed atomically by every process.
    Ok(unsafe { &*(p as *const AtomicU32) })
}

/// The tag word of a managed buffer (see the module documentation).
fn tag_word(seg: &Segment, handle: u64) -> Result<&AtomicU64, TransportError> {
    let p = seg
        .ptr(handle + TAG_OFFSET, 8)
        .map_err(|e| TransportError::Message(e.to_string()))?;
    if !(p as usize).is_multiple_of(8) {
        return Err(TransportError::Message(format!(
            "buffer handle {handle} is not aligned"
        )));
    }
    // SAFETY: 8 bounds-checked, 8-aligned bytes inside the mapping, which lives as long as
    // `seg` (borrowed by the result); only accessed atomically.
    Ok(unsafe { &*(p as *const AtomicU64) })
}

/// The tag of the managed buffer at `handle` (0 if it cannot be read).
pub(crate) fn buffer_tag_of(seg: &Segment, handle: u64) -> u64 {
    tag_word(seg, handle).map_or(0, |w| w.load(Ordering::Acquire))
}

/// A new, never-0 tag for a buffer allocated at `handle`: unique per allocation in this
/// process (a counter), per process (the pid) and per session (the secret).
fn new_tag(secret: u64, handle: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The pid, read once: `getpid` is a system call, and this runs for every allocation. (A
    // process forked after its first allocation keeps its parent's value; its counter still
    // makes its tags differ from those it hands out later.)
    static PID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let pid = *PID.get_or_init(|| u64::from(std::process::id()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut z = secret ^ handle.rotate_left(29) ^ (pid << 40) ^ n;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

/// The size-class tag recorded in a managed buffer's header.
fn buffer_tag(seg: &Segment, handle: u64) -> u32 {
    match seg.ptr(handle + 4, 4) {
        // SAFETY: 4 bounds-checked, 4-aligned bytes of the buffer header (alive: we are its last
        // holder); read atomically.
        Ok(p) => unsafe { (*(p as *const AtomicU32)).load(Ordering::Relaxed) >> 16 },
        Err(_) => 0,
    }
}

impl ShmMessage {
    pub(crate) fn empty(shared: Arc<Shared>, alignment: Option<usize>) -> Self {
        ShmMessage {
            shared,
            meta: MetaHeader::EMPTY,
            addr: 0,
            mapping: Mapping::None,
            alignment: alignment.filter(|a| *a > 1),
            region_rc: AtomicI64::new(-1),
        }
    }

    /// Allocates `size` bytes in this device's segment (waiting for memory if it is full).
    pub(crate) fn allocate(
        shared: Arc<Shared>,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<Self, TransportError> {
        let mut m = Self::empty(shared, alignment);
        m.alloc(size)?;
        Ok(m)
    }

    fn alloc(&mut self, size: usize) -> Result<(), TransportError> {
        self.release();
        if size == 0 {
            return Ok(());
        }
        let seg = self.shared.own_segment().clone();
        let (handle, tag, user_off) = match self.alignment {
            // Without a requested alignment the payload still starts on a cache line: the
            // block (16-aligned, from the cache) gets the slack to move it there. A payload
            // 16 bytes into a line costs `memset`/`memcpy` of a whole buffer about 13 % (1 MiB
            // with --memset true, measured).
            None => {
                // The header and tag take `first` bytes; up to `DEFAULT_LINE - first` more put
                // the payload on a line.
                let first = TAG_OFFSET + 8;
                let need = DEFAULT_LINE + size as u64;
                let (handle, tag) = self.shared.allocate(&seg, need, 16, size as u64)?;
                let start = handle + first;
                (
                    handle,
                    tag,
                    first + (start.next_multiple_of(DEFAULT_LINE) - start),
                )
            }
            Some(a) => {
                let align = (a as u64).max(16);
                let user_off = align.max(BUF_HEADER);
                let (handle, tag) =
                    self.shared
                        .allocate(&seg, user_off + size as u64, align, size as u64)?;
                (handle, tag, user_off)
            }
        };
        let header = seg
            .ptr(handle, BUF_HEADER)
            .map_err(|e| TransportError::BadAlloc(e.to_string()))?;
        // SAFETY: `header` points to the first 8 bytes of a block we just allocated (bounds-
        // checked by `ptr`, 16-aligned); nobody else knows the block yet.
        unsafe {
            (*(header as *const AtomicU32)).store(1, Ordering::Relaxed);
            (*(header.add(4) as *const AtomicU32))
                .store(user_off as u32 | tag << 16, Ordering::Relaxed);
        }
        tag_word(&seg, handle)
            .map_err(|e| TransportError::BadAlloc(e.to_string()))?
            .store(new_tag(self.shared.secret(), handle), Ordering::Release);
        let data = seg
            .ptr(handle + user_off, size as u64)
            .map_err(|e| TransportError::BadAlloc(e.to_string()))?;
        self.meta = MetaHeader {
            size: size as u64,
            handle: handle as i64,
            segment_id: seg.id(),
            ..MetaHeader::EMPTY
        };
        self.addr = data as usize;
        self.mapping = Mapping::Managed(seg);
        Ok(())
    }

    /// Adopts a received header after checking that it names a live buffer of this session
    /// (see the module documentation), resolving where its payload is mapped here. `tag` is
    /// the tag the sender's frame carries for it (`None`: any live tag, for paths that prove
    /// the sender otherwise). On error the message is empty and nothing
    /// was touched.
    pub(crate) fn adopt_sealed(
        &mut self,
        meta: MetaHeader,
        tag: Option<u64>,
    ) -> Result<(), TransportError> {
        self.release();
        if meta.handle < -1 {
            return Err(TransportError::Message(format!(
                "descriptor with handle {}: neither a buffer nor -1 (none)",
                meta.handle
            )));
        }
        if meta.handle == -1 {
            self.meta = MetaHeader { size: 0, ..meta };
            return Ok(());
        }
        if meta.managed {
            let seg = self.shared.segment(meta.segment_id)?;
            let addr = Self::check_managed(&seg, &meta, tag)?;
            self.addr = if meta.size == 0 { 0 } else { addr };
            self.mapping = Mapping::Managed(seg);
        } else {
            let region = self.shared.region(meta.region_id)?;
            self.addr = region.address_of(meta.handle as u64, meta.size)?;
            if meta.shared >= 0 {
                region.check_shared(meta.shared)?;
            }
            self.mapping = Mapping::Region(region);
            self.region_rc.store(meta.shared, Ordering::Release);
        }
        self.meta = meta;
        Ok(())
    }

    /// The checks of a managed header; the payload's address in this process.
    fn check_managed(
        seg: &Segment,
        meta: &MetaHeader,
        tag: Option<u64>,
    ) -> Result<usize, TransportError> {
        let refuse = |reason: String| {
            TransportError::Message(format!(
                "descriptor of buffer {} (size {}) in segment {}: {reason}",
                meta.handle,
                meta.size,
                seg.id()
            ))
        };
        let handle = meta.handle as u64;
        seg.check_live(handle, BUF_HEADER + 8)
            .map_err(|e| refuse(e.to_string()))?;
        let header = seg
            .ptr(handle, BUF_HEADER)
            .map_err(|e| refuse(e.to_string()))?;
        // SAFETY: 8 bounds-checked, 16-aligned bytes (check_live: the handle is 16-aligned user
        // data of an allocated block) of the mapping, alive as long as `seg`; read atomically.
        let (count, word) = unsafe {
            (
                (*(header as *const AtomicU32)).load(Ordering::Acquire),
                (*(header.add(4) as *const AtomicU32)).load(Ordering::Acquire),
            )
        };
        let user_off = u64::from(word & 0xFFFF);
        if user_off < BUF_HEADER + 8 {
            return Err(refuse(format!("no buffer header (user offset {user_off})")));
        }
        seg.check_live(handle, user_off.saturating_add(meta.size))
            .map_err(|e| refuse(e.to_string()))?;
        let live = buffer_tag_of(seg, handle);
        if live == 0 || count == 0 {
            return Err(refuse(
                "the buffer was already released (a replayed descriptor?)".into(),
            ));
        }
        if tag.is_some_and(|t| t != live) {
            return Err(refuse(
                "the tag does not match the buffer's (a replayed descriptor of a reused buffer?)"
                    .into(),
            ));
        }
        let data = seg
            .ptr(handle + user_off, meta.size)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(data as usize)
    }

    /// A message over a block of a region.
    pub(crate) fn region_block(
        shared: Arc<Shared>,
        region: Arc<RegionHandle>,
        offset: usize,
        size: usize,
        hint: u64,
    ) -> Result<Self, TransportError> {
        let addr = region.address_of(offset as u64, size as u64)?;
        Ok(ShmMessage {
            shared,
            meta: MetaHeader {
                size: size as u64,
                hint,
                handle: offset as i64,
                shared: -1,
                region_id: region.id(),
                segment_id: 0,
                managed: false,
            },
            addr,
            mapping: Mapping::Region(region),
            alignment: None,
            region_rc: AtomicI64::new(-1),
        })
    }

    /// The tag of the managed buffer to put into the frame's seal (0 without one).
    pub(crate) fn wire_tag(&self) -> u64 {
        match &self.mapping {
            Mapping::Managed(seg) if self.meta.handle >= 0 => {
                buffer_tag_of(seg, self.meta.handle as u64)
            }
            _ => 0,
        }
    }

    /// The header to put on the wire.
    pub(crate) fn wire_meta(&self) -> MetaHeader {
        MetaHeader {
            shared: self.region_rc.load(Ordering::Acquire),
            ..self.meta
        }
    }

    /// Forgets the payload without releasing it: it now belongs to a receiver.
    pub(crate) fn mark_sent(&mut self) {
        self.region_rc.store(-1, Ordering::Release);
        self.meta = MetaHeader::EMPTY;
        self.addr = 0;
        self.mapping = Mapping::None;
    }

    /// Releases this holder's reference to the payload.
    pub(crate) fn release(&mut self) {
        let meta = MetaHeader {
            shared: self.region_rc.swap(-1, Ordering::AcqRel),
            ..std::mem::replace(&mut self.meta, MetaHeader::EMPTY)
        };
        let mapping = std::mem::replace(&mut self.mapping, Mapping::None);
        self.addr = 0;
        if meta.handle < 0 {
            return;
        }
        match mapping {
            Mapping::None => {}
            Mapping::Managed(seg) => match refcount(&seg, meta.handle as u64) {
                Ok(rc) => {
                    if rc.fetch_sub(1, Ordering::AcqRel) == 1 {
                        // Released: descriptors of this buffer are void from now on.
                        if let Ok(t) = tag_word(&seg, meta.handle as u64) {
                            t.store(0, Ordering::Release);
                        }
                        let tag = buffer_tag(&seg, meta.handle as u64);
                        if let Err(e) = self.shared.free(&seg, meta.handle as u64, tag) {
                            tracing::error!("shmem: could not free a message buffer: {e}");
                        }
                    }
                }
                Err(e) => tracing::error!("shmem: could not release a message buffer: {e}"),
            },
            Mapping::Region(region) => region.release(&meta),
        }
    }

    fn refcount_value(&self) -> u32 {
        match &self.mapping {
            Mapping::Managed(seg) if self.meta.handle >= 0 => {
                refcount(seg, self.meta.handle as u64)
                    .map(|rc| rc.load(Ordering::Acquire))
                    .unwrap_or(1)
            }
            Mapping::Region(r) => r.refcount_value(self.region_rc.load(Ordering::Acquire)),
            _ => 1,
        }
    }

    /// The offset of the payload in its managed segment, for tests that prove zero copy.
    pub fn segment_offset(&self) -> Option<(u16, u64)> {
        match &self.mapping {
            Mapping::Managed(seg) => Some((
                seg.id(),
                (self.addr - seg.object().as_ptr() as usize) as u64,
            )),
            _ => None,
        }
    }

    /// The reference count shared by all copies of this payload (1 if not shared).
    pub fn reference_count(&self) -> u32 {
        self.refcount_value()
    }
}

impl Drop for ShmMessage {
    fn drop(&mut self) {
        self.release();
    }
}

impl Message for ShmMessage {
    fn transport(&self) -> &'static str {
        crate::transport::NAME
    }

    fn data(&self) -> &[u8] {
        if self.addr == 0 || self.meta.size == 0 {
            return &[];
        }
        // SAFETY: `addr..addr+size` was bounds-checked against the mapping when the payload was
        // resolved, and `mapping` keeps that mapping alive while `self` exists. Other holders of
        // a shared payload only read it (writers detach first, see `data_mut`).
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.meta.size as usize) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        if self.addr == 0 || self.meta.size == 0 {
            return &mut [];
        }
        if self.refcount_value() > 1 {
            // Shared with a copy: detach before writing, so the copies never see the change.
            let bytes = self.data().to_vec();
            let alignment = self.alignment;
            if self.alloc(bytes.len()).is_err() {
                tracing::error!("shmem: could not detach a shared message for writing");
                return &mut [];
            }
            self.alignment = alignment;
            // SAFETY: freshly allocated, exclusively owned block of `bytes.len()` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr as *mut u8, bytes.len())
            };
        }
        // SAFETY: as in `data`; this holder is the only one (count 1), so nobody else reads or
        // writes the payload while the returned borrow lives.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.meta.size as usize) }
    }

    fn size(&self) -> usize {
        self.meta.size as usize
    }

    fn set_used_size(&mut self, size: usize) -> bool {
        if size as u64 > self.meta.size {
            tracing::error!("cannot set used size higher than original.");
            return false;
        }
        if size == 0 {
            self.release();
        } else {
            self.meta.size = size as u64;
        }
        true
    }

    fn rebuild(&mut self) {
        self.release();
    }

    fn rebuild_with_size(
        &mut self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<(), TransportError> {
        self.alignment = alignment.filter(|a| *a > 1);
        self.alloc(size)
    }

    fn rebuild_from_buffer(&mut self, buffer: OwnedBuffer) -> Result<(), TransportError> {
        // Shared memory cannot adopt a process-local buffer: copy it in, then release it.
        self.alloc(buffer.len())?;
        self.data_mut().copy_from_slice(buffer.as_slice());
        drop(buffer);
        Ok(())
    }

    fn copy_from(&mut self, other: &dyn Message) -> Result<(), TransportError> {
        let Some(o) = other.as_any().downcast_ref::<ShmMessage>() else {
            self.alignment = other.alignment().filter(|a| *a > 1);
            self.alloc(other.size())?;
            self.data_mut().copy_from_slice(other.data());
            return Ok(());
        };
        self.release();
        if o.meta.handle < 0 {
            return Ok(());
        }
        match &o.mapping {
            Mapping::None => {}
            Mapping::Managed(seg) => {
                refcount(seg, o.meta.handle as u64)?.fetch_add(1, Ordering::AcqRel);
            }
            Mapping::Region(r) => {
                let rc = r.share(&o.region_rc)?;
                self.region_rc.store(rc, Ordering::Release);
            }
        }
        self.meta = o.meta;
        self.addr = o.addr;
        self.mapping = o.mapping.clone();
        self.alignment = o.alignment;
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
