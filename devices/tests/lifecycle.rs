//! Device lifecycle through the real `fairmq-testdevice`: errors and panics in every hook,
//! ErrorFound from every hook, SIGINT inside every hook, WaitFor cut short by SIGINT,
//! refused transitions, ConditionalRun pacing, OnData dispatch.

mod common;

use std::time::{Duration, Instant};

use common::{bin, Ipc, Proc, Signal, TIMEOUT};

const HOOKS: [&str; 9] = [
    "Init",
    "Bind",
    "Connect",
    "InitTask",
    "PreRun",
    "Run",
    "PostRun",
    "ResetTask",
    "Reset",
];

fn run_hook(hook: &str, action: &str, control: &str) -> (i32, String) {
    let ipc = Ipc::new("hook");
    let chan = format!("name=data,type=pair,method=bind,address={}", ipc.address());
    let interactive = control == "interactive";
    let mut p = Proc::device_with(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "t",
            "--control",
            control,
            "--hook",
            hook,
            "--action",
            action,
            "--channel-config",
            &chan,
        ],
        |cmd| {
            if interactive {
                cmd.stdin(std::process::Stdio::piped());
            }
        },
    );
    if interactive && ["ResetTask", "Reset"].contains(&hook) {
        // In interactive mode the shutdown (and so these hooks) needs a 'q'.
        p.wait_for_output("RUNNING ---> READY", TIMEOUT);
        p.write_stdin(b"q");
    }
    let code = p.code();
    (code, p.output())
}

/// Runs `check` for every hook, in parallel threads.
fn for_every_hook(action: &'static str, control: &'static str, check: fn(&str, i32, &str)) {
    let handles: Vec<_> = HOOKS
        .iter()
        .map(|hook| {
            std::thread::spawn(move || {
                let (code, out) = run_hook(hook, action, control);
                check(hook, code, &out);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("hook check failed");
    }
}

fn error_found_check(hook: &str, code: i32, out: &str) {
    assert_eq!(code, 1, "ErrorFound in {hook}: exit code; output:\n{out}");
    assert!(
        out.contains(&format!("going to change to Error state from {hook}()")),
        "{out}"
    );
    assert!(out.contains("---> ERROR"), "{out}");
}

#[test]
fn error_found_from_every_hook_static() {
    for_every_hook("errorfound", "static", error_found_check);
}

#[test]
fn error_found_from_every_hook_interactive() {
    for_every_hook("errorfound", "interactive", error_found_check);
}

#[test]
fn failing_hook_exits_1_naming_the_hook() {
    for_every_hook("err", "static", |hook, code, out| {
        assert_eq!(code, 1, "Err in {hook}; output:\n{out}");
        assert!(
            out.contains(&format!("error in {hook}(): exception in {hook}()")),
            "{out}"
        );
    });
}

#[test]
fn panicking_hook_exits_1_naming_the_hook() {
    for_every_hook("panic", "static", |hook, code, out| {
        assert_eq!(code, 1, "panic in {hook}; output:\n{out}");
        assert!(
            out.contains(&format!("panic in {hook}(): test panic in {hook}()")),
            "{out}"
        );
    });
}

#[test]
fn sigint_inside_every_hook_is_graceful() {
    for_every_hook("sigint", "static", |hook, code, out| {
        assert_eq!(code, 0, "SIGINT in {hook}; output:\n{out}");
        assert!(
            out.contains("Received device shutdown request (signal 2)"),
            "{out}"
        );
        assert!(out.contains("---> EXITING"), "{out}");
    });
}

#[test]
fn sigint_in_interactive_mode_is_graceful() {
    for hook in ["InitTask", "Run"] {
        let (code, out) = run_hook(hook, "sigint", "interactive");
        assert_eq!(code, 0, "SIGINT in {hook}; output:\n{out}");
        assert!(out.contains("---> EXITING"), "{out}");
    }
}

#[test]
fn wait_for_is_cut_short_by_sigint() {
    let handles: Vec<_> = ["PreRun", "Run", "PostRun"]
        .into_iter()
        .map(|hook| {
            std::thread::spawn(move || {
                let mut p = Proc::device(
                    bin("fairmq-testdevice"),
                    &[
                        "--id",
                        "w",
                        "--control",
                        "static",
                        "--hook",
                        hook,
                        "--action",
                        "waitfor",
                    ],
                );
                p.wait_for_output(&format!("Sleeping for 60s in {hook}()"), TIMEOUT);
                let start = Instant::now();
                p.signal(Signal::INT);
                let out = p.success();
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{hook}: took {:?}",
                    start.elapsed()
                );
                assert!(
                    out.contains("Sleeping Done. Interrupted."),
                    "{hook}:\n{out}"
                );
            })
        })
        .collect();
    for h in handles {
        h.join().expect("waitfor check failed");
    }
}

#[test]
fn sigterm_is_graceful_too() {
    let mut p = Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "w",
            "--control",
            "static",
            "--hook",
            "Run",
            "--action",
            "waitfor",
        ],
    );
    p.wait_for_output("Sleeping for 60s in Run()", TIMEOUT);
    p.signal(Signal::TERM);
    let out = p.success();
    assert!(
        out.contains("Received device shutdown request (signal 15)"),
        "{out}"
    );
}

