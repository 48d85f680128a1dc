//! Reads TensorFlow Lite model files (`.tflite`) into plain owned values, through the generated
//! and verified FlatBuffer schema of [`tract_tflite::tflite`](mod@tract_tflite::tflite).
//!
//! [`tract_tflite::tflite::root_as_model`] runs the FlatBuffers verifier over the whole file
//! before anything is read: every offset, vtable, vector length, string (UTF-8, zero-terminated)
//! and union of every table the schema knows is checked against the file's size and alignment,
//! and hostile nesting or sharing is cut off by its depth, table-count and size limits. So a
//! damaged, truncated or hostile file is a [`ReadError`] saying what is wrong and where
//! (`subgraphs[0].tensors[12].name: …`), never a panic or an out-of-bounds read. On top of that
//! this layer checks what the schema cannot express: the file identifier, every tensor, buffer
//! and operator-code index, and (when values are read) that a tensor's bytes fill its shape.
//!
//! It gives what the other two TFLite modules need — the model's subgraphs, their tensors
//! (shape, type, buffer, name, per-channel quantization), operators (opcode, inputs, outputs,
//! the builtin options of the common convolution/pooling/elementwise ops) and the raw buffers —
//! and the tensors' values as real numbers or integers. [`init`] loads ImageNet MobileNetV2
//! weights from it (`--init`), [`onnx`] converts float detectors to ONNX
//! (`agecam-host convert-detector`).

pub mod init;
pub mod onnx;

use flatbuffers::{ErrorTraceDetail, InvalidFlatbuffer};
use std::fmt::Write as _;
use std::path::Path;
use tract_tflite::tflite as schema;

/// What is wrong with a file, and where in the model it was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

type Result<T> = std::result::Result<T, ReadError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(ReadError(message.into()))
}

/// Prefixes an error with where it happened (`subgraph 0, tensor 12: …`).
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| ReadError(format!("{}: {}", what(), e.0)))
    }
}

// ---------------------------------------------------------------------------------------------
// The model, as owned values
// ---------------------------------------------------------------------------------------------

/// Element type of a tensor (`TensorType` in the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    Float32,
    Float16,
    Int32,
    UInt8,
    Int64,
    String,
    Bool,
    Int16,
    Int8,
    Float64,
    /// A type this reader does not name, with its schema number.
    Other(i8),
}

impl TensorType {
    fn from_schema(t: schema::TensorType) -> TensorType {
        match t {
            schema::TensorType::FLOAT32 => TensorType::Float32,
            schema::TensorType::FLOAT16 => TensorType::Float16,
            schema::TensorType::INT32 => TensorType::Int32,
            schema::TensorType::UINT8 => TensorType::UInt8,
            schema::TensorType::INT64 => TensorType::Int64,
            schema::TensorType::STRING => TensorType::String,
            schema::TensorType::BOOL => TensorType::Bool,
            schema::TensorType::INT16 => TensorType::Int16,
            schema::TensorType::INT8 => TensorType::Int8,
            schema::TensorType::FLOAT64 => TensorType::Float64,
            other => TensorType::Other(other.0),
        }
    }

    /// Bytes per element, for the fixed-size types.
    pub fn size(self) -> Option<usize> {
        match self {
            TensorType::UInt8 | TensorType::Int8 | TensorType::Bool => Some(1),
            TensorType::Float16 | TensorType::Int16 => Some(2),
            TensorType::Float32 | TensorType::Int32 => Some(4),
            TensorType::Int64 | TensorType::Float64 => Some(8),
            TensorType::String | TensorType::Other(_) => None,
        }
    }
}

/// Affine quantization: real = scale × (q − zero_point), per tensor (one scale) or per channel
/// along `quantized_dimension`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quantization {
    pub min: Vec<f32>,
    pub max: Vec<f32>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub quantized_dimension: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i32>,
    pub dtype: TensorType,
    /// Index into [`Model::buffers`]; buffer 0 is the empty sentinel.
    pub buffer: usize,
    /// `None` when the file has no scales for this tensor.
    pub quantization: Option<Quantization>,
    pub is_variable: bool,
}

impl Tensor {
    /// Number of elements (1 for a scalar); `None` when a dimension is unknown (−1).
    pub fn element_count(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        })
    }
}

/// Builtin operators. The ones agecam's tools look at are named; the rest keep their schema
/// number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Add,
    AveragePool2d,
    Concatenation,
    Conv2d,
    DepthwiseConv2d,
    Dequantize,
    FullyConnected,
    Logistic,
    MaxPool2d,
    Mul,
    Relu,
    Relu6,
    Reshape,
    ResizeBilinear,
    Softmax,
    Pad,
    Mean,
    Squeeze,
    Quantize,
    Custom,
    Other(i32),
}

