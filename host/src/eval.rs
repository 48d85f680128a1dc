//! `agecam-host eval`: exported ONNX models run over a labelled dataset through the device's
//! own code (face detector, crop, tract), scored, and written up as a report folder:
//! `report.md`, `metrics.json`, confusion matrices, ROC curve and training history as PNG.
//!
//! Several models can be scored in one run on the same faces (float vs int8 forms), so their
//! differences are not blurred by different detections or image sets.

use crate::crops::{find_face, jpeg_round_trip, CAMERA_JPEG_QUALITY};
use crate::dataset::{fairface_group_of, AgeGroup, GroupLimits, Race, Sample, FAIRFACE_GROUPS};
use crate::plot::{self, LineChart, Series};
use agecam::model::{AgeGender, AgeGenderModel, Gender};
use agecam::vision::{FaceBox, FaceDetector};
use anyhow::{Context, Result};
use image::RgbImage;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What is known about one evaluated face.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub source: String,
    pub age: Option<u32>,
    pub gender: Option<Gender>,
    pub race: Option<Race>,
    pub group: AgeGroup,
    /// Index of the FairFace age group (of [`FAIRFACE_GROUPS`]): the labelled one, or the one
    /// holding the exact age.
    pub group9: Option<usize>,
}

impl Truth {
    /// What a dataset sample says, under `limits`.
    pub fn of(s: &Sample, limits: &GroupLimits) -> Truth {
        Truth {
            source: s.key(),
            age: s.age,
            gender: s.gender,
            race: s.race,
            group: s.age.map_or(s.group, |a| limits.group(a as f32)),
            group9: match (s.age, s.age_range) {
                (Some(a), _) => Some(fairface_group_of(a as f32)),
                (None, Some(range)) => FAIRFACE_GROUPS.iter().position(|g| *g == range),
                (None, None) => None,
            },
        }
    }
}

/// A model's answer for one face, reduced to what the metrics need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub age: f32,
    pub age_low: f32,
    pub age_high: f32,
    /// Probability the face is female (the ROC score).
    pub p_female: f32,
    /// Probability of YOUNG, MIDDLE and OLD: the age distribution summed over each group.
    pub p_group: [f32; 3],
}

impl Prediction {
    /// From the model's answer and its age distribution over `bins`.
    pub fn new(a: AgeGender, probs: &[f32], bins: &[f32], limits: &GroupLimits) -> Prediction {
        let mut p_group = [0f32; 3];
        for (p, age) in probs.iter().zip(bins) {
            p_group[group_index(limits.group(*age))] += p;
        }
        Prediction {
            p_group,
            ..Prediction::from(a)
        }
    }
}

impl From<AgeGender> for Prediction {
    fn from(a: AgeGender) -> Prediction {
        Prediction {
            age: a.age,
            age_low: a.age_low,
            age_high: a.age_high,
            p_female: match a.gender {
                Gender::Female => a.gender_confidence,
                Gender::Male => 1.0 - a.gender_confidence,
            },
            p_group: [f32::NAN; 3],
        }
    }
}

/// Error of one slice of the data (an age decade, a gender, a race).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Slice {
    pub name: String,
    pub n: usize,
    /// Over the faces with an exact age (`None`: none has one).
    pub mae: Option<f64>,
    /// Gender accuracy within the slice, where genders are known.
    pub gender_accuracy: Option<f64>,
}

/// The age groups whose faces [`YoungerShare`] follows: the ages the default model read as
/// 9–10 years younger (issue 25).
pub const YOUNGER_GROUPS: [(u32, u32); 2] = [(40, 49), (50, 59)];

/// Of the faces of one race (or `all`) whose age group is one of [`YOUNGER_GROUPS`], the share
/// whose estimate falls in a younger FairFace age group than their own.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct YoungerShare {
    pub race: String,
    /// The age group, `LO-HI`.
    pub group: String,
    pub n: usize,
    pub younger: f64,
}

/// [`YoungerShare`] of every race with faces in each of [`YOUNGER_GROUPS`], then of all faces.
pub fn younger_shares(truths: &[Truth], preds: &[Prediction]) -> Vec<YoungerShare> {
    let mut out = Vec::new();
    for (lo, hi) in YOUNGER_GROUPS {
        let Some(g) = FAIRFACE_GROUPS.iter().position(|r| *r == (lo, hi)) else {
            continue;
        };
        let races = Race::ALL.into_iter().map(Some).chain([None]);
        for race in races {
            let ages: Vec<f32> = truths
                .iter()
                .zip(preds)
                .filter(|(t, _)| t.group9 == Some(g) && (race.is_none() || t.race == race))
                .map(|(_, p)| p.age)
                .collect();
            if ages.is_empty() {
                continue;
            }
            let younger = ages.iter().filter(|a| fairface_group_of(**a) < g).count();
            out.push(YoungerShare {
                race: race.map_or("all".to_string(), |r| format!("{r:?}").to_lowercase()),
                group: format!("{lo}-{hi}"),
                n: ages.len(),
                younger: younger as f64 / ages.len() as f64,
            });
        }
    }
    out
}

