//! The shmem transport factory: joins (or creates) the session's shared memory, owns this
//! device's managed segment, and makes messages, sockets and regions.

use super::cache::Segment;
use super::config::{BadAllocPolicy, MetadataPath, ShmConfig};
use super::message::ShmMessage;
use super::qsocket::QueueSocket;
use super::region::{RegionHandle, RegionOwner, ShmRegion};
use super::rendezvous::{self, QueueContext};
use super::socket::ShmSocket;
use crate::alloc::{ManagedSegment, SegmentOptions};
use crate::management::{
    Heartbeat, ManagementSegment, RegionInfo as RegistryRegion, RemovalOutcome, SegmentInfo,
    HEARTBEAT_INTERVAL,
};
use crate::{Access, Error};
use fairmq_transport::{
    MessagePtr, OwnedBuffer, PollResult, RegionCallback, RegionConfig, RegionEvent,
    RegionEventCallback, RegionInfo, RegionPtr, Socket, SocketPtr, SocketType, TransportError,
    TransportFactory,
};
use fairmq_zmq_core::{Context, SocketCore};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// What messages, sockets and regions of one factory share.
pub(crate) struct Shared {
    cfg: ShmConfig,
    /// The participant handle (holds the session's shared flock); taken when the factory goes.
    mng: Mutex<Option<ManagementSegment>>,
    own: Arc<Segment>,
    segments: RwLock<HashMap<u16, Arc<Segment>>>,
    regions: Mutex<HashMap<u16, Weak<RegionHandle>>>,
    created_regions: Mutex<HashSet<u16>>,
    interrupted: Arc<AtomicBool>,
    /// The session secret (see [`ManagementSegment::secret`]), sealed into every frame sent.
    secret: u64,
}

fn bad_alloc(e: Error) -> TransportError {
    TransportError::BadAlloc(e.to_string())
}

/// An allocation error of `seg`, naming the sizes involved and what to change.
fn alloc_error(seg: &Segment, e: Error, requested: u64) -> TransportError {
    match e {
        Error::TooLarge { .. } => TransportError::BadAlloc(format!(
            "shmem: requested message size ({requested} bytes) exceeds the size of segment {} ({} bytes, {} bytes free); send smaller messages or raise --shm-segment-size",
            seg.name(),
            seg.segment_size(),
            seg.free_memory()
        )),
        e @ Error::CommitFailed { .. } => TransportError::BadAlloc(format!(
            "shmem: could not create a message of size {requested}: {e}"
        )),
        other => bad_alloc(other),
    }
}

impl Shared {
    pub(crate) fn own_segment(&self) -> &Arc<Segment> {
        &self.own
    }

    pub(crate) fn secret(&self) -> u64 {
        self.secret
    }

    pub(crate) fn session(&self) -> &str {
        &self.cfg.session
    }

    pub(crate) fn metadata_msg_size(&self) -> usize {
        self.cfg.metadata_msg_size
    }

    fn with_mng<T>(&self, f: impl FnOnce(&ManagementSegment) -> T) -> Option<T> {
        self.mng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(f)
    }

