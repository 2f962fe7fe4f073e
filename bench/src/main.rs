//! `fairmq-bench-report`: the benchmark report of fairmq-rs.
//!
//! Runs `fairmq-bsampler` → `fairmq-sink` (two processes, found next to this executable or in
//! `--bin-dir`; build them with `cargo build --release -p fairmq-devices`) for every
//! combination of transport (shmem, zeromq), protocol (ipc, tcp), message size (64 B, 4 KiB,
//! 64 KiB, 1 MiB, 8 MiB) and `--memset` (false, true), `--repeats` times for `--seconds` each
//! (the repeats are interleaved: every point once, then every point again), measures the
//! machine's memcpy bandwidth, and writes to `--out-dir`:
//!
//! * `report.md`: the date, the machine (`nproc`, CPU model), the method, the median GB/s and
//!   msg/s per point as compact tables, and every run;
//! * `report.png`: msg/s and GB/s by size with the memcpy limit;
//! * `results.json`: the raw numbers.
//!
//! `--from-json <results.json>` rewrites the report and the plot from the raw numbers of an
//! earlier run without running anything. With `--readme <file>` it also replaces the text between `<!-- bench-report:begin -->` and
//! `<!-- bench-report:end -->` in that file by the date, machine and tables.
//!
//! Exit code 0 when every run succeeded, 1 when some failed (they are listed in the report), 2
//! when the tool could not run.

mod plot;
mod report;
mod runner;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::{Machine, PointResult};
use runner::{run_point, Point, RunSettings};

/// Writes the benchmark report (fairmq-bsampler → fairmq-sink): a markdown table and a PNG plot.
#[derive(Debug, Parser)]
#[command(name = "fairmq-bench-report", version)]
struct Cli {
    /// Where report.md, report.png and results.json go.
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Seconds each run sends.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Runs per point (the report shows their median).
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
    /// Directory of fairmq-bsampler and fairmq-sink (default: this executable's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// --shm-segment-size of the shmem runs.
    #[arg(long, default_value_t = 2_147_483_648)]
    shm_segment_size: u64,
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

fn run(cli: &Cli) -> Result<bool> {
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
    if cli.from_json.is_some() {
        std::fs::create_dir_all(&cli.out_dir)
            .with_context(|| format!("cannot create {}", cli.out_dir.display()))?;
    }
    if let Some(path) = &cli.from_json {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (machine, seconds, repeats, results) = from_json(&text)
            .with_context(|| format!("{} is not a results.json", path.display()))?;
        let mut sizes: Vec<u64> = results.iter().map(|r| r.point.size).collect();
        sizes.sort_unstable();
        sizes.dedup();
        // The command of the run that measured the numbers.
        let command = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["command"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "(unknown)".to_owned());
        return write_outputs(
            cli, &machine, seconds, repeats, &results, &sizes, &command, None,
        );
    }

    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .to_path_buf(),
    };
    for b in ["fairmq-bsampler", "fairmq-sink"] {
        if !bin_dir.join(b).is_file() {
            bail!(
                "{} not found; build the devices with `cargo build --release -p fairmq-devices` (or give --bin-dir)",
                bin_dir.join(b).display()
            );
        }
    }
    std::fs::create_dir_all(&cli.out_dir)
        .with_context(|| format!("cannot create {}", cli.out_dir.display()))?;
    println!("measuring memcpy bandwidth...");
    let memcpy_gbps = report::measure_memcpy(256 << 20, 5);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let machine = Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: report::cpu_model(),
        memcpy_gbps,
        date: report::utc_date(now),
    };
    println!(
        "{} · {} × {} · memcpy {:.2} GB/s",
        machine.date, machine.cpus, machine.cpu_model, machine.memcpy_gbps
    );

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
                        runs: Vec::new(),
                    });
                }
            }
        }
    }
    let settings = RunSettings {
        bin_dir,
        seconds: cli.seconds,
        segment_size: cli.shm_segment_size,
        stop_timeout: 30.0,
    };
    let total = results.len() * cli.repeats;
    let started = Instant::now();
    let mut done = 0;
    for _ in 0..cli.repeats {
        for r in results.iter_mut() {
            done += 1;
            let p = &r.point;
            let outcome = run_point(p, &settings).map_err(|e| format!("{e:#}"));
            let shown = match &outcome {
                Ok(m) => format!("{:>12.0} msg/s {:>9.3} GB/s", m.msg_rate, m.gbps(p.size)),
                Err(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
            };
            println!(
                "[{done:>3}/{total}] {:<6} {} {:>7} memset {:<5} {shown}   ({:.0} s)",
                p.transport,
                p.protocol,
                report::size_label(p.size),
                p.memset,
                started.elapsed().as_secs_f64()
            );
            r.runs.push(outcome);
        }
    }

    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    write_outputs(
        cli,
        &machine,
        cli.seconds,
        cli.repeats,
        &results,
        &sizes,
        &command,
        Some(started),
    )
}

