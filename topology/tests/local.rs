//! `--launcher local`: the topologies of `topologies/` on this machine (every node slot on
//! one host, so every connection is shmem over ipc), driven by the controller through the odc
//! plugin; exact counts; a processor SIGKILLed mid-run; a device that cannot start.

mod common;

use common::*;
use fairmq_test_support::{signal, Signal};

#[test]
fn sampler_processors_sink_runs_locally_with_exact_counts() {
    let mut run = Run::start(
        &topology_file("sampler-processors-sink.json"),
        "local",
        &["local"],
        &[],
    );
    let (code, out) = run.finish();
    let s = run.summary(&out);
    assert_eq!(code, 0, "output:\n{out}");
    assert_eq!(s["result"], "ok", "{out}");
    // 100000 messages, nothing lost, each processor got some.
    assert_eq!(
        counts(device(&s, "sampler-0"), "data"),
        (0, 100_000),
        "{out}"
    );
    assert_eq!(total(&s, "processor-", "data-in"), (100_000, 0), "{out}");
    assert_eq!(total(&s, "processor-", "data-out"), (0, 100_000), "{out}");
    assert_eq!(counts(device(&s, "sink-0"), "data"), (100_000, 0), "{out}");
    for i in 0..4 {
        let (n, _) = counts(device(&s, &format!("processor-{i}")), "data-in");
        assert!(n > 0, "processor-{i} received nothing: {out}");
    }
    // One host: shmem everywhere, over ipc.
    for d in devices(&s) {
        assert_eq!(d["state"], "EXITED", "{out}");
        assert!(
            d["exit"].as_str().unwrap().starts_with("exit code 0"),
            "{out}"
        );
        for c in d["channels"].as_array().unwrap() {
            assert_eq!(c["transport"], "shmem", "{d}");
            assert!(
                c["address"]
                    .as_str()
                    .unwrap()
                    .starts_with("ipc:///tmp/fmqt-"),
                "{d}"
            );
        }
    }
    assert_lifecycle(&s);
    assert!(
        out.contains("summary: topology 'sampler-processors-sink' (local"),
        "{out}"
    );
    assert!(out.contains("nothing lost"), "{out}");
    run.assert_clean();
}

#[test]
fn processors_collectors_run_locally() {
    let mut run = Run::start(
        &topology_file("processors-collectors.json"),
        "local",
        &["local"],
        &[],
    );
    let (code, out) = run.finish();
    let s = run.summary(&out);
    assert_eq!(code, 0, "output:\n{out}");
    assert_eq!(
        counts(device(&s, "sampler-0"), "data"),
        (0, 50_000),
        "{out}"
    );
    assert_eq!(total(&s, "collector-", "data-in"), (50_000, 0), "{out}");
    assert_eq!(counts(device(&s, "sink-0"), "data"), (50_000, 0), "{out}");
    assert_lifecycle(&s);
    run.assert_clean();
}

#[test]
fn a_processor_killed_mid_run_is_reported_and_the_rest_stop() {
    let mut run = Run::start(
        &topology_file("sampler-processors-sink.json"),
        "local",
        &["local"],
        &[],
    );
    let status = run.wait_status("processor-2 RUNNING and 10000 messages at the sink", |s| {
        device(s, "processor-2")["state"] == "RUNNING"
            && counts(device(s, "sink-0"), "data").0 >= 10_000
    });
    let pid = device(&status, "processor-2")["pid"].as_u64().unwrap() as u32;
    signal(pid, Signal::KILL);
    let (code, out) = run.finish();
    let s = run.summary(&out);
    assert_eq!(code, 1, "output:\n{out}");
    assert_eq!(s["result"], "failed", "{out}");
    let p2 = device(&s, "processor-2");
    assert!(
        p2["failure"]
            .as_str()
            .unwrap()
            .starts_with("died in state RUNNING"),
        "{p2}"
    );
    assert_eq!(p2["exit"], "killed by signal 9 (SIGKILL)", "{p2}");
    assert!(
        out.contains(&format!(
            "FAILED: processor-2 on node local, pid {pid}: died in state RUNNING"
        )),
        "{out}"
    );
    assert!(
        out.contains("last ") && out.contains("fair::mq::Device running..."),
        "{out}"
    );
    // The others were stopped in order and exited cleanly.
    for d in devices(&s).iter().filter(|d| d["id"] != "processor-2") {
        assert_eq!(d["state"], "EXITED", "{out}");
        assert!(
            d["exit"].as_str().unwrap().starts_with("exit code 0"),
            "{out}"
        );
    }
    // The sink did not get everything.
    assert!(counts(device(&s, "sink-0"), "data").0 < 100_000, "{out}");
    run.assert_clean();
}

#[test]
fn a_device_that_cannot_start_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(topology_file("sampler-processors-sink.json"))
        .unwrap()
        .replace("\"--msg-size\", \"1000\"", "\"--no-such-option\", \"1\"");
    let file = dir.path().join("bad-option.json");
    std::fs::write(&file, text).unwrap();
    let mut run = Run::start(&file, "local", &["local"], &[]);
    let (code, out) = run.finish();
    assert_eq!(code, 1, "output:\n{out}");
    let s = run.summary(&out);
    let sampler = device(&s, "sampler-0");
    assert_eq!(sampler["exit"], "exit code 1", "{sampler}");
    assert!(
        sampler["failure"]
            .as_str()
            .unwrap()
            .contains("ended (exit code 1)"),
        "{sampler}"
    );
    assert!(out.contains("FAILED: sampler-0 on node local"), "{out}");
    assert!(
        out.contains("no-such-option"),
        "the sampler's log is shown: {out}"
    );
    for d in devices(&s).iter().filter(|d| d["id"] != "sampler-0") {
        assert_eq!(d["state"], "EXITED", "{out}");
    }
    run.assert_clean();
}

#[test]
fn devices_that_lose_their_controller_shut_down_in_order() {
    let mut run = Run::start(
        &topology_file("sampler-processors-sink.json"),
        "local",
        &["local"],
        &[],
    );
    let status = run.wait_status("every device RUNNING", |s| {
        devices(s).iter().all(|d| d["state"] == "RUNNING")
    });
    run.proc.kill();
    let pids: Vec<u32> = devices(&status)
        .iter()
        .map(|d| d["pid"].as_u64().unwrap() as u32)
        .collect();
    fairmq_test_support::wait_until(RUN_TIMEOUT, "every device to exit", || {
        pids.iter().all(|p| fairmq_test_support::process_gone(*p))
    });
    for d in devices(&status) {
        let log = std::path::PathBuf::from(d["log"].as_str().unwrap());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("odc: lost the connection to the controller"),
            "{}: {text}",
            d["id"]
        );
        assert_eq!(
            states_in_log(&log).last().map(String::as_str),
            Some("EXITING"),
            "{text}"
        );
    }
    // The devices removed their shared memory themselves (the ipc files are the cleanup's,
    // which did not run).
    for h in &run.hosts {
        let s = fairmq_topology::plan::host_session(&run.session, h);
        assert!(fairmq_topology::cleanup::shm_leftovers(&s).is_empty());
    }
}