/// Every number the report shows for one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub model: String,
    pub faces: usize,
    pub age_mae: Option<f64>,
    /// Share of faces whose age estimate is within 5 years.
    pub cs5: Option<f64>,
    /// Share of faces whose true age lies inside the reported 80 % range.
    pub age_range_coverage: Option<f64>,
    pub gender_accuracy: Option<f64>,
    pub gender_auc: Option<f64>,
    pub group_accuracy: f64,
    /// Exact accuracy over FairFace's nine age groups (0-2, 3-9, 10-19, …, 70+), and the share
    /// within one group of the truth, over faces whose group is known.
    pub group9_accuracy: Option<f64>,
    pub group9_within_one: Option<f64>,
    /// Best minus worst gender accuracy over the races with at least 50 faces.
    pub race_gender_gap: Option<f64>,
    pub by_decade: Vec<Slice>,
    pub by_gender: Vec<Slice>,
    pub by_race: Vec<Slice>,
    /// Faces aged 40–49 and 50–59 put in a younger age group, per race ([`younger_shares`]).
    pub younger: Vec<YoungerShare>,
    /// `[true][predicted]`, male then female.
    pub gender_confusion: [[usize; 2]; 2],
    /// `[true][predicted]`, YOUNG, MIDDLE, OLD.
    pub group_confusion: [[usize; 3]; 3],
    /// One-vs-rest AUC of each age group (YOUNG, MIDDLE, OLD), scored by its probability.
    pub group_auc: [Option<f64>; 3],
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
    #[serde(skip)]
    pub group_roc: [Vec<(f64, f64)>; 3],
}

fn group_index(g: AgeGroup) -> usize {
    match g {
        AgeGroup::Young => 0,
        AgeGroup::Middle => 1,
        AgeGroup::Old => 2,
    }
}

/// ROC curve (false positive rate, true positive rate) of `scores` for the positive `labels`,
/// from (0,0) to (1,1), and the area under it (ties counted half, as the rank statistic does).
pub fn roc(labels: &[bool], scores: &[f32]) -> Option<(Vec<(f64, f64)>, f64)> {
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut curve = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut auc = 0.0;
    let mut i = 0;
    while i < order.len() {
        // All samples with the same score move the curve together (a diagonal step).
        let s = scores[order[i]];
        let (tp0, fp0) = (tp, fp);
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        auc += (fp - fp0) as f64 * (tp + tp0) as f64 / 2.0;
        curve.push((fp as f64 / neg as f64, tp as f64 / pos as f64));
    }
    Some((curve, auc / (pos as f64 * neg as f64)))
}

fn slice(
    name: String,
    pairs: &[(&Truth, &Prediction)],
    gender: &dyn Fn(&Prediction) -> Gender,
) -> Slice {
    let aged: Vec<f64> = pairs
        .iter()
        .filter_map(|(t, p)| t.age.map(|a| (p.age as f64 - a as f64).abs()))
        .collect();
    let sexed: Vec<bool> = pairs
        .iter()
        .filter_map(|(t, p)| t.gender.map(|g| g == gender(p)))
        .collect();
    Slice {
        name,
        n: pairs.len(),
        mae: (!aged.is_empty()).then(|| aged.iter().sum::<f64>() / aged.len() as f64),
        gender_accuracy: (!sexed.is_empty())
            .then(|| sexed.iter().filter(|c| **c).count() as f64 / sexed.len() as f64),
    }
}

