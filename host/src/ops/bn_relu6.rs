//! Fused batch normalisation + optional ReLU6 (NCHW or NC, f32).
//!
//! Training mode normalises with the batch statistics (biased variance), applies the affine
//! `gamma`/`beta` and clamps to `[0, 6]` (or not, for the linear bottleneck). The mean and
//! inverse standard deviation are saved for the backward pass and the running statistics are
//! updated with `running = (1 − momentum)·running + momentum·batch` (unbiased variance, like
//! PyTorch). Eval mode uses the running statistics.

use super::{cpu_slice, dot, from_vec, prof, sum, with_f32};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Per-channel statistics used by a forward pass (and reused by its backward pass).
#[derive(Debug, Clone, Default)]
pub struct BnStats {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// Biased batch variance (training mode only).
    pub var: Vec<f32>,
}

/// The custom op: `x.apply_op3(gamma, beta, BnRelu6Op { .. })`.
#[derive(Debug, Clone)]
pub struct BnRelu6Op {
    pub relu6: bool,
    pub eps: f32,
    /// `None`: training mode (batch statistics). `Some((mean, var))`: eval mode.
    pub running: Option<(Vec<f32>, Vec<f32>)>,
    pub saved: Arc<Mutex<BnStats>>,
}

fn dims(s: &Shape) -> Result<(usize, usize, usize)> {
    match s.dims() {
        [n, c] => Ok((*n, *c, 1)),
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        _ => bail!("bn_relu6: expected at least 2 dims, got {s:?}"),
    }
}

/// Mean and biased variance of channel `ch` (two passes, f64 accumulation across planes).
fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize, ch: usize) -> (f32, f32) {
    let m = (n * hw) as f64;
    let mut s = 0f64;
    for b in 0..n {
        let p = (b * c + ch) * hw;
        s += sum(&x[p..p + hw]) as f64;
    }
    let mean = (s / m) as f32;
    let mut v = 0f64;
    for b in 0..n {
        let p = (b * c + ch) * hw;
        let plane = &x[p..p + hw];
        let mut acc = [0f32; 8];
        let (chunks, rest) = plane.as_chunks::<8>();
        let mut r = 0f32;
        for t in rest {
            r += (t - mean) * (t - mean);
        }
        for ck in chunks {
            for i in 0..8 {
                let d = ck[i] - mean;
                acc[i] += d * d;
            }
        }
        v += (r + acc.iter().sum::<f32>()) as f64;
    }
    (mean, (v / m) as f32)
}

