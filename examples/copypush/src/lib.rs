//! FairMQ's `copypush` example, ported: a sampler sends the same message (a counter) to every
//! sub-channel of `data`, each sink prints the counter it receives.
//!
//! ```text
//!                           ┌── data[0] ──▶ sink1
//!  sampler (push, bind) ────┤
//!                           └── data[1] ──▶ sink2   (pull, connect)
//! ```
//!
//! The copies share the payload (`Message::copy_from`: a reference count, no byte copy), as
//! FairMQ's `Message::Copy` does. Unlike PUB-SUB, PUSH-PULL needs a socket per receiver but
//! loses nothing. The binaries, options and channel name are FairMQ's
//! (`fairmq-ex-copypush-sampler --max-iterations`, `fairmq-ex-copypush-sink --max-iterations`).

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
