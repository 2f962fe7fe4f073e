//! The shmem transport's settings, read from the device's properties (FairMQ's `--shm-*`
//! options, `--session`, `--shmid`, `--io-threads`).

use crate::alloc::AllocationPolicy;
use crate::ids::ShmId;
use fairmq_transport::{TransportConfig, TransportError};
use std::time::Duration;

/// Default managed segment size: 2 GiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 2 << 30;

/// How long an allocation waits for memory when the segment is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAllocPolicy {
    /// Wait until memory is freed or the transport is interrupted.
    WaitForever,
    /// Wait at most this long, then fail.
    WaitAtMost(Duration),
}

/// How descriptors travel between shmem sockets (`shm-metadata-path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataPath {
    /// Over libzmq sockets, as FairMQ does (`zmq`).
    Zmq,
    /// Through bounded queues in shared memory, one per connection (`queue`); libzmq only
    /// for the handshake.
    Queue,
}

/// Settings of one shmem factory.
#[derive(Debug, Clone)]
pub struct ShmConfig {
    /// Device id.
    pub id: String,
    /// Session name (`--session`).
    pub session: String,
    /// The session's shmId (from `--shmid` or derived from the session and the euid).
    pub shm_id: ShmId,
    /// `--shm-segment-size`.
    pub segment_size: u64,
    /// `--shm-segment-id`.
    pub segment_id: u16,
    /// `--shm-allocation`.
    pub policy: AllocationPolicy,
    /// `--shm-zero-segment`.
    pub zero: bool,
    /// `--shm-zero-segment-on-creation`.
    pub zero_on_creation: bool,
    /// `--shm-mlock-segment`.
    pub mlock: bool,
    /// `--shm-mlock-segment-on-creation`.
    pub mlock_on_creation: bool,
    /// `--shm-no-cleanup`.
    pub no_cleanup: bool,
    /// `--shm-group`: the group (gid) a session this factory creates is shared with (its
    /// objects 0660, owned by the group); `None`: the user only (0600).
    pub group: Option<u32>,
    /// `--shm-metadata-msg-size`.
    pub metadata_msg_size: usize,
    /// From `--shm-throw-bad-alloc`, `--bad-alloc-max-attempts`, `--bad-alloc-attempt-interval`.
    pub bad_alloc: BadAllocPolicy,
    /// `--io-threads`.
    pub io_threads: i32,
    /// `shm-metadata-path`: `queue` (default) or `zmq`.
    pub metadata_path: MetadataPath,
}

fn bool_opt(c: &TransportConfig, key: &str, default: bool) -> Result<bool, TransportError> {
    match c.properties.get(key).map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(TransportError::Other(format!(
                "invalid value '{v}' for option --{key}: expected true or false"
            ))),
        },
    }
}

/// `--shm-group`: a group name or a numeric gid.
fn group_opt(c: &TransportConfig) -> Result<Option<u32>, TransportError> {
    let Some(v) = c.properties.get("shm-group").map(|s| s.trim().to_owned()) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(gid) = v.parse::<u32>() {
        return Ok(Some(gid));
    }
    crate::ids::group_id(&v).map(Some).ok_or_else(|| {
        TransportError::Other(format!(
            "unknown group '{v}' for --shm-group: give a group name of this system or a numeric gid"
        ))
    })
}

