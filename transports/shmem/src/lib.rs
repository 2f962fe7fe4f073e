//! FairMQ shared-memory transport: the low-level shared-memory layer.
//!
//! Payloads of the shmem transport live in named POSIX shared memory; only small metadata
//! messages travel over ZeroMQ. This crate part provides what those messages point into, shared
//! by all processes of a *session*:
//!
//! * [`ids`]: the session id (shmId, identical to FairMQ's: hex of the first 4 bytes of
//!   SHA-256(euid + session)) and the object names `fmq_<shmId>_{mng, m_<n>, rg_<n>, rgq_<n>,
//!   rrc_<n>, ms}`.
//! * [`segment`]: creating and opening named objects with a validated header (magic, layout
//!   version, kind, size), atomic publication, `posix_fallocate` so that a full `/dev/shm` is an
//!   error at creation instead of a SIGBUS later.
//! * [`alloc`]: the robust, offset-based allocator inside managed segments (`rbtree_best_fit` /
//!   `simple_seq_fit`): any process allocates, any frees, a process killed at any instruction
//!   never deadlocks the others.
//! * [`management`]: the management segment (session info, counters, segment and region
//!   registries), `flock`-based session liveness, cleanup, the monitor marker and heartbeats.
//! * [`sync`]: the robust process-shared mutex and futex helpers used by the above.
//! * [`monitor`]: the shared-memory monitor library behind `fairmq-shmmonitor`: cleanup,
//!   session descriptions, listing, heartbeat watching, the interactive mode.
//!
//! Linux only. Every `unsafe` block carries a `// SAFETY:` comment. Shared-memory contents are
//! never trusted: all offsets read from shared memory are bounds-checked before use.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod alloc;
pub mod error;
pub mod ids;
pub mod management;
pub mod monitor;
pub mod segment;
pub mod sync;
pub mod transport;

pub use alloc::{AllocationPolicy, Allocator, HeapStats, ManagedSegment, SegmentOptions};
pub use error::{Error, Result};
pub use ids::{shm_id, shm_id_for_uid, ShmId};
pub use management::{
    cleanup_session, list_session_objects, list_sessions, remove_session_if_dead,
    remove_session_objects, session_is_alive, session_status, CleanupScope, Heartbeat,
    ManagementSegment, MonitorMarker, RegionInfo, SegmentInfo, SessionInfo, SessionStatus,
};
pub use segment::{Access, Location, ObjectKind, SharedObject};

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the unit tests.

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    use crate::ids::ShmId;
    use crate::management::{cleanup_session, list_session_objects, CleanupScope};

    /// A unique session per test; cleans up after a failed test.
    pub struct TestSession {
        pub session: String,
        pub id: ShmId,
    }

    impl TestSession {
        pub fn new(tag: &str) -> TestSession {
            static N: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let session = format!(
                "fmqrs-unit-{tag}-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let id = ShmId::from_session(&session);
            TestSession { session, id }
        }

        /// Every entry of /dev/shm whose name contains the shmId.
        pub fn objects(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(crate::segment::SHM_DIR)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.contains(self.id.as_str()))
                .collect();
            v.sort();
            v
        }

        pub fn assert_clean(&self) {
            let left = self.objects();
            assert!(left.is_empty(), "objects left in /dev/shm: {left:?}");
            assert!(
                list_session_objects(std::path::Path::new("/dev/shm"), &self.id)
                    .unwrap()
                    .is_empty()
            );
        }
    }

    impl Drop for TestSession {
        fn drop(&mut self) {
            if !self.objects().is_empty() {
                let _ = cleanup_session(&self.id, CleanupScope::Full);
            }
        }
    }

    /// splitmix64
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed)
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n.max(1)
        }
    }

    /// Polls `cond` every millisecond; panics after `timeout`.
    pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < timeout,
                "condition not met within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
