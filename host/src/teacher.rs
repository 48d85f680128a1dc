//! face-api's small age/gender network (`@vladmandic/face-api` 1.7.15, MIT) imported as an
//! ONNX "teacher" with our own [`GraphBuilder`], plus the check of that import against the
//! package's own TF.js outputs (`benches/teacher_reference/reference.mjs`).
//!
//! **Source.** The npm package ships `model/age_gender_model-weights_manifest.json` and
//! `age_gender_model.bin`: a TF.js weights manifest whose tensors are stored either as
//! little-endian float32 or quantized to uint8 with a per-tensor `min` and `scale`
//! (value = q·scale + min, computed in double precision and rounded to float32, as
//! `tf.io.decodeWeights` does). [`read_tfjs_weights`] reads them and refuses anything else.
//!
//! **Network** (`src/xception/TinyXception.ts` with 2 main blocks, `src/ageGenderNet/*.ts`),
//! all convolutions with TF "SAME" padding (pads computed as TF does: out = ⌈in / stride⌉, the
//! odd extra row/column at the bottom/right):
//! - `conv_in`: 3×3 stride-2 conv + bias, ReLU (112 → 56).
//! - reduction block (entry 0 without the input ReLU, entry 1, exit): (ReLU →) separable conv
//!   → ReLU → separable conv → 3×3 stride-2 max pool, plus a 1×1 stride-2 "expansion" conv of
//!   the block's (un-activated) input.
//! - main block ×2 (128 channels): three × (ReLU → separable conv), plus the block's input.
//! - exit: separable conv 256 → 512, ReLU, 7×7 stride-2 "valid" average pool (7×7 → 1×1).
//! - heads: `fc/age` 512 → 1 (age in years, a regression) and `fc/gender` 512 → 2 followed by
//!   a softmax (`AgeGenderNet.forwardInput`); index 0 is male (`predictAgeAndGender` reads
//!   `probMale = gender[0]`), 1 female.
//!
//! A separable conv is a depthwise 3×3 conv (no bias; TF.js `[3,3,C,1]` → ONNX `[C,1,3,3]`,
//! group = C) then a pointwise 1×1 conv with the bias (`[1,1,Cin,Cout]` → `[Cout,Cin,1,1]`).
//! Dense filters go from TF's HWIO to ONNX's OIHW; the FC weights `[in, out]` feed `Gemm`
//! as they are.
//!
//! **Preprocessing** (`NetInput.toBatchTensor(112, true)`, `ops/padToSquare.ts`,
//! `ops/normalize.ts`): the RGB image (0–255) is padded to a square with zeros (black),
//! centred (the larger half of an odd difference after the image), resized to 112×112 with
//! `tf.image.resizeBilinear(align_corners = false, half_pixel_centers = false)` unless it is
//! 112×112 already, then (x − (122.782, 117.001, 104.298)) / 255 per channel. The last step
//! is linear per channel, so it is in the ONNX metadata the device reads: input = v/255 − mean
//! with mean = (122.782, 117.001, 104.298)/255 and std = 1 (`agecam.mean`, `agecam.std`). The
//! graph's input `input` is `[N, 3, 112, 112]` float, RGB planes so normalised; outputs are
//! `age` `[N, 1]` (years) and `gender` `[N, 2]` (softmax probabilities: male, female).
//!
//! **Licence and data.** The weights are MIT, but the authors trained them on UTK, FGNET,
//! ChaLearn, Wiki, IMDB, CACD and MegaAge(-Asian), which include non-commercial research
//! sets: the ONNX metadata says so, and a model for commercial use must not learn from it.

use agecam::model::age_gender::{keys, ModelInfo, AGE_OUTPUT, GENDER_OUTPUT};
use agecam::model::onnx_build::{Attr, GraphBuilder};
use agecam::model::Gender;
use agecam::vision::crop::Framing;
use agecam::vision::FaceDetector;
use agecam::Error;
use image::RgbImage;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// Side of the network's square input.
pub const INPUT_SIZE: usize = 112;
/// face-api's per-channel mean (RGB, 0–255 scale), subtracted before dividing by 255.
pub const MEAN_RGB_255: [f32; 3] = [122.782, 117.001, 104.298];
/// Main blocks of face-api's `TinyXception` in `AgeGenderNet` (`new TinyXception(2)`).
pub const MAIN_BLOCKS: usize = 2;
/// Provenance written as `agecam.teacher` when the weights are the 1.7.15 file.
pub const TEACHER: &str = "face-api age_gender_model 1.7.15 (MIT)";
/// sha256 of `model/age_gender_model.bin` in `@vladmandic/face-api` 1.7.15.
pub const BIN_SHA256_1_7_15: &str =
    "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa";
/// The training data face-api's authors name for this model (metadata `agecam.teacher_data`).
pub const TRAINING_DATA: &str = "trained by its authors on UTK, FGNET, ChaLearn, Wiki, IMDB, \
CACD, MegaAge and MegaAge-Asian, which include datasets licensed for non-commercial research \
only: do not ship this model, or a model distilled from it, in a commercial product";

/// Metadata keys of the teacher besides the device's own ([`keys`]).
pub mod teacher_keys {
    pub const TEACHER: &str = "agecam.teacher";
    pub const DATA: &str = "agecam.teacher_data";
    pub const PREPROCESSING: &str = "agecam.teacher_preprocessing";
    pub const AGE_OUTPUT: &str = "agecam.age_output";
    pub const GENDER_OUTPUT: &str = "agecam.gender_output";
    pub const SOURCE_SHA256: &str = "agecam.teacher_source_sha256";
    pub const CONVERTER: &str = "agecam.converter";
}

