//! The library's error type. Each variant names the file or device involved and, in its
//! message, what the user can do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error("model file {}: {problem}", file.display())]
    Model { file: PathBuf, problem: String },

    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),

    #[error("image {}: {problem}", file.display())]
    Image { file: PathBuf, problem: String },

    #[error("output {}: {problem}", path.display())]
    Output { path: PathBuf, problem: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
