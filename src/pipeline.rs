//! The pipeline, in explicit stages: frame → faces → crops → predictions → outputs.
//!
//! [`Pipeline`] owns the vision and model stages; [`run`] drives a frame source through it
//! into a display until the source ends, a frame limit is reached or a stop is requested.

use crate::capture::FrameSource;
use crate::config::Config;
use crate::config::DetectorKind;
use crate::display::{Display, Status};
use crate::face::{FaceResult, StageTimes};
use crate::fault_log::{FaultKind, FaultLog};
use crate::model::{AgeGenderModel, Manifest, Role};
use crate::stats::{Clock, StatsRecorder};
use crate::vision::crop::crop_face;
use crate::vision::{BlazeFaceDetector, DetectorSettings, FaceDetector, SeetaDetector};
use crate::Error;
use image::RgbImage;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The vision and model stages, loaded once.
pub struct Pipeline {
    detector: Box<dyn FaceDetector>,
    /// `None` while no age/gender model is installed: faces are still found and shown.
    model: Option<AgeGenderModel>,
    crop_margin: f32,
}

impl Pipeline {
    /// Loads the models listed in `model_dir/manifest.json`, checking their hashes.
    pub fn load(config: &Config, model_dir: &Path) -> Result<Pipeline, Error> {
        let manifest = Manifest::load(model_dir)?;
        let manifest_file = manifest.dir.join(crate::model::manifest::MANIFEST_FILE);
        let d = &config.detector;
        let detector = load_detector(&manifest, d)?;
        let cache = config.model.cache_dir();
        let model = match choose_model(&manifest, config.model.precision, cache.as_deref())? {
            Some(model) => {
                if let Some(trained) = model.info().crop_margin {
                    if (trained - d.crop_margin).abs() > 1e-3 {
                        log::warn!(
                            "detector.crop_margin is {} but the model was trained on crops with margin {trained}; estimates will be worse",
                            d.crop_margin
                        );
                    }
                }
                Some(model)
            }
            None => {
                log::warn!(
                    "{} lists no age/gender model yet: faces are found and boxed, but no age or gender is estimated",
                    manifest_file.display()
                );
                None
            }
        };
        Ok(Pipeline {
            detector,
            model,
            crop_margin: d.crop_margin,
        })
    }

    /// A pipeline from parts already loaded (tests, tools).
    pub fn from_parts(
        detector: Box<dyn FaceDetector>,
        model: Option<AgeGenderModel>,
        crop_margin: f32,
    ) -> Pipeline {
        Pipeline {
            detector,
            model,
            crop_margin,
        }
    }

    /// Whether ages and genders are estimated (an age/gender model is loaded).
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// Runs every stage on one image: faces → crops → predictions, all faces in one batch.
    pub fn process(&mut self, image: &RgbImage) -> Result<(Vec<FaceResult>, StageTimes), Error> {
        let start = Instant::now();
        let faces = self.detector.detect(image);
        let detected = Instant::now();
        let mut times = StageTimes {
            detect: detected - start,
            ..StageTimes::default()
        };
        let Some(model) = &self.model else {
            let results = faces
                .into_iter()
                .map(|face| FaceResult {
                    face,
                    estimate: None,
                })
                .collect();
            return Ok((results, times));
        };
        let size = model.info().input_size;
        let crops: Vec<RgbImage> = faces
            .iter()
            .map(|f| crop_face(image, f, self.crop_margin, size))
            .collect();
        let cropped = Instant::now();
        let estimates = model.predict(&crops)?;
        times.crop = cropped - detected;
        times.infer = cropped.elapsed();
        let results = faces
            .into_iter()
            .zip(estimates)
            .map(|(face, estimate)| FaceResult {
                face,
                estimate: Some(estimate),
            })
            .collect();
        Ok((results, times))
    }
}

