//! `fairmq-topology`: plans a topology file onto nodes, prints the plan (`--dry-run`), or
//! runs it on this machine (`--launcher local`) or as one Slurm job (`--launcher slurm`),
//! driving every device through configure, run, stop and terminate, with a progress view and
//! a summary.
//!
//! With `--launcher slurm` outside an allocation, it runs itself again under `salloc --nodes=N
//! --immediate=<--allocation-timeout>`, so that the allocation ends with it (also when it is
//! killed). Inside an allocation (sbatch, salloc) it uses the allocation's nodes.
//!
//! Exit codes: 0 the topology ran, stopped and exited cleanly and no node keeps anything of it;
//! 1 a device failed, a step timed out, the run was interrupted, or a node is not clean;
//! 2 the command line or the topology file is wrong, or the launcher cannot start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};

use fairmq_topology::launch::local::LocalLauncher;
use fairmq_topology::launch::slurm::{allocation, SlurmLauncher};
use fairmq_topology::launch::Launcher;
use fairmq_topology::plan::{Host, Placement, Plan};
use fairmq_topology::progress::ProgressMode;
use fairmq_topology::run::{run, RunOptions};
use fairmq_topology::Topology;

/// Set in the environment of the copy of ourselves that runs under salloc.
const UNDER_SALLOC: &str = "FAIRMQ_TOPOLOGY_UNDER_SALLOC";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LauncherKind {
    /// Every device on this machine.
    Local,
    /// One Slurm job: node slot i on the i-th node of the allocation.
    Slurm,
}

/// Runs a topology of FairMQ devices (see topology/README section of the repository).
#[derive(Debug, Parser)]
#[command(name = "fairmq-topology", version)]
struct Cli {
    /// The topology file (JSON).
    topology: PathBuf,
    /// Where the devices run.
    #[arg(long, value_enum, default_value = "local")]
    launcher: LauncherKind,
    /// Print the plan (nodes, transports, addresses, command lines) and exit.
    #[arg(long)]
    dry_run: bool,
    /// Session name of the run (default: topo-<random>); each node's shared memory session is
    /// <session>-<node>.
    #[arg(long)]
    session: Option<String>,
    /// Directory for logs, status.json and summary.json (default: $TMPDIR/fairmq-topology/<session>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Directories to look for device executables in (before the directory of fairmq-topology
    /// itself, then PATH).
    #[arg(long = "bin-dir")]
    bin_dirs: Vec<PathBuf>,
    /// Address the devices connect to for control; it must be reachable from every node.
    #[arg(long, default_value = "127.0.0.1")]
    control_address: String,
    /// With --launcher local: the address of this machine for tcp channels.
    #[arg(long, default_value = "127.0.0.1")]
    local_address: String,
    /// Seconds the devices may take to start and connect.
    #[arg(long, default_value_t = 60)]
    startup_timeout: u64,
    /// Seconds each lifecycle step (e.g. all devices BIND -> BOUND) may take.
    #[arg(long, default_value_t = 60)]
    transition_timeout: u64,
    /// Stop the run after this many seconds in RUNNING (default: when every finite device is done,
    /// or on Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Fail if the run takes longer than this many seconds.
    #[arg(long)]
    max_run_time: Option<u64>,
    /// The progress view.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Log lines shown of a device that failed.
    #[arg(long, default_value_t = 20)]
    log_lines: usize,
    /// With --launcher slurm: seconds to wait for the allocation (salloc --immediate).
    #[arg(long, default_value_t = 60)]
    allocation_timeout: u64,
    /// With --launcher slurm: an extra salloc argument (e.g. --salloc-arg=--partition=debug).
    #[arg(long = "salloc-arg", allow_hyphen_values = true)]
    salloc_args: Vec<String>,
    /// With --launcher slurm: an extra srun argument for the devices' step.
    #[arg(long = "srun-arg", allow_hyphen_values = true)]
    srun_args: Vec<String>,
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_owned()))
}

fn random_session() -> String {
    format!("topo-{:08x}", rand::random::<u32>())
}

