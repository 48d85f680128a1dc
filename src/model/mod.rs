//! Models the device runs, and how they are found: see [`manifest`].

pub mod age_gender;
pub mod bundle;
pub mod inspect;
pub mod manifest;
pub mod nnef_cache;
#[cfg(any(test, feature = "onnx-writer"))]
pub mod onnx_build;
pub mod sets;
pub mod signature;

pub use age_gender::{AgeGenderModel, FaceProbs};
pub use manifest::{verified_models, Manifest, Role};
pub use signature::TrustedKeys;

use serde::Serialize;

/// Gender as the model's two-class head reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    /// One letter for small screens.
    pub fn letter(self) -> char {
        match self {
            Gender::Male => 'M',
            Gender::Female => 'F',
        }
    }
}

/// What the age/gender model says about one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgeGender {
    /// Expected value of the age distribution, in years.
    pub age: f32,
    /// Lower and upper end of the central 80 % of the age distribution.
    pub age_low: f32,
    pub age_high: f32,
    pub gender: Gender,
    /// Probability of `gender`, 0.5 to 1.
    pub gender_confidence: f32,
}

impl AgeGender {
    /// A label such as `F 34 (29-39)`; ASCII only, so every bitmap font can draw it.
    pub fn label(&self) -> String {
        format!(
            "{} {:.0} ({:.0}-{:.0})",
            self.gender.letter(),
            self.age,
            self.age_low,
            self.age_high
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_short_and_ascii() {
        let estimate = AgeGender {
            age: 34.4,
            age_low: 28.6,
            age_high: 39.2,
            gender: Gender::Female,
            gender_confidence: 0.93,
        };
        assert_eq!(estimate.label(), "F 34 (29-39)");
    }
}
