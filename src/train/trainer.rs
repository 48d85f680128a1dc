//! `agecam-host train` and `agecam-host export`.
//!
//! Training: AdamW (weight decay 0, i.e. Adam), linear warm-up then cosine decay of the
//! learning rate per step, age loss = cross-entropy over 101 age classes (optionally against a
//! Gaussian of `age_sigma` years around the true age), gender loss = 2-class cross-entropy.
//! Augmentation (seeded): horizontal flip, ±5 % shift, 0.9–1.1 scale, brightness/contrast.
//!
//! A checkpoint folder holds `model.safetensors` (every variable, BN running statistics
//! included) and `state.json` ([`State`]: network settings, normalisation, epoch, step,
//! history). It is written after every epoch and on Ctrl-C/SIGTERM (then the interrupted epoch
//! reruns from its start on `--resume`, from the weights trained so far). candle-nn's AdamW
//! keeps its moments private, so they are not saved: a resumed run restarts them (its bias
//! correction re-warms them within a few dozen steps).

use super::crops::{self, Augment, InMemory};
use super::net::{self, Net, NetConfig};
use crate::model::age_gender::keys;
use crate::model::onnx_build::GraphBuilder;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Input normalisation: (v/255 − 0.5)/0.5, the [-1, 1] range the ImageNet TFLite MobileNetV2
/// was trained on.
pub const MEAN: [f32; 3] = [0.5; 3];
pub const STD: [f32; 3] = [0.5; 3];
/// Written into exported models.
pub const TRAINING_DATA: &str = "UTKFace";
pub const TRAINING_LICENCE: &str = "UTKFace, non-commercial research only";

/// Everything `train` is told.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub net: NetConfig,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Warm-up length in steps (linear from 0).
    pub warmup_steps: usize,
    /// Gaussian label smoothing of the age target, in years (0 = one-hot).
    pub age_sigma: f32,
    pub seed: u64,
    pub init: Option<PathBuf>,
    /// Start from the weights of this checkpoint (same architecture and width; the input size
    /// may differ: every layer of both networks is independent of it). A fresh schedule.
    pub init_checkpoint: Option<PathBuf>,
    pub out: PathBuf,
    pub resume: bool,
    /// Stop each epoch after this many steps (quick runs and tests).
    pub max_steps_per_epoch: Option<usize>,
    pub crop_margin: f32,
    pub progress: bool,
}

/// One line of the history (`epoch` counts from 1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f32,
    pub train_age_loss: f32,
    pub train_gender_loss: f32,
    pub val_mae: f32,
    pub val_gender_accuracy: f32,
    pub images_per_s: f32,
    pub seconds: f32,
    pub lr_end: f64,
}

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub net: NetConfig,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop_margin: f32,
    /// Completed epochs.
    pub epoch: usize,
    /// Optimiser steps taken at the end of the last completed epoch.
    pub step: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub age_sigma: f32,
    pub seed: u64,
    pub init: Option<PathBuf>,
    /// The checkpoint whose weights this run started from (`--init-checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_checkpoint: Option<PathBuf>,
    pub history: Vec<EpochRecord>,
}