/// Runs ourselves again under salloc and returns its exit code.
fn under_salloc(cli: &Cli, topology: &Topology, session: &str) -> anyhow::Result<ExitCode> {
    if std::env::var_os(UNDER_SALLOC).is_some() {
        bail!("running under salloc, but SLURM_JOB_ID is not set; run inside a Slurm allocation or without salloc");
    }
    let exe = std::env::current_exe().context("cannot find the fairmq-topology executable")?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if cli.session.is_none() {
        args.push(format!("--session={session}"));
    }
    let mut cmd = std::process::Command::new("salloc");
    cmd.arg(format!("--nodes={}", topology.node_count()))
        .arg(format!("--immediate={}", cli.allocation_timeout.max(1)))
        .arg(format!("--job-name=fairmq-topology-{}", topology.name))
        .arg("--overcommit")
        .args(&cli.salloc_args)
        .arg(exe)
        .args(args)
        .env(UNDER_SALLOC, "1");
    let status = cmd
        .status()
        .context("cannot run salloc (is slurm-client installed? topology/ci/slurm-up.sh sets up a test cluster)")?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fairmq-topology: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let topology = Topology::from_file(&cli.topology)?;
    let session = cli.session.clone().unwrap_or_else(random_session);
    let mut bin_dirs = cli.bin_dirs.clone();
    bin_dirs.extend(exe_dir());

    let in_allocation = std::env::var_os("SLURM_JOB_ID").is_some();
    if cli.launcher == LauncherKind::Slurm && !cli.dry_run && !in_allocation {
        return under_salloc(&cli, &topology, &session);
    }

    let (placement, job) = match cli.launcher {
        LauncherKind::Local => (
            Placement::OneHost(Host {
                name: "local".to_owned(),
                address: Some(cli.local_address.clone()),
            }),
            None,
        ),
        LauncherKind::Slurm if in_allocation => {
            let (job, hosts) = allocation()?;
            (Placement::PerSlot(hosts), Some(job))
        }
        LauncherKind::Slurm => (
            // A dry run outside an allocation: symbolic nodes.
            Placement::PerSlot(
                (0..topology.node_count())
                    .map(|i| Host {
                        name: format!("node{i}"),
                        address: None,
                    })
                    .collect(),
            ),
            None,
        ),
    };
    let plan = Plan::new(topology, &session, placement, &bin_dirs)?;
    let control_bind = format!("{}:0", cli.control_address);
    if cli.dry_run {
        print!(
            "{}",
            plan.describe(&format!("{}:<port>", cli.control_address))
        );
        return Ok(ExitCode::SUCCESS);
    }

    let run_dir = cli
        .run_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("fairmq-topology").join(&session));
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create the run directory {}", run_dir.display()))?;
    std::fs::write(run_dir.join("plan.txt"), plan.describe(&control_bind))
        .with_context(|| format!("cannot write to {}", run_dir.display()))?;

    let launcher: Box<dyn Launcher> = match (cli.launcher, job) {
        (LauncherKind::Local, _) => Box::new(LocalLauncher::new(&run_dir)),
        (LauncherKind::Slurm, Some(job)) => {
            let tool = exe_dir()
                .map(|d| d.join("fairmq-topology-node"))
                .filter(|p| p.is_file())
                .context("fairmq-topology-node is not next to fairmq-topology; build it (cargo build -p fairmq-topology)")?;
            Box::new(SlurmLauncher::new(
                &run_dir,
                job,
                tool,
                cli.srun_args.clone(),
            ))
        }
        (LauncherKind::Slurm, None) => bail!("no Slurm allocation"),
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while the first is being handled ends the controller at once (the
        // devices then lose their controller and shut themselves down).
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&interrupted))
            .context("cannot install the signal handlers")?;
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("cannot install the signal handlers")?;
    }
    println!(
        "fairmq-topology: {} devices, session {}, run directory {}",
        plan.instances.len(),
        session,
        run_dir.display()
    );
    let options = RunOptions {
        control_bind,
        startup_timeout: Duration::from_secs(cli.startup_timeout),
        transition_timeout: Duration::from_secs(cli.transition_timeout),
        duration: cli.duration.map(Duration::from_secs),
        max_run_time: cli.max_run_time.map(Duration::from_secs),
        progress: cli.progress,
        run_dir,
        log_lines: cli.log_lines,
    };
    let outcome = run(&plan, launcher, &options, interrupted)?;
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
