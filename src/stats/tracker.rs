//! Counting each person once: detections are linked across frames into tracks by box overlap
//! and distance in time, never by what a face looks like (no embeddings, no identity). A track
//! becomes one visit when its face has been gone for a while.

use crate::face::FaceResult;
use crate::model::{AgeGender, Gender};
use crate::vision::{match_by_overlap, FaceBox};
use std::time::{Duration, Instant};

/// Settings for linking detections into visits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerSettings {
    /// A visit ends when its face has not been seen for this long.
    pub visit_gap: Duration,
    /// Tracks seen in fewer frames than this are dropped as noise (a passing false detection).
    pub min_frames: u32,
    /// Smallest box overlap (IoU) that links a detection to a track.
    pub min_iou: f32,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            visit_gap: Duration::from_secs(3),
            min_frames: 3,
            min_iou: 0.3,
        }
    }
}

/// One person's visit, as the statistics see it: only what is aggregated, nothing else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Visit {
    /// Smoothed age over the visit; `None` when no frame had an estimate.
    pub age: Option<f32>,
    pub gender: Option<Gender>,
    /// From first to last sighting.
    pub dwell: Duration,
    /// When the face was last seen.
    pub ended: Instant,
}

struct Track {
    last_box: FaceBox,
    first_seen: Instant,
    last_seen: Instant,
    frames: u32,
    /// (age, weight) per frame with an estimate; kept only for the life of the track.
    ages: Vec<(f32, f32)>,
    /// Confidence-weighted votes for male and female.
    gender_votes: [f32; 2],
}

impl Track {
    fn new(face: &FaceResult, now: Instant) -> Track {
        let mut track = Track {
            last_box: face.face,
            first_seen: now,
            last_seen: now,
            frames: 0,
            ages: Vec::new(),
            gender_votes: [0.0; 2],
        };
        track.add(face, now);
        track
    }

    fn add(&mut self, face: &FaceResult, now: Instant) {
        self.last_box = face.face;
        self.last_seen = now;
        self.frames += 1;
        if let Some(estimate) = &face.estimate {
            self.add_estimate(estimate);
        }
    }

    fn add_estimate(&mut self, e: &AgeGender) {
        // A narrow age range means a confident estimate: weigh it more.
        let spread = (e.age_high - e.age_low).max(1.0);
        self.ages.push((e.age, 1.0 / spread));
        let slot = match e.gender {
            Gender::Male => 0,
            Gender::Female => 1,
        };
        // Confidence above a coin toss, so a 50/50 frame casts no vote.
        self.gender_votes[slot] += (e.gender_confidence - 0.5).max(0.0);
    }

    fn into_visit(self) -> Visit {
        let gender = match self.gender_votes {
            [m, f] if m == 0.0 && f == 0.0 => None,
            [m, f] if f > m => Some(Gender::Female),
            _ => Some(Gender::Male),
        };
        Visit {
            age: weighted_median(self.ages),
            gender,
            dwell: self.last_seen - self.first_seen,
            ended: self.last_seen,
        }
    }
}

/// The value at which half the total weight lies on each side.
fn weighted_median(mut samples: Vec<(f32, f32)>) -> Option<f32> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f32 = samples.iter().map(|s| s.1).sum();
    let mut cumulative = 0.0;
    for (value, weight) in &samples {
        cumulative += weight;
        if cumulative >= total / 2.0 {
            return Some(*value);
        }
    }
    samples.last().map(|s| s.0)
}

/// Links detections frame by frame and hands back finished visits.
pub struct Tracker {
    settings: TrackerSettings,
    tracks: Vec<Track>,
}

impl Tracker {
    pub fn new(settings: TrackerSettings) -> Tracker {
        Tracker {
            settings,
            tracks: Vec::new(),
        }
    }

    /// How many people are in view (tracks not yet ended).
    pub fn active(&self) -> usize {
        self.tracks.len()
    }

    /// Adds one frame's faces, seen at `now`; returns the visits that ended.
    pub fn update(&mut self, faces: &[FaceResult], now: Instant) -> Vec<Visit> {
        // End stale tracks first, so a person who comes back after the gap starts a new visit
        // even when standing exactly where they stood before.
        let ended = self.expire(now);
        let boxes: Vec<FaceBox> = faces.iter().map(|f| f.face).collect();
        let linked = match_by_overlap(
            self.tracks.iter().map(|t| &t.last_box),
            &boxes,
            self.settings.min_iou,
        );
        let mut face_taken = vec![false; faces.len()];
        for (t, f) in linked {
            face_taken[f] = true;
            self.tracks[t].add(&faces[f], now);
        }
        for (f, face) in faces.iter().enumerate() {
            if !face_taken[f] {
                self.tracks.push(Track::new(face, now));
            }
        }
        ended
    }

    /// Ends the tracks unseen for longer than the visit gap.
    pub fn expire(&mut self, now: Instant) -> Vec<Visit> {
        let gap = self.settings.visit_gap;
        let (ended, active): (Vec<Track>, Vec<Track>) = self
            .tracks
            .drain(..)
            .partition(|t| now.saturating_duration_since(t.last_seen) > gap);
        self.tracks = active;
        self.keep_real(ended)
    }

