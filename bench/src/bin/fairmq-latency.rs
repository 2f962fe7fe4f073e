//! `fairmq-latency`: one-way latency between two processes, ping-pong over a PAIR channel.
//!
//! For every transport (`shmem`, `zeromq`, and `raw` libzmq through the `zmq` crate) and size,
//! this process binds a PAIR socket on ipc, spawns itself as the echoing peer (`--role pong`),
//! sends `--round-trips` messages one at a time and times each round trip; the one-way latency
//! is half of it. The peer sends back the message it received (shmem: the same buffer, so no
//! payload is copied; zeromq: the libzmq message). Points are interleaved (every transport once
//! per size, then again) for `--repeats` rounds, and the table shows the median and the 99th
//! percentile of all one-way samples of a point.
//!
//! `--iceoryx2 <command>` runs an external ping-pong (for example iceoryx2's, built outside this
//! repository) in the same rounds: it is called as `<command> --size <bytes> --round-trips <n>`
//! and must print one line `one-way-ns <sample> <sample> ...` or `median-ns <m> p99-ns <p>`.
//!
//! Exit code 0 on success, 1 when a run failed, 2 on bad options.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use fairmq_transport::{create_transport, MessagePtr, SocketType, TransportConfig};

// Link the transports so that they register.
use fairmq_shmem as _;
use fairmq_zeromq as _;

/// How long one receive may wait before the run counts as failed.
const RECEIVE_TIMEOUT_MS: i64 = 20_000;

#[derive(Debug, Parser)]
#[command(name = "fairmq-latency", version)]
struct Cli {
    /// Message sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "64,1048576")]
    sizes: Vec<usize>,
    /// Transports: shmem, zeromq, raw (libzmq without fairmq-rs).
    #[arg(long, value_delimiter = ',', default_value = "shmem,zeromq,raw")]
    transports: Vec<String>,
    /// Round trips per run (after 100 unmeasured ones).
    #[arg(long, default_value_t = 10_000)]
    round_trips: usize,
    /// Runs per point, interleaved.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// An external ping-pong to run in the same rounds (see the module documentation).
    #[arg(long)]
    iceoryx2: Option<String>,
    /// Internal: `pong` makes this process the echoing peer.
    #[arg(long, hide = true)]
    role: Option<String>,
    #[arg(long, hide = true)]
    endpoint: Option<String>,
    #[arg(long, hide = true)]
    transport: Option<String>,
    #[arg(long, hide = true)]
    session: Option<String>,
    #[arg(long, hide = true)]
    count: Option<usize>,
}

/// One side of a ping-pong: send, receive, echo.
enum Side {
    /// A fairmq-rs transport.
    Fmq {
        factory: fairmq_transport::FactoryPtr,
        socket: fairmq_transport::SocketPtr,
    },
    /// libzmq through the `zmq` crate.
    Raw {
        _ctx: zmq::Context,
        socket: zmq::Socket,
    },
}

fn config(session: &str, id: &str) -> TransportConfig {
    TransportConfig::new(id).with("session", session)
}

impl Side {
    fn open(transport: &str, session: &str, id: &str) -> Result<Side> {
        Ok(match transport {
            "raw" => {
                let ctx = zmq::Context::new();
                let socket = ctx.socket(zmq::PAIR)?;
                Side::Raw { _ctx: ctx, socket }
            }
            name => {
                let factory = create_transport(name, &config(session, id))
                    .with_context(|| format!("transport {name}"))?;
                let socket = factory.new_socket(SocketType::Pair, "ping")?;
                Side::Fmq { factory, socket }
            }
        })
    }

    fn bind(&self, endpoint: &str) -> Result<()> {
        match self {
            Side::Raw { socket, .. } => socket.bind(endpoint)?,
            Side::Fmq { socket, .. } => {
                socket.bind(endpoint)?;
            }
        }
        Ok(())
    }

    fn connect(&self, endpoint: &str) -> Result<()> {
        match self {
            Side::Raw { socket, .. } => socket.connect(endpoint)?,
            Side::Fmq { socket, .. } => socket.connect(endpoint)?,
        }
        Ok(())
    }
}