/// One tensor of a TF.js weights manifest, as float32 in TF.js's own layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TfjsTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// All tensors of a TF.js weights manifest.
#[derive(Debug, Clone)]
pub struct TfjsWeights {
    /// The manifest they were read from (named in errors).
    pub manifest: PathBuf,
    pub tensors: BTreeMap<String, TfjsTensor>,
    /// Each weight file (as named in the manifest) with its sha256, in manifest order.
    pub files: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<Quantization>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quantization {
    dtype: String,
    scale: Option<f64>,
    min: Option<f64>,
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn model_error(file: &Path, problem: impl Into<String>) -> Error {
    Error::Model {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

/// Reads a TF.js weights manifest and its weight files (named in it, beside it), dequantizing
/// uint8 tensors (q·scale + min, in f64 rounded to f32, as TF.js does). Only float32 tensors,
/// stored as float32 or as uint8 with `min` and `scale`, are accepted; anything else — another
/// dtype or quantization, a missing or short weight file, bytes left over, a repeated name, an
/// unknown manifest field — is an error naming the file and the tensor.
pub fn read_tfjs_weights(manifest: &Path) -> Result<TfjsWeights, Error> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        model_error(
            manifest,
            format!(
                "cannot read it ({e}); give face-api's weights manifest, e.g. \
                 node_modules/@vladmandic/face-api/model/age_gender_model-weights_manifest.json \
                 (npm ci --prefix benches/teacher_reference installs it)"
            ),
        )
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let groups: Vec<ManifestGroup> = serde_path_to_error::deserialize(de).map_err(|e| {
        model_error(
            manifest,
            format!(
                "not a TF.js weights manifest this importer knows: at `{}`: {}",
                e.path(),
                e.inner()
            ),
        )
    })?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut tensors = BTreeMap::new();
    let mut files = Vec::new();
    for group in &groups {
        if group.paths.is_empty() {
            return Err(model_error(
                manifest,
                "a weights group lists no weight file (`paths` is empty)",
            ));
        }
        let mut bytes = Vec::new();
        for p in &group.paths {
            let file = dir.join(p);
            let data = std::fs::read(&file).map_err(|e| {
                model_error(
                    &file,
                    format!(
                        "cannot read this weight file named in {} ({e}); it must sit beside \
                         the manifest, as the npm package installs it",
                        manifest.display()
                    ),
                )
            })?;
            files.push((p.clone(), sha256_hex(&data)));
            bytes.extend_from_slice(&data);
        }
        let shards = group.paths.join(" + ");
        let shard_file = dir.join(&group.paths[0]);
        let mut offset = 0usize;
        for entry in &group.weights {
            let count = entry
                .shape
                .iter()
                .try_fold(1usize, |n, d| n.checked_mul(*d))
                .ok_or_else(|| {
                    model_error(
                        manifest,
                        format!(
                            "tensor `{}`: shape {:?} is too large",
                            entry.name, entry.shape
                        ),
                    )
                })?;
            let values = match (entry.dtype.as_str(), &entry.quantization) {
                ("float32", None) => {
                    let raw = take(&bytes, &mut offset, count * 4, entry, &shard_file, &shards)?;
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect::<Vec<f32>>()
                }
                ("float32", Some(q)) if q.dtype == "uint8" => {
                    let (scale, min) = match (q.scale, q.min) {
                        (Some(s), Some(m)) if s.is_finite() && m.is_finite() && s >= 0.0 => (s, m),
                        _ => {
                            return Err(model_error(
                                manifest,
                                format!(
                                    "tensor `{}`: uint8 quantization needs a finite `scale` \
                                     (≥ 0) and `min`, has scale {:?} and min {:?}; the \
                                     manifest is damaged: reinstall the package",
                                    entry.name, q.scale, q.min
                                ),
                            ))
                        }
                    };
                    let raw = take(&bytes, &mut offset, count, entry, &shard_file, &shards)?;
                    raw.iter()
                        .map(|&q| (q as f64 * scale + min) as f32)
                        .collect()
                }
                (dtype, q) => {
                    return Err(model_error(
                        manifest,
                        format!(
                            "tensor `{}`: dtype `{dtype}`{} is not supported; this importer \
                             reads float32 tensors, stored as float32 or as uint8 with min and \
                             scale (face-api 1.7.15's age_gender_model)",
                            entry.name,
                            q.as_ref()
                                .map(|q| format!(" quantized to `{}`", q.dtype))
                                .unwrap_or_default()
                        ),
                    ))
                }
            };
            if values.iter().any(|v| !v.is_finite()) {
                return Err(model_error(
                    &shard_file,
                    format!(
                        "tensor `{}` holds a NaN or infinite value; the weight file is damaged: \
                         reinstall the package",
                        entry.name
                    ),
                ));
            }
            let tensor = TfjsTensor {
                shape: entry.shape.clone(),
                values,
            };
            if tensors.insert(entry.name.clone(), tensor).is_some() {
                return Err(model_error(
                    manifest,
                    format!("tensor `{}` is listed twice", entry.name),
                ));
            }
        }
        if offset != bytes.len() {
            return Err(model_error(
                &shard_file,
                format!(
                    "{} holds {} bytes but the manifest's tensors use {offset} (the last is \
                     `{}`): the weight file does not belong to {}; reinstall the package",
                    shards,
                    bytes.len(),
                    group.weights.last().map_or("none", |w| &w.name),
                    manifest.display()
                ),
            ));
        }
    }
    Ok(TfjsWeights {
        manifest: manifest.to_path_buf(),
        tensors,
        files,
    })
}

/// The next `n` bytes of a group's concatenated weight files, or an error naming the tensor.
fn take<'b>(
    bytes: &'b [u8],
    offset: &mut usize,
    n: usize,
    entry: &ManifestEntry,
    file: &Path,
    shards: &str,
) -> Result<&'b [u8], Error> {
    let end = offset.checked_add(n).filter(|e| *e <= bytes.len());
    let Some(end) = end else {
        return Err(model_error(
            file,
            format!(
                "tensor `{}` (shape {:?}, {n} bytes from byte {}) runs past the end of {shards} \
                 ({} bytes): the weight file is truncated or belongs to another manifest; \
                 reinstall the package",
                entry.name,
                entry.shape,
                offset,
                bytes.len()
            ),
        ));
    };
    let slice = &bytes[*offset..end];
    *offset = end;
    Ok(slice)
}

/// TF's HWIO filter `[kh, kw, cin, cout]` as ONNX's OIHW `[cout, cin, kh, kw]`.
pub fn hwio_to_oihw(values: &[f32], kh: usize, kw: usize, cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(values.len(), kh * kw * cin * cout, "HWIO filter size");
    let mut out = vec![0f32; values.len()];
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..cin {
                for o in 0..cout {
                    out[((o * cin + i) * kh + y) * kw + x] =
                        values[((y * kw + x) * cin + i) * cout + o];
                }
            }
        }
    }
    out
}

/// TF's depthwise filter `[kh, kw, c, m]` (m outputs per input channel) as ONNX's grouped
/// conv weight `[c·m, 1, kh, kw]` with group = c; output channel c·m + j, as in TF.
pub fn depthwise_to_onnx(values: &[f32], kh: usize, kw: usize, c: usize, m: usize) -> Vec<f32> {
    assert_eq!(values.len(), kh * kw * c * m, "depthwise filter size");
    let mut out = vec![0f32; values.len()];
    for y in 0..kh {
        for x in 0..kw {
            for ch in 0..c {
                for j in 0..m {
                    out[((ch * m + j) * kh + y) * kw + x] = values[((y * kw + x) * c + ch) * m + j];
                }
            }
        }
    }
    out
}

/// TF "SAME" padding of one spatial axis: (before, after, output size).
pub fn same_pads(size: usize, kernel: usize, stride: usize) -> (usize, usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2, out)
}

/// An activation in the graph being built: ONNX name, spatial side, channels.
#[derive(Debug, Clone)]
struct Act {
    name: String,
    size: usize,
    channels: usize,
}

struct Importer<'w> {
    weights: &'w TfjsWeights,
    g: GraphBuilder,
    used: BTreeSet<String>,
    n: usize,
}

