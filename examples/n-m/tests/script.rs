//! FairMQ's n-m topologies in small, over zeromq and over shmem (FairMQ has no test script
//! for this example; these follow `fairmq-start-ex-n-m.sh` and `fairmq-start-ex-n-m-pair.sh`):
//! one synchronizer (`--rate 100`), two senders, two receivers (`--num-senders 2
//! --max-timeframes 3`). Each receiver must complete 3 time frames, all with ids it is
//! responsible for (`id % 2` = its index), each assembled from the sub-time frames of both
//! senders (checked from its debug log), and exit 0; the synchronizer and the senders are
//! then stopped with SIGINT and must exit 0 as well; nothing of the session may be left in
//! /dev/shm. Over shmem the `sync` channel (PUB/SUB, which FairMQ's shmem transport does not
//! support) is given `transport=zeromq`.

use std::collections::BTreeSet;

use fairmq_test_support::example::Script;
use fairmq_test_support::over_each_transport;
use fairmq_test_support::{Session, Signal, TIMEOUT};

const SYNCHRONIZER: &str = env!("CARGO_BIN_EXE_fairmq-ex-n-m-synchronizer");
const SENDER: &str = env!("CARGO_BIN_EXE_fairmq-ex-n-m-sender");
const RECEIVER: &str = env!("CARGO_BIN_EXE_fairmq-ex-n-m-receiver");

const SENDERS: usize = 2;
const RECEIVERS: usize = 2;
const TIMEFRAMES: usize = 3;
const SUBTIMEFRAME_SIZE: usize = 1000;

/// How the senders reach the receivers.
#[derive(Clone, Copy)]
enum Topology {
    /// `fairmq-start-ex-n-m.sh`: push (connect to every receiver) → pull (bind).
    PushPull,
    /// `fairmq-start-ex-n-m-pair.sh`: one pair socket per sender-receiver pair.
    Pair,
}

/// The number after `prefix` in `line`, if any.
fn number_after(line: &str, prefix: &str) -> Option<u64> {
    let rest = line.split(prefix).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks one receiver's log.
fn check_receiver(out: &str, index: usize) {
    let completed: Vec<u64> = out
        .lines()
        .filter_map(|l| number_after(l, "Successfully completed timeframe #"))
        .collect();
    assert_eq!(completed.len(), TIMEFRAMES, "{out}");
    for id in &completed {
        assert_eq!(*id as usize % RECEIVERS, index, "time frame #{id}:\n{out}");
        let senders: BTreeSet<u64> = out
            .lines()
            .filter(|l| number_after(l, "Received sub-time frame #") == Some(*id))
            .map(|l| {
                assert!(l.contains(&format!("({SUBTIMEFRAME_SIZE} bytes)")), "{l}");
                number_after(l, " from Sender").expect("a sender index")
            })
            .collect();
        assert_eq!(
            senders,
            (0..SENDERS as u64).collect::<BTreeSet<_>>(),
            "time frame #{id}:\n{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "Reached configured maximum number of timeframes ({TIMEFRAMES}). Exiting RUNNING state."
        )),
        "{out}"
    );
}

fn run(transport: &str, topology: Topology) {
    let session = Session::new("exnm");
    let s = Script::new(&session, transport);
    let sync = s.address("sync");
    // FairMQ's shmem transport has no PUB/SUB: over shmem the `sync` channel uses zeromq
    // (a per-channel transport), the `data` channels shmem.
    let sync_transport = match transport {
        "shmem" => ",transport=zeromq",
        _ => "",
    };
    // Pair: one address per (receiver, sender); push/pull: one per receiver.
    let addr = |r: usize, snd: usize| match topology {
        Topology::PushPull => s.address(&format!("data{r}")),
        Topology::Pair => s.address(&format!("data{r}_{snd}")),
    };
    let (sock_out, sock_in) = match topology {
        Topology::PushPull => ("push", "pull"),
        Topology::Pair => ("pair", "pair"),
    };

    let mut receivers: Vec<_> = (0..RECEIVERS)
        .map(|r| {
            let addresses: Vec<String> = match topology {
                Topology::PushPull => vec![format!("address={}", addr(r, 0))],
                Topology::Pair => (0..SENDERS)
                    .map(|snd| format!("address={}", addr(r, snd)))
                    .collect(),
            };
            let data = format!(
                "name=data,type={sock_in},method=bind,{}",
                addresses.join(",")
            );
            s.device(
                RECEIVER,
                &format!("Receiver{}", r + 1),
                &[
                    "--num-senders",
                    &SENDERS.to_string(),
                    "--max-timeframes",
                    &TIMEFRAMES.to_string(),
                    "--channel-config",
                    &data,
                ],
            )
        })
        .collect();
    let mut senders: Vec<_> = (0..SENDERS)
        .map(|snd| {
            let addresses: Vec<String> = (0..RECEIVERS)
                .map(|r| format!("address={}", addr(r, snd)))
                .collect();
            let data = format!(
                "name=data,type={sock_out},method=connect,{}",
                addresses.join(",")
            );
            s.device(
                SENDER,
                &format!("Sender{}", snd + 1),
                &[
                    "--channel-config",
                    &format!("name=sync,type=sub,method=connect,address={sync}{sync_transport}"),
                    &data,
                    "--sender-index",
                    &snd.to_string(),
                    "--subtimeframe-size",
                    &SUBTIMEFRAME_SIZE.to_string(),
                    "--num-receivers",
                    &RECEIVERS.to_string(),
                ],
            )
        })
        .collect();
    let mut synchronizer = s.device(
        SYNCHRONIZER,
        "Sync",
        &[
            "--channel-config",
            &format!("name=sync,type=pub,method=bind,address={sync}{sync_transport}"),
            "--rate",
            "100",
        ],
    );

    let outs: Vec<String> = receivers.iter_mut().map(|r| r.success()).collect();
    synchronizer.signal(Signal::INT);
    for snd in &senders {
        snd.signal(Signal::INT);
    }
    synchronizer.success();
    for snd in &mut senders {
        snd.success();
    }
    for (r, out) in outs.iter().enumerate() {
        check_receiver(out, r);
    }
    session.wait_clean(TIMEOUT);
    session.assert_clean();
}

over_each_transport!(|t| run(t, Topology::PushPull));

over_each_transport!(|t| run(t, Topology::Pair) => pair_over_zeromq, pair_over_shmem);
