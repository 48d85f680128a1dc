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
use crate::onnx_kit::OnnxError;
use crate::onnx_kit::{attr_int, floats};
use crate::tflite::init::InitError;
use crate::tflite::init::{apply, TfliteConv};
use agecam::model::age_gender::ModelInfo;
use candle_core::{Device, Tensor, Var};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tract_onnx::pb;

/// Why an exported model cannot start a new one (`--init-model`): the file and what in it.
#[derive(Debug, thiserror::Error)]
pub enum InitModelError {
    #[error("cannot read --init-model {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--init-model {} is not an ONNX model (give the float model agecam-host export wrote)",
        path.display()
    )]
    NotOnnx {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
    #[error("--init-model {}: the ONNX file has no graph", path.display())]
    NoGraph { path: PathBuf },
    #[error(
        "{op} node {node}: input {input} `{name}` is not an initializer (a quantized model? give the float one)"
    )]
    NotInitializer {
        op: String,
        node: String,
        input: usize,
        name: String,
    },
    #[error("Conv {node}: weight shape {dims:?} is not 4-D")]
    ConvShape { node: String, dims: Vec<usize> },
    #[error("Gemm {node}: expected transB = 1 as agecam-host export writes it")]
    GemmTransB { node: String },
    #[error("Gemm {node}: shapes {dims:?} / {bias}")]
    GemmShapes {
        node: String,
        dims: Vec<usize>,
        bias: usize,
    },
    #[error(
        "--init-model {}: a quantized model; give the float (f32) model it was made from",
        path.display()
    )]
    Quantized { path: PathBuf },
    #[error(
        "--init-model {}: {heads} Gemm heads, expected 2 (age, gender): is it an agecam age/gender model?",
        path.display()
    )]
    Heads { path: PathBuf, heads: usize },
    #[error("the model's head is {theirs:?}, our network's {ours:?}: not the same head layout")]
    HeadLayout {
        theirs: [usize; 2],
        ours: Vec<usize>,
    },
    #[error("our head has no bias")]
    NoHeadBias,
    /// The model's metadata, as the device's reader refuses it.
    #[error("{0}")]
    Info(agecam::model::age_gender::MetadataError),
    #[error(
        "the model has no agecam.training_data metadata: where its weights come from is unknown"
    )]
    NoTrainingData,
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

type Result<T> = std::result::Result<T, InitModelError>;

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
        let bytes = std::fs::read(path).map_err(|source| InitModelError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let model =
            pb::ModelProto::decode(bytes.as_slice()).map_err(|source| InitModelError::NotOnnx {
                path: path.to_path_buf(),
                source,
            })?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| InitModelError::NoGraph {
                path: path.to_path_buf(),
            })?;
        let inits: HashMap<&str, &pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let get = |node: &pb::NodeProto, k: usize| -> Result<(Vec<f32>, Vec<usize>)> {
            let name = node.input.get(k).map(String::as_str).unwrap_or("");
            let t = inits
                .get(name)
                .ok_or_else(|| InitModelError::NotInitializer {
                    op: node.op_type.clone(),
                    node: node.name.clone(),
                    input: k,
                    name: name.to_string(),
                })?;
            Ok((floats(t)?, t.dims.iter().map(|d| *d as usize).collect()))
        };
        let mut convs = Vec::new();
        let mut heads = Vec::new();
        for node in &graph.node {
            match node.op_type.as_str() {
                "Conv" => {
                    let (weight, d) = get(node, 1)?;
                    if d.len() != 4 {
                        return Err(InitModelError::ConvShape {
                            node: node.name.clone(),
                            dims: d,
                        });
                    }
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
                    if attr_int(node, "transB") != Some(1) {
                        return Err(InitModelError::GemmTransB {
                            node: node.name.clone(),
                        });
                    }
                    let (w, d) = get(node, 1)?;
                    let (b, _) = get(node, 2)?;
                    if !(d.len() == 2 && b.len() == d[0]) {
                        return Err(InitModelError::GemmShapes {
                            node: node.name.clone(),
                            dims: d,
                            bias: b.len(),
                        });
                    }
                    heads.push((w, [d[0], d[1]], b));
                }
                "DequantizeLinear" | "QLinearConv" => {
                    return Err(InitModelError::Quantized {
                        path: path.to_path_buf(),
                    })
                }
                _ => {}
            }
        }
        if heads.len() != 2 {
            return Err(InitModelError::Heads {
                path: path.to_path_buf(),
                heads: heads.len(),
            });
        }
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
            if want != d {
                return Err(InitModelError::HeadLayout {
                    theirs: *d,
                    ours: want.to_vec(),
                });
            }
        }
        let loaded = apply(net, &self.convs)?;
        let dev = Device::Cpu;
        for (head, (w, d, b)) in heads.iter().zip(&self.heads) {
            Var::from_tensor(head.weight())?.set(&Tensor::from_vec(
                w.clone(),
                d.to_vec(),
                &dev,
            )?)?;
            let bias = head.bias().ok_or(InitModelError::NoHeadBias)?;
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
        ModelInfo::from_properties(&props).map_err(InitModelError::Info)
    }

    /// What the model's `agecam.training_data` says its weights learnt from: the names as the
    /// export wrote them (datasets, e.g. `UTKFace`, and `distilled from the face-api teacher`).
    pub fn training_data(&self) -> Result<Vec<&str>> {
        let data = self
            .metadata
            .get("agecam.training_data")
            .ok_or(InitModelError::NoTrainingData)?;
        Ok(data.split(" + ").map(str::trim).collect())
    }
}
