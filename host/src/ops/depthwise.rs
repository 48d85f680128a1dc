//! Depthwise 3×3 convolution, padding 1, stride 1 or 2, NCHW f32.
//!
//! Input `x: [n, c, h, w]`, weight `w: [c, 1, 3, 3]`, output `[n, c, ho, wo]` with
//! `ho = (h - 1) / stride + 1` (same as `conv2d(padding = 1, groups = c)`).
//! Forward and input gradient run in parallel over the `n·c` planes, the weight gradient in
//! parallel over channels (each task sums over the batch), with contiguous row loops.

use super::{cpu_slice, dot, from_vec, prof, with_f32};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Output size along one axis.
pub fn out_size(i: usize, stride: usize) -> usize {
    (i - 1) / stride + 1
}

/// Interior range of output columns `[1, hi)` for which all three taps are inside the row.
#[inline]
fn interior(w: usize, wo: usize, s: usize) -> usize {
    if w >= 2 {
        ((w - 2) / s + 1).min(wo)
    } else {
        0
    }
}

/// `o[ox] += Σ_kx k[kx] · x[s·ox + kx − 1]` (zero padding).
#[inline]
fn row_fwd(o: &mut [f32], x: &[f32], k: &[f32], s: usize) {
    let (w, wo) = (x.len(), o.len());
    let hi = interior(w, wo, s);
    let border = |ox: usize, o: &mut [f32]| {
        for (kx, kv) in k.iter().enumerate().take(3) {
            let ix = (s * ox + kx) as isize - 1;
            if ix >= 0 && (ix as usize) < w {
                o[ox] += kv * x[ix as usize];
            }
        }
    };
    border(0, o);
    for ox in hi.max(1)..wo {
        border(ox, o);
    }
    if hi > 1 {
        let (k0, k1, k2) = (k[0], k[1], k[2]);
        if s == 1 {
            let n = hi - 1;
            let (a, b, c) = (&x[..n], &x[1..n + 1], &x[2..n + 2]);
            for (i, ov) in o[1..hi].iter_mut().enumerate() {
                *ov += k0 * a[i] + k1 * b[i] + k2 * c[i];
            }
        } else {
            for (ox, ov) in o.iter_mut().enumerate().take(hi).skip(1) {
                let b = s * ox;
                *ov += k0 * x[b - 1] + k1 * x[b] + k2 * x[b + 1];
            }
        }
    }
}

/// Forward on one plane: `x: h×w` → `o: ho×wo` (o is overwritten).
fn plane_fwd(x: &[f32], h: usize, w: usize, k: &[f32], s: usize, o: &mut [f32]) {
    let ho = out_size(h, s);
    let wo = out_size(w, s);
    o.fill(0.0);
    for oy in 0..ho {
        let orow = &mut o[oy * wo..(oy + 1) * wo];
        for ky in 0..3 {
            let iy = (s * oy + ky) as isize - 1;
            if iy < 0 || iy as usize >= h {
                continue;
            }
            let iy = iy as usize;
            row_fwd(orow, &x[iy * w..(iy + 1) * w], &k[3 * ky..3 * ky + 3], s);
        }
    }
}

/// Input gradient on one plane: `dy: ho×wo` → `dx: h×w` (dx is overwritten).
fn plane_bwd_input(dy: &[f32], h: usize, w: usize, k: &[f32], s: usize, dx: &mut [f32]) {
    if s == 1 {
        // Correlation with the flipped kernel.
        let mut kf = [0f32; 9];
        for (i, v) in kf.iter_mut().enumerate() {
            *v = k[8 - i];
        }
        plane_fwd(dy, h, w, &kf, 1, dx);
        return;
    }
    let ho = out_size(h, s);
    let wo = out_size(w, s);
    dx.fill(0.0);
    for oy in 0..ho {
        let drow = &dy[oy * wo..(oy + 1) * wo];
        for ky in 0..3 {
            let iy = (s * oy + ky) as isize - 1;
            if iy < 0 || iy as usize >= h {
                continue;
            }
            let iy = iy as usize;
            let xrow = &mut dx[iy * w..(iy + 1) * w];
            let kr = &k[3 * ky..3 * ky + 3];
            for (ox, d) in drow.iter().enumerate() {
                for (kx, kv) in kr.iter().enumerate() {
                    let ix = (s * ox + kx) as isize - 1;
                    if ix >= 0 && (ix as usize) < w {
                        xrow[ix as usize] += kv * d;
                    }
                }
            }
        }
    }
}

