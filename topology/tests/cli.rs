//! The command line: `--dry-run` prints the plan; a wrong topology file is exit code 2 with a
//! message naming the device and channel.

mod common;

use common::*;
use fairmq_test_support::Proc;

#[test]
fn dry_run_prints_the_plan() {
    require_devices();
    let file = topology_file("sampler-processors-sink.json");
    let mut p = Proc::spawn(
        topology_bin(),
        &[file.to_str().unwrap(), "--dry-run", "--session", "s"],
    );
    let out = p.success();
    for expected in [
        "topology 'sampler-processors-sink': 3 node slot(s) on 1 host(s), 6 device instance(s), 2 connection(s); session s",
        "slot 1 (group processing) on local (127.0.0.1): processor-0, processor-1",
        "#0 (sampler.data -> processor.data-in): shmem over ipc (all peers on one node); sampler binds (1 instance(s)), processor connects (4 instance(s))",
        "data[0]      push  bind     shmem   ipc:///tmp/fmqt-s-local-sampler-0.data",
        "--id processor-3 --session s-local --transport shmem -P p:odc --odc-controller 127.0.0.1:<port>",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // With --launcher slurm outside an allocation: symbolic nodes, tcp between them.
    let mut p = Proc::spawn(
        topology_bin(),
        &[
            file.to_str().unwrap(),
            "--dry-run",
            "--launcher",
            "slurm",
            "--session",
            "s",
        ],
    );
    let out = p.success();
    for expected in [
        "3 node slot(s) on 3 host(s)",
        "slot 2 (group processing) on node2 (address from Slurm at launch): processor-2, processor-3",
        "zeromq over tcp (peers on different nodes)",
        "--session s-node2 --transport zeromq",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

#[test]
fn a_wrong_topology_names_the_device_and_channel() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(topology_file("sampler-processors-sink.json"))
        .unwrap()
        .replace("\"to\": \"sink.data\"", "\"to\": \"sink.input\"");
    let file = dir.path().join("bad.json");
    std::fs::write(&file, text).unwrap();
    let mut p = Proc::spawn(topology_bin(), &[file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(p.code(), 2);
    let out = p.output();
    assert!(
        out.contains(
            "connection #1: \"to\": device 'sink' has no channel 'input'; its channels are: data"
        ),
        "{out}"
    );
}

#[test]
fn a_missing_executable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(topology_file("sampler-processors-sink.json"))
        .unwrap()
        .replace("\"fairmq-proxy\"", "\"fairmq-no-such-device\"");
    let file = dir.path().join("missing.json");
    std::fs::write(&file, text).unwrap();
    let mut p = Proc::spawn(topology_bin(), &[file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(p.code(), 2);
    let out = p.output();
    assert!(
        out.contains("device 'processor': executable 'fairmq-no-such-device' not found"),
        "{out}"
    );
}
