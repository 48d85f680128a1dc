//! The evaluation written up: `report.md`, `metrics.json`, confusion matrices as CSV, the
//! PNG charts (ROC, age error, training history) and the one-line summary.

use super::metrics::{Metrics, YOUNGER_GROUPS};
use super::run::{EvalOutcome, Subset};
use super::EvalError;
use crate::crops::CAMERA_JPEG_QUALITY;
use crate::dataset::GroupLimits;
use crate::plot::{self, LineChart, Series};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

type Result<T> = std::result::Result<T, EvalError>;

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
    std::fs::create_dir_all(dir).map_err(|source| EvalError::CreateReport {
        path: dir.to_path_buf(),
        source,
    })?;
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
    std::fs::write(&md_path, md).map_err(|source| EvalError::Write {
        path: md_path.clone(),
        source,
    })?;
    written.push("report.md".into());
    let json_path = dir.join("metrics.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&outcome.metrics)?).map_err(
        |source| EvalError::Write {
            path: json_path.clone(),
            source,
        },
    )?;
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
    std::fs::write(path, text).map_err(|source| EvalError::Write {
        path: path.to_path_buf(),
        source,
    })
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
