//! `agecam-host`: the x86 host tool that turns face datasets into models the device runs.
//!
//! This file is the command line only: its arguments and the dispatch to one module per command
//! ([`cmd`]).

mod cmd;

use agecam::cli::{self, predict::PredictArgs};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc for the host tool only: training frees and reallocates hundreds of MB per step,
/// which glibc malloc handles poorly. The device binary keeps the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Host tool for agecam: inspects face datasets and runs the device's face pipeline on images.
/// Training, evaluation, ONNX export and int8 quantization join it as they are built.
#[derive(Debug, Parser)]
#[command(name = "agecam-host", version)]
struct Cli {
    /// Configuration file (TOML, as the device uses) for the detector and crop settings.
    #[arg(long, short, global = true, value_name = "FILE", env = "AGECAM_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a face dataset and report its labels, skipped files and train/validation split.
    Dataset(cmd::dataset::Args),
    /// Find faces in image files and estimate their age and gender, as the device does.
    Predict(PredictArgs),
    /// Convert a float TFLite face detector (MediaPipe BlazeFace) into the ONNX file the device
    /// runs: float16 weights are widened, DEQUANTIZE ops dropped, layouts made NCHW.
    ConvertDetector(cmd::convert_detector::Args),
    /// Import face-api's age/gender network (npm @vladmandic/face-api 1.7.15, MIT; trained on
    /// non-commercial data) from its TF.js weights as an ONNX "teacher": input `[N, 3, 112,
    /// 112]` (v/255 − mean, in the metadata), outputs `age` `[N, 1]` (years) and `gender`
    /// `[N, 2]` (softmax: male, female).
    ImportTeacher(cmd::import_teacher::Args),
    /// Label a crop cache with the teacher for distillation (`train --teacher-weight`): each
    /// crop cut back to its detector box, run through the teacher as face-api preprocesses,
    /// written to CACHE/teacher.csv (crop, age, p_female).
    TeacherLabel(cmd::teacher_label::Args),
    /// Cut 112×112 face crops (PNG) the way the device does (its detector, then crop_face),
    /// as inputs for the teacher's reference comparison with face-api in Node.
    TeacherCrops(cmd::teacher_crops::Args),
    /// Run an imported teacher (tract, one thread) on the crops of a reference file written by
    /// benches/teacher_reference/reference.mjs; print both outputs, the largest difference and
    /// the milliseconds per face. Fails if they differ by more than --tolerance.
    TeacherCheck(cmd::teacher_check::Args),
    /// Cut training crops: the device's face detector and crop code over a dataset, cached
    /// (resumable) as PNG files with a labels.csv.
    Crops(cmd::crops::Args),
    /// Train an age/gender network on a crop cache.
    Train(cmd::train::Args),
    /// Score ONNX models on a labelled dataset through the device's own detector, crop and
    /// tract code, and write a report folder (report.md, metrics.json, PNG charts).
    Eval(cmd::eval::Args),
    /// Export a checkpoint to ONNX (BatchNorm folded, opset 13) with the device's metadata.
    Export(cmd::export::Args),
    /// Int8 versions of an exported model: weight-only (small file, float speed) or integer
    /// (QLinearConv with calibrated activations); `--explain` shows what tract computes in
    /// integers.
    Quantize(cmd::quantize::Args),
    /// Milliseconds per face (batch 1, one thread, median) of each model file, run round-robin.
    TimeModels(cmd::time_models::Args),
    /// Face detection by face size: detection rate per face height, false positives per
    /// non-face frame, box IoU and ms per frame of each detector configuration, on frames
    /// composed from the bundled photos (and optional face chips).
    DetBench(cmd::det_bench::Args),
    /// Fit how YuNet's boxes map onto short-range BlazeFace's (the framing the age/gender
    /// models were trained on) on face chips; prints the `Reframe` coefficients.
    FitFraming(cmd::fit_framing::Args),
    /// Write an age/gender model's own age prior (its mean age distribution over held-out faces,
    /// from `eval --distributions`) into its metadata, for `model.age_prior_correction`.
    AgePrior(cmd::age_prior::Args),
    /// Make a minisign key pair for signing model sets.
    Keygen(cmd::keygen::Args),
    /// Sign a model folder's manifest.json (after checking every file's sha256), and optionally
    /// pack the signed set as a bundle for `agecam models install`.
    Sign(cmd::sign::Args),
    /// Training/inference throughput of MobileNetV2 on random data (images/s).
    BenchTrain(cmd::bench_train::Args),
    /// Head-pose accuracy: yaw/pitch error by angle range on synthetic faces of independent
    /// mean-face geometries (and AFLW2000-3D's landmarks, given its files), and the looking/not
    /// accuracy of the attention thresholds.
    PoseEval(cmd::pose_eval::Args),
}

/// Runtime settings that must be in the environment before the allocator and candle start:
/// * `MIMALLOC_PURGE_DELAY=-1`: keep freed pages instead of returning them to the OS (each
///   training step frees and reallocates hundreds of MB; re-faulting them is expensive).
/// * `CANDLE_NUM_THREADS=1`: candle 0.11's spinning thread pool otherwise competes with the
///   rayon threads of the custom ops on a 2-core machine (it was ~30 % of the CPU time).
///
/// If they are unset, the process re-executes itself with them (explicit values are kept).
fn ensure_training_env() {
    use std::os::unix::process::CommandExt;
    let wanted = [("MIMALLOC_PURGE_DELAY", "-1"), ("CANDLE_NUM_THREADS", "1")];
    if wanted.iter().all(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for (k, v) in wanted {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let err = cmd.exec();
    log::warn!("could not re-execute with the training environment ({err}); continuing");
}

fn main() -> ExitCode {
    agecam::logging::init("info");
    let training = std::env::args()
        .nth(1)
        .is_some_and(|a| a == "train" || a == "bench-train");
    if training {
        ensure_training_env();
    }
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
    let config = cli.config.as_deref();
    match &cli.command {
        Command::Predict(args) => cli::predict::predict_command(args, config),
        Command::Dataset(a) => cmd::dataset::run(a),
        Command::ConvertDetector(a) => cmd::convert_detector::run(a),
        Command::ImportTeacher(a) => cmd::import_teacher::run(a),
        Command::TeacherLabel(a) => cmd::teacher_label::run(a),
        Command::TeacherCrops(a) => cmd::teacher_crops::run(config, a),
        Command::TeacherCheck(a) => cmd::teacher_check::run(a),
        Command::Crops(a) => cmd::crops::run(config, a),
        Command::Train(a) => cmd::train::run(a),
        Command::Eval(a) => cmd::eval::run(config, a),
        Command::Export(a) => cmd::export::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::TimeModels(a) => cmd::time_models::run(a),
        Command::DetBench(a) => {
            cmd::det_bench::run(a, config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FitFraming(a) => {
            cmd::fit_framing::run(a, config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchTrain(a) => cmd::bench_train::run(a),
        Command::AgePrior(a) => {
            cmd::age_prior::run(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen(a) => {
            cmd::keygen::run(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign(a) => {
            cmd::sign::run(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::PoseEval(a) => {
            cmd::pose_eval::run(a)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
