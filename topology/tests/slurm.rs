//! `--launcher slurm` on the three-node test cluster (n1, n2, n3 on 127.0.0.11..13; see
//! topology/ci/slurm-up.sh). Ignored by default: they need the cluster. Run them with
//!
//! ```text
//! topology/ci/slurm-up.sh                                # as root, once
//! cargo test -p fairmq-topology --test slurm -- --ignored
//! ```
//!
//! (`.ci/run` does both, and again after `topology/ci/slurm-up.sh --job-container`). Run without
//! a reachable cluster, they fail and say so: asked for explicitly, they never pass without Slurm.
//!
//! With `job_container/tmpfs` every job has a private `/dev/shm` on each node: the tests then
//! look at a node's shared memory from inside the job (`srun --overlap` on that node) while it
//! runs, and check afterwards that the job's directories are gone.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use fairmq_shmem::ShmId;
use fairmq_test_support::{signal, wait_until, Signal};
use fairmq_topology::cleanup::shm_leftovers;
use fairmq_topology::launch::slurm::job_container_type;
use fairmq_topology::plan::host_session;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// Panics unless `sinfo` shows the nodes n1, n2 and n3 up.
fn require_cluster() {
    let out = Command::new("sinfo")
        .args(["-h", "-N", "-o", "%N %t"])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "no Slurm cluster reachable (sinfo: {}); start the test cluster with topology/ci/slurm-up.sh (as root), then run cargo test -p fairmq-topology --test slurm -- --ignored",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "no Slurm cluster reachable (sinfo: {e}); install and start the test cluster with topology/ci/slurm-up.sh (as root), then run cargo test -p fairmq-topology --test slurm -- --ignored"
        ),
    };
    for n in NODES {
        let up = text.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(n)
                && f.next().is_some_and(|s| {
                    ["idle", "mix", "alloc", "comp"].contains(&s.trim_end_matches('*'))
                })
        });
        assert!(
            up,
            "Slurm node {n} is not up (sinfo says:\n{text}); start the test cluster with topology/ci/slurm-up.sh"
        );
    }
}

/// The base paths of job_container/tmpfs per node, from /etc/slurm/job_container.conf (as
/// topology/ci/slurm-up.sh writes it), if the cluster uses it.
fn job_container_bases() -> Option<Vec<(String, PathBuf)>> {
    if job_container_type().as_deref() != Some("job_container/tmpfs") {
        return None;
    }
    let text = std::fs::read_to_string("/etc/slurm/job_container.conf").unwrap_or_default();
    Some(
        text.lines()
            .filter_map(|l| {
                let mut node = None;
                let mut base = None;
                for f in l.split_whitespace() {
                    if let Some(n) = f.strip_prefix("NodeName=") {
                        node = Some(n.to_owned());
                    }
                    if let Some(b) = f.strip_prefix("BasePath=") {
                        base = Some(PathBuf::from(b));
                    }
                }
                Some((node?, base?))
            })
            .collect(),
    )
}

