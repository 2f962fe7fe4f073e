//! `--launcher local`: every instance is a child process of the controller on this machine,
//! each in its own process group (a Ctrl-C reaches only the controller, which stops the
//! devices in order), with stdout and stderr in `<run-dir>/logs/<id>.log`.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rustix::process::{kill_process, Pid, Signal};

use super::{describe_status, Exit, LaunchError, Launcher};
use crate::cleanup::{clean_host, HostCleanup};
use crate::plan::{host_session, ipc_prefix, Plan};

/// Runs the devices as children.
#[derive(Debug)]
pub struct LocalLauncher {
    log_dir: PathBuf,
    children: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
}

impl LocalLauncher {
    /// Logs go to `<run_dir>/logs/`.
    pub fn new(run_dir: &std::path::Path) -> LocalLauncher {
        LocalLauncher {
            log_dir: run_dir.join("logs"),
            children: Vec::new(),
            logs: Vec::new(),
        }
    }
}

impl Launcher for LocalLauncher {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&mut self, plan: &Plan, controller: &str) -> Result<(), LaunchError> {
        std::fs::create_dir_all(&self.log_dir).map_err(|source| LaunchError::Write {
            path: self.log_dir.clone(),
            source,
        })?;
        for i in 0..plan.instances.len() {
            let args = plan.command(i, controller);
            let log = self.log_dir.join(format!("{}.log", plan.instances[i].id));
            let out = File::create(&log).map_err(|source| LaunchError::Write {
                path: log.clone(),
                source,
            })?;
            let err = out.try_clone().map_err(|source| LaunchError::Write {
                path: log.clone(),
                source,
            })?;
            let child = Command::new(&args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0)
                .spawn()
                .map_err(|source| LaunchError::Spawn {
                    what: format!("{} ({})", plan.instances[i].id, args[0]),
                    source,
                })?;
            self.children.push(Some(child));
            self.logs.push(log);
        }
        Ok(())
    }

    fn poll_exits(&mut self) -> Vec<Exit> {
        let mut exits = Vec::new();
        for (i, slot) in self.children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                let (how, failed) = describe_status(status);
                exits.push(Exit {
                    instance: i,
                    how,
                    failed,
                });
                *slot = None;
            }
        }
        exits
    }

    fn all_ended(&mut self) -> bool {
        self.children.iter().all(Option::is_none)
    }

    fn terminate(&mut self, force: bool) {
        for child in self.children.iter_mut().flatten() {
            if force {
                let _ = child.kill();
            } else if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::TERM);
            }
        }
    }

    fn log_file(&self, i: usize) -> Option<PathBuf> {
        self.logs.get(i).cloned()
    }

    fn cleanup(&mut self, plan: &Plan) -> Vec<HostCleanup> {
        plan.hosts
            .iter()
            .map(|h| {
                let session = host_session(&plan.session, &h.name);
                clean_host(&h.name, &session, &ipc_prefix(&session))
            })
            .collect()
    }
}

impl Drop for LocalLauncher {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
