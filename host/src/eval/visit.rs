//! `eval --visit-frames`: a face made into a short visit of frames and scored three ways (the
//! first frame, the every-frame daemon, the scheduled daemon), as the device's statistics
//! would count it.

use super::metrics::{group_index, Prediction};
use super::run::EvalRun;
use super::EvalError;
use crate::dataset::GroupLimits;
use agecam::model::{AgeGenderModel, Gender};
use agecam::vision::{FaceBox, FaceDetector};
use image::RgbImage;

type Result<T> = std::result::Result<T, EvalError>;

/// `eval --visit-frames K`: each validation face becomes a visit of K frames (the picture
/// shifted, scaled and brightened a little differently in each, as a person standing at a
/// kiosk is), found by the detector in every frame and classified as the device does. Three
/// answers are scored side by side per model: the first frame alone (per face); the
/// every-frame daemon (every frame classified, the statistics' tracker combining them); and
/// the scheduled daemon (`schedule`: detector frames only, the first `settle_estimates`
/// estimates summed in the probability domain, the tracker combining the running estimate).
#[derive(Debug, Clone, Copy)]
pub struct VisitSim {
    pub frames: u32,
    pub schedule: agecam::config::ScheduleConfig,
}

/// The three answers a visit is scored by, in the order [`super::evaluate`] reports them.
pub const VISIT_ANSWERS: [&str; 3] = ["per-face", "visit-every-frame", "visit-scheduled"];

/// Frame `j` of a visit made from `img`: frame 0 is the picture itself; the others are shifted
/// by up to 3 % of its size, scaled by 0.94–1.06 and brightened by 0.85–1.15, fixed by `j` and
/// `seed`. Pixels moved in from outside are black.
pub fn visit_frame(img: &RgbImage, j: u32, seed: u64) -> RgbImage {
    if j == 0 {
        return img.clone();
    }
    // SplitMix64: a fixed, well-spread sequence from (seed, j).
    let mut state = seed ^ (u64::from(j)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0 // in [-1, 1)
    };
    let (w, h) = img.dimensions();
    let scale = 1.0 + 0.06 * next();
    let (dx, dy) = (0.03 * w as f32 * next(), 0.03 * h as f32 * next());
    let gain = 1.0 + 0.15 * next();
    let (sw, sh) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let scaled = image::imageops::resize(img, sw, sh, image::imageops::FilterType::Triangle);
    let left = ((w as f32 - sw as f32) / 2.0 + dx).round() as i64;
    let top = ((h as f32 - sh as f32) / 2.0 + dy).round() as i64;
    RgbImage::from_fn(w, h, |x, y| {
        let (sx, sy) = (x as i64 - left, y as i64 - top);
        if sx < 0 || sy < 0 || sx >= sw as i64 || sy >= sh as i64 {
            return image::Rgb([0, 0, 0]);
        }
        let p = scaled.get_pixel(sx as u32, sy as u32).0;
        image::Rgb(p.map(|c| (c as f32 * gain).round().clamp(0.0, 255.0) as u8))
    })
}

/// A visit's answer as the statistics give it: a point age and a gender (no distribution).
fn visit_prediction(
    visit: Option<agecam::track::Visit>,
    fallback: &Prediction,
    limits: &GroupLimits,
) -> Prediction {
    let Some(age) = visit.and_then(|v| v.age) else {
        return *fallback;
    };
    let mut p_group = [0.0; 3];
    p_group[group_index(limits.group(age))] = 1.0;
    Prediction {
        age,
        age_low: age,
        age_high: age,
        p_female: match visit.and_then(|v| v.gender) {
            Some(Gender::Female) => 1.0,
            Some(Gender::Male) => 0.0,
            None => 0.5,
        },
        p_group,
    }
}

/// The three answers ([`VISIT_ANSWERS`]) for one face made into a visit of `sim.frames`
/// frames, and whether the every-frame and the scheduled tracker counted the visit (when not,
/// that answer is the first frame's).
pub(super) fn score_visit(
    img: &RgbImage,
    first_face: FaceBox,
    det: &mut dyn FaceDetector,
    model: &AgeGenderModel,
    run: &EvalRun,
    seed: u64,
) -> Result<([Prediction; 3], [bool; 2])> {
    use agecam::face::FaceResult;
    use agecam::track::{TrackSettings, Tracker};
    let info = model.info();
    let sim = run.visits.ok_or(EvalError::NoVisits)?;
    let limits = &run.limits;
    let framing = info.framing(run.crop_margin);
    let frame_time = std::time::Duration::from_millis(33);
    let t0 = std::time::Instant::now();
    // Each frame: the face the detector finds (the largest; frame 0's is given) and the
    // network's probabilities for it.
    let mut seen = Vec::new();
    for j in 0..sim.frames {
        let frame = visit_frame(img, j, seed);
        let face = if j == 0 {
            Some(first_face)
        } else {
            det.detect(&frame).into_iter().next()
        };
        let probs = match face {
            Some(f) => Some(model.predict_probs(&framing.crop(&frame, &f, info.input_size))?),
            None => None,
        };
        seen.push(face.zip(probs));
    }
    let (_, probs0) = seen[0].clone().ok_or(EvalError::NoFirstFace)?;
    let per_face = Prediction::new(model.estimate(&probs0), &probs0.age, &info.age_bins, limits);

    // Every frame classified; the tracker combines the frames' estimates.
    let mut tracker = Tracker::new(TrackSettings::default());
    for (j, s) in seen.iter().enumerate() {
        let faces: Vec<FaceResult> = s
            .iter()
            .map(|(face, probs)| FaceResult {
                face: *face,
                estimate: Some(model.estimate(probs)),
                track: None,
                looking: None,
            })
            .collect();
        tracker.update(&faces, t0 + frame_time * j as u32);
    }
    let longest = |visits: Vec<agecam::track::Visit>| visits.into_iter().max_by_key(|v| v.dwell);
    let every_visit = longest(tracker.finish());
    let every = visit_prediction(every_visit, &per_face, limits);

    // Scheduled: detector frames only; the first `settle_estimates` estimates summed.
    let settle = sim.schedule.settle_estimates.max(1);
    let step = sim.schedule.detect_every.max(1) as usize;
    let mut tracker = Tracker::new(TrackSettings::default());
    let (mut sum, mut estimates): (Option<agecam::model::FaceProbs>, u32) = (None, 0);
    for (j, s) in seen.iter().enumerate().step_by(step) {
        let mut faces = Vec::new();
        if let Some((face, probs)) = s {
            if estimates < settle {
                match &mut sum {
                    Some(total) => total.add(probs),
                    None => sum = Some(probs.clone()),
                }
                estimates += 1;
            }
            faces.push(FaceResult {
                face: *face,
                estimate: sum.as_ref().map(|p| model.estimate(p)),
                track: None,
                looking: None,
            });
        }
        tracker.update(&faces, t0 + frame_time * j as u32);
    }
    let scheduled_visit = longest(tracker.finish());
    let scheduled = visit_prediction(scheduled_visit, &per_face, limits);
    let counted = |v: Option<agecam::track::Visit>| v.is_some_and(|v| v.age.is_some());
    Ok((
        [per_face, every, scheduled],
        [counted(every_visit), counted(scheduled_visit)],
    ))
}