/// Scores one model's predictions against the truth.
pub fn metrics(
    model: &str,
    truths: &[Truth],
    preds: &[Prediction],
    limits: &GroupLimits,
) -> Metrics {
    assert_eq!(truths.len(), preds.len());
    let gender_of = |p: &Prediction| {
        if p.p_female >= 0.5 {
            Gender::Female
        } else {
            Gender::Male
        }
    };
    let pairs: Vec<(&Truth, &Prediction)> = truths.iter().zip(preds).collect();
    let aged: Vec<(u32, &Prediction)> = pairs
        .iter()
        .filter_map(|(t, p)| t.age.map(|a| (a, *p)))
        .collect();
    let share = |hits: usize, of: usize| (of > 0).then(|| hits as f64 / of as f64);
    let age_mae = (!aged.is_empty()).then(|| {
        aged.iter()
            .map(|(a, p)| (p.age as f64 - *a as f64).abs())
            .sum::<f64>()
            / aged.len() as f64
    });
    let cs5 = share(
        aged.iter()
            .filter(|(a, p)| (p.age - *a as f32).abs() <= 5.0)
            .count(),
        aged.len(),
    );
    let age_range_coverage = share(
        aged.iter()
            .filter(|(a, p)| (p.age_low..=p.age_high).contains(&(*a as f32)))
            .count(),
        aged.len(),
    );
    let mut gender_confusion = [[0usize; 2]; 2];
    let (mut labels, mut scores) = (Vec::new(), Vec::new());
    for (t, p) in &pairs {
        if let Some(g) = t.gender {
            let gi = |g: Gender| usize::from(g == Gender::Female);
            gender_confusion[gi(g)][gi(gender_of(p))] += 1;
            labels.push(g == Gender::Female);
            scores.push(p.p_female);
        }
    }
    let gender_known = labels.len();
    let gender_accuracy = share(
        gender_confusion[0][0] + gender_confusion[1][1],
        gender_known,
    );
    let (roc_curve, gender_auc) = match roc(&labels, &scores) {
        Some((c, a)) => (c, Some(a)),
        None => (Vec::new(), None),
    };
    let mut group_confusion = [[0usize; 3]; 3];
    for (t, p) in &pairs {
        group_confusion[group_index(t.group)][group_index(limits.group(p.age))] += 1;
    }
    let group_accuracy =
        (0..3).map(|i| group_confusion[i][i]).sum::<usize>() as f64 / pairs.len().max(1) as f64;
    let nine: Vec<(usize, usize)> = pairs
        .iter()
        .filter_map(|(t, p)| t.group9.map(|g| (g, fairface_group_of(p.age))))
        .collect();
    let group9_accuracy = share(nine.iter().filter(|(t, p)| t == p).count(), nine.len());
    let group9_within_one = share(
        nine.iter().filter(|(t, p)| t.abs_diff(*p) <= 1).count(),
        nine.len(),
    );
    let mut group_auc = [None; 3];
    let mut group_roc: [Vec<(f64, f64)>; 3] = Default::default();
    for g in 0..3 {
        let labels: Vec<bool> = pairs
            .iter()
            .map(|(t, _)| group_index(t.group) == g)
            .collect();
        let scores: Vec<f32> = pairs.iter().map(|(_, p)| p.p_group[g]).collect();
        if scores.iter().all(|s| s.is_finite()) {
            if let Some((c, a)) = roc(&labels, &scores) {
                group_roc[g] = c;
                group_auc[g] = Some(a);
            }
        }
    }

    let mut by_decade = Vec::new();
    for d in 0..10u32 {
        let (lo, hi) = (d * 10, if d == 9 { u32::MAX } else { d * 10 + 9 });
        let part: Vec<_> = pairs
            .iter()
            .filter(|(t, _)| t.age.is_some_and(|a| (lo..=hi).contains(&a)))
            .copied()
            .collect();
        if !part.is_empty() {
            let name = if d == 9 {
                "90+".to_string()
            } else {
                format!("{lo}-{hi}")
            };
            by_decade.push(slice(name, &part, &gender_of));
        }
    }
    let mut by_gender = Vec::new();
    for g in [Gender::Male, Gender::Female] {
        let part: Vec<_> = pairs
            .iter()
            .filter(|(t, _)| t.gender == Some(g))
            .copied()
            .collect();
        if !part.is_empty() {
            by_gender.push(slice(format!("{g:?}").to_lowercase(), &part, &gender_of));
        }
    }
    let mut by_race = Vec::new();
    for r in Race::ALL {
        let part: Vec<_> = pairs
            .iter()
            .filter(|(t, _)| t.race == Some(r))
            .copied()
            .collect();
        if !part.is_empty() {
            by_race.push(slice(format!("{r:?}").to_lowercase(), &part, &gender_of));
        }
    }
    let race_accuracies: Vec<f64> = by_race
        .iter()
        .filter(|s| s.n >= 50)
        .filter_map(|s| s.gender_accuracy)
        .collect();
    let race_gender_gap = (race_accuracies.len() >= 2).then(|| {
        race_accuracies.iter().cloned().fold(f64::MIN, f64::max)
            - race_accuracies.iter().cloned().fold(f64::MAX, f64::min)
    });
    Metrics {
        model: model.to_string(),
        faces: pairs.len(),
        age_mae,
        cs5,
        age_range_coverage,
        gender_accuracy,
        gender_auc,
        group_accuracy,
        group9_accuracy,
        group9_within_one,
        race_gender_gap,
        by_decade,
        by_gender,
        by_race,
        younger: younger_shares(truths, preds),
        gender_confusion,
        group_confusion,
        group_auc,
        roc: roc_curve,
        group_roc,
    }
}

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
}

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

