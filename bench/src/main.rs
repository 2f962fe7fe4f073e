//! `fairmq-bench-report`: the benchmark report of fairmq-rs, side by side with FairMQ.
//!
//! Runs `fairmq-bsampler` → `fairmq-sink` (two processes; ours are found next to this
//! executable or in `--bin-dir`, build them with `cargo build --release -p fairmq-devices`) for
//! every combination of transport (shmem, zeromq), protocol (ipc, tcp), message size (64 B,
//! 4 KiB, 64 KiB, 1 MiB, 8 MiB) and `--memset` (false, true), `--repeats` times (the repeats are
//! interleaved: every point once, then every point again). With `--peer <dir>` every point also
//! runs with FairMQ's own `fairmq-bsampler` and `fairmq-sink` from `<dir>`, right before or
//! after ours (the order alternates between repeats), measured the same way ([`runner`]). It
//! measures the machine's memcpy bandwidth and writes to `--out-dir`:
//!
//! * `report.md`: the date, the machine (`nproc`, CPU model), what was compared, the method,
//!   per point the median msg/s, GB/s, peak RSS and wall time of each system with the ratio
//!   ours / FairMQ, every run, what any run left in /dev/shm, and the failures;
//! * `report.png`: msg/s by size per transport and protocol, one colour per system, with the
//!   memcpy limit, and the ratio;
//! * `results.json`: the command line and the raw numbers of both systems ([`json`]).
//!
//! Without `--peer` only ours run, and the report says that no ratio to FairMQ was taken.
//!
//! `--from-json <results.json>` rewrites the report and the plot from the raw numbers of an
//! earlier run (either form) without running anything. With `--readme <file>` it also replaces
//! the text between `<!-- bench-report:begin -->` and `<!-- bench-report:end -->` in that file
//! by the date, machine and tables.
//!
//! Exit code 0 when every run succeeded, 1 when some failed (they are listed in the report), 2
//! when the tool could not run (for instance a `--peer` directory without the devices).

mod json;
mod peer;
mod plot;
mod report;
mod runner;
mod rusage;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::{Machine, Meta, PeerMeta, PointResult, Run, CALIBRATION_SECONDS};
use runner::{iterations_for, run_once, Devices, Length, Point};

/// Writes the benchmark report (fairmq-bsampler → fairmq-sink): a markdown table and a PNG plot,
/// side by side with FairMQ's own devices when `--peer` names them.
#[derive(Debug, Parser)]
#[command(name = "fairmq-bench-report", version)]
struct Cli {
    /// Where report.md, report.png and results.json go.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Seconds the faster system's run takes at each point (sets the sink's --max-iterations).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Runs per point and system (the report shows their median).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Message sizes in bytes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "64,4096,65536,1048576,8388608"
    )]
    sizes: Vec<u64>,
    /// Transports.
    #[arg(long, value_delimiter = ',', default_value = "shmem,zeromq")]
    transports: Vec<String>,
    /// Protocols.
    #[arg(long, value_delimiter = ',', default_value = "ipc,tcp")]
    protocols: Vec<String>,
    /// `--memset` values of the sampler.
    #[arg(long, value_delimiter = ',', default_value = "false,true")]
    memset: Vec<bool>,
    /// Directory of our fairmq-bsampler and fairmq-sink (default: this executable's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory of FairMQ's own fairmq-bsampler and fairmq-sink (FairMQ v1.10's build tree
    /// `<build>/fairmq` or `<install>/bin`): every point also runs with them, interleaved with
    /// ours, and the report shows both and the ratio. A sibling `lib` directory is put first on
    /// their LD_LIBRARY_PATH.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// --shm-segment-size of our shmem runs (default: our devices' default). FairMQ's runs always
    /// get --shm-segment-size 8589934592 --bad-alloc-max-attempts 1000000.
    #[arg(long)]
    shm_segment_size: Option<u64>,
    /// Do not run anything: rewrite report.md and report.png (and --readme) from this
    /// results.json of an earlier run.
    #[arg(long)]
    from_json: Option<PathBuf>,
    /// Also put the date, machine and tables into this file, between `<!-- bench-report:begin -->`
    /// and `<!-- bench-report:end -->`.
    #[arg(long)]
    readme: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

