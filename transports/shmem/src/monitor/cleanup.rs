//! Removing sessions: FairMQ's `Monitor::Cleanup` / `CleanupFull` with their log lines (spec
//! §6.7), the liveness-checked variants, and the removal of every dead session of the current
//! user (`fairmq-shmmonitor --cleanup-dead`).
//!
//! What a cleanup removes, in this order (see [`crate::management::cleanup_session`]): every
//! registered region (`fmq_<id>_rg_<r>`, or the file `<path>fmq_<id>_rg_<r>` of a file-backed
//! region) with its queue `fmq_<id>_rgq_<r>` and reference-count segment `fmq_<id>_rrc_<r>`;
//! every registered managed segment `fmq_<id>_m_<s>`; any other object of the session still in
//! `/dev/shm` (e.g. unregistered segments, temporaries of a creator that died); with
//! [`CleanupScope::Full`] the monitor marker `fmq_<id>_ms` (and C++ FairMQ's
//! `sem.fmq_<id>_ms`); and the management segment `fmq_<id>_mng` last.
//!
//! Each removal is logged as `Successfully removed '<name>'.` (info) or `Did not remove
//! '<name>'. Already removed?` (debug), and returned as `(name, removed)`.

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::ids::{effective_uid, ShmId};
use crate::management::{
    cleanup_session, list_session_objects, list_sessions, remove_session_if_dead, session_status,
    CleanupScope, ManagementSegment, MonitorMarker, SessionStatus,
};
use crate::segment::{Location, SHM_DIR};

/// Objects a cleanup tried to remove, each with whether it was removed.
pub type Removals = Vec<(String, bool)>;

fn log_registry(shm_id: &ShmId) {
    match ManagementSegment::open_observer(shm_id) {
        Ok(m) => {
            let regions = m.regions();
            if !regions.is_empty() {
                tracing::info!("Found {} unmanaged regions...", regions.len());
                for r in &regions {
                    tracing::info!(
                        "Found UnmanagedRegion with id: {}, path: '{}', flags: {}, fDestroyed: {}.",
                        r.id,
                        r.path,
                        r.creation_flags,
                        u8::from(r.destroyed)
                    );
                }
            }
            tracing::info!("Found {} managed segments...", m.segments().len());
        }
        Err(_) => tracing::info!(
            "Did not find '{}' management segment. No regions to cleanup.",
            shm_id.management_name()
        ),
    }
}

/// Logs each removal: `Successfully removed '<name>'.` (info) or `Did not remove '<name>'.
/// Already removed?` (debug).
pub fn log_removals(removals: &[(String, bool)]) {
    for (name, removed) in removals {
        if *removed {
            tracing::info!("Successfully removed '{name}'.");
        } else {
            tracing::debug!("Did not remove '{name}'. Already removed?");
        }
    }
}

fn run(shm_id: &ShmId, scope: CleanupScope, verbose: bool) -> Result<Removals> {
    if verbose {
        tracing::info!("Cleaning up for shared memory id '{shm_id}'...");
        log_registry(shm_id);
    }
    let removed = cleanup_session(shm_id, scope)?;
    if verbose {
        log_removals(&removed);
    }
    Ok(removed)
}

/// FairMQ's `Monitor::Cleanup(ShmId)`: removes every object of the session except the monitor
/// marker, **unconditionally** (processes that still use the session keep their mappings, but
/// the session is split from then on; see [`cleanup_if_dead`]). With `verbose`, logs what it
/// finds and removes.
pub fn cleanup(shm_id: &ShmId, verbose: bool) -> Result<Removals> {
    run(shm_id, CleanupScope::Session, verbose)
}

/// FairMQ's `Monitor::CleanupFull(ShmId)`: [`cleanup`] plus the monitor marker `fmq_<id>_ms`
/// (what `fairmq-shmmonitor --cleanup --force` does).
pub fn cleanup_full(shm_id: &ShmId, verbose: bool) -> Result<Removals> {
    run(shm_id, CleanupScope::Full, verbose)
}

fn translate(session: &str, verbose: bool) -> ShmId {
    let id = ShmId::from_session(session);
    if verbose {
        tracing::info!(
            "Cleanup called with session id '{session}', translating to shared memory id '{id}'"
        );
    }
    id
}

/// [`cleanup`] for session `session` of the effective user (FairMQ's `Cleanup(SessionId)`).
pub fn cleanup_session_id(session: &str, verbose: bool) -> Result<Removals> {
    cleanup(&translate(session, verbose), verbose)
}

/// [`cleanup_full`] for session `session` of the effective user.
pub fn cleanup_full_session_id(session: &str, verbose: bool) -> Result<Removals> {
    cleanup_full(&translate(session, verbose), verbose)
}

