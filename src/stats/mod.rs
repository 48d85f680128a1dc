//! Anonymous audience statistics: visits (from the [`track`](crate::track) module) →
//! per-interval counts → durable store → k-anonymous export. No image, crop, embedding or per-person record is ever stored: a visit
//! lives in memory only until it is added to its interval's counts.

pub mod aggregate;
pub mod privacy;
pub mod store;

use crate::buckets::AgeBuckets;
use crate::track::Visit;
use aggregate::{Aggregator, IntervalStats};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use store::Store;

/// Wall-clock and monotonic time, behind a trait so tests can run hours in milliseconds.
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn wall(&self) -> f64;
    fn monotonic(&self) -> Instant;
}

/// The machine's clocks.
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// Time that moves only when told: for fault-injection and soak tests that run simulated hours
/// in seconds, and for tools replaying recorded frames.
#[derive(Debug)]
pub struct ManualClock {
    base_wall: f64,
    base: Instant,
    offset: std::cell::Cell<f64>,
}

impl ManualClock {
    /// A clock reading `wall` (Unix seconds) until advanced.
    pub fn new(wall: f64) -> ManualClock {
        ManualClock {
            base_wall: wall,
            base: Instant::now(),
            offset: std::cell::Cell::new(0.0),
        }
    }

    pub fn advance(&self, seconds: f64) {
        self.offset.set(self.offset.get() + seconds);
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> f64 {
        self.base_wall + self.offset.get()
    }

    fn monotonic(&self) -> Instant {
        self.base + std::time::Duration::from_secs_f64(self.offset.get())
    }
}

/// Where and how statistics are kept.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    pub unit_id: String,
    pub database: PathBuf,
    pub interval_s: i64,
    pub buckets: AgeBuckets,
    /// Intervals older than this are deleted; `None` keeps everything.
    pub retention_s: Option<i64>,
}

impl StatsSettings {
    /// The settings of the `[stats]` section.
    pub fn from_config(stats: &crate::config::StatsConfig) -> StatsSettings {
        StatsSettings {
            unit_id: stats.unit_id(),
            database: stats.database(),
            interval_s: stats.interval_s(),
            buckets: stats.age_buckets.clone(),
            retention_s: (stats.retention_days > 0).then(|| stats.retention_days as i64 * 86_400),
        }
    }
}

/// Finished intervals kept in memory while the store cannot be written (a day at 15 minutes).
const MAX_PENDING: usize = 96;

/// Turns the pipeline's finished visits and frame counts into stored interval statistics.
pub struct StatsRecorder {
    settings: StatsSettings,
    aggregator: Aggregator,
    store: Option<Store>,
    pending: VecDeque<IntervalStats>,
    /// Whether the current store outage has been logged.
    outage_logged: bool,
    saved: u64,
    /// Called after intervals were saved (wakes the fleet push).
    on_saved: Option<Box<dyn FnMut() + Send>>,
}

impl StatsRecorder {
    /// Opens the store; if it cannot be opened, counting goes on in memory and opening is
    /// retried at every finished interval.
    pub fn new(settings: StatsSettings, now: f64) -> StatsRecorder {
        let mut recorder = StatsRecorder {
            aggregator: Aggregator::new(
                &settings.unit_id,
                settings.interval_s,
                settings.buckets.clone(),
                now,
            ),
            store: None,
            pending: VecDeque::new(),
            outage_logged: false,
            saved: 0,
            on_saved: None,
            settings,
        };
        recorder.ensure_store();
        recorder
    }

    fn ensure_store(&mut self) -> bool {
        if self.store.is_none() {
            match Store::open(&self.settings.database) {
                Ok(store) => {
                    if self.outage_logged {
                        log::info!(
                            "statistics store {} is writable again",
                            self.settings.database.display()
                        );
                    }
                    self.store = Some(store);
                }
                Err(e) => {
                    self.note_outage(&e.to_string());
                    return false;
                }
            }
        }
        true
    }

    fn note_outage(&mut self, problem: &str) {
        if !self.outage_logged {
            log::error!(
                "{problem}; counting goes on in memory and the store is retried every interval"
            );
            self.outage_logged = true;
        }
    }

