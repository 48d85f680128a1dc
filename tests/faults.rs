//! Fault injection through the daemon's real run loop, on x86 without hardware: a scripted
//! V4L2-like camera that stalls, fails with EIO/ENODEV mid-stream, changes its format and hands
//! over truncated YUYV/MJPEG buffers (decoded by the same conversion functions the V4L2 source
//! uses), and a display whose output folder disappears and comes back. The loop must keep
//! running, count every fault, log each kind once (then only summaries) and store statistics
//! that are exact for the good frames.

use agecam::capture::convert::{decode_mjpeg, yuyv_to_rgb, ConvertError};
use agecam::capture::{CaptureError, Frame, FrameSource};
use agecam::config::StatsConfig;
use agecam::daemon::{Daemon, NoObserver, RunLimits};
use agecam::display::{Display, PngSnapshots, Status};
use agecam::face::FaceResult;
use agecam::pipeline::Pipeline;
use agecam::stats::store::Store;
use agecam::stats::{Clock, ManualClock, StatsRecorder, StatsSettings};
use agecam::vision::{FaceBox, FaceDetector};
use image::RgbImage;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Collects log lines per test thread, so parallel tests do not see each other's lines.
struct CaptureLogger;

thread_local! {
    static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LINES.with(|l| {
            l.borrow_mut()
                .push((record.level(), record.args().to_string()))
        });
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static LOGGER: CaptureLogger = CaptureLogger;
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
    LINES.with(|l| l.borrow_mut().clear());
}

fn logged(level: log::Level) -> Vec<String> {
    LINES.with(|l| {
        l.borrow()
            .iter()
            .filter(|(lv, _)| *lv == level)
            .map(|(_, s)| s.clone())
            .collect()
    })
}

/// What the scripted camera does on one `next_frame` call.
enum Step {
    /// A YUYV buffer, bright (a face in view) or dark, cut in half if `cut` (a USB transfer
    /// that ended early).
    Yuyv { bright: bool, cut: bool },
    /// An MJPEG buffer, likewise.
    Mjpeg { bright: bool, cut: bool },
    /// No frame within the driver timeout (the V4L2 source waits 3 s, then reopens).
    Stall,
    /// The driver returns this errno (EIO = 5, ENODEV = 19) from dequeueing a buffer.
    Errno(i32),
    /// After a reconnect the driver settles on another size.
    Resize(u32, u32),
    /// Something outside the camera happens now (the display breaks or is repaired).
    Act(Box<dyn FnOnce()>),
}

/// A camera that behaves like `V4l2Camera` at its interface: buffers are converted with the
/// same functions, undecodable ones become `BadFrame`, device errors become `Disconnected`
/// with the same reasons, and time passes on the shared clock as it would (0.1 s per frame
/// at 10 fps, the 3 s timeout for a stall, 0.5 s for an error and the back-off before the
/// reopen). Frames are small: the detector is synthetic, and the conversions do not care.
struct ScriptedCamera<'a> {
    steps: VecDeque<Step>,
    clock: &'a ManualClock,
    size: (u32, u32),
    seq: u64,
    scratch: Vec<u8>,
}

const DEVICE: &str = "/dev/video0";

impl ScriptedCamera<'_> {
    fn lost(&self, reason: String) -> CaptureError {
        CaptureError::Disconnected {
            origin: DEVICE.into(),
            reason,
        }
    }

    fn bad(reason: ConvertError) -> CaptureError {
        CaptureError::BadFrame {
            origin: DEVICE.into(),
            reason: reason.to_string(),
        }
    }
}

fn yuyv_buffer(width: u32, height: u32, bright: bool) -> Vec<u8> {
    let y = if bright { 235 } else { 16 };
    [y, 128, y, 128].repeat((width * height / 2) as usize)
}

fn mjpeg_buffer(width: u32, height: u32, bright: bool) -> Vec<u8> {
    let v = if bright { 255 } else { 0 };
    let image = RgbImage::from_pixel(width, height, image::Rgb([v, v, v]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&image)
        .unwrap();
    out
}

impl FrameSource for ScriptedCamera<'_> {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        loop {
            let Some(step) = self.steps.pop_front() else {
                return Ok(None);
            };
            let (width, height) = self.size;
            let (buffer, is_mjpeg) = match step {
                Step::Act(action) => {
                    action();
                    continue;
                }
                Step::Resize(w, h) => {
                    self.size = (w, h);
                    continue;
                }
                Step::Stall => {
                    self.clock.advance(3.0);
                    return Err(self.lost("no frame for 3 s (stalled)".into()));
                }
                Step::Errno(errno) => {
                    self.clock.advance(0.5);
                    let e = std::io::Error::from_raw_os_error(errno);
                    return Err(self.lost(format!("{e}; waiting for it to come back")));
                }
                Step::Yuyv { bright, cut } => {
                    let mut b = yuyv_buffer(width, height, bright);
                    b.truncate(if cut { b.len() / 2 } else { b.len() });
                    (b, false)
                }
                Step::Mjpeg { bright, cut } => {
                    let mut b = mjpeg_buffer(width, height, bright);
                    b.truncate(if cut { b.len() / 2 } else { b.len() });
                    (b, true)
                }
            };
            self.clock.advance(0.1);
            let image = if is_mjpeg {
                decode_mjpeg(&buffer).map_err(Self::bad)?
            } else {
                yuyv_to_rgb(&buffer, width, height, &mut self.scratch).map_err(Self::bad)?;
                RgbImage::from_raw(width, height, self.scratch.clone()).unwrap()
            };
            self.seq += 1;
            return Ok(Some(Frame {
                image,
                seq: self.seq - 1,
                captured: self.clock.monotonic(),
                origin: DEVICE.into(),
            }));
        }
    }

    fn describe(&self) -> String {
        format!("scripted camera {DEVICE} ({}x{})", self.size.0, self.size.1)
    }
}

