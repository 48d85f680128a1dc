//! `eval`: models scored on a labelled dataset through the device's own code, with a report.

use super::Format;
use agecam::cli;
use agecam_host::dataset::GroupLimits;
use agecam_host::trainer;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ONNX model(s) to score on the same faces; repeat to compare (e.g. float and int8).
    /// Default: the manifest's int8 age/gender model, else its float one.
    #[arg(long = "model", value_name = "M.onnx")]
    models: Vec<PathBuf>,
    /// The dataset folder.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// Folder to write report.md, metrics.json and the charts into.
    #[arg(long, value_name = "DIR")]
    report: PathBuf,
    /// Share of images (by a hash of the file name) in the validation split that is scored.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    val_split: f64,
    /// Score every image instead of the validation split (for a dataset never trained on).
    #[arg(long)]
    all: bool,
    /// First age of the MIDDLE group (YOUNG is below it).
    #[arg(long, default_value_t = 30)]
    middle_from: u32,
    /// First age of the OLD group.
    #[arg(long, default_value_t = 60)]
    old_from: u32,
    /// A checkpoint's history.json, to chart training history in the report.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Model folder (manifest.json) with the face detector; default as for `predict`.
    #[arg(long, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Score at most this many images, evenly spaced over the chosen ones (quick checks).
    #[arg(long)]
    max_images: Option<usize>,
    /// Score faces as a camera sees them at this height in pixels: each picture is scaled
    /// down so the face box found in it is PX high and JPEG-compressed (quality 75) before the
    /// crop is cut from it (the detector still runs on the full picture). Faces already
    /// smaller are scored as they are.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(8..))]
    face_height: Option<u32>,
    /// Score each face as a visit of K frames (shifted, scaled and brightened a little in
    /// each, the detector run on every one): the first frame alone, the every-frame daemon
    /// and the scheduled daemon (the config's `[schedule]`), side by side per model.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(2..=120))]
    visit_frames: Option<u32>,
    /// Divide this much of each model's age prior out of its estimates (0-1), as the device's
    /// `model.age_prior_correction` does [default: the config's].
    #[arg(long, value_name = "TAU")]
    pub age_prior_correction: Option<f32>,
    /// Also write every face's label and each model's age distribution (one row per model
    /// and face: model, source, age, FairFace group, race, gender, P(female), then one column
    /// per age bin) to this CSV file, for analysis outside the report. One frame per face only.
    #[arg(long, value_name = "FILE")]
    pub distributions: Option<PathBuf>,
    /// Add the horizontally flipped crop's probabilities to each crop's (test-time
    /// augmentation: two network runs per face), to measure whether the device should.
    #[arg(long)]
    flip: bool,
}