    /// One processed frame, with the visits that ended by it
    /// ([`Pipeline::take_visits`](crate::pipeline::Pipeline::take_visits)).
    pub fn on_frame(&mut self, visits: Vec<Visit>, clock: &dyn Clock) {
        let now = clock.wall();
        let mut done = self.aggregator.record_frame(now);
        for visit in visits {
            done.extend(self.aggregator.record_visit(&visit, now));
        }
        self.persist(done, now);
    }

    /// The camera failed to deliver a frame; people who left while it was away still end
    /// their visits on time (`visits`).
    pub fn on_camera_fault(&mut self, visits: Vec<Visit>, clock: &dyn Clock) {
        let now = clock.wall();
        let mut done = self.aggregator.record_camera_fault(now);
        for visit in visits {
            done.extend(self.aggregator.record_visit(&visit, now));
        }
        self.persist(done, now);
    }

    /// Adds the visits still in progress (`visits`, ended now) and stores the partial interval
    /// (clean shutdown).
    pub fn finish(&mut self, visits: Vec<Visit>, clock: &dyn Clock) {
        let now = clock.wall();
        let mut done = Vec::new();
        for visit in visits {
            done.extend(self.aggregator.record_visit(&visit, now));
        }
        done.extend(self.aggregator.roll(now));
        done.push(self.aggregator.take_partial(now));
        self.persist(done, now);
        if !self.pending.is_empty() {
            log::error!(
                "{} finished interval(s) could not be stored in {} and are lost at exit",
                self.pending.len(),
                self.settings.database.display()
            );
        }
    }

    /// Calls `f` whenever finished intervals have been saved (e.g. [`crate::push::Waker::wake`]).
    pub fn notify_on_save(&mut self, f: impl FnMut() + Send + 'static) {
        self.on_saved = Some(Box::new(f));
    }

    /// Intervals waiting for the store to become writable.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Intervals written to the store by this recorder.
    pub fn saved(&self) -> u64 {
        self.saved
    }