    /// The managed segment `id`, opened on first use.
    pub(crate) fn segment(&self, id: u16) -> Result<Arc<Segment>, TransportError> {
        if let Some(s) = self
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(s.clone());
        }
        let seg = ManagedSegment::open(&self.cfg.shm_id, id, &SegmentOptions::default())
            .map_err(|e| {
                TransportError::Message(format!(
                    "could not open managed segment {id} of session '{}' (shm id {}): {e}; do sender and receiver use the same --session?",
                    self.cfg.session, self.cfg.shm_id
                ))
            })?;
        let seg = Arc::new(Segment::opened(seg));
        Ok(self
            .segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(seg)
            .clone())
    }

    /// Region `id`: local if this process maps it, else opened as a viewer.
    pub(crate) fn region(&self, id: u16) -> Result<Arc<RegionHandle>, TransportError> {
        let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = regions.get(&id).and_then(Weak::upgrade) {
            return Ok(r);
        }
        let info = self
            .with_mng(|m| m.region_info(id))
            .flatten()
            .filter(|i| !i.destroyed)
            .ok_or_else(|| {
                TransportError::Region(format!(
                    "Could not get remote region with id '{id}'. Does the region creator run with the same session id?"
                ))
            })?;
        let r = RegionHandle::open(&self.cfg.shm_id, &info)?;
        regions.insert(id, Arc::downgrade(&r));
        Ok(r)
    }

    /// Allocates a buffer of `size` bytes in `seg` (from its cache when possible), waiting for
    /// memory as the bad-alloc policy says. Returns the handle and the size-class tag to record.
    /// A full /dev/shm (the segment could not reserve the memory, [`Error::CommitFailed`]) is an
    /// error at once, after the cache gave its buffers back: waiting would not make room there.
    pub(crate) fn allocate(
        &self,
        seg: &Segment,
        size: u64,
        align: u64,
        requested: u64,
    ) -> Result<(u64, u32), TransportError> {
        let deadline = match self.cfg.bad_alloc {
            BadAllocPolicy::WaitForever => None,
            BadAllocPolicy::WaitAtMost(d) => Some(std::time::Instant::now() + d),
        };
        let mut warned = false;
        loop {
            let seen = seg.freed_generation();
            let (hit, need, tag) = seg.take_cached(size, align);
            if let Some(handle) = hit {
                return Ok((handle, tag));
            }
            let mut r = seg.allocate(need, align);
            if matches!(
                r,
                Err(Error::OutOfMemory { .. } | Error::CommitFailed { .. })
            ) && seg.drain_cache() > 0
            {
                // Out of memory, or out of memory that is reserved already: give the cached
                // buffers of other sizes back and try again.
                r = seg.allocate(need, align);
            }
            match r {
                Ok(off) => return Ok((off, tag)),
                Err(Error::OutOfMemory { .. }) => {}
                // Including a full /dev/shm (CommitFailed): a configuration error, not a wait.
                Err(e) => return Err(alloc_error(seg, e, requested)),
            }
            if self.interrupted.load(Ordering::Acquire) {
                return Err(TransportError::BadAlloc(format!(
                    "shmem: allocation of {requested} bytes in segment {} interrupted by a state change while waiting for free memory ({} bytes free of {})",
                    seg.name(),
                    seg.free_memory(),
                    seg.segment_size()
                )));
            }
            let now = std::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(TransportError::BadAlloc(format!(
                    "shmem: could not create a message of size {requested} in segment {} (size {}): free memory {}; give the segment more room (--shm-segment-size) or wait longer (--bad-alloc-max-attempts, --bad-alloc-attempt-interval)",
                    seg.name(),
                    seg.segment_size(),
                    seg.free_memory()
                )));
            }
            if !warned {
                warned = true;
                tracing::debug!(
                    "shmem: segment {} is full ({} bytes free); waiting for a message of {requested} bytes to be released",
                    seg.name(),
                    seg.free_memory()
                );
            }
            let slice = deadline.map_or(std::time::Duration::from_millis(100), |d| {
                (d - now).min(std::time::Duration::from_millis(100))
            });
            seg.wait_for_free(seen, slice);
        }
    }

    /// Frees a buffer (possibly allocated by another process).
    pub(crate) fn free(&self, seg: &Segment, handle: u64, tag: u32) -> Result<(), TransportError> {
        seg.give_back(handle, tag)
            .map_err(|e| TransportError::Message(e.to_string()))
    }
}

impl RegionOwner for Shared {
    fn region_destroyed(&self, id: u16) {
        self.created_regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let _ = self.with_mng(|m| m.mark_region_destroyed(id));
    }
}

struct EventThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EventThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shmem transport factory.
pub struct ShmFactory {
    id: String,
    shared: Arc<Shared>,
    ctx: Context,
    heartbeat: Option<Heartbeat>,
    events: Mutex<Option<EventThread>>,
    /// The descriptor-queue path, when `shm-metadata-path` is `queue`.
    queues: Option<Arc<QueueContext>>,
}

