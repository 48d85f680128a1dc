//! The composition root: the one place a [`Config`] becomes running parts.
//!
//! [`Daemon::from_config`] opens the frame source, loads the pipeline (manifest → verified
//! files → loaded models), opens the display, the statistics recorder and the fleet push, all
//! from one configuration; [`Daemon::run`] drives frames through them. `run`, `run --demo`
//! (a configuration too: [`demo_config`]), `selftest`, `bench`, `stats export`, the tests and
//! the examples build their parts through the functions here, so each setting is read in one
//! place with one default.
//!
//! Whoever supervises the loop (systemd, a test) watches it through a [`RunObserver`].

use crate::capture::{demo_frames, CaptureError, FrameSource, StillImages};
use crate::config::{CameraSource, Config, DisplayTarget};
use crate::display::{Display, NoDisplay, PngSnapshots, Status};
use crate::fault_log::{FaultKind, FaultLog};
use crate::pipeline::Pipeline;
use crate::push::{PushSettings, Pusher};
use crate::stats::privacy::PrivacySettings;
use crate::stats::{Clock, StatsRecorder, StatsSettings};
use crate::Error;
use anyhow::Context;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Frames per demo still (`camera.source = "demo"`): a second of a person in view at 30 fps,
/// so the tracker sees visits rather than single-frame flickers (with the default schedule the
/// detector runs on 6 of them, over `stats.min_track_frames`).
pub const DEMO_FRAMES_PER_STILL: u32 = 30;

/// The running parts of the daemon. `'a` lets a test or tool lend it a source or display it
/// keeps (`Box::new(&mut display)`); [`Daemon::from_config`] makes a `Daemon<'static>`.
pub struct Daemon<'a> {
    pub source: Box<dyn FrameSource + 'a>,
    /// The stages, the schedule and the tracker (`[schedule]`, `[stats]` linking rules).
    pub pipeline: Pipeline,
    pub display: Box<dyn Display + 'a>,
    /// `None` runs without statistics (tests of the loop alone).
    pub stats: Option<StatsRecorder>,
    /// The fleet push thread, when `push.enabled`.
    pub push: Option<Pusher>,
}

impl Daemon<'static> {
    /// Opens every part `config` describes, with the models from `model_dir`.
    pub fn from_config(config: &Config, model_dir: &Path) -> anyhow::Result<Daemon<'static>> {
        let pipeline = Pipeline::load(config, model_dir)?;
        let source = open_source(config)?;
        let display = open_display(config)?;
        log::info!(
            "frames from {}; output to {}",
            source.describe(),
            display.describe()
        );
        let mut stats = open_stats(config);
        let push = start_push(config)?;
        if let Some(push) = &push {
            let waker = push.waker();
            stats.notify_on_save(move || waker.wake());
        }
        Ok(Daemon {
            source,
            pipeline,
            display,
            stats: Some(stats),
            push,
        })
    }
}

