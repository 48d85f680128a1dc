//! agecam: an edge age/gender estimator.
//!
//! The device path is a pipeline of stages, each in its own module:
//! [`capture`] (frames) → [`vision`] (faces, crops) → [`model`] (age, gender) →
//! [`display`] (overlay) and [`stats`] (anonymous counts, pushed by [`push`]). [`pipeline`]
//! runs the vision and model stages on one frame, or on a stream as the [`schedule`] says,
//! every face linked into a visit by the one [`track`]er; [`daemon`], the composition root, is the one
//! place a [`config::Config`] becomes running parts and drives frames through them. Lower layers ([`face`],
//! [`buckets`], [`config`], [`model`], [`vision`], [`capture`]) never import the upper ones.
//! The host tool (datasets, training, evaluation, export, quantization) is its own crate,
//! `agecam-host` (`host/`), built on this one.
//!
//! A model passes through typed stages at load — the manifest, its hash-checked files, the
//! loaded pipeline — and then runs frame by frame. The first built-in demo frame (a portrait
//! of one woman; `tests/data/SOURCES.md`) through the bundled models:
//!
//! ```
//! use agecam::capture::{demo_frames, FrameSource};
//! use agecam::config::Config;
//! use agecam::pipeline::Pipeline;
//!
//! let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
//! let mut pipeline = Pipeline::load(&Config::default(), &models)?;
//! let frame = demo_frames(false).next_frame()?.expect("the demo has frames");
//! let (faces, _stage_times) = pipeline.process(&frame.image)?;
//! assert_eq!(faces.len(), 1);
//! let estimate = faces[0].estimate.expect("the bundled age/gender model is installed");
//! assert!(estimate.age > 20.0 && estimate.age < 65.0, "{estimate:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod buckets;
pub mod capture;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod display;
mod error;
pub mod face;
pub mod fault_log;
pub mod logging;
pub mod model;
pub mod pipeline;
pub mod push;
pub mod schedule;
pub mod stats;
pub mod systemd;
pub mod track;
pub mod vision;

pub use error::{Error, Result};
