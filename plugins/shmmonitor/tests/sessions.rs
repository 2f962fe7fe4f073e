//! `fairmq-shmmonitor` on sessions of real shmem devices: view and list-all (text and JSON),
//! live messages, cleanup after SIGKILL with every name printed, refusal to clean a live session
//! without `--force`, and the interactive mode driven through a pipe.

mod common;

use std::process::Stdio;

use common::{line_with, run_monitor, sampler, sink, wait_until, Session, Signal, LONG};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// The session's entry in `--list-all --output json`.
fn listed(s: &Session) -> Option<Value> {
    let (code, out, err) = run_monitor(&["--list-all", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    json(&out)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["shm_id"] == s.id.as_str())
        .cloned()
}

/// `objects` (of session `s`) are `expected` plus, on the descriptor-queue path, the devices'
/// queue and bell objects (`fmq_<shmId>_q_*`), and nothing else.
fn assert_session_objects(s: &Session, objects: &[String], expected: &[String]) {
    let queues = format!("fmq_{}_q_", s.id);
    let (queue_objects, mut rest): (Vec<&String>, Vec<&String>) =
        objects.iter().partition(|o| o.starts_with(&queues));
    rest.sort();
    let mut want: Vec<&String> = expected.iter().collect();
    want.sort();
    assert_eq!(
        rest, want,
        "objects of the session besides its queues {queue_objects:?}"
    );
}

#[test]
fn view_list_all_and_cleanup_after_sigkill() {
    let s = Session::new("view");
    let addr = s.ipc("data");
    let mut sink = sink(&s, "sink", &addr, &[]);
    let mut sampler = sampler(&s, "sampler", &addr, &[]);
    // Both devices have joined and messages flow.
    wait_until(LONG, "two devices and a heartbeat", || {
        listed(&s).is_some_and(|v| v["devices"] == 2 && v["heartbeat"].as_u64() > Some(2))
    });

    // --view, text.
    let (code, out, err) = run_monitor(&["--view", "-s", &s.name]);
    assert_eq!(code, 0, "{err}");
    let uid = fairmq_shmem::ids::effective_uid();
    assert_eq!(
        out.lines().next().unwrap(),
        format!(
            "shm id: {}, session: {}, creator id: {uid}, devices: 2, status: alive, managed segments:",
            s.id, s.name
        ),
        "{out}"
    );
    let seg = line_with(&out, "   [0]: total: 10000000, msgs: ").expect(&out);
    let num = |key: &str| -> u64 {
        seg.split(&format!("{key}: "))
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {seg}"))
    };
    assert_eq!(num("free") + num("used"), 10_000_000, "{seg}");
    assert!(num("used") > 0 && num("free") > 9_000_000, "{seg}");
    let m = line_with(&out, "   [m]: total: 6553600, free: ").expect(&out);
    assert!(m.contains(", used: "), "{m}");
    // The same with --shmid, and the default mode is the view.
    let (code, out2, _) = run_monitor(&["--shmid", s.id.as_str()]);
    assert_eq!(code, 0);
    assert!(
        out2.starts_with(&format!("shm id: {}, session: {}", s.id, s.name)),
        "{out2}"
    );

    // --view --output json.
    let (code, out, _) = run_monitor(&["-v", "-s", &s.name, "--output", "json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["shm_id"], s.id.as_str());
    assert_eq!(v["session"], s.name.as_str());
    assert_eq!(v["status"], "alive");
    assert_eq!(v["devices"], 2);
    assert_eq!(v["creator_euid"], uid);
    assert_eq!(v["monitor_pid"], Value::Null);
    let seg0 = &v["segments"][0];
    assert_eq!(seg0["id"], 0);
    assert_eq!(seg0["allocation"], "rbtree_best_fit");
    assert_eq!(seg0["total"], 10_000_000);
    assert_eq!(
        seg0["free"].as_u64().unwrap() + seg0["used"].as_u64().unwrap(),
        10_000_000
    );
    assert_eq!(v["management"]["total"], 6_553_600);

    // --list-all, text: the session with its liveness.
    let (code, out, err) = run_monitor(&["--list-all"]);
    assert_eq!(code, 0, "{err}");
    let found = format!("Found shmid '{}':", s.id);
    let at = out
        .find(&found)
        .unwrap_or_else(|| panic!("{found} missing:\n{out}"));
    let after = &out[at..];
    assert!(
        after.contains(&format!(
            "shm id: {}, session: {}, creator id: {uid}, devices: 2, status: alive, managed segments:\n   [0]: total: 10000000, msgs: ",
            s.id, s.name
        )),
        "{after}"
    );
    let listed_now = listed(&s).unwrap();
    assert_eq!(listed_now["status"], "alive");
    assert_eq!(listed_now["segments"][0]["total"], 10_000_000);

    // --debug lists the live messages (allocated blocks).
    let (code, out, err) = run_monitor(&["--debug", "-s", &s.name]);
    assert_eq!(code, 0, "{err}");
    let n: usize = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("found "))
        .and_then(|l| l.strip_suffix(" messages."))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("segment: 0, offset: "))
            .count(),
        n
    );

    // Both killed: the session stays, dead; -c removes everything, naming each object.
    sink.kill();
    sampler.kill();
    wait_until(LONG, "the session to be dead", || {
        listed(&s).is_some_and(|v| v["status"] == "dead")
    });
    let (code, out, _) = run_monitor(&["-s", &s.name]);
    assert_eq!(code, 0);
    assert!(out.contains("devices: 2, status: dead"), "{out}");
    let before = s.objects();
    assert_session_objects(&s, &before, &[s.id.segment_name(0), s.id.management_name()]);
    let (code, out, err) = run_monitor(&["-c", "-s", &s.name]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Cleanup called with session id '{}', translating to shared memory id '{}'",
            s.name, s.id
        )
    );
    assert_eq!(
        lines[1],
        format!("Cleaning up for shared memory id '{}'...", s.id)
    );
    assert!(out.contains("Found 1 managed segments...\n"), "{out}");
    for name in &before {
        assert!(
            out.contains(&format!("Successfully removed '{name}'.\n")),
            "{name}:\n{out}"
        );
    }
    assert!(
        out.ends_with(&format!(
            "Successfully removed '{}'.\n",
            s.id.management_name()
        )),
        "{out}"
    );
    s.assert_clean();
}

