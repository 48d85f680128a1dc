//! 1×1 convolution (and a small dense k×k convolution via im2col) on the `gemm` crate.
//!
//! Per image `Y = W·X` with `X: [cin, h·w]`, `W: [cout, cin]`; images run in parallel with rayon
//! and each gemm is single threaded. Backward: `dX = Wᵀ·dY` per image and
//! `dW = Σₙ dYₙ·Xₙᵀ` (one partial sum per rayon task, then reduced).

use super::{cpu_slice, from_vec, prof, with_f32};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Row-major matrix view: pointer, rows, cols, row stride, col stride.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Mat {
    fn new(s: &[f32], rs: usize, cs: usize) -> Self {
        Mat {
            ptr: s.as_ptr(),
            rs: rs as isize,
            cs: cs as isize,
        }
    }
}

/// `dst[m×n] (row-major, contiguous) = (accumulate ? dst : 0) + a[m×k]·b[k×n]`.
fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat, accumulate: bool) {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the callers build `a` and `b` from slices holding at least m×k and k×n elements
    // with the given strides, and `dst` holds m×n elements (checked above).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Splits `0..n` into at most `rayon::current_num_threads()` contiguous ranges.
fn batch_ranges(n: usize) -> Vec<std::ops::Range<usize>> {
    let t = rayon::current_num_threads().clamp(1, n.max(1));
    (0..t).map(|i| (i * n / t)..((i + 1) * n / t)).collect()
}

/// The custom op for a 1×1 convolution without bias: `x.apply_op2(w, Conv1x1)`.
#[derive(Debug, Clone, Copy)]
pub struct Conv1x1;

fn check1x1(xs: &Shape, ws: &Shape) -> Result<(usize, usize, usize, usize)> {
    let (n, cin, h, w) = xs.dims4()?;
    let (cout, wcin, k0, k1) = ws.dims4()?;
    if wcin != cin || k0 != 1 || k1 != 1 {
        bail!("conv1x1: weight {ws:?} does not match input {xs:?}")
    }
    Ok((n, cin, cout, h * w))
}

impl CustomOp2 for Conv1x1 {
    fn name(&self) -> &'static str {
        "conv1x1"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _t = prof::timer(4);
        let (n, cin, cout, hw) = check1x1(l1.shape(), l2.shape())?;
        let x = cpu_slice(s1, l1)?;
        let w = cpu_slice(s2, l2)?;
        let mut out = vec![0f32; n * cout * hw];
        if hw > 0 {
            out.par_chunks_mut(cout * hw)
                .zip(x.par_chunks(cin * hw))
                .for_each(|(y, xi)| {
                    matmul(
                        y,
                        cout,
                        hw,
                        cin,
                        Mat::new(w, cin, 1),
                        Mat::new(xi, hw, 1),
                        false,
                    )
                });
        }
        let (_, _, h, wd) = l1.shape().dims4()?;
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, wd))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _t = prof::timer(5);
        let (n, cin, cout, hw) = check1x1(x.shape(), w.shape())?;
        let (dx, dw) = with_f32(grad, |dy| {
            with_f32(w, |wv| {
                with_f32(x, |xv| {
                    let dx = x.track_op().then(|| {
                        let mut dx = vec![0f32; n * cin * hw];
                        dx.par_chunks_mut(cin * hw)
                            .zip(dy.par_chunks(cout * hw))
                            .for_each(|(d, g)| {
                                // Wᵀ: [cin, cout] view of W with swapped strides.
                                matmul(
                                    d,
                                    cin,
                                    hw,
                                    cout,
                                    Mat::new(wv, 1, cin),
                                    Mat::new(g, hw, 1),
                                    false,
                                )
                            });
                        dx
                    });
                    let dw = w.track_op().then(|| {
                        let parts: Vec<Vec<f32>> = batch_ranges(n)
                            .into_par_iter()
                            .map(|r| {
                                let mut acc = vec![0f32; cout * cin];
                                for (j, b) in r.enumerate() {
                                    let g = &dy[b * cout * hw..(b + 1) * cout * hw];
                                    let xi = &xv[b * cin * hw..(b + 1) * cin * hw];
                                    // Xᵀ: [hw, cin] view.
                                    matmul(
                                        &mut acc,
                                        cout,
                                        cin,
                                        hw,
                                        Mat::new(g, hw, 1),
                                        Mat::new(xi, 1, hw),
                                        j > 0,
                                    )
                                }
                                acc
                            })
                            .collect();
                        reduce(parts)
                    });
                    (dx, dw)
                })
            })
        })???;
        let dx = dx.map(|v| from_vec(v, x.shape())).transpose()?;
        let dw = dw.map(|v| from_vec(v, w.shape())).transpose()?;
        Ok((dx, dw))
    }
}