#[test]
fn invalid_transitions_are_refused() {
    let (code, out) = common::run(
        "fairmq-testdevice",
        &[
            "--id",
            "t",
            "--control",
            "static",
            "--check-transitions",
            "true",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("transition checks passed"), "{out}");
    assert!(
        out.contains("No transition from state RUNNING on transition BIND"),
        "{out}"
    );
    assert!(
        out.contains("Transition STOP incoming, but another state transition is already ongoing."),
        "{out}"
    );
}

#[test]
fn conditional_run_is_paced_by_rate() {
    let start = Instant::now();
    let (code, out) = common::run(
        "fairmq-testdevice",
        &[
            "--id",
            "t",
            "--control",
            "static",
            "--rate",
            "20",
            "--cond-iterations",
            "11",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("ConditionalRun ran 11 times in"))
        .unwrap_or_else(|| panic!("{out}"));
    let ms: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|s| s.trim_end_matches("ms").parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // 10 pauses at 20 Hz: about 500 ms.
    assert!((400..5000).contains(&ms), "{line}");
    assert!(start.elapsed() < TIMEOUT);
}

#[test]
fn ondata_single_input_survives_receive_timeouts() {
    let ipc = Ipc::new("ondata1");
    let recv_chan = format!(
        "name=data,type=pull,method=bind,rcvTimeoutMs=100,address={}",
        ipc.address()
    );
    let send_chan = format!(
        "name=data,type=push,method=connect,address={}",
        ipc.address()
    );
    let mut receiver = Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "r",
            "--control",
            "static",
            "--ondata",
            "data",
            "--expect",
            "50",
            "--channel-config",
            &recv_chan,
        ],
    );
    // The sender waits 1 s: the receiver's 100 ms receive timeouts must not end RUNNING.
    let mut sender = Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "s",
            "--control",
            "static",
            "--send",
            "data",
            "--send-count",
            "50",
            "--send-delay-ms",
            "1000",
            "--channel-config",
            &send_chan,
        ],
    );
    sender.success();
    let out = receiver.success();
    assert!(out.contains("OnData received 50 messages"), "{out}");
}

#[test]
fn ondata_multiple_inputs_one_transport_multipart() {
    let (a, b) = (Ipc::new("ondata_a"), Ipc::new("ondata_b"));
    let recv = [
        format!("name=in1,type=pull,method=bind,address={}", a.address()),
        format!("name=in2,type=pull,method=bind,address={}", b.address()),
    ];
    let mut receiver = Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "r",
            "--control",
            "static",
            "--ondata",
            "in1",
            "in2",
            "--ondata-multipart",
            "true",
            "--expect",
            "60",
            "--channel-config",
            &recv[0],
            &recv[1],
        ],
    );
    let mut senders: Vec<Proc> = [&a, &b]
        .iter()
        .map(|ipc| {
            let chan = format!(
                "name=out,type=push,method=connect,address={}",
                ipc.address()
            );
            Proc::device(
                bin("fairmq-testdevice"),
                &[
                    "--id",
                    "s",
                    "--control",
                    "static",
                    "--send",
                    "out",
                    "--send-count",
                    "30",
                    "--send-multipart",
                    "true",
                    "--channel-config",
                    &chan,
                ],
            )
        })
        .collect();
    for s in &mut senders {
        s.success();
    }
    let out = receiver.success();
    assert!(out.contains("OnData received 60 messages"), "{out}");
}

