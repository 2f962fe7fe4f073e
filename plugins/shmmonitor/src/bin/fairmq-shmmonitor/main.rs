//! `fairmq-shmmonitor`: shows, watches and cleans up the shared memory of FairMQ sessions
//! (spec §6, the seed's monitor tables), built on [`fairmq_shmem::monitor`].
//!
//! Mode dispatch, first match wins (spec §6.2, with this port's additions): `--help`;
//! `--get-shmid`; `--cleanup`; `--cleanup-dead`; `--reset-content` (refused: not supported);
//! `--debug`; `--list-all`; view (the default) prints the session once; `--daemonize` with
//! `--monitor` detaches; then the monitor takes the session's `_ms` marker (exit 0 if another
//! monitor holds it) and runs the interactive mode (`-i`) or the watch loop (`-m`).
//!
//! Exit codes: 0 success, `--help`, or a monitor already running; 1 bad input or a refused
//! action (with a one-line `fairmq-shmmonitor: error: ...` on standard error); 2 an unhandled
//! error (`Unhandled Exception reached the top of main: ...`).

mod cli;
mod json;
mod logging;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use fairmq_shmem::ids::effective_uid;
use fairmq_shmem::management::ManagementSegment;
use fairmq_shmem::monitor::{self, daemonize, Daemonized, Monitor, MonitorConfig, MonitorExit};
use fairmq_shmem::{Error as ShmError, ShmId};

use cli::{Cli, Output};

/// Bad input or a refused action: exit code 1 with this message.
#[derive(Debug)]
struct UserError(String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

fn user_error(msg: impl Into<String>) -> anyhow::Error {
    UserError(msg.into()).into()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or_default();
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    eprintln!("fairmq-shmmonitor: error: {first} (see fairmq-shmmonitor --help)");
                    ExitCode::from(1)
                }
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UserError>() {
                tracing::debug!("{u}");
                eprintln!("fairmq-shmmonitor: error: {u}");
                ExitCode::from(1)
            } else {
                let msg = format!(
                    "Unhandled Exception reached the top of main: {e:#}, application will now exit"
                );
                tracing::error!("{msg}");
                eprintln!("{msg}");
                ExitCode::from(2)
            }
        }
    }
}

/// The shmId: `--shmid` (validated) or derived from `--session`.
fn shm_id(cli: &Cli) -> Result<ShmId> {
    if cli.shmid.is_empty() {
        return Ok(ShmId::from_session(&cli.session));
    }
    ShmId::parse(&cli.shmid).map_err(|e| {
        user_error(format!(
            "--shmid: {e} (the id as it appears in the object names, e.g. fmq_<shmId>_mng)"
        ))
    })
}

