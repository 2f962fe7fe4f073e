//! Faults a user makes or meets (issue 11): a malformed address is a configuration error of its
//! channel in bind and in connect, an unknown `--control` value stops the device, and
//! SIGINT/SIGTERM end a device that is still waiting for a peer.

mod common;

use std::time::Duration;

use common::{assert_clean_error, bin, Proc, Signal};

/// Generous: a malformed address used to keep the device in CONNECTING until `--init-timeout`
/// (120 s); it now exits at once.
const FAIL_FAST: Duration = Duration::from_secs(30);

fn sink(channel: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--id",
        "sink",
        "--control",
        "static",
        "--max-iterations",
        "1",
        "--channel-config",
        channel,
    ];
    args.extend_from_slice(extra);
    Proc::device(bin("fairmq-sink"), &args)
}

#[test]
fn malformed_addresses_are_channel_errors_in_bind_and_connect() {
    let cases = [
        ("foo://bar", "unsupported protocol 'foo://'"),
        ("tcp://127.0.0.1", "missing port"),
        ("tcp://:5555", "missing host"),
        ("tcp://127.0.0.1:http", "port 'http' is not a number"),
        ("tcp://127.0.0.1:99999", "port '99999' is not a number"),
        ("ipc://", "empty ipc name"),
        ("localhost:5555", "missing protocol specifier"),
    ];
    for method in ["bind", "connect"] {
        for (address, problem) in cases {
            let mut p = sink(
                &format!("name=data,type=pull,method={method},address={address}"),
                &[],
            );
            let status = p.wait(FAIL_FAST);
            let out = p.output();
            assert_eq!(status.code(), Some(1), "{method} {address}: {out}");
            let needle = format!("channel data[0]: invalid address '{address}': {problem}");
            assert_clean_error(1, &out, &needle);
            let line = out
                .lines()
                .find(|l| l.contains(&needle))
                .unwrap_or_default();
            assert!(
                line.contains("; expected tcp://") && line.contains("inproc://<name>"),
                "{method} {address}: the line names the expected form: {line}"
            );
        }
    }
}

#[test]
fn a_connect_wildcard_port_is_refused_but_a_bind_wildcard_works() {
    let mut p = sink("name=data,type=pull,method=connect,address=tcp://h:*", &[]);
    p.wait(FAIL_FAST);
    assert_clean_error(
        p.code(),
        &p.output(),
        "a connect needs a port number, not '*'",
    );
}

#[test]
fn an_unknown_control_mode_stops_the_device_and_lists_the_modes() {
    let address = format!(
        "ipc:///tmp/{}",
        common::unique("fmq-faults-control").replace('/', "_")
    );
    let mut p = sink(
        &format!("name=data,type=pull,method=bind,address={address}"),
        &["--control", "bogus"],
    );
    p.wait(FAIL_FAST);
    let out = p.output();
    assert_clean_error(
        p.code(),
        &out,
        "unknown control mode 'bogus' (--control); use one of static, dynamic, interactive, external, gui, none",
    );
    assert!(
        !out.contains("RUNNING"),
        "the device must not run with a mistyped --control:\n{out}"
    );
    let _ = std::fs::remove_file(address.trim_start_matches("ipc://"));
}

#[test]
fn signals_end_a_device_waiting_for_a_peer_it_cannot_reach() {
    for sig in [Signal::INT, Signal::TERM] {
        // A well-formed address whose host does not resolve: retried, as FairMQ does.
        let mut p = sink(
            "name=data,type=pull,method=connect,address=tcp://fmq-no-such-host.invalid:5555",
            &[],
        );
        p.wait_for_output("BOUND ---> CONNECTING", Duration::from_secs(30));
        p.signal(sig);
        let status = p.wait(FAIL_FAST);
        let out = p.output();
        assert_eq!(status.code(), Some(0), "{sig:?}: graceful exit:\n{out}");
        assert!(
            out.contains("Shutdown requested while connecting"),
            "{sig:?}:\n{out}"
        );
        assert!(out.contains("---> EXITING"), "{sig:?}:\n{out}");
    }
}

#[test]
fn an_unreachable_peer_is_reported_while_retrying() {
    let mut p = sink(
        "name=data,type=pull,method=connect,address=tcp://fmq-no-such-host.invalid:5556",
        &[],
    );
    // Reported every 5 s while the device keeps trying.
    p.wait_for_output("; still retrying", Duration::from_secs(30));
    assert!(p.try_status().is_none(), "still running:\n{}", p.output());
    p.signal(Signal::INT);
    assert_eq!(p.wait(FAIL_FAST).code(), Some(0), "{}", p.output());
}

#[test]
fn a_network_interface_that_does_not_exist_is_an_error() {
    // A bind channel without address binds on --network-interface; a typo used to bind on
    // every interface instead.
    let mut p = sink(
        "name=data,type=pull,method=bind",
        &["--network-interface", "fmq-no-such-if0"],
    );
    p.wait(FAIL_FAST);
    assert_clean_error(
        p.code(),
        &p.output(),
        "channel data[0] has no address to bind: network interface 'fmq-no-such-if0' does not exist (see /sys/class/net); check --network-interface",
    );
}
