//! The `zeromq` transport of fairmq-rs: messages are libzmq messages, sockets are libzmq
//! sockets (through the `zmq` crate, which builds the bundled libzmq).
//!
//! Behaviour follows FairMQ's zeromq transport: socket ids `<device>.<name>.<type>` (also the
//! ZMQ identity), SUB sockets subscribe to everything, linger 1000 ms until the channel sets its
//! own, transfers block in short interruptible slices. The frames on the wire are plain ZeroMQ
//! frames, so any ZeroMQ peer can talk to a zeromq channel.
//!
//! The libzmq plumbing (context, sockets, messages through `zmq-sys`) is the crate
//! `fairmq-zmq-core`, which the shmem transport uses for its metadata too.

mod message;
mod region;
mod socket;

pub use message::ZmqMessage;
pub use region::ZmqRegion;
pub use socket::ZmqSocket;

use fairmq_transport::{
    FactoryPtr, MessagePtr, OwnedBuffer, PollResult, RegionCallback, RegionConfig,
    RegionEventCallback, RegionInfo, RegionPtr, Socket, SocketPtr, SocketType, TransportConfig,
    TransportError, TransportFactory, TransportRegistration,
};
use region::EventHub;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// The name this transport registers under.
pub const NAME: &str = "zeromq";

use fairmq_zmq_core as core;
pub use fairmq_zmq_core::generated_id;

/// The zeromq transport factory: one libzmq context per factory.
pub struct ZmqFactory {
    id: String,
    ctx: core::Context,
    hub: Arc<EventHub>,
    next_region_id: AtomicU16,
}

impl ZmqFactory {
    /// A factory configured from `config` (`io-threads`).
    pub fn new(config: &TransportConfig) -> Result<Self, TransportError> {
        let io_threads = config.get_or("io-threads", 1i32)?;
        let id = if config.id.is_empty() {
            generated_id()
        } else {
            config.id.clone()
        };
        Ok(ZmqFactory {
            id,
            ctx: core::Context::new(io_threads)?,
            hub: Arc::default(),
            next_region_id: AtomicU16::new(1),
        })
    }
}

fn create(config: &TransportConfig) -> Result<FactoryPtr, TransportError> {
    Ok(Arc::new(ZmqFactory::new(config)?))
}

inventory::submit! {
    TransportRegistration { name: NAME, create }
}

impl TransportFactory for ZmqFactory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn new_message(&self) -> MessagePtr {
        Box::new(ZmqMessage::empty(None))
    }
    fn new_message_aligned(&self, alignment: usize) -> MessagePtr {
        Box::new(ZmqMessage::empty(Some(alignment)))
    }
    fn new_message_with_size(
        &self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<MessagePtr, TransportError> {
        Ok(ZmqMessage::with_size(size, alignment)?)
    }
    fn new_message_from_buffer(&self, buffer: OwnedBuffer) -> Result<MessagePtr, TransportError> {
        Ok(Box::new(ZmqMessage::from_buffer(buffer)?))
    }
    fn new_region_message(
        &self,
        region: &RegionPtr,
        offset: usize,
        size: usize,
        hint: u64,
    ) -> Result<MessagePtr, TransportError> {
        let r = region.as_any().downcast_ref::<ZmqRegion>().ok_or_else(|| {
            TransportError::Region(format!(
                "region type ({}) does not match message type ({NAME})",
                region.transport()
            ))
        })?;
        let (bytes, guard) = r.block(offset, size, hint)?;
        Ok(Box::new(ZmqMessage::from_region_block(bytes, guard)?))
    }
    fn new_socket(&self, socket_type: SocketType, name: &str) -> Result<SocketPtr, TransportError> {
        let id = format!("{}.{}.{}", self.id, name, socket_type);
        Ok(Box::new(ZmqSocket::new(core::SocketCore::new(
            &self.ctx,
            socket_type,
            id,
        )?)))
    }
    fn poll(&self, sockets: &[&dyn Socket], timeout_ms: i64) -> Result<PollResult, TransportError> {
        core::poll_sockets(&self.ctx, sockets, timeout_ms, NAME, |s: &ZmqSocket| {
            &s.core
        })
    }
    fn new_unmanaged_region(
        &self,
        config: RegionConfig,
        callback: RegionCallback,
    ) -> Result<RegionPtr, TransportError> {
        let id = match config.id {
            Some(id) => id,
            None => self.next_region_id.fetch_add(1, Ordering::Relaxed),
        };
        Ok(ZmqRegion::new(id, &config, callback, self.hub.clone())?)
    }
    fn subscribe_to_region_events(&self, callback: RegionEventCallback) {
        self.hub.subscribe(callback);
    }
    fn subscribed_to_region_events(&self) -> bool {
        self.hub.subscribed()
    }
    fn unsubscribe_from_region_events(&self) {
        self.hub.unsubscribe();
    }
    fn region_info(&self) -> Vec<RegionInfo> {
        self.hub.live().iter().map(|r| r.current_info()).collect()
    }
    fn interrupt(&self) {
        self.ctx.interrupt();
    }
    fn resume(&self) {
        self.ctx.resume();
    }
    fn interrupted(&self) -> bool {
        self.ctx.interrupted()
    }
    fn reset(&self) {}
}
