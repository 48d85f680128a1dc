//! A small, bounds-checked reader for TensorFlow Lite model files (`.tflite`, a FlatBuffer of the
//! `tflite` schema, file identifier `TFL3`).
//!
//! It reads what agecam's host tools need — the model's subgraphs, their tensors (shape, type,
//! buffer, name, per-channel quantization), operators (opcode, inputs, outputs, the builtin
//! options of the common convolution/pooling/elementwise ops) and the raw buffers — into plain
//! owned Rust values. Every offset and length read from the file is checked against the file's
//! size, so a damaged or truncated file is a [`ReadError`] saying where it went wrong, never a
//! panic or an out-of-bounds read.
//!
//! Field numbers follow TensorFlow's `schema.fbs` (schema version 3).

use std::fmt;
use std::path::Path;

/// What is wrong with a file, and where in the model it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadError(pub String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

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
// FlatBuffer primitives
// ---------------------------------------------------------------------------------------------

/// A little-endian scalar stored in a FlatBuffer.
trait Scalar: Sized + Copy {
    const SIZE: usize;
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read_le(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(&bytes[..Self::SIZE]);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}
scalar!(u8, i8, u16, i32, u32, i64, u64, f32);

/// Reads a `T` at `pos`, or says the file ends first.
fn read<T: Scalar>(buf: &[u8], pos: usize) -> Result<T> {
    match pos.checked_add(T::SIZE) {
        Some(end) if end <= buf.len() => Ok(T::read_le(&buf[pos..end])),
        _ => err(format!(
            "a {}-byte value at offset {pos} lies past the end of the file ({} bytes); the file is truncated or damaged",
            T::SIZE,
            buf.len()
        )),
    }
}

/// Follows a `uoffset_t` stored at `pos` (offsets are relative to where they are stored).
fn follow(buf: &[u8], pos: usize) -> Result<usize> {
    let offset = read::<u32>(buf, pos)? as usize;
    let target = pos + offset;
    if target >= buf.len() {
        return err(format!(
            "an offset at {pos} points to {target}, past the end of the file ({} bytes); the file is truncated or damaged",
            buf.len()
        ));
    }
    Ok(target)
}

/// A table: its position and its vtable's.
#[derive(Clone, Copy)]
struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Result<Table<'a>> {
        let soffset = read::<i32>(buf, pos)? as i64;
        let vtable = pos as i64 - soffset;
        if vtable < 0 || vtable as usize >= buf.len() {
            return err(format!(
                "the table at offset {pos} has its field table at {vtable}, outside the file"
            ));
        }
        let vtable = vtable as usize;
        let vtable_len = read::<u16>(buf, vtable)? as usize;
        if vtable_len < 4 || vtable + vtable_len > buf.len() {
            return err(format!(
                "the field table at offset {vtable} has an impossible size {vtable_len}"
            ));
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Absolute position of field number `field`, `None` when it is absent (default value).
    fn field(&self, field: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * field;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let offset = read::<u16>(self.buf, self.vtable + slot)? as usize;
        Ok((offset != 0).then_some(self.pos + offset))
    }

    fn scalar<T: Scalar>(&self, field: usize, default: T) -> Result<T> {
        match self.field(field)? {
            Some(pos) => read(self.buf, pos),
            None => Ok(default),
        }
    }

    fn table(&self, field: usize) -> Result<Option<Table<'a>>> {
        match self.field(field)? {
            Some(pos) => Ok(Some(Table::at(self.buf, follow(self.buf, pos)?)?)),
            None => Ok(None),
        }
    }

