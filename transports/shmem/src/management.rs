//! The management segment `fmq_<shmId>_mng`, session liveness, cleanup, the monitor marker and
//! heartbeats.
//!
//! # Layout (after the common 4096-byte object header)
//!
//! ```text
//! 4096      MngHeader (512 bytes reserved): magic "FMQMNG02", creator euid, session name
//!           (up to 256 bytes), DeviceCounter u32, RegionCounter u32 (starts at 1024),
//!           EventCounter u64, Heartbeat u64, table offsets, robust process-shared mutex,
//!           session secret u64 (random, drawn by the creator; see [`ManagementSegment::secret`])
//! 4608      segment table: 1024 × {state, segment id, algorithm, size}            (24 bytes each)
//! 29184     region table:  1024 × {state, region id, destroyed, creationFlags, userFlags,
//!                                  size, rcSegmentSize, path (up to 1024 bytes)} (1072 bytes each)
//! 1130496   heap: an rbtree_best_fit [`Allocator`] over the rest, for data of higher layers
//!           (its free/used figures are the `[m]` line of the monitor)
//! ```
//!
//! The segment has FairMQ's size, 6,553,600 bytes. All tables have fixed capacity and live at
//! fixed offsets; nothing inside refers to anything by pointer. Table entries are only written
//! under the robust mutex and are published with a state word (`EMPTY` → `WRITING` → `VALID`,
//! the last store with release ordering), so observers such as the monitor read them without the
//! lock, from a read-only mapping. Entries are never reused (a destroyed region keeps its entry
//! with `destroyed = true`, as in FairMQ). If a process dies while holding the mutex, the next
//! locker resets half-written (`WRITING`) entries to `EMPTY`; counters are atomics.
//!
//! # Liveness
//!
//! Every participant holds a **shared `flock`** on its descriptor of `fmq_<shmId>_mng` for as long
//! as it keeps the segment open; the kernel drops it when the process exits or is killed.
//! A new management segment is published already locked (see [`crate::segment`]), so there is no
//! window in which a live session looks dead. [`session_status`] probes with a non-blocking
//! exclusive lock on a fresh descriptor: success means no holder, i.e. a dead session.
//! Removal ([`ManagementSegment::try_remove_if_last`], [`remove_session_if_dead`]) happens while
//! holding the **exclusive** lock and removes `fmq_<shmId>_mng` last; a process opening the
//! session concurrently waits for its shared lock, sees that the object it opened was unlinked
//! and starts over with a fresh session. Descriptors are close-on-exec; a process that forks
//! shares its lock with the child (same open file description).

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::alloc::{AllocationPolicy, Allocator, HeapCommit};
use crate::error::{Error, Result};
use crate::ids::{parse_object_name, ObjectType, ShmId};
use crate::segment::{
    flock_fd, Access, CreateOptions, FlockMode, Location, ObjectKind, OpenOptions, SharedObject,
    HEADER_SIZE, SHM_DIR,
};
use crate::sync::{store_tick, RawRobustMutex, RobustGuard};

/// Size of the management segment (as in FairMQ).
pub const MANAGEMENT_SEGMENT_SIZE: u64 = 6_553_600;
/// Capacity of the managed-segment registry.
pub const SEGMENT_TABLE_CAPACITY: usize = 1024;
/// Capacity of the region registry (entries are never reused).
pub const REGION_TABLE_CAPACITY: usize = 1024;
/// Longest region path stored, in bytes.
pub const REGION_PATH_CAPACITY: usize = 1024;
/// Longest session name stored, in bytes (longer names are truncated in the session info; the
/// shmId always uses the whole name).
pub const SESSION_NAME_CAPACITY: usize = 256;
/// The first automatically assigned region id.
pub const FIRST_AUTO_REGION_ID: u16 = 1024;
/// How often [`Heartbeat`] increments the heartbeat counter.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

const MNG_MAGIC: u64 = u64::from_le_bytes(*b"FMQMNG02");
const MNG_HEADER_SIZE: u64 = 512;
const EMPTY: u32 = 0;
const WRITING: u32 = 1;
const VALID: u32 = 2;

#[repr(C)]
struct MngHeader {
    magic: AtomicU64,
    creator_euid: AtomicU32,
    session_len: AtomicU32,
    device_counter: AtomicU32,
    region_counter: AtomicU32,
    event_counter: AtomicU64,
    heartbeat: AtomicU64,
    segments_off: AtomicU64,
    regions_off: AtomicU64,
    heap_off: AtomicU64,
    segments_cap: AtomicU32,
    regions_cap: AtomicU32,
    session: [AtomicU64; SESSION_NAME_CAPACITY / 8],
    mutex: RawRobustMutex,
    secret: AtomicU64,
}

#[repr(C)]
struct SegmentEntry {
    state: AtomicU32,
    id: AtomicU32,
    algorithm: AtomicU32,
    reserved: AtomicU32,
    size: AtomicU64,
}

#[repr(C)]
struct RegionEntry {
    state: AtomicU32,
    id: AtomicU32,
    destroyed: AtomicU32,
    creation_flags: AtomicI32,
    user_flags: AtomicU64,
    size: AtomicU64,
    rc_segment_size: AtomicU64,
    path_len: AtomicU32,
    reserved: AtomicU32,
    path: [AtomicU64; REGION_PATH_CAPACITY / 8],
}

const HDR_OFF: u64 = HEADER_SIZE;
const SEGMENTS_OFF: u64 = HDR_OFF + MNG_HEADER_SIZE;
const SEGMENT_ENTRY: u64 = std::mem::size_of::<SegmentEntry>() as u64;
const REGIONS_OFF: u64 = (SEGMENTS_OFF + SEGMENT_ENTRY * SEGMENT_TABLE_CAPACITY as u64 + 63) & !63;
const REGION_ENTRY: u64 = std::mem::size_of::<RegionEntry>() as u64;
const HEAP_OFF: u64 = (REGIONS_OFF + REGION_ENTRY * REGION_TABLE_CAPACITY as u64 + 4095) & !4095;

const _: () = assert!(std::mem::size_of::<MngHeader>() as u64 <= MNG_HEADER_SIZE);
const _: () = assert!(HEAP_OFF + 1024 * 1024 < MANAGEMENT_SEGMENT_SIZE);

