//! The [`Device`] trait (what a device author implements) and the [`DeviceContext`] its hooks
//! receive (spec §1.6–§1.10).
//!
//! A device overrides the hooks it needs. Every hook gets `&mut self` and the context, and
//! returns a [`HookResult`]: an `Err` (or a panic) sends the device to ERROR with a log line
//! naming the hook, and the process exits with 1. Hooks that loop must poll
//! [`DeviceContext::new_state_pending`]; blocking transfers return
//! [`TransferError::Interrupted`](fairmq_transport::TransferError::Interrupted) once a
//! transition is scheduled.
//!
//! Instead of `Run`/`ConditionalRun`, a device can receive through OnData handlers: it calls
//! [`DeviceContext::on_data`] (single messages) or [`DeviceContext::on_data_parts`]
//! (multipart) for an input channel, usually in `init_task`, and implements
//! [`Device::handle_data`] / [`Device::handle_parts`], which get the channel name and the
//! sub-channel index.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fairmq_transport::{FactoryPtr, MessagePtr, Parts, Timeout, TransferResult};

use crate::channel::{Channel, Poller};
use crate::channel_config::{add_channel, SubChannelSpec};
use crate::error::{HookResult, RuntimeError};
use crate::logging::LogHandle;
use crate::plugin::ControlOwnership;
use crate::properties::Properties;
use crate::state::{State, Transition};
use crate::state_machine::StateMachine;

/// A device's own version (`--version` prints it as "User device version").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Channel endpoints a device declares for `--print-channels` (`<name>:<min>:<max>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelEndpoints {
    entries: Vec<(String, usize, usize)>,
}

impl ChannelEndpoints {
    /// Declares channel `name` with `min`..=`max` sub-channels. A name declared twice is
    /// warned about and ignored.
    pub fn register(&mut self, name: &str, min: usize, max: usize) {
        if self.entries.iter().any(|(n, _, _)| n == name) {
            tracing::warn!("Registering channel: name already registered: \"{}\"", name);
            return;
        }
        self.entries.push((name.to_owned(), min, max));
    }

    /// The declared endpoints.
    pub fn entries(&self) -> &[(String, usize, usize)] {
        &self.entries
    }

    /// One line per endpoint: `<name>:<min>:<max>`.
    pub fn format(&self) -> String {
        self.entries
            .iter()
            .map(|(n, min, max)| format!("{n}:{min}:{max}\n"))
            .collect()
    }
}

/// Whether an OnData input receives single messages or multipart messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// [`Device::handle_data`].
    Message,
    /// [`Device::handle_parts`].
    Parts,
}

/// A FairMQ device. Every hook has a default that does nothing.
pub trait Device: Send {
    /// INITIALIZING DEVICE, after the configuration is complete and before channels are
    /// built (so [`DeviceContext::add_channel`] works here).
    fn init(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// BINDING, after the binding channels are bound.
    fn bind(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// CONNECTING, after the connecting channels are connected.
    fn connect(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// INITIALIZING TASK.
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// RUNNING, first.
    fn pre_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// RUNNING: called repeatedly (paced by `--rate`) while it returns `Ok(true)` and no
    /// transition is pending; without OnData handlers only.
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        let _ = ctx;
        Ok(false)
    }
    /// RUNNING: called once after the `conditional_run` loop; without OnData handlers only.
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// RUNNING, last (after STOP was scheduled).
    fn post_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// RESETTING TASK.
    fn reset_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// RESETTING DEVICE (channels still exist; they are closed afterwards).
    fn reset(&mut self, ctx: &mut DeviceContext) -> HookResult {
        let _ = ctx;
        Ok(())
    }
    /// OnData handler for single messages from sub-channel `index` of `channel`. Return
    /// `Ok(false)` to stop RUNNING.
    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        channel: &str,
        msg: MessagePtr,
        index: usize,
    ) -> HookResult<bool> {
        let _ = (ctx, msg, index);
        Err(format!(
            "an OnData handler for channel '{channel}' is registered, but the device does not implement handle_data"
        )
        .into())
    }
    /// OnData handler for multipart messages. Return `Ok(false)` to stop RUNNING.
    fn handle_parts(
        &mut self,
        ctx: &mut DeviceContext,
        channel: &str,
        parts: Parts,
        index: usize,
    ) -> HookResult<bool> {
        let _ = (ctx, parts, index);
        Err(format!(
            "a multipart OnData handler for channel '{channel}' is registered, but the device does not implement handle_parts"
        )
        .into())
    }
    /// The device's version (default 0.0.0).
    fn version(&self) -> Version {
        Version::default()
    }
    /// Declares channel endpoints for `--print-channels`.
    fn register_channel_endpoints(&self, endpoints: &mut ChannelEndpoints) {
        let _ = endpoints;
    }
}

/// What the device thread, the plugins and the rate logger share.
pub struct DeviceShared {
    pub(crate) config: Properties,
    pub(crate) sm: StateMachine,
    pub(crate) channels: RwLock<BTreeMap<String, Vec<Arc<Channel>>>>,
    pub(crate) transports: RwLock<BTreeMap<String, FactoryPtr>>,
    pub(crate) control: ControlOwnership,
    pub(crate) log: LogHandle,
}

impl std::fmt::Debug for DeviceShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceShared")
            .field("state", &self.sm.current_state())
            .field("channels", &self.channel_counts())
            .finish()
    }
}

