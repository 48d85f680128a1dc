//! Following each face from frame to frame: the one tracker. Every face the detector finds is
//! linked to a track by box overlap and distance in time — never by what the face looks like
//! (no embedding, no identity, nothing kept once the track ends). A track carries its
//! [`TrackId`], the per-visit schedule's state (the network's probabilities summed so far) and
//! what the statistics keep of the visit; when its face has been gone for
//! [`TrackSettings::visit_gap`] it ends as one [`Visit`].
//!
//! The pipeline ([`Pipeline::frame`](crate::pipeline::Pipeline::frame)) links the detector's
//! boxes here, classifies the faces the [`Schedule`](crate::schedule::Schedule) says are due
//! and records their estimates; the statistics only ever see finished visits.
//!
//! ```
//! use agecam::model::{AgeGender, Gender};
//! use agecam::track::{TrackSettings, Tracker};
//! use agecam::vision::FaceBox;
//! use std::time::{Duration, Instant};
//!
//! let mut tracker = Tracker::new(TrackSettings::default());
//! let t0 = Instant::now();
//! let estimate = AgeGender {
//!     age: 34.0,
//!     age_low: 30.0,
//!     age_high: 38.0,
//!     gender: Gender::Female,
//!     gender_confidence: 0.9,
//! };
//! for i in 0..5u32 {
//!     // One face, drifting a little: one track, the same id every frame.
//!     let face = FaceBox::new(100.0 + i as f32, 80.0, 64.0, 64.0, 0.9);
//!     assert!(tracker.link(vec![face], t0 + Duration::from_millis(100) * i).is_empty());
//!     for track in tracker.in_view_mut() {
//!         track.estimate = Some(estimate);
//!     }
//!     tracker.record_in_view();
//! }
//! assert_eq!(tracker.in_view().count(), 1);
//! // Gone for longer than the visit gap: the visit ends.
//! let visits = tracker.expire(t0 + Duration::from_secs(5));
//! assert_eq!(visits.len(), 1);
//! assert_eq!(visits[0].age, Some(34.0));
//! assert_eq!(visits[0].gender, Some(Gender::Female));
//! ```

use crate::face::FaceResult;
pub use crate::face::TrackId;
use crate::model::{AgeGender, FaceProbs, Gender};
use crate::vision::pose::head_pose;
use crate::vision::{match_by_overlap, FaceBox};
use std::time::{Duration, Instant};

/// When a face counts as looking at the screen, and a visit as a watcher (`[attention]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionRules {
    /// Largest |yaw| in degrees that counts as looking.
    pub max_yaw: f32,
    /// Largest |pitch| in degrees that counts as looking.
    pub max_pitch: f32,
    /// Attention that makes a visit a watcher.
    pub min_attention: Duration,
}

impl Default for AttentionRules {
    /// The `[attention]` section's defaults: one default, the config's.
    fn default() -> Self {
        AttentionRules::from_config(&crate::config::AttentionConfig::default())
    }
}

impl AttentionRules {
    pub fn from_config(attention: &crate::config::AttentionConfig) -> AttentionRules {
        AttentionRules {
            max_yaw: attention.max_yaw,
            max_pitch: attention.max_pitch,
            min_attention: Duration::from_secs_f32(attention.min_seconds),
        }
    }

    /// Whether a face with these landmarks looks at the screen; `None` when the detector gave
    /// no landmarks (or too few to fit a pose).
    pub fn looking(&self, face: &FaceBox) -> Option<bool> {
        let pose = face.landmarks.as_ref().and_then(head_pose)?;
        Some(pose.yaw.abs() <= self.max_yaw && pose.pitch.abs() <= self.max_pitch)
    }
}

