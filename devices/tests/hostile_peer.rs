//! A shmem channel bound on tcp, reached by a peer outside the session (issue 11, item 4):
//! `fairmq-sink` drops a random 40-byte frame and forged descriptors (offsets inside segment
//! 0, single and multipart), warns about them naming the socket, keeps running and receives a
//! real sampler's messages afterwards; it exits 0 on SIGINT, and nothing of the session is
//! left. The hostile peer is a raw libzmq PUSH socket.

mod common;

use std::time::Duration;

use common::{bin, received, Proc, Signal};
use fairmq_test_support::{Rng, Session};

const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const WARNING: &str = "dropped a received frame that is no valid descriptor of session";

/// A device with its descriptors over libzmq (what a peer on the tcp port can reach), whatever
/// `FAIRMQ_SHM_METADATA_PATH` says in the environment.
fn device(program: std::path::PathBuf, args: &[&str]) -> Proc {
    Proc::device_with(program, args, |c| {
        c.env("FAIRMQ_SHM_METADATA_PATH", "zmq");
    })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

fn device_args<'a>(id: &'a str, session: &'a str, chan: &'a str) -> Vec<&'a str> {
    vec![
        "--id",
        id,
        "--transport",
        "shmem",
        "--session",
        session,
        "--control",
        "static",
        "--shm-segment-size",
        "16000000",
        "--channel-config",
        chan,
    ]
}

/// A FairMQ `MetaHeader` of a managed buffer (40 bytes).
fn header(size: u64, handle: i64) -> Vec<u8> {
    let mut b = vec![0u8; 40];
    b[0..8].copy_from_slice(&size.to_le_bytes());
    b[16..24].copy_from_slice(&handle.to_le_bytes());
    b[24..32].copy_from_slice(&(-1i64).to_le_bytes());
    b[36] = 1;
    b
}

/// Sends the hostile frames to `address`; returns how many.
fn attack(address: &str, multipart: bool) -> usize {
    let ctx = zmq::Context::new();
    let evil = ctx.socket(zmq::PUSH).unwrap();
    evil.set_linger(2000).unwrap();
    evil.connect(address).unwrap();
    let mut rng = Rng::new(40);
    let mut frames: Vec<Vec<u8>> = vec![(0..40).map(|_| rng.next_u64() as u8).collect()];
    let handles = [16i64, 128, 4096, 1_000_000];
    if multipart {
        let mut f = (handles.len() as u64).to_le_bytes().to_vec();
        for h in handles {
            f.extend(header(64, h));
        }
        frames.push(f);
        frames.push(u64::MAX.to_le_bytes().repeat(6));
    } else {
        for h in handles {
            frames.push(header(64, h));
            // Sealed shape, invented secret and tag.
            let mut sealed = header(64, h);
            sealed.extend(rng.next_u64().to_le_bytes());
            sealed.extend(rng.next_u64().to_le_bytes());
            frames.push(sealed);
        }
    }
    for f in &frames {
        evil.send(f, 0).unwrap();
    }
    drop(evil); // lingers until sent
    frames.len()
}

#[test]
fn a_sink_drops_forged_descriptors_and_keeps_receiving() {
    for multipart in [false, true] {
        let s = Session::new("hostile-sink");
        let a = format!("tcp://127.0.0.1:{}", free_port());
        let sink_chan =
            format!("name=data,type=pull,method=bind,address={a},autoBind=false,rateLogging=0");
        let mut sink_args = device_args("sink", &s.name, &sink_chan);
        sink_args.extend(["--max-iterations", "10"]);
        if multipart {
            sink_args.extend(["--multipart", "true"]);
        }
        let mut sink = device(bin("fairmq-sink"), &sink_args);
        sink.wait_for_output("---> RUNNING", STOP_TIMEOUT);
        attack(&a, multipart);
        sink.wait_for_output(WARNING, STOP_TIMEOUT);
        assert!(
            sink.try_status().is_none(),
            "the sink keeps running:\n{}",
            sink.output()
        );

        let sampler_chan = format!("name=data,type=push,method=connect,address={a},rateLogging=0");
        let mut sampler_args = device_args("sampler", &s.name, &sampler_chan);
        sampler_args.extend(["--max-iterations", "10", "--msg-size", "1000"]);
        if multipart {
            sampler_args.extend(["--multipart", "true"]);
        }
        let mut sampler = device(bin("fairmq-bsampler"), &sampler_args);
        let sampler_out = sampler.success();
        let status = sink.wait(STOP_TIMEOUT);
        let out = sink.output();
        assert_eq!(
            status.code(),
            Some(0),
            "sink:\n{out}\nsampler:\n{sampler_out}"
        );
        assert_eq!(
            received(&out),
            10,
            "every legitimate message arrives:\n{out}"
        );
        let warning = out.lines().find(|l| l.contains(WARNING)).unwrap();
        assert!(
            warning.contains("shmem socket "),
            "names the socket: {warning}"
        );
        assert!(
            warning.contains("(from peer 127.0.0.1)"),
            "names the peer: {warning}"
        );
        assert!(!out.contains("ERROR") && !out.contains("panicked"), "{out}");
        s.assert_clean();
    }
}

#[test]
fn a_sink_under_attack_exits_0_on_sigint() {
    let s = Session::new("hostile-sigint");
    let a = format!("tcp://127.0.0.1:{}", free_port());
    let sink_chan =
        format!("name=data,type=pull,method=bind,address={a},autoBind=false,rateLogging=0");
    let mut sink = device(
        bin("fairmq-sink"),
        &device_args("sink", &s.name, &sink_chan),
    );
    sink.wait_for_output("---> RUNNING", STOP_TIMEOUT);
    attack(&a, false);
    sink.wait_for_output(WARNING, STOP_TIMEOUT);
    assert!(
        sink.try_status().is_none(),
        "the sink keeps running:\n{}",
        sink.output()
    );
    sink.signal(Signal::INT);
    let status = sink.wait(STOP_TIMEOUT);
    let out = sink.output();
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(received(&out), 0, "{out}");
    assert!(out.contains("---> EXITING"), "{out}");
    s.assert_clean();
}
