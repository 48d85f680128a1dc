//! `teacher-crops`: 112×112 face crops cut as the device does, for the teacher's reference
//! comparison with face-api in Node.

use agecam::cli;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Photos, one face each (the largest face is cut).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Folder for the crops (`<image stem>.png`).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Model folder (manifest.json) with the face detector; default as for `predict`.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
}

pub fn run(config_file: Option<&Path>, a: &Args) -> anyhow::Result<ExitCode> {
    let config = cli::load_config(config_file)?;
    let model_dir = cli::model_dir(a.models.as_deref(), config_file, &config);
    let verified = agecam::model::verified_models(&model_dir, &config.model)?;
    let mut detector = agecam::pipeline::load_detector(&verified, &config.detector)?;
    let framing = agecam_host::teacher::input_info().framing(config.detector.crop_margin);
    let written =
        agecam_host::teacher::write_face_crops(&a.images, detector.as_mut(), framing, &a.out)?;
    for file in written {
        println!("{}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