impl<'w> Importer<'w> {
    fn fresh(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}_{}", self.n)
    }

    fn error(&self, problem: String) -> Error {
        model_error(&self.weights.manifest, problem)
    }

    /// The tensor `name`, which must have `shape` (`None`: any size on that axis).
    fn tensor(&mut self, name: &str, shape: &[Option<usize>]) -> Result<&'w TfjsTensor, Error> {
        let weights = self.weights;
        let t = weights.tensors.get(name).ok_or_else(|| {
            self.error(format!(
                "tensor `{name}` is missing: this is not face-api's age_gender_model manifest \
                 (the importer follows TinyXception(2) + AgeGenderNet of face-api 1.7.15)"
            ))
        })?;
        let fits = t.shape.len() == shape.len()
            && t.shape
                .iter()
                .zip(shape)
                .all(|(d, e)| e.is_none_or(|e| e == *d));
        if !fits {
            let want: Vec<String> = shape
                .iter()
                .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                .collect();
            return Err(self.error(format!(
                "tensor `{name}` has shape {:?}, the network needs [{}]",
                t.shape,
                want.join(", ")
            )));
        }
        self.used.insert(name.to_string());
        Ok(t)
    }

    /// An ONNX Conv of `x` (spatial side `size`) with TF "SAME" padding; returns the output
    /// name and side.
    fn conv_node(
        &mut self,
        (x, size): (&str, usize),
        w: &str,
        b: Option<&str>,
        kernel: usize,
        stride: usize,
        group: usize,
    ) -> (String, usize) {
        let (before, after, out_size) = same_pads(size, kernel, stride);
        let out = self.fresh("conv");
        let mut inputs = vec![x, w];
        inputs.extend(b);
        let (k, s, b, a) = (kernel as i64, stride as i64, before as i64, after as i64);
        self.g.node(
            "Conv",
            &inputs,
            &[&out],
            &[
                Attr::Ints("kernel_shape", &[k, k]),
                Attr::Ints("strides", &[s, s]),
                // ONNX order: top, left, bottom, right.
                Attr::Ints("pads", &[b, b, a, a]),
                Attr::Int("group", group as i64),
            ],
        );
        (out, out_size)
    }

    /// `tf.conv2d(x, filters, stride, 'same') + bias`.
    fn conv(&mut self, x: &Act, prefix: &str, stride: usize) -> Result<Act, Error> {
        let f = self.tensor(
            &format!("{prefix}/filters"),
            &[None, None, Some(x.channels), None],
        )?;
        let (kh, kw, cin, cout) = (f.shape[0], f.shape[1], f.shape[2], f.shape[3]);
        if kh != kw {
            return Err(self.error(format!(
                "tensor `{prefix}/filters`: {kh}×{kw} kernels are not supported (square only)"
            )));
        }
        let b = self.tensor(&format!("{prefix}/bias"), &[Some(cout)])?;
        let (wn, bn) = (self.fresh("w"), self.fresh("b"));
        self.g
            .initializer(
                &wn,
                &[cout as i64, cin as i64, kh as i64, kw as i64],
                &hwio_to_oihw(&f.values, kh, kw, cin, cout),
            )
            .initializer(&bn, &[cout as i64], &b.values);
        let (name, size) = self.conv_node((&x.name, x.size), &wn, Some(&bn), kh, stride, 1);
        Ok(Act {
            name,
            size,
            channels: cout,
        })
    }

    /// `tf.separableConv2d(x, depthwise, pointwise, [1, 1], 'same') + bias`.
    fn separable(&mut self, x: &Act, prefix: &str) -> Result<Act, Error> {
        let d = self.tensor(
            &format!("{prefix}/depthwise_filter"),
            &[None, None, Some(x.channels), None],
        )?;
        let (kh, kw, c, m) = (d.shape[0], d.shape[1], d.shape[2], d.shape[3]);
        if kh != kw {
            return Err(self.error(format!("tensor `{prefix}/depthwise_filter`: {kh}×{kw} kernels are not supported (square only)")));
        }
        let p = self.tensor(
            &format!("{prefix}/pointwise_filter"),
            &[Some(1), Some(1), Some(c * m), None],
        )?;
        let cout = p.shape[3];
        let b = self.tensor(&format!("{prefix}/bias"), &[Some(cout)])?;
        let (dn, pn, bn) = (self.fresh("dw"), self.fresh("pw"), self.fresh("b"));
        self.g
            .initializer(
                &dn,
                &[(c * m) as i64, 1, kh as i64, kw as i64],
                &depthwise_to_onnx(&d.values, kh, kw, c, m),
            )
            .initializer(
                &pn,
                &[cout as i64, (c * m) as i64, 1, 1],
                &hwio_to_oihw(&p.values, 1, 1, c * m, cout),
            )
            .initializer(&bn, &[cout as i64], &b.values);
        let (dw, size) = self.conv_node((&x.name, x.size), &dn, None, kh, 1, c);
        let (name, size) = self.conv_node((&dw, size), &pn, Some(&bn), 1, 1, 1);
        Ok(Act {
            name,
            size,
            channels: cout,
        })
    }

    fn relu(&mut self, x: &Act) -> Act {
        let name = self.fresh("relu");
        self.g.node("Relu", &[&x.name], &[&name], &[]);
        Act { name, ..x.clone() }
    }

    /// `tf.maxPool(x, [3, 3], [2, 2], 'same')`: the pads are ignored by the max, as in TF.
    fn max_pool(&mut self, x: &Act) -> Act {
        let (before, after, size) = same_pads(x.size, 3, 2);
        let (b, a) = (before as i64, after as i64);
        let name = self.fresh("maxpool");
        self.g.node(
            "MaxPool",
            &[&x.name],
            &[&name],
            &[
                Attr::Ints("kernel_shape", &[3, 3]),
                Attr::Ints("strides", &[2, 2]),
                Attr::Ints("pads", &[b, b, a, a]),
            ],
        );
        Act {
            name,
            size,
            ..x.clone()
        }
    }

    fn add(&mut self, a: &Act, b: &Act, what: &str) -> Result<Act, Error> {
        if (a.size, a.channels) != (b.size, b.channels) {
            return Err(self.error(format!(
                "{what}: the residual sum adds {}×{}×{} to {}×{}×{}; the tensors' channel counts do not fit TinyXception",
                a.channels, a.size, a.size, b.channels, b.size, b.size
            )));
        }
        let name = self.fresh("add");
        self.g.node("Add", &[&a.name, &b.name], &[&name], &[]);
        Ok(Act { name, ..a.clone() })
    }

    /// `reductionBlock` of TinyXception.ts.
    fn reduction_block(
        &mut self,
        x: &Act,
        prefix: &str,
        activate_input: bool,
    ) -> Result<Act, Error> {
        let mut out = if activate_input {
            self.relu(x)
        } else {
            x.clone()
        };
        out = self.separable(&out, &format!("{prefix}/separable_conv0"))?;
        out = self.relu(&out);
        out = self.separable(&out, &format!("{prefix}/separable_conv1"))?;
        out = self.max_pool(&out);
        let expansion = self.conv(x, &format!("{prefix}/expansion_conv"), 2)?;
        self.add(&out, &expansion, prefix)
    }

    /// `mainBlock` of TinyXception.ts.
    fn main_block(&mut self, x: &Act, prefix: &str) -> Result<Act, Error> {
        let mut out = x.clone();
        for i in 0..3 {
            out = self.relu(&out);
            out = self.separable(&out, &format!("{prefix}/separable_conv{i}"))?;
        }
        self.add(&out, x, prefix)
    }

    /// `fullyConnectedLayer`: x · weights + bias, weights `[features, outputs]`.
    fn fc(
        &mut self,
        x: &str,
        features: usize,
        prefix: &str,
        outputs: usize,
        out: &str,
    ) -> Result<(), Error> {
        let w = self.tensor(
            &format!("{prefix}/weights"),
            &[Some(features), Some(outputs)],
        )?;
        let b = self.tensor(&format!("{prefix}/bias"), &[Some(outputs)])?;
        let (wn, bn) = (self.fresh("w"), self.fresh("b"));
        self.g
            .initializer(&wn, &[features as i64, outputs as i64], &w.values)
            .initializer(&bn, &[outputs as i64], &b.values)
            .node("Gemm", &[x, &wn, &bn], &[out], &[]);
        Ok(())
    }
}

/// The ONNX model (serialised) of face-api's age/gender network with `weights`, with the
/// metadata described in the module documentation.
pub fn build_teacher_onnx(weights: &TfjsWeights) -> Result<Vec<u8>, Error> {
    let mut im = Importer {
        weights,
        g: GraphBuilder::new("face_api_age_gender"),
        used: BTreeSet::new(),
        n: 0,
    };
    let s = INPUT_SIZE as i64;
    im.g.input("input", &[None, Some(3), Some(s), Some(s)]);
    let x = Act {
        name: "input".to_string(),
        size: INPUT_SIZE,
        channels: 3,
    };
    let x = im.conv(&x, "entry_flow/conv_in", 2)?;
    let mut x = im.relu(&x);
    x = im.reduction_block(&x, "entry_flow/reduction_block_0", false)?;
    x = im.reduction_block(&x, "entry_flow/reduction_block_1", true)?;
    for i in 0..MAIN_BLOCKS {
        x = im.main_block(&x, &format!("middle_flow/main_block_{i}"))?;
    }
    x = im.reduction_block(&x, "exit_flow/reduction_block", true)?;
    x = im.separable(&x, "exit_flow/separable_conv")?;
    x = im.relu(&x);
    if x.size != 7 {
        return Err(im.error(format!(
            "the features before the 7×7 average pool are {0}×{0}, not 7×7",
            x.size
        )));
    }
    let pooled = im.fresh("avgpool");
    im.g.node(
        "AveragePool",
        &[&x.name],
        &[&pooled],
        &[
            Attr::Ints("kernel_shape", &[7, 7]),
            Attr::Ints("strides", &[2, 2]),
        ],
    );
    let flat = im.fresh("flat");
    im.g.node("Flatten", &[&pooled], &[&flat], &[Attr::Int("axis", 1)]);
    im.fc(&flat, x.channels, "fc/age", 1, AGE_OUTPUT)?;
    let logits = im.fresh("gender_logits");
    im.fc(&flat, x.channels, "fc/gender", 2, &logits)?;
    im.g.node(
        "Softmax",
        &[&logits],
        &[GENDER_OUTPUT],
        &[Attr::Int("axis", 1)],
    );
    im.g.output(AGE_OUTPUT, &[None, Some(1)])
        .output(GENDER_OUTPUT, &[None, Some(2)]);

    let unused: Vec<&String> = weights
        .tensors
        .keys()
        .filter(|k| !im.used.contains(*k))
        .collect();
    if !unused.is_empty() {
        return Err(im.error(format!(
            "tensor `{}`{} is not part of face-api's age/gender network; this importer takes \
             age_gender_model-weights_manifest.json only",
            unused[0],
            if unused.len() > 1 {
                format!(" (and {} more)", unused.len() - 1)
            } else {
                String::new()
            }
        )));
    }

    let is_1_7_15 = weights.files.len() == 1 && weights.files[0].1 == BIN_SHA256_1_7_15;
    let teacher = if is_1_7_15 {
        TEACHER.to_string()
    } else {
        "face-api age_gender_model, weights other than the 1.7.15 file (MIT)".to_string()
    };
    let sources: Vec<String> = weights
        .files
        .iter()
        .map(|(f, sha)| format!("{f} sha256 {sha}"))
        .collect();
    let mean = MEAN_RGB_255.map(|m| m / 255.0);
    im.g.metadata(teacher_keys::TEACHER, &teacher)
        .metadata(teacher_keys::DATA, TRAINING_DATA)
        .metadata(teacher_keys::SOURCE_SHA256, &sources.join(", "))
        .metadata(teacher_keys::CONVERTER, "agecam-host import-teacher")
        .metadata(keys::INPUT_SIZE, &INPUT_SIZE.to_string())
        .metadata(keys::MEAN, &format!("{},{},{}", mean[0], mean[1], mean[2]))
        .metadata(keys::STD, "1,1,1")
        .metadata(keys::CHANNEL_ORDER, "RGB")
        .metadata(keys::GENDER_LABELS, "male,female")
        .metadata(
            teacher_keys::AGE_OUTPUT,
            "age in years (regression), [N, 1]",
        )
        .metadata(
            teacher_keys::GENDER_OUTPUT,
            "softmax probabilities [N, 2]: index 0 male, 1 female",
        )
        .metadata(
            teacher_keys::PREPROCESSING,
            "face-api: RGB 0-255 padded to a square with zeros (centred), resized to 112x112 by \
             tf.image.resizeBilinear (align_corners=false, half_pixel_centers=false), then \
             (x - (122.782, 117.001, 104.298)) / 255; here input = v/255 - agecam.mean, \
             agecam.std = 1",
        );
    Ok(im.g.to_bytes())
}

