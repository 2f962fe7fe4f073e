//! FairMQ's `1-1` example, ported: a sampler sends a text on `data`, a sink prints it.
//!
//! ```text
//!  sampler ── data ──▶ sink
//!  (push, bind)        (pull, connect)
//! ```
//!
//! The binaries, options and channel name are FairMQ's (`fairmq-ex-1-1-sampler --text
//! --max-iterations`, `fairmq-ex-1-1-sink --max-iterations`), so FairMQ's start script runs
//! them unchanged. The sampler does not pace itself: `--rate` (a device option) does.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod sampler;
pub mod sink;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;
