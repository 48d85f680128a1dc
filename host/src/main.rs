//! `agecam-host`: the x86 host tool that turns face datasets into models the device runs.

use agecam::cli::{self, predict::PredictArgs};
use agecam_host::dataset::{self, GroupLimits};
use agecam_host::net::{Arch, NetConfig};
use agecam_host::trainer::{self, TrainOptions};
use clap::{Parser, Subcommand, ValueEnum};
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// UTKFace: AGE_GENDER_RACE_DATETIME.jpg files in one folder.
    Utkface,
    /// FairFace as ../shared/data/fairface.sh extracts it: fairface_label_{train,val}.csv and
    /// fair_face/{train,val}/; its two files are the split.
    Fairface,
    /// Kaggle faces-age-detection: train.csv (ID,Class) and a Train/ image folder.
    Kaggle,
}

impl Format {
    fn load(self, dir: &std::path::Path, limits: &GroupLimits) -> anyhow::Result<dataset::Dataset> {
        Ok(match self {
            Format::Utkface => dataset::load_utkface(dir, limits)?,
            Format::Fairface => dataset::load_fairface(dir, limits)?,
            Format::Kaggle => dataset::load_kaggle(dir, "Train")?,
        })
    }
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
    /// Import face-api's age/gender network (npm @vladmandic/face-api 1.7.15, MIT; trained on
    /// non-commercial data) from its TF.js weights as an ONNX "teacher": input `[N, 3, 112,
    /// 112]` (v/255 − mean, in the metadata), outputs `age` `[N, 1]` (years) and `gender`
    /// `[N, 2]` (softmax: male, female).
    ImportTeacher {
        /// face-api's model/age_gender_model-weights_manifest.json (the .bin beside it).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        #[arg(long, value_name = "FILE.onnx")]
        out: PathBuf,
    },
    /// Label a crop cache with the teacher for distillation (`train --teacher-weight`): each
    /// crop cut back to its detector box, run through the teacher as face-api preprocesses,
    /// written to CACHE/teacher.csv (crop, age, p_female).
    TeacherLabel {
        /// The ONNX teacher written by import-teacher.
        #[arg(long, value_name = "FILE.onnx")]
        teacher: PathBuf,
        /// A crop cache made by `crops`.
        #[arg(long, value_name = "CACHE")]
        cache: PathBuf,
    },
    /// Cut 112×112 face crops (PNG) the way the device does (its detector, then crop_face),
    /// as inputs for the teacher's reference comparison with face-api in Node.
    TeacherCrops {
        /// Photos, one face each (the largest face is cut).
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        /// Folder for the crops (`<image stem>.png`).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Model folder (manifest.json) with the face detector; default as for `predict`.
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// Run an imported teacher (tract, one thread) on the crops of a reference file written by
    /// benches/teacher_reference/reference.mjs; print both outputs, the largest difference and
    /// the milliseconds per face. Fails if they differ by more than --tolerance.
    TeacherCheck {
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
    },
    /// Cut training crops: the device's face detector and crop code over a dataset, cached
    /// (resumable) as PNG files with a labels.csv.
    Crops {
        /// The dataset folder.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_enum)]
        format: Format,
        /// The cache folder to fill.
        #[arg(long, value_name = "CACHE")]
        out: PathBuf,
        /// Model folder (manifest.json) with the face detector; default as for `predict`.
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// Cut aligned crops (turned so the eyes are level, scaled by their distance; faces
        /// without landmarks get box crops), recorded in the cache; a model trained on them
        /// says so in its metadata (`agecam.crop`).
        #[arg(long)]
        align: bool,
        /// Side of the cached crops in pixels: at least the input size training will use
        /// (160 px training needs `--size 160`).
        #[arg(long, default_value_t = agecam_host::crops::CROP_SIZE, value_name = "N",
              value_parser = clap::value_parser!(u32).range(16..=1024))]
        size: u32,
    },
    /// Train an age/gender network on a crop cache.
    Train(TrainArgs),
    /// Score ONNX models on a labelled dataset through the device's own detector, crop and
    /// tract code, and write a report folder (report.md, metrics.json, PNG charts).
    Eval(EvalArgs),
    /// Export a checkpoint to ONNX (BatchNorm folded, opset 13) with the device's metadata.
    Export {
        /// Checkpoint folder written by `train`.
        #[arg(long, value_name = "DIR")]
        checkpoint: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Int8 versions of an exported model: weight-only (small file, float speed) or integer
    /// (QLinearConv with calibrated activations); `--explain` shows what tract computes in
    /// integers.
    Quantize(QuantizeArgs),
    /// Milliseconds per face (batch 1, one thread, median) of each model file, run round-robin.
    TimeModels {
        /// ONNX age/gender models (e.g. the f32 export and its quantized forms).
        #[arg(required = true, value_name = "MODEL.onnx")]
        models: Vec<PathBuf>,
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Face detection by face size: detection rate per face height, false positives per
    /// non-face frame, box IoU and ms per frame of each detector configuration, on frames
    /// composed from the bundled photos (and optional face chips).
    DetBench(agecam_host::det_bench::DetBenchArgs),
    /// Fit how YuNet's boxes map onto short-range BlazeFace's (the framing the age/gender
    /// models were trained on) on face chips; prints the `Reframe` coefficients.
    FitFraming(agecam_host::fit_framing::FitFramingArgs),
    /// Training/inference throughput of MobileNetV2 on random data (images/s).
    BenchTrain {
        #[arg(long, default_value_t = 96)]
        size: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        /// `custom` (the fused ops) or `plain` (candle's own conv2d/batch norm, for comparison).
        #[arg(long, default_value = "custom")]
        backend: String,
        /// Inference batches to time (default: --steps).
        #[arg(long)]
        infer_steps: Option<usize>,
    },
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// ONNX model(s) to score on the same faces; repeat to compare (e.g. float and int8).
    /// Default: the manifest's int8 age/gender model, else its float one.
    #[arg(long = "model", value_name = "M.onnx")]
    models: Vec<PathBuf>,
    /// The dataset folder.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// Folder to write report.md, metrics.json and the charts into.
    #[arg(long, value_name = "DIR")]
    report: PathBuf,
    /// Share of images (by a hash of the file name) in the validation split that is scored.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    val_split: f64,
    /// Score every image instead of the validation split (for a dataset never trained on).
    #[arg(long)]
    all: bool,
    /// First age of the MIDDLE group (YOUNG is below it).
    #[arg(long, default_value_t = 30)]
    middle_from: u32,
    /// First age of the OLD group.
    #[arg(long, default_value_t = 60)]
    old_from: u32,
    /// A checkpoint's history.json, to chart training history in the report.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Model folder (manifest.json) with the face detector; default as for `predict`.
    #[arg(long, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Score at most this many images, evenly spaced over the chosen ones (quick checks).
    #[arg(long)]
    max_images: Option<usize>,
    /// Score faces as a camera sees them at this height in pixels: each picture is scaled
    /// down so the face box found in it is PX high and JPEG-compressed (quality 75) before the
    /// crop is cut from it (the detector still runs on the full picture). Faces already
    /// smaller are scored as they are.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(8..))]
    face_height: Option<u32>,
    /// Score each face as a visit of K frames (shifted, scaled and brightened a little in
    /// each, the detector run on every one): the first frame alone, the every-frame daemon
    /// and the scheduled daemon (the config's `[schedule]`), side by side per model.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(2..=120))]
    visit_frames: Option<u32>,
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
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

#[derive(Debug, clap::Args)]
struct QuantizeArgs {
    /// The float model written by `agecam-host export` (with --explain alone: any model).
    #[arg(long, value_name = "FILE.onnx")]
    model: PathBuf,
    /// Face crops (PNG/JPEG) for the integer form's activation ranges, e.g. CACHE/crops.
    #[arg(long, value_name = "DIR")]
    calib: Option<PathBuf>,
    /// Where to write the quantized model. Without it, --explain explains --model.
    #[arg(long, value_name = "FILE.onnx")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "integer")]
    form: agecam_host::quantize::Form,
    /// Which convolutions the integer form computes in integers.
    #[arg(long, value_enum, default_value = "pointwise")]
    integer_layers: agecam_host::quantize::IntegerLayers,
    /// Keep the first convolution (reading the image) in float in the integer form.
    #[arg(long)]
    float_first: bool,
    /// Weight tensors with fewer values than this stay float (the small early layers are the
    /// most sensitive to rounding and a tiny share of the file); 0 quantizes every weight.
    #[arg(long, value_name = "N", default_value_t = agecam_host::quantize::DEFAULT_FLOAT_BELOW)]
    float_below: usize,
    #[arg(long, default_value = "percentile", value_parser = ["minmax", "percentile"])]
    calib_method: String,
    /// Percentile for --calib-method percentile (the mirror is used at the bottom).
    #[arg(long, default_value_t = 99.99)]
    percentile: f32,
    /// At most this many calibration images (evenly spaced over the sorted file names).
    #[arg(long, default_value_t = 500)]
    max_calib: usize,
    /// List each convolution/matmul tract runs, with its datum types (integer or float).
    #[arg(long)]
    explain: bool,
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
    match &cli.command {
        Command::Predict(args) => cli::predict::predict_command(args, cli.config.as_deref()),
        Command::Crops {
            data,
            format,
            out,
            models,
            align,
            size,
        } => crops_command(
            cli.config.as_deref(),
            data,
            *format,
            out,
            models.as_deref(),
            (*align, *size),
        ),
        Command::Train(a) => {
            anyhow::ensure!(
                (0.0..1.0).contains(&a.val_split),
                "--val-split {} is out of range: give a fraction from 0.0 up to (not including) 1.0",
                a.val_split
            );
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
        Command::Eval(a) => eval_command(cli.config.as_deref(), a),
        Command::Export { checkpoint, out } => {
            trainer::export(checkpoint, out)?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Quantize(a) => quantize_command(a),
        Command::DetBench(a) => {
            agecam_host::det_bench::det_bench_command(a, cli.config.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::FitFraming(a) => {
            agecam_host::fit_framing::fit_framing_command(a, cli.config.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::TimeModels { models, runs } => {
            // As the device loads and runs them (one face at a time), round-robin.
            let times = agecam::model::inspect::time_forms(models, *runs)?;
            println!("{:<24} {:>12} {:>12}", "model", "bytes", "ms per face");
            for (path, (name, ms)) in models.iter().zip(times) {
                let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                println!("{name:<24} {bytes:>12} {ms:>12.2}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchTrain {
            size,
            batch,
            steps,
            warmup,
            width,
            backend,
            infer_steps,
        } => {
            let backend = match backend.as_str() {
                "custom" => agecam_host::mobilenet_v2::Backend::Custom,
                "plain" => agecam_host::mobilenet_v2::Backend::Plain,
                other => anyhow::bail!("--backend {other}: use custom or plain"),
            };
            agecam_host::bench::bench_train(
                *size,
                *batch,
                *steps,
                *warmup,
                *width,
                backend,
                infer_steps.unwrap_or(*steps),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ConvertDetector { tflite, out } => {
            let summary = agecam_host::tflite::onnx::convert_file(tflite, out)?;
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
        Command::TeacherLabel { teacher, cache } => {
            let model = agecam_host::teacher::Teacher::load(teacher)?;
            let t = std::time::Instant::now();
            let n = agecam_host::teacher::label_cache(&model, cache, &|i, total| {
                if i % 5000 == 0 && i > 0 {
                    log::info!("{i}/{total} crops labelled");
                }
            })?;
            println!(
                "labelled {n} crops in {:.0} s: {}",
                t.elapsed().as_secs_f32(),
                cache.join(agecam_host::teacher::CACHE_LABELS).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportTeacher { manifest, out } => {
            let summary = agecam_host::teacher::import_teacher(manifest, out)?;
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
                out.display(),
                summary.onnx_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::TeacherCrops {
            images,
            out,
            models,
        } => {
            let config = cli::load_config(cli.config.as_deref())?;
            let model_dir = cli::model_dir(models.as_deref(), cli.config.as_deref(), &config);
            let verified = agecam::model::manifest::Manifest::load(&model_dir)?
                .verify(config.model.model_use)?;
            let mut detector = agecam::pipeline::load_detector(&verified, &config.detector)?;
            let framing = agecam_host::teacher::input_info().framing(config.detector.crop_margin);
            let written =
                agecam_host::teacher::write_face_crops(images, detector.as_mut(), framing, out)?;
            for file in written {
                println!("{}", file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::TeacherCheck {
            model,
            reference,
            tolerance,
            runs,
        } => {
            let c = agecam_host::teacher::compare_with_reference(model, reference, *runs)?;
            println!("{c}");
            let worst = c.max_abs_diff();
            anyhow::ensure!(
                worst <= *tolerance,
                "{} differs from face-api's outputs in {} by {worst:.3e} (> {tolerance:e})",
                model.display(),
                reference.display()
            );
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
            let loaded = format.load(data, &limits)?;
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

fn quantize_command(a: &QuantizeArgs) -> anyhow::Result<ExitCode> {
    use agecam_host::quantize::{self, CalibMethod, QuantizeOptions};
    let Some(out) = &a.out else {
        anyhow::ensure!(
            a.explain,
            "give --out FILE.onnx to quantize {}, or --explain to inspect it",
            a.model.display()
        );
        println!("{}", agecam::model::inspect::explain(&a.model)?);
        return Ok(ExitCode::SUCCESS);
    };
    anyhow::ensure!(
        (50.0..=100.0).contains(&a.percentile),
        "--percentile {} is out of range: give a value from 50 to 100, e.g. 99.99",
        a.percentile
    );
    let opts = QuantizeOptions {
        form: a.form,
        integer_layers: a.integer_layers,
        float_first: a.float_first,
        float_below: a.float_below,
        calib_method: match a.calib_method.as_str() {
            "minmax" => CalibMethod::MinMax,
            _ => CalibMethod::Percentile(a.percentile),
        },
    };
    let t = std::time::Instant::now();
    let report = quantize::quantize_file(&a.model, a.calib.as_deref(), a.max_calib, out, &opts)?;
    println!("{report}");
    println!(
        "wrote {} in {:.1} s",
        out.display(),
        t.elapsed().as_secs_f32()
    );
    if a.explain {
        println!("{}", agecam::model::inspect::explain(out)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn crops_command(
    config_file: Option<&std::path::Path>,
    data: &std::path::Path,
    format: Format,
    out: &std::path::Path,
    models: Option<&std::path::Path>,
    (align, size): (bool, u32),
) -> anyhow::Result<ExitCode> {
    let config = cli::load_config(config_file)?;
    let model_dir = cli::model_dir(models, config_file, &config);
    let verified =
        agecam::model::manifest::Manifest::load(&model_dir)?.verify(config.model.model_use)?;
    let mut detector = agecam::pipeline::load_detector(&verified, &config.detector)?;
    let limits = GroupLimits::default();
    let loaded = format.load(data, &limits)?;
    let labelled = loaded
        .samples
        .iter()
        .filter(|s| (s.age.is_some() || s.age_range.is_some()) && s.gender.is_some())
        .count();
    anyhow::ensure!(
        labelled > 0,
        "{} has no images labelled with an age (or age group) and a gender (training needs both)",
        data.display()
    );
    let bar = indicatif::ProgressBar::new(loaded.samples.len() as u64);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let framing = agecam::vision::crop::Framing {
        style: if align {
            agecam::vision::crop::CropStyle::Eyes(agecam::vision::crop::EYES)
        } else {
            agecam::vision::crop::CropStyle::Box
        },
        margin: config.detector.crop_margin(None),
    };
    let report = agecam_host::crops::make_crops(
        &loaded.samples,
        detector.as_mut(),
        framing,
        size,
        out,
        &|i, r| {
            bar.set_position(i as u64);
            if i % 2000 == 0 && i > 0 {
                log::info!(
                    "{i}/{}: {} direct, {} padded, {} missed",
                    r.total,
                    r.found_direct,
                    r.found_padded,
                    r.missed
                );
            }
        },
    )?;
    bar.finish_and_clear();
    let done = report.found_direct + report.found_padded;
    println!("images:            {}", report.total);
    println!("already cached:    {}", report.cached_before);
    println!(
        "face found:        {done} ({} directly, {} only after padding)",
        report.found_direct, report.found_padded
    );
    println!("no face (missed):  {}", report.missed);
    println!("unreadable:        {}", report.unreadable);
    let tried = done + report.missed;
    if tried > 0 {
        println!(
            "miss rate:         {:.2}% of all images ({:.2}% before padding)",
            100.0 * report.missed as f64 / report.total.max(1) as f64,
            100.0 * (report.missed + report.found_padded) as f64 / tried as f64
        );
    }
    println!("crops in {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn eval_command(config_file: Option<&std::path::Path>, a: &EvalArgs) -> anyhow::Result<ExitCode> {
    use agecam_host::eval::{self, EvalRun, Subset};
    anyhow::ensure!(
        (0.0..1.0).contains(&a.val_split),
        "--val-split {} is out of range: give a fraction from 0.0 up to (not including) 1.0",
        a.val_split
    );
    anyhow::ensure!(
        0 < a.middle_from && a.middle_from < a.old_from,
        "--middle-from {} must be above 0 and below --old-from {}",
        a.middle_from,
        a.old_from
    );
    let config = cli::load_config(config_file)?;
    let model_dir = cli::model_dir(a.models_dir.as_deref(), config_file, &config);
    let verified =
        agecam::model::manifest::Manifest::load(&model_dir)?.verify(config.model.model_use)?;
    let models = if a.models.is_empty() {
        // The model `model.use` selects, int8 first, as the device loads it.
        let found = verified.age_gender().next().map(|f| f.path.clone());
        vec![found.ok_or_else(|| {
            anyhow::anyhow!(
                "{} lists no age/gender model; give one with --model M.onnx",
                verified.manifest_file.display()
            )
        })?]
    } else {
        a.models.clone()
    };
    let mut detector = agecam::pipeline::load_detector(&verified, &config.detector)?;
    let limits = GroupLimits {
        middle_from: a.middle_from,
        old_from: a.old_from,
    };
    let loaded = a.format.load(&a.data, &limits)?;
    let history = match &a.history {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read --history {} ({e})", p.display()))?;
            let h: Vec<trainer::EpochRecord> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "--history {} is not a checkpoint's history.json ({e})",
                    p.display()
                )
            })?;
            Some(h)
        }
        None => None,
    };
    let subset = if a.all {
        Subset::All
    } else {
        Subset::Validation(a.val_split)
    };
    let run = EvalRun {
        models: &models,
        samples: &loaded.samples,
        subset,
        limits,
        crop_margin: config.detector.crop_margin,
        max_images: a.max_images,
        face_height: a.face_height,
        visits: a.visit_frames.map(|frames| eval::VisitSim {
            frames,
            schedule: config.schedule,
        }),
    };
    if let Some(k) = a.visit_frames {
        // The scheduled daemon needs three detector frames for a visit (the statistics'
        // tracker drops shorter tracks as noise): frames 0, N and 2N.
        let least = 2 * config.schedule.detect_every + 1;
        anyhow::ensure!(
            k >= least,
            "--visit-frames {k} is too short for schedule.detect_every = {}: the scheduled daemon sees a face on every {}th frame and counts a visit from 3 sightings; give at least {least}",
            config.schedule.detect_every,
            config.schedule.detect_every
        );
    }
    let outcome = eval::evaluate(&run, detector.as_mut())?;
    let files = eval::write_report(
        &a.report,
        &outcome,
        &a.data,
        subset,
        &limits,
        history.as_deref(),
    )?;
    for m in &outcome.metrics {
        let opt = |v: Option<f64>, scale: f64, unit: &str| {
            v.map_or("-".to_string(), |v| format!("{:.2}{unit}", v * scale))
        };
        println!(
            "{}: {} faces, age MAE {}, CS(5) {}, gender {}, 3-group {:.1}%",
            m.model,
            m.faces,
            opt(m.age_mae, 1.0, " y"),
            opt(m.cs5, 100.0, "%"),
            opt(m.gender_accuracy, 100.0, "%"),
            100.0 * m.group_accuracy
        );
    }
    println!(
        "{} images, {} without a detected face, {} unreadable; report in {} ({})",
        outcome.images,
        outcome.no_face,
        outcome.unreadable,
        a.report.display(),
        files.join(", ")
    );
    println!("{}", eval::summary_line(&outcome));
    Ok(ExitCode::SUCCESS)
}
