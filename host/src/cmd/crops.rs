//! `crops`: training crops cut by the device's detector and crop code over a dataset, cached.

use super::Format;
use agecam::cli;
use agecam_host::dataset::GroupLimits;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset folder.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// The cache folder to fill.
    #[arg(long, value_name = "CACHE")]
    out: PathBuf,
    /// Model folder (manifest.json) with the face detector; default as for `predict`.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Cut aligned crops (turned so the eyes are level, scaled by their distance; faces
    /// without landmarks get box crops), recorded in the cache; a model trained on them
    /// says so in its metadata (`agecam.crop`).
    #[arg(long)]
    align: bool,
    /// Side of the cached crops in pixels: at least the input size training will use
    /// (160 px training needs `--size 160`).
    #[arg(long, default_value_t = agecam_host::crops::CROP_SIZE, value_name = "N",
          value_parser = clap::value_parser!(u32).range(16..=1024))]
    size: u32,
}

pub fn run(config_file: Option<&Path>, a: &Args) -> anyhow::Result<ExitCode> {
    let (data, out) = (&a.data, &a.out);
    let config = cli::load_config(config_file)?;
    let model_dir = cli::model_dir(a.models.as_deref(), config_file, &config);
    let verified = agecam::model::verified_models(&model_dir, &config.model)?;
    let mut detector = agecam::pipeline::load_detector(&verified, &config.detector)?;
    let limits = GroupLimits::default();
    let loaded = a.format.load(data, &limits)?;
    let labelled = loaded
        .samples
        .iter()
        .filter(|s| (s.age.is_some() || s.age_range.is_some()) && s.gender.is_some())
        .count();
    anyhow::ensure!(
        labelled > 0,
        "{} has no images labelled with an age (or age group) and a gender (training needs both)",
        data.display()
    );
    let bar = indicatif::ProgressBar::new(loaded.samples.len() as u64);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let framing = agecam::vision::crop::Framing {
        style: if a.align {
            agecam::vision::crop::CropStyle::Eyes(agecam::vision::crop::EYES)
        } else {
            agecam::vision::crop::CropStyle::Box
        },
        margin: config.detector.crop_margin(None),
    };
    let report = agecam_host::crops::make_crops(
        &loaded.samples,
        detector.as_mut(),
        framing,
        a.size,
        out,
        &|i, r| {
            bar.set_position(i as u64);
            if i % 2000 == 0 && i > 0 {
                log::info!(
                    "{i}/{}: {} direct, {} padded, {} missed",
                    r.total,
                    r.found_direct,
                    r.found_padded,
                    r.missed
                );
            }
        },
    )?;
    bar.finish_and_clear();
    let done = report.found_direct + report.found_padded;
    println!("images:            {}", report.total);
    println!("already cached:    {}", report.cached_before);
    println!(
        "face found:        {done} ({} directly, {} only after padding)",
        report.found_direct, report.found_padded
    );
    println!("no face (missed):  {}", report.missed);
    println!("unreadable:        {}", report.unreadable);
    let tried = done + report.missed;
    if tried > 0 {
        println!(
            "miss rate:         {:.2}% of all images ({:.2}% before padding)",
            100.0 * report.missed as f64 / report.total.max(1) as f64,
            100.0 * (report.missed + report.found_padded) as f64 / tried as f64
        );
    }
    println!("crops in {}", out.display());
    Ok(ExitCode::SUCCESS)
}
