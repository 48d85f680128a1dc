//! `age-prior`: writes an age/gender model's own age prior into its ONNX metadata
//! (`agecam.age_prior`), for the device's `model.age_prior_correction`. The prior is the mean of
//! the model's age distributions over held-out faces, read from an `eval --distributions` file:
//! no labels are used, only what the network says.

use agecam::model::age_gender::keys;
use anyhow::{bail, Context};
use clap::Parser;
use prost::Message;
use std::path::PathBuf;
use tract_onnx::pb;

#[derive(Debug, Parser)]
pub struct Args {
    /// The ONNX model to write the prior into.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// An `agecam-host eval --distributions` file.
    #[arg(long, value_name = "CSV")]
    pub distributions: PathBuf,
    /// Whose rows to average, as the file's first column names the model (e.g. the int8 form
    /// the device runs, for both forms) [default: MODEL as given].
    #[arg(long, value_name = "NAME")]
    pub rows_of: Option<String>,
    /// Where to write the model with the prior [default: over MODEL].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let rows_of = a
        .rows_of
        .clone()
        .unwrap_or_else(|| a.model.display().to_string());
    let text = std::fs::read_to_string(&a.distributions)
        .with_context(|| format!("cannot read {}", a.distributions.display()))?;
    let mut sum: Vec<f64> = Vec::new();
    let mut faces = 0usize;
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.first() != Some(&rows_of.as_str()) {
            continue;
        }
        // model, source, age, group, race, gender, P(female), then the distribution.
        let dist: Vec<f64> = fields
            .get(7..)
            .unwrap_or_default()
            .iter()
            .map(|v| v.parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "{} line {}: not a distribution",
                    a.distributions.display(),
                    n + 1
                )
            })?;
        if sum.is_empty() {
            sum = vec![0.0; dist.len()];
        }
        if dist.len() != sum.len() {
            bail!(
                "{} line {}: {} age bins, earlier lines {}",
                a.distributions.display(),
                n + 1,
                dist.len(),
                sum.len()
            );
        }
        sum.iter_mut().zip(&dist).for_each(|(s, d)| *s += d);
        faces += 1;
    }
    if faces < 100 {
        bail!(
            "{} has {faces} rows of {rows_of}; a prior needs the distributions of many faces (give --rows-of as the file's first column names the model)",
            a.distributions.display()
        );
    }
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let mut model = pb::ModelProto::decode(&bytes[..])
        .with_context(|| format!("{} is not an ONNX model", a.model.display()))?;
    let bins = agecam::model::AgeGenderModel::load(&a.model)?
        .info()
        .age_bins
        .len();
    if bins != sum.len() {
        bail!(
            "{} has {bins} age bins, the distributions {}",
            a.model.display(),
            sum.len()
        );
    }
    // Mean distribution, each bin kept above zero (the device divides by it).
    let prior: Vec<String> = sum
        .iter()
        .map(|s| format!("{:.6e}", (s / faces as f64).max(1e-6)))
        .collect();
    model.metadata_props.retain(|p| p.key != keys::AGE_PRIOR);
    model.metadata_props.push(pb::StringStringEntryProto {
        key: keys::AGE_PRIOR.to_string(),
        value: prior.join(","),
    });
    let out = a.out.as_ref().unwrap_or(&a.model);
    std::fs::write(out, model.encode_to_vec())
        .with_context(|| format!("cannot write {}", out.display()))?;
    // It must load as the device loads it, with the prior read back.
    let loaded = agecam::model::AgeGenderModel::load(out)?;
    anyhow::ensure!(
        loaded.info().age_prior.is_some(),
        "{}: the prior did not read back",
        out.display()
    );
    println!(
        "{}: age prior from {faces} faces of {rows_of} written ({} bins); update its sha256 in the manifest and sign it again",
        out.display(),
        bins
    );
    Ok(())
}
