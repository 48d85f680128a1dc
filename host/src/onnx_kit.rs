//! The host crate's ONNX toolkit: reading and editing ONNX protobufs (`tract_onnx::pb`:
//! tensors, attributes, nodes, pruning) and TensorFlow/TFLite weight layouts and "SAME"
//! padding converted to ONNX's. New graphs are written with the device crate's
//! [`agecam::model::onnx_build::GraphBuilder`]; this holds what it does not do, once, for the
//! quantizer, the TFLite converter and initialiser, the teacher importer and `--init-model`.

use std::collections::HashSet;
use tract_onnx::pb;

/// ONNX `TensorProto.DataType` codes.
pub const FLOAT: i32 = 1;
pub const UINT8: i32 = 2;
pub const INT8: i32 = 3;
pub const INT32: i32 = 6;

/// A tensor of an ONNX file that is not what the reader needs.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("initializer {name} is not float (type {data_type})")]
    NotFloat { name: String, data_type: i32 },
    #[error("initializer {name} has {values} values for shape {dims:?}")]
    ValueCount {
        name: String,
        values: usize,
        dims: Vec<i64>,
    },
}

// ---------------------------------------------------------------------------------------------
// Protobuf helpers
// ---------------------------------------------------------------------------------------------

/// A tensor of `data_type` with little-endian `raw` data.
pub fn tensor(name: &str, dims: &[i64], data_type: i32, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type,
        raw_data: raw,
        ..Default::default()
    }
}

