//! MobileNetV2 (Sandler et al. 2018) with an age head (101 classes, ages 0–100) and a gender
//! head (2 classes), built from the custom ops of this crate (or from plain candle ops, for
//! comparison).
//!
//! # Variable naming (torchvision layout, so TFLite/PyTorch weights can be mapped by name)
//!
//! | name | shape | meaning |
//! | --- | --- | --- |
//! | `features.0.0.weight` | `[32·α, 3, 3, 3]` | stem conv 3×3 stride 2 |
//! | `features.0.1.{weight,bias,running_mean,running_var}` | `[32·α]` | stem BN (+ReLU6) |
//! | `features.1.conv.0.0.weight` | `[c, 1, 3, 3]` | block 1 (t = 1): depthwise 3×3 |
//! | `features.1.conv.0.1.*` | | its BN (+ReLU6) |
//! | `features.1.conv.1.weight` | `[16·α, c, 1, 1]` | block 1 projection 1×1 |
//! | `features.1.conv.2.*` | | its BN (linear) |
//! | `features.{i}.conv.0.0.weight` | `[t·c, c, 1, 1]` | blocks i = 2..=17: expansion 1×1 |
//! | `features.{i}.conv.0.1.*` | | its BN (+ReLU6) |
//! | `features.{i}.conv.1.0.weight` | `[t·c, 1, 3, 3]` | depthwise 3×3 (stride s on the first block of a stage) |
//! | `features.{i}.conv.1.1.*` | | its BN (+ReLU6) |
//! | `features.{i}.conv.2.weight` | `[c', t·c, 1, 1]` | projection 1×1 |
//! | `features.{i}.conv.3.*` | | its BN (linear, no ReLU6) |
//! | `features.18.0.weight` | `[1280, 320·α, 1, 1]` | last 1×1 conv |
//! | `features.18.1.*` | `[1280]` | its BN (+ReLU6) |
//! | `age_head.{weight,bias}` | `[101, 1280]`, `[101]` | age logits |
//! | `gender_head.{weight,bias}` | `[2, 1280]`, `[2]` | gender logits |
//!
//! BN variables are `weight` (γ), `bias` (β), `running_mean`, `running_var` (eps 1e-5,
//! momentum 0.1 as in PyTorch; TFLite's eps 1e-3 can be set per layer after loading).
//! Channel counts use torchvision's `_make_divisible(c·α, 8)`; the last conv has
//! `_make_divisible(1280·max(1, α), 8)` channels. Convs have no bias. Blocks `features.{i}`
//! for i = 1..=17 follow (t, c, n, s) = (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2),
//! (6,96,3,1), (6,160,3,2), (6,320,1,1); residual connections when stride 1 and cin = cout.

use crate::ops::bn_relu6::BatchNormRelu6;
use crate::ops::depthwise::depthwise_conv3x3;
use crate::ops::pointwise::{conv1x1, conv2d_dense};
use candle_core::{bail, DType, Device, Result, Tensor, Var, D};
use candle_nn::{Init, Linear, ModuleT, VarBuilder, VarMap};

/// Network configuration.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub width_mult: f64,
    /// Square input resolution (pixels); must be ≥ 32.
    pub input_size: usize,
    pub num_ages: usize,
    pub num_genders: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            width_mult: 1.0,
            input_size: 96,
            num_ages: 101,
            num_genders: 2,
        }
    }
}

/// Which implementation of the layers to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Custom fused ops of this crate.
    Custom,
    /// Plain candle: `conv2d` (with groups), candle-nn `BatchNorm`, `clamp`.
    Plain,
}

/// torchvision's `_make_divisible`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut n = ((v + d / 2.0) / d).floor().max(1.0) as usize * divisor;
    if (n as f64) < 0.9 * v {
        n += divisor;
    }
    n
}

/// The (t, c, n, s) table of the paper.
pub const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Dense { stride: usize },
    Depthwise { stride: usize },
    Pointwise,
}

#[derive(Debug, Clone)]
pub(crate) enum Norm {
    Custom(BatchNormRelu6),
    Plain {
        bn: candle_nn::BatchNorm,
        relu6: bool,
    },
}

