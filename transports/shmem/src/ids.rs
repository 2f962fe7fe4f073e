//! Session identifiers (shmId) and the names of a session's shared-memory objects.
//!
//! The shmId is derived exactly like FairMQ's (spec §5.2): the lowercase hex of the first four
//! bytes of `SHA-256(decimal effective uid + session)`, so a FairMQ user sees the same ids and
//! the same `/dev/shm` names with fairmq-rs. `--shmid N` (a decimal number) becomes
//! `format!("{N:08x}")`, which is longer than 8 characters for `N > 0xffff_ffff`.
//!
//! Object names (spec §5.1), all without a leading `/`:
//!
//! | builder | name |
//! |---|---|
//! | [`ShmId::management_name`] | `fmq_<id>_mng` |
//! | [`ShmId::segment_name`] | `fmq_<id>_m_<segment>` |
//! | [`ShmId::region_name`] | `fmq_<id>_rg_<region>` |
//! | [`ShmId::region_queue_name`] | `fmq_<id>_rgq_<region>` |
//! | [`ShmId::region_refcount_name`] | `fmq_<id>_rrc_<region>` |
//! | [`ShmId::monitor_marker_name`] | `fmq_<id>_ms` |
//!
//! The `_ms` ("a monitor is running") marker: FairMQ uses a POSIX named semaphore
//! (`/dev/shm/sem.fmq_<id>_ms`). fairmq-rs uses a plain shared-memory object `fmq_<id>_ms`
//! (see [`crate::management::MonitorMarker`]) on which the running monitor holds an exclusive
//! `flock`: unlike a semaphore, a marker left behind by a killed monitor is recognisably stale.
//! Cleanup also removes a `sem.fmq_<id>_ms` left by C++ FairMQ.
//!
//! Objects being created are first written under a temporary name
//! `fmq_<id>_tmp.<pid>.<n>.<final suffix>` and then published atomically under their final name
//! (see [`crate::segment`]); [`parse_object_name`] reports those as [`ObjectType::Temporary`].

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Shortest valid shmId (the derived ids and `--shmid N` for `N <= 0xffff_ffff`).
pub const SHM_ID_MIN_LEN: usize = 8;
/// Longest valid shmId (`--shmid u64::MAX` → 16 hex digits).
pub const SHM_ID_MAX_LEN: usize = 16;

/// A validated session identifier: 8 to 16 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShmId(String);

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The gid of the group named `name` (the system's group database), if there is one.
pub fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers, zero gid); getgrnam_r fills it
        // with pointers into `buf`, which outlives every use below.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated name, buffer and its length, and out-pointers.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !out.is_null()).then_some(grp.gr_gid);
    }
}

impl ShmId {
    /// The shmId of `session` for the effective user of this process (FairMQ's device path).
    pub fn from_session(session: &str) -> ShmId {
        Self::from_session_and_uid(session, effective_uid())
    }

    /// The shmId of `session` for user `uid` (`fairmq-shmmonitor --get-shmid --user-id U`).
    pub fn from_session_and_uid(session: &str, uid: u32) -> ShmId {
        let mut hasher = Sha256::new();
        hasher.update(uid.to_string().as_bytes());
        hasher.update(session.as_bytes());
        let digest = hasher.finalize();
        let id = digest[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        ShmId(id)
    }

    /// The shmId given on the command line as `--shmid N` (decimal): `format!("{N:08x}")`.
    pub fn from_number(n: u64) -> ShmId {
        ShmId(format!("{n:08x}"))
    }

    /// Parses a shmId as it appears in object names (8 to 16 hex digits). Upper-case digits are
    /// accepted and normalised to lower case, the form used in names.
    pub fn parse(s: &str) -> Result<ShmId> {
        let invalid = |reason: &'static str| Error::InvalidShmId {
            id: s.to_owned(),
            reason,
        };
        if s.len() < SHM_ID_MIN_LEN || s.len() > SHM_ID_MAX_LEN {
            return Err(invalid("a shmId has 8 to 16 hexadecimal digits"));
        }
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("a shmId consists of hexadecimal digits only"));
        }
        Ok(ShmId(s.to_ascii_lowercase()))
    }

    /// The id as used in names, e.g. `eca859e3`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a number (the inverse of [`ShmId::from_number`]).
    pub fn to_number(&self) -> u64 {
        // Validated on construction: at most 16 hex digits always fit.
        u64::from_str_radix(&self.0, 16).unwrap_or(0)
    }

    /// `fmq_<id>_`: the prefix shared by every object of the session.
    pub fn prefix(&self) -> String {
        format!("fmq_{}_", self.0)
    }

    /// `fmq_<id>_mng`: the management segment.
    pub fn management_name(&self) -> String {
        format!("fmq_{}_mng", self.0)
    }

    /// `fmq_<id>_m_<segment>`: a managed (message) segment.
    pub fn segment_name(&self, segment: u16) -> String {
        format!("fmq_{}_m_{segment}", self.0)
    }

    /// `fmq_<id>_rg_<region>`: an unmanaged region.
    pub fn region_name(&self, region: u16) -> String {
        format!("fmq_{}_rg_{region}", self.0)
    }

    /// `fmq_<id>_rgq_<region>`: an unmanaged region's acknowledgement queue.
    pub fn region_queue_name(&self, region: u16) -> String {
        format!("fmq_{}_rgq_{region}", self.0)
    }

    /// `fmq_<id>_rrc_<region>`: an unmanaged region's reference-count segment.
    pub fn region_refcount_name(&self, region: u16) -> String {
        format!("fmq_{}_rrc_{region}", self.0)
    }

    /// `fmq_<id>_ms`: the "a monitor is running" marker.
    pub fn monitor_marker_name(&self) -> String {
        format!("fmq_{}_ms", self.0)
    }

    /// `sem.fmq_<id>_ms`: the name of C++ FairMQ's monitor semaphore in `/dev/shm`.
    pub fn legacy_monitor_semaphore_name(&self) -> String {
        format!("sem.fmq_{}_ms", self.0)
    }
}

