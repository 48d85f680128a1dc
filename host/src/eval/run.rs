//! The evaluation run: every model over the chosen images of a dataset, through the device's
//! own detector, crop and tract code, one detection per image.

use super::metrics::{metrics, Metrics, Prediction, Truth};
use super::visit::{score_visit, VisitSim, VISIT_ANSWERS};
use super::EvalError;
use crate::crops::{find_face, jpeg_round_trip, CAMERA_JPEG_QUALITY};
use crate::dataset::{GroupLimits, Sample};
use agecam::model::AgeGenderModel;
use agecam::vision::{FaceBox, FaceDetector};
use image::RgbImage;
use std::path::PathBuf;

type Result<T> = std::result::Result<T, EvalError>;

/// Which images of a dataset are evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// The validation side of the deterministic split with this fraction.
    Validation(f64),
    All,
}

/// What `evaluate` was asked to do.
pub struct EvalRun<'a> {
    pub models: &'a [PathBuf],
    pub samples: &'a [Sample],
    pub subset: Subset,
    pub limits: GroupLimits,
    /// `detector.crop_margin` from the config, if set: it wins over the model's metadata, as
    /// on the device ([`agecam::config::resolve_crop_margin`]).
    pub crop_margin: Option<f32>,
    pub max_images: Option<usize>,
    /// Score every face as if it were this many pixels high in the frame (see
    /// [`as_seen_at_height`]); `None`: as the picture gives it.
    pub face_height: Option<u32>,
    /// Score each face as a short visit instead (see [`VisitSim`]); `None`: one frame.
    pub visits: Option<VisitSim>,
    /// Each crop's probabilities averaged with its mirror image's
    /// ([`AgeGenderModel::with_flip`], the device's `model.flip`).
    pub flip: bool,
    /// [`AgeGenderModel::with_prior_correction`]'s power (the device's
    /// `model.age_prior_correction`).
    pub age_prior_correction: f32,
}
/// The picture scaled down (area-averaging, as a sensor does) so `face` is `height` pixels
/// high, JPEG-compressed and decoded as a webcam frame is, with the face box in it. A face
/// already at most `height` high is returned as it is.
pub fn as_seen_at_height(
    img: &RgbImage,
    face: &FaceBox,
    height: u32,
) -> Result<(RgbImage, FaceBox)> {
    let s = height as f32 / face.height;
    if s >= 1.0 {
        return Ok((img.clone(), *face));
    }
    let w = ((img.width() as f32 * s).round() as u32).max(1);
    let h = ((img.height() as f32 * s).round() as u32).max(1);
    let small = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
    let small = jpeg_round_trip(&small, CAMERA_JPEG_QUALITY).map_err(EvalError::Jpeg)?;
    let (sx, sy) = (
        w as f32 / img.width() as f32,
        h as f32 / img.height() as f32,
    );
    Ok((small, face.scaled(sx, sy)))
}

/// Faces found and scored, per model in the order given.
pub struct EvalOutcome {
    pub images: usize,
    pub no_face: usize,
    /// Faces the detector found only in the padded canvas (the chip letterboxed into twice its
    /// size): on the frame as it is, it found `images − unreadable − no_face − found_padded`.
    pub found_padded: usize,
    /// Whether the dataset brought its own train/validation split (FairFace).
    pub own_split: bool,
    /// The face height the faces were scored at ([`EvalRun::face_height`]).
    pub face_height: Option<u32>,
    /// Faces were scored as visits ([`EvalRun::visits`]).
    pub visits: Option<VisitSim>,
    /// Visits the tracker did not count (the detector found the face in too few frames), per
    /// [`VISIT_ANSWERS`] (`visit-every-frame`, `visit-scheduled`); they are scored by their
    /// first frame.
    pub visits_uncounted: [usize; 2],
    pub unreadable: usize,
    pub truths: Vec<Truth>,
    /// `predictions[model][face]`.
    pub predictions: Vec<Vec<Prediction>>,
    /// `distributions[model][face]`: the age distribution over the model's bins (one frame
    /// per face only; empty with visits), for `eval --distributions`.
    pub distributions: Vec<Vec<Vec<f32>>>,
    pub metrics: Vec<Metrics>,
}

