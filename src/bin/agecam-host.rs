//! `agecam-host`: the x86 host tool that turns face datasets into models the device runs.

use agecam::cli::{self, predict::PredictArgs};
use agecam::train::dataset::{self, GroupLimits};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Host tool for agecam: inspects face datasets and runs the device's face pipeline on images.
/// Training, evaluation, ONNX export and int8 quantization join it as they are built.
#[derive(Debug, Parser)]
#[command(name = "agecam-host", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML, as the device uses) for the detector and crop settings.
    #[arg(long, short, global = true, value_name = "FILE", env = "AGECAM_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// UTKFace: AGE_GENDER_RACE_DATETIME.jpg files in one folder.
    Utkface,
    /// Kaggle faces-age-detection: train.csv (ID,Class) and a Train/ image folder.
    Kaggle,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a face dataset and report its labels, skipped files and train/validation split.
    Dataset {
        /// The dataset folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// How the dataset is laid out.
        #[arg(long, value_enum)]
        format: Format,
        /// Share of images (by a hash of the file name) kept for validation.
        #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
        val_split: f64,
    },
    /// Find faces in image files and estimate their age and gender, as the device does.
    Predict(PredictArgs),
    /// Convert a float TFLite face detector (MediaPipe BlazeFace) into the ONNX file the device
    /// runs: float16 weights are widened, DEQUANTIZE ops dropped, layouts made NCHW.
    ConvertDetector {
        /// The TFLite model, e.g. face_detection_short_range.tflite.
        #[arg(long, value_name = "FILE")]
        tflite: PathBuf,
        /// Where to write the ONNX model.
        #[arg(long, value_name = "OUT.onnx")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    agecam::logging::init("info");
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Predict(args) => cli::predict::predict_command(args, cli.config.as_deref()),
        Command::ConvertDetector { tflite, out } => {
            let summary = agecam::model::tflite_onnx::convert_file(tflite, out)?;
            println!(
                "{}: {} operators ({} DEQUANTIZE folded into float32 weights), sha256 {}",
                tflite.display(),
                summary.operators,
                summary.dequantize_dropped,
                summary.source_sha256
            );
            println!("wrote {} ({} bytes)", out.display(), summary.onnx_bytes);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dataset {
            data,
            format,
            val_split,
        } => {
            anyhow::ensure!(
                (0.0..1.0).contains(val_split),
                "--val-split {val_split} is out of range: give a fraction from 0.0 up to (not including) 1.0"
            );
            let limits = GroupLimits::default();
            let loaded = match format {
                Format::Utkface => dataset::load_utkface(data, &limits)?,
                Format::Kaggle => dataset::load_kaggle(data, "Train")?,
            };
            let (train, val) = dataset::split(&loaded.samples, *val_split);
            let mut groups = std::collections::BTreeMap::new();
            for sample in &loaded.samples {
                *groups
                    .entry(format!("{:?}", sample.group))
                    .or_insert(0usize) += 1;
            }
            println!("images:     {}", loaded.samples.len());
            println!("skipped:    {}", loaded.skipped.len());
            for (path, problem) in &loaded.skipped {
                println!("  {}: {problem}", path.display());
            }
            println!("train:      {}", train.len());
            println!("validation: {}", val.len());
            for (group, n) in groups {
                println!("group {group:<7} {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
