//! Looking inside an age/gender model as tract will run it: which convolutions and matrix
//! products compute in integers and which in float ([`explain`]), and how long one face takes
//! with each of several files ([`time_forms`]).
//!
//! Both work on the *optimised* graph, because that is what the device runs: an ONNX file full
//! of `QLinearConv` nodes only helps if tract keeps them integer after `into_optimized`, and a
//! weight-only int8 file should show plain f32 layers (its `DequantizeLinear` nodes are folded
//! into constants at load). Neither needs the `train` feature, so the device's `agecam bench`
//! can use them too.

use super::age_gender::AgeGenderModel;
use crate::Error;
use image::RgbImage;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;

/// Operator names (as tract's optimised graph names them) that do a convolution's or a matrix
/// product's arithmetic. Helpers such as `Im2col` or packing ops only move data and are left out.
const COMPUTE_OPS: &[&str] = &[
    "Conv",
    "conv_nhwc",
    "DepthWiseConv",
    "DirectSpatialConv",
    "BlockedConv",
    "OptMatMul",
    "EinSum",
    "EinSumMatMul",
    "PrefixMatMul",
    "MatMul",
];

/// One convolution or matrix product of the optimised graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The node's name (tract derives it from the ONNX node it came from).
    pub node: String,
    /// tract's operator name, e.g. `OptMatMul`, `DepthWiseConv`.
    pub op: String,
    /// Datum types of the node's inputs. Packed (opaque) operands are followed back through
    /// the packing/im2col node to the tensor that was packed, so an integer layer shows `I8`.
    pub inputs: Vec<DatumType>,
    pub output: DatumType,
    /// For matrix products: the type the kernel accumulates in (`I32` for integer layers).
    pub accumulator: Option<DatumType>,
}

impl Layer {
    /// Integer arithmetic: an integer accumulator, or integer operands.
    pub fn is_integer(&self) -> bool {
        match self.accumulator {
            Some(acc) => acc.is_integer(),
            None => self.inputs.iter().any(|dt| dt.is_integer()),
        }
    }
}

/// What [`explain`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub file: PathBuf,
    pub layers: Vec<Layer>,
}

impl Explanation {
    pub fn integer_layers(&self) -> usize {
        self.layers.iter().filter(|l| l.is_integer()).count()
    }

    pub fn float_layers(&self) -> usize {
        self.layers.len() - self.integer_layers()
    }

    /// Layers per (operator, integer or float).
    pub fn counts(&self) -> BTreeMap<(String, bool), usize> {
        let mut counts = BTreeMap::new();
        for l in &self.layers {
            *counts.entry((l.op.clone(), l.is_integer())).or_insert(0) += 1;
        }
        counts
    }
}

fn dt_name(dt: DatumType) -> String {
    format!("{dt:?}").to_lowercase()
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} as tract runs it (optimised):", self.file.display())?;
        for l in &self.layers {
            let inputs: Vec<String> = l.inputs.iter().map(|d| dt_name(*d)).collect();
            let acc = l
                .accumulator
                .map(|a| format!(" acc {}", dt_name(a)))
                .unwrap_or_default();
            writeln!(
                f,
                "  {:<7} {:<17} in [{}] -> {}{acc}  {}",
                if l.is_integer() { "integer" } else { "float" },
                l.op,
                inputs.join(", "),
                dt_name(l.output),
                l.node
            )?;
        }
        for ((op, integer), n) in self.counts() {
            let kind = if integer { "integer" } else { "float" };
            writeln!(f, "  {n:>4} × {op} ({kind})")?;
        }
        write!(
            f,
            "  {} integer and {} float convolution/matmul layers",
            self.integer_layers(),
            self.float_layers()
        )
    }
}

/// Loads `path` as the device does (batch 1 at the size its metadata gives), optimises it and
/// lists its convolutions and matrix products with their datum types.
pub fn explain(path: &Path) -> Result<Explanation, Error> {
    let model_error = |problem: String| Error::Model {
        file: path.to_path_buf(),
        problem,
    };
    let optimized = std::panic::catch_unwind(|| optimized_batch1(path))
        .map_err(|_| model_error("tract failed on this file (malformed model)".into()))?
        .map_err(|e| model_error(e.to_string()))?;
    let mut layers = Vec::new();
    for node in optimized.nodes() {
        let op = node.op.name().to_string();
        if !COMPUTE_OPS.contains(&op.as_str()) {
            continue;
        }
        let inputs = node
            .inputs
            .iter()
            .map(|&o| unpacked_type(&optimized, o, 4))
            .collect();
        let output = node
            .outputs
            .first()
            .map(|o| o.fact.datum_type)
            .unwrap_or(DatumType::F32);
        let accumulator = node
            .op_as::<OptMatMul>()
            .and_then(|m| m.mmm.first())
            .map(|k| k.internal_type());
        layers.push(Layer {
            node: node.name.clone(),
            op,
            inputs,
            output,
            accumulator,
        });
    }
    Ok(Explanation {
        file: path.to_path_buf(),
        layers,
    })
}