/// The objects of `node`'s session of this run in `/dev/shm` as the node's tasks of job `job`
/// see them (from inside the job with job_container/tmpfs).
fn node_shm(run: &Run, job: &str, node: &str) -> Vec<String> {
    let session = host_session(&run.session, node);
    if job_container_bases().is_none() {
        return shm_leftovers(&session);
    }
    let prefix = ShmId::from_session(&session).prefix();
    let out = Command::new("srun")
        .args([
            &format!("--jobid={job}"),
            "--overlap",
            "--nodes=1",
            "--ntasks=1",
            &format!("--nodelist={node}"),
            "ls",
            "/dev/shm",
        ])
        .output()
        .expect("srun");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Asserts that no node keeps anything of the run: its sessions are not in the host's
/// `/dev/shm` and, with job_container/tmpfs, the job's directories are gone.
fn assert_nodes_clean(run: &Run, summary: &serde_json::Value) {
    run.assert_clean();
    let (Some(bases), Some(job)) = (job_container_bases(), summary["job"].as_str()) else {
        return;
    };
    for (node, base) in bases {
        let dir = base.join(&node).join(job);
        wait_until(
            Duration::from_secs(60),
            &format!("job_container/tmpfs to remove {}", dir.display()),
            || !dir.exists(),
        );
    }
}

fn start(file: &str, extra: &[&str]) -> Run {
    require_cluster();
    Run::start(&topology_file(file), "slurm", &NODES, extra)
}

#[test]
#[ignore = "needs the Slurm test cluster: topology/ci/slurm-up.sh, then cargo test -p fairmq-topology --test slurm -- --ignored"]
fn sampler_processors_sink_on_three_nodes_with_exact_counts() {
    let mut run = start("sampler-processors-sink.json", &[]);
    let (code, out) = run.finish();
    let s = run.summary(&out);
    assert_eq!(code, 0, "output:\n{out}");
    assert_eq!(s["result"], "ok", "{out}");
    assert!(s["job"].as_str().is_some_and(|j| !j.is_empty()), "{s}");
    // Placement: sampler and sink on n1, two processors on n2 and two on n3.
    for (id, node) in [
        ("sampler-0", "n1"),
        ("sink-0", "n1"),
        ("processor-0", "n2"),
        ("processor-1", "n2"),
        ("processor-2", "n3"),
        ("processor-3", "n3"),
    ] {
        assert_eq!(device(&s, id)["node"], node, "{out}");
    }
    // 100000 messages, nothing lost.
    assert_eq!(
        counts(device(&s, "sampler-0"), "data"),
        (0, 100_000),
        "{out}"
    );
    assert_eq!(total(&s, "processor-", "data-in"), (100_000, 0), "{out}");
    assert_eq!(total(&s, "processor-", "data-out"), (0, 100_000), "{out}");
    assert_eq!(counts(device(&s, "sink-0"), "data"), (100_000, 0), "{out}");
    // Between nodes: zeromq over tcp on n1's loopback address.
    for d in devices(&s) {
        assert_eq!(d["state"], "EXITED", "{out}");
        assert!(
            d["exit"].as_str().unwrap().starts_with("exit code 0"),
            "{out}"
        );
        for c in d["channels"].as_array().unwrap() {
            assert_eq!(c["transport"], "zeromq", "{d}");
            let a = c["address"].as_str().unwrap();
            assert!(a.starts_with("tcp://127.0.0.11:"), "{d}");
        }
    }
    assert_lifecycle(&s);
    for c in s["cleanup"].as_array().unwrap() {
        assert_eq!(c["left"].as_array().unwrap().len(), 0, "{c}");
    }
    assert_nodes_clean(&run, &s);
}

#[test]
#[ignore = "needs the Slurm test cluster: topology/ci/slurm-up.sh, then cargo test -p fairmq-topology --test slurm -- --ignored"]
fn a_processor_killed_mid_run_on_slurm_is_reported_with_its_node() {
    let mut run = start("sampler-processors-sink.json", &[]);
    let status = run.wait_status("processor-2 RUNNING and 10000 messages at the sink", |s| {
        device(s, "processor-2")["state"] == "RUNNING"
            && counts(device(s, "sink-0"), "data").0 >= 10_000
    });
    let pid = device(&status, "processor-2")["pid"].as_u64().unwrap() as u32;
    signal(pid, Signal::KILL);
    let (code, out) = run.finish();
    let s = run.summary(&out);
    assert_ne!(code, 0, "output:\n{out}");
    assert_eq!(s["result"], "failed", "{out}");
    let p2 = device(&s, "processor-2");
    assert_eq!(p2["node"], "n3", "{p2}");
    assert!(
        p2["failure"]
            .as_str()
            .unwrap()
            .starts_with("died in state RUNNING"),
        "{p2}"
    );
    assert!(
        p2["exit"]
            .as_str()
            .unwrap()
            .starts_with("Killed (srun task 4)"),
        "{p2}"
    );
    assert!(
        out.contains(&format!(
            "FAILED: processor-2 on node n3, pid {pid}: died in state RUNNING"
        )),
        "{out}"
    );
    assert!(
        out.contains("fair::mq::Device running..."),
        "the last log lines: {out}"
    );
    for d in devices(&s).iter().filter(|d| d["id"] != "processor-2") {
        assert_eq!(d["state"], "EXITED", "{out}");
        assert!(
            d["exit"].as_str().unwrap().starts_with("exit code 0"),
            "{out}"
        );
    }
    assert_nodes_clean(&run, &s);
}

#[test]
#[ignore = "needs the Slurm test cluster: topology/ci/slurm-up.sh, then cargo test -p fairmq-topology --test slurm -- --ignored"]
fn processors_and_collectors_meet_over_shmem_on_their_nodes() {
    let mut run = start("processors-collectors.json", &[]);
    // While it runs, n2 and n3 have their shared-memory sessions (n1 uses only tcp).
    let status = run.wait_status("every device RUNNING", |s| {
        devices(s)
            .iter()
            .all(|d| d["state"] == "RUNNING" || d["state"] == "READY")
    });
    let job = status["job"].as_str().unwrap().to_owned();
    for n in ["n2", "n3"] {
        let objects = node_shm(&run, &job, n);
        assert!(!objects.is_empty(), "no shared memory of {n} while running");
    }
    assert!(node_shm(&run, &job, "n1").is_empty());
    let (code, out) = run.finish();
    let s = run.summary(&out);
    assert_eq!(code, 0, "output:\n{out}");
    assert_eq!(
        counts(device(&s, "sampler-0"), "data"),
        (0, 50_000),
        "{out}"
    );
    assert_eq!(total(&s, "processor-", "data-out"), (0, 50_000), "{out}");
    assert_eq!(total(&s, "collector-", "data-in"), (50_000, 0), "{out}");
    assert_eq!(counts(device(&s, "sink-0"), "data"), (50_000, 0), "{out}");
    for (id, node) in [("collector-0", "n2"), ("collector-1", "n3")] {
        let c = device(&s, id);
        assert_eq!(c["node"], node);
        let ch = &c["channels"][0];
        assert_eq!(ch["name"], "data-in");
        assert_eq!(ch["transport"], "shmem", "{c}");
        assert_eq!(ch["peers"], 2, "the two processors of {node}: {c}");
    }
    assert_lifecycle(&s);
    assert_nodes_clean(&run, &s);
}

#[test]
#[ignore = "needs the Slurm test cluster: topology/ci/slurm-up.sh, then cargo test -p fairmq-topology --test slurm -- --ignored"]
fn a_shmem_processor_killed_on_slurm_leaves_nothing_in_dev_shm() {
    let mut run = start("processors-collectors.json", &[]);
    let status = run.wait_status("processor-0 RUNNING and 5000 messages at the sink", |s| {
        device(s, "processor-0")["state"] == "RUNNING"
            && counts(device(s, "sink-0"), "data").0 >= 5_000
    });
    let job = status["job"].as_str().unwrap().to_owned();
    assert!(!node_shm(&run, &job, "n2").is_empty());
    let pid = device(&status, "processor-0")["pid"].as_u64().unwrap() as u32;
    signal(pid, Signal::KILL);
    let (code, out) = run.finish();
    assert_ne!(code, 0, "output:\n{out}");
    let s = run.summary(&out);
    assert_eq!(device(&s, "processor-0")["node"], "n2");
    assert!(
        out.contains(&format!("FAILED: processor-0 on node n2, pid {pid}")),
        "{out}"
    );
    assert_nodes_clean(&run, &s);
}

#[test]
#[ignore = "needs the Slurm test cluster: topology/ci/slurm-up.sh, then cargo test -p fairmq-topology --test slurm -- --ignored"]
fn more_nodes_than_the_cluster_has_fail_at_once() {
    require_cluster();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(topology_file("sampler-processors-sink.json"))
        .unwrap()
        .replace("\"nodes\": 2", "\"nodes\": 5");
    let file = dir.path().join("six-nodes.json");
    std::fs::write(&file, text).unwrap();
    let mut run = Run::start(&file, "slurm", &[], &["--allocation-timeout", "5"]);
    let (code, out) = run.finish();
    assert_ne!(code, 0, "output:\n{out}");
    assert!(out.contains("salloc: error"), "{out}");
}