impl DeviceShared {
    pub(crate) fn new(config: Properties, log: LogHandle) -> Arc<Self> {
        Arc::new(DeviceShared {
            config,
            sm: StateMachine::new(),
            channels: RwLock::new(BTreeMap::new()),
            transports: RwLock::new(BTreeMap::new()),
            control: ControlOwnership::new(),
            log,
        })
    }

    /// Sub-channel `name[index]`.
    pub fn channel(&self, name: &str, index: usize) -> Result<Arc<Channel>, RuntimeError> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .and_then(|v| v.get(index))
            .cloned()
            .ok_or_else(|| {
                tracing::error!("GetChannel(): '{}[{}]' does not exist.", name, index);
                RuntimeError::NoSuchChannel {
                    name: name.to_owned(),
                    index,
                }
            })
    }

    /// Channel name → number of sub-channels built.
    pub fn channel_counts(&self) -> BTreeMap<String, usize> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// All sub-channels, by name then index.
    pub fn all_channels(&self) -> Vec<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|v| v.iter().cloned())
            .collect()
    }

    pub(crate) fn interrupt_transports(&self) {
        for f in self
            .transports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            f.interrupt();
        }
    }

    pub(crate) fn resume_transports(&self) {
        for f in self
            .transports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            f.resume();
        }
    }
}

/// What every hook receives: configuration, state, transports and channels.
pub struct DeviceContext {
    pub(crate) shared: Arc<DeviceShared>,
    pub(crate) id: String,
    pub(crate) default_transport: String,
    pub(crate) on_data: Vec<(String, DataKind)>,
    pub(crate) rate: f32,
    pub(crate) init_timeout: i32,
    pub(crate) binding: Vec<Arc<Channel>>,
    pub(crate) connecting: Vec<Arc<Channel>>,
}

impl std::fmt::Debug for DeviceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceContext")
            .field("id", &self.id)
            .field("transport", &self.default_transport)
            .field("shared", &self.shared)
            .finish()
    }
}

impl DeviceContext {
    pub(crate) fn new(shared: Arc<DeviceShared>) -> Self {
        let id = shared
            .config
            .get_or("id", String::new())
            .unwrap_or_default();
        DeviceContext {
            shared,
            id,
            default_transport: String::new(),
            on_data: Vec::new(),
            rate: 0.0,
            init_timeout: 120,
            binding: Vec::new(),
            connecting: Vec::new(),
        }
    }

    /// The device id (`--id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The property store.
    pub fn properties(&self) -> &Properties {
        &self.shared.config
    }

    /// The state machine.
    pub fn state_machine(&self) -> &StateMachine {
        &self.shared.sm
    }

    /// The current state.
    pub fn current_state(&self) -> State {
        self.shared.sm.current_state()
    }

    /// Whether a transition is pending, or a shutdown (SIGINT/SIGTERM) was requested: loops in
    /// hooks stop when this is `true`.
    pub fn new_state_pending(&self) -> bool {
        self.shared.sm.new_state_pending() || self.shared.sm.shutdown_requested()
    }

    /// Requests a transition (e.g. `ErrorFound`); `false` if refused.
    pub fn change_state(&self, transition: Transition) -> bool {
        self.shared.sm.change_state(transition)
    }

    /// Sleeps up to `duration` or until a transition is scheduled; `true` if the full time
    /// elapsed.
    pub fn wait_for(&self, duration: Duration) -> bool {
        self.shared.sm.wait_for(duration)
    }

    /// The `--rate` of the `conditional_run` loop (Hz, 0 = unlimited).
    pub fn rate(&self) -> f32 {
        self.rate
    }

