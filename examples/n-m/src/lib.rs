//! FairMQ's `n-m` example, ported: time frame building. A synchronizer publishes time frame
//! ids; every one of N senders answers each id with a sub-time frame, sent to receiver
//! `id % M`; each of the M receivers assembles the sub-time frames of all N senders into a
//! complete time frame.
//!
//! ```text
//!                  ┌─▶ sender 0 ─┐   data[id % M]
//!  synchronizer ───┤             ├──────────────▶ receiver 0 .. M-1
//!  (sync: pub)     └─▶ sender N-1┘  (push or pair)  (pull or pair)
//! ```
//!
//! * [`synchronizer`] (`fairmq-ex-n-m-synchronizer`): publishes a `u16` time frame id on
//!   `sync`, once per ConditionalRun (paced by `--rate`).
//! * [`sender`] (`fairmq-ex-n-m-sender --sender-index --subtimeframe-size --num-receivers`):
//!   for every id received on `sync`, sends a two-part message ([`header::Header`] and
//!   `--subtimeframe-size` bytes) on sub-channel `data[id % num-receivers]`, without waiting.
//! * [`receiver`] (`fairmq-ex-n-m-receiver --num-senders --max-timeframes --buffer-timeout`):
//!   buffers sub-time frames by id until `--num-senders` of them arrived.
//!
//! The binaries, options and channel names are FairMQ's, so that FairMQ's
//! `fairmq-start-ex-n-m.sh` (push/pull) and `fairmq-start-ex-n-m-pair.sh` (pair) run them
//! unchanged.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod header;
pub mod receiver;
pub mod sender;
pub mod synchronizer;

// The prelinked `shmmonitor` plugin: `--shm-monitor true` needs it.
use fairmq_plugin_shmmonitor as _;

/// Encodes a time frame id as the synchronizer sends it: a bare `u16` in host byte order
/// (FairMQ sends the `uint16_t` itself).
pub fn encode_id(id: u16) -> Vec<u8> {
    id.to_ne_bytes().to_vec()
}

/// Decodes a time frame id sent by the synchronizer; `None` unless exactly two bytes.
pub fn decode_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}
