//! `dataset`: reads a face dataset and reports its labels, skipped files and split.

use super::Format;
use agecam_host::dataset::{self, GroupLimits};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset folder.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// How the dataset is laid out.
    #[arg(long, value_enum)]
    format: Format,
    /// Share of images (by a hash of the file name) kept for validation.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    val_split: f64,
}

pub fn run(a: &Args) -> anyhow::Result<ExitCode> {
    super::check_val_split(a.val_split)?;
    let limits = GroupLimits::default();
    let loaded = a.format.load(&a.data, &limits)?;
    let (train, val) = dataset::split(&loaded.samples, a.val_split);
    let mut groups = std::collections::BTreeMap::new();
    for sample in &loaded.samples {
        *groups
            .entry(format!("{:?}", sample.group))
            .or_insert(0usize) += 1;
    }
    println!("images:     {}", loaded.samples.len());
    println!("skipped:    {}", loaded.skipped.len());
    for (path, problem) in &loaded.skipped {
        println!("  {}: {problem}", path.display());
    }
    println!("train:      {}", train.len());
    println!("validation: {}", val.len());
    for (group, n) in groups {
        println!("group {group:<7} {n}");
    }
    Ok(ExitCode::SUCCESS)
}
