//! `agecam-host train` and `agecam-host export`.
//!
//! Training: AdamW (weight decay 0, i.e. Adam), linear warm-up then cosine decay of the
//! learning rate per step, age loss = cross-entropy over 101 age classes (optionally against a
//! Gaussian of `age_sigma` years around the true age), gender loss = 2-class cross-entropy.
//! An age-group label (FairFace) trains with the likelihood of its group, −log Σ_{a∈group} p(a).
//! Several datasets train together ([`DataSource`]), each drawn `weight` × its size per epoch
//! and validated on its own every epoch. Augmentation (seeded): [`AugmentSet`].
//!
//! A checkpoint folder holds `model.safetensors` (every variable, BN running statistics
//! included) and `state.json` ([`State`]: network settings, normalisation, epoch, step,
//! history). It is written after every epoch and on Ctrl-C/SIGTERM (then the interrupted epoch
//! reruns from its start on `--resume`, from the weights trained so far). candle-nn's AdamW
//! keeps its moments private, so they are not saved: a resumed run restarts them (its bias
//! correction re-warms them within a few dozen steps).

use super::crops::{self, AgeLabel, Augment, AugmentSet, InMemory};
use super::dataset::GroupLimits;
use super::init_model::InitModelError;
use super::net::{self, Arch, Net, NetConfig};
use agecam::model::onnx_build::GraphBuilder;
use agecam::vision::crop::CropStyle;
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
/// A dataset training reads (`--data FORMAT:CACHE[:WEIGHT]`), with what its licence allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    Utkface,
    Fairface,
}

impl DataKind {
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Utkface => "UTKFace",
            DataKind::Fairface => "FairFace",
        }
    }

    /// The licence terms a model trained on it inherits.
    pub fn licence(self) -> &'static str {
        match self {
            DataKind::Utkface => "UTKFace: non-commercial research only",
            DataKind::Fairface => {
                "FairFace (Kärkkäinen & Joo, 2021): CC BY 4.0, commercial use allowed with attribution"
            }
        }
    }

    /// The dataset [`DataKind::name`] names, as an export's `agecam.training_data` lists it.
    pub fn from_name(name: &str) -> Option<DataKind> {
        <DataKind as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|k| k.name() == name)
    }

    pub fn allows_commercial_use(self) -> bool {
        matches!(self, DataKind::Fairface)
    }
}

/// One dataset's crops for a training run: the training side is drawn `weight` × its size per
/// epoch (with replacement beyond 1), the validation side is scored on its own every epoch.
pub struct DataSource {
    pub kind: DataKind,
    pub weight: f64,
    pub train: InMemory,
    pub val: InMemory,
}

/// Validation scores of one dataset after an epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ValScores {
    pub data: DataKind,
    pub faces: usize,
    /// Faces with an exact age, and the mean absolute error of the expected age over them.
    pub exact_faces: usize,
    pub mae: Option<f32>,
    pub gender_accuracy: f32,
    /// YOUNG/MIDDLE/OLD (< 30, 30–59, ≥ 60) of the expected age.
    pub group3_accuracy: f32,
    /// Share of range-labelled faces whose expected age falls in the labelled range (FairFace's
    /// exact 9-group accuracy).
    pub range_accuracy: Option<f32>,
}

impl ValScores {
    fn brief(&self) -> String {
        let mut s = self.data.name().to_string();
        if let Some(m) = self.mae {
            s.push_str(&format!(" MAE {m:.2}"));
        }
        s.push_str(&format!(
            " gender {:.1}% 3-group {:.1}%",
            self.gender_accuracy * 100.0,
            self.group3_accuracy * 100.0
        ));
        if let Some(r) = self.range_accuracy {
            s.push_str(&format!(" 9-group {:.1}%", r * 100.0));
        }
        s
    }
}

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
    /// Start from an exported float age/gender model (`--init-model`, see
    /// [`crate::init_model`]): any width up to its own, any input size.
    pub init_model: Option<PathBuf>,
    pub out: PathBuf,
    pub resume: bool,
    /// Stop each epoch after this many steps (quick runs and tests).
    pub max_steps_per_epoch: Option<usize>,
    pub crop_margin: f32,
    /// The crops' style (box or eye-aligned): set from the caches by [`train_from_caches`],
    /// carried into the checkpoint and the exported metadata.
    pub crop: CropStyle,
    pub augment: AugmentSet,
    /// Distillation: weight of the teacher's age (`CACHE/teacher.csv`) as a soft target beside
    /// the labels; 0 = none.
    pub teacher_weight: f32,
    /// Draw each source's crops balanced by these labels (`--balance`); empty: uniformly.
    pub balance: Vec<BalanceBy>,
    /// Exponent of the balance: a crop's weight is 1 / (its group's size)^power (`--balance-power`).
    pub balance_power: f64,
    pub progress: bool,
}

/// A label training can balance its draws by (`train --balance race,age`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BalanceBy {
    /// The labelled race (FairFace's seven, UTKFace's five; crops without one form a group).
    Race,
    /// FairFace's nine age groups (an exact age falls in one; a range by its lowest age).
    Age,
}

/// Per-crop draw weights over `indices` of `data`: 1 / (the size of the crop's group, by
/// `by`)^`power`. With power 1 every group is drawn equally often; 0.5 draws each group in
/// proportion to the square root of its size. Uniform when `by` is empty.
pub fn balance_weights(
    data: &InMemory,
    indices: &[usize],
    by: &[BalanceBy],
    power: f64,
) -> Vec<f64> {
    let key = |i: usize| -> (usize, usize) {
        let race = if by.contains(&BalanceBy::Race) {
            data.races
                .get(i)
                .copied()
                .flatten()
                .map_or(usize::MAX, |r| r.index())
        } else {
            0
        };
        let age = if by.contains(&BalanceBy::Age) {
            crate::dataset::fairface_group_of(data.ages[i].lowest() as f32)
        } else {
            0
        };
        (race, age)
    };
    let mut counts = std::collections::HashMap::new();
    for &i in indices {
        *counts.entry(key(i)).or_insert(0usize) += 1;
    }
    indices
        .iter()
        .map(|&i| (counts[&key(i)] as f64).powf(-power))
        .collect()
}

/// What a distilled model learnt from besides its datasets, for the licence: face-api's
/// network was trained on non-commercial data (UTK, FGNET, ChaLearn, Wiki, IMDB, CACD,
/// MegaAge).
/// How an export's `agecam.training_data` names distillation from [`TEACHER`].
pub const TEACHER_DATA: &str = "distilled from the face-api teacher";
pub const TEACHER: &str = "face-api age_gender_model 1.7.15 (MIT code; trained on UTK, FGNET, ChaLearn, Wiki, IMDB, CACD, MegaAge: non-commercial data)";

