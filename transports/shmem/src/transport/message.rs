//! Messages of the shmem transport: a [`MetaHeader`] plus this process's view of the payload.
//!
//! A managed buffer starts with an 8-byte header `{refcount: u32, user_offset: u16, size class:
//! u16}` at the
//! allocation's offset (the *handle* that travels on the wire); the payload follows at
//! `handle + user_offset`, aligned as requested (at least 16). The sender allocates and writes
//! in place; a successful send hands the buffer to the receiver without touching the count; the
//! last holder (in whichever process) frees it. `copy_from` increments the count.

use super::cache::Segment;
use super::factory::Shared;
use super::region::RegionHandle;
use super::wire::MetaHeader;
use fairmq_transport::{Message, OwnedBuffer, TransportError};
use std::any::Any;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;

/// Size of the per-buffer header in front of a managed payload.
pub(crate) const BUF_HEADER: u64 = 8;

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
        let align = self.alignment.unwrap_or(16).max(16) as u64;
        let seg = self.shared.own_segment().clone();
        let user_off = align.max(BUF_HEADER);
        let (handle, tag) =
            self.shared
                .allocate(&seg, user_off + size as u64, align, size as u64)?;
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

    /// Adopts a received header, resolving where its payload is mapped here.
    pub(crate) fn adopt(&mut self, meta: MetaHeader) -> Result<(), TransportError> {
        self.release();
        if meta.handle < 0 || (meta.size == 0 && meta.managed) {
            self.meta = MetaHeader { size: 0, ..meta };
            if meta.handle >= 0 {
                // A zero-size buffer still has to be released by its last holder.
                self.meta = meta;
                self.mapping = Mapping::Managed(self.shared.segment(meta.segment_id)?);
            }
            return Ok(());
        }
        if meta.managed {
            let seg = self.shared.segment(meta.segment_id)?;
            let header = seg
                .ptr(meta.handle as u64, BUF_HEADER)
                .map_err(|e| TransportError::Message(e.to_string()))?;
            // SAFETY: bounds-checked 8-byte header of a live buffer (we hold a reference).
            let word = unsafe { (*(header.add(4) as *const AtomicU32)).load(Ordering::Relaxed) };
            let user_off = word & 0xFFFF;
            let data = seg
                .ptr(meta.handle as u64 + u64::from(user_off), meta.size)
                .map_err(|e| TransportError::Message(e.to_string()))?;
            self.addr = data as usize;
            self.mapping = Mapping::Managed(seg);
        } else {
            let region = self.shared.region(meta.region_id)?;
            self.addr = region.address_of(meta.handle as u64, meta.size)?;
            self.mapping = Mapping::Region(region);
            self.region_rc.store(meta.shared, Ordering::Release);
        }
        self.meta = meta;
        Ok(())
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
