//! `--launcher slurm`: the whole topology as one job step of the current Slurm allocation.
//!
//! * Hosts: the allocation's nodes (`SLURM_JOB_NODELIST` expanded by `scontrol show
//!   hostnames`), in order; node slot `i` of the plan runs on node `i`. A node's address is its
//!   `NodeAddr` from `scontrol show node` (node names need not resolve).
//! * One `srun --multi-prog` step with `K` tasks on each of the `N` nodes (`K` = the most
//!   instances on one node; `--distribution=block`, so rank `r` runs on node `r / K`): rank
//!   `r` runs the `r % K`-th instance of its node, or `/bin/true` where a node has fewer. Every
//!   task's output goes to `<run-dir>/logs/task-<rank>.log`, srun's own to `<run-dir>/srun.log`.
//!   The odc plugin reports `SLURMD_NODENAME`, and the controller checks it against the plan.
//! * `--kill-on-bad-exit=0`: a task that dies does not take the step down; the controller
//!   reports it and stops the others in order.
//! * Cleanup: a second step with one task per node runs `fairmq-topology-node cleanup`, which
//!   removes the node's session if it is dead and reports what is left.
//!
//! The allocation itself comes from `salloc` (see the `fairmq-topology` binary), or from the
//! surrounding job when `fairmq-topology` runs inside `sbatch`/`salloc`.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{describe_status, Exit, LaunchError, Launcher};
use crate::cleanup::HostCleanup;
use crate::plan::{Host, Plan};

fn run(program: &str, args: &[&str]) -> Result<String, LaunchError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LaunchError::Spawn {
            what: format!("{program} {}", args.join(" ")),
            source,
        })?;
    if !out.status.success() {
        return Err(LaunchError::Slurm(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            describe_status(out.status).0,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `NodeAddr=` of `scontrol show node -o` output.
pub fn parse_node_addr(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|t| t.strip_prefix("NodeAddr="))
        .map(str::to_owned)
}

/// The job id and the nodes of the current allocation (from `SLURM_JOB_ID` and
/// `SLURM_JOB_NODELIST`), with their addresses.
pub fn allocation() -> Result<(String, Vec<Host>), LaunchError> {
    let job = std::env::var("SLURM_JOB_ID").map_err(|_| {
        LaunchError::Slurm("not inside a Slurm allocation (SLURM_JOB_ID is not set)".to_owned())
    })?;
    let list = std::env::var("SLURM_JOB_NODELIST")
        .or_else(|_| std::env::var("SLURM_NODELIST"))
        .map_err(|_| {
            LaunchError::Slurm(format!(
                "job {job}: SLURM_JOB_NODELIST is not set; cannot tell which nodes the job has"
            ))
        })?;
    let names = run("scontrol", &["show", "hostnames", &list])?;
    let mut hosts = Vec::new();
    for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
        let info = run("scontrol", &["show", "node", name, "-o"])?;
        let address = parse_node_addr(&info).ok_or_else(|| {
            LaunchError::Slurm(format!(
                "scontrol show node {name} names no NodeAddr: {}",
                info.trim()
            ))
        })?;
        hosts.push(Host {
            name: name.to_owned(),
            address: Some(address),
        });
    }
    Ok((job, hosts))
}

/// The cluster's `JobContainerType` from `scontrol show config`, unless none.
pub fn job_container_type() -> Option<String> {
    let text = run("scontrol", &["show", "config"]).ok()?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "JobContainerType").then(|| v.trim().to_owned())
        })
        .filter(|v| !v.is_empty() && v != "(null)" && v != "job_container/none")
}

/// The ranks of `tasks a-b,c` in an srun message.
fn parse_ranks(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// `(ranks, what)` of the srun messages about ended tasks, e.g.
/// `srun: error: n3: task 4: Killed` or `srun: error: n1: tasks 0-1: Exited with exit code 1`.
pub fn parse_task_exits(log: &str) -> Vec<(Vec<usize>, String)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(pos) = line.find(": task") else {
            continue;
        };
        let rest = &line[pos + 2..];
        let rest = rest
            .strip_prefix("tasks ")
            .or_else(|| rest.strip_prefix("task "));
        let Some(rest) = rest else { continue };
        let Some((ranks, what)) = rest.split_once(": ") else {
            continue;
        };
        let ranks = parse_ranks(ranks);
        if !ranks.is_empty() {
            out.push((ranks, what.trim().to_owned()));
        }
    }
    out
}

