//! The `shmmonitor` plugin with real devices: `--shm-monitor true` starts exactly one daemon
//! per session (20 times with two devices starting together), the daemon removes the session of
//! SIGKILLed devices and exits, it never removes the session of stopped devices, and the plugin
//! loads dynamically (`-P shmmonitor -S <dir>`) and prelinked (`-P p:shmmonitor`).
//!
//! The daemons run with `--verbose` (`FAIRMQ_SHMMONITOR_VERBOSE=true`), so their log files
//! (`fairmq-shmmonitor_<timestamp>.log`, in the devices' working directory, the session's temp
//! dir) show what they did.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{monitor_processes, process_gone, wait_until, Proc, Session, Signal, LONG};

const MONITOR: [&str; 2] = ["--shm-monitor", "true"];

fn verbose_daemon(c: &mut std::process::Command) {
    c.env("FAIRMQ_SHMMONITOR_VERBOSE", "true");
}

fn sink(s: &Session, id: &str, addr: &str, extra: &[&str]) -> Proc {
    common::sink_with(s, id, addr, extra, verbose_daemon)
}

fn sampler(s: &Session, id: &str, addr: &str, extra: &[&str]) -> Proc {
    common::sampler_with(s, id, addr, extra, verbose_daemon)
}

/// The monitor pid a device reported, and whether it started it (`Started`) or found it.
fn reported_monitor(p: &mut Proc, s: &Session) -> (u32, bool) {
    let needle = format!("fairmq-shmmonitor for shared memory id {} (pid ", s.id);
    p.wait_for_output(&needle, LONG);
    let out = p.output();
    let line = out.lines().find(|l| l.contains(&needle)).unwrap();
    let pid = line
        .split(&needle)
        .nth(1)
        .and_then(|r| r.split([',', ')']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pid in: {line}"));
    let started = line.contains("Started fairmq-shmmonitor");
    assert!(
        started || line.contains("Found fairmq-shmmonitor"),
        "{line}"
    );
    (pid, started)
}

/// The daemon's log file in the session's directory.
fn daemon_log(s: &Session) -> String {
    let Ok(rd) = std::fs::read_dir(s.dir.path()) else {
        return String::new();
    };
    rd.flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("fairmq-shmmonitor_") && n.ends_with(".log")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn wait_daemon_observing(s: &Session) {
    wait_until(LONG, "the daemon to observe the session", || {
        daemon_log(s).contains("observing the session")
    });
}

#[test]
fn daemon_removes_the_session_of_killed_devices_within_3s() {
    let s = Session::new("killed");
    let addr = s.ipc("data");
    let mut a = sink(&s, "sink", &addr, &MONITOR);
    let mut b = sampler(&s, "sampler", &addr, &MONITOR);
    let (pa, sa) = reported_monitor(&mut a, &s);
    let (pb, sb) = reported_monitor(&mut b, &s);
    assert_eq!(pa, pb, "the devices report different monitors");
    assert!(sa ^ sb, "exactly one device starts the monitor");
    assert_eq!(monitor_processes(&s.id), vec![pa]);
    assert_eq!(s.monitor_pid(), Some(pa));
    a.wait_for_output("RUNNING", LONG);
    b.wait_for_output("RUNNING", LONG);
    wait_daemon_observing(&s);
    wait_until(LONG, "heartbeats", || {
        fairmq_shmem::monitor::describe(&s.id)
            .ok()
            .flatten()
            .is_some_and(|r| r.devices == 2 && r.heartbeat > 5)
    });

    a.kill();
    b.kill();
    let killed = Instant::now();
    wait_until(LONG, "the daemon to remove the session and exit", || {
        s.objects().is_empty() && process_gone(pa)
    });
    let took = killed.elapsed();
    eprintln!("SIGKILL of both devices -> session removed and daemon gone: {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let log = daemon_log(&s);
    assert!(
        log.contains("no heartbeats since over 2000 milliseconds, cleaning..."),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Successfully removed '{}'.",
            s.id.management_name()
        )),
        "{log}"
    );
    assert!(
        log.contains("self destructing (segment has been observed and cleaned up by the monitor)"),
        "{log}"
    );
    s.assert_clean();
}

#[test]
fn devices_started_together_spawn_exactly_one_daemon() {
    let t0 = Instant::now();
    for rep in 0..20 {
        let s = Session::new("together");
        let mut a = sink(&s, "sink1", &s.ipc("a"), &MONITOR);
        let mut b = sink(&s, "sink2", &s.ipc("b"), &MONITOR);
        let (pa, sa) = reported_monitor(&mut a, &s);
        let (pb, sb) = reported_monitor(&mut b, &s);
        assert_eq!(pa, pb, "rep {rep}: different monitors");
        assert!(sa ^ sb, "rep {rep}: started by both or by none");
        assert_eq!(monitor_processes(&s.id), vec![pa], "rep {rep}");
        a.wait_for_output("RUNNING", LONG);
        b.wait_for_output("RUNNING", LONG);
        wait_daemon_observing(&s);
        a.signal(Signal::INT);
        b.signal(Signal::INT);
        a.success();
        b.success();
        // The devices removed their session; the daemon notices and leaves.
        wait_until(LONG, "the daemon to exit", || process_gone(pa));
        assert!(
            daemon_log(&s)
                .contains("self destructing (segment has been observed and cleaned up orderly)"),
            "rep {rep}: {}",
            daemon_log(&s)
        );
        s.assert_clean();
    }
    eprintln!("20 repetitions: {:?}", t0.elapsed());
}

#[test]
fn stopped_devices_are_never_cleaned_away() {
    let s = Session::new("stopped");
    let addr = s.ipc("data");
    let mut a = sink(&s, "sink", &addr, &MONITOR);
    let mut b = sampler(&s, "sampler", &addr, &MONITOR);
    let (daemon, _) = reported_monitor(&mut a, &s);
    a.wait_for_output("RUNNING", LONG);
    b.wait_for_output("RUNNING", LONG);
    wait_daemon_observing(&s);
    let present = |s: &Session| {
        let o = s.objects();
        o.contains(&s.id.management_name()) && o.contains(&s.id.segment_name(0))
    };
    // Hold for 4 s (twice the daemon's timeout) and check the session all along.
    let hold = |what: &str| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(4) {
            assert!(present(&s), "{what}: the session was removed");
            assert!(!process_gone(daemon), "{what}: the daemon left");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The sampler frozen beside the live sink.
    b.signal(Signal::STOP);
    hold("sampler stopped");
    b.signal(Signal::CONT);
    // Both frozen: no heartbeats at all for longer than the timeout, but both still hold the
    // session open, so the daemon leaves it alone.
    a.signal(Signal::STOP);
    b.signal(Signal::STOP);
    hold("both stopped");
    a.signal(Signal::CONT);
    b.signal(Signal::CONT);
    let log = daemon_log(&s);
    assert!(
        log.contains(
            "no heartbeats since over 2000 milliseconds, but processes still hold the session open"
        ),
        "{log}"
    );
    assert!(!log.contains("cleaning..."), "{log}");
    a.signal(Signal::INT);
    b.signal(Signal::INT);
    a.success();
    b.success();
    wait_until(LONG, "the daemon to exit", || process_gone(daemon));
    s.assert_clean();
    let log = daemon_log(&s);
    assert!(
        log.contains("self destructing (segment has been observed and cleaned up orderly)"),
        "{log}"
    );
    assert!(!log.contains("cleaning..."), "{log}");
}

/// Whether `pid` has a file named `lib` mapped, and from where.
fn mapped(pid: u32, lib: &str) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut v: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.ends_with(lib))
        .map(PathBuf::from)
        .collect();
    v.dedup();
    v
}

const CDYLIB: &str = "libfairmq_plugin_shmmonitor.so";

#[test]
fn plugin_loads_dynamically_and_prelinked() {
    // Dynamic, from a directory given with -S (a copy of the cdylib cargo built for this test).
    let built = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join(CDYLIB);
    assert!(built.is_file(), "{} missing", built.display());
    let s = Session::new("dynamic");
    let plugins = s.dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(&built, plugins.join(CDYLIB)).unwrap();
    let dir = plugins.display().to_string();
    let mut d = sink(
        &s,
        "sink",
        &s.ipc("data"),
        &["-S", &dir, "-P", "shmmonitor", "--severity", "debug"],
    );
    let (daemon, started) = reported_monitor(&mut d, &s);
    assert!(started);
    d.wait_for_output("Loaded plugin: 'shmmonitor'", LONG);
    d.wait_for_output("RUNNING", LONG);
    assert_eq!(
        mapped(d.pid(), CDYLIB),
        vec![plugins.join(CDYLIB)],
        "the plugin was not loaded from -S"
    );
    wait_daemon_observing(&s);
    d.signal(Signal::INT);
    d.success();
    wait_until(LONG, "the daemon to exit", || process_gone(daemon));
    s.assert_clean();

    // Prelinked: nothing is loaded from a file.
    let s = Session::new("prelinked");
    let mut d = sink(&s, "sink", &s.ipc("data"), &["-P", "p:shmmonitor"]);
    let (daemon, started) = reported_monitor(&mut d, &s);
    assert!(started);
    d.wait_for_output("RUNNING", LONG);
    assert_eq!(mapped(d.pid(), CDYLIB), Vec::<PathBuf>::new());
    // A second device of the session with --shm-monitor true finds it.
    let mut e = sink(&s, "sink2", &s.ipc("data2"), &MONITOR);
    let (found, started) = reported_monitor(&mut e, &s);
    assert_eq!((found, started), (daemon, false));
    e.wait_for_output("RUNNING", LONG);
    wait_daemon_observing(&s);
    d.signal(Signal::INT);
    e.signal(Signal::INT);
    d.success();
    e.success();
    wait_until(LONG, "the daemon to exit", || process_gone(daemon));
    s.assert_clean();
    assert!(Path::new(&dir).exists());
}
