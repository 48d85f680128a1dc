//! agecam-host: the x86 host tool that turns face datasets into the models the kiosk runs.
//!
//! It is built on the device crate [`agecam`], so training crops, evaluation and export use
//! the device's own detector, crop and model runtime — what the host measures is what the
//! kiosk does. The path of a model:
//!
//! [`dataset`] (UTKFace, FairFace, Kaggle labels and splits) → [`crops`] (the device's detector
//! and crop over a dataset, cached) → [`trainer`] ([`net`], [`mobilenet_v2`] on the fused CPU
//! [`ops`]) → export to ONNX → [`quantize`] (int8) → [`eval`] (reports, [`plot`]).
//! [`tflite`] reads TensorFlow Lite files for ImageNet starting weights ([`tflite::init`]) and
//! for converting float detectors to ONNX ([`tflite::onnx`]). [`teacher`] imports face-api's
//! small age/gender network (MIT) as an ONNX teacher for distillation. [`onnx_kit`] holds the
//! ONNX protobuf helpers and the TF/TFLite → ONNX weight-layout conversions they all share.
//!
//! ```
//! use agecam_host::dataset::{parse_fairface_age, parse_utkface_name, GroupLimits};
//!
//! let limits = GroupLimits::default();
//! let (age, _gender, _race, group) =
//!     parse_utkface_name("61_1_2_20170105174847679.jpg.chip.jpg", &limits).unwrap();
//! assert_eq!((age, group), (61, agecam_host::dataset::AgeGroup::Old));
//! // FairFace's CSV files carry two group names a spreadsheet mangled; they are mapped back.
//! assert_eq!(parse_fairface_age("03-Sep"), Ok((3, 9)));
//! ```

pub mod bench;
pub mod crops;
pub mod dataset;
pub mod det_bench;
pub mod eval;
pub mod fit_framing;
pub mod init_model;
pub mod mobilenet_v2;
pub mod net;
pub mod onnx_kit;
pub mod ops;
pub mod plot;
pub mod pose_eval;
pub mod quantize;
pub mod teacher;
pub mod tflite;
pub mod trainer;

/// The repository's top folder (`models/`, `tests/data/`), for tests: this crate's parent.
#[cfg(test)]
pub(crate) fn test_repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits inside the repository")
        .to_path_buf()
}
