//! `agecam-host quantize`: int8 versions of an exported (float) age/gender ONNX model.
//!
//! Two forms, both ONNX files the device's [`AgeGenderModel`](agecam::model::AgeGenderModel)
//! loads unchanged:
//!
//! * **weight-only**: every Conv and Gemm weight is stored as INT8 with one symmetric scale per
//!   output channel (zero point 0), read through a `DequantizeLinear` node. tract folds those
//!   nodes into float constants at load, so inference runs at float speed and accuracy, but the
//!   file is ~3.7× smaller (downloads, flash).
//! * **integer**: the chosen convolutions (`pointwise` = 1×1 only, or `all`) become
//!   `QuantizeLinear → QLinearConv → DequantizeLinear` with per-channel int8 weights, int32 bias
//!   and per-tensor u8 activations whose ranges come from calibration images. tract then runs
//!   them as i8×i8→i32 matrix products. Everything tract has no quantized kernel for (residual
//!   `Add`, pooling, the heads' `Gemm`) stays float between Dequantize and Quantize, with
//!   weight-only int8 weights. A `Clip(0, 6)` (ReLU6) after an integer conv is folded into the
//!   conv's output range: a u8 range [0, hi ≤ 6] with zero point 0 saturates exactly where the
//!   Clip would. Consecutive integer convs pass their u8 tensor on directly, without a
//!   Dequantize/Quantize round trip.
//!
//! Calibration runs the float model in tract over face crops, preprocessed exactly as the
//! device does (`crop_face` to the input size, then [`ModelInfo::input_tensor`]), with the
//! tensors to be quantized as extra outputs, and keeps min/max and a histogram per tensor.
//! The histogram gives percentile ranges: a few extreme activations would otherwise stretch a
//! u8 range and cost every other value its resolution.

use crate::onnx_kit::{
    attr_int, attr_ints, f32_tensor, floats, int_attr, node, prune, tensor, FLOAT, INT32, INT8,
    UINT8,
};
use agecam::model::age_gender::ModelInfo;
use agecam::vision::{crop::crop_face, FaceBox};
use image::RgbImage;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::{tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue};

/// Why a model cannot be quantized: the file (the model, the calibration folder, the output)
/// and what is wrong with it or what failed.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(
        "cannot read the calibration folder {}: give a folder of face crops, e.g. CACHE/crops made by agecam-host crops",
        dir.display()
    )]
    CalibFolder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} holds no PNG or JPEG images: give a folder of face crops (e.g. CACHE/crops made by agecam-host crops)",
        dir.display()
    )]
    NoCalibImages { dir: PathBuf },
    #[error("--max-calib must be at least 1")]
    MaxCalib,
    #[error("none of the images in {} could be read", dir.display())]
    UnreadableCalib { dir: PathBuf },
    #[error("{}: {problem}", file.display())]
    Metadata {
        file: PathBuf,
        problem: agecam::model::age_gender::MetadataError,
    },
    /// Tract failed at `what` (the step and the file), with tract's own reason as the cause.
    #[error("{what}")]
    Tract {
        what: String,
        #[source]
        source: TractFailure,
    },
    /// The calibration crop is not the model's input (the device's own check).
    #[error(transparent)]
    Input(agecam::model::age_gender::InputError),
    #[error("no calibration values for tensor {0}")]
    NoRange(String),
    #[error("integer conv without a float weight")]
    NoFloatWeight,
    #[error("conv bias {0} is not an initializer")]
    BiasNotInitializer(String),
    #[error("{} is not an ONNX file: re-export it with agecam-host export", file.display())]
    NotOnnx {
        file: PathBuf,
        /// The protobuf decoder's reason, when it gave one.
        #[source]
        source: Option<prost::DecodeError>,
    },
    #[error(
        "{} is already quantized (it has {op} nodes): quantize the float model from agecam-host export",
        file.display()
    )]
    AlreadyQuantized { file: PathBuf, op: String },
    #[error(
        "{} uses ONNX opset {opset}; per-channel quantization needs 13 or later: re-export it with agecam-host export",
        file.display()
    )]
    Opset { file: PathBuf, opset: i64 },
    #[error("no graph")]
    NoGraph,
    #[error(
        "the integer form needs calibration images: give --calib DIR (face crops, e.g. CACHE/crops)"
    )]
    NoCalibration,
    #[error("tensor {0} gave no finite calibration values")]
    NoFiniteValues(String),
    #[error(
        "cannot read {}: give the float ONNX model written by agecam-host export",
        file.display()
    )]
    ReadModel {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--form integer needs --calib DIR: a folder of face crops (e.g. CACHE/crops made by agecam-host crops)"
    )]
    CalibNeeded,
    #[error("cannot write {}", file.display())]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Tract could not hand over a tensor's values.
    #[error(transparent)]
    TractData(TractFailure),
    #[error(transparent)]
    Onnx(#[from] crate::onnx_kit::OnnxError),
}