impl<'a> Daemon<'a> {
    /// A daemon from parts already made (tests of the loop, tools); it runs every stage on
    /// every frame until [`Daemon::with_schedule`] says otherwise.
    pub fn from_parts(
        source: Box<dyn FrameSource + 'a>,
        pipeline: Pipeline,
        display: Box<dyn Display + 'a>,
        stats: Option<StatsRecorder>,
    ) -> Daemon<'a> {
        let mut pipeline = pipeline;
        pipeline.set_schedule(crate::config::ScheduleConfig::every_frame());
        Daemon {
            source,
            pipeline,
            display,
            stats,
            push: None,
        }
    }

    /// Runs the detector and the network as `schedule` says.
    pub fn with_schedule(mut self, schedule: crate::config::ScheduleConfig) -> Daemon<'a> {
        self.pipeline.set_schedule(schedule);
        self
    }

    /// Drives frames through the pipeline into the display and the statistics until the
    /// source ends, `limits` are reached or `stop` is set (by a signal handler). A bad frame
    /// is skipped and counted; a failed display write is logged and counted, and the run goes
    /// on, because counting matters more than the picture.
    pub fn run(
        &mut self,
        clock: &dyn Clock,
        limits: RunLimits,
        stop: &AtomicBool,
        observer: &mut dyn RunObserver,
    ) -> Result<RunSummary, Error> {
        observer.ready(&format!("frames from {}", self.source.describe()));
        let mut summary = RunSummary::default();
        let start = Instant::now();
        let mut fps = FpsMeter::default();
        // The first fault of each kind is logged, repeats are summarised now and then: a
        // camera unplugged for a weekend must not fill the journal.
        let mut faults = FaultLog::default();
        while !stop.load(Ordering::Relaxed) {
            if limits.max_frames.is_some_and(|max| summary.frames >= max) {
                break;
            }
            observer.alive(Instant::now());
            let frame = match self.source.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) if e.is_skippable() => {
                    let kind = match e {
                        CaptureError::BadFrame { .. } => {
                            summary.bad_frames += 1;
                            FaultKind::BadFrame
                        }
                        _ => {
                            summary.camera_faults += 1;
                            FaultKind::CameraLost
                        }
                    };
                    if let Some(stats) = self.stats.as_mut() {
                        let visits = self.pipeline.take_visits(clock.monotonic());
                        stats.on_camera_fault(visits, clock);
                    }
                    faults.log_fault(kind, &e.to_string(), clock.monotonic());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for kind in [FaultKind::CameraLost, FaultKind::BadFrame] {
                faults.log_ok(kind, clock.monotonic(), || {
                    format!(" from {}", self.source.describe())
                });
            }
            let (faces, times, work) = match self.pipeline.frame(&frame.image, clock.monotonic()) {
                Ok(done) => (done.faces, done.times, done.work),
                Err(e) => {
                    // A model that fails on one frame may work on the next; keep running.
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
            summary.infer_time += times.infer + times.crop;
            summary.detector_frames += u64::from(work.detected);
            summary.classified_faces += work.classified as u64;
            if let Some(stats) = self.stats.as_mut() {
                stats.on_frame(self.pipeline.take_visits(clock.monotonic()), clock);
            }
            let status = Status {
                fps: fps.tick(Instant::now()),
                faces: faces.len(),
            };
            // Tried again every frame: a panel that comes back shows the next frame.
            match self.display.show(&frame, &faces, &status) {
                Ok(()) => faults.log_ok(FaultKind::Display, clock.monotonic(), String::new),
                Err(e) => {
                    summary.display_failures += 1;
                    let message =
                        format!("{e}; counting goes on, the display is retried every frame");
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
        observer.stopping();
        summary.stale_frames = self.source.dropped_frames();
        if let Some(stats) = self.stats.as_mut() {
            stats.finish(self.pipeline.finish_visits(), clock);
        }
        summary.elapsed = start.elapsed();
        Ok(summary)
    }

    /// Stops the push thread (unsent intervals stay in the store and go out at the next
    /// start). Called whatever the run's outcome.
    pub fn shutdown(&mut self) {
        if let Some(push) = self.push.take() {
            push.stop();
        }
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Watches the run loop: told once when frames start to flow, at every frame or camera
/// retry, and once at the end. systemd's notifier is one; tests pass [`NoObserver`].
pub trait RunObserver {
    fn ready(&mut self, _status: &str) {}
    fn alive(&mut self, _now: Instant) {}
    fn stopping(&mut self) {}
}

/// Watches nothing.
pub struct NoObserver;

impl RunObserver for NoObserver {}

impl RunObserver for crate::systemd::Notifier {
    fn ready(&mut self, status: &str) {
        crate::systemd::Notifier::ready(self, status);
    }
    fn alive(&mut self, now: Instant) {
        crate::systemd::Notifier::alive(self, now);
    }
    fn stopping(&mut self) {
        crate::systemd::Notifier::stopping(self);
    }
}

/// The configuration `run --demo` runs: `config` with the built-in demo frames as camera,
/// annotated PNGs and the statistics in `out`, every visit published (k = 1, so the handful of
/// demo faces show up in the summary) and no fleet push (made-up statistics must not reach a
/// fleet). Every part, the export included, sees this one configuration.
pub fn demo_config(config: &Config, out: &Path) -> Config {
    let mut demo = config.clone();
    demo.camera.source = CameraSource::Demo;
    demo.camera.repeat = false;
    demo.display.target = DisplayTarget::Png;
    demo.display.png_dir = out.to_path_buf();
    demo.display.png_every = DEMO_FRAMES_PER_STILL;
    demo.stats.dir = out.to_path_buf();
    demo.stats.k_anonymity = 1;
    if demo.push.enabled {
        log::info!("--demo: the fleet push ([push]) is not started");
        demo.push.enabled = false;
    }
    demo
}

/// The frame source `camera` describes.
pub fn open_source(config: &Config) -> anyhow::Result<Box<dyn FrameSource>> {
    let camera = &config.camera;
    match camera.source {
        CameraSource::Demo => Ok(Box::new(
            demo_frames(camera.repeat).repeat_each(DEMO_FRAMES_PER_STILL),
        )),
        // Images from a folder come at camera.fps, as a camera's frames would.
        CameraSource::Folder => Ok(Box::new(crate::capture::Paced::new(
            StillImages::from_folder(&camera.folder, camera.repeat)?,
            camera.fps,
        ))),
        #[cfg(feature = "device")]
        CameraSource::V4l2 => {
            let camera =
                crate::capture::v4l2::V4l2Camera::open(crate::capture::v4l2::CameraRequest {
                    device: camera.device.clone(),
                    width: camera.width,
                    height: camera.height,
                    fps: camera.fps,
                })?;
            // The camera runs at its own rate on a capture thread and the daemon always takes
            // the newest frame, so a slow model never shows or counts seconds-old pictures.
            Ok(Box::new(
                crate::capture::NewestFrame::start(camera)
                    .context("cannot start the camera capture thread")?,
            ))
        }
        #[cfg(not(feature = "device"))]
        CameraSource::V4l2 => anyhow::bail!(
            "camera.source = \"v4l2\" ({}) needs a build with the `device` feature \
             (cargo build --release --features device); this build can use camera.source = \"folder\" or \"demo\"",
            camera.device.display()
        ),
    }
}

/// The display `display.target` names.
pub fn open_display(config: &Config) -> anyhow::Result<Box<dyn Display>> {
    let display = &config.display;
    Ok(match display.target {
        DisplayTarget::None => Box::new(NoDisplay),
        DisplayTarget::Png => Box::new(PngSnapshots::create(&display.png_dir, display.png_every)?),
        DisplayTarget::Framebuffer => Box::new(crate::display::framebuffer::Framebuffer::open(
            &display.framebuffer,
        )?),
        #[cfg(feature = "spi-lcd")]
        DisplayTarget::SpiLcd => Box::new(crate::display::spi_lcd::open(&display.spi_lcd)?),
        #[cfg(not(feature = "spi-lcd"))]
        DisplayTarget::SpiLcd => anyhow::bail!(
            "display.target = \"spi_lcd\" ({}) needs a build with the `device` (or `spi-lcd`) feature \
             (cargo build --release --features device); this build can use \"framebuffer\", \"png\" or \"none\"",
            display.spi_lcd.device.display()
        ),
    })
}

/// The statistics recorder of `[stats]` (its store is opened now, or retried while it cannot
/// be).
pub fn open_stats(config: &Config) -> StatsRecorder {
    let settings = StatsSettings::from_config(&config.stats);
    log::info!("statistics: {}", settings.database.display());
    StatsRecorder::new(settings, crate::stats::SystemClock.wall())
}

/// What exports and the push publish under (`stats.k_anonymity`, `stats.laplace_epsilon`).
pub fn privacy(config: &Config) -> PrivacySettings {
    PrivacySettings::from_config(&config.stats)
}

/// Starts the fleet push when `push.enabled`.
pub fn start_push(config: &Config) -> anyhow::Result<Option<Pusher>> {
    let Some(settings) = PushSettings::from_config(config)? else {
        return Ok(None);
    };
    Ok(Some(
        Pusher::start(settings).context("cannot start the fleet push thread")?,
    ))
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub frames: u64,
    /// Frames taken from the source that could not be decoded; skipped.
    pub bad_frames: u64,
    /// Times the camera was lost (unplugged or stalled) and had to be reopened.
    pub camera_faults: u64,
    pub faces: u64,
    /// Frames the age/gender model failed on; skipped.
    pub model_failures: u64,
    /// Frames the display failed to show; the run went on counting.
    pub display_failures: u64,
    /// Camera frames replaced by a newer one before the pipeline was ready for them; never
    /// decoded, so a corrupt one among them is counted here, not in `bad_frames`.
    pub stale_frames: u64,
    /// Frames the face detector ran on (`schedule.detect_every`).
    pub detector_frames: u64,
    /// Faces the age/gender network ran on (`schedule.settle_estimates`, `recheck_every`).
    pub classified_faces: u64,
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

/// Limits for [`Daemon::run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    /// Stop after this many processed frames.
    pub max_frames: Option<u64>,
}

/// Frames per second of wall time, over the last [`FpsMeter::WINDOW`] frames: how many frames
/// the loop got through, not how fast one frame was (a followed frame takes microseconds,
/// a detector frame tens of milliseconds; the display shows their rate together).
#[derive(Default)]
struct FpsMeter {
    ticks: std::collections::VecDeque<Instant>,
}

impl FpsMeter {
    const WINDOW: usize = 60;

    fn tick(&mut self, now: Instant) -> Option<f32> {
        if self.ticks.len() == Self::WINDOW {
            self.ticks.pop_front();
        }
        self.ticks.push_back(now);
        let first = *self.ticks.front()?;
        let span = now.saturating_duration_since(first).as_secs_f32();
        (self.ticks.len() > 1 && span > 0.0).then(|| (self.ticks.len() - 1) as f32 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureError, Frame};
    use crate::face::FaceResult;
    use crate::stats::SystemClock;
    use crate::vision::{FaceBox, FaceDetector};
    use image::RgbImage;

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
                    landmarks: None,
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

    /// Fails every write and counts the attempts.
    struct FailingDisplay(std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl Display for FailingDisplay {
        fn show(&mut self, _: &Frame, _: &[FaceResult], _: &Status) -> Result<(), Error> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(Error::Output {
                path: "/dev/fb9".into(),
                problem: "write failed".into(),
            })
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }

    /// The loop alone: the bright-frame detector, no model, no statistics.
    fn daemon(source: Box<dyn FrameSource>, display: Box<dyn Display>) -> Daemon<'static> {
        let pipeline = Pipeline::from_parts(Box::new(BrightFrameDetector), None, 0.25);
        Daemon::from_parts(source, pipeline, display, None)
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
        let source = Scripted(
            vec![Ok(200), bad("a"), Ok(10), lost(), lost(), Ok(255), bad("b")],
            0,
        );
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let display = FailingDisplay(attempts.clone());
        let stop = AtomicBool::new(false);
        let summary = daemon(Box::new(source), Box::new(display))
            .run(&SystemClock, RunLimits::default(), &stop, &mut NoObserver)
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
        assert_eq!(attempts.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn stops_at_the_frame_limit_and_on_request() {
        let frames = || Scripted((0..10).map(|_| Ok(200)).collect(), 0);
        let stop = AtomicBool::new(false);
        let limits = RunLimits {
            max_frames: Some(4),
        };
        let summary = daemon(Box::new(frames()), Box::new(NoDisplay))
            .run(&SystemClock, limits, &stop, &mut NoObserver)
            .unwrap();
        assert_eq!(summary.frames, 4);
        stop.store(true, Ordering::Relaxed);
        let summary = daemon(Box::new(frames()), Box::new(NoDisplay))
            .run(&SystemClock, RunLimits::default(), &stop, &mut NoObserver)
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

    struct SlowDisplay(std::sync::Arc<std::sync::Mutex<Vec<u64>>>);

    impl Display for SlowDisplay {
        fn show(&mut self, frame: &Frame, _: &[FaceResult], _: &Status) -> Result<(), Error> {
            std::thread::sleep(Duration::from_millis(5));
            self.0.lock().unwrap().push(frame.seq);
            Ok(())
        }
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    #[test]
    fn a_slow_pipeline_takes_the_newest_camera_frame_and_reports_the_dropped_ones() {
        let source = crate::capture::NewestFrame::start(FastCamera(0)).unwrap();
        let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let display = SlowDisplay(shown.clone());
        let stop = AtomicBool::new(false);
        let limits = RunLimits {
            max_frames: Some(20),
        };
        let summary = daemon(Box::new(source), Box::new(display))
            .run(&SystemClock, limits, &stop, &mut NoObserver)
            .unwrap();
        assert_eq!(summary.frames, 20);
        let shown = shown.lock().unwrap().clone();
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
        let source = Scripted(
            vec![
                Ok(1),
                Err(CaptureError::Unavailable {
                    origin: "/dev/video0".into(),
                    reason: "gone".into(),
                }),
            ],
            0,
        );
        let stop = AtomicBool::new(false);
        let err = daemon(Box::new(source), Box::new(NoDisplay))
            .run(&SystemClock, RunLimits::default(), &stop, &mut NoObserver)
            .unwrap_err();
        assert!(err.to_string().contains("/dev/video0"));
    }

    #[test]
    fn fps_meter_counts_frames_per_second_of_wall_time() {
        let mut meter = FpsMeter::default();
        let t0 = Instant::now();
        assert_eq!(meter.tick(t0), None);
        let fps = meter.tick(t0 + Duration::from_millis(100)).unwrap();
        assert!((fps - 10.0).abs() < 0.01, "{fps}");
        // A detector frame (50 ms) then four followed frames (20 µs each), over and over: five
        // frames per 50.08 ms of wall time, about 100 fps (107 over the last 60 frames), never
        // the followed frames' 50,000.
        let mut meter = FpsMeter::default();
        let mut t = t0;
        let mut fps = None;
        for i in 0..100 {
            t += if i % 5 == 0 {
                Duration::from_millis(50)
            } else {
                Duration::from_micros(20)
            };
            fps = meter.tick(t);
        }
        let fps = fps.unwrap();
        assert!((95.0..=110.0).contains(&fps), "{fps}");
    }
}