/// What [`import_teacher`] wrote.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub tensors: usize,
    pub parameters: usize,
    pub onnx_bytes: usize,
    /// The weight files with their sha256.
    pub files: Vec<(String, String)>,
    /// The weights are byte-for-byte face-api 1.7.15's.
    pub is_1_7_15: bool,
}

/// Reads face-api's age/gender weights manifest and writes the ONNX teacher to `out`.
pub fn import_teacher(manifest: &Path, out: &Path) -> Result<ImportSummary, Error> {
    let weights = read_tfjs_weights(manifest)?;
    let bytes = build_teacher_onnx(&weights)?;
    std::fs::write(out, &bytes).map_err(|e| Error::Output {
        path: out.to_path_buf(),
        problem: format!("cannot write the ONNX model ({e})"),
    })?;
    Ok(ImportSummary {
        tensors: weights.tensors.len(),
        parameters: weights.tensors.values().map(|t| t.values.len()).sum(),
        onnx_bytes: bytes.len(),
        is_1_7_15: weights.files.len() == 1 && weights.files[0].1 == BIN_SHA256_1_7_15,
        files: weights.files,
    })
}

/// face-api's own preprocessing of an RGB image of any size, as the network input
/// `[1, 3, 112, 112]` of the ONNX teacher (v/255 − mean, the metadata's form of
/// (x − mean)/255): `NetInput.toBatchTensor(112, true)` pads the image to a square with zeros,
/// centred — of an odd difference d, ⌈d/2⌉ after the image and ⌊d/2⌋ before it (`padToSquare`:
/// `Math.round(d · 0.5)` is appended) — then, unless it is 112×112 already, resizes it with
/// `tf.image.resizeBilinear(align_corners = false, half_pixel_centers = false)`: output pixel r
/// samples source position r · (in / 112), between ⌊·⌋ and min(in − 1, ⌈·⌉), without rounding
/// the result to integers. A 112×112 image passes unchanged, giving exactly
/// [`ModelInfo::input_tensor`]'s input.
pub fn faceapi_input(img: &RgbImage) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.max(h);
    let diff = side - w.min(h);
    let before = diff - diff.div_ceil(2);
    let (x0, y0) = if h > w { (before, 0) } else { (0, before) };
    // The padded square, RGB interleaved, as floats.
    let mut square = vec![0f32; side * side * 3];
    for (x, y, p) in img.enumerate_pixels() {
        let at = ((y as usize + y0) * side + x as usize + x0) * 3;
        for c in 0..3 {
            square[at + c] = p.0[c] as f32;
        }
    }
    let n = INPUT_SIZE;
    let plane = n * n;
    let mean = MEAN_RGB_255.map(|m| m / 255.0);
    let mut data = vec![0f32; 3 * plane];
    let ratio = side as f64 / n as f64;
    // (floor, ceil, fraction) of each output row/column's source position, as TF.js computes it.
    // In double precision, rounded to float at the end, as TF.js's cpu kernel does.
    let taps: Vec<(usize, usize, f64)> = (0..n)
        .map(|r| {
            let frac = r as f64 * ratio;
            let lo = frac.floor().max(0.0);
            let hi = frac.ceil().min(side as f64 - 1.0);
            (lo as usize, hi as usize, frac - lo)
        })
        .collect();
    for (r, &(y0, y1, fy)) in taps.iter().enumerate() {
        for (col, &(x0, x1, fx)) in taps.iter().enumerate() {
            for c in 0..3 {
                let v = |y: usize, x: usize| square[(y * side + x) * 3 + c] as f64;
                let value = if side == n {
                    v(r, col)
                } else {
                    let top = v(y0, x0) + (v(y0, x1) - v(y0, x0)) * fx;
                    let bottom = v(y1, x0) + (v(y1, x1) - v(y1, x0)) * fx;
                    top + (bottom - top) * fy
                } as f32;
                data[c * plane + r * n + col] = value / 255.0 - mean[c];
            }
        }
    }
    Tensor::from_shape(&[1, 3, n, n], &data).expect("1x3x112x112 input")
}

/// The input convention of the teacher, in the device's terms: crops of 112×112 RGB,
/// v/255 − mean with face-api's mean and std 1. (`age_bins` is empty: the age output is a
/// regression in years, not a distribution.)
pub fn input_info() -> ModelInfo {
    ModelInfo {
        input_size: INPUT_SIZE as u32,
        mean: MEAN_RGB_255.map(|m| m / 255.0),
        std: [1.0; 3],
        age_bins: Vec::new(),
        gender_labels: [Gender::Male, Gender::Female],
        crop_margin: None,
        crop: Default::default(),
    }
}

/// One face's teacher outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherOutput {
    /// Years.
    pub age: f32,
    /// Probabilities (male, female).
    pub gender: [f32; 2],
}

/// The imported teacher, run by tract as the device runs its models: optimised for one
/// 112×112 face at a time (a symbolic batch size runs several times slower in tract 0.23.9,
/// see [`agecam::model::age_gender::AgeGenderModel::load`]), on one thread.
pub struct Teacher {
    plan: Arc<TypedRunnableModel>,
    info: ModelInfo,
}

impl Teacher {
    pub fn load(path: &Path) -> Result<Teacher, Error> {
        let err = |e: TractError| {
            model_error(
                path,
                format!(
                    "tract cannot prepare it for a 1x3x{INPUT_SIZE}x{INPUT_SIZE} input ({e:#}); \
                     re-import it with agecam-host import-teacher"
                ),
            )
        };
        let fact = f32::fact([1, 3, INPUT_SIZE, INPUT_SIZE]);
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, fact.into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(Teacher {
            plan,
            info: input_info(),
        })
    }

    /// Outputs for 112×112 RGB crops, in order (run one by one).
    pub fn predict(&self, crops: &[RgbImage]) -> Result<Vec<TeacherOutput>, String> {
        crops.iter().map(|c| self.predict_one(c)).collect()
    }

    /// Outputs for an RGB image of any size, preprocessed as face-api does ([`faceapi_input`]:
    /// pad to a square, resize to 112×112).
    pub fn predict_faceapi(&self, img: &RgbImage) -> Result<TeacherOutput, String> {
        self.run(faceapi_input(img))
    }

    fn predict_one(&self, crop: &RgbImage) -> Result<TeacherOutput, String> {
        self.run(
            self.info
                .input_tensor(std::slice::from_ref(crop))
                .map_err(|e| e.to_string())?,
        )
    }