/// Tract's reason for a failure, with its own causes (`outer: inner`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TractFailure(String);

impl TractFailure {
    fn of(e: tract_onnx::prelude::TractError) -> TractFailure {
        TractFailure(format!("{e:#}"))
    }
}

/// A tract failure at the step `what`.
fn tract_at(what: String) -> impl FnOnce(tract_onnx::prelude::TractError) -> QuantizeError {
    move |e| QuantizeError::Tract {
        what,
        source: TractFailure::of(e),
    }
}

/// A tract failure with no step of its own to name (tract's message alone, as it was).
fn tract(e: tract_onnx::prelude::TractError) -> QuantizeError {
    QuantizeError::TractData(TractFailure::of(e))
}

type Result<T> = std::result::Result<T, QuantizeError>;

/// Metadata key the quantizer adds, describing what was done.
pub const QUANTIZATION_KEY: &str = "agecam.quantization";

/// Which int8 model to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Form {
    /// Int8 weights, float compute (tract folds the weights back to float at load).
    WeightOnly,
    /// Integer convolutions (QLinearConv) with calibrated u8 activations.
    Integer,
}

/// Which convolutions the integer form computes in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IntegerLayers {
    /// 1×1 convolutions only (most of MobileNetV2's arithmetic); the rest stays weight-only.
    Pointwise,
    /// Every convolution, depthwise and the first one included.
    All,
}

/// How an activation's range is taken from the calibration values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CalibMethod {
    /// Smallest and largest value seen.
    MinMax,
    /// The given percentile (e.g. 99.99) at the top and its mirror at the bottom.
    Percentile(f32),
}

impl fmt::Display for CalibMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibMethod::MinMax => write!(f, "min/max"),
            CalibMethod::Percentile(p) => write!(f, "percentile {p}"),
        }
    }
}

/// Everything `quantize` is told.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub form: Form,
    pub integer_layers: IntegerLayers,
    pub calib_method: CalibMethod,
    /// Keep the first convolution (the one reading the image) float in the integer form.
    pub float_first: bool,
    /// Weight tensors with fewer values than this stay float in the weight-only part. Measured
    /// on the shipped MobileNetV2: the small early layers move the age most when rounded
    /// (one 288-weight depthwise alone 0.58 y on average), while all of them together are
    /// ~4 % of the weights.
    pub float_below: usize,
}

/// The default of [`QuantizeOptions::float_below`]: every MobileNetV2 layer up to the
/// 576-channel depthwise (5,184 weights), 92k values (+0.28 MB float) in all.
pub const DEFAULT_FLOAT_BELOW: usize = 8192;

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            form: Form::Integer,
            integer_layers: IntegerLayers::Pointwise,
            calib_method: CalibMethod::Percentile(99.99),
            float_first: false,
            float_below: DEFAULT_FLOAT_BELOW,
        }
    }
}

