//! The host tool's side: datasets, training, evaluation, export and int8
//! quantization. Compiled only with the `train` feature, so the device build stays small —
//! except [`dataset`], whose label parsing needs nothing heavy and is built always so the
//! fuzzer (fuzz/) can reach it without compiling candle.

#[cfg(feature = "train")]
pub mod bench;
#[cfg(feature = "train")]
pub mod crops;
pub mod dataset;
#[cfg(feature = "train")]
pub mod eval;
#[cfg(feature = "train")]
pub mod mobilenet_v2;
#[cfg(feature = "train")]
pub mod net;
#[cfg(feature = "train")]
pub mod ops;
#[cfg(feature = "train")]
pub mod plot;
#[cfg(feature = "train")]
pub mod quantize;
#[cfg(feature = "train")]
pub mod teacher;
#[cfg(feature = "train")]
pub mod tflite_init;
#[cfg(feature = "train")]
pub mod trainer;
