//! `export`: a checkpoint exported to ONNX with the device's metadata.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoint folder written by `train`.
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    agecam_host::trainer::export(&a.checkpoint, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
