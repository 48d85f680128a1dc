//! `teacher-label`: a crop cache labelled by the teacher (CACHE/teacher.csv) for distillation.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX teacher written by import-teacher.
    #[arg(long, value_name = "FILE.onnx")]
    teacher: PathBuf,
    /// A crop cache made by `crops`.
    #[arg(long, value_name = "CACHE")]
    cache: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let model = agecam_host::teacher::Teacher::load(&a.teacher)?;
    let t = std::time::Instant::now();
    let n = agecam_host::teacher::label_cache(&model, &a.cache, &|i, total| {
        if i % 5000 == 0 && i > 0 {
            log::info!("{i}/{total} crops labelled");
        }
    })?;
    println!(
        "labelled {n} crops in {:.0} s: {}",
        t.elapsed().as_secs_f32(),
        a.cache.join(agecam_host::teacher::CACHE_LABELS).display()
    );
    Ok(ExitCode::SUCCESS)
}