    fn run(&self, input: Tensor) -> Result<TeacherOutput, String> {
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| format!("tract failed to run the teacher ({e:#})"))?;
        let age = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("age output is not float ({e})"))?;
        let gender = out[1]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("gender output is not float ({e})"))?;
        if age.shape() != [1, 1] || gender.shape() != [1, 2] {
            return Err(format!(
                "outputs have shapes {:?} and {:?}, expected [1, 1] and [1, 2]",
                age.shape(),
                gender.shape()
            ));
        }
        Ok(TeacherOutput {
            age: age[[0, 0]],
            gender: [gender[[0, 0]], gender[[0, 1]]],
        })
    }
}

/// The JSON `benches/teacher_reference/reference.mjs` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// face-api's version as its package.json gives it.
    pub face_api: String,
    /// The TF.js backend used (`wasm` or `cpu`).
    pub backend: String,
    pub results: Vec<ReferenceResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceResult {
    /// The input PNG, relative to the reference file's folder (112×112 crops are fed as they
    /// are; other sizes go through face-api's pad-to-square and resize).
    pub file: String,
    pub age: f32,
    /// Probabilities (male, female).
    pub gender: [f32; 2],
}

/// One face: the teacher in tract next to face-api in Node.
#[derive(Debug, Clone)]
pub struct ComparedFace {
    pub file: String,
    pub tract: TeacherOutput,
    pub node: TeacherOutput,
}

impl ComparedFace {
    /// The largest absolute difference over age (years) and the two probabilities.
    pub fn max_abs_diff(&self) -> f32 {
        let g = (0..2).map(|k| (self.tract.gender[k] - self.node.gender[k]).abs());
        g.fold((self.tract.age - self.node.age).abs(), f32::max)
    }
}

/// The teacher compared with a reference file.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub reference: Reference,
    pub faces: Vec<ComparedFace>,
    /// Median milliseconds per face (batch 1, tract's single thread), when timed.
    pub ms_per_face: Option<f64>,
}

impl Comparison {
    pub fn max_abs_diff(&self) -> f32 {
        self.faces
            .iter()
            .map(ComparedFace::max_abs_diff)
            .fold(0.0, f32::max)
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<40} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "face", "age tract", "age node", "P(m) tr.", "P(m) node", "max |diff|"
        )?;
        for c in &self.faces {
            writeln!(
                f,
                "{:<40} {:>9.4} {:>9.4} {:>9.6} {:>9.6} {:>10.2e}",
                c.file,
                c.tract.age,
                c.node.age,
                c.tract.gender[0],
                c.node.gender[0],
                c.max_abs_diff()
            )?;
        }
        write!(
            f,
            "max abs diff vs face-api {} ({} backend): {:.3e}",
            self.reference.face_api,
            self.reference.backend,
            self.max_abs_diff()
        )?;
        if let Some(ms) = self.ms_per_face {
            write!(
                f,
                "\ntract, 1 thread, batch 1, {INPUT_SIZE} px: {ms:.2} ms per face (median)"
            )?;
        }
        Ok(())
    }
}

/// Runs the teacher at `model` on the images a reference file names (beside it) and compares:
/// 112×112 crops go in as they are, other images through [`faceapi_input`];
/// with `timing_runs` > 0 also times one face that many times.
pub fn compare_with_reference(
    model: &Path,
    reference: &Path,
    timing_runs: usize,
) -> Result<Comparison, Error> {
    let text = std::fs::read_to_string(reference).map_err(|e| Error::Image {
        file: reference.to_path_buf(),
        problem: format!(
            "cannot read the reference outputs ({e}); make them with \
             node benches/teacher_reference/reference.mjs"
        ),
    })?;
    let parsed: Reference = serde_json::from_str(&text).map_err(|e| Error::Image {
        file: reference.to_path_buf(),
        problem: format!("not reference.mjs output ({e})"),
    })?;
    let dir = reference.parent().unwrap_or(Path::new("."));
    let teacher = Teacher::load(model)?;
    let mut crops = Vec::new();
    for r in &parsed.results {
        let file = dir.join(&r.file);
        let img = image::open(&file)
            .map_err(|e| Error::Image {
                file: file.clone(),
                problem: format!(
                    "cannot read this crop named in {} ({e})",
                    reference.display()
                ),
            })?
            .to_rgb8();
        crops.push(img);
    }
    let run_err = |problem: String| model_error(model, problem);
    // A 112×112 crop is the network's input as it is (the device's input path); any other
    // image goes through face-api's preprocessing, replicated here as reference.mjs leaves it
    // to face-api's toBatchTensor.
    let run = |img: &RgbImage| {
        if img.dimensions() == (INPUT_SIZE as u32, INPUT_SIZE as u32) {
            teacher.predict_one(img)
        } else {
            teacher.predict_faceapi(img)
        }
        .map_err(run_err)
    };
    let mut faces = Vec::new();
    for (r, crop) in parsed.results.iter().zip(&crops) {
        faces.push(ComparedFace {
            file: r.file.clone(),
            tract: run(crop)?,
            node: TeacherOutput {
                age: r.age,
                gender: r.gender,
            },
        });
    }
    let ms_per_face = if timing_runs > 0 && !crops.is_empty() {
        for _ in 0..3 {
            run(&crops[0])?;
        }
        let mut times = Vec::with_capacity(timing_runs);
        for _ in 0..timing_runs {
            let t = std::time::Instant::now();
            run(&crops[0])?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Some(times[times.len() / 2])
    } else {
        None
    };
    Ok(Comparison {
        reference: parsed,
        faces,
        ms_per_face,
    })
}

/// The face crops the comparison feeds both sides: for each image, the largest face the
/// device's detector finds, cut by the device's crop code in `framing` at 112×112 and
/// written as `<image stem>.png` into `out`. Returns the written files; an image without a
/// face is an error naming it.
pub fn write_face_crops(
    images: &[PathBuf],
    detector: &mut dyn FaceDetector,
    framing: Framing,
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::Output {
        path: out.to_path_buf(),
        problem: format!("cannot create the folder ({e})"),
    })?;
    let mut written = Vec::new();
    for path in images {
        let img = image::open(path)
            .map_err(|e| Error::Image {
                file: path.clone(),
                problem: format!("cannot read it ({e})"),
            })?
            .to_rgb8();
        let face = agecam::vision::largest_faces(detector.detect(&img), 1)
            .pop()
            .ok_or_else(|| Error::Image {
                file: path.clone(),
                problem: "the face detector finds no face in it; give photos with a face".into(),
            })?;
        let crop = framing.crop(&img, &face, INPUT_SIZE as u32);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "crop".to_string());
        let file = out.join(format!("{stem}.png"));
        crop.save(&file).map_err(|e| Error::Output {
            path: file.clone(),
            problem: format!("cannot write the crop ({e})"),
        })?;
        written.push(file);
    }
    Ok(written)
}

pub use crate::crops::TEACHER_LABELS as CACHE_LABELS;

/// The face box's share of a cached crop's side: crops are cut around the detector's box with
/// `margin` on each side ([`agecam::vision::crop::crop_square`]).
pub fn tight_share(margin: f32) -> f32 {
    1.0 / (1.0 + 2.0 * margin)
}

