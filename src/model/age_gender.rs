//! The age/gender network run by tract: loaded once (`model_for_path → into_optimized →
//! into_runnable`), fed face crops one at a time, read back as ages with a range and genders.
//!
//! Everything that describes the network's input and output — crop size, normalisation, age
//! bins, gender labels — comes from the ONNX file's metadata, so a retrained model with other
//! settings needs no code change.

use super::nnef_cache::{self, LoadedFrom};
use super::{AgeGender, Gender};
use crate::vision::crop::CropStyle;
use crate::Error;
use image::RgbImage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// Metadata keys (ONNX `metadata_props`): written only by [`ModelInfo::to_metadata`], read only
/// by [`ModelInfo::from_properties`].
pub mod keys {
    pub const INPUT_SIZE: &str = "agecam.input_size";
    pub const MEAN: &str = "agecam.mean";
    pub const STD: &str = "agecam.std";
    pub const CHANNEL_ORDER: &str = "agecam.channel_order";
    pub const AGE_BINS: &str = "agecam.age_bins";
    pub const GENDER_LABELS: &str = "agecam.gender_labels";
    pub const CROP_MARGIN: &str = "agecam.crop_margin";
    /// Which crop the model was trained on ([`CropStyle`](crate::vision::crop::CropStyle)'s
    /// text); absent: box crops.
    pub const CROP: &str = "agecam.crop";
    /// The network's own age prior: its mean age distribution over held-out faces, one number
    /// per age bin (`agecam-host age-prior` writes it). Absent: no prior correction.
    pub const AGE_PRIOR: &str = "agecam.age_prior";
}

/// Why the model's metadata does not describe a network agecam can run; each message names
/// the metadata key.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata `{key}` is missing; re-export the model with agecam-host export")]
    Missing { key: String },
    #[error("metadata `{key}` is not text ({error})")]
    NotText { key: String, error: TractError },
    #[error("metadata `{key}`: `{value}` is not a number")]
    NotANumber { key: String, value: String },
    #[error("metadata `{key}` needs 3 numbers, has {found}")]
    NotThreeNumbers { key: String, found: usize },
    #[error("metadata `{}` is not a size from 16 to 1024", keys::INPUT_SIZE)]
    InputSize,
    #[error(
        "metadata `{}` is `{order}`; only RGB is supported",
        keys::CHANNEL_ORDER
    )]
    ChannelOrder { order: String },
    #[error("metadata `{}` must be positive", keys::STD)]
    StdNotPositive,
    #[error(
        "metadata `{}` needs one positive number per age bin ({bins}), has {found} numbers",
        keys::AGE_PRIOR
    )]
    AgePrior { found: usize, bins: usize },
    #[error("metadata `{}` needs at least two ages", keys::AGE_BINS)]
    TooFewAges,
    #[error("metadata `{}`: unknown label `{label}`", keys::GENDER_LABELS)]
    UnknownGender { label: String },
    #[error("metadata `{}` needs 2 labels", keys::GENDER_LABELS)]
    GenderLabelCount,
    #[error(
        "metadata `{}`: {error}; this agecam cannot cut the crops the model was trained on (update agecam, or use a model exported by this version)",
        keys::CROP
    )]
    UnknownCrop {
        error: crate::vision::crop::BadCropStyle,
    },
}

/// Why crops could not be turned into the network's input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("crop is {width}x{height}, the model takes {size}x{size}")]
    CropSize { width: u32, height: u32, size: u32 },
    #[error("cannot build the input tensor ({0})")]
    Tensor(TractError),
}

/// Why an ONNX file does not load as the age/gender network (the file itself is named by
/// [`Error::Model`], which carries this as its problem).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a loadable ONNX model ({0:#})")]
    NotOnnx(TractError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// tract could not list the graph's outputs.
    #[error("{0}")]
    Outputs(TractError),
    #[error("the graph has no output named `{name}` (outputs: {outputs:?})")]
    NoOutput {
        name: String,
        outputs: Vec<Option<String>>,
    },
    #[error("the graph has no input ({0})")]
    NoInput(TractError),
    #[error(
        "its input is declared as [{}] but agecam feeds [n, 3, {size}, {size}] (RGB planes; {size} from metadata `{}`); re-export the model with agecam-host export",
        declared.join(", "),
        keys::INPUT_SIZE
    )]
    InputShape {
        /// Each declared dimension, `?` where it is not a number.
        declared: Vec<String>,
        size: usize,
    },
    #[error("tract cannot prepare this model for a {size}x{size} RGB input ({error:#})")]
    Prepare { size: usize, error: TractError },
}

