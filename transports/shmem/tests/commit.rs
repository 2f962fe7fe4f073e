//! Memory committed as it is used (issue 9 item 4), across processes and at the transport
//! level:
//!
//! * An idle shmem factory with the default 2 GiB segment holds less than 64 MiB of its
//!   segment's file (`st_blocks`, a per-file measure that parallel tests do not disturb), and a
//!   message of 1 MiB adds about a chunk.
//! * A 64 MiB /dev/shm (a container's default; a private tmpfs in a mount namespace of a child
//!   process): a 2 GiB segment is created; allocations succeed until /dev/shm is full, and the
//!   one that does not fit fails with an error naming the request, the bytes needed, the bytes
//!   free and `--shm-segment-size` — at the allocator and at the transport (whose default policy
//!   would otherwise wait forever); the heap stays consistent, the child exits normally (no
//!   SIGBUS), and after cleanup nothing is left in that /dev/shm.
//! * Another process that maps the segment reads every block the first allocated, at growing
//!   offsets, allocates blocks of its own beyond (reserving more), and the first reads and
//!   frees those: no SIGBUS on either side, and the file holds exactly what was reserved.
//! * A process killed right before each store of an allocation that reserves memory — first of
//!   all between its `posix_fallocate` and the publication of the new committed mark — leaves a
//!   heap that the next process repairs and keeps allocating from.
//!
//! Every test has its own session; afterwards /dev/shm holds nothing of it.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{env_str, env_u64, spawn_child, wait_child, TestSession};
use fairmq_shmem::sync::testing::{crash_after_stores, store_count};
use fairmq_shmem::{AllocationPolicy, Error, Location, ManagedSegment, SegmentOptions, ShmId};
use fairmq_transport::{create_transport, MessagePtr, TransportConfig, TransportError};

const ENTRY: &str = "child_process_entry";
const LONG: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;
const DEFAULT_SEGMENT: u64 = 2 << 30;
/// Exit code of a child that cannot set up its private /dev/shm (the test is skipped).
const SKIP: i32 = 77;

/// Dispatches child modes; a no-op in normal test runs.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(common::CHILD_ENV) else {
        return;
    };
    common::die_with_parent();
    let code = match mode.as_str() {
        "small-dev-shm" => child_small_dev_shm(),
        "reader" => child_reader(),
        "crash-commit" => child_crash_commit(),
        other => {
            eprintln!("unknown child mode {other}");
            2
        }
    };
    std::process::exit(code);
}

/// Bytes of `name`'s file in /dev/shm (`st_blocks * 512`).
fn file_blocks(name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(Location::shm(name).fs_path()).unwrap();
    meta.blocks() * 512
}

/// Whether tmpfs may use huge pages for /dev/shm, which makes `st_blocks` coarser than what
/// was reserved (only with `shmem_enabled` = force).
fn huge_shmem_pages() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .is_ok_and(|s| s.contains("[force]"))
}

fn fill(seg: &ManagedSegment, off: u64, len: u64, byte: u8) {
    let p = seg.ptr(off, len).unwrap();
    // SAFETY: [off, off + len) is an allocation that the calling test owns, inside the mapping.
    unsafe { std::ptr::write_bytes(p, byte, len as usize) };
}

fn holds(seg: &ManagedSegment, off: u64, len: u64, byte: u8) -> bool {
    let p = seg.ptr(off, len).unwrap();
    // SAFETY: as in `fill`; nobody writes to the block while it is read.
    let data = unsafe { std::slice::from_raw_parts(p, len as usize) };
    data.iter().all(|b| *b == byte)
}

// ---------------------------------------------------------------------------------------------
// An idle factory
// ---------------------------------------------------------------------------------------------

