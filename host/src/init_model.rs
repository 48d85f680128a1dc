//! `train --init-model`: start a MobileNetV2 from an age/gender model this tool exported
//! (`agecam-host export`'s float ONNX, e.g. a shipped `models/age_gender_*_f32.onnx`).
//!
//! The export folded each BatchNorm into its convolution and wrote the 52 convolutions in
//! network order, then the age and the gender `Gemm` heads. So the model is read the way
//! [`crate::tflite::init`] reads ImageNet weights: the k-th `Conv` initialises our k-th
//! convolution (BatchNorm γ = 1, β = the folded bias, mean 0, variance 1), a narrower
//! `--width` keeps each layer's leading channels, and the heads (1,280 features at every width)
//! are copied whole. The trainer then re-calibrates the BatchNorms on a batch of training crops
//! ([`crate::mobilenet_v2::MobileNetV2::calibrate_bn`]) so training starts from the model's
//! function. The input size may differ from the model's: no layer depends on it.
//!
//! What the weights learnt from travels with them: the trainer turns the model's
//! `agecam.training_data` metadata into the new checkpoint's lineage (and so its licence).

use crate::mobilenet_v2::MobileNetV2;
use crate::quantize::{attr_int, floats};
use crate::tflite::init::{apply, TfliteConv};
use agecam::model::age_gender::ModelInfo;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor, Var};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;
use tract_onnx::pb;

/// What an exported model holds for `--init-model`.
#[derive(Debug)]
pub struct ExportedModel {
    /// The convolutions (BatchNorm folded in) in network order, in our layout.
    pub convs: Vec<TfliteConv>,
    /// `(weight [n, features], bias [n])` of the age head, then the gender head.
    pub heads: Vec<(Vec<f32>, [usize; 2], Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl ExportedModel {
    /// Reads `path`; errors name the file and what is missing.
    pub fn read(path: &Path) -> Result<ExportedModel> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read --init-model {}", path.display()))?;
        let model = pb::ModelProto::decode(bytes.as_slice()).with_context(|| {
            format!(
                "--init-model {} is not an ONNX model (give the float model agecam-host export wrote)",
                path.display()
            )
        })?;
        let graph = model.graph.as_ref().with_context(|| {
            format!(
                "--init-model {}: the ONNX file has no graph",
                path.display()
            )
        })?;
        let inits: HashMap<&str, &pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let get = |node: &pb::NodeProto, k: usize| -> Result<(Vec<f32>, Vec<usize>)> {
            let name = node.input.get(k).map(String::as_str).unwrap_or("");
            let t = inits.get(name).with_context(|| {
                format!(
                    "{} node {}: input {k} `{name}` is not an initializer (a quantized model? give the float one)",
                    node.op_type, node.name
                )
            })?;
            Ok((floats(t)?, t.dims.iter().map(|d| *d as usize).collect()))
        };
        let mut convs = Vec::new();
        let mut heads = Vec::new();
        for node in &graph.node {
            match node.op_type.as_str() {
                "Conv" => {
                    let (weight, d) = get(node, 1)?;
                    ensure!(d.len() == 4, "Conv {}: weight shape {d:?} is not 4-D", node.name);
                    let group = attr_int(node, "group").unwrap_or(1);
                    let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
                        Some(_) => get(node, 2)?.0,
                        None => vec![0.0; d[0]],
                    };
                    convs.push(TfliteConv {
                        depthwise: group > 1,
                        dims: [d[0], d[1], d[2], d[3]],
                        weight,
                        bias,
                    });
                }
                "Gemm" => {
                    ensure!(
                        attr_int(node, "transB") == Some(1),
                        "Gemm {}: expected transB = 1 as agecam-host export writes it",
                        node.name
                    );
                    let (w, d) = get(node, 1)?;
                    let (b, _) = get(node, 2)?;
                    ensure!(d.len() == 2 && b.len() == d[0], "Gemm {}: shapes {d:?} / {}", node.name, b.len());
                    heads.push((w, [d[0], d[1]], b));
                }
                "DequantizeLinear" | "QLinearConv" => bail!(
                    "--init-model {}: a quantized model; give the float (f32) model it was made from",
                    path.display()
                ),
                _ => {}
            }
        }
        ensure!(
            heads.len() == 2,
            "--init-model {}: {} Gemm heads, expected 2 (age, gender): is it an agecam age/gender model?",
            path.display(),
            heads.len()
        );
        let metadata = model
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        Ok(ExportedModel {
            convs,
            heads,
            metadata,
        })
    }

    /// Loads the convolutions and heads into `net` (thinned to its width); returns how many
    /// convolutions were loaded. Shapes are all checked before anything changes.
    pub fn apply(&self, net: &MobileNetV2) -> Result<usize> {
        let heads = [&net.age_head, &net.gender_head];
        for (head, (_, d, _)) in heads.iter().zip(&self.heads) {
            let want = head.weight().dims();
            ensure!(
                want == d,
                "the model's head is {d:?}, our network's {want:?}: not the same head layout"
            );
        }
        let loaded = apply(net, &self.convs)?;
        let dev = Device::Cpu;
        for (head, (w, d, b)) in heads.iter().zip(&self.heads) {
            Var::from_tensor(head.weight())?.set(&Tensor::from_vec(
                w.clone(),
                d.to_vec(),
                &dev,
            )?)?;
            let bias = head.bias().context("our head has no bias")?;
            Var::from_tensor(bias)?.set(&Tensor::from_vec(b.clone(), d[0], &dev)?)?;
        }
        Ok(loaded)
    }

    /// The model's input contract (size, normalisation, age bins) read by the device's one
    /// metadata reader, [`ModelInfo::from_properties`], as tract would hand it the metadata.
    pub fn info(&self) -> Result<ModelInfo> {
        let props = self
            .metadata
            .iter()
            .map(|(k, v)| {
                let text = tract_onnx::prelude::tensor0(v.clone());
                (
                    format!("onnx.metadata_props.{k}"),
                    std::sync::Arc::new(text),
                )
            })
            .collect();
        ModelInfo::from_properties(&props).map_err(anyhow::Error::msg)
    }

    /// What the model's `agecam.training_data` says its weights learnt from: the names as the
    /// export wrote them (datasets, e.g. `UTKFace`, and `distilled from the face-api teacher`).
    pub fn training_data(&self) -> Result<Vec<&str>> {
        let data = self.metadata.get("agecam.training_data").context(
            "the model has no agecam.training_data metadata: where its weights come from is unknown",
        )?;
        Ok(data.split(" + ").map(str::trim).collect())
    }
}