    fn vector(&self, field: usize, element_size: usize) -> Result<Option<Vector<'a>>> {
        let Some(pos) = self.field(field)? else {
            return Ok(None);
        };
        let start = follow(self.buf, pos)?;
        let len = read::<u32>(self.buf, start)? as usize;
        let first = start + 4;
        let end = len
            .checked_mul(element_size)
            .and_then(|bytes| first.checked_add(bytes));
        match end {
            Some(end) if end <= self.buf.len() => Ok(Some(Vector {
                buf: self.buf,
                first,
                len,
            })),
            _ => err(format!(
                "a list of {len} entries at offset {start} runs past the end of the file ({} bytes); the file is truncated or damaged",
                self.buf.len()
            )),
        }
    }

    fn scalars<T: Scalar>(&self, field: usize) -> Result<Vec<T>> {
        Ok(match self.vector(field, T::SIZE)? {
            Some(v) => (0..v.len)
                .map(|i| T::read_le(&v.buf[v.first + i * T::SIZE..]))
                .collect(),
            None => Vec::new(),
        })
    }

    fn bytes(&self, field: usize) -> Result<&'a [u8]> {
        Ok(match self.vector(field, 1)? {
            Some(v) => &v.buf[v.first..v.first + v.len],
            None => &[],
        })
    }

    fn string(&self, field: usize) -> Result<String> {
        Ok(String::from_utf8_lossy(self.bytes(field)?).into_owned())
    }

    /// The tables of a vector-of-tables field, each parsed by `parse` with its index.
    fn tables<T>(
        &self,
        field: usize,
        mut parse: impl FnMut(usize, Table<'a>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let Some(v) = self.vector(field, 4)? else {
            return Ok(Vec::new());
        };
        (0..v.len)
            .map(|i| {
                let pos = follow(v.buf, v.first + 4 * i)?;
                parse(i, Table::at(v.buf, pos)?)
            })
            .collect()
    }
}

struct Vector<'a> {
    buf: &'a [u8],
    first: usize,
    len: usize,
}