/// One line of the history (`epoch` counts from 1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: usize,
    pub train_loss: f32,
    pub train_age_loss: f32,
    pub train_gender_loss: f32,
    /// Over every validation face with an exact age (`None`: no such face).
    pub val_mae: Option<f32>,
    /// Over every validation face.
    pub val_gender_accuracy: f32,
    /// Each dataset's own scores.
    #[serde(default)]
    pub val: Vec<ValScores>,
    pub images_per_s: f32,
    /// Seconds of training steps (the figure behind `images_per_s`).
    pub seconds: f32,
    /// Wall-clock seconds of the whole epoch: its steps and its validation (`None` in
    /// histories from before it was recorded).
    #[serde(default)]
    pub wall_seconds: Option<f32>,
    /// When the epoch ended, in seconds since the Unix epoch: a run resumed over days shows
    /// where it paused.
    #[serde(default)]
    pub ended_unix_s: Option<u64>,
    pub lr_end: f64,
}

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub net: NetConfig,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub crop_margin: f32,
    /// The crop style the run trains on (older checkpoints: box crops).
    #[serde(default)]
    pub crop: CropStyle,
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
    /// The datasets this run trains on, with their weights.
    #[serde(default = "utkface_only")]
    pub sources: Vec<(DataKind, f64)>,
    /// Every dataset the weights have learnt from: this run's and, through
    /// `--init-checkpoint`, its start's. The exported licence follows from it.
    #[serde(default)]
    pub lineage: Vec<DataKind>,
    #[serde(default)]
    pub augment: AugmentSet,
    #[serde(default)]
    pub teacher_weight: f32,
    /// Teachers the weights learnt from (this run's and, through `--init-checkpoint`, its
    /// start's).
    #[serde(default)]
    pub teachers: Vec<String>,
    /// `--init-model`: the model started from, and the licence lines of its metadata.
    #[serde(default)]
    pub init_model: Option<PathBuf>,
    #[serde(default)]
    pub inherited_licences: Vec<String>,
    pub history: Vec<EpochRecord>,
}

/// Checkpoints from before several datasets trained on UTKFace alone.
fn utkface_only() -> Vec<(DataKind, f64)> {
    vec![(DataKind::Utkface, 1.0)]
}