fn reduce(mut parts: Vec<Vec<f32>>) -> Vec<f32> {
    let mut acc = parts.swap_remove(0);
    for p in parts {
        for (a, b) in acc.iter_mut().zip(p) {
            *a += b;
        }
    }
    acc
}

/// 1×1 convolution without bias: `x: [n, cin, h, w]`, `w: [cout, cin, 1, 1]`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv1x1)
}

/// Dense k×k convolution without bias (groups = 1), used for the MobileNetV2 stem.
#[derive(Debug, Clone, Copy)]
pub struct DenseConv {
    pub stride: usize,
    pub padding: usize,
}

struct Geom {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    ho: usize,
    wo: usize,
    s: usize,
    p: usize,
}

impl DenseConv {
    fn geom(&self, xs: &Shape, ws: &Shape) -> Result<Geom> {
        let (n, cin, h, w) = xs.dims4()?;
        let (cout, wcin, k, k1) = ws.dims4()?;
        if wcin != cin || k != k1 || self.stride == 0 {
            bail!("dense conv: weight {ws:?} does not match input {xs:?}")
        }
        let (s, p) = (self.stride, self.padding);
        if h + 2 * p < k || w + 2 * p < k {
            bail!("dense conv: kernel larger than padded input")
        }
        Ok(Geom {
            n,
            cin,
            cout,
            h,
            w,
            k,
            ho: (h + 2 * p - k) / s + 1,
            wo: (w + 2 * p - k) / s + 1,
            s,
            p,
        })
    }
}