impl Builtin {
    fn from_schema(op: schema::BuiltinOperator) -> Builtin {
        use schema::BuiltinOperator as B;
        match op {
            B::ADD => Builtin::Add,
            B::AVERAGE_POOL_2D => Builtin::AveragePool2d,
            B::CONCATENATION => Builtin::Concatenation,
            B::CONV_2D => Builtin::Conv2d,
            B::DEPTHWISE_CONV_2D => Builtin::DepthwiseConv2d,
            B::DEQUANTIZE => Builtin::Dequantize,
            B::FULLY_CONNECTED => Builtin::FullyConnected,
            B::LOGISTIC => Builtin::Logistic,
            B::MAX_POOL_2D => Builtin::MaxPool2d,
            B::MUL => Builtin::Mul,
            B::RELU => Builtin::Relu,
            B::RELU6 => Builtin::Relu6,
            B::RESHAPE => Builtin::Reshape,
            B::RESIZE_BILINEAR => Builtin::ResizeBilinear,
            B::SOFTMAX => Builtin::Softmax,
            B::CUSTOM => Builtin::Custom,
            B::PAD => Builtin::Pad,
            B::MEAN => Builtin::Mean,
            B::SQUEEZE => Builtin::Squeeze,
            B::QUANTIZE => Builtin::Quantize,
            other => Builtin::Other(other.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OperatorCode {
    pub builtin: Builtin,
    /// Name of a custom operator (`builtin` is then [`Builtin::Custom`]).
    pub custom: Option<String>,
    pub version: i32,
}

/// `Padding` in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Same,
    Valid,
}

impl Padding {
    fn from_schema(p: schema::Padding) -> Result<Padding> {
        match p {
            schema::Padding::SAME => Ok(Padding::Same),
            schema::Padding::VALID => Ok(Padding::Valid),
            other => err(format!("unknown padding {}", other.0)),
        }
    }
}

/// `ActivationFunctionType` in the schema: an activation fused into the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    ReluN1To1,
    Relu6,
    Tanh,
    SignBit,
    Other(i8),
}

impl Activation {
    fn from_schema(a: schema::ActivationFunctionType) -> Activation {
        use schema::ActivationFunctionType as A;
        match a {
            A::NONE => Activation::None,
            A::RELU => Activation::Relu,
            A::RELU_N1_TO_1 => Activation::ReluN1To1,
            A::RELU6 => Activation::Relu6,
            A::TANH => Activation::Tanh,
            A::SIGN_BIT => Activation::SignBit,
            other => Activation::Other(other.0),
        }
    }
}

/// The builtin options of the operators agecam's tools convert; others are kept as their
/// union type number.
#[derive(Debug, Clone, PartialEq)]
pub enum Options {
    None,
    Conv2d {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        activation: Activation,
        dilation_w: i32,
        dilation_h: i32,
    },
    DepthwiseConv2d {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        depth_multiplier: i32,
        activation: Activation,
        dilation_w: i32,
        dilation_h: i32,
    },
    Pool2d {
        padding: Padding,
        stride_w: i32,
        stride_h: i32,
        filter_w: i32,
        filter_h: i32,
        activation: Activation,
    },
    FullyConnected {
        activation: Activation,
        keep_num_dims: bool,
    },
    Softmax {
        beta: f32,
    },
    Concatenation {
        axis: i32,
        activation: Activation,
    },
    Add {
        activation: Activation,
    },
    Mul {
        activation: Activation,
    },
    Reshape {
        new_shape: Vec<i32>,
    },
    /// How output pixels map to input pixels (neither flag: `in = out · scale`).
    ResizeBilinear {
        align_corners: bool,
        half_pixel_centers: bool,
    },
    /// Options of another type (its `BuiltinOptions` union number).
    Other(u8),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Index into [`Model::operator_codes`] (checked when the file is read).
    pub opcode_index: usize,
    /// Tensor indices; −1 marks an omitted optional input.
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: Options,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subgraph {
    pub name: String,
    pub tensors: Vec<Tensor>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub operators: Vec<Operator>,
}

impl Subgraph {
    /// The tensor with index `index`, or an error naming the index (used for operator inputs).
    pub fn tensor(&self, index: i32) -> Result<&Tensor> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.tensors.get(i))
            .ok_or_else(|| {
                ReadError(format!(
                    "tensor index {index} is out of range (the subgraph has {} tensors)",
                    self.tensors.len()
                ))
            })
    }
}

/// A whole `.tflite` file, read into owned values.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub version: u32,
    pub description: String,
    pub operator_codes: Vec<OperatorCode>,
    pub subgraphs: Vec<Subgraph>,
    /// Raw bytes of each buffer (empty for buffer 0 and for tensors computed at run time).
    pub buffers: Vec<Vec<u8>>,
}

// ---------------------------------------------------------------------------------------------
// Reading: the verified schema into the owned values
// ---------------------------------------------------------------------------------------------

impl Model {
    /// Reads the file at `path`. The error names the file.
    pub fn read_file(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path)
            .map_err(|e| ReadError(format!("cannot read {} ({e})", path.display())))?;
        Model::parse(&bytes).context(|| format!("{} is not a valid TFLite model", path.display()))
    }

    /// Parses a `.tflite` file held in memory.
    pub fn parse(buf: &[u8]) -> Result<Model> {
        if buf.len() < 8 {
            return err(format!(
                "the file is {} bytes long, too short for a model",
                buf.len()
            ));
        }
        if !schema::model_buffer_has_identifier(buf) {
            return err(format!(
                "the file identifier is {:?}, not \"{}\"",
                String::from_utf8_lossy(&buf[4..8]),
                schema::MODEL_IDENTIFIER
            ));
        }
        let root = schema::root_as_model(buf).map_err(|e| verifier_error(&e, buf.len()))?;
        let operator_codes = root
            .operator_codes()
            .into_iter()
            .flatten()
            .map(operator_code)
            .collect::<Vec<_>>();
        let buffers = root
            .buffers()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, b)| buffer_bytes(buf, &b).context(|| format!("buffer {i}")))
            .collect::<Result<Vec<_>>>()
            .context(|| "buffers".to_string())?;
        let subgraphs = root
            .subgraphs()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, g)| {
                subgraph(&g, operator_codes.len(), buffers.len())
                    .context(|| format!("subgraph {i}"))
            })
            .collect::<Result<Vec<_>>>()
            .context(|| "subgraphs".to_string())?;
        if subgraphs.is_empty() {
            return err("the model has no subgraph");
        }
        Ok(Model {
            version: root.version(),
            description: root.description().unwrap_or_default().to_string(),
            operator_codes,
            subgraphs,
            buffers,
        })
    }
}

