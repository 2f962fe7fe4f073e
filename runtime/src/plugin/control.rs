//! The built-in `control` plugin (spec §7.5): drives the device through its lifecycle and
//! handles SIGINT/SIGTERM.
//!
//! Modes (`--control`): `static` (run once, then shut down), `dynamic`/`interactive`/`external`
//! (the keyboard REPL of spec §7.5; works with piped stdin too), `gui` (wait for a signal or an
//! error), `none` (no controller). An unknown mode falls back to static.
//!
//! Signals (`--catch-signals`, default 1): the first SIGINT/SIGTERM requests a graceful
//! shutdown (the process then exits 0); a second SIGINT aborts the process.

use std::collections::VecDeque;
use std::io::{IsTerminal as _, Read as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::{Plugin, PluginRegistration, PluginServices, PluginVersion};
use crate::error::HookResult;
use crate::options::Options;
use crate::state::{State, Transition};

/// The registration of the built-in `control` plugin.
pub static REGISTRATION: PluginRegistration = PluginRegistration {
    name: "control",
    version: PluginVersion {
        major: 1,
        minor: 0,
        patch: 0,
    },
    maintainer: "fairmq-rs",
    homepage: "https://example.invalid/fairmq-rs",
    options: Some(add_options),
    create,
};

/// Declares `--control` and `--catch-signals`.
pub fn add_options(o: &mut Options) {
    o.group("Control (builtin) Plugin");
    o.add(
        "control",
        "dynamic".to_owned(),
        "Control mode, 'static' or 'dynamic' (aliases for dynamic are external and interactive), 'gui', 'none'",
    );
    o.add("catch-signals", 1i32, "Enable signal handling (1/0).");
}

/// The control mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMode {
    /// Run once and shut down.
    Static,
    /// Keyboard REPL.
    Interactive,
    /// Wait for a shutdown request.
    Gui,
    /// No controller.
    None,
}

/// The accepted `--control` values.
pub const CONTROL_MODES: &str = "static, dynamic, interactive, external, gui, none";

impl std::str::FromStr for ControlMode {
    type Err = String;

    /// Parses `--control`. An unknown name is an error listing the accepted ones (FairMQ logs
    /// it and falls back to static control, so a typo changes what the device does).
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "static" => Ok(ControlMode::Static),
            "dynamic" | "external" | "interactive" => Ok(ControlMode::Interactive),
            "gui" => Ok(ControlMode::Gui),
            "none" => Ok(ControlMode::None),
            other => Err(format!(
                "unknown control mode '{other}' (--control); use one of {CONTROL_MODES}"
            )),
        }
    }
}

/// Why a wait ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abort {
    Shutdown,
    Error,
}

#[derive(Default)]
struct Queue {
    states: VecDeque<State>,
    shutdown_requested: bool,
}