    /// Ends every track (at shutdown), so people in view at the end are counted too.
    pub fn finish(&mut self) -> Vec<Visit> {
        let all = std::mem::take(&mut self.tracks);
        self.keep_real(all)
    }

    fn keep_real(&self, ended: Vec<Track>) -> Vec<Visit> {
        ended
            .into_iter()
            .filter(|t| t.frames >= self.settings.min_frames)
            .map(Track::into_visit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, age: f32, gender: Gender) -> FaceResult {
        FaceResult {
            face: FaceBox {
                x,
                y: 100.0,
                width: 80.0,
                height: 80.0,
                score: 1.0,
                landmarks: None,
            },
            estimate: Some(AgeGender {
                age,
                age_low: age - 5.0,
                age_high: age + 5.0,
                gender,
                gender_confidence: 0.9,
            }),
        }
    }

    const FRAME: Duration = Duration::from_millis(100);

    #[test]
    fn one_person_standing_still_is_one_visit() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let mut visits = Vec::new();
        for i in 0..50 {
            // Slight jitter and drift, as a real detector gives.
            let x = 200.0 + (i % 3) as f32 * 2.0 + i as f32 * 0.5;
            visits.extend(tracker.update(
                &[face(x, 30.0 + (i % 5) as f32, Gender::Female)],
                t0 + FRAME * i,
            ));
        }
        assert!(visits.is_empty(), "still in view");
        let visits = tracker.update(&[], t0 + FRAME * 50 + Duration::from_secs(4));
        assert_eq!(visits.len(), 1);
        let v = visits[0];
        assert_eq!(v.gender, Some(Gender::Female));
        assert_eq!(v.age, Some(32.0));
        assert_eq!(v.dwell, FRAME * 49);
    }

    #[test]
    fn two_people_side_by_side_are_two_visits_and_short_gaps_do_not_split_a_visit() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        for i in 0..20u32 {
            // The right-hand person is missed by the detector in frames 5 to 9 (0.5 s).
            let mut faces = vec![face(100.0, 25.0, Gender::Male)];
            if !(5..10).contains(&i) {
                faces.push(face(400.0, 61.0, Gender::Female));
            }
            assert!(tracker.update(&faces, t0 + FRAME * i).is_empty());
        }
        assert_eq!(tracker.active(), 2);
        let mut visits = tracker.finish();
        visits.sort_by(|a, b| a.age.partial_cmp(&b.age).unwrap());
        assert_eq!(visits.len(), 2);
        assert_eq!(
            (visits[0].age, visits[0].gender),
            (Some(25.0), Some(Gender::Male))
        );
        assert_eq!(
            (visits[1].age, visits[1].gender),
            (Some(61.0), Some(Gender::Female))
        );
    }

    #[test]
    fn leaving_and_coming_back_after_the_gap_is_a_new_visit() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let mut visits = Vec::new();
        for i in 0..5 {
            visits.extend(tracker.update(&[face(200.0, 40.0, Gender::Male)], t0 + FRAME * i));
        }
        let back = t0 + Duration::from_secs(10);
        for i in 0..5 {
            visits.extend(tracker.update(&[face(200.0, 40.0, Gender::Male)], back + FRAME * i));
        }
        visits.extend(tracker.finish());
        assert_eq!(visits.len(), 2);
    }

    #[test]
    fn a_flicker_shorter_than_min_frames_is_not_counted() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        tracker.update(&[face(200.0, 40.0, Gender::Male)], t0);
        tracker.update(&[face(200.0, 40.0, Gender::Male)], t0 + FRAME);
        assert!(tracker.update(&[], t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn faces_without_estimates_still_count_as_visits_of_unknown_age_and_gender() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        let plain = FaceResult {
            estimate: None,
            ..face(200.0, 0.0, Gender::Male)
        };
        for i in 0..4 {
            tracker.update(std::slice::from_ref(&plain), t0 + FRAME * i);
        }
        let visits = tracker.finish();
        assert_eq!(visits.len(), 1);
        assert_eq!((visits[0].age, visits[0].gender), (None, None));
    }

    /// Someone walking up: far away (no estimate, under `model.min_face_size`) for the first
    /// frames, near enough for the last ones. The visit takes the near frames' estimate.
    #[test]
    fn a_visit_takes_its_estimate_from_the_frames_near_enough() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let t0 = Instant::now();
        for i in 0..8 {
            let mut f = face(200.0, 52.0, Gender::Female);
            if i < 5 {
                f.estimate = None;
            }
            tracker.update(&[f], t0 + FRAME * i);
        }
        let visits = tracker.finish();
        assert_eq!(visits.len(), 1);
        assert_eq!(
            (visits[0].age, visits[0].gender),
            (Some(52.0), Some(Gender::Female))
        );
    }

    #[test]
    fn weighted_median_prefers_the_heavy_side() {
        assert_eq!(
            weighted_median(vec![(10.0, 1.0), (20.0, 1.0), (30.0, 5.0)]),
            Some(30.0)
        );
        assert_eq!(
            weighted_median(vec![(10.0, 1.0), (20.0, 1.0), (30.0, 1.0)]),
            Some(20.0)
        );
        assert_eq!(weighted_median(vec![]), None);
    }
}
