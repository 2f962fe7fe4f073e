//! The built-in FairMQ devices (spec §8), one module each; the binaries in `src/bin` run them
//! with [`fairmq::run_device`].
//!
//! Where they differ from FairMQ: `--max-iterations N` sends/receives exactly N messages
//! (FairMQ: N + 1), and the sink reports how many messages it received and how fast.

pub mod merger;
pub mod multiplier;
pub mod proxy;
pub mod sampler;
pub mod sink;
pub mod splitter;

use fairmq::{HookError, Parts, TransferError};
// Prelinked `shmmonitor` plugin: `--shm-monitor true` (and `-P p:shmmonitor`) need it.
use fairmq_plugin_shmmonitor as _;
// Prelinked `odc` control plugin: `-P p:odc` (fairmq-topology drives the devices with it).
use fairmq_plugin_odc as _;

/// What a failed transfer means for a device loop.
pub(crate) enum Flow {
    /// Try again.
    Retry,
    /// Leave the loop (a transition is pending).
    Stop,
}

/// Classifies a transfer error: timeouts retry, interrupts stop, the rest is an error.
pub(crate) fn on_transfer_error(e: TransferError) -> Result<Flow, HookError> {
    match e {
        TransferError::Timeout => Ok(Flow::Retry),
        TransferError::Interrupted => {
            tracing::debug!("Transfer interrupted");
            Ok(Flow::Stop)
        }
        other => Err(other.into()),
    }
}

/// Zero-copy copies of every part of `parts`, made by the transport of `channel`.
pub(crate) fn copy_parts(channel: &fairmq::Channel, parts: &Parts) -> Result<Parts, HookError> {
    let mut copy = Parts::new();
    for part in parts.iter() {
        let mut m = channel.new_message();
        m.copy_from(part.as_ref())?;
        copy.add_part(m);
    }
    Ok(copy)
}