/// Graph output names.
pub const AGE_OUTPUT: &str = "age";
pub const GENDER_OUTPUT: &str = "gender";

/// How the network expects its input and labels its output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Side of the square RGB input, in pixels.
    pub input_size: u32,
    /// Per-channel normalisation, applied to 0–1 pixel values: (v − mean) / std, in RGB order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The age (years) each class of the age output stands for.
    pub age_bins: Vec<f32>,
    /// Which gender each class of the gender output stands for.
    pub gender_labels: [Gender; 2],
    /// Margin the training crops were cut with; the device warns when its config differs.
    pub crop_margin: Option<f32>,
    /// Which crop the model was trained on (box or eye-aligned); cut through
    /// [`Framing::of_model`](crate::vision::crop::Framing::of_model).
    pub crop: CropStyle,
    /// The network's age prior ([`keys::AGE_PRIOR`]), for
    /// [`AgeGenderModel::with_prior_correction`]; one positive number per age bin.
    pub age_prior: Option<Vec<f32>>,
}

impl ModelInfo {
    /// How faces are cut for this model: its crop style and margin, `explicit_margin` (the
    /// configured `detector.crop_margin`) winning over its own
    /// ([`Framing::of_model`](crate::vision::crop::Framing::of_model)).
    pub fn framing(&self, explicit_margin: Option<f32>) -> crate::vision::crop::Framing {
        crate::vision::crop::Framing::of_model(self.crop, self.crop_margin, explicit_margin)
    }

