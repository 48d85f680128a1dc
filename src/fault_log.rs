//! Rate-limited logging of the daemon's recurring faults (camera lost, bad frames, model,
//! display), so that a camera unplugged for a weekend or a display that fails every frame
//! leaves a few lines in the journal instead of millions.
//!
//! Per fault kind: the first fault is logged in full; repeats are counted and summarised at
//! most once per [`FaultLog::period`] ("N more … since the last report"); the end of an outage
//! is logged only if its start was, so a flapping camera cannot flood the log either. The
//! decisions are pure functions of the calls and the time passed in, so tests check them
//! without a logger.

use std::time::{Duration, Instant};

/// The kinds of recurring fault the run loop survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The camera stalled or went away (EIO, ENODEV) and is being reopened.
    CameraLost,
    /// A frame could not be decoded (truncated buffer, corrupt MJPEG).
    BadFrame,
    /// The age/gender model failed on a frame.
    Model,
    /// The display could not be written.
    Display,
}

impl FaultKind {
    const ALL: [FaultKind; 4] = [
        FaultKind::CameraLost,
        FaultKind::BadFrame,
        FaultKind::Model,
        FaultKind::Display,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Plural noun for summaries: "3 more camera faults".
    pub fn plural(self) -> &'static str {
        match self {
            FaultKind::CameraLost => "camera faults",
            FaultKind::BadFrame => "bad frames",
            FaultKind::Model => "model failures",
            FaultKind::Display => "display failures",
        }
    }

    fn recovered(self) -> &'static str {
        match self {
            FaultKind::CameraLost | FaultKind::BadFrame => "frames are coming again",
            FaultKind::Model => "the age/gender model works again",
            FaultKind::Display => "the display works again",
        }
    }
}

/// How important a line is; the caller maps it to `log::warn!`/`log::info!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warn,
    Info,
}

#[derive(Debug, Default, Clone)]
struct KindState {
    /// When the last line about this kind was written.
    last_line: Option<Instant>,
    /// Faults since that line that were counted but not logged.
    unreported: u64,
    /// Whether a fault of this kind is going on now.
    ongoing: bool,
    /// Whether the start of the ongoing outage was logged (so its end is logged too).
    ongoing_logged: bool,
}

/// Decides which fault lines are written.
#[derive(Debug, Clone)]
pub struct FaultLog {
    period: Duration,
    kinds: [KindState; 4],
}

impl Default for FaultLog {
    fn default() -> FaultLog {
        FaultLog::new(DEFAULT_PERIOD)
    }
}

/// At most one summary line per fault kind this often.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(600);

