//! What leaves the store: k-anonymous (and optionally noised) aggregates.
//!
//! Rules, applied per interval and per age bucket, on the true counts:
//! 1. a bucket whose gender cells are all 0 or ≥ k is published as it is;
//! 2. otherwise, if the bucket's total is ≥ k, its genders are merged into one cell with
//!    gender `any` (so no small gender cell can be recovered by subtraction);
//! 3. otherwise the bucket is suppressed: it is left out and `suppressed_cells` counts it.
//!
//! No exact total is published beside suppressed buckets, because total − published would
//! reveal them. With `epsilon > 0`, Laplace noise of scale 1/ε is added to every published
//! count (rounded, never below 0) for ε-differential privacy of each count.
//!
//! Attention follows the same k: a published cell's `watchers` and `attention_s` are given
//! only when both its watchers and its other visits are 0 or ≥ k (so neither a small group of
//! watchers nor, by subtracting watchers from visits, a small group of non-watchers can be
//! recovered) and every visit in it had a pose to tell; otherwise both are `null`. No sum of
//! watchers over cells is published. With `epsilon > 0`, watchers get Laplace noise of scale
//! 1/ε and attention seconds of scale [`ATTENTION_CAP_S`]/ε (one visit adds at most that).

use super::aggregate::{CellAttention, IntervalStats, ATTENTION_CAP_S};
use rand::RngExt;
use std::collections::BTreeMap;

/// The version of the published interval's JSON (the fleet push schema): 2 added
/// `schema` and each cell's `watchers` and `attention_s`; version 1 had neither.
pub const SCHEMA_VERSION: u32 = 2;

/// Gender label of a merged cell.
pub const ANY_GENDER: &str = "any";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacySettings {
    /// Smallest count published (k of k-anonymity); 1 disables suppression.
    pub k: u32,
    /// Laplace noise parameter; 0 disables noise.
    pub epsilon: f64,
}

impl Default for PrivacySettings {
    /// The `[stats]` section's defaults (k = 5, no noise): one default, the config's.
    fn default() -> Self {
        PrivacySettings::from_config(&crate::config::StatsConfig::default())
    }
}

