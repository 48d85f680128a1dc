//! `agecam-host fit-framing`: fits how a detector's boxes map onto the boxes the age/gender
//! models were trained on (short-range BlazeFace's on the whole picture), so that the crops the
//! device cuts around its faces frame them as the training crops did ([`Reframe`]): YuNet's
//! boxes ([`agecam::vision::yunet::REFRAME`]) and the commercial cascade's, which are
//! short-range boxes found on a magnified crop (they agree already, so none is applied).
//!
//! Both detectors run on the same face chips (each retried letterboxed, as `crops` does); where
//! both find the face (IoU ≥ 0.3), the pair is kept. Least squares then gives the centre shift
//! as a share of YuNet's width and height and the BlazeFace side as `sw·w + sh·h`. The report
//! gives the mean IoU of YuNet's boxes with BlazeFace's, as they are and re-framed.

use agecam::config::{Config, DetectorKind};
use agecam::vision::blazeface::Variant;
use agecam::vision::cascade::{self, CascadeDetector};
use agecam::vision::yunet::YuNetDetector;
use agecam::vision::{BlazeFaceDetector, DetectorSettings, FaceBox, FaceDetector, Reframe};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Options of `fit-framing`.
#[derive(Debug, Clone, clap::Args)]
pub struct FitFramingArgs {
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

/// The least-squares fit and how well it frames.
#[derive(Debug, Clone, Copy)]
pub struct Fit {
    pub reframe: Reframe,
    pub pairs: usize,
    pub iou_native: f64,
    pub iou_reframed: f64,
}

/// Fits a [`Reframe`] to `(detector, short-range BlazeFace)` box pairs.
pub fn fit(pairs: &[(FaceBox, FaceBox)]) -> Option<Fit> {
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mut dx, mut dy) = (0f64, 0f64);
    // Normal equations of side = sw·w + sh·h.
    let (mut ww, mut wh, mut hh, mut ws, mut hs) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (y, b) in pairs {
        let (ycx, ycy) = y.center();
        let (bcx, bcy) = b.center();
        dx += ((bcx - ycx) / y.width) as f64;
        dy += ((bcy - ycy) / y.height) as f64;
        let (w, h) = (y.width as f64, y.height as f64);
        let side = b.width.max(b.height) as f64;
        ww += w * w;
        wh += w * h;
        hh += h * h;
        ws += w * side;
        hs += h * side;
    }
    let det = ww * hh - wh * wh;
    if det.abs() < 1e-9 {
        return None;
    }
    let reframe = Reframe {
        dx: (dx / n) as f32,
        dy: (dy / n) as f32,
        sw: ((ws * hh - hs * wh) / det) as f32,
        sh: ((hs * ww - ws * wh) / det) as f32,
    };
    let mean_iou = |f: &dyn Fn(FaceBox) -> FaceBox| -> f64 {
        pairs.iter().map(|(y, b)| f(*y).iou(b) as f64).sum::<f64>() / n
    };
    Some(Fit {
        reframe,
        pairs: pairs.len(),
        iou_native: mean_iou(&|y| y),
        iou_reframed: mean_iou(&|y| reframe.apply(y)),
    })
}

/// `fit-framing`: runs both detectors over the chips and prints the fit.
pub fn fit_framing_command(
    args: &FitFramingArgs,
    config_file: Option<&Path>,
) -> anyhow::Result<()> {
    let config: Config = agecam::cli::load_config(config_file)?;
    let model_dir = agecam::cli::model_dir(args.models.as_deref(), config_file, &config);
    let verified = agecam::model::manifest::Manifest::load(&model_dir)
        .and_then(|m| m.verify(agecam::config::ModelUse::Research))
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
            crate::crops::find_face(fitted.as_mut(), &image),
            crate::crops::find_face(truth.as_mut(), &image),
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
    let fit = fit(&pairs).context("too few chips where both detectors found the face")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_known_reframing() {
        let known = Reframe {
            dx: 0.02,
            dy: 0.1,
            sw: 0.4,
            sh: 0.6,
        };
        let pairs: Vec<(FaceBox, FaceBox)> = (0..20)
            .map(|i| {
                let y = FaceBox::new(
                    10.0 * i as f32,
                    5.0,
                    40.0 + i as f32,
                    50.0 + 2.0 * (i % 7) as f32,
                    1.0,
                );
                (y, known.apply(y))
            })
            .collect();
        let fit = fit(&pairs).unwrap();
        let r = fit.reframe;
        for (got, want) in [(r.dx, 0.02), (r.dy, 0.1), (r.sw, 0.4), (r.sh, 0.6)] {
            assert!((got - want).abs() < 1e-3, "{r:?}");
        }
        assert!(fit.iou_reframed > 0.999 && fit.iou_native < fit.iou_reframed);
        assert!(super::fit(&pairs[..2]).is_none());
    }
}