/// A verifier error as one line: the field where it was found (`subgraphs[0].tensors[12].name`)
/// and flatbuffers' own description of what is wrong.
fn verifier_error(e: &InvalidFlatbuffer, file_len: usize) -> ReadError {
    use InvalidFlatbuffer as E;
    let trace: &[ErrorTraceDetail] = match e {
        E::MissingRequiredField { error_trace, .. }
        | E::InconsistentUnion { error_trace, .. }
        | E::Utf8Error { error_trace, .. }
        | E::MissingNullTerminator { error_trace, .. }
        | E::Unaligned { error_trace, .. }
        | E::RangeOutOfBounds { error_trace, .. }
        | E::SignedOffsetOutOfBounds { error_trace, .. } => error_trace.as_ref(),
        E::TooManyTables | E::ApparentSizeTooLarge | E::DepthLimitReached => &[],
    };
    // The trace lists the innermost step first.
    let mut path = String::new();
    for step in trace.iter().rev() {
        let _ = match step {
            ErrorTraceDetail::TableField { field_name, .. } if path.is_empty() => {
                write!(path, "{field_name}")
            }
            ErrorTraceDetail::TableField { field_name, .. } => write!(path, ".{field_name}"),
            ErrorTraceDetail::VectorElement { index, .. } => write!(path, "[{index}]"),
            ErrorTraceDetail::UnionVariant { variant, .. } => write!(path, "<{variant}>"),
        };
    }
    let described = e.to_string();
    let what = described
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    let why = match e {
        E::TooManyTables | E::ApparentSizeTooLarge | E::DepthLimitReached => {
            "the file is damaged or hostile".to_string()
        }
        _ => format!("the file ({file_len} bytes) is truncated or damaged"),
    };
    if path.is_empty() {
        ReadError(format!("{what}: {why}"))
    } else {
        ReadError(format!("{path}: {what}: {why}"))
    }
}

fn operator_code(c: schema::OperatorCode) -> OperatorCode {
    // `builtin_code` replaced the byte-sized `deprecated_builtin_code` once there were more than
    // 127 operators; writers fill both, readers take the larger.
    let code = c.builtin_code().0.max(c.deprecated_builtin_code() as i32);
    OperatorCode {
        builtin: Builtin::from_schema(schema::BuiltinOperator(code)),
        custom: c.custom_code().map(str::to_string),
        version: c.version(),
    }
}

/// The bytes of a buffer. Models over 2 GB keep buffers after the FlatBuffer, at an offset from
/// the file's start (`Buffer.offset`, `Buffer.size`); tract's schema predates those two fields,
/// so the verifier does not know them and they are read here with checked slicing.
fn buffer_bytes(file: &[u8], b: &schema::Buffer) -> Result<Vec<u8>> {
    if let Some(data) = b.data().filter(|d| !d.is_empty()) {
        return Ok(data.bytes().to_vec());
    }
    let (offset, size) = (unknown_u64_field(b, 1)?, unknown_u64_field(b, 2)?);
    if offset <= 1 || size == 0 {
        return Ok(Vec::new());
    }
    let start = usize::try_from(offset).ok();
    let end = start.and_then(|s| usize::try_from(size).ok().and_then(|n| s.checked_add(n)));
    match (start, end) {
        (Some(start), Some(end)) if end <= file.len() => Ok(file[start..end].to_vec()),
        _ => err(format!(
            "its {size} bytes at offset {offset} lie past the end of the file ({} bytes)",
            file.len()
        )),
    }
}

/// A `ulong` field (number `field`) of a buffer table that the generated schema does not have.
/// The verifier checked the table's field table (vtable), so reading a slot of it is safe; the
/// value's 8 bytes are bounds-checked here. 0 when the field is absent (its default).
fn unknown_u64_field(b: &schema::Buffer, field: u16) -> Result<u64> {
    let table = &b._tab;
    let slot = table.vtable().get(4 + 2 * field);
    if slot == 0 {
        return Ok(0);
    }
    let at = table.loc() + slot as usize;
    match table.buf().get(at..at + 8) {
        Some(bytes) => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            Ok(u64::from_le_bytes(raw))
        }
        None => err(format!(
            "field {field} at byte {at} lies past the end of the file ({} bytes)",
            table.buf().len()
        )),
    }
}

fn subgraph(g: &schema::SubGraph, operator_codes: usize, buffers: usize) -> Result<Subgraph> {
    let tensors = g
        .tensors()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| tensor(&t, buffers).context(|| format!("tensor {i}")))
        .collect::<Result<Vec<_>>>()?;
    let check = |what: &str, indices: &[i32], optional: bool| -> Result<()> {
        for &i in indices {
            let ok = (optional && i == -1) || (i >= 0 && (i as usize) < tensors.len());
            if !ok {
                return err(format!(
                    "{what} names tensor {i}, but the subgraph has {} tensors",
                    tensors.len()
                ));
            }
        }
        Ok(())
    };
    let inputs = ints(g.inputs());
    let outputs = ints(g.outputs());
    check("the input list", &inputs, false)?;
    check("the output list", &outputs, false)?;
    let operators = g
        .operators()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, op)| {
            let op = operator(&op).context(|| format!("operator {i}"))?;
            if op.opcode_index >= operator_codes {
                return err(format!(
                    "operator {i} uses operator code {} but the model has {operator_codes}",
                    op.opcode_index
                ));
            }
            check(&format!("operator {i}'s inputs"), &op.inputs, true)?;
            check(&format!("operator {i}'s outputs"), &op.outputs, false)?;
            Ok(op)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Subgraph {
        name: g.name().unwrap_or_default().to_string(),
        tensors,
        inputs,
        outputs,
        operators,
    })
}