/// Adds the weight gradient contribution of one plane into `acc[9]`.
fn plane_bwd_weight(x: &[f32], dy: &[f32], h: usize, w: usize, s: usize, acc: &mut [f64; 9]) {
    let ho = out_size(h, s);
    let wo = out_size(w, s);
    let mut a = [0f32; 9];
    for oy in 0..ho {
        let drow = &dy[oy * wo..(oy + 1) * wo];
        for ky in 0..3 {
            let iy = (s * oy + ky) as isize - 1;
            if iy < 0 || iy as usize >= h {
                continue;
            }
            let iy = iy as usize;
            let xrow = &x[iy * w..(iy + 1) * w];
            if s == 1 {
                // kx = 0: dy[1..] · x[..w-1]; kx = 1: full; kx = 2: dy[..w-1] · x[1..]
                a[3 * ky] += dot(&drow[1..], &xrow[..w - 1]);
                a[3 * ky + 1] += dot(drow, xrow);
                a[3 * ky + 2] += dot(&drow[..w - 1], &xrow[1..]);
            } else {
                for kx in 0..3 {
                    let mut t = 0f32;
                    for (ox, d) in drow.iter().enumerate() {
                        let ix = (s * ox + kx) as isize - 1;
                        if ix >= 0 && (ix as usize) < w {
                            t += d * xrow[ix as usize];
                        }
                    }
                    a[3 * ky + kx] += t;
                }
            }
        }
    }
    for (d, v) in acc.iter_mut().zip(a) {
        *d += v as f64;
    }
}

/// The custom op: `x.apply_op2(w, DepthwiseConv3x3 { stride })`.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseConv3x3 {
    pub stride: usize,
}

fn check(xs: &Shape, ws: &Shape, stride: usize) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = xs.dims4()?;
    let (wc, one, k0, k1) = ws.dims4()?;
    if wc != c || one != 1 || k0 != 3 || k1 != 3 {
        bail!("depthwise3x3: weight shape {ws:?} does not match input {xs:?}")
    }
    if stride != 1 && stride != 2 {
        bail!("depthwise3x3: stride must be 1 or 2, got {stride}")
    }
    if h == 0 || w == 0 {
        bail!("depthwise3x3: empty input")
    }
    Ok((n, c, h, w))
}