impl State {
    /// Every dataset behind the weights, in a fixed order (older checkpoints: UTKFace).
    pub fn learnt_from(&self) -> Vec<DataKind> {
        let mut kinds: Vec<DataKind> = self
            .lineage
            .iter()
            .copied()
            .chain(self.sources.iter().map(|(k, _)| *k))
            .collect();
        kinds.sort_by_key(|k| *k as u8);
        kinds.dedup();
        kinds
    }
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

/// Scores one dataset's validation crops (unaugmented, eval-mode network).
pub fn evaluate(net: &Net, kind: DataKind, data: &InMemory, size: usize) -> Result<ValScores> {
    let limits = GroupLimits::default();
    let (mut abs, mut exact, mut gender, mut group3, mut in_range, mut ranges) =
        (0f64, 0usize, 0usize, 0usize, 0usize, 0usize);
    let all: Vec<usize> = (0..data.images.len()).collect();
    for chunk in all.chunks(64) {
        let x = batch_tensor(data, chunk, size, None)?;
        let (a, g) = net.forward_t(&x, false)?;
        let ages = net::expected_ages(&a)?;
        let g = g.argmax(1)?.to_vec1::<u32>()?;
        for (k, &i) in chunk.iter().enumerate() {
            let label = data.ages[i];
            match label {
                AgeLabel::Exact(age) => {
                    abs += (ages[k] - age.min(100) as f32).abs() as f64;
                    exact += 1;
                }
                AgeLabel::Range(lo, hi) => {
                    ranges += 1;
                    // Expected ages run 0–100, so 70–100 holds every age from 70.
                    in_range += usize::from((lo..=hi).contains(&(ages[k].floor() as u32)));
                }
            }
            group3 += usize::from(limits.group(ages[k]) == limits.group(label.lowest() as f32));
            gender += usize::from(g[k] == data.genders[i]);
        }
    }
    let n = data.images.len();
    let share = |k: usize, of: usize| (of > 0).then(|| (k as f64 / of as f64) as f32);
    Ok(ValScores {
        data: kind,
        faces: n,
        exact_faces: exact,
        mae: share_f(abs, exact),
        gender_accuracy: share(gender, n).unwrap_or(0.0),
        group3_accuracy: share(group3, n).unwrap_or(0.0),
        range_accuracy: share(in_range, ranges),
    })
}

fn share_f(sum: f64, of: usize) -> Option<f32> {
    (of > 0).then(|| (sum / of as f64) as f32)
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
    let text = std::fs::read_to_string(&path).map_err(|source| TrainError::ReadState {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TrainError::BadState { path, source })
}

/// Loads a checkpoint's saved variables into `vm` (a network of the same shape).
fn load_weights(vm: &mut VarMap, dir: &Path) -> Result<()> {
    vm.load(dir.join("model.safetensors"))
        .map_err(|source| TrainError::LoadWeights {
            dir: dir.to_path_buf(),
            source,
        })
}

/// Reads a checkpoint's state and builds its network with the saved variables.
pub fn load_checkpoint(dir: &Path) -> Result<(State, VarMap, Net)> {
    let state = read_state(dir)?;
    let (mut vm, net) = Net::new(&state.net)?;
    load_weights(&mut vm, dir)?;
    Ok((state, vm, net))
}

/// The training crops of every source in one array, with each source's index range and
/// weight.
struct Mixture {
    train: InMemory,
    parts: Vec<(std::ops::Range<usize>, f64)>,
    vals: Vec<(DataKind, InMemory)>,
    balance: Vec<BalanceBy>,
    balance_power: f64,
}

impl Mixture {
    fn new(sources: Vec<DataSource>) -> Mixture {
        let mut m = Mixture {
            train: InMemory::default(),
            parts: Vec::new(),
            vals: Vec::new(),
            balance: Vec::new(),
            balance_power: 1.0,
        };
        for s in sources {
            let start = m.train.images.len();
            m.train.append(s.train);
            m.parts.push((start..m.train.images.len(), s.weight));
            m.vals.push((s.kind, s.val));
        }
        m
    }

    /// How many crops one epoch draws: `weight × size` of each source with any crops.
    fn per_epoch(&self) -> usize {
        self.parts
            .iter()
            .filter(|(range, _)| !range.is_empty())
            .map(|(range, weight)| (range.len() as f64 * weight).round() as usize)
            .sum()
    }

    /// One epoch's order: `weight × size` draws from each source (every crop once per whole
    /// weight, the rest a random subset; balanced, each draw by [`balance_weights`] with
    /// replacement), all shuffled together.
    fn epoch_order(&self, rng: &mut rand::rngs::StdRng) -> Vec<usize> {
        use rand::RngExt;
        let mut order = Vec::new();
        for (range, weight) in &self.parts {
            let want = (range.len() as f64 * weight).round() as usize;
            let mut idx: Vec<usize> = range.clone().collect();
            if !self.balance.is_empty() && !idx.is_empty() {
                let mut cumulative =
                    balance_weights(&self.train, &idx, &self.balance, self.balance_power);
                let mut total = 0.0;
                for w in cumulative.iter_mut() {
                    total += *w;
                    *w = total;
                }
                for _ in 0..want {
                    let r = rng.random_range(0.0..total);
                    let at = cumulative.partition_point(|&c| c <= r).min(idx.len() - 1);
                    order.push(idx[at]);
                }
                continue;
            }
            let mut left = want;
            while left > 0 && !idx.is_empty() {
                idx.shuffle(rng);
                let take = left.min(idx.len());
                order.extend_from_slice(&idx[..take]);
                left -= take;
            }
        }
        order.shuffle(rng);
        order
    }
}

/// Trains on in-memory crops of one or more datasets; returns the final state. Checkpoints go
/// to `opts.out`.
pub fn train(opts: &TrainOptions, sources: Vec<DataSource>) -> Result<State> {
    if opts.batch < 2 {
        return Err(TrainError::Batch);
    }
    if sources.is_empty() {
        return Err(TrainError::NoData);
    }
    for s in &sources {
        if !(s.weight.is_finite() && s.weight > 0.0) {
            return Err(TrainError::Weight {
                kind: s.kind.name(),
                weight: s.weight,
            });
        }
    }
    if !(0.0..=1.0).contains(&opts.balance_power) {
        return Err(TrainError::BalancePower(opts.balance_power));
    }
    let spec: Vec<(DataKind, f64)> = sources.iter().map(|s| (s.kind, s.weight)).collect();
    let mut mix = Mixture::new(sources);
    mix.balance = opts.balance.clone();
    mix.balance_power = opts.balance_power;
    let per_epoch = mix.per_epoch();
    if per_epoch < opts.batch {
        return Err(TrainError::TooFewCrops {
            per_epoch,
            batch: opts.batch,
        });
    }
    let (vm, net, mut state) = if opts.resume && opts.out.join("state.json").exists() {
        let (state, vm, net) = load_checkpoint(&opts.out)?;
        if state.net != opts.net {
            return Err(TrainError::ResumeNet {
                out: opts.out.clone(),
                checkpoint: state.net,
                asked: opts.net,
            });
        }
        if state.crop != opts.crop {
            return Err(TrainError::ResumeCrop {
                out: opts.out.clone(),
                checkpoint: state.crop,
                caches: opts.crop,
            });
        }
        if state.sources != spec {
            return Err(TrainError::ResumeData {
                out: opts.out.clone(),
                checkpoint: state.sources.clone(),
                asked: spec,
            });
        }
        log::info!(
            "resuming {} after epoch {} (step {})",
            opts.out.display(),
            state.epoch,
            state.step
        );
        (vm, net, state)
    } else {
        let inits = [
            opts.init.is_some(),
            opts.init_checkpoint.is_some(),
            opts.init_model.is_some(),
        ];
        if inits.iter().filter(|x| **x).count() > 1 {
            return Err(TrainError::SeveralInits);
        }
        let mut inherited_licences = Vec::new();
        let (mut vm, net) = Net::new(&opts.net)?;
        let mut lineage = Vec::new();
        let mut teachers = Vec::new();
        if let Some(from) = &opts.init_checkpoint {
            let from_state = read_state(from)?;
            if !(from_state.net.arch == opts.net.arch && from_state.net.width == opts.net.width) {
                return Err(TrainError::InitCheckpoint {
                    from: from.clone(),
                    arch: from_state.net.arch,
                    width: from_state.net.width,
                    asked_arch: opts.net.arch,
                    asked_width: opts.net.width,
                });
            }
            load_weights(&mut vm, from)?;
            lineage = from_state.learnt_from();
            teachers = from_state.teachers.clone();
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
                return Err(TrainError::InitNeedsMobilenet);
            };
            let (loaded, in_file) = super::tflite::init::init_from_file(m, init)?;
            log::info!(
                "--init {}: loaded {loaded} convolutions (of {in_file} in the file; the classifier is not used)",
                init.display()
            );
        }
        if let Some(path) = &opts.init_model {
            let Net::Mobilenetv2(m) = &net else {
                return Err(TrainError::InitModelNeedsMobilenet);
            };
            let model = crate::init_model::ExportedModel::read(path)?;
            let at_path = |source| TrainError::InitModel {
                path: path.clone(),
                source,
            };
            let info = model.info().map_err(at_path)?;
            if !(info.mean == MEAN && info.std == STD) {
                return Err(TrainError::InitModelNormalisation {
                    path: path.clone(),
                    mean: info.mean,
                    std: info.std,
                });
            }
            let loaded = model.apply(m).map_err(at_path)?;
            let learnt = model.training_data().map_err(at_path)?;
            for name in learnt {
                match DataKind::from_name(name) {
                    Some(kind) => lineage.push(kind),
                    None if name == TEACHER_DATA => teachers.push(TEACHER.to_string()),
                    None => {
                        return Err(TrainError::UnknownTrainingData {
                            path: path.clone(),
                            name: name.to_string(),
                        })
                    }
                }
            }
            if let Some(l) = model.metadata.get("agecam.training_licence") {
                inherited_licences.extend(l.split("; ").map(str::to_string));
            }
            // BatchNorm statistics of a batch spread over the training crops.
            let n = mix.train.images.len();
            let k = n.min(64);
            let idx: Vec<usize> = (0..k).map(|i| i * n / k).collect();
            m.calibrate_bn(&batch_tensor(&mix.train, &idx, opts.net.input_size, None)?)?;
            log::info!(
                "--init-model {}: loaded {loaded} convolutions and both heads{}, BatchNorm calibrated on {k} crops",
                path.display(),
                if opts.net.width < 1.0 { " (leading channels)" } else { "" }
            );
        }
        let state = State {
            net: opts.net,
            mean: MEAN,
            std: STD,
            crop_margin: opts.crop_margin,
            crop: opts.crop,
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
            sources: spec,
            lineage,
            augment: opts.augment,
            teacher_weight: opts.teacher_weight,
            teachers: {
                if opts.teacher_weight > 0.0 && !teachers.iter().any(|t| t == TEACHER) {
                    teachers.push(TEACHER.to_string());
                }
                teachers
            },
            init_model: opts.init_model.clone(),
            inherited_licences,
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
    let result = run_epochs(opts, &mix, &vm, &net, &mut opt, &mut state, &stop);
    for h in handlers {
        signal_hook::low_level::unregister(h);
    }
    result.map(|()| state)
}

fn run_epochs(
    opts: &TrainOptions,
    mix: &Mixture,
    vm: &VarMap,
    net: &Net,
    opt: &mut AdamW,
    state: &mut State,
    stop: &AtomicBool,
) -> Result<()> {
    let size = opts.net.input_size;
    let train = &mix.train;
    let per_epoch = mix.per_epoch();
    let steps_per_epoch = (per_epoch / opts.batch)
        .min(opts.max_steps_per_epoch.unwrap_or(usize::MAX))
        .max(1);
    let total_steps = steps_per_epoch * opts.epochs;
    let mut step = state.step;
    for epoch in state.epoch..opts.epochs {
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed ^ (epoch as u64) << 32);
        let order = mix.epoch_order(&mut rng);
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
            let v: Vec<String> = r.val.iter().map(ValScores::brief).collect();
            format!(" | val {}", v.join(" | "))
        });
        let t0 = Instant::now();
        let (mut sum, mut sum_a, mut sum_g) = (0f64, 0f64, 0f64);
        let mut lr = opts.lr;
        for k in 0..steps_per_epoch {
            let idx = &order[k * opts.batch..(k + 1) * opts.batch];
            let augs: Vec<Augment> = idx
                .iter()
                .map(|_| Augment::draw(opts.augment, &mut rng))
                .collect();
            let x = batch_tensor(train, idx, size, Some(&augs))?;
            let ages: Vec<AgeLabel> = idx.iter().map(|&i| train.ages[i]).collect();
            let genders: Vec<u32> = idx.iter().map(|&i| train.genders[i]).collect();
            let teacher: Vec<Option<f32>> = idx.iter().map(|&i| train.teacher_age(i)).collect();
            let age_t = net::mixed_age_targets_with_teacher(
                &ages,
                &teacher,
                opts.age_sigma,
                opts.teacher_weight,
            )?;
            let gender_t = Tensor::new(genders.as_slice(), &Device::Cpu)?;
            lr = lr_at(opts.lr, step, opts.warmup_steps, total_steps);
            opt.set_learning_rate(lr);
            let (a, g) = net.forward_t(&x, true)?;
            let (loss, la, lg) = net::loss(&a, &g, &age_t, &gender_t)?;
            let l = la + lg;
            if !l.is_finite() {
                return Err(TrainError::NonFiniteLoss { loss: l, step });
            }
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
                return Err(TrainError::Interrupted {
                    epoch: epoch + 1,
                    out: opts.out.clone(),
                });
            }
        }
        let seconds = t0.elapsed().as_secs_f32();
        bar.finish_and_clear();
        let mut val = Vec::new();
        for (kind, data) in mix.vals.iter().filter(|(_, d)| !d.images.is_empty()) {
            val.push(evaluate(net, *kind, data, size)?);
        }
        let exact: usize = val.iter().map(|v| v.exact_faces).sum();
        let abs: f64 = val
            .iter()
            .filter_map(|v| v.mae.map(|m| m as f64 * v.exact_faces as f64))
            .sum();
        let faces: usize = val.iter().map(|v| v.faces).sum();
        let right: f64 = val
            .iter()
            .map(|v| v.gender_accuracy as f64 * v.faces as f64)
            .sum();
        let n = steps_per_epoch as f64;
        let rec = EpochRecord {
            epoch: epoch + 1,
            steps: steps_per_epoch,
            train_loss: (sum / n) as f32,
            train_age_loss: (sum_a / n) as f32,
            train_gender_loss: (sum_g / n) as f32,
            val_mae: share_f(abs, exact),
            val_gender_accuracy: share_f(right, faces).unwrap_or(0.0),
            val,
            images_per_s: (steps_per_epoch * opts.batch) as f32 / seconds,
            seconds,
            wall_seconds: Some(t0.elapsed().as_secs_f32()),
            ended_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            lr_end: lr,
        };
        let v: Vec<String> = rec.val.iter().map(ValScores::brief).collect();
        println!(
            "epoch {}/{}: loss {:.4} (age {:.4}, gender {:.4}) | val {} | {:.1} img/s, {:.0} s",
            rec.epoch,
            opts.epochs,
            rec.train_loss,
            rec.train_age_loss,
            rec.train_gender_loss,
            v.join(" | "),
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

/// One `--data` argument: `FORMAT:CACHE[:WEIGHT]` (a bare `CACHE` is a UTKFace cache, as
/// before several datasets could train together).
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub kind: DataKind,
    pub cache: PathBuf,
    pub weight: f64,
}

/// Why training, a checkpoint or an export failed: the option, file or checkpoint concerned and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read {}", path.display())]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a checkpoint state", path.display())]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot load {}/model.safetensors", dir.display())]
    LoadWeights {
        dir: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("--batch must be at least 2 (BatchNorm)")]
    Batch,
    #[error("no training data: give --data")]
    NoData,
    #[error("{kind}: weight {weight} must be a positive number")]
    Weight { kind: &'static str, weight: f64 },
    #[error(
        "--balance-power {0} must be between 0 (no balance) and 1 (every group equally often)"
    )]
    BalancePower(f64),
    #[error("only {per_epoch} training crops per epoch, fewer than one batch of {batch}")]
    TooFewCrops { per_epoch: usize, batch: usize },
    #[error("--resume: the checkpoint in {} is {:?}, the command asks for {:?}", out.display(), checkpoint, asked)]
    ResumeNet {
        out: PathBuf,
        checkpoint: NetConfig,
        asked: NetConfig,
    },
    #[error(
        "--resume: the checkpoint in {} trained on {checkpoint} crops, the caches hold {caches} crops; give caches cut as it was (or start a new run with --init-checkpoint)",
        out.display()
    )]
    ResumeCrop {
        out: PathBuf,
        checkpoint: CropStyle,
        caches: CropStyle,
    },
    #[error(
        "--resume: the checkpoint in {} trained on {:?}, the command gives {:?}; give the same --data",
        out.display(),
        checkpoint,
        asked
    )]
    ResumeData {
        out: PathBuf,
        checkpoint: Vec<(DataKind, f64)>,
        asked: Vec<(DataKind, f64)>,
    },
    #[error(
        "give one of --init (ImageNet weights), --init-checkpoint (a trained checkpoint) and \
         --init-model (an exported model), not several"
    )]
    SeveralInits,
    #[error(
        "--init-checkpoint {}: it is {:?} with width {}, the command asks for {:?} with width {}",
        from.display(),
        arch,
        width,
        asked_arch,
        asked_width
    )]
    InitCheckpoint {
        from: PathBuf,
        arch: Arch,
        width: f64,
        asked_arch: Arch,
        asked_width: f64,
    },
    #[error("--init loads ImageNet MobileNetV2 weights: use --arch mobilenetv2")]
    InitNeedsMobilenet,
    #[error("--init-model starts a MobileNetV2: use --arch mobilenetv2")]
    InitModelNeedsMobilenet,
    #[error("--init-model {}", path.display())]
    InitModel {
        path: PathBuf,
        #[source]
        source: InitModelError,
    },
    #[error(
        "--init-model {}: its input normalisation is mean {:?} std {:?}, training uses \
         mean {:?} std {:?}",
        path.display(),
        mean,
        std,
        MEAN,
        STD
    )]
    InitModelNormalisation {
        path: PathBuf,
        mean: [f32; 3],
        std: [f32; 3],
    },
    #[error(
        "--init-model {}: its agecam.training_data names `{name}`, which this tool \
         does not know: its licence cannot be carried on",
        path.display()
    )]
    UnknownTrainingData { path: PathBuf, name: String },
    #[error("loss became {loss} at step {step}")]
    NonFiniteLoss { loss: f32, step: usize },
    #[error(
        "interrupted in epoch {epoch}: weights saved to {} (resume with --resume; the epoch reruns)",
        out.display()
    )]
    Interrupted { epoch: usize, out: PathBuf },
    #[error(
        "{} holds {style} crops, {} holds {first_style} crops: a model trains on one framing; remake one of them with agecam-host crops{hint}",
        cache.display(),
        first.display()
    )]
    Framings {
        cache: PathBuf,
        style: CropStyle,
        first: PathBuf,
        first_style: CropStyle,
        hint: &'static str,
    },
    #[error(
        "{}: its crops were cut with margin {margin}, another cache's with {other}; remake one of them with the same detector.crop_margin",
        cache.display()
    )]
    Margins {
        cache: PathBuf,
        margin: f32,
        other: f32,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Crops(#[from] crate::crops::CropsError),
    #[error(transparent)]
    Init(#[from] crate::tflite::init::InitError),
    #[error(transparent)]
    InitModelRead(#[from] InitModelError),
}

type Result<T> = std::result::Result<T, TrainError>;

/// Why a `--data` value is not FORMAT:CACHE[:WEIGHT].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataSpecError {
    #[error(
        "`{0}` is not a dataset format: give utkface:CACHE or fairface:CACHE, optionally :WEIGHT"
    )]
    Format(String),
    #[error("weight `{0}` is not a positive number")]
    Weight(String),
}

