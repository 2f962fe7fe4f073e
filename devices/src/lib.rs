//! The built-in FairMQ devices (spec §8), one module each, with typed options (clap's derive)
//! and per-channel OnData handlers; the binaries in `src/bin` run them with [`fairmq::run`].
//!
//! Where they differ from FairMQ: `--max-iterations N` sends/receives exactly N messages
//! (FairMQ: N + 1), and the sink reports how many messages it received and how fast. Their
//! executables allocate with jemalloc (feature `jemalloc`, on by default), C code included.

pub mod merger;
pub mod multiplier;
pub mod proxy;
pub mod sampler;
pub mod sink;
pub mod splitter;

use fairmq::{HookError, Parts};

/// jemalloc for the whole executable (feature `jemalloc`): Rust's allocations and, through the
/// unprefixed `malloc`/`free` it exports, the C code's (libzmq's messages above all).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "jemalloc")]
use tikv_jemalloc_sys as _;
// Prelinked `shmmonitor` plugin: `--shm-monitor true` (and `-P p:shmmonitor`) need it.
use fairmq_plugin_shmmonitor as _;
// Prelinked `odc` control plugin: `-P p:odc` (fairmq-topology drives the devices with it).
use fairmq_plugin_odc as _;

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