/// What a quantization did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// Weight tensors stored as int8.
    pub int8_weights: usize,
    /// Conv/Gemm weight tensors kept float because they are smaller than `float_below`.
    pub float_weights: usize,
    /// Convolutions turned into QLinearConv.
    pub integer_convs: usize,
    /// ReLU6 Clips folded into an integer conv's output range.
    pub folded_clips: usize,
    /// Activation tensors given a u8 scale and zero point.
    pub calibrated_tensors: usize,
    pub calibration_images: usize,
    /// The `agecam.quantization` text written into the model.
    pub description: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.description)?;
        writeln!(
            f,
            "size: {} -> {} bytes ({:.2}x smaller)",
            self.bytes_in,
            self.bytes_out,
            self.bytes_in as f64 / self.bytes_out.max(1) as f64
        )?;
        write!(
            f,
            "{} int8 weight tensors, {} integer convolutions ({} ReLU6 folded), {} activation ranges from {} images",
            self.int8_weights,
            self.integer_convs,
            self.folded_clips,
            self.calibrated_tensors,
            self.calibration_images
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Quantization arithmetic
// ---------------------------------------------------------------------------------------------

/// Symmetric int8 quantization with one scale per slice along `axis` of a tensor of shape
/// `dims`: scale = max|w| / 127, q = round(w / scale) in −127…127 (−128 is left unused so the
/// range is symmetric). A channel of zeros gets scale 1.
pub fn quantize_per_channel(w: &[f32], dims: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    quantize_per_channel_floor(w, dims, axis, &[])
}

/// [`quantize_per_channel`] with a lower bound on each channel's scale (`floor[c]`, where
/// given): an integer conv's bias must fit its int32 units of x_scale · w_scale.
fn quantize_per_channel_floor(
    w: &[f32],
    dims: &[usize],
    axis: usize,
    floor: &[f32],
) -> (Vec<i8>, Vec<f32>) {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut max = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let c = channel_of(i);
        max[c] = max[c].max(v.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            let s = if m > 0.0 { m / 127.0 } else { 1.0 };
            s.max(floor.get(c).copied().unwrap_or(0.0))
        })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// Largest |bias| in int32 units of an integer conv. The accumulator adds up to
/// k · 128 · 127 ≈ 2^24 (k = 960 inputs) and tract's zero-point terms as much again, so a bias
/// up to 2^26 leaves int32 room; a larger one (a channel whose weights are ~0 but whose folded
/// BatchNorm bias is not) raises that channel's weight scale instead of overflowing.
const MAX_BIAS: f32 = (1 << 26) as f32;

/// u8 scale and zero point for values in `lo..=hi`. The range is widened to include 0, which
/// must be exactly representable (it is the conv's zero padding and ReLU's floor).
pub fn activation_params(lo: f32, hi: f32) -> (f32, u8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let span = hi - lo;
    if span <= f32::EPSILON || !span.is_finite() {
        return (1.0 / 255.0, 0);
    }
    let scale = span / 255.0;
    let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// Min/max and a histogram of one activation tensor over the calibration set.
///
/// The histogram covers [−R, R] with R a power of two; when a larger value comes, R doubles
/// and each pair of bins merges into one, so earlier counts are kept exactly (coarser).
#[derive(Debug, Clone)]
pub struct RangeStats {
    min: f32,
    max: f32,
    half_range: f32,
    bins: Vec<u64>,
    count: u64,
}

const BINS: usize = 8192;

impl Default for RangeStats {
    fn default() -> Self {
        RangeStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            half_range: 0.0,
            bins: vec![0; BINS],
            count: 0,
        }
    }
}

impl RangeStats {
    pub fn add(&mut self, values: &[f32]) {
        let finite = || values.iter().copied().filter(|v| v.is_finite());
        let Some(lo) = finite().reduce(f32::min) else {
            return;
        };
        let hi = finite().fold(lo, f32::max);
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        let need = lo.abs().max(hi.abs()).max(1e-6);
        if self.half_range == 0.0 {
            self.half_range = 2f32.powi(need.log2().ceil() as i32);
        }
        while need > self.half_range {
            let mut merged = vec![0u64; BINS];
            for (k, n) in self.bins.iter().enumerate() {
                merged[BINS / 4 + k / 2] += n;
            }
            self.bins = merged;
            self.half_range *= 2.0;
        }
        let r = self.half_range;
        let per_unit = BINS as f32 / (2.0 * r);
        for v in finite() {
            let bin = (((v + r) * per_unit) as usize).min(BINS - 1);
            self.bins[bin] += 1;
        }
        self.count += finite().count() as u64;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The range to quantize to (`None` before any value).
    pub fn range(&self, method: CalibMethod) -> Option<(f32, f32)> {
        if self.count == 0 {
            return None;
        }
        let p = match method {
            CalibMethod::MinMax => return Some((self.min, self.max)),
            CalibMethod::Percentile(p) => p.clamp(50.0, 100.0) as f64,
        };
        // Values beyond the percentile on each side may be clipped: `skip` of them.
        let skip = ((1.0 - p / 100.0) * self.count as f64).floor() as u64;
        let width = 2.0 * self.half_range / BINS as f32;
        let edge = |k: usize| -self.half_range + k as f32 * width;
        let mut seen = 0;
        let mut lo = self.min;
        for (k, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen > skip {
                lo = edge(k);
                break;
            }
        }
        seen = 0;
        let mut hi = self.max;
        for (k, n) in self.bins.iter().enumerate().rev() {
            seen += n;
            if seen > skip {
                hi = edge(k + 1);
                break;
            }
        }
        // Bin edges can lie outside what was seen; never widen beyond min/max.
        Some((lo.max(self.min), hi.min(self.max)))
    }
}

// ---------------------------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------------------------

/// Loads up to `max` face crops (PNG/JPEG) from `dir`, or from `dir/crops` when `dir` is a crop
/// cache made by `agecam-host crops`. With more files than `max`, an evenly spaced selection
/// over the sorted names is taken, so the set does not depend on directory order.
pub fn load_calibration_images(dir: &Path, max: usize) -> Result<Vec<RgbImage>> {
    let list = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|source| QuantizeError::CalibFolder {
                dir: d.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                })
            })
            .collect();
        files.sort();
        Ok(files)
    };
    let mut files = list(dir)?;
    if files.is_empty() && dir.join("crops").is_dir() {
        files = list(&dir.join("crops"))?;
    }
    if files.is_empty() {
        return Err(QuantizeError::NoCalibImages {
            dir: dir.to_path_buf(),
        });
    }
    if max == 0 {
        return Err(QuantizeError::MaxCalib);
    }
    let chosen: Vec<&PathBuf> = if files.len() > max {
        (0..max).map(|i| &files[i * files.len() / max]).collect()
    } else {
        files.iter().collect()
    };
    let mut images = Vec::with_capacity(chosen.len());
    for path in chosen {
        match image::open(path) {
            Ok(img) => images.push(img.to_rgb8()),
            // One bad file in a few hundred should not stop a quantization.
            Err(e) => log::warn!("calibration image {} skipped: {e}", path.display()),
        }
    }
    if images.is_empty() {
        return Err(QuantizeError::UnreadableCalib {
            dir: dir.to_path_buf(),
        });
    }
    Ok(images)
}