fn ints(v: Option<flatbuffers::Vector<'_, i32>>) -> Vec<i32> {
    v.map(|v| v.iter().collect()).unwrap_or_default()
}

fn tensor(t: &schema::Tensor, buffers: usize) -> Result<Tensor> {
    let buffer = t.buffer() as usize;
    if buffer >= buffers.max(1) {
        return err(format!(
            "it uses buffer {buffer} but the model has {buffers} buffers"
        ));
    }
    let quantization = match t.quantization() {
        Some(q) => {
            let quantization = Quantization {
                min: q.min().map(|v| v.iter().collect()).unwrap_or_default(),
                max: q.max().map(|v| v.iter().collect()).unwrap_or_default(),
                scale: q.scale().map(|v| v.iter().collect()).unwrap_or_default(),
                zero_point: q
                    .zero_point()
                    .map(|v| v.iter().collect())
                    .unwrap_or_default(),
                quantized_dimension: usize::try_from(q.quantized_dimension())
                    .map_err(|_| ReadError("negative quantized dimension".to_string()))?,
            };
            (!quantization.scale.is_empty()).then_some(quantization)
        }
        None => None,
    };
    Ok(Tensor {
        shape: ints(t.shape()),
        dtype: TensorType::from_schema(t.type_()),
        buffer,
        name: t.name().unwrap_or_default().to_string(),
        quantization,
        is_variable: t.is_variable(),
    })
}

fn operator(op: &schema::Operator) -> Result<Operator> {
    let kind = op.builtin_options_type();
    let options = options(op).context(|| format!("options (type {})", kind.0))?;
    Ok(Operator {
        opcode_index: op.opcode_index() as usize,
        inputs: ints(op.inputs()),
        outputs: ints(op.outputs()),
        options,
    })
}

