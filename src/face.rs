//! What the pipeline found in one frame: each face with its age/gender estimate, and the time
//! each stage took. A low layer: the display, the statistics and the pipeline all read these
//! types, and none of them is imported from here.

use crate::model::AgeGender;
use crate::vision::FaceBox;
use std::time::Duration;

/// One face and what the model says about it (`None` while no age/gender model is installed).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaceResult {
    pub face: FaceBox,
    pub estimate: Option<AgeGender>,
}

/// Time spent in each stage for one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub detect: Duration,
    pub crop: Duration,
    pub infer: Duration,
}
