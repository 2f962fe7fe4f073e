//! Logging of `fairmq-shmmonitor`: bare messages (FairMQ's `verylow` verbosity) on the console,
//! warnings and errors prefixed; timestamped lines in the daemon's log file.

use std::fmt;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// Maps FairMQ's severities to a level filter.
pub fn level_filter(severity: &str) -> Option<LevelFilter> {
    Some(match severity.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" | "debug1" | "debug2" | "debug3" | "debug4" => LevelFilter::DEBUG,
        "info" | "state" | "detail" => LevelFilter::INFO,
        "warn" | "warning" | "important" | "alarm" => LevelFilter::WARN,
        "error" | "fatal" => LevelFilter::ERROR,
        "nolog" => LevelFilter::OFF,
        _ => return None,
    })
}

/// UTC calendar time of `t`: (year, month, day, hour, minute, second, microsecond).
pub fn utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        d.subsec_micros(),
    )
}

/// `fairmq-shmmonitor_<YYYY-MM-DD_HH-MM-SS_uuuuuu>.log` (UTC) for now.
pub fn log_file_name() -> String {
    let (y, mo, d, h, mi, s, us) = utc(SystemTime::now());
    format!("fairmq-shmmonitor_{y:04}-{mo:02}-{d:02}_{h:02}-{mi:02}-{s:02}_{us:06}.log")
}

struct Bare {
    timestamps: bool,
}

impl<S, N> FormatEvent<S, N> for Bare
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.timestamps {
            let (y, mo, d, h, mi, s, us) = utc(SystemTime::now());
            write!(
                writer,
                "[{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}] [{}] ",
                event.metadata().level()
            )?;
        } else {
            match *event.metadata().level() {
                Level::WARN => write!(writer, "warning: ")?,
                Level::ERROR => write!(writer, "error: ")?,
                _ => {}
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Where log lines go.
pub enum Sink {
    /// Standard output.
    Stdout,
    /// Standard error (with `--output json`, so that standard output is the document).
    Stderr,
    /// A file, with timestamps (the daemon's `--verbose` log).
    File(std::fs::File),
}

/// Installs the global subscriber.
pub fn init(level: LevelFilter, sink: Sink) {
    let builder = tracing_subscriber::fmt().with_max_level(level);
    let _ = match sink {
        Sink::Stdout => builder
            .event_format(Bare { timestamps: false })
            .with_writer(std::io::stdout)
            .try_init(),
        Sink::Stderr => builder
            .event_format(Bare { timestamps: false })
            .with_writer(std::io::stderr)
            .try_init(),
        Sink::File(f) => builder
            .event_format(Bare { timestamps: true })
            .with_writer(Mutex::new(LineFlush(f)))
            .try_init(),
    };
}

/// A file written line by line (unbuffered), so that the log survives a kill.
struct LineFlush(std::fs::File);

impl Write for LineFlush {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_calendar() {
        assert_eq!(utc(UNIX_EPOCH), (1970, 1, 1, 0, 0, 0, 0));
        // 2024-02-29T12:34:56.789012Z
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_789_012);
        assert_eq!(utc(t), (2024, 2, 29, 12, 34, 56, 789_012));
        // 2000-12-31T23:59:59Z
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(978_307_199)),
            (2000, 12, 31, 23, 59, 59, 0)
        );
        let n = log_file_name();
        assert!(
            n.starts_with("fairmq-shmmonitor_") && n.ends_with(".log"),
            "{n}"
        );
    }

    #[test]
    fn severities() {
        assert_eq!(level_filter("info"), Some(LevelFilter::INFO));
        assert_eq!(level_filter("nolog"), Some(LevelFilter::OFF));
        assert_eq!(level_filter("loud"), None);
    }
}