/// Finds one face, a centred square a third of the frame high, in every bright frame: the
/// real detector is exercised elsewhere; here the counts must be known exactly.
struct BrightFrameDetector;

impl FaceDetector for BrightFrameDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (w, h) = (frame.width() as f32, frame.height() as f32);
        if frame.get_pixel(frame.width() / 2, frame.height() / 2).0[0] > 128 {
            vec![FaceBox {
                x: w / 2.0 - h / 6.0,
                y: h / 3.0,
                width: h / 3.0,
                height: h / 3.0,
                score: 0.9,
                landmarks: None,
            }]
        } else {
            vec![]
        }
    }
}

/// The real PNG output; a "broken display" is its folder replaced by a plain file.
struct Snapshots {
    png: PngSnapshots,
    shown: u64,
}

impl Display for Snapshots {
    fn show(&mut self, frame: &Frame, faces: &[FaceResult], status: &Status) -> agecam::Result<()> {
        self.png.show(frame, faces, status)?;
        self.shown += 1;
        Ok(())
    }
    fn describe(&self) -> String {
        self.png.describe()
    }
}

fn break_folder(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::write(dir, b"the display's target is gone").unwrap();
}

fn repair_folder(dir: &Path) {
    std::fs::remove_file(dir).unwrap();
    std::fs::create_dir(dir).unwrap();
}

/// The settings a `[stats]` section with 5-minute intervals gives, stored in `db`.
fn settings(db: &Path) -> StatsSettings {
    let stats = StatsConfig {
        unit_id: "faults".into(),
        interval_minutes: 5,
        retention_days: 0,
        ..StatsConfig::default()
    };
    StatsSettings {
        database: db.to_path_buf(),
        ..StatsSettings::from_config(&stats)
    }
}

/// What the script should produce.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    frames: u64,
    bad_frames: u64,
    camera_faults: u64,
    visits: u32,
    display_failures: u64,
}