    /// The metadata entries that describe this model — the one writer of the contract that
    /// [`ModelInfo::from_properties`] reads. Export, quantization and test models all write
    /// through it.
    pub fn to_metadata(&self) -> Vec<(&'static str, String)> {
        let list = |v: &[f32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let label = |g: Gender| match g {
            Gender::Male => "male",
            Gender::Female => "female",
        };
        let mut out = vec![
            (keys::INPUT_SIZE, self.input_size.to_string()),
            (keys::MEAN, list(&self.mean)),
            (keys::STD, list(&self.std)),
            (keys::CHANNEL_ORDER, "RGB".to_string()),
            (keys::AGE_BINS, list(&self.age_bins)),
            (
                keys::GENDER_LABELS,
                format!(
                    "{},{}",
                    label(self.gender_labels[0]),
                    label(self.gender_labels[1])
                ),
            ),
        ];
        if let Some(margin) = self.crop_margin {
            out.push((keys::CROP_MARGIN, margin.to_string()));
        }
        if self.crop != CropStyle::Box {
            out.push((keys::CROP, self.crop.to_string()));
        }
        if let Some(prior) = &self.age_prior {
            out.push((keys::AGE_PRIOR, list(prior)));
        }
        out
    }

    /// Reads the metadata tract keeps as `onnx.metadata_props.<key>` properties.
    pub fn from_properties(
        props: &HashMap<String, Arc<Tensor>>,
    ) -> Result<ModelInfo, MetadataError> {
        let get = |key: &str| -> Result<String, MetadataError> {
            let tensor = props
                .get(&format!("onnx.metadata_props.{key}"))
                .ok_or_else(|| MetadataError::Missing { key: key.into() })?;
            tensor
                .try_as_plain_ram()
                .and_then(|plain| plain.to_scalar::<String>().cloned())
                .map_err(|error| MetadataError::NotText {
                    key: key.into(),
                    error,
                })
        };
        let floats = |key: &str| -> Result<Vec<f32>, MetadataError> {
            get(key)?
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| MetadataError::NotANumber {
                            key: key.into(),
                            value: v.into(),
                        })
                })
                .collect()
        };
        let three = |key: &str| -> Result<[f32; 3], MetadataError> {
            let v = floats(key)?;
            <[f32; 3]>::try_from(v.as_slice()).map_err(|_| MetadataError::NotThreeNumbers {
                key: key.into(),
                found: v.len(),
            })
        };
        let input_size: u32 = get(keys::INPUT_SIZE)?
            .trim()
            .parse()
            .ok()
            .filter(|s| (16..=1024).contains(s))
            .ok_or(MetadataError::InputSize)?;
        let order = get(keys::CHANNEL_ORDER)?;
        if order.trim() != "RGB" {
            return Err(MetadataError::ChannelOrder { order });
        }
        let std = three(keys::STD)?;
        if std.iter().any(|s| *s <= 0.0) {
            return Err(MetadataError::StdNotPositive);
        }
        let age_bins = floats(keys::AGE_BINS)?;
        if age_bins.len() < 2 {
            return Err(MetadataError::TooFewAges);
        }
        let labels: Vec<Gender> = get(keys::GENDER_LABELS)?
            .split(',')
            .map(|l| match l.trim() {
                "male" => Ok(Gender::Male),
                "female" => Ok(Gender::Female),
                other => Err(MetadataError::UnknownGender {
                    label: other.into(),
                }),
            })
            .collect::<Result<_, _>>()?;
        let gender_labels = <[Gender; 2]>::try_from(labels.as_slice())
            .map_err(|_| MetadataError::GenderLabelCount)?;
        let crop_margin = get(keys::CROP_MARGIN)
            .ok()
            .and_then(|m| m.trim().parse().ok());
        // Absent: box crops (every model from before aligned crops). Present but unknown: a
        // crop this build cannot cut, so the model cannot be run as trained.
        let crop = match get(keys::CROP) {
            Err(_) => CropStyle::Box,
            Ok(text) => text
                .parse::<CropStyle>()
                .map_err(|error| MetadataError::UnknownCrop { error })?,
        };
        let age_prior = match get(keys::AGE_PRIOR) {
            Err(_) => None,
            Ok(_) => {
                let prior = floats(keys::AGE_PRIOR)?;
                if prior.len() != age_bins.len() || prior.iter().any(|p| p.is_nan() || *p <= 0.0) {
                    return Err(MetadataError::AgePrior {
                        found: prior.len(),
                        bins: age_bins.len(),
                    });
                }
                Some(prior)
            }
        };
        Ok(ModelInfo {
            input_size,
            mean: three(keys::MEAN)?,
            std,
            age_bins,
            gender_labels,
            crop_margin,
            crop,
            age_prior,
        })
    }
}

impl ModelInfo {
    /// The network's input for `crops` (each `input_size`×`input_size`): `[n, 3, s, s]`, RGB
    /// planes of (v/255 − mean)/std. Public so that the host's quantization calibration feeds
    /// the float model exactly what the device feeds it.
    pub fn input_tensor(&self, crops: &[RgbImage]) -> Result<Tensor, InputError> {
        let size = self.input_size;
        if let Some(bad) = crops.iter().find(|c| c.dimensions() != (size, size)) {
            return Err(InputError::CropSize {
                width: bad.width(),
                height: bad.height(),
                size,
            });
        }
        let plane = (size * size) as usize;
        let mut data = vec![0f32; crops.len() * 3 * plane];
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let offset: [f32; 3] = std::array::from_fn(|c| -self.mean[c] / self.std[c]);
        for (crop, chunk) in crops.iter().zip(data.chunks_exact_mut(3 * plane)) {
            for (i, px) in crop.pixels().enumerate() {
                for c in 0..3 {
                    chunk[c * plane + i] = px.0[c] as f32 * scale[c] + offset[c];
                }
            }
        }
        let s = size as usize;
        Tensor::from_shape(&[crops.len(), 3, s, s], &data).map_err(InputError::Tensor)
    }
}

/// A loaded, optimised age/gender network (a clone shares the network).
#[derive(Clone)]
pub struct AgeGenderModel {
    path: PathBuf,
    info: ModelInfo,
    plan: Arc<TypedRunnableModel>,
    age_output: usize,
    gender_output: usize,
    loaded_from: LoadedFrom,
    /// Test-time augmentation: each crop's probabilities averaged with its mirror image's
    /// (`model.flip`).
    flip: bool,
    /// `prior^-tau` per age bin ([`AgeGenderModel::with_prior_correction`]); `None`: off.
    age_weights: Option<Vec<f32>>,
}

