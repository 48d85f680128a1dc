//! The teacher at run time: face-api's own preprocessing, the input convention in the device's
//! terms, and the imported ONNX teacher run by tract one face at a time.

use super::{model_error, INPUT_SIZE, MEAN_RGB_255};
use agecam::model::age_gender::ModelInfo;
use agecam::model::Gender;
use agecam::Error;
use image::RgbImage;
use std::path::Path;
use tract_onnx::prelude::*;

/// face-api's own preprocessing of an RGB image of any size, as the network input
/// `[1, 3, 112, 112]` of the ONNX teacher (v/255 − mean, the metadata's form of
/// (x − mean)/255): `NetInput.toBatchTensor(112, true)` pads the image to a square with zeros,
/// centred — of an odd difference d, ⌈d/2⌉ after the image and ⌊d/2⌋ before it (`padToSquare`:
/// `Math.round(d · 0.5)` is appended) — then, unless it is 112×112 already, resizes it with
/// `tf.image.resizeBilinear(align_corners = false, half_pixel_centers = false)`: output pixel r
/// samples source position r · (in / 112), between ⌊·⌋ and min(in − 1, ⌈·⌉), without rounding
/// the result to integers. A 112×112 image passes unchanged, giving exactly
/// [`ModelInfo::input_tensor`]'s input.
pub fn faceapi_input(img: &RgbImage) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.max(h);
    let diff = side - w.min(h);
    let before = diff - diff.div_ceil(2);
    let (x0, y0) = if h > w { (before, 0) } else { (0, before) };
    // The padded square, RGB interleaved, as floats.
    let mut square = vec![0f32; side * side * 3];
    for (x, y, p) in img.enumerate_pixels() {
        let at = ((y as usize + y0) * side + x as usize + x0) * 3;
        for c in 0..3 {
            square[at + c] = p.0[c] as f32;
        }
    }
    let n = INPUT_SIZE;
    let plane = n * n;
    let mean = MEAN_RGB_255.map(|m| m / 255.0);
    let mut data = vec![0f32; 3 * plane];
    let ratio = side as f64 / n as f64;
    // (floor, ceil, fraction) of each output row/column's source position, as TF.js computes it.
    // In double precision, rounded to float at the end, as TF.js's cpu kernel does.
    let taps: Vec<(usize, usize, f64)> = (0..n)
        .map(|r| {
            let frac = r as f64 * ratio;
            let lo = frac.floor().max(0.0);
            let hi = frac.ceil().min(side as f64 - 1.0);
            (lo as usize, hi as usize, frac - lo)
        })
        .collect();
    for (r, &(y0, y1, fy)) in taps.iter().enumerate() {
        for (col, &(x0, x1, fx)) in taps.iter().enumerate() {
            for c in 0..3 {
                let v = |y: usize, x: usize| square[(y * side + x) * 3 + c] as f64;
                let value = if side == n {
                    v(r, col)
                } else {
                    let top = v(y0, x0) + (v(y0, x1) - v(y0, x0)) * fx;
                    let bottom = v(y1, x0) + (v(y1, x1) - v(y1, x0)) * fx;
                    top + (bottom - top) * fy
                } as f32;
                data[c * plane + r * n + col] = value / 255.0 - mean[c];
            }
        }
    }
    Tensor::from_shape(&[1, 3, n, n], &data).expect("1x3x112x112 input")
}

/// The input convention of the teacher, in the device's terms: crops of 112×112 RGB,
/// v/255 − mean with face-api's mean and std 1. (`age_bins` is empty: the age output is a
/// regression in years, not a distribution.)
pub fn input_info() -> ModelInfo {
    ModelInfo {
        input_size: INPUT_SIZE as u32,
        mean: MEAN_RGB_255.map(|m| m / 255.0),
        std: [1.0; 3],
        age_bins: Vec::new(),
        gender_labels: [Gender::Male, Gender::Female],
        crop_margin: None,
        crop: Default::default(),
        age_prior: None,
    }
}

/// Why the teacher gave no answer for a face (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The crop is not the network's input (the device's own check, e.g. its size).
    #[error(transparent)]
    Input(#[from] agecam::model::age_gender::InputError),
    #[error("tract failed to run the teacher ({0})")]
    Tract(String),
    #[error("{0} output is not float ({1})")]
    NotFloat(&'static str, String),
    #[error("outputs have shapes {age:?} and {gender:?}, expected [1, 1] and [1, 2]")]
    Shapes { age: Vec<usize>, gender: Vec<usize> },
}

/// One face's teacher outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherOutput {
    /// Years.
    pub age: f32,
    /// Probabilities (male, female).
    pub gender: [f32; 2],
}

/// The imported teacher, run by tract as the device runs its models: optimised for one
/// 112×112 face at a time (a symbolic batch size runs several times slower in tract 0.23.9,
/// see [`agecam::model::age_gender::AgeGenderModel::load`]), on one thread.
pub struct Teacher {
    plan: Arc<TypedRunnableModel>,
    info: ModelInfo,
}

impl Teacher {
    pub fn load(path: &Path) -> Result<Teacher, Error> {
        let err = |e: TractError| {
            model_error(
                path,
                format!(
                    "tract cannot prepare it for a 1x3x{INPUT_SIZE}x{INPUT_SIZE} input ({e:#}); \
                     re-import it with agecam-host import-teacher"
                ),
            )
        };
        let fact = f32::fact([1, 3, INPUT_SIZE, INPUT_SIZE]);
        let plan = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.with_input_fact(0, fact.into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(err)?;
        Ok(Teacher {
            plan,
            info: input_info(),
        })
    }

    /// Outputs for 112×112 RGB crops, in order (run one by one).
    pub fn predict(&self, crops: &[RgbImage]) -> Result<Vec<TeacherOutput>, RunError> {
        crops.iter().map(|c| self.predict_one(c)).collect()
    }

    /// Outputs for an RGB image of any size, preprocessed as face-api does ([`faceapi_input`]:
    /// pad to a square, resize to 112×112).
    pub fn predict_faceapi(&self, img: &RgbImage) -> Result<TeacherOutput, RunError> {
        self.run(faceapi_input(img))
    }

    pub(super) fn predict_one(&self, crop: &RgbImage) -> Result<TeacherOutput, RunError> {
        let input = self.info.input_tensor(std::slice::from_ref(crop))?;
        self.run(input)
    }

    fn run(&self, input: Tensor) -> Result<TeacherOutput, RunError> {
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| RunError::Tract(format!("{e:#}")))?;
        let age = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| RunError::NotFloat("age", e.to_string()))?;
        let gender = out[1]
            .to_plain_array_view::<f32>()
            .map_err(|e| RunError::NotFloat("gender", e.to_string()))?;
        if age.shape() != [1, 1] || gender.shape() != [1, 2] {
            return Err(RunError::Shapes {
                age: age.shape().to_vec(),
                gender: gender.shape().to_vec(),
            });
        }
        Ok(TeacherOutput {
            age: age[[0, 0]],
            gender: [gender[[0, 0]], gender[[0, 1]]],
        })
    }
}
