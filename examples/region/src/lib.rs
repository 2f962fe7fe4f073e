//! FairMQ's `region` example, ported: zero-copy transfers out of an unmanaged region.
//!
//! ```text
//!  sampler ──── data (push, bind) ────▶ sink
//!  creates a 10 MB unmanaged region,     receives the 64 parts and releases them;
//!  sends 64-part messages pointing       the region's callback then tells the
//!  into it, counts the acknowledgements  sampler that the blocks are free again
//! ```
//!
//! * [`sampler`] (`fairmq-ex-region-sampler`): creates the region with the transport of its
//!   output channel (`--chan-name`, default `data`), sends `--max-iterations` multipart
//!   messages of 64 parts of `--msg-size` bytes each, every part a region message, and waits
//!   until the region's callback has acknowledged every part before it leaves RUNNING.
//! * [`sink`] (`fairmq-ex-region-sink`): receives multipart messages on `--chan-name`.
//! * [`processor`] (`fairmq-ex-region-processor`): copies every part received on `data1`
//!   into two new messages, sent on `data2` and `data3` (the "advanced" topology).
//!
//! All three subscribe to the region events of their channel's transport and log them
//! (`Region event: created: unmanaged, id: ...`).
//!
//! The binaries, options and channel names are FairMQ's, so that FairMQ's start and test
//! scripts run them unchanged.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod processor;
pub mod sampler;
pub mod sink;

use fairmq::TransportFactory;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;

/// Logs every region event of `transport` as FairMQ's region example does.
pub fn log_region_events(transport: &dyn TransportFactory) {
    transport.subscribe_to_region_events(std::sync::Arc::new(|info| {
        tracing::info!(
            "Region event: {}: {}, id: {}, ptr: {:#x}, size: {}, flags: {}",
            info.event,
            if info.managed { "managed" } else { "unmanaged" },
            info.id,
            info.ptr,
            info.size,
            info.flags
        );
    }));
}
