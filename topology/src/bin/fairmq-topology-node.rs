//! `fairmq-topology-node`: what `fairmq-topology` runs on every node of a Slurm job besides the
//! devices.
//!
//! `fairmq-topology-node cleanup --session-prefix <S> [--host <name>]` removes the node's
//! shared-memory session `<S>-<node>` if no process holds it any more, and the node's ipc
//! socket files `/tmp/fmqt-<S>-<node>-*`, then prints one JSON line (host, session, shmId,
//! removed, left, alive, error). The node is `--host`, else `SLURMD_NODENAME`, else the host
//! name. Exit code 0 if nothing of the run is left on the node, 1 otherwise.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fairmq_topology::cleanup::clean_host;
use fairmq_topology::plan::{host_session, ipc_prefix};

#[derive(Debug, Parser)]
#[command(name = "fairmq-topology-node", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Remove the run's shared memory (if dead) and ipc files on this node.
    Cleanup {
        /// The run's session; the node's session is <prefix>-<node>.
        #[arg(long)]
        session_prefix: String,
        /// This node's name (default: SLURMD_NODENAME, else the host name).
        #[arg(long)]
        host: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Cleanup {
            session_prefix,
            host,
        } => {
            let host = host
                .or_else(|| std::env::var("SLURMD_NODENAME").ok())
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_owned())
                })
                .unwrap_or_else(|| "local".to_owned());
            let session = host_session(&session_prefix, &host);
            let report = clean_host(&host, &session, &ipc_prefix(&session));
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("fairmq-topology-node: {e}");
                    return ExitCode::from(1);
                }
            }
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
