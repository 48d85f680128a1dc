//! The benchmark behind `agecam-host det-bench` (the command is `cmd/det_bench.rs` in the
//! binary): face detection by face size, for comparing detector configurations on the same
//! synthetic camera frames in one run.
//!
//! Scenes are composed from the bundled redistributable photos: a background (a crop of a
//! non-face photo scaled to the frame size) with one face pasted in. Each face comes from a
//! portrait (`faces/*.jpg`) or an optional folder of face chips (`--chips`); its ground-truth
//! box is what the device's own detector (BlazeFace as configured) finds in the full-size
//! picture. The box plus a margin is cut out, scaled so the box is the target height, and
//! pasted so the face centre lands on a cell of an N×N grid (with a small seeded jitter),
//! clamped inside the frame. Every frame is JPEG-compressed (quality 75, as a webcam's MJPEG)
//! and decoded before detection. Non-face frames are background crops alone: every box found
//! there is a false positive.
//!
//! Every detector configuration sees every frame in turn (round-robin), so the timings share
//! the same frames and machine state. A face counts as found when a box overlaps it with
//! IoU ≥ [`FOUND_IOU`].
//!
//! Caveat: the ground truth is BlazeFace's own box, so a detector whose boxes are framed
//! differently (SeetaFace's are tighter/looser) scores lower IoU and may miss the 0.4 bar on
//! faces it did find.