/// Session information stored by the creator of the management segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session name (truncated to [`SESSION_NAME_CAPACITY`] bytes).
    pub session: String,
    /// Effective uid of the creator.
    pub creator_euid: u32,
}

/// A registered managed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Segment id (`fmq_<shmId>_m_<id>`).
    pub id: u16,
    /// Its allocation algorithm.
    pub policy: AllocationPolicy,
    /// Its total size in bytes.
    pub size: u64,
}

/// A registered unmanaged region.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RegionInfo {
    /// Region id (`fmq_<shmId>_rg_<id>`).
    pub id: u16,
    /// Directory prefix of a file-backed region (`<path>fmq_<shmId>_rg_<id>`), empty for a shm
    /// object.
    pub path: String,
    /// Flags passed to the mapping.
    pub creation_flags: i32,
    /// User-defined flags.
    pub user_flags: u64,
    /// Region size in bytes.
    pub size: u64,
    /// Size of the reference-count segment `fmq_<shmId>_rrc_<id>` (0: none).
    pub rc_segment_size: u64,
    /// Whether the creator destroyed the region.
    pub destroyed: bool,
}

/// Whether a session exists and has live participants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// There is no management segment.
    Absent,
    /// The management segment exists but no process holds it open.
    Dead,
    /// At least one process holds the management segment open.
    Alive,
}

/// What [`cleanup_session`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupScope {
    /// Everything except the monitor marker `fmq_<shmId>_ms` (FairMQ's `Monitor::Cleanup`).
    Session,
    /// Everything including the monitor marker (FairMQ's `Monitor::CleanupFull`).
    Full,
}

/// Result of [`ManagementSegment::try_remove_if_last`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovalOutcome {
    /// Other participants hold the session open; nothing was removed.
    OthersPresent,
    /// This was the last participant: the session's objects, each with whether it was removed.
    Removed(Vec<(String, bool)>),
}

/// A process-local handle on `fmq_<shmId>_mng` (see the module documentation).
pub struct ManagementSegment {
    obj: Arc<SharedObject>,
    heap: Allocator,
    shm_id: ShmId,
    participant: bool,
}

impl fmt::Debug for ManagementSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementSegment")
            .field("shm_id", &self.shm_id)
            .field("participant", &self.participant)
            .finish()
    }
}

fn st32(a: &AtomicU32, v: u32) {
    store_tick();
    a.store(v, Ordering::Release);
}

fn st64(a: &AtomicU64, v: u64) {
    store_tick();
    a.store(v, Ordering::Release);
}

fn store_bytes(words: &[AtomicU64], bytes: &[u8]) {
    for (i, w) in words.iter().enumerate() {
        let mut chunk = [0u8; 8];
        let start = i * 8;
        if start < bytes.len() {
            let end = (start + 8).min(bytes.len());
            chunk[..end - start].copy_from_slice(&bytes[start..end]);
        }
        st64(w, u64::from_le_bytes(chunk));
    }
}

