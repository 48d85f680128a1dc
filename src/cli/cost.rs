//! `cost STAGE --repeat N`: runs one pipeline stage N times on a bundled 640×480 demo frame,
//! for counting instructions rather than timing them.
//!
//! Everything a stage needs (manifest check, model loading, the decoded frame, the face crop)
//! is prepared before the loop and does not depend on N, so running the command with two
//! repeat counts and subtracting the two instruction counts leaves the cost of N₂ − N₁ runs
//! of the stage alone. `benches/aarch64-cost.sh` does that under qemu-aarch64 with QEMU's
//! instruction-counting plugin (and, with `--x86`, under callgrind).

use crate::capture::convert::{decode_mjpeg, decode_mjpeg_scaled};
use crate::config::{Config, DetectorKind};
use crate::model::manifest::VerifiedModels;
use crate::model::{AgeGenderModel, Role};
use crate::vision::crop::Framing;
use crate::vision::{FaceBox, FaceDetector};
use anyhow::{bail, Context};
use image::RgbImage;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The demo frames built into the binary (the same files `run --demo` shows).
const FRAMES: &[(&str, &[u8])] = crate::capture::stills::DEMO_FRAMES;

/// One stage of the pipeline, as `cost` runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// MJPEG decode of the 640×480 frame to RGB (`capture::convert::decode_mjpeg`,
    /// libjpeg-turbo).
    Decode,
    /// The same decode at 1/2 scale (320×240: an SPI panel's picture).
    DecodeHalf,
    /// At 1/4 scale (160×120: the short-range detector's picture).
    DecodeQuarter,
    /// At 1/8 scale (80×60).
    DecodeEighth,
    /// The whole frame through the `image` crate's decoder (zune-jpeg), the camera's decoder
    /// before libjpeg-turbo and still the one for image files: for comparison.
    DecodeImage,
    /// The overlay of the frame and its faces drawn onto a 320×240 RGB565 panel's back buffer,
    /// as the SPI LCD adapter does, from the frame decoded at 1/2 (the transfer to the panel
    /// is the kernel's and not counted).
    OverlayPanel,
    /// One call of the short-range BlazeFace detector (as `detector.kind = "blazeface"` with
    /// the configured tiles, threshold and sizes) on the decoded frame.
    Detect,
    /// One call of YuNet (`detector.kind = "yunet"`, the research default) at the configured
    /// `detector.input_size`.
    DetectYunet,
    /// One call of the back-camera BlazeFace network's candidates confirmed by the short-range
    /// one (`detector.kind = "blazeface-cascade"`, the commercial default).
    DetectCascade,
    /// One call of the full-range BlazeFace detector.
    DetectFullRange,
    /// One call of the back-camera BlazeFace detector.
    DetectBack,
    /// One call of the SeetaFace cascade (the fallback detector).
    DetectSeeta,
    /// Cutting and resampling one face crop to the f32 model's input size.
    Crop,
    /// The head pose from one face's landmarks (`vision::pose::head_pose`), on the largest face
    /// YuNet finds (five points: its mouth corners are the larger of the two fits).
    Pose,
    /// One face through the float age/gender model the manifest lists for `model.use`.
    InferF32,
    /// One face through the weight-only int8 age/gender model the manifest lists.
    InferInt8,
    /// One face through the ONNX age/gender model given with `--model` (e.g. an integer
    /// QLinearConv form made by `agecam-host quantize --form integer`).
    Infer,
}

#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// The stage to run.
    #[arg(value_enum, value_name = "STAGE")]
    pub stage: Stage,

    /// How many times to run the stage after preparing it.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,

    /// Which built-in demo frame (1-3) to use; the infer and crop stages need one with a face.
    #[arg(long, default_value_t = 1, value_name = "1-3")]
    pub frame: usize,

    /// Folder with manifest.json and the models [default: as for `run`].
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,

    /// With the `infer` stage: the age/gender ONNX model to run (not hash-checked: any model
    /// `agecam-host export` or `quantize` wrote).
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
}