/// The builtin options of `op` that agecam's tools use. Each `builtin_options_as_…` accessor is
/// `Some` exactly when the union holds that type, whose table the verifier checked. The generic
/// `builtin_options()` is never called: for a union type the schema does not know, the verifier
/// cannot check the table, so it is not followed.
fn options(op: &schema::Operator) -> Result<Options> {
    let act = Activation::from_schema;
    if let Some(o) = op.builtin_options_as_conv_2_doptions() {
        return Ok(Options::Conv2d {
            padding: Padding::from_schema(o.padding())?,
            stride_w: o.stride_w(),
            stride_h: o.stride_h(),
            activation: act(o.fused_activation_function()),
            dilation_w: o.dilation_w_factor(),
            dilation_h: o.dilation_h_factor(),
        });
    }
    if let Some(o) = op.builtin_options_as_depthwise_conv_2_doptions() {
        return Ok(Options::DepthwiseConv2d {
            padding: Padding::from_schema(o.padding())?,
            stride_w: o.stride_w(),
            stride_h: o.stride_h(),
            depth_multiplier: o.depth_multiplier(),
            activation: act(o.fused_activation_function()),
            dilation_w: o.dilation_w_factor(),
            dilation_h: o.dilation_h_factor(),
        });
    }
    if let Some(o) = op.builtin_options_as_pool_2_doptions() {
        return Ok(Options::Pool2d {
            padding: Padding::from_schema(o.padding())?,
            stride_w: o.stride_w(),
            stride_h: o.stride_h(),
            filter_w: o.filter_width(),
            filter_h: o.filter_height(),
            activation: act(o.fused_activation_function()),
        });
    }
    if let Some(o) = op.builtin_options_as_fully_connected_options() {
        return Ok(Options::FullyConnected {
            activation: act(o.fused_activation_function()),
            keep_num_dims: o.keep_num_dims(),
        });
    }
    if let Some(o) = op.builtin_options_as_softmax_options() {
        return Ok(Options::Softmax { beta: o.beta() });
    }
    if let Some(o) = op.builtin_options_as_concatenation_options() {
        return Ok(Options::Concatenation {
            axis: o.axis(),
            activation: act(o.fused_activation_function()),
        });
    }
    if let Some(o) = op.builtin_options_as_add_options() {
        return Ok(Options::Add {
            activation: act(o.fused_activation_function()),
        });
    }
    if let Some(o) = op.builtin_options_as_mul_options() {
        return Ok(Options::Mul {
            activation: act(o.fused_activation_function()),
        });
    }
    if let Some(o) = op.builtin_options_as_reshape_options() {
        return Ok(Options::Reshape {
            new_shape: ints(o.new_shape()),
        });
    }
    if let Some(o) = op.builtin_options_as_resize_bilinear_options() {
        return Ok(Options::ResizeBilinear {
            align_corners: o.align_corners(),
            half_pixel_centers: o.half_pixel_centers(),
        });
    }
    // The verifier made sure a type other than NONE comes with its table.
    Ok(match op.builtin_options_type() {
        schema::BuiltinOptions::NONE => Options::None,
        other => Options::Other(other.0),
    })
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

impl Model {
    /// The builtin operator of `op` (its opcode index was checked when the file was read).
    pub fn builtin(&self, op: &Operator) -> Builtin {
        self.operator_codes[op.opcode_index].builtin
    }

    /// The bytes stored for `tensor`, `None` when it has none (an input or an activation).
    pub fn data(&self, tensor: &Tensor) -> Option<&[u8]> {
        self.buffers
            .get(tensor.buffer)
            .map(Vec::as_slice)
            .filter(|d| !d.is_empty())
    }

    /// The stored bytes of `tensor`, checked to hold exactly one value per element.
    fn checked_data(&self, tensor: &Tensor) -> Result<Option<&[u8]>> {
        let Some(data) = self.data(tensor) else {
            return Ok(None);
        };
        let size = tensor.dtype.size().ok_or_else(|| {
            ReadError(format!(
                "tensor `{}` has type {:?}, which has no fixed size",
                tensor.name, tensor.dtype
            ))
        })?;
        let count = tensor.element_count().ok_or_else(|| {
            ReadError(format!(
                "tensor `{}` holds data but its shape {:?} is not fully known",
                tensor.name, tensor.shape
            ))
        })?;
        if count.checked_mul(size) != Some(data.len()) {
            return err(format!(
                "tensor `{}` of shape {:?} and type {:?} needs {} bytes but its buffer has {}",
                tensor.name,
                tensor.shape,
                tensor.dtype,
                count.saturating_mul(size),
                data.len()
            ));
        }
        Ok(Some(data))
    }

    /// The stored values of `tensor` as real numbers: float32 as is, float16 widened, integer
    /// types dequantized with the tensor's scale and zero point (per channel where it has
    /// several). `Ok(None)` when the tensor stores no data.
    pub fn values_f32(&self, tensor: &Tensor) -> Result<Option<Vec<f32>>> {
        let Some(data) = self.checked_data(tensor)? else {
            return Ok(None);
        };
        let raw: Vec<f64> = match tensor.dtype {
            TensorType::Float32 => {
                return Ok(Some(
                    data.as_chunks::<4>()
                        .0
                        .iter()
                        .map(|&b| f32::from_le_bytes(b))
                        .collect(),
                ));
            }
            TensorType::Float16 => {
                return Ok(Some(
                    data.as_chunks::<2>()
                        .0
                        .iter()
                        .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                        .collect(),
                ));
            }
            TensorType::Float64 => {
                return Ok(Some(
                    data.as_chunks::<8>()
                        .0
                        .iter()
                        .map(|&b| f64::from_le_bytes(b) as f32)
                        .collect(),
                ));
            }
            TensorType::Int8 => data.iter().map(|&b| b as i8 as f64).collect(),
            TensorType::UInt8 => data.iter().map(|&b| b as f64).collect(),
            TensorType::Int16 => data
                .as_chunks::<2>()
                .0
                .iter()
                .map(|&b| i16::from_le_bytes(b) as f64)
                .collect(),
            TensorType::Int32 => data
                .as_chunks::<4>()
                .0
                .iter()
                .map(|&b| i32::from_le_bytes(b) as f64)
                .collect(),
            TensorType::Int64 => data
                .as_chunks::<8>()
                .0
                .iter()
                .map(|&b| i64::from_le_bytes(b) as f64)
                .collect(),
            other => {
                return err(format!(
                    "tensor `{}` has type {other:?}, which has no real-number value",
                    tensor.name
                ))
            }
        };
        let Some(q) = tensor.quantization.as_ref().filter(|q| !q.scale.is_empty()) else {
            return err(format!(
                "tensor `{}` is {:?} without quantization scales, so its real values are unknown",
                tensor.name, tensor.dtype
            ));
        };
        let channel_of = channel_index(tensor, q)?;
        Ok(Some(
            raw.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = channel_of(i);
                    let zero = q.zero_point.get(c).copied().unwrap_or(0) as f64;
                    (q.scale[c] as f64 * (v - zero)) as f32
                })
                .collect(),
        ))
    }

    /// The stored values of an integer tensor (int8/16/32/64, uint8) as they are, without
    /// dequantizing; used for shapes, paddings and axes. `Ok(None)` when it stores no data.
    pub fn values_i64(&self, tensor: &Tensor) -> Result<Option<Vec<i64>>> {
        let Some(data) = self.checked_data(tensor)? else {
            return Ok(None);
        };
        Ok(Some(match tensor.dtype {
            TensorType::Int8 => data.iter().map(|&b| b as i8 as i64).collect(),
            TensorType::UInt8 => data.iter().map(|&b| b as i64).collect(),
            TensorType::Int16 => data
                .as_chunks::<2>()
                .0
                .iter()
                .map(|&b| i16::from_le_bytes(b) as i64)
                .collect(),
            TensorType::Int32 => data
                .as_chunks::<4>()
                .0
                .iter()
                .map(|&b| i32::from_le_bytes(b) as i64)
                .collect(),
            TensorType::Int64 => data
                .as_chunks::<8>()
                .0
                .iter()
                .map(|&b| i64::from_le_bytes(b))
                .collect(),
            other => {
                return err(format!(
                    "tensor `{}` has type {other:?}, not an integer type",
                    tensor.name
                ))
            }
        }))
    }
}

/// For per-channel quantization, maps a flat element index to its channel; checks the scale
/// count against the shape.
fn channel_index(tensor: &Tensor, q: &Quantization) -> Result<Box<dyn Fn(usize) -> usize>> {
    let channels = q.scale.len();
    if !q.zero_point.is_empty() && q.zero_point.len() != channels {
        return err(format!(
            "tensor `{}` has {} scales but {} zero points",
            tensor.name,
            channels,
            q.zero_point.len()
        ));
    }
    if channels == 1 {
        return Ok(Box::new(|_| 0));
    }
    let dim = q.quantized_dimension;
    let Some(&extent) = tensor.shape.get(dim) else {
        return err(format!(
            "tensor `{}` is quantized along dimension {dim} but has only {} dimensions",
            tensor.name,
            tensor.shape.len()
        ));
    };
    if extent as usize != channels {
        return err(format!(
            "tensor `{}` has {channels} scales but dimension {dim} has size {extent}",
            tensor.name
        ));
    }
    let inner: usize = tensor.shape[dim + 1..]
        .iter()
        .map(|&d| d.max(1) as usize)
        .product();
    Ok(Box::new(move |i| (i / inner) % channels))
}