impl ShmFactory {
    /// Joins the session of `cfg` (creating its management segment and this device's managed
    /// segment if needed).
    pub fn new(cfg: ShmConfig) -> Result<ShmFactory, TransportError> {
        let init_err = |e: Error| {
            TransportError::Other(format!("Could not initialize shared memory transport: {e}"))
        };
        let access = cfg.group.map_or(Access::Private, Access::Group);
        let (mng, _) =
            ManagementSegment::open_or_create_with_access(&cfg.shm_id, &cfg.session, access)
                .map_err(init_err)?;
        let opts = SegmentOptions {
            mlock_on_creation: cfg.mlock_on_creation,
            zero_on_creation: cfg.zero_on_creation,
            mlock: cfg.mlock,
            zero: cfg.zero,
            ..SegmentOptions::default()
        };
        let own = (|| -> Result<Segment, Error> {
            let lock = mng.lock()?;
            match mng.segment_info(cfg.segment_id) {
                Some(info) => {
                    if info.policy != cfg.policy {
                        tracing::warn!(
                            "Allocation algorithm of the opened segment is {}, but requested is {}. Ignoring requested setting.",
                            info.policy,
                            cfg.policy
                        );
                    }
                    ManagedSegment::open(&cfg.shm_id, cfg.segment_id, &opts).map(Segment::opened)
                }
                None => {
                    let seg = ManagedSegment::create(
                        &cfg.shm_id,
                        cfg.segment_id,
                        cfg.segment_size,
                        cfg.policy,
                        &opts,
                    )?;
                    // The cache is the segment's first allocation, made before anyone else can
                    // open it (we hold the management lock until it is registered).
                    let seg = Segment::created(seg);
                    lock.register_segment(&SegmentInfo {
                        id: cfg.segment_id,
                        policy: cfg.policy,
                        size: cfg.segment_size,
                    })?;
                    Ok(seg)
                }
            }
        })();
        let own = match own {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // Leave nothing behind: if we were the only user, remove what we created.
                let _ = mng.try_remove_if_last();
                return Err(init_err(e));
            }
        };
        tracing::debug!(
            "Opened managed shared memory segment {}. Size: {} bytes. Available: {} bytes.",
            own.name(),
            own.segment_size(),
            own.free_memory()
        );
        mng.increment_device_counter().map_err(init_err)?;
        let heartbeat = mng.start_heartbeat(HEARTBEAT_INTERVAL).map_err(init_err)?;
        let ctx = Context::new(cfg.io_threads)?;
        let queues = match cfg.metadata_path {
            MetadataPath::Zmq => None,
            MetadataPath::Queue => Some(Arc::new(
                QueueContext::new(cfg.shm_id.clone(), ctx.interrupt_flag()).map_err(|e| {
                    TransportError::Other(format!(
                        "Could not initialize shared memory transport: {e}"
                    ))
                })?,
            )),
        };
        let mut segments = HashMap::new();
        segments.insert(own.id(), own.clone());
        let id = if cfg.id.is_empty() {
            fairmq_zmq_core::generated_id()
        } else {
            cfg.id.clone()
        };
        Ok(ShmFactory {
            id,
            shared: Arc::new(Shared {
                interrupted: ctx.interrupt_flag(),
                secret: mng.secret(),
                cfg,
                mng: Mutex::new(Some(mng)),
                own,
                segments: RwLock::new(segments),
                regions: Mutex::new(HashMap::new()),
                created_regions: Mutex::new(HashSet::new()),
            }),
            ctx,
            heartbeat: Some(heartbeat),
            events: Mutex::new(None),
            queues,
        })
    }

    /// The session's shmId.
    pub fn shm_id(&self) -> &crate::ShmId {
        &self.shared.cfg.shm_id
    }
}

impl Drop for ShmFactory {
    fn drop(&mut self) {
        *self.events.get_mut().unwrap_or_else(|p| p.into_inner()) = None;
        self.heartbeat = None;
        let Some(mng) = self
            .shared
            .mng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let _ = mng.decrement_device_counter();
        if self.shared.cfg.no_cleanup {
            tracing::debug!("Last segment user, skipping removal (--shm-no-cleanup is true).");
            return;
        }
        match mng.try_remove_if_last() {
            Ok(RemovalOutcome::Removed(_)) => {
                tracing::debug!("Last segment user, removing segment.")
            }
            Ok(RemovalOutcome::OthersPresent) => {
                tracing::debug!("Other segment users present, skipping removal.")
            }
            Err(e) => tracing::error!("could not clean up shared memory: {e}"),
        }
    }
}