/// Learning rate at `step` of `total`: linear warm-up, then cosine decay to 0.
pub fn lr_at(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Fills a batch tensor `[n, 3, s, s]` from `idx`, with augmentation from `rng` (or none).
pub fn batch_tensor(
    data: &InMemory,
    idx: &[usize],
    size: usize,
    augs: Option<&[Augment]>,
) -> Result<Tensor> {
    let plane = 3 * size * size;
    let mut buf = vec![0f32; idx.len() * plane];
    buf.par_chunks_mut(plane).enumerate().for_each(|(k, out)| {
        let a = augs.map_or(Augment::NONE, |a| a[k]);
        crops::render(&data.images[idx[k]], &a, size, MEAN, STD, out);
    });
    Ok(Tensor::from_vec(
        buf,
        (idx.len(), 3, size, size),
        &Device::Cpu,
    )?)
}

/// Validation: (mean absolute error of the expected age, gender accuracy).
pub fn evaluate(net: &Net, data: &InMemory, size: usize) -> Result<(f32, f32)> {
    if data.images.is_empty() {
        return Ok((f32::NAN, f32::NAN));
    }
    let (mut abs, mut correct) = (0f64, 0usize);
    let all: Vec<usize> = (0..data.images.len()).collect();
    for chunk in all.chunks(64) {
        let x = batch_tensor(data, chunk, size, None)?;
        let (a, g) = net.forward_t(&x, false)?;
        let ages = net::expected_ages(&a)?;
        let g = g.argmax(1)?.to_vec1::<u32>()?;
        for (k, &i) in chunk.iter().enumerate() {
            abs += (ages[k] - data.ages[i] as f32).abs() as f64;
            correct += usize::from(g[k] == data.genders[i]);
        }
    }
    let n = data.images.len() as f64;
    Ok(((abs / n) as f32, (correct as f64 / n) as f32))
}

fn save_checkpoint(dir: &Path, vm: &VarMap, state: &State) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("model.safetensors.tmp");
    vm.save(&tmp)?;
    std::fs::rename(&tmp, dir.join("model.safetensors"))?;
    let json = serde_json::to_string_pretty(state)?;
    std::fs::write(dir.join("state.json.tmp"), &json)?;
    std::fs::rename(dir.join("state.json.tmp"), dir.join("state.json"))?;
    std::fs::write(
        dir.join("history.json"),
        serde_json::to_string_pretty(&state.history)?,
    )?;
    Ok(())
}

/// Reads a checkpoint's `state.json`.
fn read_state(dir: &Path) -> Result<State> {
    let path = dir.join("state.json");
    serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a checkpoint state", path.display()))
}

/// Loads a checkpoint's saved variables into `vm` (a network of the same shape).
fn load_weights(vm: &mut VarMap, dir: &Path) -> Result<()> {
    vm.load(dir.join("model.safetensors"))
        .with_context(|| format!("cannot load {}/model.safetensors", dir.display()))
}

/// Reads a checkpoint's state and builds its network with the saved variables.
pub fn load_checkpoint(dir: &Path) -> Result<(State, VarMap, Net)> {
    let state = read_state(dir)?;
    let (mut vm, net) = Net::new(&state.net)?;
    load_weights(&mut vm, dir)?;
    Ok((state, vm, net))
}