impl std::str::FromStr for DataSpec {
    type Err = DataSpecError;

    fn from_str(text: &str) -> std::result::Result<Self, DataSpecError> {
        use clap::ValueEnum;
        let Some((kind, rest)) = text.split_once(':') else {
            return Ok(DataSpec {
                kind: DataKind::Utkface,
                cache: PathBuf::from(text),
                weight: 1.0,
            });
        };
        let kind =
            DataKind::from_str(kind, true).map_err(|_| DataSpecError::Format(kind.to_string()))?;
        let (cache, weight) = match rest.rsplit_once(':') {
            Some((cache, w)) => {
                let weight: f64 = w
                    .parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| DataSpecError::Weight(w.to_string()))?;
                (cache, weight)
            }
            None => (rest, 1.0),
        };
        Ok(DataSpec {
            kind,
            cache: PathBuf::from(cache),
            weight,
        })
    }
}

/// Loads each crop cache (its train/validation split: the dataset's own, else the hash split
/// of `val_split`) and trains on them together.
pub fn train_from_caches(opts: &TrainOptions, data: &[DataSpec], val_split: f64) -> Result<State> {
    let mut opts = opts.clone();
    let mut sources = Vec::new();
    let mut margin: Option<f32> = None;
    let mut framing: Option<(CropStyle, &Path)> = None;
    for spec in data {
        let cache = crops::cache_framing(&spec.cache)?;
        if let Some((style, first)) = framing {
            if style != cache.style {
                return Err(TrainError::Framings {
                    cache: spec.cache.clone(),
                    style: cache.style,
                    first: first.to_path_buf(),
                    first_style: style,
                    hint: if matches!(style, CropStyle::Box) {
                        ""
                    } else {
                        " --align"
                    },
                });
            }
        }
        framing = Some((cache.style, &spec.cache));
        opts.crop = cache.style;
        if cache.size < opts.net.input_size as u32 {
            log::warn!(
                "{}: its crops are {} px, training at {} px enlarges them; remake it with agecam-host crops --size {}",
                spec.cache.display(),
                cache.size,
                opts.net.input_size,
                opts.net.input_size
            );
        }
        let t = Instant::now();
        let (train_set, val_set) =
            crops::load_split_with(&spec.cache, val_split, opts.teacher_weight > 0.0)?;
        log::info!(
            "{} {}: {} training and {} validation crops loaded in {:.0} s",
            spec.kind.name(),
            spec.cache.display(),
            train_set.images.len(),
            val_set.images.len(),
            t.elapsed().as_secs_f32()
        );
        if let Some(m) = cache.margin {
            if !margin.is_none_or(|before| before == m) {
                return Err(TrainError::Margins {
                    cache: spec.cache.clone(),
                    margin: m,
                    other: margin.unwrap_or_default(),
                });
            }
            margin = Some(m);
            opts.crop_margin = m;
        }
        sources.push(DataSource {
            kind: spec.kind,
            weight: spec.weight,
            train: train_set,
            val: val_set,
        });
    }
    train(&opts, sources)
}