/// IEEE 754 half precision to single precision, exactly (subnormals, infinities, NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m × 2^−24; normalise it.
            let shift = m.leading_zeros() - 21; // bring the top set bit to bit 10
            let m = (m << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn blazeface_bytes() -> Vec<u8> {
        let path =
            crate::test_repo().join("tests/data/blazeface/face_detection_short_range.tflite");
        std::fs::read(path).unwrap()
    }

    fn op_histogram(model: &Model) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for op in &model.subgraphs[0].operators {
            *counts
                .entry(format!("{:?}", model.builtin(op)))
                .or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn half_floats_widen_exactly() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(f16_to_f32(0x8200), -(2f32.powi(-15)));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert!(f16_to_f32(0x8000).is_sign_negative());
    }

    #[test]
    fn reads_the_blazeface_model() {
        let model = Model::parse(&blazeface_bytes()).unwrap();
        assert_eq!(model.version, 3);
        assert_eq!(model.subgraphs.len(), 1);
        let g = &model.subgraphs[0];
        assert_eq!(g.tensors.len(), 250);
        let expected: BTreeMap<String, usize> = [
            ("Add", 16),
            ("Concatenation", 2),
            ("Conv2d", 21),
            ("DepthwiseConv2d", 16),
            ("Dequantize", 74),
            ("MaxPool2d", 3),
            ("Pad", 11),
            ("Relu", 17),
            ("Reshape", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(op_histogram(&model), expected);

        let input = g.tensor(g.inputs[0]).unwrap();
        assert_eq!(
            (input.name.as_str(), input.shape.as_slice()),
            ("input", &[1, 128, 128, 3][..])
        );
        assert_eq!(input.dtype, TensorType::Float32);
        let names: Vec<&str> = g
            .outputs
            .iter()
            .map(|&o| g.tensor(o).unwrap().name.as_str())
            .collect();
        assert_eq!(names, ["regressors", "classificators"]);

        // The first op widens a float16 bias for the first convolution (5×5, stride 2, SAME).
        let first_conv = g
            .operators
            .iter()
            .find(|op| model.builtin(op) == Builtin::Conv2d)
            .unwrap();
        assert_eq!(
            first_conv.options,
            Options::Conv2d {
                padding: Padding::Same,
                stride_w: 2,
                stride_h: 2,
                activation: Activation::None,
                dilation_w: 1,
                dilation_h: 1,
            }
        );
        let dequantize = &g.operators[0];
        assert_eq!(model.builtin(dequantize), Builtin::Dequantize);
        let half = g.tensor(dequantize.inputs[0]).unwrap();
        assert_eq!(half.dtype, TensorType::Float16);
        let values = model.values_f32(half).unwrap().unwrap();
        assert_eq!(values.len(), half.element_count().unwrap());
        assert!(values.iter().all(|v| v.is_finite() && v.abs() < 100.0));
        // An activation stores nothing.
        assert_eq!(model.values_f32(input).unwrap(), None);
    }

    /// The int8-era ImageNet MobileNetV2 from shared/ (uint8 weights, per-tensor scales). It is
    /// not part of the repository, so the test says so and passes when the file is absent.
    #[test]
    fn reads_quantized_mobilenet_v2_when_present() {
        let path: PathBuf =
            crate::test_repo().join("../shared/data/pretrained/mobilenet_v2_1.0_224_quant.tflite");
        if !path.exists() {
            eprintln!(
                "skipping: {} is absent (it lives in the shared data folder, not in the repository)",
                path.display()
            );
            return;
        }
        let model = Model::read_file(&path).unwrap();
        let counts = op_histogram(&model);
        assert_eq!(counts["Conv2d"], 36);
        assert_eq!(counts["DepthwiseConv2d"], 17);
        assert_eq!(counts["Add"], 10);
        assert_eq!(counts["AveragePool2d"], 1);
        assert_eq!(counts["Softmax"], 1);
        let g = &model.subgraphs[0];
        let input = g.tensor(g.inputs[0]).unwrap();
        assert_eq!(input.dtype, TensorType::UInt8);
        let q = input.quantization.as_ref().unwrap();
        assert_eq!(
            (q.scale.as_slice(), q.zero_point.as_slice()),
            (&[0.0078125f32][..], &[128i64][..])
        );

        // First convolution: 32×3×3×3 uint8 weights, scale 0.03396892…, zero point 122, raw
        // values 107, 97, 113 … and int32 bias 8516, 10897 … (checked with TFLite's interpreter).
        let conv = &g.operators[0];
        assert_eq!(model.builtin(conv), Builtin::Conv2d);
        let w = g.tensor(conv.inputs[1]).unwrap();
        assert_eq!(
            (w.shape.as_slice(), w.dtype),
            (&[32, 3, 3, 3][..], TensorType::UInt8)
        );
        assert_eq!(&model.values_i64(w).unwrap().unwrap()[..3], &[107, 97, 113]);
        let scale = 0.033_968_925_f32;
        let real = model.values_f32(w).unwrap().unwrap();
        assert!(
            (real[0] - scale * (107.0 - 122.0)).abs() < 1e-6,
            "{}",
            real[0]
        );
        let b = g.tensor(conv.inputs[2]).unwrap();
        assert_eq!(b.dtype, TensorType::Int32);
        assert_eq!(&model.values_i64(b).unwrap().unwrap()[..2], &[8516, 10897]);
        let bias = model.values_f32(b).unwrap().unwrap();
        assert!((bias[0] - 8516.0 * 0.000_265_382_23).abs() < 1e-6);
    }

    #[test]
    fn per_channel_scales_follow_the_quantized_dimension() {
        let tensor = Tensor {
            name: "w".into(),
            shape: vec![2, 3],
            dtype: TensorType::Int8,
            buffer: 1,
            quantization: Some(Quantization {
                scale: vec![0.5, 2.0],
                zero_point: vec![0, 1],
                quantized_dimension: 0,
                ..Default::default()
            }),
            is_variable: false,
        };
        let model = Model {
            version: 3,
            description: String::new(),
            operator_codes: vec![],
            subgraphs: vec![],
            buffers: vec![vec![], vec![2, 4, 6, 1, 2, 255]],
        };
        assert_eq!(
            model.values_f32(&tensor).unwrap().unwrap(),
            [1.0, 2.0, 3.0, 0.0, 2.0, -4.0]
        );
        let mut wrong = tensor.clone();
        wrong.quantization.as_mut().unwrap().quantized_dimension = 1;
        assert!(model.values_f32(&wrong).is_err(), "2 scales for 3 columns");
        let mut short = tensor;
        short.shape = vec![2, 2];
        let err = model.values_f32(&short).unwrap_err().to_string();
        assert!(err.contains("needs 4 bytes but its buffer has 6"), "{err}");
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let bytes = blazeface_bytes();
        assert!(Model::parse(&[]).is_err());
        let err = Model::parse(b"12345678rest").unwrap_err().to_string();
        assert!(err.contains("TFL3"), "{err}");
        // Every truncation point in the FlatBuffer's tables (the tail past the weights) and a
        // sample of the rest.
        let tables_start = bytes.len().saturating_sub(40_000);
        for cut in (0..tables_start)
            .step_by(997)
            .chain(tables_start..bytes.len())
        {
            assert!(Model::parse(&bytes[..cut]).is_err(), "cut at {cut} parsed");
        }
        // Flipped bytes may still parse (a weight changed), but must never panic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut damaged = bytes.clone();
            let at = (state % bytes.len() as u64) as usize;
            damaged[at] ^= (state >> 32) as u8 | 1;
            let _ = Model::parse(&damaged);
        }
    }

    /// A damaged file on disk: the error names the file, and a cut file never parses.
    #[test]
    fn damaged_files_on_disk_are_errors_naming_the_file() {
        let bytes = blazeface_bytes();
        let dir = tempfile::tempdir().unwrap();
        let tables_start = bytes.len().saturating_sub(40_000);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..200 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mostly in the FlatBuffer's tables, where damage matters, some in the weights.
            let at = if i % 4 == 0 {
                (state % bytes.len() as u64) as usize
            } else {
                tables_start + (state % (bytes.len() - tables_start) as u64) as usize
            };
            let (name, damaged) = if i % 2 == 0 {
                (format!("cut_{i}.tflite"), bytes[..at].to_vec())
            } else {
                let mut flipped = bytes.clone();
                flipped[at] ^= (state >> 32) as u8 | 1;
                (format!("flipped_{i}.tflite"), flipped)
            };
            let path = dir.path().join(&name);
            std::fs::write(&path, &damaged).unwrap();
            match Model::read_file(&path) {
                Ok(_) => assert!(i % 2 == 1, "{name} (cut at {at}) parsed"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(&name) && e.contains("not a valid TFLite model"),
                        "{e}"
                    );
                }
            }
        }
        let err = Model::read_file(&dir.path().join("absent.tflite"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read") && err.contains("absent.tflite"),
            "{err}"
        );
    }

    /// What [`tiny_model`] writes.
    #[derive(Clone)]
    struct Tiny {
        /// Inputs of its one CONV_2D operator.
        op_inputs: Vec<i32>,
        opcode_index: u32,
        /// The buffer the weight tensor (tensor 1) uses.
        weight_buffer: u32,
        /// Buffer 1 as `(offset, size)` of bytes after the FlatBuffer (the layout of models over
        /// 2 GB) instead of inline data.
        external: Option<(u64, u64)>,
        subgraph_name: &'static str,
    }

    impl Default for Tiny {
        fn default() -> Tiny {
            Tiny {
                op_inputs: vec![0, 1],
                opcode_index: 0,
                weight_buffer: 1,
                external: None,
                subgraph_name: "main",
            }
        }
    }

    /// A model written with the schema's own builder: float32 input tensor 0 `[1, 2, 2, 1]` →
    /// CONV_2D (VALID, stride 1) with the 1×1 weight tensor 1 (2.5 in buffer 1) → tensor 2.
    fn tiny_model(spec: &Tiny) -> Vec<u8> {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let b0 = schema::Buffer::create(&mut fbb, &Default::default());
        let b1 = match spec.external {
            None => {
                let data = fbb.create_vector(&2.5f32.to_le_bytes());
                schema::Buffer::create(&mut fbb, &schema::BufferArgs { data: Some(data) })
            }
            Some((offset, size)) => {
                // `Buffer.offset` and `Buffer.size` (fields 1 and 2) are not in tract's schema.
                let start = fbb.start_table();
                fbb.push_slot::<u64>(6, offset, 0);
                fbb.push_slot::<u64>(8, size, 0);
                flatbuffers::WIPOffset::new(fbb.end_table(start).value())
            }
        };
        let buffers = fbb.create_vector(&[b0, b1]);
        let specs = [
            ("input", 0, [1, 2, 2, 1]),
            ("w", spec.weight_buffer, [1, 1, 1, 1]),
            ("output", 0, [1, 2, 2, 1]),
        ];
        let tensors: Vec<_> = specs
            .iter()
            .map(|&(name, buffer, shape)| {
                let name = fbb.create_string(name);
                let shape = fbb.create_vector(&shape);
                schema::Tensor::create(
                    &mut fbb,
                    &schema::TensorArgs {
                        name: Some(name),
                        shape: Some(shape),
                        buffer,
                        type_: schema::TensorType::FLOAT32,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let tensors = fbb.create_vector(&tensors);
        let options = schema::Conv2DOptions::create(
            &mut fbb,
            &schema::Conv2DOptionsArgs {
                padding: schema::Padding::VALID,
                stride_w: 1,
                stride_h: 1,
                fused_activation_function: schema::ActivationFunctionType::RELU6,
                dilation_w_factor: 1,
                dilation_h_factor: 1,
            },
        );
        let inputs = fbb.create_vector(&spec.op_inputs);
        let outputs = fbb.create_vector(&[2]);
        let op = schema::Operator::create(
            &mut fbb,
            &schema::OperatorArgs {
                opcode_index: spec.opcode_index,
                inputs: Some(inputs),
                outputs: Some(outputs),
                builtin_options_type: schema::BuiltinOptions::Conv2DOptions,
                builtin_options: Some(options.as_union_value()),
                ..Default::default()
            },
        );
        let operators = fbb.create_vector(&[op]);
        let graph_inputs = fbb.create_vector(&[0]);
        let graph_outputs = fbb.create_vector(&[2]);
        let name = fbb.create_string(spec.subgraph_name);
        let graph = schema::SubGraph::create(
            &mut fbb,
            &schema::SubGraphArgs {
                tensors: Some(tensors),
                inputs: Some(graph_inputs),
                outputs: Some(graph_outputs),
                operators: Some(operators),
                name: Some(name),
            },
        );
        let subgraphs = fbb.create_vector(&[graph]);
        let code = schema::OperatorCode::create(
            &mut fbb,
            &schema::OperatorCodeArgs {
                deprecated_builtin_code: 3,
                builtin_code: schema::BuiltinOperator::CONV_2D,
                version: 1,
                custom_code: None,
            },
        );
        let codes = fbb.create_vector(&[code]);
        let description = fbb.create_string("tiny");
        let model = schema::Model::create(
            &mut fbb,
            &schema::ModelArgs {
                version: 3,
                operator_codes: Some(codes),
                subgraphs: Some(subgraphs),
                description: Some(description),
                buffers: Some(buffers),
                ..Default::default()
            },
        );
        schema::finish_model_buffer(&mut fbb, model);
        fbb.finished_data().to_vec()
    }

    #[test]
    fn reads_a_model_written_by_the_schema_builder() {
        let model = Model::parse(&tiny_model(&Tiny::default())).unwrap();
        assert_eq!((model.version, model.description.as_str()), (3, "tiny"));
        let g = &model.subgraphs[0];
        assert_eq!(g.name, "main");
        let op = &g.operators[0];
        assert_eq!(model.builtin(op), Builtin::Conv2d);
        assert_eq!(
            op.options,
            Options::Conv2d {
                padding: Padding::Valid,
                stride_w: 1,
                stride_h: 1,
                activation: Activation::Relu6,
                dilation_w: 1,
                dilation_h: 1,
            }
        );
        let w = g.tensor(op.inputs[1]).unwrap();
        assert_eq!(model.values_f32(w).unwrap(), Some(vec![2.5]));
    }

    /// Models over 2 GB keep their buffers after the FlatBuffer; the reader takes them from
    /// there, and says so when they are not.
    #[test]
    fn buffers_after_the_flatbuffer_are_read_from_the_file() {
        let mut bytes = tiny_model(&Tiny {
            external: Some((4096, 4)),
            ..Tiny::default()
        });
        assert!(bytes.len() < 4096);
        bytes.resize(4096, 0);
        bytes.extend_from_slice(&(-1.5f32).to_le_bytes());
        let model = Model::parse(&bytes).unwrap();
        let g = &model.subgraphs[0];
        let w = g.tensor(g.operators[0].inputs[1]).unwrap();
        assert_eq!(model.values_f32(w).unwrap(), Some(vec![-1.5]));

        let err = Model::parse(&bytes[..4098]).unwrap_err().to_string();
        assert!(
            err.contains("buffer 1") && err.contains("past the end of the file"),
            "{err}"
        );
    }

    /// What the schema cannot check — tensor, buffer and operator-code indices — is checked,
    /// and the error says where.
    #[test]
    fn indices_out_of_range_are_errors_naming_the_place() {
        let optional_input = Tiny {
            op_inputs: vec![0, 1, -1],
            ..Tiny::default()
        };
        assert!(Model::parse(&tiny_model(&optional_input)).is_ok());
        for (spec, expected) in [
            (
                Tiny {
                    op_inputs: vec![0, 7],
                    ..Tiny::default()
                },
                "subgraph 0: operator 0's inputs names tensor 7, but the subgraph has 3 tensors",
            ),
            (
                Tiny {
                    op_inputs: vec![-2, 1],
                    ..Tiny::default()
                },
                "operator 0's inputs names tensor -2",
            ),
            (
                Tiny {
                    opcode_index: 1,
                    ..Tiny::default()
                },
                "operator 0 uses operator code 1 but the model has 1",
            ),
            (
                Tiny {
                    weight_buffer: 5,
                    ..Tiny::default()
                },
                "subgraph 0: tensor 1: it uses buffer 5 but the model has 2 buffers",
            ),
        ] {
            let err = Model::parse(&tiny_model(&spec)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    /// The verifier's findings name the field, as a path from the model's root.
    #[test]
    fn verifier_errors_name_the_field() {
        let mut bytes = tiny_model(&Tiny {
            subgraph_name: "sub_graph_name",
            ..Tiny::default()
        });
        let at = bytes
            .windows(14)
            .position(|w| w == b"sub_graph_name")
            .unwrap();
        bytes[at + 3] = 0xff; // not UTF-8
        let err = Model::parse(&bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("subgraphs[0].name: ") && err.contains("Utf8"),
            "{err}"
        );
        let cut = tiny_model(&Tiny::default());
        let err = Model::parse(&cut[..cut.len() - 8]).unwrap_err().to_string();
        assert!(err.contains("truncated or damaged"), "{err}");
    }
}