impl PrivacySettings {
    /// What every export and push publishes under: `stats.k_anonymity` and
    /// `stats.laplace_epsilon`.
    pub fn from_config(stats: &crate::config::StatsConfig) -> PrivacySettings {
        PrivacySettings {
            k: stats.k_anonymity,
            epsilon: stats.laplace_epsilon,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublishedCell {
    pub age_bucket: String,
    pub gender: String,
    pub visits: u32,
    /// Visits that looked at the screen for `attention.min_seconds` or longer; `None` (null)
    /// when k-anonymity withholds it or some visit had no pose.
    pub watchers: Option<u32>,
    /// Seconds the cell's visits spent looking, to 0.1 s; `None` exactly when `watchers` is.
    pub attention_s: Option<f64>,
}

/// One interval as exported or pushed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublishedInterval {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// `unit@start`: stable, so a receiver can drop a re-sent interval.
    pub id: String,
    pub unit_id: String,
    pub start: i64,
    pub end: i64,
    pub uptime_s: f64,
    pub frames: u64,
    pub camera_faults: u64,
    pub cells: Vec<PublishedCell>,
    /// Age buckets left out because they held fewer than k visits.
    pub suppressed_cells: u32,
    /// Mean dwell in seconds, only when the interval has at least k visits.
    pub dwell_mean_s: Option<f64>,
}

/// Applies the rules above to one interval.
pub fn publish(interval: &IntervalStats, settings: &PrivacySettings) -> PublishedInterval {
    publish_with(interval, settings, &mut rand::rng())
}

/// [`publish`] with a given random source (tests use a seeded one).
pub fn publish_with(
    interval: &IntervalStats,
    settings: &PrivacySettings,
    rng: &mut impl rand::Rng,
) -> PublishedInterval {
    let k = settings.k.max(1);
    let mut buckets: BTreeMap<&str, Vec<(&str, u32, CellAttention)>> = BTreeMap::new();
    for ((bucket, gender), &visits) in &interval.cells {
        if visits > 0 {
            let attention = interval
                .attention
                .get(&(bucket.clone(), gender.clone()))
                .copied()
                .unwrap_or_default();
            buckets
                .entry(bucket)
                .or_default()
                .push((gender, visits, attention));
        }
    }
    let cell = |bucket: &str, gender: &str, visits: u32, a: &CellAttention| {
        let others = visits.saturating_sub(a.watchers);
        let shown = a.posed >= visits
            && (a.watchers == 0 || a.watchers >= k)
            && (others == 0 || others >= k);
        PublishedCell {
            age_bucket: bucket.to_string(),
            gender: gender.to_string(),
            visits,
            watchers: shown.then_some(a.watchers),
            attention_s: shown.then_some(a.attention_s),
        }
    };
    let mut cells = Vec::new();
    let mut suppressed_cells = 0;
    for (bucket, genders) in buckets {
        let total: u32 = genders.iter().map(|g| g.1).sum();
        if genders.iter().all(|&(_, v, _)| v >= k) {
            cells.extend(
                genders
                    .iter()
                    .map(|(gender, visits, a)| cell(bucket, gender, *visits, a)),
            );
        } else if total >= k {
            let mut merged = CellAttention::default();
            for (_, _, a) in &genders {
                merged.add(a);
            }
            cells.push(cell(bucket, ANY_GENDER, total, &merged));
        } else {
            suppressed_cells += 1;
        }
    }
    if settings.epsilon > 0.0 {
        for cell in &mut cells {
            let noisy = cell.visits as f64 + laplace(rng, 1.0 / settings.epsilon);
            cell.visits = noisy.round().max(0.0) as u32;
            if let Some(w) = cell.watchers {
                let noisy = w as f64 + laplace(rng, 1.0 / settings.epsilon);
                cell.watchers = Some((noisy.round().max(0.0) as u32).min(cell.visits));
            }
            if let Some(a) = cell.attention_s {
                let noisy = a + laplace(rng, ATTENTION_CAP_S / settings.epsilon);
                cell.attention_s = Some(noisy.max(0.0));
            }
        }
    }
    let length = interval.length_s.max(1) as f64;
    for cell in &mut cells {
        // To 0.1 s, and never more than the cell's visits could have looked.
        cell.attention_s = cell
            .attention_s
            .map(|a| ((a.min(cell.visits as f64 * length)) * 10.0).round() / 10.0);
    }
    let visits = interval.visits();
    PublishedInterval {
        schema: SCHEMA_VERSION,
        id: interval.id(),
        unit_id: interval.unit_id.clone(),
        start: interval.start,
        end: interval.start + interval.length_s,
        uptime_s: (interval.uptime_s * 10.0).round() / 10.0,
        frames: interval.frames,
        camera_faults: interval.camera_faults,
        cells,
        suppressed_cells,
        dwell_mean_s: (visits >= k && visits > 0)
            .then(|| ((interval.dwell_total_s / visits as f64) * 10.0).round() / 10.0),
    }
}

/// An interval's JSON form: the published interval with readable UTC times, on one line.
/// This is both what `agecam stats export --format json` prints per interval and the payload
/// of one fleet-push message.
pub fn to_json(interval: &PublishedInterval) -> String {
    #[derive(serde::Serialize)]
    struct JsonInterval<'a> {
        #[serde(flatten)]
        interval: &'a PublishedInterval,
        start_time: String,
        end_time: String,
    }
    let json = JsonInterval {
        interval,
        start_time: rfc3339(interval.start),
        end_time: rfc3339(interval.end),
    };
    // Plain numbers, strings and Option: serialising cannot fail.
    serde_json::to_string(&json).unwrap_or_default()
}

/// Unix seconds as an RFC 3339 UTC time (`2026-11-23T00:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// A Laplace(0, scale) sample by inverse transform.
fn laplace(rng: &mut impl rand::Rng, scale: f64) -> f64 {
    let u: f64 = rng.random::<f64>() - 0.5;
    -scale * u.signum() * (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn interval(cells: &[(&str, &str, u32)]) -> IntervalStats {
        let mut i = IntervalStats {
            unit_id: "u1".into(),
            start: 900,
            length_s: 900,
            dwell_total_s: 120.0,
            ..Default::default()
        };
        for (b, g, v) in cells {
            i.cells.insert((b.to_string(), g.to_string()), *v);
        }
        i
    }

    fn cells(p: &PublishedInterval) -> Vec<(String, String, u32)> {
        p.cells
            .iter()
            .map(|c| (c.age_bucket.clone(), c.gender.clone(), c.visits))
            .collect()
    }

    #[test]
    fn large_cells_pass_small_gender_cells_merge_small_buckets_vanish() {
        let i = interval(&[
            ("25-34", "female", 7),
            ("25-34", "male", 5),
            ("35-44", "female", 6),
            ("35-44", "male", 2),
            ("65+", "male", 3),
            ("0-12", "unknown", 1),
        ]);
        let p = publish(&i, &PrivacySettings::default());
        assert_eq!(
            cells(&p),
            vec![
                ("25-34".into(), "female".into(), 7),
                ("25-34".into(), "male".into(), 5),
                ("35-44".into(), "any".into(), 8),
            ]
        );
        assert_eq!(p.suppressed_cells, 2);
        assert_eq!(p.id, "u1@900");
        assert_eq!(p.end, 1800);
        assert_eq!(p.dwell_mean_s, Some(5.0));
        // Nothing published lets the 2 or the 3 be recovered: no exact total is given.
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            !json.contains("\"visits\":2")
                && !json.contains("\"visits\":3")
                && !json.contains("24"),
            "{json}"
        );
    }

    /// Distant visitors (faces under `model.min_face_size`) have their own `unknown` cell,
    /// under the same rules as every other.
    #[test]
    fn the_unknown_cell_follows_the_same_rules() {
        let many = interval(&[("unknown", "unknown", 6), ("25-34", "female", 5)]);
        let p = publish(&many, &PrivacySettings::default());
        assert_eq!(
            cells(&p),
            vec![
                ("25-34".into(), "female".into(), 5),
                ("unknown".into(), "unknown".into(), 6),
            ]
        );
        let few = interval(&[("unknown", "unknown", 4), ("25-34", "female", 5)]);
        let p = publish(&few, &PrivacySettings::default());
        assert_eq!(cells(&p), vec![("25-34".into(), "female".into(), 5)]);
        assert_eq!(p.suppressed_cells, 1);
    }

    #[test]
    fn k_of_one_publishes_everything_and_few_visits_hide_the_dwell() {
        let i = interval(&[("65+", "male", 1)]);
        let p = publish(&i, &PrivacySettings { k: 1, epsilon: 0.0 });
        assert_eq!(cells(&p), vec![("65+".into(), "male".into(), 1)]);
        let p = publish(&i, &PrivacySettings::default());
        assert!(p.cells.is_empty());
        assert_eq!(p.dwell_mean_s, None);
    }

    fn with_attention(
        mut i: IntervalStats,
        cells: &[(&str, &str, u32, u32, f64)],
    ) -> IntervalStats {
        for &(b, g, posed, watchers, attention_s) in cells {
            i.attention.insert(
                (b.to_string(), g.to_string()),
                CellAttention {
                    posed,
                    watchers,
                    attention_s,
                },
            );
        }
        i
    }

    fn attention(p: &PublishedInterval) -> Vec<(String, Option<u32>, Option<f64>)> {
        p.cells
            .iter()
            .map(|c| (c.gender.clone(), c.watchers, c.attention_s))
            .collect()
    }

    /// Watchers are published only when neither they nor the rest of the cell's visits form a
    /// group smaller than k, and only when every visit had a pose.
    #[test]
    fn watchers_follow_k_on_both_sides_of_the_split() {
        let k5 = PrivacySettings::default();
        let base = interval(&[("25-34", "female", 12), ("25-34", "male", 9)]);
        // 5 of 12 and 7 of 12 looked: both groups ≥ 5, published. 9 of 9: nobody is left
        // out, published.
        let i = with_attention(
            base.clone(),
            &[
                ("25-34", "female", 12, 5, 31.04),
                ("25-34", "male", 9, 9, 20.0),
            ],
        );
        let p = publish(&i, &k5);
        assert_eq!(
            attention(&p),
            [
                ("female".into(), Some(5), Some(31.0)),
                ("male".into(), Some(9), Some(20.0))
            ]
        );
        // 8 of 9 looked: the one who did not would be 9 − 8 = 1: withheld. 2 of 12 looked:
        // withheld. Visits still published.
        let i = with_attention(
            base.clone(),
            &[
                ("25-34", "female", 12, 2, 3.0),
                ("25-34", "male", 9, 8, 20.0),
            ],
        );
        let p = publish(&i, &k5);
        assert_eq!(
            attention(&p),
            [("female".into(), None, None), ("male".into(), None, None)]
        );
        assert_eq!(p.cells[0].visits, 12);
        // A visit without a pose in the cell: its watchers are unknown, withheld.
        let i = with_attention(base, &[("25-34", "female", 11, 0, 0.0)]);
        assert_eq!(publish(&i, &k5).cells[0].watchers, None);
        // Merged genders merge their attention too.
        let i = with_attention(
            interval(&[("35-44", "female", 6), ("35-44", "male", 2)]),
            &[("35-44", "female", 6, 6, 9.0), ("35-44", "male", 2, 2, 6.0)],
        );
        assert_eq!(
            attention(&publish(&i, &k5)),
            [("any".into(), Some(8), Some(15.0))]
        );
        // k = 1 publishes every split.
        let i = with_attention(
            interval(&[("65+", "male", 1)]),
            &[("65+", "male", 1, 1, 2.5)],
        );
        let p = publish(&i, &PrivacySettings { k: 1, epsilon: 0.0 });
        assert_eq!(attention(&p), [("male".into(), Some(1), Some(2.5))]);
        let json = to_json(&p);
        assert!(
            json.starts_with("{\"schema\":2,")
                && json.contains("\"watchers\":1,\"attention_s\":2.5}"),
            "{json}"
        );
    }

    #[test]
    fn noised_watchers_never_exceed_visits_nor_attention_the_interval() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let i = with_attention(
            interval(&[("25-34", "female", 10)]),
            &[("25-34", "female", 10, 10, 100.0)],
        );
        let settings = PrivacySettings { k: 5, epsilon: 0.1 };
        let mut moved = false;
        for _ in 0..200 {
            let c = &publish_with(&i, &settings, &mut rng).cells[0];
            let (w, a) = (c.watchers.unwrap(), c.attention_s.unwrap());
            assert!(w <= c.visits, "{c:?}");
            assert!((0.0..=c.visits as f64 * 900.0).contains(&a), "{c:?}");
            moved |= a != 100.0;
        }
        assert!(moved, "noise applied to attention");
    }

    #[test]
    fn laplace_noise_has_the_right_scale_and_is_applied() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 20_000;
        let samples: Vec<f64> = (0..n).map(|_| laplace(&mut rng, 2.0)).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let mean_abs = samples.iter().map(|s| s.abs()).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.1, "{mean}");
        assert!((mean_abs - 2.0).abs() < 0.1, "E|X| = scale: {mean_abs}");
        let i = interval(&[("25-34", "female", 50)]);
        let noisy: Vec<u32> = (0..50)
            .map(|_| {
                publish_with(&i, &PrivacySettings { k: 5, epsilon: 0.5 }, &mut rng).cells[0].visits
            })
            .collect();
        assert!(noisy.iter().any(|&v| v != 50), "noise applied");
        let mean = noisy.iter().sum::<u32>() as f64 / noisy.len() as f64;
        assert!((mean - 50.0).abs() < 2.0, "{mean}");
    }
}
