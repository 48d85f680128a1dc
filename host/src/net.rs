//! The networks `agecam-host train` builds, their losses, and their export to ONNX.
//!
//! * [`Arch::Mobilenetv2`]: [`MobileNetV2`] on the custom ops (ImageNet-initialisable).
//! * [`Arch::Scratch`]: the small from-scratch baseline: four conv3×3–BN–ReLU6–maxpool blocks
//!   (32, 64, 128, 256 channels), global average pooling and the same two heads.
//!
//! Export writes the eval-mode network: each BatchNorm folded into the convolution before it
//! (w' = w·γ/√(σ²+ε) per output channel, b' = β − μ·γ/√(σ²+ε)), ReLU6 as `Clip(0, 6)`, opset 13,
//! input `input` `[N, 3, S, S]`, outputs `age` `[N, 101]` and `gender` `[N, 2]` (logits).

use super::crops::AgeLabel;
use super::mobilenet_v2::{Backend, Config, ConvBn, Kind, MobileNetV2, Norm};
use agecam::model::onnx_build::{Attr, GraphBuilder};
use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{Init, Linear, ModuleT, VarBuilder, VarMap};

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum Arch {
    Mobilenetv2,
    Scratch,
}

/// Shape settings of a network (saved with each checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    pub arch: Arch,
    pub input_size: usize,
    pub width: f64,
}

/// The number of age classes (ages 0–100) and gender classes.
pub const NUM_AGES: usize = 101;
pub const NUM_GENDERS: usize = 2;

/// Channels of the scratch baseline's blocks.
const SCRATCH_CHANNELS: [usize; 4] = [32, 64, 128, 256];

/// The from-scratch baseline CNN.
#[derive(Debug, Clone)]
pub struct ScratchCnn {
    blocks: Vec<ConvBn>,
    age_head: Linear,
    gender_head: Linear,
}

impl ScratchCnn {
    pub fn new(width: f64, vb: VarBuilder) -> Result<Self> {
        let mut cin = 3;
        let mut blocks = Vec::new();
        let f = vb.pp("features");
        for (i, c) in SCRATCH_CHANNELS.iter().enumerate() {
            let cout = ((*c as f64 * width).round() as usize).max(8);
            blocks.push(ConvBn::new(
                Kind::Dense { stride: 1 },
                cin,
                cout,
                true,
                Backend::Custom,
                f.pp(format!("{i}.0")),
                f.pp(format!("{i}.1")),
            )?);
            cin = cout;
        }
        Ok(Self {
            blocks,
            age_head: head(&vb, NUM_AGES, cin, "age_head")?,
            gender_head: head(&vb, NUM_GENDERS, cin, "gender_head")?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let mut y = x.clone();
        for b in &self.blocks {
            y = b.forward_t(&y, train)?.max_pool2d(2)?;
        }
        let f = y.mean(D::Minus1)?.mean(D::Minus1)?;
        Ok((
            self.age_head.forward_t(&f, train)?,
            self.gender_head.forward_t(&f, train)?,
        ))
    }
}

fn head(vb: &VarBuilder, n: usize, features: usize, name: &str) -> Result<Linear> {
    let w = vb.get_with_hints(
        (n, features),
        &format!("{name}.weight"),
        Init::Randn {
            mean: 0.0,
            stdev: 0.01,
        },
    )?;
    let b = vb.get_with_hints(n, &format!("{name}.bias"), Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// A network of either architecture.
#[derive(Debug, Clone)]
pub enum Net {
    Mobilenetv2(Box<MobileNetV2>),
    Scratch(ScratchCnn),
}

impl Net {
    /// Builds the network with fresh variables in a new `VarMap`.
    pub fn new(cfg: &NetConfig) -> Result<(VarMap, Net)> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = match cfg.arch {
            Arch::Mobilenetv2 => Net::Mobilenetv2(Box::new(MobileNetV2::new(
                Config {
                    width_mult: cfg.width,
                    input_size: cfg.input_size,
                    num_ages: NUM_AGES,
                    num_genders: NUM_GENDERS,
                },
                Backend::Custom,
                vb,
            )?)),
            Arch::Scratch => Net::Scratch(ScratchCnn::new(cfg.width, vb)?),
        };
        Ok((vm, net))
    }

    /// `(age_logits [n, 101], gender_logits [n, 2])`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        match self {
            Net::Mobilenetv2(m) => m.forward_t(x, train),
            Net::Scratch(m) => m.forward_t(x, train),
        }
    }

    /// Adds the eval-mode network to `g`, reading `input`; returns the names of the age and
    /// gender logit tensors.
    pub fn export(&self, g: &mut GraphBuilder, input: &str) -> Result<(String, String)> {
        let mut ex = Exporter { g, n: 0 };
        let (features, age, gender) = match self {
            Net::Mobilenetv2(m) => {
                let mut y = ex.conv_bn(&m.stem, input)?;
                for b in &m.blocks {
                    let block_in = y.clone();
                    for l in &b.layers {
                        y = ex.conv_bn(l, &y)?;
                    }
                    if b.residual {
                        let sum = ex.name("add");
                        ex.g.node("Add", &[&y, &block_in], &[&sum], &[]);
                        y = sum;
                    }
                }
                (ex.conv_bn(&m.last, &y)?, &m.age_head, &m.gender_head)
            }
            Net::Scratch(m) => {
                let mut y = input.to_string();
                for b in &m.blocks {
                    let c = ex.conv_bn(b, &y)?;
                    y = ex.name("pool");
                    ex.g.node(
                        "MaxPool",
                        &[&c],
                        &[&y],
                        &[
                            Attr::Ints("kernel_shape", &[2, 2]),
                            Attr::Ints("strides", &[2, 2]),
                        ],
                    );
                }
                (y, &m.age_head, &m.gender_head)
            }
        };
        let pooled = ex.name("gap");
        ex.g.node("GlobalAveragePool", &[&features], &[&pooled], &[]);
        let flat = ex.name("flat");
        ex.g.node("Flatten", &[&pooled], &[&flat], &[Attr::Int("axis", 1)]);
        let age_out = ex.linear(age, &flat, agecam::model::age_gender::AGE_OUTPUT)?;
        let gender_out = ex.linear(gender, &flat, agecam::model::age_gender::GENDER_OUTPUT)?;
        Ok((age_out, gender_out))
    }
}

struct Exporter<'a> {
    g: &'a mut GraphBuilder,
    n: usize,
}

