//! Unit tests of the monitor library (in-process sessions; the process tests with real devices
//! and the `fairmq-shmmonitor` binary live in `plugins/shmmonitor/tests`).

use super::*;
use crate::alloc::{AllocationPolicy, ManagedSegment, SegmentOptions};
use crate::management::{RegionInfo, SegmentInfo};
use crate::segment::CreateOptions;
use crate::test_util::{wait_until, TestSession};

fn session_with_segment(s: &TestSession) -> (ManagementSegment, ManagedSegment) {
    let (m, created) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
    assert!(created);
    m.increment_device_counter().unwrap();
    let seg = ManagedSegment::create(
        &s.id,
        0,
        256 * 1024,
        AllocationPolicy::RbTreeBestFit,
        &SegmentOptions::default(),
    )
    .unwrap();
    m.register_segment(&SegmentInfo {
        id: 0,
        policy: AllocationPolicy::RbTreeBestFit,
        size: 256 * 1024,
    })
    .unwrap();
    (m, seg)
}

#[test]
fn describe_queries_and_checked_cleanup() {
    let s = TestSession::new("mon-describe");
    assert_eq!(describe(&s.id).unwrap(), None);
    assert!(!print_shm(&s.id).unwrap());
    let err = free_memory(&s.id, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Could not find management segment for shmid '{}'", s.id)
    );

    let (m, seg) = session_with_segment(&s);
    let a = seg.allocate(1000, 0).unwrap();
    let b = seg.allocate(5000, 0).unwrap();
    m.register_region(&RegionInfo {
        id: 1024,
        size: 8192,
        rc_segment_size: 4096,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    m.register_region(&RegionInfo {
        id: 1025,
        path: format!("{}/", dir.path().display()),
        size: 8192,
        destroyed: true,
        ..Default::default()
    })
    .unwrap();

    let r = describe(&s.id).unwrap().unwrap();
    assert_eq!(r.session, s.session);
    assert_eq!(r.creator_euid, crate::ids::effective_uid());
    assert_eq!(r.devices, 1);
    assert_eq!(r.status, SessionStatus::Alive);
    assert_eq!(r.monitor_pid, None);
    assert_eq!(r.segments.len(), 1);
    let u = r.segments[0].usage.clone().unwrap();
    assert_eq!(u.total, 256 * 1024);
    assert_eq!(u.messages, 2);
    assert_eq!(u.free, seg.free_memory());
    assert_eq!(u.free + u.used, u.total);
    assert!(u.used > 6000, "{u:?}");
    assert_eq!(r.management.total, 6_553_600);
    assert_eq!(r.management.free + r.management.used, r.management.total);
    let text = r.to_text();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "shm id: {}, session: {}, creator id: {}, devices: 1, status: alive, managed segments:",
            s.id, s.session, r.creator_euid
        )
    );
    assert!(
        text.contains(&format!(
            "   [0]: total: 262144, msgs: 2, free: {}, used: {}",
            u.free, u.used
        )),
        "{text}"
    );
    assert!(text.contains("   [m]: total: 6553600, free: "), "{text}");
    assert!(
        text.contains(
            "\n   unmanaged regions:\n      [1024]: alive, size: 8192, rcCountSegment: not found"
        ),
        "{text}"
    );
    assert!(
        text.contains("      [1025]: destroyed, size: 8192"),
        "{text}"
    );

    // Queries.
    assert_eq!(free_memory(&s.id, 0).unwrap(), seg.free_memory());
    assert_eq!(
        free_memory_of_session(&s.session, 0).unwrap(),
        seg.free_memory()
    );
    let err = free_memory(&s.id, 5).unwrap_err();
    assert!(
        matches!(err, Error::UnknownSegment { segment: 5, .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("Could not find segment id '5'"),
        "{err}"
    );
    assert!(segment_is_present(&s.id, 0));
    assert!(!segment_is_present(&s.id, 1));
    assert!(
        !region_is_present(&s.id, 1024),
        "registered, object missing"
    );
    SharedObject::create(
        &Location::shm(s.id.region_name(1024)),
        ObjectKind::Region,
        &CreateOptions::new(2 * HEADER_SIZE),
    )
    .unwrap();
    assert!(region_is_present(&s.id, 1024));
    assert!(region_is_present(&s.id, 1025), "file-backed: registry only");
    assert!(!region_is_present(&s.id, 7));

    // Live messages, from the block chain.
    let live = debug_info(&s.id).unwrap();
    let offsets: Vec<u64> = live[&0].iter().map(|m| m.offset).collect();
    assert_eq!(offsets, vec![a, b]);
    assert!(live[&0][0].size >= 1000 && live[&0][1].size >= 5000);
    assert_eq!(print_debug_info(&s.id).unwrap(), 2);

    // A live session is refused, a dead one removed with every name reported.
    let err = cleanup_checked(&s.id, false, true).unwrap_err();
    assert!(matches!(err, Error::SessionAlive(_)), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        cleanup_if_dead(&s.id, CleanupScope::Full, false).unwrap(),
        None
    );
    assert!(describe(&s.id).unwrap().is_some());
    drop((m, seg));
    assert_eq!(
        describe(&s.id).unwrap().unwrap().status,
        SessionStatus::Dead
    );
    let removed = cleanup_checked(&s.id, false, true).unwrap();
    for name in [
        s.id.region_name(1024),
        s.id.segment_name(0),
        s.id.management_name(),
    ] {
        assert!(
            removed.contains(&(name.clone(), true)),
            "{name}: {removed:?}"
        );
    }
    assert_eq!(removed.last().unwrap().0, s.id.management_name());
    s.assert_clean();
}

#[test]
fn forced_cleanup_removes_a_live_session_and_the_marker() {
    let s = TestSession::new("mon-force");
    let (m, seg) = session_with_segment(&s);
    let marker = MonitorMarker::acquire(&s.id).unwrap();
    assert_eq!(marker_pid(&s.id).unwrap(), Some(std::process::id()));
    let removed = cleanup_checked(&s.id, true, true).unwrap();
    assert!(
        removed.contains(&(s.id.monitor_marker_name(), true)),
        "{removed:?}"
    );
    assert!(
        removed.contains(&(s.id.segment_name(0), true)),
        "{removed:?}"
    );
    // Mappings stay usable after removal.
    let off = seg.allocate(10, 0).unwrap();
    seg.free(off).unwrap();
    drop((m, seg, marker));
    s.assert_clean();
    // Absent: cleanup works and reports the management segment as not removed.
    let removed = cleanup_session_id(&s.session, true).unwrap();
    assert_eq!(removed, vec![(s.id.management_name(), false)]);
}

#[test]
fn one_monitor_per_session() {
    let s = TestSession::new("mon-one");
    let a = Monitor::new(MonitorConfig::new(s.id.clone())).unwrap();
    assert!(monitor_is_running(&s.id));
    let err = Monitor::new(MonitorConfig::new(s.id.clone())).unwrap_err();
    assert!(matches!(err, Error::MonitorRunning(_)), "{err}");
    // View-only monitors do not take the marker.
    let v = Monitor::new(MonitorConfig {
        view_only: true,
        ..MonitorConfig::new(s.id.clone())
    })
    .unwrap();
    drop((a, v));
    assert!(!monitor_is_running(&s.id));
    s.assert_clean();
}

fn spawn_watch(
    cfg: MonitorConfig,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<(Result<MonitorExit>, Instant)>,
) {
    let mut mon = Monitor::new(cfg).unwrap();
    let stop = mon.terminate_flag();
    let t = std::thread::spawn(move || {
        let r = mon.watch();
        (r, Instant::now())
    });
    (stop, t)
}

#[test]
fn watch_never_removes_a_live_session_and_cleans_a_dead_one() {
    let s = TestSession::new("mon-watch");
    let (m, seg) = session_with_segment(&s);
    m.beat().unwrap();
    let timeout = Duration::from_millis(300);
    let (_stop, t) = spawn_watch(MonitorConfig {
        self_destruct: true,
        timeout,
        ..MonitorConfig::new(s.id.clone())
    });
    // No heartbeats for several timeouts, but the session is held open: it stays.
    let held = Instant::now();
    while held.elapsed() < 4 * timeout {
        assert!(describe(&s.id).unwrap().is_some());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!t.is_finished());
    // The last holder goes away (as if killed: no cleanup of its own): removed, then exit.
    drop((m, seg));
    let dead_at = Instant::now();
    let (exit, ended) = t.join().unwrap();
    assert_eq!(
        exit.unwrap(),
        MonitorExit::SelfDestructed(SelfDestruct::CleanedByMonitor)
    );
    let took = ended.duration_since(dead_at);
    assert!(took < Duration::from_secs(10), "{took:?}");
    s.assert_clean();
}

#[test]
fn watch_self_destructs_when_nothing_appears_or_the_devices_clean_up() {
    let s = TestSession::new("mon-never");
    let (_stop, t) = spawn_watch(MonitorConfig {
        self_destruct: true,
        timeout: Duration::from_millis(100),
        ..MonitorConfig::new(s.id.clone())
    });
    let (exit, _) = t.join().unwrap();
    assert_eq!(
        exit.unwrap(),
        MonitorExit::SelfDestructed(SelfDestruct::NeverObserved)
    );
    s.assert_clean();

    // Observed, then removed by its last participant: orderly.
    let (m, _) = ManagementSegment::open_or_create(&s.id, &s.session).unwrap();
    let (_stop, t) = spawn_watch(MonitorConfig {
        self_destruct: true,
        timeout: Duration::from_secs(60),
        ..MonitorConfig::new(s.id.clone())
    });
    wait_until(Duration::from_secs(30), || monitor_is_running(&s.id));
    // Give the monitor a look at the session before it goes.
    std::thread::sleep(3 * WATCH_TICK);
    m.try_remove_if_last().unwrap();
    let (exit, _) = t.join().unwrap();
    assert_eq!(
        exit.unwrap(),
        MonitorExit::SelfDestructed(SelfDestruct::CleanedOrderly)
    );
    s.assert_clean();
}

#[test]
fn watch_ends_on_the_terminate_flag_and_cleans_on_exit_only_when_dead() {
    let s = TestSession::new("mon-term");
    let (m, seg) = session_with_segment(&s);
    let (stop, t) = spawn_watch(MonitorConfig {
        clean_on_exit: true,
        ..MonitorConfig::new(s.id.clone())
    });
    wait_until(Duration::from_secs(30), || monitor_is_running(&s.id));
    stop.store(true, Ordering::Relaxed);
    let (exit, _) = t.join().unwrap();
    assert_eq!(exit.unwrap(), MonitorExit::Terminated(None));
    // Alive at exit: clean-on-exit left it alone.
    assert!(describe(&s.id).unwrap().is_some());
    assert!(!monitor_is_running(&s.id));
    drop((m, seg));
    let mon = Monitor::new(MonitorConfig {
        clean_on_exit: true,
        ..MonitorConfig::new(s.id.clone())
    })
    .unwrap();
    drop(mon);
    s.assert_clean();
}

#[test]
fn spawn_lock_is_exclusive_and_leaves_nothing() {
    let s = TestSession::new("mon-spawnlock");
    let lock = MonitorSpawnLock::acquire(&s.id, Duration::from_secs(30)).unwrap();
    assert!(MonitorSpawnLock::path(&s.id).exists());
    let err = MonitorSpawnLock::acquire(&s.id, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, Error::Lock { .. }), "{err}");
    // A waiter gets it once the holder leaves (the holder removed the file; the waiter
    // notices and locks a fresh one).
    let id = s.id.clone();
    let inside = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let id = id.clone();
            let inside = inside.clone();
            std::thread::spawn(move || {
                let _l = MonitorSpawnLock::acquire(&id, Duration::from_secs(30)).unwrap();
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                std::thread::sleep(Duration::from_millis(5));
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    drop(lock);
    for w in waiters {
        w.join().unwrap();
    }
    s.assert_clean();
    // A leftover lock file is part of the session: cleanup removes it.
    std::fs::write(MonitorSpawnLock::path(&s.id), b"").unwrap();
    let removed = cleanup(&s.id, false).unwrap();
    assert!(
        removed.contains(&(format!("fmq_{}_ms.lock", s.id), true)),
        "{removed:?}"
    );
    s.assert_clean();
}