impl CustomOp2 for DepthwiseConv3x3 {
    fn name(&self) -> &'static str {
        "depthwise-conv3x3"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _t = prof::timer(0);
        let s = self.stride;
        let (n, c, h, w) = check(l1.shape(), l2.shape(), s)?;
        let x = cpu_slice(s1, l1)?;
        let k = cpu_slice(s2, l2)?;
        let (ho, wo) = (out_size(h, s), out_size(w, s));
        let mut out = vec![0f32; n * c * ho * wo];
        out.par_chunks_mut(ho * wo).enumerate().for_each(|(p, o)| {
            let ch = p % c;
            plane_fwd(
                &x[p * h * w..(p + 1) * h * w],
                h,
                w,
                &k[9 * ch..9 * ch + 9],
                s,
                o,
            );
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _t = prof::timer(1);
        let s = self.stride;
        let (n, c, h, wd) = check(x.shape(), w.shape(), s)?;
        let (ho, wo) = (out_size(h, s), out_size(wd, s));
        let (dx, dw) = with_f32(grad, |dy| {
            with_f32(w, |k| {
                with_f32(x, |xv| {
                    let dx = if x.track_op() {
                        let mut dx = vec![0f32; n * c * h * wd];
                        dx.par_chunks_mut(h * wd).enumerate().for_each(|(p, d)| {
                            let ch = p % c;
                            let g = &dy[p * ho * wo..(p + 1) * ho * wo];
                            plane_bwd_input(g, h, wd, &k[9 * ch..9 * ch + 9], s, d);
                        });
                        Some(dx)
                    } else {
                        None
                    };
                    let dw = if w.track_op() {
                        let mut dw = vec![0f32; c * 9];
                        dw.par_chunks_mut(9).enumerate().for_each(|(ch, d)| {
                            let mut acc = [0f64; 9];
                            for b in 0..n {
                                let p = b * c + ch;
                                plane_bwd_weight(
                                    &xv[p * h * wd..(p + 1) * h * wd],
                                    &dy[p * ho * wo..(p + 1) * ho * wo],
                                    h,
                                    wd,
                                    s,
                                    &mut acc,
                                );
                            }
                            for (o, a) in d.iter_mut().zip(acc) {
                                *o = a as f32;
                            }
                        });
                        Some(dw)
                    } else {
                        None
                    };
                    (dx, dw)
                })
            })
        })???;
        let dx = dx.map(|v| from_vec(v, (n, c, h, wd))).transpose()?;
        let dw = dw.map(|v| from_vec(v, (c, 1, 3, 3))).transpose()?;
        Ok((dx, dw))
    }
}

/// Depthwise 3×3 convolution with padding 1: `x: [n, c, h, w]`, `w: [c, 1, 3, 3]`.
pub fn depthwise_conv3x3(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, DepthwiseConv3x3 { stride })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use candle_core::Var;