/// Refuses a session any of whose objects in `/dev/shm` is owned by another user than the
/// effective one ([`Error::ForeignSession`]): a cleanup without force never removes another
/// user's session, even as root (who could, and whose shmIds differ from the user's only by
/// the uid hashed into them; `--shmid` names any session).
pub fn check_own_session(shm_id: &ShmId) -> Result<()> {
    let me = effective_uid();
    let dir = std::path::Path::new(SHM_DIR);
    for name in list_session_objects(dir, shm_id)? {
        let Ok(meta) = std::fs::symlink_metadata(dir.join(&name)) else {
            continue; // removed meanwhile
        };
        if meta.uid() != me {
            return Err(Error::ForeignSession {
                shm_id: shm_id.to_string(),
                owner: meta.uid(),
                me,
                object: name,
            });
        }
    }
    Ok(())
}

/// Removes the session only if no process holds it open (`flock` liveness), atomically: the
/// removal happens under the exclusive lock, so no device can join meanwhile. `Ok(None)` if the
/// session is alive (nothing is removed). An absent session is "cleaned" too (leftover objects
/// without a management segment are removed). A session of another user is refused
/// ([`check_own_session`]).
pub fn cleanup_if_dead(
    shm_id: &ShmId,
    scope: CleanupScope,
    verbose: bool,
) -> Result<Option<Removals>> {
    check_own_session(shm_id)?;
    if session_status(shm_id)? == SessionStatus::Alive {
        return Ok(None);
    }
    if verbose {
        tracing::info!("Cleaning up for shared memory id '{shm_id}'...");
        log_registry(shm_id);
    }
    let removed = remove_session_if_dead(shm_id, scope)?;
    if verbose {
        match &removed {
            Some(r) => log_removals(r),
            None => tracing::info!(
                "Session with shared memory id '{shm_id}' became alive again, not removing it."
            ),
        }
    }
    Ok(removed)
}

/// `fairmq-shmmonitor --cleanup`: [`cleanup_full`] of a dead or absent session of this user; a
/// live session is refused with [`Error::SessionAlive`], another user's with
/// [`Error::ForeignSession`], unless `force`.
pub fn cleanup_checked(shm_id: &ShmId, force: bool, verbose: bool) -> Result<Removals> {
    if force {
        return cleanup_full(shm_id, verbose);
    }
    match cleanup_if_dead(shm_id, CleanupScope::Full, verbose)? {
        Some(r) => Ok(r),
        None => Err(Error::SessionAlive(shm_id.to_string())),
    }
}

/// What [`cleanup_dead_sessions`] did.
#[derive(Debug, Default)]
pub struct DeadSessionsReport {
    /// Dead sessions of the current user that were removed: shmId, session name (if the
    /// management segment was readable) and the removals.
    pub removed: Vec<(ShmId, Option<String>, Removals)>,
    /// Sessions of the current user that are alive (left untouched).
    pub alive: Vec<ShmId>,
    /// Sessions of other users (left untouched), with the owner's uid.
    pub other_users: Vec<(ShmId, u32)>,
}

/// Removes every **dead** session of the **current user** found in `/dev/shm`, and nothing
/// else (`fairmq-shmmonitor --cleanup-dead`; FairMQ refused to offer this because it could not
/// tell dead from live sessions, FairMQ issue #330).
///
/// A session belongs to the current user if its `fmq_<id>_mng` is owned by the effective uid
/// and (if readable) its stored creator is that uid too. It is dead if no process holds its
/// management segment open; the check and the removal happen under the exclusive `flock`, so a
/// device that joins at that moment either waits and starts a fresh session, or keeps the
/// session alive and it is skipped. The monitor marker is removed too unless a live monitor
/// holds it (that monitor leaves on its own). Only sessions with a management segment are
/// considered.
pub fn cleanup_dead_sessions(verbose: bool) -> Result<DeadSessionsReport> {
    let me = effective_uid();
    let mut report = DeadSessionsReport::default();
    for id in list_sessions(std::path::Path::new(SHM_DIR))? {
        let loc = Location::shm(id.management_name());
        let owner = match std::fs::metadata(loc.fs_path()) {
            Ok(m) => m.uid(),
            Err(_) => continue, // removed meanwhile
        };
        let info = ManagementSegment::open_observer(&id)
            .ok()
            .map(|m| m.session_info());
        let creator = info.as_ref().map(|i| i.creator_euid).unwrap_or(owner);
        if owner != me || creator != me {
            report
                .other_users
                .push((id, if owner != me { owner } else { creator }));
            continue;
        }
        let scope = if MonitorMarker::is_running(&id).unwrap_or(true) {
            CleanupScope::Session
        } else {
            CleanupScope::Full
        };
        match cleanup_if_dead(&id, scope, verbose) {
            Ok(Some(removed)) => report.removed.push((id, info.map(|i| i.session), removed)),
            Ok(None) => report.alive.push(id),
            // Some object of it is another user's.
            Err(Error::ForeignSession { owner, .. }) => report.other_users.push((id, owner)),
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}