fn event_loop(shared: Weak<Shared>, cb: RegionEventCallback, stop: Arc<AtomicBool>) {
    let mut seen: HashMap<(bool, u16), bool> = HashMap::new();
    let mut last_counter = None;
    while !stop.load(Ordering::Acquire) {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let snapshot = shared.with_mng(|m| (m.event_counter(), m.segments(), m.regions()));
        if let Some((counter, segments, regions)) = snapshot {
            if last_counter != Some(counter) {
                last_counter = Some(counter);
                for s in segments {
                    let ptr = shared
                        .segments
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&s.id)
                        .map_or(0, |m| m.object().as_ptr() as usize);
                    if seen.insert((true, s.id), false).is_none() {
                        cb(RegionInfo {
                            managed: true,
                            id: s.id,
                            ptr,
                            size: s.size as usize,
                            flags: 0,
                            event: RegionEvent::Created,
                        });
                    }
                }
                for r in regions {
                    let info = |event| RegionInfo {
                        managed: false,
                        id: r.id,
                        ptr: shared.region(r.id).map_or(0, |h| h.base()),
                        size: r.size as usize,
                        flags: r.user_flags as i64,
                        event,
                    };
                    match (seen.get(&(false, r.id)).copied(), r.destroyed) {
                        (None, false) => {
                            let i = info(RegionEvent::Created);
                            seen.insert((false, r.id), false);
                            cb(i);
                        }
                        (None, true) => {
                            seen.insert((false, r.id), true);
                        }
                        (Some(false), true) => {
                            seen.insert((false, r.id), true);
                            cb(RegionInfo {
                                ptr: 0,
                                ..info(RegionEvent::Destroyed)
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        drop(shared);
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl TransportFactory for ShmFactory {
    fn name(&self) -> &'static str {
        super::NAME
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn new_message(&self) -> MessagePtr {
        Box::new(ShmMessage::empty(self.shared.clone(), None))
    }
    fn new_message_aligned(&self, alignment: usize) -> MessagePtr {
        Box::new(ShmMessage::empty(self.shared.clone(), Some(alignment)))
    }
    fn new_message_with_size(
        &self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<MessagePtr, TransportError> {
        Ok(Box::new(ShmMessage::allocate(
            self.shared.clone(),
            size,
            alignment,
        )?))
    }
    fn new_message_from_buffer(&self, buffer: OwnedBuffer) -> Result<MessagePtr, TransportError> {
        let mut m = ShmMessage::empty(self.shared.clone(), None);
        fairmq_transport::Message::rebuild_from_buffer(&mut m, buffer)?;
        Ok(Box::new(m))
    }
    fn new_region_message(
        &self,
        region: &RegionPtr,
        offset: usize,
        size: usize,
        hint: u64,
    ) -> Result<MessagePtr, TransportError> {
        let r = region.as_any().downcast_ref::<ShmRegion>().ok_or_else(|| {
            TransportError::Region(format!(
                "region type ({}) does not match message type ({})",
                region.transport(),
                super::NAME
            ))
        })?;
        Ok(Box::new(ShmMessage::region_block(
            self.shared.clone(),
            r.handle().clone(),
            offset,
            size,
            hint,
        )?))
    }
    fn new_socket(&self, socket_type: SocketType, name: &str) -> Result<SocketPtr, TransportError> {
        if matches!(socket_type, SocketType::Pub | SocketType::Sub) && self.queues.is_none() {
            return Err(TransportError::Unsupported(format!(
                "PUB/SUB socket type is not supported for shared memory transport on the libzmq descriptor path (socket {name}); use shm-metadata-path=queue, or transport=zeromq for this channel"
            )));
        }
        let id = format!("{}.{}.{}", self.id, name, socket_type);
        if let Some(q) = &self.queues {
            if rendezvous::supported(socket_type) {
                return Ok(Box::new(QueueSocket::new(
                    q.clone(),
                    self.shared.clone(),
                    socket_type,
                    id,
                )?));
            }
        }
        Ok(Box::new(ShmSocket::new(
            SocketCore::new(&self.ctx, socket_type, id)?,
            self.shared.clone(),
        )?))
    }
    fn poll(&self, sockets: &[&dyn Socket], timeout_ms: i64) -> Result<PollResult, TransportError> {
        if let Some(q) = &self.queues {
            let queued: Option<Vec<&QueueSocket>> = sockets
                .iter()
                .map(|s| s.as_any().downcast_ref::<QueueSocket>())
                .collect();
            if let Some(queued) = queued {
                return Ok(PollResult::new(QueueSocket::poll(q, &queued, timeout_ms)));
            }
        }
        fairmq_zmq_core::poll_sockets(
            &self.ctx,
            sockets,
            timeout_ms,
            super::NAME,
            |s: &ShmSocket| &s.core,
        )
    }
    fn new_unmanaged_region(
        &self,
        config: RegionConfig,
        callback: RegionCallback,
    ) -> Result<RegionPtr, TransportError> {
        let shared = &self.shared;
        let id = match config.id {
            Some(id) => id,
            None => shared
                .with_mng(|m| m.next_region_id())
                .ok_or_else(|| TransportError::Region("the transport is shutting down".into()))?
                .map_err(|e| TransportError::Region(e.to_string()))?,
        };
        if !shared
            .created_regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
        {
            return Err(TransportError::Region(format!(
                "Unmanaged Region with id {id} already exists. Only unique IDs per session are allowed."
            )));
        }
        let owner: Arc<dyn RegionOwner> = shared.clone();
        let created = ShmRegion::create(&shared.cfg.shm_id, id, &config, callback, owner);
        let (region, created) = match created {
            Ok(r) => r,
            Err(e) => {
                shared
                    .created_regions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return Err(e);
            }
        };
        let registered = shared
            .with_mng(|m| m.region_info(id))
            .flatten()
            .is_some_and(|i| !i.destroyed);
        if created && registered {
            return Err(TransportError::Region(format!(
                "Unmanaged Region with id {id} has already been registered. Only unique IDs per session are allowed."
            )));
        }
        if !registered {
            shared
                .with_mng(|m| {
                    m.register_region(&RegistryRegion {
                        id,
                        path: config.path.clone(),
                        creation_flags: config.creation_flags,
                        user_flags: config.user_flags as u64,
                        size: config.size as u64,
                        rc_segment_size: config.rc_segment_size as u64,
                        destroyed: false,
                    })
                })
                .transpose()
                .map_err(|e| TransportError::Region(e.to_string()))?;
        }
        shared
            .regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::downgrade(region.handle()));
        Ok(Arc::new(region))
    }
    fn subscribe_to_region_events(&self, callback: RegionEventCallback) {
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, s) = (Arc::downgrade(&self.shared), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fmq-region-events".into())
            .spawn(move || event_loop(shared, callback, s))
            .ok();
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) = Some(EventThread { stop, thread });
    }
    fn subscribed_to_region_events(&self) -> bool {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
    fn unsubscribe_from_region_events(&self) {
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    fn region_info(&self) -> Vec<RegionInfo> {
        let shared = &self.shared;
        let Some((segments, regions)) = shared.with_mng(|m| (m.segments(), m.regions())) else {
            return Vec::new();
        };
        segments
            .into_iter()
            .map(|s| RegionInfo {
                managed: true,
                id: s.id,
                ptr: shared
                    .segment(s.id)
                    .map_or(0, |m| m.object().as_ptr() as usize),
                size: s.size as usize,
                flags: 0,
                event: RegionEvent::Created,
            })
            .chain(regions.into_iter().map(|r| RegionInfo {
                managed: false,
                id: r.id,
                ptr: if r.destroyed {
                    0
                } else {
                    shared.region(r.id).map_or(0, |h| h.base())
                },
                size: r.size as usize,
                flags: r.user_flags as i64,
                event: if r.destroyed {
                    RegionEvent::Destroyed
                } else {
                    RegionEvent::Created
                },
            }))
            .collect()
    }
    fn interrupt(&self) {
        self.ctx.interrupt();
        if let Some(q) = &self.queues {
            q.wake();
        }
        self.shared.own.wake_waiters();
        for seg in self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            seg.wake_waiters();
        }
    }
    fn resume(&self) {
        self.ctx.resume();
    }
    fn interrupted(&self) -> bool {
        self.ctx.interrupted()
    }
    fn reset(&self) {}
}
