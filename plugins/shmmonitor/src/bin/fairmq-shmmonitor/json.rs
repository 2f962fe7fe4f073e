//! `--output json`: the structured session reports as JSON documents.

use fairmq_shmem::monitor::{ListAllReport, SessionReport};
use fairmq_shmem::ShmId;
use serde_json::{json, Value};

/// One session.
pub fn session(r: &SessionReport) -> Value {
    let segments: Vec<Value> = r
        .segments
        .iter()
        .map(|s| match &s.usage {
            Ok(u) => json!({
                "id": s.id,
                "allocation": s.policy.as_str(),
                "total": u.total,
                "free": u.free,
                "used": u.used,
                "messages": u.messages,
            }),
            Err(e) => json!({
                "id": s.id,
                "allocation": s.policy.as_str(),
                "total": s.registered_size,
                "error": e,
            }),
        })
        .collect();
    let regions: Vec<Value> = r
        .regions
        .iter()
        .map(|g| {
            json!({
                "id": g.info.id,
                "destroyed": g.info.destroyed,
                "size": g.info.size,
                "path": g.info.path,
                "creation_flags": g.info.creation_flags,
                "user_flags": g.info.user_flags,
                "rc_segment_size": g.info.rc_segment_size,
                "rc_segment": g.rc_segment.map(|rc| json!({
                    "size": rc.size, "free": rc.free, "used": rc.used
                })),
            })
        })
        .collect();
    json!({
        "shm_id": r.shm_id.as_str(),
        "session": r.session,
        "creator_euid": r.creator_euid,
        "owner_uid": r.owner_uid,
        "status": r.status.as_str(),
        "devices": r.devices,
        "heartbeat": r.heartbeat,
        "events": r.events,
        "monitor_pid": r.monitor_pid,
        "management": {
            "total": r.management.total,
            "free": r.management.free,
            "used": r.management.used,
        },
        "segments": segments,
        "regions": regions,
    })
}

/// `--view`: the session, or `{"shm_id": .., "status": "absent"}`.
pub fn view(shm_id: &ShmId, r: Option<&SessionReport>) -> Value {
    match r {
        Some(r) => session(r),
        None => json!({ "shm_id": shm_id.as_str(), "status": "absent" }),
    }
}

/// `--list-all`.
pub fn list_all(r: &ListAllReport) -> Value {
    let mut sessions = Vec::new();
    let mut unreadable = Vec::new();
    for (id, s) in &r.sessions {
        match s {
            Ok(Some(s)) => sessions.push(session(s)),
            Ok(None) => unreadable.push(json!({
                "shm_id": id.as_str(),
                "error": format!("could not open file for shmid '{id}'"),
            })),
            Err(e) => unreadable.push(json!({ "shm_id": id.as_str(), "error": e.to_string() })),
        }
    }
    json!({
        "path": r.dir,
        "sessions": sessions,
        "unreadable": unreadable,
        "other_fairmq_files": r.other_fairmq_files,
    })
}
