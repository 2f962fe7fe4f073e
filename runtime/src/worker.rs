//! The device thread (spec §1.5–§1.8): consumes transitions, resumes and interrupts the
//! transports, notifies subscribers and runs the per-state wrappers around the user hooks.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fairmq_transport::{create_transport, Timeout, TransferError, TransportConfig};

use crate::channel::{AttachOutcome, Channel, Poller};
use crate::channel_config::address::ConnectionMethod;
use crate::channel_config::{
    channel_property_key, classify_sub_channel, default_bind_address, read_channels,
    ChannelProperty,
};
use crate::device::{DataKind, Device, DeviceContext};
use crate::error::{HookResult, RuntimeError};
use crate::logging::FATAL_TARGET;
use crate::rate::{start_rate_logger, RateLimiter};
use crate::state::{State, Transition};

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Runs a hook, turning an `Err` or a panic into an error that names the hook.
pub(crate) fn call_hook<T>(
    hook: &'static str,
    f: impl FnOnce() -> HookResult<T>,
) -> Result<T, RuntimeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RuntimeError::Hook {
            hook,
            message: e.to_string(),
        }),
        Err(payload) => Err(RuntimeError::HookPanic {
            hook,
            message: panic_message(payload.as_ref()),
        }),
    }
}

fn schedule_auto(ctx: &DeviceContext) {
    if !ctx.shared.sm.new_state_pending() {
        ctx.shared.sm.change_state(Transition::Auto);
    }
}

/// Runs the state machine on the calling thread until EXITING (`Ok`) or ERROR (`Err` with
/// the first error that caused it, or [`RuntimeError::ErrorState`]).
pub fn run_state_machine(
    device: &mut dyn Device,
    ctx: &mut DeviceContext,
) -> Result<(), RuntimeError> {
    let sm = ctx.shared.sm.clone();
    {
        let weak = Arc::downgrade(&ctx.shared);
        sm.subscribe_to_new_transition("device", move |_| {
            if let Some(shared) = weak.upgrade() {
                shared.interrupt_transports();
            }
        });
    }
    sm.emit_state_change(State::Idle);
    let mut first_error: Option<RuntimeError> = None;
    loop {
        let change = sm.take_pending_blocking();
        ctx.shared.resume_transports();
        let emitted = catch_unwind(AssertUnwindSafe(|| sm.emit_state_change(change.current)));
        if let Err(payload) = emitted {
            let e = RuntimeError::Other(format!(
                "a state change subscriber panicked on entering {}: {}",
                change.current,
                panic_message(payload.as_ref())
            ));
            tracing::error!("{e}");
            first_error.get_or_insert(e);
            sm.change_state(Transition::ErrorFound);
            continue;
        }
        match change.current {
            State::Exiting => {
                sm.unsubscribe_from_new_transition("device");
                return Ok(());
            }
            State::Error => {
                sm.unsubscribe_from_new_transition("device");
                return Err(first_error.unwrap_or(RuntimeError::ErrorState));
            }
            state => {
                if let Err(e) = handle_state(device, ctx, state) {
                    match &e {
                        RuntimeError::Hook { .. } | RuntimeError::HookPanic { .. } => {
                            tracing::error!("{e}, going to ERROR state")
                        }
                        _ => tracing::error!(target: FATAL_TARGET, "{e}"),
                    }
                    first_error.get_or_insert(e);
                    sm.change_state(Transition::ErrorFound);
                }
            }
        }
    }
}

