//! `fairmq-shmmonitor` without devices: `--get-shmid`, help, bad input (clear one-line errors,
//! exit code 1), the view of an absent session, refused `--reset-content`.

mod common;

use common::{run_monitor, Session};

#[test]
fn get_shmid_prints_fairmqs_id() {
    let (code, out, err) = run_monitor(&["--get-shmid", "--session", "test123", "--user-id", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "shmem id for session 'test123' and user id 0 is: d202a2b5\n"
    );
    let (code, out, _) = run_monitor(&["--get-shmid", "-s", "default", "--user-id", "1000"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "shmem id for session 'default' and user id 1000 is: eca859e3\n"
    );
    // Without --user-id: the effective uid, said so.
    let (code, out, _) = run_monitor(&["--get-shmid", "-s", "test123"]);
    assert_eq!(code, 0);
    let uid = fairmq_shmem::ids::effective_uid();
    assert_eq!(
        out,
        format!(
            "shmem id for session 'test123' and current user id {uid} is: {}\n",
            fairmq_shmem::shm_id_for_uid(uid, "test123")
        )
    );
}

#[test]
fn help_exits_zero() {
    for flag in ["-h", "--help"] {
        let (code, out, _) = run_monitor(&[flag]);
        assert_eq!(code, 0);
        assert!(out.contains("FairMQ Shared Memory Monitor"), "{out}");
        for opt in [
            "--session",
            "--shmid",
            "--cleanup",
            "--reset-content",
            "--self-destruct",
            "--interactive",
            "--view",
            "--timeout",
            "--daemonize",
            "--monitor",
            "--debug",
            "--clean-on-exit",
            "cleanup-on-exit",
            "--interval",
            "--get-shmid",
            "--list-all",
            "--list-all-path",
            "--verbose",
            "--severity",
            "--user-id",
            "--cleanup-dead",
            "--force",
            "--output",
        ] {
            assert!(out.contains(opt), "{opt} missing in help:\n{out}");
        }
    }
}

fn assert_bad_input(args: &[&str], needle: &str) {
    let (code, out, err) = run_monitor(args);
    assert_eq!(code, 1, "{args:?}: stdout {out} stderr {err}");
    let line = err
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{args:?}: no line with '{needle}' in stderr:\n{err}"));
    assert!(line.starts_with("fairmq-shmmonitor: error: "), "{line}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.lines().count() <= 2,
        "{args:?}: not a short error:\n{err}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    assert_bad_input(
        &["--no-such-option"],
        "unexpected argument '--no-such-option'",
    );
    assert_bad_input(
        &["--shmid", "xyz12345"],
        "--shmid: invalid shmId 'xyz12345'",
    );
    assert_bad_input(&["--shmid", "xyz12345"], "hexadecimal");
    assert_bad_input(
        &["--shmid", "abc"],
        "a shmId has 8 to 16 hexadecimal digits",
    );
    assert_bad_input(
        &["--list-all", "--list-all-path", "/no/such/dir/fmq"],
        "--list-all-path: cannot read directory '/no/such/dir/fmq'",
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let p = file.path().display().to_string();
    assert_bad_input(&["--list-all", "--list-all-path", &p], "is not a directory");
    assert_bad_input(&["--timeout", "soon"], "invalid value 'soon'");
    assert_bad_input(
        &["-i", "--interval", "0"],
        "invalid value '0' for '--interval",
    );
    assert_bad_input(&["--severity", "loud"], "unknown severity 'loud'");
    assert_bad_input(
        &["--get-shmid", "--user-id", "-7"],
        "--user-id: -7 is not a user id",
    );
    assert_bad_input(&["--output", "xml"], "invalid value 'xml'");
    assert_bad_input(
        &["-m", "--output", "json"],
        "--output json is only available",
    );
    assert_bad_input(
        &["--reset-content", "-s", "x"],
        "--reset-content is not supported",
    );
}

#[test]
fn view_of_an_absent_session() {
    let s = Session::new("absent");
    let (code, out, err) = run_monitor(&["-s", &s.name]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "No segments found.\n");
    let (code, out, _) = run_monitor(&["--shmid", s.id.as_str(), "--view", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["shm_id"], s.id.as_str());
    assert_eq!(v["status"], "absent");
    // Debug info of an absent session: a clear error.
    let (code, _, err) = run_monitor(&["-b", "-s", &s.name]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "Could not find management segment for shmid '{}'",
            s.id
        )),
        "{err}"
    );
    // Cleanup of an absent session works (nothing to remove).
    let (code, out, err) = run_monitor(&["-c", "-s", &s.name]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "Did not find '{}' management segment. No regions to cleanup.",
            s.id.management_name()
        )),
        "{out}"
    );
    s.assert_clean();
}

#[test]
fn unhandled_errors_exit_with_2() {
    // The daemon's log file cannot be created in /proc: not bad input, an error at run time.
    let s = Session::new("unhandled");
    let out = std::process::Command::new(common::monitor_bin())
        .args(["-m", "-d", "--verbose", "-x", "--shmid", s.id.as_str()])
        .current_dir("/proc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unhandled Exception reached the top of main: could not create the log file 'fairmq-shmmonitor_")
            && err.contains("application will now exit"),
        "{err}"
    );
    s.assert_clean();
}