impl CustomOp3 for BnRelu6Op {
    fn name(&self) -> &'static str {
        "bn-relu6"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _t = prof::timer(2);
        let (n, c, hw) = dims(l1.shape())?;
        let x = cpu_slice(s1, l1)?;
        let gamma = cpu_slice(s2, l2)?;
        let beta = cpu_slice(s3, l3)?;
        if gamma.len() != c || beta.len() != c {
            bail!("bn_relu6: gamma/beta must have {c} elements")
        }
        let stats = match &self.running {
            None => {
                if n * hw < 2 {
                    bail!("bn_relu6: training needs more than one value per channel")
                }
                let st: Vec<(f32, f32)> = (0..c)
                    .into_par_iter()
                    .map(|ch| channel_stats(x, n, c, hw, ch))
                    .collect();
                BnStats {
                    mean: st.iter().map(|s| s.0).collect(),
                    inv_std: st.iter().map(|s| 1.0 / (s.1 + self.eps).sqrt()).collect(),
                    var: st.iter().map(|s| s.1).collect(),
                }
            }
            Some((rm, rv)) => BnStats {
                mean: rm.clone(),
                inv_std: rv.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect(),
                var: vec![],
            },
        };
        let scale: Vec<f32> = (0..c).map(|i| gamma[i] * stats.inv_std[i]).collect();
        let shift: Vec<f32> = (0..c).map(|i| beta[i] - stats.mean[i] * scale[i]).collect();
        let mut out = vec![0f32; x.len()];
        let relu6 = self.relu6;
        out.par_chunks_mut(hw)
            .zip(x.par_chunks(hw))
            .enumerate()
            .with_min_len(if hw < 64 { 64 } else { 1 })
            .for_each(|(p, (o, xi))| {
                let (a, b) = (scale[p % c], shift[p % c]);
                if relu6 {
                    for (o, v) in o.iter_mut().zip(xi) {
                        *o = (v * a + b).clamp(0.0, 6.0);
                    }
                } else {
                    for (o, v) in o.iter_mut().zip(xi) {
                        *o = v * a + b;
                    }
                }
            });
        *self.saved.lock().unwrap() = stats;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let _t = prof::timer(3);
        let (n, c, hw) = dims(x.shape())?;
        let stats = self.saved.lock().unwrap().clone();
        let train = self.running.is_none();
        let relu6 = self.relu6;
        let m = (n * hw) as f32;
        let gamma = gamma.to_vec1::<f32>()?;
        let (dx, dgamma, dbeta) = with_f32(x, |xv| {
            with_f32(res, |yv| {
                with_f32(grad, |dy| {
                    // Masked gradient of one plane into `buf`.
                    let masked = |p: usize, buf: &mut [f32]| {
                        let (d, y) = (&dy[p * hw..(p + 1) * hw], &yv[p * hw..(p + 1) * hw]);
                        if relu6 {
                            // Branch-free mask (the pattern is random, branches mispredict).
                            for ((o, d), y) in buf.iter_mut().zip(d).zip(y) {
                                let keep = (*y > 0.0) as u32 & (*y < 6.0) as u32;
                                *o = *d * keep as f32;
                            }
                        } else {
                            buf.copy_from_slice(d);
                        }
                    };
                    // Per channel: Σg and Σg·x.
                    let red: Vec<(f32, f32)> = (0..c)
                        .into_par_iter()
                        .map(|ch| {
                            let mut buf = vec![0f32; hw];
                            let (mut sg, mut sgx) = (0f64, 0f64);
                            for b in 0..n {
                                let p = b * c + ch;
                                masked(p, &mut buf);
                                sg += sum(&buf) as f64;
                                sgx += dot(&buf, &xv[p * hw..(p + 1) * hw]) as f64;
                            }
                            let mean = stats.mean[ch] as f64;
                            let is = stats.inv_std[ch] as f64;
                            // Σ g·x̂ = (Σ g·x − mean·Σ g)·inv_std
                            (sg as f32, ((sgx - mean * sg) * is) as f32)
                        })
                        .collect();
                    let dbeta: Vec<f32> = red.iter().map(|r| r.0).collect();
                    let dgamma: Vec<f32> = red.iter().map(|r| r.1).collect();
                    // dx = a·g + bx·x + c0 per channel.
                    let coef: Vec<(f32, f32, f32)> = (0..c)
                        .map(|ch| {
                            let is = stats.inv_std[ch];
                            let a = gamma[ch] * is;
                            if train {
                                let mg = dgamma[ch] / m;
                                let mb = dbeta[ch] / m;
                                let bx = -a * is * mg;
                                (a, bx, -a * mb - bx * stats.mean[ch])
                            } else {
                                (a, 0.0, 0.0)
                            }
                        })
                        .collect();
                    let mut dx = vec![0f32; xv.len()];
                    dx.par_chunks_mut(hw)
                        .enumerate()
                        .with_min_len(if hw < 64 { 64 } else { 1 })
                        .for_each(|(p, o)| {
                            let (a, bx, c0) = coef[p % c];
                            masked(p, o);
                            let xi = &xv[p * hw..(p + 1) * hw];
                            for (o, x) in o.iter_mut().zip(xi) {
                                *o = a * *o + bx * x + c0;
                            }
                        });
                    (dx, dgamma, dbeta)
                })
            })
        })???;
        Ok((
            Some(from_vec(dx, x.shape())?),
            Some(from_vec(dgamma, c)?),
            Some(from_vec(dbeta, c)?),
        ))
    }
}

/// Batch norm (+ optional ReLU6) layer. Variable names (under its `VarBuilder` prefix):
/// `weight` (gamma), `bias` (beta), `running_mean`, `running_var` — as in PyTorch.
#[derive(Debug, Clone)]
pub struct BatchNormRelu6 {
    pub gamma: Var,
    pub beta: Var,
    pub running_mean: Var,
    pub running_var: Var,
    pub momentum: f64,
    pub eps: f64,
    pub relu6: bool,
}

