//! Writing ONNX files with the protobuf types tract-onnx exposes (`tract_onnx::pb`).
//!
//! The host tool's exporter builds on this; the device's tests use it to make small networks
//! of their own, so tests never need a downloaded or trained model.

use prost::Message;
use tract_onnx::pb;

/// ONNX `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;
/// ONNX `TensorProto.DataType.INT64` (shapes, pads).
const INT64: i32 = 7;

/// A graph under construction: nodes, weights, inputs, outputs and model metadata.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: pb::GraphProto,
    metadata: Vec<(String, String)>,
}

/// One attribute of a node.
pub enum Attr<'a> {
    Int(&'a str, i64),
    Ints(&'a str, &'a [i64]),
    Float(&'a str, f32),
    Str(&'a str, &'a str),
}

impl GraphBuilder {
    pub fn new(name: &str) -> GraphBuilder {
        let mut builder = GraphBuilder::default();
        builder.graph.name = name.to_string();
        builder
    }

    /// A float input; `None` in `dims` is a symbolic batch dimension `N`.
    pub fn input(&mut self, name: &str, dims: &[Option<i64>]) -> &mut Self {
        self.graph.input.push(value_info(name, dims));
        self
    }

    pub fn output(&mut self, name: &str, dims: &[Option<i64>]) -> &mut Self {
        self.graph.output.push(value_info(name, dims));
        self
    }

    /// A float weight tensor.
    pub fn initializer(&mut self, name: &str, dims: &[i64], values: &[f32]) -> &mut Self {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, dims, FLOAT, values.len(), raw)
    }

    /// An int64 constant tensor, such as the shape of a Reshape or the pads of a Pad.
    pub fn initializer_i64(&mut self, name: &str, dims: &[i64], values: &[i64]) -> &mut Self {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, dims, INT64, values.len(), raw)
    }

    /// Adds a little-endian tensor of `count` elements after checking it fills `dims`.
    fn push_initializer(
        &mut self,
        name: &str,
        dims: &[i64],
        data_type: i32,
        count: usize,
        raw: Vec<u8>,
    ) -> &mut Self {
        assert_eq!(
            dims.iter().product::<i64>() as usize,
            count,
            "initializer {name}: dims and values disagree"
        );
        self.graph.initializer.push(pb::TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type,
            raw_data: raw,
            ..Default::default()
        });
        self
    }

    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[Attr],
    ) -> &mut Self {
        let name = format!("{op}_{}", self.graph.node.len());
        self.graph.node.push(pb::NodeProto {
            name,
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs.iter().map(attribute).collect(),
            ..Default::default()
        });
        self
    }

    pub fn metadata(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }

    /// The serialised ModelProto (IR 8, opset 13).
    pub fn to_bytes(&self) -> Vec<u8> {
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            producer_name: "agecam".to_string(),
            producer_version: env!("CARGO_PKG_VERSION").to_string(),
            graph: Some(self.graph.clone()),
            metadata_props: self
                .metadata
                .iter()
                .map(|(key, value)| pb::StringStringEntryProto {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            ..Default::default()
        };
        model.encode_to_vec()
    }
}

/// The `metadata_props` of a serialised ONNX model, as a map.
pub fn read_metadata(
    bytes: &[u8],
) -> Result<std::collections::HashMap<String, String>, prost::DecodeError> {
    let model = pb::ModelProto::decode(bytes)?;
    Ok(model
        .metadata_props
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect())
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => Value::DimValue(*v),
                None => Value::DimParam("N".to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attribute(attr: &Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    match attr {
        Attr::Int(name, v) => pb::AttributeProto {
            name: name.to_string(),
            r#type: AttributeType::Int as i32,
            i: *v,
            ..Default::default()
        },
        Attr::Ints(name, v) => pb::AttributeProto {
            name: name.to_string(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        },
        Attr::Float(name, v) => pb::AttributeProto {
            name: name.to_string(),
            r#type: AttributeType::Float as i32,
            f: *v,
            ..Default::default()
        },
        Attr::Str(name, v) => pb::AttributeProto {
            name: name.to_string(),
            r#type: AttributeType::String as i32,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        },
    }
}

/// Small networks for tests.
/// Small hand-weighted networks for tests (this crate's, the host's and the fuzz seeds).
pub mod tests_support {
    use super::*;
    use crate::model::age_gender::ModelInfo;
    use crate::model::Gender;

    /// [`tiny_age_gender_onnx`] written to a file in `dir` and loaded as the device loads a
    /// model (the pipeline's and the schedule's tests run it).
    pub fn tiny_age_gender_model(dir: &std::path::Path, size: i64) -> crate::model::AgeGenderModel {
        let path = dir.join(format!("tiny_{size}.onnx"));
        std::fs::write(&path, tiny_age_gender_onnx(size))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        crate::model::AgeGenderModel::load(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
    }

    /// A hand-weighted age/gender network over `size`×`size` RGB input with the metadata the
    /// device reads. Global average pooling gives the mean R, G, B; the age logits are
    /// −k(a − 20)² + 80k(a − 20)·R over ages a = 0…100 (k = 0.05), a Gaussian centred on
    /// 20 + 40·R after the softmax; the gender logits are (0, 10·(B − G)), so female when the
    /// picture is bluer than it is green. Normalisation is identity (mean 0, std 1).
    pub fn tiny_age_gender_onnx(size: i64) -> Vec<u8> {
        let k = 0.05f32;
        let ages: Vec<f32> = (0..=100).map(|a| a as f32).collect();
        let mut age_w = vec![0f32; 3 * 101];
        for (i, a) in ages.iter().enumerate() {
            age_w[i] = 80.0 * k * (a - 20.0); // row 0: red
        }
        let age_b: Vec<f32> = ages.iter().map(|a| -k * (a - 20.0).powi(2)).collect();
        let gender_w = [0.0, 0.0, 0.0, -10.0, 0.0, 10.0]; // rows R, G, B × (male, female)
        let mut g = GraphBuilder::new("tiny_age_gender");
        g.input("input", &[None, Some(3), Some(size), Some(size)])
            .initializer("age_w", &[3, 101], &age_w)
            .initializer("age_b", &[101], &age_b)
            .initializer("gender_w", &[3, 2], &gender_w)
            .initializer("gender_b", &[2], &[0.0, 0.0])
            .node("GlobalAveragePool", &["input"], &["pooled"], &[])
            .node(
                "Flatten",
                &["pooled"],
                &["features"],
                &[Attr::Int("axis", 1)],
            )
            .node("Gemm", &["features", "age_w", "age_b"], &["age"], &[])
            .node(
                "Gemm",
                &["features", "gender_w", "gender_b"],
                &["gender"],
                &[],
            )
            .output("age", &[None, Some(101)])
            .output("gender", &[None, Some(2)]);
        let info = ModelInfo {
            input_size: size as u32,
            mean: [0.0; 3],
            std: [1.0; 3],
            age_bins: ages,
            gender_labels: [Gender::Male, Gender::Female],
            crop_margin: None,
            crop: Default::default(),
            age_prior: None,
        };
        for (key, value) in info.to_metadata() {
            g.metadata(key, &value);
        }
        g.to_bytes()
    }
}