impl Geom {
    /// col[(ci·k + ky)·k + kx, oy·wo + ox] = x[ci, s·oy + ky − p, s·ox + kx − p].
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let (ho, wo, k) = (self.ho, self.wo, self.k);
        for ci in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let r = (ci * k + ky) * k + kx;
                    let dst = &mut col[r * ho * wo..(r + 1) * ho * wo];
                    for oy in 0..ho {
                        let iy = (self.s * oy + ky) as isize - self.p as isize;
                        let drow = &mut dst[oy * wo..(oy + 1) * wo];
                        if iy < 0 || iy as usize >= self.h {
                            drow.fill(0.0);
                            continue;
                        }
                        let xrow = &x[(ci * self.h + iy as usize) * self.w..][..self.w];
                        for (ox, d) in drow.iter_mut().enumerate() {
                            let ix = (self.s * ox + kx) as isize - self.p as isize;
                            *d = if ix >= 0 && (ix as usize) < self.w {
                                xrow[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }

    /// Adjoint of `im2col`: dx[ci, iy, ix] += col[...]. `dx` must be zeroed.
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        let (ho, wo, k) = (self.ho, self.wo, self.k);
        for ci in 0..self.cin {
            for ky in 0..k {
                for kx in 0..k {
                    let r = (ci * k + ky) * k + kx;
                    let src = &col[r * ho * wo..(r + 1) * ho * wo];
                    for oy in 0..ho {
                        let iy = (self.s * oy + ky) as isize - self.p as isize;
                        if iy < 0 || iy as usize >= self.h {
                            continue;
                        }
                        let xrow = &mut dx[(ci * self.h + iy as usize) * self.w..][..self.w];
                        for (ox, v) in src[oy * wo..(oy + 1) * wo].iter().enumerate() {
                            let ix = (self.s * ox + kx) as isize - self.p as isize;
                            if ix >= 0 && (ix as usize) < self.w {
                                xrow[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp2 for DenseConv {
    fn name(&self) -> &'static str {
        "dense-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let _t = prof::timer(6);
        let g = self.geom(l1.shape(), l2.shape())?;
        let x = cpu_slice(s1, l1)?;
        let w = cpu_slice(s2, l2)?;
        let (kk, hwo) = (g.cin * g.k * g.k, g.ho * g.wo);
        let mut out = vec![0f32; g.n * g.cout * hwo];
        out.par_chunks_mut(g.cout * hwo)
            .zip(x.par_chunks(g.cin * g.h * g.w))
            .for_each_init(
                || vec![0f32; kk * hwo],
                |col, (y, xi)| {
                    g.im2col(xi, col);
                    matmul(
                        y,
                        g.cout,
                        hwo,
                        kk,
                        Mat::new(w, kk, 1),
                        Mat::new(col, hwo, 1),
                        false,
                    )
                },
            );
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.cout, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let _t = prof::timer(7);
        let g = self.geom(x.shape(), w.shape())?;
        let (kk, hwo, hwi) = (g.cin * g.k * g.k, g.ho * g.wo, g.h * g.w);
        let (dx, dw) = with_f32(grad, |dy| {
            with_f32(w, |wv| {
                with_f32(x, |xv| {
                    let dx = x.track_op().then(|| {
                        let mut dx = vec![0f32; g.n * g.cin * hwi];
                        dx.par_chunks_mut(g.cin * hwi)
                            .zip(dy.par_chunks(g.cout * hwo))
                            .for_each_init(
                                || vec![0f32; kk * hwo],
                                |col, (d, gi)| {
                                    matmul(
                                        col,
                                        kk,
                                        hwo,
                                        g.cout,
                                        Mat::new(wv, 1, kk),
                                        Mat::new(gi, hwo, 1),
                                        false,
                                    );
                                    g.col2im(col, d);
                                },
                            );
                        dx
                    });
                    let dw = w.track_op().then(|| {
                        let parts: Vec<Vec<f32>> = batch_ranges(g.n)
                            .into_par_iter()
                            .map(|r| {
                                let mut acc = vec![0f32; g.cout * kk];
                                let mut col = vec![0f32; kk * hwo];
                                for (j, b) in r.enumerate() {
                                    g.im2col(&xv[b * g.cin * hwi..(b + 1) * g.cin * hwi], &mut col);
                                    let gi = &dy[b * g.cout * hwo..(b + 1) * g.cout * hwo];
                                    matmul(
                                        &mut acc,
                                        g.cout,
                                        kk,
                                        hwo,
                                        Mat::new(gi, hwo, 1),
                                        Mat::new(&col, 1, hwo),
                                        j > 0,
                                    )
                                }
                                acc
                            })
                            .collect();
                        reduce(parts)
                    });
                    (dx, dw)
                })
            })
        })???;
        let dx = dx.map(|v| from_vec(v, x.shape())).transpose()?;
        let dw = dw.map(|v| from_vec(v, w.shape())).transpose()?;
        Ok((dx, dw))
    }
}

/// Dense convolution (groups = 1, no bias): `x: [n, cin, h, w]`, `w: [cout, cin, k, k]`.
pub fn conv2d_dense(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&w.contiguous()?, DenseConv { stride, padding })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use candle_core::{Device, Var};

    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f64],
        w: &[f64],
        (n, cin, h, wd): (usize, usize, usize, usize),
        cout: usize,
        k: usize,
        s: usize,
        p: usize,
    ) -> Vec<f64> {
        let ho = (h + 2 * p - k) / s + 1;
        let wo = (wd + 2 * p - k) / s + 1;
        let mut out = vec![0f64; n * cout * ho * wo];
        for b in 0..n {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = 0.0;
                        for ci in 0..cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (s * oy + ky) as isize - p as isize;
                                    let ix = (s * ox + kx) as isize - p as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                        continue;
                                    }
                                    acc += x[((b * cin + ci) * h + iy as usize) * wd + ix as usize]
                                        * w[((co * cin + ci) * k + ky) * k + kx];
                                }
                            }
                        }
                        out[((b * cout + co) * ho + oy) * wo + ox] = acc;
                    }
                }
            }
        }
        out
    }

