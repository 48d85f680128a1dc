//! `agecam-host eval`: exported ONNX models run over a labelled dataset through the device's
//! own code (face detector, crop, tract), scored, and written up as a report folder:
//! `report.md`, `metrics.json`, confusion matrices, ROC curve and training history as PNG.
//!
//! Several models can be scored in one run on the same faces (float vs int8 forms), so their
//! differences are not blurred by different detections or image sets.
//!
//! The scores ([`metrics`]) are apart from the run that makes the predictions ([`run`], with
//! the visit simulation in [`visit`]) and from the report writer ([`report`]).

pub mod metrics;
pub mod report;
pub mod run;
pub mod visit;

pub use metrics::*;
pub use report::{summary_line, write_report};
pub use run::{as_seen_at_height, evaluate, EvalOutcome, EvalRun, Subset};
pub use visit::{visit_frame, VisitSim, VISIT_ANSWERS};

use std::path::PathBuf;

/// Why an evaluation could not run or be written up.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("no images to evaluate (the dataset is empty or the validation split selects none)")]
    NoImages,
    #[error(
        "no face was found in any of the {0} images; check the dataset folder and the face detector"
    )]
    NoFaces(usize),
    #[error("JPEG round trip of a scaled-down picture failed")]
    Jpeg(#[source] image::ImageError),
    #[error("score_visit needs EvalRun::visits")]
    NoVisits,
    #[error("frame 0 has its face")]
    NoFirstFace,
    #[error("cannot create the report folder {}", path.display())]
    CreateReport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model, or the device's code running it or writing a chart; it names the file.
    #[error(transparent)]
    Device(#[from] agecam::Error),
    #[error(transparent)]
    Format(#[from] std::fmt::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
