//! Multi-process robustness tests of the shared-memory layer.
//!
//! Child processes are this test binary re-executed with `--exact child_process_entry` and the
//! mode in `FMQ_SHMEM_TEST_CHILD`; in a normal run `child_process_entry` does nothing.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{env_str, env_u64, kill_child, spawn_child, wait_child, wait_until, Rng, TestSession};
use fairmq_shmem::management::{RemovalOutcome, SessionStatus};
use fairmq_shmem::segment::CreateOptions;
use fairmq_shmem::sync::testing::{crash_after_stores, store_count};
use fairmq_shmem::{
    remove_session_if_dead, session_is_alive, session_status, AllocationPolicy, CleanupScope,
    Error, Location, ManagedSegment, ManagementSegment, ObjectKind, RegionInfo, SegmentInfo,
    SegmentOptions, SharedObject, ShmId,
};

const ENTRY: &str = "child_process_entry";
const LONG: Duration = Duration::from_secs(60);

/// Dispatches child modes; a no-op in normal test runs.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(common::CHILD_ENV) else {
        return;
    };
    common::die_with_parent();
    let code = match mode.as_str() {
        "alloc-loop" => child_alloc_loop(),
        "crash-op" => child_crash_op(),
        "crash-repair" => child_crash_repair(),
        "crash-register" => child_crash_register(),
        "hold-session" => child_hold_session(),
        "blocking-alloc" => child_blocking_alloc(),
        "nospace" => child_nospace(),
        other => {
            eprintln!("unknown child mode {other}");
            2
        }
    };
    std::process::exit(code);
}

fn open_segment() -> ManagedSegment {
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    ManagedSegment::open(&id, env_u64("FMQ_T_SEG") as u16, &SegmentOptions::default()).unwrap()
}

/// The shared 64-bit word at `off` in `seg`.
fn word(seg: &ManagedSegment, off: u64) -> &AtomicU64 {
    let p = seg.ptr(off, 8).unwrap();
    assert_eq!(p as usize % 8, 0);
    // SAFETY: `ptr` checked that the 8 bytes lie inside the mapping, which lives as long as
    // `seg`; the address is 8-aligned; every bit pattern is a valid AtomicU64 and atomics are
    // sound across processes.
    unsafe { &*(p as *const AtomicU64) }
}

// ---------------------------------------------------------------------------------------------
// The kill test
// ---------------------------------------------------------------------------------------------

const ENTRIES: u64 = 16;
const SLOT_WORDS: u64 = 24;
const W_ITER: u64 = 0;
const W_PENDING_ALLOC: u64 = 1;
const W_PENDING_FREE: u64 = 2;
const W_DONE: u64 = 3;
const W_ENTRIES: u64 = 4;

fn slot_word(ctrl: u64, slot: u64, w: u64) -> u64 {
    ctrl + 64 + (slot * SLOT_WORDS + w) * 8
}

fn tag(slot: u64, off: u64) -> u64 {
    0x5EED_0000_0000_0000 ^ (slot << 40) ^ off
}

/// The positions of a block's two tag words.
fn tag_offsets(off: u64, size: u64) -> [u64; 2] {
    [off, off + ((size - 8) & !7)]
}

