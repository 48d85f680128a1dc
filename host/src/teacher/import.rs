//! The importer: face-api's age/gender network (TinyXception(2) and the two heads) built as an
//! ONNX graph from its TF.js weights with the device's [`GraphBuilder`], with the metadata the
//! device and the distillation read, and written to a file.

use super::tfjs::{read_tfjs_weights, TfjsTensor, TfjsWeights};
use super::{
    model_error, teacher_keys, BIN_SHA256_1_7_15, INPUT_SIZE, MAIN_BLOCKS, MEAN_RGB_255, TEACHER,
    TRAINING_DATA,
};
use crate::onnx_kit::{depthwise_to_onnx, hwio_to_oihw, same_pads};
use agecam::model::age_gender::{keys, AGE_OUTPUT, GENDER_OUTPUT};
use agecam::model::onnx_build::{Attr, GraphBuilder};
use agecam::Error;
use std::collections::BTreeSet;
use std::path::Path;

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
