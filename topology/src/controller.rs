//! The controller side of the `odc` protocol: a TCP server that every device's `odc` plugin
//! connects to, the state of every device as it reports it, and the collective operations of
//! ODC: send a transition to a set of devices and wait until all of them have reached the
//! target state, set their channel configurations and properties, read properties and
//! counters.
//!
//! One thread accepts connections and one thread per connection reads messages; everything
//! they read arrives as an [`Event`] on one channel, and all the state lives in
//! [`Controller`], which only the caller's thread touches ([`Controller::pump`]).
//!
//! A device *fails* when its connection ends before it reached EXITING (the process died or was
//! killed), when it enters ERROR, or when it runs on another node than the plan says. Every
//! wait returns [`ControlError::Failed`] as soon as one device of the set fails.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairmq::{State, Transition};

use crate::launch::Exit;
use fairmq_plugin_odc::protocol::{
    read_message, write_message, ChannelStats, Command, DeviceMessage, Hello, Reply, Request,
    PROTOCOL_VERSION,
};

/// Why a collective operation did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Devices failed (died, ERROR, wrong node).
    #[error("{}", .0.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Failed(Vec<DeviceFailure>),
    /// Some devices did not get there in time.
    #[error("{step}: timed out after {} s waiting for {}", timeout.as_secs(), waiting.join(", "))]
    Timeout {
        /// What we waited for.
        step: String,
        /// The timeout.
        timeout: Duration,
        /// `<id> (<state>)` of every device not there yet.
        waiting: Vec<String>,
    },
    /// A device refused a command.
    #[error("{id}: {what} refused: {error}")]
    Refused {
        /// The device.
        id: String,
        /// The command.
        what: String,
        /// The device's answer.
        error: String,
    },
    /// The user asked to stop (SIGINT/SIGTERM).
    #[error("interrupted")]
    Interrupted,
}

/// A device that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFailure {
    /// Index of the device (plan instance).
    pub device: usize,
    /// Its id.
    pub id: String,
    /// What happened.
    pub what: String,
}

impl std::fmt::Display for DeviceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.id, self.what)
    }
}

/// What the reader threads report.
#[derive(Debug)]
pub enum Event {
    /// A device said hello on connection `conn`.
    Hello {
        /// Connection number.
        conn: u64,
        /// The write side.
        stream: TcpStream,
        /// What it said.
        hello: Hello,
    },
    /// A message after the hello.
    Message {
        /// Connection number.
        conn: u64,
        /// The message.
        message: DeviceMessage,
    },
    /// The connection ended.
    Closed {
        /// Connection number.
        conn: u64,
        /// Why, if not a plain end of stream.
        error: Option<String>,
    },
}

/// A channel's message and byte rates, from two consecutive counter reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Messages per second received.
    pub msgs_in: f64,
    /// Megabytes (10^6) per second received.
    pub mb_in: f64,
    /// Messages per second sent.
    pub msgs_out: f64,
    /// Megabytes per second sent.
    pub mb_out: f64,
}

/// What the controller knows about one device.
#[derive(Debug, Default)]
pub struct DeviceStatus {
    /// The id.
    pub id: String,
    /// The Slurm node (or host name) the plan puts it on, checked against the hello.
    pub expected_node: Option<String>,
    /// Its hello, once connected.
    pub hello: Option<Hello>,
    /// The current state, once connected.
    pub state: Option<State>,
    /// Every state reported, with when.
    pub history: Vec<(Instant, State)>,
    /// When the connection ended (and why, if not a plain end of stream).
    pub closed: Option<(Instant, Option<String>)>,
    /// The latest channel counters.
    pub stats: Vec<ChannelStats>,
    /// The rates between the last two counter reports, per channel (same order as `stats`).
    pub rates: Vec<Rates>,
    /// When `stats` arrived.
    pub stats_at: Option<Instant>,
    /// Set when the device failed; the first reason.
    pub failure: Option<String>,
    /// How the process ended, as the launcher saw it.
    pub exit: Option<String>,
    writer: Option<TcpStream>,
    conn: Option<u64>,
    replies: BTreeMap<u64, Reply>,
}