/// Runs the float model over `images` and returns each named tensor's range statistics.
fn calibrate(
    model: &[u8],
    file: &Path,
    tensors: &[String],
    images: &[RgbImage],
) -> Result<HashMap<String, RangeStats>> {
    let mut inference = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .map_err(tract_at(format!("tract cannot load {}", file.display())))?;
    let info = ModelInfo::from_properties(&inference.properties).map_err(|problem| {
        QuantizeError::Metadata {
            file: file.to_path_buf(),
            problem,
        }
    })?;
    let input_name = inference
        .input_outlets()
        .ok()
        .and_then(|o| o.first().copied())
        .and_then(|o| inference.outlet_label(o).map(str::to_string))
        .unwrap_or_default();
    // The graph input is seen directly; everything else becomes an extra output. Setting the
    // outputs before optimisation keeps tract from fusing those tensors away.
    let outputs: Vec<&String> = tensors.iter().filter(|t| **t != input_name).collect();
    inference
        .select_outputs_by_name(&outputs)
        .map_err(tract_at(format!(
            "{}: calibration tensors not found",
            file.display()
        )))?;
    let s = info.input_size as usize;
    let plan = inference
        .with_input_fact(0, f32::fact([1, 3, s, s]).into())
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(tract_at(format!(
            "tract cannot prepare {} for calibration",
            file.display()
        )))?;
    let mut stats: HashMap<String, RangeStats> = tensors
        .iter()
        .map(|t| (t.clone(), RangeStats::default()))
        .collect();
    for img in images {
        let (w, h) = img.dimensions();
        // The whole crop, resampled as the device's crop_face does (bilinear, edge-repeating
        // for non-square images), so the model sees the device's pixels.
        let whole = FaceBox {
            x: 0.0,
            y: 0.0,
            width: w as f32,
            height: h as f32,
            score: 1.0,
            landmarks: None,
        };
        let crop = crop_face(img, &whole, 0.0, info.input_size);
        let input = info
            .input_tensor(std::slice::from_ref(&crop))
            .map_err(QuantizeError::Input)?;
        if let Some(st) = stats.get_mut(&input_name) {
            st.add(
                input
                    .try_as_plain_ram()
                    .map_err(tract)?
                    .as_slice::<f32>()
                    .map_err(tract)?,
            );
        }
        let out = plan
            .run(tvec!(input.into_tvalue()))
            .map_err(tract_at(format!(
                "calibration run of {} failed",
                file.display()
            )))?;
        for (name, value) in outputs.iter().zip(out.iter()) {
            let values = value.try_as_plain_ram().map_err(tract)?;
            if let Some(st) = stats.get_mut(*name) {
                st.add(values.as_slice::<f32>().map_err(tract)?);
            }
        }
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// The ONNX rewrite
// ---------------------------------------------------------------------------------------------

/// A float tensor's u8 twin: the quantized tensor and its scale and zero point initializers.
#[derive(Debug, Clone)]
struct QTensor {
    q: String,
    scale_name: String,
    zero_name: String,
    scale: f32,
}

/// A Conv chosen to run in integers.
#[derive(Debug, Clone)]
struct IntegerConv {
    /// Index of the Clip(0, hi) folded into it, and hi.
    clip: Option<(usize, f32)>,
    /// The tensor the integer conv's Dequantize produces: the Clip's output when folded.
    result: String,
}

/// Everything the rewrite looks up in the original graph.
struct Graph {
    inits: HashMap<String, pb::TensorProto>,
    /// How many nodes read each tensor (graph outputs count as readers).
    readers: HashMap<String, usize>,
    input_names: HashSet<String>,
}

impl Graph {
    fn new(g: &pb::GraphProto) -> Graph {
        let inits: HashMap<String, pb::TensorProto> = g
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect();
        let mut readers = HashMap::new();
        for n in &g.node {
            for i in &n.input {
                *readers.entry(i.clone()).or_insert(0) += 1;
            }
        }
        for o in &g.output {
            *readers.entry(o.name.clone()).or_insert(0) += 1;
        }
        let input_names = g
            .input
            .iter()
            .map(|i| i.name.clone())
            .filter(|n| !inits.contains_key(n))
            .collect();
        Graph {
            inits,
            readers,
            input_names,
        }
    }

    /// A Conv/Gemm weight we can quantize: a float initializer of rank ≥ 2.
    fn float_weight(&self, n: &pb::NodeProto) -> Option<&pb::TensorProto> {
        let t = self.inits.get(n.input.get(1)?)?;
        (t.data_type == FLOAT && t.dims.len() >= 2).then_some(t)
    }

    fn scalar(&self, name: &str) -> Option<f32> {
        let t = self.inits.get(name)?;
        let v = floats(t).ok()?;
        (v.len() == 1).then(|| v[0])
    }
}

/// Which axis of a node's weight indexes output channels.
fn output_axis(n: &pb::NodeProto) -> usize {
    match n.op_type.as_str() {
        // Gemm's B is [K, N] unless transB, when it is [N, K].
        "Gemm" if attr_int(n, "transB").unwrap_or(0) == 0 => 1,
        _ => 0,
    }
}

/// Picks the convolutions the integer form computes in integers.
fn integer_convs(
    g: &pb::GraphProto,
    graph: &Graph,
    opts: &QuantizeOptions,
) -> HashMap<usize, IntegerConv> {
    let mut chosen = HashMap::new();
    if opts.form != Form::Integer {
        return chosen;
    }
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type != "Conv" {
            continue;
        }
        let Some(w) = graph.float_weight(n) else {
            continue;
        };
        if w.dims.len() != 4 || attr_ints(n, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1))
        {
            continue;
        }
        let pointwise = w.dims[2] == 1 && w.dims[3] == 1 && attr_int(n, "group").unwrap_or(1) == 1;
        if opts.integer_layers == IntegerLayers::Pointwise && !pointwise {
            continue;
        }
        if opts.float_first && graph.input_names.contains(&n.input[0]) {
            continue;
        }
        let out = &n.output[0];
        // Fold a following Clip(0, hi) if it is the conv output's only reader.
        let clip = g.node.iter().enumerate().find(|(_, c)| {
            c.op_type == "Clip" && c.input.first() == Some(out) && c.input.len() == 3
        });
        let fold = clip.and_then(|(k, c)| {
            let (lo, hi) = (graph.scalar(&c.input[1])?, graph.scalar(&c.input[2])?);
            (graph.readers.get(out) == Some(&1) && lo == 0.0 && hi > 0.0).then_some((k, hi))
        });
        let result = match fold {
            Some((k, _)) => g.node[k].output[0].clone(),
            None => out.clone(),
        };
        chosen.insert(i, IntegerConv { clip: fold, result });
    }
    chosen
}