    /// (n, cin, h, w, cout, k, stride, padding)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
    const CASES: [Case; 7] = [
        (2, 3, 4, 4, 5, 1, 1, 0),
        (3, 4, 5, 3, 2, 1, 1, 0),
        (2, 7, 1, 1, 9, 1, 1, 0),
        (2, 3, 7, 7, 4, 3, 2, 1),
        (2, 3, 6, 6, 4, 3, 2, 1),
        (3, 2, 5, 4, 3, 3, 1, 1),
        (2, 2, 6, 5, 3, 2, 2, 0),
    ];

    fn run(x: &Tensor, w: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
        if k == 1 && s == 1 && p == 0 {
            conv1x1(x, w)
        } else {
            conv2d_dense(x, w, s, p)
        }
    }

    #[test]
    fn forward_matches_naive_and_candle_conv2d() -> Result<()> {
        let mut rng = Rng::new(20);
        for &(n, cin, h, wd, cout, k, s, p) in &CASES {
            let x = rng.tensor(&[n, cin, h, wd])?;
            let w = rng.tensor(&[cout, cin, k, k])?;
            for y in [run(&x, &w, k, s, p)?, conv2d_dense(&x, &w, s, p)?] {
                let d = |t: &Tensor| -> Vec<f64> { flat(t).iter().map(|v| *v as f64).collect() };
                let r = reference(&d(&x), &d(&w), (n, cin, h, wd), cout, k, s, p);
                assert!(max_rel_err(&flat(&y), &r) < 1e-5, "naive mismatch");
                let yc = x.conv2d(&w, p, s, 1, 1)?;
                assert_eq!(y.dims(), yc.dims());
                assert!(max_rel_err(&flat(&y), &d(&yc)) < 1e-5, "candle mismatch");
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let mut rng = Rng::new(21);
        for &(n, cin, h, wd, cout, k, s, p) in &CASES {
            let x = Var::from_tensor(&rng.tensor(&[n, cin, h, wd])?)?;
            let w = Var::from_tensor(&rng.tensor(&[cout, cin, k, k])?)?;
            let y = run(&x, &w, k, s, p)?;
            let proj = rng.vec(y.elem_count());
            let pt = Tensor::from_vec(proj.clone(), y.shape(), &Device::Cpu)?;
            let grads = (y * &pt)?.sum_all()?.backward()?;
            let mut params = flat(&x);
            let nx = params.len();
            params.extend(flat(&w));
            let lossf = |q: &[f64]| -> f64 {
                let r = reference(&q[..nx], &q[nx..], (n, cin, h, wd), cout, k, s, p);
                r.iter().zip(&proj).map(|(a, b)| a * *b as f64).sum()
            };
            let fd: Vec<f64> = (0..params.len())
                .map(|i| fd_grad(&params, i, &lossf))
                .collect();
            let gx = flat(grads.get(&x).unwrap());
            let gw = flat(grads.get(&w).unwrap());
            let ex = max_rel_err(&gx, &fd[..nx]);
            let ew = max_rel_err(&gw, &fd[nx..]);
            assert!(
                ex < 1e-3 && ew < 1e-3,
                "grad error {ex} {ew} for k={k} s={s}"
            );
        }
        Ok(())
    }

    #[test]
    fn input_gradient_skipped_for_constant_input() -> Result<()> {
        let mut rng = Rng::new(22);
        let x = rng.tensor(&[2, 3, 6, 6])?;
        let w = Var::from_tensor(&rng.tensor(&[4, 3, 3, 3])?)?;
        let grads = conv2d_dense(&x, &w, 2, 1)?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none());
        assert!(grads.get(&w).is_some());
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut rng = Rng::new(23);
        let x = rng.tensor(&[1, 3, 4, 4]).unwrap();
        assert!(conv1x1(&x, &rng.tensor(&[2, 4, 1, 1]).unwrap()).is_err());
        assert!(conv1x1(&x, &rng.tensor(&[2, 3, 3, 3]).unwrap()).is_err());
    }
}
