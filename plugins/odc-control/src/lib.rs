//! The `odc` control plugin: hands a device's state machine and properties to a remote
//! controller, as the DDS plugin does for ODC in FairMQ.
//!
//! Loaded with `-P p:odc` (prelinked into the built-in devices) or `-P odc` (dynamic,
//! `libfairmq_plugin_odc.so`), with `--odc-controller <host:port>`. Being loaded with `-P`, it
//! is instantiated before the built-in `control` plugin and **takes device control** in its
//! factory, so `control` only handles signals (a SIGINT/SIGTERM still shuts the device down
//! gracefully: `control` steals control for that, and this plugin reports the states).
//!
//! It then connects to the controller (retrying for `--odc-connect-timeout` seconds), says
//! hello (id, pid, host name, Slurm task, current state), and from then on
//! * reports every state the device enters;
//! * reports the counters of every sub-channel every `--odc-stats-interval` ms;
//! * executes the controller's requests: change state, set the channel configuration
//!   (FairMQ's `--mq-config` JSON, in INITIALIZING DEVICE), set and get properties, read the
//!   counters. The wire format is in [`protocol`].
//!
//! Failure handling: not reaching the controller sends the device to ERROR (exit code 1); losing
//! the controller later shuts the device down (the shutdown sequence of the `control` plugin:
//! STOP, RESET TASK, RESET DEVICE, END, from wherever it is), so that a crashed or killed
//! controller leaves no devices (and no shared memory) behind. Control is released when the
//! device reaches EXITING or ERROR, so that the process can end.

#![warn(missing_docs)]

pub mod protocol;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fairmq::channel_config::json::parse_json_value;
use fairmq::channel_config::store_channels;
use fairmq::plugin::{Plugin, PluginRegistration, PluginServices, PluginVersion};
use fairmq::{HookResult, Options, PropertyValue, State, Transition};

use protocol::{
    read_message, write_message, ChannelStats, Command, DeviceMessage, Hello, Reply, Request,
    SlurmTask, PROTOCOL_VERSION,
};

/// The plugin's name (`-P p:odc`).
pub const NAME: &str = "odc";

/// The plugin's registration.
pub static ODC: PluginRegistration = PluginRegistration {
    name: NAME,
    version: PluginVersion {
        major: 0,
        minor: 1,
        patch: 0,
    },
    maintainer: "fairmq-rs",
    homepage: "https://example.invalid/fairmq-rs",
    options: Some(add_options),
    create,
};

fairmq::register_plugin!(ODC);
fairmq::declare_dynamic_plugin!("odc", ODC);