struct Control {
    services: PluginServices,
    queue: Mutex<Queue>,
    changed: Condvar,
    device_shut_down: AtomicBool,
    controller: Mutex<Option<JoinHandle<()>>>,
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, state: State) {
        self.lock().states.push_back(state);
        self.changed.notify_all();
    }

    fn request_shutdown(&self) {
        self.lock().shutdown_requested = true;
        self.changed.notify_all();
    }

    fn shutdown_requested(&self) -> bool {
        self.lock().shutdown_requested
    }

    /// Pops states until `target` (ERROR or a shutdown request end the wait early).
    fn wait_for_state(&self, target: State) -> Result<(), Abort> {
        let mut q = self.lock();
        loop {
            while let Some(s) = q.states.pop_front() {
                if s == target {
                    return Ok(());
                }
                if s == State::Error {
                    return Err(Abort::Error);
                }
            }
            if q.shutdown_requested {
                return Err(Abort::Shutdown);
            }
            q = self.changed.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The next state, or `None` after `timeout` (or at a shutdown request if `abortable`).
    fn next_state(&self, timeout: Duration, abortable: bool) -> Result<Option<State>, Abort> {
        let q = self.lock();
        let (mut q, _) = self
            .changed
            .wait_timeout_while(q, timeout, |q| {
                q.states.is_empty() && !(abortable && q.shutdown_requested)
            })
            .unwrap_or_else(PoisonError::into_inner);
        match q.states.pop_front() {
            Some(s) => Ok(Some(s)),
            None if abortable && q.shutdown_requested => Err(Abort::Shutdown),
            None => Ok(None),
        }
    }

    fn change(&self, t: Transition) -> bool {
        match self.services.change_device_state(t) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }

    fn step(&self, t: Transition, states: &[State]) -> Result<(), Abort> {
        self.change(t);
        for s in states {
            self.wait_for_state(*s)?;
        }
        Ok(())
    }

    fn startup_sequence(&self) -> Result<(), Abort> {
        self.step(Transition::InitDevice, &[State::InitializingDevice])?;
        self.step(Transition::CompleteInit, &[State::Initialized])?;
        self.step(Transition::Bind, &[State::Binding, State::Bound])?;
        self.step(
            Transition::Connect,
            &[State::Connecting, State::DeviceReady],
        )?;
        self.step(
            Transition::InitTask,
            &[State::InitializingTask, State::Ready],
        )?;
        self.step(Transition::Run, &[State::Running])
    }

    /// Drives the device to EXITING from wherever it is (spec §7.5).
    fn shutdown_sequence(&self) {
        self.lock().states.clear();
        let mut state = self.services.current_state();
        loop {
            if matches!(state, State::Exiting | State::Error) {
                break;
            }
            if !self.services.new_state_pending() {
                match state {
                    State::Idle => {
                        self.change(Transition::End);
                    }
                    State::InitializingDevice => {
                        self.change(Transition::CompleteInit);
                    }
                    State::Initialized | State::Bound | State::DeviceReady => {
                        self.change(Transition::ResetDevice);
                    }
                    State::Ready => {
                        self.change(Transition::ResetTask);
                    }
                    State::Running => {
                        self.change(Transition::Stop);
                    }
                    _ => {}
                }
            }
            state = match self.next_state(Duration::from_millis(100), false) {
                Ok(Some(s)) => s,
                _ => self.services.current_state(),
            };
        }
        self.device_shut_down.store(true, Ordering::SeqCst);
        self.services.release_device_control();
    }

    fn run_static(&self) -> Result<(), Abort> {
        self.startup_sequence()?;
        // Wait for RUNNING to end (or a shutdown request / an error).
        loop {
            match self.next_state(Duration::from_secs(3600), true)? {
                Some(State::Error) => return Err(Abort::Error),
                Some(State::Running) | None => {}
                Some(_) => return Ok(()),
            }
        }
    }

    fn run_gui(&self) -> Result<(), Abort> {
        self.startup_sequence()?;
        loop {
            if let Some(State::Error) = self.next_state(Duration::from_secs(3600), true)? {
                return Err(Abort::Error);
            }
        }
    }

    fn run_interactive(&self) -> Result<(), Abort> {
        let keys = spawn_stdin_reader();
        let _raw = RawTerminal::enable();
        print_help(&self.services);
        self.startup_sequence()?;
        loop {
            // Look for errors and shutdown requests between keys.
            {
                let mut q = self.lock();
                if q.states.iter().any(|s| *s == State::Error) {
                    return Err(Abort::Error);
                }
                q.states.clear();
                if q.shutdown_requested {
                    return Err(Abort::Shutdown);
                }
            }
            let key = match keys.recv_timeout(Duration::from_millis(100)) {
                Ok(k) => k,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdin closed: keep waiting for signals or errors.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let key = key as char;
            if key.is_whitespace() {
                continue;
            }
            let s = &self.services;
            match key {
                'h' => {
                    tracing::info!("\n --> [h] help\n");
                    print_help(s);
                }
                'c' => {
                    tracing::info!("\n --> [c] check current state\n");
                    tracing::info!("{}", s.current_state());
                }
                'p' => {
                    tracing::info!("\n --> [p] print number of connected peers for channels\n");
                    for (name, n) in s.live_channels() {
                        for i in 0..n {
                            tracing::info!(
                                "{}[{}]: {} peers connected",
                                name,
                                i,
                                s.number_of_connected_peers(&name, i).unwrap_or(0)
                            );
                        }
                    }
                }
                'i' => {
                    tracing::info!("\n --> [i] init device\n");
                    if self.change(Transition::InitDevice) {
                        self.lock().states.clear();
                        let _ = self.wait_until_current(State::InitializingDevice);
                        self.change(Transition::CompleteInit);
                    }
                }
                'b' => self.key(Transition::Bind, "[b] bind"),
                'x' => self.key(Transition::Connect, "[x] connect"),
                'j' => self.key(Transition::InitTask, "[j] init task"),
                'r' => self.key(Transition::Run, "[r] run"),
                's' => self.key(Transition::Stop, "[s] stop"),
                't' => self.key(Transition::ResetTask, "[t] reset task"),
                'd' => self.key(Transition::ResetDevice, "[d] reset device"),
                'k' => {
                    tracing::info!("\n --> [k] increase log severity\n");
                    let v = s.cycle_log_console_severity_up();
                    tracing::warn!("log severity: {v}");
                }
                'l' => {
                    tracing::info!("\n --> [l] decrease log severity\n");
                    let v = s.cycle_log_console_severity_down();
                    tracing::warn!("log severity: {v}");
                }
                'n' => {
                    tracing::info!("\n --> [n] increase log verbosity\n");
                    let v = s.cycle_log_verbosity_up();
                    tracing::warn!("log verbosity: {v}");
                }
                'm' => {
                    tracing::info!("\n --> [m] decrease log verbosity\n");
                    let v = s.cycle_log_verbosity_down();
                    tracing::warn!("log verbosity: {v}");
                }
                'q' => {
                    tracing::info!("\n --> [q] end\n");
                    return Ok(());
                }
                other => {
                    tracing::info!("Invalid input: [{other}]. ");
                    print_help(s);
                }
            }
        }
    }

    fn wait_until_current(&self, target: State) -> Result<(), Abort> {
        for _ in 0..600 {
            let s = self.services.current_state();
            if s == target {
                return Ok(());
            }
            if s == State::Error {
                return Err(Abort::Error);
            }
            let _ = self.next_state(Duration::from_millis(100), false);
        }
        Ok(())
    }

    fn key(&self, t: Transition, label: &str) {
        tracing::info!("\n --> {label}\n");
        self.change(t);
    }

    fn controller_main(&self, mode: ControlMode) {
        let result = match mode {
            ControlMode::Static => self.run_static(),
            ControlMode::Interactive => self.run_interactive(),
            ControlMode::Gui => self.run_gui(),
            ControlMode::None => return,
        };
        match result {
            Ok(()) => self.shutdown_sequence(),
            // The signal handler takes over.
            Err(Abort::Shutdown) => {}
            Err(Abort::Error) => {
                self.device_shut_down.store(true, Ordering::SeqCst);
                self.services.release_device_control();
            }
        }
    }

    /// What the first signal triggers (in its own thread).
    fn handle_shutdown_request(self: &Arc<Self>) {
        self.request_shutdown();
        self.services.request_shutdown();
        let controller = self
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(c) = controller {
            let _ = c.join();
        }
        if !self.device_shut_down.load(Ordering::SeqCst) {
            if self.services.current_state() == State::Error {
                self.services.release_device_control();
                return;
            }
            self.services.steal_device_control();
            self.shutdown_sequence();
        }
    }
}

fn print_help(s: &PluginServices) {
    let _ = s;
    tracing::info!(
        "Use keys to control the state machine:\n\n[h] help, [c] check current device state, [p] print number of connected peers for channels\n[i] init device, [b] bind, [x] connect, [j] init task\n[r] run, [s] stop\n[t] reset task, [d] reset device, [q] end\n[k] increase log severity, [l] decrease log severity, [n] increase log verbosity, [m] decrease log verbosity\n\nTo quit press Ctrl+C or [q].\n"
    );
}

fn spawn_stdin_reader() -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("control-stdin".to_owned())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        for b in &buf[..n] {
                            if tx.send(*b).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
    rx
}

/// Puts a terminal stdin into non-canonical, no-echo mode (with `stty`) and restores it.
struct RawTerminal {
    saved: Option<String>,
}

impl RawTerminal {
    fn stty(args: &[&str]) -> Option<String> {
        std::process::Command::new("stty")
            .args(args)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }

    fn enable() -> RawTerminal {
        if !std::io::stdin().is_terminal() {
            return RawTerminal { saved: None };
        }
        let saved = Self::stty(&["-g"]);
        if saved.is_some() {
            Self::stty(&["-icanon", "-echo", "min", "1"]);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            Self::stty(&[saved]);
        }
    }
}

struct ControlPlugin {
    control: Arc<Control>,
    signal_handle: Option<Handle>,
    signal_thread: Option<JoinHandle<()>>,
    shutdown_thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Plugin for ControlPlugin {}

impl Drop for ControlPlugin {
    fn drop(&mut self) {
        self.control.services.unsubscribe_from_device_state_change();
        let controller = self
            .control
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(c) = controller {
            if c.is_finished() {
                let _ = c.join();
            }
        }
        let worker = self
            .shutdown_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = worker {
            let _ = w.join();
        }
        if let Some(h) = self.signal_handle.take() {
            h.close();
        }
        if let Some(t) = self.signal_thread.take() {
            let _ = t.join();
        }
    }
}

fn create(services: PluginServices) -> HookResult<Box<dyn Plugin>> {
    let mode_name = services
        .get_property_or("control", "dynamic".to_owned())
        .unwrap_or_else(|_| "dynamic".to_owned());
    let mode: ControlMode = mode_name.parse()?;
    let catch_signals = services.get_property_or("catch-signals", 1i32).unwrap_or(1);
    let control = Arc::new(Control {
        services: services.clone(),
        queue: Mutex::new(Queue::default()),
        changed: Condvar::new(),
        device_shut_down: AtomicBool::new(false),
        controller: Mutex::new(None),
    });
    {
        let weak = Arc::downgrade(&control);
        services.subscribe_to_device_state_change(move |state| {
            if let Some(c) = weak.upgrade() {
                c.push(state);
            }
        });
    }
    if mode != ControlMode::None {
        match services.take_device_control() {
            Ok(()) => {
                let c = Arc::clone(&control);
                let handle = std::thread::Builder::new()
                    .name("control".to_owned())
                    .spawn(move || c.controller_main(mode))?;
                *control
                    .controller
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(handle);
            }
            Err(e) => tracing::debug!("{e}"),
        }
    }

    let shutdown_thread: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let (signal_handle, signal_thread) = if catch_signals > 0 {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let c = Arc::clone(&control);
        let worker_slot = Arc::clone(&shutdown_thread);
        let thread = std::thread::Builder::new()
            .name("signals".to_owned())
            .spawn(move || {
                let mut received = 0usize;
                for signal in signals.forever() {
                    received += 1;
                    if received == 1 {
                        tracing::info!("Received device shutdown request (signal {signal}).");
                        tracing::info!(
                            "Waiting for graceful device shutdown. Hit Ctrl-C again to abort immediately."
                        );
                        let c = Arc::clone(&c);
                        let worker = std::thread::Builder::new()
                            .name("shutdown".to_owned())
                            .spawn(move || c.handle_shutdown_request());
                        match worker {
                            Ok(w) => {
                                *worker_slot.lock().unwrap_or_else(PoisonError::into_inner) =
                                    Some(w)
                            }
                            Err(e) => tracing::error!(
                                "Graceful device shutdown failed: {e} If hanging, hit Ctrl-C again to abort immediately."
                            ),
                        }
                    } else if signal == SIGINT {
                        tracing::warn!("Received second SIGINT, aborting immediately.");
                        std::process::abort();
                    }
                }
            })?;
        (Some(handle), Some(thread))
    } else {
        tracing::warn!("Signal handling (e.g. Ctrl-C) has been deactivated.");
        (None, None)
    };
    let _ = control.shutdown_requested();
    Ok(Box::new(ControlPlugin {
        control,
        signal_handle,
        signal_thread,
        shutdown_thread,
    }))
}
