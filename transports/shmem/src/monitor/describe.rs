//! Describing sessions: what `fairmq-shmmonitor --view` and `--list-all` print (spec §6.3),
//! in a structured form ([`SessionReport`], [`ListAllReport`]) and as FairMQ's text, plus the
//! queries of spec §6.7: free memory of a segment, presence of segments and regions, and the
//! list of live messages (`--debug`).
//!
//! Everything here only *observes*: the management segment is opened with
//! [`ManagementSegment::open_observer`] (read-only, no `flock`, so a view never keeps a session
//! alive) and managed segments are mapped read-only. The one exception is [`debug_info`], which
//! takes each segment's allocator lock for a moment to walk its blocks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::alloc::{AllocationPolicy, ManagedSegment, SegmentOptions};
use crate::error::{Error, Result};
use crate::ids::{parse_object_name, ObjectType, ShmId};
use crate::management::{
    session_status, ManagementSegment, MonitorMarker, RegionInfo, SessionStatus,
};
use crate::segment::{Location, SharedObject};

use super::marker_pid;

/// Usage figures of one managed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentUsage {
    /// Total size of the segment object in bytes (what `--shm-segment-size` asked for).
    pub total: u64,
    /// Free bytes (free blocks, their headers included).
    pub free: u64,
    /// `total - free`: message buffers plus the allocator's own overhead.
    pub used: u64,
    /// Live allocations; each live message holds exactly one (FairMQ's `msgs:`, which needs a
    /// debug build there; here it is a counter the allocator keeps anyway).
    pub messages: u64,
}

/// One registered managed segment `fmq_<shmId>_m_<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentReport {
    /// Segment id.
    pub id: u16,
    /// Allocation algorithm it was registered with.
    pub policy: AllocationPolicy,
    /// Size it was registered with.
    pub registered_size: u64,
    /// Its figures, or why the segment could not be opened (e.g. removed under the registry).
    pub usage: std::result::Result<SegmentUsage, String>,
}

/// Figures of the management segment's own heap (the `[m]` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagementUsage {
    /// Size of the management segment (6,553,600 bytes).
    pub total: u64,
    /// Free bytes of its heap.
    pub free: u64,
    /// `total - free`.
    pub used: u64,
}

/// The reference-count segment `fmq_<shmId>_rrc_<id>` of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcSegmentUsage {
    /// Its size in bytes.
    pub size: u64,
    /// Free bytes.
    pub free: u64,
    /// `size - free`.
    pub used: u64,
}

/// One registered unmanaged region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionReport {
    /// The registry entry (id, path, flags, size, rcSegmentSize, destroyed).
    pub info: RegionInfo,
    /// The reference-count segment, if it exists (it is created on the first copy of a region
    /// message).
    pub rc_segment: Option<RcSegmentUsage>,
}

/// Everything known about one session (the structured form of FairMQ's `PrintShm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReport {
    /// The session's shmId.
    pub shm_id: ShmId,
    /// Session name stored by the creator.
    pub session: String,
    /// Effective uid of the creator.
    pub creator_euid: u32,
    /// Owner of the `fmq_<shmId>_mng` file (the creator's euid, as the kernel recorded it).
    pub owner_uid: Option<u32>,
    /// The DeviceCounter: transports that registered and did not leave (crashed devices stay
    /// counted).
    pub devices: u32,
    /// Whether processes hold the session open (`flock` liveness): [`SessionStatus::Alive`] or
    /// [`SessionStatus::Dead`].
    pub status: SessionStatus,
    /// The Heartbeat counter.
    pub heartbeat: u64,
    /// The EventCounter.
    pub events: u64,
    /// Pid of the running monitor holding the `_ms` marker, if any.
    pub monitor_pid: Option<u32>,
    /// The management segment's heap.
    pub management: ManagementUsage,
    /// Registered managed segments, in registration order.
    pub segments: Vec<SegmentReport>,
    /// Registered unmanaged regions, in registration order.
    pub regions: Vec<RegionReport>,
}

impl SessionStatus {
    /// `alive`, `dead` or `absent`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Absent => "absent",
            SessionStatus::Dead => "dead",
            SessionStatus::Alive => "alive",
        }
    }
}

