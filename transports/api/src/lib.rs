//! The FairMQ transport API.
//!
//! Everything a device needs from a transport, independent of how the bytes move: messages
//! ([`Message`], [`Parts`]), sockets ([`Socket`]), polling ([`TransportFactory::poll`]),
//! unmanaged regions ([`UnmanagedRegion`]) and the [`TransportFactory`] that makes them.
//! Transports register themselves in the [`registry`] with `inventory`, so the runtime finds them
//! by name (`"zeromq"`, `"shmem"`, …) without depending on their types. The [`conformance`]
//! module holds the one test suite that every transport runs.

pub mod address;
pub mod conformance;
mod error;
mod message;
mod region;
pub mod registry;
mod socket;
mod timeout;

pub use error::{Outcome, TransferError, TransferResult, TransferResultExt, TransportError};
pub use message::{ExternalBuffer, Message, MessagePtr, OwnedBuffer, Parts};
pub use region::{
    RegionBlock, RegionCallback, RegionConfig, RegionEvent, RegionEventCallback, RegionInfo,
    RegionPtr, UnmanagedRegion,
};
pub use registry::{
    available_transports, create_transport, TransportConfig, TransportRegistration,
};
pub use socket::{PollResult, Socket, SocketPtr, SocketType};
pub use timeout::Timeout;

use std::sync::Arc;

/// Timeout value meaning "block until done or interrupted".
pub const WAIT_FOREVER: i64 = -1;
/// Timeout value meaning "do not block".
pub const NO_WAIT: i64 = 0;

/// Creates messages, sockets and regions of one transport, and steers all of them at once.
///
/// One factory exists per transport per device and is shared by all channels using it.
pub trait TransportFactory: Send + Sync {
    /// The transport's registered name, e.g. `"zeromq"`.
    fn name(&self) -> &'static str;
    /// The id this factory was created with (the device id).
    fn id(&self) -> &str;

    /// An empty message, typically to receive into.
    fn new_message(&self) -> MessagePtr;
    /// An empty message whose received payload will be aligned to `alignment` bytes.
    fn new_message_aligned(&self, alignment: usize) -> MessagePtr;
    /// A message owning a buffer of `size` bytes, optionally aligned to `alignment` bytes.
    fn new_message_with_size(
        &self,
        size: usize,
        alignment: Option<usize>,
    ) -> Result<MessagePtr, TransportError>;
    /// A message over a buffer the caller hands over; the buffer is released (its `Drop` runs)
    /// when no message needs it any more.
    fn new_message_from_buffer(&self, buffer: OwnedBuffer) -> Result<MessagePtr, TransportError>;
    /// A message over `size` bytes at `offset` of an unmanaged region. When the last message
    /// built on this block is released, the region's callback receives the block and `hint`.
    fn new_region_message(
        &self,
        region: &RegionPtr,
        offset: usize,
        size: usize,
        hint: u64,
    ) -> Result<MessagePtr, TransportError>;

    /// A new socket of the given type; `name` becomes part of its id.
    fn new_socket(&self, socket_type: SocketType, name: &str) -> Result<SocketPtr, TransportError>;

    /// Polls `sockets` (all of this transport) for the events their type supports, for up to
    /// `timeout_ms` (-1 forever). The result says, per index, whether input or output is ready.
    fn poll(&self, sockets: &[&dyn Socket], timeout_ms: i64) -> Result<PollResult, TransportError>;

    /// Creates an unmanaged region. `callback` receives released blocks (single or bulk).
    fn new_unmanaged_region(
        &self,
        config: RegionConfig,
        callback: RegionCallback,
    ) -> Result<RegionPtr, TransportError>;
    /// Subscribes to region events (replaces an earlier subscription).
    fn subscribe_to_region_events(&self, callback: RegionEventCallback);
    /// Whether a region event subscription is active.
    fn subscribed_to_region_events(&self) -> bool;
    /// Ends the region event subscription.
    fn unsubscribe_from_region_events(&self);
    /// A snapshot of the regions (and managed segments) this factory knows of.
    fn region_info(&self) -> Vec<RegionInfo>;

    /// Makes every blocking transfer (and allocation) of this factory return
    /// [`TransferError::Interrupted`] promptly, until [`resume`](Self::resume).
    fn interrupt(&self);
    /// Clears the interrupt flag.
    fn resume(&self);
    /// Whether the factory is currently interrupted.
    fn interrupted(&self) -> bool;
    /// Resets transport state between device re-initialisations.
    fn reset(&self);
}

/// A shared handle to a transport factory.
pub type FactoryPtr = Arc<dyn TransportFactory>;
