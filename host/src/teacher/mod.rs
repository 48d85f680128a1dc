//! face-api's small age/gender network (`@vladmandic/face-api` 1.7.15, MIT) imported as an
//! ONNX "teacher" with our own
//! [`GraphBuilder`](agecam::model::onnx_build::GraphBuilder), plus the check of that import against the
//! package's own TF.js outputs (`benches/teacher_reference/reference.mjs`).
//!
//! **Source.** The npm package ships `model/age_gender_model-weights_manifest.json` and
//! `age_gender_model.bin`: a TF.js weights manifest whose tensors are stored either as
//! little-endian float32 or quantized to uint8 with a per-tensor `min` and `scale`
//! (value = q·scale + min, computed in double precision and rounded to float32, as
//! `tf.io.decodeWeights` does). [`read_tfjs_weights`] reads them and refuses anything else.
//!
//! **Network** (`src/xception/TinyXception.ts` with 2 main blocks, `src/ageGenderNet/*.ts`),
//! all convolutions with TF "SAME" padding (pads computed as TF does: out = ⌈in / stride⌉, the
//! odd extra row/column at the bottom/right):
//! - `conv_in`: 3×3 stride-2 conv + bias, ReLU (112 → 56).
//! - reduction block (entry 0 without the input ReLU, entry 1, exit): (ReLU →) separable conv
//!   → ReLU → separable conv → 3×3 stride-2 max pool, plus a 1×1 stride-2 "expansion" conv of
//!   the block's (un-activated) input.
//! - main block ×2 (128 channels): three × (ReLU → separable conv), plus the block's input.
//! - exit: separable conv 256 → 512, ReLU, 7×7 stride-2 "valid" average pool (7×7 → 1×1).
//! - heads: `fc/age` 512 → 1 (age in years, a regression) and `fc/gender` 512 → 2 followed by
//!   a softmax (`AgeGenderNet.forwardInput`); index 0 is male (`predictAgeAndGender` reads
//!   `probMale = gender[0]`), 1 female.
//!
//! A separable conv is a depthwise 3×3 conv (no bias; TF.js `[3,3,C,1]` → ONNX `[C,1,3,3]`,
//! group = C) then a pointwise 1×1 conv with the bias (`[1,1,Cin,Cout]` → `[Cout,Cin,1,1]`).
//! Dense filters go from TF's HWIO to ONNX's OIHW; the FC weights `[in, out]` feed `Gemm`
//! as they are.
//!
//! **Preprocessing** (`NetInput.toBatchTensor(112, true)`, `ops/padToSquare.ts`,
//! `ops/normalize.ts`): the RGB image (0–255) is padded to a square with zeros (black),
//! centred (the larger half of an odd difference after the image), resized to 112×112 with
//! `tf.image.resizeBilinear(align_corners = false, half_pixel_centers = false)` unless it is
//! 112×112 already, then (x − (122.782, 117.001, 104.298)) / 255 per channel. The last step
//! is linear per channel, so it is in the ONNX metadata the device reads: input = v/255 − mean
//! with mean = (122.782, 117.001, 104.298)/255 and std = 1 (`agecam.mean`, `agecam.std`). The
//! graph's input `input` is `[N, 3, 112, 112]` float, RGB planes so normalised; outputs are
//! `age` `[N, 1]` (years) and `gender` `[N, 2]` (softmax probabilities: male, female).
//!
//! **Licence and data.** The weights are MIT, but the authors trained them on UTK, FGNET,
//! ChaLearn, Wiki, IMDB, CACD and MegaAge(-Asian), which include non-commercial research
//! sets: the ONNX metadata says so, and a model for commercial use must not learn from it.
//!
//! One file per job: [`tfjs`] reads the TF.js weights, [`import`] builds the ONNX teacher,
//! [`runtime`] runs it (and face-api's preprocessing), [`reference`] compares it with face-api's
//! own outputs, [`face_crops`] cuts the crops that comparison feeds both sides, and [`label`]
//! labels a crop cache with it for distillation.

pub mod face_crops;
pub mod import;
pub mod label;
pub mod reference;
pub mod runtime;
pub mod tfjs;

pub use face_crops::write_face_crops;
pub use import::{build_teacher_onnx, import_teacher, ImportSummary};
pub use label::{label_cache, tight_share, CACHE_LABELS};
pub use reference::{compare_with_reference, ComparedFace, Comparison, Reference, ReferenceResult};
pub use runtime::{faceapi_input, input_info, RunError, Teacher, TeacherOutput};
pub use tfjs::{read_tfjs_weights, TfjsTensor, TfjsWeights};

use agecam::Error;
use std::path::Path;

/// Side of the network's square input.
pub const INPUT_SIZE: usize = 112;
/// face-api's per-channel mean (RGB, 0–255 scale), subtracted before dividing by 255.
pub const MEAN_RGB_255: [f32; 3] = [122.782, 117.001, 104.298];
/// Main blocks of face-api's `TinyXception` in `AgeGenderNet` (`new TinyXception(2)`).
pub const MAIN_BLOCKS: usize = 2;
/// Provenance written as `agecam.teacher` when the weights are the 1.7.15 file.
pub const TEACHER: &str = "face-api age_gender_model 1.7.15 (MIT)";
/// sha256 of `model/age_gender_model.bin` in `@vladmandic/face-api` 1.7.15.
pub const BIN_SHA256_1_7_15: &str =
    "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa";
/// The training data face-api's authors name for this model (metadata `agecam.teacher_data`).
pub const TRAINING_DATA: &str = "trained by its authors on UTK, FGNET, ChaLearn, Wiki, IMDB, \
CACD, MegaAge and MegaAge-Asian, which include datasets licensed for non-commercial research \
only: do not ship this model, or a model distilled from it, in a commercial product";

/// Metadata keys of the teacher besides the device's own ([`keys`](agecam::model::age_gender::keys)).
pub mod teacher_keys {
    pub const TEACHER: &str = "agecam.teacher";
    pub const DATA: &str = "agecam.teacher_data";
    pub const PREPROCESSING: &str = "agecam.teacher_preprocessing";
    pub const AGE_OUTPUT: &str = "agecam.age_output";
    pub const GENDER_OUTPUT: &str = "agecam.gender_output";
    pub const SOURCE_SHA256: &str = "agecam.teacher_source_sha256";
    pub const CONVERTER: &str = "agecam.converter";
}

pub(crate) fn model_error(file: &Path, problem: impl Into<String>) -> Error {
    Error::Model {
        file: file.to_path_buf(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests;
