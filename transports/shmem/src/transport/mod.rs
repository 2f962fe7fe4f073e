//! The `shmem` transport: payloads in the session's shared memory, 40-byte metadata over
//! ZeroMQ sockets. Registered in the transport registry as `"shmem"`.

mod cache;
mod config;
mod factory;
mod message;
mod qsocket;
pub mod queue;
mod queue_compat;
mod region;
mod rendezvous;
mod socket;
pub mod wire;

pub use cache::transport_blocks;
pub use config::{BadAllocPolicy, MetadataPath, ShmConfig, DEFAULT_SEGMENT_SIZE};
pub use factory::ShmFactory;
pub use message::ShmMessage;
pub use qsocket::QueueSocket;
pub use region::ShmRegion;
pub use socket::ShmSocket;

use fairmq_transport::{FactoryPtr, TransportConfig, TransportError, TransportRegistration};
use std::sync::Arc;

/// The name this transport registers under.
pub const NAME: &str = "shmem";

fn create(config: &TransportConfig) -> Result<FactoryPtr, TransportError> {
    Ok(Arc::new(ShmFactory::new(
        ShmConfig::from_transport_config(config)?,
    )?))
}

inventory::submit! {
    TransportRegistration { name: NAME, create }
}
