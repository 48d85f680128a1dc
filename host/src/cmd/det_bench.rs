//! `det-bench`: the detector configurations to compare loaded, the bundled photos (and chips)
//! read, the benchmark ([`agecam_host::det_bench`]) run and its tables printed.

use agecam::config::{Config, DetectorKind};
use agecam::vision::tiled::{TileGrid, TiledDetector};
use agecam::vision::FaceDetector;
use agecam_host::det_bench::{
    file_name, ground_truth, image_files, open_rgb, run as run_bench, tables, BenchInput,
    FaceSource, NamedDetector, Report, DEFAULT_HEIGHTS, FOUND_IOU, JPEG_QUALITY,
};
use anyhow::Context;
use std::path::{Path, PathBuf};

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

/// Why a `--frame` value is not a frame size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameSizeError {
    #[error("{0}: give WIDTHxHEIGHT, e.g. 640x480")]
    Form(String),
    #[error("{0}: bad width")]
    Width(String),
    #[error("{0}: bad height")]
    Height(String),
    #[error("{0}: frames must be at least 64x64")]
    TooSmall(String),
}

fn parse_frame_size(s: &str) -> Result<(u32, u32), FrameSizeError> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| FrameSizeError::Form(s.to_string()))?;
    let w: u32 = w
        .parse()
        .map_err(|_| FrameSizeError::Width(s.to_string()))?;
    let h: u32 = h
        .parse()
        .map_err(|_| FrameSizeError::Height(s.to_string()))?;
    if w < 64 || h < 64 {
        return Err(FrameSizeError::TooSmall(s.to_string()));
    }
    Ok((w, h))
}

/// Options of `det-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
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
    /// Also run every detector on the frames as the daemon decodes a camera's MJPEG:
    /// libjpeg-turbo, only as large as the detector reads (1/4 for short-range BlazeFace at
    /// 640×480); each such row is named `NAME (camera decode)`.
    #[arg(long)]
    pub camera_decode: bool,
    /// Also print the figures as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// `det-bench`: loads the photos and detectors, runs, prints the tables (and JSON).
pub fn run(args: &Args, config_file: Option<&Path>) -> anyhow::Result<()> {
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
    let verified = agecam::model::verified_models(&model_dir, &config.model)
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
        camera_decode: args.camera_decode,
    };
    let frame_sizes = run_bench(&input, &mut detectors)?;
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
    fn frame_sizes_parse() {
        assert_eq!(parse_frame_size("1280x720"), Ok((1280, 720)));
        assert!(parse_frame_size("1280").is_err());
        assert!(parse_frame_size("10x10").is_err());
    }
}
