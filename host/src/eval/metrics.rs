//! The scores of an evaluation, computed from each face's truth and a model's predictions:
//! age error and CS(5), gender accuracy and ROC, 3-group accuracy and confusion, per slice
//! (dataset group, race, gender) and the younger-group shares. No I/O.

use crate::dataset::{fairface_group_of, AgeGroup, GroupLimits, Race, Sample, FAIRFACE_GROUPS};
use agecam::model::{AgeGender, Gender};
use serde::Serialize;

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

pub(super) fn group_index(g: AgeGroup) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

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
