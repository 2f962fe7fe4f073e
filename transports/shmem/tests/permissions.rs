//! Permissions of a session's shared memory (issue 11, item 5): every object the transport and
//! the monitor create is mode 0600 by default (FairMQ's 0644 let every local user read every
//! payload); `shm-group` shares a session with a group (0660, owned by the group), and objects
//! created later by devices that did not ask for it take the session's access too. A cleanup
//! without force never removes another user's session, even as root; with force it does.
//!
//! Each test has its own session; afterwards /dev/shm holds nothing of it.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::TestSession;
use fairmq_shmem::monitor::{cleanup_checked, cleanup_if_dead, MonitorSpawnLock};
use fairmq_shmem::{CleanupScope, Error, MonitorMarker};
use fairmq_transport::{
    create_transport, FactoryPtr, RegionCallback, RegionConfig, TransportConfig,
};

fn factory(session: &str, id: &str, group: Option<u32>) -> FactoryPtr {
    let mut c = TransportConfig::new(id)
        .with("session", session)
        .with("shm-segment-size", 4u64 << 20)
        .with("shm-segment-id", u64::from(id == "b"));
    if let Some(g) = group {
        if id == "a" {
            c = c.with("shm-group", g);
        }
    }
    create_transport("shmem", &c).expect("shmem factory")
}

/// Creates every kind of object a session has: the management segment and a managed segment
/// (`a`), a second managed segment (`b`), a region with its ack queue and its reference-count
/// segment (a copied region message), the monitor marker and the monitor's spawn lock; returns
/// (name, mode, gid) of each object of the session in /dev/shm.
fn populated_session(s: &TestSession, group: Option<u32>) -> Vec<(String, u32, u32)> {
    let a = factory(&s.name, "a", group);
    let b = factory(&s.name, "b", group);
    let region = a
        .new_unmanaged_region(
            RegionConfig {
                rc_segment_size: 1 << 16,
                ..RegionConfig::with_size(1 << 20)
            },
            RegionCallback::single(|_| {}),
        )
        .expect("region");
    let msg = a
        .new_region_message(&region, 0, 100, 0)
        .expect("region message");
    let mut copy = b.new_message();
    copy.copy_from(&*msg)
        .expect("copy (makes the refcount segment)");
    let marker = MonitorMarker::acquire(&s.id).expect("monitor marker");
    let spawn_lock =
        MonitorSpawnLock::acquire(&s.id, std::time::Duration::from_secs(10)).expect("spawn lock");
    let modes = s
        .objects()
        .into_iter()
        .map(|n| {
            let m = std::fs::metadata(Path::new("/dev/shm").join(&n)).unwrap();
            (n, m.mode() & 0o7777, m.gid())
        })
        .collect();
    drop((copy, msg, region, spawn_lock, marker, b, a));
    modes
}

fn assert_kinds(objects: &[(String, u32, u32)], s: &TestSession) {
    let p = |suffix: &str| format!("fmq_{}_{suffix}", s.id.as_str());
    for want in ["mng", "m_0", "rg_", "rgq_", "rrc_", "ms"] {
        assert!(
            objects.iter().any(|(n, _, _)| n.starts_with(&p(want))),
            "no {want} object among {objects:?}"
        );
    }
}

#[test]
fn every_object_of_a_session_is_0600() {
    let s = TestSession::new("perm-private");
    let objects = populated_session(&s, None);
    assert_kinds(&objects, &s);
    for (name, mode, _) in &objects {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
    }
    s.assert_clean();
}

#[test]
fn a_session_shared_with_a_group_is_0660_and_the_groups() {
    let s = TestSession::new("perm-group");
    // nogroup: this user (root) is not a member, root may chown to it anyway.
    let gid = 65534;
    let objects = populated_session(&s, Some(gid));
    assert_kinds(&objects, &s);
    assert!(
        objects.iter().any(|(n, _, _)| n.ends_with("_m_1")),
        "device b (no shm-group of its own) made segment 1: {objects:?}"
    );
    for (name, mode, g) in &objects {
        assert_eq!((*mode, *g), (0o660, gid), "{name} is {mode:o}, group {g}");
    }
    s.assert_clean();
}

#[test]
fn an_unknown_group_is_a_clear_error() {
    let s = TestSession::new("perm-badgroup");
    let err = create_transport(
        "shmem",
        &TransportConfig::new("x")
            .with("session", &s.name)
            .with("shm-group", "fmq-no-such-group"),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("unknown group 'fmq-no-such-group' for --shm-group"),
        "{err}"
    );
    s.assert_clean();
}

#[test]
fn cleanup_refuses_another_users_session_unless_forced() {
    let s = TestSession::new("perm-foreign");
    drop(populated_session_kept(&s));
    let names = s.objects();
    assert!(names.len() >= 2, "{names:?}");
    // Another user's (dead) session: its objects belong to uid 65534.
    for n in &names {
        std::os::unix::fs::chown(Path::new("/dev/shm").join(n), Some(65534), None).unwrap();
    }
    for r in [
        cleanup_checked(&s.id, false, false).map(|_| ()),
        cleanup_if_dead(&s.id, CleanupScope::Full, false).map(|_| ()),
    ] {
        match r {
            Err(Error::ForeignSession { owner, me, .. }) => assert_eq!((owner, me), (65534, 0)),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(s.objects(), names, "nothing was removed");
    let removed = cleanup_checked(&s.id, true, false).expect("forced cleanup");
    assert!(removed.iter().any(|(_, r)| *r));
    s.assert_clean();
}

/// A dead session whose objects stay (`shm-no-cleanup`).
fn populated_session_kept(s: &TestSession) -> FactoryPtr {
    create_transport(
        "shmem",
        &TransportConfig::new("kept")
            .with("session", &s.name)
            .with("shm-segment-size", 4u64 << 20)
            .with("shm-no-cleanup", true),
    )
    .expect("shmem factory")
}
