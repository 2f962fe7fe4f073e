//! One run of a planned topology: launch, drive every device through its lifecycle together,
//! watch the run, stop, clean up, summarise.
//!
//! The lifecycle, each step for all devices at once and waiting until all have arrived (ODC's
//! `Configure`, `Start`, `Stop`, `Reset`, `Terminate`):
//!
//! 1. wait until every device has connected (said hello);
//! 2. `INIT DEVICE`, then the channel configuration (FairMQ JSON, binding channels with their
//!    address), `COMPLETE INIT`, `BIND`;
//! 3. read every binding channel's actual address (auto-bound port) and give the connecting
//!    channels their peers' addresses; `CONNECT`, `INIT TASK`: all READY;
//! 4. wait (up to 10 s, best effort) until every binding channel has all its peers, so that the
//!    first messages are spread over all of them; `RUN`;
//! 5. the run ends when every `finite` device has left RUNNING by itself, after `--duration`,
//!    or on SIGINT/SIGTERM; `STOP` for the devices still RUNNING, the final counters;
//! 6. `RESET TASK`, `RESET DEVICE`, `END`: all EXITING; wait for the processes to end.
//!
//! If a device fails (dies, ERROR, times out), it is reported with its node, process id, how
//! its process ended and its last log lines, and every other device is shut down in order from
//! wherever it is (the `control` plugin's shutdown sequence). Then every host is cleaned
//! ([`crate::cleanup`]) and the run ends with a summary.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fairmq::{State, Transition};
use fairmq_plugin_odc::protocol::Command;

use crate::controller::{ControlError, Controller};
use crate::file::Method;
use crate::launch::{tail, LaunchError, Launcher};
use crate::plan::Plan;
use crate::progress::{frame, summary, Progress, ProgressMode, RunInfo, Summary};

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Address the control server binds (`<ip>:0` for any port); the devices must reach it.
    pub control_bind: String,
    /// How long the devices may take to connect.
    pub startup_timeout: Duration,
    /// How long each lifecycle step may take.
    pub transition_timeout: Duration,
    /// Stop after this long in RUNNING (default: when the finite devices are done).
    pub duration: Option<Duration>,
    /// Fail if the run takes longer than this.
    pub max_run_time: Option<Duration>,
    /// The progress view.
    pub progress: ProgressMode,
    /// Where logs, status.json and summary.json go.
    pub run_dir: PathBuf,
    /// How many log lines of a failed device to show.
    pub log_lines: usize,
}

/// Errors that end a run before the devices run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The control server could not listen.
    #[error("cannot listen for the devices on {address}: {source}; pass a local address with --control-address")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The launcher failed.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// Everything ran, stopped and exited cleanly, and no host keeps anything.
    pub ok: bool,
    /// The summary.
    pub summary: Summary,
}

