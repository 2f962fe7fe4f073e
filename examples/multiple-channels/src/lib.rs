//! FairMQ's `multiple-channels` example, ported: working with several channels and
//! multiplexing between them. A sampler sends `--text` to a sink over `data` (push/pull); a
//! broadcaster publishes "OK" once a second on `broadcast` (pub/sub), to which both the
//! sampler and the sink subscribe. The sampler multiplexes its two channels with a poller,
//! the sink with one OnData handler per channel.
//!
//! ```text
//!  sampler ── data (push/pull) ──▶ sink
//!     ▲                             ▲
//!     └──── broadcast (sub) ────────┤
//!                                   │
//!  broadcaster ── broadcast (pub) ──┘
//! ```
//!
//! The binaries, options and channel names are FairMQ's
//! (`fairmq-ex-multiple-channels-sampler --text --max-iterations`,
//! `fairmq-ex-multiple-channels-sink --max-iterations`,
//! `fairmq-ex-multiple-channels-broadcaster`), so FairMQ's start and test scripts run them
//! unchanged. Over shmem, pub/sub needs the descriptor queues (`--shm-metadata-path queue`).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod broadcaster;
pub mod sampler;
pub mod sink;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;

/// A message's bytes as text (lossy), for the log.
pub fn text(msg: &fairmq::MessagePtr) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(msg.data())
}