/// The graph's declared input must be `[n, 3, s, s]` with `s` the metadata's input size: the
/// loader sets that input shape itself, so a model exported for another size or layout would
/// otherwise run on reshaped input and give nonsense, or fail deep inside tract.
fn check_declared_input(model: &InferenceModel, size: usize) -> Result<(), LoadError> {
    let fact = model.input_fact(0).map_err(LoadError::NoInput)?;
    if fact.shape.is_open() {
        return Ok(()); // no rank declared: nothing to compare
    }
    let declared: Vec<Option<i64>> = fact
        .shape
        .dims()
        .map(|d| {
            use tract_onnx::tract_hir::infer::Factoid;
            d.concretize().and_then(|d| d.to_i64().ok())
        })
        .collect();
    let expected = [None, Some(3), Some(size as i64), Some(size as i64)];
    let fits = declared.len() == 4
        && declared
            .iter()
            .zip(expected)
            .skip(1)
            .all(|(d, e)| d.is_none() || *d == e);
    if fits {
        return Ok(());
    }
    let declared = declared
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    Err(LoadError::InputShape { declared, size })
}

impl AgeGenderModel {
    /// Loads and optimises the ONNX file at `path` for one face at a time.
    ///
    /// A plan with a symbolic batch size ran ~5× slower per face in tract 0.23.9 (74 vs 16 ms
    /// for MobileNetV2 @96 on x86: the symbolic shapes defeat part of the optimisation), and a
    /// kiosk frame rarely holds more than two or three faces, so faces run one by one.
    pub fn load(path: &Path) -> Result<AgeGenderModel, Error> {
        Self::load_cached(path, None)
    }

    /// [`AgeGenderModel::load`], keeping the prepared network in `cache_dir` (see
    /// [`nnef_cache`]): the first start writes it, later starts read it instead of redoing
    /// tract's graph preparation. The ONNX file is read and checked either way.
    pub fn load_cached(path: &Path, cache_dir: Option<&Path>) -> Result<AgeGenderModel, Error> {
        let model_error = |problem: String| Error::Model {
            file: path.to_path_buf(),
            problem,
        };
        let bytes =
            std::fs::read(path).map_err(|e| model_error(format!("cannot read it ({e})")))?;
        // tract can panic on some malformed graphs; a bad file must be an error, not a crash.
        let loaded = std::panic::catch_unwind(|| Self::load_inner(path, &bytes, cache_dir))
            .map_err(|_| {
                model_error(
                    "tract failed on this file (malformed model); reinstall the models".into(),
                )
            })?;
        loaded.map_err(|e| model_error(e.to_string()))
    }