impl SessionReport {
    /// FairMQ's `PrintShm` text (spec §6.3), with the liveness added after the device count:
    ///
    /// ```text
    /// shm id: <id>, session: <name>, creator id: <euid>, devices: <n>, status: alive|dead, managed segments:
    ///    [<segId>]: total: <bytes>, msgs: <n>, free: <bytes>, used: <bytes>
    ///    [m]: total: <mng size>, free: <bytes>, used: <bytes>
    ///    unmanaged regions:
    ///       [<id>]: alive|destroyed, size: <bytes>, rcCountSegment size: <s>, free: <f>, used: <u>
    /// ```
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "shm id: {}, session: {}, creator id: {}, devices: {}, status: {}, managed segments:",
            self.shm_id,
            self.session,
            self.creator_euid,
            self.devices,
            self.status.as_str()
        );
        for seg in &self.segments {
            match &seg.usage {
                Ok(u) => {
                    let _ = writeln!(
                        s,
                        "   [{}]: total: {}, msgs: {}, free: {}, used: {}",
                        seg.id, u.total, u.messages, u.free, u.used
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        s,
                        "   [{}]: total: {}, could not open the segment: {e}",
                        seg.id, seg.registered_size
                    );
                }
            }
        }
        let m = &self.management;
        let _ = write!(
            s,
            "   [m]: total: {}, free: {}, used: {}",
            m.total, m.free, m.used
        );
        if !self.regions.is_empty() {
            s.push_str("\n   unmanaged regions:");
            for r in &self.regions {
                let _ = write!(
                    s,
                    "\n      [{}]: {}, size: {}",
                    r.info.id,
                    if r.info.destroyed {
                        "destroyed"
                    } else {
                        "alive"
                    },
                    r.info.size
                );
                match &r.rc_segment {
                    Some(rc) => {
                        let _ = write!(
                            s,
                            ", rcCountSegment size: {}, free: {}, used: {}",
                            rc.size, rc.free, rc.used
                        );
                    }
                    None => s.push_str(", rcCountSegment: not found"),
                }
            }
        }
        s
    }
}

fn file_owner(loc: &Location) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(loc.fs_path()).ok().map(|m| m.uid())
}