/// The echoing peer: receives `count` messages and sends each back.
fn pong(cli: &Cli) -> Result<()> {
    let (Some(t), Some(ep), Some(session), Some(count)) = (
        cli.transport.as_deref(),
        cli.endpoint.as_deref(),
        cli.session.as_deref(),
        cli.count,
    ) else {
        bail!("--role pong needs --transport, --endpoint, --session and --count");
    };
    let side = Side::open(t, session, "pong")?;
    side.connect(ep)?;
    match &side {
        Side::Raw { socket, .. } => {
            socket.set_rcvtimeo(RECEIVE_TIMEOUT_MS as i32)?;
            let mut msg = zmq::Message::new();
            for _ in 0..count {
                socket.recv(&mut msg, 0).context("pong receive")?;
                socket.send(std::mem::replace(&mut msg, zmq::Message::new()), 0)?;
            }
        }
        Side::Fmq { factory, socket } => {
            let mut msg: MessagePtr = factory.new_message();
            for _ in 0..count {
                socket
                    .receive(&mut msg, RECEIVE_TIMEOUT_MS)
                    .map_err(|e| anyhow::anyhow!("pong receive: {e}"))?;
                socket
                    .send(&mut msg, RECEIVE_TIMEOUT_MS)
                    .map_err(|e| anyhow::anyhow!("pong send: {e}"))?;
            }
        }
    }
    Ok(())
}

/// One run: spawns the peer, measures `round_trips` round trips, returns one-way samples (ns).
fn ping(transport: &str, size: usize, round_trips: usize, run: usize) -> Result<Vec<u64>> {
    let tag = format!("{}-{run}-{transport}-{size}", std::process::id());
    let endpoint = format!("ipc:///tmp/fmq-latency-{tag}");
    let session = format!("lat{tag}");
    let warmup = 100;
    let side = Side::open(transport, &session, "ping")?;
    side.bind(&endpoint)?;
    let mut child: Child = Command::new(std::env::current_exe()?)
        .args(["--role", "pong", "--transport", transport, "--endpoint"])
        .arg(&endpoint)
        .args(["--session", &session, "--count"])
        .arg((warmup + round_trips).to_string())
        .stdin(Stdio::null())
        .spawn()
        .context("spawn the pong process")?;
    let result = (|| -> Result<Vec<u64>> {
        let mut samples = Vec::with_capacity(round_trips);
        match &side {
            Side::Raw { socket, .. } => {
                socket.set_rcvtimeo(RECEIVE_TIMEOUT_MS as i32)?;
                let mut back = zmq::Message::new();
                for i in 0..warmup + round_trips {
                    let t0 = Instant::now();
                    socket.send(zmq::Message::with_size(size), 0)?;
                    socket.recv(&mut back, 0).context("ping receive")?;
                    if i >= warmup {
                        samples.push(t0.elapsed().as_nanos() as u64 / 2);
                    }
                    anyhow::ensure!(back.len() == size, "echo of {} bytes", back.len());
                }
            }
            Side::Fmq { factory, socket } => {
                let mut back = factory.new_message();
                for i in 0..warmup + round_trips {
                    let t0 = Instant::now();
                    let mut msg = factory.new_message_with_size(size, None)?;
                    socket
                        .send(&mut msg, RECEIVE_TIMEOUT_MS)
                        .map_err(|e| anyhow::anyhow!("ping send: {e}"))?;
                    socket
                        .receive(&mut back, RECEIVE_TIMEOUT_MS)
                        .map_err(|e| anyhow::anyhow!("ping receive: {e}"))?;
                    if i >= warmup {
                        samples.push(t0.elapsed().as_nanos() as u64 / 2);
                    }
                    anyhow::ensure!(back.size() == size, "echo of {} bytes", back.size());
                }
            }
        }
        Ok(samples)
    })();
    let status = child.wait()?;
    drop(side);
    let _ = std::fs::remove_file(endpoint.trim_start_matches("ipc://"));
    let samples = result?;
    anyhow::ensure!(status.success(), "pong exited with {status}");
    Ok(samples)
}

