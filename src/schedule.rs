//! Work per visit: which frames run the face detector, and which faces run the age/gender
//! network (`[schedule]` in the config). A policy only: the
//! [`Pipeline`](crate::pipeline::Pipeline) asks it, frame by frame and track by track, and
//! runs the stages itself.
//!
//! A person standing at a kiosk for 10 s at 30 fps is 300 frames, but the estimate of the
//! visit settles after a handful of good ones. The detector runs on every Nth frame and the
//! faces are followed at their last boxes in between (the [`track`](crate::track) module links
//! them, by box overlap only); a face is classified on its first few frames that are large
//! enough, the network's probabilities are added up (age distributions summed, not medians of
//! point estimates), and then it is only re-checked now and then, or afresh when its box
//! changes size a lot (someone else may have stepped into the same place). Every frame still
//! carries every face with its current estimate, for the overlay; the statistics take the
//! frames the detector ran on.
//!
//! `detect_every = 1, settle_estimates = 0` ([`ScheduleConfig::every_frame`]) is the
//! every-frame daemon, kept as the reference the replay tests compare against.

use crate::config::ScheduleConfig;
use crate::track::Track;

/// What one frame cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameWork {
    /// The detector ran on this frame (the statistics count its faces).
    pub detected: bool,
    /// Faces the age/gender network ran on.
    pub classified: usize,
}

/// Decides, frame by frame, what runs; see the module documentation.
#[derive(Debug, Clone)]
pub struct Schedule {
    settings: ScheduleConfig,
    frame: u64,
}

impl Schedule {
    pub fn new(settings: ScheduleConfig) -> Schedule {
        Schedule { settings, frame: 0 }
    }

    pub fn settings(&self) -> &ScheduleConfig {
        &self.settings
    }

    /// Whether every frame is detected and every face classified afresh (the reference
    /// daemon).
    pub fn is_every_frame(&self) -> bool {
        self.settings.detect_every <= 1 && self.settings.settle_estimates == 0
    }

    /// Whether the detector will run on the next frame, without counting it.
    pub fn detects_next(&self) -> bool {
        self.frame
            .is_multiple_of(u64::from(self.settings.detect_every.max(1)))
    }

    /// Whether the detector runs on the next frame (counts the frame).
    pub fn detect_next(&mut self) -> bool {
        let now = self.detects_next();
        self.frame += 1;
        now
    }

