//! Logging with `tracing`, configured like FairMQ's logger (spec §2.2, §2.3).
//!
//! FairMQ's severities map onto tracing levels and targets:
//!
//! | FairMQ | tracing |
//! |---|---|
//! | `trace` | `TRACE` |
//! | `debug`, `debug1`..`debug4` | `DEBUG` |
//! | `info` | `INFO` |
//! | `state` | `INFO` events of the targets `fairmq::state` and `fairmq::state_machine` |
//! | `warn` | `WARN` |
//! | `error` | `ERROR` |
//! | `fatal` | `ERROR` events of the target `fairmq::fatal` |
//! | `nolog` | nothing |
//!
//! A severity threshold shows its own level and everything more severe. The console writes
//! to stdout (as FairMQ does); `--log-to-file <prefix>` writes to `<prefix>_<UTC time>.log`
//! instead. `--verbosity` chooses the line prefix: `veryhigh`, `high`, `medium`, `low`,
//! `verylow`. Times are UTC. The settings can change at run time (the interactive control
//! keys `k`/`l`/`n`/`m`, or properties set by plugins).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer;

/// FairMQ's severity names, least severe first (the cycling order of the `k`/`l` keys).
pub const SEVERITIES: [&str; 12] = [
    "trace", "debug4", "debug3", "debug2", "debug1", "debug", "info", "state", "warn", "error",
    "fatal", "nolog",
];

/// FairMQ's verbosity names, least verbose first.
pub const VERBOSITIES: [&str; 5] = ["verylow", "low", "medium", "high", "veryhigh"];

/// Target for messages of FairMQ's `state` severity.
pub const STATE_TARGET: &str = "fairmq::state";
/// Target for messages of FairMQ's `fatal` severity.
pub const FATAL_TARGET: &str = "fairmq::fatal";

const RANK_TRACE: u8 = 0;
const RANK_DEBUG: u8 = 1;
const RANK_INFO: u8 = 2;
const RANK_STATE: u8 = 3;
const RANK_WARN: u8 = 4;
const RANK_ERROR: u8 = 5;
const RANK_FATAL: u8 = 6;
const RANK_NOLOG: u8 = 7;

/// The threshold rank of a severity name, or `None` for an unknown name.
pub fn severity_rank(name: &str) -> Option<u8> {
    Some(match name {
        "trace" => RANK_TRACE,
        "debug" | "debug1" | "debug2" | "debug3" | "debug4" => RANK_DEBUG,
        "info" => RANK_INFO,
        "state" => RANK_STATE,
        "warn" | "warning" => RANK_WARN,
        "error" => RANK_ERROR,
        "fatal" => RANK_FATAL,
        "nolog" => RANK_NOLOG,
        _ => return None,
    })
}

fn verbosity_rank(name: &str) -> Option<u8> {
    VERBOSITIES.iter().position(|v| *v == name).map(|p| p as u8)
}

fn event_rank(level: &Level, target: &str) -> u8 {
    match *level {
        Level::TRACE => RANK_TRACE,
        Level::DEBUG => RANK_DEBUG,
        Level::INFO if target == STATE_TARGET || target == "fairmq::state_machine" => RANK_STATE,
        Level::INFO => RANK_INFO,
        Level::WARN => RANK_WARN,
        _ if target == FATAL_TARGET => RANK_FATAL,
        _ => RANK_ERROR,
    }
}

fn rank_label(rank: u8) -> &'static str {
    match rank {
        RANK_TRACE => "TRACE",
        RANK_DEBUG => "DEBUG",
        RANK_INFO => "INFO",
        RANK_STATE => "STATE",
        RANK_WARN => "WARN",
        RANK_ERROR => "ERROR",
        _ => "FATAL",
    }
}

fn rank_color(rank: u8) -> &'static str {
    match rank {
        RANK_TRACE | RANK_DEBUG => "\x1b[01;34m",
        RANK_INFO => "\x1b[01;32m",
        RANK_STATE => "\x1b[01;35m",
        RANK_WARN => "\x1b[01;33m",
        _ => "\x1b[01;31m",
    }
}

/// Errors of the logging configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// An unknown severity name.
    #[error("unknown log severity '{0}'; use one of trace, debug, debug1..debug4, info, state, warn, error, fatal, nolog")]
    Severity(String),
    /// An unknown verbosity name.
    #[error("unknown log verbosity '{0}'; use one of veryhigh, high, medium, low, verylow")]
    Verbosity(String),
    /// The log file could not be created.
    #[error("cannot create log file '{path}': {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

struct LogState {
    console_rank: AtomicU8,
    console_index: AtomicU8,
    file_rank: AtomicU8,
    verbosity: AtomicU8,
    color: AtomicBool,
    console_enabled: AtomicBool,
    file: Mutex<Option<std::fs::File>>,
    process: String,
}

