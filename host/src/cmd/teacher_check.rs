//! `teacher-check`: the imported teacher run by tract next to face-api's own outputs.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ONNX teacher written by import-teacher.
    #[arg(long, value_name = "FILE.onnx")]
    model: PathBuf,
    /// reference.mjs output (JSON; crop paths relative to its folder).
    #[arg(long, value_name = "FILE.json")]
    reference: PathBuf,
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f32,
    /// Timed runs of one face (0: no timing).
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let c = agecam_host::teacher::compare_with_reference(&a.model, &a.reference, a.runs)?;
    println!("{c}");
    let worst = c.max_abs_diff();
    let tolerance = a.tolerance;
    anyhow::ensure!(
        worst <= tolerance,
        "{} differs from face-api's outputs in {} by {worst:.3e} (> {tolerance:e})",
        a.model.display(),
        a.reference.display()
    );
    Ok(ExitCode::SUCCESS)
}