/// Declares `--odc-controller`, `--odc-connect-timeout` and `--odc-stats-interval`.
pub fn add_options(o: &mut Options) {
    o.group("odc control plugin");
    o.add(
        "odc-controller",
        String::new(),
        "Address <host>:<port> of the controller (fairmq-topology) that drives this device; required.",
    );
    o.add(
        "odc-connect-timeout",
        30i32,
        "Seconds to keep trying to reach the controller before the device goes to ERROR.",
    );
    o.add(
        "odc-stats-interval",
        1000i32,
        "Milliseconds between two reports of the channel counters to the controller (0: only when asked).",
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection to the controller and what the threads share.
struct Link {
    services: PluginServices,
    controller: String,
    /// The write side of the connection, once connected.
    writer: Mutex<Option<TcpStream>>,
    /// The current state and how many states were entered (for waits).
    state: Mutex<(State, u64)>,
    state_changed: Condvar,
    /// The plugin is being dropped.
    closing: AtomicBool,
    /// Wakes the stats thread early.
    ticker: (Mutex<()>, Condvar),
    /// Held while a request is executed and answered, so that the plugin's drop (right after
    /// the device reached EXITING, possibly because of that very request) does not cut the
    /// reply off.
    busy: Mutex<()>,
}

impl Link {
    fn send(&self, message: &DeviceMessage) {
        let mut writer = lock(&self.writer);
        if let Some(stream) = writer.as_mut() {
            if let Err(e) = write_message(stream, message) {
                tracing::debug!("odc: {e}");
                let _ = stream.shutdown(Shutdown::Both);
                *writer = None;
            }
        }
    }

    fn on_state(&self, state: State) {
        {
            let mut s = lock(&self.state);
            s.0 = state;
            s.1 += 1;
        }
        self.state_changed.notify_all();
        self.send(&DeviceMessage::State {
            state: state.name().to_owned(),
        });
        if state.is_terminal() {
            self.services.release_device_control();
        }
    }

    fn stats(&self) -> Vec<ChannelStats> {
        self.services
            .channels()
            .iter()
            .map(|c| {
                let s = c.socket();
                ChannelStats {
                    name: c.name().to_owned(),
                    index: c.index(),
                    transport: c.transport().name().to_owned(),
                    address: c.address(),
                    method: c.method().to_string(),
                    peers: s.map(|s| s.connected_peers()).unwrap_or(0),
                    msgs_in: s.map(|s| s.messages_rx()).unwrap_or(0),
                    bytes_in: s.map(|s| s.bytes_rx()).unwrap_or(0),
                    msgs_out: s.map(|s| s.messages_tx()).unwrap_or(0),
                    bytes_out: s.map(|s| s.bytes_tx()).unwrap_or(0),
                }
            })
            .collect()
    }

    fn connect(&self, timeout: Duration) -> Result<TcpStream, String> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no address");
        loop {
            let addrs: Vec<_> = match self.controller.to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    return Err(format!(
                        "--odc-controller '{}' is not a <host>:<port> address: {e}",
                        self.controller
                    ))
                }
            };
            for addr in &addrs {
                match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
                    Ok(s) => return Ok(s),
                    Err(e) => last_error = format!("{addr}: {e}"),
                }
            }
            if Instant::now() >= deadline || self.closing.load(Ordering::SeqCst) {
                return Err(format!(
                    "cannot reach the controller at {} within {} s (--odc-connect-timeout): {last_error}",
                    self.controller,
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn hello(&self) -> Hello {
        let s = &self.services;
        Hello {
            protocol: PROTOCOL_VERSION,
            id: s.get_property_or("id", String::new()).unwrap_or_default(),
            pid: std::process::id(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
            slurm: SlurmTask::from_env(|k| std::env::var(k).ok()),
            session: s
                .get_property_or("session", "default".to_owned())
                .unwrap_or_default(),
            state: s.current_state().name().to_owned(),
        }
    }

    /// The connection thread: connect, hello, then serve requests until the connection ends.
    fn run(self: &Arc<Self>, connect_timeout: Duration, stats_interval: Option<Duration>) {
        let stream = match self.connect(connect_timeout) {
            Ok(s) => s,
            Err(e) => {
                if !self.closing.load(Ordering::SeqCst) {
                    tracing::error!("odc: {e}");
                    let _ = self.services.change_device_state(Transition::ErrorFound);
                }
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut reader = match stream.try_clone() {
            Ok(r) => BufReader::new(r),
            Err(e) => {
                tracing::error!("odc: cannot use the connection to the controller: {e}");
                let _ = self.services.change_device_state(Transition::ErrorFound);
                return;
            }
        };
        {
            // Under the writer lock, so that no state message overtakes the hello and the
            // hello's state is at least as new as any state message that follows.
            let mut writer = lock(&self.writer);
            let mut stream = stream;
            if let Err(e) = write_message(&mut stream, &DeviceMessage::Hello(self.hello())) {
                tracing::error!("odc: cannot talk to the controller: {e}");
                drop(writer);
                let _ = self.services.change_device_state(Transition::ErrorFound);
                return;
            }
            *writer = Some(stream);
        }
        tracing::info!("odc: connected to the controller at {}", self.controller);

        let stats_thread = stats_interval.and_then(|interval| {
            let link = Arc::clone(self);
            std::thread::Builder::new()
                .name("odc-stats".to_owned())
                .spawn(move || link.stats_loop(interval))
                .ok()
        });

        loop {
            match read_message::<Request>(&mut reader) {
                Ok(Some(request)) => {
                    let _busy = lock(&self.busy);
                    let reply = self.execute(request);
                    self.send(&DeviceMessage::Reply(reply));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("odc: {e}");
                    break;
                }
            }
        }
        if let Some(s) = lock(&self.writer).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.ticker.1.notify_all();
        if let Some(t) = stats_thread {
            let _ = t.join();
        }
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        let state = lock(&self.state).0;
        if !state.is_terminal() {
            tracing::error!(
                "odc: lost the connection to the controller at {} in state {state}; shutting the device down",
                self.controller
            );
            self.shutdown_sequence();
        }
    }

    fn stats_loop(&self, interval: Duration) {
        loop {
            {
                let guard = lock(&self.ticker.0);
                let _unused = self
                    .ticker
                    .1
                    .wait_timeout(guard, interval)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if self.closing.load(Ordering::SeqCst) || lock(&self.writer).is_none() {
                return;
            }
            let channels = self.stats();
            if !channels.is_empty() {
                self.send(&DeviceMessage::Stats { channels });
            }
        }
    }

    fn execute(&self, request: Request) -> Reply {
        let seq = request.seq;
        let result = match request.command {
            Command::ChangeState { transition } => self.change_state(&transition),
            Command::SetChannels { config } => self.set_channels(&config),
            Command::SetProperties { properties } => self.set_properties(properties),
            Command::GetProperties { prefix } => Ok(Reply {
                properties: self
                    .services
                    .properties()
                    .get_starting_with(&prefix)
                    .into_iter()
                    .map(|(k, v)| (k, v.to_string()))
                    .collect(),
                ..Reply::default()
            }),
            Command::GetStats => Ok(Reply {
                channels: self.stats(),
                ..Reply::default()
            }),
        };
        match result {
            Ok(reply) => Reply {
                seq,
                ok: true,
                ..reply
            },
            Err(error) => Reply {
                seq,
                ok: false,
                error: Some(error),
                ..Reply::default()
            },
        }
    }

    fn change_state(&self, name: &str) -> Result<Reply, String> {
        let transition: Transition = name.parse().map_err(|e| format!("{e}"))?;
        match self.services.change_device_state(transition) {
            Ok(true) => Ok(Reply::default()),
            Ok(false) => Err(format!(
                "transition {transition} refused in state {}",
                self.services.current_state()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn set_channels(&self, config: &serde_json::Value) -> Result<Reply, String> {
        let id: String = self
            .services
            .get_property_or("id", String::new())
            .map_err(|e| e.to_string())?;
        let channels = parse_json_value(config, &id, "the controller's channel configuration")
            .map_err(|e| e.to_string())?;
        let properties = self.services.properties();
        for key in properties.get_starting_with("chans.").into_keys() {
            properties.delete(&key);
        }
        store_channels(properties, &channels);
        Ok(Reply::default())
    }

    fn set_properties(&self, items: BTreeMap<String, String>) -> Result<Reply, String> {
        let properties = self.services.properties();
        let mut typed = BTreeMap::new();
        for (key, text) in items {
            let value = match properties.property_type(&key) {
                Some(t) => t
                    .parse_value(&text)
                    .map_err(|e| format!("property {key}: {e}"))?,
                None => PropertyValue::String(text),
            };
            typed.insert(key, value);
        }
        self.services.set_properties(typed);
        Ok(Reply::default())
    }

    /// Waits until the device entered another state than the `seen`-th, at most `timeout`.
    fn wait_state_after(&self, seen: u64, timeout: Duration) -> (State, u64) {
        let guard = lock(&self.state);
        let (guard, _) = self
            .state_changed
            .wait_timeout_while(guard, timeout, |s| s.1 == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Drives the device to EXITING from wherever it is (the `control` plugin's shutdown
    /// sequence, spec §7.5). If another plugin has taken control meanwhile (a signal), only
    /// waits for it to finish.
    fn shutdown_sequence(&self) {
        let s = &self.services;
        let (mut state, mut seen) = *lock(&self.state);
        while !state.is_terminal() {
            if !s.new_state_pending() {
                let t = match state {
                    State::Idle => Some(Transition::End),
                    State::InitializingDevice => Some(Transition::CompleteInit),
                    State::Initialized | State::Bound | State::DeviceReady => {
                        Some(Transition::ResetDevice)
                    }
                    State::Ready => Some(Transition::ResetTask),
                    State::Running => Some(Transition::Stop),
                    _ => None,
                };
                if let Some(t) = t {
                    if let Err(e) = s.change_device_state(t) {
                        tracing::debug!("odc: {e}");
                    }
                }
            }
            (state, seen) = self.wait_state_after(seen, Duration::from_millis(200));
        }
    }
}

struct OdcPlugin {
    link: Arc<Link>,
    thread: Option<JoinHandle<()>>,
}

impl Plugin for OdcPlugin {}

impl Drop for OdcPlugin {
    fn drop(&mut self) {
        self.link.closing.store(true, Ordering::SeqCst);
        self.link.services.unsubscribe_from_device_state_change();
        let busy = lock(&self.link.busy);
        if let Some(s) = lock(&self.link.writer).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(busy);
        self.link.ticker.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn create(services: PluginServices) -> HookResult<Box<dyn Plugin>> {
    let controller: String = services.get_property_or("odc-controller", String::new())?;
    if controller.is_empty() {
        return Err("the odc plugin needs --odc-controller <host>:<port>, the address the controller (fairmq-topology) listens on".into());
    }
    let connect_timeout = services.get_property_or("odc-connect-timeout", 30i32)?;
    let stats_ms = services.get_property_or("odc-stats-interval", 1000i32)?;
    services.take_device_control()?;
    let link = Arc::new(Link {
        services: services.clone(),
        controller,
        writer: Mutex::new(None),
        state: Mutex::new((services.current_state(), 0)),
        state_changed: Condvar::new(),
        closing: AtomicBool::new(false),
        ticker: (Mutex::new(()), Condvar::new()),
        busy: Mutex::new(()),
    });
    {
        let weak = Arc::downgrade(&link);
        services.subscribe_to_device_state_change(move |state| {
            if let Some(link) = weak.upgrade() {
                link.on_state(state);
            }
        });
    }
    let timeout = Duration::from_secs(u64::try_from(connect_timeout.max(1)).unwrap_or(30));
    let stats_interval =
        (stats_ms > 0).then(|| Duration::from_millis(u64::try_from(stats_ms).unwrap_or(1000)));
    let l = Arc::clone(&link);
    let thread = std::thread::Builder::new()
        .name("odc".to_owned())
        .spawn(move || l.run(timeout, stats_interval))?;
    Ok(Box::new(OdcPlugin {
        link,
        thread: Some(thread),
    }))
}