#[test]
fn state_changes_are_logged_in_order() {
    let (code, out) = common::run("fairmq-testdevice", &["--id", "t", "--control", "static"]);
    assert_eq!(code, 0, "{out}");
    let expected = [
        "IDLE ---> INITIALIZING DEVICE",
        "INITIALIZING DEVICE ---> INITIALIZED",
        "INITIALIZED ---> BINDING",
        "BINDING ---> BOUND",
        "BOUND ---> CONNECTING",
        "CONNECTING ---> DEVICE READY",
        "DEVICE READY ---> INITIALIZING TASK",
        "INITIALIZING TASK ---> READY",
        "READY ---> RUNNING",
        "RUNNING ---> READY",
        "READY ---> RESETTING TASK",
        "RESETTING TASK ---> DEVICE READY",
        "DEVICE READY ---> RESETTING DEVICE",
        "RESETTING DEVICE ---> IDLE",
        "IDLE ---> EXITING",
    ];
    let mut pos = 0;
    for e in expected {
        let found = out[pos..]
            .find(e)
            .unwrap_or_else(|| panic!("missing '{e}' in:\n{out}"));
        pos += found + e.len();
    }
    assert!(
        out.contains("No channels created after finishing initialization"),
        "{out}"
    );
}

#[test]
fn interactive_keys_from_piped_stdin() {
    use std::io::Write as _;
    let mut p = Proc::device_with(
        bin("fairmq-testdevice"),
        &["--id", "t", "--control", "interactive"],
        |cmd| {
            cmd.stdin(std::process::Stdio::piped());
        },
    );
    p.wait_for_output("READY ---> RUNNING", TIMEOUT);
    p.write_stdin(b"c");
    p.wait_for_output("\n --> [c] check current state", TIMEOUT);
    p.write_stdin(b"z");
    p.wait_for_output("Invalid input: [z].", TIMEOUT);
    p.write_stdin(b"q");
    let out = p.success();
    assert!(out.contains("IDLE ---> EXITING"), "{out}");
    let _ = std::io::stdout().flush();
}

fn two_transport_receiver(expect: &str, a: &Ipc, b: &Ipc) -> Proc {
    let recv = [
        format!("name=in1,type=pull,method=bind,address={}", a.address()),
        format!(
            "name=in2,type=pull,method=bind,transport=zeromq-b,address={}",
            b.address()
        ),
    ];
    Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "r",
            "--control",
            "static",
            "--severity",
            "debug",
            "--ondata",
            "in1",
            "in2",
            "--ondata-multipart",
            "true",
            "--expect",
            expect,
            "--channel-config",
            &recv[0],
            &recv[1],
        ],
    )
}

fn sender(ipc: &Ipc, transport: &str, multipart: &str) -> Proc {
    let chan = format!(
        "name=out,type=push,method=connect,transport={transport},address={}",
        ipc.address()
    );
    Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "s",
            "--control",
            "static",
            "--send",
            "out",
            "--send-count",
            "30",
            "--send-multipart",
            multipart,
            "--channel-config",
            &chan,
        ],
    )
}

#[test]
fn ondata_inputs_of_two_transports_one_thread_each() {
    let (a, b) = (Ipc::new("ot_a"), Ipc::new("ot_b"));
    let mut receiver = two_transport_receiver("60", &a, &b);
    let mut senders = [sender(&a, "zeromq", "true"), sender(&b, "zeromq-b", "true")];
    for s in &mut senders {
        s.success();
    }
    let out = receiver.success();
    assert!(out.contains("OnData received 60 messages"), "{out}");
}

#[test]
fn handler_error_in_a_transport_thread_goes_to_error_state() {
    let (a, b) = (Ipc::new("ote_a"), Ipc::new("ote_b"));
    let mut receiver = two_transport_receiver("60", &a, &b);
    // Single-part messages where the handler expects two parts: the handler fails.
    let mut s = sender(&b, "zeromq-b", "false");
    s.success();
    let code = receiver.code();
    let out = receiver.output();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error in HandleParts(): expected 2 parts on in2[0], got 1"),
        "{out}"
    );
    assert!(out.contains("RUNNING ---> ERROR"), "{out}");
}

#[test]
fn second_sigint_aborts() {
    use std::os::unix::process::ExitStatusExt as _;
    // ResetTask hangs 60 s without looking at shutdown requests, so the graceful shutdown is
    // still running at the second SIGINT. (A hook's wait_for ends at the first SIGINT.)
    let mut p = Proc::device(
        bin("fairmq-testdevice"),
        &[
            "--id",
            "t",
            "--control",
            "static",
            "--hook",
            "ResetTask",
            "--action",
            "hang",
        ],
    );
    p.wait_for_output("Hanging for 60s in ResetTask()", TIMEOUT);
    p.signal(Signal::INT);
    p.wait_for_output("Waiting for graceful device shutdown", TIMEOUT);
    p.signal(Signal::INT);
    let status = p.wait(TIMEOUT);
    assert_eq!(
        status.signal(),
        Some(6),
        "expected SIGABRT; output:\n{}",
        p.output()
    );
}
