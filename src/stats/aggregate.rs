//! Per-interval aggregation: visits counted per age bucket × gender, dwell time, frames and
//! uptime for each wall-clock interval. Time is passed in (seconds since the Unix epoch), so the
//! whole module runs on simulated time in tests.

use crate::model::Gender;
use crate::track::Visit;
use std::collections::BTreeMap;

use crate::buckets::{AgeBuckets, UNKNOWN};

pub fn gender_label(gender: Option<Gender>) -> &'static str {
    match gender {
        Some(Gender::Male) => "male",
        Some(Gender::Female) => "female",
        None => UNKNOWN,
    }
}

/// Most attention one visit adds to a cell's sum (or the interval's length, if shorter): a
/// person looking longer counts this long, which bounds what one person can move a published
/// sum (and the Laplace noise it needs).
pub const ATTENTION_CAP_S: f64 = 300.0;

/// Attention of one age bucket × gender cell's visits.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct CellAttention {
    /// Visits whose attention is known (their faces had landmarks); when fewer than the
    /// cell's visits, its watchers are not published.
    pub posed: u32,
    /// Visits that looked at the screen for `attention.min_seconds` or longer.
    pub watchers: u32,
    /// Their time looking, summed over the cell's visits (each at most [`ATTENTION_CAP_S`]).
    pub attention_s: f64,
}

impl CellAttention {
    pub fn add(&mut self, other: &CellAttention) {
        self.posed += other.posed;
        self.watchers += other.watchers;
        self.attention_s += other.attention_s;
    }
}

/// Everything stored about one interval. No field refers to a person.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct IntervalStats {
    pub unit_id: String,
    /// Unix seconds; the interval is [start, start + length_s).
    pub start: i64,
    pub length_s: i64,
    /// Seconds of the interval the daemon was running; less than `length_s` shows a gap.
    pub uptime_s: f64,
    pub frames: u64,
    pub camera_faults: u64,
    /// Visits per (age bucket, gender).
    pub cells: BTreeMap<(String, String), u32>,
    /// Attention per (age bucket, gender), for the cells that had visits.
    pub attention: BTreeMap<(String, String), CellAttention>,
    pub dwell_total_s: f64,
    pub dwell_max_s: f64,
}

impl IntervalStats {
    pub fn visits(&self) -> u32 {
        self.cells.values().sum()
    }

    /// Stable identifier: the unit and the interval start. A receiver that gets the same
    /// interval twice can tell.
    pub fn id(&self) -> String {
        format!("{}@{}", self.unit_id, self.start)
    }

    /// Adds another part of the same interval (e.g. before and after a restart).
    pub fn merge(&mut self, other: &IntervalStats) {
        self.uptime_s += other.uptime_s;
        self.frames += other.frames;
        self.camera_faults += other.camera_faults;
        for (cell, n) in &other.cells {
            *self.cells.entry(cell.clone()).or_insert(0) += n;
        }
        for (cell, a) in &other.attention {
            self.attention.entry(cell.clone()).or_default().add(a);
        }
        self.dwell_total_s += other.dwell_total_s;
        self.dwell_max_s = self.dwell_max_s.max(other.dwell_max_s);
    }
}

/// Builds intervals as frames, faults and visits come in.
pub struct Aggregator {
    unit_id: String,
    length_s: i64,
    buckets: AgeBuckets,
    current: IntervalStats,
    /// Up to when uptime has been accounted, in Unix seconds.
    accounted_to: f64,
}

/// After this many empty intervals in one step (a clock jump), start afresh at `now`.
const MAX_EMPTY_INTERVALS: i64 = 96;

impl Aggregator {
    pub fn new(unit_id: &str, length_s: i64, buckets: AgeBuckets, now: f64) -> Aggregator {
        let length_s = length_s.max(1);
        Aggregator {
            unit_id: unit_id.to_string(),
            length_s,
            buckets,
            current: Self::empty(unit_id, length_s, now),
            accounted_to: now,
        }
    }

    fn empty(unit_id: &str, length_s: i64, now: f64) -> IntervalStats {
        let start = (now.floor() as i64).div_euclid(length_s) * length_s;
        IntervalStats {
            unit_id: unit_id.to_string(),
            start,
            length_s,
            ..IntervalStats::default()
        }
    }