/// The rules that link detections into tracks and end visits (`[stats]` in the config:
/// `link_iou`, `visit_gap_seconds`, `min_track_frames`), and what counts as attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackSettings {
    /// A track ends (one visit) when its face has not been found for this long.
    pub visit_gap: Duration,
    /// Tracks found in fewer detector frames than this are dropped as noise (a passing false
    /// detection) when they end.
    pub min_frames: u32,
    /// Smallest box overlap (IoU) that links a detection to a track.
    pub min_iou: f32,
    /// When a face looks at the screen (`[attention]`).
    pub attention: AttentionRules,
}

impl Default for TrackSettings {
    fn default() -> Self {
        TrackSettings {
            visit_gap: Duration::from_secs(3),
            min_frames: 3,
            min_iou: 0.3,
            attention: AttentionRules::default(),
        }
    }
}

impl TrackSettings {
    /// The settings of the `[stats]` section.
    pub fn from_config(stats: &crate::config::StatsConfig) -> TrackSettings {
        TrackSettings {
            visit_gap: Duration::from_secs_f32(stats.visit_gap_seconds),
            min_frames: stats.min_track_frames,
            min_iou: stats.link_iou,
            attention: AttentionRules::default(),
        }
    }

    /// The same settings with the `[attention]` section's rules.
    pub fn with_attention(self, attention: AttentionRules) -> TrackSettings {
        TrackSettings { attention, ..self }
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
    /// Time spent looking at the screen, from the detector frames that found the face; `None`
    /// when no sighting had landmarks to tell (a detector without them).
    pub attention: Option<Duration>,
    /// Whether the attention reached `attention.min_seconds`.
    pub watcher: bool,
    /// When the face was last seen.
    pub ended: Instant,
}

/// One face followed across frames.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: TrackId,
    /// The box of the last detector frame that found it.
    pub face: FaceBox,
    /// Detector frames in a row the face was not found in (0: found in the last one).
    pub missed: u32,
    /// The current estimate, shown with the face (the schedule's, or this frame's).
    pub estimate: Option<AgeGender>,
    /// The network's probabilities summed over the frames it was classified in since the
    /// estimate (re)started (the per-visit schedule).
    pub probs: Option<FaceProbs>,
    /// Frames classified since the estimate (re)started.
    pub estimates: u32,
    /// Detector frames that found it since it was last classified.
    pub since_check: u32,
    /// Shorter box side when it was last classified.
    pub checked_side: f32,
    /// Whether the face looked at the screen when last found (`None`: no landmarks).
    pub looking: Option<bool>,
    /// Time looking so far; `None` until a sighting had landmarks.
    attention: Option<Duration>,
    first_seen: Instant,
    last_seen: Instant,
    /// Detector frames that found it.
    frames: u32,
    /// (age, weight) per detector frame with an estimate; kept only for the life of the track.
    ages: Vec<(f32, f32)>,
    /// Confidence-weighted votes for male and female.
    gender_votes: [f32; 2],
}

impl Track {
    fn new(id: TrackId, face: FaceBox, now: Instant) -> Track {
        Track {
            id,
            face,
            missed: 0,
            estimate: None,
            probs: None,
            estimates: 0,
            since_check: 0,
            checked_side: 0.0,
            looking: None,
            attention: None,
            first_seen: now,
            last_seen: now,
            frames: 0,
            ages: Vec::new(),
            gender_votes: [0.0; 2],
        }
    }

    /// The shorter side of its box.
    pub fn side(&self) -> f32 {
        self.face.width.min(self.face.height)
    }

    /// Whether the last detector frame found it.
    pub fn in_view(&self) -> bool {
        self.missed == 0
    }

    /// Forgets the estimate (someone else may stand where this face was).
    pub fn restart_estimate(&mut self) {
        self.probs = None;
        self.estimate = None;
        self.estimates = 0;
    }

    /// The face as the display and the outputs see it.
    pub fn result(&self) -> FaceResult {
        FaceResult {
            face: self.face,
            estimate: self.estimate,
            track: Some(self.id),
            looking: self.looking,
        }
    }