/// Convolution (no bias) followed by batch norm and optional ReLU6.
#[derive(Debug, Clone)]
pub(crate) struct ConvBn {
    pub(crate) kind: Kind,
    pub(crate) w: Tensor,
    pub(crate) norm: Norm,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        kind: Kind,
        cin: usize,
        cout: usize,
        relu6: bool,
        backend: Backend,
        vb_conv: VarBuilder,
        vb_bn: VarBuilder,
    ) -> Result<Self> {
        let shape = match kind {
            Kind::Dense { .. } => (cout, cin, 3, 3),
            Kind::Depthwise { .. } => (cout, 1, 3, 3),
            Kind::Pointwise => (cout, cin, 1, 1),
        };
        let fan_out = (shape.0 * shape.2 * shape.3) as f64;
        let init = Init::Randn {
            mean: 0.0,
            stdev: (2.0 / fan_out).sqrt(),
        };
        let w = vb_conv.get_with_hints(shape, "weight", init)?;
        let norm = match backend {
            Backend::Custom => Norm::Custom(BatchNormRelu6::new(cout, relu6, vb_bn)?),
            Backend::Plain => Norm::Plain {
                bn: candle_nn::batch_norm(cout, candle_nn::BatchNormConfig::default(), vb_bn)?,
                relu6,
            },
        };
        Ok(Self { kind, w, norm })
    }

    /// The custom-op convolution alone (before its BatchNorm).
    fn conv(&self, x: &Tensor) -> Result<Tensor> {
        match self.kind {
            Kind::Dense { stride } => conv2d_dense(x, &self.w, stride, 1),
            Kind::Depthwise { stride } => depthwise_conv3x3(x, &self.w, stride),
            Kind::Pointwise => conv1x1(x, &self.w),
        }
    }

    /// Re-calibrates this layer's BatchNorm on `x` (see [`MobileNetV2::calibrate_bn`]) and
    /// returns the layer's eval-mode output, unchanged by the calibration.
    fn calibrate_bn(&self, x: &Tensor) -> Result<Tensor> {
        let Norm::Custom(bn) = &self.norm else {
            bail!("BatchNorm calibration needs the custom-op network")
        };
        let y = self.conv(x)?;
        // Per-channel mean and variance over batch and space: [c, n·h·w].
        let c = y.dim(1)?;
        let flat = y.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
        let mu = flat.mean(1)?;
        let var = flat.broadcast_sub(&mu.unsqueeze(1)?)?.sqr()?.mean(1)?;
        // Eval mode computes (y − m)/√(v + ε)·γ + β. Keep that function while moving m, v to
        // the batch statistics: γ' = γ·√(var + ε)/√(v + ε), β' = β + γ·(μ − m)/√(v + ε).
        let eps = bn.eps;
        let old_scale = (bn.gamma.as_tensor() / (bn.running_var.as_tensor() + eps)?.sqrt()?)?;
        let gamma = (&old_scale * (&var + eps)?.sqrt()?)?;
        let beta = (bn.beta.as_tensor() + (&old_scale * (&mu - bn.running_mean.as_tensor())?)?)?;
        bn.gamma.set(&gamma)?;
        bn.beta.set(&beta)?;
        bn.running_mean.set(&mu)?;
        bn.running_var.set(&var)?;
        bn.forward_t(&y, false)
    }

    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.norm {
            Norm::Custom(bn) => bn.forward_t(&self.conv(x)?, train),
            Norm::Plain { bn, relu6 } => {
                let y = match self.kind {
                    Kind::Dense { stride } => x.conv2d(&self.w, 1, stride, 1, 1)?,
                    Kind::Depthwise { stride } => {
                        x.conv2d(&self.w, 1, stride, 1, self.w.dim(0)?)?
                    }
                    Kind::Pointwise => x.conv2d(&self.w, 0, 1, 1, 1)?,
                };
                let y = bn.forward_t(&y, train)?;
                if *relu6 {
                    y.clamp(0f32, 6f32)
                } else {
                    Ok(y)
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct InvertedResidual {
    pub(crate) layers: Vec<ConvBn>,
    pub(crate) residual: bool,
}

impl InvertedResidual {
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        t: usize,
        be: Backend,
        vb: VarBuilder,
    ) -> Result<Self> {
        let hidden = cin * t;
        let vb = vb.pp("conv");
        let mut layers = Vec::new();
        let mut j = 0;
        if t != 1 {
            layers.push(ConvBn::new(
                Kind::Pointwise,
                cin,
                hidden,
                true,
                be,
                vb.pp("0.0"),
                vb.pp("0.1"),
            )?);
            j = 1;
        }
        let dw = Kind::Depthwise { stride };
        layers.push(ConvBn::new(
            dw,
            hidden,
            hidden,
            true,
            be,
            vb.pp(format!("{j}.0")),
            vb.pp(format!("{j}.1")),
        )?);
        layers.push(ConvBn::new(
            Kind::Pointwise,
            hidden,
            cout,
            false,
            be,
            vb.pp(j + 1),
            vb.pp(j + 2),
        )?);
        Ok(Self {
            layers,
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward_t(&y, train)?;
        }
        if self.residual {
            y + x
        } else {
            Ok(y)
        }
    }
}

/// MobileNetV2 with age and gender heads.
#[derive(Debug, Clone)]
pub struct MobileNetV2 {
    pub config: Config,
    pub backend: Backend,
    pub(crate) stem: ConvBn,
    pub(crate) blocks: Vec<InvertedResidual>,
    pub(crate) last: ConvBn,
    pub(crate) age_head: Linear,
    pub(crate) gender_head: Linear,
}

impl MobileNetV2 {
    pub fn new(config: Config, backend: Backend, vb: VarBuilder) -> Result<Self> {
        if config.input_size < 32 {
            bail!("mobilenet_v2: input size must be at least 32")
        }
        let a = config.width_mult;
        let f = vb.pp("features");
        let mut cin = make_divisible(32.0 * a, 8);
        let stem = ConvBn::new(
            Kind::Dense { stride: 2 },
            3,
            cin,
            true,
            backend,
            f.pp("0.0"),
            f.pp("0.1"),
        )?;
        let mut blocks = Vec::new();
        let mut idx = 1;
        for &(t, c, n, s) in &SETTINGS {
            let cout = make_divisible(c as f64 * a, 8);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                blocks.push(InvertedResidual::new(
                    cin,
                    cout,
                    stride,
                    t,
                    backend,
                    f.pp(idx),
                )?);
                cin = cout;
                idx += 1;
            }
        }
        let last_c = make_divisible(1280.0 * a.max(1.0), 8);
        let last = ConvBn::new(
            Kind::Pointwise,
            cin,
            last_c,
            true,
            backend,
            f.pp(format!("{idx}.0")),
            f.pp(format!("{idx}.1")),
        )?;
        let head = |n: usize, name: &str| -> Result<Linear> {
            let w = vb.get_with_hints(
                (n, last_c),
                &format!("{name}.weight"),
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )?;
            let b = vb.get_with_hints(n, &format!("{name}.bias"), Init::Const(0.0))?;
            Ok(Linear::new(w, Some(b)))
        };
        Ok(Self {
            config,
            backend,
            stem,
            blocks,
            last,
            age_head: head(config.num_ages, "age_head")?,
            gender_head: head(config.num_genders, "gender_head")?,
        })
    }

    /// Creates a model with freshly initialised variables in a new `VarMap`.
    pub fn with_varmap(
        config: Config,
        backend: Backend,
        device: &Device,
    ) -> Result<(VarMap, Self)> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, device);
        let m = Self::new(config, backend, vb)?;
        Ok((vm, m))
    }

    /// Pooled 1280-d features: `x: [n, 3, s, s]` → `[n, 1280]`.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.stem.forward_t(x, train)?;
        for b in &self.blocks {
            y = b.forward_t(&y, train)?;
        }
        let y = self.last.forward_t(&y, train)?;
        y.mean(D::Minus1)?.mean(D::Minus1)
    }

    /// Moves every BatchNorm's statistics to those of the batch `x` without changing what the
    /// network computes in eval mode: each layer's γ and β are rescaled so that
    /// (y − μ)/√(σ² + ε)·γ' + β' equals its old eval-mode output, with μ, σ² the batch
    /// statistics of its convolution's output (layers in network order, each seeing the
    /// calibrated output of the layers before it).
    ///
    /// Weights with the BatchNorm folded in (an exported model, or the ImageNet TFLite file)
    /// load with γ = 1, β = bias, mean 0, variance 1: right in eval mode, but training mode
    /// normalises by the batch's statistics, which would change every layer's output at the
    /// first step. After calibration the first training steps start from the loaded function.
    pub fn calibrate_bn(&self, x: &Tensor) -> Result<()> {
        let mut y = self.stem.calibrate_bn(x)?;
        for b in &self.blocks {
            let block_in = y.clone();
            for l in &b.layers {
                y = l.calibrate_bn(&y)?;
            }
            if b.residual {
                y = (y + block_in)?;
            }
        }
        self.last.calibrate_bn(&y)?;
        Ok(())
    }

    /// Returns `(age_logits [n, 101], gender_logits [n, 2])`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let f = self.features_t(x, train)?;
        Ok((
            self.age_head.forward_t(&f, train)?,
            self.gender_head.forward_t(&f, train)?,
        ))
    }
}