fn handle_state(
    device: &mut dyn Device,
    ctx: &mut DeviceContext,
    state: State,
) -> Result<(), RuntimeError> {
    match state {
        State::InitializingDevice => {
            // Wait until the controller has scheduled the next transition (normally COMPLETE
            // INIT), so that plugins can still set properties in this state.
            let pending = loop {
                if let Some(p) = ctx.shared.sm.wait_for_pending(Duration::from_millis(500)) {
                    break p;
                }
            };
            if pending == State::Error {
                return Ok(());
            }
            init_wrapper(device, ctx)
        }
        State::Binding => {
            bind_wrapper(ctx)?;
            call_hook("Bind", || device.bind(ctx))?;
            schedule_auto(ctx);
            Ok(())
        }
        State::Connecting => {
            connect_wrapper(ctx)?;
            call_hook("Connect", || device.connect(ctx))?;
            schedule_auto(ctx);
            Ok(())
        }
        State::InitializingTask => {
            call_hook("InitTask", || device.init_task(ctx))?;
            schedule_auto(ctx);
            Ok(())
        }
        State::Running => run_wrapper(device, ctx),
        State::ResettingTask => {
            call_hook("ResetTask", || device.reset_task(ctx))?;
            schedule_auto(ctx);
            Ok(())
        }
        State::ResettingDevice => {
            reset_wrapper(device, ctx)?;
            schedule_auto(ctx);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn transport_config(ctx: &DeviceContext) -> TransportConfig {
    let mut config = TransportConfig::new(ctx.id.clone());
    for info in ctx.shared.config.describe() {
        if !info.key.starts_with("chans.") {
            config.properties.insert(info.key, info.value.to_string());
        }
    }
    config
}

fn init_wrapper(device: &mut dyn Device, ctx: &mut DeviceContext) -> Result<(), RuntimeError> {
    let config = ctx.shared.config.clone();
    ctx.id = config.get_or("id", String::new())?;
    call_hook("Init", || device.init(ctx))?;
    ctx.rate = config.get_or("rate", 0.0f32)?;
    ctx.init_timeout = config.get_or("init-timeout", 120i32)?;
    ctx.default_transport = config.get_or("transport", "zeromq".to_owned())?;

    // Transports: the default one, then one per distinct channel transport.
    let tconfig = transport_config(ctx);
    let mut factories = BTreeMap::new();
    let default = create_transport(&ctx.default_transport, &tconfig).map_err(|e| {
        RuntimeError::Other(match e {
            e @ fairmq_transport::TransportError::UnknownTransport { .. } => format!(
                "invalid transport type provided: {}: {e}",
                ctx.default_transport
            ),
            // A known transport that could not start (e.g. a full /dev/shm): not a bad name.
            e => format!(
                "could not create the {} transport (--transport): {e}",
                ctx.default_transport
            ),
        })
    })?;
    factories.insert(ctx.default_transport.clone(), default);

    let network_interface = config.get_or("network-interface", "default".to_owned())?;
    let specs = read_channels(&config)?;
    let mut channels = BTreeMap::new();
    let mut binding = Vec::new();
    let mut connecting = Vec::new();
    for channel in specs {
        let mut subs = Vec::new();
        for (index, mut spec) in channel.sub_channels.into_iter().enumerate() {
            let transport_name = if spec.transport == "default" {
                ctx.default_transport.clone()
            } else {
                spec.transport.clone()
            };
            if !factories.contains_key(&transport_name) {
                let f = create_transport(&transport_name, &tconfig).map_err(|e| {
                    RuntimeError::Other(format!("channel {}[{index}]: {e}", channel.name))
                })?;
                factories.insert(transport_name.clone(), f);
            }
            let method = classify_sub_channel(&channel.name, index, &spec)?;
            if method == ConnectionMethod::Bind
                && (spec.address.is_empty() || spec.address == "unspecified")
            {
                spec.address = default_bind_address(&network_interface).map_err(|e| {
                    RuntimeError::Other(format!(
                        "channel {}[{index}] has no address to bind: {e}",
                        channel.name
                    ))
                })?;
                config.set(
                    channel_property_key(&channel.name, index, ChannelProperty::Address),
                    spec.address.clone(),
                );
            }
            let ch = Arc::new(Channel::new(
                &channel.name,
                index,
                spec,
                method,
                factories[&transport_name].clone(),
            ));
            match method {
                ConnectionMethod::Bind => binding.push(ch.clone()),
                ConnectionMethod::Connect => connecting.push(ch.clone()),
            }
            subs.push(ch);
        }
        channels.insert(channel.name, subs);
    }
    *ctx.shared
        .transports
        .write()
        .unwrap_or_else(|p| p.into_inner()) = factories;
    *ctx.shared
        .channels
        .write()
        .unwrap_or_else(|p| p.into_inner()) = channels;
    ctx.binding = binding;
    ctx.connecting = connecting;
    Ok(())
}

fn write_back(ctx: &DeviceContext, ch: &Channel, address: &str) {
    let key = channel_property_key(ch.name(), ch.index(), ChannelProperty::Address);
    if ctx.shared.config.get_as_string(&key).ok().as_deref() != Some(address) {
        ctx.shared.config.set(key, address.to_owned());
    }
}

/// Attaches the channels in `list`; returns the ones that are not attached yet.
fn attach_all(
    ctx: &DeviceContext,
    list: Vec<Arc<Channel>>,
    log_failures: bool,
) -> Result<Vec<Arc<Channel>>, RuntimeError> {
    let mut remaining = Vec::new();
    for ch in list {
        match ch.attach()? {
            AttachOutcome::Attached(address) => {
                tracing::debug!(
                    "{} {} on {}",
                    if ch.method() == ConnectionMethod::Bind {
                        "Bound"
                    } else {
                        "Connected"
                    },
                    ch.full_name(),
                    address
                );
                write_back(ctx, &ch, &address);
            }
            AttachOutcome::NotYet(why) => {
                if log_failures && ch.method() == ConnectionMethod::Connect {
                    tracing::warn!("{why}; still retrying");
                } else if log_failures {
                    tracing::error!(
                        "failed to attach channel {} ({} on {}): {}",
                        ch.full_name(),
                        ch.method(),
                        ch.address(),
                        why
                    );
                } else {
                    tracing::debug!("channel {} not attached yet: {}", ch.full_name(), why);
                }
                remaining.push(ch);
            }
        }
    }
    Ok(remaining)
}

fn bind_wrapper(ctx: &mut DeviceContext) -> Result<(), RuntimeError> {
    let list = std::mem::take(&mut ctx.binding);
    let remaining = attach_all(ctx, list, true)?;
    if !remaining.is_empty() {
        let n = remaining.len();
        ctx.binding = remaining;
        return Err(RuntimeError::Attach(format!(
            "{n} of the binding channels could not initialize. Initial configuration incomplete."
        )));
    }
    Ok(())
}

fn connect_wrapper(ctx: &mut DeviceContext) -> Result<(), RuntimeError> {
    let max_attempts = (i64::from(ctx.init_timeout) * 1000 / 50).max(1);
    let mut attempts = 0i64;
    loop {
        let list = std::mem::take(&mut ctx.connecting);
        for ch in &list {
            // A plugin may have provided the address late: re-read it.
            let key = channel_property_key(ch.name(), ch.index(), ChannelProperty::Address);
            if let Ok(address) = ctx.shared.config.get::<String>(&key) {
                if !ch.is_attached() && address != ch.address() {
                    ch.update_address(&address);
                }
            }
        }
        // Every 5 s, say what is still missing and why (FairMQ is silent here).
        let report = attempts > 0 && attempts % 100 == 0;
        ctx.connecting = attach_all(ctx, list, report)?;
        if ctx.connecting.is_empty() || ctx.shared.sm.new_state_pending() {
            break;
        }
        if ctx.shared.sm.shutdown_requested() {
            // The device is being shut down: stop waiting for peers that did not come.
            tracing::info!(
                "Shutdown requested while connecting; leaving {} channel(s) unconnected",
                ctx.connecting.len()
            );
            break;
        }
        attempts += 1;
        if attempts > max_attempts {
            let names: Vec<String> = ctx
                .connecting
                .iter()
                .map(|c| format!("{} ({})", c.full_name(), c.address()))
                .collect();
            return Err(RuntimeError::Attach(format!(
                "could not connect all channels after {} attempts ({} s, --init-timeout): {}",
                max_attempts,
                ctx.init_timeout,
                names.join(", ")
            )));
        }
        ctx.shared.sm.wait_for(Duration::from_millis(50));
    }
    if ctx.shared.channel_counts().is_empty() {
        tracing::warn!("No channels created after finishing initialization");
    }
    Ok(())
}

fn reset_wrapper(device: &mut dyn Device, ctx: &mut DeviceContext) -> Result<(), RuntimeError> {
    let factories: Vec<_> = ctx
        .shared
        .transports
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for f in &factories {
        f.reset();
    }
    drop(factories);
    let result = call_hook("Reset", || device.reset(ctx));
    ctx.binding.clear();
    ctx.connecting.clear();
    ctx.shared
        .channels
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    ctx.shared
        .transports
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    result
}

fn run_wrapper(device: &mut dyn Device, ctx: &mut DeviceContext) -> Result<(), RuntimeError> {
    tracing::info!("fair::mq::Device running...");
    let sm = ctx.shared.sm.clone();
    let logger = start_rate_logger(ctx.shared.all_channels(), sm.clone());
    let result = (|| -> Result<(), RuntimeError> {
        call_hook("PreRun", || device.pre_run(ctx))?;
        if !ctx.on_data.is_empty() {
            dispatch_on_data(device, ctx)?;
        } else {
            let mut limiter = RateLimiter::new(f64::from(ctx.rate));
            while !sm.new_state_pending()
                && call_hook("ConditionalRun", || device.conditional_run(ctx))?
            {
                if ctx.rate > 0.001 {
                    limiter.maybe_sleep(Some(&sm));
                }
            }
            call_hook("Run", || device.run(ctx))?;
        }
        if !sm.new_state_pending() {
            sm.change_state(Transition::Stop);
        }
        call_hook("PostRun", || device.post_run(ctx))
    })();
    if result.is_err() {
        // Makes the rate logger (and everything else) stop.
        sm.change_state(Transition::ErrorFound);
    }
    if let Some(handle) = logger {
        let _ = handle.join();
    }
    result
}

struct Input {
    name: String,
    kind: DataKind,
    channels: Vec<Arc<Channel>>,
}

fn inputs(ctx: &DeviceContext, multi: bool) -> Result<Vec<Input>, RuntimeError> {
    let mut names: Vec<String> = Vec::new();
    for (n, _) in &ctx.on_data {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let has = |k: DataKind| ctx.on_data.iter().any(|(n, kk)| *n == name && *kk == k);
            let kind = match (has(DataKind::Message), has(DataKind::Parts)) {
                (true, true) if multi => DataKind::Parts,
                (true, _) => DataKind::Message,
                _ => DataKind::Parts,
            };
            let count = ctx.num_sub_channels(&name);
            if count == 0 {
                return Err(RuntimeError::Other(format!(
                    "an OnData handler is registered for channel '{name}', but the device has no such channel"
                )));
            }
            let channels = (0..count)
                .map(|i| ctx.channel((&name, i)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Input {
                name,
                kind,
                channels,
            })
        })
        .collect()
}

/// Receives one input from `ch` (timeout `timeout_ms`) and hands it to the device.
/// `Ok(None)`: nothing received (timeout); `Ok(Some(proceed))`: handled.
fn receive_and_handle(
    device: &mut dyn Device,
    ctx: &mut DeviceContext,
    ch: &Channel,
    kind: DataKind,
    timeout: Timeout,
) -> Result<Option<bool>, TransferOrRuntime> {
    match kind {
        DataKind::Message => {
            let mut msg = ch.new_message();
            ch.receive_timeout(&mut msg, timeout)
                .map_err(TransferOrRuntime::Transfer)?;
            let name = ch.name().to_owned();
            let index = ch.index();
            call_hook("HandleData", || device.handle_data(ctx, &name, msg, index))
                .map(Some)
                .map_err(TransferOrRuntime::Runtime)
        }
        DataKind::Parts => {
            let mut parts = fairmq_transport::Parts::new();
            ch.receive_parts_timeout(&mut parts, timeout)
                .map_err(TransferOrRuntime::Transfer)?;
            let name = ch.name().to_owned();
            let index = ch.index();
            call_hook("HandleParts", || {
                device.handle_parts(ctx, &name, parts, index)
            })
            .map(Some)
            .map_err(TransferOrRuntime::Runtime)
        }
    }
}

/// One polled input sub-channel and its handler kind.
type InputChannel = (Arc<Channel>, DataKind);

enum TransferOrRuntime {
    Transfer(TransferError),
    Runtime(RuntimeError),
}

fn dispatch_on_data(device: &mut dyn Device, ctx: &mut DeviceContext) -> Result<(), RuntimeError> {
    let sm = ctx.shared.sm.clone();
    let single = inputs(ctx, false)?;
    if single.len() == 1 && single[0].channels.len() == 1 {
        let ch = single[0].channels[0].clone();
        let kind = single[0].kind;
        while !sm.new_state_pending() {
            match receive_and_handle(device, ctx, &ch, kind, ch.rcv_timeout()) {
                Ok(Some(true)) => {}
                Ok(Some(false)) | Ok(None) => break,
                // A receive timeout polls again (FairMQ ends RUNNING here, a quirk).
                Err(TransferOrRuntime::Transfer(TransferError::Timeout)) => {}
                Err(TransferOrRuntime::Transfer(TransferError::Interrupted)) => break,
                Err(TransferOrRuntime::Transfer(e)) => {
                    tracing::warn!("OnData receive on {} failed: {e}", ch.full_name());
                    break;
                }
                Err(TransferOrRuntime::Runtime(e)) => return Err(e),
            }
        }
        return Ok(());
    }

    let inputs = inputs(ctx, true)?;
    // Group the inputs by the transport of their first sub-channel.
    let mut groups: Vec<(String, Vec<InputChannel>)> = Vec::new();
    for input in &inputs {
        let transport = input.channels[0].transport().name().to_owned();
        let entry = match groups.iter_mut().find(|(t, _)| *t == transport) {
            Some(e) => e,
            None => {
                groups.push((transport, Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        for ch in &input.channels {
            entry.1.push((ch.clone(), input.kind));
        }
        tracing::debug!("OnData input '{}' ({:?})", input.name, input.kind);
    }

    if groups.len() == 1 {
        let entries = groups.pop().expect("one group").1;
        let poller = Poller::new(entries.iter().map(|(c, _)| c.clone()).collect())?;
        'outer: while !sm.new_state_pending() {
            let events = poller.poll(Timeout::After(Duration::from_millis(200)))?;
            for (i, (ch, kind)) in entries.iter().enumerate() {
                if !events.check_input_at(i) {
                    continue;
                }
                match receive_and_handle(device, ctx, ch, *kind, Timeout::Immediately) {
                    Ok(Some(true)) | Ok(None) => {}
                    Ok(Some(false)) => break 'outer,
                    Err(TransferOrRuntime::Transfer(TransferError::Timeout)) => {}
                    Err(TransferOrRuntime::Transfer(TransferError::Interrupted)) => break 'outer,
                    Err(TransferOrRuntime::Transfer(e)) => {
                        tracing::warn!("OnData receive on {} failed: {e}", ch.full_name());
                    }
                    Err(TransferOrRuntime::Runtime(e)) => return Err(e),
                }
            }
        }
        return Ok(());
    }

    // Several transports: one polling thread per transport, handlers serialised.
    let proceed = AtomicBool::new(true);
    let first_error: Mutex<Option<RuntimeError>> = Mutex::new(None);
    let shared_device = Mutex::new((device, ctx));
    std::thread::scope(|scope| {
        for (transport, entries) in &groups {
            let proceed = &proceed;
            let first_error = &first_error;
            let shared_device = &shared_device;
            let sm = sm.clone();
            scope.spawn(move || {
                let fail = |e: RuntimeError| {
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    proceed.store(false, Ordering::SeqCst);
                };
                let poller = match Poller::new(entries.iter().map(|(c, _)| c.clone()).collect()) {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                };
                while proceed.load(Ordering::SeqCst) && !sm.new_state_pending() {
                    let events = match poller.poll(Timeout::After(Duration::from_millis(500))) {
                        Ok(ev) => ev,
                        Err(e) => {
                            return fail(RuntimeError::Other(format!(
                                "polling the {transport} inputs failed: {e}"
                            )))
                        }
                    };
                    for (i, (ch, kind)) in entries.iter().enumerate() {
                        if !events.check_input_at(i) || !proceed.load(Ordering::SeqCst) {
                            continue;
                        }
                        let mut guard = shared_device.lock().unwrap_or_else(|p| p.into_inner());
                        let (device, ctx) = &mut *guard;
                        match receive_and_handle(
                            &mut **device,
                            ctx,
                            ch,
                            *kind,
                            Timeout::Immediately,
                        ) {
                            Ok(Some(true)) | Ok(None) => {}
                            Ok(Some(false)) => proceed.store(false, Ordering::SeqCst),
                            Err(TransferOrRuntime::Transfer(TransferError::Timeout)) => {}
                            Err(TransferOrRuntime::Transfer(TransferError::Interrupted)) => return,
                            Err(TransferOrRuntime::Transfer(e)) => {
                                tracing::warn!("OnData receive on {} failed: {e}", ch.full_name())
                            }
                            Err(TransferOrRuntime::Runtime(e)) => return fail(e),
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