/// Describes session `shm_id`; `Ok(None)` if it has no management segment.
pub fn describe(shm_id: &ShmId) -> Result<Option<SessionReport>> {
    let mng = match ManagementSegment::open_observer(shm_id) {
        Ok(m) => m,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let status = match session_status(shm_id)? {
        // Removed between the two looks: report what we mapped, as dead.
        SessionStatus::Absent => SessionStatus::Dead,
        s => s,
    };
    let info = mng.session_info();
    let mng_free = mng.free_memory().min(mng.size());
    let ro = SegmentOptions {
        read_only: true,
        ..SegmentOptions::default()
    };
    let segments = mng
        .segments()
        .into_iter()
        .map(|s| {
            let usage = ManagedSegment::open(shm_id, s.id, &ro)
                .map(|seg| {
                    let total = seg.segment_size();
                    let free = seg.free_memory().min(total);
                    SegmentUsage {
                        total,
                        free,
                        used: total - free,
                        messages: seg
                            .live_allocations()
                            .saturating_sub(crate::transport::transport_blocks(&seg).len() as u64),
                    }
                })
                .map_err(|e| e.to_string());
            SegmentReport {
                id: s.id,
                policy: s.policy,
                registered_size: s.size,
                usage,
            }
        })
        .collect();
    let regions = mng
        .regions()
        .into_iter()
        .map(|info| {
            let loc = Location::shm(shm_id.region_refcount_name(info.id));
            let rc_segment = ManagedSegment::open_at(&loc, info.id, &ro).ok().map(|seg| {
                let size = seg.segment_size();
                let free = seg.free_memory().min(size);
                RcSegmentUsage {
                    size,
                    free,
                    used: size - free,
                }
            });
            RegionReport { info, rc_segment }
        })
        .collect();
    Ok(Some(SessionReport {
        shm_id: shm_id.clone(),
        session: info.session,
        creator_euid: info.creator_euid,
        owner_uid: file_owner(&Location::shm(shm_id.management_name())),
        devices: mng.device_counter(),
        status,
        heartbeat: mng.heartbeat_counter(),
        events: mng.event_counter(),
        monitor_pid: marker_pid(shm_id).ok().flatten(),
        management: ManagementUsage {
            total: mng.size(),
            free: mng_free,
            used: mng.size() - mng_free,
        },
        segments,
        regions,
    }))
}

/// Logs the session's [`SessionReport::to_text`] (FairMQ's `PrintShm`); returns `false`
/// (printing nothing) if the session has no management segment.
pub fn print_shm(shm_id: &ShmId) -> Result<bool> {
    match describe(shm_id)? {
        Some(r) => {
            tracing::info!("{}", r.to_text());
            Ok(true)
        }
        None => Ok(false),
    }
}

/// What [`list_all`] found in a directory.
#[derive(Debug)]
pub struct ListAllReport {
    /// The directory scanned.
    pub dir: String,
    /// Every session with a `fmq_<id>_mng` in the directory, sorted by shmId, with its report
    /// (`Ok(None)`: listed in the directory, but no longer openable in `/dev/shm`).
    pub sessions: Vec<(ShmId, Result<Option<SessionReport>>)>,
    /// Other FairMQ objects (`fmq_*`, `sem.fmq_*`) of the directory, sorted.
    pub other_fairmq_files: Vec<String>,
    /// Entries that do not belong to FairMQ, sorted.
    pub foreign_files: Vec<String>,
}

/// Describes every session in `dir` (normally `/dev/shm`; FairMQ's `ListAll`). A directory that
/// cannot be read is an error naming it.
pub fn list_all(dir: &Path) -> Result<ListAllReport> {
    let shown = dir.display().to_string();
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("stat", shown.clone(), e))?;
    if !meta.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "'{shown}' is not a directory"
        )));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read_dir", shown.clone(), e))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut ids = Vec::new();
    let mut other_fairmq_files = Vec::new();
    let mut foreign_files = Vec::new();
    for n in names {
        match parse_object_name(&n) {
            Some((id, ObjectType::Management)) => ids.push(id),
            Some(_) => other_fairmq_files.push(n),
            None if n.starts_with("fmq_") || n.starts_with("sem.fmq_") => {
                other_fairmq_files.push(n)
            }
            None => foreign_files.push(n),
        }
    }
    ids.sort();
    ids.dedup();
    let sessions = ids
        .into_iter()
        .map(|id| {
            let r = describe(&id);
            (id, r)
        })
        .collect();
    Ok(ListAllReport {
        dir: shown,
        sessions,
        other_fairmq_files,
        foreign_files,
    })
}

/// Logs FairMQ's `ListAll` text for `dir` (spec §6.3): `directory "<dir>" is empty.`, or per
/// entry `The file '<f>' does not belong to FairMQ, skipping...` and, per session,
/// `Found shmid '<id>':` followed by its `PrintShm` text (or `could not open file for shmid
/// '<id>'`).
pub fn print_list_all(dir: &Path) -> Result<ListAllReport> {
    let report = list_all(dir)?;
    if report.sessions.is_empty()
        && report.other_fairmq_files.is_empty()
        && report.foreign_files.is_empty()
    {
        tracing::info!("directory \"{}\" is empty.", report.dir);
        return Ok(report);
    }
    for f in &report.foreign_files {
        tracing::info!("The file '{f}' does not belong to FairMQ, skipping...");
    }
    for (id, r) in &report.sessions {
        match r {
            Ok(Some(s)) => tracing::info!("\nFound shmid '{id}':\n{}", s.to_text()),
            Ok(None) => tracing::info!("could not open file for shmid '{id}'"),
            Err(e) => tracing::info!("could not open file for shmid '{id}': {e}"),
        }
    }
    Ok(report)
}

fn open_registered_segment(
    shm_id: &ShmId,
    segment: u16,
    read_only: bool,
) -> Result<ManagedSegment> {
    let mng = match ManagementSegment::open_observer(shm_id) {
        Ok(m) => m,
        Err(Error::NotFound { .. }) => return Err(Error::NoManagementSegment(shm_id.to_string())),
        Err(e) => return Err(e),
    };
    let unknown = || Error::UnknownSegment {
        shm_id: shm_id.to_string(),
        segment,
    };
    mng.segment_info(segment).ok_or_else(unknown)?;
    let opts = SegmentOptions {
        read_only,
        ..SegmentOptions::default()
    };
    match ManagedSegment::open(shm_id, segment, &opts) {
        Ok(s) => Ok(s),
        Err(Error::NotFound { .. }) => Err(unknown()),
        Err(e) => Err(e),
    }
}

