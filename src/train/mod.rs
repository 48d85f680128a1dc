//! The host tool's side: datasets, training, evaluation, export and int8
//! quantization. Compiled only with the `train` feature, so the device build stays small.

pub mod bench;
pub mod crops;
pub mod dataset;
pub mod eval;
pub mod mobilenet_v2;
pub mod net;
pub mod ops;
pub mod plot;
pub mod quantize;
pub mod tflite_init;
pub mod trainer;
