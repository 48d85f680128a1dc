//! Fast CPU custom ops for candle, used to train MobileNetV2 on the host.
//!
//! Plain candle 0.11 trains MobileNetV2 at ~2 images/s on 2 cores (its grouped conv2d and
//! batch norm are slow on the CPU); these fused ops bring it to ~60 images/s at 96×96.
//!
//! * [`depthwise`]: depthwise 3×3 convolution (stride 1/2, padding 1).
//! * [`bn_relu6`]: fused batch-norm (+ optional ReLU6) with running statistics.
//! * [`pointwise`]: 1×1 convolution and a small dense k×k convolution (im2col) on `gemm`.
//! * [`prof`]: per-op wall-clock counters.
//!
//! The network built from these ops is [`crate::mobilenet_v2`].
//!
//! All ops work on contiguous NCHW `f32` tensors on the CPU device.

pub mod bn_relu6;
pub mod depthwise;
pub mod pointwise;
pub mod prof;

use candle_core::{bail, CpuStorage, Device, Layout, Result, Shape, Tensor};

/// Borrows the contiguous f32 data of a cpu storage.
pub(crate) fn cpu_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let v = match s {
        CpuStorage::F32(v) => v,
        _ => bail!("agecam ops: only f32 tensors are supported"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("agecam ops: input must be contiguous"),
    }
}

/// Runs `f` on the contiguous f32 data of a tensor (copying only if it is not contiguous).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        candle_core::Storage::Cpu(cs) => Ok(f(cpu_slice(cs, l)?)),
        _ => bail!("agecam ops: only the cpu device is supported"),
    }
}

/// Builds a cpu tensor from a vector without tracking.
pub(crate) fn from_vec<S: Into<Shape>>(v: Vec<f32>, s: S) -> Result<Tensor> {
    Tensor::from_vec(v, s, &Device::Cpu)
}

/// Dot product with 8 independent lanes so that LLVM vectorises it.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s + acc.iter().sum::<f32>()
}

/// Sum with 8 independent lanes.
#[inline]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (c, r) = a.as_chunks::<8>();
    for x in c {
        for i in 0..8 {
            acc[i] += x[i];
        }
    }
    r.iter().sum::<f32>() + acc.iter().sum::<f32>()
}

#[cfg(test)]
pub(crate) mod testutil {
    use candle_core::{Device, Result, Tensor};

    /// Small deterministic pseudo random generator (xorshift) for tests.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn uniform(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        pub fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.uniform()).collect()
        }
        pub fn tensor(&mut self, dims: &[usize]) -> Result<Tensor> {
            let n = dims.iter().product();
            Tensor::from_vec(self.vec(n), dims, &Device::Cpu)
        }
    }

    pub fn max_rel_err(a: &[f32], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len(), "length mismatch");
        let scale = b.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - y).abs() / scale)
            .fold(0.0, f64::max)
    }

    /// ‖a − b‖₂ / max(‖b‖₂, 1e-3·√n): a whole tensor's error, which one element pushed over
    /// by rounding (a ReLU6 mask flipped at the clamp edge) moves only a little. The floor
    /// keeps gradients that are ~0 by construction from dividing by nothing, like
    /// [`max_rel_err`]'s floor.
    pub fn rel_l2_err(a: &[f32], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len(), "length mismatch");
        let diff: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - y).powi(2)).sum();
        let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        diff.sqrt() / norm.max(1e-3 * (b.len() as f64).sqrt())
    }

    pub fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Central finite differences of `loss(params)` (computed in f64) w.r.t. params[idx].
    /// The references are evaluated in f64, so a small step is accurate and keeps the
    /// ReLU6 kinks from being straddled.
    pub fn fd_grad(p: &[f32], idx: usize, loss: &dyn Fn(&[f64]) -> f64) -> f64 {
        let h = 1e-6;
        let mut q: Vec<f64> = p.iter().map(|v| *v as f64).collect();
        q[idx] += h;
        let lp = loss(&q);
        q[idx] -= 2.0 * h;
        let lm = loss(&q);
        (lp - lm) / (2.0 * h)
    }
}