/// Prepares `args.stage`, runs it `args.repeat` times and prints one line saying what ran.
pub fn cost_command(args: &CostArgs, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_file)?;
    let models = super::model_dir(args.models.as_deref(), config_file, &config);
    let Some(&(name, jpeg)) = args.frame.checked_sub(1).and_then(|i| FRAMES.get(i)) else {
        bail!(
            "cost: no demo frame {}; --frame takes 1 to {}",
            args.frame,
            FRAMES.len()
        );
    };
    if args.stage == Stage::Infer && args.model.is_none() {
        bail!("cost infer: give the ONNX model to run with --model FILE.onnx (infer-f32 and infer-int8 take the manifest's)");
    }
    let decode = || decode_mjpeg(jpeg).map_err(|e| anyhow::anyhow!("cost: built-in {name}: {e}"));
    let frame = decode()?;
    let summary = match args.stage {
        Stage::Decode | Stage::DecodeHalf | Stage::DecodeQuarter | Stage::DecodeEighth => {
            let denominator = match args.stage {
                Stage::DecodeHalf => 2,
                Stage::DecodeQuarter => 4,
                Stage::DecodeEighth => 8,
                _ => 1,
            };
            let mut size = (0, 0);
            for _ in 0..args.repeat {
                let picture = decode_mjpeg_scaled(black_box(jpeg), denominator)
                    .map_err(|e| anyhow::anyhow!("cost: built-in {name}: {e}"))?;
                size = black_box(picture).dimensions();
            }
            format!("{}x{} RGB (1/{denominator})", size.0, size.1)
        }
        Stage::DecodeImage => {
            for _ in 0..args.repeat {
                let image =
                    image::load_from_memory_with_format(black_box(jpeg), image::ImageFormat::Jpeg)
                        .with_context(|| format!("cost: built-in {name}"))?;
                black_box(image.to_rgb8());
            }
            format!("{}x{} RGB (image crate)", frame.width(), frame.height())
        }
        Stage::OverlayPanel => {
            use crate::display::{draw_overlay, PackedCanvas, PixelLayout, Status};
            let verified = verified(&models, &config)?;
            let face = largest_face(&verified, &config, &frame, name)?;
            let half = decode_mjpeg_scaled(jpeg, 2)
                .map_err(|e| anyhow::anyhow!("cost: built-in {name}: {e}"))?;
            let faces = [crate::face::FaceResult {
                face: face.scaled(0.5, 0.5),
                // A settled face's label, drawn as the panel shows it.
                estimate: Some(crate::model::AgeGender {
                    age: 34.0,
                    age_low: 29.0,
                    age_high: 39.0,
                    gender: crate::model::Gender::Female,
                    gender_confidence: 0.9,
                }),
                track: None,
                looking: Some(true),
            }];
            let mut canvas = PackedCanvas::new(320, 240, 640, PixelLayout::RGB565)
                .context("cost: a 320x240 RGB565 canvas")?;
            let status = Status {
                fps: Some(30.0),
                faces: 1,
            };
            for _ in 0..args.repeat {
                match draw_overlay(&mut canvas, black_box(&half), &faces, &status) {
                    Ok(()) => {}
                    Err(never) => match never {},
                }
                black_box(canvas.bytes());
            }
            "overlay of 1 face on a 320x240 RGB565 canvas".to_string()
        }
        Stage::Detect
        | Stage::DetectYunet
        | Stage::DetectCascade
        | Stage::DetectFullRange
        | Stage::DetectBack
        | Stage::DetectSeeta => {
            let kind = match args.stage {
                Stage::Detect => DetectorKind::Blazeface,
                Stage::DetectYunet => DetectorKind::Yunet,
                Stage::DetectCascade => DetectorKind::BlazefaceCascade,
                Stage::DetectFullRange => DetectorKind::BlazefaceFullRange,
                Stage::DetectBack => DetectorKind::BlazefaceBack,
                _ => DetectorKind::Seeta,
            };
            let mut detector = detector(&verified(&models, &config)?, &config, kind)?;
            let mut faces = Vec::new();
            for _ in 0..args.repeat {
                faces = black_box(detector.detect(black_box(&frame)));
            }
            format!("{} faces found", faces.len())
        }
        Stage::Crop => {
            let verified = verified(&models, &config)?;
            let model = manifest_model(&verified, Role::AgeGenderF32)?;
            let face = largest_face(&verified, &config, &frame, name)?;
            let (framing, size) = framing(&config, &model);
            for _ in 0..args.repeat {
                black_box(framing.crop(black_box(&frame), &face, size));
            }
            format!(
                "{size}x{size} crop ({}), margin {}",
                framing.style, framing.margin
            )
        }
        Stage::Pose => {
            let mut yunet = detector(&verified(&models, &config)?, &config, DetectorKind::Yunet)?;
            let landmarks = yunet
                .detect(&frame)
                .into_iter()
                .max_by(|a, b| (a.width * a.height).total_cmp(&(b.width * b.height)))
                .and_then(|f| f.landmarks)
                .with_context(|| {
                    format!("cost: YuNet finds no face with landmarks in {name}; pick another with --frame")
                })?;
            let mut pose = None;
            for _ in 0..args.repeat {
                pose = black_box(crate::vision::pose::head_pose(black_box(&landmarks)));
            }
            match pose {
                Some(p) => format!("yaw {:.1}, pitch {:.1}, roll {:.1}", p.yaw, p.pitch, p.roll),
                None => "no pose".to_string(),
            }
        }
        Stage::InferF32 | Stage::InferInt8 | Stage::Infer => {
            let verified = verified(&models, &config)?;
            let model = match (args.stage, &args.model) {
                (Stage::InferF32, _) => manifest_model(&verified, Role::AgeGenderF32)?,
                (Stage::InferInt8, _) => manifest_model(&verified, Role::AgeGenderInt8)?,
                (_, Some(path)) => AgeGenderModel::load(path).with_context(|| {
                    format!("cost infer: cannot load --model {}", path.display())
                })?,
                (_, None) => unreachable!("checked above"),
            };
            let face = largest_face(&verified, &config, &frame, name)?;
            let (framing, size) = framing(&config, &model);
            let crop = framing.crop(&frame, &face, size);
            let mut estimate = String::from("no run");
            for _ in 0..args.repeat {
                let out = model
                    .predict(std::slice::from_ref(black_box(&crop)))
                    .with_context(|| format!("cost: {} failed", model.path().display()))?;
                estimate = black_box(out)[0].label();
            }
            format!("{} on one face: {estimate}", model.path().display())
        }
    };
    println!(
        "cost {}: {} run(s) on {name} ({}x{}): {summary}",
        stage_name(args.stage),
        args.repeat,
        frame.width(),
        frame.height()
    );
    Ok(ExitCode::SUCCESS)
}

