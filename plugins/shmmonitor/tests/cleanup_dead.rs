//! `fairmq-shmmonitor --cleanup-dead` removes every dead session of the current user and
//! nothing else: not a live session, not a dead session of another user.
//!
//! `--cleanup-dead` acts on the whole of `/dev/shm`, so the test runs in a private mount
//! namespace with its own empty tmpfs on `/dev/shm` (via `unshare --mount`, which needs root or
//! user namespaces); tests running in parallel, and other users of the machine, never see it.
//! Where `unshare` is not available the test is skipped with a message.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::{run_monitor, sink, wait_until, Session, Signal, LONG};

const INNER: &str = "inside_a_private_dev_shm";
const ENV: &str = "FMQ_SHMMONITOR_PRIVATE_DEV_SHM";

#[test]
fn cleanup_dead_removes_only_dead_sessions_of_the_user() {
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=256m fmqtest /dev/shm")
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipping: no private /dev/shm (unshare/mount): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipping: unshare not available: {e}");
            return;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=256m fmqtest /dev/shm && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            INNER,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "inner test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
#[ignore = "runs inside the private /dev/shm of cleanup_dead_removes_only_dead_sessions_of_the_user"]
fn inside_a_private_dev_shm() {
    // Never on the real /dev/shm.
    assert_eq!(
        std::env::var(ENV).as_deref(),
        Ok("1"),
        "run through the outer test"
    );
    let fs = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        fs.lines()
            .any(|l| l.contains(" /dev/shm ") && l.contains(" fmqtest ")),
        "/dev/shm is not the private tmpfs"
    );

    // A: killed → dead. B: running → alive. C: killed, and owned by another user.
    let a = Session::new("deadA");
    let b = Session::new("liveB");
    let c = Session::new("otherC");
    let mut da = sink(&a, "sink", &a.ipc("data"), &[]);
    let mut db = sink(&b, "sink", &b.ipc("data"), &[]);
    let mut dc = sink(&c, "sink", &c.ipc("data"), &[]);
    for d in [&mut da, &mut db, &mut dc] {
        d.wait_for_output("RUNNING", LONG);
    }
    da.kill();
    dc.kill();
    let other_uid = 4242;
    for name in c.objects() {
        std::os::unix::fs::chown(format!("/dev/shm/{name}"), Some(other_uid), None).unwrap();
    }
    let mng_c = format!("/dev/shm/{}", c.id.management_name());
    assert_eq!(std::fs::metadata(&mng_c).unwrap().uid(), other_uid);
    let before_b = b.objects();
    let before_c = c.objects();
    wait_until(LONG, "A to be dead", || {
        fairmq_shmem::session_status(&a.id).unwrap() == fairmq_shmem::SessionStatus::Dead
    });

    let (code, out, err) = run_monitor(&["--cleanup-dead"]);
    assert_eq!(code, 0, "{out}{err}");
    for name in [a.id.segment_name(0), a.id.management_name()] {
        assert!(
            out.contains(&format!("Successfully removed '{name}'.")),
            "{name}:\n{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "removed dead session '{}' (shm id: {})",
            a.name, a.id
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("skipped live session with shm id {}", b.id)),
        "{out}"
    );
    assert!(
        out.contains("removed 1 dead session(s); left 1 live session(s) and 1 session(s) of other users untouched"),
        "{out}"
    );
    a.assert_clean();
    assert_eq!(b.objects(), before_b, "the live session was touched");
    assert_eq!(c.objects(), before_c, "another user's session was touched");

    // list-all shows B alive and C dead.
    let (code, out, _) = run_monitor(&["--list-all"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("shm id: {}, session: {}", b.id, b.name)),
        "{out}"
    );
    assert!(out.contains("devices: 1, status: alive"), "{out}");
    assert!(out.contains("devices: 1, status: dead"), "{out}");

    db.signal(Signal::INT);
    db.success();
    b.assert_clean();
    // Another user's session: --cleanup refuses it, also as root, until forced.
    let (code, _, err) = run_monitor(&["-c", "--shmid", c.id.as_str()]);
    assert_ne!(
        code, 0,
        "another user's session must not be removed without --force"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        c.objects(),
        before_c,
        "a refused cleanup touched the session"
    );
    let (code, _, err) = run_monitor(&["-c", "--force", "--shmid", c.id.as_str()]);
    assert_eq!(code, 0, "{err}");
    c.assert_clean();
}
