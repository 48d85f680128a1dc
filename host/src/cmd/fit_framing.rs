//! `fit-framing`: both detectors run over face chips, the fitted
//! [`Reframe`](agecam::vision::Reframe) printed (the fit itself is
//! [`agecam_host::fit_framing`]).

use agecam::config::{Config, DetectorKind};
use agecam::vision::blazeface::Variant;
use agecam::vision::cascade::{self, CascadeDetector};
use agecam::vision::yunet::YuNetDetector;
use agecam::vision::{BlazeFaceDetector, DetectorSettings, FaceDetector};
use agecam_host::fit_framing;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Options of `fit-framing`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A folder of face chips (e.g. FairFace's train/*.jpg): only training images.
    #[arg(long, value_name = "DIR")]
    pub chips: PathBuf,
    /// At most this many chips (the first by file name).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub max_chips: usize,
    /// Model folder (manifest.json); default as for `predict`.
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// The detector whose boxes are fitted: `yunet` or `blazeface-cascade` (its boxes as
    /// found, without the re-framing the daemon applies).
    #[arg(long, default_value = "yunet", value_parser = ["yunet", "blazeface-cascade"])]
    pub detector: String,
    /// Also write every pair as CSV (YuNet box and landmarks, BlazeFace box), for study.
    #[arg(long, value_name = "FILE.csv")]
    pub dump: Option<PathBuf>,
}

/// `fit-framing`: runs both detectors over the chips and prints the fit.
pub fn run(args: &Args, config_file: Option<&Path>) -> anyhow::Result<()> {
    let config: Config = agecam::cli::load_config(config_file)?;
    let model_dir = agecam::cli::model_dir(args.models.as_deref(), config_file, &config);
    let verified = agecam::model::verified_models(
        &model_dir,
        &agecam::config::ModelConfig {
            model_use: agecam::config::ModelUse::Research,
            ..config.model.clone()
        },
    )
    .with_context(|| format!("models folder {}", model_dir.display()))?;
    let mut blaze_config = config.detector.clone();
    blaze_config.kind = Some(DetectorKind::Blazeface);
    blaze_config.score_threshold = None;
    blaze_config.input_size = None;
    blaze_config.tiles = None;
    let mut truth = agecam::pipeline::load_detector(&verified, &blaze_config)?;
    let path = |role: agecam::model::Role| {
        verified
            .get(role)
            .map(|f| f.path.clone())
            .with_context(|| format!("{} lists no {} model", model_dir.display(), role.name()))
    };
    let settings = DetectorSettings {
        min_face_size: config.detector.min_face_size,
        score_threshold: DetectorKind::BlazefaceCascade.default_score_threshold(),
        max_faces: 4,
    };
    let mut fitted: Box<dyn FaceDetector> = if args.detector == "yunet" {
        Box::new(
            YuNetDetector::load(
                &path(agecam::model::Role::FaceDetectorYunet)?,
                config.detector.input_size(),
                DetectorSettings {
                    score_threshold: agecam::vision::yunet::PROPOSE_THRESHOLD,
                    ..settings
                },
            )?
            .with_native_boxes(),
        )
    } else {
        let proposer = BlazeFaceDetector::load(
            &path(agecam::model::Role::FaceDetectorBack)?,
            Variant::Back,
            DetectorSettings {
                score_threshold: cascade::PROPOSE_THRESHOLD,
                max_faces: cascade::MAX_CANDIDATES,
                ..settings
            },
        )?;
        let verifier = BlazeFaceDetector::load(
            &path(agecam::model::Role::FaceDetector)?,
            Variant::ShortRange,
            DetectorSettings {
                min_face_size: 1,
                ..settings
            },
        )?;
        Box::new(CascadeDetector::new(
            Box::new(proposer),
            Box::new(verifier),
            None,
            settings,
        ))
    };

    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.chips)
        .with_context(|| format!("cannot read the chips folder {}", args.chips.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    files.truncate(args.max_chips);
    let (mut pairs, mut unpaired) = (Vec::new(), 0usize);
    for path in &files {
        let image = image::open(path)
            .with_context(|| format!("cannot decode {}", path.display()))?
            .to_rgb8();
        let found = (
            agecam_host::crops::find_face(fitted.as_mut(), &image),
            agecam_host::crops::find_face(truth.as_mut(), &image),
        );
        match found {
            (Some((y, _)), Some((b, _))) if y.iou(&b) >= 0.3 => pairs.push((y, b)),
            _ => unpaired += 1,
        }
    }
    if let Some(dump) = &args.dump {
        let mut out = String::from("yx,yy,yw,yh,rex,rey,lex,ley,nx,ny,mx,my,bx,by,bw,bh\n");
        for (y, b) in &pairs {
            let l = y.landmarks.context("the detector gave no landmarks")?;
            let v = [
                y.x,
                y.y,
                y.width,
                y.height,
                l.right_eye[0],
                l.right_eye[1],
                l.left_eye[0],
                l.left_eye[1],
                l.nose[0],
                l.nose[1],
                l.mouth[0],
                l.mouth[1],
                b.x,
                b.y,
                b.width,
                b.height,
            ];
            let row: Vec<String> = v.iter().map(|x| format!("{x:.2}")).collect();
            out.push_str(&row.join(","));
            out.push('\n');
        }
        std::fs::write(dump, out).with_context(|| format!("cannot write {}", dump.display()))?;
    }
    let fit =
        fit_framing::fit(&pairs).context("too few chips where both detectors found the face")?;
    let r = fit.reframe;
    println!(
        "fit-framing {}: {} chips of {}, {} paired ({} not found by both or apart)",
        args.detector,
        files.len(),
        args.chips.display(),
        fit.pairs,
        unpaired
    );
    println!(
        "Reframe {{ dx: {:.4}, dy: {:.4}, sw: {:.4}, sh: {:.4} }}",
        r.dx, r.dy, r.sw, r.sh
    );
    println!(
        "mean IoU with short-range BlazeFace's box: as found {:.3}, re-framed {:.3}",
        fit.iou_native, fit.iou_reframed
    );
    Ok(())
}
