//! `time-models`: milliseconds per face of each model file, as the device runs them.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ONNX age/gender models (e.g. the f32 export and its quantized forms).
    #[arg(required = true, value_name = "MODEL.onnx")]
    models: Vec<PathBuf>,
    #[arg(long, default_value_t = 50)]
    runs: usize,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    // As the device loads and runs them (one face at a time), round-robin.
    let times = agecam::model::inspect::time_forms(&a.models, a.runs)?;
    println!("{:<24} {:>12} {:>12}", "model", "bytes", "ms per face");
    for (path, (name, ms)) in a.models.iter().zip(times) {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!("{name:<24} {bytes:>12} {ms:>12.2}");
    }
    Ok(ExitCode::SUCCESS)
}
