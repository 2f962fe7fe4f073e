//! The device pairs and topologies of issue 3, with the real binaries over ipc: every device
//! exits 0 and every sink reports exactly the number of messages sent.

mod common;

use common::{bin, received, Ipc, Proc, Signal};

const N: &str = "100000";

fn chan(name: &str, ty: &str, method: &str, addresses: &[&str]) -> String {
    let mut s = format!("name={name},type={ty},method={method}");
    for a in addresses {
        s.push_str(",address=");
        s.push_str(a);
    }
    s
}

/// The command of the issue, at the default message size (1 MB): the sampler binds, the sink
/// connects.
#[test]
fn bsampler_to_sink_default_size_sampler_binds() {
    let ipc = Ipc::new("pair_default");
    let a = ipc.address();
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--transport",
            "zeromq",
            "--id",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--channel-config",
            &chan("data", "pull", "connect", &[&a]),
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--transport",
            "zeromq",
            "--id",
            "s",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--channel-config",
            &chan("data", "push", "bind", &[&a]),
        ],
    );
    // 100 GB through zeromq in a debug build, beside the other tests on two cores: be patient.
    sampler.wait(std::time::Duration::from_secs(900));
    sink.wait(std::time::Duration::from_secs(60));
    let s_out = sampler.success();
    let k_out = sink.success();
    assert!(s_out.contains("Done 100000 iterations"), "{s_out}");
    assert_eq!(received(&k_out), 100_000, "{k_out}");
}

/// Nothing is lost at the end: the sink binds, the sampler connects, default linger.
#[test]
fn nothing_lost_when_sink_binds_and_sampler_connects() {
    let ipc = Ipc::new("pair_nolose");
    let a = ipc.address();
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--channel-config",
            &chan("data", "pull", "bind", &[&a]),
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--msg-size",
            "10000",
            "--channel-config",
            &chan("data", "push", "connect", &[&a]),
        ],
    );
    sampler.success();
    let out = sink.success();
    assert_eq!(received(&out), 100_000, "{out}");
}

#[test]
fn bsampler_to_sink_through_mq_config() {
    let ipc = Ipc::new("pair_json");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("topology.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"fairMQOptions": {{"devices": [
                {{"id": "sampler1", "channels": [{{"name": "data", "type": "push", "method": "connect", "address": "{a}"}}]}},
                {{"key": "sink", "channels": [{{"name": "data", "type": "pull", "method": "bind",
                   "rateLogging": 0, "sockets": [{{"address": "{a}"}}]}}]}}
            ]}}}}"#,
            a = ipc.address()
        ),
    )
    .unwrap();
    let json = json.display().to_string();
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink1",
            "--config-key",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--mq-config",
            &json,
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler1",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--msg-size",
            "1000",
            "--mq-config",
            &json,
        ],
    );
    sampler.success();
    let out = sink.success();
    assert_eq!(received(&out), 100_000, "{out}");
    // rateLogging 0 in the JSON: the sink logs no rates.
    assert!(!out.contains("data[0]: in:"), "{out}");
}

#[test]
fn through_a_proxy() {
    let (i, o) = (Ipc::new("proxy_in"), Ipc::new("proxy_out"));
    let mut proxy = Proc::device(
        bin("fairmq-proxy"),
        &[
            "--id",
            "proxy",
            "--control",
            "static",
            "--channel-config",
            &chan("data-in", "pull", "bind", &[&i.address()]),
            &chan("data-out", "push", "bind", &[&o.address()]),
        ],
    );
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--channel-config",
            &chan("data", "pull", "connect", &[&o.address()]),
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--msg-size",
            "1000",
            "--channel-config",
            &chan("data", "push", "connect", &[&i.address()]),
        ],
    );
    sampler.success();
    let out = sink.success();
    assert_eq!(received(&out), 100_000, "{out}");
    proxy.signal(Signal::INT);
    proxy.success();
}

#[test]
fn splitter_into_two_sinks() {
    let i = Ipc::new("split_in");
    let (o1, o2) = (Ipc::new("split_o1"), Ipc::new("split_o2"));
    let mut splitter = Proc::device(
        bin("fairmq-splitter"),
        &[
            "--id",
            "splitter",
            "--control",
            "static",
            "--channel-config",
            &chan("data-in", "pull", "bind", &[&i.address()]),
            &chan("data-out", "push", "bind", &[&o1.address(), &o2.address()]),
        ],
    );
    let mut sinks: Vec<Proc> = [&o1, &o2]
        .iter()
        .enumerate()
        .map(|(k, o)| {
            Proc::device(
                bin("fairmq-sink"),
                &[
                    "--id",
                    &format!("sink{k}"),
                    "--control",
                    "static",
                    "--max-iterations",
                    "50000",
                    "--channel-config",
                    &chan("data", "pull", "connect", &[&o.address()]),
                ],
            )
        })
        .collect();
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--msg-size",
            "1000",
            "--channel-config",
            &chan("data", "push", "connect", &[&i.address()]),
        ],
    );
    sampler.success();
    for s in &mut sinks {
        let out = s.success();
        assert_eq!(received(&out), 50_000, "{out}");
    }
    splitter.signal(Signal::INT);
    splitter.success();
}