/// Tight allocate/free loop; records its live blocks in its slot of the control block.
fn child_alloc_loop() -> i32 {
    let seg = open_segment();
    let ctrl = env_u64("FMQ_T_CTRL");
    let slot = env_u64("FMQ_T_SLOT");
    let mut rng = Rng::new(env_u64("FMQ_T_SEED"));
    let never = AtomicBool::new(false);
    let w = |i: u64| word(&seg, slot_word(ctrl, slot, i));
    let mut sizes = [0u64; ENTRIES as usize];
    loop {
        if word(&seg, ctrl).load(Ordering::Acquire) != 0 {
            for i in 0..ENTRIES {
                let off = w(W_ENTRIES + i).swap(0, Ordering::AcqRel);
                if off != 0 {
                    seg.free(off).unwrap();
                }
            }
            w(W_DONE).store(1, Ordering::Release);
            return 0;
        }
        let i = rng.below(ENTRIES);
        let off = w(W_ENTRIES + i).load(Ordering::Acquire);
        if off == 0 {
            let size = 16 + rng.below(2048);
            let align = [0, 0, 0, 64, 256][rng.below(5) as usize];
            w(W_PENDING_ALLOC).store(1, Ordering::Release);
            let r = if rng.below(4) == 0 {
                seg.allocate_blocking(size, align, Some(Duration::from_millis(20)), &never)
            } else {
                seg.allocate(size, align)
            };
            match r {
                Ok(off) => {
                    for t in tag_offsets(off, size) {
                        word(&seg, t).store(tag(slot, off), Ordering::Relaxed);
                    }
                    sizes[i as usize] = size;
                    w(W_ENTRIES + i).store(off, Ordering::Release);
                }
                Err(Error::OutOfMemory { .. } | Error::Timeout { .. }) => {}
                Err(e) => {
                    eprintln!("child {slot}: allocate failed: {e}");
                    return 3;
                }
            }
            w(W_PENDING_ALLOC).store(0, Ordering::Release);
        } else {
            for t in tag_offsets(off, sizes[i as usize]) {
                if word(&seg, t).load(Ordering::Relaxed) != tag(slot, off) {
                    eprintln!("child {slot}: block {off} was overwritten by someone else");
                    return 5;
                }
            }
            w(W_PENDING_FREE).store(off, Ordering::Release);
            w(W_ENTRIES + i).store(0, Ordering::Release);
            if let Err(e) = seg.free(off) {
                eprintln!("child {slot}: free failed: {e}");
                return 4;
            }
            w(W_PENDING_FREE).store(0, Ordering::Release);
        }
        w(W_ITER).fetch_add(1, Ordering::AcqRel);
    }
}