const BEGIN: &str = "<!-- bench-report:begin -->";
const END: &str = "<!-- bench-report:end -->";

/// Replaces the text between the markers.
fn splice(text: &str, new: &str) -> Result<String> {
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        bail!("the markers {BEGIN} and {END} are missing");
    };
    if e < b {
        bail!("{END} comes before {BEGIN}");
    }
    Ok(format!("{}{BEGIN}\n{new}\n{}", &text[..b], &text[e..]))
}

/// One system of the run.
struct System {
    /// `fairmq-rs`, `FairMQ 1.10.0`, `peer (not FairMQ)`.
    label: String,
    devices: Devices,
    is_peer: bool,
}

fn check_cli(cli: &Cli) -> Result<()> {
    if !(cli.seconds > 0.0 && cli.seconds.is_finite()) || cli.repeats == 0 {
        bail!("--seconds must be positive and --repeats at least 1");
    }
    for t in &cli.transports {
        if !["shmem", "zeromq"].contains(&t.as_str()) {
            bail!("unknown transport '{t}' (shmem, zeromq)");
        }
    }
    for p in &cli.protocols {
        if !["ipc", "tcp"].contains(&p.as_str()) {
            bail!("unknown protocol '{p}' (ipc, tcp)");
        }
    }
    if cli.sizes.is_empty() || cli.sizes.contains(&0) {
        bail!("--sizes must list positive sizes");
    }
    Ok(())
}