/// The ONNX model of a checkpoint, with the metadata the device reads.
pub fn export_bytes(checkpoint: &Path) -> Result<Vec<u8>> {
    let (state, _vm, net) = load_checkpoint(checkpoint)?;
    let learnt = state.learnt_from();
    let mut data: Vec<&str> = learnt.iter().map(|k| k.name()).collect();
    let mut licences: Vec<&str> = learnt.iter().map(|k| k.licence()).collect();
    if state.init.is_some() {
        licences.push("ImageNet MobileNetV2 starting weights: Apache-2.0");
    }
    for l in &state.inherited_licences {
        if !licences.contains(&l.as_str()) {
            licences.push(l.as_str());
        }
    }
    for t in &state.teachers {
        data.push(TEACHER_DATA);
        licences.push(t);
    }
    let commercial = learnt.iter().all(|k| k.allows_commercial_use()) && state.teachers.is_empty();
    let s = state.net.input_size as i64;
    let mut g = GraphBuilder::new("agecam_age_gender");
    g.input("input", &[None, Some(3), Some(s), Some(s)]);
    net.export(&mut g, "input")?;
    let info = agecam::model::age_gender::ModelInfo {
        input_size: state.net.input_size as u32,
        mean: state.mean,
        std: state.std,
        age_bins: (0..net::NUM_AGES).map(|a| a as f32).collect(),
        gender_labels: [agecam::model::Gender::Male, agecam::model::Gender::Female],
        crop_margin: Some(state.crop_margin),
        crop: state.crop,
        // Measured after export: agecam-host eval --distributions, then age-prior.
        age_prior: None,
    };
    for (key, value) in info.to_metadata() {
        g.metadata(key, &value);
    }
    g.metadata(
        "agecam.arch",
        &format!("{:?}", state.net.arch).to_lowercase(),
    )
    .metadata("agecam.width", &state.net.width.to_string())
    .metadata("agecam.epochs", &state.epoch.to_string())
    .metadata("agecam.training_data", &data.join(" + "))
    .metadata("agecam.training_licence", &licences.join("; "))
    .metadata(
        "agecam.commercial_use",
        if commercial { "allowed" } else { "not allowed" },
    );
    Ok(g.to_bytes())
}