/// The three answers a visit is scored by, in the order [`evaluate`] reports them.
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
fn score_visit(
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
    let sim = run.visits.context("score_visit needs EvalRun::visits")?;
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
    let (_, probs0) = seen[0].clone().context("frame 0 has its face")?;
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
    let small = jpeg_round_trip(&small, CAMERA_JPEG_QUALITY)
        .context("JPEG round trip of a scaled-down picture failed")?;
    let (sx, sy) = (
        w as f32 / img.width() as f32,
        h as f32 / img.height() as f32,
    );
    let scaled = FaceBox {
        x: face.x * sx,
        y: face.y * sy,
        width: face.width * sx,
        height: face.height * sy,
        score: face.score,
        landmarks: face.landmarks.map(|l| l.map(|[x, y]| [x * sx, y * sy])),
    };
    Ok((small, scaled))
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
    pub metrics: Vec<Metrics>,
}

/// Runs every model over the chosen images: one detection per image (the largest face, with
/// the same padding fallback the training crops used), one crop per model input size.
pub fn evaluate(run: &EvalRun, det: &mut dyn FaceDetector) -> Result<EvalOutcome> {
    let models: Vec<AgeGenderModel> = run
        .models
        .iter()
        .map(|p| AgeGenderModel::load(p).map_err(anyhow::Error::from))
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
    anyhow::ensure!(
        !chosen.is_empty(),
        "no images to evaluate (the dataset is empty or the validation split selects none)"
    );
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
        }
        out.truths.push(Truth::of(s, &run.limits));
    }
    anyhow::ensure!(
        !out.truths.is_empty(),
        "no face was found in any of the {} images; check the dataset folder and the face detector",
        chosen.len()
    );
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

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1} %", 100.0 * v))
}

