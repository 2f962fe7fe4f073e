//! OnData handlers registered per channel when the device is made, and [`run`]: the `main`
//! of a device with typed options.
//!
//! FairMQ's constructor says `OnData("data1", &Processor::HandleData)`; here the function that
//! makes the device gets a [`Handlers`] and says `h.on_data("data1", Processor::handle_data)`.
//! Each input channel has its own handler, a method of the device, so nothing dispatches on
//! channel names by hand.
//!
//! ```no_run
//! use fairmq::{DeviceContext, Handlers, HookResult, MessagePtr, NoOptions, TransferResultExt};
//!
//! struct Processor;
//!
//! impl fairmq::Device for Processor {}
//!
//! impl Processor {
//!     fn handle_data(&mut self, ctx: &mut DeviceContext, msg: MessagePtr, _: usize) -> HookResult<bool> {
//!         let text = format!("{} (modified by {})", String::from_utf8_lossy(msg.data()), ctx.id());
//!         let mut out = ctx.new_message_for_data("data2", text.into_bytes())?;
//!         Ok(ctx.send(&mut out, "data2").outcome()?.is_done())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     fairmq::run(|_: NoOptions, h: &mut Handlers<Processor>| {
//!         h.on_data("data1", Processor::handle_data);
//!         Ok(Processor)
//!     })
//! }
//! ```

use std::cell::RefCell;
use std::process::ExitCode;

use fairmq_transport::{MessagePtr, Parts};

use crate::device::{ChannelEndpoints, Device, DeviceContext, Version};
use crate::error::{HookError, HookResult, RuntimeError};
use crate::runner::DeviceRunner;
use crate::typed_options;

type MessageHandler<D> =
    Box<dyn FnMut(&mut D, &mut DeviceContext, MessagePtr, usize) -> HookResult<bool> + Send>;
type PartsHandler<D> =
    Box<dyn FnMut(&mut D, &mut DeviceContext, Parts, usize) -> HookResult<bool> + Send>;

/// The OnData handlers of a device of type `D`, one per input channel and kind. A handler
/// gets the device, the context, the message (or multipart message) and the sub-channel
/// index; it returns `Ok(false)` to end RUNNING, like FairMQ's `bool HandleData(...)`.
pub struct Handlers<D> {
    messages: Vec<(String, MessageHandler<D>)>,
    parts: Vec<(String, PartsHandler<D>)>,
}

impl<D> Default for Handlers<D> {
    fn default() -> Self {
        Handlers {
            messages: Vec::new(),
            parts: Vec::new(),
        }
    }
}

impl<D> std::fmt::Debug for Handlers<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field(
                "on_data",
                &self.messages.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "on_data_parts",
                &self.parts.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<D> Handlers<D> {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles single messages from every sub-channel of `channel` with `handler`. A second
    /// handler for the same channel replaces the first.
    pub fn on_data<F>(&mut self, channel: &str, handler: F) -> &mut Self
    where
        F: FnMut(&mut D, &mut DeviceContext, MessagePtr, usize) -> HookResult<bool>
            + Send
            + 'static,
    {
        self.messages.retain(|(n, _)| n != channel);
        self.messages.push((channel.to_owned(), Box::new(handler)));
        self
    }

    /// Handles multipart messages from every sub-channel of `channel` with `handler`.
    pub fn on_data_parts<F>(&mut self, channel: &str, handler: F) -> &mut Self
    where
        F: FnMut(&mut D, &mut DeviceContext, Parts, usize) -> HookResult<bool> + Send + 'static,
    {
        self.parts.retain(|(n, _)| n != channel);
        self.parts.push((channel.to_owned(), Box::new(handler)));
        self
    }

    /// Whether no handler is registered.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.parts.is_empty()
    }
}

/// A device and its handlers, as one [`Device`]: the handlers' channels become OnData inputs
/// at INITIALIZING TASK, and each input's data goes to its own handler.
pub struct WithHandlers<D> {
    device: D,
    handlers: Handlers<D>,
}

impl<D> WithHandlers<D> {
    /// `device` with `handlers`.
    pub fn new(device: D, handlers: Handlers<D>) -> Self {
        WithHandlers { device, handlers }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }
}

impl<D> std::fmt::Debug for WithHandlers<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithHandlers")
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

impl<D: Device> Device for WithHandlers<D> {
    fn init(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.init(ctx)
    }
    fn bind(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.bind(ctx)
    }
    fn connect(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.connect(ctx)
    }
    fn init_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        for (name, _) in &self.handlers.messages {
            ctx.on_data(name);
        }
        for (name, _) in &self.handlers.parts {
            ctx.on_data_parts(name);
        }
        self.device.init_task(ctx)
    }
    fn pre_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.pre_run(ctx)
    }
    fn conditional_run(&mut self, ctx: &mut DeviceContext) -> HookResult<bool> {
        self.device.conditional_run(ctx)
    }
    fn run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.run(ctx)
    }
    fn post_run(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.post_run(ctx)
    }
    fn reset_task(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.reset_task(ctx)
    }
    fn reset(&mut self, ctx: &mut DeviceContext) -> HookResult {
        self.device.reset(ctx)
    }
    fn handle_data(
        &mut self,
        ctx: &mut DeviceContext,
        channel: &str,
        msg: MessagePtr,
        index: usize,
    ) -> HookResult<bool> {
        match self
            .handlers
            .messages
            .iter_mut()
            .find(|(n, _)| n == channel)
        {
            Some((_, handler)) => handler(&mut self.device, ctx, msg, index),
            None => self.device.handle_data(ctx, channel, msg, index),
        }
    }
    fn handle_parts(
        &mut self,
        ctx: &mut DeviceContext,
        channel: &str,
        parts: Parts,
        index: usize,
    ) -> HookResult<bool> {
        match self.handlers.parts.iter_mut().find(|(n, _)| n == channel) {
            Some((_, handler)) => handler(&mut self.device, ctx, parts, index),
            None => self.device.handle_parts(ctx, channel, parts, index),
        }
    }
    fn version(&self) -> Version {
        self.device.version()
    }
    fn register_channel_endpoints(&self, endpoints: &mut ChannelEndpoints) {
        self.device.register_channel_endpoints(endpoints)
    }
}