impl Exporter<'_> {
    fn name(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}_{}", self.n)
    }

    /// Conv with the BatchNorm folded in, then `Clip(0, 6)` where the layer has ReLU6.
    fn conv_bn(&mut self, l: &ConvBn, x: &str) -> Result<String> {
        let (gamma, beta, mean, var, eps, relu6) = match &l.norm {
            Norm::Custom(bn) => (
                bn.gamma.to_vec1::<f32>()?,
                bn.beta.to_vec1::<f32>()?,
                bn.running_mean.to_vec1::<f32>()?,
                bn.running_var.to_vec1::<f32>()?,
                bn.eps as f32,
                bn.relu6,
            ),
            Norm::Plain { .. } => {
                candle_core::bail!("export supports the custom-op network only")
            }
        };
        let dims = l.w.dims().to_vec();
        let cout = dims[0];
        let per_out = dims[1..].iter().product::<usize>();
        let mut w = l.w.flatten_all()?.to_vec1::<f32>()?;
        let mut b = vec![0f32; cout];
        for o in 0..cout {
            let k = gamma[o] / (var[o] + eps).sqrt();
            w[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|v| *v *= k);
            b[o] = beta[o] - mean[o] * k;
        }
        let (stride, pad, group) = match l.kind {
            Kind::Dense { stride } => (stride, 1, 1),
            Kind::Depthwise { stride } => (stride, 1, cout),
            Kind::Pointwise => (1, 0, 1),
        };
        let (wn, bn, out) = (self.name("w"), self.name("b"), self.name("conv"));
        let wdims: Vec<i64> = dims.iter().map(|d| *d as i64).collect();
        let k = [wdims[2], wdims[3]];
        let (s, p) = (stride as i64, pad as i64);
        self.g
            .initializer(&wn, &wdims, &w)
            .initializer(&bn, &[cout as i64], &b)
            .node(
                "Conv",
                &[x, &wn, &bn],
                &[&out],
                &[
                    Attr::Ints("kernel_shape", &k),
                    Attr::Ints("strides", &[s, s]),
                    Attr::Ints("pads", &[p, p, p, p]),
                    Attr::Int("group", group as i64),
                ],
            );
        if !relu6 {
            return Ok(out);
        }
        let (lo, hi, clipped) = (self.name("zero"), self.name("six"), self.name("relu6"));
        self.g
            .initializer(&lo, &[], &[0.0])
            .initializer(&hi, &[], &[6.0])
            .node("Clip", &[&out, &lo, &hi], &[&clipped], &[]);
        Ok(clipped)
    }

    fn linear(&mut self, l: &Linear, x: &str, out: &str) -> Result<String> {
        let w = l.weight();
        let (n, f) = w.dims2()?;
        let (wn, bn) = (self.name("w"), self.name("b"));
        let bias = match l.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; n],
        };
        self.g
            .initializer(
                &wn,
                &[n as i64, f as i64],
                &w.flatten_all()?.to_vec1::<f32>()?,
            )
            .initializer(&bn, &[n as i64], &bias)
            .node("Gemm", &[x, &wn, &bn], &[out], &[Attr::Int("transB", 1)])
            .output(out, &[None, Some(n as i64)]);
        Ok(out.to_string())
    }
}