/// Trains on in-memory crops; returns the final state. Checkpoints go to `opts.out`.
pub fn train(opts: &TrainOptions, train: &InMemory, val: &InMemory) -> Result<State> {
    ensure!(opts.batch >= 2, "--batch must be at least 2 (BatchNorm)");
    ensure!(
        train.images.len() >= opts.batch,
        "only {} training crops",
        train.images.len()
    );
    let (vm, net, mut state) = if opts.resume && opts.out.join("state.json").exists() {
        let (state, vm, net) = load_checkpoint(&opts.out)?;
        ensure!(
            state.net == opts.net,
            "--resume: the checkpoint in {} is {:?}, the command asks for {:?}",
            opts.out.display(),
            state.net,
            opts.net
        );
        log::info!(
            "resuming {} after epoch {} (step {})",
            opts.out.display(),
            state.epoch,
            state.step
        );
        (vm, net, state)
    } else {
        ensure!(
            opts.init.is_none() || opts.init_checkpoint.is_none(),
            "give --init (ImageNet weights) or --init-checkpoint (a trained checkpoint), not both"
        );
        let (mut vm, net) = Net::new(&opts.net)?;
        if let Some(from) = &opts.init_checkpoint {
            let from_state = read_state(from)?;
            ensure!(
                from_state.net.arch == opts.net.arch && from_state.net.width == opts.net.width,
                "--init-checkpoint {}: it is {:?} with width {}, the command asks for {:?} with width {}",
                from.display(),
                from_state.net.arch,
                from_state.net.width,
                opts.net.arch,
                opts.net.width
            );
            load_weights(&mut vm, from)?;
            log::info!(
                "--init-checkpoint {}: weights after its epoch {} ({} px), trained on at {} px",
                from.display(),
                from_state.epoch,
                from_state.net.input_size,
                opts.net.input_size
            );
        }
        if let Some(init) = &opts.init {
            let Net::Mobilenetv2(m) = &net else {
                bail!("--init loads ImageNet MobileNetV2 weights: use --arch mobilenetv2");
            };
            let (loaded, in_file) = super::tflite_init::init_from_file(m, init)?;
            log::info!(
                "--init {}: loaded {loaded} convolutions (of {in_file} in the file; the classifier is not used)",
                init.display()
            );
        }
        let state = State {
            net: opts.net,
            mean: MEAN,
            std: STD,
            crop_margin: opts.crop_margin,
            epoch: 0,
            step: 0,
            epochs: opts.epochs,
            batch: opts.batch,
            lr: opts.lr,
            warmup_steps: opts.warmup_steps,
            age_sigma: opts.age_sigma,
            seed: opts.seed,
            init: opts.init.clone(),
            init_checkpoint: opts.init_checkpoint.clone(),
            history: Vec::new(),
        };
        (vm, net, state)
    };
    state.epochs = opts.epochs;
    let vars = super::mobilenet_v2::trainable_vars(&vm);
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut handlers = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        handlers.push(signal_hook::flag::register(sig, stop.clone())?);
    }
    let result = run_epochs(opts, train, val, &vm, &net, &mut opt, &mut state, &stop);
    for h in handlers {
        signal_hook::low_level::unregister(h);
    }
    result.map(|()| state)
}

