//! agecam: an edge age/gender estimator.
//!
//! The device path is a pipeline of stages, each in its own module:
//! [`capture`] (frames) → [`vision`] (faces, crops) → [`model`] (age, gender) →
//! [`display`] (overlay) and statistics. [`pipeline`] wires them together; [`config`] holds the
//! daemon's settings. The host tool's training code lives in `train` (feature `train`).

pub mod capture;
pub mod cli;
pub mod config;
pub mod display;
mod error;
pub mod fault_log;
#[cfg(test)]
mod fuzz_seeds;
pub mod logging;
pub mod model;
pub mod pipeline;
pub mod push;
pub mod stats;
pub mod systemd;
#[cfg(any(test, feature = "train"))]
pub mod tflite;
pub mod vision;

pub use error::{Error, Result};
// Training needs feature `train`; only its dataset label parsing is built without it.
pub mod train;
