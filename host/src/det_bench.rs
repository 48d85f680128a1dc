//! `agecam-host det-bench`: face detection by face size, for comparing detector configurations
//! on the same synthetic camera frames in one run.
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

use agecam::config::{Config, DetectorKind};
use agecam::vision::tiled::{TileGrid, TiledDetector};
use agecam::vision::{FaceBox, FaceDetector};
use anyhow::Context;
use image::imageops::FilterType;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// IoU with the ground truth at which a face counts as found.
pub const FOUND_IOU: f32 = 0.4;
/// JPEG quality of every composed frame (a webcam's MJPEG).
pub const JPEG_QUALITY: u8 = crate::crops::CAMERA_JPEG_QUALITY;
/// Margin cut around the ground-truth box of a face, as a share of its side, on each side.
pub const PASTE_MARGIN: f32 = 0.5;
/// Face heights in pixels measured by default.
pub const DEFAULT_HEIGHTS: [u32; 12] = [20, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 200];

/// A detector configuration to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetChoice {
    /// YuNet (the research default), once per `--yunet-sizes` input size.
    Yunet,
    /// BlazeFace back-camera candidates confirmed by short-range (the commercial default).
    Cascade,
    /// YuNet candidates (each `--yunet-sizes`, each `--cascade-propose` threshold) confirmed
    /// by short-range BlazeFace.
    YunetCascade,
    /// BlazeFace short-range as the daemon loads it.
    Blazeface,
    /// BlazeFace full-range (192×192).
    FullRange,
    /// BlazeFace back-camera (256×256).
    Back,
    /// SeetaFace (the fallback), with the same detector settings.
    Seeta,
    /// BlazeFace short-range on the whole frame and on overlapping tiles (vision::tiled).
    Tiled,
}

fn parse_frame_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s}: give WIDTHxHEIGHT, e.g. 640x480"))?;
    let w: u32 = w.parse().map_err(|_| format!("{s}: bad width"))?;
    let h: u32 = h.parse().map_err(|_| format!("{s}: bad height"))?;
    if w < 64 || h < 64 {
        return Err(format!("{s}: frames must be at least 64x64"));
    }
    Ok((w, h))
}

/// Options of `det-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct DetBenchArgs {
    /// The bundled test photos: faces/*.jpg and nonfaces/ (backgrounds).
    #[arg(long, value_name = "DIR", default_value = "tests/data")]
    pub data: PathBuf,
    /// Model folder (manifest.json); default as for `predict`.
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Face heights (ground-truth box height in frame pixels) to measure.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_HEIGHTS)]
    pub face_heights: Vec<u32>,
    /// Frame sizes, WIDTHxHEIGHT.
    #[arg(long, value_delimiter = ',', value_parser = parse_frame_size,
          default_values = ["640x480", "1280x720"])]
    pub frame_sizes: Vec<(u32, u32)>,
    /// Detector configurations to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["yunet", "cascade", "blazeface", "full-range", "back", "seeta", "tiled"])]
    pub detectors: Vec<DetChoice>,
    /// YuNet input sizes (the input's longer side, multiples of 32) to measure, each named
    /// `yunet-SIZE`.
    #[arg(long, value_delimiter = ',', default_values_t = [agecam::vision::yunet::DEFAULT_INPUT_SIZE])]
    pub yunet_sizes: Vec<u32>,
    /// The cascade's proposer (back-camera) thresholds to measure, each named
    /// `blazeface-cascade-pP`; unset, the daemon's (`vision::cascade::PROPOSE_THRESHOLD`).
    #[arg(long, value_delimiter = ',', value_name = "P")]
    pub cascade_propose: Vec<f32>,
    /// Face positions: an N×N grid of places per face and height (chips: one place each).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub positions: u32,
    /// Use at most this many background photos (sorted by name).
    #[arg(long, value_name = "N")]
    pub max_backgrounds: Option<usize>,
    /// Non-face frames per background and frame size (different crops/scales).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub nonface_crops: usize,
    /// A folder of face chips (e.g. FairFace's val/*.jpg) used as extra faces.
    #[arg(long, value_name = "DIR")]
    pub chips: Option<PathBuf>,
    /// At most this many chips (the first by file name).
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub max_chips: usize,
    /// Smallest face side for every configuration (default: the configuration's
    /// detector.min_face_size, as the daemon).
    #[arg(long, value_name = "PX")]
    pub min_face_size: Option<u32>,
    /// Tiles across and down for `tiled`.
    /// Run each BlazeFace configuration once per score threshold given (e.g. 0.5,0.6,0.7),
    /// named `KIND@THRESHOLD`; unset, the configured threshold. The boxes counted as truth keep
    /// the configured threshold.
    #[arg(long, value_delimiter = ',', value_name = "P")]
    pub score_thresholds: Vec<f32>,
    #[arg(long, default_value_t = 2)]
    pub tile_cols: u32,
    #[arg(long, default_value_t = 2)]
    pub tile_rows: u32,
    /// Share of a tile's side overlapping its neighbour.
    #[arg(long, default_value_t = 0.25)]
    pub tile_overlap: f32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Also print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

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
pub fn open_rgb(path: &Path) -> anyhow::Result<RgbImage> {
    Ok(image::open(path)
        .with_context(|| format!("cannot read image {}", path.display()))?
        .to_rgb8())
}