/// A float tensor.
pub fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> pb::TensorProto {
    tensor(
        name,
        dims,
        FLOAT,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// The float values of an initializer (raw little-endian or `float_data`).
pub fn floats(t: &pb::TensorProto) -> Result<Vec<f32>, OnnxError> {
    if t.data_type != FLOAT {
        return Err(OnnxError::NotFloat {
            name: t.name.clone(),
            data_type: t.data_type,
        });
    }
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .as_chunks::<4>()
            .0
            .iter()
            .map(|&b| f32::from_le_bytes(b))
            .collect()
    };
    let n: i64 = t.dims.iter().product();
    if values.len() as i64 != n {
        return Err(OnnxError::ValueCount {
            name: t.name.clone(),
            values: values.len(),
            dims: t.dims.clone(),
        });
    }
    Ok(values)
}

/// A node's integer attribute `name`.
pub fn attr_int(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

/// A node's integer-list attribute `name`.
pub fn attr_ints(node: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

/// An integer attribute.
pub fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

/// A node without attributes.
pub fn node(op: &str, name: String, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        name,
        op_type: op.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Removes nodes whose outputs nobody reads (e.g. a Dequantize whose only reader became
/// integer) and initializers nobody references.
pub fn prune(g: &mut pb::GraphProto) {
    loop {
        let mut read: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        for n in &g.node {
            read.extend(n.input.iter().map(String::as_str));
        }
        let keep: Vec<bool> = g
            .node
            .iter()
            .map(|n| n.output.iter().any(|o| read.contains(o.as_str())))
            .collect();
        if keep.iter().all(|k| *k) {
            break;
        }
        let mut k = keep.into_iter();
        g.node.retain(|_| k.next().unwrap_or(true));
    }
    let read: HashSet<String> = g.node.iter().flat_map(|n| n.input.clone()).collect();
    g.initializer.retain(|t| read.contains(&t.name));
    g.input
        .retain(|i| read.contains(&i.name) || !g.initializer.iter().any(|t| t.name == i.name));
}

// ---------------------------------------------------------------------------------------------
// TensorFlow / TFLite layouts and padding
// ---------------------------------------------------------------------------------------------

/// Transposes a dense row-major tensor of shape `dims` by `perm` (output axis k is input axis
/// `perm[k]`).
pub fn permute(values: &[f32], dims: &[i64], perm: &[usize]) -> Vec<f32> {
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let rank = dims.len();
    let mut in_strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        in_strides[k] = in_strides[k + 1] * dims[k + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; rank];
    for _ in 0..values.len() {
        let source: usize = (0..rank).map(|k| index[k] * in_strides[perm[k]]).sum();
        out.push(values[source]);
        for k in (0..rank).rev() {
            index[k] += 1;
            if index[k] < out_dims[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// TF's HWIO filter `[kh, kw, cin, cout]` as ONNX's OIHW `[cout, cin, kh, kw]`.
pub fn hwio_to_oihw(values: &[f32], kh: usize, kw: usize, cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(values.len(), kh * kw * cin * cout, "HWIO filter size");
    permute(values, &dims([kh, kw, cin, cout]), &[3, 2, 0, 1])
}

/// TFLite's OHWI filter `[cout, kh, kw, cin]` (`CONV_2D`) as ONNX's OIHW `[cout, cin, kh, kw]`.
/// The same move takes an NHWC tensor to NCHW.
pub fn ohwi_to_oihw(values: &[f32], cout: usize, kh: usize, kw: usize, cin: usize) -> Vec<f32> {
    assert_eq!(values.len(), cout * kh * kw * cin, "OHWI filter size");
    permute(values, &dims([cout, kh, kw, cin]), &[0, 3, 1, 2])
}

/// TF's depthwise filter `[kh, kw, c, m]` (m outputs per input channel) as ONNX's grouped
/// conv weight `[c·m, 1, kh, kw]` with group = c; output channel c·m + j, as in TF. TFLite's
/// `DEPTHWISE_CONV_2D` filter `[1, kh, kw, c·m]` holds the same values in the same order.
pub fn depthwise_to_onnx(values: &[f32], kh: usize, kw: usize, c: usize, m: usize) -> Vec<f32> {
    assert_eq!(values.len(), kh * kw * c * m, "depthwise filter size");
    permute(values, &dims([kh, kw, c * m]), &[2, 0, 1])
}

fn dims<const N: usize>(d: [usize; N]) -> [i64; N] {
    d.map(|d| d as i64)
}

/// TF/TFLite "SAME" padding of one spatial axis: (before, after, output size), with
/// out = ⌈size / stride⌉ and the odd extra row/column at the end; a dilated kernel spans
/// (kernel − 1)·dilation + 1.
pub fn same_pads_dilated(size: i64, kernel: i64, stride: i64, dilation: i64) -> (i64, i64, i64) {
    let effective = (kernel - 1) * dilation + 1;
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + effective - size).max(0);
    (total / 2, total - total / 2, out)
}

/// TF "SAME" padding of one spatial axis for an undilated kernel: (before, after, output size).
pub fn same_pads(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let (before, after, out) = same_pads_dilated(size as i64, kernel as i64, stride as i64, 1);
    (before as usize, after as usize, out as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_moves_axes() {
        // 2×3 → 3×2 transpose.
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            permute(&v, &[2, 3], &[1, 0]),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        // NHWC [1,1,2,3] → NCHW [1,3,1,2].
        assert_eq!(
            permute(&v, &[1, 1, 2, 3], &[0, 3, 1, 2]),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn layouts_convert_by_hand() {
        // HWIO [2,1,1,2]: in[y][0][0][o] = 10 + 2y + o  →  OIHW out[o][0][y][0].
        assert_eq!(
            hwio_to_oihw(&[10.0, 11.0, 12.0, 13.0], 2, 1, 1, 2),
            [10.0, 12.0, 11.0, 13.0]
        );
        // Depthwise [2,2,2,1]: in[y][x][c] = 2(2y + x) + c  →  [2,1,2,2] out[c][y][x].
        let dw: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(
            depthwise_to_onnx(&dw, 2, 2, 2, 1),
            [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
        );
        // Multiplier 2, [1,1,2,2]: in[c][j] = 2c + j  →  out channel 2c + j: unchanged order.
        assert_eq!(
            depthwise_to_onnx(&[0.0, 1.0, 2.0, 3.0], 1, 1, 2, 2),
            [0.0, 1.0, 2.0, 3.0]
        );
        // OHWI [2,1,2,1]: in[o][0][x][0] = 2o + x  →  OIHW out[o][0][0][x]: unchanged order;
        // [1,1,2,3] (x, i) → [1,3,1,2].
        assert_eq!(
            ohwi_to_oihw(&[0.0, 1.0, 2.0, 3.0], 2, 1, 2, 1),
            [0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(
            ohwi_to_oihw(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1, 1, 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        // TF SAME: out = ceil(in / s); the odd pad at the end.
        assert_eq!(same_pads(112, 3, 2), (0, 1, 56));
        assert_eq!(same_pads(56, 3, 1), (1, 1, 56));
        assert_eq!(same_pads(56, 1, 2), (0, 0, 28));
        assert_eq!(same_pads(7, 3, 2), (1, 1, 4));
        // Dilation widens the kernel: 3×3 dilated by 2 acts as 5×5.
        assert_eq!(same_pads_dilated(10, 3, 1, 2), (2, 2, 10));
    }
}
