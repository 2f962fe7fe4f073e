//! The shared-memory monitor library: everything `fairmq-shmmonitor` does, usable without a
//! device (FairMQ's `Monitor` class, spec §6; "integration on any level").
//!
//! * Cleanup ([`cleanup`], [`cleanup_full`], by session id [`cleanup_session_id`],
//!   [`cleanup_full_session_id`]; liveness-checked [`cleanup_if_dead`], [`cleanup_checked`];
//!   every dead session of the user [`cleanup_dead_sessions`]): regions with their queues and
//!   reference-count segments, file-backed regions, managed segments, the management segment,
//!   and with the full variant the `_ms` marker. Each removal is logged as in spec §6.7 and
//!   returned as `(name, removed)`.
//! * Queries: [`free_memory`] of a segment (errors as spec §6.7), [`segment_is_present`],
//!   [`region_is_present`], [`monitor_is_running`], [`marker_pid`].
//! * Descriptions: [`describe`] (a [`SessionReport`], whose [`SessionReport::to_text`] is
//!   FairMQ's `PrintShm`), [`print_shm`], [`list_all`] / [`print_list_all`] for every session
//!   of a directory with its liveness, [`debug_info`] / [`print_debug_info`] for live messages.
//! * The running monitor [`Monitor`]: [`Monitor::watch`] (heartbeat sampling every 200 ms,
//!   timeout cleanup, self-destruct, spec §6.4) and [`Monitor::interactive`] (keys x, b, h, q,
//!   spec §6.5), guarded by the session's `_ms` marker so that only one monitor watches a
//!   session.
//! * [`daemonize`] for `--daemonize`, and [`MonitorSpawnLock`], which devices hold around
//!   "is a monitor running? if not, start one" so that devices starting together start one.
//!
//! # Where this differs from FairMQ
//!
//! Sessions carry a `flock` liveness (see [`crate::management`]): every process that maps a
//! session holds a shared lock on its management segment. The monitor uses it so that it never
//! removes memory under a live process: the heartbeat-timeout cleanup of [`Monitor::watch`]
//! only removes a session that has **also** no lock holder (a stopped or slow device keeps its
//! session), and [`cleanup_checked`] refuses a live session unless forced. Because the lock
//! proves a session dead, the timeout also runs for sessions whose devices never sent a
//! heartbeat (from the moment the monitor first saw the session). Log lines go through
//! `tracing` at info level (FairMQ's texts), debug for "Did not remove".

mod cleanup;
mod daemon;
mod describe;
mod spawn_lock;
mod terminal;

pub use cleanup::{
    check_own_session, cleanup, cleanup_checked, cleanup_dead_sessions, cleanup_full,
    cleanup_full_session_id, cleanup_if_dead, cleanup_session_id, log_removals, DeadSessionsReport,
    Removals,
};
pub use daemon::{daemonize, Daemonized};
pub use describe::{
    debug_info, describe, free_memory, free_memory_of_session, list_all, monitor_is_running,
    print_debug_info, print_list_all, print_shm, region_is_present, segment_is_present,
    ListAllReport, LiveMessage, ManagementUsage, RcSegmentUsage, RegionReport, SegmentReport,
    SegmentUsage, SessionReport,
};
pub use spawn_lock::MonitorSpawnLock;
pub use terminal::{wait_for_input, Input, RawTerminal};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ids::ShmId;
use crate::management::{
    session_status, CleanupScope, ManagementSegment, MonitorMarker, SessionStatus,
};
use crate::segment::{Location, ObjectKind, OpenOptions, SharedObject, HEADER_SIZE};