fn run(cli: Cli) -> Result<()> {
    let Some(level) = logging::level_filter(&cli.severity) else {
        return Err(user_error(format!(
            "--severity: unknown severity '{}' (use trace, debug, info, state, warn, error, fatal or nolog)",
            cli.severity
        )));
    };
    let daemon = cli.daemonize && cli.monitor && !cli.view && !cli.interactive;
    let json_out = cli.output == Output::Json;
    let log_file = if daemon && cli.verbose {
        let name = logging::log_file_name();
        Some(
            std::fs::File::create(&name)
                .with_context(|| format!("could not create the log file '{name}'"))?,
        )
    } else {
        None
    };
    let sink = match log_file {
        Some(f) => logging::Sink::File(f),
        None if json_out => logging::Sink::Stderr,
        None => logging::Sink::Stdout,
    };
    let level = if matches!(sink, logging::Sink::File(_)) {
        tracing_subscriber::filter::LevelFilter::TRACE
    } else {
        level
    };
    logging::init(level, sink);

    // 2. --get-shmid
    if cli.get_shmid {
        if cli.user_id == -1 {
            let uid = effective_uid();
            let id = ShmId::from_session_and_uid(&cli.session, uid);
            tracing::info!(
                "shmem id for session '{}' and current user id {uid} is: {id}",
                cli.session
            );
        } else {
            let uid = u32::try_from(cli.user_id).map_err(|_| {
                user_error(format!(
                    "--user-id: {} is not a user id (0 to {}, or -1 for the current user)",
                    cli.user_id,
                    u32::MAX
                ))
            })?;
            let id = ShmId::from_session_and_uid(&cli.session, uid);
            tracing::info!(
                "shmem id for session '{}' and user id {uid} is: {id}",
                cli.session
            );
        }
        return Ok(());
    }
    if json_out && !(cli.list_all || cli.view || !(cli.interactive || cli.monitor)) {
        return Err(user_error(
            "--output json is only available for --view and --list-all",
        ));
    }

    // 3. the session
    let id = shm_id(&cli)?;

    // 4. --cleanup
    if cli.cleanup {
        if cli.shmid.is_empty() {
            tracing::info!(
                "Cleanup called with session id '{}', translating to shared memory id '{id}'",
                cli.session
            );
        }
        return match monitor::cleanup_checked(&id, cli.force, true) {
            Ok(_) => Ok(()),
            Err(e @ (ShmError::SessionAlive(_) | ShmError::ForeignSession { .. })) => {
                Err(user_error(format!("--cleanup: {e}")))
            }
            Err(e) => Err(e.into()),
        };
    }

    // beyond FairMQ: --cleanup-dead
    if cli.cleanup_dead {
        let r = monitor::cleanup_dead_sessions(true)?;
        for (id, session, _) in &r.removed {
            tracing::info!(
                "removed dead session '{}' (shm id: {id})",
                session.as_deref().unwrap_or("?")
            );
        }
        for id in &r.alive {
            tracing::info!("skipped live session with shm id {id}");
        }
        for (id, uid) in &r.other_users {
            tracing::debug!("skipped session with shm id {id} of user {uid}");
        }
        tracing::info!(
            "removed {} dead session(s); left {} live session(s) and {} session(s) of other users untouched",
            r.removed.len(),
            r.alive.len(),
            r.other_users.len()
        );
        return Ok(());
    }

    // 5. --reset-content
    if cli.reset_content {
        return Err(user_error(
            "--reset-content is not supported by fairmq-rs: re-initialising the allocators of \
             segments that running devices have mapped is unsafe (FairMQ marks it experimental). \
             Stop the devices and use --cleanup, or restart them.",
        ));
    }

    // 6. --debug
    if cli.debug {
        return match monitor::print_debug_info(&id) {
            Ok(_) => Ok(()),
            Err(e @ ShmError::NoManagementSegment(_)) => Err(user_error(format!("--debug: {e}"))),
            Err(e) => Err(e.into()),
        };
    }

    // 7. --list-all
    if cli.list_all {
        let path = Path::new(&cli.list_all_path);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(user_error(format!(
                    "--list-all-path: '{}' is not a directory",
                    cli.list_all_path
                )))
            }
            Err(e) => {
                return Err(user_error(format!(
                    "--list-all-path: cannot read directory '{}': {e}",
                    cli.list_all_path
                )))
            }
        }
        if json_out {
            let r = monitor::list_all(path)?;
            println!("{}", serde_json::to_string_pretty(&json::list_all(&r))?);
        } else {
            monitor::print_list_all(path)?;
        }
        return Ok(());
    }

    // 8./9. view
    let view = cli.view || !(cli.interactive || cli.monitor);
    if view && !cli.interactive {
        let r = monitor::describe(&id)?;
        if json_out {
            println!(
                "{}",
                serde_json::to_string_pretty(&json::view(&id, r.as_ref()))?
            );
        } else {
            match r {
                Some(r) => tracing::info!("{}", r.to_text()),
                None => tracing::info!("No segments found."),
            }
        }
        return Ok(());
    }

    // 10. daemonize
    if daemon {
        if let Daemonized::Parent { .. } = daemonize()? {
            return Ok(());
        }
    }

    // 11. the monitor
    let session = if cli.shmid.is_empty() {
        cli.session.clone()
    } else {
        ManagementSegment::open_observer(&id)
            .map(|m| m.session_info().session)
            .unwrap_or_else(|_| "unknown".to_owned())
    };
    tracing::info!("Starting shared memory monitor for session: \"{session}\" (shm id: {id})...");
    let cfg = MonitorConfig {
        self_destruct: cli.self_destruct,
        view_only: view,
        timeout: Duration::from_millis(cli.timeout),
        interval: Duration::from_millis(cli.interval),
        clean_on_exit: cli.clean_on_exit,
        force: cli.force,
        ..MonitorConfig::new(id.clone())
    };
    let mut mon = match Monitor::new(cfg) {
        Ok(m) => m,
        Err(ShmError::MonitorRunning(_)) => {
            let pid = monitor::marker_pid(&id)
                .ok()
                .flatten()
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            tracing::info!(
                "fairmq-shmmonitor for shm id {id} is already running{pid}. Try `fairmq-shmmonitor --cleanup --shmid {id}`{}",
                if cli.interactive {
                    ", or run in view-only mode (-v)"
                } else {
                    ""
                }
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    mon.catch_signals()?;
    let exit = mon.run(cli.interactive)?;
    tracing::debug!("monitor exit: {exit:?}");
    if let MonitorExit::Terminated(_) | MonitorExit::Quit = exit {
        tracing::debug!("terminating");
    }
    drop(mon);
    Ok(())
}
