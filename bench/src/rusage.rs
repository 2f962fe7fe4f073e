//! Reaping a child with its resource usage: `wait4(2)`, which returns the exit status together
//! with the child's own `ru_maxrss` (its peak resident set, in KiB on Linux; shared-memory pages
//! the child touched count too). std's `Child::wait` drops the rusage, and rustix has no `wait4`,
//! so this is the one libc call of the crate.
//!
//! A child reaped here must not be waited for or killed through std's `Child` afterwards (its pid
//! may have been reused): [`crate::runner`] remembers that it reaped it.
//!
//! The floor: std spawns with `posix_spawn`, which glibc implements with `clone(CLONE_VM |
//! CLONE_VFORK)`; when the child then execs, the kernel folds the high-water RSS of the address
//! space it leaves (the parent's) into the child's `ru_maxrss`. A child's figure is therefore
//! max(the tool's own peak RSS when it spawned the child, the child's own peak), exact only when
//! it is above the tool's peak. [`own_peak_rss_kib`] reads that peak (`VmHWM` of
//! /proc/self/status) at each spawn, and the tool keeps its own peak low while it runs devices
//! (the 512 MiB memcpy measurement runs after them), but it is still some 6 MiB, about what a
//! small device needs. So the runner also polls each device's own `VmHWM` (its address space
//! after exec, without the floor) while it runs, and [`PeakRss::kib`] takes `ru_maxrss` when
//! it is above the floor (exact) and the last polled `VmHWM` otherwise (a lower bound that
//! misses only growth in the last poll interval before the exit).

use std::io;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Code(c) => write!(f, "exit code {c}"),
            Ending::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// A reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exited {
    /// How it ended.
    pub ending: Ending,
    /// Its peak resident set size in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
}

/// Reaps child `pid` if it has exited (`WNOHANG`): `Ok(None)` while it runs.
pub fn try_reap(pid: u32) -> io::Result<Option<Exited>> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are live, writable locals of the types wait4 expects; it
        // keeps neither pointer after returning.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let ending = if libc::WIFEXITED(status) {
            Ending::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Ending::Signal(libc::WTERMSIG(status))
        } else {
            // Stopped or continued (not requested): still running.
            return Ok(None);
        };
        return Ok(Some(Exited {
            ending,
            max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        }));
    }
}

/// The raw figures of one device's peak RSS, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeakRss {
    /// `ru_maxrss` from `wait4`.
    pub ru_maxrss_kib: u64,
    /// The tool's own peak RSS when it spawned the device (`None`: unknown).
    pub floor_kib: Option<u64>,
    /// The device's `VmHWM`, last polled before it exited.
    pub polled_kib: Option<u64>,
}

impl PeakRss {
    /// Slack over the floor (the kernel's RSS counters are approximate).
    const SLACK_KIB: u64 = 1024;

    /// A figure known to be exact.
    #[cfg(test)]
    pub fn exact(kib: u64) -> PeakRss {
        PeakRss {
            ru_maxrss_kib: kib,
            floor_kib: None,
            polled_kib: Some(kib),
        }
    }

    /// Whether `ru_maxrss` is the device's own (clearly above the floor).
    pub fn ru_maxrss_is_own(&self) -> bool {
        self.floor_kib
            .is_some_and(|f| self.ru_maxrss_kib > f + Self::SLACK_KIB)
    }

    /// The peak: `ru_maxrss` if it is the device's own, else the polled `VmHWM`.
    pub fn kib(&self) -> Option<u64> {
        if self.ru_maxrss_is_own() {
            Some(self.ru_maxrss_kib.max(self.polled_kib.unwrap_or(0)))
        } else {
            self.polled_kib
        }
    }
}