/// Loads the detector `config.kind` names, from the manifest's `face_detector` (BlazeFace) or
/// `face_detector_fallback` (SeetaFace) entry. A models folder from before BlazeFace, whose
/// manifest lists no BlazeFace model, falls back to SeetaFace with its default threshold.
/// Median times of single-face inferences of two models, run alternately (after one warm-up
/// run each) so that a burst of load on the machine hits both alike.
/// Loads the age/gender model form `precision` asks for. `Auto` loads both forms the manifest
/// lists, times each and keeps the faster: on x86 tract runs the weight-only int8 model at
/// float speed, while on some ARM cores its integer kernels may win, so it is measured where
/// it runs rather than assumed.
pub fn choose_model(
    manifest: &Manifest,
    precision: crate::config::ModelPrecision,
    cache_dir: Option<&Path>,
) -> Result<Option<AgeGenderModel>, Error> {
    use crate::config::ModelPrecision;
    let int8 = manifest.verified_path(Role::AgeGenderInt8)?;
    let f32 = manifest.verified_path(Role::AgeGenderF32)?;
    let load_one = |path: &Path| -> Result<AgeGenderModel, Error> {
        let started = Instant::now();
        let model = AgeGenderModel::load_cached(path, cache_dir)?;
        log::info!(
            "{}: {} in {:.0} ms",
            path.display(),
            model.loaded_from(),
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(model)
    };
    let load = |path: &Path, why: &str| -> Result<AgeGenderModel, Error> {
        let model = load_one(path)?;
        log::info!(
            "age/gender model: {} ({1}x{1} input; {why})",
            path.display(),
            model.info().input_size
        );
        Ok(model)
    };
    let chosen = match (precision, int8, f32) {
        (_, None, None) => None,
        (ModelPrecision::F32, _, Some(f)) => Some(load(&f, "model.precision = f32")?),
        (ModelPrecision::Int8, Some(i), _) => Some(load(&i, "model.precision = int8")?),
        (ModelPrecision::Auto, Some(i), Some(f)) => {
            let (mi, mf) = (load_one(&i)?, load_one(&f)?);
            let times = crate::model::inspect::time_loaded(&[&mi, &mf], 9)?;
            let (ti, tf) = (times[0], times[1]);
            // int8 is the device's designated form; float replaces it only when clearly
            // faster, not on timing noise (on x86 tract folds the int8 weights to float at
            // load, so the two run at the same speed).
            let (keep, other) = if tf < 0.9 * ti {
                (mf, "int8")
            } else {
                (mi, "f32")
            };
            log::info!(
                "model.precision = auto: int8 {ti:.2} ms, f32 {tf:.2} ms per face here; keeping {}, dropping {other} (float must be 10 % faster to win)",
                if other == "f32" { "int8" } else { "f32" }
            );
            log::info!(
                "age/gender model: {} ({1}x{1} input)",
                keep.path().display(),
                keep.info().input_size
            );
            Some(keep)
        }
        (p, i, f) => {
            // Only one form is installed: use it, and say so if another was asked for.
            let path = i.or(f).expect("one form is present");
            if p != ModelPrecision::Auto {
                log::warn!(
                    "model.precision = {p:?} but the manifest lists only {}; using it",
                    path.display()
                );
            }
            Some(load(&path, "the only form installed")?)
        }
    };
    Ok(chosen)
}

pub fn load_detector(
    manifest: &Manifest,
    config: &crate::config::DetectorConfig,
) -> Result<Box<dyn FaceDetector>, Error> {
    let settings = DetectorSettings {
        min_face_size: config.min_face_size,
        score_threshold: config.score_threshold(),
        max_faces: config.max_faces,
    };
    let manifest_file = manifest.dir.join(crate::model::manifest::MANIFEST_FILE);
    let missing = |role: Role| Error::Model {
        file: manifest_file.clone(),
        problem: format!("lists no {} model; reinstall the models", role.name()),
    };
    let seeta = |settings: DetectorSettings| -> Result<Box<dyn FaceDetector>, Error> {
        let path = manifest
            .verified_path(Role::FaceDetectorFallback)?
            .ok_or_else(|| missing(Role::FaceDetectorFallback))?;
        let detector = SeetaDetector::load(&path, settings)?;
        log::info!(
            "face detector: SeetaFace {} (score threshold {})",
            path.display(),
            settings.score_threshold
        );
        Ok(Box::new(detector))
    };
    match config.kind {
        DetectorKind::Seeta => seeta(settings),
        DetectorKind::Blazeface => match manifest.verified_path(Role::FaceDetector)? {
            Some(path) => {
                let detector = BlazeFaceDetector::load(&path, settings)?;
                log::info!(
                    "face detector: BlazeFace {} (score threshold {})",
                    path.display(),
                    settings.score_threshold
                );
                Ok(Box::new(detector))
            }
            None => {
                log::warn!(
                    "{} lists no face_detector (BlazeFace) model; falling back to SeetaFace with its default threshold",
                    manifest_file.display()
                );
                seeta(DetectorSettings {
                    score_threshold: DetectorKind::Seeta.default_score_threshold(),
                    ..settings
                })
            }
        },
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub frames: u64,
    /// Frames the source could not decode; skipped.
    pub bad_frames: u64,
    /// Times the camera was lost (unplugged or stalled) and had to be reopened.
    pub camera_faults: u64,
    pub faces: u64,
    /// Frames the age/gender model failed on; skipped.
    pub model_failures: u64,
    /// Frames the display failed to show; the run went on counting.
    pub display_failures: u64,
    /// Camera frames replaced by a newer one before the pipeline was ready for them.
    pub stale_frames: u64,
    pub elapsed: Duration,
    pub detect_time: Duration,
    pub infer_time: Duration,
}

impl RunSummary {
    pub fn fps(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.frames as f64 / self.elapsed.as_secs_f64()
        }
    }
}

/// Limits for [`run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Stop after this many processed frames.
    pub max_frames: Option<u64>,
}