/// A handle on the process-wide logger settings.
#[derive(Clone)]
pub struct LogHandle {
    state: Arc<LogState>,
}

static LOGGER: OnceLock<LogHandle> = OnceLock::new();

/// The logger settings of a device (the options `--severity`, `--verbosity`, `--color`,
/// `--log-to-file`, `--file-severity`).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Console severity; empty = `info`.
    pub severity: String,
    /// Prefix verbosity.
    pub verbosity: String,
    /// Coloured severity tags.
    pub color: bool,
    /// File name prefix; empty = console.
    pub log_to_file: String,
    /// Severity of the file sink.
    pub file_severity: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            severity: String::new(),
            verbosity: "medium".to_owned(),
            color: true,
            log_to_file: String::new(),
            file_severity: "debug".to_owned(),
        }
    }
}

/// Installs the logger (once per process) and returns its handle; later calls return the
/// same handle.
pub fn logger() -> LogHandle {
    LOGGER
        .get_or_init(|| {
            let process = std::env::args()
                .next()
                .map(|a| {
                    std::path::Path::new(&a)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or(a)
                })
                .unwrap_or_default();
            let state = Arc::new(LogState {
                console_rank: AtomicU8::new(RANK_INFO),
                console_index: AtomicU8::new(6),
                file_rank: AtomicU8::new(RANK_DEBUG),
                verbosity: AtomicU8::new(2),
                color: AtomicBool::new(true),
                console_enabled: AtomicBool::new(true),
                file: Mutex::new(None),
                process,
            });
            let layer = FairLayer {
                state: state.clone(),
            };
            let subscriber = tracing_subscriber::registry().with(layer);
            // Another subscriber may already be installed (e.g. in tests); then ours is unused.
            let _ = tracing::subscriber::set_global_default(subscriber);
            LogHandle { state }
        })
        .clone()
}

impl LogHandle {
    /// Applies a full configuration. `FAIRMQ_SEVERITY` in the environment, if set, overrides
    /// `config.severity` (spec §2.3).
    pub fn configure(&self, config: &LogConfig) -> Result<(), LogError> {
        self.set_verbosity(&config.verbosity)?;
        self.state.color.store(config.color, Ordering::Relaxed);
        let severity = std::env::var("FAIRMQ_SEVERITY")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| config.severity.clone());
        if !severity.is_empty() {
            self.set_console_severity(&severity)?;
        }
        let file_rank = severity_rank(&config.file_severity)
            .ok_or_else(|| LogError::Severity(config.file_severity.clone()))?;
        self.state.file_rank.store(file_rank, Ordering::Relaxed);
        if !config.log_to_file.is_empty() {
            self.set_log_file(&config.log_to_file)?;
        }
        Ok(())
    }

    /// Sets the console severity by FairMQ name.
    pub fn set_console_severity(&self, name: &str) -> Result<(), LogError> {
        let rank = severity_rank(name).ok_or_else(|| LogError::Severity(name.to_owned()))?;
        self.state.console_rank.store(rank, Ordering::Relaxed);
        if let Some(i) = SEVERITIES.iter().position(|s| *s == name) {
            self.state.console_index.store(i as u8, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The console severity's FairMQ name.
    pub fn console_severity(&self) -> &'static str {
        SEVERITIES[usize::from(self.state.console_index.load(Ordering::Relaxed)) % SEVERITIES.len()]
    }

    /// Sets the verbosity by name.
    pub fn set_verbosity(&self, name: &str) -> Result<(), LogError> {
        let v = verbosity_rank(name).ok_or_else(|| LogError::Verbosity(name.to_owned()))?;
        self.state.verbosity.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// The verbosity's name.
    pub fn verbosity(&self) -> &'static str {
        VERBOSITIES[usize::from(self.state.verbosity.load(Ordering::Relaxed)) % VERBOSITIES.len()]
    }

    /// Turns coloured output on or off.
    pub fn set_color(&self, color: bool) {
        self.state.color.store(color, Ordering::Relaxed);
    }

    /// Logs to `<prefix>_<UTC time>_<pid>.log` from now on and turns console output off.
    pub fn set_log_file(&self, prefix: &str) -> Result<(), LogError> {
        let (date, time, _) = utc_now();
        let path = format!(
            "{prefix}_{}_{}_{}.log",
            date,
            time.replace(':', "-"),
            std::process::id()
        );
        let file = std::fs::File::create(&path).map_err(|e| LogError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        *self.state.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
        self.state.console_enabled.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Cycles the console severity one step towards `nolog` (`up`) or `trace`.
    pub fn cycle_console_severity(&self, up: bool) -> &'static str {
        let n = SEVERITIES.len() as u8;
        let i = self.state.console_index.load(Ordering::Relaxed) % n;
        let next = if up { (i + 1) % n } else { (i + n - 1) % n };
        let name = SEVERITIES[usize::from(next)];
        let _ = self.set_console_severity(name);
        name
    }

    /// Cycles the verbosity one step up (more prefix) or down.
    pub fn cycle_verbosity(&self, up: bool) -> &'static str {
        let n = VERBOSITIES.len() as u8;
        let i = self.state.verbosity.load(Ordering::Relaxed) % n;
        let next = if up { (i + 1) % n } else { (i + n - 1) % n };
        self.state.verbosity.store(next, Ordering::Relaxed);
        VERBOSITIES[usize::from(next)]
    }

    /// Whether an event of `level` and `target` would be printed anywhere.
    pub fn enabled(&self, level: &Level, target: &str) -> bool {
        let rank = event_rank(level, target);
        let console = self.state.console_enabled.load(Ordering::Relaxed)
            && rank >= self.state.console_rank.load(Ordering::Relaxed);
        let file = rank >= self.state.file_rank.load(Ordering::Relaxed)
            && self.state.file.lock().map(|f| f.is_some()).unwrap_or(false);
        rank < RANK_NOLOG && (console || file)
    }
}

/// Days since the epoch → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (date `YYYY-MM-DD`, time `HH:MM:SS`, microseconds), UTC.
fn utc_now() -> (String, String, u32) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", sod / 3600, (sod / 60) % 60, sod % 60),
        now.subsec_micros(),
    )
}