#[test]
fn an_idle_factory_holds_little_of_its_default_segment() {
    let s = TestSession::new("commit-idle");
    let f = create_transport(
        "shmem",
        &TransportConfig::new("idle").with("session", s.name.as_str()),
    )
    .expect("shmem factory with the default segment");
    let name = s.id.segment_name(0);
    let size = std::fs::metadata(Location::shm(&name).fs_path())
        .unwrap()
        .len();
    assert_eq!(size, DEFAULT_SEGMENT, "the default segment is 2 GiB long");
    let idle = file_blocks(&name);
    eprintln!("an idle shmem factory holds {idle} bytes of its {size}-byte segment");
    assert!(idle < 64 * MIB, "an idle 2 GiB segment holds {idle} bytes");
    {
        let m = f.new_message_with_size(MIB as usize, None).unwrap();
        assert_eq!(m.size(), MIB as usize);
        let one = file_blocks(&name);
        assert!(one < 64 * MIB, "one message of 1 MiB: {one} bytes held");
    }
    drop(f);
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// A 64 MiB /dev/shm
// ---------------------------------------------------------------------------------------------

/// Checks a failed reservation's error and its text.
fn check_commit_error(err: &Error, requested: u64) {
    match err {
        Error::CommitFailed {
            requested: r,
            needed,
            free,
            option,
            segment_size,
            ..
        } => {
            assert_eq!(*r, requested);
            assert!(*needed > 0 && needed > free, "needed {needed}, free {free}");
            assert_eq!(option, &"--shm-segment-size");
            assert_eq!(*segment_size, DEFAULT_SEGMENT);
            let text = err.to_string();
            for part in [
                format!("allocate {requested} bytes"),
                format!("{needed} more bytes"),
                format!("{free} bytes free"),
                "--shm-segment-size".to_owned(),
                "/dev/shm".to_owned(),
            ] {
                assert!(text.contains(&part), "'{part}' missing from: {text}");
            }
        }
        other => panic!("expected Error::CommitFailed, got {other}"),
    }
}

fn child_small_dev_shm() -> i32 {
    if let Err(why) = common::private_dev_shm("64m") {
        eprintln!("skipping: {why}");
        return SKIP;
    }
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    // The allocator: a 2 GiB segment in a 64 MiB /dev/shm, filled with 1 MiB blocks.
    for (i, policy) in [
        AllocationPolicy::RbTreeBestFit,
        AllocationPolicy::SimpleSeqFit,
    ]
    .into_iter()
    .enumerate()
    {
        let seg =
            ManagedSegment::create(&id, i as u16, DEFAULT_SEGMENT, policy, &Default::default())
                .expect("a 2 GiB segment is created on a 64 MiB /dev/shm");
        let initial = seg.verify().unwrap();
        let mut blocks = Vec::new();
        let err = loop {
            match seg.allocate(MIB, 0) {
                Ok(off) => {
                    // Touch every page: a SIGBUS here would kill the child.
                    fill(&seg, off, MIB, blocks.len() as u8 + 1);
                    blocks.push(off);
                }
                Err(e) => break e,
            }
            assert!(blocks.len() < 64, "64 MiB of /dev/shm never filled up");
        };
        check_commit_error(&err, MIB);
        eprintln!(
            "{policy}: {} blocks of 1 MiB fitted into a 64 MiB /dev/shm; then: {err}",
            blocks.len()
        );
        assert!(blocks.len() >= 50, "only {} MiB fitted", blocks.len());
        let st = seg
            .verify()
            .expect("the heap is consistent after the failure");
        assert_eq!(st.used_blocks, blocks.len() as u64);
        assert!(seg.object().allocated_bytes().unwrap() <= 64 * MIB);
        // Smaller requests either fit into what is reserved or fail the same clear way.
        match seg.allocate(4096, 0) {
            Ok(off) => seg.free(off).unwrap(),
            Err(e) => check_commit_error(&e, 4096),
        }
        for (k, off) in blocks.iter().enumerate() {
            assert!(holds(&seg, *off, MIB, k as u8 + 1), "block {k} was damaged");
            seg.free(*off).unwrap();
        }
        let end = seg.verify().unwrap();
        assert_eq!((end.free, end.free_blocks), (initial.free, 1));
        // Reserved memory is kept and reused: the same allocations fit again.
        let again: Vec<u64> = (0..blocks.len())
            .map(|_| seg.allocate(MIB, 0).expect("reuse of reserved memory"))
            .collect();
        for off in again {
            seg.free(off).unwrap();
        }
        drop(seg);
        assert!(ManagedSegment::remove(&id, i as u16).unwrap());
        assert!(
            common::dev_shm_is_empty(),
            "the segment left something behind"
        );
    }

    // The transport, with its default policy of waiting for memory forever: a full /dev/shm is
    // an error at once, not a wait.
    let session = env_str("FMQ_T_SESSION");
    let f = create_transport(
        "shmem",
        &TransportConfig::new("small").with("session", session.as_str()),
    )
    .expect("a shmem factory with the default 2 GiB segment on a 64 MiB /dev/shm");
    let mut held: Vec<MessagePtr> = Vec::new();
    let text = loop {
        match f.new_message_with_size(MIB as usize, None) {
            Ok(mut m) => {
                m.data_mut().fill(7);
                held.push(m);
            }
            Err(TransportError::BadAlloc(text)) => break text,
            Err(other) => panic!("expected BadAlloc, got {other:?}"),
        }
        assert!(held.len() < 64, "64 MiB of /dev/shm never filled up");
    };
    eprintln!("transport: {} messages of 1 MiB, then: {text}", held.len());
    for part in [
        "could not create a message of size 1048576",
        "bytes free",
        "--shm-segment-size",
        "more bytes",
    ] {
        assert!(text.contains(part), "'{part}' missing from: {text}");
    }
    assert!(held.len() >= 40, "only {} messages fitted", held.len());
    assert!(held.iter().all(|m| m.data().iter().all(|b| *b == 7)));
    drop(held);
    drop(f);
    assert!(
        common::dev_shm_is_empty(),
        "the last user left something in /dev/shm: {:?}",
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    0
}

#[test]
fn a_small_dev_shm_fails_the_first_allocation_that_does_not_fit() {
    let s = TestSession::new("commit-small");
    let mut child = spawn_child(
        ENTRY,
        "small-dev-shm",
        &[
            ("FMQ_T_SHMID", s.id.to_string()),
            ("FMQ_T_SESSION", s.name.clone()),
        ],
    );
    let status = wait_child(&mut child, LONG);
    assert_eq!(status.signal(), None, "the child was killed: {status}");
    match status.code() {
        Some(0) => {}
        Some(SKIP) => eprintln!("skipped: no private /dev/shm (mount namespace) here"),
        _ => panic!("child failed: {status}"),
    }
    // The real /dev/shm was never touched.
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Across processes
// ---------------------------------------------------------------------------------------------

/// (offset, size, fill byte) of the parent's blocks, as passed to the reader.
fn encode(blocks: &[(u64, u64, u8)]) -> String {
    blocks
        .iter()
        .map(|(o, s, b)| format!("{o}:{s}:{b}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode(text: &str) -> Vec<(u64, u64, u8)> {
    text.split(',')
        .map(|t| {
            let v: Vec<u64> = t.split(':').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2] as u8)
        })
        .collect()
}

const READER_BLOCKS: u64 = 5;
const READER_SIZE: u64 = 8 * MIB;

fn child_reader() -> i32 {
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    let seg = ManagedSegment::open(&id, 0, &SegmentOptions::default()).unwrap();
    for (k, (off, size, byte)) in decode(&env_str("FMQ_T_BLOCKS")).into_iter().enumerate() {
        if !holds(&seg, off, size, byte) {
            eprintln!("reader: block {k} at {off} does not hold what the parent wrote");
            return 3;
        }
    }
    // Blocks of its own beyond what the parent reserved; their offsets go into the parent's
    // control block.
    let ctrl = env_u64("FMQ_T_CTRL");
    for k in 0..READER_BLOCKS {
        let off = seg.allocate(READER_SIZE, 4096).unwrap();
        fill(&seg, off, READER_SIZE, 0xC0 + k as u8);
        let p = seg.ptr(ctrl + 8 * k, 8).unwrap() as *mut u64;
        // SAFETY: an 8-aligned word of the control block that the parent allocated for this.
        unsafe { p.write_volatile(off) };
    }
    0
}

#[test]
fn another_process_reads_and_extends_what_the_first_reserved() {
    let s = TestSession::new("commit-xproc");
    let seg = ManagedSegment::create(
        &s.id,
        0,
        DEFAULT_SEGMENT,
        AllocationPolicy::RbTreeBestFit,
        &SegmentOptions::default(),
    )
    .unwrap();
    let ctrl = seg.allocate(8 * READER_BLOCKS, 64).unwrap();
    fill(&seg, ctrl, 8 * READER_BLOCKS, 0);
    let mut blocks = Vec::new();
    let sizes = (0..10)
        .map(|_| (MIB, 0))
        .chain([(64 * MIB, 0), (3 * MIB, 65536), (100, 16)]);
    for (k, (size, align)) in sizes.enumerate() {
        let off = seg.allocate(size, align).unwrap();
        let byte = 0x10 + k as u8;
        fill(&seg, off, size, byte);
        blocks.push((off, size, byte));
    }
    let reserved = seg.committed_bytes();
    assert!(reserved < 96 * MIB, "{reserved}");
    let mut child = spawn_child(
        ENTRY,
        "reader",
        &[
            ("FMQ_T_SHMID", s.id.to_string()),
            ("FMQ_T_BLOCKS", encode(&blocks)),
            ("FMQ_T_CTRL", ctrl.to_string()),
        ],
    );
    let status = wait_child(&mut child, LONG);
    assert!(status.success(), "reader: {status}");
    assert!(
        seg.committed_bytes() >= reserved + READER_BLOCKS * READER_SIZE,
        "the reader reserved more for its blocks (a mark shared by both processes)"
    );
    for k in 0..READER_BLOCKS {
        let p = seg.ptr(ctrl + 8 * k, 8).unwrap() as *const u64;
        // SAFETY: an 8-aligned word of our control block, written by the finished reader.
        let off = unsafe { p.read_volatile() };
        assert!(
            holds(&seg, off, READER_SIZE, 0xC0 + k as u8),
            "reader block {k}"
        );
        seg.free(off).unwrap();
    }
    if !huge_shmem_pages() {
        assert_eq!(
            seg.object().allocated_bytes().unwrap(),
            seg.committed_bytes(),
            "no process touched a page outside of the reservation"
        );
    }
    for (off, _, _) in blocks {
        seg.free(off).unwrap();
    }
    seg.free(ctrl).unwrap();
    assert_eq!(seg.verify().unwrap().used_blocks, 0);
    drop(seg);
    assert!(ManagedSegment::remove(&s.id, 0).unwrap());
    s.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Killed while reserving
// ---------------------------------------------------------------------------------------------

const CRASH_SEGMENT: u64 = 32 * MIB;
/// An allocation that reaches beyond the first chunk, so it reserves.
const CRASH_ALLOC: u64 = 5 * MIB;

fn crash_setup(seg: &ManagedSegment) -> u64 {
    seg.allocate(100_000, 0).unwrap()
}

fn child_crash_commit() -> i32 {
    let id = ShmId::parse(&env_str("FMQ_T_SHMID")).unwrap();
    let seg =
        ManagedSegment::open(&id, env_u64("FMQ_T_SEG") as u16, &SegmentOptions::default()).unwrap();
    crash_after_stores(Some(env_u64("FMQ_T_CRASH_AT")));
    let off = seg.allocate(CRASH_ALLOC, 0);
    crash_after_stores(None);
    match off {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("allocate failed: {e}");
            1
        }
    }
}

#[test]
fn killed_while_reserving_leaves_a_heap_others_continue_with() {
    let s = TestSession::new("commit-crash");
    let opts = SegmentOptions::default();
    let mut crashes = 0;
    for (seg_id, policy) in [
        AllocationPolicy::RbTreeBestFit,
        AllocationPolicy::SimpleSeqFit,
    ]
    .into_iter()
    .enumerate()
    {
        let seg_id = seg_id as u16;
        // Dry run in this process: the state before and after, and the number of stores.
        let seg = ManagedSegment::create(&s.id, seg_id, CRASH_SEGMENT, policy, &opts).unwrap();
        crash_setup(&seg);
        let before = seg.verify().unwrap();
        let c0 = store_count();
        seg.allocate(CRASH_ALLOC, 0).unwrap();
        let stores = store_count() - c0;
        let after = seg.verify().unwrap();
        assert!(after.committed > before.committed, "the operation reserves");
        drop(seg);
        ManagedSegment::remove(&s.id, seg_id).unwrap();

        for at in 0..=stores {
            let seg = ManagedSegment::create(&s.id, seg_id, CRASH_SEGMENT, policy, &opts).unwrap();
            crash_setup(&seg);
            let env = [
                ("FMQ_T_SHMID", s.id.to_string()),
                ("FMQ_T_SEG", seg_id.to_string()),
                ("FMQ_T_CRASH_AT", at.to_string()),
            ];
            let mut child = spawn_child(ENTRY, "crash-commit", &env);
            let status = wait_child(&mut child, LONG);
            if at < stores {
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "crash at {at}: {status}"
                );
                crashes += 1;
            } else {
                assert!(status.success(), "without a crash: {status}");
            }
            if at == 0 && !huge_shmem_pages() {
                // Killed between posix_fallocate and publishing the mark: the pages are
                // reserved, the mark is not.
                assert_eq!(seg.committed_bytes(), before.committed);
                assert!(seg.object().allocated_bytes().unwrap() > before.committed);
            }
            // The next locker repairs; the heap is as before or after the allocation (which then
            // leaked with the killed process).
            let st = seg
                .verify()
                .unwrap_or_else(|e| panic!("{policy} crash at {at}: {e}"));
            let got = (st.free, st.used_blocks, st.free_blocks);
            assert!(
                got == (before.free, before.used_blocks, before.free_blocks)
                    || got == (after.free, after.used_blocks, after.free_blocks),
                "{policy} crash at {at}: {st:?}, before {before:?}, after {after:?}"
            );
            assert!(
                st.committed == before.committed || st.committed == after.committed,
                "{policy} crash at {at}: committed {}",
                st.committed
            );
            // Others continue: the same allocation succeeds and reserves what it needs; every
            // page is usable, and the file holds exactly what is reserved again.
            let off = seg.allocate(CRASH_ALLOC, 0).unwrap();
            fill(&seg, off, CRASH_ALLOC, 0xAB);
            if !huge_shmem_pages() {
                assert_eq!(
                    seg.object().allocated_bytes().unwrap(),
                    seg.committed_bytes(),
                    "{policy} crash at {at}"
                );
            }
            seg.free(off).unwrap();
            seg.verify().unwrap();
            drop(seg);
            ManagedSegment::remove(&s.id, seg_id).unwrap();
        }
    }
    eprintln!("killed {crashes} processes right before a store of a reserving allocation");
    assert!(crashes >= 4);
    s.assert_clean();
}