/// Drives `source` through `pipeline` into `display` until the source ends, `limits` are
/// reached or `stop` is set (by a signal handler). A bad frame is skipped and counted; a failed
/// display write is logged and counted, and the run goes on, because counting matters more
/// than the picture.
pub fn run(
    source: &mut dyn FrameSource,
    pipeline: &mut Pipeline,
    display: &mut dyn Display,
    mut stats: Option<&mut StatsRecorder>,
    clock: &dyn Clock,
    limits: RunLimits,
    stop: &AtomicBool,
) -> Result<RunSummary, Error> {
    let mut systemd = crate::systemd::Notifier::from_env();
    systemd.ready(&format!("frames from {}", source.describe()));
    let mut summary = RunSummary::default();
    let start = Instant::now();
    let mut fps = FpsMeter::default();
    // The first fault of each kind is logged, repeats are summarised now and then: a camera
    // unplugged for a weekend must not fill the journal.
    let mut faults = FaultLog::default();
    while !stop.load(Ordering::Relaxed) {
        if limits.max_frames.is_some_and(|max| summary.frames >= max) {
            break;
        }
        systemd.alive(Instant::now());
        let frame = match source.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) if e.is_skippable() => {
                let kind = match e {
                    crate::capture::CaptureError::BadFrame { .. } => {
                        summary.bad_frames += 1;
                        FaultKind::BadFrame
                    }
                    _ => {
                        summary.camera_faults += 1;
                        FaultKind::CameraLost
                    }
                };
                if let Some(stats) = stats.as_deref_mut() {
                    stats.on_camera_fault(clock);
                }
                faults.log_fault(kind, &e.to_string(), clock.monotonic());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for kind in [FaultKind::CameraLost, FaultKind::BadFrame] {
            faults.log_ok(kind, clock.monotonic(), || {
                format!(" from {}", source.describe())
            });
        }
        let (faces, times) = match pipeline.process(&frame.image) {
            Ok(done) => done,
            Err(e) => {
                // A model that fails on one frame may work on the next; keep the daemon up.
                summary.model_failures += 1;
                let message = format!("{e}; skipping the frame");
                faults.log_fault(FaultKind::Model, &message, clock.monotonic());
                continue;
            }
        };
        faults.log_ok(FaultKind::Model, clock.monotonic(), String::new);
        summary.frames += 1;
        summary.faces += faces.len() as u64;
        summary.detect_time += times.detect;
        summary.infer_time += times.infer;
        if let Some(stats) = stats.as_deref_mut() {
            stats.on_frame(&faces, clock);
        }
        let status = Status {
            fps: fps.tick(Instant::now()),
            faces: faces.len(),
        };
        // Tried again every frame: a panel that comes back shows the next frame.
        match display.show(&frame, &faces, &status) {
            Ok(()) => faults.log_ok(FaultKind::Display, clock.monotonic(), String::new),
            Err(e) => {
                summary.display_failures += 1;
                let message = format!("{e}; counting goes on, the display is retried every frame");
                faults.log_fault(FaultKind::Display, &message, clock.monotonic());
            }
        }
        log::debug!(
            "frame {} ({}): {} faces",
            frame.seq,
            frame.origin,
            faces.len()
        );
    }
    systemd.stopping();
    summary.stale_frames = source.dropped_frames();
    if let Some(stats) = stats {
        stats.finish(clock);
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Frames per second, smoothed over recent frames.
#[derive(Debug, Default)]
struct FpsMeter {
    last: Option<Instant>,
    fps: Option<f32>,
}

impl FpsMeter {
    fn tick(&mut self, now: Instant) -> Option<f32> {
        if let Some(last) = self.last {
            let dt = now.duration_since(last).as_secs_f32();
            if dt > 0.0 {
                let instant = 1.0 / dt;
                self.fps = Some(match self.fps {
                    Some(fps) => 0.9 * fps + 0.1 * instant,
                    None => instant,
                });
            }
        }
        self.last = Some(now);
        self.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureError, Frame};
    use crate::model::AgeGender;
    use crate::stats::SystemClock;
    use crate::vision::FaceBox;

    /// Finds one fixed "face" in every frame whose first pixel is bright.
    struct BrightFrameDetector;

    impl FaceDetector for BrightFrameDetector {
        fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
            if frame.get_pixel(0, 0).0[0] > 128 {
                vec![FaceBox {
                    x: 1.0,
                    y: 1.0,
                    width: 4.0,
                    height: 4.0,
                    score: 1.0,
                }]
            } else {
                vec![]
            }
        }
    }

    /// Delivers scripted frames and faults.
    struct Scripted(Vec<Result<u8, CaptureError>>, u64);

    impl FrameSource for Scripted {
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            if self.0.is_empty() {
                return Ok(None);
            }
            let value = self.0.remove(0)?;
            self.1 += 1;
            Ok(Some(Frame {
                image: RgbImage::from_pixel(8, 8, image::Rgb([value, 0, 0])),
                seq: self.1 - 1,
                captured: Instant::now(),
                origin: "script".into(),
            }))
        }
        fn describe(&self) -> String {
            "script".into()
        }
    }

    struct FailingDisplay(u64);

    impl Display for FailingDisplay {
        fn show(&mut self, _: &Frame, _: &[FaceResult], _: &Status) -> Result<(), Error> {
            self.0 += 1;
            Err(Error::Output {
                path: "/dev/fb9".into(),
                problem: "write failed".into(),
            })
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }

    fn bad(origin: &str) -> Result<u8, CaptureError> {
        Err(CaptureError::BadFrame {
            origin: origin.into(),
            reason: "truncated".into(),
        })
    }

    #[test]
    fn counts_frames_faces_and_skips_bad_frames() {
        let lost = || {
            Err(CaptureError::Disconnected {
                origin: "/dev/video0".into(),
                reason: "ENODEV".into(),
            })
        };
        let mut source = Scripted(
            vec![Ok(200), bad("a"), Ok(10), lost(), lost(), Ok(255), bad("b")],
            0,
        );
        let mut pipeline = Pipeline::from_parts(Box::new(BrightFrameDetector), None, 0.25);
        let mut display = FailingDisplay(0);
        let stop = AtomicBool::new(false);
        let summary = run(
            &mut source,
            &mut pipeline,
            &mut display,
            None,
            &SystemClock,
            RunLimits::default(),
            &stop,
        )
        .unwrap();
        assert_eq!(
            (summary.frames, summary.bad_frames, summary.faces),
            (3, 2, 2)
        );
        assert_eq!(
            summary.camera_faults, 2,
            "a lost camera is waited for, not fatal"
        );
        assert_eq!(
            summary.display_failures, 3,
            "the display is retried every frame"
        );
        assert_eq!(display.0, 3);
    }

    #[test]
    fn stops_at_the_frame_limit_and_on_request() {
        let frames = || Scripted((0..10).map(|_| Ok(200)).collect(), 0);
        let mut pipeline = Pipeline::from_parts(Box::new(BrightFrameDetector), None, 0.25);
        let stop = AtomicBool::new(false);
        let limits = RunLimits {
            max_frames: Some(4),
        };
        let summary = run(
            &mut frames(),
            &mut pipeline,
            &mut crate::display::NoDisplay,
            None,
            &SystemClock,
            limits,
            &stop,
        )
        .unwrap();
        assert_eq!(summary.frames, 4);
        stop.store(true, Ordering::Relaxed);
        let summary = run(
            &mut frames(),
            &mut pipeline,
            &mut crate::display::NoDisplay,
            None,
            &SystemClock,
            RunLimits::default(),
            &stop,
        )
        .unwrap();
        assert_eq!(summary.frames, 0);
    }

    /// A camera at 1 kHz in front of a display that takes 5 ms per frame.
    struct FastCamera(u64);

    impl FrameSource for FastCamera {
        fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
            std::thread::sleep(Duration::from_millis(1));
            self.0 += 1;
            Ok(Some(Frame {
                image: RgbImage::from_pixel(8, 8, image::Rgb([200, 0, 0])),
                seq: self.0,
                captured: Instant::now(),
                origin: "fast".into(),
            }))
        }
        fn describe(&self) -> String {
            "fast".into()
        }
    }

    struct SlowDisplay(Vec<u64>);

    impl Display for SlowDisplay {
        fn show(&mut self, frame: &Frame, _: &[FaceResult], _: &Status) -> Result<(), Error> {
            std::thread::sleep(Duration::from_millis(5));
            self.0.push(frame.seq);
            Ok(())
        }
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    #[test]
    fn a_slow_pipeline_takes_the_newest_camera_frame_and_reports_the_dropped_ones() {
        let mut source = crate::capture::NewestFrame::start(FastCamera(0)).unwrap();
        let mut pipeline = Pipeline::from_parts(Box::new(BrightFrameDetector), None, 0.25);
        let mut display = SlowDisplay(Vec::new());
        let stop = AtomicBool::new(false);
        let limits = RunLimits {
            max_frames: Some(20),
        };
        let summary = run(
            &mut source,
            &mut pipeline,
            &mut display,
            None,
            &SystemClock,
            limits,
            &stop,
        )
        .unwrap();
        assert_eq!(summary.frames, 20);
        let shown = &display.0;
        assert!(shown.windows(2).all(|w| w[0] < w[1]), "{shown:?}");
        // The camera numbers its frames from 1: all up to the last one shown were either
        // shown or dropped for a newer one (a few more may drop after the run stopped).
        let last = *shown.last().unwrap();
        assert!(summary.stale_frames > 0, "{summary:?}");
        assert!(
            summary.stale_frames >= last - 20,
            "{} dropped, but the last of 20 shown was frame {last}: {shown:?}",
            summary.stale_frames
        );
    }

    #[test]
    fn unavailable_source_ends_the_run_with_its_error() {
        let mut source = Scripted(
            vec![
                Ok(1),
                Err(CaptureError::Unavailable {
                    origin: "/dev/video0".into(),
                    reason: "gone".into(),
                }),
            ],
            0,
        );
        let mut pipeline = Pipeline::from_parts(Box::new(BrightFrameDetector), None, 0.25);
        let stop = AtomicBool::new(false);
        let err = run(
            &mut source,
            &mut pipeline,
            &mut crate::display::NoDisplay,
            None,
            &SystemClock,
            RunLimits::default(),
            &stop,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/dev/video0"));
    }

    /// Two fixed faces: one on the left half of the frame, one on the right.
    struct TwoFaces;

    impl FaceDetector for TwoFaces {
        fn detect(&mut self, _: &RgbImage) -> Vec<FaceBox> {
            let face = |x| FaceBox {
                x,
                y: 4.0,
                width: 24.0,
                height: 24.0,
                score: 1.0,
            };
            vec![face(4.0), face(36.0)]
        }
    }

    #[test]
    fn each_face_is_cropped_and_estimated_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.onnx");
        std::fs::write(
            &path,
            crate::model::onnx_build::tests_support::tiny_age_gender_onnx(16),
        )
        .unwrap();
        let model = AgeGenderModel::load(&path).unwrap();
        let mut pipeline = Pipeline::from_parts(Box::new(TwoFaces), Some(model), 0.0);
        // Left half magenta (red + blue: age 60, female), right half green (age 20, male).
        let frame = RgbImage::from_fn(64, 32, |x, _| {
            if x < 32 {
                image::Rgb([255, 0, 255])
            } else {
                image::Rgb([0, 255, 0])
            }
        });
        let (results, _) = pipeline.process(&frame).unwrap();
        let estimates: Vec<AgeGender> = results.iter().map(|r| r.estimate.unwrap()).collect();
        assert!((estimates[0].age - 60.0).abs() < 1.5, "{estimates:?}");
        assert_eq!(estimates[0].gender, crate::model::Gender::Female);
        assert!((estimates[1].age - 20.0).abs() < 1.5, "{estimates:?}");
        assert_eq!(estimates[1].gender, crate::model::Gender::Male);
    }

    #[test]
    fn fps_meter_smooths() {
        let mut meter = FpsMeter::default();
        let t0 = Instant::now();
        assert_eq!(meter.tick(t0), None);
        let fps = meter.tick(t0 + Duration::from_millis(100)).unwrap();
        assert!((fps - 10.0).abs() < 0.01);
        let fps = meter.tick(t0 + Duration::from_millis(150)).unwrap();
        assert!((fps - 11.0).abs() < 0.01, "{fps}");
    }
}