fn write_json(path: &std::path::Path, s: &Summary) {
    if let Ok(text) = serde_json::to_string_pretty(s) {
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// Runs `plan` with `launcher`. `interrupted` is set by the signal handler.
pub fn run(
    plan: &Plan,
    launcher: Box<dyn Launcher>,
    options: &RunOptions,
    interrupted: Arc<AtomicBool>,
) -> Result<Outcome, RunError> {
    let ids: Vec<String> = plan.instances.iter().map(|i| i.id.clone()).collect();
    let mut ctl =
        Controller::listen(&options.control_bind, ids).map_err(|source| RunError::Listen {
            address: options.control_bind.clone(),
            source,
        })?;
    ctl.interrupted = interrupted;
    for (i, inst) in plan.instances.iter().enumerate() {
        ctl.devices[i].expected_node = Some(plan.hosts[inst.host].name.clone());
    }
    let launcher = Rc::new(RefCell::new(launcher));
    let launcher_name = launcher.borrow().name();
    let job = launcher.borrow().job();
    {
        let l = Rc::clone(&launcher);
        ctl.set_exit_source(Box::new(move || l.borrow_mut().poll_exits()));
    }
    let address = ctl.address().to_string();
    for n in launcher.borrow().notes() {
        ctl.note(n);
    }
    launcher.borrow_mut().start(plan, &address)?;
    let info = RunInfo {
        launcher: launcher_name.to_owned(),
        job: job.clone(),
        logs: (0..plan.instances.len())
            .map(|i| launcher.borrow().log_file(i))
            .collect(),
    };
    let started = Instant::now();
    let progress = Rc::new(RefCell::new(Progress::new(options.progress)));
    {
        let p = Rc::clone(&progress);
        let plan_copy = plan.clone();
        let status = options.run_dir.join("status.json");
        let title = format!(
            "fairmq-topology: {} ({}{})",
            plan.topology.name,
            launcher_name,
            job.as_ref()
                .map(|j| format!(" job {j}"))
                .unwrap_or_default()
        );
        let info = info.clone();
        ctl.set_frame_hook(
            Box::new(move |c: &Controller| {
                let elapsed = started.elapsed();
                p.borrow_mut()
                    .draw(&frame(&plan_copy, c, &title, elapsed), c);
                write_json(
                    &status,
                    &summary(&plan_copy, c, &info, "running", None, elapsed, Vec::new()),
                );
            }),
            Duration::from_secs(1),
        );
    }

    let all: Vec<usize> = (0..plan.instances.len()).collect();
    let result = drive(&mut ctl, plan, options);
    let mut error = result.as_ref().err().map(|e| e.to_string());
    if let Err(e) = &result {
        if !matches!(e, ControlError::Interrupted) {
            ctl.note(format!("stopping the topology: {e}"));
        } else {
            ctl.note("interrupted: stopping the topology".to_owned());
        }
        // The counters of the devices still there, then stop whatever still runs, in order.
        let live: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| ctl.devices[i].connected())
            .collect();
        let _ = ctl.refresh_stats(&live, Duration::from_secs(5));
        if let Err(e2) = ctl.shut_down(&all, options.transition_timeout) {
            ctl.note(format!("{e2}"));
        }
    }

    // Wait for the processes to end, shutting down any device that connects late (after a
    // failure during startup); SIGTERM after 30 s, SIGKILL 10 s later.
    let wait_start = Instant::now();
    let (mut sent_term, mut sent_kill) = (false, false);
    loop {
        ctl.pump(Duration::from_millis(100));
        let live = all.iter().any(|&i| {
            let d = &ctl.devices[i];
            d.connected() && !d.state.is_some_and(State::is_terminal)
        });
        if live {
            if let Err(e) = ctl.shut_down(&all, Duration::from_secs(10)) {
                ctl.note(e.to_string());
            }
        }
        if launcher.borrow_mut().all_ended() {
            ctl.pump(Duration::from_millis(0));
            break;
        }
        let waited = wait_start.elapsed();
        if waited > Duration::from_secs(30) && !sent_term {
            ctl.note("devices still running 30 s after the end; sending SIGTERM".to_owned());
            launcher.borrow_mut().terminate(false);
            sent_term = true;
        } else if waited > Duration::from_secs(40) && !sent_kill {
            ctl.note("devices still running; killing them".to_owned());
            launcher.borrow_mut().terminate(true);
            sent_kill = true;
        } else if waited > Duration::from_secs(50) {
            ctl.note("some processes did not end even after SIGKILL".to_owned());
            break;
        }
    }
    ctl.draw_frame();
    let cleanup = launcher.borrow_mut().cleanup(plan);
    progress.borrow_mut().finish(&ctl);

    let failures = ctl.failures(&all);
    let exits_failed: Vec<String> = all
        .iter()
        .filter_map(|&i| {
            let d = &ctl.devices[i];
            let exit = d.exit.as_deref()?;
            (!exit.starts_with("exit code 0")).then(|| format!("{}: {exit}", d.id))
        })
        .collect();
    let dirty: Vec<String> = cleanup
        .iter()
        .filter(|c| !c.is_clean())
        .map(|c| c.describe())
        .collect();
    if error.is_none() && !exits_failed.is_empty() {
        error = Some(format!("processes failed: {}", exits_failed.join(", ")));
    }
    if error.is_none() && !dirty.is_empty() {
        error = Some(format!("cleanup incomplete: {}", dirty.join("; ")));
    }
    let ok = error.is_none() && failures.is_empty();
    let result_word = match &result {
        Err(ControlError::Interrupted) => "interrupted",
        _ if ok => "ok",
        _ => "failed",
    };
    let s = summary(
        plan,
        &ctl,
        &info,
        result_word,
        error,
        started.elapsed(),
        cleanup,
    );
    write_json(&options.run_dir.join("summary.json"), &s);
    println!("{}", s.to_text());
    for f in &failures {
        let d = &ctl.devices[f.device];
        let node = d
            .node()
            .or_else(|| d.expected_node.clone())
            .unwrap_or_default();
        let pid = d
            .hello
            .as_ref()
            .map(|h| format!(", pid {}", h.pid))
            .unwrap_or_default();
        eprintln!(
            "FAILED: {} on node {node}{pid}: {}; process: {}",
            f.id,
            f.what,
            d.exit.as_deref().unwrap_or("(still running or unknown)")
        );
        if let Some(log) = launcher.borrow().log_file(f.device) {
            let lines = tail(&log, options.log_lines);
            eprintln!("  last {} lines of {}:", lines.len(), log.display());
            for l in lines {
                eprintln!("    {l}");
            }
        }
    }
    Ok(Outcome { ok, summary: s })
}

fn drive(ctl: &mut Controller, plan: &Plan, options: &RunOptions) -> Result<(), ControlError> {
    let all: Vec<usize> = (0..plan.instances.len()).collect();
    let t = options.transition_timeout;
    ctl.wait_connected(&all, options.startup_timeout)?;
    ctl.note(format!("all {} devices connected", all.len()));

    // Configure.
    ctl.transition(&all, Transition::InitDevice, State::InitializingDevice, t)?;
    ctl.request_all(&all, "set the channel configuration", t, |i| {
        Command::SetChannels {
            config: plan.channel_config(i),
        }
    })?;
    ctl.transition(&all, Transition::CompleteInit, State::Initialized, t)?;
    ctl.transition(&all, Transition::Bind, State::Bound, t)?;
    let mut bound: BTreeMap<(usize, String), String> = BTreeMap::new();
    for (i, inst) in plan.instances.iter().enumerate() {
        if !inst.channels.iter().any(|c| c.method == Method::Bind) {
            continue;
        }
        let props = ctl.properties(i, "chans.", t)?;
        for c in inst.channels.iter().filter(|c| c.method == Method::Bind) {
            let key = format!("chans.{}.0.address", c.name);
            let address = props
                .get(&key)
                .cloned()
                .ok_or_else(|| ControlError::Refused {
                    id: inst.id.clone(),
                    what: "reading the bound address".to_owned(),
                    error: format!("{key} is not set"),
                })?;
            bound.insert((i, c.name.clone()), address);
        }
    }
    let connectors: Vec<usize> = (0..plan.instances.len())
        .filter(|&i| {
            plan.instances[i]
                .channels
                .iter()
                .any(|c| c.method == Method::Connect)
        })
        .collect();
    ctl.request_all(&connectors, "set the peer addresses", t, |i| {
        let mut properties = BTreeMap::new();
        for c in plan.instances[i]
            .channels
            .iter()
            .filter(|c| c.method == Method::Connect)
        {
            let binding = plan.topology.connections[c.connection].binding();
            let bind_name = &plan.topology.devices[binding.device].channels[binding.channel].name;
            let addresses: Vec<String> = c
                .peers
                .iter()
                .filter_map(|p| bound.get(&(*p, bind_name.clone())).cloned())
                .collect();
            properties.insert(format!("chans.{}.0.address", c.name), addresses.join(","));
        }
        Command::SetProperties { properties }
    })?;
    ctl.transition(&all, Transition::Connect, State::DeviceReady, t)?;
    ctl.transition(&all, Transition::InitTask, State::Ready, t)?;
    ctl.note("all devices READY".to_owned());

    // Every binding channel has all its peers (best effort).
    let expected: Vec<(usize, String, usize)> = plan
        .instances
        .iter()
        .enumerate()
        .flat_map(|(i, inst)| {
            inst.channels
                .iter()
                .filter(|c| c.method == Method::Bind)
                .map(move |c| {
                    let n = plan
                        .instances
                        .iter()
                        .flat_map(|o| o.channels.iter())
                        .filter(|o| o.connection == c.connection && o.peers.contains(&i))
                        .count();
                    (i, c.name.clone(), n)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let peers_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        ctl.refresh_stats(&all, t)?;
        let missing: Vec<String> = expected
            .iter()
            .filter(|(i, name, n)| {
                let have = ctl.devices[*i]
                    .stats
                    .iter()
                    .find(|s| &s.name == name)
                    .map(|s| s.peers)
                    .unwrap_or(0);
                have < *n
            })
            .map(|(i, name, n)| format!("{}.{name} ({n} expected)", plan.instances[*i].id))
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= peers_deadline {
            ctl.note(format!(
                "not all peers connected after 10 s, running anyway: {}",
                missing.join(", ")
            ));
            break;
        }
        ctl.pump(Duration::from_millis(100));
    }

    // Run.
    let marks: Vec<usize> = all.iter().map(|&i| ctl.devices[i].history.len()).collect();
    ctl.transition(&all, Transition::Run, State::Running, t)?;
    ctl.note("all devices RUNNING".to_owned());
    let run_start = Instant::now();
    let finite: Vec<usize> = all.iter().copied().filter(|&i| plan.is_finite(i)).collect();
    let mut noted_self_stop = vec![false; all.len()];
    loop {
        ctl.pump(Duration::from_millis(100));
        ctl.check(&all)?;
        for &i in &all {
            let d = &ctl.devices[i];
            if !plan.is_finite(i)
                && !noted_self_stop[i]
                && d.reached_since(State::Running, marks[i])
                && d.state != Some(State::Running)
            {
                noted_self_stop[i] = true;
                let id = d.id.clone();
                ctl.note(format!("{id} left RUNNING by itself"));
            }
        }
        let finished = |c: &Controller, i: usize| {
            let d = &c.devices[i];
            d.reached_since(State::Running, marks[i]) && d.state != Some(State::Running)
        };
        if !finite.is_empty() && finite.iter().all(|&i| finished(ctl, i)) {
            ctl.note("every finite device has finished".to_owned());
            break;
        }
        if let Some(d) = options.duration {
            if run_start.elapsed() >= d {
                ctl.note(format!("--duration {} s reached", d.as_secs()));
                break;
            }
        }
        if let Some(m) = options.max_run_time {
            if run_start.elapsed() >= m {
                return Err(ControlError::Timeout {
                    step: "the run (--max-run-time)".to_owned(),
                    timeout: m,
                    waiting: finite
                        .iter()
                        .filter(|&&i| !finished(ctl, i))
                        .map(|&i| {
                            format!("{} ({})", ctl.devices[i].id, ctl.devices[i].state_name())
                        })
                        .collect(),
                });
            }
        }
    }

    // Stop.
    let running: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| ctl.devices[i].state == Some(State::Running))
        .collect();
    ctl.transition(&running, Transition::Stop, State::Ready, t)?;
    ctl.wait_until(&all, "waiting for READY", t, |_, d| {
        d.state == Some(State::Ready)
    })?;
    ctl.refresh_stats(&all, t)?;
    ctl.draw_frame();

    // Terminate.
    ctl.transition(&all, Transition::ResetTask, State::DeviceReady, t)?;
    ctl.transition(&all, Transition::ResetDevice, State::Idle, t)?;
    ctl.transition(&all, Transition::End, State::Exiting, t)?;
    ctl.note("all devices EXITING".to_owned());
    Ok(())
}