    /// Naive f64 reference.
    fn reference(
        x: &[f64],
        k: &[f64],
        dims: (usize, usize, usize, usize),
        s: usize,
    ) -> (Vec<f64>, usize, usize) {
        let (n, c, h, w) = dims;
        let (ho, wo) = (out_size(h, s), out_size(w, s));
        let mut out = vec![0f64; n * c * ho * wo];
        for b in 0..n {
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = 0f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (s * oy + ky) as isize - 1;
                                let ix = (s * ox + kx) as isize - 1;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * c + ch) * h + iy as usize) * w + ix as usize;
                                acc += x[xi] * k[ch * 9 + ky * 3 + kx];
                            }
                        }
                        out[((b * c + ch) * ho + oy) * wo + ox] = acc;
                    }
                }
            }
        }
        (out, ho, wo)
    }

    const CASES: [(usize, usize, usize, usize, usize); 8] = [
        (2, 3, 5, 5, 1),
        (2, 3, 6, 6, 1),
        (3, 2, 7, 4, 1),
        (2, 3, 5, 5, 2),
        (2, 3, 6, 6, 2),
        (2, 2, 7, 8, 2),
        (1, 2, 1, 1, 1),
        (2, 4, 2, 3, 2),
    ];

    #[test]
    fn forward_matches_naive_and_candle_conv2d() -> Result<()> {
        let mut rng = Rng::new(1);
        for &(n, c, h, w, s) in &CASES {
            let x = rng.tensor(&[n, c, h, w])?;
            let k = rng.tensor(&[c, 1, 3, 3])?;
            let y = depthwise_conv3x3(&x, &k, s)?;
            let xd: Vec<f64> = flat(&x).iter().map(|v| *v as f64).collect();
            let kd: Vec<f64> = flat(&k).iter().map(|v| *v as f64).collect();
            let (r, ho, wo) = reference(&xd, &kd, (n, c, h, w), s);
            assert_eq!(y.dims(), &[n, c, ho, wo]);
            let e = max_rel_err(&flat(&y), &r);
            assert!(e < 1e-5, "naive mismatch {e} for {:?}", (n, c, h, w, s));
            let yc = x.conv2d(&k, 1, s, 1, c)?;
            let rc: Vec<f64> = flat(&yc).iter().map(|v| *v as f64).collect();
            let e = max_rel_err(&flat(&y), &rc);
            assert!(e < 1e-5, "candle mismatch {e} for {:?}", (n, c, h, w, s));
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let mut rng = Rng::new(2);
        for &(n, c, h, w, s) in &CASES {
            let x = Var::from_tensor(&rng.tensor(&[n, c, h, w])?)?;
            let k = Var::from_tensor(&rng.tensor(&[c, 1, 3, 3])?)?;
            let (ho, wo) = (out_size(h, s), out_size(w, s));
            let proj = rng.vec(n * c * ho * wo);
            let pt = Tensor::from_vec(proj.clone(), (n, c, ho, wo), &candle_core::Device::Cpu)?;
            let loss = (depthwise_conv3x3(&x, &k, s)? * &pt)?.sum_all()?;
            let g = loss.backward()?;
            let gx = flat(g.get(&x).unwrap());
            let gk = flat(g.get(&k).unwrap());
            let xv = flat(&x);
            let kv = flat(&k);
            let lossf = |xd: &[f64], kd: &[f64]| -> f64 {
                let (r, _, _) = reference(xd, kd, (n, c, h, w), s);
                r.iter().zip(&proj).map(|(a, b)| a * *b as f64).sum()
            };
            let kd: Vec<f64> = kv.iter().map(|v| *v as f64).collect();
            let xd: Vec<f64> = xv.iter().map(|v| *v as f64).collect();
            let fx: Vec<f64> = (0..xv.len())
                .map(|i| fd_grad(&xv, i, &|q| lossf(q, &kd)))
                .collect();
            let fk: Vec<f64> = (0..kv.len())
                .map(|i| fd_grad(&kv, i, &|q| lossf(&xd, q)))
                .collect();
            let ex = max_rel_err(&gx, &fx);
            let ek = max_rel_err(&gk, &fk);
            assert!(ex < 1e-3, "dx error {ex} for {:?}", (n, c, h, w, s));
            assert!(ek < 1e-3, "dw error {ek} for {:?}", (n, c, h, w, s));
        }
        Ok(())
    }

    #[test]
    fn gradients_match_candle_conv2d_backward() -> Result<()> {
        let mut rng = Rng::new(3);
        // candle's own conv2d backward only handles square inputs for stride 2
        // (its output padding is derived from the height), so (7, 8, s = 2) is skipped.
        for &(n, c, h, w, s) in CASES[..6].iter().filter(|t| t.4 == 1 || t.2 == t.3) {
            let x = Var::from_tensor(&rng.tensor(&[n, c, h, w])?)?;
            let k = Var::from_tensor(&rng.tensor(&[c, 1, 3, 3])?)?;
            let y1 = depthwise_conv3x3(&x, &k, s)?;
            let pt = rng.tensor(y1.dims())?;
            let g1 = (y1 * &pt)?.sum_all()?.backward()?;
            let g2 = (x.conv2d(&k, 1, s, 1, c)? * &pt)?.sum_all()?.backward()?;
            for v in [x.as_tensor(), k.as_tensor()] {
                let a = flat(g1.get(v).unwrap());
                let b: Vec<f64> = flat(g2.get(v).unwrap()).iter().map(|v| *v as f64).collect();
                let e = max_rel_err(&a, &b);
                assert!(
                    e < 1e-4,
                    "grad mismatch vs candle {e} for {:?}",
                    (n, c, h, w, s)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut rng = Rng::new(4);
        let x = rng.tensor(&[1, 3, 4, 4]).unwrap();
        let k = rng.tensor(&[2, 1, 3, 3]).unwrap();
        assert!(depthwise_conv3x3(&x, &k, 1).is_err());
        let k = rng.tensor(&[3, 1, 3, 3]).unwrap();
        assert!(depthwise_conv3x3(&x, &k, 3).is_err());
    }
}