#[test]
fn camera_and_display_faults_are_survived_logged_once_per_kind_and_counted_exactly() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let png_dir = dir.path().join("display");
    let start = 1_795_392_000.0; // an interval boundary
                                 // The camera advances the clock before each frame (time passes while it waits for one),
                                 // so the clock starts a frame early and the first frame lands on the interval boundary.
    let clock = ManualClock::new(start - 0.1);
    let mut steps = VecDeque::new();
    let mut want = Expected::default();
    // One person per simulated minute for 40 minutes: 2 s in view, then an empty scene. Every
    // minute brings its faults, so each kind recurs for longer than the 10-minute log summary
    // period. Times are in tenths of a second (one frame).
    for minute in 0..40u32 {
        let mjpeg = minute % 2 == 1;
        let frame = |bright, cut| {
            if mjpeg {
                Step::Mjpeg { bright, cut }
            } else {
                Step::Yuyv { bright, cut }
            }
        };
        for i in 0..20 {
            steps.push_back(frame(true, false));
            want.frames += 1;
            if i == 10 {
                // A truncated buffer mid-visit: skipped, and the visit goes on.
                steps.push_back(frame(true, true));
                want.bad_frames += 1;
            }
        }
        steps.push_back(frame(false, false));
        want.frames += 1;
        want.visits += 1;
        // The camera misbehaves while the scene is empty, so no visit is split.
        let fault_tenths = match minute % 4 {
            0 => {
                steps.push_back(Step::Stall);
                want.camera_faults += 1;
                30
            }
            1 => {
                steps.push_back(Step::Errno(5));
                want.camera_faults += 1;
                5
            }
            2 => {
                // Unplugged and plugged in again: ENODEV until it is back, at another size.
                steps.extend([Step::Errno(19), Step::Errno(19), Step::Errno(19)]);
                want.camera_faults += 3;
                let (w, h) = if minute % 8 == 2 { (32, 24) } else { (64, 48) };
                steps.push_back(Step::Resize(w, h));
                15
            }
            _ => 0,
        };
        if minute == 5 {
            let d = png_dir.clone();
            steps.push_back(Step::Act(Box::new(move || break_folder(&d))));
        }
        if minute == 7 {
            let d = png_dir.clone();
            steps.push_back(Step::Act(Box::new(move || repair_folder(&d))));
        }
        for _ in 0..(600 - 22 - fault_tenths) {
            steps.push_back(frame(false, false));
            want.frames += 1;
        }
    }
    let mut camera = ScriptedCamera {
        steps,
        clock: &clock,
        size: (64, 48),
        seq: 0,
        scratch: Vec::new(),
    };
    let pipeline = Pipeline::from_parts(Box::new(BrightFrameDetector), None, 0.25);
    let mut display = Snapshots {
        // Every frame, so every frame tries the output (as a panel is written every frame).
        png: PngSnapshots::create(&png_dir, 1).unwrap(),
        shown: 0,
    };
    let db = dir.path().join("stats.sqlite");
    let stats = StatsRecorder::new(settings(&db), start);
    let stop = AtomicBool::new(false);
    let mut daemon = Daemon::from_parts(
        Box::new(&mut camera),
        pipeline,
        Box::new(&mut display),
        Some(stats),
    );
    let summary = daemon
        .run(&clock, RunLimits::default(), &stop, &mut NoObserver)
        .expect("the run survives every fault");
    let stats = daemon.stats.take().unwrap();
    drop(daemon);
    let elapsed = clock.wall() - (start - 0.1);
    assert!((elapsed - 2400.0).abs() < 1e-3, "{elapsed}");
    assert_eq!(summary.frames, want.frames);
    assert_eq!(summary.bad_frames, want.bad_frames);
    assert_eq!(summary.camera_faults, want.camera_faults);
    assert_eq!(summary.faces, 40 * 20);
    assert_eq!(summary.model_failures, 0);
    // The good frames of the two minutes without the folder (1178 by the script).
    assert!(
        (1100..1250).contains(&summary.display_failures),
        "{}",
        summary.display_failures
    );
    assert_eq!(
        display.shown + summary.display_failures,
        summary.frames,
        "the display is tried on every frame, and works again once repaired"
    );
    // After the repair and the size changes, the last snapshot is there at the last size.
    let last = summary.frames - 1;
    let png = image::open(png_dir.join(format!("frame_{last:06}.png"))).unwrap();
    assert_eq!((png.width(), png.height()), camera.size);

    // Statistics: exact for the good frames, faults stored beside them.
    assert_eq!(stats.pending(), 0);
    let store = Store::open(&db).unwrap();
    let intervals = store.load(i64::MIN, i64::MAX).unwrap();
    assert_eq!(intervals.iter().filter(|i| i.frames > 0).count(), 8);
    let frames: u64 = intervals.iter().map(|i| i.frames).sum();
    let faults: u64 = intervals.iter().map(|i| i.camera_faults).sum();
    let visits: u32 = intervals.iter().map(|i| i.visits()).sum();
    assert_eq!(frames, want.frames);
    assert_eq!(faults, want.camera_faults + want.bad_frames);
    assert_eq!(
        visits, want.visits,
        "one visit per person, none split or lost"
    );
    for i in intervals.iter().filter(|i| i.frames > 0) {
        assert_eq!(i.visits(), 5, "five people in each 5-minute interval");
        assert_eq!(
            i.cells.keys().collect::<Vec<_>>(),
            [&("unknown".to_string(), "unknown".to_string())],
            "no model installed: every visit is of unknown age and gender"
        );
    }

    // Logging: per kind, one line at the first fault, then at most one summary per 10 minutes,
    // and every logged outage has its "coming again" line.
    let warns = logged(log::Level::Warn);
    let infos = logged(log::Level::Info);
    let count = |needle: &str| warns.iter().filter(|l| l.contains(needle)).count();
    let lost = count("camera /dev/video0 lost");
    let bad = count("skipped a bad frame");
    let display_lines = count("counting goes on");
    assert!(warns.iter().any(|l| l.contains("stalled")), "{warns:#?}");
    assert!((1..=4).contains(&lost), "{lost} camera lines: {warns:#?}");
    assert!((1..=4).contains(&bad), "{bad} bad-frame lines: {warns:#?}");
    assert_eq!(display_lines, 1, "one display outage, one line: {warns:#?}");
    assert_eq!(lost + bad + display_lines, warns.len(), "{warns:#?}");
    for kind in ["camera faults", "bad frames"] {
        let needle = format!("more {kind} since the last report");
        assert!(warns.iter().any(|l| l.contains(&needle)), "{warns:#?}");
    }
    assert_eq!(
        infos
            .iter()
            .filter(|l| l.contains("display works again"))
            .count(),
        1,
        "{infos:#?}"
    );
    let back = infos
        .iter()
        .filter(|l| l.starts_with("frames are coming again"))
        .count();
    assert_eq!(back, lost + bad, "{infos:#?}");
    assert!(
        warns.len() + infos.len() < 25,
        "40 minutes of faults in a few lines, not {}: {warns:#?} {infos:#?}",
        warns.len() + infos.len()
    );
}
