//! The `shmmonitor` plugin: makes sure that exactly one `fairmq-shmmonitor` daemon watches the
//! device's shared-memory session (spec §6.8), so that the session is removed if all its
//! devices crash.
//!
//! Loaded
//! * automatically by `--shm-monitor true` (the runtime loads it prelinked if the executable
//!   links this crate, as the built-in devices do, else dynamically);
//! * with `-P shmmonitor` (dynamic: `libfairmq_plugin_shmmonitor.so` from the `-S` search path
//!   or the executable's directory) or `-P p:shmmonitor` (prelinked).
//!
//! Each time the device enters INITIALIZING DEVICE (before its transports are created, where
//! FairMQ's shmem transport does the same) it determines the session's shmId (`--shmid`, else
//! `--session` with the effective uid) and calls [`ensure_monitor`]: under the session's
//! [`MonitorSpawnLock`](fairmq_shmem::monitor::MonitorSpawnLock), if no live monitor holds the
//! `_ms` marker, it starts `fairmq-shmmonitor -x -m --shmid <id> -d -t 2000` (plus `--verbose`
//! if `FAIRMQ_SHMMONITOR_VERBOSE` is `true`), found next to the executable, in `$FAIRMQ_PATH`,
//! then in `$PATH`, and waits until the daemon holds the marker. Devices that start together
//! therefore start one daemon; the others find it. The daemon outlives the devices: when they
//! leave orderly it exits, when they all die (no heartbeat for 2 s and no process holding the
//! session open) it removes the session and exits.
//!
//! Not finding `fairmq-shmmonitor` is a warning (the device runs without a monitor, as in
//! FairMQ); a monitor that does not answer within 10 s is an error (the device goes to ERROR).
//! The plugin adds no options and does nothing else while the device runs. Doing this at
//! INITIALIZING DEVICE rather than when the plugin is loaded matters for devices that wait in
//! IDLE for an external controller: a daemon started too early would leave before the session
//! exists (it self-destructs if no session appears within twice its timeout).
//!
//! The binary `fairmq-shmmonitor` of this package is the monitor itself (see its `--help`).

#![warn(missing_docs)]

pub mod spawn;

pub use spawn::{ensure_monitor, find_monitor_executable, MonitorStatus, SpawnError};

use fairmq::plugin::{Plugin, PluginRegistration, PluginServices, PluginVersion};
use fairmq::{HookResult, State, Transition};
use fairmq_shmem::ShmId;

/// The plugin's registration.
pub static SHMMONITOR: PluginRegistration = PluginRegistration {
    name: "shmmonitor",
    version: PluginVersion {
        major: 0,
        minor: 1,
        patch: 0,
    },
    maintainer: "fairmq-rs",
    homepage: "https://example.invalid/fairmq-rs",
    options: None,
    create,
};

fairmq::register_plugin!(SHMMONITOR);
fairmq::declare_dynamic_plugin!("shmmonitor", SHMMONITOR);

struct ShmMonitorPlugin {
    services: PluginServices,
}

impl Plugin for ShmMonitorPlugin {}

impl Drop for ShmMonitorPlugin {
    fn drop(&mut self) {
        self.services.unsubscribe_from_device_state_change();
    }
}

/// The session's shmId from the device's properties: `--shmid N` (decimal, as for devices),
/// else `--session` (default `default`) with the effective uid.
pub fn shm_id_of(services: &PluginServices) -> HookResult<ShmId> {
    if services.property_exists("shmid") {
        if let Ok(n) = services.get_property::<u64>("shmid") {
            return Ok(ShmId::from_number(n));
        }
    }
    let session: String = services.get_property_or("session", "default".to_owned())?;
    Ok(ShmId::from_session(&session))
}

fn ensure(services: &PluginServices) -> HookResult<()> {
    let shm_id = shm_id_of(services)?;
    match ensure_monitor(&shm_id)? {
        MonitorStatus::Found { pid } => tracing::info!(
            "Found fairmq-shmmonitor for shared memory id {shm_id} (pid {pid})"
        ),
        MonitorStatus::Started { pid, executable } => tracing::info!(
            "Started fairmq-shmmonitor for shared memory id {shm_id} (pid {pid}, {})",
            executable.display()
        ),
        MonitorStatus::NotFound { searched } => tracing::warn!(
            "could not find fairmq-shmmonitor in \"{searched}\"; running without a shared memory monitor"
        ),
    }
    Ok(())
}

fn create(services: PluginServices) -> HookResult<Box<dyn Plugin>> {
    let s = services.clone();
    services.subscribe_to_device_state_change(move |state| {
        if state != State::InitializingDevice {
            return;
        }
        if let Err(e) = ensure(&s) {
            tracing::error!("shmmonitor plugin: {e}");
            let _ = s.change_device_state(Transition::ErrorFound);
        }
    });
    Ok(Box::new(ShmMonitorPlugin { services }))
}