    pub fn record_frame(&mut self, now: f64) -> Vec<IntervalStats> {
        let done = self.roll(now);
        self.current.frames += 1;
        done
    }

    pub fn record_camera_fault(&mut self, now: f64) -> Vec<IntervalStats> {
        let done = self.roll(now);
        self.current.camera_faults += 1;
        done
    }

    /// Counts a visit in the interval it ended in.
    pub fn record_visit(&mut self, visit: &Visit, now: f64) -> Vec<IntervalStats> {
        let done = self.roll(now);
        let cell = (
            self.buckets.bucket(visit.age),
            gender_label(visit.gender).to_string(),
        );
        *self.current.cells.entry(cell.clone()).or_insert(0) += 1;
        if let Some(attention) = visit.attention {
            self.current
                .attention
                .entry(cell)
                .or_default()
                .add(&CellAttention {
                    posed: 1,
                    watchers: u32::from(visit.watcher),
                    attention_s: attention
                        .as_secs_f64()
                        .min(ATTENTION_CAP_S)
                        .min(self.length_s as f64),
                });
        }
        let dwell = visit.dwell.as_secs_f64();
        self.current.dwell_total_s += dwell;
        self.current.dwell_max_s = self.current.dwell_max_s.max(dwell);
        done
    }

    /// Closes every interval that ended before `now` and returns them, oldest first.
    pub fn roll(&mut self, now: f64) -> Vec<IntervalStats> {
        let mut done = Vec::new();
        let mut empty_run = 0;
        while now >= (self.current.start + self.length_s) as f64 {
            let end = (self.current.start + self.length_s) as f64;
            self.current.uptime_s += (end - self.accounted_to).max(0.0);
            self.accounted_to = end;
            let next = Self::empty(&self.unit_id, self.length_s, end);
            let finished = std::mem::replace(&mut self.current, next);
            empty_run = if finished.frames == 0 && finished.visits() == 0 {
                empty_run + 1
            } else {
                0
            };
            done.push(finished);
            if empty_run > MAX_EMPTY_INTERVALS {
                log::warn!("the clock jumped by more than {MAX_EMPTY_INTERVALS} intervals; starting afresh at the current time");
                self.current = Self::empty(&self.unit_id, self.length_s, now);
                self.accounted_to = now;
                break;
            }
        }
        done
    }

