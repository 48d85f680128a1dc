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
    /// The track the face belongs to in a stream ([`crate::track`]); `None` for a single
    /// image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackId>,
    /// Whether the face looks at the screen (`[attention]`), in a stream; `None` for a single
    /// image or a face without landmarks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looking: Option<bool>,
}

impl FaceResult {
    /// The head's pose from the face's landmarks ([`crate::vision::pose`]); `None` without
    /// landmarks.
    pub fn pose(&self) -> Option<crate::vision::pose::HeadPose> {
        self.face
            .landmarks
            .as_ref()
            .and_then(crate::vision::pose::head_pose)
    }
}

/// A face's track in a stream ([`crate::track::Tracker`]): unique for the tracker's life, it
/// starts at 1 and only rises; it says nothing about who the person is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TrackId(pub u64);

impl std::fmt::Display for TrackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Time spent in each stage for one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub detect: Duration,
    pub crop: Duration,
    pub infer: Duration,
}