#[test]
fn two_samplers_into_a_merger() {
    let (i1, i2, o) = (
        Ipc::new("merge_i1"),
        Ipc::new("merge_i2"),
        Ipc::new("merge_o"),
    );
    let mut merger = Proc::device(
        bin("fairmq-merger"),
        &[
            "--id",
            "merger",
            "--control",
            "static",
            "--channel-config",
            &chan("data-in", "pull", "bind", &[&i1.address(), &i2.address()]),
            &chan("data-out", "push", "bind", &[&o.address()]),
        ],
    );
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--channel-config",
            &chan("data", "pull", "connect", &[&o.address()]),
        ],
    );
    let mut samplers: Vec<Proc> = [&i1, &i2]
        .iter()
        .enumerate()
        .map(|(k, i)| {
            Proc::device(
                bin("fairmq-bsampler"),
                &[
                    "--id",
                    &format!("sampler{k}"),
                    "--control",
                    "static",
                    "--max-iterations",
                    "50000",
                    "--msg-size",
                    "1000",
                    "--channel-config",
                    &chan("data", "push", "connect", &[&i.address()]),
                ],
            )
        })
        .collect();
    for s in &mut samplers {
        s.success();
    }
    let out = sink.success();
    assert_eq!(received(&out), 100_000, "{out}");
    merger.signal(Signal::INT);
    merger.success();
}

#[test]
fn multiplier_into_two_sinks() {
    let (i, o1, o2) = (Ipc::new("mult_i"), Ipc::new("mult_o1"), Ipc::new("mult_o2"));
    let mut multiplier = Proc::device(
        bin("fairmq-multiplier"),
        &[
            "--id",
            "multiplier",
            "--control",
            "static",
            "--out-channel",
            "data-out",
            "--channel-config",
            &chan("data-in", "pull", "bind", &[&i.address()]),
            &chan("data-out", "push", "bind", &[&o1.address(), &o2.address()]),
        ],
    );
    let mut sinks: Vec<Proc> = [&o1, &o2]
        .iter()
        .enumerate()
        .map(|(k, o)| {
            Proc::device(
                bin("fairmq-sink"),
                &[
                    "--id",
                    &format!("sink{k}"),
                    "--control",
                    "static",
                    "--max-iterations",
                    N,
                    "--channel-config",
                    &chan("data", "pull", "connect", &[&o.address()]),
                ],
            )
        })
        .collect();
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--control",
            "static",
            "--max-iterations",
            N,
            "--msg-size",
            "1000",
            "--channel-config",
            &chan("data", "push", "connect", &[&i.address()]),
        ],
    );
    sampler.success();
    for s in &mut sinks {
        let out = s.success();
        assert_eq!(received(&out), 100_000, "{out}");
    }
    multiplier.signal(Signal::INT);
    multiplier.success();
}

#[test]
fn multipart_sampler_to_sink() {
    let ipc = Ipc::new("pair_multi");
    let a = ipc.address();
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink",
            "--control",
            "static",
            "--max-iterations",
            "1000",
            "--multipart",
            "true",
            "--channel-config",
            &chan("data", "pull", "bind", &[&a]),
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--control",
            "static",
            "--max-iterations",
            "1000",
            "--multipart",
            "true",
            "--num-parts",
            "3",
            "--msg-size",
            "100",
            "--channel-config",
            &chan("data", "push", "connect", &[&a]),
        ],
    );
    sampler.success();
    let out = sink.success();
    assert_eq!(received(&out), 1000, "{out}");
    // 3 parts of 100 bytes per message.
    assert!(out.contains("Received 1000 messages"), "{out}");
}

/// `--transport shmem` works through the runtime (the transport registers itself), and
/// nothing of the session is left in /dev/shm afterwards.
#[test]
fn bsampler_to_sink_over_shmem() {
    let ipc = Ipc::new("pair_shm");
    let a = ipc.address();
    let session = common::unique("session");
    let prefix = fairmq_shmem::ShmId::from_session(&session).prefix();
    let mut sink = Proc::device(
        bin("fairmq-sink"),
        &[
            "--id",
            "sink",
            "--transport",
            "shmem",
            "--session",
            &session,
            "--control",
            "static",
            "--max-iterations",
            "10000",
            "--channel-config",
            &chan("data", "pull", "bind", &[&a]),
        ],
    );
    let mut sampler = Proc::device(
        bin("fairmq-bsampler"),
        &[
            "--id",
            "sampler",
            "--transport",
            "shmem",
            "--session",
            &session,
            "--control",
            "static",
            "--max-iterations",
            "10000",
            "--channel-config",
            &chan("data", "push", "connect", &[&a]),
        ],
    );
    sampler.success();
    let out = sink.success();
    assert_eq!(received(&out), 10_000, "{out}");
    let leftovers: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left in /dev/shm: {leftovers:?}");
}
