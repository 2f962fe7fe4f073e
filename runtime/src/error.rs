//! The runtime's error type and the error type of device hooks.
//!
//! Device hooks ([`crate::Device`]) return [`HookResult`]: any error type that converts into a
//! boxed standard error will do (`?` on `std::io::Error`, a `thiserror` enum, a string via
//! `.into()`). Everything the runtime itself reports is a [`RuntimeError`].

use crate::channel_config::ChannelConfigError;
use crate::plugin::PluginError;
use crate::properties::PropertyError;
use crate::state::StateError;
use fairmq_transport::TransportError;

/// What a device hook may fail with: any boxed standard error.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of a device hook.
pub type HookResult<T = ()> = Result<T, HookError>;

/// Errors of the device runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A property is missing or has the wrong type.
    #[error(transparent)]
    Property(#[from] PropertyError),
    /// The channel configuration is wrong.
    #[error(transparent)]
    ChannelConfig(#[from] ChannelConfigError),
    /// A transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A state transition could not be done.
    #[error(transparent)]
    State(#[from] StateError),
    /// A plugin could not be loaded or instantiated.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The command line (or options file / environment) is wrong; the message says how.
    #[error("{0}")]
    CommandLine(String),
    /// The device's typed options (see [`crate::typed_options`]) could not be read back.
    #[error("{message}")]
    TypedOptions {
        /// The problem in one line, naming the option.
        message: String,
        /// clap's error.
        #[source]
        source: clap::Error,
    },
    /// A channel or sub-channel that does not exist was asked for.
    #[error("GetChannel(): '{name}[{index}]' does not exist.")]
    NoSuchChannel {
        /// Channel name.
        name: String,
        /// Sub-channel index.
        index: usize,
    },
    /// A sub-channel could not be attached (bound or connected).
    #[error("{0}")]
    Attach(String),
    /// A device hook failed; `hook` names it (`Init`, `Run`, ...).
    #[error("error in {hook}(): {message}")]
    Hook {
        /// The hook's name.
        hook: &'static str,
        /// The error's message.
        message: String,
    },
    /// A device hook panicked; `hook` names it.
    #[error("panic in {hook}(): {message}")]
    HookPanic {
        /// The hook's name.
        hook: &'static str,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The device entered the ERROR state.
    #[error("Device transitioned to error state")]
    ErrorState,
    /// Anything else, with its explanation.
    #[error("{0}")]
    Other(String),
}