/// Image files (jpg/jpeg/png) in `dir` whose extension is one of `exts`, sorted by name.
fn image_files(dir: &Path, exts: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read folder {}", dir.display()))?
            .path();
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

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The frame after a JPEG round trip at `quality`.
pub fn jpeg_round_trip(frame: &RgbImage, quality: u8) -> anyhow::Result<RgbImage> {
    crate::crops::jpeg_round_trip(frame, quality)
        .context("JPEG round trip of a composed frame failed")
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

/// What [`run`] measures with and on.
pub struct BenchInput<'a> {
    pub faces: &'a [FaceSource],
    pub backgrounds: &'a [(String, RgbImage)],
    pub face_heights: &'a [u32],
    pub frame_sizes: &'a [(u32, u32)],
    pub positions: u32,
    pub nonface_crops: usize,
    pub seed: u64,
}

/// Runs every detector on every composed frame; see the module docs.
pub fn run(
    input: &BenchInput,
    detectors: &mut [NamedDetector],
) -> anyhow::Result<Vec<FrameSizeResult>> {
    anyhow::ensure!(!input.faces.is_empty(), "no faces to paste");
    anyhow::ensure!(!input.backgrounds.is_empty(), "no background photos");
    let mut results = Vec::new();
    for &(width, height) in input.frame_sizes {
        let mut rng = StdRng::seed_from_u64(input.seed ^ ((width as u64) << 32 | height as u64));
        let nh = input.face_heights.len();
        let mut tallies: Vec<Tally> = detectors
            .iter()
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
                    let frame = jpeg_round_trip(&frame, JPEG_QUALITY)?;
                    face_frames += 1;
                    for (d, tally) in detectors.iter_mut().zip(&mut tallies) {
                        let (boxes, ms) = timed(d.detector.as_mut(), &frame);
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
                let frame =
                    jpeg_round_trip(&background_frame(bg, width, height, &mut rng), JPEG_QUALITY)?;
                nonface_frames += 1;
                for (d, tally) in detectors.iter_mut().zip(&mut tallies) {
                    let (boxes, ms) = timed(d.detector.as_mut(), &frame);
                    tally.ms.push(ms);
                    tally.false_positives += boxes.len();
                    if !boxes.is_empty() {
                        *tally.false_positives_on.entry(bg_name.clone()).or_default() +=
                            boxes.len();
                    }
                }
            }
        }
        let detectors = detectors
            .iter()
            .zip(tallies)
            .map(|(d, mut t)| {
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
                    name: d.name.clone(),
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
            detectors,
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

/// `det-bench`: loads the photos and detectors, runs, prints the tables (and JSON).
pub fn det_bench_command(args: &DetBenchArgs, config_file: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.face_heights.is_empty(),
        "give at least one face height"
    );
    anyhow::ensure!(
        args.face_heights.iter().all(|&h| h >= 4),
        "face heights must be at least 4 px"
    );
    anyhow::ensure!(!args.detectors.is_empty(), "give at least one detector");
    anyhow::ensure!(
        (0.0..0.95).contains(&args.tile_overlap),
        "--tile-overlap {} is out of range: give a fraction from 0 up to 0.95",
        args.tile_overlap
    );
    let config: Config = agecam::cli::load_config(config_file)?;
    let model_dir = agecam::cli::model_dir(args.models.as_deref(), config_file, &config);
    let verified = agecam::model::manifest::Manifest::load(&model_dir)
        .and_then(|m| m.verify(config.model.model_use))
        .with_context(|| format!("models folder {}", model_dir.display()))?;
    let mut blaze_config = config.detector.clone();
    blaze_config.kind = Some(DetectorKind::Blazeface);
    blaze_config.input_size = None;
    blaze_config.tiles = None; // each configuration below says its own tiling
    if let Some(min) = args.min_face_size {
        blaze_config.min_face_size = min;
    }
    let load = |c: &agecam::config::DetectorConfig| {
        agecam::pipeline::load_detector(&verified, c)
            .with_context(|| format!("models folder {}", model_dir.display()))
    };
    let mut truth = load(&blaze_config)?;

    let faces_dir = args.data.join("faces");
    let mut faces = Vec::new();
    let mut portraits_skipped = Vec::new();
    for path in image_files(&faces_dir, &["jpg", "jpeg"])? {
        let image = open_rgb(&path)?;
        match ground_truth(truth.as_mut(), &image) {
            Some(truth) => faces.push(FaceSource {
                name: file_name(&path),
                image,
                truth,
                chip: false,
            }),
            None => portraits_skipped.push(file_name(&path)),
        }
    }
    let portraits: Vec<String> = faces.iter().map(|f| f.name.clone()).collect();
    let (mut chips_used, mut chips_skipped) = (0, 0);
    if let Some(dir) = &args.chips {
        for path in image_files(dir, &["jpg", "jpeg", "png"])?
            .into_iter()
            .take(args.max_chips)
        {
            let image = open_rgb(&path)?;
            match ground_truth(truth.as_mut(), &image) {
                Some(truth) => {
                    chips_used += 1;
                    faces.push(FaceSource {
                        name: file_name(&path),
                        image,
                        truth,
                        chip: true,
                    });
                }
                None => chips_skipped += 1,
            }
        }
    }
    anyhow::ensure!(
        !faces.is_empty(),
        "the detector found no face in the photos of {}",
        faces_dir.display()
    );
    let mut backgrounds = Vec::new();
    for path in image_files(&args.data.join("nonfaces"), &["jpg", "jpeg", "png"])?
        .into_iter()
        .take(args.max_backgrounds.unwrap_or(usize::MAX))
    {
        backgrounds.push((file_name(&path), open_rgb(&path)?));
    }
    anyhow::ensure!(
        !backgrounds.is_empty(),
        "no background photos in {}",
        args.data.join("nonfaces").display()
    );

    anyhow::ensure!(
        args.score_thresholds
            .iter()
            .all(|p| (0.0..=1.0).contains(p)),
        "--score-thresholds: give probabilities from 0.0 to 1.0"
    );
    // One pass with the configured threshold, or one per --score-thresholds value.
    let thresholds: Vec<Option<f32>> = if args.score_thresholds.is_empty() {
        vec![None]
    } else {
        args.score_thresholds.iter().map(|&p| Some(p)).collect()
    };
    let mut detectors = Vec::new();
    for choice in &args.detectors {
        for (pass, &threshold) in thresholds.iter().enumerate() {
            let mut c = blaze_config.clone();
            if let Some(p) = threshold {
                c.score_threshold = Some(p);
            }
            let named = |name: &str| match threshold {
                Some(p) => format!("{name}@{p}"),
                None => name.to_string(),
            };
            let detector = match choice {
                DetChoice::Blazeface => NamedDetector {
                    name: named("blazeface"),
                    detector: load(&c)?,
                },
                DetChoice::Seeta => {
                    if pass > 0 {
                        continue; // SeetaFace's own scale: run once
                    }
                    c.kind = Some(DetectorKind::Seeta);
                    c.score_threshold = None;
                    NamedDetector {
                        name: c.kind().name().into(),
                        detector: load(&c)?,
                    }
                }
                DetChoice::Yunet => {
                    c.kind = Some(DetectorKind::Yunet);
                    if threshold.is_none() {
                        c.score_threshold = None;
                    }
                    for &size in &args.yunet_sizes {
                        c.input_size = Some(size);
                        detectors.push(NamedDetector {
                            name: named(&format!("yunet-{size}")),
                            detector: load(&c)?,
                        });
                    }
                    continue;
                }
                DetChoice::Cascade | DetChoice::YunetCascade
                    if *choice == DetChoice::YunetCascade || !args.cascade_propose.is_empty() =>
                {
                    use agecam::model::Role;
                    use agecam::vision::blazeface::Variant;
                    use agecam::vision::{cascade, BlazeFaceDetector, CascadeDetector};
                    let settings = agecam::vision::DetectorSettings {
                        min_face_size: c.min_face_size,
                        score_threshold: c.score_threshold(),
                        max_faces: c.max_faces,
                    };
                    let path = |role: Role| {
                        verified.get(role).map(|f| f.path.clone()).with_context(|| {
                            format!("{} lists no {}", model_dir.display(), role.name())
                        })
                    };
                    let proposals = if args.cascade_propose.is_empty() {
                        vec![cascade::PROPOSE_THRESHOLD]
                    } else {
                        args.cascade_propose.clone()
                    };
                    let sizes = if *choice == DetChoice::YunetCascade {
                        args.yunet_sizes.iter().map(|&s| Some(s)).collect()
                    } else {
                        vec![None]
                    };
                    for &p in &proposals {
                        for &size in &sizes {
                            let propose = agecam::vision::DetectorSettings {
                                score_threshold: p,
                                max_faces: cascade::MAX_CANDIDATES,
                                ..settings
                            };
                            let (proposer, name): (Box<dyn FaceDetector>, String) = match size {
                                Some(size) => (
                                    Box::new(agecam::vision::YuNetDetector::load(
                                        &path(Role::FaceDetectorYunet)?,
                                        size,
                                        propose,
                                    )?),
                                    format!("yunet-{size}-cascade-p{p}"),
                                ),
                                None => (
                                    Box::new(BlazeFaceDetector::load(
                                        &path(Role::FaceDetectorBack)?,
                                        Variant::Back,
                                        propose,
                                    )?),
                                    format!("blazeface-cascade-p{p}"),
                                ),
                            };
                            let verifier = BlazeFaceDetector::load(
                                &path(Role::FaceDetector)?,
                                Variant::ShortRange,
                                agecam::vision::DetectorSettings {
                                    min_face_size: 1,
                                    ..settings
                                },
                            )?;
                            detectors.push(NamedDetector {
                                name: named(&name),
                                detector: Box::new(CascadeDetector::new(
                                    proposer,
                                    Box::new(verifier),
                                    None,
                                    settings,
                                )),
                            });
                        }
                    }
                    continue;
                }
                DetChoice::FullRange
                | DetChoice::Back
                | DetChoice::Cascade
                | DetChoice::YunetCascade => {
                    c.kind = Some(match choice {
                        DetChoice::Back => DetectorKind::BlazefaceBack,
                        DetChoice::Cascade => DetectorKind::BlazefaceCascade,
                        _ => DetectorKind::BlazefaceFullRange,
                    });
                    NamedDetector {
                        name: named(c.kind().name()),
                        detector: load(&c)?,
                    }
                }
                DetChoice::Tiled => {
                    let grid = TileGrid {
                        cols: args.tile_cols.max(1),
                        rows: args.tile_rows.max(1),
                        overlap: args.tile_overlap,
                        full_frame: true,
                    };
                    NamedDetector {
                        name: named(&format!("blazeface-tiled-{}x{}", grid.cols, grid.rows)),
                        detector: Box::new(
                            TiledDetector::new(load(&c)?, grid).with_max_faces(c.max_faces),
                        ),
                    }
                }
            };
            detectors.push(detector);
        }
    }

    let input = BenchInput {
        faces: &faces,
        backgrounds: &backgrounds,
        face_heights: &args.face_heights,
        frame_sizes: &args.frame_sizes,
        positions: args.positions,
        nonface_crops: args.nonface_crops,
        seed: args.seed,
    };
    let frame_sizes = run(&input, &mut detectors)?;
    let report = Report {
        face_heights: args.face_heights.clone(),
        portraits,
        portraits_skipped,
        chips_used,
        chips_skipped,
        backgrounds: backgrounds.iter().map(|(n, _)| n.clone()).collect(),
        min_face_size: blaze_config.min_face_size,
        found_iou: FOUND_IOU,
        jpeg_quality: JPEG_QUALITY,
        seed: args.seed,
        frame_sizes,
    };
    print!("{}", tables(&report));
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
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
        assert_eq!(parse_frame_size("1280x720"), Ok((1280, 720)));
        assert!(parse_frame_size("1280").is_err());
        assert!(parse_frame_size("10x10").is_err());
    }
}