impl DeviceStatus {
    /// Whether the connection is up.
    pub fn connected(&self) -> bool {
        self.writer.is_some()
    }

    /// The state name for display (`-` before the hello, `GONE` after a failure).
    pub fn state_name(&self) -> String {
        match (self.state, &self.closed) {
            (Some(s), None) => s.name().to_owned(),
            (Some(State::Exiting), Some(_)) => "EXITED".to_owned(),
            (Some(s), Some(_)) => format!("GONE in {}", s.name()),
            (None, Some(_)) => "GONE".to_owned(),
            (None, None) => "-".to_owned(),
        }
    }

    /// Whether the device entered `state` at or after position `since` of its history.
    pub fn reached_since(&self, state: State, since: usize) -> bool {
        self.history.iter().skip(since).any(|(_, s)| *s == state)
    }

    /// The node it runs on: the Slurm node it reported, else the one the plan puts it on.
    pub fn node(&self) -> Option<String> {
        self.hello
            .as_ref()
            .and_then(|h| h.slurm.as_ref())
            .and_then(|s| s.node_name.clone())
            .or_else(|| self.expected_node.clone())
    }
}

/// The controller.
pub struct Controller {
    address: SocketAddr,
    events: Receiver<Event>,
    stop: Arc<AtomicBool>,
    /// One entry per device (plan instance order).
    pub devices: Vec<DeviceStatus>,
    conns: BTreeMap<u64, usize>,
    next_seq: u64,
    /// Things that happened, for the progress view and the summary (newest last).
    pub events_log: Vec<String>,
    /// Set by the signal handler.
    pub interrupted: Arc<AtomicBool>,
    exit_source: Option<Box<ExitSource>>,
    frame: Option<(Box<FrameHook>, Duration, Instant)>,
}

/// Where [`Controller::pump`] learns how processes ended (the launcher).
pub type ExitSource = dyn FnMut() -> Vec<Exit>;

/// What [`Controller::pump`] calls every frame interval (the progress view).
pub type FrameHook = dyn FnMut(&Controller);

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("address", &self.address)
            .field("devices", &self.devices.len())
            .finish()
    }
}

fn reader(conn: u64, stream: TcpStream, tx: Sender<Event>) {
    let write = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            let _ = tx.send(Event::Closed {
                conn,
                error: Some(e.to_string()),
            });
            return;
        }
    };
    let mut input = BufReader::new(stream);
    match read_message::<DeviceMessage>(&mut input) {
        Ok(Some(DeviceMessage::Hello(hello))) => {
            if tx
                .send(Event::Hello {
                    conn,
                    stream: write,
                    hello,
                })
                .is_err()
            {
                return;
            }
        }
        Ok(Some(other)) => {
            let _ = tx.send(Event::Closed {
                conn,
                error: Some(format!("first message is not a hello: {other:?}")),
            });
            return;
        }
        Ok(None) => return,
        Err(e) => {
            let _ = tx.send(Event::Closed {
                conn,
                error: Some(e.to_string()),
            });
            return;
        }
    }
    loop {
        match read_message::<DeviceMessage>(&mut input) {
            Ok(Some(message)) => {
                if tx.send(Event::Message { conn, message }).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Event::Closed { conn, error: None });
                return;
            }
            Err(e) => {
                let _ = tx.send(Event::Closed {
                    conn,
                    error: Some(e.to_string()),
                });
                return;
            }
        }
    }
}

/// The shutdown sequence of the `control` plugin (spec §7.5): the transition that brings a
/// device in `state` one step closer to EXITING (`None`: it moves on by itself, or is there).
pub fn shutdown_step(state: State) -> Option<Transition> {
    match state {
        State::Idle => Some(Transition::End),
        State::InitializingDevice => Some(Transition::CompleteInit),
        State::Initialized | State::Bound | State::DeviceReady => Some(Transition::ResetDevice),
        State::Ready => Some(Transition::ResetTask),
        State::Running => Some(Transition::Stop),
        _ => None,
    }
}