/// Writes report.md, report.png, results.json (and the README block).
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    cli: &Cli,
    machine: &Machine,
    seconds: f64,
    repeats: usize,
    results: &[PointResult],
    sizes: &[u64],
    command: &str,
    started: Option<Instant>,
) -> Result<bool> {
    let md = report::markdown(
        results,
        sizes,
        machine,
        seconds,
        repeats,
        command,
        "report.png",
    );
    let md_path = cli.out_dir.join("report.md");
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    let png_path = cli.out_dir.join("report.png");
    plot::draw(&png_path, results, sizes, machine)?;
    let json = serde_json::json!({
        "date": machine.date,
        "cpus": machine.cpus,
        "cpu_model": machine.cpu_model,
        "memcpy_gbps": machine.memcpy_gbps,
        "command": command,
        "seconds": seconds,
        "repeats": repeats,
        "points": results.iter().map(|r| serde_json::json!({
            "transport": r.point.transport,
            "protocol": r.point.protocol,
            "size": r.point.size,
            "memset": r.point.memset,
            "median_msg_rate": r.median_rate(),
            "median_gbps": r.median_gbps(),
            "runs": r.runs.iter().map(|m| match m {
                Ok(m) => serde_json::json!({"messages": m.messages, "millis": m.millis, "msg_rate": m.msg_rate}),
                Err(e) => serde_json::json!({"error": e}),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let json_path = cli.out_dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    if let Some(readme) = &cli.readme {
        let text = std::fs::read_to_string(readme)
            .with_context(|| format!("cannot read {}", readme.display()))?;
        let block = format!(
            "{} · {} × {} (`nproc` {}) · memcpy {:.1} GB/s · medians of {} runs of {} s\n{}",
            machine.date,
            machine.cpus,
            machine.cpu_model,
            machine.cpus,
            machine.memcpy_gbps,
            repeats,
            seconds,
            report::summary_tables(results, sizes)
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
    Ok(results.iter().all(|r| r.runs.iter().all(Result::is_ok)))
}

/// Reads a results.json back.
fn from_json(text: &str) -> Option<(Machine, f64, usize, Vec<PointResult>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let machine = Machine {
        cpus: v["cpus"].as_u64()? as usize,
        cpu_model: v["cpu_model"].as_str()?.to_owned(),
        memcpy_gbps: v["memcpy_gbps"].as_f64()?,
        date: v["date"].as_str()?.to_owned(),
    };
    let mut results = Vec::new();
    for p in v["points"].as_array()? {
        let runs = p["runs"]
            .as_array()?
            .iter()
            .map(|r| match r.get("error") {
                Some(e) => Some(Err(e.as_str()?.to_owned())),
                None => Some(Ok(runner::Measurement {
                    messages: r["messages"].as_u64()?,
                    millis: r["millis"].as_u64()?,
                    msg_rate: r["msg_rate"].as_f64()?,
                })),
            })
            .collect::<Option<Vec<_>>>()?;
        results.push(PointResult {
            point: Point {
                transport: p["transport"].as_str()?.to_owned(),
                protocol: p["protocol"].as_str()?.to_owned(),
                size: p["size"].as_u64()?,
                memset: p["memset"].as_bool()?,
            },
            runs,
        });
    }
    Some((
        machine,
        v["seconds"].as_f64()?,
        v["repeats"].as_u64()? as usize,
        results,
    ))
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
}