use agecam::capture::convert::PixelFormat;
use agecam::capture::{FramePixels, RawPixels};
use agecam::vision::{FaceBox, FaceDetector};
use image::imageops::FilterType;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why the benchmark's inputs cannot be read or composed: the file or folder and what failed.
#[derive(Debug, thiserror::Error)]
pub enum DetBenchError {
    #[error("cannot read image {}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("cannot read folder {}", dir.display())]
    Folder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("JPEG round trip of a composed frame failed")]
    Jpeg(#[source] image::ImageError),
    #[error("the camera path could not decode a composed frame")]
    CameraDecode(#[source] agecam::capture::CaptureError),
    #[error("no faces to paste")]
    NoFaces,
    #[error("no background photos")]
    NoBackgrounds,
}

/// IoU with the ground truth at which a face counts as found.
pub const FOUND_IOU: f32 = 0.4;
/// JPEG quality of every composed frame (a webcam's MJPEG).
pub const JPEG_QUALITY: u8 = crate::crops::CAMERA_JPEG_QUALITY;
/// Margin cut around the ground-truth box of a face, as a share of its side, on each side.
pub const PASTE_MARGIN: f32 = 0.5;
/// Face heights in pixels measured by default.
pub const DEFAULT_HEIGHTS: [u32; 12] = [20, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 200];

/// A face to paste: its picture and its ground-truth box in it.
pub struct FaceSource {
    pub name: String,
    pub image: RgbImage,
    pub truth: FaceBox,
    /// A chip (placed once per height) rather than a portrait (placed on every grid cell).
    pub chip: bool,
}

/// One detector configuration to measure.
pub struct NamedDetector {
    pub name: String,
    pub detector: Box<dyn FaceDetector>,
}

/// Found faces at one face height.
#[derive(Debug, Clone, Serialize)]
pub struct HeightResult {
    pub height: u32,
    pub faces: usize,
    pub found: usize,
    pub rate: f64,
    /// Mean IoU of the found faces (null when none).
    pub mean_iou: Option<f64>,
}

/// One configuration on one frame size.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorResult {
    pub name: String,
    pub per_height: Vec<HeightResult>,
    pub false_positives: usize,
    pub fp_per_frame: f64,
    /// The backgrounds where boxes were found, with how many.
    pub false_positives_on: Vec<(String, usize)>,
    /// Mean IoU of all found faces (null when none).
    pub mean_iou: Option<f64>,
    /// Median milliseconds per frame, over face and non-face frames.
    pub median_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameSizeResult {
    pub width: u32,
    pub height: u32,
    pub face_frames: usize,
    pub nonface_frames: usize,
    pub detectors: Vec<DetectorResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub face_heights: Vec<u32>,
    /// Portraits used, by file name.
    pub portraits: Vec<String>,
    /// Portraits where the ground-truth detector found no face (not used).
    pub portraits_skipped: Vec<String>,
    pub chips_used: usize,
    pub chips_skipped: usize,
    pub backgrounds: Vec<String>,
    pub min_face_size: u32,
    pub found_iou: f32,
    pub jpeg_quality: u8,
    pub seed: u64,
    pub frame_sizes: Vec<FrameSizeResult>,
}

/// Reads an image as RGB, naming the path on failure.
pub fn open_rgb(path: &Path) -> Result<RgbImage, DetBenchError> {
    Ok(image::open(path)
        .map_err(|source| DetBenchError::Image {
            path: path.to_path_buf(),
            source,
        })?
        .to_rgb8())
}

/// Image files (jpg/jpeg/png) in `dir` whose extension is one of `exts`, sorted by name.
pub fn image_files(dir: &Path, exts: &[&str]) -> Result<Vec<PathBuf>, DetBenchError> {
    let folder = |source| DetBenchError::Folder {
        dir: dir.to_path_buf(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(folder)?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(folder)?.path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if path.is_file() && ext.is_some_and(|e| exts.contains(&e.as_str())) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The frame after a JPEG round trip at `quality`.
pub fn jpeg_round_trip(frame: &RgbImage, quality: u8) -> Result<RgbImage, DetBenchError> {
    crate::crops::jpeg_round_trip(frame, quality).map_err(DetBenchError::Jpeg)
}

/// A random crop of `bg` with the frame's aspect ratio (60–100 % of the largest such crop),
/// scaled to `width`×`height`.
pub fn background_frame(bg: &RgbImage, width: u32, height: u32, rng: &mut StdRng) -> RgbImage {
    let (bw, bh) = (bg.width() as f32, bg.height() as f32);
    let aspect = width as f32 / height as f32;
    let (mut cw, mut ch) = if bw / bh > aspect {
        (bh * aspect, bh)
    } else {
        (bw, bw / aspect)
    };
    let scale = rng.random_range(0.6f32..=1.0);
    cw = (cw * scale).max(1.0);
    ch = (ch * scale).max(1.0);
    let x = rng.random_range(0.0..=(bw - cw).max(0.0)) as u32;
    let y = rng.random_range(0.0..=(bh - ch).max(0.0)) as u32;
    let (cw, ch) = (
        (cw as u32).min(bg.width() - x),
        (ch as u32).min(bg.height() - y),
    );
    let crop = image::imageops::crop_imm(bg, x, y, cw.max(1), ch.max(1)).to_image();
    image::imageops::resize(&crop, width, height, FilterType::Triangle)
}

/// Pastes `face` into `frame` so its ground-truth box is `face_height` pixels high with its
/// centre near `centre` (the pasted region kept inside the frame); returns the box in the frame.
pub fn paste_face(
    frame: &mut RgbImage,
    face: &FaceSource,
    face_height: u32,
    centre: (f32, f32),
) -> FaceBox {
    let t = face.truth;
    let (iw, ih) = (face.image.width() as f32, face.image.height() as f32);
    let rx0 = (t.x - PASTE_MARGIN * t.width).max(0.0).floor();
    let ry0 = (t.y - PASTE_MARGIN * t.height).max(0.0).floor();
    let rx1 = (t.x + t.width * (1.0 + PASTE_MARGIN)).min(iw).ceil();
    let ry1 = (t.y + t.height * (1.0 + PASTE_MARGIN)).min(ih).ceil();
    let (rw, rh) = ((rx1 - rx0).max(1.0), (ry1 - ry0).max(1.0));
    let scale = face_height as f32 / t.height;
    let nw = ((rw * scale).round() as u32).clamp(1, frame.width());
    let nh = ((rh * scale).round() as u32).clamp(1, frame.height());
    let (sx, sy) = (nw as f32 / rw, nh as f32 / rh);
    let region =
        image::imageops::crop_imm(&face.image, rx0 as u32, ry0 as u32, rw as u32, rh as u32)
            .to_image();
    let scaled = image::imageops::resize(&region, nw, nh, FilterType::CatmullRom);
    // Box in the scaled region, then the region's place in the frame.
    let bx = (t.x - rx0) * sx;
    let by = (t.y - ry0) * sy;
    let (bw, bh) = (t.width * sx, t.height * sy);
    let px = (centre.0 - bx - bw / 2.0)
        .round()
        .clamp(0.0, (frame.width() - nw) as f32);
    let py = (centre.1 - by - bh / 2.0)
        .round()
        .clamp(0.0, (frame.height() - nh) as f32);
    image::imageops::replace(frame, &scaled, px as i64, py as i64);
    FaceBox {
        x: px + bx,
        y: py + by,
        width: bw,
        height: bh,
        score: 1.0,
        landmarks: None,
    }
}

/// Face centre for grid cell `cell` of an `n`×`n` grid, jittered by up to an eighth of a cell.
fn grid_centre(cell: u32, n: u32, width: u32, height: u32, rng: &mut StdRng) -> (f32, f32) {
    let n = n.max(1);
    let (cw, ch) = (width as f32 / n as f32, height as f32 / n as f32);
    let (col, row) = ((cell % n) as f32, (cell / n % n) as f32);
    let jx = rng.random_range(-0.125f32..=0.125) * cw;
    let jy = rng.random_range(-0.125f32..=0.125) * ch;
    ((col + 0.5) * cw + jx, (row + 0.5) * ch + jy)
}

/// The ground-truth box of a picture: the largest face `truth` finds in it, if any.
pub fn ground_truth(truth: &mut dyn FaceDetector, image: &RgbImage) -> Option<FaceBox> {
    truth.detect(image).into_iter().next()
}

/// Per-detector tallies on one frame size.
#[derive(Default)]
struct Tally {
    faces: Vec<usize>,
    found: Vec<usize>,
    iou_sum: Vec<f64>,
    false_positives: usize,
    false_positives_on: std::collections::BTreeMap<String, usize>,
    ms: Vec<f64>,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}

fn timed(detector: &mut dyn FaceDetector, frame: &RgbImage) -> (Vec<FaceBox>, f64) {
    let t = Instant::now();
    let boxes = detector.detect(frame);
    (boxes, t.elapsed().as_secs_f64() * 1e3)
}

/// The frame as the daemon reads a camera's MJPEG: decoded by libjpeg-turbo only as large as
/// the detector reads it ([`agecam::pipeline::detect_picture`]); the decode is timed too.
fn timed_camera(
    detector: &mut dyn FaceDetector,
    jpeg: &[u8],
    (width, height): (u32, u32),
) -> Result<(Vec<FaceBox>, f64), DetBenchError> {
    let t = Instant::now();
    let raw = RawPixels::Buffer {
        bytes: jpeg.to_vec(),
        format: PixelFormat::Mjpeg,
        width,
        height,
    };
    let boxes = FramePixels::new(raw, "det-bench frame")
        .and_then(|mut pixels| agecam::pipeline::detect_picture(detector, &mut pixels))
        .map_err(DetBenchError::CameraDecode)?;
    Ok((boxes, t.elapsed().as_secs_f64() * 1e3))
}

/// Tally `i`'s run on one frame: detector `i` on the decoded frame, or, for the second set of
/// tallies (`--camera-decode`), detector `i − n` on the camera path.
fn run_path(
    detectors: &mut [NamedDetector],
    i: usize,
    frame: &RgbImage,
    jpeg: &[u8],
    size: (u32, u32),
) -> Result<(Vec<FaceBox>, f64), DetBenchError> {
    let n = detectors.len();
    let detector = detectors[i % n].detector.as_mut();
    if i < n {
        Ok(timed(detector, frame))
    } else {
        timed_camera(detector, jpeg, size)
    }
}

/// Encodes a composed frame as a webcam's MJPEG would: the JPEG bytes, and the frame decoded
/// whole by the `image` crate.
fn camera_jpeg(frame: &RgbImage) -> Result<(Vec<u8>, RgbImage), DetBenchError> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(frame)
        .map_err(DetBenchError::Jpeg)?;
    let decoded = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .map_err(DetBenchError::Jpeg)?
        .to_rgb8();
    Ok((jpeg, decoded))
}

/// What [`run`] measures with and on.
pub struct BenchInput<'a> {
    pub faces: &'a [FaceSource],
    pub backgrounds: &'a [(String, RgbImage)],
    pub face_heights: &'a [u32],
    pub frame_sizes: &'a [(u32, u32)],
    pub positions: u32,
    pub nonface_crops: usize,
    pub seed: u64,
    /// Also run every detector on the frames as the daemon decodes a camera's MJPEG (rows
    /// named `NAME (camera decode)`).
    pub camera_decode: bool,
}

/// Runs every detector on every composed frame; see the module docs.
pub fn run(
    input: &BenchInput,
    detectors: &mut [NamedDetector],
) -> Result<Vec<FrameSizeResult>, DetBenchError> {
    if input.faces.is_empty() {
        return Err(DetBenchError::NoFaces);
    }
    if input.backgrounds.is_empty() {
        return Err(DetBenchError::NoBackgrounds);
    }
    let mut results = Vec::new();
    let detectors_len = detectors.len();
    for &(width, height) in input.frame_sizes {
        let mut rng = StdRng::seed_from_u64(input.seed ^ ((width as u64) << 32 | height as u64));
        let nh = input.face_heights.len();
        // One tally per detector, then (with `camera_decode`) one more per detector for the
        // camera path.
        let paths = if input.camera_decode { 2 } else { 1 };
        let mut tallies: Vec<Tally> = (0..detectors.len() * paths)
            .map(|_| Tally {
                faces: vec![0; nh],
                found: vec![0; nh],
                iou_sum: vec![0.0; nh],
                ..Tally::default()
            })
            .collect();
        let cells = input.positions.max(1).pow(2);
        let mut face_frames = 0;
        let started = Instant::now();
        for (fi, face) in input.faces.iter().enumerate() {
            for (hi, &face_height) in input.face_heights.iter().enumerate() {
                let places: Vec<u32> = if face.chip {
                    vec![(fi + hi) as u32 % cells]
                } else {
                    (0..cells).collect()
                };
                for cell in places {
                    let bg = &input.backgrounds[rng.random_range(0..input.backgrounds.len())].1;
                    let mut frame = background_frame(bg, width, height, &mut rng);
                    let centre = grid_centre(cell, input.positions, width, height, &mut rng);
                    let truth = paste_face(&mut frame, face, face_height, centre);
                    let (jpeg, frame) = camera_jpeg(&frame)?;
                    face_frames += 1;
                    for (i, tally) in tallies.iter_mut().enumerate() {
                        let (boxes, ms) = run_path(detectors, i, &frame, &jpeg, (width, height))?;
                        tally.ms.push(ms);
                        let best = boxes.iter().map(|b| b.iou(&truth)).fold(0.0f32, f32::max);
                        tally.faces[hi] += 1;
                        if best >= FOUND_IOU {
                            tally.found[hi] += 1;
                            tally.iou_sum[hi] += best as f64;
                        }
                    }
                }
            }
            if (fi + 1) % 50 == 0 {
                log::info!(
                    "{width}x{height}: {}/{} faces, {:.0} s",
                    fi + 1,
                    input.faces.len(),
                    started.elapsed().as_secs_f32()
                );
            }
        }
        let mut nonface_frames = 0;
        for (bg_name, bg) in input.backgrounds {
            for _ in 0..input.nonface_crops {
                let (jpeg, frame) = camera_jpeg(&background_frame(bg, width, height, &mut rng))?;
                nonface_frames += 1;
                for (i, tally) in tallies.iter_mut().enumerate() {
                    let (boxes, ms) = run_path(detectors, i, &frame, &jpeg, (width, height))?;
                    tally.ms.push(ms);
                    tally.false_positives += boxes.len();
                    if !boxes.is_empty() {
                        *tally.false_positives_on.entry(bg_name.clone()).or_default() +=
                            boxes.len();
                    }
                }
            }
        }
        let per_detector: Vec<DetectorResult> = tallies
            .into_iter()
            .enumerate()
            .map(|(i, mut t)| {
                let d = &detectors[i % detectors_len];
                let name = if i < detectors_len {
                    d.name.clone()
                } else {
                    format!("{} (camera decode)", d.name)
                };
                let per_height = input
                    .face_heights
                    .iter()
                    .enumerate()
                    .map(|(i, &h)| HeightResult {
                        height: h,
                        faces: t.faces[i],
                        found: t.found[i],
                        rate: ratio(t.found[i], t.faces[i]),
                        mean_iou: (t.found[i] > 0).then(|| t.iou_sum[i] / t.found[i] as f64),
                    })
                    .collect();
                let found: usize = t.found.iter().sum();
                DetectorResult {
                    name,
                    per_height,
                    false_positives: t.false_positives,
                    fp_per_frame: ratio(t.false_positives, nonface_frames),
                    false_positives_on: std::mem::take(&mut t.false_positives_on)
                        .into_iter()
                        .collect(),
                    mean_iou: (found > 0).then(|| t.iou_sum.iter().sum::<f64>() / found as f64),
                    median_ms: median(&mut t.ms),
                }
            })
            .collect();
        results.push(FrameSizeResult {
            width,
            height,
            face_frames,
            nonface_frames,
            detectors: per_detector,
        });
    }
    Ok(results)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The tables: one per frame size, a row per detector configuration.
pub fn tables(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "faces: {} portraits ({} skipped: no face found), {} chips ({} skipped); backgrounds: {}",
        report.portraits.len(),
        report.portraits_skipped.len(),
        report.chips_used,
        report.chips_skipped,
        report.backgrounds.join(", ")
    );
    let _ = writeln!(
        out,
        "found = IoU >= {} with the ground truth; min_face_size {} px; JPEG quality {}; seed {}",
        report.found_iou, report.min_face_size, report.jpeg_quality, report.seed
    );
    for fs in &report.frame_sizes {
        let _ = writeln!(
            out,
            "\n{}x{}: {} face frames, {} non-face frames; detection rate by face height (px)",
            fs.width, fs.height, fs.face_frames, fs.nonface_frames
        );
        let name_w = fs
            .detectors
            .iter()
            .map(|d| d.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = write!(out, "{:<name_w$}", "detector");
        for h in &report.face_heights {
            let _ = write!(out, " {h:>5}");
        }
        let _ = writeln!(
            out,
            " {:>9} {:>8} {:>9}",
            "FP/frame", "mean IoU", "ms/frame"
        );
        for d in &fs.detectors {
            let _ = write!(out, "{:<name_w$}", d.name);
            for h in &d.per_height {
                let _ = write!(out, " {:>4.0}%", h.rate * 100.0);
            }
            let iou = d
                .mean_iou
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                " {:>9.3} {:>8} {:>9.1}",
                d.fp_per_frame, iou, d.median_ms
            );
        }
        for d in fs.detectors.iter().filter(|d| d.false_positives > 0) {
            let on: Vec<String> = d
                .false_positives_on
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            let _ = writeln!(out, "  {} boxed non-faces in: {}", d.name, on.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_face_box_has_the_target_height_and_stays_in_the_frame() {
        let mut portrait = RgbImage::new(200, 300);
        for (x, y, p) in portrait.enumerate_pixels_mut() {
            p.0 = [x as u8, y as u8, 7];
        }
        let face = FaceSource {
            name: "synthetic".into(),
            image: portrait,
            truth: FaceBox {
                x: 50.0,
                y: 80.0,
                width: 80.0,
                height: 100.0,
                score: 1.0,
                landmarks: None,
            },
            chip: false,
        };
        for (h, centre) in [
            (24, (320.0, 240.0)),
            (160, (0.0, 0.0)),
            (200, (640.0, 480.0)),
        ] {
            let mut frame = RgbImage::new(640, 480);
            let b = paste_face(&mut frame, &face, h, centre);
            assert!((b.height - h as f32).abs() <= 1.0, "{b:?}");
            assert!((b.width / b.height - 0.8).abs() < 0.05, "{b:?}");
            assert!(b.x >= 0.0 && b.y >= 0.0, "{b:?}");
            assert!(b.x + b.width <= 640.0 && b.y + b.height <= 480.0, "{b:?}");
        }
        let mut frame = RgbImage::new(640, 480);
        let b = paste_face(&mut frame, &face, 50, (320.0, 240.0));
        let (cx, cy) = b.center();
        assert!(
            (cx - 320.0).abs() <= 1.0 && (cy - 240.0).abs() <= 1.0,
            "{b:?}"
        );
        // The box's top-left pixel is the portrait's (50, 80), scaled.
        let p = frame.get_pixel(b.x.round() as u32 + 1, b.y.round() as u32 + 1);
        assert!((p.0[0] as i32 - 51).abs() <= 3 && (p.0[1] as i32 - 81).abs() <= 3);
    }

    #[test]
    fn background_frames_have_the_frame_size_and_repeat_with_the_seed() {
        let bg = RgbImage::from_fn(451, 300, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let a = background_frame(&bg, 1280, 720, &mut StdRng::seed_from_u64(1));
        let b = background_frame(&bg, 1280, 720, &mut StdRng::seed_from_u64(1));
        assert_eq!(a.dimensions(), (1280, 720));
        assert_eq!(a, b);
        let j = jpeg_round_trip(&a, JPEG_QUALITY).unwrap();
        assert_eq!(j.dimensions(), (1280, 720));
    }

    #[test]
    fn median_and_frame_sizes() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
