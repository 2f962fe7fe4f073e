//! FairMQ device runtime: what a device author uses.
//!
//! * [`Device`] (the hooks a device implements) and [`DeviceContext`] (what the hooks get:
//!   configuration, state, transports, channels, transfers), in [`device`];
//! * [`DeviceRunner`] / [`run_device`]: the launch sequence, command line, plugins and the
//!   state machine on the main thread, in [`runner`];
//! * [`Channel`]: a sub-channel (one socket) with default timeouts and the automatic
//!   cross-transport copy, and [`Poller`], in [`channel`];
//! * [`plugin`]: the [`Plugin`] trait, [`PluginServices`], the [`PluginManager`], the built-in
//!   `config` and `control` plugins, and the dynamic plugin ABI;
//! * [`options`]: option declarations and the layered command-line parser;
//! * [`logging`]: FairMQ's severities and verbosities on top of `tracing`;
//! * [`rate`]: the rate limiter and the per-channel rate logger;
//! * the pure core: [`state`], [`state_machine`], [`properties`], [`channel_config`].
//!
//! Transports are found by name in the `fairmq-transport` registry; this crate links the
//! zeromq transport (feature `zeromq`, on by default) so that it registers itself.
//!
//! Where this crate deliberately differs from FairMQ:
//! * a `--channel-config` token without a channel name is an error, not only a log line;
//! * JSON errors are returned (with file, line and column for syntax errors), and a missing
//!   device entry names the id and the ids present; channel configuration errors are FATAL;
//! * validation splits multi-endpoint addresses on `,` like the attach step (FairMQ: `;`);
//! * [`channel_config::add_channel`] writes the send/receive timeouts too;
//! * channel names containing `.` are rejected by the parsers (they would corrupt the
//!   property keys);
//! * an unknown command-line option is an error;
//! * options are layered with the `config` crate: defaults < `--options-file <json>` (an
//!   addition: a JSON object of option values) < `FAIRMQ_<OPTION>` environment variables <
//!   command line (`FAIRMQ_SEVERITY` still overrides `--severity`, as in FairMQ);
//! * a receive timeout on an OnData input polls again instead of ending RUNNING;
//! * rate logging divides by the real interval;
//! * errors in OnData threads of several transports send the device to ERROR instead of
//!   terminating the process;
//! * a bind channel without address goes straight to auto-bind (FairMQ binds port 1 first,
//!   which succeeds for root).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
pub mod channel_config;
pub mod device;
pub mod error;
pub mod handlers;
pub mod logging;
pub mod options;
pub mod plugin;
pub mod properties;
pub mod rate;
pub mod runner;
pub mod state;
pub mod state_machine;
pub mod typed_options;
mod worker;

pub use channel::{Channel, PollEvents, Poller};
pub use channel_config::{ChannelConfigError, ChannelSpec, NetworkError, SubChannelSpec};
pub use device::{ChannelEndpoints, ChannelRef, DataKind, Device, DeviceContext, Version};
pub use error::{HookError, HookResult, RuntimeError};
pub use handlers::{run, Handlers, WithHandlers};
pub use options::{OptionSpec, Options};
pub use plugin::{Plugin, PluginManager, PluginRegistration, PluginServices, PluginVersion};
pub use properties::{Origin, Properties, PropertyError, PropertyType, PropertyValue};
pub use rate::RateLimiter;
pub use runner::{run_device, DeviceRunner};
pub use state::{next_state, State, StateError, Transition};
pub use state_machine::{StateChange, StateMachine};
pub use typed_options::NoOptions;
pub use worker::run_state_machine;

/// Re-exports of the transport API, so that device crates need only this crate.
pub use fairmq_transport::{
    FactoryPtr, Message, MessagePtr, Outcome, OwnedBuffer, Parts, Socket, SocketType, Timeout,
    TransferError, TransferResult, TransferResultExt, TransportFactory,
};

#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use tracing;
}