/// Age targets: one-hot (`sigma` = 0) or a Gaussian of `sigma` years around the true age,
/// normalised over the 101 classes. `[n, 101]`.
pub fn age_targets(ages: &[u32], sigma: f32) -> Result<Tensor> {
    let mut t = vec![0f32; ages.len() * NUM_AGES];
    for (row, &age) in t.as_chunks_mut::<NUM_AGES>().0.iter_mut().zip(ages) {
        let age = age.min(NUM_AGES as u32 - 1) as usize;
        if sigma <= 0.0 {
            row[age] = 1.0;
            continue;
        }
        for (a, v) in row.iter_mut().enumerate() {
            let d = (a as f32 - age as f32) / sigma;
            *v = (-0.5 * d * d).exp();
        }
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    Tensor::from_vec(t, (ages.len(), NUM_AGES), &Device::Cpu)
}

/// Age targets of a mixed batch: `(soft, log_mask)`, both `[n, 101]`. An exact age gets the
/// Gaussian of [`age_targets`] in `soft` and a zero row in `log_mask`; a range label (an age
/// group) gets a zero row in `soft` and, in `log_mask`, 0 on the range's years and −10⁴
/// elsewhere, so that [`age_loss`] is −log Σ_{a∈range} p(a) for it.
pub fn mixed_age_targets(labels: &[AgeLabel], sigma: f32) -> Result<(Tensor, Tensor)> {
    mixed_age_targets_with_teacher(labels, &[], sigma, 0.0)
}

/// [`mixed_age_targets`] plus distillation: where `teacher[i]` is given, `weight` × a Gaussian
/// of `sigma` years around the teacher's age is added to row `i` of `soft`, so [`age_loss`]
/// gains `weight` × the cross-entropy against the teacher beside the label's own term.
pub fn mixed_age_targets_with_teacher(
    labels: &[AgeLabel],
    teacher: &[Option<f32>],
    sigma: f32,
    weight: f32,
) -> Result<(Tensor, Tensor)> {
    let n = labels.len();
    let exact: Vec<u32> = labels.iter().map(|l| l.exact().unwrap_or(0)).collect();
    let mut soft = age_targets(&exact, sigma)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut mask = vec![0f32; n * NUM_AGES];
    for (i, label) in labels.iter().enumerate() {
        if let AgeLabel::Range(lo, hi) = *label {
            let row = i * NUM_AGES..(i + 1) * NUM_AGES;
            soft[row.clone()].fill(0.0);
            for (a, m) in mask[row].iter_mut().enumerate() {
                let inside = (lo as usize..=(hi as usize).min(NUM_AGES - 1)).contains(&a);
                *m = if inside { 0.0 } else { -1e4 };
            }
        }
        if let Some(Some(age)) = teacher.get(i).filter(|_| weight > 0.0) {
            let row = &mut soft[i * NUM_AGES..(i + 1) * NUM_AGES];
            let g: Vec<f32> = (0..NUM_AGES)
                .map(|a| {
                    let d = (a as f32 - age) / sigma.max(1.0);
                    (-0.5 * d * d).exp()
                })
                .collect();
            let total: f32 = g.iter().sum();
            for (v, x) in row.iter_mut().zip(g) {
                *v += weight * x / total;
            }
        }
    }
    Ok((
        Tensor::from_vec(soft, (n, NUM_AGES), &Device::Cpu)?,
        Tensor::from_vec(mask, (n, NUM_AGES), &Device::Cpu)?,
    ))
}

/// Mean age loss of a mixed batch (see [`mixed_age_targets`]): soft cross-entropy for exact
/// ages, the negative log-likelihood of the labelled range for age groups. For an exact age the
/// range term is log Σ p = 0, for a range the soft term is 0, so one formula serves both.
pub fn age_loss(logits: &Tensor, soft: &Tensor, log_mask: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let ce = (&logp * soft)?.sum(D::Minus1)?;
    let range = (logp + log_mask)?.log_sum_exp(D::Minus1)?;
    (ce + range)?.mean_all()?.neg()
}

/// Mean cross-entropy between `logits` `[n, k]` and target distributions `[n, k]`.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    (logp * targets)?.sum(D::Minus1)?.mean_all()?.neg()
}

