//! Work per visit: which frames run the face detector, and which faces run the age/gender
//! network (`[schedule]` in the config).
//!
//! A person standing at a kiosk for 10 s at 30 fps is 300 frames, but the estimate of the
//! visit settles after a handful of good ones. The [`Scheduler`] runs the detector on every
//! Nth frame and follows the faces at their last boxes in between; it links each detection
//! to the face it continues (box overlap only: no embedding, no appearance), classifies a face
//! on its first few frames that are large enough, adds the network's probabilities up (age
//! distributions summed, not medians of point estimates), and then only re-checks it now and
//! then, or afresh when its box changes size a lot (someone else may have stepped into the
//! same place). Every frame still carries every face with its current estimate, for the
//! overlay; the statistics take the frames the detector ran on.
//!
//! `detect_every = 1, settle_estimates = 0` ([`ScheduleConfig::every_frame`]) is the
//! every-frame daemon, kept as the reference the replay tests compare against.

use crate::config::ScheduleConfig;
use crate::face::{FaceResult, StageTimes};
use crate::model::{AgeGender, FaceProbs};
use crate::pipeline::Pipeline;
use crate::vision::{match_by_overlap, FaceBox};
use crate::Error;
use image::RgbImage;
use std::time::Instant;

/// What one frame cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameWork {
    /// The detector ran on this frame (the statistics count its faces).
    pub detected: bool,
    /// Faces the age/gender network ran on.
    pub classified: usize,
}

/// One frame, scheduled: every face in view with its visit's current estimate.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub faces: Vec<FaceResult>,
    pub times: StageTimes,
    pub work: FrameWork,
}

/// Smallest box overlap that links a detection to a face followed from earlier frames.
const LINK_IOU: f32 = 0.3;
/// A face the detector missed in this many detector frames in a row is forgotten.
const MAX_MISSED: u32 = 2;

/// A face followed across frames, only for as long as it is in view.
struct Followed {
    face: FaceBox,
    /// Detector frames in a row the face was not found in (0: found in the last one).
    missed: u32,
    /// The network's probabilities summed over the frames it was classified in.
    probs: Option<FaceProbs>,
    estimate: Option<AgeGender>,
    /// Frames classified since the estimate (re)started.
    estimates: u32,
    /// Detector frames seen since it was last classified.
    since_check: u32,
    /// Shorter box side when it was last classified.
    checked_side: f32,
}

impl Followed {
    fn new(face: FaceBox) -> Followed {
        Followed {
            face,
            missed: 0,
            probs: None,
            estimate: None,
            estimates: 0,
            since_check: 0,
            checked_side: 0.0,
        }
    }

    fn side(&self) -> f32 {
        self.face.width.min(self.face.height)
    }

    fn result(&self) -> FaceResult {
        FaceResult {
            face: self.face,
            estimate: self.estimate,
        }
    }
}

/// Decides, frame by frame, what runs; see the module documentation.
pub struct Scheduler {
    settings: ScheduleConfig,
    frame: u64,
    followed: Vec<Followed>,
}

impl Scheduler {
    pub fn new(settings: ScheduleConfig) -> Scheduler {
        Scheduler {
            settings,
            frame: 0,
            followed: Vec::new(),
        }
    }

    pub fn settings(&self) -> &ScheduleConfig {
        &self.settings
    }

    /// Whether every frame is detected and every face classified (the reference daemon).
    pub fn is_every_frame(&self) -> bool {
        self.settings.detect_every <= 1 && self.settings.settle_estimates == 0
    }

    /// Runs what this frame needs of `pipeline` on `image`.
    pub fn process(
        &mut self,
        pipeline: &mut Pipeline,
        image: &RgbImage,
    ) -> Result<Scheduled, Error> {
        if self.is_every_frame() {
            let (faces, times) = pipeline.process(image)?;
            let classified = faces.iter().filter(|f| f.estimate.is_some()).count();
            return Ok(Scheduled {
                faces,
                times,
                work: FrameWork {
                    detected: true,
                    classified,
                },
            });
        }
        let detect_now = self
            .frame
            .is_multiple_of(u64::from(self.settings.detect_every.max(1)));
        self.frame += 1;
        let mut times = StageTimes::default();
        if !detect_now {
            return Ok(Scheduled {
                faces: self.in_view(),
                times,
                work: FrameWork::default(),
            });
        }
        let started = Instant::now();
        let boxes = pipeline.detect(image);
        times.detect = started.elapsed();
        self.link(boxes);

        let started = Instant::now();
        let mut classified = 0;
        let s = self.settings;
        for f in self.followed.iter_mut().filter(|f| f.missed == 0) {
            if !pipeline.can_estimate(&f.face) {
                continue;
            }
            let side = f.side();
            if f.estimates > 0 {
                let ratio = side / f.checked_side.max(1.0);
                if ratio.max(1.0 / ratio) >= s.recheck_on_resize {
                    // Not the face that was classified, or not as it was: start afresh.
                    f.probs = None;
                    f.estimate = None;
                    f.estimates = 0;
                }
            }
            let due = f.estimates < s.settle_estimates.max(1)
                || (s.recheck_every > 0 && f.since_check >= s.recheck_every);
            if !due {
                continue;
            }
            let Some(probs) = pipeline.classify(image, &f.face)? else {
                continue;
            };
            let sum = match &mut f.probs {
                Some(sum) => {
                    sum.add(&probs);
                    sum
                }
                None => f.probs.insert(probs),
            };
            f.estimate = pipeline.model().map(|m| m.estimate(sum));
            f.estimates += 1;
            f.since_check = 0;
            f.checked_side = side;
            classified += 1;
        }
        times.infer = started.elapsed();
        Ok(Scheduled {
            faces: self.in_view(),
            times,
            work: FrameWork {
                detected: true,
                classified,
            },
        })
    }