/// An external ping-pong's samples or summary.
enum External {
    Samples(Vec<u64>),
    Summary { median: u64, p99: u64 },
}

fn external(command: &str, size: usize, round_trips: usize) -> Result<External> {
    let mut parts = command.split_whitespace();
    let program = parts.next().context("empty --iceoryx2 command")?;
    let out = Command::new(program)
        .args(parts)
        .args(["--size", &size.to_string(), "--round-trips"])
        .arg(round_trips.to_string())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {command}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{command} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["one-way-ns", rest @ ..] => {
                return Ok(External::Samples(
                    rest.iter().map(|w| w.parse()).collect::<Result<_, _>>()?,
                ))
            }
            ["median-ns", m, "p99-ns", p] => {
                return Ok(External::Summary {
                    median: m.parse()?,
                    p99: p.parse()?,
                })
            }
            _ => {}
        }
    }
    bail!("{command} printed no 'one-way-ns' or 'median-ns' line:\n{text}")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if cli.role.as_deref() == Some("pong") {
        return match pong(&cli) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fairmq-latency pong: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    for t in &cli.transports {
        if !["shmem", "zeromq", "raw"].contains(&t.as_str()) {
            eprintln!("error: unknown transport '{t}' (--transports); use shmem, zeromq, raw");
            return ExitCode::from(2);
        }
    }
    let mut names: Vec<String> = cli.transports.clone();
    if cli.iceoryx2.is_some() {
        names.push("iceoryx2".into());
    }
    // samples[size][name], summaries for external programs that only print them.
    let mut samples: Vec<Vec<Vec<u64>>> = vec![vec![Vec::new(); names.len()]; cli.sizes.len()];
    let mut summaries: Vec<Vec<Vec<(u64, u64)>>> =
        vec![vec![Vec::new(); names.len()]; cli.sizes.len()];
    let mut failed = false;
    for run in 0..cli.repeats {
        for (si, &size) in cli.sizes.iter().enumerate() {
            for (ni, name) in names.iter().enumerate() {
                let r = if name == "iceoryx2" {
                    external(
                        cli.iceoryx2.as_deref().unwrap_or_default(),
                        size,
                        cli.round_trips,
                    )
                } else {
                    ping(name, size, cli.round_trips, run).map(External::Samples)
                };
                match r {
                    Ok(External::Samples(s)) => samples[si][ni].extend(s),
                    Ok(External::Summary { median, p99 }) => summaries[si][ni].push((median, p99)),
                    Err(e) => {
                        eprintln!("run {run} {name} {size} B failed: {e:#}");
                        failed = true;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    println!(
        "one-way latency, PAIR ping-pong between two processes over ipc ({} round trips x {} runs per point, interleaved)",
        cli.round_trips, cli.repeats
    );
    println!("| transport | size | median µs | p99 µs | median / zeromq | median / iceoryx2 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (si, &size) in cli.sizes.iter().enumerate() {
        let stats: Vec<Option<(u64, u64)>> = (0..names.len())
            .map(|ni| {
                let mut s = samples[si][ni].clone();
                if !s.is_empty() {
                    s.sort_unstable();
                    return Some((percentile(&s, 0.5), percentile(&s, 0.99)));
                }
                let mut m = summaries[si][ni].clone();
                if m.is_empty() {
                    return None;
                }
                m.sort_unstable();
                Some(m[m.len() / 2])
            })
            .collect();
        let by = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .and_then(|i| stats[i])
                .map(|s| s.0)
        };
        for (ni, name) in names.iter().enumerate() {
            let Some((median, p99)) = stats[ni] else {
                continue;
            };
            let ratio = |base: Option<u64>| match base {
                Some(b) if b > 0 => format!("{:.3}", median as f64 / b as f64),
                _ => "–".into(),
            };
            println!(
                "| {name} | {size} B | {} | {} | {} | {} |",
                micros(median),
                micros(p99),
                ratio(by("zeromq")),
                ratio(by("iceoryx2"))
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