/// The stage as typed on the command line.
fn stage_name(stage: Stage) -> String {
    use clap::ValueEnum;
    stage
        .to_possible_value()
        .map_or_else(|| format!("{stage:?}"), |v| v.get_name().to_string())
}

fn verified(models: &Path, config: &Config) -> anyhow::Result<VerifiedModels> {
    crate::model::verified_models(models, &config.model).with_context(|| {
        format!(
            "cost: the models in {} cannot be used (give the folder with --models)",
            models.display()
        )
    })
}

/// The detector `kind` with the configured settings; a score threshold set for another kind
/// of detector is dropped (the scales differ), so each kind runs at its own default.
fn detector(
    models: &VerifiedModels,
    config: &Config,
    kind: DetectorKind,
) -> anyhow::Result<Box<dyn FaceDetector>> {
    let mut settings = config.detector.clone();
    if settings.kind() != kind {
        settings.score_threshold = None;
    }
    if kind != DetectorKind::Yunet {
        settings.input_size = None;
    }
    settings.kind = Some(kind);
    crate::pipeline::load_detector(models, &settings)
        .with_context(|| format!("cost: cannot load the {kind:?} face detector"))
}

fn manifest_model(models: &VerifiedModels, role: Role) -> anyhow::Result<AgeGenderModel> {
    let file = models.get(role).with_context(|| {
        format!(
            "cost: {} lists no {} model for this model.use; install one or pick another stage",
            models.manifest_file.display(),
            role.name()
        )
    })?;
    Ok(AgeGenderModel::load(&file.path)?)
}

/// The largest face the short-range detector finds in the frame (found once, before the loop).
fn largest_face(
    models: &VerifiedModels,
    config: &Config,
    frame: &RgbImage,
    name: &str,
) -> anyhow::Result<FaceBox> {
    let mut detector = detector(models, config, DetectorKind::Blazeface)?;
    let faces = detector.detect(frame);
    faces.first().copied().with_context(|| {
        format!("cost: the detector finds no face in {name}; pick another with --frame")
    })
}

/// The framing in force for `model` and its input size.
fn framing(config: &Config, model: &AgeGenderModel) -> (Framing, u32) {
    let framing = model.info().framing(config.detector.crop_margin);
    (framing, model.info().input_size)
}