/// The teacher's answers for every crop of a cache (`labels.csv`), written to
/// `CACHE/teacher.csv`. Each crop is cut back to the detector's box (the tight framing
/// face-api was trained on; on the cache's looser framing it misjudges more faces) and
/// preprocessed as face-api does. Returns how many crops were labelled.
pub fn label_cache(
    teacher: &Teacher,
    cache: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<usize, Error> {
    let fail = |path: &Path, problem: String| model_error(path, problem);
    let labels = crate::crops::read_labels(cache)
        .map_err(|e| fail(&cache.join("labels.csv"), format!("{e:#}")))?;
    let margin = crate::crops::cache_margin(cache).unwrap_or(0.25);
    let share = tight_share(margin);
    let mut text = String::from("crop,age,p_female\n");
    for (i, entry) in labels.iter().enumerate() {
        progress(i, labels.len());
        let path = cache.join("crops").join(&entry.crop);
        let img = image::open(&path)
            .map_err(|e| {
                fail(
                    &path,
                    format!("cannot read the crop ({e}); remake the cache with agecam-host crops"),
                )
            })?
            .to_rgb8();
        let side = (img.width() as f32 * share).round().max(1.0) as u32;
        let off = (img.width() - side.min(img.width())) / 2;
        let tight = image::imageops::crop_imm(&img, off, off, side, side).to_image();
        let out = teacher
            .predict_faceapi(&tight)
            .map_err(|problem| fail(&path, problem))?;
        // The teacher's age is a regression and can fall just outside the ages the student
        // learns (a baby's face gave -0.05 years): kept within them, 0-100.
        text.push_str(&format!(
            "{},{:.3},{:.5}\n",
            entry.crop,
            out.age.clamp(0.0, 100.0),
            out.gender[1]
        ));
    }
    let dest = cache.join(CACHE_LABELS);
    let tmp = cache.join(format!("{CACHE_LABELS}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| fail(&dest, format!("cannot write it ({e}); check the disk")))?;
    Ok(labels.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tensor to put into a test manifest: float32, or uint8 with (scale, min).
    struct Spec {
        name: String,
        shape: Vec<usize>,
        quantized: Option<(Vec<u8>, f64, f64)>,
        float: Vec<f32>,
    }

    /// Writes `model-weights_manifest.json` and `model.bin` into `dir`; returns the manifest.
    fn write_manifest(dir: &Path, specs: &[Spec], extra_bytes: usize) -> PathBuf {
        let mut bin = Vec::new();
        let mut weights = Vec::new();
        for s in specs {
            match &s.quantized {
                Some((q, scale, min)) => {
                    bin.extend_from_slice(q);
                    weights.push(json!({"name": s.name, "shape": s.shape, "dtype": "float32",
                        "quantization": {"dtype": "uint8", "scale": scale, "min": min}}));
                }
                None => {
                    bin.extend(s.float.iter().flat_map(|v| v.to_le_bytes()));
                    weights.push(json!({"name": s.name, "shape": s.shape, "dtype": "float32"}));
                }
            }
        }
        bin.extend(std::iter::repeat_n(0u8, extra_bytes));
        std::fs::write(dir.join("model.bin"), bin).unwrap();
        let manifest = dir.join("model-weights_manifest.json");
        let text = json!([{"paths": ["model.bin"], "weights": weights}]).to_string();
        std::fs::write(&manifest, text).unwrap();
        manifest
    }

    fn err_text(r: Result<TfjsWeights, Error>) -> String {
        r.expect_err("must be refused").to_string()
    }

    #[test]
    fn dequantizes_uint8_and_reads_float32() {
        let dir = tempfile::tempdir().unwrap();
        let specs = [
            Spec {
                name: "a/filters".into(),
                shape: vec![1, 1, 2, 3],
                quantized: Some((vec![0, 1, 2, 3, 4, 255], 0.5, -1.0)),
                float: vec![],
            },
            Spec {
                name: "a/bias".into(),
                shape: vec![2],
                quantized: None,
                float: vec![1.5, -2.25],
            },
            Spec {
                name: "b".into(),
                shape: vec![1],
                // 0.1 is not exact in binary: q·scale + min in f64, then rounded to f32.
                quantized: Some((vec![3], 0.1, -0.2)),
                float: vec![],
            },
        ];
        let w = read_tfjs_weights(&write_manifest(dir.path(), &specs, 0)).unwrap();
        assert_eq!(w.tensors.len(), 3);
        let a = &w.tensors["a/filters"];
        assert_eq!(a.shape, [1, 1, 2, 3]);
        // min + q·scale by hand: −1 + 0.5·q.
        assert_eq!(a.values, [-1.0, -0.5, 0.0, 0.5, 1.0, 126.5]);
        assert_eq!(w.tensors["a/bias"].values, [1.5, -2.25]);
        assert_eq!(w.tensors["b"].values, [(3.0f64 * 0.1 - 0.2) as f32]);
        assert_eq!(w.files.len(), 1);
        assert_eq!(w.files[0].0, "model.bin");

        // HWIO [1,1,2,3] (i, o) → OIHW [3,2,1,1]: out[o][i] = in[i][o].
        assert_eq!(
            hwio_to_oihw(&a.values, 1, 1, 2, 3),
            [-1.0, 0.5, -0.5, 1.0, 0.0, 126.5]
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
        // TF SAME: out = ceil(in / s); the odd pad at the end.
        assert_eq!(same_pads(112, 3, 2), (0, 1, 56));
        assert_eq!(same_pads(56, 3, 1), (1, 1, 56));
        assert_eq!(same_pads(56, 1, 2), (0, 0, 28));
        assert_eq!(same_pads(7, 3, 2), (1, 1, 4));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let good = Spec {
            name: "t/bias".into(),
            shape: vec![2],
            quantized: None,
            float: vec![1.0, 2.0],
        };
        // Bytes after the last tensor: the .bin is not this manifest's.
        let m = write_manifest(dir.path(), std::slice::from_ref(&good), 3);
        let e = err_text(read_tfjs_weights(&m));
        assert!(
            e.contains("model.bin") && e.contains("t/bias") && e.contains("11 bytes"),
            "{e}"
        );
        // Truncated .bin.
        let m = write_manifest(dir.path(), std::slice::from_ref(&good), 0);
        let bin = dir.path().join("model.bin");
        std::fs::write(&bin, [0u8; 5]).unwrap();
        let e = err_text(read_tfjs_weights(&m));
        assert!(
            e.contains("model.bin") && e.contains("`t/bias`") && e.contains("runs past"),
            "{e}"
        );
        // Another dtype and another quantization.
        for (dtype, quant, what) in [
            ("int32", None, "dtype `int32`"),
            ("float32", Some("float16"), "quantized to `float16`"),
            ("float32", Some("uint16"), "quantized to `uint16`"),
        ] {
            let mut entry = json!({"name": "odd/tensor", "shape": [2], "dtype": dtype});
            if let Some(q) = quant {
                entry["quantization"] = json!({"dtype": q, "scale": 1.0, "min": 0.0});
            }
            std::fs::write(&bin, [0u8; 8]).unwrap();
            std::fs::write(
                &m,
                json!([{"paths": ["model.bin"], "weights": [entry]}]).to_string(),
            )
            .unwrap();
            let e = err_text(read_tfjs_weights(&m));
            assert!(
                e.contains("model-weights_manifest.json")
                    && e.contains("odd/tensor")
                    && e.contains(what),
                "{e}"
            );
        }
        // uint8 without min.
        std::fs::write(
            &m,
            json!([{"paths": ["model.bin"], "weights": [{"name": "q", "shape": [2],
                "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1.0}}]}])
            .to_string(),
        )
        .unwrap();
        let e = err_text(read_tfjs_weights(&m));
        assert!(e.contains("`q`") && e.contains("min"), "{e}");
        // An unknown field.
        std::fs::write(
            &m,
            json!([{"paths": ["model.bin"], "weights": [{"name": "q", "shape": [2],
                "dtype": "float32", "group": "x"}]}])
            .to_string(),
        )
        .unwrap();
        let e = err_text(read_tfjs_weights(&m));
        assert!(e.contains("group"), "{e}");
        // A missing .bin.
        let m = write_manifest(dir.path(), std::slice::from_ref(&good), 0);
        std::fs::remove_file(&bin).unwrap();
        let e = err_text(read_tfjs_weights(&m));
        assert!(e.contains("model.bin") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn faceapi_preprocessing_by_hand() {
        let mean = MEAN_RGB_255.map(|m| m / 255.0);
        let at = |t: &Tensor, c: usize, y: usize, x: usize| {
            t.to_plain_array_view::<f32>().unwrap()[[0, c, y, x]]
        };
        // 3 wide, 2 high: one row of zeros appended below (round(1 · 0.5) = 1 after, 0 before),
        // then 3 → 112: output row r samples source row r · 3/112.
        let img = RgbImage::from_fn(3, 2, |x, y| {
            image::Rgb([(100 + 10 * x + 50 * y) as u8, 0, 255])
        });
        let t = faceapi_input(&img);
        assert_eq!(t.shape(), [1, 3, 112, 112]);
        let px = |v: f32, c: usize| v / 255.0 - mean[c];
        // (0, 0): source (0, 0) exactly.
        assert!((at(&t, 0, 0, 0) - px(100.0, 0)).abs() < 1e-6);
        // Row 56 → source row 1.5: halfway between row 1 (150) and the zero row; column 0.
        assert!((at(&t, 0, 56, 0) - px(75.0, 0)).abs() < 1e-6);
        // Row 111 → 2.97: floor 2 and ceil clamped to 2, the zero row.
        assert!((at(&t, 2, 111, 0) - px(0.0, 2)).abs() < 1e-6);
        // Column 56 of row 0 → source column 1.5 of row 0: between 110 and 120.
        assert!((at(&t, 0, 0, 56) - px(115.0, 0)).abs() < 1e-5);
        // Blue is 255 wherever the image is, green 0.
        assert!((at(&t, 2, 0, 100) - px(255.0, 2)).abs() < 1e-6);
        assert!((at(&t, 1, 20, 20) - px(0.0, 1)).abs() < 1e-6);

        // 1 wide, 3 high: a zero column each side (difference 2: 1 after, 1 before).
        let img = RgbImage::from_pixel(1, 3, image::Rgb([200, 200, 200]));
        let t = faceapi_input(&img);
        // Column 0 → source column 0, the left padding; column 38 → 1.018: mostly the image.
        assert!((at(&t, 0, 0, 0) - px(0.0, 0)).abs() < 1e-6);
        let f = (38.0f64 * 3.0 / 112.0 - 1.0) as f32; // towards the right padding
        assert!((at(&t, 0, 0, 38) - px(200.0 * (1.0 - f), 0)).abs() < 1e-4);

        // A 112×112 crop: no padding or resizing, the device's own input tensor.
        let crop = RgbImage::from_fn(112, 112, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let device = input_info()
            .input_tensor(std::slice::from_ref(&crop))
            .unwrap();
        let ours = faceapi_input(&crop);
        let (a, b) = (
            device.to_plain_array_view::<f32>().unwrap().to_owned(),
            ours.to_plain_array_view::<f32>().unwrap().to_owned(),
        );
        let worst = a
            .iter()
            .zip(b.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "{worst}");
    }

    // ---- A tiny TinyXception + heads, imported and run by tract, against a direct
    // ---- NHWC implementation of the TF.js code (TF SAME padding, HWIO filters).

    /// Deterministic pseudo-random bytes.
    fn bytes(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 56) as u8
            })
            .collect()
    }

    /// Channels of the tiny network: conv_in, reduction 0, reduction 1 (= main blocks),
    /// exit reduction, exit separable.
    const C: [usize; 5] = [4, 5, 6, 7, 8];

    /// Collects test tensors in manifest order.
    struct SpecList {
        seed: u64,
        specs: Vec<Spec>,
    }

    impl SpecList {
        /// A uint8 filter or FC weight: He-uniform ranges, so the signal neither dies nor
        /// explodes over the layers; the heads scaled so that both outputs move visibly with
        /// the input without saturating.
        fn quantized(&mut self, name: &str, shape: Vec<usize>) {
            let n = shape.iter().product();
            let fan_in: usize = if name.ends_with("depthwise_filter") {
                shape[0] * shape[1]
            } else {
                shape[..shape.len() - 1].iter().product()
            };
            let head = match name {
                "fc/age/weights" => 4.0,
                "fc/gender/weights" => 0.05,
                _ => 1.0,
            };
            let a = head * (6.0 / fan_in as f64).sqrt();
            let q = bytes(&mut self.seed, n);
            self.specs.push(Spec {
                name: name.to_string(),
                shape,
                quantized: Some((q, 2.0 * a / 255.0, -a)),
                float: vec![],
            });
        }

        /// A float32 bias.
        fn bias(&mut self, name: &str, n: usize) {
            self.specs.push(Spec {
                name: name.to_string(),
                shape: vec![n],
                quantized: None,
                float: (0..n).map(|i| 0.05 * (i as f32) - 0.1).collect(),
            });
        }

        fn separable(&mut self, p: &str, cin: usize, cout: usize) {
            self.quantized(&format!("{p}/depthwise_filter"), vec![3, 3, cin, 1]);
            self.quantized(&format!("{p}/pointwise_filter"), vec![1, 1, cin, cout]);
            self.bias(&format!("{p}/bias"), cout);
        }
    }

    /// The tensor list of face-api's manifest with small channel counts. Filters are uint8
    /// (scaled so activations stay moderate), biases float32.
    fn tiny_specs() -> Vec<Spec> {
        let mut b = SpecList {
            seed: 7,
            specs: Vec::new(),
        };
        b.quantized("entry_flow/conv_in/filters", vec![3, 3, 3, C[0]]);
        b.bias("entry_flow/conv_in/bias", C[0]);
        let reductions = [
            ("entry_flow/reduction_block_0", C[0], C[1]),
            ("entry_flow/reduction_block_1", C[1], C[2]),
            ("exit_flow/reduction_block", C[2], C[3]),
        ];
        for (i, (p, cin, cout)) in reductions.into_iter().enumerate() {
            b.separable(&format!("{p}/separable_conv0"), cin, cout);
            b.separable(&format!("{p}/separable_conv1"), cout, cout);
            b.quantized(
                &format!("{p}/expansion_conv/filters"),
                vec![1, 1, cin, cout],
            );
            b.bias(&format!("{p}/expansion_conv/bias"), cout);
            if i == 1 {
                for m in 0..MAIN_BLOCKS {
                    for k in 0..3 {
                        let p = format!("middle_flow/main_block_{m}/separable_conv{k}");
                        b.separable(&p, C[2], C[2]);
                    }
                }
            }
        }
        b.separable("exit_flow/separable_conv", C[3], C[4]);
        b.quantized("fc/age/weights", vec![C[4], 1]);
        b.specs.push(Spec {
            name: "fc/age/bias".into(),
            shape: vec![1],
            quantized: None,
            float: vec![30.0],
        });
        b.quantized("fc/gender/weights", vec![C[4], 2]);
        b.bias("fc/gender/bias", 2);
        b.specs
    }

    /// NHWC activation of the direct implementation.
    #[derive(Clone)]
    struct Nhwc {
        s: usize,
        c: usize,
        v: Vec<f32>,
    }

    impl Nhwc {
        fn at(&self, y: usize, x: usize, c: usize) -> f32 {
            self.v[(y * self.s + x) * self.c + c]
        }
    }

    /// TF: out = ceil(in / s), pad_total = max((out − 1)·s + k − in, 0), top = total / 2.
    fn tf_same(size: usize, k: usize, s: usize) -> (usize, isize) {
        let out = size.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(size);
        (out, (total / 2) as isize)
    }

    /// `tf.conv2d(x, hwio, stride, 'same') + bias` (group 1) or, with `depthwise`, the
    /// depthwise conv of a `[k, k, C, 1]` filter without bias.
    fn conv(
        x: &Nhwc,
        w: &TfjsTensor,
        bias: Option<&TfjsTensor>,
        stride: usize,
        depthwise: bool,
    ) -> Nhwc {
        let k = w.shape[0];
        let cout = if depthwise { x.c } else { w.shape[3] };
        let (out, pad) = tf_same(x.s, k, stride);
        let mut v = vec![0f32; out * out * cout];
        for oy in 0..out {
            for ox in 0..out {
                for o in 0..cout {
                    let mut sum = bias.map_or(0.0, |b| b.values[o]);
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - pad;
                            let ix = (ox * stride + kx) as isize - pad;
                            if iy < 0 || ix < 0 || iy >= x.s as isize || ix >= x.s as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            if depthwise {
                                sum += x.at(iy, ix, o) * w.values[(ky * k + kx) * x.c + o];
                            } else {
                                for i in 0..x.c {
                                    sum += x.at(iy, ix, i)
                                        * w.values[((ky * k + kx) * x.c + i) * cout + o];
                                }
                            }
                        }
                    }
                    v[(oy * out + ox) * cout + o] = sum;
                }
            }
        }
        Nhwc { s: out, c: cout, v }
    }

    fn relu(x: &Nhwc) -> Nhwc {
        Nhwc {
            v: x.v.iter().map(|v| v.max(0.0)).collect(),
            ..x.clone()
        }
    }

    fn add(a: &Nhwc, b: &Nhwc) -> Nhwc {
        assert_eq!((a.s, a.c), (b.s, b.c));
        Nhwc {
            v: a.v.iter().zip(&b.v).map(|(a, b)| a + b).collect(),
            ..a.clone()
        }
    }

    /// `tf.maxPool(x, 3, 2, 'same')`: padded positions are not candidates.
    fn max_pool(x: &Nhwc) -> Nhwc {
        let (out, pad) = tf_same(x.s, 3, 2);
        let mut v = vec![f32::NEG_INFINITY; out * out * x.c];
        for oy in 0..out {
            for ox in 0..out {
                for c in 0..x.c {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (oy * 2 + ky) as isize - pad;
                            let ix = (ox * 2 + kx) as isize - pad;
                            if iy >= 0 && ix >= 0 && iy < x.s as isize && ix < x.s as isize {
                                let m = &mut v[(oy * out + ox) * x.c + c];
                                *m = m.max(x.at(iy as usize, ix as usize, c));
                            }
                        }
                    }
                }
            }
        }
        Nhwc { s: out, c: x.c, v }
    }

    /// face-api's forward pass on one NHWC image already normalised.
    fn direct_forward(w: &TfjsWeights, input: &Nhwc) -> (f32, [f32; 2]) {
        let t = |n: &str| &w.tensors[n];
        let sep = |x: &Nhwc, p: &str| {
            let d = conv(x, t(&format!("{p}/depthwise_filter")), None, 1, true);
            conv(
                &d,
                t(&format!("{p}/pointwise_filter")),
                Some(t(&format!("{p}/bias"))),
                1,
                false,
            )
        };
        let reduction = |x: &Nhwc, p: &str, activate: bool| {
            let mut out = if activate { relu(x) } else { x.clone() };
            out = sep(&out, &format!("{p}/separable_conv0"));
            out = sep(&relu(&out), &format!("{p}/separable_conv1"));
            out = max_pool(&out);
            let e = conv(
                x,
                t(&format!("{p}/expansion_conv/filters")),
                Some(t(&format!("{p}/expansion_conv/bias"))),
                2,
                false,
            );
            add(&out, &e)
        };
        let mut x = relu(&conv(
            input,
            t("entry_flow/conv_in/filters"),
            Some(t("entry_flow/conv_in/bias")),
            2,
            false,
        ));
        x = reduction(&x, "entry_flow/reduction_block_0", false);
        x = reduction(&x, "entry_flow/reduction_block_1", true);
        for b in 0..MAIN_BLOCKS {
            let p = format!("middle_flow/main_block_{b}");
            let mut out = x.clone();
            for k in 0..3 {
                out = sep(&relu(&out), &format!("{p}/separable_conv{k}"));
            }
            x = add(&out, &x);
        }
        x = reduction(&x, "exit_flow/reduction_block", true);
        x = relu(&sep(&x, "exit_flow/separable_conv"));
        assert_eq!(x.s, 7);
        let pooled: Vec<f32> = (0..x.c)
            .map(|c| (0..49).map(|i| x.v[i * x.c + c]).sum::<f32>() / 49.0)
            .collect();
        let fc = |p: &str, n: usize| -> Vec<f32> {
            let (wt, b) = (t(&format!("{p}/weights")), t(&format!("{p}/bias")));
            (0..n)
                .map(|o| {
                    b.values[o]
                        + pooled
                            .iter()
                            .enumerate()
                            .map(|(i, v)| v * wt.values[i * n + o])
                            .sum::<f32>()
                })
                .collect()
        };
        let age = fc("fc/age", 1)[0];
        let g = fc("fc/gender", 2);
        let m = g[0].max(g[1]);
        let e = [(g[0] - m).exp(), (g[1] - m).exp()];
        (age, [e[0] / (e[0] + e[1]), e[1] / (e[0] + e[1])])
    }

    #[test]
    fn tiny_network_matches_a_direct_implementation_of_face_api() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = write_manifest(dir.path(), &tiny_specs(), 0);
        let onnx = dir.path().join("teacher.onnx");
        let summary = import_teacher(&manifest, &onnx).unwrap();
        assert!(!summary.is_1_7_15);
        let teacher = Teacher::load(&onnx).unwrap();
        let weights = read_tfjs_weights(&manifest).unwrap();

        // Two crops, one asymmetric so a transposed layout would show.
        let s = INPUT_SIZE as u32;
        let crops = [
            RgbImage::from_fn(s, s, |x, y| {
                image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x * y) % 251) as u8])
            }),
            RgbImage::from_fn(s, s, |x, y| {
                image::Rgb([((x + 3 * y) % 256) as u8, 200, (255 - y * 2) as u8])
            }),
        ];
        let got = teacher.predict(&crops).unwrap();
        for (crop, got) in crops.iter().zip(&got) {
            // face-api's normalisation: (x − mean) / 255, NHWC.
            let v = crop
                .pixels()
                .flat_map(|p| (0..3).map(move |c| (p.0[c] as f32 - MEAN_RGB_255[c]) / 255.0))
                .collect();
            let (age, gender) = direct_forward(
                &weights,
                &Nhwc {
                    s: INPUT_SIZE,
                    c: 3,
                    v,
                },
            );
            assert!((got.age - age).abs() < 1e-3, "age {} vs {age}", got.age);
            for k in 0..2 {
                assert!(
                    (got.gender[k] - gender[k]).abs() < 1e-4,
                    "gender {:?} vs {gender:?}",
                    got.gender
                );
            }
            assert!((got.gender[0] + got.gender[1] - 1.0).abs() < 1e-5);
        }
        // The two crops must not give the same output, or the check above proves little.
        assert!((got[0].age - got[1].age).abs() > 0.1, "{got:?}");
        assert!(
            (got[0].gender[0] - got[1].gender[0]).abs() > 0.01,
            "{got:?}"
        );
    }

    #[test]
    fn import_refuses_missing_extra_and_misshapen_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let mut specs = tiny_specs();
        specs.retain(|s| s.name != "fc/gender/bias");
        let m = write_manifest(dir.path(), &specs, 0);
        let e = build_teacher_onnx(&read_tfjs_weights(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`fc/gender/bias` is missing") && e.contains("manifest.json"),
            "{e}"
        );

        let mut specs = tiny_specs();
        specs.push(Spec {
            name: "middle_flow/main_block_2/separable_conv0/bias".into(),
            shape: vec![1],
            quantized: None,
            float: vec![0.0],
        });
        let m = write_manifest(dir.path(), &specs, 0);
        let e = build_teacher_onnx(&read_tfjs_weights(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("main_block_2") && e.contains("not part of"),
            "{e}"
        );

        let mut specs = tiny_specs();
        let age = specs
            .iter_mut()
            .find(|s| s.name == "fc/age/weights")
            .unwrap();
        age.shape = vec![1, C[4]];
        let m = write_manifest(dir.path(), &specs, 0);
        let e = build_teacher_onnx(&read_tfjs_weights(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`fc/age/weights` has shape [1, 8]"), "{e}");
    }

    #[test]
    fn metadata_documents_input_and_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = write_manifest(dir.path(), &tiny_specs(), 0);
        let bytes = build_teacher_onnx(&read_tfjs_weights(&manifest).unwrap()).unwrap();
        let model = tract_onnx::onnx()
            .proto_model_for_read(&mut bytes.as_slice())
            .unwrap();
        let meta: BTreeMap<&str, &str> = model
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(meta[keys::INPUT_SIZE], "112");
        assert_eq!(meta[keys::STD], "1,1,1");
        assert_eq!(meta[keys::GENDER_LABELS], "male,female");
        let mean: Vec<f32> = meta[keys::MEAN]
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(
            (mean[0] * 255.0 - 122.782).abs() < 1e-4 && (mean[2] * 255.0 - 104.298).abs() < 1e-4
        );
        assert!(meta[teacher_keys::DATA].contains("non-commercial"));
        for set in [
            "UTK", "FGNET", "ChaLearn", "Wiki", "IMDB", "CACD", "MegaAge",
        ] {
            assert!(meta[teacher_keys::DATA].contains(set), "{set}");
        }
        // Not the 1.7.15 file, so not labelled as it.
        assert!(!meta[teacher_keys::TEACHER].contains("1.7.15 (MIT)"));
        assert!(meta[teacher_keys::SOURCE_SHA256].starts_with("model.bin sha256 "));
        let g = model.graph.unwrap();
        let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, [AGE_OUTPUT, GENDER_OUTPUT]);
        assert_eq!(g.input[0].name, "input");
    }
}