impl Controller {
    /// Listens on `bind` (e.g. `127.0.0.1:0`) for the devices `ids`.
    pub fn listen(bind: &str, ids: Vec<String>) -> std::io::Result<Controller> {
        let listener = TcpListener::bind(bind)?;
        let address = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("accept".to_owned())
            .spawn(move || {
                let mut conn = 0u64;
                while !s.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_nodelay(true);
                            conn += 1;
                            let tx = tx.clone();
                            let c = conn;
                            let _ = std::thread::Builder::new()
                                .name(format!("conn-{c}"))
                                .spawn(move || reader(c, stream, tx));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })?;
        Ok(Controller {
            address,
            events: rx,
            stop,
            devices: ids
                .into_iter()
                .map(|id| DeviceStatus {
                    id,
                    ..DeviceStatus::default()
                })
                .collect(),
            conns: BTreeMap::new(),
            next_seq: 0,
            events_log: Vec::new(),
            interrupted: Arc::new(AtomicBool::new(false)),
            exit_source: None,
            frame: None,
        })
    }

    /// Polls `source` for ended processes whenever events are pumped.
    pub fn set_exit_source(&mut self, source: Box<ExitSource>) {
        self.exit_source = Some(source);
    }

    /// Calls `hook` every `interval` while events are pumped.
    pub fn set_frame_hook(&mut self, hook: Box<FrameHook>, interval: Duration) {
        self.frame = Some((hook, interval, Instant::now()));
    }

    /// Calls the frame hook now (and restarts its interval).
    pub fn draw_frame(&mut self) {
        if let Some((mut hook, interval, _)) = self.frame.take() {
            hook(self);
            self.frame = Some((hook, interval, Instant::now() + interval));
        }
    }

    /// The address the devices connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Records something that happened.
    pub fn note(&mut self, what: String) {
        self.events_log.push(what);
    }

    fn fail(&mut self, i: usize, what: String) {
        let d = &mut self.devices[i];
        if d.failure.is_none() {
            d.failure = Some(what.clone());
            let node = d.node().or_else(|| d.expected_node.clone());
            let at = node.map(|n| format!(" on {n}")).unwrap_or_default();
            let pid = d
                .hello
                .as_ref()
                .map(|h| format!(" (pid {})", h.pid))
                .unwrap_or_default();
            let id = d.id.clone();
            self.note(format!("{id}{at}{pid} {what}"));
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Hello {
                conn,
                stream,
                hello,
            } => {
                let Some(i) = self.devices.iter().position(|d| d.id == hello.id) else {
                    self.note(format!(
                        "a device with unknown id '{}' (pid {}) connected; ignored",
                        hello.id, hello.pid
                    ));
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                };
                if hello.protocol != PROTOCOL_VERSION {
                    let _ = stream.shutdown(Shutdown::Both);
                    self.fail(
                        i,
                        format!(
                            "speaks odc protocol {} but this controller speaks {PROTOCOL_VERSION}; rebuild the device",
                            hello.protocol
                        ),
                    );
                    return;
                }
                if self.devices[i].hello.is_some() {
                    let _ = stream.shutdown(Shutdown::Both);
                    self.note(format!(
                        "a second device with id '{}' (pid {}) connected; ignored",
                        hello.id, hello.pid
                    ));
                    return;
                }
                let state = hello.state.parse::<State>().ok();
                let node_mismatch = match (&self.devices[i].expected_node, &hello.slurm) {
                    (Some(expected), Some(s)) => s
                        .node_name
                        .as_ref()
                        .filter(|n| *n != expected)
                        .map(|n| format!("runs on {n}, but the plan puts it on {expected}")),
                    _ => None,
                };
                let d = &mut self.devices[i];
                d.writer = Some(stream);
                d.conn = Some(conn);
                d.state = state;
                if let Some(s) = state {
                    d.history.push((Instant::now(), s));
                }
                d.hello = Some(hello);
                self.conns.insert(conn, i);
                if let Some(m) = node_mismatch {
                    self.fail(i, m);
                }
            }
            Event::Message { conn, message } => {
                let Some(&i) = self.conns.get(&conn) else {
                    return;
                };
                match message {
                    DeviceMessage::State { state } => match state.parse::<State>() {
                        Ok(s) => {
                            let d = &mut self.devices[i];
                            d.state = Some(s);
                            d.history.push((Instant::now(), s));
                            if s == State::Error {
                                self.fail(i, "entered the ERROR state".to_owned());
                            }
                        }
                        Err(e) => self.note(format!("{}: {e}", self.devices[i].id)),
                    },
                    DeviceMessage::Stats { channels } => self.update_stats(i, channels),
                    DeviceMessage::Reply(r) => {
                        self.devices[i].replies.insert(r.seq, r);
                    }
                    DeviceMessage::Hello(_) => {
                        self.note(format!("{}: a second hello; ignored", self.devices[i].id))
                    }
                }
            }
            Event::Closed { conn, error } => {
                let Some(i) = self.conns.remove(&conn) else {
                    return;
                };
                let d = &mut self.devices[i];
                d.writer = None;
                d.closed = Some((Instant::now(), error.clone()));
                let state = d.state;
                if state != Some(State::Exiting) {
                    let why = error.map(|e| format!(": {e}")).unwrap_or_default();
                    let in_state = state.map(|s| format!(" in state {s}")).unwrap_or_default();
                    self.fail(
                        i,
                        format!("died{in_state} (its control connection ended{why})"),
                    );
                }
            }
        }
    }