    /// The name of the device's default transport (`--transport`), once initialised.
    pub fn transport_name(&self) -> &str {
        &self.default_transport
    }

    /// The default transport factory (exists from INITIALIZING DEVICE on).
    pub fn transport(&self) -> Result<FactoryPtr, RuntimeError> {
        self.transport_named(&self.default_transport)
    }

    /// The factory of the transport `name`, if the device uses it.
    pub fn transport_named(&self, name: &str) -> Result<FactoryPtr, RuntimeError> {
        self.shared
            .transports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| {
                RuntimeError::Other(format!(
                    "transport '{name}' is not in use by this device (transports are created in INITIALIZING DEVICE)"
                ))
            })
    }

    // ----- channels -----

    /// Sub-channel `name[index]`: `ctx.channel("data")` is `data[0]`, `ctx.channel(("data", 1))`
    /// is `data[1]` (logs `GetChannel(): '<name>[<i>]' does not exist.` if not).
    pub fn channel<'a>(&self, at: impl Into<ChannelRef<'a>>) -> Result<Arc<Channel>, RuntimeError> {
        let at = at.into();
        self.shared.channel(at.name, at.index)
    }

    /// Number of sub-channels of `name` (0 if none).
    pub fn num_sub_channels(&self, name: &str) -> usize {
        self.shared.channel_counts().get(name).copied().unwrap_or(0)
    }

    /// Names of all channels.
    pub fn channel_names(&self) -> Vec<String> {
        self.shared.channel_counts().into_keys().collect()
    }

    /// Adds a sub-channel to the configuration (`chans.<name>.<next index>.*`) and returns
    /// its index. Channels are built from the configuration after `init`, so call this from
    /// the constructor or `init`.
    pub fn add_channel(&self, name: &str, spec: &SubChannelSpec) -> usize {
        add_channel(&self.shared.config, name, spec)
    }

    /// Peers connected to a sub-channel.
    pub fn number_of_connected_peers<'a>(
        &self,
        at: impl Into<ChannelRef<'a>>,
    ) -> Result<usize, RuntimeError> {
        Ok(self.channel(at)?.connected_peers())
    }

    /// A poller over all sub-channels of the named channels (in that order).
    pub fn poller(&self, names: &[&str]) -> Result<Poller, RuntimeError> {
        let channels = self
            .shared
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut list = Vec::new();
        for name in names {
            let subs = channels.get(*name).ok_or_else(|| {
                RuntimeError::Other(format!(
                    "At least one of the provided channel keys for poller initialization is invalid: '{name}'"
                ))
            })?;
            list.extend(subs.iter().cloned());
        }
        drop(channels);
        Poller::new(list)
    }

    /// A poller over the given sub-channels.
    pub fn poller_for(&self, sub_channels: &[(&str, usize)]) -> Result<Poller, RuntimeError> {
        let list = sub_channels
            .iter()
            .map(|&at| self.channel(at))
            .collect::<Result<Vec<_>, _>>()?;
        Poller::new(list)
    }

    /// The device's options as the typed struct `O` declared them (see
    /// [`run`](crate::run)), read from the current configuration: values that plugins or a
    /// controller set since the start are included.
    pub fn options<O: clap::Args + clap::FromArgMatches>(&self) -> Result<O, RuntimeError> {
        crate::typed_options::read(&self.shared.config)
    }

    // ----- OnData -----

    /// Registers an OnData input for single messages on channel `name` (handled by
    /// [`Device::handle_data`]). Registering the same name and kind again is a no-op.
    pub fn on_data(&mut self, name: &str) {
        self.register_on_data(name, DataKind::Message);
    }

    /// Registers an OnData input for multipart messages on channel `name` (handled by
    /// [`Device::handle_parts`]).
    pub fn on_data_parts(&mut self, name: &str) {
        self.register_on_data(name, DataKind::Parts);
    }

    fn register_on_data(&mut self, name: &str, kind: DataKind) {
        if !self.on_data.iter().any(|(n, k)| n == name && *k == kind) {
            self.on_data.push((name.to_owned(), kind));
        }
    }

    // ----- messages -----

    /// An empty message of the default transport.
    pub fn new_message(&self) -> Result<MessagePtr, RuntimeError> {
        Ok(self.transport()?.new_message())
    }

    /// A message of `size` bytes of the default transport.
    pub fn new_message_with_size(&self, size: usize) -> Result<MessagePtr, RuntimeError> {
        Ok(self.transport()?.new_message_with_size(size, None)?)
    }

    /// A message of the default transport over `data`.
    pub fn new_message_from(&self, data: Vec<u8>) -> Result<MessagePtr, RuntimeError> {
        Ok(self.transport()?.new_message_from_buffer(data.into())?)
    }

    /// A message of `size` bytes made by the transport of a sub-channel, so that sending it
    /// there needs no copy (spec §4.7).
    pub fn new_message_for<'a>(
        &self,
        at: impl Into<ChannelRef<'a>>,
        size: usize,
    ) -> Result<MessagePtr, RuntimeError> {
        Ok(self.channel(at)?.new_message_with_size(size)?)
    }

    /// A message over `data` made by the transport of a sub-channel.
    pub fn new_message_for_data<'a>(
        &self,
        at: impl Into<ChannelRef<'a>>,
        data: Vec<u8>,
    ) -> Result<MessagePtr, RuntimeError> {
        Ok(self.channel(at)?.new_message_from(data)?)
    }

    // ----- transfers -----
    //
    // Each returns the bytes moved, or a TransferError; `.outcome()` (TransferResultExt)
    // tells a timeout and an interruption, which a loop goes on from, from a failure.

    fn ch(&self, at: ChannelRef<'_>) -> Result<Arc<Channel>, fairmq_transport::TransferError> {
        self.channel(at)
            .map_err(|e| fairmq_transport::TransferError::Other {
                socket: at.to_string(),
                reason: e.to_string(),
            })
    }

    /// Sends on a sub-channel (`"data"` is `data[0]`) with the channel's default timeout.
    pub fn send<'a>(&self, msg: &mut MessagePtr, at: impl Into<ChannelRef<'a>>) -> TransferResult {
        self.ch(at.into())?.send(msg)
    }

    /// Sends on a sub-channel, waiting at most `timeout`.
    pub fn send_timeout<'a>(
        &self,
        msg: &mut MessagePtr,
        at: impl Into<ChannelRef<'a>>,
        timeout: impl Into<Timeout>,
    ) -> TransferResult {
        self.ch(at.into())?.send_timeout(msg, timeout.into())
    }

    /// Receives from a sub-channel with the channel's default timeout.
    pub fn receive<'a>(
        &self,
        msg: &mut MessagePtr,
        at: impl Into<ChannelRef<'a>>,
    ) -> TransferResult {
        self.ch(at.into())?.receive(msg)
    }

    /// Receives from a sub-channel, waiting at most `timeout`.
    pub fn receive_timeout<'a>(
        &self,
        msg: &mut MessagePtr,
        at: impl Into<ChannelRef<'a>>,
        timeout: impl Into<Timeout>,
    ) -> TransferResult {
        self.ch(at.into())?.receive_timeout(msg, timeout.into())
    }

    /// Sends a multipart message on a sub-channel (all parts or none).
    pub fn send_parts<'a>(
        &self,
        parts: &mut Parts,
        at: impl Into<ChannelRef<'a>>,
    ) -> TransferResult {
        self.ch(at.into())?.send_parts(parts)
    }

    /// Receives a multipart message from a sub-channel (appending to `parts`).
    pub fn receive_parts<'a>(
        &self,
        parts: &mut Parts,
        at: impl Into<ChannelRef<'a>>,
    ) -> TransferResult {
        self.ch(at.into())?.receive_parts(parts)
    }
}

/// A sub-channel by name and index: `"data"` (or a `&String`) is `data[0]`, `("data", 1)` is
/// `data[1]`. FairMQ's `Send(msg, "data")` defaults the index to 0 the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRef<'a> {
    /// Channel name.
    pub name: &'a str,
    /// Sub-channel index.
    pub index: usize,
}

impl std::fmt::Display for ChannelRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.name, self.index)
    }
}

impl<'a> From<&'a str> for ChannelRef<'a> {
    fn from(name: &'a str) -> Self {
        ChannelRef { name, index: 0 }
    }
}

impl<'a> From<&'a String> for ChannelRef<'a> {
    fn from(name: &'a String) -> Self {
        ChannelRef { name, index: 0 }
    }
}

impl<'a> From<(&'a str, usize)> for ChannelRef<'a> {
    fn from((name, index): (&'a str, usize)) -> Self {
        ChannelRef { name, index }
    }
}

impl<'a> From<(&'a String, usize)> for ChannelRef<'a> {
    fn from((name, index): (&'a String, usize)) -> Self {
        ChannelRef { name, index }
    }
}