fn sorted_sizes(results: &[PointResult]) -> Vec<u64> {
    let mut sizes: Vec<u64> = results.iter().map(|r| r.point.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn run(cli: &Cli) -> Result<bool> {
    check_cli(cli)?;
    if let Some(path) = &cli.from_json {
        std::fs::create_dir_all(&cli.out_dir)
            .with_context(|| format!("cannot create {}", cli.out_dir.display()))?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (meta, results) = json::read(&text)
            .with_context(|| format!("{} is not a results.json", path.display()))?;
        return write_outputs(cli, &meta, &results, None);
    }

    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .to_path_buf(),
    };
    for b in peer::DEVICES {
        if !bin_dir.join(b).is_file() {
            bail!(
                "{} not found; build the devices with `cargo build --release -p fairmq-devices` (or give --bin-dir)",
                bin_dir.join(b).display()
            );
        }
    }
    let ours_args: Vec<String> = cli
        .shm_segment_size
        .map(|s| vec!["--shm-segment-size".to_owned(), s.to_string()])
        .unwrap_or_default();
    let mut systems = Vec::new();
    let mut peer_meta = None;
    if let Some(dir) = &cli.peer {
        let p = peer::open(dir)?;
        let mut env = Vec::new();
        if let Some(lib) = &p.lib_dir {
            let current = std::env::var("LD_LIBRARY_PATH").ok();
            env.push((
                "LD_LIBRARY_PATH".to_owned(),
                peer::library_path(lib, current.as_deref()),
            ));
        }
        let args: Vec<String> = peer::FAIRMQ_ARGS.iter().map(|a| a.to_string()).collect();
        println!(
            "peer: {} in {}{}",
            p.label,
            dir.display(),
            p.lib_dir.as_ref().map_or(String::new(), |l| format!(
                " (LD_LIBRARY_PATH {})",
                l.display()
            ))
        );
        if !p.is_fairmq {
            println!("warning: the --peer binaries are not FairMQ's; the report calls them 'peer'");
        }
        peer_meta = Some(PeerMeta {
            dir: dir.display().to_string(),
            label: p.label.clone(),
            is_fairmq: p.is_fairmq,
            args: args.clone(),
            lib_dir: p.lib_dir.as_ref().map(|l| l.display().to_string()),
        });
        systems.push(System {
            label: p.label.clone(),
            devices: Devices {
                bin_dir: dir.clone(),
                extra_args: args,
                env,
                shmmonitor: p.shmmonitor.clone(),
                strict: false,
            },
            is_peer: true,
        });
    }
    systems.push(System {
        label: "fairmq-rs".to_owned(),
        devices: Devices {
            shmmonitor: Some(bin_dir.join("fairmq-shmmonitor")).filter(|m| m.is_file()),
            bin_dir,
            extra_args: ours_args.clone(),
            env: Vec::new(),
            strict: true,
        },
        is_peer: false,
    });

    std::fs::create_dir_all(&cli.out_dir)
        .with_context(|| format!("cannot create {}", cli.out_dir.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (cpus, cpu_model) = (
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        report::cpu_model(),
    );
    println!("{} · {cpus} × {cpu_model}", report::utc_date(now));

    let mut sizes = cli.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let mut results: Vec<PointResult> = Vec::new();
    for &memset in &cli.memset {
        for t in &cli.transports {
            for p in &cli.protocols {
                for &size in &sizes {
                    results.push(PointResult {
                        point: Point {
                            transport: t.clone(),
                            protocol: p.clone(),
                            size,
                            memset,
                        },
                        iterations: None,
                        ours: Vec::new(),
                        peer: Vec::new(),
                    });
                }
            }
        }
    }
    let started = Instant::now();
    measure(cli, &systems, &mut results, started);
    // After the runs: its 512 MiB would otherwise raise the floor under every device's RSS
    // figure (see rusage).
    println!("measuring memcpy bandwidth...");
    let machine = Machine {
        cpus,
        cpu_model,
        memcpy_gbps: report::measure_memcpy(256 << 20, 5),
        date: report::utc_date(now),
    };
    println!("memcpy {:.2} GB/s", machine.memcpy_gbps);

    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let meta = Meta {
        machine,
        seconds: cli.seconds,
        repeats: cli.repeats,
        command,
        ours_args,
        peer: peer_meta,
    };
    write_outputs(cli, &meta, &results, Some(started))
}

const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn point_label(p: &Point) -> String {
    format!(
        "{:<6} {} {:>7} memset {:<5}",
        p.transport,
        p.protocol,
        report::size_label(p.size),
        p.memset
    )
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// Every repeat: every point: each system once (the peer first in even repeats, ours first in
/// odd ones); the first repeat calibrates each point's --max-iterations first.
fn measure(cli: &Cli, systems: &[System], results: &mut [PointResult], started: Instant) {
    let total = results.len() * cli.repeats * systems.len();
    let width = systems.iter().map(|s| s.label.len()).max().unwrap_or(0);
    let mut done = 0;
    // Per point and system: the calibrated rate, or why the calibration failed.
    let mut calibrated: Vec<Vec<Result<f64, String>>> = Vec::new();
    for rep in 0..cli.repeats {
        let mut order: Vec<&System> = systems.iter().collect();
        if rep % 2 == 1 {
            order.reverse();
        }
        for (i, r) in results.iter_mut().enumerate() {
            if rep == 0 {
                let rates: Vec<Result<f64, String>> = systems
                    .iter()
                    .map(|s| {
                        let c = run_once(
                            &r.point,
                            &s.devices,
                            Length::Timed(Duration::from_secs_f64(CALIBRATION_SECONDS)),
                            STOP_TIMEOUT,
                        )
                        .map(|m| m.msg_rate)
                        .map_err(|e| format!("calibration failed: {e:#}"));
                        let shown = match &c {
                            Ok(rate) => format!("{rate:>12.0} msg/s"),
                            Err(e) => e.lines().next().unwrap_or("").to_owned(),
                        };
                        println!(
                            "[calibration] {:<width$} {} {shown}",
                            s.label,
                            point_label(&r.point)
                        );
                        c
                    })
                    .collect();
                let ok: Vec<f64> = rates
                    .iter()
                    .filter_map(|c| c.as_ref().ok().copied())
                    .collect();
                r.iterations = iterations_for(&ok, cli.seconds);
                calibrated.push(rates);
            }
            for s in &order {
                done += 1;
                let si = systems
                    .iter()
                    .position(|x| std::ptr::eq(x, *s))
                    .expect("a system of the list");
                let outcome: Run = match r.iterations {
                    None => Err(calibrated[i]
                        .iter()
                        .find_map(|c| c.as_ref().err().cloned())
                        .unwrap_or_else(|| "calibration failed".to_owned())),
                    Some(count) => {
                        let fastest = count as f64 / cli.seconds;
                        let own = calibrated[i][si].as_ref().ok().copied().unwrap_or(fastest);
                        let expected = count as f64 / own.max(1e-3);
                        let timeout = Duration::from_secs_f64(30.0 + 10.0 * expected);
                        run_once(
                            &r.point,
                            &s.devices,
                            Length::Messages { count, timeout },
                            STOP_TIMEOUT,
                        )
                        .map_err(|e| format!("{e:#}"))
                    }
                };
                let shown = match &outcome {
                    Ok(m) => format!(
                        "{:>12.0} msg/s {:>9.3} GB/s  wall {:>6.2} s  RSS {} + {} MiB{}",
                        m.msg_rate,
                        m.gbps(r.point.size),
                        m.wall_ms.unwrap_or(0.0) / 1e3,
                        mib(m.sampler_rss_kib()),
                        mib(m.sink_rss_kib()),
                        if m.notes.is_empty() {
                            String::new()
                        } else {
                            format!("  ({})", m.notes.join("; "))
                        }
                    ),
                    Err(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
                };
                println!(
                    "[{done:>3}/{total}] {:<width$} {} {shown}   ({:.0} s)",
                    s.label,
                    point_label(&r.point),
                    started.elapsed().as_secs_f64()
                );
                if s.is_peer {
                    r.peer.push(outcome);
                } else {
                    r.ours.push(outcome);
                }
            }
        }
    }
}

/// Writes report.md, report.png, results.json (and the README block).
fn write_outputs(
    cli: &Cli,
    meta: &Meta,
    results: &[PointResult],
    started: Option<Instant>,
) -> Result<bool> {
    let sizes = sorted_sizes(results);
    let md = report::markdown(results, &sizes, meta, "report.png");
    let md_path = cli.out_dir.join("report.md");
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let png_path = cli.out_dir.join("report.png");
    plot::draw(&png_path, results, &sizes, meta)?;
    let json_path = cli.out_dir.join("results.json");
    std::fs::write(&json_path, json::write(meta, results)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    if let Some(readme) = &cli.readme {
        let text = std::fs::read_to_string(readme)
            .with_context(|| format!("cannot read {}", readme.display()))?;
        let m = &meta.machine;
        let block = format!(
            "{} · {} × {} (`nproc` {}) · memcpy {:.1} GB/s · medians of {} runs of about {} s\n\n{}\n{}",
            m.date,
            m.cpus,
            m.cpu_model,
            m.cpus,
            m.memcpy_gbps,
            meta.repeats,
            meta.seconds,
            report::comparison_note(meta),
            report::summary_tables(results, &sizes, meta)
        );
        std::fs::write(
            readme,
            splice(&text, &block).with_context(|| readme.display().to_string())?,
        )
        .with_context(|| format!("cannot write {}", readme.display()))?;
        println!("updated {}", readme.display());
    }
    println!(
        "wrote {}, {} and {}{}",
        md_path.display(),
        png_path.display(),
        json_path.display(),
        started.map_or(String::new(), |s| format!(
            " in {:.0} s",
            s.elapsed().as_secs_f64()
        ))
    );
    Ok(results.iter().all(PointResult::all_ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_between_markers() {
        let text = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        let out = splice(&text, "new").expect("spliced");
        assert_eq!(out, format!("a\n{BEGIN}\nnew\n{END}\nb\n"));
        assert!(splice("no markers", "x").is_err());
        assert!(splice(&format!("{END}{BEGIN}"), "x").is_err());
    }

    #[test]
    fn reads_the_committed_results() {
        let text = include_str!("../results/results.json");
        let (meta, results) = json::read(text).expect("bench/results/results.json reads");
        assert!(!results.is_empty());
        assert!(meta.repeats >= 1);
    }
}