    /// Whether `track`, found by this detector frame and large enough to estimate, is
    /// classified now. A face much larger or smaller than when it was classified has its
    /// estimate restarted first (not the face that was classified, or not as it was).
    pub fn due(&self, track: &mut Track) -> bool {
        let s = &self.settings;
        if track.estimates > 0 {
            let ratio = track.side() / track.checked_side.max(1.0);
            if ratio.max(1.0 / ratio) >= s.recheck_on_resize {
                track.restart_estimate();
            }
        }
        track.estimates < s.settle_estimates.max(1)
            || (s.recheck_every > 0 && track.since_check >= s.recheck_every)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ScheduleConfig;
    use crate::pipeline::Pipeline;
    use crate::schedule::FrameWork;
    use crate::vision::{FaceBox, FaceDetector};
    use image::RgbImage;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Finds a face wherever row 0 of the frame is magenta (as wide as the magenta run), and
    /// counts its calls.
    struct Counting(Arc<AtomicUsize>);

    impl FaceDetector for Counting {
        fn detect(&mut self, image: &RgbImage) -> Vec<FaceBox> {
            self.0.fetch_add(1, Ordering::Relaxed);
            let magenta: Vec<u32> = (0..image.width())
                .filter(|&x| image.get_pixel(x, 0).0 == [255, 0, 255])
                .collect();
            match (magenta.first(), magenta.last()) {
                (Some(&first), Some(&last)) => {
                    let side = (last - first + 1) as f32;
                    vec![FaceBox::new(first as f32, 0.0, side, side, 1.0)]
                }
                _ => Vec::new(),
            }
        }
    }

    fn pipeline(calls: Arc<AtomicUsize>) -> (Pipeline, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::model::onnx_build::tests_support::tiny_age_gender_model(dir.path(), 16);
        (
            Pipeline::from_parts(Box::new(Counting(calls)), Some(model), 0.0),
            dir,
        )
    }

    /// A 96×32 frame, grey, with a `side` px magenta (age 60, female) square at `x`.
    fn frame_of(x: Option<u32>, side: u32) -> RgbImage {
        RgbImage::from_fn(96, 32, |px, py| match x {
            Some(x) if (x..x + side).contains(&px) && py < side => image::Rgb([255, 0, 255]),
            _ => image::Rgb([128, 128, 128]),
        })
    }

    fn frame(x: Option<u32>) -> RgbImage {
        frame_of(x, 32)
    }

    const TICK: Duration = Duration::from_millis(33);

    #[test]
    fn the_detector_runs_every_nth_frame_and_a_face_is_classified_until_settled() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (mut pipeline, _dir) = pipeline(calls.clone());
        pipeline.set_schedule(ScheduleConfig {
            detect_every: 3,
            settle_estimates: 2,
            recheck_every: 4,
            recheck_on_resize: 1.5,
        });
        let t0 = Instant::now();
        let mut work = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for i in 0..30 {
            let out = pipeline.frame(&frame(Some(10)), t0 + TICK * i).unwrap();
            assert_eq!(out.faces.len(), 1, "the face is in view on every frame");
            ids.insert(
                out.faces[0]
                    .track
                    .expect("followed faces carry their track"),
            );
            let e = out.faces[0]
                .estimate
                .expect("estimated from the first frame");
            assert!((e.age - 60.0).abs() < 1.5, "{e:?}");
            assert_eq!(e.gender, crate::model::Gender::Female);
            work.push(out.work);
        }
        assert_eq!(ids.len(), 1, "one track throughout");
        assert_eq!(calls.load(Ordering::Relaxed), 10, "frames 0, 3, 6, …, 27");
        let detected: Vec<usize> = (0..30).filter(|&i| work[i].detected).collect();
        assert_eq!(detected, (0..30).step_by(3).collect::<Vec<_>>());
        // Classified on the first two detector frames (settled), then re-checked after four
        // more detector frames: detector frames 0, 1, 5, 9 → camera frames 0, 3, 15, 27.
        let classified: Vec<usize> = (0..30).filter(|&i| work[i].classified > 0).collect();
        assert_eq!(classified, [0, 3, 15, 27]);
    }

    #[test]
    fn every_frame_settings_run_everything_and_a_face_that_leaves_is_dropped() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (mut pipeline, _dir) = pipeline(calls.clone());
        pipeline.set_schedule(ScheduleConfig::every_frame());
        let t0 = Instant::now();
        for i in 0..4 {
            let out = pipeline.frame(&frame(Some(10)), t0 + TICK * i).unwrap();
            assert_eq!(
                out.work,
                FrameWork {
                    detected: true,
                    classified: 1
                }
            );
        }
        assert_eq!(calls.load(Ordering::Relaxed), 4);

        // Scheduled: once the detector no longer finds the face, it is no longer shown.
        pipeline.set_schedule(ScheduleConfig {
            detect_every: 2,
            ..ScheduleConfig::default()
        });
        pipeline.frame(&frame(Some(10)), t0).unwrap();
        let bridged = pipeline.frame(&frame(None), t0 + TICK).unwrap();
        assert_eq!(bridged.faces.len(), 1, "followed at its last box");
        let gone = pipeline.frame(&frame(None), t0 + TICK * 2).unwrap();
        assert!(gone.work.detected && gone.faces.is_empty());
    }

    #[test]
    fn a_face_much_larger_than_when_classified_is_estimated_afresh() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (mut pipeline, _dir) = pipeline(calls);
        pipeline.set_schedule(ScheduleConfig {
            detect_every: 1,
            settle_estimates: 1,
            recheck_every: 0,
            recheck_on_resize: 1.5,
        });
        let t0 = Instant::now();
        let first = pipeline.frame(&frame_of(Some(10), 16), t0).unwrap();
        assert_eq!(first.work.classified, 1);
        let settled = pipeline.frame(&frame_of(Some(10), 17), t0 + TICK).unwrap();
        assert_eq!(settled.work.classified, 0, "settled after one estimate");
        // The same place, a box 1.5 times the side (still overlapping enough to be the same
        // track).
        let again = pipeline
            .frame(&frame_of(Some(10), 24), t0 + TICK * 2)
            .unwrap();
        assert_eq!(again.faces[0].track, first.faces[0].track);
        assert_eq!(
            again.work.classified, 1,
            "24 px against 16 px when classified"
        );
    }
}