fn years(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Writes `report.md`, `metrics.json` and the PNG charts into `dir`; returns the file names.
pub fn write_report(
    dir: &Path,
    outcome: &EvalOutcome,
    data: &Path,
    subset: Subset,
    limits: &GroupLimits,
    history: Option<&[crate::trainer::EpochRecord]>,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the report folder {}", dir.display()))?;
    let mut written = Vec::new();
    let mut csvs = Vec::new();
    let mut save = |name: String, img: image::RgbImage| -> Result<()> {
        agecam::display::write_png_atomically(&img, &dir.join(&name))?;
        written.push(name);
        Ok(())
    };
    let mut md = String::new();
    let subset_text = match subset {
        Subset::Validation(_) if outcome.own_split => {
            "validation split (the dataset's own validation files)".to_string()
        }
        Subset::Validation(f) => format!("validation split ({:.0} % by file-name hash)", f * 100.0),
        Subset::All => "all images".into(),
    };
    writeln!(md, "# agecam evaluation\n")?;
    writeln!(
        md,
        "Data: `{}`, {subset_text}: {} images, {} faces evaluated ({} of them found only after padding the image), {} without a detected face, {} unreadable.\n",
        data.display(),
        outcome.images,
        outcome.truths.len(),
        outcome.found_padded,
        outcome.no_face,
        outcome.unreadable
    )?;
    if let Some(h) = outcome.face_height {
        writeln!(
            md,
            "Faces scored as a camera sees them {h} px high: each picture scaled down so the face box is {h} px high and JPEG-compressed (quality {CAMERA_JPEG_QUALITY}) before the crop.\n"
        )?;
    }
    if let Some(sim) = &outcome.visits {
        writeln!(
            md,
            "Each face scored as a visit of {} frames (shifted by up to 3 %, scaled 0.94–1.06, brightened 0.85–1.15, the detector run on each): `per-face` is the first frame alone, `visit-every-frame` every frame classified and combined by the statistics' tracker, `visit-scheduled` as the scheduled daemon does it (detector every {} frames, the first {} estimates summed as probabilities).\n",
            sim.frames, sim.schedule.detect_every, sim.schedule.settle_estimates
        )?;
        writeln!(
            md,
            "Visits the tracker did not count (face found in too few frames; scored by their first frame): every frame {}, scheduled {}.\n",
            outcome.visits_uncounted[0], outcome.visits_uncounted[1]
        )?;
    }
    writeln!(
        md,
        "Age groups: YOUNG < {}, MIDDLE {}–{}, OLD ≥ {}.\n",
        limits.middle_from,
        limits.middle_from,
        limits.old_from - 1,
        limits.old_from
    )?;
    writeln!(md, "## Summary\n")?;
    writeln!(
        md,
        "| model | age MAE (y) | CS(5) | 80 % range holds true age | gender acc. | gender AUC | 3-group acc. | 9-group acc. | within one group | race gender gap (points) |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|")?;
    for m in &outcome.metrics {
        writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.model,
            years(m.age_mae),
            pct(m.cs5),
            pct(m.age_range_coverage),
            pct(m.gender_accuracy),
            m.gender_auc.map_or("–".into(), |a| format!("{a:.4}")),
            pct(Some(m.group_accuracy)),
            pct(m.group9_accuracy),
            pct(m.group9_within_one),
            m.race_gender_gap
                .map_or("–".into(), |g| format!("{:.1}", g * 100.0))
        )?;
    }
    if outcome.metrics.len() > 1 {
        let base = &outcome.metrics[0];
        writeln!(md, "\nDifference from `{}`:\n", base.model)?;
        writeln!(md, "| model | Δ age MAE (y) | Δ gender acc. (points) | Δ 3-group acc. (points) | mean abs. age difference per face (y) |")?;
        writeln!(md, "|---|---|---|---|---|")?;
        for (m, preds) in outcome.metrics.iter().zip(&outcome.predictions).skip(1) {
            let d = |a: Option<f64>, b: Option<f64>, scale: f64| match (a, b) {
                (Some(a), Some(b)) => format!("{:+.3}", (a - b) * scale),
                _ => "–".into(),
            };
            let per_face = preds
                .iter()
                .zip(&outcome.predictions[0])
                .map(|(a, b)| (a.age - b.age).abs() as f64)
                .sum::<f64>()
                / preds.len().max(1) as f64;
            writeln!(
                md,
                "| `{}` | {} | {} | {} | {per_face:.3} |",
                m.model,
                d(m.age_mae, base.age_mae, 1.0),
                d(m.gender_accuracy, base.gender_accuracy, 100.0),
                d(Some(m.group_accuracy), Some(base.group_accuracy), 100.0),
            )?;
        }
    }
    for m in &outcome.metrics {
        let s = stem(&m.model);
        writeln!(md, "\n## `{}`\n", m.model)?;
        for (title, slices) in [
            ("age decade", &m.by_decade),
            ("gender", &m.by_gender),
            ("race", &m.by_race),
        ] {
            if slices.is_empty() {
                continue;
            }
            writeln!(md, "| {title} | faces | age MAE (y) | gender acc. |")?;
            writeln!(md, "|---|---|---|---|")?;
            for sl in slices.iter() {
                writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    sl.name,
                    sl.n,
                    years(sl.mae),
                    pct(sl.gender_accuracy)
                )?;
            }
            writeln!(md)?;
        }
        if !m.younger.is_empty() {
            writeln!(md, "Faces put in a younger age group than their own:\n")?;
            write!(md, "| race |")?;
            for (lo, hi) in YOUNGER_GROUPS {
                write!(md, " {lo}-{hi}: faces | younger |")?;
            }
            writeln!(md, "\n|---|{}", "---|---|".repeat(YOUNGER_GROUPS.len()))?;
            let mut races: Vec<&str> = Vec::new();
            for y in &m.younger {
                if !races.contains(&y.race.as_str()) {
                    races.push(&y.race);
                }
            }
            races.sort_by_key(|r| *r == "all");
            for race in races {
                write!(md, "| {race} |")?;
                for (lo, hi) in YOUNGER_GROUPS {
                    let group = format!("{lo}-{hi}");
                    match m
                        .younger
                        .iter()
                        .find(|y| y.race == race && y.group == group)
                    {
                        Some(y) => write!(md, " {} | {:.1} % |", y.n, 100.0 * y.younger)?,
                        None => write!(md, " 0 | - |")?,
                    }
                }
                writeln!(md)?;
            }
            writeln!(md)?;
        }
        let groups = ["YOUNG", "MIDDLE", "OLD"];
        let rows: Vec<Vec<usize>> = m.group_confusion.iter().map(|r| r.to_vec()).collect();
        let name = format!("confusion_groups_{s}.png");
        save(
            name.clone(),
            plot::confusion_matrix(&format!("age groups: {s}"), &groups, &rows),
        )?;
        writeln!(md, "![age-group confusion]({name})")?;
        let csv_name = format!("confusion_groups_{s}.csv");
        write_confusion_csv(&dir.join(&csv_name), &groups, &rows)?;
        csvs.push(csv_name);
        let chart = LineChart {
            title: format!("age groups one-vs-rest ROC: {s}"),
            x_label: "false positive rate".into(),
            y_label: "true positive rate".into(),
            series: (0..3)
                .filter(|g| !m.group_roc[*g].is_empty())
                .map(|g| Series {
                    name: format!("{} AUC {:.3}", groups[g], m.group_auc[g].unwrap_or(0.0)),
                    points: m.group_roc[g].clone(),
                })
                .collect(),
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            diagonal: true,
        };
        if !chart.series.is_empty() {
            let name = format!("roc_groups_{s}.png");
            save(name.clone(), plot::line_chart(&chart, 560, 480))?;
            writeln!(md, "![age-group ROC]({name})")?;
        }
        if m.gender_accuracy.is_some() {
            let rows: Vec<Vec<usize>> = m.gender_confusion.iter().map(|r| r.to_vec()).collect();
            let name = format!("confusion_gender_{s}.png");
            save(
                name.clone(),
                plot::confusion_matrix(&format!("gender: {s}"), &["male", "female"], &rows),
            )?;
            writeln!(md, "![gender confusion]({name})")?;
            let csv_name = format!("confusion_gender_{s}.csv");
            write_confusion_csv(&dir.join(&csv_name), &["male", "female"], &rows)?;
            csvs.push(csv_name);
        }
    }
    let with_roc: Vec<&Metrics> = outcome
        .metrics
        .iter()
        .filter(|m| !m.roc.is_empty())
        .collect();
    if !with_roc.is_empty() {
        let chart = LineChart {
            title: "gender ROC (positive: female)".into(),
            x_label: "false positive rate".into(),
            y_label: "true positive rate".into(),
            series: with_roc
                .iter()
                .map(|m| Series {
                    name: format!("{} AUC {:.4}", stem(&m.model), m.gender_auc.unwrap_or(0.0)),
                    points: m.roc.clone(),
                })
                .collect(),
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
            diagonal: true,
        };
        save("roc_gender.png".into(), plot::line_chart(&chart, 560, 480))?;
        writeln!(md, "\n![gender ROC](roc_gender.png)")?;
    }
    if let Some(h) = history.filter(|h| !h.is_empty()) {
        let xs = |f: &dyn Fn(&crate::trainer::EpochRecord) -> Option<f64>| {
            h.iter()
                .filter_map(|r| f(r).map(|y| (r.epoch as f64, y)))
                .collect::<Vec<_>>()
        };
        let mae = LineChart {
            title: "training history: age".into(),
            x_label: "epoch".into(),
            y_label: "years / loss".into(),
            series: vec![
                Series {
                    name: "validation age MAE (y)".into(),
                    points: xs(&|r| r.val_mae.map(f64::from)),
                },
                Series {
                    name: "train age loss".into(),
                    points: xs(&|r| Some(r.train_age_loss as f64)),
                },
            ],
            ..Default::default()
        };
        save("history_age.png".into(), plot::line_chart(&mae, 560, 400))?;
        let gender = LineChart {
            title: "training history: gender".into(),
            x_label: "epoch".into(),
            y_label: "%".into(),
            series: vec![Series {
                name: "validation gender accuracy (%)".into(),
                points: xs(&|r| Some(100.0 * r.val_gender_accuracy as f64)),
            }],
            ..Default::default()
        };
        save(
            "history_gender.png".into(),
            plot::line_chart(&gender, 560, 400),
        )?;
        writeln!(md, "\n## Training history\n")?;
        writeln!(
            md,
            "| epoch | train loss | val age MAE | val gender acc. | images/s | lr at end |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|")?;
        for r in h {
            writeln!(
                md,
                "| {} | {:.3} | {} | {:.1} % | {:.1} | {:.2e} |",
                r.epoch,
                r.train_loss,
                r.val_mae.map_or("-".into(), |m| format!("{m:.2}")),
                100.0 * r.val_gender_accuracy,
                r.images_per_s,
                r.lr_end
            )?;
        }
        writeln!(
            md,
            "\n![age history](history_age.png)\n![gender history](history_gender.png)"
        )?;
    }
    written.extend(csvs);
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, md).with_context(|| format!("cannot write {}", md_path.display()))?;
    written.push("report.md".into());
    let json_path = dir.join("metrics.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&outcome.metrics)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    written.push("metrics.json".into());
    Ok(written)
}