pub fn run(config_file: Option<&Path>, a: &Args) -> anyhow::Result<ExitCode> {
    use agecam_host::eval::{self, EvalRun, Subset};
    super::check_val_split(a.val_split)?;
    anyhow::ensure!(
        0 < a.middle_from && a.middle_from < a.old_from,
        "--middle-from {} must be above 0 and below --old-from {}",
        a.middle_from,
        a.old_from
    );
    let config = cli::load_config(config_file)?;
    let model_dir = cli::model_dir(a.models_dir.as_deref(), config_file, &config);
    let verified = agecam::model::verified_models(&model_dir, &config.model)?;
    let models = if a.models.is_empty() {
        // The model `model.use` selects, int8 first, as the device loads it.
        let found = verified.age_gender().next().map(|f| f.path.clone());
        vec![found.ok_or_else(|| {
            anyhow::anyhow!(
                "{} lists no age/gender model; give one with --model M.onnx",
                verified.manifest_file.display()
            )
        })?]
    } else {
        a.models.clone()
    };
    let mut detector = agecam::pipeline::load_detector(&verified, &config.detector)?;
    let limits = GroupLimits {
        middle_from: a.middle_from,
        old_from: a.old_from,
    };
    let loaded = a.format.load(&a.data, &limits)?;
    let history = match &a.history {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read --history {} ({e})", p.display()))?;
            let h: Vec<trainer::EpochRecord> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "--history {} is not a checkpoint's history.json ({e})",
                    p.display()
                )
            })?;
            Some(h)
        }
        None => None,
    };
    let subset = if a.all {
        Subset::All
    } else {
        Subset::Validation(a.val_split)
    };
    let run = EvalRun {
        models: &models,
        samples: &loaded.samples,
        subset,
        limits,
        crop_margin: config.detector.crop_margin,
        max_images: a.max_images,
        face_height: a.face_height,
        flip: a.flip,
        age_prior_correction: a
            .age_prior_correction
            .unwrap_or(config.model.age_prior_correction),
        visits: a.visit_frames.map(|frames| eval::VisitSim {
            frames,
            schedule: config.schedule,
        }),
    };
    if let Some(k) = a.visit_frames {
        // The scheduled daemon needs three detector frames for a visit (the statistics'
        // tracker drops shorter tracks as noise): frames 0, N and 2N.
        let least = 2 * config.schedule.detect_every + 1;
        anyhow::ensure!(
            k >= least,
            "--visit-frames {k} is too short for schedule.detect_every = {}: the scheduled daemon sees a face on every {}th frame and counts a visit from 3 sightings; give at least {least}",
            config.schedule.detect_every,
            config.schedule.detect_every
        );
    }
    let outcome = eval::evaluate(&run, detector.as_mut())?;
    let files = eval::write_report(
        &a.report,
        &outcome,
        &a.data,
        subset,
        &limits,
        history.as_deref(),
    )?;
    for m in &outcome.metrics {
        let opt = |v: Option<f64>, scale: f64, unit: &str| {
            v.map_or("-".to_string(), |v| format!("{:.2}{unit}", v * scale))
        };
        println!(
            "{}: {} faces, age MAE {}, CS(5) {}, gender {}, 3-group {:.1}%",
            m.model,
            m.faces,
            opt(m.age_mae, 1.0, " y"),
            opt(m.cs5, 100.0, "%"),
            opt(m.gender_accuracy, 100.0, "%"),
            100.0 * m.group_accuracy
        );
    }
    println!(
        "{} images, {} without a detected face, {} unreadable; report in {} ({})",
        outcome.images,
        outcome.no_face,
        outcome.unreadable,
        a.report.display(),
        files.join(", ")
    );
    println!("{}", eval::summary_line(&outcome));
    if let Some(path) = &a.distributions {
        anyhow::ensure!(
            a.visit_frames.is_none(),
            "--distributions is for one frame per face; leave out --visit-frames"
        );
        write_distributions(path, &models, &outcome)
            .map_err(|e| anyhow::anyhow!("cannot write {} ({e})", path.display()))?;
        println!("age distributions per face in {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `eval --distributions`: one CSV row per model and face.
fn write_distributions(
    path: &Path,
    models: &[PathBuf],
    outcome: &agecam_host::eval::EvalOutcome,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for ((model, dists), predictions) in models
        .iter()
        .zip(&outcome.distributions)
        .zip(&outcome.predictions)
    {
        for ((truth, prediction), dist) in outcome.truths.iter().zip(predictions).zip(dists) {
            let opt = |v: Option<String>| v.unwrap_or_default();
            write!(
                out,
                "{},{},{},{},{},{},{:.6}",
                model.display(),
                truth.source,
                opt(truth.age.map(|a| a.to_string())),
                opt(truth.group9.map(|g| g.to_string())),
                opt(truth.race.map(|r| format!("{r:?}"))),
                opt(truth.gender.map(|g| format!("{g:?}"))),
                prediction.p_female,
            )?;
            for p in dist {
                write!(out, ",{p:.6}")?;
            }
            writeln!(out)?;
        }
    }
    out.flush()
}