    fn update_stats(&mut self, i: usize, channels: Vec<ChannelStats>) {
        let now = Instant::now();
        let d = &mut self.devices[i];
        let secs = d
            .stats_at
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        d.rates = channels
            .iter()
            .map(|c| {
                let prev = d
                    .stats
                    .iter()
                    .find(|p| p.name == c.name && p.index == c.index);
                match prev {
                    Some(p) if secs > 0.05 => Rates {
                        msgs_in: c.msgs_in.saturating_sub(p.msgs_in) as f64 / secs,
                        mb_in: c.bytes_in.saturating_sub(p.bytes_in) as f64 / 1e6 / secs,
                        msgs_out: c.msgs_out.saturating_sub(p.msgs_out) as f64 / secs,
                        mb_out: c.bytes_out.saturating_sub(p.bytes_out) as f64 / 1e6 / secs,
                    },
                    _ => Rates::default(),
                }
            })
            .collect();
        d.stats = channels;
        d.stats_at = Some(now);
    }

    /// Processes events for up to `timeout` (returns early after the first batch), polls the
    /// exit source and draws a frame when one is due.
    pub fn pump(&mut self, timeout: Duration) {
        if let Ok(e) = self.events.recv_timeout(timeout) {
            self.handle(e);
            while let Ok(e) = self.events.try_recv() {
                self.handle(e);
            }
        }
        if let Some(mut source) = self.exit_source.take() {
            let exits = source();
            self.exit_source = Some(source);
            if !exits.is_empty() {
                // Messages the device sent before it ended come first.
                while let Ok(e) = self.events.try_recv() {
                    self.handle(e);
                }
                for e in exits {
                    self.device_exited(e.instance, e.how, e.failed);
                }
            }
        }
        if self
            .frame
            .as_ref()
            .is_some_and(|(_, _, due)| Instant::now() >= *due)
        {
            self.draw_frame();
        }
    }

    /// Records how the process of device `i` ended; a failed exit (non-zero code, signal)
    /// before EXITING is a failure of the device.
    pub fn device_exited(&mut self, i: usize, how: String, failed: bool) {
        self.devices[i].exit = Some(how.clone());
        if failed && self.devices[i].state != Some(State::Exiting) {
            let state = self.devices[i].state_name();
            self.fail(i, format!("ended ({how}) in state {state}"));
        } else if failed {
            self.note(format!(
                "{} ended with {how} after EXITING",
                self.devices[i].id
            ));
        }
    }

