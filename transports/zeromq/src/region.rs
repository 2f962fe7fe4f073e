//! Unmanaged regions of the zeromq transport: plain process memory.
//!
//! libzmq has no notion of a region, so (as in FairMQ) a region message copies its block into a
//! libzmq message at creation. Unlike FairMQ, which reports the block released at that moment,
//! the block stays held until the last message built on it is released (sent or dropped), so
//! the creator never reuses a block a message still refers to.

use fairmq_transport::{
    RegionBlock, RegionCallback, RegionConfig, RegionEvent, RegionEventCallback, RegionInfo,
    TransportError, UnmanagedRegion,
};
use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Region bookkeeping of one factory: the event subscription and the live regions.
#[derive(Default)]
pub(crate) struct EventHub {
    callback: Mutex<Option<RegionEventCallback>>,
    regions: Mutex<Vec<Weak<ZmqRegion>>>,
}

impl EventHub {
    pub(crate) fn subscribe(&self, cb: RegionEventCallback) {
        // FairMQ's zeromq transport first reports its (absent) managed memory as local_only.
        cb(RegionInfo {
            managed: true,
            id: 0,
            ptr: 0,
            size: 0,
            flags: 0,
            event: RegionEvent::LocalOnly,
        });
        for r in self.live() {
            cb(r.info(RegionEvent::Created));
        }
        *self.callback.lock().unwrap_or_else(|p| p.into_inner()) = Some(cb);
    }

    pub(crate) fn unsubscribe(&self) {
        *self.callback.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn subscribed(&self) -> bool {
        self.callback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn emit(&self, info: RegionInfo) {
        let cb = self
            .callback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(cb) = cb {
            cb(info);
        }
    }

    pub(crate) fn live(&self) -> Vec<Arc<ZmqRegion>> {
        let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        regions.retain(|w| w.strong_count() > 0);
        regions.iter().filter_map(Weak::upgrade).collect()
    }

    pub(crate) fn register(&self, r: &Arc<ZmqRegion>) {
        self.regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(r));
        self.emit(r.info(RegionEvent::Created));
    }
}

/// A region of plain memory.
pub struct ZmqRegion {
    id: u16,
    mem: Mutex<Box<[u8]>>,
    base: usize,
    size: usize,
    user_flags: i64,
    callback: RegionCallback,
    linger: AtomicU32,
    hub: Arc<EventHub>,
}

impl ZmqRegion {
    pub(crate) fn new(
        id: u16,
        config: &RegionConfig,
        callback: RegionCallback,
        hub: Arc<EventHub>,
    ) -> Result<Arc<Self>, TransportError> {
        if config.size == 0 {
            return Err(TransportError::Region(
                "region size is 0; give RegionConfig::size in bytes".into(),
            ));
        }
        if config.lock {
            tracing::debug!("zeromq regions are plain process memory; 'lock' is not applied");
        }
        let mem = vec![0u8; config.size].into_boxed_slice();
        let base = mem.as_ptr() as usize;
        let r = Arc::new(ZmqRegion {
            id,
            mem: Mutex::new(mem),
            base,
            size: config.size,
            user_flags: config.user_flags,
            callback,
            linger: AtomicU32::new(config.linger_ms),
            hub: hub.clone(),
        });
        hub.register(&r);
        Ok(r)
    }

    fn info(&self, event: RegionEvent) -> RegionInfo {
        RegionInfo {
            managed: false,
            id: self.id,
            ptr: self.base,
            size: self.size,
            flags: self.user_flags,
            event,
        }
    }

    pub(crate) fn check(&self, offset: usize, len: usize) -> Result<(), TransportError> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(TransportError::Region(format!(
                "trying to create region message with data from outside the region: offset {offset} + size {len} > region size {}",
                self.size
            )));
        }
        Ok(())
    }

    /// Copies a block and returns the copy with the guard that reports the block released
    /// when dropped.
    pub(crate) fn block(
        &self,
        offset: usize,
        len: usize,
        hint: u64,
    ) -> Result<(Vec<u8>, BlockGuard), TransportError> {
        self.check(offset, len)?;
        let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        let msg = mem[offset..offset + len].to_vec();
        Ok((
            msg,
            BlockGuard {
                callback: self.callback.clone(),
                block: RegionBlock {
                    ptr: self.base + offset,
                    offset,
                    size: len,
                    hint,
                },
            },
        ))
    }

    pub(crate) fn current_info(&self) -> RegionInfo {
        self.info(RegionEvent::Created)
    }
}

/// Reports a block released when dropped.
pub(crate) struct BlockGuard {
    callback: RegionCallback,
    block: RegionBlock,
}

impl Drop for BlockGuard {
    fn drop(&mut self) {
        self.callback.deliver(&[self.block]);
    }
}

impl Drop for ZmqRegion {
    fn drop(&mut self) {
        self.hub.emit(self.info(RegionEvent::Destroyed));
    }
}

impl UnmanagedRegion for ZmqRegion {
    fn id(&self) -> u16 {
        self.id
    }
    fn size(&self) -> usize {
        self.size
    }
    fn base_address(&self) -> usize {
        self.base
    }
    fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), TransportError> {
        self.check(offset, bytes.len())?;
        let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        mem[offset..offset + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
    fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        self.check(offset, out.len())?;
        let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        out.copy_from_slice(&mem[offset..offset + out.len()]);
        Ok(())
    }
    fn linger_ms(&self) -> u32 {
        self.linger.load(Ordering::Relaxed)
    }
    fn set_linger_ms(&self, ms: u32) {
        tracing::debug!("zeromq regions release blocks synchronously; linger has no effect");
        self.linger.store(ms, Ordering::Relaxed);
    }
    fn transport(&self) -> &'static str {
        crate::NAME
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