impl DeviceRunner {
    /// Runs a device with typed options `O` (see [`typed_options`]): the command line, options
    /// file and `FAIRMQ_*` variables are parsed into `O`, and `make_device` gets it with the
    /// [`Handlers`] to register OnData handlers in. Returns the exit code.
    pub fn run_typed<O, D, F>(self, make_device: F) -> i32
    where
        O: clap::Args + clap::FromArgMatches,
        D: Device + 'static,
        F: FnOnce(O, &mut Handlers<D>) -> HookResult<D>,
    {
        let declared: RefCell<Result<(), RuntimeError>> = RefCell::new(Ok(()));
        self.run(
            |o| *declared.borrow_mut() = typed_options::declare::<O>(o),
            |config| {
                declared.replace(Ok(()))?;
                let options = typed_options::read::<O>(config)?;
                let mut handlers = Handlers::new();
                let device = make_device(options, &mut handlers)?;
                Ok(Box::new(WithHandlers::new(device, handlers)) as Box<dyn Device>)
            },
        )
    }
}

/// `main` for a device with typed options: runs [`DeviceRunner::run_typed`] on the process
/// arguments.
pub fn run<O, D, F>(make_device: F) -> ExitCode
where
    O: clap::Args + clap::FromArgMatches,
    D: Device + 'static,
    F: FnOnce(O, &mut Handlers<D>) -> HookResult<D>,
{
    let code = DeviceRunner::from_env().run_typed(make_device);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Whether a device-construction error is an options error, to be reported as a command-line
/// error rather than as a failed device.
pub(crate) fn is_options_error(e: &HookError) -> bool {
    matches!(
        e.downcast_ref::<RuntimeError>(),
        Some(RuntimeError::TypedOptions { .. } | RuntimeError::CommandLine(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{DataKind, DeviceShared};
    use crate::logging::logger;
    use crate::properties::Properties;
    use fairmq_transport::{create_transport, TransportConfig};

    #[derive(Default)]
    struct Counter {
        first: Vec<(usize, usize)>,
        second: usize,
        parts: usize,
        fallback: Vec<String>,
    }

    impl Device for Counter {
        fn handle_data(
            &mut self,
            _: &mut DeviceContext,
            channel: &str,
            _: MessagePtr,
            _: usize,
        ) -> HookResult<bool> {
            self.fallback.push(channel.to_owned());
            Ok(true)
        }
    }

    impl Counter {
        fn first(&mut self, _: &mut DeviceContext, m: MessagePtr, i: usize) -> HookResult<bool> {
            self.first.push((m.size(), i));
            Ok(true)
        }
    }

    #[test]
    fn each_channel_goes_to_its_own_handler() {
        let mut h = Handlers::<Counter>::new();
        h.on_data("one", Counter::first)
            .on_data("two", |d: &mut Counter, _: &mut DeviceContext, _, _| {
                d.second += 1;
                Ok(false)
            })
            .on_data_parts(
                "three",
                |d: &mut Counter, _: &mut DeviceContext, p: Parts, _| {
                    d.parts += p.len();
                    Ok(true)
                },
            );
        let mut dev = WithHandlers::new(Counter::default(), h);
        let mut ctx = DeviceContext::new(DeviceShared::new(Properties::new(), logger()));
        dev.init_task(&mut ctx).unwrap();
        assert_eq!(
            ctx.on_data,
            [
                ("one".to_owned(), DataKind::Message),
                ("two".to_owned(), DataKind::Message),
                ("three".to_owned(), DataKind::Parts)
            ]
        );
        let zmq = create_transport("zeromq", &TransportConfig::new("t")).unwrap();
        let msg = |n: usize| zmq.new_message_with_size(n, None).unwrap();
        assert!(dev.handle_data(&mut ctx, "one", msg(3), 2).unwrap());
        assert!(!dev.handle_data(&mut ctx, "two", msg(1), 0).unwrap());
        assert!(dev.handle_data(&mut ctx, "other", msg(1), 0).unwrap());
        let mut parts = Parts::new();
        parts.add_part(msg(1));
        parts.add_part(msg(2));
        assert!(dev.handle_parts(&mut ctx, "three", parts, 0).unwrap());
        let d = dev.device();
        assert_eq!(d.first, [(3, 2)]);
        assert_eq!(d.second, 1);
        assert_eq!(d.parts, 2);
        assert_eq!(
            d.fallback,
            ["other"],
            "unregistered channels reach handle_data"
        );
    }

    #[test]
    fn a_second_handler_for_a_channel_replaces_the_first() {
        let mut h = Handlers::<Counter>::new();
        h.on_data("one", |_: &mut Counter, _: &mut DeviceContext, _, _| {
            Err("the replaced handler ran".into())
        });
        h.on_data("one", Counter::first);
        let mut dev = WithHandlers::new(Counter::default(), h);
        let mut ctx = DeviceContext::new(DeviceShared::new(Properties::new(), logger()));
        let zmq = create_transport("zeromq", &TransportConfig::new("t")).unwrap();
        let m = zmq.new_message_with_size(5, None).unwrap();
        assert!(dev.handle_data(&mut ctx, "one", m, 0).unwrap());
        assert_eq!(dev.device().first, [(5, 0)]);
    }
}
