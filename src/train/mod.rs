//! The host tool's side: datasets and (as it lands) training, evaluation, export and
//! quantization. Compiled only with the `train` feature, so the device build stays small.

pub mod dataset;