    /// The faces found by the last detector frame, at their last boxes.
    fn in_view(&self) -> Vec<FaceResult> {
        self.followed
            .iter()
            .filter(|f| f.missed == 0)
            .map(Followed::result)
            .collect()
    }

    /// Links this detector frame's boxes to the faces followed so far, best overlap first;
    /// an unlinked box is a new face, a face not found is forgotten after [`MAX_MISSED`].
    fn link(&mut self, boxes: Vec<FaceBox>) {
        let mut linked = vec![false; self.followed.len()];
        let mut used = vec![false; boxes.len()];
        for (i, j) in match_by_overlap(self.followed.iter().map(|f| &f.face), &boxes, LINK_IOU) {
            linked[i] = true;
            used[j] = true;
            let f = &mut self.followed[i];
            f.face = boxes[j];
            f.missed = 0;
            f.since_check += 1;
        }
        for (f, linked) in self.followed.iter_mut().zip(&linked) {
            if !linked {
                f.missed += 1;
            }
        }
        self.followed.retain(|f| f.missed <= MAX_MISSED);
        for (b, used) in boxes.into_iter().zip(used) {
            if !used {
                self.followed.push(Followed::new(b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::FaceDetector;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Finds a 32 px face wherever the frame is magenta, and counts its calls.
    struct Counting(Arc<AtomicUsize>);

    impl FaceDetector for Counting {
        fn detect(&mut self, image: &RgbImage) -> Vec<FaceBox> {
            self.0.fetch_add(1, Ordering::Relaxed);
            let x = (0..image.width())
                .find(|&x| image.get_pixel(x, 0).0 == [255, 0, 255])
                .map(|x| x as f32);
            x.map(|x| FaceBox {
                x,
                y: 0.0,
                width: 32.0,
                height: 32.0,
                score: 1.0,
                landmarks: None,
            })
            .into_iter()
            .collect()
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

    /// A 96×32 frame, grey, with a 32 px magenta (age 60, female) square at `x`.
    fn frame(x: Option<u32>) -> RgbImage {
        RgbImage::from_fn(96, 32, |px, _| match x {
            Some(x) if (x..x + 32).contains(&px) => image::Rgb([255, 0, 255]),
            _ => image::Rgb([128, 128, 128]),
        })
    }

    #[test]
    fn the_detector_runs_every_nth_frame_and_a_face_is_classified_until_settled() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (mut pipeline, _dir) = pipeline(calls.clone());
        let mut scheduler = Scheduler::new(ScheduleConfig {
            detect_every: 3,
            settle_estimates: 2,
            recheck_every: 4,
            recheck_on_resize: 1.5,
        });
        let mut work = Vec::new();
        for _ in 0..30 {
            let out = scheduler.process(&mut pipeline, &frame(Some(10))).unwrap();
            assert_eq!(out.faces.len(), 1, "the face is in view on every frame");
            let e = out.faces[0]
                .estimate
                .expect("estimated from the first frame");
            assert!((e.age - 60.0).abs() < 1.5, "{e:?}");
            assert_eq!(e.gender, crate::model::Gender::Female);
            work.push(out.work);
        }
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
        let mut scheduler = Scheduler::new(ScheduleConfig::every_frame());
        assert!(scheduler.is_every_frame());
        for _ in 0..4 {
            let out = scheduler.process(&mut pipeline, &frame(Some(10))).unwrap();
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
        let mut scheduler = Scheduler::new(ScheduleConfig {
            detect_every: 2,
            ..ScheduleConfig::default()
        });
        scheduler.process(&mut pipeline, &frame(Some(10))).unwrap();
        let bridged = scheduler.process(&mut pipeline, &frame(None)).unwrap();
        assert_eq!(bridged.faces.len(), 1, "followed at its last box");
        let gone = scheduler.process(&mut pipeline, &frame(None)).unwrap();
        assert!(gone.work.detected && gone.faces.is_empty());
    }

    #[test]
    fn a_face_much_larger_than_when_classified_is_estimated_afresh() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (mut pipeline, _dir) = pipeline(calls);
        let mut scheduler = Scheduler::new(ScheduleConfig {
            detect_every: 1,
            settle_estimates: 1,
            recheck_every: 0,
            recheck_on_resize: 1.5,
        });
        let first = scheduler.process(&mut pipeline, &frame(Some(10))).unwrap();
        assert_eq!(first.work.classified, 1);
        let settled = scheduler.process(&mut pipeline, &frame(Some(12))).unwrap();
        assert_eq!(settled.work.classified, 0, "settled after one estimate");
        // The same place, a box twice the size (a hand-made followed face stands in for a
        // detector that now sees a larger box).
        scheduler.followed[0].checked_side = 16.0;
        let again = scheduler.process(&mut pipeline, &frame(Some(12))).unwrap();
        assert_eq!(
            again.work.classified, 1,
            "32 px against 16 px when classified"
        );
    }
}
