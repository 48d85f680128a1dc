//! Very cheap per-op wall-clock counters (forward/backward per op kind).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub const KINDS: [&str; 8] = [
    "depthwise.fwd",
    "depthwise.bwd",
    "bn.fwd",
    "bn.bwd",
    "pointwise.fwd",
    "pointwise.bwd",
    "dense.fwd",
    "dense.bwd",
];

static NANOS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Guard recording elapsed time into slot `k` on drop.
pub struct Timer(usize, Instant);

pub fn timer(k: usize) -> Timer {
    Timer(k, Instant::now())
}

impl Drop for Timer {
    fn drop(&mut self) {
        NANOS[self.0].fetch_add(self.1.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Returns (name, seconds) for every op kind and resets the counters.
pub fn take() -> Vec<(&'static str, f64)> {
    KINDS
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, NANOS[i].swap(0, Ordering::Relaxed) as f64 * 1e-9))
        .collect()
}
