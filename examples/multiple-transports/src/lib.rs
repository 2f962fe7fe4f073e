//! FairMQ's `examples/multiple-transports` (spec §9.1): three devices whose channels use two
//! transports, and a launcher that runs them.
//!
//! ```text
//!              data1: push/bind ─ shmem (metadata over ipc, 1 MB payloads in /dev/shm) ─┐
//!  sampler1 ───────────────────────────────────────────────────────────────────────────▶ sink
//!  (shmem)  ◀── ack: sub/bind ─ zeromq ─────────────────────── ack: pub/connect ────── (shmem)
//!  sampler2 ── data2: push/bind ─ zeromq (1000-byte messages) ── data2: pull/connect ──▶
//!  (zeromq)
//! ```
//!
//! * [`sampler1`]: main transport `shmem`; sends 1,000,000-byte messages created with
//!   `new_message_for("data1", ...)` (allocated directly in the shared-memory segment, never
//!   copied) and counts the acknowledgements that arrive on its zeromq `ack` channel in a
//!   thread of its own (`Acknowledged <n> messages`).
//! * [`sampler2`]: sends 1000-byte messages of its main transport (zeromq) on `data2`.
//! * [`sink`]: main transport `shmem`; receives `data1` (shmem) and `data2` (zeromq) with two
//!   OnData handlers, which the runtime runs in one thread per transport, and publishes an
//!   empty acknowledgement created with `new_message_for("ack", ...)` for every `data1`
//!   message. With `--max-iterations N` it stops once it received N messages from both.
//!
//! Nothing is copied between transports: every message is made by the transport of the
//! channel it is sent on. The channels come from `--channel-config` ([`topology`]) or from the
//! JSON file `multiple-transports.json` (`--mq-config`), which sets the transport of every
//! channel. [`report`] holds the log lines the devices print at the end and the parsers the
//! launcher (`fairmq-ex-multiple-transports-launcher`) reads them with.
//!
//! Where this differs from FairMQ's example: sampler1 with `--max-iterations N` waits for the
//! N acknowledgements before it leaves RUNNING (FairMQ's may stop its ack thread early), and
//! when it is stopped it still takes the acknowledgements already on the way (for up to
//! [`sampler1::ACK_DRAIN_QUIET`] without a new one), so that its count equals what the sink
//! received when the sink is stopped first; the sink publishes probes on `ack` until the first
//! data1 message arrives and sampler1 starts sending only after one came through, so that no
//! acknowledgement is lost to PUB/SUB's late joining; and the `ack` channels have no high-water
//! mark, so that none is dropped while sampler1 is busy.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod report;
pub mod sampler1;
pub mod sampler2;
pub mod sink;
pub mod topology;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;

/// Size of sampler1's messages (FairMQ: 1,000,000 bytes).
pub const DATA1_MESSAGE_SIZE: usize = 1_000_000;
/// Size of sampler2's messages (FairMQ: 1000 bytes).
pub const DATA2_MESSAGE_SIZE: usize = 1000;

/// What the sink publishes on `ack` until the first data1 message arrives (acknowledgements
/// are empty): once sampler1 receives one, its subscription is in place.
pub const SUBSCRIPTION_PROBE: &[u8] = b"?";

/// `--max-iterations`, the only option of the three devices (as in FairMQ).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct MaxIterations {
    /// Maximum number of iterations of Run/ConditionalRun/OnData (0 - infinite)
    #[arg(long, default_value_t = 0)]
    pub max_iterations: u64,
}
