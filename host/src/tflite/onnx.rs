//! Converts a float TensorFlow Lite convolutional network (read by [`crate::tflite`]) into an
//! ONNX graph that tract runs. Made for MediaPipe's BlazeFace detectors, whose float16 weights
//! sit behind DEQUANTIZE ops that tract's own TFLite front end refuses.
//!
//! What it does:
//! - Constant tensors (float32, or float16 widened to float32 — including DEQUANTIZE outputs,
//!   which become plain weights) turn into ONNX initializers; DEQUANTIZE ops disappear.
//! - Every 4-D activation is kept NCHW (TFLite's are NHWC): the graph input is `[N, C, H, W]`,
//!   convolution weights are reordered (OHWI → OIHW, depthwise 1HWO → O1HW with one group per
//!   input channel), PAD/CONCATENATION axes are remapped, and RESHAPE first returns its input
//!   to NHWC so the flattened order matches TFLite's.
//! - SAME padding becomes explicit (possibly asymmetric) pads computed as TFLite does:
//!   out = ceil(in / stride), the extra row/column going at the bottom/right.
//! - Operators: CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D, ADD, MUL, RELU, RELU6,
//!   LOGISTIC, PAD, CONCATENATION, RESHAPE, SOFTMAX and fused RELU/RELU6/RELU_N1_TO_1. Anything
//!   else is an error naming the operator.
//! - The batch dimension (1 in the file) becomes symbolic `N`.

use super::{Activation, Builtin, Model, Operator, Options, Padding, Subgraph, Tensor, TensorType};
use crate::onnx_kit::{depthwise_to_onnx, ohwi_to_oihw, permute, same_pads_dilated};
use agecam::model::onnx_build::{Attr, GraphBuilder};
use std::collections::HashMap;

/// Why a TFLite graph cannot be converted: the operator, tensor or option and what is wrong
/// with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

impl From<String> for ConvertError {
    fn from(problem: String) -> ConvertError {
        ConvertError(problem)
    }
}

impl From<&str> for ConvertError {
    fn from(problem: &str) -> ConvertError {
        ConvertError(problem.to_string())
    }
}

/// How a converted tensor is laid out in the ONNX graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A 4-D activation stored NCHW (the TFLite tensor is NHWC).
    Nchw,
    /// Stored in TFLite's own order.
    Plain,
}

/// A float constant: shape in TFLite order and values.
#[derive(Debug, Clone)]
struct Constant {
    shape: Vec<i64>,
    values: Vec<f32>,
}

struct Converter<'m> {
    model: &'m Model,
    graph: &'m Subgraph,
    builder: GraphBuilder,
    constants: HashMap<usize, Constant>,
    /// Activations already in the ONNX graph: ONNX name and layout.
    values: HashMap<usize, (String, Layout)>,
    /// Initializers already written, by tensor index.
    written: HashMap<usize, String>,
    fresh: usize,
}