/// Total loss: age loss ([`age_loss`]) + gender cross-entropy.
pub fn loss(
    age_logits: &Tensor,
    gender_logits: &Tensor,
    age_targets: &(Tensor, Tensor),
    genders: &Tensor,
) -> Result<(Tensor, f32, f32)> {
    let la = age_loss(age_logits, &age_targets.0, &age_targets.1)?;
    let lg = candle_nn::loss::cross_entropy(gender_logits, genders)?;
    let (a, g) = (la.to_scalar::<f32>()?, lg.to_scalar::<f32>()?);
    Ok(((la + lg)?, a, g))
}

/// Expected age (years) under the softmax of each row of age logits.
pub fn expected_ages(age_logits: &Tensor) -> Result<Vec<f32>> {
    let p = candle_nn::ops::softmax(age_logits, D::Minus1)?.to_vec2::<f32>()?;
    Ok(p.iter()
        .map(|row| row.iter().enumerate().map(|(a, p)| a as f32 * p).sum())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range loss is −log of the probability the network puts on the range's years, and an
    /// exact age's loss is the soft cross-entropy alone.
    #[test]
    fn range_labels_train_on_the_likelihood_of_their_group() {
        let logits: Vec<f32> = (0..NUM_AGES).map(|a| ((a as f32) * 0.37).sin()).collect();
        let t = Tensor::from_vec(logits.clone(), (1, NUM_AGES), &Device::Cpu).unwrap();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let z: f32 = logits.iter().map(|l| (l - max).exp()).sum();
        let p: Vec<f32> = logits.iter().map(|l| (l - max).exp() / z).collect();

        let targets = mixed_age_targets(&[AgeLabel::Range(20, 29)], 2.0).unwrap();
        let got = age_loss(&t, &targets.0, &targets.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = -p[20..=29].iter().sum::<f32>().ln();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");

        // 70+ runs to the last age class.
        let targets = mixed_age_targets(&[AgeLabel::Range(70, 100)], 2.0).unwrap();
        let got = age_loss(&t, &targets.0, &targets.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = -p[70..].iter().sum::<f32>().ln();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");

        let targets = mixed_age_targets(&[AgeLabel::Exact(33)], 2.0).unwrap();
        let got = age_loss(&t, &targets.0, &targets.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let soft = age_targets(&[33], 2.0).unwrap();
        let want = soft_cross_entropy(&t, &soft)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");

        // A teacher's age adds weight × its own cross-entropy.
        let with =
            mixed_age_targets_with_teacher(&[AgeLabel::Range(20, 29)], &[Some(41.0)], 2.0, 0.5)
                .unwrap();
        let got = age_loss(&t, &with.0, &with.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let teacher = age_targets(&[41], 2.0).unwrap();
        let teacher_ce = soft_cross_entropy(&t, &teacher)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want_group = -p[20..=29].iter().sum::<f32>().ln();
        assert!(
            (got - (want_group + 0.5 * teacher_ce)).abs() < 1e-4,
            "{got}"
        );

        // A mixed batch is the mean of the two.
        let both = Tensor::cat(&[&t, &t], 0).unwrap();
        let targets =
            mixed_age_targets(&[AgeLabel::Exact(33), AgeLabel::Range(20, 29)], 2.0).unwrap();
        let got = age_loss(&both, &targets.0, &targets.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = (want - p[20..=29].iter().sum::<f32>().ln()) / 2.0;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}