/// Runs the topology as a step of the current allocation.
#[derive(Debug)]
pub struct SlurmLauncher {
    run_dir: PathBuf,
    job: String,
    extra_srun_args: Vec<String>,
    node_tool: PathBuf,
    ranks: Vec<Option<usize>>,
    srun: Option<Child>,
    srun_status: Option<std::process::ExitStatus>,
    reported: BTreeSet<usize>,
    job_container: Option<String>,
}

impl SlurmLauncher {
    /// A launcher for job `job`; `node_tool` is `fairmq-topology-node`.
    pub fn new(
        run_dir: &Path,
        job: String,
        node_tool: PathBuf,
        extra_srun_args: Vec<String>,
    ) -> SlurmLauncher {
        SlurmLauncher {
            run_dir: run_dir.to_owned(),
            job,
            extra_srun_args,
            node_tool,
            ranks: Vec::new(),
            srun: None,
            srun_status: None,
            reported: BTreeSet::new(),
            job_container: job_container_type(),
        }
    }

    fn srun_log(&self) -> PathBuf {
        self.run_dir.join("srun.log")
    }

    fn node_list(plan: &Plan) -> String {
        plan.hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Where job_container/tmpfs mounts a private, empty directory for every job step.
const JOB_PRIVATE_DIRS: [&str; 2] = ["/tmp", "/dev/shm"];

/// The first of `executables` (what runs it, and its path) that job_container/tmpfs hides from
/// the job's steps (it lies under one of [`JOB_PRIVATE_DIRS`]), as the error that names it:
/// started anyway, every step would end at once with srun's exit code 2 and no word of why.
fn hidden_by_job_container<'a>(
    executables: impl IntoIterator<Item = (&'a str, &'a Path)>,
) -> Option<LaunchError> {
    executables.into_iter().find_map(|(who, exe)| {
        let dir = JOB_PRIVATE_DIRS.iter().find(|d| exe.starts_with(d))?;
        Some(LaunchError::Slurm(format!(
            "{who}: executable {} lies under {dir}, which job_container/tmpfs replaces by a private, empty directory in every job step; build or copy the executables elsewhere (a clone outside {dir}, or --bin-dir)",
            exe.display()
        )))
    })
}

/// Whether `arg` survives srun's `--multi-prog` line splitting unchanged.
fn multi_prog_safe(arg: &str) -> bool {
    !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '%' | '#'))
}

impl Launcher for SlurmLauncher {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn job(&self) -> Option<String> {
        Some(self.job.clone())
    }

    fn notes(&self) -> Vec<String> {
        match self.job_container.as_deref() {
            Some("job_container/tmpfs") => vec![format!(
                "job_container/tmpfs: /dev/shm and /tmp of every node are private to job {} and removed when it ends; the cleanup step checks them before that",
                self.job
            )],
            Some(other) => vec![format!("JobContainerType is {other}")],
            None => vec![format!(
                "no job_container: the cleanup step removes what is left of job {} on every node (flock liveness)",
                self.job
            )],
        }
    }