/// Converts the first subgraph of `model` into a serialised ONNX model; `metadata` is added as
/// ONNX metadata properties (provenance, licence).
pub fn convert(model: &Model, metadata: &[(&str, &str)]) -> Result<Vec<u8>, ConvertError> {
    let graph = model.subgraphs.first().ok_or("the model has no subgraph")?;
    let name = if graph.name.is_empty() {
        "converted"
    } else {
        &graph.name
    };
    let mut c = Converter {
        model,
        graph,
        builder: GraphBuilder::new(name),
        constants: HashMap::new(),
        values: HashMap::new(),
        written: HashMap::new(),
        fresh: 0,
    };
    c.collect_constants()?;
    for &input in &graph.inputs {
        c.graph_input(input as usize)?;
    }
    for (i, op) in graph.operators.iter().enumerate() {
        c.operator(op).map_err(|e| {
            format!(
                "operator {i} ({:?}, outputs {}): {e}",
                model.builtin(op),
                op.outputs
                    .iter()
                    .map(|&o| format!("`{}`", graph.tensors[o as usize].name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    }
    for &output in &graph.outputs {
        c.graph_output(output as usize)?;
    }
    for (key, value) in metadata {
        c.builder.metadata(key, value);
    }
    Ok(c.builder.to_bytes())
}

/// What [`convert_file`] did.
#[derive(Debug, Clone)]
pub struct ConvertSummary {
    pub source_sha256: String,
    pub operators: usize,
    pub dequantize_dropped: usize,
    pub onnx_bytes: usize,
}

/// Reads the TFLite file `input`, converts it and writes the ONNX model to `output`; the ONNX
/// metadata records the source file's name and sha256. Errors name the file concerned.
pub fn convert_file(
    input: &std::path::Path,
    output: &std::path::Path,
) -> Result<ConvertSummary, agecam::Error> {
    let bytes = std::fs::read(input).map_err(|e| agecam::Error::Model {
        file: input.to_path_buf(),
        problem: format!("cannot read it ({e})"),
    })?;
    let model = Model::parse(&bytes).map_err(|e| agecam::Error::Model {
        file: input.to_path_buf(),
        problem: format!("not a valid TFLite model ({e})"),
    })?;
    let sha = agecam::model::manifest::sha256_file(input).map_err(|e| agecam::Error::Model {
        file: input.to_path_buf(),
        problem: format!("cannot read it ({e})"),
    })?;
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let source = format!("{name} sha256 {sha}");
    let bytes = convert(
        &model,
        &[
            ("agecam.converted_from", &source),
            ("agecam.converter", "agecam-host convert-detector"),
        ],
    )
    .map_err(|problem| agecam::Error::Model {
        file: input.to_path_buf(),
        problem: format!("cannot convert it: {problem}"),
    })?;
    std::fs::write(output, &bytes).map_err(|e| agecam::Error::Output {
        path: output.to_path_buf(),
        problem: format!("cannot write the ONNX model ({e})"),
    })?;
    let operators = &model.subgraphs[0].operators;
    Ok(ConvertSummary {
        source_sha256: sha,
        operators: operators.len(),
        dequantize_dropped: operators
            .iter()
            .filter(|op| model.builtin(op) == Builtin::Dequantize)
            .count(),
        onnx_bytes: bytes.len(),
    })
}

/// Explicit begin/end padding of one spatial axis, as TFLite computes it.
pub fn same_or_valid_pads(
    padding: Padding,
    input: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
) -> (i64, i64) {
    match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let (before, after, _) = same_pads_dilated(input, kernel, stride, dilation);
            (before, after)
        }
    }
}

/// Input `k` of `op` (a tensor index, −1 for an omitted optional one).
fn input(op: &Operator, k: usize) -> Result<i32, ConvertError> {
    op.inputs
        .get(k)
        .copied()
        .ok_or_else(|| format!("input {k} is missing ({} inputs)", op.inputs.len()).into())
}

/// Output `k` of `op` (a tensor index).
fn output(op: &Operator, k: usize) -> Result<i32, ConvertError> {
    op.outputs
        .get(k)
        .copied()
        .ok_or_else(|| format!("output {k} is missing ({} outputs)", op.outputs.len()).into())
}

/// Kernel size, strides and dilations must be positive (a damaged file could hold 0).
fn check_window([kh, kw, sh, sw]: [i64; 4], [dh, dw]: [i64; 2]) -> Result<(), ConvertError> {
    if [kh, kw, sh, sw, dh, dw].iter().all(|&v| v > 0) {
        Ok(())
    } else {
        Err(format!(
            "kernel {kh}×{kw}, strides {sh}×{sw} and dilations {dh}×{dw} must all be positive"
        )
        .into())
    }
}

/// NHWC axis → NCHW axis.
fn nchw_axis(axis: usize) -> usize {
    [0, 2, 3, 1][axis]
}

impl<'m> Converter<'m> {
    fn tensor(&self, index: i32) -> Result<&'m Tensor, ConvertError> {
        self.graph
            .tensor(index)
            .map_err(|e| ConvertError(e.to_string()))
    }

    /// Float constants: tensors with float data, and DEQUANTIZE outputs of constant inputs.
    fn collect_constants(&mut self) -> Result<(), ConvertError> {
        for (i, t) in self.graph.tensors.iter().enumerate() {
            if !matches!(t.dtype, TensorType::Float32 | TensorType::Float16) {
                continue;
            }
            if let Some(values) = self.model.values_f32(t).map_err(|e| e.to_string())? {
                let shape = t.shape.iter().map(|&d| d as i64).collect();
                self.constants.insert(i, Constant { shape, values });
            }
        }
        for op in &self.graph.operators {
            if self.model.builtin(op) != Builtin::Dequantize {
                continue;
            }
            let (&[input], &[output]) = (op.inputs.as_slice(), op.outputs.as_slice()) else {
                return Err("a DEQUANTIZE op does not have one input and one output".into());
            };
            let source = self.tensor(input)?;
            let values = match self.constants.get(&(input as usize)) {
                Some(c) => c.values.clone(),
                // Quantized integer weights dequantize with their scales.
                None => self
                    .model
                    .values_f32(source)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!(
                            "DEQUANTIZE of `{}`, which is not a constant, is not supported",
                            source.name
                        )
                    })?,
            };
            let target = self.tensor(output)?;
            if target.element_count() != Some(values.len()) {
                return Err(format!(
                    "DEQUANTIZE of `{}` gives {} values but its output `{}` has shape {:?}",
                    source.name,
                    values.len(),
                    target.name,
                    target.shape
                )
                .into());
            }
            let shape = target.shape.iter().map(|&d| d as i64).collect();
            self.constants
                .insert(output as usize, Constant { shape, values });
        }
        Ok(())
    }

    fn fresh_name(&mut self, hint: &str) -> String {
        self.fresh += 1;
        format!("{hint}_{}", self.fresh)
    }

    fn tensor_name(&self, index: usize) -> String {
        format!("t{index}")
    }

    /// Dims of a TFLite tensor with the batch made symbolic, in the ONNX layout.
    fn onnx_dims(&self, t: &Tensor, layout: Layout) -> Vec<Option<i64>> {
        let mut dims: Vec<Option<i64>> = t.shape.iter().map(|&d| Some(d as i64)).collect();
        if layout == Layout::Nchw && dims.len() == 4 {
            dims = vec![dims[0], dims[3], dims[1], dims[2]];
        }
        if let Some(first) = dims.first_mut() {
            *first = None;
        }
        dims
    }

    fn graph_input(&mut self, index: usize) -> Result<(), ConvertError> {
        let t = &self.graph.tensors[index];
        if t.dtype != TensorType::Float32 {
            return Err(format!(
                "input `{}` is {:?}; only float32 inputs are supported",
                t.name, t.dtype
            )
            .into());
        }
        let layout = if t.shape.len() == 4 {
            Layout::Nchw
        } else {
            Layout::Plain
        };
        let dims = self.onnx_dims(t, layout);
        self.builder.input(&t.name, &dims);
        self.values.insert(index, (t.name.clone(), layout));
        Ok(())
    }

    fn graph_output(&mut self, index: usize) -> Result<(), ConvertError> {
        let t = &self.graph.tensors[index];
        let (name, layout) = self
            .values
            .get(&index)
            .cloned()
            .ok_or_else(|| format!("output `{}` is never computed", t.name))?;
        let dims = self.onnx_dims(t, layout);
        self.builder
            .node("Identity", &[&name], &[&t.name], &[])
            .output(&t.name, &dims);
        Ok(())
    }

    /// ONNX name and layout of an activation input.
    fn activation(&self, index: i32) -> Result<(String, Layout), ConvertError> {
        let index = usize::try_from(index).map_err(|_| "a required input is missing")?;
        self.values.get(&index).cloned().ok_or_else(|| {
            format!(
                "input `{}` is neither computed earlier nor a constant",
                self.graph.tensors[index].name
            )
            .into()
        })
    }

    fn constant(&self, index: i32) -> Result<&Constant, ConvertError> {
        let t = self.tensor(index)?;
        self.constants
            .get(&(index as usize))
            .ok_or_else(|| format!("`{}` must be a constant float tensor", t.name).into())
    }

    fn int_constant(&self, index: i32) -> Result<Vec<i64>, ConvertError> {
        let t = self.tensor(index)?;
        self.model
            .values_i64(t)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("`{}` must be a constant integer tensor", t.name).into())
    }

    /// An input that is either an activation or a float constant (written as an initializer,
    /// transposed to NCHW when it is 4-D and `like` is NCHW, or shaped to broadcast over NCHW
    /// channels when it is 1-D).
    fn operand(&mut self, index: i32, like: Layout) -> Result<String, ConvertError> {
        if let Ok((name, _)) = self.activation(index) {
            return Ok(name);
        }
        let c = self.constant(index)?.clone();
        let key = index as usize;
        if let Some(name) = self.written.get(&key) {
            return Ok(name.clone());
        }
        let name = self.tensor_name(key);
        match (like, c.shape.len()) {
            (Layout::Nchw, 4) => {
                let (n, h, w, ch) = (c.shape[0], c.shape[1], c.shape[2], c.shape[3]);
                let values = permute(&c.values, &[n, h, w, ch], &[0, 3, 1, 2]);
                self.builder.initializer(&name, &[n, ch, h, w], &values);
            }
            (Layout::Nchw, 1) => {
                self.builder
                    .initializer(&name, &[1, c.shape[0], 1, 1], &c.values);
            }
            (Layout::Nchw, 0) | (Layout::Plain, _) => {
                self.builder.initializer(&name, &c.shape, &c.values);
            }
            (Layout::Nchw, rank) => {
                return Err(format!(
                    "a rank-{rank} constant cannot be combined with a 4-D activation"
                )
                .into())
            }
        }
        self.written.insert(key, name.clone());
        Ok(name)
    }

    /// Names the single output of `op` and records its layout; returns the name.
    fn define(&mut self, op: &Operator, layout: Layout) -> Result<String, ConvertError> {
        let &[output] = op.outputs.as_slice() else {
            return Err(format!("expected one output, found {}", op.outputs.len()).into());
        };
        let name = self.tensor_name(output as usize);
        self.values.insert(output as usize, (name.clone(), layout));
        Ok(name)
    }

    /// Emits `op_type` into a temporary, then the fused activation into `out`.
    fn with_activation(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        out: &str,
        attrs: &[Attr],
        activation: Activation,
    ) -> Result<(), ConvertError> {
        if activation == Activation::None {
            self.builder.node(op_type, inputs, &[out], attrs);
            return Ok(());
        }
        let raw = self.fresh_name(&format!("{out}_pre"));
        self.builder.node(op_type, inputs, &[&raw], attrs);
        self.activation_node(&raw, out, activation)
    }

    fn activation_node(
        &mut self,
        input: &str,
        out: &str,
        activation: Activation,
    ) -> Result<(), ConvertError> {
        let clip = |c: &mut Self, lo: f32, hi: f32| {
            let (lo_name, hi_name) = (c.fresh_name("clip_min"), c.fresh_name("clip_max"));
            c.builder
                .initializer(&lo_name, &[], &[lo])
                .initializer(&hi_name, &[], &[hi])
                .node("Clip", &[input, &lo_name, &hi_name], &[out], &[]);
        };
        match activation {
            Activation::None => {
                self.builder.node("Identity", &[input], &[out], &[]);
            }
            Activation::Relu => {
                self.builder.node("Relu", &[input], &[out], &[]);
            }
            Activation::Relu6 => clip(self, 0.0, 6.0),
            Activation::ReluN1To1 => clip(self, -1.0, 1.0),
            Activation::Tanh => {
                self.builder.node("Tanh", &[input], &[out], &[]);
            }
            other => return Err(format!("fused activation {other:?} is not supported").into()),
        }
        Ok(())
    }

    /// Input height and width of a 4-D NHWC activation.
    fn spatial(&self, index: i32) -> Result<(i64, i64), ConvertError> {
        let t = self.tensor(index)?;
        match t.shape.as_slice() {
            &[_, h, w, _] if h > 0 && w > 0 => Ok((h as i64, w as i64)),
            other => Err(format!(
                "`{}` should be a 4-D NHWC tensor of known size, its shape is {other:?}",
                t.name
            )
            .into()),
        }
    }

    fn nchw_activation(&self, index: i32) -> Result<String, ConvertError> {
        match self.activation(index)? {
            (name, Layout::Nchw) => Ok(name),
            (_, Layout::Plain) => {
                Err(format!("`{}` should be a 4-D activation", self.tensor(index)?.name).into())
            }
        }
    }

    fn operator(&mut self, op: &Operator) -> Result<(), ConvertError> {
        let builtin = self.model.builtin(op);
        match (builtin, &op.options) {
            (Builtin::Dequantize, _) => Ok(()), // folded into constants
            (
                Builtin::Conv2d,
                &Options::Conv2d {
                    padding,
                    stride_w,
                    stride_h,
                    activation,
                    dilation_w,
                    dilation_h,
                },
            ) => {
                let x = self.nchw_activation(input(op, 0)?)?;
                let w = self.constant(input(op, 1)?)?.clone();
                let &[o, kh, kw, i] = w.shape.as_slice() else {
                    return Err(format!("filter shape {:?} is not OHWI", w.shape).into());
                };
                let weights =
                    ohwi_to_oihw(&w.values, o as usize, kh as usize, kw as usize, i as usize);
                self.conv(
                    op,
                    &x,
                    (&[o, i, kh, kw], &weights),
                    1,
                    [kh, kw, stride_h as i64, stride_w as i64],
                    [dilation_h as i64, dilation_w as i64],
                    padding,
                    activation,
                )
            }
            (
                Builtin::DepthwiseConv2d,
                &Options::DepthwiseConv2d {
                    padding,
                    stride_w,
                    stride_h,
                    activation,
                    dilation_w,
                    dilation_h,
                    ..
                },
            ) => {
                let x = self.nchw_activation(input(op, 0)?)?;
                let channels = self
                    .tensor(input(op, 0)?)?
                    .shape
                    .get(3)
                    .map_or(0, |&c| c as i64);
                let w = self.constant(input(op, 1)?)?.clone();
                let &[1, kh, kw, o] = w.shape.as_slice() else {
                    return Err(format!("depthwise filter shape {:?} is not 1HWO", w.shape).into());
                };
                if channels <= 0 || o % channels != 0 {
                    return Err(format!(
                        "depthwise filter has {o} outputs for {channels} input channels"
                    )
                    .into());
                }
                // [1, H, W, O] → [O, 1, H, W]; channel c·M + m reads input channel c, which
                // is ONNX's grouping with one group per input channel.
                let (c, m) = (channels as usize, (o / channels) as usize);
                let weights = depthwise_to_onnx(&w.values, kh as usize, kw as usize, c, m);
                self.conv(
                    op,
                    &x,
                    (&[o, 1, kh, kw], &weights),
                    channels,
                    [kh, kw, stride_h as i64, stride_w as i64],
                    [dilation_h as i64, dilation_w as i64],
                    padding,
                    activation,
                )
            }
            (
                Builtin::MaxPool2d | Builtin::AveragePool2d,
                &Options::Pool2d {
                    padding,
                    stride_w,
                    stride_h,
                    filter_w,
                    filter_h,
                    activation,
                },
            ) => {
                let x = self.nchw_activation(input(op, 0)?)?;
                let (h, w) = self.spatial(input(op, 0)?)?;
                let (kh, kw, sh, sw) = (
                    filter_h as i64,
                    filter_w as i64,
                    stride_h as i64,
                    stride_w as i64,
                );
                check_window([kh, kw, sh, sw], [1, 1])?;
                let (top, bottom) = same_or_valid_pads(padding, h, kh, sh, 1);
                let (left, right) = same_or_valid_pads(padding, w, kw, sw, 1);
                let out = self.define(op, Layout::Nchw)?;
                let op_type = if builtin == Builtin::MaxPool2d {
                    "MaxPool"
                } else {
                    "AveragePool" // count_include_pad = 0, as TFLite averages
                };
                self.with_activation(
                    op_type,
                    &[&x],
                    &out,
                    &[
                        Attr::Ints("kernel_shape", &[kh, kw]),
                        Attr::Ints("strides", &[sh, sw]),
                        Attr::Ints("pads", &[top, left, bottom, right]),
                    ],
                    activation,
                )
            }
            (Builtin::Add | Builtin::Mul, options) => {
                let activation = match options {
                    Options::Add { activation } | Options::Mul { activation } => *activation,
                    _ => Activation::None,
                };
                let layout = [input(op, 0)?, input(op, 1)?]
                    .iter()
                    .find_map(|&i| self.activation(i).ok().map(|(_, l)| l))
                    .ok_or("both inputs are constants")?;
                let a = self.operand(input(op, 0)?, layout)?;
                let b = self.operand(input(op, 1)?, layout)?;
                let out = self.define(op, layout)?;
                let op_type = if builtin == Builtin::Add {
                    "Add"
                } else {
                    "Mul"
                };
                self.with_activation(op_type, &[&a, &b], &out, &[], activation)
            }
            (Builtin::Relu | Builtin::Relu6 | Builtin::Logistic, _) => {
                let (x, layout) = self.activation(input(op, 0)?)?;
                let out = self.define(op, layout)?;
                match builtin {
                    Builtin::Relu => self.activation_node(&x, &out, Activation::Relu),
                    Builtin::Relu6 => self.activation_node(&x, &out, Activation::Relu6),
                    _ => {
                        self.builder.node("Sigmoid", &[&x], &[&out], &[]);
                        Ok(())
                    }
                }
            }
            (Builtin::Pad, _) => {
                let (x, layout) = self.activation(input(op, 0)?)?;
                let pads = self.int_constant(input(op, 1)?)?;
                let rank = pads.len() / 2;
                if pads.len() != 2 * rank || rank == 0 {
                    return Err(format!("paddings {pads:?} are not [rank, 2]").into());
                }
                // TFLite: [[begin, end] per axis]; ONNX: all begins, then all ends.
                let mut onnx = vec![0i64; 2 * rank];
                for axis in 0..rank {
                    let to = if layout == Layout::Nchw && rank == 4 {
                        nchw_axis(axis)
                    } else {
                        axis
                    };
                    onnx[to] = pads[2 * axis];
                    onnx[rank + to] = pads[2 * axis + 1];
                }
                let pads_name = self.fresh_name("pads");
                self.builder
                    .initializer_i64(&pads_name, &[2 * rank as i64], &onnx);
                let out = self.define(op, layout)?;
                // Mode `constant` with value 0 is ONNX's default.
                self.builder.node("Pad", &[&x, &pads_name], &[&out], &[]);
                Ok(())
            }
            (Builtin::Concatenation, &Options::Concatenation { axis, activation }) => {
                let mut names = Vec::new();
                let mut layout = None;
                for &i in &op.inputs {
                    let (name, l) = self.activation(i)?;
                    if layout.is_some_and(|seen| seen != l) {
                        return Err("inputs have different layouts".into());
                    }
                    layout = Some(l);
                    names.push(name);
                }
                let layout = layout.ok_or("no inputs")?;
                let rank = self.tensor(output(op, 0)?)?.shape.len() as i32;
                let axis = if axis < 0 { axis + rank } else { axis };
                if !(0..rank).contains(&axis) {
                    return Err(format!("axis {axis} is out of range for rank {rank}").into());
                }
                if layout == Layout::Nchw && rank != 4 {
                    return Err(format!("4-D inputs give a rank-{rank} output").into());
                }
                let axis = if layout == Layout::Nchw {
                    nchw_axis(axis as usize) as i64
                } else {
                    axis as i64
                };
                let out = self.define(op, layout)?;
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                self.with_activation(
                    "Concat",
                    &refs,
                    &out,
                    &[Attr::Int("axis", axis)],
                    activation,
                )
            }
            (Builtin::Reshape, options) => {
                let (x, layout) = self.activation(input(op, 0)?)?;
                let input_shape = &self.tensor(input(op, 0)?)?.shape;
                let mut shape = match (op.inputs.get(1), options) {
                    (Some(&i), _) if i >= 0 => self.int_constant(i)?,
                    (_, Options::Reshape { new_shape }) => {
                        new_shape.iter().map(|&d| d as i64).collect()
                    }
                    _ => self
                        .tensor(output(op, 0)?)?
                        .shape
                        .iter()
                        .map(|&d| d as i64)
                        .collect(),
                };
                // Keep the batch symbolic: 0 copies the input's first dimension.
                if !shape.is_empty() && input_shape.first().map(|&d| d as i64) == Some(shape[0]) {
                    shape[0] = 0;
                }
                let x = if layout == Layout::Nchw {
                    let nhwc = self.fresh_name(&format!("{x}_nhwc"));
                    self.builder.node(
                        "Transpose",
                        &[&x],
                        &[&nhwc],
                        &[Attr::Ints("perm", &[0, 2, 3, 1])],
                    );
                    nhwc
                } else {
                    x
                };
                let shape_name = self.fresh_name("shape");
                self.builder
                    .initializer_i64(&shape_name, &[shape.len() as i64], &shape);
                if shape.len() == 4 {
                    let out = self.define(op, Layout::Nchw)?;
                    let nhwc = self.fresh_name(&format!("{out}_nhwc"));
                    self.builder
                        .node("Reshape", &[&x, &shape_name], &[&nhwc], &[])
                        .node(
                            "Transpose",
                            &[&nhwc],
                            &[&out],
                            &[Attr::Ints("perm", &[0, 3, 1, 2])],
                        );
                } else {
                    let out = self.define(op, Layout::Plain)?;
                    self.builder
                        .node("Reshape", &[&x, &shape_name], &[&out], &[]);
                }
                Ok(())
            }
            (
                Builtin::ResizeBilinear,
                &Options::ResizeBilinear {
                    align_corners,
                    half_pixel_centers,
                },
            ) => {
                let x = self.nchw_activation(input(op, 0)?)?;
                let (h, w) = self.spatial(input(op, 0)?)?;
                let size = self.int_constant(input(op, 1)?)?;
                let &[new_h, new_w] = size.as_slice() else {
                    return Err(format!("size {size:?} is not [height, width]").into());
                };
                if h <= 0 || w <= 0 || new_h <= 0 || new_w <= 0 {
                    return Err(format!("resizing {h}x{w} to {new_h}x{new_w}").into());
                }
                // TFLite's flags as ONNX's coordinate modes; with neither, in = out · scale.
                let mode = match (align_corners, half_pixel_centers) {
                    (true, true) => return Err("align_corners with half_pixel_centers".into()),
                    (true, false) => "align_corners",
                    (false, true) => "half_pixel",
                    (false, false) => "asymmetric",
                };
                let scales = self.fresh_name("scales");
                self.builder.initializer(
                    &scales,
                    &[4],
                    &[1.0, 1.0, new_h as f32 / h as f32, new_w as f32 / w as f32],
                );
                let out = self.define(op, Layout::Nchw)?;
                // Inputs X, roi (none), scales; the batch stays symbolic.
                self.builder.node(
                    "Resize",
                    &[&x, "", &scales],
                    &[&out],
                    &[
                        Attr::Str("mode", "linear"),
                        Attr::Str("coordinate_transformation_mode", mode),
                    ],
                );
                Ok(())
            }
            (Builtin::Softmax, options) => {
                let beta = match options {
                    Options::Softmax { beta } => *beta,
                    _ => 1.0,
                };
                let (x, layout) = self.activation(input(op, 0)?)?;
                let axis = if layout == Layout::Nchw { 1 } else { -1 };
                let x = if (beta - 1.0).abs() > f32::EPSILON {
                    let beta_name = self.fresh_name("beta");
                    let scaled = self.fresh_name(&format!("{x}_scaled"));
                    self.builder.initializer(&beta_name, &[], &[beta]).node(
                        "Mul",
                        &[&x, &beta_name],
                        &[&scaled],
                        &[],
                    );
                    scaled
                } else {
                    x
                };
                let out = self.define(op, layout)?;
                self.builder
                    .node("Softmax", &[&x], &[&out], &[Attr::Int("axis", axis)]);
                Ok(())
            }
            (builtin, options) => Err(format!(
                "operator {builtin:?} with options {options:?} is not supported by the converter"
            )
            .into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        op: &Operator,
        x: &str,
        (weight_dims, weights): (&[i64], &[f32]),
        group: i64,
        [kh, kw, sh, sw]: [i64; 4],
        [dh, dw]: [i64; 2],
        padding: Padding,
        activation: Activation,
    ) -> Result<(), ConvertError> {
        let (h, w) = self.spatial(input(op, 0)?)?;
        check_window([kh, kw, sh, sw], [dh, dw])?;
        let (top, bottom) = same_or_valid_pads(padding, h, kh, sh, dh);
        let (left, right) = same_or_valid_pads(padding, w, kw, sw, dw);
        let weight_name = self.fresh_name("weight");
        self.builder.initializer(&weight_name, weight_dims, weights);
        let mut inputs = vec![x.to_string(), weight_name];
        if let Some(&bias) = op.inputs.get(2).filter(|&&b| b >= 0) {
            let b = self.constant(bias)?.clone();
            if b.values.len() as i64 != weight_dims[0] {
                return Err(format!(
                    "bias has {} values for {} output channels",
                    b.values.len(),
                    weight_dims[0]
                )
                .into());
            }
            let bias_name = self.fresh_name("bias");
            self.builder
                .initializer(&bias_name, &[weight_dims[0]], &b.values);
            inputs.push(bias_name);
        }
        let out = self.define(op, Layout::Nchw)?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.with_activation(
            "Conv",
            &refs,
            &out,
            &[
                Attr::Ints("kernel_shape", &[kh, kw]),
                Attr::Ints("strides", &[sh, sw]),
                Attr::Ints("dilations", &[dh, dw]),
                Attr::Ints("pads", &[top, left, bottom, right]),
                Attr::Int("group", group),
            ],
            activation,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use tract_onnx::prelude::Tensor as TractTensor;
    use tract_onnx::prelude::*;

    fn data(name: &str) -> PathBuf {
        crate::test_repo().join("tests/data/blazeface").join(name)
    }

    /// The input `make_golden.py` fed to TFLite, NHWC: ((7x + 13y + 29c) mod 256) / 127.5 − 1;
    /// returned NCHW for the converted model.
    fn golden_input(size: usize) -> TractTensor {
        tract_ndarray::Array4::from_shape_fn((1, 3, size, size), |(_, c, y, x)| {
            ((7 * x + 13 * y + 29 * c) % 256) as f32 / 127.5 - 1.0
        })
        .into_tensor()
    }

    /// TFLite's outputs in `file` for `anchors` anchors: (regressors, classificators).
    fn golden(file: &str, anchors: usize) -> (Vec<f32>, Vec<f32>) {
        let bytes = std::fs::read(data(file)).unwrap();
        let values: Vec<f32> = bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|&b| f32::from_le_bytes(b))
            .collect();
        assert_eq!(values.len(), anchors * 17);
        let (reg, cls) = values.split_at(anchors * 16);
        (reg.to_vec(), cls.to_vec())
    }

    /// Runs an ONNX detector on `input` and returns (regressors, classificators).
    fn run_onnx(path: &Path, input: TractTensor, anchors: usize) -> (Vec<f32>, Vec<f32>) {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let out = model.run(tvec!(input.into_tvalue())).unwrap();
        assert_eq!(out[0].shape(), &[1, anchors, 16]);
        assert_eq!(out[1].shape(), &[1, anchors, 1]);
        let read = |t: &TValue| {
            t.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        };
        (read(&out[0]), read(&out[1]))
    }

    fn assert_close(name: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{name}");
        let mut worst = (0.0f32, 0usize);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let err = (g - w).abs() / (1.0 + w.abs());
            if err > worst.0 {
                worst = (err, i);
            }
        }
        assert!(
            worst.0 < 1e-3,
            "{name}[{}]: got {}, TFLite gave {} (relative error {})",
            worst.1,
            got[worst.1],
            want[worst.1],
            worst.0
        );
    }

    /// The three BlazeFace variants: (TFLite file, shipped ONNX file, golden file, input size,
    /// anchors, DEQUANTIZE operators folded away).
    const VARIANTS: [(&str, &str, &str, usize, usize, usize); 3] = [
        (
            "face_detection_short_range.tflite",
            "blazeface_short_range.onnx",
            "golden.bin",
            128,
            896,
            74,
        ),
        (
            "face_detection_full_range.tflite",
            "blazeface_full_range.onnx",
            "golden_full_range.bin",
            192,
            2304,
            178,
        ),
        (
            "face_detection_back.tflite",
            "blazeface_back.onnx",
            "golden_back.bin",
            256,
            896,
            138,
        ),
    ];

    #[test]
    fn converted_blazeface_matches_tflite_reference_outputs() {
        let dir = tempfile::tempdir().unwrap();
        for (tflite, _, golden_file, size, anchors, dequantize) in VARIANTS {
            let onnx = dir.path().join("blazeface.onnx");
            let summary = convert_file(&data(tflite), &onnx).unwrap();
            assert_eq!(summary.dequantize_dropped, dequantize, "{tflite}");
            let (reg, cls) = run_onnx(&onnx, golden_input(size), anchors);
            let (want_reg, want_cls) = golden(golden_file, anchors);
            assert_close(&format!("{tflite} regressors"), &reg, &want_reg);
            assert_close(&format!("{tflite} classificators"), &cls, &want_cls);
        }
    }

    #[test]
    fn shipped_detector_models_match_tflite_reference_outputs() {
        for (_, shipped, golden_file, size, anchors, _) in VARIANTS {
            let path = crate::test_repo().join("models").join(shipped);
            let (reg, cls) = run_onnx(&path, golden_input(size), anchors);
            let (want_reg, want_cls) = golden(golden_file, anchors);
            assert_close(&format!("{shipped} regressors"), &reg, &want_reg);
            assert_close(&format!("{shipped} classificators"), &cls, &want_cls);
        }
    }

    #[test]
    fn truncated_tflite_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(data("face_detection_short_range.tflite")).unwrap();
        for cut in [0, 7, 100, bytes.len() / 3, bytes.len() - 10] {
            let path = dir.path().join(format!("cut_{cut}.tflite"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = convert_file(&path, &dir.path().join("out.onnx"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("cut_{cut}.tflite")) && err.contains("not a valid TFLite"),
                "{err}"
            );
        }
    }

    /// Bytes flipped in the FlatBuffer's tables (and a few in the weights): the file converts,
    /// or the error names the file. Neither the reader nor the converter may panic.
    #[test]
    fn damaged_tflite_is_an_error_naming_the_file_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(data("face_detection_short_range.tflite")).unwrap();
        let tables_start = bytes.len().saturating_sub(40_000);
        let out = dir.path().join("out.onnx");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..300 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + i % 3 {
                let r = next();
                let at = if i % 10 == 0 {
                    (r % bytes.len() as u64) as usize
                } else {
                    tables_start + (r % (bytes.len() - tables_start) as u64) as usize
                };
                damaged[at] ^= (r >> 32) as u8 | 1;
            }
            let name = format!("flipped_{i}.tflite");
            let path = dir.path().join(&name);
            std::fs::write(&path, &damaged).unwrap();
            if let Err(e) = convert_file(&path, &out) {
                assert!(e.to_string().contains(&name), "{e}");
            }
        }
    }

    #[test]
    fn same_padding_matches_tflite() {
        // 128 → 64 with a 5×5 kernel, stride 2: total 3, the extra one at the end.
        assert_eq!(same_or_valid_pads(Padding::Same, 128, 5, 2, 1), (1, 2));
        // 3×3 stride 1 keeps the size with one on each side.
        assert_eq!(same_or_valid_pads(Padding::Same, 16, 3, 1, 1), (1, 1));
        // 2×2 stride 2 on an even size needs none.
        assert_eq!(same_or_valid_pads(Padding::Same, 64, 2, 2, 1), (0, 0));
        // Dilation widens the kernel: 3×3 dilated by 2 acts as 5×5.
        assert_eq!(same_or_valid_pads(Padding::Same, 10, 3, 1, 2), (2, 2));
        assert_eq!(same_or_valid_pads(Padding::Valid, 128, 5, 2, 1), (0, 0));
    }
}
