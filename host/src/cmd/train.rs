//! `train`: an age/gender network trained on crop caches.

use agecam_host::net::{Arch, NetConfig};
use agecam_host::trainer::{self, TrainOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Crop cache made by `agecam-host crops`, as FORMAT:CACHE[:WEIGHT] (utkface or fairface;
    /// a bare CACHE is UTKFace). Repeat to train on several datasets at once: each is drawn
    /// WEIGHT × its size per epoch (default 1) and validated on its own.
    #[arg(long, value_name = "FORMAT:CACHE[:WEIGHT]", required = true)]
    data: Vec<trainer::DataSpec>,
    /// Augmentation: `basic` (flip, small shift/scale, brightness/contrast) or `camera`
    /// (also looser crops, rotation, colour casts, grayscale, blur, noise, JPEG).
    #[arg(long, value_enum, default_value = "basic")]
    augment: agecam_host::crops::AugmentSet,
    /// Distil from the teacher: weight of its age (each cache's teacher.csv, made by
    /// `teacher-label`) as a soft target beside the labels. The model then may not be used
    /// commercially (the teacher learnt from non-commercial data). 0 = no teacher.
    #[arg(long, default_value_t = 0.0, value_name = "WEIGHT")]
    teacher_weight: f32,
    /// Draw each dataset's crops balanced by race, age group or both (`race,age`): every
    /// group as often as every other (caches made before the race column have none).
    #[arg(long, value_enum, value_delimiter = ',')]
    balance: Vec<trainer::BalanceBy>,
    /// How fully --balance evens the groups out: each crop is drawn with weight
    /// 1 / (its group's size)^P; 1 draws every group equally often, 0.5 (square-root sampling)
    /// meets halfway between that and the data's own mix, 0 is no balance.
    #[arg(long, default_value_t = 1.0, value_name = "P", requires = "balance")]
    balance_power: f64,
    #[arg(long, value_enum, default_value = "mobilenetv2")]
    arch: Arch,
    #[arg(long, default_value_t = 96)]
    input_size: usize,
    /// Width multiplier (MobileNetV2 alpha; channel scale of the scratch CNN).
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Linear warm-up, in steps.
    #[arg(long, default_value_t = 300)]
    warmup_steps: usize,
    /// Gaussian label smoothing of the age target, in years (0 = one-hot).
    #[arg(long, default_value_t = 2.0)]
    age_sigma: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// ImageNet MobileNetV2 weights (.tflite) to start from.
    #[arg(long, value_name = "PATH.tflite")]
    init: Option<PathBuf>,
    /// Start from a trained checkpoint's weights (same --arch and --width; another
    /// --input-size is fine), with a fresh learning-rate schedule: fine-tuning.
    #[arg(long, value_name = "DIR", conflicts_with = "init")]
    init_checkpoint: Option<PathBuf>,
    /// Start from an age/gender model `export` wrote (the float ONNX, e.g. a shipped
    /// models/age_gender_*_f32.onnx): its weights, thinned to a narrower --width, at any
    /// --input-size; BatchNorm re-calibrated on training crops. Its training data carries on
    /// into the new model's licence.
    #[arg(long, value_name = "FILE.onnx", conflicts_with_all = ["init", "init_checkpoint"])]
    init_model: Option<PathBuf>,
    /// Checkpoint folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    val_split: f64,
    /// Stop each epoch after this many steps (quick trials).
    #[arg(long)]
    max_steps_per_epoch: Option<usize>,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    super::check_val_split(a.val_split)?;
    let opts = TrainOptions {
        net: NetConfig {
            arch: a.arch,
            input_size: a.input_size,
            width: a.width,
        },
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        warmup_steps: a.warmup_steps,
        age_sigma: a.age_sigma,
        seed: a.seed,
        init: a.init.clone(),
        init_checkpoint: a.init_checkpoint.clone(),
        init_model: a.init_model.clone(),
        out: a.out.clone(),
        resume: a.resume,
        max_steps_per_epoch: a.max_steps_per_epoch,
        crop_margin: agecam::config::DEFAULT_CROP_MARGIN,
        // Set from the caches' framing.txt.
        crop: agecam::vision::crop::CropStyle::Box,
        augment: a.augment,
        teacher_weight: a.teacher_weight,
        balance: a.balance.clone(),
        balance_power: a.balance_power,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    trainer::train_from_caches(&opts, &a.data, a.val_split)?;
    Ok(ExitCode::SUCCESS)
}