fn load_string(words: &[AtomicU64], len: usize) -> String {
    let mut bytes = Vec::with_capacity(words.len() * 8);
    for w in words {
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    bytes.truncate(len.min(bytes.len()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn mng_location(shm_id: &ShmId) -> Location {
    Location::shm(shm_id.management_name())
}

impl ManagementSegment {
    /// Opens the session's management segment as a participant (holding the shared flock),
    /// creating it if it does not exist. Returns whether this call created it. The
    /// DeviceCounter is not touched: participants that count as devices call
    /// [`ManagementSegment::increment_device_counter`].
    pub fn open_or_create(shm_id: &ShmId, session: &str) -> Result<(ManagementSegment, bool)> {
        Self::open_or_create_with_access(shm_id, session, Access::Private)
    }

    /// [`ManagementSegment::open_or_create`], creating the session with `access` (0600, or 0660
    /// for a group: `--shm-group`). Every later object of the session takes the access of the
    /// management segment (see [`Access`]); an existing session keeps the access it has.
    pub fn open_or_create_with_access(
        shm_id: &ShmId,
        session: &str,
        access: Access,
    ) -> Result<(ManagementSegment, bool)> {
        let loc = mng_location(shm_id);
        let mut co = CreateOptions::new(MANAGEMENT_SEGMENT_SIZE);
        co.access = access;
        co.flock = Some(FlockMode::Shared);
        co.size_option = String::new();
        let oo = OpenOptions {
            flock: Some(FlockMode::Shared),
            ..OpenOptions::default()
        };
        let (obj, created) =
            SharedObject::open_or_create_with(&loc, ObjectKind::Management, &co, &oo, |o| {
                init_management(o, session)
            })?;
        Ok((Self::attach(obj, shm_id, true)?, created))
    }

    /// Opens an existing management segment as a participant (holding the shared flock).
    pub fn open(shm_id: &ShmId) -> Result<ManagementSegment> {
        let oo = OpenOptions {
            flock: Some(FlockMode::Shared),
            ..OpenOptions::default()
        };
        let obj = SharedObject::open(&mng_location(shm_id), ObjectKind::Management, &oo)?;
        Self::attach(obj, shm_id, true)
    }

    /// Opens an existing management segment read-only **without** taking part in the session
    /// (no flock, so it does not keep the session alive): for monitors and views. Mutating
    /// methods fail with [`Error::ReadOnly`].
    pub fn open_observer(shm_id: &ShmId) -> Result<ManagementSegment> {
        let oo = OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        };
        let obj = SharedObject::open(&mng_location(shm_id), ObjectKind::Management, &oo)?;
        Self::attach(obj, shm_id, false)
    }

    fn attach(obj: SharedObject, shm_id: &ShmId, participant: bool) -> Result<ManagementSegment> {
        let bad = |reason: &str| Error::CorruptObject {
            name: obj.name().to_owned(),
            reason: reason.to_owned(),
        };
        if obj.size() != MANAGEMENT_SEGMENT_SIZE {
            return Err(bad("unexpected size of the management segment"));
        }
        // SAFETY: MngHeader consists of atomics and a RawRobustMutex (valid for any bit pattern,
        // accessed atomically or through pthread functions); in bounds (size checked above).
        let h: &MngHeader = unsafe { obj.ref_at(HDR_OFF) };
        if h.magic.load(Ordering::Acquire) != MNG_MAGIC {
            return Err(bad("no management header"));
        }
        if h.segments_off.load(Ordering::Relaxed) != SEGMENTS_OFF
            || h.regions_off.load(Ordering::Relaxed) != REGIONS_OFF
            || h.heap_off.load(Ordering::Relaxed) != HEAP_OFF
            || h.segments_cap.load(Ordering::Relaxed) as usize != SEGMENT_TABLE_CAPACITY
            || h.regions_cap.load(Ordering::Relaxed) as usize != REGION_TABLE_CAPACITY
        {
            return Err(bad("unexpected table layout"));
        }
        let obj = Arc::new(obj);
        let heap = Allocator::attach(obj.clone(), HEAP_OFF)?;
        Ok(ManagementSegment {
            obj,
            heap,
            shm_id: shm_id.clone(),
            participant,
        })
    }

    fn hdr(&self) -> &MngHeader {
        // SAFETY: validated in attach; see there.
        unsafe { self.obj.ref_at(HDR_OFF) }
    }

    fn segment_entry(&self, i: usize) -> &SegmentEntry {
        // SAFETY: entries are atomics only; i < capacity keeps it inside the table (checked by
        // ref_at as well).
        unsafe { self.obj.ref_at(SEGMENTS_OFF + SEGMENT_ENTRY * i as u64) }
    }

    fn region_entry(&self, i: usize) -> &RegionEntry {
        // SAFETY: as for segment_entry.
        unsafe { self.obj.ref_at(REGIONS_OFF + REGION_ENTRY * i as u64) }
    }

    /// The session's shmId.
    pub fn shm_id(&self) -> &ShmId {
        &self.shm_id
    }

    /// `fmq_<shmId>_mng`.
    pub fn name(&self) -> &str {
        self.obj.name()
    }

    /// Whether this handle participates (holds the shared flock) or only observes.
    pub fn is_participant(&self) -> bool {
        self.participant
    }

    /// The underlying object.
    pub fn object(&self) -> &Arc<SharedObject> {
        &self.obj
    }

    /// Total size of the management segment.
    pub fn size(&self) -> u64 {
        self.obj.size()
    }

    /// The heap in the tail of the management segment (for higher layers' shared data).
    pub fn heap(&self) -> &Allocator {
        &self.heap
    }

    /// Free bytes of the management segment (its heap's free memory).
    pub fn free_memory(&self) -> u64 {
        self.heap.free_memory()
    }

    /// Session name and creator.
    pub fn session_info(&self) -> SessionInfo {
        let h = self.hdr();
        SessionInfo {
            session: load_string(&h.session, h.session_len.load(Ordering::Relaxed) as usize),
            creator_euid: h.creator_euid.load(Ordering::Relaxed),
        }
    }

    fn writable(&self) -> Result<()> {
        if self.obj.is_read_only() {
            return Err(Error::ReadOnly {
                name: self.obj.name().to_owned(),
            });
        }
        Ok(())
    }

    /// The session secret: 64 random bits drawn by the creator of the management segment.
    /// Only processes that can map the segment (its owner, or the group it was shared with)
    /// know it; the shmem transport puts it into every descriptor frame it sends and drops
    /// received frames that do not carry it, so a peer that merely reaches a channel's
    /// endpoint cannot make a device touch the session's memory.
    pub fn secret(&self) -> u64 {
        self.hdr().secret.load(Ordering::Acquire)
    }

    /// The DeviceCounter (number of live transports that registered themselves).
    pub fn device_counter(&self) -> u32 {
        self.hdr().device_counter.load(Ordering::Acquire)
    }

    /// Increments the DeviceCounter; returns the new value.
    pub fn increment_device_counter(&self) -> Result<u32> {
        self.writable()?;
        Ok(self.hdr().device_counter.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Decrements the DeviceCounter (not below 0); returns the new value.
    pub fn decrement_device_counter(&self) -> Result<u32> {
        self.writable()?;
        let prev = self
            .hdr()
            .device_counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(1))
            })
            .unwrap_or(0);
        Ok(prev.saturating_sub(1))
    }

    /// The EventCounter (bumped on every segment/region registration and region destruction).
    pub fn event_counter(&self) -> u64 {
        self.hdr().event_counter.load(Ordering::Acquire)
    }

    /// Increments the EventCounter; returns the new value.
    pub fn bump_event_counter(&self) -> Result<u64> {
        self.writable()?;
        Ok(self.hdr().event_counter.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// The Heartbeat counter.
    pub fn heartbeat_counter(&self) -> u64 {
        self.hdr().heartbeat.load(Ordering::Acquire)
    }

    /// Increments the Heartbeat counter once.
    pub fn beat(&self) -> Result<u64> {
        self.writable()?;
        Ok(self.hdr().heartbeat.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// The next automatic region id: 1024, 1025, … (FairMQ's RegionCounter).
    pub fn next_region_id(&self) -> Result<u16> {
        self.writable()?;
        self.hdr()
            .region_counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v <= u32::from(u16::MAX)).then_some(v + 1)
            })
            .map(|v| v as u16)
            .map_err(|_| Error::RegistryFull {
                name: self.name().to_owned(),
                table: "automatic region id",
                capacity: usize::from(u16::MAX - FIRST_AUTO_REGION_ID) + 1,
            })
    }

    /// Takes the session's robust management lock for compound operations (e.g. check the
    /// registry, create a segment, register it).
    pub fn lock(&self) -> Result<ManagementLock<'_>> {
        self.writable()?;
        // SAFETY: the mutex was initialised before the management magic was published, and
        // attach validated the magic.
        let mut guard = unsafe { self.hdr().mutex.lock() }.map_err(|e| Error::Lock {
            name: self.name().to_owned(),
            reason: e.to_string(),
        })?;
        if guard.owner_died() {
            tracing::warn!(
                "a process died while holding the management lock of '{}'; repairing the registry",
                self.name()
            );
            self.repair_locked();
            guard.mark_consistent();
        }
        Ok(ManagementLock {
            mng: self,
            _guard: guard,
        })
    }

    fn repair_locked(&self) {
        for i in 0..SEGMENT_TABLE_CAPACITY {
            let e = self.segment_entry(i);
            if e.state.load(Ordering::Acquire) == WRITING {
                st32(&e.state, EMPTY);
            }
        }
        for i in 0..REGION_TABLE_CAPACITY {
            let e = self.region_entry(i);
            if e.state.load(Ordering::Acquire) == WRITING {
                st32(&e.state, EMPTY);
            }
        }
    }

    /// Registers a managed segment (locks). Returns `false` if the id was already registered
    /// (the existing entry is kept: it wins, as in FairMQ).
    pub fn register_segment(&self, info: &SegmentInfo) -> Result<bool> {
        self.lock()?.register_segment(info)
    }

    /// Registers an unmanaged region (locks).
    pub fn register_region(&self, info: &RegionInfo) -> Result<()> {
        self.lock()?.register_region(info)
    }

    /// Marks a region destroyed (locks). Returns `false` if it is not registered.
    pub fn mark_region_destroyed(&self, id: u16) -> Result<bool> {
        self.lock()?.mark_region_destroyed(id)
    }

    /// The registered segment `id` (lock-free read).
    pub fn segment_info(&self, id: u16) -> Option<SegmentInfo> {
        self.segments().into_iter().find(|s| s.id == id)
    }

    /// All registered segments, in registration order (lock-free read).
    pub fn segments(&self) -> Vec<SegmentInfo> {
        (0..SEGMENT_TABLE_CAPACITY)
            .filter_map(|i| {
                let e = self.segment_entry(i);
                if e.state.load(Ordering::Acquire) != VALID {
                    return None;
                }
                Some(SegmentInfo {
                    id: e.id.load(Ordering::Relaxed) as u16,
                    policy: AllocationPolicy::from_u32(e.algorithm.load(Ordering::Relaxed))
                        .unwrap_or_default(),
                    size: e.size.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// The registered region `id` (lock-free read).
    pub fn region_info(&self, id: u16) -> Option<RegionInfo> {
        self.regions().into_iter().find(|r| r.id == id)
    }

    /// All registered regions, in registration order (lock-free read).
    pub fn regions(&self) -> Vec<RegionInfo> {
        (0..REGION_TABLE_CAPACITY)
            .filter_map(|i| {
                let e = self.region_entry(i);
                if e.state.load(Ordering::Acquire) != VALID {
                    return None;
                }
                Some(RegionInfo {
                    id: e.id.load(Ordering::Relaxed) as u16,
                    path: load_string(&e.path, e.path_len.load(Ordering::Relaxed) as usize),
                    creation_flags: e.creation_flags.load(Ordering::Relaxed),
                    user_flags: e.user_flags.load(Ordering::Relaxed),
                    size: e.size.load(Ordering::Relaxed),
                    rc_segment_size: e.rc_segment_size.load(Ordering::Relaxed),
                    destroyed: e.destroyed.load(Ordering::Acquire) != 0,
                })
            })
            .collect()
    }

    /// Starts a thread that increments the Heartbeat counter every `interval` (normally
    /// [`HEARTBEAT_INTERVAL`]) until the returned handle is dropped.
    pub fn start_heartbeat(&self, interval: Duration) -> Result<Heartbeat> {
        self.writable()?;
        let obj = self.obj.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fmq-heartbeat-{}", self.shm_id))
            .spawn(move || {
                // SAFETY: as in `hdr`; the Arc keeps the mapping alive for the thread.
                let h: &MngHeader = unsafe { obj.ref_at(HDR_OFF) };
                loop {
                    h.heartbeat.fetch_add(1, Ordering::AcqRel);
                    match rx.recv_timeout(interval) {
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
            })
            .map_err(|e| Error::io("spawn heartbeat thread for", self.name(), e))?;
        Ok(Heartbeat {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Leaves the session; if no other participant holds it open, removes all its objects
    /// (except the monitor marker, like FairMQ's last-device cleanup) while holding the exclusive
    /// lock, so that nobody can join in between. Stop the heartbeat first.
    pub fn try_remove_if_last(self) -> Result<RemovalOutcome> {
        if !self.participant {
            return Err(Error::InvalidArgument(
                "only a participant (not an observer) can remove its session".into(),
            ));
        }
        let fd = self.obj.file().as_raw_fd();
        flock_fd(fd, libc::LOCK_UN).map_err(|e| Error::io("flock", self.name(), e))?;
        match flock_fd(fd, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                return Ok(RemovalOutcome::OthersPresent)
            }
            Err(e) => return Err(Error::io("flock", self.name(), e)),
        }
        let nlink = self
            .obj
            .file()
            .metadata()
            .map_err(|e| Error::io("fstat", self.name(), e))?
            .nlink();
        if nlink == 0 {
            return Ok(RemovalOutcome::Removed(Vec::new()));
        }
        Ok(RemovalOutcome::Removed(remove_objects(
            &self.shm_id,
            Some(&self),
            CleanupScope::Session,
        )))
    }
}

/// Writes a fresh management segment (before publication).
/// 64 bits from the kernel's random source (never 0, which would look like an unset field).
fn random_secret(name: &str) -> Result<u64> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most `b.len() - got` bytes into the rest of `b`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("getrandom", name, e));
        }
        got += n as usize;
    }
    Ok(u64::from_le_bytes(b).max(1))
}

fn init_management(o: &SharedObject, session: &str) -> Result<()> {
    // SAFETY: see ManagementSegment::attach; the object is MANAGEMENT_SEGMENT_SIZE bytes.
    let h: &MngHeader = unsafe { o.ref_at(HDR_OFF) };
    // SAFETY: the object is not yet visible to anyone else.
    unsafe { h.mutex.init() }.map_err(|e| Error::io("pthread_mutex_init", o.name(), e))?;
    let session = truncate_utf8(session, SESSION_NAME_CAPACITY);
    store_bytes(&h.session, session.as_bytes());
    let r = Ordering::Relaxed;
    h.session_len.store(session.len() as u32, r);
    h.creator_euid.store(crate::ids::effective_uid(), r);
    h.device_counter.store(0, r);
    h.region_counter.store(u32::from(FIRST_AUTO_REGION_ID), r);
    h.event_counter.store(0, r);
    h.heartbeat.store(0, r);
    h.segments_off.store(SEGMENTS_OFF, r);
    h.regions_off.store(REGIONS_OFF, r);
    h.heap_off.store(HEAP_OFF, r);
    h.segments_cap.store(SEGMENT_TABLE_CAPACITY as u32, r);
    h.regions_cap.store(REGION_TABLE_CAPACITY as u32, r);
    h.secret.store(random_secret(o.name())?, r);
    // The tables are zero (EMPTY): posix_fallocate on tmpfs hands out zeroed pages.
    Allocator::init_in(
        o,
        HEAP_OFF,
        MANAGEMENT_SEGMENT_SIZE - HEAP_OFF,
        AllocationPolicy::RbTreeBestFit,
        HeapCommit::Full,
    )?;
    h.magic.store(MNG_MAGIC, Ordering::Release);
    Ok(())
}

/// The management lock, held; registry updates go through it. Unlocks when dropped.
pub struct ManagementLock<'a> {
    mng: &'a ManagementSegment,
    _guard: RobustGuard<'a>,
}

impl ManagementLock<'_> {
    /// See [`ManagementSegment::register_segment`].
    pub fn register_segment(&self, info: &SegmentInfo) -> Result<bool> {
        let m = self.mng;
        if m.segment_info(info.id).is_some() {
            return Ok(false);
        }
        let e = (0..SEGMENT_TABLE_CAPACITY)
            .map(|i| m.segment_entry(i))
            .find(|e| e.state.load(Ordering::Acquire) == EMPTY)
            .ok_or_else(|| Error::RegistryFull {
                name: m.name().to_owned(),
                table: "managed segment",
                capacity: SEGMENT_TABLE_CAPACITY,
            })?;
        st32(&e.state, WRITING);
        st32(&e.id, u32::from(info.id));
        st32(&e.algorithm, info.policy as u32);
        st64(&e.size, info.size);
        st32(&e.state, VALID);
        m.hdr().event_counter.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// See [`ManagementSegment::register_region`].
    pub fn register_region(&self, info: &RegionInfo) -> Result<()> {
        let m = self.mng;
        if info.path.len() > REGION_PATH_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "region path '{}' is longer than {REGION_PATH_CAPACITY} bytes",
                info.path
            )));
        }
        if m.region_info(info.id).is_some() {
            return Err(Error::RegionAlreadyRegistered(info.id));
        }
        let e = (0..REGION_TABLE_CAPACITY)
            .map(|i| m.region_entry(i))
            .find(|e| e.state.load(Ordering::Acquire) == EMPTY)
            .ok_or_else(|| Error::RegistryFull {
                name: m.name().to_owned(),
                table: "region",
                capacity: REGION_TABLE_CAPACITY,
            })?;
        st32(&e.state, WRITING);
        st32(&e.id, u32::from(info.id));
        st32(&e.destroyed, u32::from(info.destroyed));
        store_tick();
        e.creation_flags
            .store(info.creation_flags, Ordering::Release);
        st64(&e.user_flags, info.user_flags);
        st64(&e.size, info.size);
        st64(&e.rc_segment_size, info.rc_segment_size);
        store_bytes(&e.path, info.path.as_bytes());
        st32(&e.path_len, info.path.len() as u32);
        st32(&e.state, VALID);
        m.hdr().event_counter.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// See [`ManagementSegment::mark_region_destroyed`].
    pub fn mark_region_destroyed(&self, id: u16) -> Result<bool> {
        let m = self.mng;
        for i in 0..REGION_TABLE_CAPACITY {
            let e = m.region_entry(i);
            if e.state.load(Ordering::Acquire) == VALID
                && e.id.load(Ordering::Relaxed) == u32::from(id)
            {
                st32(&e.destroyed, 1);
                m.hdr().event_counter.fetch_add(1, Ordering::AcqRel);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The heartbeat thread started by [`ManagementSegment::start_heartbeat`]; stops (and joins)
/// when dropped.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat").finish_non_exhaustive()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_fd_readonly(loc: &Location) -> io::Result<std::fs::File> {
    std::fs::File::open(loc.fs_path())
}

/// Whether the session `shm_id` exists and whether any process holds it open (see the module
/// documentation). Needs no write access.
pub fn session_status(shm_id: &ShmId) -> Result<SessionStatus> {
    let loc = mng_location(shm_id);
    let file = match open_fd_readonly(&loc) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SessionStatus::Absent),
        Err(e) => return Err(Error::io("open", loc.display_name(), e)),
    };
    match flock_fd(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {
            let nlink = file
                .metadata()
                .map_err(|e| Error::io("fstat", loc.display_name(), e))?
                .nlink();
            Ok(if nlink == 0 {
                SessionStatus::Absent
            } else {
                SessionStatus::Dead
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(SessionStatus::Alive),
        Err(e) => Err(Error::io("flock", loc.display_name(), e)),
    }
}

/// Whether any process holds the session open (`false` for an absent session).
pub fn session_is_alive(shm_id: &ShmId) -> Result<bool> {
    Ok(session_status(shm_id)? == SessionStatus::Alive)
}

/// Removes the session's objects **if no process holds it open**, under the exclusive lock (no
/// process can join meanwhile). `Ok(None)` if the session is alive. Also cleans up the objects
/// of a session whose management segment is missing or unreadable.
pub fn remove_session_if_dead(
    shm_id: &ShmId,
    scope: CleanupScope,
) -> Result<Option<Vec<(String, bool)>>> {
    let loc = mng_location(shm_id);
    let _lock = match open_fd_readonly(&loc) {
        Ok(file) => match flock_fd(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Some(file),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(None),
            Err(e) => return Err(Error::io("flock", loc.display_name(), e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("open", loc.display_name(), e)),
    };
    let registry = ManagementSegment::open_observer(shm_id).ok();
    Ok(Some(remove_objects(shm_id, registry.as_ref(), scope)))
}

/// Removes the session's objects unconditionally (also when processes still use them; their
/// mappings stay valid, but the session is split from then on). Returns every object tried with
/// whether it was removed, like FairMQ's `Monitor::Cleanup`.
pub fn cleanup_session(shm_id: &ShmId, scope: CleanupScope) -> Result<Vec<(String, bool)>> {
    let registry = ManagementSegment::open_observer(shm_id).ok();
    Ok(remove_objects(shm_id, registry.as_ref(), scope))
}

/// Removes every object of the session, the monitor marker included (`fairmq-shmmonitor -c`).
pub fn remove_session_objects(shm_id: &ShmId) -> Result<Vec<(String, bool)>> {
    cleanup_session(shm_id, CleanupScope::Full)
}

/// Removal order: registered regions (region, queue, refcount segment), registered segments,
/// any other object of the session found in `/dev/shm` (unlocked temporaries only), the monitor
/// marker (Full), and the management segment last.
fn remove_objects(
    shm_id: &ShmId,
    registry: Option<&ManagementSegment>,
    scope: CleanupScope,
) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut seen = HashSet::new();
    let mut remove_shm = |name: String, out: &mut Vec<(String, bool)>| {
        if seen.insert(name.clone()) {
            let removed = SharedObject::remove(&Location::shm(name.clone())).unwrap_or(false);
            out.push((name, removed));
        }
    };
    if let Some(m) = registry {
        let regions = m.regions();
        let segments = m.segments();
        tracing::debug!(
            "cleaning up shmId {shm_id}: {} unmanaged regions, {} managed segments",
            regions.len(),
            segments.len()
        );
        for r in regions {
            let rg = shm_id.region_name(r.id);
            if r.path.is_empty() {
                remove_shm(rg, &mut out);
            } else {
                let path = format!("{}{}", r.path, rg);
                let removed = std::fs::remove_file(&path).is_ok();
                out.push((path, removed));
            }
            remove_shm(shm_id.region_queue_name(r.id), &mut out);
            remove_shm(shm_id.region_refcount_name(r.id), &mut out);
        }
        for s in segments {
            remove_shm(shm_id.segment_name(s.id), &mut out);
        }
    }
    let mut leftovers: Vec<(String, ObjectType)> = std::fs::read_dir(SHM_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| {
                    let (id, ty) = parse_object_name(&n)?;
                    (id == *shm_id).then_some((n, ty))
                })
                .collect()
        })
        .unwrap_or_default();
    leftovers.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ty) in leftovers {
        match ty {
            ObjectType::Management
            | ObjectType::MonitorMarker
            | ObjectType::LegacyMonitorSemaphore => {}
            ObjectType::Temporary => {
                // Only if its creator is gone (creators hold a flock while building).
                let loc = Location::shm(name.clone());
                let unlocked = open_fd_readonly(&loc)
                    .map(|f| flock_fd(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB).is_ok())
                    .unwrap_or(false);
                if unlocked {
                    remove_shm(name, &mut out);
                }
            }
            _ => remove_shm(name, &mut out),
        }
    }
    if scope == CleanupScope::Full {
        remove_shm(shm_id.monitor_marker_name(), &mut out);
        let sem = Path::new(SHM_DIR).join(shm_id.legacy_monitor_semaphore_name());
        if sem.exists() {
            let removed = std::fs::remove_file(&sem).is_ok();
            out.push((shm_id.legacy_monitor_semaphore_name(), removed));
        }
    }
    remove_shm(shm_id.management_name(), &mut out);
    for (name, removed) in &out {
        if *removed {
            tracing::debug!("Successfully removed '{name}'.");
        } else {
            tracing::debug!("Did not remove '{name}'. Already removed?");
        }
    }
    out
}

/// The shmIds of all sessions with a management segment in `dir` (normally `/dev/shm`), sorted.
pub fn list_sessions(dir: &Path) -> Result<Vec<ShmId>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir.display().to_string(), e))?;
    let mut ids: Vec<ShmId> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| match parse_object_name(&n)? {
            (id, ObjectType::Management) => Some(id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The names of all objects of session `shm_id` in `dir` (including temporaries and C++
/// FairMQ's `sem.fmq_<id>_ms`), sorted.
pub fn list_session_objects(dir: &Path, shm_id: &ShmId) -> Result<Vec<String>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir.display().to_string(), e))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| parse_object_name(n).is_some_and(|(id, _)| id == *shm_id))
        .collect();
    names.sort();
    Ok(names)
}

/// The "a monitor is running" marker `fmq_<shmId>_ms`: a small shm object on which the running
/// monitor holds an exclusive flock. Removed when dropped.
#[derive(Debug)]
pub struct MonitorMarker {
    obj: SharedObject,
}

impl MonitorMarker {
    /// Becomes the session's monitor: creates the marker, or takes over a stale one (whose
    /// monitor died). Fails with [`Error::MonitorRunning`] if a live monitor holds it.
    pub fn acquire(shm_id: &ShmId) -> Result<MonitorMarker> {
        let loc = Location::shm(shm_id.monitor_marker_name());
        let pid = u64::from(std::process::id());
        for _ in 0..100 {
            let mut co = CreateOptions::new(2 * HEADER_SIZE);
            co.flock = Some(FlockMode::Exclusive);
            co.size_option = String::new();
            match SharedObject::create_with(&loc, ObjectKind::MonitorMarker, &co, |o| {
                o.atomic_u64(HEADER_SIZE).store(pid, Ordering::Release);
                Ok(())
            }) {
                Ok(obj) => return Ok(MonitorMarker { obj }),
                Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            let obj = match SharedObject::open(
                &loc,
                ObjectKind::MonitorMarker,
                &OpenOptions::default(),
            ) {
                Ok(o) => o,
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            match flock_fd(obj.file().as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                    return Err(Error::MonitorRunning(shm_id.to_string()))
                }
                Err(e) => return Err(Error::io("flock", obj.name(), e)),
            }
            let nlink = obj
                .file()
                .metadata()
                .map_err(|e| Error::io("fstat", obj.name(), e))?
                .nlink();
            if nlink == 0 {
                continue;
            }
            tracing::info!("taking over the stale monitor marker '{}'", obj.name());
            obj.atomic_u64(HEADER_SIZE).store(pid, Ordering::Release);
            return Ok(MonitorMarker { obj });
        }
        Err(Error::MonitorRunning(shm_id.to_string()))
    }

    /// Whether a live monitor holds the marker of `shm_id`.
    pub fn is_running(shm_id: &ShmId) -> Result<bool> {
        let loc = Location::shm(shm_id.monitor_marker_name());
        let file = match open_fd_readonly(&loc) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", loc.display_name(), e)),
        };
        match flock_fd(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(true),
            Err(e) => Err(Error::io("flock", loc.display_name(), e)),
        }
    }

    /// The pid of the monitor holding this marker (this process).
    pub fn pid(&self) -> u32 {
        self.obj.atomic_u64(HEADER_SIZE).load(Ordering::Acquire) as u32
    }
}

impl Drop for MonitorMarker {
    fn drop(&mut self) {
        // Remove the name only if it still refers to our object.
        let ours = match (
            self.obj.file().metadata(),
            std::fs::metadata(self.obj.location().fs_path()),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if ours {
            let _ = SharedObject::remove(self.obj.location());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{wait_until, TestSession};

    #[test]
    fn create_reopen_registry_and_counters() {
        let s = TestSession::new("mng-basic");
        let (a, created) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
        assert!(created);
        assert!(a.is_participant());
        assert_eq!(a.size(), MANAGEMENT_SEGMENT_SIZE);
        assert_eq!(a.name(), s.id.management_name());
        assert_eq!(
            a.session_info(),
            SessionInfo {
                session: s.session.clone(),
                creator_euid: crate::ids::effective_uid()
            }
        );
        let (b, created) = ManagementSegment::open_or_create(&s.id, "ignored").unwrap();
        assert!(!created);
        assert_eq!(b.session_info().session, s.session);

        assert_eq!(a.increment_device_counter().unwrap(), 1);
        assert_eq!(b.increment_device_counter().unwrap(), 2);
        assert_eq!(a.decrement_device_counter().unwrap(), 1);
        assert_eq!(a.device_counter(), 1);
        assert_eq!(b.beat().unwrap(), 1);
        assert_eq!(a.heartbeat_counter(), 1);
        assert_eq!(a.next_region_id().unwrap(), 1024);
        assert_eq!(b.next_region_id().unwrap(), 1025);

        let ev = a.event_counter();
        let seg = SegmentInfo {
            id: 0,
            policy: AllocationPolicy::SimpleSeqFit,
            size: 2 << 30,
        };
        assert!(a.register_segment(&seg).unwrap());
        assert!(!b
            .register_segment(&SegmentInfo {
                policy: AllocationPolicy::RbTreeBestFit,
                ..seg
            })
            .unwrap());
        assert_eq!(b.segment_info(0), Some(seg));
        assert_eq!(b.segment_info(1), None);
        let region = RegionInfo {
            id: 1024,
            path: "/tmp/".into(),
            creation_flags: 3,
            user_flags: 0xdead_beef_0000_0001,
            size: 1 << 20,
            rc_segment_size: 100_000_000,
            destroyed: false,
        };
        b.register_region(&region).unwrap();
        let err = a.register_region(&region).unwrap_err();
        assert!(matches!(err, Error::RegionAlreadyRegistered(1024)), "{err}");
        assert_eq!(a.region_info(1024), Some(region.clone()));
        assert!(a.mark_region_destroyed(1024).unwrap());
        assert!(!a.mark_region_destroyed(7).unwrap());
        assert!(b.region_info(1024).unwrap().destroyed);
        assert_eq!(a.event_counter(), ev + 3);
        let long = RegionInfo {
            id: 1,
            path: "x".repeat(REGION_PATH_CAPACITY + 1),
            ..Default::default()
        };
        assert!(matches!(
            a.register_region(&long),
            Err(Error::InvalidArgument(_))
        ));

        // Observers see everything but cannot write, and do not count as participants.
        let o = ManagementSegment::open_observer(&s.id).unwrap();
        assert!(!o.is_participant());
        assert_eq!(o.segments(), vec![seg]);
        assert_eq!(o.regions().len(), 1);
        assert_eq!(o.device_counter(), 1);
        assert!(matches!(o.beat(), Err(Error::ReadOnly { .. })));
        assert!(matches!(o.lock(), Err(Error::ReadOnly { .. })));
        assert!(o.free_memory() > 5_000_000);

        // The heap in the management segment works.
        let off = a.heap().allocate(1000, 0).unwrap();
        b.heap().free(off).unwrap();
        a.heap().verify().unwrap();

        drop((a, b, o));
        assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Dead);
        let removed = cleanup_session(&s.id, CleanupScope::Session).unwrap();
        assert!(
            removed.contains(&(s.id.management_name(), true)),
            "{removed:?}"
        );
        s.assert_clean();
    }

    #[test]
    fn registry_capacity() {
        let s = TestSession::new("mng-capacity");
        let (m, _) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
        {
            let lock = m.lock().unwrap();
            for id in 0..SEGMENT_TABLE_CAPACITY as u16 {
                assert!(lock
                    .register_segment(&SegmentInfo {
                        id,
                        policy: AllocationPolicy::RbTreeBestFit,
                        size: 1,
                    })
                    .unwrap());
            }
            let err = lock
                .register_segment(&SegmentInfo {
                    id: 5000,
                    policy: AllocationPolicy::RbTreeBestFit,
                    size: 1,
                })
                .unwrap_err();
            assert!(matches!(err, Error::RegistryFull { .. }), "{err}");
        }
        assert_eq!(m.segments().len(), SEGMENT_TABLE_CAPACITY);
        match m.try_remove_if_last().unwrap() {
            RemovalOutcome::Removed(list) => {
                // every registered (never created) segment was tried, and the mng removed
                assert_eq!(list.len(), SEGMENT_TABLE_CAPACITY + 1);
                assert_eq!(list.last().unwrap(), &(s.id.management_name(), true));
            }
            other => panic!("{other:?}"),
        }
        s.assert_clean();
    }

    #[test]
    fn liveness_and_last_user_removal() {
        let s = TestSession::new("mng-liveness");
        assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Absent);
        assert!(!session_is_alive(&s.id).unwrap());
        let (a, _) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
        assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Alive);
        let (b, _) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
        assert!(session_is_alive(&s.id).unwrap());
        assert_eq!(
            remove_session_if_dead(&s.id, CleanupScope::Full).unwrap(),
            None
        );
        let obs = ManagementSegment::open_observer(&s.id).unwrap();

        let seg = crate::alloc::ManagedSegment::create(
            &s.id,
            0,
            64 * 1024,
            AllocationPolicy::RbTreeBestFit,
            &Default::default(),
        )
        .unwrap();
        a.register_segment(&SegmentInfo {
            id: 0,
            policy: AllocationPolicy::RbTreeBestFit,
            size: 64 * 1024,
        })
        .unwrap();

        assert_eq!(
            a.try_remove_if_last().unwrap(),
            RemovalOutcome::OthersPresent
        );
        assert!(session_is_alive(&s.id).unwrap(), "b still holds it");
        match b.try_remove_if_last().unwrap() {
            RemovalOutcome::Removed(list) => assert_eq!(
                list,
                vec![(s.id.segment_name(0), true), (s.id.management_name(), true)]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Absent);
        // Existing mappings stay usable after removal.
        let off = seg.allocate(10, 0).unwrap();
        seg.free(off).unwrap();
        assert_eq!(obs.segments().len(), 1);
        drop((seg, obs));
        s.assert_clean();
    }

    #[test]
    fn cleanup_finds_registered_and_stray_objects() {
        let s = TestSession::new("mng-cleanup");
        let dir = tempfile::tempdir().unwrap();
        let (m, _) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
        let small = CreateOptions::new(2 * HEADER_SIZE);
        let mk = |name: String, kind| {
            SharedObject::create(&Location::shm(name), kind, &small).unwrap();
        };
        mk(s.id.region_name(1024), ObjectKind::Region);
        mk(s.id.region_queue_name(1024), ObjectKind::RegionQueue);
        mk(s.id.region_refcount_name(1024), ObjectKind::RegionRefCount);
        mk(s.id.region_queue_name(1025), ObjectKind::RegionQueue);
        mk(s.id.segment_name(7), ObjectKind::ManagedSegment); // not registered
        let file_region = dir.path().join(s.id.region_name(1025));
        SharedObject::create(&Location::file(&file_region), ObjectKind::Region, &small).unwrap();
        m.register_region(&RegionInfo {
            id: 1024,
            size: 4096,
            ..Default::default()
        })
        .unwrap();
        m.register_region(&RegionInfo {
            id: 1025,
            path: format!("{}/", dir.path().display()),
            size: 4096,
            ..Default::default()
        })
        .unwrap();
        // A stale temporary of a creator that died, and the legacy semaphore name.
        let tmp = format!("fmq_{}_tmp.1.2.m_9", s.id);
        std::fs::write(Path::new(SHM_DIR).join(&tmp), b"x").unwrap();
        let sem = Path::new(SHM_DIR).join(s.id.legacy_monitor_semaphore_name());
        std::fs::write(&sem, b"x").unwrap();
        // A marker left behind by a killed monitor.
        mk(s.id.monitor_marker_name(), ObjectKind::MonitorMarker);

        let listed = list_session_objects(Path::new(SHM_DIR), &s.id).unwrap();
        assert_eq!(listed.len(), 9, "{listed:?}");
        assert!(list_sessions(Path::new(SHM_DIR)).unwrap().contains(&s.id));

        let list = remove_session_objects(&s.id).unwrap();
        let removed: Vec<&str> = list
            .iter()
            .filter(|(_, r)| *r)
            .map(|(n, _)| n.as_str())
            .collect();
        let expected_order = [
            s.id.region_name(1024),
            s.id.region_queue_name(1024),
            s.id.region_refcount_name(1024),
            file_region.display().to_string(),
            s.id.region_queue_name(1025),
        ];
        let first: Vec<&str> = expected_order.iter().map(|n| n.as_str()).collect();
        assert_eq!(&removed[..5], first.as_slice());
        for n in [
            s.id.segment_name(7),
            tmp.clone(),
            s.id.monitor_marker_name(),
            s.id.legacy_monitor_semaphore_name(),
        ] {
            assert!(removed.contains(&n.as_str()), "{n} in {list:?}");
        }
        assert_eq!(removed.last(), Some(&s.id.management_name().as_str()));
        assert!(list.contains(&(s.id.region_refcount_name(1025), false)));
        assert!(!file_region.exists());
        drop(m);
        s.assert_clean();
    }

    #[test]
    fn list_sessions_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "fmq_0a27a418_mng",
            "fmq_0a27a418_m_0",
            "fmq_eca859e3_mng",
            "fmq_eca859e3_rg_1024",
            "sem.fmq_f8fb93a1_ms",
            "other",
        ] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let ids: Vec<String> = list_sessions(dir.path())
            .unwrap()
            .into_iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(ids, vec!["0a27a418", "eca859e3"]);
        let id = ShmId::parse("eca859e3").unwrap();
        assert_eq!(
            list_session_objects(dir.path(), &id).unwrap(),
            vec!["fmq_eca859e3_mng", "fmq_eca859e3_rg_1024"]
        );
        assert!(list_sessions(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn heartbeat_thread() {
        let s = TestSession::new("mng-heartbeat");
        let (m, _) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
        let obs = ManagementSegment::open_observer(&s.id).unwrap();
        assert!(obs.start_heartbeat(HEARTBEAT_INTERVAL).is_err());
        let hb = m.start_heartbeat(Duration::from_millis(5)).unwrap();
        wait_until(Duration::from_secs(30), || obs.heartbeat_counter() >= 3);
        drop(hb);
        let after = obs.heartbeat_counter();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(obs.heartbeat_counter(), after, "stopped when dropped");
        drop((m, obs));
        remove_session_if_dead(&s.id, CleanupScope::Full)
            .unwrap()
            .unwrap();
        s.assert_clean();
    }

    #[test]
    fn monitor_marker() {
        let s = TestSession::new("mng-marker");
        assert!(!MonitorMarker::is_running(&s.id).unwrap());
        let m = MonitorMarker::acquire(&s.id).unwrap();
        assert_eq!(m.pid(), std::process::id());
        assert!(MonitorMarker::is_running(&s.id).unwrap());
        let err = MonitorMarker::acquire(&s.id).unwrap_err();
        assert!(matches!(err, Error::MonitorRunning(_)), "{err}");
        assert!(err.to_string().contains("--cleanup --shmid"), "{err}");
        drop(m);
        assert!(!MonitorMarker::is_running(&s.id).unwrap());
        s.assert_clean();

        // A stale marker (nobody holds its lock) is taken over.
        SharedObject::create(
            &Location::shm(s.id.monitor_marker_name()),
            ObjectKind::MonitorMarker,
            &CreateOptions::new(2 * HEADER_SIZE),
        )
        .unwrap();
        assert!(!MonitorMarker::is_running(&s.id).unwrap());
        let m = MonitorMarker::acquire(&s.id).unwrap();
        assert!(MonitorMarker::is_running(&s.id).unwrap());
        drop(m);
        s.assert_clean();
    }
}
