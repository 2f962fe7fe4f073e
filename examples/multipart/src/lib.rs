//! FairMQ's `multipart` example, ported: a sampler sends multipart messages of seven parts
//! (a small header with a stop flag, then bodies of 1000, 500, 600, 700, 0 and 100 bytes) on
//! `data`; a sink checks and prints them and leaves RUNNING once a header's stop flag is 1.
//!
//! ```text
//!  sampler ── data (7 parts: header + 6 bodies) ──▶ sink
//! ```
//!
//! The binaries, options and channel names are FairMQ's (`fairmq-ex-multipart-sampler
//! --max-iterations`, `fairmq-ex-multipart-sink`), so FairMQ's start script, its test script
//! and `ex-multipart-multiple-endpoints.json` run them unchanged.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod header;
pub mod sampler;
pub mod sink;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;

/// The sizes of the six parts that follow the header, in order.
pub const BODY_SIZES: [usize; 6] = [1000, 500, 600, 700, 0, 100];
