//! FairMQ's `1-n-1` example, ported: a sampler sends a text on `data1`, any number of
//! processors append " (modified by <id>)" to it and send it on `data2`, and a sink prints it.
//!
//! ```text
//!                      ┌─▶ processor1 ─┐
//!  sampler ── data1 ───┤               ├── data2 ──▶ sink
//!  (push, bind)        └─▶ processor2 ─┘            (pull, bind)
//! ```
//!
//! The binaries, options and channel names are FairMQ's (`fairmq-ex-1-n-1-sampler --text
//! --max-iterations`, `fairmq-ex-1-n-1-processor`, `fairmq-ex-1-n-1-sink --max-iterations`),
//! so FairMQ's start script and `ex-1-n-1.json` run them unchanged.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod sampler;
pub mod sink;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;

/// `--max-iterations`, as the sampler and the sink declare it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MaxIterations {
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}
