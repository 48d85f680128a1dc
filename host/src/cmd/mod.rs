//! The host tool's commands, one module each: a command's arguments and its run (checking the
//! arguments, calling the library and printing what came of it). Part of the binary, so its
//! errors are `anyhow`'s, shown to the user by `main`.

pub mod age_prior;
pub mod bench_train;
pub mod convert_detector;
pub mod crops;
pub mod dataset;
pub mod det_bench;
pub mod eval;
pub mod export;
pub mod fit_framing;
pub mod import_teacher;
pub mod keygen;
pub mod pose_eval;
pub mod quantize;
pub mod sign;
pub mod teacher_check;
pub mod teacher_crops;
pub mod teacher_label;
pub mod time_models;
pub mod train;

use agecam_host::dataset::{self as data, GroupLimits};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// UTKFace: AGE_GENDER_RACE_DATETIME.jpg files in one folder.
    Utkface,
    /// FairFace as ../shared/data/fairface.sh extracts it: fairface_label_{train,val}.csv and
    /// fair_face/{train,val}/; its two files are the split.
    Fairface,
    /// Kaggle faces-age-detection: train.csv (ID,Class) and a Train/ image folder.
    Kaggle,
}

impl Format {
    pub fn load(
        self,
        dir: &std::path::Path,
        limits: &GroupLimits,
    ) -> anyhow::Result<data::Dataset> {
        Ok(match self {
            Format::Utkface => data::load_utkface(dir, limits)?,
            Format::Fairface => data::load_fairface(dir, limits)?,
            Format::Kaggle => data::load_kaggle(dir, "Train")?,
        })
    }
}

/// `--val-split`'s check, the same for every command that takes it.
pub fn check_val_split(val_split: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..1.0).contains(&val_split),
        "--val-split {val_split} is out of range: give a fraction from 0.0 up to (not including) 1.0"
    );
    Ok(())
}