    fn start(&mut self, plan: &Plan, controller: &str) -> Result<(), LaunchError> {
        if self.job_container.as_deref() == Some("job_container/tmpfs") {
            let devices = plan
                .instances
                .iter()
                .map(|i| (i.id.as_str(), i.executable.as_path()));
            let node_tool = std::iter::once(("the cleanup step", self.node_tool.as_path()));
            if let Some(e) = hidden_by_job_container(devices.chain(node_tool)) {
                return Err(e);
            }
        }
        let logs = self.run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| LaunchError::Write {
            path: logs.clone(),
            source,
        })?;
        let per_host: Vec<Vec<usize>> = (0..plan.hosts.len())
            .map(|h| plan.instances_on(h))
            .collect();
        let k = per_host.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let n = plan.hosts.len();
        let mut conf = String::new();
        for (h, list) in per_host.iter().enumerate() {
            for l in 0..k {
                let rank = h * k + l;
                match list.get(l) {
                    Some(&i) => {
                        let args = plan.command(i, controller);
                        if let Some(bad) = args.iter().find(|a| !multi_prog_safe(a)) {
                            return Err(LaunchError::Slurm(format!(
                                "device '{}': argument {bad:?} cannot be passed through srun --multi-prog (no spaces, quotes, backslashes, % or #)",
                                plan.topology.devices[plan.instances[i].device].name
                            )));
                        }
                        conf.push_str(&format!("{rank} {}\n", args.join(" ")));
                        self.ranks.push(Some(i));
                    }
                    None => {
                        conf.push_str(&format!("{rank} /bin/true\n"));
                        self.ranks.push(None);
                    }
                }
            }
        }
        let conf_path = self.run_dir.join("multi-prog.conf");
        std::fs::write(&conf_path, conf).map_err(|source| LaunchError::Write {
            path: conf_path.clone(),
            source,
        })?;
        let log = File::create(self.srun_log()).map_err(|source| LaunchError::Write {
            path: self.srun_log(),
            source,
        })?;
        let err = log.try_clone().map_err(|source| LaunchError::Write {
            path: self.srun_log(),
            source,
        })?;
        let mut args: Vec<String> = vec![
            format!("--jobid={}", self.job),
            format!("--nodes={n}"),
            format!("--nodelist={}", Self::node_list(plan)),
            format!("--ntasks={}", n * k),
            format!("--ntasks-per-node={k}"),
            "--distribution=block".to_owned(),
            "--overcommit".to_owned(),
            "--kill-on-bad-exit=0".to_owned(),
            format!("--job-name=fairmq-topology-{}", plan.topology.name),
            format!("--output={}/task-%t.log", logs.display()),
        ];
        args.extend(self.extra_srun_args.iter().cloned());
        args.push("--multi-prog".to_owned());
        args.push(conf_path.display().to_string());
        let child = Command::new("srun")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                what: format!("srun {}", args.join(" ")),
                source,
            })?;
        std::fs::write(
            self.run_dir.join("srun.cmd"),
            format!("srun {}\n", args.join(" ")),
        )
        .map_err(|source| LaunchError::Write {
            path: self.run_dir.join("srun.cmd"),
            source,
        })?;
        self.srun = Some(child);
        Ok(())
    }

    fn poll_exits(&mut self) -> Vec<Exit> {
        self.poll_srun();
        let text = std::fs::read_to_string(self.srun_log()).unwrap_or_default();
        let mut exits = Vec::new();
        for (ranks, what) in parse_task_exits(&text) {
            for r in ranks {
                if let Some(Some(i)) = self.ranks.get(r) {
                    if self.reported.insert(*i) {
                        exits.push(Exit {
                            instance: *i,
                            how: format!("{what} (srun task {r})"),
                            failed: true,
                        });
                    }
                }
            }
        }
        if self.srun_status.is_some() {
            // srun has ended: the tasks it said nothing about exited with code 0.
            for (r, slot) in self.ranks.iter().enumerate() {
                if let Some(i) = slot {
                    if self.reported.insert(*i) {
                        exits.push(Exit {
                            instance: *i,
                            how: format!("exit code 0 (srun task {r})"),
                            failed: false,
                        });
                    }
                }
            }
        }
        exits
    }

    fn all_ended(&mut self) -> bool {
        self.poll_srun().is_some()
    }

    fn terminate(&mut self, force: bool) {
        if self.srun.is_none() {
            return;
        }
        let signal = if force { "KILL" } else { "TERM" };
        let _ = Command::new("scancel")
            .args([format!("--signal={signal}"), self.job.clone()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if force {
            if let Some(c) = self.srun.as_mut() {
                let _ = c.kill();
            }
        }
    }

    fn log_file(&self, i: usize) -> Option<PathBuf> {
        let rank = self.ranks.iter().position(|r| *r == Some(i))?;
        Some(self.run_dir.join("logs").join(format!("task-{rank}.log")))
    }

    fn cleanup(&mut self, plan: &Plan) -> Vec<HostCleanup> {
        let n = plan.hosts.len();
        let failed = |why: String| -> Vec<HostCleanup> {
            plan.hosts
                .iter()
                .map(|h| HostCleanup {
                    host: h.name.clone(),
                    session: crate::plan::host_session(&plan.session, &h.name),
                    error: Some(why.clone()),
                    ..HostCleanup::default()
                })
                .collect()
        };
        let tool = self.node_tool.display().to_string();
        let out = Command::new("srun")
            .args([
                format!("--jobid={}", self.job),
                format!("--nodes={n}"),
                format!("--nodelist={}", Self::node_list(plan)),
                format!("--ntasks={n}"),
                "--ntasks-per-node=1".to_owned(),
                "--overcommit".to_owned(),
                format!("--job-name=fairmq-topology-cleanup-{}", plan.topology.name),
                tool,
                "cleanup".to_owned(),
                "--session-prefix".to_owned(),
                plan.session.clone(),
            ])
            .stdin(Stdio::null())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => return failed(format!("cannot run the cleanup step (srun): {e}")),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut reports: Vec<HostCleanup> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        for h in &plan.hosts {
            if !reports.iter().any(|r| r.host == h.name) {
                reports.push(HostCleanup {
                    host: h.name.clone(),
                    session: crate::plan::host_session(&plan.session, &h.name),
                    error: Some(format!(
                        "the cleanup step reported nothing for this node ({}): {}",
                        describe_status(out.status).0,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    ..HostCleanup::default()
                });
            }
        }
        reports.sort_by_key(|r| plan.hosts.iter().position(|h| h.name == r.host));
        reports
    }
}

impl SlurmLauncher {
    /// How srun ended, once it has (without blocking).
    fn poll_srun(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(child) = self.srun.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.srun_status = Some(status);
                self.srun = None;
            }
        }
        self.srun_status
    }
}

impl Drop for SlurmLauncher {
    fn drop(&mut self) {
        if let Some(c) = self.srun.as_mut() {
            let _ = Command::new("scancel")
                .args(["--signal=KILL", &self.job])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_task_messages() {
        let log = "srun: error: n3: task 4: Killed\nsrun: Terminating StepId=5.0\nsrun: error: n1: tasks 0-1,3: Exited with exit code 1\n";
        assert_eq!(
            parse_task_exits(log),
            vec![
                (vec![4], "Killed".to_owned()),
                (vec![0, 1, 3], "Exited with exit code 1".to_owned())
            ]
        );
    }

    #[test]
    fn executables_that_job_container_tmpfs_hides_are_named() {
        let ok = Path::new("/work/target/debug/fairmq-sink");
        assert!(hidden_by_job_container([("sink-0", ok)]).is_none());
        let hidden = Path::new("/tmp/clone/target/debug/fairmq-sampler");
        let msg = hidden_by_job_container([("sink-0", ok), ("sampler-0", hidden)])
            .expect("found")
            .to_string();
        assert!(
            msg.contains("sampler-0")
                && msg.contains("/tmp/clone/target/debug/fairmq-sampler")
                && msg.contains("lies under /tmp")
                && msg.contains("--bin-dir"),
            "{msg}"
        );
        // A path component, not a string prefix: /tmpfoo is not /tmp.
        assert!(hidden_by_job_container([("x", Path::new("/tmpfoo/bin"))]).is_none());
        assert!(hidden_by_job_container([("x", Path::new("/dev/shm/bin"))]).is_some());
    }

    #[test]
    fn node_address() {
        let o = "NodeName=n2 Arch=x86_64 CoresPerSocket=1 NodeAddr=127.0.0.12 NodeHostName=n2 Port=17012";
        assert_eq!(parse_node_addr(o).as_deref(), Some("127.0.0.12"));
        assert!(multi_prog_safe("--msg-size"));
        assert!(!multi_prog_safe("a b"));
        assert!(!multi_prog_safe("50%"));
    }
}