    /// The interval in progress, with uptime accounted up to `now` (at shutdown).
    pub fn take_partial(&mut self, now: f64) -> IntervalStats {
        let mut partial = std::mem::replace(
            &mut self.current,
            Self::empty(&self.unit_id, self.length_s, now),
        );
        partial.uptime_s += (now - self.accounted_to).max(0.0);
        self.accounted_to = now;
        partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn visit(age: Option<f32>, gender: Option<Gender>, dwell_s: u64) -> Visit {
        Visit {
            age,
            gender,
            dwell: Duration::from_secs(dwell_s),
            attention: None,
            watcher: false,
            ended: Instant::now(),
        }
    }

    #[test]
    fn bucket_labels_and_edges() {
        let b = AgeBuckets::default();
        assert_eq!(
            b.labels(),
            ["0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
        );
        assert_eq!(b.bucket(Some(12.9)), "0-12");
        assert_eq!(b.bucket(Some(13.0)), "13-17");
        assert_eq!(b.bucket(Some(64.99)), "55-64");
        assert_eq!(b.bucket(Some(90.0)), "65+");
        assert_eq!(b.bucket(Some(-1.0)), "0-12");
        assert_eq!(b.bucket(None), "unknown");
        assert!(AgeBuckets::new(vec![5, 10]).is_err());
        assert!(AgeBuckets::new(vec![0, 10, 10]).is_err());
    }

    #[test]
    fn visits_frames_and_uptime_land_in_the_right_intervals() {
        // 15-minute intervals; start 100 s into one.
        let t0 = 1_700_000_100.0;
        let mut agg = Aggregator::new("kiosk-1", 900, AgeBuckets::default(), t0);
        let first_start = 1_700_000_100 / 900 * 900;
        assert!(agg.record_frame(t0 + 1.0).is_empty());
        agg.record_visit(&visit(Some(30.0), Some(Gender::Female), 12), t0 + 2.0);
        agg.record_visit(&visit(Some(31.0), Some(Gender::Female), 30), t0 + 3.0);
        agg.record_visit(&visit(Some(70.0), Some(Gender::Male), 5), t0 + 4.0);
        agg.record_camera_fault(t0 + 5.0);
        // Next interval, and one entirely empty interval after it.
        let done = agg.record_frame((first_start + 900 * 2 + 10) as f64);
        assert_eq!(done.len(), 2);
        let a = &done[0];
        assert_eq!(
            (a.start, a.length_s, a.frames, a.camera_faults),
            (first_start, 900, 1, 1)
        );
        assert_eq!(a.cells[&("25-34".to_string(), "female".to_string())], 2);
        assert_eq!(a.cells[&("65+".to_string(), "male".to_string())], 1);
        assert_eq!(a.visits(), 3);
        assert_eq!((a.dwell_total_s, a.dwell_max_s), (47.0, 30.0));
        let started_late = (first_start + 900) as f64 - t0;
        assert!(
            (a.uptime_s - started_late).abs() < 1e-6,
            "a gap before start shows as less uptime"
        );
        let b = &done[1];
        assert_eq!((b.start, b.visits(), b.frames), (first_start + 900, 0, 0));
        assert!(
            (b.uptime_s - 900.0).abs() < 1e-6,
            "running with nobody in view: full uptime, zero visits"
        );
        let partial = agg.take_partial((first_start + 1800 + 60) as f64);
        assert_eq!((partial.start, partial.frames), (first_start + 1800, 1));
        assert!((partial.uptime_s - 60.0).abs() < 1e-6);
        assert_eq!(partial.id(), format!("kiosk-1@{}", first_start + 1800));
    }

    #[test]
    fn attention_is_summed_per_cell_and_capped_per_visit() {
        let mut agg = Aggregator::new("u", 900, AgeBuckets::default(), 0.0);
        let looked = |seconds: u64, watcher: bool| Visit {
            attention: Some(Duration::from_secs(seconds)),
            watcher,
            ..visit(Some(30.0), Some(Gender::Female), 20)
        };
        agg.record_visit(&looked(4, true), 1.0);
        agg.record_visit(&looked(0, false), 2.0);
        agg.record_visit(&looked(1000, true), 3.0);
        // No landmarks: a visit, but no attention.
        agg.record_visit(&visit(Some(30.0), Some(Gender::Female), 5), 4.0);
        let i = agg.take_partial(5.0);
        let cell = ("25-34".to_string(), "female".to_string());
        assert_eq!(i.cells[&cell], 4);
        assert_eq!(
            i.attention[&cell],
            CellAttention {
                posed: 3,
                watchers: 2,
                attention_s: 4.0 + ATTENTION_CAP_S
            }
        );
    }

    #[test]
    fn a_clock_jump_does_not_emit_endless_empty_intervals() {
        let mut agg = Aggregator::new("u", 60, AgeBuckets::default(), 0.0);
        let done = agg.roll(1.0e9);
        assert!(
            done.len() <= MAX_EMPTY_INTERVALS as usize + 2,
            "{}",
            done.len()
        );
        assert!(agg.record_frame(1.0e9 + 1.0).is_empty());
    }

    #[test]
    fn merging_two_parts_of_an_interval_adds_them() {
        let mut a = IntervalStats {
            uptime_s: 100.0,
            frames: 5,
            dwell_max_s: 3.0,
            ..Default::default()
        };
        a.cells.insert(("18-24".into(), "male".into()), 2);
        let mut b = IntervalStats {
            uptime_s: 50.0,
            frames: 7,
            dwell_max_s: 9.0,
            ..Default::default()
        };
        b.cells.insert(("18-24".into(), "male".into()), 1);
        b.cells.insert(("65+".into(), "female".into()), 4);
        a.merge(&b);
        assert_eq!(
            (a.uptime_s, a.frames, a.dwell_max_s, a.visits()),
            (150.0, 12, 9.0, 7)
        );
    }
}
