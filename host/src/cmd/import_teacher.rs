//! `import-teacher`: face-api's age/gender network imported from its TF.js weights as ONNX.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// face-api's model/age_gender_model-weights_manifest.json (the .bin beside it).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    #[arg(long, value_name = "FILE.onnx")]
    out: PathBuf,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    let summary = agecam_host::teacher::import_teacher(&a.manifest, &a.out)?;
    for (file, sha) in &summary.files {
        println!("{file}: sha256 {sha}");
    }
    if !summary.is_1_7_15 {
        log::warn!(
            "these weights are not face-api 1.7.15's age_gender_model.bin (sha256 {}); \
             the metadata says so",
            agecam_host::teacher::BIN_SHA256_1_7_15
        );
    }
    println!(
        "{} tensors, {} parameters; wrote {} ({} bytes)",
        summary.tensors,
        summary.parameters,
        a.out.display(),
        summary.onnx_bytes
    );
    Ok(ExitCode::SUCCESS)
}