/// Builds the quantized graph.
struct Rewriter<'a> {
    graph: &'a Graph,
    new_inits: Vec<pb::TensorProto>,
    /// DequantizeLinear nodes of weights, which only read initializers: they go first.
    weight_nodes: Vec<pb::NodeProto>,
    nodes: Vec<pb::NodeProto>,
    /// Float weights already given an int8 twin.
    weights_done: HashSet<String>,
    /// Float tensors with a u8 twin.
    twins: HashMap<String, QTensor>,
}

impl Rewriter<'_> {
    /// Stores weight `name` as int8 with per-channel scales, read through DequantizeLinear so
    /// the consumer still sees a float tensor called `name`.
    fn weight_only(&mut self, n: &pb::NodeProto) -> Result<bool> {
        let graph = self.graph;
        let Some(w) = graph.float_weight(n) else {
            return Ok(false);
        };
        if !self.weights_done.insert(w.name.clone()) {
            return Ok(true);
        }
        let axis = output_axis(n);
        let (q, scales, zeros, _) = self.int8_weight(w, axis, &[])?;
        self.weight_nodes.push(pb::NodeProto {
            attribute: vec![int_attr("axis", axis as i64)],
            ..node(
                "DequantizeLinear",
                format!("{}_dequantize", w.name),
                &[&q, &scales, &zeros],
                &[&w.name],
            )
        });
        Ok(true)
    }

    /// Adds the int8 weight, its scales and (zero) zero points; returns their names.
    fn int8_weight(
        &mut self,
        w: &pb::TensorProto,
        axis: usize,
        floor: &[f32],
    ) -> Result<(String, String, String, Vec<f32>)> {
        let values = floats(w)?;
        let dims: Vec<usize> = w.dims.iter().map(|&d| d as usize).collect();
        let (q, scales) = quantize_per_channel_floor(&values, &dims, axis, floor);
        let c = scales.len() as i64;
        let (qn, sn, zn) = (
            format!("{}_int8", w.name),
            format!("{}_scale", w.name),
            format!("{}_zero", w.name),
        );
        self.new_inits.push(tensor(
            &qn,
            &w.dims,
            INT8,
            q.iter().map(|v| *v as u8).collect(),
        ));
        self.new_inits.push(f32_tensor(&sn, &[c], &scales));
        self.new_inits
            .push(tensor(&zn, &[c], INT8, vec![0; scales.len()]));
        Ok((qn, sn, zn, scales))
    }

    /// Adds a u8 scale/zero-point pair for `tensor` from its calibrated range.
    fn activation(&mut self, name: &str, lo: f32, hi: f32) -> QTensor {
        let (scale, zero) = activation_params(lo, hi);
        let (sn, zn) = (format!("{name}_scale"), format!("{name}_zero"));
        self.new_inits.push(f32_tensor(&sn, &[], &[scale]));
        self.new_inits.push(tensor(&zn, &[], UINT8, vec![zero]));
        QTensor {
            q: format!("{name}_u8"),
            scale_name: sn,
            zero_name: zn,
            scale,
        }
    }

    /// `x`'s u8 twin, quantizing it here unless an integer conv already produced one.
    fn quantized_input(&mut self, x: &str, range: (f32, f32)) -> QTensor {
        if let Some(t) = self.twins.get(x) {
            return t.clone();
        }
        let t = self.activation(x, range.0, range.1);
        self.nodes.push(node(
            "QuantizeLinear",
            format!("{x}_quantize"),
            &[x, &t.scale_name, &t.zero_name],
            &[&t.q],
        ));
        self.twins.insert(x.to_string(), t.clone());
        t
    }

    fn integer_conv(
        &mut self,
        n: &pb::NodeProto,
        ic: &IntegerConv,
        ranges: &HashMap<String, (f32, f32)>,
    ) -> Result<()> {
        let range = |t: &str| {
            ranges
                .get(t)
                .copied()
                .ok_or_else(|| QuantizeError::NoRange(t.to_string()))
        };
        let x = self.quantized_input(&n.input[0], range(&n.input[0])?);
        let w = self
            .graph
            .float_weight(n)
            .ok_or(QuantizeError::NoFloatWeight)?
            .clone();
        self.weights_done.insert(w.name.clone());
        let channels = w.dims[0] as usize;
        let bias = match n.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => floats(
                self.graph
                    .inits
                    .get(b)
                    .ok_or_else(|| QuantizeError::BiasNotInitializer(b.clone()))?,
            )?,
            None => vec![0.0; channels],
        };
        let floor: Vec<f32> = bias
            .iter()
            .map(|b| b.abs() / (x.scale * MAX_BIAS))
            .collect();
        let (wq, ws, wz, w_scales) = self.int8_weight(&w, 0, &floor)?;
        // int32 bias in units of x_scale · w_scale[c], as QLinearConv's spec requires.
        let bias_q: Vec<u8> = bias
            .iter()
            .zip(&w_scales)
            .flat_map(|(b, s)| {
                let v = (*b as f64 / (x.scale as f64 * *s as f64)).round();
                (v.clamp(i32::MIN as f64, i32::MAX as f64) as i32).to_le_bytes()
            })
            .collect();
        let bn = format!("{}_int32", w.name);
        self.new_inits
            .push(tensor(&bn, &[w_scales.len() as i64], INT32, bias_q));
        let (mut lo, mut hi) = range(&ic.result)?;
        if let Some((_, clip_hi)) = ic.clip {
            // The folded Clip's floor is u8 0 (zero point 0); its ceiling is the top of the range.
            lo = 0.0;
            hi = hi.min(clip_hi);
        }
        let y = self.activation(&ic.result, lo, hi);
        let mut conv = node(
            "QLinearConv",
            format!("{}_qlinear", n.name),
            &[
                &x.q,
                &x.scale_name,
                &x.zero_name,
                &wq,
                &ws,
                &wz,
                &y.scale_name,
                &y.zero_name,
                &bn,
            ],
            &[&y.q],
        );
        conv.attribute = n.attribute.clone();
        self.nodes.push(conv);
        self.nodes.push(node(
            "DequantizeLinear",
            format!("{}_dequantize", ic.result),
            &[&y.q, &y.scale_name, &y.zero_name],
            &[&ic.result],
        ));
        self.twins.insert(ic.result.clone(), y);
        Ok(())
    }
}