impl FaultLog {
    pub fn new(period: Duration) -> FaultLog {
        FaultLog {
            period,
            kinds: Default::default(),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// A fault of `kind` happened at `now`; returns the line to log, if any.
    pub fn fault(&mut self, kind: FaultKind, message: &str, now: Instant) -> Option<String> {
        let period = self.period;
        let state = &mut self.kinds[kind.index()];
        state.ongoing = true;
        let due = state
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= period);
        if !due {
            state.unreported += 1;
            return None;
        }
        let line = if state.unreported > 0 {
            format!(
                "{message} ({} more {} since the last report; repeats are summarised every {} s)",
                state.unreported,
                kind.plural(),
                period.as_secs()
            )
        } else {
            format!(
                "{message} (repeats are summarised every {} s)",
                period.as_secs()
            )
        };
        state.unreported = 0;
        state.last_line = Some(now);
        state.ongoing_logged = true;
        Some(line)
    }

    /// The operation `kind` is about worked at `now`; returns the line to log, if any: only
    /// when the start of this outage was logged, so every "lost" line has its "back" line.
    pub fn ok(&mut self, kind: FaultKind, now: Instant) -> Option<String> {
        let state = &mut self.kinds[kind.index()];
        if !state.ongoing {
            return None;
        }
        state.ongoing = false;
        if !std::mem::take(&mut state.ongoing_logged) {
            return None;
        }
        state.last_line = Some(now);
        Some(kind.recovered().to_string())
    }

    /// Faults counted but not logged yet, per kind (for the run's closing summary).
    pub fn unreported(&self) -> Vec<(FaultKind, u64)> {
        FaultKind::ALL
            .iter()
            .map(|&k| (k, self.kinds[k.index()].unreported))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// Logs `line` at `severity` (the run loop's one place that turns decisions into log lines).
impl FaultLog {
    /// [`FaultLog::fault`], with the line (if one is due) logged as a warning.
    pub fn log_fault(&mut self, kind: FaultKind, message: &str, now: Instant) {
        emit(Severity::Warn, self.fault(kind, message, now));
    }

    /// [`FaultLog::ok`], with the recovery line (if any) logged, ending in what `context`
    /// gives (called only when there is a line).
    pub fn log_ok(&mut self, kind: FaultKind, now: Instant, context: impl FnOnce() -> String) {
        emit(Severity::Info, self.ok(kind, now).map(|l| l + &context()));
    }
}

pub fn emit(severity: Severity, line: Option<String>) {
    if let Some(line) = line {
        match severity {
            Severity::Warn => log::warn!("{line}"),
            Severity::Info => log::info!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fault_is_logged_repeats_are_summarised_once_per_period() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut log = FaultLog::new(Duration::from_secs(600));
        let first = log
            .fault(FaultKind::CameraLost, "camera lost", s(0))
            .unwrap();
        assert!(first.starts_with("camera lost"), "{first}");
        // A weekend of retries every 8 s: one line per 10 minutes, not one per retry.
        let lines = (1..=(2 * 86_400 / 8))
            .filter_map(|i| log.fault(FaultKind::CameraLost, "camera lost", s(i * 8)))
            .collect::<Vec<_>>();
        assert_eq!(lines.len(), 2 * 86_400 / 600, "{:?}", &lines[..2]);
        assert!(lines[0].contains("74 more camera faults"), "{}", lines[0]);
        assert!(log
            .fault(FaultKind::CameraLost, "camera lost", s(2 * 86_400 + 8))
            .is_none());
        assert_eq!(log.unreported(), vec![(FaultKind::CameraLost, 1)]);
        assert_eq!(
            log.ok(FaultKind::CameraLost, s(2 * 86_400 + 9)).as_deref(),
            Some("frames are coming again")
        );
        assert_eq!(log.ok(FaultKind::CameraLost, s(2 * 86_400 + 10)), None);
    }

    #[test]
    fn kinds_are_independent_and_flapping_does_not_flood() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut log = FaultLog::new(Duration::from_secs(600));
        assert!(log.fault(FaultKind::BadFrame, "bad", ms(0)).is_some());
        assert!(log.fault(FaultKind::Display, "fb", ms(1)).is_some());
        assert!(log.fault(FaultKind::BadFrame, "bad", ms(2)).is_none());
        assert!(log.ok(FaultKind::BadFrame, ms(3)).is_some(), "logged start");
        // Bad frame, good frame, bad frame... for a minute: nothing more is logged.
        let mut lines = 0;
        for i in 0..6000u64 {
            lines += log
                .fault(FaultKind::BadFrame, "bad", ms(10 + 10 * i))
                .is_some() as u32;
            lines += log.ok(FaultKind::BadFrame, ms(15 + 10 * i)).is_some() as u32;
        }
        assert_eq!(lines, 0);
        assert_eq!(log.unreported(), vec![(FaultKind::BadFrame, 6001)]);
        // The display's outage is still going and still logged once.
        assert!(log.fault(FaultKind::Display, "fb", ms(100_000)).is_none());
        assert_eq!(
            log.ok(FaultKind::Display, ms(100_001)).as_deref(),
            Some("the display works again")
        );
        // Ten minutes later the next bad frame is logged again, with the count.
        let line = log
            .fault(FaultKind::BadFrame, "bad", ms(10 + 600_000))
            .unwrap();
        assert!(line.contains("6001 more bad frames"), "{line}");
    }
}