/// Free bytes of managed segment `segment` of session `shm_id` (FairMQ's `GetFreeMemory`).
///
/// Errors: [`Error::NoManagementSegment`] (`Could not find management segment for shmid
/// '<id>'`) and [`Error::UnknownSegment`] (`Could not find segment id '<n>'`).
pub fn free_memory(shm_id: &ShmId, segment: u16) -> Result<u64> {
    Ok(open_registered_segment(shm_id, segment, true)?.free_memory())
}

/// [`free_memory`] for the session `session` of the effective user.
pub fn free_memory_of_session(session: &str, segment: u16) -> Result<u64> {
    free_memory(&ShmId::from_session(session), segment)
}

/// Whether managed segment `segment` is registered in the session and can be opened
/// (FairMQ's `SegmentIsPresent`). Failures are logged (debug) and give `false`.
pub fn segment_is_present(shm_id: &ShmId, segment: u16) -> bool {
    match open_registered_segment(shm_id, segment, true) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("segment {segment} of shmid '{shm_id}' is not present: {e}");
            false
        }
    }
}

/// Whether unmanaged region `region` is registered in the session and its object exists
/// (FairMQ's `RegionIsPresent`); for a file-backed region the registry entry is enough.
pub fn region_is_present(shm_id: &ShmId, region: u16) -> bool {
    let mng = match ManagementSegment::open_observer(shm_id) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("region {region} of shmid '{shm_id}' is not present: {e}");
            return false;
        }
    };
    match mng.region_info(region) {
        Some(info) if info.path.is_empty() => {
            SharedObject::exists(&Location::shm(shm_id.region_name(region)))
        }
        Some(_) => true,
        None => {
            tracing::debug!("region {region} is not registered in shmid '{shm_id}'");
            false
        }
    }
}

/// One live message buffer (an allocated block of a managed segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveMessage {
    /// Segment id.
    pub segment: u16,
    /// Offset of the buffer in the segment (the handle that travels in the metadata).
    pub offset: u64,
    /// Usable bytes of the buffer (at least the message size plus the 8-byte buffer header).
    pub size: u64,
}

/// The live messages of every registered segment, by segment id (FairMQ's `GetDebugInfo`).
///
/// FairMQ records them only in debug builds (`FAIRMQ_DEBUG_MODE`, at a cost on every message).
/// Here they are read from the allocator's block chain, which costs the message path nothing:
/// each segment is opened read-write and its allocator lock is held while its blocks are
/// walked. Creator pid and creation time are not recorded.
pub fn debug_info(shm_id: &ShmId) -> Result<BTreeMap<u16, Vec<LiveMessage>>> {
    let mng = match ManagementSegment::open_observer(shm_id) {
        Ok(m) => m,
        Err(Error::NotFound { .. }) => return Err(Error::NoManagementSegment(shm_id.to_string())),
        Err(e) => return Err(e),
    };
    let mut out = BTreeMap::new();
    for s in mng.segments() {
        let seg = ManagedSegment::open(shm_id, s.id, &SegmentOptions::default())?;
        let transport = crate::transport::transport_blocks(&seg);
        let live = seg
            .blocks()?
            .into_iter()
            .filter(|b| !b.free && !transport.contains(&b.offset))
            .map(|b| LiveMessage {
                segment: s.id,
                offset: b.offset,
                size: b.block_size - crate::alloc::BLOCK_HEADER,
            })
            .collect();
        out.insert(s.id, live);
    }
    Ok(out)
}

/// Logs [`debug_info`] as FairMQ's `PrintDebugInfo` does: `found <n> messages.`, then one line
/// `segment: <id>, offset: <handle>, size: <n>` per message.
pub fn print_debug_info(shm_id: &ShmId) -> Result<usize> {
    let info = debug_info(shm_id)?;
    let n: usize = info.values().map(Vec::len).sum();
    let mut s = format!("found {n} messages.");
    for m in info.values().flatten() {
        let _ = write!(
            s,
            "\nsegment: {}, offset: {}, size: {}",
            m.segment, m.offset, m.size
        );
    }
    tracing::info!("{s}");
    Ok(n)
}

/// Whether a live monitor holds the session's `_ms` marker.
pub fn monitor_is_running(shm_id: &ShmId) -> bool {
    MonitorMarker::is_running(shm_id).unwrap_or(false)
}
