//! Soak: a simulated day of frames through the daemon's run loop, time compressed by a manual
//! clock. Resident memory must stay flat once warmed up and the stored counts must be exact.
//!
//! `a_simulated_day_keeps_memory_flat_and_counts_exact` runs in the default suite (a few
//! seconds): 86,400 frames at one per simulated second through the real run loop, tracker,
//! aggregator and SQLite store, with a synthetic detector so every visit is known in advance.
//! `real_models_keep_memory_flat_and_repeat_exactly` (ignored: minutes) runs the shipped
//! BlazeFace and int8 age/gender model on the demo frames, pass after pass.

use agecam::capture::{Frame, FrameSource};
use agecam::config::StatsConfig;
use agecam::daemon::{Daemon, NoObserver, RunLimits, RunSummary};
use agecam::display::NoDisplay;
use agecam::pipeline::Pipeline;
use agecam::stats::store::Store;
use agecam::stats::{Clock, ManualClock, StatsRecorder, StatsSettings};
use agecam::vision::{FaceBox, FaceDetector};
use image::RgbImage;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Resident set size of this process in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A kiosk's day at one frame per second: in every minute one person stands in view for the
/// first 20 s (left of the frame); in every fifth minute a second person stands beside them
/// (right). Pixel (0,0) tells the detector who is there: red = left person, green = right.
/// The clock advances one second per frame, and RSS is sampled every simulated hour.
struct Day<'a> {
    clock: &'a ManualClock,
    second: u64,
    seconds: u64,
    rss: Vec<u64>,
}

impl FrameSource for Day<'_> {
    fn next_frame(&mut self) -> Result<Option<Frame>, agecam::capture::CaptureError> {
        if self.second == self.seconds {
            return Ok(None);
        }
        // Time passes while the camera waits for the frame.
        self.clock.advance(1.0);
        if self.second.is_multiple_of(3600) {
            self.rss.push(rss_kib());
        }
        let (minute, s) = (self.second / 60, self.second % 60);
        let left = if s < 20 { 255 } else { 0 };
        let right = if s < 20 && minute % 5 == 0 { 255 } else { 0 };
        // A camera-sized frame each time, as the V4L2 source allocates one per frame.
        let mut image = RgbImage::new(320, 240);
        image.put_pixel(0, 0, image::Rgb([left, right, 0]));
        let frame = Frame {
            image,
            seq: self.second,
            captured: self.clock.monotonic(),
            origin: "simulated day".into(),
        };
        self.second += 1;
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        "a simulated day".into()
    }
}

struct PixelDetector;

impl FaceDetector for PixelDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let p = frame.get_pixel(0, 0).0;
        let face = |x| FaceBox {
            x,
            y: 60.0,
            width: 80.0,
            height: 80.0,
            score: 0.9,
            landmarks: None,
        };
        let mut faces = Vec::new();
        if p[0] > 128 {
            faces.push(face(20.0));
        }
        if p[1] > 128 {
            faces.push(face(200.0));
        }
        faces
    }
}

/// The settings the default `[stats]` section gives (15-minute intervals), stored in `db`.
fn settings(db: PathBuf) -> StatsSettings {
    let stats = StatsConfig {
        unit_id: "soak".into(),
        retention_days: 0,
        ..StatsConfig::default()
    };
    StatsSettings {
        database: db,
        ..StatsSettings::from_config(&stats)
    }
}

/// The daemon's run loop over all of `source` (lent to `daemon`), without a display.
fn run_to_end<'a>(
    daemon: &mut Daemon<'a>,
    source: impl FrameSource + 'a,
    clock: &ManualClock,
) -> RunSummary {
    daemon.source = Box::new(source);
    let stop = AtomicBool::new(false);
    daemon
        .run(clock, RunLimits::default(), &stop, &mut NoObserver)
        .unwrap()
}

/// A daemon without a display, around `pipeline` and a recorder into `db`.
fn daemon<'a>(pipeline: Pipeline, db: PathBuf, start: f64) -> Daemon<'a> {
    let stats = StatsRecorder::new(settings(db), start);
    // The source is set by each run.
    let nothing = agecam::capture::StillImages::from_files(Vec::new(), false, "nothing".into());
    Daemon::from_parts(
        Box::new(nothing),
        pipeline,
        Box::new(NoDisplay),
        Some(stats),
    )
}