/// `VmHWM` of process `pid` (`None` once it has exited or if unreadable).
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmHWM` (peak resident set, KiB) from the text of a /proc/<pid>/status.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB") && words.next().is_none()).then_some(kib)
}

/// This process's own peak RSS in KiB: the floor under the `ru_maxrss` of a child it spawns now.
pub fn own_peak_rss_kib() -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string("/proc/self/status").ok()?)
}

#[cfg(test)]
// The children are reaped with wait4, which clippy cannot see.
#[allow(clippy::zombie_processes)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// The tests that depend on this process's own RSS (the floor) run one at a time.
    fn rss_lock() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap(pid: u32) -> Exited {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = try_reap(pid).expect("wait4") {
                return e;
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn dd(mib: u64) -> Exited {
        // dd reads `mib` MiB of zeros into one buffer of that size.
        let c = Command::new("dd")
            .args([
                "if=/dev/zero",
                "of=/dev/null",
                &format!("bs={mib}M"),
                "count=1",
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dd");
        reap(c.id())
    }

    #[test]
    fn reports_each_childs_own_peak_rss_above_the_floor() {
        let _serial = rss_lock();
        let floor = own_peak_rss_kib().expect("VmHWM of this process");
        // Children far above the floor: each one's own peak, not the largest child so far
        // (which is what getrusage(RUSAGE_CHILDREN) would say).
        let big_mib = floor / 1024 + 160;
        let small_mib = floor / 1024 + 40;
        let big = dd(big_mib);
        assert_eq!(big.ending, Ending::Code(0));
        assert!(
            (big_mib * 1024..(big_mib + 16) * 1024).contains(&big.max_rss_kib),
            "{big:?}, floor {floor} KiB"
        );
        let small = dd(small_mib);
        assert!(
            (small_mib * 1024..(small_mib + 16) * 1024).contains(&small.max_rss_kib),
            "{small:?}, floor {floor} KiB"
        );
    }

    #[test]
    fn a_tiny_child_inherits_the_floor() {
        // `true` needs ~1 MiB, but the address space it was spawned from (ours, via vfork)
        // counts: with 64 MiB resident here, its figure is at least about that. This is why the
        // runner falls back to the polled VmHWM when a figure does not exceed the floor.
        let _serial = rss_lock();
        let held = vec![1u8; 64 << 20];
        std::hint::black_box(&held);
        let c = Command::new("true").spawn().expect("true");
        let e = reap(c.id());
        drop(held);
        assert_eq!(e.ending, Ending::Code(0));
        assert!(e.max_rss_kib >= 60 * 1024, "{e:?}");
    }

    #[test]
    fn peak_takes_ru_maxrss_only_above_the_floor() {
        let p = |ru, floor, polled| PeakRss {
            ru_maxrss_kib: ru,
            floor_kib: floor,
            polled_kib: polled,
        };
        assert_eq!(p(30_000, Some(6_000), Some(29_000)).kib(), Some(30_000));
        assert_eq!(p(30_000, Some(6_000), None).kib(), Some(30_000));
        // At the floor: the figure is the tool's, not the device's.
        assert_eq!(p(6_500, Some(6_000), Some(5_000)).kib(), Some(5_000));
        assert_eq!(p(6_500, Some(6_000), None).kib(), None);
        assert_eq!(p(30_000, None, Some(29_000)).kib(), Some(29_000));
        assert_eq!(PeakRss::exact(7).kib(), Some(7));
    }

    #[test]
    fn polls_a_running_childs_own_peak() {
        // sleep's own VmHWM is far below the 64 MiB held here, which its ru_maxrss will show.
        let _serial = rss_lock();
        let held = vec![1u8; 64 << 20];
        std::hint::black_box(&held);
        let c = Command::new("sleep").arg("0.3").spawn().expect("sleep");
        std::thread::sleep(Duration::from_millis(100));
        let polled = vm_hwm_kib(c.id()).expect("VmHWM of a running child");
        let e = reap(c.id());
        drop(held);
        assert!(polled > 0 && polled < 16 * 1024, "{polled}");
        assert!(e.max_rss_kib >= 60 * 1024, "{e:?}");
        assert_eq!(vm_hwm_kib(c.id()), None, "reaped");
    }

    #[test]
    fn vm_hwm() {
        let status = "Name:\tsink\nVmPeak:\t  300 kB\nVmHWM:\t   23380 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(23380));
        assert_eq!(parse_vm_hwm("VmRSS:\t 1 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t x kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
        assert!(own_peak_rss_kib().expect("this process") > 0);
    }

    #[test]
    fn exit_codes_and_signals() {
        let c = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("sh");
        assert_eq!(reap(c.id()).ending, Ending::Code(3));
        let c = Command::new("sleep").arg("30").spawn().expect("sleep");
        assert_eq!(try_reap(c.id()).expect("wait4"), None);
        let pid = rustix::process::Pid::from_raw(c.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
        assert_eq!(reap(c.id()).ending, Ending::Signal(9));
    }
}