/// `agecam-host export`.
pub fn export(checkpoint: &Path, out: &Path) -> Result<()> {
    let bytes = export_bytes(checkpoint)?;
    std::fs::write(out, bytes).map_err(|source| TrainError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Arch;
    use agecam::model::age_gender::AgeGenderModel;
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
            ages: (0..n)
                .map(|i| AgeLabel::Exact((i * 13 % 90) as u32))
                .collect(),
            genders: (0..n).map(|i| (i % 2) as u32).collect(),
            teacher_ages: Vec::new(),
            races: Vec::new(),
        }
    }

    /// One UTKFace-like source.
    fn one(train: InMemory, val: InMemory) -> Vec<DataSource> {
        vec![DataSource {
            kind: DataKind::Utkface,
            weight: 1.0,
            train,
            val,
        }]
    }

    /// The largest absolute difference between two tensors of one shape.
    fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .unwrap()
    }

    /// A one-epoch MobileNetV2 checkpoint of `width` in `out`, trained on [`synthetic`] crops.
    fn small_checkpoint(width: f64, out: &Path) -> TrainOptions {
        let mut o = opts(Arch::Mobilenetv2, width, out);
        o.epochs = 1;
        train(&o, one(synthetic(8, 48), synthetic(8, 48))).unwrap();
        o
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
            init_model: None,
            out: out.to_path_buf(),
            resume: false,
            max_steps_per_epoch: Some(2),
            crop_margin: 0.25,
            crop: CropStyle::Box,
            augment: AugmentSet::Basic,
            teacher_weight: 0.0,
            balance: Vec::new(),
            balance_power: 1.0,
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
        let state = train(
            &opts(arch, width, &ck),
            one(synthetic(12, 40), synthetic(4, 40)),
        )
        .unwrap();
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
                ages: vec![AgeLabel::Exact(0); 3],
                genders: vec![0; 3],
                teacher_ages: Vec::new(),
                races: Vec::new(),
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
        let data = || synthetic(8, 36);
        let mut o = opts(Arch::Scratch, 0.25, &ck);
        o.epochs = 1;
        let first = train(&o, one(data(), data())).unwrap();
        assert_eq!(first.epoch, 1);
        o.epochs = 2;
        o.resume = true;
        let second = train(&o, one(data(), data())).unwrap();
        assert_eq!((second.epoch, second.step), (2, 4));
        assert_eq!(second.history[0], first.history[0]);
        // history.json: every epoch, across the restart, with its validation and wall time.
        let history: Vec<EpochRecord> =
            serde_json::from_str(&std::fs::read_to_string(ck.join("history.json")).unwrap())
                .unwrap();
        assert_eq!(history, second.history);
        for (i, rec) in history.iter().enumerate() {
            assert_eq!(rec.epoch, i + 1);
            assert_eq!(rec.val.len(), 1, "one validation per cache");
            assert_eq!(rec.val[0].faces, 8);
            let wall = rec.wall_seconds.unwrap();
            assert!(wall >= rec.seconds && wall > 0.0, "{rec:?}");
            assert!(rec.ended_unix_s.is_some());
        }
        // A history from before the wall time was recorded still reads.
        let mut old = serde_json::to_value(&history[0]).unwrap();
        old.as_object_mut().unwrap().remove("wall_seconds");
        old.as_object_mut().unwrap().remove("ended_unix_s");
        let old: EpochRecord = serde_json::from_value(old).unwrap();
        assert_eq!((old.wall_seconds, old.ended_unix_s), (None, None));
        o.net.width = 0.5;
        let err = train(&o, one(data(), data())).unwrap_err().to_string();
        assert!(err.contains("--resume"), "{err}");
    }

    /// A crop cache on disk of [`synthetic`] crops (6 train, 2 validation) cut as `style`.
    fn write_cache(dir: &Path, style: CropStyle) {
        std::fs::create_dir_all(dir.join("crops")).unwrap();
        let mut labels = String::from("crop,source,age,gender,split\n");
        for (i, img) in synthetic(8, 48).images.iter().enumerate() {
            let name = format!("{i}.jpg.png");
            img.save(dir.join("crops").join(&name)).unwrap();
            let split = if i < 6 { "train" } else { "val" };
            labels.push_str(&format!("{name},{i}.jpg,{},{},{split}\n", 20 + i, i % 2));
        }
        std::fs::write(dir.join("labels.csv"), labels).unwrap();
        std::fs::write(
            dir.join(crops::FRAMING_FILE),
            format!("crop = {style}\nsize = 48\n"),
        )
        .unwrap();
        std::fs::write(dir.join("crop_margin.txt"), "0.25\n").unwrap();
    }

    /// The caches' crop style goes into the checkpoint and the exported metadata; caches of
    /// two styles do not train together, nor does a checkpoint resume on the other style.
    #[test]
    fn caches_carry_their_framing_into_the_checkpoint_and_export() {
        use agecam::vision::crop::EYES;
        let dir = tempfile::tempdir().unwrap();
        let (boxed, aligned) = (dir.path().join("box"), dir.path().join("eyes"));
        write_cache(&boxed, CropStyle::Box);
        write_cache(&aligned, CropStyle::Eyes(EYES));
        let spec = |cache: &Path, kind| DataSpec {
            kind,
            cache: cache.to_path_buf(),
            weight: 1.0,
        };
        let ck = dir.path().join("ck");
        let mut o = opts(Arch::Scratch, 0.25, &ck);
        o.epochs = 1;
        let mixed = [
            spec(&boxed, DataKind::Utkface),
            spec(&aligned, DataKind::Fairface),
        ];
        let err = train_from_caches(&o, &mixed, 0.1).unwrap_err().to_string();
        assert!(
            err.contains(&aligned.display().to_string()) && err.contains("box crops"),
            "{err}"
        );
        let state = train_from_caches(&o, &[spec(&aligned, DataKind::Utkface)], 0.1).unwrap();
        assert_eq!(state.crop, CropStyle::Eyes(EYES));
        let onnx = dir.path().join("m.onnx");
        export(&ck, &onnx).unwrap();
        let model = AgeGenderModel::load(&onnx).unwrap();
        assert_eq!(model.info().crop, CropStyle::Eyes(EYES));
        assert_eq!(model.info().crop_margin, Some(0.25));
        o.resume = true;
        o.epochs = 2;
        let err = train_from_caches(&o, &[spec(&boxed, DataKind::Utkface)], 0.1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--resume"), "{err}");
        // A box-crop run exports no crop key: the model reads as box crops.
        let ck_box = dir.path().join("ck_box");
        let mut o = opts(Arch::Scratch, 0.25, &ck_box);
        o.epochs = 1;
        train_from_caches(&o, &[spec(&boxed, DataKind::Utkface)], 0.1).unwrap();
        export(&ck_box, &onnx).unwrap();
        assert_eq!(
            AgeGenderModel::load(&onnx).unwrap().info().crop,
            CropStyle::Box
        );
    }

    /// `--init-checkpoint`: a checkpoint trained at one input size starts a run at another;
    /// the weights carry over (a learning rate of 1e-9 leaves them within 1e-6), the new run
    /// has its own schedule and records where it started.
    #[test]
    fn init_checkpoint_carries_weights_to_another_input_size() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        let data = || synthetic(8, 48);
        let mut o = small_checkpoint(0.35, &from);
        o.out = to.clone();
        o.net.input_size = 40;
        o.lr = 1e-9;
        o.init_checkpoint = Some(from.clone());
        let state = train(&o, one(data(), data())).unwrap();
        assert_eq!((state.epoch, state.step, state.net.input_size), (1, 2, 40));
        assert_eq!(state.init_checkpoint.as_deref(), Some(from.as_path()));

        let (_, before, _) = load_checkpoint(&from).unwrap();
        let (_, after, _) = load_checkpoint(&to).unwrap();
        let (before, after) = (before.data().lock().unwrap(), after.data().lock().unwrap());
        let mut compared = 0;
        for (name, var) in before.iter().filter(|(n, _)| !n.contains("running")) {
            let diff = max_abs_diff(var.as_tensor(), after[name].as_tensor());
            assert!(diff < 1e-6, "{name} moved by {diff}");
            compared += 1;
        }
        assert!(compared > 50, "only {compared} variables compared");

        // Another width does not fit the saved tensors: refused with both named.
        o.out = dir.path().join("other");
        o.net.width = 0.5;
        let err = train(&o, one(data(), data())).unwrap_err().to_string();
        assert!(
            err.contains("--init-checkpoint") && err.contains("0.35"),
            "{err}"
        );
    }

    /// `--init-model`: an exported model's folded weights and heads load into a fresh network
    /// (the same function in eval mode once BatchNorm is calibrated, and training mode agrees
    /// on the calibration batch), a narrower network takes the leading channels, and the
    /// model's training data carries on into the new checkpoint's licence.
    #[test]
    fn init_model_starts_from_an_exported_model() {
        let dir = tempfile::tempdir().unwrap();
        let (from, onnx) = (dir.path().join("from"), dir.path().join("from.onnx"));
        let data = || synthetic(8, 48);
        small_checkpoint(0.5, &from);
        export(&from, &onnx).unwrap();
        let (_, _, trained) = load_checkpoint(&from).unwrap();
        let Net::Mobilenetv2(trained) = trained else {
            panic!()
        };

        let model = crate::init_model::ExportedModel::read(&onnx).unwrap();
        assert_eq!(model.convs.len(), 52);
        let x = batch_tensor(&data(), &[0, 1, 2, 3, 4, 5], 40, None).unwrap();
        let fresh = |width| {
            let cfg = crate::mobilenet_v2::Config {
                width_mult: width,
                input_size: 40,
                ..Default::default()
            };
            crate::mobilenet_v2::MobileNetV2::with_varmap(
                cfg,
                crate::mobilenet_v2::Backend::Custom,
                &Device::Cpu,
            )
            .unwrap()
        };
        let (_vm, same) = fresh(0.5);
        model.apply(&same).unwrap();
        same.calibrate_bn(&x).unwrap();
        let (want_age, want_gender) = trained.forward_t(&x, false).unwrap();
        let (age, gender) = same.forward_t(&x, false).unwrap();
        assert!(
            max_abs_diff(&age, &want_age) < 1e-3,
            "{}",
            max_abs_diff(&age, &want_age)
        );
        assert!(max_abs_diff(&gender, &want_gender) < 1e-3);
        // Training mode normalises by the batch: on the calibration batch it is the same.
        let (age_t, _) = same.forward_t(&x, true).unwrap();
        assert!(
            max_abs_diff(&age_t, &want_age) < 1e-2,
            "{}",
            max_abs_diff(&age_t, &want_age)
        );
        // Narrower: loads (leading channels), heads whole.
        let (_vm, narrow) = fresh(0.35);
        assert_eq!(model.apply(&narrow).unwrap(), 52);
        assert_eq!(
            narrow
                .age_head
                .weight()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            model.heads[0].0
        );
        // Through train(): lineage and licence carry on.
        let to = dir.path().join("to");
        let mut o = opts(Arch::Mobilenetv2, 0.35, &to);
        o.epochs = 1;
        o.init_model = Some(onnx.clone());
        let fairface = |d: InMemory| DataSource {
            kind: DataKind::Fairface,
            weight: 1.0,
            train: d,
            val: data(),
        };
        let state = train(&o, vec![fairface(data())]).unwrap();
        assert_eq!(
            state.learnt_from(),
            vec![DataKind::Utkface, DataKind::Fairface]
        );
        let bytes = export_bytes(&to).unwrap();
        let meta = agecam::model::onnx_build::read_metadata(&bytes).unwrap();
        assert_eq!(meta["agecam.commercial_use"], "not allowed", "{meta:?}");
        assert!(meta["agecam.training_data"].contains("UTKFace"), "{meta:?}");
        // A quantized or foreign file is refused, naming it.
        std::fs::write(dir.path().join("junk.onnx"), b"not onnx").unwrap();
        o.out = dir.path().join("junk_out");
        o.init_model = Some(dir.path().join("junk.onnx"));
        let err = format!("{:#}", train(&o, vec![fairface(data())]).unwrap_err());
        assert!(err.contains("junk.onnx"), "{err}");
    }

    /// Balanced draws: every race × age group equally often, whatever its size.
    #[test]
    fn balanced_draws_see_every_group_equally_often() {
        use crate::dataset::Race;
        // 90 White faces in their 20s, 9 Black faces in their 50s, 1 East Asian face in its 40s.
        let mut d = synthetic(100, 8);
        d.races = (0..100)
            .map(|i| {
                Some(match i {
                    0..90 => Race::White,
                    90..99 => Race::Black,
                    _ => Race::EastAsian,
                })
            })
            .collect();
        d.ages = (0..100)
            .map(|i| {
                AgeLabel::Exact(if i < 90 {
                    25
                } else if i < 99 {
                    55
                } else {
                    45
                })
            })
            .collect();
        let all: Vec<usize> = (0..100).collect();
        let w = balance_weights(&d, &all, &[BalanceBy::Race], 1.0);
        assert!((w[0] - 1.0 / 90.0).abs() < 1e-12 && (w[99] - 1.0).abs() < 1e-12);
        // Square-root sampling: the 90 White crops together weigh 90/√90 = √90 ≈ 9.5 against
        // the single East Asian crop's 1, not 1 against 1.
        let sqrt = balance_weights(&d, &all, &[BalanceBy::Race], 0.5);
        assert!((sqrt[0] - 1.0 / 90f64.sqrt()).abs() < 1e-12, "{}", sqrt[0]);
        let white: f64 = sqrt[..90].iter().sum();
        assert!((white - 90f64.sqrt()).abs() < 1e-9, "{white}");
        let uniform = balance_weights(&d, &all, &[], 1.0);
        assert!(uniform.iter().all(|&x| x == uniform[0]), "{uniform:?}");
        let mut mix = Mixture::new(one(d, synthetic(4, 8)));
        mix.balance = vec![BalanceBy::Race, BalanceBy::Age];
        let order = mix.epoch_order(&mut rand::rngs::StdRng::seed_from_u64(9));
        assert_eq!(order.len(), 100, "an epoch keeps its size");
        let white = order.iter().filter(|&&i| i < 90).count();
        let east_asian = order.iter().filter(|&&i| i == 99).count();
        // A third each, give or take the draw: not 90 % and 1 %.
        assert!((20..=46).contains(&white), "{white}");
        assert!((20..=46).contains(&east_asian), "{east_asian}");
    }

    /// Two datasets train together: each is drawn weight × its size per epoch, each is
    /// validated on its own, group labels score the 9-group accuracy, and the export's licence
    /// follows every dataset behind the weights, through --init-checkpoint too.
    #[test]
    fn datasets_mix_by_weight_validate_apart_and_carry_their_licence() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        let grouped = |n: usize| {
            let mut d = synthetic(n, 36);
            d.ages = (0..n)
                .map(|i| {
                    let (lo, hi) = crate::dataset::FAIRFACE_GROUPS[i % 9];
                    AgeLabel::Range(lo, hi)
                })
                .collect();
            d
        };
        let sources = || {
            vec![
                DataSource {
                    kind: DataKind::Fairface,
                    weight: 0.5,
                    train: grouped(16),
                    val: grouped(9),
                },
                DataSource {
                    kind: DataKind::Utkface,
                    weight: 2.0,
                    train: synthetic(4, 36),
                    val: synthetic(3, 36),
                },
            ]
        };
        let mix = Mixture::new(sources());
        let order = mix.epoch_order(&mut rand::rngs::StdRng::seed_from_u64(3));
        assert_eq!(order.len(), 8 + 8);
        assert_eq!(mix.per_epoch(), order.len());
        let fair: std::collections::HashSet<usize> =
            order.iter().copied().filter(|&i| i < 16).collect();
        assert_eq!(fair.len(), 8, "half of FairFace, each once");
        for i in 16..20 {
            assert_eq!(
                order.iter().filter(|&&j| j == i).count(),
                2,
                "UTKFace twice"
            );
        }

        let mut o = opts(Arch::Scratch, 0.25, &ck);
        o.max_steps_per_epoch = None;
        let state = train(&o, sources()).unwrap();
        let last = state.history.last().unwrap();
        assert_eq!(last.steps, 4);
        let kinds: Vec<DataKind> = last.val.iter().map(|v| v.data).collect();
        assert_eq!(kinds, vec![DataKind::Fairface, DataKind::Utkface]);
        assert_eq!(last.val[0].mae, None);
        assert!(last.val[0].range_accuracy.is_some());
        assert_eq!((last.val[1].faces, last.val[1].exact_faces), (3, 3));
        assert_eq!(last.val_mae, last.val[1].mae);

        let meta = |ck: &Path| {
            let bytes = export_bytes(ck).unwrap();
            let model = agecam::model::onnx_build::read_metadata(&bytes).unwrap();
            (
                model["agecam.training_data"].clone(),
                model["agecam.commercial_use"].clone(),
            )
        };
        assert_eq!(
            meta(&ck),
            ("UTKFace + FairFace".to_string(), "not allowed".to_string())
        );

        // FairFace alone may be used commercially...
        let fair_ck = dir.path().join("fair");
        o.out = fair_ck.clone();
        let only_fair = || {
            vec![DataSource {
                kind: DataKind::Fairface,
                weight: 1.0,
                train: grouped(16),
                val: grouped(9),
            }]
        };
        train(&o, only_fair()).unwrap();
        assert_eq!(
            meta(&fair_ck),
            ("FairFace".to_string(), "allowed".to_string())
        );
        // ...but not when distilled from the teacher (trained on non-commercial data),
        let distilled = dir.path().join("distilled");
        o.out = distilled.clone();
        o.teacher_weight = 0.5;
        let mut taught = only_fair();
        taught[0].train.teacher_ages = vec![Some(33.0); 16];
        let state = train(&o, taught).unwrap();
        assert_eq!(state.teachers, vec![TEACHER.to_string()]);
        assert_eq!(meta(&distilled).1, "not allowed");
        o.teacher_weight = 0.0;
        // ...and not once it starts from weights that saw UTKFace.
        o.out = dir.path().join("tuned");
        o.init_checkpoint = Some(ck.clone());
        let state = train(&o, only_fair()).unwrap();
        assert_eq!(
            state.learnt_from(),
            vec![DataKind::Utkface, DataKind::Fairface]
        );
        assert_eq!(meta(&o.out).1, "not allowed");
    }

    #[test]
    fn data_arguments_parse_with_format_and_weight() {
        let spec: DataSpec = "fairface:/c/ff:0.5".parse().unwrap();
        assert_eq!(
            spec,
            DataSpec {
                kind: DataKind::Fairface,
                cache: PathBuf::from("/c/ff"),
                weight: 0.5
            }
        );
        let spec: DataSpec = "utkface:cache".parse().unwrap();
        assert_eq!((spec.kind, spec.weight), (DataKind::Utkface, 1.0));
        let spec: DataSpec = "cache/".parse().unwrap();
        assert_eq!(
            (spec.kind, spec.cache),
            (DataKind::Utkface, PathBuf::from("cache/"))
        );
        assert!("imdb:x"
            .parse::<DataSpec>()
            .unwrap_err()
            .to_string()
            .contains("imdb"));
        assert!("fairface:x:-1"
            .parse::<DataSpec>()
            .unwrap_err()
            .to_string()
            .contains("-1"));
    }
}