/// `true\predicted` table of counts, one row per true class.
fn write_confusion_csv(path: &Path, labels: &[&str], rows: &[Vec<usize>]) -> Result<()> {
    let mut text = format!("true\\predicted,{}\n", labels.join(","));
    for (label, row) in labels.iter().zip(rows) {
        let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
        text.push_str(&format!("{label},{}\n", cells.join(",")));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The one-line JSON summary printed last by `eval`: `{"n", "age_mae", "cs5", "gender_acc",
/// "group3_acc", …}` for the first model, with any further models under `"compared"`.
pub fn summary_line(outcome: &EvalOutcome) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        model: &'a str,
        n: usize,
        no_face: usize,
        /// Share of readable images whose face the detector found on the image as it is.
        found_direct: Option<f64>,
        age_mae: Option<f64>,
        cs5: Option<f64>,
        gender_acc: Option<f64>,
        gender_auc: Option<f64>,
        group3_acc: f64,
        group9_acc: Option<f64>,
        group9_within_one: Option<f64>,
        race_gender_gap: Option<f64>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        compared: Vec<Line<'a>>,
    }
    fn line<'a>(m: &'a Metrics, outcome: &EvalOutcome) -> Line<'a> {
        let readable = outcome.images - outcome.unreadable;
        Line {
            model: &m.model,
            n: m.faces,
            no_face: outcome.no_face,
            found_direct: (readable > 0).then(|| {
                (readable - outcome.no_face - outcome.found_padded) as f64 / readable as f64
            }),
            age_mae: m.age_mae,
            cs5: m.cs5,
            gender_acc: m.gender_accuracy,
            gender_auc: m.gender_auc,
            group3_acc: m.group_accuracy,
            group9_acc: m.group9_accuracy,
            group9_within_one: m.group9_within_one,
            race_gender_gap: m.race_gender_gap,
            compared: Vec::new(),
        }
    }
    let Some(first) = outcome.metrics.first() else {
        return "{}".into();
    };
    let mut top = line(first, outcome);
    top.compared = outcome
        .metrics
        .iter()
        .skip(1)
        .map(|m| line(m, outcome))
        .collect();
    serde_json::to_string(&top).unwrap_or_default()
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

    fn truth(age: Option<u32>, gender: Option<Gender>, race: Option<Race>) -> Truth {
        let limits = GroupLimits::default();
        Truth {
            source: "x".into(),
            age,
            gender,
            race,
            group: limits.group(age.unwrap_or(40) as f32),
            group9: age.map(|a| fairface_group_of(a as f32)),
        }
    }

    fn pred(age: f32, p_female: f32) -> Prediction {
        let mut p_group = [0.0; 3];
        p_group[group_index(GroupLimits::default().group(age))] = 1.0;
        Prediction {
            age,
            age_low: age - 3.0,
            age_high: age + 3.0,
            p_female,
            p_group,
        }
    }

    #[test]
    fn auc_matches_hand_counts() {
        // Perfect ranking, inverted ranking, and one swapped pair of 2×2.
        let l = [true, true, false, false];
        assert_eq!(roc(&l, &[0.9, 0.8, 0.2, 0.1]).unwrap().1, 1.0);
        assert_eq!(roc(&l, &[0.1, 0.2, 0.8, 0.9]).unwrap().1, 0.0);
        assert_eq!(roc(&l, &[0.9, 0.3, 0.5, 0.1]).unwrap().1, 0.75);
        // All scores tied: the curve is the diagonal, AUC one half.
        let (curve, auc) = roc(&l, &[0.5; 4]).unwrap();
        assert_eq!(auc, 0.5);
        assert_eq!(curve, vec![(0.0, 0.0), (1.0, 1.0)]);
        assert!(roc(&[true, true], &[0.1, 0.2]).is_none());
    }

    #[test]
    fn metrics_from_hand_made_faces() {
        use Gender::*;
        let truths = vec![
            truth(Some(20), Some(Male), Some(Race::White)),
            truth(Some(40), Some(Female), Some(Race::Black)),
            truth(Some(70), Some(Female), Some(Race::White)),
            truth(Some(5), Some(Male), Some(Race::Asian)),
        ];
        let preds = vec![
            pred(22.0, 0.1), // off 2, right gender, YOUNG right
            pred(31.0, 0.4), // off 9, wrong gender, MIDDLE right
            pred(58.0, 0.9), // off 12, right gender, OLD predicted MIDDLE
            pred(5.0, 0.2),  // off 0, right gender
        ];
        let m = metrics("m", &truths, &preds, &GroupLimits::default());
        assert_eq!(m.faces, 4);
        assert!((m.age_mae.unwrap() - 23.0 / 4.0).abs() < 1e-9);
        assert_eq!(m.cs5, Some(0.5));
        assert_eq!(m.age_range_coverage, Some(0.5));
        assert_eq!(m.gender_accuracy, Some(0.75));
        assert_eq!(m.gender_confusion, [[2, 0], [1, 1]]);
        assert_eq!(m.group_confusion, [[2, 0, 0], [0, 1, 0], [0, 1, 0]]);
        assert!((m.group_accuracy - 0.75).abs() < 1e-9);
        // Female scores 0.4 and 0.9 vs male 0.1, 0.2: every female above every male.
        assert_eq!(m.gender_auc, Some(1.0));
        // YOUNG faces (20, 5) are exactly the ones scored YOUNG; OLD is never scored OLD.
        assert_eq!(m.group_auc[0], Some(1.0));
        assert_eq!(m.group_auc[2], Some(0.5));
        let white = m.by_race.iter().find(|s| s.name == "white").unwrap();
        assert_eq!((white.n, white.mae), (2, Some(7.0)));
        // 9 groups: 20→20-29 right, 40→30-39 (one off), 70→50-59 (two off), 5→3-9 right.
        assert_eq!(m.group9_accuracy, Some(0.5));
        assert_eq!(m.group9_within_one, Some(0.75));
        // Fewer than 50 faces per race: no gap claimed.
        assert_eq!(m.race_gender_gap, None);
        let decades: Vec<&str> = m.by_decade.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(decades, ["0-9", "20-29", "40-49", "70-79"]);
        let female = m.by_gender.iter().find(|s| s.name == "female").unwrap();
        assert_eq!(female.gender_accuracy, Some(0.5));
    }

    #[test]
    fn group_only_labels_still_score_groups() {
        let limits = GroupLimits::default();
        let truths = vec![
            Truth {
                source: "a".into(),
                age: None,
                gender: None,
                race: None,
                group: AgeGroup::Old,
                group9: Some(7),
            },
            Truth {
                source: "b".into(),
                age: None,
                gender: None,
                race: None,
                group: AgeGroup::Young,
                group9: None,
            },
        ];
        let m = metrics("k", &truths, &[pred(65.0, 0.5), pred(45.0, 0.5)], &limits);
        assert_eq!(m.age_mae, None);
        assert_eq!(m.gender_accuracy, None);
        assert_eq!(m.gender_auc, None);
        assert!((m.group_accuracy - 0.5).abs() < 1e-9);
        // The 60-69 label and a 65-year estimate: the 9-group is right, scored on that face only.
        assert_eq!(m.group9_accuracy, Some(1.0));
    }

    /// Per-race gender accuracy: the gap between the best and the worst race counts races with
    /// at least 50 faces only.
    #[test]
    fn race_gender_gap_spans_best_and_worst_race() {
        use Gender::*;
        let mut truths = Vec::new();
        let mut preds = Vec::new();
        for (race, wrong) in [(Race::EastAsian, 5), (Race::Black, 12), (Race::White, 0)] {
            for i in 0..50 {
                truths.push(truth(Some(30), Some(Female), Some(race)));
                preds.push(pred(30.0, if i < wrong { 0.2 } else { 0.8 }));
            }
        }
        // A race with a handful of faces does not set the gap.
        truths.push(truth(Some(30), Some(Female), Some(Race::Other)));
        preds.push(pred(30.0, 0.1));
        let m = metrics("m", &truths, &preds, &GroupLimits::default());
        assert!((m.race_gender_gap.unwrap() - 0.24).abs() < 1e-9);
        let names: Vec<&str> = m.by_race.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["white", "black", "other", "eastasian"]);
    }

    /// 40–49 and 50–59 faces per race: the share estimated in a younger FairFace group, and of
    /// all of them; other ages and older estimates do not count as younger.
    #[test]
    fn younger_shares_count_faces_put_in_a_younger_group() {
        let mut truths = Vec::new();
        let mut preds = Vec::new();
        let mut add = |age: u32, race: Race, estimate: f32| {
            truths.push(truth(Some(age), None, Some(race)));
            preds.push(pred(estimate, 0.5));
        };
        // Black 40-49: 3 of 4 younger (39.9 is in 30-39; 52 is older, not younger).
        for e in [39.9, 25.0, 35.0, 52.0] {
            add(45, Race::Black, e);
        }
        // White 40-49: 1 of 2; White 50-59: 2 of 2.
        add(41, Race::White, 40.0);
        add(48, Race::White, 12.0);
        add(55, Race::White, 49.5);
        add(59, Race::White, 30.0);
        // Ages outside the two groups are not followed.
        add(30, Race::White, 10.0);
        add(65, Race::Black, 20.0);
        let m = metrics("m", &truths, &preds, &GroupLimits::default());
        let got: Vec<(&str, &str, usize, f64)> = m
            .younger
            .iter()
            .map(|y| (y.race.as_str(), y.group.as_str(), y.n, y.younger))
            .collect();
        assert_eq!(
            got,
            [
                ("white", "40-49", 2, 0.5),
                ("black", "40-49", 4, 0.75),
                ("all", "40-49", 6, 4.0 / 6.0),
                ("white", "50-59", 2, 1.0),
                ("all", "50-59", 2, 1.0),
            ]
        );
    }
}