impl ShmConfig {
    /// Reads the settings from a transport config.
    pub fn from_transport_config(c: &TransportConfig) -> Result<ShmConfig, TransportError> {
        let session: String = c.get_or("session", "default".to_string())?;
        let shm_id = match c.get::<u64>("shmid")? {
            Some(n) => ShmId::from_number(n),
            None => ShmId::from_session(&session),
        };
        let policy_name: String = c.get_or("shm-allocation", "rbtree_best_fit".to_string())?;
        let policy = policy_name.parse::<AllocationPolicy>().map_err(|_| {
            TransportError::Other(format!(
                "Provided shared memory allocation algorithm '{policy_name}' is not supported. Supported are 'rbtree_best_fit'/'simple_seq_fit' (--shm-allocation)"
            ))
        })?;
        let throw = bool_opt(c, "shm-throw-bad-alloc", true)?;
        let attempts: Option<i64> = c.get("bad-alloc-max-attempts")?;
        let interval: u64 = c.get_or("bad-alloc-attempt-interval", 50)?;
        let bad_alloc = match (throw, attempts) {
            (false, _) | (true, None) | (true, Some(-1)) => BadAllocPolicy::WaitForever,
            (true, Some(n)) if n < -1 => {
                return Err(TransportError::Other(format!(
                    "invalid value {n} for --bad-alloc-max-attempts: use -1 (forever) or a count"
                )))
            }
            (true, Some(n)) => {
                BadAllocPolicy::WaitAtMost(Duration::from_millis(interval * (n.max(1) as u64 - 1)))
            }
        };
        let segment_size = c.get_or("shm-segment-size", DEFAULT_SEGMENT_SIZE)?;
        // The environment variable lets whole test suites and device chains switch paths.
        let default_path =
            std::env::var("FAIRMQ_SHM_METADATA_PATH").unwrap_or_else(|_| "queue".to_string());
        let path: String = c.get_or("shm-metadata-path", default_path)?;
        let metadata_path = match path.trim() {
            "zmq" => MetadataPath::Zmq,
            "queue" => MetadataPath::Queue,
            other => {
                return Err(TransportError::Other(format!(
                    "invalid value '{other}' for --shm-metadata-path (or FAIRMQ_SHM_METADATA_PATH): expected zmq or queue"
                )))
            }
        };
        Ok(ShmConfig {
            id: c.id.clone(),
            session,
            shm_id,
            segment_size,
            segment_id: c.get_or("shm-segment-id", 0u16)?,
            policy,
            zero: bool_opt(c, "shm-zero-segment", false)?,
            zero_on_creation: bool_opt(c, "shm-zero-segment-on-creation", false)?,
            mlock: bool_opt(c, "shm-mlock-segment", false)?,
            mlock_on_creation: bool_opt(c, "shm-mlock-segment-on-creation", false)?,
            no_cleanup: bool_opt(c, "shm-no-cleanup", false)?,
            group: group_opt(c)?,
            metadata_msg_size: c.get_or("shm-metadata-msg-size", 0usize)?,
            bad_alloc,
            io_threads: c.get_or("io-threads", 1)?,
            metadata_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = ShmConfig::from_transport_config(&TransportConfig::new("d")).unwrap();
        assert_eq!(c.session, "default");
        assert_eq!(c.shm_id, ShmId::from_session("default"));
        assert_eq!(c.segment_size, 2 << 30);
        assert_eq!(c.policy, AllocationPolicy::RbTreeBestFit);
        assert_eq!(c.bad_alloc, BadAllocPolicy::WaitForever);
        let c = ShmConfig::from_transport_config(
            &TransportConfig::new("d")
                .with("shmid", 1)
                .with("shm-allocation", "simple_seq_fit")
                .with("bad-alloc-max-attempts", 3)
                .with("bad-alloc-attempt-interval", 10)
                .with("shm-no-cleanup", "true"),
        )
        .unwrap();
        assert_eq!(c.shm_id.as_str(), "00000001");
        assert_eq!(c.policy, AllocationPolicy::SimpleSeqFit);
        assert_eq!(
            c.bad_alloc,
            BadAllocPolicy::WaitAtMost(Duration::from_millis(20))
        );
        assert!(c.no_cleanup);
        let err = ShmConfig::from_transport_config(
            &TransportConfig::new("d").with("shm-allocation", "buddy"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("'buddy'") && err.contains("simple_seq_fit"),
            "{err}"
        );
    }
}