struct FairLayer {
    state: Arc<LogState>,
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

impl FairLayer {
    fn format(&self, rank: u8, event: &Event<'_>, color: bool, text: &str) -> String {
        let verbosity = self.state.verbosity.load(Ordering::Relaxed);
        let label = rank_label(rank);
        let tag = if color {
            format!("[{}{label}\x1b[0m]", rank_color(rank))
        } else {
            format!("[{label}]")
        };
        let mut line = String::with_capacity(text.len() + 48);
        match verbosity {
            0 => {}
            1 => line.push_str(&tag),
            2 => {
                let (_, time, _) = utc_now();
                let _ = write!(line, "[{time}]{tag}");
            }
            3 => {
                let (_, time, _) = utc_now();
                let _ = write!(line, "[{}][{time}]{tag}", self.state.process);
            }
            _ => {
                let (date, time, micros) = utc_now();
                let meta = event.metadata();
                let _ = write!(
                    line,
                    "[{}][{date} {time}.{micros:06}]{tag}[{}:{}:{}]",
                    self.state.process,
                    meta.file().unwrap_or("?"),
                    meta.line().unwrap_or(0),
                    meta.target()
                );
            }
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(text);
        line.push('\n');
        line
    }
}

impl<S: Subscriber> Layer<S> for FairLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let rank = event_rank(meta.level(), meta.target());
        if rank >= RANK_NOLOG {
            return;
        }
        let console = self.state.console_enabled.load(Ordering::Relaxed)
            && rank >= self.state.console_rank.load(Ordering::Relaxed);
        let file_wanted = rank >= self.state.file_rank.load(Ordering::Relaxed);
        if !console && !file_wanted {
            return;
        }
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let mut text = visitor.message;
        text.push_str(&visitor.fields);
        if console {
            let color = self.state.color.load(Ordering::Relaxed);
            let line = self.format(rank, event, color, &text);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        if file_wanted {
            let mut file = self.state.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = file.as_mut() {
                let line = self.format(rank, event, false, &text);
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_mapping() {
        assert_eq!(severity_rank("debug3"), Some(RANK_DEBUG));
        assert_eq!(severity_rank("state"), Some(RANK_STATE));
        assert_eq!(severity_rank("bogus"), None);
        assert_eq!(
            event_rank(&Level::INFO, "fairmq::state_machine"),
            RANK_STATE
        );
        assert_eq!(event_rank(&Level::INFO, "x"), RANK_INFO);
        assert_eq!(event_rank(&Level::ERROR, FATAL_TARGET), RANK_FATAL);
        assert_eq!(event_rank(&Level::ERROR, "x"), RANK_ERROR);
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn handle_settings_and_cycling() {
        let h = logger();
        h.set_console_severity("warn").unwrap();
        assert_eq!(h.console_severity(), "warn");
        assert!(!h.enabled(&Level::INFO, "x"));
        assert!(h.enabled(&Level::ERROR, "x"));
        assert_eq!(h.cycle_console_severity(true), "error");
        assert_eq!(h.cycle_console_severity(false), "warn");
        assert!(h.set_console_severity("loud").is_err());
        h.set_verbosity("low").unwrap();
        assert_eq!(h.cycle_verbosity(true), "medium");
        h.set_console_severity("info").unwrap();
    }
}
