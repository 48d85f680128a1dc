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

use crate::capture::{
    demo_frames, CaptureError, Frame, FramePixels, FrameSource, Picture, StillImages,
};
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
            // Kept as the camera delivered it: each stage below decodes it only as large as
            // it reads it (`capture::pixels`).
            let raw = self.source.next_raw().and_then(|raw| match raw {
                Some(raw) => {
                    let pixels = FramePixels::new(raw.pixels, &raw.origin)?;
                    Ok(Some((pixels, raw.seq, raw.captured, raw.origin)))
                }
                None => Ok(None),
            });
            let (mut pixels, seq, captured, origin) = match raw {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) if e.is_skippable() => {
                    self.on_capture_fault(&e, &mut summary, &mut faults, clock);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let size = pixels.size();
            let shown = self.display.reads(size, seq);
            if let Err(e) = self.pipeline.decode_shared(&mut pixels, shown) {
                self.on_capture_fault(&e, &mut summary, &mut faults, clock);
                continue;
            }
            let done = self.pipeline.frame_of(&mut pixels, clock.monotonic());
            let (faces, times, work) = match done {
                Ok(done) => {
                    for kind in [FaultKind::CameraLost, FaultKind::BadFrame] {
                        faults.log_ok(kind, clock.monotonic(), || {
                            format!(" from {}", self.source.describe())
                        });
                    }
                    (done.faces, done.times, done.work)
                }
                // The frame did not decode at the size a stage asked for.
                Err(Error::Capture(e)) if e.is_skippable() => {
                    self.on_capture_fault(&e, &mut summary, &mut faults, clock);
                    continue;
                }
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
            let Some(need) = shown else {
                summary.decodes.add(&pixels.decoded());
                continue;
            };
            let image = pixels.take_at_least(need);
            summary.decodes.add(&pixels.decoded());
            let image = match image {
                Ok(image) => image,
                Err(e) => {
                    self.on_capture_fault(&e, &mut summary, &mut faults, clock);
                    continue;
                }
            };
            // The boxes in the picture's own pixels when it was decoded smaller.
            let faces = crate::display::faces_in_picture(faces, size, image.dimensions());
            let frame = Frame {
                image,
                seq,
                captured,
                origin,
            };
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

    /// A frame that could not be had or decoded: counted, logged (the first of a kind, then
    /// summaries), and the visits of a lost camera ended.
    fn on_capture_fault(
        &mut self,
        e: &CaptureError,
        summary: &mut RunSummary,
        faults: &mut FaultLog,
        clock: &dyn Clock,
    ) {
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
    /// How large the frames were decoded: frames decoded whole, at most at 1/2, 1/4 or 1/8 of
    /// their size, and not at all (`capture::pixels`).
    pub decodes: DecodeCounts,
    pub elapsed: Duration,
    pub detect_time: Duration,
    pub infer_time: Duration,
}

/// How many frames were decoded at which size (a frame decoded at two sizes counts at the
/// larger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeCounts {
    pub whole: u64,
    pub half: u64,
    pub quarter: u64,
    pub eighth: u64,
    pub none: u64,
}

impl DecodeCounts {
    /// Counts a frame whose pictures were decoded at these denominators (1 = whole).
    pub fn add(&mut self, denominators: &[u32]) {
        match denominators.iter().min() {
            None => self.none += 1,
            Some(1) => self.whole += 1,
            Some(2) => self.half += 1,
            Some(4) => self.quarter += 1,
            Some(_) => self.eighth += 1,
        }
    }
}

impl std::fmt::Display for DecodeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} whole, {} at 1/2, {} at 1/4, {} at 1/8, {} not at all",
            self.whole, self.half, self.quarter, self.eighth, self.none
        )
    }
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

    /// Runs `daemon` until its source ends.
    fn run_to_the_end(mut daemon: Daemon<'_>) -> RunSummary {
        let stop = AtomicBool::new(false);
        daemon
            .run(&SystemClock, RunLimits::default(), &stop, &mut NoObserver)
            .unwrap()
    }

    /// Reads 160×120 pictures (as the short-range BlazeFace does 640×480 frames), records the
    /// sizes it was given and finds one face at (10, 10), 20 px wide, in the picture's pixels.
    struct SmallReader(std::sync::Arc<std::sync::Mutex<Vec<(u32, u32)>>>);

    impl FaceDetector for SmallReader {
        fn detect(&mut self, picture: &RgbImage) -> Vec<FaceBox> {
            self.0.lock().unwrap().push(picture.dimensions());
            vec![FaceBox::new(10.0, 10.0, 20.0, 20.0, 1.0)]
        }
        fn reads(&self, _: (u32, u32)) -> (u32, u32) {
            (160, 120)
        }
    }

    /// What the panel below was handed: each picture's size and its first face.
    type Shown = std::sync::Arc<std::sync::Mutex<Vec<((u32, u32), FaceBox)>>>;

    /// A 320×240 panel that records the pictures and faces it was handed.
    struct Panel(Shown);

    impl Display for Panel {
        fn show(&mut self, frame: &Frame, faces: &[FaceResult], _: &Status) -> Result<(), Error> {
            self.0
                .lock()
                .unwrap()
                .push((frame.image.dimensions(), faces[0].face));
            Ok(())
        }
        fn reads(&self, frame: (u32, u32), _: u64) -> Option<(u32, u32)> {
            Some(crate::display::fitted_size(frame, (320, 240)))
        }
        fn describe(&self) -> String {
            "panel".into()
        }
    }

    #[test]
    fn camera_frames_are_decoded_only_as_large_as_the_detector_and_the_display_read_them() {
        use std::sync::{Arc, Mutex};
        let schedule = crate::config::ScheduleConfig::default(); // detector on every 5th frame
        let run = |display: Box<dyn Display>| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let pipeline = Pipeline::from_parts(Box::new(SmallReader(seen.clone())), None, 0.25);
            // The demo frames come as a camera's 640×480 MJPEG buffers: 3 stills × 10 frames.
            let source = demo_frames(false).repeat_each(10);
            let daemon = Daemon::from_parts(Box::new(source), pipeline, display, None);
            let summary = run_to_the_end(daemon.with_schedule(schedule));
            let seen = seen.lock().unwrap().clone();
            (summary, seen)
        };
        // Headless: the detector's 6 frames at 1/4 (160×120), the other 24 never decoded.
        let (summary, seen) = run(Box::new(NoDisplay));
        assert_eq!(summary.frames, 30);
        assert_eq!(seen, vec![(160, 120); 6]);
        let quarter_only = DecodeCounts {
            quarter: 6,
            none: 24,
            ..DecodeCounts::default()
        };
        assert_eq!(summary.decodes, quarter_only);
        // A 320×240 panel: every frame at 1/2 for the panel, and that picture also serves the
        // detector on its 6 frames (one decode, not a 1/4 and a 1/2), with the face, found at
        // (20, 20) in frame pixels, handed over in the panel's.
        let shown = Arc::new(Mutex::new(Vec::new()));
        let (summary, seen) = run(Box::new(Panel(shown.clone())));
        assert_eq!(seen, vec![(320, 240); 6]);
        assert_eq!(
            summary.decodes,
            DecodeCounts {
                half: 30,
                ..DecodeCounts::default()
            }
        );
        let shown = shown.lock().unwrap();
        assert_eq!(shown.len(), 30);
        for (size, face) in shown.iter() {
            assert_eq!(*size, (320, 240));
            assert_eq!((face.x, face.y, face.width), (10.0, 10.0, 20.0));
        }
    }

    #[test]
    fn a_frame_that_fails_to_decode_at_the_detectors_size_is_a_bad_frame_not_a_model_failure() {
        struct CutCamera(u64);
        impl FrameSource for CutCamera {
            fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
                unreachable!("the daemon takes raw frames")
            }
            fn next_raw(&mut self) -> Result<Option<crate::capture::RawFrame>, CaptureError> {
                if self.0 == 3 {
                    return Ok(None);
                }
                self.0 += 1;
                // Half of the scan cut out, the end-of-image marker kept: the header reads,
                // the decode fails.
                let jpeg = crate::capture::stills::DEMO_FRAMES[0].1;
                let mut cut = jpeg[..jpeg.len() / 2].to_vec();
                cut.extend_from_slice(&[0xFF, 0xD9]);
                Ok(Some(crate::capture::RawFrame {
                    pixels: crate::capture::RawPixels::Buffer {
                        bytes: cut,
                        format: crate::capture::convert::PixelFormat::Mjpeg,
                        width: 640,
                        height: 480,
                    },
                    seq: self.0,
                    captured: Instant::now(),
                    origin: "/dev/video0".into(),
                }))
            }
            fn describe(&self) -> String {
                "cut".into()
            }
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let pipeline = Pipeline::from_parts(Box::new(SmallReader(seen)), None, 0.25);
        let daemon =
            Daemon::from_parts(Box::new(CutCamera(0)), pipeline, Box::new(NoDisplay), None);
        let summary = run_to_the_end(daemon);
        assert_eq!(
            (summary.frames, summary.bad_frames, summary.model_failures),
            (0, 3, 0)
        );
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
