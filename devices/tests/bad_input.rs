//! Bad input: each is a clear one-line error, a non-zero exit, and no panic.

mod common;

use common::{assert_clean_error, run};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn sampler(args: &[&str]) -> (i32, String) {
    let mut all = vec!["--id", "s", "--control", "static", "--max-iterations", "1"];
    all.extend_from_slice(args);
    run("fairmq-bsampler", &all)
}

#[test]
fn json_that_does_not_parse_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "bad.json",
        "{\"fairMQOptions\": {\n  \"devices\": [\n    {\"id\": \"s\",, }\n]}}",
    );
    let (code, out) = sampler(&["--mq-config", &f]);
    assert_clean_error(code, &out, &format!("{f}:3:"));
    assert!(out.contains("invalid JSON"), "{out}");
}

#[test]
fn missing_json_file() {
    let (code, out) = sampler(&["--mq-config", "/nonexistent/fmq_topology.json"]);
    assert_clean_error(
        code,
        &out,
        "cannot read channel configuration file '/nonexistent/fmq_topology.json'",
    );
}

#[test]
fn no_entry_for_the_device_id() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "t.json",
        r#"{"fairMQOptions": {"devices": [{"id": "other", "channels": []}, {"key": "third", "channels": []}]}}"#,
    );
    let (code, out) = sampler(&["--mq-config", &f]);
    assert_clean_error(code, &out, "no device entry with key or id 's'");
    assert!(out.contains("'other', 'third'"), "{out}");
}

#[test]
fn channel_without_type_method_or_address() {
    for (cfg, needle) in [
        (
            "name=data,method=bind,address=ipc:///tmp/fmq_bad_x",
            "no socket type given",
        ),
        (
            "name=data,type=push,address=ipc:///tmp/fmq_bad_x",
            "no method given",
        ),
        ("name=data,type=push,method=connect", "no address given"),
    ] {
        let (code, out) = sampler(&["--channel-config", cfg]);
        assert_clean_error(code, &out, needle);
        assert!(out.contains("channel data[0]"), "{out}");
    }
}

#[test]
fn unknown_socket_type_or_method() {
    let (code, out) = sampler(&[
        "--channel-config",
        "name=data,type=shove,method=bind,address=ipc:///tmp/fmq_bad_y",
    ]);
    assert_clean_error(code, &out, "Invalid channel type: 'shove'");
    let (code, out) = sampler(&[
        "--channel-config",
        "name=data,type=push,method=sideways,address=ipc:///tmp/fmq_bad_y",
    ]);
    assert_clean_error(code, &out, "invalid method 'sideways'; use bind or connect");
}

/// The error lists the registered transports (zeromq, and shmem when linked).
fn assert_lists_zeromq(out: &str) {
    let list = out
        .split("available transports are: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no transport list in:\n{out}"));
    let list = list.lines().next().unwrap_or("");
    assert!(list.split(", ").any(|t| t.trim() == "zeromq"), "{out}");
}

#[test]
fn unknown_transport_lists_the_known_ones() {
    let (code, out) = sampler(&[
        "--transport",
        "carrier-pigeon",
        "--channel-config",
        "name=data,type=push,method=bind,address=ipc:///tmp/fmq_bad_z",
    ]);
    assert_clean_error(code, &out, "unknown transport 'carrier-pigeon'");
    assert_lists_zeromq(&out);
    let (code, out) = sampler(&[
        "--channel-config",
        "name=data,type=push,method=bind,transport=smoke,address=ipc:///tmp/fmq_bad_z",
    ]);
    assert_clean_error(code, &out, "unknown transport 'smoke'");
    assert_lists_zeromq(&out);
}

#[test]
fn unknown_option() {
    let (code, out) = sampler(&["--no-such-option", "1"]);
    assert_clean_error(code, &out, "unknown option '--no-such-option'");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn negative_rate() {
    let (code, out) = sampler(&["--rate", "-5"]);
    assert_clean_error(code, &out, "invalid value '-5' for option --rate");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[test]
fn bad_option_values() {
    let (code, out) = sampler(&["--msg-size", "big"]);
    assert_clean_error(code, &out, "invalid value 'big' for option --msg-size");
    let (code, out) = sampler(&["--severity", "loud"]);
    assert_clean_error(code, &out, "unknown log severity 'loud'");
    let (code, out) = run("fairmq-multiplier", &["--id", "m", "--control", "static"]);
    assert_clean_error(code, &out, "--out-channel is required");
}

#[test]
fn channel_config_without_name() {
    let (code, out) = sampler(&[
        "--channel-config",
        "type=push,method=bind,address=ipc:///tmp/q",
    ]);
    assert_clean_error(
        code,
        &out,
        "missing channel name in argument of option --channel-config",
    );
}

#[test]
fn binding_an_address_in_use_fails_cleanly() {
    let ipc = common::Ipc::new("inuse");
    let chan = format!("name=data,type=pull,method=bind,address={}", ipc.address());
    let mut first = common::Proc::device(
        common::bin("fairmq-testdevice"),
        &[
            "--id",
            "a",
            "--control",
            "static",
            "--hook",
            "Run",
            "--action",
            "waitfor",
            "--channel-config",
            &chan,
        ],
    );
    first.wait_for_output("Sleeping for 60s in Run()", common::TIMEOUT);
    // zeromq's ipc bind replaces the socket file; use tcp for a real conflict.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (code, out) = sampler(&[
        "--channel-config",
        &format!("name=data,type=push,method=bind,autoBind=false,address=tcp://127.0.0.1:{port}"),
    ]);
    assert_clean_error(
        code,
        &out,
        "failed to attach channel data[0] (bind on tcp://127.0.0.1:",
    );
    first.signal(common::Signal::INT);
    first.success();
}