/// The trainable variables of a `VarMap` (everything except BN running statistics).
pub fn trainable_vars(vm: &VarMap) -> Vec<Var> {
    let data = vm.data().lock().unwrap();
    let mut v: Vec<(&String, &Var)> = data
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v.into_iter().map(|(_, v)| v.clone()).collect()
}

/// Sum of the age and gender cross-entropy losses (labels are u32 class indices).
pub fn loss(
    age_logits: &Tensor,
    gender_logits: &Tensor,
    ages: &Tensor,
    genders: &Tensor,
) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(age_logits, ages)?
        + candle_nn::loss::cross_entropy(gender_logits, genders)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::*;

    fn small() -> Config {
        Config {
            width_mult: 0.35,
            input_size: 32,
            ..Config::default()
        }
    }

    #[test]
    fn names_and_shapes() -> Result<()> {
        let (vm, m) = MobileNetV2::with_varmap(Config::default(), Backend::Custom, &Device::Cpu)?;
        let data = vm.data().lock().unwrap();
        let shape = |n: &str| {
            data.get(n)
                .unwrap_or_else(|| panic!("missing {n}"))
                .dims()
                .to_vec()
        };
        assert_eq!(shape("features.0.0.weight"), [32, 3, 3, 3]);
        assert_eq!(shape("features.0.1.running_var"), [32]);
        assert_eq!(shape("features.1.conv.0.0.weight"), [32, 1, 3, 3]);
        assert_eq!(shape("features.1.conv.1.weight"), [16, 32, 1, 1]);
        assert_eq!(shape("features.1.conv.2.weight"), [16]);
        assert_eq!(shape("features.2.conv.0.0.weight"), [96, 16, 1, 1]);
        assert_eq!(shape("features.2.conv.1.0.weight"), [96, 1, 3, 3]);
        assert_eq!(shape("features.2.conv.2.weight"), [24, 96, 1, 1]);
        assert_eq!(shape("features.2.conv.3.bias"), [24]);
        assert_eq!(shape("features.17.conv.2.weight"), [320, 960, 1, 1]);
        assert_eq!(shape("features.18.0.weight"), [1280, 320, 1, 1]);
        assert_eq!(shape("age_head.weight"), [101, 1280]);
        assert_eq!(shape("gender_head.bias"), [2]);
        assert!(data.get("features.19.0.weight").is_none());
        // 52 conv/BN pairs: 1 stem + 1·2 + 16·3 + 1 last; 4 BN tensors each + conv weight.
        assert_eq!(data.len(), 52 * 5 + 4);
        let nparams: usize = data
            .iter()
            .filter(|(k, _)| !k.contains("running_"))
            .map(|(_, v)| v.elem_count())
            .sum();
        // torchvision mobilenet_v2 has 3,504,872 params with a 1000-way head
        // (1,281,000 of them in the head); ours has 101 + 2 classes.
        assert_eq!(nparams, 3_504_872 - 1_281_000 + 1280 * 103 + 103);
        drop(data);
        assert_eq!(m.blocks.len(), 17);
        Ok(())
    }

    #[test]
    fn custom_matches_plain_candle() -> Result<()> {
        let dev = Device::Cpu;
        let (vm, custom) = MobileNetV2::with_varmap(small(), Backend::Custom, &dev)?;
        let plain = MobileNetV2::new(
            small(),
            Backend::Plain,
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
        )?;
        // candle's CPU rng cannot be seeded: re-initialise every variable deterministically
        // (uniform with the same variance as the He init) so the test is reproducible.
        let mut rng = Rng::new(29);
        // In name order: the VarMap is a HashMap, whose order changes from run to run, and
        // with it which values each variable got (this made the test flaky).
        let mut named: Vec<(String, candle_core::Var)> = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, v) in named {
            if name.contains("running_") {
                continue;
            }
            let dims = v.dims().to_vec();
            let fan: usize = dims.iter().skip(1).product::<usize>().max(1);
            let scale = if dims.len() == 1 {
                0.2
            } else {
                (6.0 / fan as f64).sqrt()
            };
            let base = if name.ends_with(".weight") && dims.len() == 1 {
                1.0
            } else {
                0.0
            };
            v.set(&((rng.tensor(&dims)? * scale)? + base)?)?;
        }
        let x = Rng::new(30).tensor(&[3, 3, 35, 35])?;
        let ages = Tensor::new(&[3u32, 50, 100], &dev)?;
        let genders = Tensor::new(&[0u32, 1, 1], &dev)?;
        for train in [true, false] {
            let (a1, g1) = custom.forward_t(&x, train)?;
            let (a2, g2) = plain.forward_t(&x, train)?;
            assert_eq!(a1.dims(), [3, 101]);
            assert_eq!(g1.dims(), [3, 2]);
            let d = |t: &Tensor| -> Vec<f64> { flat(t).iter().map(|v| *v as f64).collect() };
            assert!(max_rel_err(&flat(&a1), &d(&a2)) < 1e-3);
            assert!(max_rel_err(&flat(&g1), &d(&g2)) < 1e-3);
            if train {
                let gr1 = loss(&a1, &g1, &ages, &genders)?.backward()?;
                let gr2 = loss(&a2, &g2, &ages, &genders)?.backward()?;
                let vars = trainable_vars(&vm);
                assert_eq!(vars.len(), 52 * 3 + 4);
                for v in &vars {
                    let (p, q) = (gr1.get(v).expect("grad"), gr2.get(v).expect("grad"));
                    // Per tensor, a relative L2 error: the two implementations sum in
                    // different orders, and over ~50 layers with batch norm over ~12 values
                    // per channel that rounding can move single elements by a few per cent
                    // (seen: 2.4 %) and whole tensors near the stem by up to 2.3 % (its batch
                    // norm's gradient), while a wrong formula is off by O(1). The per-op tests
                    // hold each op to 1e-3 against f64; why the network-level gap is this
                    // large (rounding alone, or a precision loss in one op) is still open.
                    let e = rel_l2_err(&flat(p), &d(q));
                    assert!(
                        e < 5e-2,
                        "gradient mismatch (relative L2) {e} for {:?}",
                        v.dims()
                    );
                    let worst = max_rel_err(&flat(p), &d(q));
                    assert!(
                        worst < 0.1,
                        "gradient element off by {worst} for {:?}",
                        v.dims()
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn save_and_load_by_name() -> Result<()> {
        let dev = Device::Cpu;
        let (vm, m) = MobileNetV2::with_varmap(small(), Backend::Custom, &dev)?;
        let x = Rng::new(31).tensor(&[2, 3, 32, 32])?;
        m.forward_t(&x, true)?; // updates running stats
        let path =
            std::env::temp_dir().join(format!("agecam_mnv2_{}.safetensors", std::process::id()));
        vm.save(&path)?;
        let (mut vm2, m2) = MobileNetV2::with_varmap(small(), Backend::Custom, &dev)?;
        vm2.load(&path)?;
        std::fs::remove_file(&path).ok();
        let (a1, _) = m.forward_t(&x, false)?;
        let (a2, _) = m2.forward_t(&x, false)?;
        assert_eq!(flat(&a1), flat(&a2));
        Ok(())
    }
}
