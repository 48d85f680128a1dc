//! `convert-detector`: a float TFLite face detector converted into the ONNX file the device runs.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The TFLite model, e.g. face_detection_short_range.tflite.
    #[arg(long, value_name = "FILE")]
    tflite: PathBuf,
    /// Where to write the ONNX model.
    #[arg(long, value_name = "OUT.onnx")]
    out: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let summary = agecam_host::tflite::onnx::convert_file(&a.tflite, &a.out)?;
    println!(
        "{}: {} operators ({} DEQUANTIZE folded into float32 weights), sha256 {}",
        a.tflite.display(),
        summary.operators,
        summary.dequantize_dropped,
        summary.source_sha256
    );
    println!("wrote {} ({} bytes)", a.out.display(), summary.onnx_bytes);
    Ok(ExitCode::SUCCESS)
}
