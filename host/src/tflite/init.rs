//! `--init`: ImageNet MobileNetV2 weights from a TFLite file (e.g. the int8
//! `mobilenet_v2_1.0_224_quant.tflite`, Apache-2.0) into [`MobileNetV2`]'s variables.
//!
//! # Mapping
//!
//! The TFLite graph runs its convolutions in network order: stem `CONV_2D`, then for each
//! inverted-residual block the expansion `CONV_2D` (absent in block 1), the
//! `DEPTHWISE_CONV_2D` and the projection `CONV_2D`, then the last 1×1 `CONV_2D` (1280), then
//! the 1×1 `CONV_2D` classifier (1001 ImageNet classes). Our network holds the same 52
//! convolutions in the same order (`features.0`, `features.1..=17`, `features.18`). So the
//! k-th conv/depthwise operator of the file initialises our k-th convolution, and its shape must
//! agree (a mismatch is an error naming the layer). Convolutions the file has beyond ours (the
//! classifier) are ignored; our age/gender heads keep their random initialisation.
//!
//! # Narrower networks
//!
//! A network of width < 1 (e.g. 0.75 or 0.5) has fewer channels per layer than the 1.0 file.
//! It is initialised by *thinning*: every layer keeps the file's leading output channels and,
//! of each kept filter, the leading input channels, as many as the narrow layer has. Taking the
//! same leading channels everywhere keeps a layer's inputs the very channels the layer before
//! kept, residual additions included. The result is a start for fine-tuning, not an ImageNet
//! network of that width (the dropped channels' contributions are gone); a layer that is
//! *wider* than the file's is still an error.
//!
//! Layouts: TFLite `CONV_2D` weights are `[out, kh, kw, in]`, `DEPTHWISE_CONV_2D` weights
//! `[1, kh, kw, channels]`; ours are `[out, in, kh, kw]` and `[channels, 1, kh, kw]`. Values
//! are dequantized as scale·(q − zero_point), per output channel where the file gives
//! per-channel scales (the reader's [`crate::tflite::Model::values_f32`]).
//!
//! # BatchNorm
//!
//! TFLite has no BatchNorm: the converter folded each BN into the conv before it
//! (w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε)). We cannot unfold it, so we load w' as the conv
//! weight and choose BN parameters that reproduce the folded layer in eval mode: γ = 1,
//! β = b', running mean = 0, running variance = 1 (the output is then
//! (w'·x − 0)/√(1 + ε) + b' ≈ w'·x + b', off by the factor 1/√(1+1e-5)). Training normalises
//! with batch statistics anyway, so this is a starting point for fine-tuning, not an exact copy.
//! (TFLite also pads stride-2 convs "SAME" — one pixel at the bottom/right only — where we pad
//! one pixel on every side; fine-tuning absorbs the half-pixel shift.)

use super::ReadError;
use super::{Builtin, Model};
use crate::mobilenet_v2::{ConvBn, Kind, MobileNetV2, Norm};
use crate::onnx_kit::{depthwise_to_onnx, ohwi_to_oihw};
use candle_core::{Device, Tensor};
use std::path::PathBuf;

/// Why `--init` cannot take a TFLite file's weights: what in the file (an operator, a tensor) or
/// which of our layers, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("the TFLite file has no subgraph")]
    NoSubgraph,
    #[error("{what} has no weight input")]
    NoWeightInput { what: String },
    #[error("{what}: weight tensor `{name}` has no data")]
    NoWeightData { what: String, name: String },
    #[error("{what}: weight `{name}` has shape {shape:?}, not 4-D")]
    NotFourD {
        what: String,
        name: String,
        shape: Vec<i32>,
    },
    #[error("{what}: depthwise multiplier {multiplier} is not 1")]
    Multiplier { what: String, multiplier: usize },
    #[error("{what}: bias tensor has no data")]
    NoBiasData { what: String },
    #[error("{what}: bias has {values} values for {channels} channels")]
    BiasCount {
        what: String,
        values: usize,
        channels: usize,
    },
    #[error(
        "the TFLite file has {found} convolutions, MobileNetV2 (width {width}) needs {needed}: is it a MobileNetV2?"
    )]
    TooFewConvs {
        found: usize,
        width: f64,
        needed: usize,
    },
    /// A convolution of the file that does not fit our layer (boxed: it is large).
    #[error(transparent)]
    Misfit(Box<ConvMisfit>),
    #[error("--init needs the custom-op network")]
    NotCustom,
    /// The file could not be read as TFLite.
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("reading {}", path.display())]
    Reading {
        path: PathBuf,
        #[source]
        source: Box<InitError>,
    },
    #[error("--init {}", path.display())]
    Applying {
        path: PathBuf,
        #[source]
        source: Box<InitError>,
    },
}

