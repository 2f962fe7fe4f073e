//! The two places where the descriptor-queue path meets the message's buffer validation: the
//! tag a sent buffer carries, and the adoption of a received descriptor (checked against the
//! tag it came with, as on the libzmq path).

use super::message::ShmMessage;
use super::wire::MetaHeader;
use fairmq_transport::TransportError;

/// The tag to send with `m`'s descriptor.
pub(crate) fn tag(m: &ShmMessage) -> u64 {
    m.wire_tag()
}

/// Adopts a received descriptor into `m`.
pub(crate) fn adopt(m: &mut ShmMessage, meta: MetaHeader, tag: u64) -> Result<(), TransportError> {
    m.adopt_sealed(meta, Some(tag))
}