impl fmt::Display for ShmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ShmId {
    type Err = Error;

    fn from_str(s: &str) -> Result<ShmId> {
        ShmId::parse(s)
    }
}

impl AsRef<str> for ShmId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The shmId of `session` for the effective user of this process.
pub fn shm_id(session: &str) -> ShmId {
    ShmId::from_session(session)
}

/// The shmId of `session` for user `uid`.
pub fn shm_id_for_uid(uid: u32, session: &str) -> ShmId {
    ShmId::from_session_and_uid(session, uid)
}

/// What a FairMQ object name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `fmq_<id>_mng`
    Management,
    /// `fmq_<id>_m_<segment>`
    Segment(u16),
    /// `fmq_<id>_rg_<region>` (also the file name of a file-backed region)
    Region(u16),
    /// `fmq_<id>_rgq_<region>`
    RegionQueue(u16),
    /// `fmq_<id>_rrc_<region>`
    RegionRefCount(u16),
    /// `fmq_<id>_ms`
    MonitorMarker,
    /// `sem.fmq_<id>_ms` (C++ FairMQ's named semaphore)
    LegacyMonitorSemaphore,
    /// `fmq_<id>_tmp.<pid>.<n>.<suffix>`: an object being created (or left by a creator that died)
    Temporary,
    /// `fmq_<id>_q_<pid>_<n>`: one end of a descriptor-queue connection, or a factory's bell
    /// (`transport/queue.rs`); removed with the session like every object of it
    Queue,
    /// `fmq_<id>_<anything else>`: belongs to FairMQ (e.g. the historic `_cq`), unknown here
    Other,
}

/// Parses a `/dev/shm` entry name into its session and object type; `None` if the name does not
/// belong to FairMQ (names starting with `fmq_` or `sem.fmq_` do, spec §6.3).
pub fn parse_object_name(name: &str) -> Option<(ShmId, ObjectType)> {
    let (legacy, rest) = match name.strip_prefix("sem.fmq_") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("fmq_")?),
    };
    let (id, kind) = rest.split_once('_')?;
    let id = ShmId::parse(id).ok()?;
    if id.as_str() != id_str_exact(rest) {
        // upper-case ids are not FairMQ names
        return None;
    }
    if legacy {
        return Some((
            id,
            if kind == "ms" {
                ObjectType::LegacyMonitorSemaphore
            } else {
                ObjectType::Other
            },
        ));
    }
    let indexed = |prefix: &str| {
        kind.strip_prefix(prefix)
            .and_then(|n| n.parse::<u16>().ok())
    };
    let ty = if kind == "mng" {
        ObjectType::Management
    } else if kind == "ms" {
        ObjectType::MonitorMarker
    } else if kind.starts_with("tmp.") {
        ObjectType::Temporary
    } else if kind
        .strip_prefix("q_")
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '_'))
    {
        ObjectType::Queue
    } else if let Some(n) = indexed("m_") {
        ObjectType::Segment(n)
    } else if let Some(n) = indexed("rgq_") {
        ObjectType::RegionQueue(n)
    } else if let Some(n) = indexed("rrc_") {
        ObjectType::RegionRefCount(n)
    } else if let Some(n) = indexed("rg_") {
        ObjectType::Region(n)
    } else {
        ObjectType::Other
    };
    Some((id, ty))
}

