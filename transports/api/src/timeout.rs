//! [`Timeout`]: how long a send, receive or poll may wait, as a type instead of FairMQ's
//! millisecond sentinels (`-1` forever, `0` do not wait).
//!
//! Sockets take milliseconds ([`Timeout::as_millis`]) because that is what libzmq and the
//! shared-memory queues wait with; everything a device author calls takes a [`Timeout`].

use std::time::Duration;

/// How long a transfer may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Timeout {
    /// Wait until done or interrupted by a state change (FairMQ's `-1`).
    #[default]
    Forever,
    /// Do not wait: transfer only what can be transferred now (FairMQ's `0`).
    Immediately,
    /// Wait at most this long. A duration below one millisecond rounds up to one, so that it
    /// still waits (a zero duration is [`Timeout::Immediately`]).
    After(Duration),
}

impl Timeout {
    /// A timeout from FairMQ's milliseconds: negative waits forever, `0` does not wait.
    pub fn from_millis(ms: i64) -> Self {
        match ms {
            ..0 => Timeout::Forever,
            0 => Timeout::Immediately,
            ms => Timeout::After(Duration::from_millis(ms.unsigned_abs())),
        }
    }

    /// FairMQ's milliseconds for this timeout (`-1` forever, `0` do not wait), as sockets
    /// take them.
    pub fn as_millis(self) -> i64 {
        match self {
            Timeout::Forever => -1,
            Timeout::Immediately => 0,
            Timeout::After(d) if d.is_zero() => 0,
            Timeout::After(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1),
        }
    }

    /// The longest wait, or `None` for [`Timeout::Forever`].
    pub fn duration(self) -> Option<Duration> {
        match self {
            Timeout::Forever => None,
            Timeout::Immediately => Some(Duration::ZERO),
            Timeout::After(d) => Some(d),
        }
    }
}

impl From<Duration> for Timeout {
    fn from(d: Duration) -> Self {
        if d.is_zero() {
            Timeout::Immediately
        } else {
            Timeout::After(d)
        }
    }
}

impl From<Option<Duration>> for Timeout {
    /// `None` waits forever.
    fn from(d: Option<Duration>) -> Self {
        d.map_or(Timeout::Forever, Timeout::from)
    }
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timeout::Forever => f.write_str("forever"),
            Timeout::Immediately => f.write_str("no wait"),
            Timeout::After(d) => write!(f, "{d:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_fairmq_sentinels() {
        assert_eq!(Timeout::from_millis(-1), Timeout::Forever);
        assert_eq!(Timeout::from_millis(-7), Timeout::Forever);
        assert_eq!(Timeout::from_millis(0), Timeout::Immediately);
        assert_eq!(
            Timeout::from_millis(250),
            Timeout::After(Duration::from_millis(250))
        );
        for ms in [-1, 0, 1, 250, 60_000] {
            assert_eq!(Timeout::from_millis(ms).as_millis(), ms);
        }
    }

    #[test]
    fn sub_millisecond_waits_still_wait() {
        assert_eq!(Timeout::After(Duration::from_micros(10)).as_millis(), 1);
        assert_eq!(Timeout::After(Duration::ZERO).as_millis(), 0);
        assert_eq!(Timeout::from(Duration::ZERO), Timeout::Immediately);
        assert_eq!(Timeout::from(None), Timeout::Forever);
        assert_eq!(
            Timeout::from(Some(Duration::from_secs(2))).duration(),
            Some(Duration::from_secs(2))
        );
    }
}