// ---------------------------------------------------------------------------------------------
// The model
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
    fn from_code(code: i8) -> TensorType {
        match code {
            0 => TensorType::Float32,
            1 => TensorType::Float16,
            2 => TensorType::Int32,
            3 => TensorType::UInt8,
            4 => TensorType::Int64,
            5 => TensorType::String,
            6 => TensorType::Bool,
            7 => TensorType::Int16,
            9 => TensorType::Int8,
            10 => TensorType::Float64,
            other => TensorType::Other(other),
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

/// Builtin operators, by their schema number. The ones agecam's tools look at are named.
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
    Softmax,
    Pad,
    Mean,
    Squeeze,
    Quantize,
    Custom,
    Other(i32),
}

impl Builtin {
    fn from_code(code: i32) -> Builtin {
        match code {
            0 => Builtin::Add,
            1 => Builtin::AveragePool2d,
            2 => Builtin::Concatenation,
            3 => Builtin::Conv2d,
            4 => Builtin::DepthwiseConv2d,
            6 => Builtin::Dequantize,
            9 => Builtin::FullyConnected,
            14 => Builtin::Logistic,
            17 => Builtin::MaxPool2d,
            18 => Builtin::Mul,
            19 => Builtin::Relu,
            21 => Builtin::Relu6,
            22 => Builtin::Reshape,
            25 => Builtin::Softmax,
            32 => Builtin::Custom,
            34 => Builtin::Pad,
            40 => Builtin::Mean,
            43 => Builtin::Squeeze,
            114 => Builtin::Quantize,
            other => Builtin::Other(other),
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
    fn from_code(code: i8) -> Activation {
        match code {
            0 => Activation::None,
            1 => Activation::Relu,
            2 => Activation::ReluN1To1,
            3 => Activation::Relu6,
            4 => Activation::Tanh,
            5 => Activation::SignBit,
            other => Activation::Other(other),
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
        if &buf[4..8] != b"TFL3" {
            return err(format!(
                "the file identifier is {:?}, not \"TFL3\"",
                String::from_utf8_lossy(&buf[4..8])
            ));
        }
        let root = Table::at(buf, follow(buf, 0)?).context(|| "model".to_string())?;
        let operator_codes = root
            .tables(1, |i, t| {
                parse_operator_code(t).context(|| format!("operator code {i}"))
            })
            .context(|| "operator codes".to_string())?;
        let buffers = root
            .tables(4, |i, t| {
                parse_buffer(buf, t).context(|| format!("buffer {i}"))
            })
            .context(|| "buffers".to_string())?;
        let subgraphs = root
            .tables(2, |i, t| {
                parse_subgraph(t, operator_codes.len(), buffers.len())
                    .context(|| format!("subgraph {i}"))
            })
            .context(|| "subgraphs".to_string())?;
        if subgraphs.is_empty() {
            return err("the model has no subgraph");
        }
        Ok(Model {
            version: root.scalar(0, 0u32)?,
            description: root.string(3)?,
            operator_codes,
            subgraphs,
            buffers,
        })
    }

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
                return Ok(Some(data.chunks_exact(4).map(f32::read_le).collect()));
            }
            TensorType::Float16 => {
                return Ok(Some(
                    data.chunks_exact(2)
                        .map(|b| f16_to_f32(u16::read_le(b)))
                        .collect(),
                ));
            }
            TensorType::Float64 => {
                return Ok(Some(
                    data.chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                        .collect(),
                ));
            }
            TensorType::Int8 => data.iter().map(|&b| b as i8 as f64).collect(),
            TensorType::UInt8 => data.iter().map(|&b| b as f64).collect(),
            TensorType::Int16 => data
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f64)
                .collect(),
            TensorType::Int32 => data
                .chunks_exact(4)
                .map(|b| i32::read_le(b) as f64)
                .collect(),
            TensorType::Int64 => data
                .chunks_exact(8)
                .map(|b| i64::read_le(b) as f64)
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
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
                .collect(),
            TensorType::Int32 => data
                .chunks_exact(4)
                .map(|b| i32::read_le(b) as i64)
                .collect(),
            TensorType::Int64 => data.chunks_exact(8).map(i64::read_le).collect(),
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

fn parse_operator_code(t: Table) -> Result<OperatorCode> {
    // `builtin_code` (field 3) replaced the byte-sized `deprecated_builtin_code` (field 0) once
    // there were more than 127 operators; writers fill both, readers take the larger.
    let deprecated = t.scalar(0, 0i8)? as i32;
    let code = t.scalar(3, 0i32)?.max(deprecated);
    let custom = t.field(1)?.is_some().then(|| t.string(1)).transpose()?;
    Ok(OperatorCode {
        builtin: Builtin::from_code(code),
        custom,
        version: t.scalar(2, 1i32)?,
    })
}

fn parse_buffer(file: &[u8], t: Table) -> Result<Vec<u8>> {
    let data = t.bytes(0)?;
    if !data.is_empty() {
        return Ok(data.to_vec());
    }
    // Models over 2 GB keep buffers after the FlatBuffer, at an offset from the file's start.
    let offset = t.scalar(1, 0u64)?;
    let size = t.scalar(2, 0u64)?;
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

fn parse_subgraph(t: Table, operator_codes: usize, buffers: usize) -> Result<Subgraph> {
    let tensors = t.tables(0, |i, t| {
        parse_tensor(t, buffers).context(|| format!("tensor {i}"))
    })?;
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
    let inputs = t.scalars::<i32>(1)?;
    let outputs = t.scalars::<i32>(2)?;
    check("the input list", &inputs, false)?;
    check("the output list", &outputs, false)?;
    let operators = t.tables(3, |i, t| {
        let op = parse_operator(t).context(|| format!("operator {i}"))?;
        if op.opcode_index >= operator_codes {
            return err(format!(
                "operator {i} uses operator code {} but the model has {operator_codes}",
                op.opcode_index
            ));
        }
        check(&format!("operator {i}'s inputs"), &op.inputs, true)?;
        check(&format!("operator {i}'s outputs"), &op.outputs, false)?;
        Ok(op)
    })?;
    Ok(Subgraph {
        name: t.string(4)?,
        tensors,
        inputs,
        outputs,
        operators,
    })
}

fn parse_tensor(t: Table, buffers: usize) -> Result<Tensor> {
    let buffer = t.scalar(2, 0u32)? as usize;
    if buffer >= buffers.max(1) {
        return err(format!(
            "it uses buffer {buffer} but the model has {buffers} buffers"
        ));
    }
    let quantization = match t.table(4)? {
        Some(q) => {
            let quantization = Quantization {
                min: q.scalars(0)?,
                max: q.scalars(1)?,
                scale: q.scalars(2)?,
                zero_point: q.scalars(3)?,
                quantized_dimension: usize::try_from(q.scalar(6, 0i32)?)
                    .map_err(|_| ReadError("negative quantized dimension".to_string()))?,
            };
            (!quantization.scale.is_empty()).then_some(quantization)
        }
        None => None,
    };
    Ok(Tensor {
        shape: t.scalars(0)?,
        dtype: TensorType::from_code(t.scalar(1, 0i8)?),
        buffer,
        name: t.string(3)?,
        quantization,
        is_variable: t.scalar(5, 0u8)? != 0,
    })
}

fn parse_padding(code: i8) -> Result<Padding> {
    match code {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        other => err(format!("unknown padding {other}")),
    }
}

fn parse_operator(t: Table) -> Result<Operator> {
    let options_type = t.scalar(3, 0u8)?;
    let options = match (options_type, t.table(4)?) {
        (0, _) | (_, None) => Options::None,
        (kind, Some(o)) => parse_options(kind, o).context(|| format!("options (type {kind})"))?,
    };
    Ok(Operator {
        opcode_index: t.scalar(0, 0u32)? as usize,
        inputs: t.scalars(1)?,
        outputs: t.scalars(2)?,
        options,
    })
}

/// Builtin options by their `BuiltinOptions` union number.
fn parse_options(kind: u8, o: Table) -> Result<Options> {
    let act =
        |field: usize| -> Result<Activation> { Ok(Activation::from_code(o.scalar(field, 0i8)?)) };
    Ok(match kind {
        1 => Options::Conv2d {
            padding: parse_padding(o.scalar(0, 0i8)?)?,
            stride_w: o.scalar(1, 0i32)?,
            stride_h: o.scalar(2, 0i32)?,
            activation: act(3)?,
            dilation_w: o.scalar(4, 1i32)?,
            dilation_h: o.scalar(5, 1i32)?,
        },
        2 => Options::DepthwiseConv2d {
            padding: parse_padding(o.scalar(0, 0i8)?)?,
            stride_w: o.scalar(1, 0i32)?,
            stride_h: o.scalar(2, 0i32)?,
            depth_multiplier: o.scalar(3, 0i32)?,
            activation: act(4)?,
            dilation_w: o.scalar(5, 1i32)?,
            dilation_h: o.scalar(6, 1i32)?,
        },
        5 => Options::Pool2d {
            padding: parse_padding(o.scalar(0, 0i8)?)?,
            stride_w: o.scalar(1, 0i32)?,
            stride_h: o.scalar(2, 0i32)?,
            filter_w: o.scalar(3, 0i32)?,
            filter_h: o.scalar(4, 0i32)?,
            activation: act(5)?,
        },
        8 => Options::FullyConnected {
            activation: act(0)?,
            keep_num_dims: o.scalar(2, 0u8)? != 0,
        },
        9 => Options::Softmax {
            beta: o.scalar(0, 0f32)?,
        },
        10 => Options::Concatenation {
            axis: o.scalar(0, 0i32)?,
            activation: act(1)?,
        },
        11 => Options::Add {
            activation: act(0)?,
        },
        17 => Options::Reshape {
            new_shape: o.scalars(0)?,
        },
        21 => Options::Mul {
            activation: act(0)?,
        },
        other => Options::Other(other),
    })
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
}