#[allow(clippy::too_many_arguments)]
fn run_epochs(
    opts: &TrainOptions,
    train: &InMemory,
    val: &InMemory,
    vm: &VarMap,
    net: &Net,
    opt: &mut AdamW,
    state: &mut State,
    stop: &AtomicBool,
) -> Result<()> {
    let size = opts.net.input_size;
    let steps_per_epoch = (train.images.len() / opts.batch)
        .min(opts.max_steps_per_epoch.unwrap_or(usize::MAX))
        .max(1);
    let total_steps = steps_per_epoch * opts.epochs;
    let mut step = state.step;
    for epoch in state.epoch..opts.epochs {
        let mut order: Vec<usize> = (0..train.images.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed ^ (epoch as u64) << 32);
        order.shuffle(&mut rng);
        let bar = if opts.progress {
            indicatif::ProgressBar::new(steps_per_epoch as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, opts.epochs));
        let last = state.history.last();
        let last_val = last.map_or(String::new(), |r| {
            format!(
                " | val MAE {:.2} gender {:.1}%",
                r.val_mae,
                r.val_gender_accuracy * 100.0
            )
        });
        let t0 = Instant::now();
        let (mut sum, mut sum_a, mut sum_g) = (0f64, 0f64, 0f64);
        let mut lr = opts.lr;
        for k in 0..steps_per_epoch {
            let idx = &order[k * opts.batch..(k + 1) * opts.batch];
            let augs: Vec<Augment> = idx.iter().map(|_| Augment::random(&mut rng)).collect();
            let x = batch_tensor(train, idx, size, Some(&augs))?;
            let ages: Vec<u32> = idx.iter().map(|&i| train.ages[i]).collect();
            let genders: Vec<u32> = idx.iter().map(|&i| train.genders[i]).collect();
            let age_t = net::age_targets(&ages, opts.age_sigma)?;
            let gender_t = Tensor::new(genders.as_slice(), &Device::Cpu)?;
            lr = lr_at(opts.lr, step, opts.warmup_steps, total_steps);
            opt.set_learning_rate(lr);
            let (a, g) = net.forward_t(&x, true)?;
            let (loss, la, lg) = net::loss(&a, &g, &age_t, &gender_t)?;
            let l = la + lg;
            ensure!(l.is_finite(), "loss became {l} at step {step}");
            opt.backward_step(&loss)?;
            step += 1;
            sum += l as f64;
            sum_a += la as f64;
            sum_g += lg as f64;
            let ips = ((k + 1) * opts.batch) as f64 / t0.elapsed().as_secs_f64();
            bar.set_position(k as u64 + 1);
            bar.set_message(format!(
                "loss {:.3} {ips:.1} img/s lr {lr:.2e}{last_val}",
                sum / (k + 1) as f64
            ));
            if !opts.progress && (k + 1) % 100 == 0 {
                log::info!(
                    "epoch {} step {}/{steps_per_epoch}: loss {:.3} {ips:.1} img/s",
                    epoch + 1,
                    k + 1,
                    sum / (k + 1) as f64
                );
            }
            if stop.load(Ordering::Relaxed) {
                bar.abandon();
                save_checkpoint(&opts.out, vm, state)?;
                bail!(
                    "interrupted in epoch {}: weights saved to {} (resume with --resume; the epoch reruns)",
                    epoch + 1,
                    opts.out.display()
                );
            }
        }
        let seconds = t0.elapsed().as_secs_f32();
        bar.finish_and_clear();
        let (val_mae, val_acc) = evaluate(net, val, size)?;
        let n = steps_per_epoch as f64;
        let rec = EpochRecord {
            epoch: epoch + 1,
            steps: steps_per_epoch,
            train_loss: (sum / n) as f32,
            train_age_loss: (sum_a / n) as f32,
            train_gender_loss: (sum_g / n) as f32,
            val_mae,
            val_gender_accuracy: val_acc,
            images_per_s: (steps_per_epoch * opts.batch) as f32 / seconds,
            seconds,
            lr_end: lr,
        };
        println!(
            "epoch {}/{}: loss {:.4} (age {:.4}, gender {:.4}) | val MAE {:.2} years, gender accuracy {:.2}% | {:.1} img/s, {:.0} s",
            rec.epoch,
            opts.epochs,
            rec.train_loss,
            rec.train_age_loss,
            rec.train_gender_loss,
            rec.val_mae,
            rec.val_gender_accuracy * 100.0,
            rec.images_per_s,
            rec.seconds
        );
        state.history.push(rec);
        state.epoch = epoch + 1;
        state.step = step;
        save_checkpoint(&opts.out, vm, state)?;
    }
    Ok(())
}

/// Loads the crop cache at `data` and trains.
pub fn train_from_cache(opts: &TrainOptions, data: &Path, val_split: f64) -> Result<State> {
    let t = Instant::now();
    let (train_set, val_set) = crops::load_split(data, val_split)?;
    log::info!(
        "{} training and {} validation crops loaded in {:.0} s",
        train_set.images.len(),
        val_set.images.len(),
        t.elapsed().as_secs_f32()
    );
    let mut opts = opts.clone();
    if let Some(m) = crops::cache_margin(data) {
        opts.crop_margin = m;
    }
    train(&opts, &train_set, &val_set)
}

/// The ONNX model of a checkpoint, with the metadata the device reads.
pub fn export_bytes(checkpoint: &Path) -> Result<Vec<u8>> {
    let (state, _vm, net) = load_checkpoint(checkpoint)?;
    let s = state.net.input_size as i64;
    let mut g = GraphBuilder::new("agecam_age_gender");
    g.input("input", &[None, Some(3), Some(s), Some(s)]);
    net.export(&mut g, "input")?;
    let list = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let bins: Vec<String> = (0..net::NUM_AGES).map(|a| a.to_string()).collect();
    g.metadata(keys::INPUT_SIZE, &s.to_string())
        .metadata(keys::MEAN, &list(&state.mean))
        .metadata(keys::STD, &list(&state.std))
        .metadata(keys::CHANNEL_ORDER, "RGB")
        .metadata(keys::AGE_BINS, &bins.join(","))
        .metadata(keys::GENDER_LABELS, "male,female")
        .metadata(keys::CROP_MARGIN, &state.crop_margin.to_string())
        .metadata(
            "agecam.arch",
            &format!("{:?}", state.net.arch).to_lowercase(),
        )
        .metadata("agecam.width", &state.net.width.to_string())
        .metadata("agecam.epochs", &state.epoch.to_string())
        .metadata("agecam.training_data", TRAINING_DATA)
        .metadata("agecam.training_licence", TRAINING_LICENCE);
    Ok(g.to_bytes())
}