/// Decodes `bytes` as an ONNX model made by `agecam-host export` (float, opset ≥ 13).
fn decode(bytes: &[u8], file: &Path) -> Result<pb::ModelProto> {
    let not_onnx = |source| QuantizeError::NotOnnx {
        file: file.to_path_buf(),
        source,
    };
    let model = pb::ModelProto::decode(bytes).map_err(|e| not_onnx(Some(e)))?;
    let Some(g) = &model.graph else {
        return Err(not_onnx(None));
    };
    if g.node.is_empty() {
        return Err(not_onnx(None));
    }
    if let Some(op) = g.node.iter().find(|n| {
        matches!(
            n.op_type.as_str(),
            "QuantizeLinear" | "DequantizeLinear" | "QLinearConv" | "QLinearMatMul"
        )
    }) {
        return Err(QuantizeError::AlreadyQuantized {
            file: file.to_path_buf(),
            op: op.op_type.clone(),
        });
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    if opset < 13 {
        return Err(QuantizeError::Opset {
            file: file.to_path_buf(),
            opset,
        });
    }
    Ok(model)
}

/// Quantizes the float model `bytes` (read from `file`, named in errors). `calibration` images
/// are needed for the integer form only; any size, they are cropped as the device does.
pub fn quantize_model(
    bytes: &[u8],
    file: &Path,
    opts: &QuantizeOptions,
    calibration: &[RgbImage],
) -> Result<(Vec<u8>, Report)> {
    let mut model = decode(bytes, file)?;
    let g = model.graph.take().ok_or(QuantizeError::NoGraph)?;
    let graph = Graph::new(&g);
    let chosen = integer_convs(&g, &graph, opts);

    let mut ranges = HashMap::new();
    let mut needed: Vec<String> = Vec::new();
    for (i, ic) in &chosen {
        needed.push(g.node[*i].input[0].clone());
        needed.push(ic.result.clone());
    }
    needed.sort();
    needed.dedup();
    if !chosen.is_empty() {
        if calibration.is_empty() {
            return Err(QuantizeError::NoCalibration);
        }
        let stats = calibrate(bytes, file, &needed, calibration)?;
        for (name, st) in &stats {
            let r = st
                .range(opts.calib_method)
                .ok_or_else(|| QuantizeError::NoFiniteValues(name.clone()))?;
            ranges.insert(name.clone(), r);
        }
    }

    let mut rw = Rewriter {
        graph: &graph,
        new_inits: Vec::new(),
        weight_nodes: Vec::new(),
        nodes: Vec::new(),
        weights_done: HashSet::new(),
        twins: HashMap::new(),
    };
    let folded: HashSet<usize> = chosen
        .values()
        .filter_map(|ic| ic.clip.map(|(k, _)| k))
        .collect();
    let mut report = Report {
        bytes_in: bytes.len(),
        calibration_images: if chosen.is_empty() {
            0
        } else {
            calibration.len()
        },
        calibrated_tensors: needed.len(),
        integer_convs: chosen.len(),
        folded_clips: folded.len(),
        ..Default::default()
    };
    for (i, n) in g.node.iter().enumerate() {
        if folded.contains(&i) {
            continue;
        }
        if let Some(ic) = chosen.get(&i) {
            rw.integer_conv(n, ic, &ranges)?;
            continue;
        }
        if matches!(n.op_type.as_str(), "Conv" | "Gemm") {
            let values = graph
                .float_weight(n)
                .map(|w| w.dims.iter().product::<i64>() as usize);
            match values {
                Some(v) if v < opts.float_below => report.float_weights += 1,
                _ => {
                    rw.weight_only(n)?;
                }
            }
        }
        rw.nodes.push(n.clone());
    }
    report.int8_weights = rw.weights_done.len();

    let mut out = g.clone();
    // The float weights are replaced: their names now belong to DequantizeLinear outputs.
    out.initializer
        .retain(|t| !rw.weights_done.contains(&t.name));
    out.node = rw.weight_nodes;
    out.node.extend(rw.nodes);
    out.initializer.extend(rw.new_inits);
    prune(&mut out);
    model.graph = Some(out);

    let layers = match opts.integer_layers {
        IntegerLayers::Pointwise => "1x1",
        IntegerLayers::All => "all",
    };
    let kept = if report.float_weights > 0 {
        format!(
            "; {} weight tensors under {} values kept float",
            report.float_weights, opts.float_below
        )
    } else {
        String::new()
    };
    report.description = match opts.form {
        Form::WeightOnly => format!("weight-only int8: per-output-channel symmetric int8 weights read through DequantizeLinear; float compute{kept}"),
        Form::Integer => format!(
            "integer: {} {layers} convolutions as QLinearConv (per-channel int8 weights, u8 activations, {} over {} calibration images{}); other convolutions and the heads weight-only int8 with float compute",
            report.integer_convs,
            opts.calib_method,
            report.calibration_images,
            if opts.float_first { ", first convolution kept float" } else { "" }
        ) + &kept,
    };
    model.metadata_props.retain(|p| p.key != QUANTIZATION_KEY);
    model.metadata_props.push(pb::StringStringEntryProto {
        key: QUANTIZATION_KEY.to_string(),
        value: report.description.clone(),
    });
    let encoded = model.encode_to_vec();
    report.bytes_out = encoded.len();
    Ok((encoded, report))
}

/// `agecam-host quantize`: reads `model`, calibrates on up to `max_calib` images from `calib`
/// (integer form), writes `out`.
pub fn quantize_file(
    model: &Path,
    calib: Option<&Path>,
    max_calib: usize,
    out: &Path,
    opts: &QuantizeOptions,
) -> Result<Report> {
    let bytes = std::fs::read(model).map_err(|source| QuantizeError::ReadModel {
        file: model.to_path_buf(),
        source,
    })?;
    let images = match (opts.form, calib) {
        (Form::Integer, Some(dir)) => load_calibration_images(dir, max_calib)?,
        (Form::Integer, None) => return Err(QuantizeError::CalibNeeded),
        (Form::WeightOnly, _) => Vec::new(),
    };
    let (encoded, report) = quantize_model(&bytes, model, opts, &images)?;
    std::fs::write(out, &encoded).map_err(|source| QuantizeError::Write {
        file: out.to_path_buf(),
        source,
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests;