/// Why [`optimized_batch1`] has no model (the file is named by [`Error::Model`]).
#[derive(Debug, thiserror::Error)]
enum OptimiseError {
    #[error("not a loadable ONNX model ({0:#})")]
    NotOnnx(TractError),
    #[error(transparent)]
    Metadata(#[from] super::age_gender::MetadataError),
    #[error("tract cannot optimise this model ({0:#})")]
    Optimise(TractError),
}

/// The model at `path`, typed for one RGB face of the size in its metadata and optimised.
fn optimized_batch1(path: &Path) -> Result<TypedModel, OptimiseError> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(OptimiseError::NotOnnx)?;
    let info = super::age_gender::ModelInfo::from_properties(&model.properties)?;
    let s = info.input_size as usize;
    model
        .with_input_fact(0, f32::fact([1, 3, s, s]).into())
        .and_then(|m| m.into_optimized())
        .map_err(OptimiseError::Optimise)
}

/// The datum type of `outlet`, or for a packed (exotic) tensor the type of what was packed.
fn unpacked_type(model: &TypedModel, outlet: OutletId, depth: usize) -> DatumType {
    let Ok(fact) = model.outlet_fact(outlet) else {
        return DatumType::F32;
    };
    let packed = fact.exotic_fact.is_some() || fact.datum_type == DatumType::Blob;
    if !packed || depth == 0 {
        return fact.datum_type;
    }
    match model.node(outlet.node).inputs.first() {
        Some(&src) => unpacked_type(model, src, depth - 1),
        None => fact.datum_type,
    }
}

/// A smooth test face of `size`² pixels (every channel carries signal, unlike a flat colour).
fn test_crop(size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([
            (x * 255 / size) as u8,
            (y * 255 / size) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

/// Runs each closure `runs` times round-robin after a warm-up (so a change in machine load
/// hits all of them alike) and returns each one's median milliseconds.
fn median_ms(
    runners: &mut [Box<dyn FnMut() -> Result<(), Error> + '_>],
    runs: usize,
) -> Result<Vec<f64>, Error> {
    for r in runners.iter_mut() {
        for _ in 0..3 {
            r()?;
        }
    }
    let mut times = vec![Vec::with_capacity(runs); runners.len()];
    for _ in 0..runs.max(1) {
        for (k, r) in runners.iter_mut().enumerate() {
            let t = Instant::now();
            r()?;
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into())
}

/// Median milliseconds per face for each model file (named by file stem), one thread, as the
/// device runs them: [`AgeGenderModel::load`] (optimised for one face) and
/// [`AgeGenderModel::predict`] on one crop, input normalisation and softmax included.
pub fn time_forms(paths: &[PathBuf], runs: usize) -> Result<Vec<(String, f64)>, Error> {
    let models = paths
        .iter()
        .map(|p| AgeGenderModel::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let models: Vec<&AgeGenderModel> = models.iter().collect();
    let ms = time_loaded(&models, runs)?;
    Ok(paths.iter().map(|p| stem(p)).zip(ms).collect())
}

/// Median milliseconds per face of each loaded model, `runs` times round-robin on one test
/// crop of its input size.
pub fn time_loaded(models: &[&AgeGenderModel], runs: usize) -> Result<Vec<f64>, Error> {
    let crops: Vec<RgbImage> = models
        .iter()
        .map(|m| test_crop(m.info().input_size))
        .collect();
    let mut runners: Vec<Box<dyn FnMut() -> Result<(), Error> + '_>> = models
        .iter()
        .zip(&crops)
        .map(|(m, c)| {
            Box::new(move || m.predict(std::slice::from_ref(c)).map(drop))
                as Box<dyn FnMut() -> Result<(), Error>>
        })
        .collect();
    median_ms(&mut runners, runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::onnx_build::tests_support::tiny_age_gender_onnx;

    #[test]
    fn float_model_has_float_layers_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.onnx");
        std::fs::write(&path, tiny_age_gender_onnx(16)).unwrap();
        let e = explain(&path).unwrap();
        assert!(!e.layers.is_empty(), "{e}");
        assert_eq!(e.integer_layers(), 0, "{e}");
        let text = e.to_string();
        assert!(text.contains("f32"), "{text}");
        let times = time_forms(&[path.clone(), path.clone()], 3).unwrap();
        assert_eq!(times.len(), 2);
        assert!(times.iter().all(|(n, ms)| n == "tiny" && *ms > 0.0));
    }
}