struct Running {
    child: Child,
    slot: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a child that stopped making progress is doing (for the failure message).
fn diagnose(pid: u32) -> String {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
    let stat = read("stat");
    let state = stat.split(' ').nth(2).unwrap_or("?").to_owned();
    format!(
        "pid {pid}: state {state}, wchan {}, syscall {}",
        read("wchan"),
        read("syscall").trim()
    )
}

fn kill_test(policy: AllocationPolicy, kills: u64, concurrent: u64) {
    let s = TestSession::new("kill");
    let seg =
        ManagedSegment::create(&s.id, 0, 8 << 20, policy, &SegmentOptions::default()).unwrap();
    let pristine = seg.verify().unwrap();
    let slots = kills + concurrent;
    let ctrl = seg.allocate(64 + slots * SLOT_WORDS * 8, 64).unwrap();
    for i in 0..(8 + slots * SLOT_WORDS) {
        word(&seg, ctrl + i * 8).store(0, Ordering::Relaxed);
    }
    let iters = |slot: u64| word(&seg, slot_word(ctrl, slot, W_ITER)).load(Ordering::Acquire);
    let mut rng = Rng::new(0xC0FFEE ^ policy as u64);
    let mut next_slot = 0;
    let spawn = |next_slot: &mut u64, rng: &mut Rng| {
        let slot = *next_slot;
        *next_slot += 1;
        let child = spawn_child(
            ENTRY,
            "alloc-loop",
            &[
                ("FMQ_T_SHMID", s.id.to_string()),
                ("FMQ_T_SEG", "0".into()),
                ("FMQ_T_CTRL", ctrl.to_string()),
                ("FMQ_T_SLOT", slot.to_string()),
                ("FMQ_T_SEED", rng.next_u64().to_string()),
            ],
        );
        Running { child, slot }
    };
    let mut running: Vec<Running> = (0..concurrent)
        .map(|_| spawn(&mut next_slot, &mut rng))
        .collect();
    for r in &running {
        wait_until(LONG, "a child to start allocating", || iters(r.slot) > 0);
    }
    let mut killed = Vec::new();
    let mut min_progress = u64::MAX;
    let mut max_stall = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..kills {
        // Randomise the moment of the kill (not a synchronisation).
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        let mut victim = running.remove(rng.below(running.len() as u64) as usize);
        let status = kill_child(&mut victim.child);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the child was running until killed"
        );
        killed.push(victim.slot);
        // Every survivor keeps making progress: nobody is stuck on the dead process's lock.
        let before: Vec<u64> = running.iter().map(|r| iters(r.slot)).collect();
        for (r, b) in running.iter().zip(&before) {
            let t0 = Instant::now();
            while iters(r.slot) < b + 20 {
                if t0.elapsed() > LONG {
                    let states: Vec<String> =
                        running.iter().map(|r| diagnose(r.child.id())).collect();
                    if std::env::var_os("FMQ_T_HOLD_ON_HANG").is_some() {
                        eprintln!("HANG: {states:?}; victim was slot {}", victim.slot);
                        std::thread::sleep(Duration::from_secs(900));
                    }
                    panic!(
                        "survivor {} made no progress for {LONG:?} after a kill: {states:?}",
                        r.slot
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            min_progress = min_progress.min(iters(r.slot) - b);
            max_stall = max_stall.max(t0.elapsed());
        }
        let fresh = spawn(&mut next_slot, &mut rng);
        wait_until(LONG, "a replacement child to start allocating", || {
            iters(fresh.slot) > 0
        });
        running.push(fresh);
    }
    // Stop the survivors; they free everything they hold.
    word(&seg, ctrl).store(1, Ordering::Release);
    for r in &mut running {
        let status = wait_child(&mut r.child, LONG);
        assert!(status.success(), "survivor {} exited with {status}", r.slot);
        assert_eq!(
            word(&seg, slot_word(ctrl, r.slot, W_DONE)).load(Ordering::Acquire),
            1
        );
    }
    let elapsed = started.elapsed();

    // Reconcile: every used block is the control block, a recorded block of a killed child,
    // the block a killed child was about to free, or at most one unrecorded block per killed
    // child that died inside allocate.
    let used: BTreeSet<u64> = seg
        .blocks()
        .unwrap()
        .into_iter()
        .filter(|b| !b.free)
        .map(|b| b.offset)
        .collect();
    let mut claimed = BTreeSet::from([ctrl]);
    let mut recorded = 0;
    for &slot in &killed {
        for i in 0..ENTRIES {
            let off = word(&seg, slot_word(ctrl, slot, W_ENTRIES + i)).load(Ordering::Acquire);
            if off != 0 {
                assert!(
                    used.contains(&off),
                    "recorded block {off} of killed child {slot} is not allocated"
                );
                assert_eq!(
                    word(&seg, off).load(Ordering::Relaxed),
                    tag(slot, off),
                    "leaked block {off} of killed child {slot} was handed out again"
                );
                assert!(claimed.insert(off), "block {off} recorded twice");
                recorded += 1;
            }
        }
    }
    let mut pending_frees = 0;
    for &slot in &killed {
        let off = word(&seg, slot_word(ctrl, slot, W_PENDING_FREE)).load(Ordering::Acquire);
        if off != 0 && used.contains(&off) && claimed.insert(off) {
            pending_frees += 1;
        }
    }
    let died_in_alloc = killed
        .iter()
        .filter(|&&slot| {
            word(&seg, slot_word(ctrl, slot, W_PENDING_ALLOC)).load(Ordering::Acquire) == 1
        })
        .count();
    let unrecorded: Vec<u64> = used.difference(&claimed).copied().collect();
    assert!(
        unrecorded.len() <= died_in_alloc,
        "{} unaccounted blocks, but only {died_in_alloc} children died inside allocate",
        unrecorded.len()
    );
    let repairs = seg.repairs();
    eprintln!(
        "kill test ({policy}): {kills} SIGKILLs of {} children ({concurrent} at a time) in {elapsed:?}; \
         {repairs} heap repairs after a death inside the allocator lock; every survivor advanced >= {min_progress} \
         iterations after every kill, within {max_stall:?} at most; leaked: {recorded} recorded blocks, {pending_frees} blocks being freed, \
         {} blocks allocated at the moment of death ({died_in_alloc} children died inside allocate)",
        next_slot,
        unrecorded.len()
    );
    // Free the leaks: afterwards the heap is exactly as it was at the start.
    for off in claimed.iter().chain(&unrecorded) {
        seg.free(*off).unwrap();
    }
    let end = seg.verify().unwrap();
    assert_eq!(end.used_blocks, 0);
    assert_eq!(end.free_blocks, 1);
    assert_eq!(end.free, pristine.free);
    assert_eq!(seg.free_memory(), pristine.free);
    drop(seg);
    assert!(ManagedSegment::remove(&s.id, 0).unwrap());
    s.assert_clean();
}

#[test]
fn kill_test_best_fit() {
    kill_test(AllocationPolicy::RbTreeBestFit, 60, 3);
}

#[test]
fn kill_test_first_fit() {
    kill_test(AllocationPolicy::SimpleSeqFit, 30, 3);
}

// ---------------------------------------------------------------------------------------------
// Deterministic crash points: die right before every single store of an operation
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    AllocSplit,
    AllocExact,
    AllocAligned,
    FreeAlone,
    FreeMergePrev,
    FreeMergeNext,
    FreeMergeBoth,
}

const OPS: [Op; 7] = [
    Op::AllocSplit,
    Op::AllocExact,
    Op::AllocAligned,
    Op::FreeAlone,
    Op::FreeMergePrev,
    Op::FreeMergeNext,
    Op::FreeMergeBoth,
];

impl Op {
    fn name(self) -> String {
        format!("{self:?}")
    }

    fn parse(s: &str) -> Op {
        OPS.into_iter().find(|o| o.name() == s).unwrap()
    }

    fn is_free(self) -> bool {
        !matches!(self, Op::AllocSplit | Op::AllocExact | Op::AllocAligned)
    }

    /// Builds the heap state before the operation; returns the offset the operation frees.
    fn setup(self, seg: &ManagedSegment) -> u64 {
        let a: Vec<u64> = (0..5).map(|_| seg.allocate(100, 0).unwrap()).collect();
        // a[4] keeps the tail away from a[3], except for FreeMergeNext.
        match self {
            Op::AllocSplit | Op::AllocExact | Op::AllocAligned => {
                seg.free(a[1]).unwrap();
                seg.free(a[3]).unwrap();
                0
            }
            Op::FreeAlone => a[2],
            Op::FreeMergePrev => {
                seg.free(a[1]).unwrap();
                a[2]
            }
            Op::FreeMergeNext => {
                seg.free(a[4]).unwrap();
                seg.free(a[3]).unwrap();
                seg.free(a[1]).unwrap();
                seg.allocate(100, 0).unwrap(); // takes a[1]'s place again (both policies)
                a[2]
            }
            Op::FreeMergeBoth => {
                seg.free(a[1]).unwrap();
                seg.free(a[3]).unwrap();
                a[2]
            }
        }
    }

    fn run(self, seg: &ManagedSegment, arg: u64) {
        match self {
            Op::AllocSplit => drop(seg.allocate(5000, 0).unwrap()),
            Op::AllocExact => drop(seg.allocate(100, 0).unwrap()),
            Op::AllocAligned => drop(seg.allocate(100, 4096).unwrap()),
            _ => seg.free(arg).unwrap(),
        }
    }
}

fn child_crash_op() -> i32 {
    let seg = open_segment();
    let op = Op::parse(&env_str("FMQ_T_OP"));
    let arg = env_u64("FMQ_T_ARG");
    crash_after_stores(Some(env_u64("FMQ_T_CRASH_AT")));
    op.run(&seg, arg);
    crash_after_stores(None);
    0
}

fn child_crash_repair() -> i32 {
    let seg = open_segment();
    crash_after_stores(Some(env_u64("FMQ_T_CRASH_AT")));
    let r = seg.verify();
    crash_after_stores(None);
    match r {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("verify after repair failed: {e}");
            1
        }
    }
}

fn crash_env(s: &TestSession, seg: u16, op: Op, arg: u64, at: u64) -> Vec<(&'static str, String)> {
    vec![
        ("FMQ_T_SHMID", s.id.to_string()),
        ("FMQ_T_SEG", seg.to_string()),
        ("FMQ_T_OP", op.name()),
        ("FMQ_T_ARG", arg.to_string()),
        ("FMQ_T_CRASH_AT", at.to_string()),
    ]
}

#[test]
fn crash_at_every_store_of_every_operation() {
    let s = TestSession::new("crashpoints");
    let opts = SegmentOptions::default();
    let mut total_crashes = 0;
    let mut seg_id = 0u16;
    for policy in [
        AllocationPolicy::RbTreeBestFit,
        AllocationPolicy::SimpleSeqFit,
    ] {
        for op in OPS {
            // Dry run in this process: the state before and after, and the number of stores.
            let seg = ManagedSegment::create(&s.id, seg_id, 64 * 1024, policy, &opts).unwrap();
            let arg = op.setup(&seg);
            let before = seg.verify().unwrap();
            let c0 = store_count();
            op.run(&seg, arg);
            let stores = store_count() - c0;
            let after = seg.verify().unwrap();
            drop(seg);
            ManagedSegment::remove(&s.id, seg_id).unwrap();
            assert!(stores >= 3, "{op:?}: {stores} stores");

            for at in 0..=stores {
                let seg = ManagedSegment::create(&s.id, seg_id, 64 * 1024, policy, &opts).unwrap();
                let arg2 = op.setup(&seg);
                assert_eq!(arg2, arg);
                let mut child = spawn_child(ENTRY, "crash-op", &crash_env(&s, seg_id, op, arg, at));
                let status = wait_child(&mut child, LONG);
                if at < stores {
                    assert_eq!(
                        status.signal(),
                        Some(libc::SIGKILL),
                        "{op:?} crash at {at}: {status}"
                    );
                    total_crashes += 1;
                } else {
                    assert!(status.success(), "{op:?} without crash: {status}");
                }
                // The next lock repairs the heap; the result is the state before or after.
                let st = seg
                    .verify()
                    .unwrap_or_else(|e| panic!("{policy} {op:?} crash at {at}: {e}"));
                assert_eq!(st.repairs, u64::from(at < stores), "{op:?} at {at}");
                if op.is_free() {
                    // Once the intent (the first store) is recorded, the free completes.
                    let expect = if at == 0 { before } else { after };
                    assert_eq!(
                        (st.free, st.used_blocks, st.free_blocks),
                        (expect.free, expect.used_blocks, expect.free_blocks),
                        "{policy} {op:?} crash at {at}"
                    );
                } else {
                    // An allocation either did not happen, or happened and leaked with the
                    // killed process.
                    let got = (st.free, st.used_blocks, st.free_blocks);
                    assert!(
                        got == (before.free, before.used_blocks, before.free_blocks)
                            || got == (after.free, after.used_blocks, after.free_blocks),
                        "{policy} {op:?} crash at {at}: {st:?}, before {before:?}, after {after:?}"
                    );
                }
                // The heap is fully usable afterwards.
                let x = seg.allocate(3000, 64).unwrap();
                seg.free(x).unwrap();
                seg.verify().unwrap();
                drop(seg);
                ManagedSegment::remove(&s.id, seg_id).unwrap();
            }
            seg_id += 1;
        }
    }
    eprintln!("crash-point sweep: {total_crashes} processes killed right before a store");
    assert!(total_crashes > 100);
    s.assert_clean();
}

#[test]
fn crash_during_repair_is_repaired_again() {
    let s = TestSession::new("crashrepair");
    let opts = SegmentOptions::default();
    let op = Op::FreeMergeBoth;
    // Learn the number of stores of the free and of a repair.
    let seg = ManagedSegment::create(&s.id, 0, 64 * 1024, AllocationPolicy::RbTreeBestFit, &opts)
        .unwrap();
    let arg = op.setup(&seg);
    let c0 = store_count();
    op.run(&seg, arg);
    let free_stores = store_count() - c0;
    let after = seg.verify().unwrap();
    drop(seg);
    ManagedSegment::remove(&s.id, 0).unwrap();

    let first_crash = free_stores / 2;
    let mut repair_stores = None;
    let mut at = 0;
    loop {
        let seg =
            ManagedSegment::create(&s.id, 0, 64 * 1024, AllocationPolicy::RbTreeBestFit, &opts)
                .unwrap();
        op.setup(&seg);
        let mut c = spawn_child(ENTRY, "crash-op", &crash_env(&s, 0, op, arg, first_crash));
        assert_eq!(wait_child(&mut c, LONG).signal(), Some(libc::SIGKILL));
        if repair_stores.is_none() {
            // Count the repair's stores by repairing in this process on a copy of the situation.
            let c0 = store_count();
            seg.verify().unwrap();
            repair_stores = Some(store_count() - c0);
            drop(seg);
            ManagedSegment::remove(&s.id, 0).unwrap();
            continue;
        }
        let mut c = spawn_child(ENTRY, "crash-repair", &crash_env(&s, 0, op, arg, at));
        let status = wait_child(&mut c, LONG);
        let total = repair_stores.unwrap();
        if at < total {
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "repair crash at {at}: {status}"
            );
        } else {
            assert!(status.success());
        }
        let st = seg.verify().unwrap();
        assert_eq!(
            (st.free, st.used_blocks, st.free_blocks),
            (after.free, after.used_blocks, after.free_blocks),
            "repair crashed at store {at}"
        );
        drop(seg);
        ManagedSegment::remove(&s.id, 0).unwrap();
        if at >= total {
            eprintln!(
                "repair crash sweep: killed the repairing process at each of its {total} stores"
            );
            break;
        }
        at += 1;
    }
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Management lock: owner death while registering
// ---------------------------------------------------------------------------------------------

fn child_crash_register() -> i32 {
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    let m = ManagementSegment::open(&id).unwrap();
    let lock = m.lock().unwrap();
    crash_after_stores(Some(env_u64("FMQ_T_CRASH_AT")));
    lock.register_region(&RegionInfo {
        id: 7,
        path: "/some/where/".into(),
        size: 4096,
        ..Default::default()
    })
    .unwrap();
    crash_after_stores(None);
    0
}

#[test]
fn management_lock_owner_death() {
    let s = TestSession::new("mngcrash");
    let (m, _) = ManagementSegment::open_or_create(&s.id, &s.name).unwrap();
    // The number of stores of a registration (entry state WRITING, fields, path, state VALID).
    let c0 = store_count();
    m.register_region(&RegionInfo {
        id: 8,
        ..Default::default()
    })
    .unwrap();
    let stores = store_count() - c0;
    for (round, at) in [0, 1, 3, 8, stores / 2, stores - 1, stores]
        .into_iter()
        .enumerate()
    {
        let mut c = spawn_child(
            ENTRY,
            "crash-register",
            &[
                ("FMQ_T_SHMID", s.id.to_string()),
                ("FMQ_T_CRASH_AT", at.to_string()),
            ],
        );
        let status = wait_child(&mut c, LONG);
        if at < stores {
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "crash at {at}: {status}"
            );
        } else {
            assert!(status.success(), "{status}");
        }
        // The next locker gets the lock (no deadlock); a half-written entry was discarded.
        assert!(m
            .register_segment(&SegmentInfo {
                id: round as u16,
                policy: AllocationPolicy::RbTreeBestFit,
                size: 1,
            })
            .unwrap());
        match m.region_info(7) {
            None => assert!(at < stores, "the completed registration is visible"),
            Some(r) => {
                assert_eq!(at, stores, "crash at {at} left a visible entry");
                assert_eq!(r.path, "/some/where/");
                assert_eq!(r.size, 4096);
            }
        }
    }
    assert_eq!(m.regions().len(), 2);
    assert_eq!(m.segments().len(), 7);
    match m.try_remove_if_last().unwrap() {
        RemovalOutcome::Removed(_) => {}
        other => panic!("{other:?}"),
    }
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Liveness via flock
// ---------------------------------------------------------------------------------------------

fn child_hold_session() -> i32 {
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    let (m, _) = ManagementSegment::open_or_create(&id, &env_str("FMQ_T_SESSION")).unwrap();
    let _hb = m
        .start_heartbeat(fairmq_shmem::management::HEARTBEAT_INTERVAL)
        .unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn flock_liveness_follows_the_process() {
    let s = TestSession::new("liveness");
    let env = [
        ("FMQ_T_SHMID", s.id.to_string()),
        ("FMQ_T_SESSION", s.name.clone()),
    ];
    assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Absent);

    // 1. Only a child holds the session: alive while it runs, dead once it is SIGKILLed.
    let mut child = spawn_child(ENTRY, "hold-session", &env);
    wait_until(LONG, "the child to open the session", || {
        session_status(&s.id).unwrap() == SessionStatus::Alive
    });
    assert!(session_is_alive(&s.id).unwrap());
    let obs = ManagementSegment::open_observer(&s.id).unwrap();
    let hb = obs.heartbeat_counter();
    wait_until(LONG, "the child's heartbeat", || {
        obs.heartbeat_counter() > hb
    });
    assert_eq!(
        remove_session_if_dead(&s.id, CleanupScope::Full).unwrap(),
        None,
        "never removes a live session"
    );
    let status = kill_child(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Dead);
    assert!(!session_is_alive(&s.id).unwrap());
    let removed = remove_session_if_dead(&s.id, CleanupScope::Full)
        .unwrap()
        .unwrap();
    assert!(
        removed.contains(&(s.id.management_name(), true)),
        "{removed:?}"
    );
    drop(obs);
    s.assert_clean();

    // 2. This process and a child hold it; the child dies; this process is the last user.
    let (m, _) = ManagementSegment::open_or_create(&s.id, &s.name).unwrap();
    let mut child = spawn_child(ENTRY, "hold-session", &env);
    wait_until(LONG, "the child's heartbeat", || m.heartbeat_counter() > 0);
    kill_child(&mut child);
    assert!(
        session_is_alive(&s.id).unwrap(),
        "this process still holds it"
    );
    match m.try_remove_if_last().unwrap() {
        RemovalOutcome::Removed(list) => assert_eq!(list, vec![(s.id.management_name(), true)]),
        other => panic!("{other:?}"),
    }
    assert_eq!(session_status(&s.id).unwrap(), SessionStatus::Absent);
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// A blocking allocation in another process is woken by a free
// ---------------------------------------------------------------------------------------------

fn child_blocking_alloc() -> i32 {
    let seg = open_segment();
    let never = AtomicBool::new(false);
    match seg.allocate_blocking(
        env_u64("FMQ_T_SIZE"),
        0,
        Some(Duration::from_secs(60)),
        &never,
    ) {
        Ok(off) => {
            seg.free(off).unwrap();
            0
        }
        Err(e) => {
            eprintln!("blocking allocation failed: {e}");
            1
        }
    }
}

#[test]
fn blocking_allocation_in_another_process_is_woken() {
    let s = TestSession::new("xwake");
    let seg = ManagedSegment::create(
        &s.id,
        0,
        64 * 1024,
        AllocationPolicy::RbTreeBestFit,
        &SegmentOptions::default(),
    )
    .unwrap();
    let big = seg.allocate(40_000, 0).unwrap();
    let mut child = spawn_child(
        ENTRY,
        "blocking-alloc",
        &[
            ("FMQ_T_SHMID", s.id.to_string()),
            ("FMQ_T_SEG", "0".into()),
            ("FMQ_T_SIZE", "40000".into()),
        ],
    );
    wait_until(LONG, "the child to wait for memory", || seg.waiters() > 0);
    let t0 = Instant::now();
    seg.free(big).unwrap();
    let status = wait_child(&mut child, LONG);
    assert!(status.success(), "{status}");
    assert!(t0.elapsed() < Duration::from_secs(60));
    let st = seg.verify().unwrap();
    assert_eq!(st.used_blocks, 0);
    assert_eq!(seg.waiters(), 0);
    drop(seg);
    ManagedSegment::remove(&s.id, 0).unwrap();
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// A full /dev/shm at creation: posix_fallocate's ENOSPC in a private 1 MiB tmpfs
// ---------------------------------------------------------------------------------------------

fn child_nospace() -> i32 {
    if let Err(why) = common::private_dev_shm("1m") {
        eprintln!("skipping: {why}");
        return 77;
    }
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    let empty = || std::fs::read_dir("/dev/shm").unwrap().next().is_none();
    // Without the statvfs pre-check the fallocate itself hits ENOSPC; with it, it is caught early.
    for precheck in [false, true] {
        let mut co = CreateOptions::new(4 << 20);
        co.space_precheck = precheck;
        let err = SharedObject::create(
            &Location::shm(id.segment_name(0)),
            ObjectKind::ManagedSegment,
            &co,
        )
        .unwrap_err();
        match &err {
            Error::InsufficientSpace {
                needed,
                free,
                option,
                ..
            } => {
                assert_eq!(*needed, 4 << 20);
                assert!(*free <= 1 << 20, "{free}");
                assert_eq!(option, "--shm-segment-size");
            }
            other => panic!("precheck {precheck}: unexpected {other}"),
        }
        assert!(empty(), "something was left behind (precheck {precheck})");
        // A managed segment is sparse (reserved as it is used), but its first chunk (2 MiB)
        // does not fit either.
        let err = ManagedSegment::create(
            &id,
            1,
            2 << 20,
            AllocationPolicy::RbTreeBestFit,
            &SegmentOptions {
                space_precheck: precheck,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::InsufficientSpace { .. }), "{err}");
        assert!(empty());
    }
    // Something that fits still works.
    let seg = ManagedSegment::create(
        &id,
        2,
        256 * 1024,
        AllocationPolicy::RbTreeBestFit,
        &SegmentOptions::default(),
    )
    .unwrap();
    seg.verify().unwrap();
    drop(seg);
    ManagedSegment::remove(&id, 2).unwrap();
    assert!(empty());
    0
}

#[test]
fn full_dev_shm_is_an_error_at_creation() {
    let s = TestSession::new("nospace");
    let mut child = spawn_child(ENTRY, "nospace", &[("FMQ_T_SHMID", s.id.to_string())]);
    let status = wait_child(&mut child, LONG);
    match status.code() {
        Some(0) => {}
        Some(77) => eprintln!("full_dev_shm_is_an_error_at_creation: skipped (no mount namespace)"),
        _ => panic!("child failed: {status}"),
    }
    // The real /dev/shm was never touched.
    s.assert_clean();
}