    fn persist(&mut self, done: Vec<IntervalStats>, now: f64) {
        if done.is_empty() {
            return;
        }
        self.pending.extend(done);
        while self.pending.len() > MAX_PENDING {
            if let Some(dropped) = self.pending.pop_front() {
                log::error!(
                    "statistics for interval {} dropped: the store has been unwritable too long",
                    dropped.id()
                );
            }
        }
        if !self.ensure_store() {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let saved_before = self.saved;
        while let Some(interval) = self.pending.front() {
            match store.save(interval) {
                Ok(()) => {
                    self.pending.pop_front();
                    self.saved += 1;
                    if self.outage_logged {
                        log::info!(
                            "statistics store {} is writable again",
                            self.settings.database.display()
                        );
                        self.outage_logged = false;
                    }
                }
                Err(e) => {
                    let problem = e.to_string();
                    // Reopen next time: the file may have been replaced or remounted.
                    self.store = None;
                    self.note_outage(&problem);
                    break;
                }
            }
        }
        if self.saved > saved_before {
            if let Some(notify) = self.on_saved.as_mut() {
                notify();
            }
        }
        if self.store.is_none() {
            return;
        }
        if let (Some(retention), Some(store)) = (self.settings.retention_s, self.store.as_mut()) {
            if let Err(e) = store.prune_before(now as i64 - retention) {
                log::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::FaceResult;
    use crate::model::{AgeGender, Gender};
    use crate::track::{TrackSettings, Tracker};
    use crate::vision::FaceBox;

    fn face(x: f32, age: f32, gender: Gender) -> FaceResult {
        FaceResult {
            track: None,
            looking: None,
            face: FaceBox {
                x,
                y: 100.0,
                width: 90.0,
                height: 90.0,
                score: 0.9,
                landmarks: None,
            },
            estimate: Some(AgeGender {
                age,
                age_low: age - 4.0,
                age_high: age + 4.0,
                gender,
                gender_confidence: 0.95,
            }),
        }
    }

    fn settings(dir: &std::path::Path) -> StatsSettings {
        StatsSettings {
            unit_id: "test-unit".into(),
            database: dir.join("stats.sqlite"),
            interval_s: 900,
            buckets: AgeBuckets::default(),
            retention_s: None,
        }
    }

    /// A scripted day part: every minute one person (alternating profiles) stands in view for
    /// 20 s at 10 fps, sometimes beside a second person; the counts must come out exact.
    #[test]
    fn scripted_visits_give_exact_counts_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let start = 1_795_392_000.0; // an interval boundary
        let clock = ManualClock::new(start);
        let mut recorder = StatsRecorder::new(settings(dir.path()), clock.wall());
        let mut tracker = Tracker::new(TrackSettings::default());
        let minutes = 60;
        for minute in 0..minutes {
            let (age, gender) = if minute % 2 == 0 {
                (30.0, Gender::Female)
            } else {
                (70.0, Gender::Male)
            };
            let pair = minute % 5 == 0;
            for _ in 0..200 {
                let mut faces = vec![face(100.0, age, gender)];
                if pair {
                    faces.push(face(400.0, 16.0, Gender::Male));
                }
                recorder.on_frame(tracker.update(&faces, clock.monotonic()), &clock);
                clock.advance(0.1);
            }
            // 40 s with nobody in view.
            for _ in 0..400 {
                recorder.on_frame(tracker.update(&[], clock.monotonic()), &clock);
                clock.advance(0.1);
            }
        }
        recorder.finish(tracker.finish(), &clock);
        assert_eq!(recorder.pending(), 0);
        let store = Store::open(&dir.path().join("stats.sqlite")).unwrap();
        let intervals = store.load(i64::MIN, i64::MAX).unwrap();
        // 60 minutes = 4 full intervals, plus the empty partial one begun at the very end.
        assert_eq!(intervals.iter().filter(|i| i.frames > 0).count(), 4);
        let cell = |i: &IntervalStats, b: &str, g: &str| {
            i.cells
                .get(&(b.to_string(), g.to_string()))
                .copied()
                .unwrap_or(0)
        };
        for (n, interval) in intervals.iter().take(4).enumerate() {
            assert_eq!(interval.frames, 15 * 600, "interval {n}");
            assert!((interval.uptime_s - 900.0).abs() < 1e-6);
            // Visits end (and are counted) 3 s after the face leaves, inside the same minute.
            let minutes: Vec<i32> = (n as i32 * 15..n as i32 * 15 + 15).collect();
            let female = minutes.iter().filter(|m| *m % 2 == 0).count() as u32;
            let pairs = minutes.iter().filter(|m| *m % 5 == 0).count() as u32;
            assert_eq!(cell(interval, "25-34", "female"), female, "interval {n}");
            assert_eq!(cell(interval, "65+", "male"), 15 - female, "interval {n}");
            assert_eq!(cell(interval, "13-17", "male"), pairs, "interval {n}");
            assert_eq!(interval.visits(), 15 + pairs);
            assert!(
                (interval.dwell_max_s - 19.9).abs() < 1e-6,
                "{}",
                interval.dwell_max_s
            );
        }
    }

    #[test]
    fn an_unwritable_store_keeps_intervals_in_memory_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("stats-dir");
        // A plain file where the folder should be: the store cannot be opened.
        std::fs::write(&blocked, b"not a folder").unwrap();
        let mut s = settings(&blocked);
        s.interval_s = 60;
        let clock = ManualClock::new(1_795_392_000.0);
        let mut recorder = StatsRecorder::new(s, clock.wall());
        for _ in 0..(3 * 600) {
            recorder.on_frame(Vec::new(), &clock);
            clock.advance(0.1);
        }
        recorder.on_frame(Vec::new(), &clock);
        assert_eq!(
            recorder.pending(),
            3,
            "three finished minutes wait in memory"
        );
        assert_eq!(recorder.saved(), 0);
        // The disk comes back.
        std::fs::remove_file(&blocked).unwrap();
        clock.advance(60.0);
        recorder.on_frame(Vec::new(), &clock);
        assert_eq!(recorder.pending(), 0);
        assert_eq!(recorder.saved(), 4);
        let store = Store::open(&blocked.join("stats.sqlite")).unwrap();
        let frames: u64 = store
            .load(i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .map(|i| i.frames)
            .sum();
        assert_eq!(
            frames,
            3 * 600 + 1,
            "not a frame lost while the store was away"
        );
    }
}