    fn load_inner(
        path: &Path,
        bytes: &[u8],
        cache_dir: Option<&Path>,
    ) -> Result<AgeGenderModel, LoadError> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(LoadError::NotOnnx)?;
        let info = ModelInfo::from_properties(&model.properties)?;
        let labels: Vec<Option<String>> = model
            .output_outlets()
            .map_err(LoadError::Outputs)?
            .iter()
            .map(|&o| model.outlet_label(o).map(str::to_string))
            .collect();
        let find = |name: &str| {
            labels
                .iter()
                .position(|l| l.as_deref() == Some(name))
                .ok_or_else(|| LoadError::NoOutput {
                    name: name.into(),
                    outputs: labels.clone(),
                })
        };
        let (age_output, gender_output) = (find(AGE_OUTPUT)?, find(GENDER_OUTPUT)?);
        let size = info.input_size as usize;
        check_declared_input(&model, size)?;
        let fact = f32::fact([1, 3, size, size]);
        let cache = cache_dir
            .filter(|_| nnef_cache::worth_caching(&model))
            .map(|dir| nnef_cache::cache_file(dir, path, bytes, size));
        let cached = cache
            .as_deref()
            .and_then(|file| nnef_cache::read(file, &fact, labels.len()));
        let prepare_error = |error: TractError| LoadError::Prepare { size, error };
        let (decluttered, from) = match (cached, cache) {
            (Some(model), Some(file)) => (model, LoadedFrom::Cache(file)),
            (_, cache) => {
                let decluttered = model
                    .with_input_fact(0, fact.into())
                    .and_then(|m| m.into_typed())
                    .and_then(|m| m.into_decluttered())
                    .map_err(prepare_error)?;
                if let Some(file) = cache {
                    nnef_cache::write(&file, &decluttered);
                }
                (decluttered, LoadedFrom::Onnx)
            }
        };
        let plan = decluttered
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(prepare_error)?;
        Ok(AgeGenderModel {
            path: path.to_path_buf(),
            info,
            plan,
            age_output,
            gender_output,
            loaded_from: from,
            flip: false,
            age_weights: None,
        })
    }

    /// Averages each crop's probabilities with those of its horizontally mirrored copy (a
    /// face and its mirror image are the same age and gender): two network runs per face.
    pub fn with_flip(mut self, flip: bool) -> AgeGenderModel {
        self.flip = flip;
        self
    }

    /// Corrects the network's age distributions for its own age prior, by the power `tau`:
    /// each estimate's distribution is multiplied by `prior(age)^-tau` (and renormalised)
    /// before its expected age and interval are read. A network trained on sets where the old
    /// are rare pulls every face towards the common ages; tau = 1 divides its prior out
    /// entirely (all ages equally likely beforehand), 0 leaves it (docs/models.md, "Age-prior
    /// correction"). A model without a prior in its metadata is left as it is.
    pub fn with_prior_correction(mut self, tau: f32) -> AgeGenderModel {
        self.age_weights = match (&self.info.age_prior, tau > 0.0) {
            (Some(prior), true) => Some(prior.iter().map(|p| p.powf(-tau)).collect()),
            _ => None,
        };
        self
    }

    /// Whether [`AgeGenderModel::with_prior_correction`] is in effect.
    pub fn corrects_prior(&self) -> bool {
        self.age_weights.is_some()
    }

    /// Whether crops are averaged with their mirror images ([`AgeGenderModel::with_flip`]).
    pub fn flips(&self) -> bool {
        self.flip
    }

    /// Whether this load read the NNEF cache or prepared the network from ONNX.
    pub fn loaded_from(&self) -> &LoadedFrom {
        &self.loaded_from
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Age and gender for each crop (all `input_size`×`input_size`).
    pub fn predict(&self, crops: &[RgbImage]) -> Result<Vec<AgeGender>, Error> {
        crops
            .iter()
            .map(|crop| self.predict_with_distribution(crop).map(|(a, _)| a))
            .collect()
    }

    /// Like [`predict`](Self::predict) for one crop, also returning the probability of each
    /// age bin (for evaluation: age-group scores, ROC curves).
    pub fn predict_with_distribution(
        &self,
        crop: &RgbImage,
    ) -> Result<(AgeGender, Vec<f32>), Error> {
        let probs = self.predict_probs(crop)?;
        Ok((self.estimate(&probs), probs.age))
    }

    /// The network's probabilities for one crop: over the age bins and over the two gender
    /// classes (with [`AgeGenderModel::with_flip`], the mean of the crop's and its mirror
    /// image's). Several frames' probabilities of one face add up ([`FaceProbs::add`]) into one
    /// estimate ([`AgeGenderModel::estimate`]), which is how a visit is classified.
    pub fn predict_probs(&self, crop: &RgbImage) -> Result<FaceProbs, Error> {
        let mut probs = self.run_one(crop)?;
        if self.flip {
            probs.add(&self.run_one(&image::imageops::flip_horizontal(crop))?);
            probs.age.iter_mut().for_each(|p| *p /= 2.0);
            probs.gender.iter_mut().for_each(|p| *p /= 2.0);
        }
        Ok(probs)
    }

    /// One network run on one crop.
    fn run_one(&self, crop: &RgbImage) -> Result<FaceProbs, Error> {
        let input = self.input_tensor(std::slice::from_ref(crop))?;
        let outputs = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| Error::Model {
                file: self.path.clone(),
                problem: format!("inference failed ({e:#})"),
            })?;
        let read = |index: usize, classes: usize| -> Result<Vec<f32>, Error> {
            let plain = outputs[index]
                .try_as_plain_ram()
                .map_err(|e| self.bad_output(e.to_string()))?;
            let values = plain
                .as_slice::<f32>()
                .map_err(|e| self.bad_output(e.to_string()))?;
            if values.len() != classes {
                return Err(self.bad_output(format!(
                    "output {index} has {} values for one face, expected {classes}",
                    values.len()
                )));
            }
            Ok(values.to_vec())
        };
        let age = read(self.age_output, self.info.age_bins.len())?;
        let gender = softmax(&read(self.gender_output, 2)?);
        Ok(FaceProbs {
            age: softmax(&age),
            gender: [gender[0], gender[1]],
        })
    }

    fn bad_output(&self, problem: String) -> Error {
        Error::Model {
            file: self.path.clone(),
            problem: format!("unexpected output: {problem}"),
        }
    }

    fn input_tensor(&self, crops: &[RgbImage]) -> Result<Tensor, Error> {
        self.info
            .input_tensor(crops)
            .map_err(|problem| Error::Model {
                file: self.path.clone(),
                problem: problem.to_string(),
            })
    }

    /// The estimate probabilities (of one frame, or summed over several) give: the expected
    /// age and the central 80 % interval of the age distribution, and the likelier gender
    /// with its probability. Sums need not be normalised.
    pub fn estimate(&self, probs: &FaceProbs) -> AgeGender {
        let weighted: Vec<f32> = match &self.age_weights {
            Some(w) => probs.age.iter().zip(w).map(|(p, w)| p * w).collect(),
            None => probs.age.clone(),
        };
        let total: f32 = weighted.iter().sum::<f32>().max(f32::MIN_POSITIVE);
        let p: Vec<f32> = weighted.iter().map(|p| p / total).collect();
        let bins = &self.info.age_bins;
        let age: f32 = p.iter().zip(bins).map(|(p, a)| p * a).sum();
        let quantile = |q: f32| {
            let mut cumulative = 0.0;
            for (p, a) in p.iter().zip(bins) {
                cumulative += p;
                if cumulative >= q {
                    return *a;
                }
            }
            *bins.last().unwrap_or(&0.0)
        };
        let [g0, g1] = probs.gender;
        let sum = (g0 + g1).max(f32::MIN_POSITIVE);
        let (index, confidence) = if g1 > g0 {
            (1, g1 / sum)
        } else {
            (0, g0 / sum)
        };
        AgeGender {
            age,
            age_low: quantile(0.1),
            age_high: quantile(0.9),
            gender: self.info.gender_labels[index],
            gender_confidence: confidence,
        }
    }
}