/// Runs every model over the chosen images: one detection per image (the largest face, with
/// the same padding fallback the training crops used), one crop per model input size.
pub fn evaluate(run: &EvalRun, det: &mut dyn FaceDetector) -> Result<EvalOutcome> {
    let models: Vec<AgeGenderModel> = run
        .models
        .iter()
        .map(|p| {
            AgeGenderModel::load(p)
                .map(|m| {
                    m.with_flip(run.flip)
                        .with_prior_correction(run.age_prior_correction)
                })
                .map_err(EvalError::from)
        })
        .collect::<Result<_>>()?;
    let mut chosen: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| match run.subset {
            Subset::Validation(f) => s.is_validation(f),
            Subset::All => true,
        })
        .collect();
    if let Some(max) = run.max_images.filter(|m| *m < chosen.len()) {
        // Evenly spaced rather than the first N: files sorted by name are sorted by age.
        let n = chosen.len();
        chosen = (0..max).map(|i| chosen[i * n / max]).collect();
    }
    if chosen.is_empty() {
        return Err(EvalError::NoImages);
    }
    let mut out = EvalOutcome {
        images: chosen.len(),
        no_face: 0,
        found_padded: 0,
        own_split: chosen.iter().any(|s| s.split.is_some()),
        face_height: run.face_height,
        unreadable: 0,
        truths: Vec::new(),
        predictions: vec![
            Vec::new();
            models.len()
                * if run.visits.is_some() {
                    VISIT_ANSWERS.len()
                } else {
                    1
                }
        ],
        distributions: vec![Vec::new(); models.len()],
        visits: run.visits,
        visits_uncounted: [0; 2],
        metrics: Vec::new(),
    };
    let started = std::time::Instant::now();
    for (i, s) in chosen.iter().enumerate() {
        if i % 1000 == 0 && i > 0 {
            log::info!(
                "{i}/{} images ({:.0} s), {} without a face",
                chosen.len(),
                started.elapsed().as_secs_f64(),
                out.no_face
            );
        }
        let img = match image::open(&s.path) {
            Ok(i) => i.to_rgb8(),
            Err(e) => {
                log::warn!("{}: {e}; skipped", s.path.display());
                out.unreadable += 1;
                continue;
            }
        };
        let Some((face, padded)) = find_face(det, &img) else {
            out.no_face += 1;
            continue;
        };
        out.found_padded += usize::from(padded);
        let (img, face) = match run.face_height {
            Some(h) => as_seen_at_height(&img, &face, h)?,
            None => (img, face),
        };
        if run.visits.is_some() {
            for (m, model) in models.iter().enumerate() {
                let (answers, counted) = score_visit(&img, face, det, model, run, i as u64)?;
                for (v, ok) in counted.iter().enumerate() {
                    out.visits_uncounted[v] += usize::from(!ok);
                }
                for (v, answer) in answers.into_iter().enumerate() {
                    out.predictions[m * VISIT_ANSWERS.len() + v].push(answer);
                }
            }
            out.truths.push(Truth::of(s, &run.limits));
            continue;
        }
        for (m, model) in models.iter().enumerate() {
            let info = model.info();
            let framing = info.framing(run.crop_margin);
            let crop = framing.crop(&img, &face, info.input_size);
            let (answer, probs) = model.predict_with_distribution(&crop)?;
            out.predictions[m].push(Prediction::new(answer, &probs, &info.age_bins, &run.limits));
            out.distributions[m].push(probs);
        }
        out.truths.push(Truth::of(s, &run.limits));
    }
    if out.truths.is_empty() {
        return Err(EvalError::NoFaces(chosen.len()));
    }
    // With visits, each model gives three answers, named after it without its extension so
    // their charts keep apart: `models/age_gender_int8-visit-scheduled`.
    let names: Vec<String> = match run.visits {
        Some(_) => run
            .models
            .iter()
            .flat_map(|p| {
                VISIT_ANSWERS
                    .iter()
                    .map(move |a| format!("{}-{a}", p.with_extension("").display()))
            })
            .collect(),
        None => run.models.iter().map(|p| p.display().to_string()).collect(),
    };
    out.metrics = names
        .iter()
        .zip(&out.predictions)
        .map(|(name, preds)| metrics(name, &out.truths, preds, &run.limits))
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_face_seen_smaller_is_scaled_down_with_its_box() {
        let img = RgbImage::from_fn(200, 100, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let face = FaceBox {
            x: 40.0,
            y: 20.0,
            width: 60.0,
            height: 50.0,
            score: 0.9,
            landmarks: None,
        };
        let (small, f) = as_seen_at_height(&img, &face, 25).unwrap();
        assert_eq!(small.dimensions(), (100, 50));
        assert_eq!((f.x, f.y, f.width, f.height), (20.0, 10.0, 30.0, 25.0));
        // JPEG-compressed: close to the scaled picture, not equal to it.
        let p = small.get_pixel(50, 25).0;
        assert!(
            (p[0] as i32 - 100).abs() <= 8 && (p[1] as i32 - 50).abs() <= 8,
            "{p:?}"
        );
        // A face already that small stays as it is.
        let (same, g) = as_seen_at_height(&img, &face, 80).unwrap();
        assert_eq!((same.dimensions(), g), (img.dimensions(), face));
    }
}