/// Default heartbeat timeout of `fairmq-shmmonitor` (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);
/// Heartbeat timeout used by the monitors that devices spawn (`--shm-monitor true`).
pub const DEVICE_SPAWNED_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default refresh interval of the interactive mode (`--interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// How often the watch loop looks at the session.
pub const WATCH_TICK: Duration = Duration::from_millis(100);
/// How often the heartbeat counter is sampled.
pub const HEARTBEAT_SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// The help line of the interactive mode.
pub const INTERACTIVE_HELP: &str =
    "controls: [x] close memory, [b] print a list of allocated messages, [h] help, [q] quit.";

/// The pid of the monitor that holds the `_ms` marker of `shm_id`; `None` if no live monitor
/// holds it.
pub fn marker_pid(shm_id: &ShmId) -> Result<Option<u32>> {
    if !MonitorMarker::is_running(shm_id)? {
        return Ok(None);
    }
    let loc = Location::shm(shm_id.monitor_marker_name());
    let opts = OpenOptions {
        read_only: true,
        ..OpenOptions::default()
    };
    let obj = match SharedObject::open(&loc, ObjectKind::MonitorMarker, &opts) {
        Ok(o) => o,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let pid = obj.atomic_u64(HEADER_SIZE).load(Ordering::Acquire) as u32;
    Ok((pid != 0).then_some(pid))
}

/// Settings of a [`Monitor`] (FairMQ's `Monitor` constructor arguments).
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The session watched.
    pub shm_id: ShmId,
    /// Exit once the session was observed and then removed, or if none appears (`-x`).
    pub self_destruct: bool,
    /// View-only: no `_ms` marker, no cleanup (`-v`).
    pub view_only: bool,
    /// Heartbeat timeout (`-t`).
    pub timeout: Duration,
    /// Refresh interval of the interactive mode (`--interval`).
    pub interval: Duration,
    /// Clean the session up when the monitor ends (`-e`).
    pub clean_on_exit: bool,
    /// Allow removing a session that processes still hold open (`--force`): for the
    /// interactive `x` key and `clean_on_exit`.
    pub force: bool,
}

impl MonitorConfig {
    /// Defaults for `shm_id`: not self-destructing, not view-only, timeout 5000 ms,
    /// interval 1000 ms, no cleanup on exit, not forced.
    pub fn new(shm_id: ShmId) -> MonitorConfig {
        MonitorConfig {
            shm_id,
            self_destruct: false,
            view_only: false,
            timeout: DEFAULT_TIMEOUT,
            interval: DEFAULT_INTERVAL,
            clean_on_exit: false,
            force: false,
        }
    }
}

/// Why [`Monitor::watch`] self-destructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfDestruct {
    /// The monitor removed the session after the heartbeat timeout.
    CleanedByMonitor,
    /// The session was observed, then removed by its devices.
    CleanedOrderly,
    /// No session appeared within `2 × timeout` of the start.
    NeverObserved,
}

/// How a [`Monitor`] run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorExit {
    /// A signal (its number) or [`Monitor::terminate_flag`] ended it.
    Terminated(Option<i32>),
    /// The `q` key.
    Quit,
    /// Standard input ended in interactive mode.
    InputClosed,
    /// Self-destruct (`-x`).
    SelfDestructed(SelfDestruct),
}

/// A running monitor of one session (FairMQ's embeddable `Monitor`).
///
/// Unless view-only, [`Monitor::new`] takes the session's `_ms` marker; a second monitor of the
/// same session fails with [`Error::MonitorRunning`] (FairMQ's `DaemonPresent`). The marker is
/// released (and removed) when the monitor is dropped, after the optional cleanup on exit.
pub struct Monitor {
    cfg: MonitorConfig,
    marker: Option<MonitorMarker>,
    terminate: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("cfg", &self.cfg)
            .field("holds_marker", &self.marker.is_some())
            .finish()
    }
}

impl Monitor {
    /// Creates the monitor; takes the `_ms` marker unless view-only.
    pub fn new(cfg: MonitorConfig) -> Result<Monitor> {
        let marker = if cfg.view_only {
            None
        } else {
            Some(MonitorMarker::acquire(&cfg.shm_id)?)
        };
        Ok(Monitor {
            cfg,
            marker,
            terminate: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// Setting this flag ends [`Monitor::watch`] / [`Monitor::interactive`] within 100 ms.
    pub fn terminate_flag(&self) -> Arc<AtomicBool> {
        self.terminate.clone()
    }

    /// Ends the run on SIGINT and SIGTERM (logging `signal: <n>`), FairMQ's `CatchSignals`.
    pub fn catch_signals(&self) -> Result<()> {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_usize(sig, self.signal.clone(), sig as usize)
                .map_err(|e| Error::io("sigaction", "SIGINT/SIGTERM", e))?;
        }
        Ok(())
    }

    fn terminated(&self) -> Option<MonitorExit> {
        let sig = self.signal.load(Ordering::Relaxed);
        if sig != 0 {
            tracing::info!("signal: {sig}");
            return Some(MonitorExit::Terminated(Some(sig as i32)));
        }
        if self.terminate.load(Ordering::Relaxed) {
            return Some(MonitorExit::Terminated(None));
        }
        None
    }

    /// Runs the interactive mode if `interactive`, else the watch loop.
    pub fn run(&mut self, interactive: bool) -> Result<MonitorExit> {
        if interactive {
            self.interactive()
        } else {
            self.watch()
        }
    }

    /// The monitoring loop (spec §6.4), until terminated or self-destructed:
    ///
    /// * every 200 ms the Heartbeat counter of the management segment is sampled;
    /// * every 100 ms: if the session exists and its heartbeat has not changed for more than
    ///   the timeout (counted from the last change, or from when the monitor first saw the
    ///   session), it is removed **if no process holds it open** (`no heartbeats since over
    ///   <timeout> milliseconds, cleaning...`); a session that processes still hold open is
    ///   left alone (logged once). With self-destruct the monitor then exits.
    /// * with self-destruct and no session: exit if the session had been observed (its devices
    ///   removed it), or, if none appeared within `2 × timeout`, clean leftovers and exit.
    ///
    /// A view-only monitor only watches (no cleanup).
    pub fn watch(&mut self) -> Result<MonitorExit> {
        let id = self.cfg.shm_id.clone();
        let timeout = self.cfg.timeout;
        let start = Instant::now();
        let mut seen_once = false;
        let mut last_activity: Option<Instant> = None;
        let mut last_beat: Option<u64> = None;
        let mut last_sample: Option<Instant> = None;
        let mut warned_alive = false;
        loop {
            if let Some(exit) = self.terminated() {
                return Ok(exit);
            }
            let now = Instant::now();
            let status = session_status(&id)?;
            if status != SessionStatus::Absent {
                seen_once = true;
                if last_activity.is_none() {
                    tracing::debug!(
                        "observing the session with shm id {id} ({})",
                        status.as_str()
                    );
                    last_activity = Some(now);
                }
                if last_sample.is_none_or(|t| now.duration_since(t) >= HEARTBEAT_SAMPLE_INTERVAL) {
                    last_sample = Some(now);
                    if let Ok(m) = ManagementSegment::open_observer(&id) {
                        let beat = m.heartbeat_counter();
                        if last_beat != Some(beat) {
                            last_beat = Some(beat);
                            last_activity = Some(now);
                            warned_alive = false;
                        }
                    }
                }
                let idle = last_activity.map_or(Duration::ZERO, |t| now.duration_since(t));
                if idle > timeout && !self.cfg.view_only {
                    if status == SessionStatus::Alive {
                        if !warned_alive {
                            tracing::info!(
                                "no heartbeats since over {} milliseconds, but processes still hold the session open (stopped or slow devices?); not cleaning up",
                                timeout.as_millis()
                            );
                            warned_alive = true;
                        }
                    } else {
                        tracing::info!(
                            "no heartbeats since over {} milliseconds, cleaning...",
                            timeout.as_millis()
                        );
                        match cleanup_if_dead(&id, CleanupScope::Session, true)? {
                            Some(_) => {
                                last_activity = None;
                                last_beat = None;
                                if self.cfg.self_destruct {
                                    tracing::info!("self destructing (segment has been observed and cleaned up by the monitor)");
                                    return Ok(MonitorExit::SelfDestructed(
                                        SelfDestruct::CleanedByMonitor,
                                    ));
                                }
                            }
                            None => last_activity = Some(now),
                        }
                    }
                }
            } else {
                last_activity = None;
                last_beat = None;
                warned_alive = false;
                if self.cfg.self_destruct {
                    if seen_once {
                        tracing::info!(
                            "self destructing (segment has been observed and cleaned up orderly)"
                        );
                        return Ok(MonitorExit::SelfDestructed(SelfDestruct::CleanedOrderly));
                    }
                    if now.duration_since(start) > 2 * timeout {
                        if !self.cfg.view_only {
                            cleanup_if_dead(&id, CleanupScope::Session, false)?;
                        }
                        tracing::info!(
                            "self destructing (no segments observed within (timeout * 2) since start)"
                        );
                        return Ok(MonitorExit::SelfDestructed(SelfDestruct::NeverObserved));
                    }
                }
            }
            std::thread::sleep(WATCH_TICK);
        }
    }

    fn print_session(&self) {
        match print_shm(&self.cfg.shm_id) {
            Ok(true) => {}
            Ok(false) => tracing::info!("No segments found."),
            Err(e) => tracing::info!("could not describe shmid '{}': {e}", self.cfg.shm_id),
        }
    }

    fn close_memory(&self) {
        tracing::info!("[x] --> closing shared memory:");
        if self.cfg.view_only {
            tracing::info!("cannot close because in view only mode");
            return;
        }
        let r = if self.cfg.force {
            cleanup(&self.cfg.shm_id, true).map(Some)
        } else {
            cleanup_if_dead(&self.cfg.shm_id, CleanupScope::Session, true)
        };
        match r {
            Ok(Some(_)) => {}
            Ok(None) => tracing::info!(
                "not closing: processes still hold the session open (start the monitor with --force to close a live session)"
            ),
            Err(e) => tracing::info!("cleanup failed: {e}"),
        }
    }

    /// Handles one key; `Some` ends the interactive mode.
    fn key(&self, c: u8) -> Option<MonitorExit> {
        match c {
            b'q' => {
                tracing::info!("[q] --> quitting.");
                return Some(MonitorExit::Quit);
            }
            b'x' => self.close_memory(),
            b'h' => {
                tracing::info!("[h] --> help:");
                tracing::info!("{INTERACTIVE_HELP}");
            }
            b'b' => {
                tracing::info!("[b] --> allocated messages:");
                if let Err(e) = print_debug_info(&self.cfg.shm_id) {
                    tracing::info!("{e}");
                }
            }
            b'\n' => tracing::info!("[\\n] --> invalid input."),
            c => tracing::info!("[{}] --> invalid input.", char::from(c).escape_default()),
        }
        None
    }

    /// The interactive mode (spec §6.5): standard input in raw mode (if it is a terminal; a
    /// pipe is read as it is), the help line, then until `q`, a signal or the end of input:
    /// wait up to the interval for keys, handle them (`x` close memory, `b` list messages, `h`
    /// help, `q` quit; anything else is `invalid input`), print the session. No timeout
    /// cleanup.
    pub fn interactive(&mut self) -> Result<MonitorExit> {
        let _raw = RawTerminal::enable();
        tracing::info!("{INTERACTIVE_HELP}");
        loop {
            let deadline = Instant::now() + self.cfg.interval;
            loop {
                if let Some(exit) = self.terminated() {
                    return Ok(exit);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match wait_for_input(left.min(WATCH_TICK))
                    .map_err(|e| Error::io("read", "standard input", e))?
                {
                    Input::Timeout => {}
                    Input::Eof => {
                        tracing::info!("[EOF] --> standard input closed, quitting.");
                        return Ok(MonitorExit::InputClosed);
                    }
                    Input::Bytes(bytes) => {
                        for c in bytes {
                            if let Some(exit) = self.key(c) {
                                return Ok(exit);
                            }
                        }
                        break;
                    }
                }
            }
            self.print_session();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.cfg.clean_on_exit && !self.cfg.view_only {
            let r = if self.cfg.force {
                cleanup(&self.cfg.shm_id, true).map(Some)
            } else {
                cleanup_if_dead(&self.cfg.shm_id, CleanupScope::Session, true)
            };
            match r {
                Ok(Some(_)) => {}
                Ok(None) => tracing::info!(
                    "not cleaning up on exit: processes still hold the session open (use --force)"
                ),
                Err(e) => tracing::info!("cleanup on exit failed: {e}"),
            }
        }
        // The marker is released (and its name removed) when `self.marker` drops.
        drop(self.marker.take());
    }
}

#[cfg(test)]
mod tests;