/// What the network says of one face in one frame, as probabilities (never stored: a visit's
/// sum lives only as long as its track).
#[derive(Debug, Clone, PartialEq)]
pub struct FaceProbs {
    /// Probability of each age bin of the model (`ModelInfo::age_bins`).
    pub age: Vec<f32>,
    /// Probability of each gender class, in the model's label order.
    pub gender: [f32; 2],
}

impl FaceProbs {
    /// Adds another frame's probabilities of the same face (the probability domain, not
    /// point estimates: a sum of distributions keeps what each frame was unsure about).
    pub fn add(&mut self, other: &FaceProbs) {
        for (a, b) in self.age.iter_mut().zip(&other.age) {
            *a += b;
        }
        self.gender[0] += other.gender[0];
        self.gender[1] += other.gender[1];
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::onnx_build::tests_support::{tiny_age_gender_model, tiny_age_gender_onnx};

    #[test]
    fn metadata_written_by_to_metadata_reads_back_unchanged() {
        let info = ModelInfo {
            input_size: 24,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            age_bins: (0..=100).map(|a| a as f32 + 0.5).collect(),
            gender_labels: [Gender::Female, Gender::Male],
            crop_margin: Some(0.3),
            crop: CropStyle::Eyes(crate::vision::crop::EYES),
            age_prior: Some(
                (0..=100)
                    .map(|a| 0.02 * (-(a as f32) / 30.0).exp())
                    .collect(),
            ),
        };
        let props_of = |info: &ModelInfo| -> HashMap<String, Arc<Tensor>> {
            info.to_metadata()
                .into_iter()
                .map(|(k, v)| (format!("onnx.metadata_props.{k}"), Arc::new(tensor0(v))))
                .collect()
        };
        let props = props_of(&info);
        assert_eq!(ModelInfo::from_properties(&props).unwrap(), info);
        // A box-crop model writes no crop key, as every model before aligned crops, and
        // reads back as box crops.
        let boxed = ModelInfo {
            crop: CropStyle::Box,
            ..info.clone()
        };
        let boxed_props = props_of(&boxed);
        assert!(!boxed_props.contains_key(&format!("onnx.metadata_props.{}", keys::CROP)));
        assert_eq!(ModelInfo::from_properties(&boxed_props).unwrap(), boxed);
        // A crop this build does not know is refused, naming the key.
        let mut unknown = props.clone();
        unknown.insert(
            format!("onnx.metadata_props.{}", keys::CROP),
            Arc::new(tensor0("mouth".to_string())),
        );
        let err = ModelInfo::from_properties(&unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains(keys::CROP) && err.contains("mouth"), "{err}");
        // A prior of the wrong length, or with a zero in it, is refused, naming the key.
        for bad in ["0.5,0.5", &vec!["0"; 101].join(",")] {
            let mut wrong = props.clone();
            wrong.insert(
                format!("onnx.metadata_props.{}", keys::AGE_PRIOR),
                Arc::new(tensor0(bad.to_string())),
            );
            let err = ModelInfo::from_properties(&wrong).unwrap_err().to_string();
            assert!(err.contains(keys::AGE_PRIOR), "{err}");
        }
        // And through a real ONNX file: the test network is written by the same writer.
        let dir = tempfile::tempdir().unwrap();
        let loaded = tiny_age_gender_model(dir.path(), 16);
        assert_eq!(loaded.info().input_size, 16);
        assert_eq!(loaded.info().age_bins.len(), 101);
    }

    /// The prior correction moves the expected age towards the ages the prior makes rare, the
    /// more the larger tau; without a prior in the metadata, or at tau 0, nothing changes.
    #[test]
    fn prior_correction_lifts_ages_the_training_prior_made_rare() {
        let dir = tempfile::tempdir().unwrap();
        let plain = tiny_age_gender_model(dir.path(), 16);
        // Half the mass at 30, half at 60; the prior makes 60 four times rarer than 30.
        let mut age = vec![0.0; 101];
        age[30] = 0.5;
        age[60] = 0.5;
        let probs = FaceProbs {
            age,
            gender: [0.7, 0.3],
        };
        let bins = plain.info().age_bins.clone();
        let mean = |m: &AgeGenderModel| m.estimate(&probs).age;
        let uncorrected = mean(&plain);
        assert!(!plain.clone().with_prior_correction(1.0).corrects_prior());
        assert_eq!(mean(&plain.clone().with_prior_correction(1.0)), uncorrected);

        let mut with_prior = plain.clone();
        with_prior.info.age_prior = Some(
            bins.iter()
                .map(|a| (-(a * 2f32.ln() / 15.0)).exp())
                .collect(),
        );
        let at = |tau: f32| mean(&with_prior.clone().with_prior_correction(tau));
        assert_eq!(at(0.0), uncorrected);
        assert!(
            uncorrected < at(0.5) && at(0.5) < at(1.0),
            "{uncorrected} {} {}",
            at(0.5),
            at(1.0)
        );
        // tau 1: weights 1 : 4, so 60 carries 4/5 of the mass.
        let expected = (bins[30] + 4.0 * bins[60]) / 5.0;
        assert!(
            (at(1.0) - expected).abs() < 0.05,
            "{} vs {expected}",
            at(1.0)
        );
        // Gender is not touched.
        let corrected = with_prior.with_prior_correction(1.0).estimate(&probs);
        assert_eq!(corrected.gender, plain.estimate(&probs).gender);
    }

    /// `model.flip` averages the mirror image in: still a distribution, and for the tiny
    /// test network (which reads only the crop's mean colour) the same as the crop alone,
    /// whatever the crop's left and right halves hold.
    #[test]
    fn flipped_probabilities_are_averaged_into_a_distribution() {
        let dir = tempfile::tempdir().unwrap();
        let plain = tiny_age_gender_model(dir.path(), 16);
        let crop = RgbImage::from_fn(16, 16, |x, _| {
            if x < 8 {
                image::Rgb([255, 0, 255])
            } else {
                image::Rgb([40, 40, 40])
            }
        });
        let one = plain.predict_probs(&crop).unwrap();
        let flipping = plain.with_flip(true);
        assert!(flipping.flips());
        let both = flipping.predict_probs(&crop).unwrap();
        assert!((both.age.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!((both.gender[0] + both.gender[1] - 1.0).abs() < 1e-4);
        for (a, b) in one.age.iter().zip(&both.age) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        let big = softmax(&[1000.0, 0.0]);
        assert!((big[0] - 1.0).abs() < 1e-6, "no overflow");
    }

    #[test]
    fn tiny_model_runs_a_batch_and_reads_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_age_gender_model(dir.path(), 16);
        assert_eq!(model.info().input_size, 16);
        assert_eq!(model.info().age_bins.len(), 101);
        // The tiny network's age logits peak at 20 + 40 × (mean red), its gender logit
        // prefers female when the mean blue exceeds the mean green (see onnx_build).
        let reddish_blue = RgbImage::from_pixel(16, 16, image::Rgb([255, 0, 255]));
        let dark_green = RgbImage::from_pixel(16, 16, image::Rgb([0, 255, 0]));
        let out = model.predict(&[reddish_blue, dark_green]).unwrap();
        assert_eq!(out.len(), 2);
        assert!((out[0].age - 60.0).abs() < 1.5, "{:?}", out[0]);
        assert!(out[0].age_low < out[0].age && out[0].age < out[0].age_high);
        assert_eq!(out[0].gender, Gender::Female);
        assert!((out[1].age - 20.0).abs() < 1.5, "{:?}", out[1]);
        assert_eq!(out[1].gender, Gender::Male);
        assert!(out[1].gender_confidence > 0.9);
        assert!(model.predict(&[]).unwrap().is_empty());
    }

    #[test]
    fn wrong_crop_size_and_bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_age_gender_model(dir.path(), 16);
        let err = model
            .predict(&[RgbImage::new(17, 17)])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("17x17") && err.contains("16x16"), "{err}");

        let truncated = dir.path().join("truncated.onnx");
        let bytes = tiny_age_gender_onnx(16);
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = AgeGenderModel::load(&truncated).err().unwrap().to_string();
        assert!(err.contains("truncated.onnx"), "{err}");

        let err = AgeGenderModel::load(&dir.path().join("missing.onnx"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.onnx"), "{err}");
    }

    /// A model file cut short (an interrupted copy, a full disk) or with damaged bytes must be
    /// an error naming the file: never a panic or an abort inside tract.
    #[test]
    fn truncated_and_corrupted_shipped_model_files_are_errors_naming_the_file() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/age_gender_int8.onnx");
        let bytes = std::fs::read(&shipped).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.onnx");
        for cut in [
            0,
            1,
            16,
            1000,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = AgeGenderModel::load(&path)
                .err()
                .unwrap_or_else(|| panic!("a model cut at {cut} bytes loaded"))
                .to_string();
            assert!(err.contains("damaged.onnx"), "cut at {cut}: {err}");
        }
        // Damage in the header, the graph and the weights; a flipped weight byte may still
        // load (it is a valid, slightly different model), but nothing may crash.
        for at in [0, 7, 100, 5000, bytes.len() / 2, bytes.len() - 20] {
            let mut damaged = bytes.clone();
            for b in &mut damaged[at..(at + 16).min(bytes.len())] {
                *b ^= 0xA5;
            }
            std::fs::write(&path, &damaged).unwrap();
            if let Err(e) = AgeGenderModel::load(&path) {
                assert!(
                    e.to_string().contains("damaged.onnx"),
                    "damage at {at}: {e}"
                );
            }
        }
    }
}