impl BatchNormRelu6 {
    pub fn new(c: usize, relu6: bool, vb: VarBuilder) -> Result<Self> {
        let get = |name: &str, v: f64| -> Result<Var> {
            Var::from_tensor(&vb.get_with_hints(c, name, Init::Const(v))?)
        };
        Ok(Self {
            gamma: get("weight", 1.0)?,
            beta: get("bias", 0.0)?,
            running_mean: get("running_mean", 0.0)?,
            running_var: get("running_var", 1.0)?,
            momentum: 0.1,
            eps: 1e-5,
            relu6,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let saved = Arc::new(Mutex::new(BnStats::default()));
        let running = if train {
            None
        } else {
            Some((
                self.running_mean.to_vec1::<f32>()?,
                self.running_var.to_vec1::<f32>()?,
            ))
        };
        let op = BnRelu6Op {
            relu6: self.relu6,
            eps: self.eps as f32,
            running,
            saved: saved.clone(),
        };
        let y = x
            .contiguous()?
            .apply_op3(self.gamma.as_tensor(), self.beta.as_tensor(), op)?;
        if train {
            let (n, _, hw) = dims(x.shape())?;
            let m = (n * hw) as f64;
            let st = saved.lock().unwrap();
            let mo = self.momentum as f32;
            let unbias = (m / (m - 1.0)) as f32;
            let rm = self.running_mean.to_vec1::<f32>()?;
            let rv = self.running_var.to_vec1::<f32>()?;
            let nm: Vec<f32> = rm
                .iter()
                .zip(&st.mean)
                .map(|(r, b)| (1.0 - mo) * r + mo * b)
                .collect();
            let nv: Vec<f32> = rv
                .iter()
                .zip(&st.var)
                .map(|(r, b)| (1.0 - mo) * r + mo * b * unbias)
                .collect();
            let c = nm.len();
            self.running_mean.set(&from_vec(nm, c)?)?;
            self.running_var.set(&from_vec(nv, c)?)?;
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// f64 reference of the training forward.
    fn reference(
        x: &[f64],
        g: &[f64],
        b: &[f64],
        n: usize,
        c: usize,
        hw: usize,
        r6: bool,
    ) -> Vec<f64> {
        let m = (n * hw) as f64;
        let mut out = vec![0f64; x.len()];
        for ch in 0..c {
            let idx = |bb: usize, i: usize| (bb * c + ch) * hw + i;
            let mut mean = 0.0;
            for bb in 0..n {
                for i in 0..hw {
                    mean += x[idx(bb, i)];
                }
            }
            mean /= m;
            let mut var = 0.0;
            for bb in 0..n {
                for i in 0..hw {
                    var += (x[idx(bb, i)] - mean).powi(2);
                }
            }
            var /= m;
            for bb in 0..n {
                for i in 0..hw {
                    let v = (x[idx(bb, i)] - mean) / (var + 1e-5).sqrt() * g[ch] + b[ch];
                    out[idx(bb, i)] = if r6 { v.clamp(0.0, 6.0) } else { v };
                }
            }
        }
        out
    }

    const CASES: [(usize, usize, usize, usize); 4] =
        [(2, 3, 4, 4), (3, 2, 5, 3), (4, 5, 1, 1), (2, 3, 9, 9)];

    fn layer(c: usize, relu6: bool, rng: &mut Rng) -> Result<(VarMap, BatchNormRelu6)> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let l = BatchNormRelu6::new(c, relu6, vb)?;
        // Random gamma around 2 (so that the ReLU6 clamps on both sides), beta around 1.
        l.gamma.set(&(rng.tensor(&[c])? + 2.0)?)?;
        l.beta.set(&(rng.tensor(&[c])? + 1.0)?)?;
        Ok((vm, l))
    }

    #[test]
    fn train_forward_matches_reference_and_candle_ops() -> Result<()> {
        let mut rng = Rng::new(10);
        for &(n, c, h, w) in &CASES {
            for r6 in [true, false] {
                let (_vm, l) = layer(c, r6, &mut rng)?;
                let x = (rng.tensor(&[n, c, h, w])? * 3.0)?;
                let y = l.forward_t(&x, true)?;
                let d = |t: &Tensor| -> Vec<f64> { flat(t).iter().map(|v| *v as f64).collect() };
                let r = reference(&d(&x), &d(&l.gamma), &d(&l.beta), n, c, h * w, r6);
                let e = max_rel_err(&flat(&y), &r);
                assert!(e < 1e-5, "reference mismatch {e}");
                // candle-nn batch-norm maths with the same parameters.
                let vm2 = VarMap::new();
                let vb2 = VarBuilder::from_varmap(&vm2, DType::F32, &Device::Cpu);
                let bn = candle_nn::batch_norm(c, candle_nn::BatchNormConfig::default(), vb2)?;
                let bn = candle_nn::BatchNorm::new(
                    c,
                    bn.running_mean().clone(),
                    bn.running_var().clone(),
                    l.gamma.as_tensor().clone(),
                    l.beta.as_tensor().clone(),
                    1e-5,
                )?;
                let mut yc = candle_nn::ModuleT::forward_t(&bn, &x, true)?;
                if r6 {
                    yc = yc.clamp(0f32, 6f32)?;
                }
                let e = max_rel_err(&flat(&y), &d(&yc));
                assert!(e < 1e-4, "candle-nn mismatch {e}");
            }
        }
        Ok(())
    }

    #[test]
    fn running_stats_and_eval_mode() -> Result<()> {
        let mut rng = Rng::new(11);
        let (n, c, hw) = (4, 3, 6);
        let (_vm, l) = layer(c, false, &mut rng)?;
        let x = (rng.tensor(&[n, c, 2, 3])? + 0.5)?;
        l.forward_t(&x, true)?;
        let xv = flat(&x);
        let rm = flat(&l.running_mean);
        let rv = flat(&l.running_var);
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|b| (0..hw).map(move |i| (b * c + ch) * hw + i))
                .map(|i| xv[i] as f64)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
            assert!((rm[ch] as f64 - 0.1 * m).abs() < 1e-5);
            assert!((rv[ch] as f64 - (0.9 + 0.1 * v)).abs() < 1e-5);
        }
        // Eval: y = (x − rm)/sqrt(rv + eps)·γ + β.
        let y = l.forward_t(&x, false)?;
        let g = flat(&l.gamma);
        let b = flat(&l.beta);
        let yv = flat(&y);
        for (i, (xi, yi)) in xv.iter().zip(&yv).enumerate() {
            let ch = (i / hw) % c;
            let r = (*xi as f64 - rm[ch] as f64) / (rv[ch] as f64 + 1e-5).sqrt() * g[ch] as f64
                + b[ch] as f64;
            assert!((*yi as f64 - r).abs() < 1e-5, "eval mismatch at {i}");
        }
        // candle-nn's eval path agrees too.
        let bn = candle_nn::BatchNorm::new(
            c,
            l.running_mean.as_tensor().clone(),
            l.running_var.as_tensor().clone(),
            l.gamma.as_tensor().clone(),
            l.beta.as_tensor().clone(),
            1e-5,
        )?;
        let yc = candle_nn::ModuleT::forward_t(&bn, &x, false)?;
        let e = max_rel_err(
            &yv,
            &flat(&yc).iter().map(|v| *v as f64).collect::<Vec<_>>(),
        );
        assert!(e < 1e-5);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let mut rng = Rng::new(12);
        for &(n, c, h, w) in &CASES[..3] {
            for r6 in [true, false] {
                for train in [true, false] {
                    let (_vm, l) = layer(c, r6, &mut rng)?;
                    if !train {
                        l.running_mean.set(&(rng.tensor(&[c])? * 0.3)?)?;
                        l.running_var.set(&((rng.tensor(&[c])? * 0.5)? + 1.5)?)?;
                    }
                    let x = Var::from_tensor(&(rng.tensor(&[n, c, h, w])? * 2.0)?)?;
                    let proj = rng.vec(n * c * h * w);
                    let pt = Tensor::from_vec(proj.clone(), x.shape(), &Device::Cpu)?;
                    let loss = (l.forward_t(&x, train)? * &pt)?.sum_all()?;
                    let grads = loss.backward()?;
                    let hw = h * w;
                    let rm: Vec<f64> = flat(&l.running_mean).iter().map(|v| *v as f64).collect();
                    let rv: Vec<f64> = flat(&l.running_var).iter().map(|v| *v as f64).collect();
                    // params = x ++ gamma ++ beta
                    let mut params = flat(&x);
                    params.extend(flat(&l.gamma));
                    params.extend(flat(&l.beta));
                    let nx = n * c * hw;
                    let lossf = |q: &[f64]| -> f64 {
                        let (xq, gq, bq) = (&q[..nx], &q[nx..nx + c], &q[nx + c..]);
                        let y = if train {
                            reference(xq, gq, bq, n, c, hw, r6)
                        } else {
                            xq.iter()
                                .enumerate()
                                .map(|(i, v)| {
                                    let ch = (i / hw) % c;
                                    let t = (v - rm[ch]) / (rv[ch] + 1e-5).sqrt() * gq[ch] + bq[ch];
                                    if r6 {
                                        t.clamp(0.0, 6.0)
                                    } else {
                                        t
                                    }
                                })
                                .collect()
                        };
                        y.iter().zip(&proj).map(|(a, b)| a * *b as f64).sum()
                    };
                    let fd: Vec<f64> = (0..params.len())
                        .map(|i| fd_grad(&params, i, &lossf))
                        .collect();
                    let mut got = flat(grads.get(&x).unwrap());
                    got.extend(flat(grads.get(&l.gamma).unwrap()));
                    got.extend(flat(grads.get(&l.beta).unwrap()));
                    let e = max_rel_err(&got, &fd);
                    assert!(
                        e < 1e-3,
                        "grad error {e} for {:?} relu6={r6} train={train}",
                        (n, c, h, w)
                    );
                }
            }
        }
        Ok(())
    }
}
