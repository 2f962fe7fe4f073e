//! FairMQ device runtime: the pure, I/O-free core.
//!
//! This crate is what a device author uses. Its core, provided here, has no sockets and no
//! threads of its own:
//!
//! * [`state`]: the 16 device states and 12 transitions with FairMQ's names, and the
//!   transition table [`state::next_state`] (spec §1.1–§1.3);
//! * [`state_machine`]: the thread-safe scheduler ([`StateMachine`]) that controllers and
//!   the device's worker loop share (spec §1.4, §1.5, §1.8);
//! * [`properties`]: the typed, subscribable property store ([`Properties`], spec §7.6);
//! * [`channel_config`]: channel settings, the `--mq-config` JSON and `--channel-config`
//!   parsers, conversion to and from `chans.<name>.<i>.<prop>` properties, validation, and
//!   address helpers (spec §3).
//!
//! Each module has its own error enum ([`StateError`], [`PropertyError`],
//! [`ChannelConfigError`], [`NetworkError`]).
//!
//! Where this crate deliberately differs from FairMQ:
//! * a `--channel-config` token without a channel name is an error, not only a log line;
//! * JSON errors are returned (with file, line and column for syntax errors), and a missing
//!   device entry names the id and the ids present;
//! * validation splits multi-endpoint addresses on `,` like the attach step (FairMQ: `;`);
//! * [`channel_config::add_channel`] writes the send/receive timeouts too;
//! * channel names containing `.` are rejected by the parsers (they would corrupt the
//!   property keys).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod channel_config;
pub mod properties;
pub mod state;
pub mod state_machine;

pub use channel_config::{ChannelConfigError, ChannelSpec, NetworkError, SubChannelSpec};
pub use properties::{Origin, Properties, PropertyError, PropertyType, PropertyValue};
pub use state::{next_state, State, StateError, Transition};
pub use state_machine::{StateChange, StateMachine};