    /// The failures among `set`.
    pub fn failures(&self, set: &[usize]) -> Vec<DeviceFailure> {
        set.iter()
            .filter_map(|&i| {
                self.devices[i].failure.as_ref().map(|w| DeviceFailure {
                    device: i,
                    id: self.devices[i].id.clone(),
                    what: w.clone(),
                })
            })
            .collect()
    }

    /// `Err` if the user interrupted or a device of `set` failed.
    pub fn check(&self, set: &[usize]) -> Result<(), ControlError> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(ControlError::Interrupted);
        }
        let f = self.failures(set);
        if f.is_empty() {
            Ok(())
        } else {
            Err(ControlError::Failed(f))
        }
    }

    /// Waits until `done(device)` holds for every device of `set`.
    pub fn wait_until(
        &mut self,
        set: &[usize],
        step: &str,
        timeout: Duration,
        done: impl Fn(usize, &DeviceStatus) -> bool,
    ) -> Result<(), ControlError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check(set)?;
            if set.iter().all(|&i| done(i, &self.devices[i])) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ControlError::Timeout {
                    step: step.to_owned(),
                    timeout,
                    waiting: set
                        .iter()
                        .filter(|&&i| !done(i, &self.devices[i]))
                        .map(|&i| {
                            format!("{} ({})", self.devices[i].id, self.devices[i].state_name())
                        })
                        .collect(),
                });
            }
            self.pump((deadline - now).min(Duration::from_millis(200)));
        }
    }

    /// Waits until every device of `set` has said hello.
    pub fn wait_connected(&mut self, set: &[usize], timeout: Duration) -> Result<(), ControlError> {
        self.wait_until(
            set,
            "waiting for the devices to connect",
            timeout,
            |_, d| d.hello.is_some(),
        )
    }

    fn send(&mut self, i: usize, command: Command) -> Result<u64, ControlError> {
        self.next_seq += 1;
        let seq = self.next_seq;
        let d = &mut self.devices[i];
        let Some(w) = d.writer.as_mut() else {
            return Err(ControlError::Failed(vec![DeviceFailure {
                device: i,
                id: d.id.clone(),
                what: "is not connected".to_owned(),
            }]));
        };
        if let Err(e) = write_message(w, &Request { seq, command }) {
            let _ = w.shutdown(Shutdown::Both);
            d.writer = None;
            let id = d.id.clone();
            self.fail(i, format!("cannot be reached: {e}"));
            return Err(ControlError::Failed(vec![DeviceFailure {
                device: i,
                id,
                what: format!("cannot be reached: {e}"),
            }]));
        }
        Ok(seq)
    }

    /// Sends `command(i)` to every device of `set` and waits for all replies, which must be
    /// `ok`.
    pub fn request_all(
        &mut self,
        set: &[usize],
        what: &str,
        timeout: Duration,
        command: impl Fn(usize) -> Command,
    ) -> Result<Vec<Reply>, ControlError> {
        let mut pending = Vec::new();
        for &i in set {
            pending.push((i, self.send(i, command(i))?));
        }
        self.wait_until(set, what, timeout, |_, _| true)?;
        let deadline = Instant::now() + timeout;
        let mut replies = Vec::new();
        for (i, seq) in pending {
            loop {
                if let Some(r) = self.devices[i].replies.remove(&seq) {
                    if !r.ok {
                        return Err(ControlError::Refused {
                            id: self.devices[i].id.clone(),
                            what: what.to_owned(),
                            error: r.error.unwrap_or_default(),
                        });
                    }
                    replies.push(r);
                    break;
                }
                self.check(&[i])?;
                let d = &self.devices[i];
                if d.closed.is_some() && d.state == Some(State::Exiting) {
                    // It did what was asked and left before answering (END).
                    replies.push(Reply {
                        seq,
                        ok: true,
                        ..Reply::default()
                    });
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(ControlError::Timeout {
                        step: what.to_owned(),
                        timeout,
                        waiting: vec![format!("{} (no reply)", self.devices[i].id)],
                    });
                }
                self.pump(Duration::from_millis(100));
            }
        }
        Ok(replies)
    }

    /// Sends `transition` to every device of `set` and waits until each has entered `target`
    /// (ODC's `ChangeState` followed by `WaitForState`).
    pub fn transition(
        &mut self,
        set: &[usize],
        transition: Transition,
        target: State,
        timeout: Duration,
    ) -> Result<(), ControlError> {
        let marks: BTreeMap<usize, usize> = set
            .iter()
            .map(|&i| (i, self.devices[i].history.len()))
            .collect();
        self.request_all(set, transition.name(), timeout, |_| Command::ChangeState {
            transition: transition.name().to_owned(),
        })?;
        self.wait_until(
            set,
            &format!("{} -> {}", transition.name(), target.name()),
            timeout,
            |i, d| d.reached_since(target, marks[&i]),
        )
    }

    /// Drives every live device of `set` to EXITING with the shutdown sequence, concurrently,
    /// and waits until each is EXITING, ERROR or gone.
    pub fn shut_down(&mut self, set: &[usize], timeout: Duration) -> Result<(), ControlError> {
        let deadline = Instant::now() + timeout;
        // Per device: the request in flight, the state it was sent in, and when.
        let mut in_flight: BTreeMap<usize, (u64, State, Instant)> = BTreeMap::new();
        loop {
            let live: Vec<usize> = set
                .iter()
                .copied()
                .filter(|&i| {
                    let d = &self.devices[i];
                    d.connected() && !d.state.is_some_and(State::is_terminal)
                })
                .collect();
            if live.is_empty() {
                return Ok(());
            }
            for &i in &live {
                let Some(state) = self.devices[i].state else {
                    continue;
                };
                if let Some((seq, sent_in, at)) = in_flight.get(&i).copied() {
                    // Wait for the state to move; send again only if it does not for a while
                    // (the transition was refused, e.g. because the device was busy).
                    if sent_in == state && at.elapsed() < Duration::from_secs(3) {
                        continue;
                    }
                    self.devices[i].replies.remove(&seq);
                    in_flight.remove(&i);
                }
                if let Some(t) = shutdown_step(state) {
                    if let Ok(seq) = self.send(
                        i,
                        Command::ChangeState {
                            transition: t.name().to_owned(),
                        },
                    ) {
                        in_flight.insert(i, (seq, state, Instant::now()));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(ControlError::Timeout {
                    step: "shutting the devices down".to_owned(),
                    timeout,
                    waiting: live
                        .iter()
                        .map(|&i| {
                            format!("{} ({})", self.devices[i].id, self.devices[i].state_name())
                        })
                        .collect(),
                });
            }
            self.pump(Duration::from_millis(100));
        }
    }

    /// The properties starting with `prefix` of device `i`.
    pub fn properties(
        &mut self,
        i: usize,
        prefix: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, ControlError> {
        let mut r = self.request_all(&[i], "get properties", timeout, |_| {
            Command::GetProperties {
                prefix: prefix.to_owned(),
            }
        })?;
        Ok(r.pop().map(|r| r.properties).unwrap_or_default())
    }

    /// Reads the counters of every device of `set` now.
    pub fn refresh_stats(&mut self, set: &[usize], timeout: Duration) -> Result<(), ControlError> {
        let replies = self.request_all(set, "get stats", timeout, |_| Command::GetStats)?;
        for (&i, r) in set.iter().zip(replies) {
            self.update_stats(i, r.channels);
        }
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for d in &mut self.devices {
            if let Some(w) = d.writer.take() {
                let _ = w.shutdown(Shutdown::Both);
            }
        }
    }
}
