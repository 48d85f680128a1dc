//! Anonymous audience statistics: tracks → visits → per-interval counts → durable store →
//! k-anonymous export. No image, crop, embedding or per-person record is ever stored: a visit
//! lives in memory only until it is added to its interval's counts.

pub mod aggregate;
pub mod privacy;
pub mod store;
pub mod tracker;

use aggregate::{AgeBuckets, Aggregator, IntervalStats};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use store::Store;
use tracker::{Tracker, TrackerSettings};

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

/// Where and how statistics are kept.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    pub unit_id: String,
    pub database: PathBuf,
    pub interval_s: i64,
    pub buckets: AgeBuckets,
    pub tracker: TrackerSettings,
    /// Intervals older than this are deleted; `None` keeps everything.
    pub retention_s: Option<i64>,
}

/// Finished intervals kept in memory while the store cannot be written (a day at 15 minutes).
const MAX_PENDING: usize = 96;

/// Turns the pipeline's per-frame faces into stored interval statistics.
pub struct StatsRecorder {
    settings: StatsSettings,
    tracker: Tracker,
    aggregator: Aggregator,
    store: Option<Store>,
    pending: VecDeque<IntervalStats>,
    /// Whether the current store outage has been logged.
    outage_logged: bool,
    saved: u64,
}

impl StatsRecorder {
    /// Opens the store; if it cannot be opened, counting goes on in memory and opening is
    /// retried at every finished interval.
    pub fn new(settings: StatsSettings, now: f64) -> StatsRecorder {
        let mut recorder = StatsRecorder {
            tracker: Tracker::new(settings.tracker),
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

    /// One processed frame and its faces.
    pub fn on_frame(&mut self, faces: &[crate::pipeline::FaceResult], clock: &dyn Clock) {
        let now = clock.wall();
        let mut done = self.aggregator.record_frame(now);
        for visit in self.tracker.update(faces, clock.monotonic()) {
            done.extend(self.aggregator.record_visit(&visit, now));
        }
        self.persist(done, now);
    }

    /// The camera failed to deliver a frame.
    pub fn on_camera_fault(&mut self, clock: &dyn Clock) {
        let now = clock.wall();
        let mut done = self.aggregator.record_camera_fault(now);
        // People who left while the camera was away still end their visits on time.
        for visit in self.tracker.expire(clock.monotonic()) {
            done.extend(self.aggregator.record_visit(&visit, now));
        }
        self.persist(done, now);
    }

    /// Ends every visit in progress and stores the partial interval (clean shutdown).
    pub fn finish(&mut self, clock: &dyn Clock) {
        let now = clock.wall();
        let mut done = Vec::new();
        for visit in self.tracker.finish() {
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
                    return;
                }
            }
        }
        if let (Some(retention), Some(store)) = (self.settings.retention_s, self.store.as_mut()) {
            if let Err(e) = store.prune_before(now as i64 - retention) {
                log::warn!("{e}");
            }
        }
    }
}