fn id_str_exact(rest: &str) -> &str {
    rest.split_once('_').map(|(id, _)| id).unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_id_examples() {
        assert_eq!(shm_id_for_uid(0, "default").as_str(), "f8fb93a1");
        assert_eq!(shm_id_for_uid(0, "test123").as_str(), "d202a2b5");
        assert_eq!(shm_id_for_uid(1000, "test123").as_str(), "2a5a9562");
        assert_eq!(shm_id_for_uid(1000, "default").as_str(), "eca859e3");
        assert_eq!(shm_id_for_uid(1000, "test").as_str(), "0a27a418");
        assert_eq!(shm_id_for_uid(1001, "default").as_str(), "293bdc57");
        assert_eq!(
            shm_id_for_uid(1000, "12345678901234567890").as_str(),
            "0e3a2b6e"
        );
        assert_eq!(
            ShmId::from_session("default"),
            shm_id_for_uid(effective_uid(), "default")
        );
        assert_eq!(shm_id("x"), ShmId::from_session("x"));
    }

    #[test]
    fn shm_id_from_number() {
        assert_eq!(ShmId::from_number(1).as_str(), "00000001");
        assert_eq!(ShmId::from_number(0xdead_beef).as_str(), "deadbeef");
        assert_eq!(ShmId::from_number(0x1_0000_0000).as_str(), "100000000");
        assert_eq!(ShmId::from_number(u64::MAX).as_str(), "ffffffffffffffff");
        assert_eq!(ShmId::from_number(0x0a27_a418).to_number(), 0x0a27_a418);
        // The device path round-trips derived ids through a number: identical result.
        let id = shm_id_for_uid(1000, "test");
        assert_eq!(ShmId::from_number(id.to_number()), id);
    }

    #[test]
    fn shm_id_parse() {
        assert_eq!(ShmId::parse("0a27a418").unwrap().as_str(), "0a27a418");
        assert_eq!(ShmId::parse("0A27A418").unwrap().as_str(), "0a27a418");
        assert_eq!(
            "ffffffffffffffff".parse::<ShmId>().unwrap().to_number(),
            u64::MAX
        );
        for bad in [
            "",
            "1234567",
            "0a27a41g",
            "fmq_0a27",
            "12345678901234567",
            "0a27 418",
        ] {
            let err = ShmId::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidShmId { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("shmId"), "{err}");
        }
    }

    #[test]
    fn object_names() {
        let id = ShmId::parse("0a27a418").unwrap();
        assert_eq!(id.prefix(), "fmq_0a27a418_");
        assert_eq!(id.management_name(), "fmq_0a27a418_mng");
        assert_eq!(id.segment_name(0), "fmq_0a27a418_m_0");
        assert_eq!(id.segment_name(65535), "fmq_0a27a418_m_65535");
        assert_eq!(id.region_name(1024), "fmq_0a27a418_rg_1024");
        assert_eq!(id.region_queue_name(1024), "fmq_0a27a418_rgq_1024");
        assert_eq!(id.region_refcount_name(7), "fmq_0a27a418_rrc_7");
        assert_eq!(id.monitor_marker_name(), "fmq_0a27a418_ms");
        assert_eq!(id.legacy_monitor_semaphore_name(), "sem.fmq_0a27a418_ms");
    }

    #[test]
    fn parse_names() {
        let id = ShmId::parse("0a27a418").unwrap();
        let p = |n: &str| parse_object_name(n).map(|(i, t)| (i.as_str().to_owned(), t));
        let s = |t| Some((id.as_str().to_owned(), t));
        assert_eq!(p(&id.management_name()), s(ObjectType::Management));
        assert_eq!(p(&id.segment_name(3)), s(ObjectType::Segment(3)));
        assert_eq!(p(&id.region_name(1024)), s(ObjectType::Region(1024)));
        assert_eq!(p(&id.region_queue_name(9)), s(ObjectType::RegionQueue(9)));
        assert_eq!(
            p(&id.region_refcount_name(9)),
            s(ObjectType::RegionRefCount(9))
        );
        assert_eq!(p(&id.monitor_marker_name()), s(ObjectType::MonitorMarker));
        assert_eq!(
            p(&id.legacy_monitor_semaphore_name()),
            s(ObjectType::LegacyMonitorSemaphore)
        );
        assert_eq!(p("fmq_0a27a418_tmp.12.0.mng"), s(ObjectType::Temporary));
        assert_eq!(p("fmq_0a27a418_cq"), s(ObjectType::Other));
        assert_eq!(p("fmq_0a27a418_q_123_4"), s(ObjectType::Queue));
        assert_eq!(p("fmq_0a27a418_q_x"), s(ObjectType::Other));
        assert_eq!(p("fmq_0a27a418_m_70000"), s(ObjectType::Other));
        assert_eq!(p("fmq_0A27A418_mng"), None);
        assert_eq!(p("something_else"), None);
        assert_eq!(p("fmq_xyz_mng"), None);
        assert_eq!(p("sem.other"), None);
    }
}