#[test]
fn cleanup_refuses_a_live_session_without_force() {
    let s = Session::new("force");
    let mut sink = sink(&s, "sink", &s.ipc("data"), &[]);
    sink.wait_for_output("RUNNING", LONG);
    let before = s.objects();
    assert_session_objects(&s, &before, &[s.id.segment_name(0), s.id.management_name()]);
    let (code, out, err) = run_monitor(&["-c", "-s", &s.name]);
    assert_eq!(code, 1, "{out}{err}");
    let line = line_with(&err, "fairmq-shmmonitor: error: --cleanup: ").expect(&err);
    assert!(
        line.contains("is alive") && line.contains("--force"),
        "{line}"
    );
    assert_eq!(s.objects(), before, "a refused cleanup removed something");
    // Forced: removed under the running device, which still exits cleanly.
    let (code, out, err) = run_monitor(&["-c", "--force", "-s", &s.name]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("Successfully removed '{}'.", s.id.segment_name(0))),
        "{out}"
    );
    s.assert_clean();
    sink.signal(Signal::INT);
    sink.success();
    s.assert_clean();
}

#[test]
fn interactive_mode_through_a_pipe() {
    let s = Session::new("interactive");
    let mut sink = sink(&s, "sink", &s.ipc("data"), &[]);
    sink.wait_for_output("RUNNING", LONG);
    let spawn_interactive = |extra: &[&str]| {
        let mut args = vec!["-i", "-s", s.name.as_str(), "--interval", "100"];
        args.extend_from_slice(extra);
        common::monitor_in(&s, &args, |c| {
            c.stdin(Stdio::piped());
        })
    };
    let mut mon = spawn_interactive(&[]);
    mon.wait_for_output(
        "controls: [x] close memory, [b] print a list of allocated messages, [h] help, [q] quit.",
        LONG,
    );
    // It holds the marker: a second monitor of the session is refused with exit 0.
    wait_until(LONG, "the marker", || s.monitor_pid() == Some(mon.pid()));
    let (code, out, _) = run_monitor(&["-i", "-s", &s.name]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "fairmq-shmmonitor for shm id {} is already running (pid {})",
            s.id,
            mon.pid()
        )) && out.contains(", or run in view-only mode (-v)"),
        "{out}"
    );
    // The periodic print.
    mon.wait_for_output("devices: 1, status: alive, managed segments:", LONG);
    mon.write_stdin(b"h");
    mon.wait_for_output("[h] --> help:", LONG);
    mon.write_stdin(b"z\n");
    mon.wait_for_output("[z] --> invalid input.", LONG);
    mon.wait_for_output("[\\n] --> invalid input.", LONG);
    mon.write_stdin(b"b");
    mon.wait_for_output("[b] --> allocated messages:\nfound 0 messages.", LONG);
    // x on a live session without --force: refused.
    let before = s.objects();
    assert_session_objects(
        &s,
        &before,
        &[
            s.id.segment_name(0),
            s.id.management_name(),
            format!("fmq_{}_ms", s.id),
        ],
    );
    mon.write_stdin(b"x");
    mon.wait_for_output("[x] --> closing shared memory:", LONG);
    mon.wait_for_output("not closing: processes still hold the session open", LONG);
    assert_eq!(s.objects(), before, "a refused close removed something");
    mon.write_stdin(b"q");
    mon.wait_for_output("[q] --> quitting.", LONG);
    mon.success();
    assert_eq!(s.monitor_pid(), None);

    // View-only interactive: no marker, x refused.
    let mut view = spawn_interactive(&["-v"]);
    view.wait_for_output("controls:", LONG);
    view.write_stdin(b"x");
    view.wait_for_output("cannot close because in view only mode", LONG);
    assert_eq!(s.monitor_pid(), None);
    // End of input ends it.
    view.close_stdin();
    view.wait_for_output("standard input closed, quitting", LONG);
    view.success();

    // With --force, x closes the live session.
    let mut forced = spawn_interactive(&["--force"]);
    forced.wait_for_output("controls:", LONG);
    forced.write_stdin(b"x");
    forced.wait_for_output(
        &format!("Successfully removed '{}'.", s.id.management_name()),
        LONG,
    );
    forced.wait_for_output("No segments found.", LONG);
    forced.write_stdin(b"q");
    forced.success();
    sink.signal(Signal::INT);
    sink.success();
    s.assert_clean();
}

#[test]
fn monitor_mode_ends_on_sigint_and_cleans_a_dead_session_on_exit() {
    let s = Session::new("onexit");
    let mut sink = sink(&s, "sink", &s.ipc("data"), &[]);
    sink.wait_for_output("RUNNING", LONG);
    sink.kill();
    // The seed's spelling of --clean-on-exit; a long timeout, so only the exit cleans.
    let mut mon = common::monitor_in(
        &s,
        &["-m", "--cleanup-on-exit", "-t", "600000", "-s", &s.name],
        |_| {},
    );
    mon.wait_for_output(
        &format!(
            "Starting shared memory monitor for session: \"{}\" (shm id: {})...",
            s.name, s.id
        ),
        LONG,
    );
    wait_until(LONG, "the marker", || s.monitor_pid() == Some(mon.pid()));
    assert!(s.objects().contains(&s.id.monitor_marker_name()));
    mon.signal(Signal::INT);
    let out = mon.success();
    assert!(out.contains("signal: 2"), "{out}");
    assert!(
        out.contains(&format!(
            "Successfully removed '{}'.",
            s.id.management_name()
        )),
        "{out}"
    );
    s.assert_clean();
}