    /// Takes a new sighting at `now`, looking or not. The time since the last sighting counts
    /// as attention in proportion to how many of its two ends looked (a face looking in both
    /// counts it all, in one half), so a face looking at every detector frame gets its whole
    /// dwell as attention.
    fn sighted(&mut self, face: FaceBox, looking: Option<bool>, now: Instant) {
        if let Some(now_looking) = looking {
            let since = now.saturating_duration_since(self.last_seen);
            let ends = u32::from(now_looking) + u32::from(self.looking == Some(true));
            let attention = self.attention.get_or_insert(Duration::ZERO);
            *attention += since * ends / 2;
        }
        self.face = face;
        self.looking = looking;
        self.missed = 0;
        self.since_check += 1;
        self.last_seen = now;
    }

    /// Adds this detector frame's sighting, with the current estimate, to the visit.
    fn record(&mut self) {
        self.frames += 1;
        if let Some(e) = self.estimate {
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
    }

    fn into_visit(self, rules: &AttentionRules) -> Visit {
        let gender = match self.gender_votes {
            [m, f] if m == 0.0 && f == 0.0 => None,
            [m, f] if f > m => Some(Gender::Female),
            _ => Some(Gender::Male),
        };
        Visit {
            age: weighted_median(self.ages),
            gender,
            dwell: self.last_seen - self.first_seen,
            attention: self.attention,
            watcher: self
                .attention
                .is_some_and(|a| a >= rules.min_attention && !a.is_zero()),
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

/// Links detections frame by frame into tracks and hands back finished visits.
pub struct Tracker {
    settings: TrackSettings,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(settings: TrackSettings) -> Tracker {
        Tracker {
            settings,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn settings(&self) -> &TrackSettings {
        &self.settings
    }

    /// How many people are being followed (tracks not yet ended, in view or briefly missed).
    pub fn active(&self) -> usize {
        self.tracks.len()
    }

    /// The tracks the last detector frame found.
    pub fn in_view(&self) -> impl Iterator<Item = &Track> {
        self.tracks.iter().filter(|t| t.in_view())
    }

    /// The tracks the last detector frame found, to classify.
    pub fn in_view_mut(&mut self) -> impl Iterator<Item = &mut Track> {
        self.tracks.iter_mut().filter(|t| t.in_view())
    }

    /// Links one detector frame's boxes, found at `now`: visits unseen for longer than the
    /// gap end first (so a person who comes back after the gap starts a new visit even when
    /// standing exactly where they stood), then each box goes to the open track it overlaps
    /// most (at least `min_iou`), and an unlinked box starts a new track. Returns the visits
    /// that ended.
    pub fn link(&mut self, boxes: Vec<FaceBox>, now: Instant) -> Vec<Visit> {
        let ended = self.expire(now);
        let linked = match_by_overlap(
            self.tracks.iter().map(|t| &t.face),
            &boxes,
            self.settings.min_iou,
        );
        let mut track_found = vec![false; self.tracks.len()];
        let mut box_taken = vec![false; boxes.len()];
        for (t, b) in linked {
            track_found[t] = true;
            box_taken[b] = true;
            let looking = self.settings.attention.looking(&boxes[b]);
            self.tracks[t].sighted(boxes[b], looking, now);
        }
        for (track, found) in self.tracks.iter_mut().zip(track_found) {
            if !found {
                track.missed += 1;
            }
        }
        for (face, taken) in boxes.into_iter().zip(box_taken) {
            if !taken {
                let id = TrackId(self.next_id);
                self.next_id += 1;
                let mut track = Track::new(id, face, now);
                track.sighted(face, self.settings.attention.looking(&face), now);
                track.since_check = 0;
                self.tracks.push(track);
            }
        }
        ended
    }

    /// Adds this detector frame to the visit of every track in view, with its current
    /// estimate (call after classifying).
    pub fn record_in_view(&mut self) {
        for track in self.tracks.iter_mut().filter(|t| t.in_view()) {
            track.record();
        }
    }

    /// [`link`](Tracker::link) and [`record_in_view`](Tracker::record_in_view) for faces
    /// whose estimates were made elsewhere (a replayed or simulated visit): each track in view
    /// takes the estimate of the face linked to it. Returns the visits that ended.
    pub fn update(&mut self, faces: &[FaceResult], now: Instant) -> Vec<Visit> {
        let ended = self.link(faces.iter().map(|f| f.face).collect(), now);
        for face in faces {
            if let Some(track) = self
                .tracks
                .iter_mut()
                .find(|t| t.in_view() && t.face == face.face)
            {
                track.estimate = face.estimate;
            }
        }
        self.record_in_view();
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
            .map(|t| t.into_visit(&self.settings.attention))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, age: f32, gender: Gender) -> FaceResult {
        FaceResult {
            face: FaceBox::new(x, 100.0, 80.0, 80.0, 1.0),
            estimate: Some(AgeGender {
                age,
                age_low: age - 5.0,
                age_high: age + 5.0,
                gender,
                gender_confidence: 0.9,
            }),
            track: None,
            looking: None,
        }
    }

    const FRAME: Duration = Duration::from_millis(100);

    #[test]
    fn one_person_standing_still_is_one_visit() {
        let mut tracker = Tracker::new(TrackSettings::default());
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
        let mut tracker = Tracker::new(TrackSettings::default());
        let t0 = Instant::now();
        let mut ids = std::collections::BTreeSet::new();
        for i in 0..20u32 {
            // The right-hand person is missed by the detector in frames 5 to 9 (0.5 s).
            let mut faces = vec![face(100.0, 25.0, Gender::Male)];
            if !(5..10).contains(&i) {
                faces.push(face(400.0, 61.0, Gender::Female));
            }
            assert!(tracker.update(&faces, t0 + FRAME * i).is_empty());
            ids.extend(tracker.in_view().map(|t| t.id));
        }
        assert_eq!(tracker.active(), 2);
        assert_eq!(ids.len(), 2, "the same two ids throughout: {ids:?}");
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
        let mut tracker = Tracker::new(TrackSettings::default());
        let t0 = Instant::now();
        let mut visits = Vec::new();
        for i in 0..5 {
            visits.extend(tracker.update(&[face(200.0, 40.0, Gender::Male)], t0 + FRAME * i));
        }
        let first = tracker.in_view().next().unwrap().id;
        let back = t0 + Duration::from_secs(10);
        for i in 0..5 {
            visits.extend(tracker.update(&[face(200.0, 40.0, Gender::Male)], back + FRAME * i));
        }
        let second = tracker.in_view().next().unwrap().id;
        assert!(second > first, "a new track: {first} then {second}");
        visits.extend(tracker.finish());
        assert_eq!(visits.len(), 2);
    }

    #[test]
    fn a_flicker_shorter_than_min_frames_is_not_counted() {
        let mut tracker = Tracker::new(TrackSettings::default());
        let t0 = Instant::now();
        tracker.update(&[face(200.0, 40.0, Gender::Male)], t0);
        tracker.update(&[face(200.0, 40.0, Gender::Male)], t0 + FRAME);
        assert!(tracker.update(&[], t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn faces_without_estimates_still_count_as_visits_of_unknown_age_and_gender() {
        let mut tracker = Tracker::new(TrackSettings::default());
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
        let mut tracker = Tracker::new(TrackSettings::default());
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
    fn a_missed_face_stays_followed_but_out_of_view_until_found_again() {
        let mut tracker = Tracker::new(TrackSettings::default());
        let t0 = Instant::now();
        tracker.link(vec![face(200.0, 40.0, Gender::Male).face], t0);
        let id = tracker.in_view().next().unwrap().id;
        tracker.link(Vec::new(), t0 + FRAME);
        assert_eq!(tracker.in_view().count(), 0, "missed in this frame");
        assert_eq!(tracker.active(), 1, "but not ended");
        tracker.link(vec![face(204.0, 40.0, Gender::Male).face], t0 + FRAME * 2);
        let again = tracker.in_view().next().unwrap();
        assert_eq!((again.id, again.missed), (id, 0));
    }

    /// A face box at `x` whose landmarks look straight at the camera, or are turned about 70°
    /// (the cameraman photo's landmarks, `tests/data/faces`).
    fn posed(x: f32, frontal: bool) -> FaceBox {
        use crate::vision::Landmarks;
        let landmarks = if frontal {
            Landmarks {
                right_eye: [100.0, 100.0],
                left_eye: [164.0, 100.0],
                nose: [132.0, 135.0],
                mouth: [132.0, 165.0],
                mouth_corners: None,
                ears: None,
            }
        } else {
            Landmarks {
                right_eye: [236.8, 147.7],
                left_eye: [248.1, 150.3],
                nose: [251.0, 167.9],
                mouth: [239.8, 178.5],
                mouth_corners: None,
                ears: None,
            }
        };
        FaceBox {
            landmarks: Some(landmarks),
            ..FaceBox::new(x, 100.0, 80.0, 80.0, 1.0)
        }
    }

    /// Attention is the time between detector frames, counted in full when the face looked at
    /// both ends and half when at one; a watcher reaches `attention.min_seconds`.
    #[test]
    fn attention_counts_the_time_looking_and_makes_watchers() {
        let t0 = Instant::now();
        let run = |looks: &[bool]| {
            let mut tracker = Tracker::new(TrackSettings::default());
            for (i, &look) in looks.iter().enumerate() {
                tracker.link(vec![posed(200.0, look)], t0 + FRAME * 5 * i as u32);
                assert_eq!(tracker.in_view().next().unwrap().looking, Some(look));
                assert_eq!(
                    tracker.in_view().next().unwrap().result().looking,
                    Some(look)
                );
                tracker.record_in_view();
            }
            tracker.finish().remove(0)
        };
        // Detector frames every 0.5 s. Looking throughout 2 s: attention = dwell = 2 s.
        let v = run(&[true; 5]);
        assert_eq!((v.dwell, v.attention), (FRAME * 20, Some(FRAME * 20)));
        assert!(v.watcher);
        // Turned away throughout: no attention, not a watcher.
        let v = run(&[false; 5]);
        assert_eq!((v.attention, v.watcher), (Some(Duration::ZERO), false));
        // Looking in 2 of 5 frames, in a row: 0.25 + 0.5 + 0.25 = 1 s, just a watcher.
        let v = run(&[false, true, true, false, false]);
        assert_eq!((v.attention, v.watcher), (Some(FRAME * 10), true));
        // One glance: 0.5 s, not a watcher.
        let v = run(&[false, false, true, false, false]);
        assert_eq!((v.attention, v.watcher), (Some(FRAME * 5), false));
    }

    #[test]
    fn faces_without_landmarks_have_unknown_attention() {
        let mut tracker = Tracker::new(TrackSettings::default());
        let t0 = Instant::now();
        for i in 0..4 {
            tracker.update(&[face(200.0, 30.0, Gender::Male)], t0 + FRAME * i);
        }
        assert_eq!(tracker.in_view().next().unwrap().looking, None);
        let v = tracker.finish().remove(0);
        assert_eq!((v.attention, v.watcher), (None, false));
    }

    #[test]
    fn the_attention_thresholds_come_from_the_rules() {
        let strict = AttentionRules {
            max_yaw: 1.0,
            ..AttentionRules::default()
        };
        let lenient = AttentionRules {
            max_yaw: 80.0,
            ..AttentionRules::default()
        };
        assert_eq!(strict.looking(&posed(0.0, false)), Some(false));
        assert_eq!(lenient.looking(&posed(0.0, false)), Some(true));
        assert_eq!(
            AttentionRules::default().looking(&posed(0.0, true)),
            Some(true)
        );
        assert_eq!(
            AttentionRules::default().looking(&posed(0.0, false)),
            Some(false)
        );
        assert_eq!(
            AttentionRules::default().looking(&FaceBox::new(0.0, 0.0, 9.0, 9.0, 1.0)),
            None
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