#[test]
fn a_simulated_day_keeps_memory_flat_and_counts_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("soak.sqlite");
    let start = 1_795_392_000.0; // midnight UTC, an interval boundary
                                 // One frame early: each frame advances the clock first, so frame n lands at start + n s.
    let clock = ManualClock::new(start - 1.0);
    let mut day = Day {
        clock: &clock,
        second: 0,
        seconds: 86_400,
        rss: Vec::new(),
    };
    let pipeline = Pipeline::from_parts(Box::new(PixelDetector), None, 0.25);
    let mut daemon = daemon(pipeline, db.clone(), start);
    let began = std::time::Instant::now();
    let summary = run_to_end(&mut daemon, &mut day, &clock);
    let stats = daemon.stats.take().unwrap();
    drop(daemon);
    let took = began.elapsed();
    let end_rss = rss_kib();
    assert_eq!(summary.frames, 86_400);
    assert_eq!(summary.faces, 1440 * 20 + 288 * 20);
    assert_eq!((stats.pending(), stats.saved()), (0, 96));

    let store = Store::open(&db).unwrap();
    let intervals = store.load(i64::MIN, i64::MAX).unwrap();
    let full: Vec<_> = intervals.iter().filter(|i| i.frames > 0).collect();
    assert_eq!(full.len(), 96, "a day of 15-minute intervals");
    for (n, interval) in full.iter().enumerate() {
        assert_eq!(interval.start, start as i64 + n as i64 * 900);
        assert_eq!(interval.frames, 900, "interval {n}");
        // 15 people, 3 of them with a companion; each visit lasts 19 s (first to last frame).
        assert_eq!(interval.visits(), 18, "interval {n}");
        assert!(
            (interval.dwell_total_s - 18.0 * 19.0).abs() < 1e-6,
            "interval {n}"
        );
        assert_eq!(interval.camera_faults, 0);
    }

    // Memory: the first hour warms up (SQLite's page cache, allocator arenas); after that the
    // resident size must not grow. A leak of 40 bytes a frame would add 3 MiB over the day.
    let warm = day.rss[1];
    let max = *day.rss[1..].iter().max().unwrap();
    eprintln!(
        "soak: 86,400 frames, 96 intervals, {} visits in {:.1} s; RSS KiB at start {}, after 1 h {warm}, max later {max}, end {end_rss}",
        full.iter().map(|i| i.visits()).sum::<u32>(),
        took.as_secs_f64(),
        day.rss[0]
    );
    assert!(
        max.max(end_rss) < warm + 2048,
        "RSS grew from {warm} KiB to {} KiB over the simulated day: {:?}",
        max.max(end_rss),
        day.rss
    );
}

/// The shipped models on the demo frames, pass after pass (each pass a separate run, as
/// after a restart, so every pass must find exactly the same faces and visits). Run with
/// `cargo test --release --test soak -- --ignored --nocapture`.
#[test]
#[ignore = "minutes: the real detector and model on thousands of frames"]
fn real_models_keep_memory_flat_and_repeat_exactly() {
    let passes: usize = std::env::var("AGECAM_SOAK_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let config = agecam::config::Config::default();
    let pipeline = Pipeline::load(&config, &models).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("soak.sqlite");
    let clock = ManualClock::new(1_795_392_000.0);
    let mut daemon = daemon(pipeline, db.clone(), clock.wall());
    let mut per_pass = Vec::new();
    let mut rss = Vec::new();
    let began = std::time::Instant::now();
    for _ in 0..passes {
        rss.push(rss_kib());
        // Ten frames per still at 10 fps, as `run --demo` shows them.
        let frames = Ticking {
            inner: agecam::capture::demo_frames(false).repeat_each(10),
            clock: &clock,
        };
        let summary = run_to_end(&mut daemon, frames, &clock);
        per_pass.push((summary.frames, summary.faces));
        // A quiet minute between passes, so every pass's visits have ended.
        clock.advance(60.0);
    }
    let end_rss = rss_kib();
    let frames: u64 = per_pass.iter().map(|p| p.0).sum();
    assert!(per_pass.iter().all(|p| *p == per_pass[0]), "{per_pass:?}");
    let store = Store::open(&db).unwrap();
    let visits: u32 = store
        .load(i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|i| i.visits())
        .sum();
    let warm = rss[passes / 4];
    let max = *rss[passes / 4..].iter().max().unwrap();
    eprintln!(
        "real-model soak: {passes} passes, {frames} frames, {} faces, {visits} visits in {:.0} s; RSS KiB first {}, warm {warm}, max later {max}, end {end_rss}",
        per_pass[0].1 * passes as u64,
        began.elapsed().as_secs_f64(),
        rss[0]
    );
    assert_eq!(visits as usize % passes, 0, "the same visits every pass");
    assert!(
        max.max(end_rss) < warm + 4096,
        "RSS grew: {rss:?} then {end_rss}"
    );
}

/// Advances the manual clock by a tenth of a second per frame (10 fps).
struct Ticking<'a, S> {
    inner: S,
    clock: &'a ManualClock,
}

impl<S: FrameSource> FrameSource for Ticking<'_, S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, agecam::capture::CaptureError> {
        self.clock.advance(0.1);
        self.inner.next_frame()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