/// `agecam-host export`.
pub fn export(checkpoint: &Path, out: &Path) -> Result<()> {
    let bytes = export_bytes(checkpoint)?;
    std::fs::write(out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::age_gender::AgeGenderModel;
    use crate::train::net::Arch;
    use image::{Rgb, RgbImage};
    use tract_onnx::prelude::Tensor;
    use tract_onnx::prelude::*;

    fn synthetic(n: usize, size: u32) -> InMemory {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        use rand::RngExt;
        let images = (0..n)
            .map(|i| {
                let tone = (i * 37 % 200) as u8;
                RgbImage::from_fn(size, size, |x, y| {
                    Rgb([tone, (x * 7 + y) as u8, rng.random_range(0..255u32) as u8])
                })
            })
            .collect();
        InMemory {
            images,
            ages: (0..n).map(|i| (i * 13 % 90) as u32).collect(),
            genders: (0..n).map(|i| (i % 2) as u32).collect(),
        }
    }

    fn opts(arch: Arch, width: f64, out: &Path) -> TrainOptions {
        TrainOptions {
            net: NetConfig {
                arch,
                input_size: 32,
                width,
            },
            epochs: 2,
            batch: 4,
            lr: 1e-3,
            warmup_steps: 2,
            age_sigma: 2.0,
            seed: 1,
            init: None,
            init_checkpoint: None,
            out: out.to_path_buf(),
            resume: false,
            max_steps_per_epoch: Some(2),
            crop_margin: 0.25,
            progress: false,
        }
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((lr_at(1.0, 0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((lr_at(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, 10, 10, 100) - 1.0).abs() < 1e-12);
        assert!((lr_at(1.0, 55, 10, 100) - 0.5).abs() < 1e-12);
        assert!(lr_at(1.0, 100, 10, 100).abs() < 1e-12);
    }

    /// Trains a few steps, exports, and checks tract (directly and through the device's
    /// `AgeGenderModel`) against candle's eval-mode outputs.
    fn train_export_compare(arch: Arch, width: f64) {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        let data = synthetic(12, 40);
        let state = train(&opts(arch, width, &ck), &data, &synthetic(4, 40)).unwrap();
        assert_eq!((state.epoch, state.step, state.history.len()), (2, 4, 2));
        let onnx = dir.path().join("m.onnx");
        export(&ck, &onnx).unwrap();

        let (_s, _vm, net) = load_checkpoint(&ck).unwrap();
        let idx = [0, 1, 2];
        let x = batch_tensor(&data, &idx, 32, None).unwrap();
        let (a, g) = net.forward_t(&x, false).unwrap();
        let (a, g) = (a.to_vec2::<f32>().unwrap(), g.to_vec2::<f32>().unwrap());

        let plan = tract_onnx::onnx()
            .model_for_path(&onnx)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let input = tract_ndarray::Array4::from_shape_vec(
            (3, 3, 32, 32),
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        )
        .unwrap();
        let out = plan.run(tvec!(Tensor::from(input).into_tvalue())).unwrap();
        let ta = out[0].to_plain_array_view::<f32>().unwrap();
        let tg = out[1].to_plain_array_view::<f32>().unwrap();
        let mut worst = 0f32;
        for i in 0..3 {
            for (j, v) in a[i].iter().enumerate() {
                worst = worst.max((ta[[i, j]] - v).abs());
            }
            for (j, v) in g[i].iter().enumerate() {
                worst = worst.max((tg[[i, j]] - v).abs());
            }
        }
        assert!(worst < 1e-4, "{arch:?}: tract and candle differ by {worst}");

        // The device's loader reads the metadata and gives the same expected age.
        let model = AgeGenderModel::load(&onnx).unwrap();
        assert_eq!(model.info().input_size, 32);
        assert_eq!(model.info().mean, MEAN);
        assert_eq!(model.info().crop_margin, Some(0.25));
        let crops: Vec<RgbImage> = idx
            .iter()
            .map(|&i| {
                image::imageops::resize(
                    &data.images[i],
                    32,
                    32,
                    image::imageops::FilterType::Triangle,
                )
            })
            .collect();
        let x = {
            let small = InMemory {
                images: crops.clone(),
                ages: vec![0; 3],
                genders: vec![0; 3],
            };
            batch_tensor(&small, &[0, 1, 2], 32, None).unwrap()
        };
        let (a, _) = net.forward_t(&x, false).unwrap();
        let ages = net::expected_ages(&a).unwrap();
        let device = model.predict(&crops).unwrap();
        for (d, c) in device.iter().zip(&ages) {
            assert!((d.age - c).abs() < 1e-3, "device {} vs candle {c}", d.age);
        }
    }

    #[test]
    fn scratch_trains_exports_and_matches_tract() {
        train_export_compare(Arch::Scratch, 0.25);
    }

    #[test]
    fn mobilenet_v2_trains_exports_and_matches_tract() {
        train_export_compare(Arch::Mobilenetv2, 0.35);
    }

    #[test]
    fn resume_continues_from_the_saved_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        let data = synthetic(8, 36);
        let mut o = opts(Arch::Scratch, 0.25, &ck);
        o.epochs = 1;
        let first = train(&o, &data, &data).unwrap();
        assert_eq!(first.epoch, 1);
        o.epochs = 2;
        o.resume = true;
        let second = train(&o, &data, &data).unwrap();
        assert_eq!((second.epoch, second.step), (2, 4));
        assert_eq!(second.history[0], first.history[0]);
        o.net.width = 0.5;
        let err = train(&o, &data, &data).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
    }

    /// `--init-checkpoint`: a checkpoint trained at one input size starts a run at another;
    /// the weights carry over (a learning rate of 1e-9 leaves them within 1e-6), the new run
    /// has its own schedule and records where it started.
    #[test]
    fn init_checkpoint_carries_weights_to_another_input_size() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let data = synthetic(8, 48);
        let mut o = opts(Arch::Mobilenetv2, 0.35, &from);
        o.epochs = 1;
        train(&o, &data, &data).unwrap();

        o.out = to.clone();
        o.net.input_size = 40;
        o.lr = 1e-9;
        o.init_checkpoint = Some(from.clone());
        let state = train(&o, &data, &data).unwrap();
        assert_eq!((state.epoch, state.step, state.net.input_size), (1, 2, 40));
        assert_eq!(state.init_checkpoint.as_deref(), Some(from.as_path()));

        let (_, before, _) = load_checkpoint(&from).unwrap();
        let (_, after, _) = load_checkpoint(&to).unwrap();
        let (before, after) = (before.data().lock().unwrap(), after.data().lock().unwrap());
        let mut compared = 0;
        for (name, var) in before.iter().filter(|(n, _)| !n.contains("running")) {
            let diff = (var.as_tensor() - after[name].as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-6, "{name} moved by {diff}");
            compared += 1;
        }
        assert!(compared > 50, "only {compared} variables compared");

        // Another width does not fit the saved tensors: refused with both named.
        o.out = dir.path().join("other");
        o.net.width = 0.5;
        let err = train(&o, &data, &data).unwrap_err().to_string();
        assert!(
            err.contains("--init-checkpoint") && err.contains("0.35"),
            "{err}"
        );
    }
}