/// The file's convolution `index` and our layer it does not fit.
#[derive(Debug, thiserror::Error)]
#[error(
    "convolution #{index} of the file ({file_kind}, weight {file_dims:?}) does not fit our layer {layer} ({our_kind}, weight {our_dims:?}); \
     is the file a MobileNetV2 of width {width}?"
)]
pub struct ConvMisfit {
    index: usize,
    file_kind: &'static str,
    file_dims: [usize; 4],
    layer: String,
    our_kind: &'static str,
    our_dims: Vec<usize>,
    width: f64,
}

type Result<T> = std::result::Result<T, InitError>;

/// One convolution read from the file, in our layout.
#[derive(Debug, Clone)]
pub struct TfliteConv {
    pub depthwise: bool,
    /// Our layout: `[out, in, kh, kw]` (`in` = 1 for depthwise).
    pub dims: [usize; 4],
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// The convolutions of the first subgraph, in operator order, converted to our layout.
pub fn read_convs(model: &Model) -> Result<Vec<TfliteConv>> {
    let sg = model.subgraphs.first().ok_or(InitError::NoSubgraph)?;
    let mut out = Vec::new();
    for (i, op) in sg.operators.iter().enumerate() {
        let depthwise = match model.builtin(op) {
            Builtin::Conv2d => false,
            Builtin::DepthwiseConv2d => true,
            _ => continue,
        };
        let what = || {
            format!(
                "operator {i} ({})",
                if depthwise {
                    "DEPTHWISE_CONV_2D"
                } else {
                    "CONV_2D"
                }
            )
        };
        if op.inputs.len() < 2 {
            return Err(InitError::NoWeightInput { what: what() });
        }
        let wt = sg.tensor(op.inputs[1])?;
        let w = model
            .values_f32(wt)?
            .ok_or_else(|| InitError::NoWeightData {
                what: what(),
                name: wt.name.clone(),
            })?;
        let s: Vec<usize> = wt.shape.iter().map(|d| *d as usize).collect();
        if s.len() != 4 {
            return Err(InitError::NotFourD {
                what: what(),
                name: wt.name.clone(),
                shape: wt.shape.clone(),
            });
        }
        let (o, kh, kw, inn) = (s[0], s[1], s[2], s[3]);
        let (dims, weight) = if depthwise {
            // [1, kh, kw, c] → [c, 1, kh, kw]
            if o != 1 {
                return Err(InitError::Multiplier {
                    what: what(),
                    multiplier: o,
                });
            }
            let c = inn;
            let v = depthwise_to_onnx(&w, kh, kw, c, 1);
            ([c, 1, kh, kw], v)
        } else {
            // [o, kh, kw, i] → [o, i, kh, kw]
            let v = ohwi_to_oihw(&w, o, kh, kw, inn);
            ([o, inn, kh, kw], v)
        };
        let bias = match op.inputs.get(2).copied().filter(|b| *b >= 0) {
            Some(b) => model
                .values_f32(sg.tensor(b)?)?
                .ok_or_else(|| InitError::NoBiasData { what: what() })?,
            None => vec![0.0; dims[0]],
        };
        if bias.len() != dims[0] {
            return Err(InitError::BiasCount {
                what: what(),
                values: bias.len(),
                channels: dims[0],
            });
        }
        out.push(TfliteConv {
            depthwise,
            dims,
            weight,
            bias,
        });
    }
    Ok(out)
}

/// The 52 convolutions of `net` in network order, with their variable-name prefixes.
fn convs_in_order(net: &MobileNetV2) -> Vec<(String, &ConvBn)> {
    let mut v = vec![("features.0".to_string(), &net.stem)];
    for (b, block) in net.blocks.iter().enumerate() {
        for (j, l) in block.layers.iter().enumerate() {
            v.push((format!("features.{}.conv[{j}]", b + 1), l));
        }
    }
    v.push((format!("features.{}", net.blocks.len() + 1), &net.last));
    v
}

/// Sets `net`'s conv weights and BN parameters from `convs` (see the module docs); returns
/// how many convolutions were loaded. Errors name the first layer whose shape disagrees.
pub fn apply(net: &MobileNetV2, convs: &[TfliteConv]) -> Result<usize> {
    let ours = convs_in_order(net);
    if convs.len() < ours.len() {
        return Err(InitError::TooFewConvs {
            found: convs.len(),
            width: net.config.width_mult,
            needed: ours.len(),
        });
    }
    // Check every shape before changing anything. A narrower network takes the leading
    // channels (see "Narrower networks" in the module docs).
    let thin = net.config.width_mult < 1.0;
    for (k, ((name, l), c)) in ours.iter().zip(convs).enumerate() {
        let want = l.w.dims();
        let kind_ok = matches!(l.kind, Kind::Depthwise { .. }) == c.depthwise;
        let fits = if thin {
            want.len() == 4
                && want.iter().zip(c.dims).all(|(w, f)| *w <= f)
                && want[2..] == c.dims[2..]
        } else {
            want == c.dims
        };
        if !kind_ok || !fits {
            return Err(InitError::Misfit(Box::new(ConvMisfit {
                index: k,
                file_kind: if c.depthwise { "depthwise" } else { "conv" },
                file_dims: c.dims,
                layer: name.clone(),
                our_kind: if matches!(l.kind, Kind::Depthwise { .. }) {
                    "depthwise"
                } else {
                    "conv"
                },
                our_dims: want.to_vec(),
                width: net.config.width_mult,
            })));
        }
    }
    let dev = Device::Cpu;
    for ((_, l), c) in ours.iter().zip(convs) {
        let Norm::Custom(bn) = &l.norm else {
            return Err(InitError::NotCustom);
        };
        let d = l.w.dims();
        let (n, i) = (d[0], d[1]);
        let w = candle_core::Var::from_tensor(&l.w)?;
        w.set(&Tensor::from_vec(leading(c, n, i), d.to_vec(), &dev)?)?;
        bn.gamma
            .set(&Tensor::ones(n, candle_core::DType::F32, &dev)?)?;
        bn.beta
            .set(&Tensor::from_vec(c.bias[..n].to_vec(), n, &dev)?)?;
        bn.running_mean
            .set(&Tensor::zeros(n, candle_core::DType::F32, &dev)?)?;
        bn.running_var
            .set(&Tensor::ones(n, candle_core::DType::F32, &dev)?)?;
    }
    Ok(ours.len())
}

/// The weights of `c`'s leading `out` filters, each cut to its leading `inputs` input channels
/// (all of them when the shapes agree), in our `[out, in, kh, kw]` layout.
fn leading(c: &TfliteConv, out: usize, inputs: usize) -> Vec<f32> {
    let [_, all_in, kh, kw] = c.dims;
    let k = kh * kw;
    let mut v = Vec::with_capacity(out * inputs * k);
    for o in 0..out {
        let filter = &c.weight[o * all_in * k..(o + 1) * all_in * k];
        v.extend_from_slice(&filter[..inputs * k]);
    }
    v
}

/// Reads `path` and initialises `net` from it; returns (loaded, convolutions in the file).
pub fn init_from_file(net: &MobileNetV2, path: &std::path::Path) -> Result<(usize, usize)> {
    let model = Model::read_file(path)?;
    let convs = read_convs(&model).map_err(|e| InitError::Reading {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    let loaded = apply(net, &convs).map_err(|e| InitError::Applying {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok((loaded, convs.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mobilenet_v2::{Backend, Config};
    use crate::tflite::{Operator, OperatorCode, Options, Quantization, Subgraph, TensorType};

    fn small() -> (candle_nn::VarMap, MobileNetV2) {
        let cfg = Config {
            width_mult: 0.35,
            input_size: 32,
            ..Config::default()
        };
        MobileNetV2::with_varmap(cfg, Backend::Custom, &Device::Cpu).unwrap()
    }

    /// A TFLite model in memory holding int8 (per-channel) convolutions shaped like `net`'s,
    /// plus a classifier conv at the end, as the real file has. Weight value of element e of
    /// conv k (in TFLite layout) is q = (e + k) % 7 − 3 with scale 0.01·(channel + 1).
    fn fake_tflite(net: &MobileNetV2, drop: Option<usize>) -> Model {
        let mut shapes: Vec<(bool, [usize; 4])> = convs_in_order(net)
            .iter()
            .map(|(_, l)| {
                let d = l.w.dims();
                (
                    matches!(l.kind, Kind::Depthwise { .. }),
                    [d[0], d[1], d[2], d[3]],
                )
            })
            .collect();
        shapes.push((false, [1001, shapes.last().unwrap().1[0], 1, 1]));
        if let Some(k) = drop {
            shapes.remove(k);
        }
        let mut model = Model {
            version: 3,
            description: "fake".into(),
            operator_codes: vec![
                OperatorCode {
                    builtin: Builtin::Conv2d,
                    custom: None,
                    version: 1,
                },
                OperatorCode {
                    builtin: Builtin::DepthwiseConv2d,
                    custom: None,
                    version: 1,
                },
            ],
            subgraphs: vec![Subgraph {
                name: "main".into(),
                tensors: vec![],
                inputs: vec![],
                outputs: vec![],
                operators: vec![],
            }],
            buffers: vec![vec![]],
        };
        for (k, (dw, [o, i, kh, kw])) in shapes.iter().enumerate() {
            let (tshape, channels, qdim) = if *dw {
                (vec![1, *kh as i32, *kw as i32, *o as i32], *o, 3)
            } else {
                (vec![*o as i32, *kh as i32, *kw as i32, *i as i32], *o, 0)
            };
            let n = o * i * kh * kw;
            let q: Vec<u8> = (0..n).map(|e| (((e + k) % 7) as i8 - 3) as u8).collect();
            let bias: Vec<u8> = (0..channels)
                .flat_map(|c| (c as i32 * 10 - 5).to_le_bytes())
                .collect();
            let sg = &mut model.subgraphs[0];
            let base = sg.tensors.len() as i32;
            model.buffers.push(q);
            model.buffers.push(bias);
            let scales: Vec<f32> = (0..channels).map(|c| 0.01 * (c + 1) as f32).collect();
            sg.tensors.push(crate::tflite::Tensor {
                name: format!("w{k}"),
                shape: tshape,
                dtype: TensorType::Int8,
                buffer: model.buffers.len() - 2,
                quantization: Some(Quantization {
                    scale: scales.clone(),
                    zero_point: vec![0; channels],
                    quantized_dimension: qdim,
                    ..Default::default()
                }),
                is_variable: false,
            });
            sg.tensors.push(crate::tflite::Tensor {
                name: format!("b{k}"),
                shape: vec![channels as i32],
                dtype: TensorType::Int32,
                buffer: model.buffers.len() - 1,
                quantization: Some(Quantization {
                    scale: vec![0.001; channels],
                    zero_point: vec![0; channels],
                    quantized_dimension: 0,
                    ..Default::default()
                }),
                is_variable: false,
            });
            sg.operators.push(Operator {
                opcode_index: usize::from(*dw),
                inputs: vec![-1, base, base + 1],
                outputs: vec![],
                options: Options::Other(0),
            });
        }
        model
    }

    #[test]
    fn maps_dequantizes_and_transposes_every_conv() {
        let (_vm, net) = small();
        let model = fake_tflite(&net, None);
        let convs = read_convs(&model).unwrap();
        assert_eq!(convs.len(), 53);
        assert_eq!(apply(&net, &convs).unwrap(), 52);
        // Stem conv (k = 0, not depthwise): ours[o][i][y][x] = tflite[o][y][x][i].
        let w = net.stem.w.to_vec3::<f32>().ok();
        assert!(w.is_none()); // 4-D
        let d = net.stem.w.dims().to_vec();
        let ours = net.stem.w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (o, i, kh, kw) = (d[0], d[1], d[2], d[3]);
        for (oc, ic, y, x) in [(0, 0, 0, 0), (1, 2, 1, 0), (o - 1, i - 1, kh - 1, kw - 1)] {
            let e = ((oc * kh + y) * kw + x) * i + ic;
            let q = (e % 7) as f32 - 3.0;
            let want = 0.01 * (oc + 1) as f32 * q;
            let got = ours[((oc * i + ic) * kh + y) * kw + x];
            assert!(
                (got - want).abs() < 1e-6,
                "stem[{oc},{ic},{y},{x}] {got} vs {want}"
            );
        }
        // Block 1's depthwise (k = 1): ours[c][0][y][x] = tflite[0][y][x][c].
        let dw = &net.blocks[0].layers[0];
        let c_n = dw.w.dims()[0];
        let ours = dw.w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (c, y, x) in [(0, 0, 0), (3, 2, 1), (c_n - 1, 2, 2)] {
            let e = (y * 3 + x) * c_n + c;
            let want = 0.01 * (c + 1) as f32 * (((e + 1) % 7) as f32 - 3.0);
            assert!((ours[(c * 3 + y) * 3 + x] - want).abs() < 1e-6);
        }
        // BN: gamma 1, beta = folded bias, mean 0, var 1.
        let Norm::Custom(bn) = &net.last.norm else {
            panic!()
        };
        let beta = bn.beta.to_vec1::<f32>().unwrap();
        assert!((beta[3] - 0.001 * 25.0).abs() < 1e-6);
        assert_eq!(bn.gamma.to_vec1::<f32>().unwrap()[7], 1.0);
        assert_eq!(bn.running_mean.to_vec1::<f32>().unwrap()[7], 0.0);
        assert_eq!(bn.running_var.to_vec1::<f32>().unwrap()[7], 1.0);
    }

    #[test]
    fn a_missing_or_misshapen_conv_is_an_error_naming_the_layer() {
        let (_vm, net) = small();
        let before = net.stem.w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let model = fake_tflite(&net, Some(5));
        let err = apply(&net, &read_convs(&model).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("#5") && err.contains("features."), "{err}");
        // Nothing was changed.
        assert_eq!(
            before,
            net.stem.w.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let (_vm, wide) = MobileNetV2::with_varmap(
            Config {
                width_mult: 1.0,
                input_size: 32,
                ..Config::default()
            },
            Backend::Custom,
            &Device::Cpu,
        )
        .unwrap();
        let err = apply(&wide, &read_convs(&model).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("#0"), "{err}");
    }

    #[test]
    fn a_narrower_network_takes_the_leading_channels() {
        let net = |width_mult| {
            MobileNetV2::with_varmap(
                Config {
                    width_mult,
                    input_size: 32,
                    ..Config::default()
                },
                Backend::Custom,
                &Device::Cpu,
            )
            .unwrap()
        };
        let (_vw, wide) = net(1.0);
        let (_vn, narrow) = net(0.5);
        let convs = read_convs(&fake_tflite(&wide, None)).unwrap();
        assert_eq!(apply(&narrow, &convs).unwrap(), 52);
        // Block 2's projection (conv #5, 1×1): narrow [16, 48] of the file's [24, 144].
        let l = &narrow.blocks[1].layers[2];
        let (d, f) = (l.w.dims().to_vec(), convs[5].dims);
        assert!(d[0] < f[0] && d[1] < f[1], "{d:?} vs {f:?}");
        let ours = l.w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (o, i) in [(0, 0), (3, 7), (d[0] - 1, d[1] - 1)] {
            assert_eq!(
                ours[o * d[1] + i],
                convs[5].weight[o * f[1] + i],
                "[{o}, {i}]"
            );
        }
        let Norm::Custom(bn) = &l.norm else { panic!() };
        assert_eq!(
            bn.beta.to_vec1::<f32>().unwrap(),
            convs[5].bias[..d[0]].to_vec()
        );
        // Wider than the file is still an error.
        let (_vs, slim) = small();
        let err = apply(&narrow, &read_convs(&fake_tflite(&slim, None)).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit our layer features."), "{err}");
    }

    /// The real ImageNet file, when it is present (it is not in the repository).
    #[test]
    fn real_mobilenet_v2_file_loads_when_present() {
        let path =
            crate::test_repo().join("../shared/data/pretrained/mobilenet_v2_1.0_224_quant.tflite");
        if !path.exists() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let (_vm, net) =
            MobileNetV2::with_varmap(Config::default(), Backend::Custom, &Device::Cpu).unwrap();
        let (loaded, in_file) = init_from_file(&net, &path).unwrap();
        assert_eq!((loaded, in_file), (52, 53));
    }
}
