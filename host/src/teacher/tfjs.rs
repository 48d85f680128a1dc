//! Reading a TF.js weights manifest and its weight files: float32 tensors, stored as float32
//! or as uint8 with `min` and `scale`, in TF.js's own layout, with each file's sha256.

use super::model_error;
use agecam::Error;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One tensor of a TF.js weights manifest, as float32 in TF.js's own layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TfjsTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// All tensors of a TF.js weights manifest.
#[derive(Debug, Clone)]
pub struct TfjsWeights {
    /// The manifest they were read from (named in errors).
    pub manifest: PathBuf,
    pub tensors: BTreeMap<String, TfjsTensor>,
    /// Each weight file (as named in the manifest) with its sha256, in manifest order.
    pub files: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<Quantization>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quantization {
    dtype: String,
    scale: Option<f64>,
    min: Option<f64>,
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads a TF.js weights manifest and its weight files (named in it, beside it), dequantizing
/// uint8 tensors (q·scale + min, in f64 rounded to f32, as TF.js does). Only float32 tensors,
/// stored as float32 or as uint8 with `min` and `scale`, are accepted; anything else — another
/// dtype or quantization, a missing or short weight file, bytes left over, a repeated name, an
/// unknown manifest field — is an error naming the file and the tensor.
pub fn read_tfjs_weights(manifest: &Path) -> Result<TfjsWeights, Error> {
    let text = std::fs::read_to_string(manifest).map_err(|e| {
        model_error(
            manifest,
            format!(
                "cannot read it ({e}); give face-api's weights manifest, e.g. \
                 node_modules/@vladmandic/face-api/model/age_gender_model-weights_manifest.json \
                 (npm ci --prefix benches/teacher_reference installs it)"
            ),
        )
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let groups: Vec<ManifestGroup> = serde_path_to_error::deserialize(de).map_err(|e| {
        model_error(
            manifest,
            format!(
                "not a TF.js weights manifest this importer knows: at `{}`: {}",
                e.path(),
                e.inner()
            ),
        )
    })?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut tensors = BTreeMap::new();
    let mut files = Vec::new();
    for group in &groups {
        if group.paths.is_empty() {
            return Err(model_error(
                manifest,
                "a weights group lists no weight file (`paths` is empty)",
            ));
        }
        let mut bytes = Vec::new();
        for p in &group.paths {
            let file = dir.join(p);
            let data = std::fs::read(&file).map_err(|e| {
                model_error(
                    &file,
                    format!(
                        "cannot read this weight file named in {} ({e}); it must sit beside \
                         the manifest, as the npm package installs it",
                        manifest.display()
                    ),
                )
            })?;
            files.push((p.clone(), sha256_hex(&data)));
            bytes.extend_from_slice(&data);
        }
        let shards = group.paths.join(" + ");
        let shard_file = dir.join(&group.paths[0]);
        let mut offset = 0usize;
        for entry in &group.weights {
            let count = entry
                .shape
                .iter()
                .try_fold(1usize, |n, d| n.checked_mul(*d))
                .ok_or_else(|| {
                    model_error(
                        manifest,
                        format!(
                            "tensor `{}`: shape {:?} is too large",
                            entry.name, entry.shape
                        ),
                    )
                })?;
            let values = match (entry.dtype.as_str(), &entry.quantization) {
                ("float32", None) => {
                    let raw = take(&bytes, &mut offset, count * 4, entry, &shard_file, &shards)?;
                    raw.as_chunks::<4>()
                        .0
                        .iter()
                        .map(|&b| f32::from_le_bytes(b))
                        .collect::<Vec<f32>>()
                }
                ("float32", Some(q)) if q.dtype == "uint8" => {
                    let (scale, min) = match (q.scale, q.min) {
                        (Some(s), Some(m)) if s.is_finite() && m.is_finite() && s >= 0.0 => (s, m),
                        _ => {
                            return Err(model_error(
                                manifest,
                                format!(
                                    "tensor `{}`: uint8 quantization needs a finite `scale` \
                                     (≥ 0) and `min`, has scale {:?} and min {:?}; the \
                                     manifest is damaged: reinstall the package",
                                    entry.name, q.scale, q.min
                                ),
                            ))
                        }
                    };
                    let raw = take(&bytes, &mut offset, count, entry, &shard_file, &shards)?;
                    raw.iter()
                        .map(|&q| (q as f64 * scale + min) as f32)
                        .collect()
                }
                (dtype, q) => {
                    return Err(model_error(
                        manifest,
                        format!(
                            "tensor `{}`: dtype `{dtype}`{} is not supported; this importer \
                             reads float32 tensors, stored as float32 or as uint8 with min and \
                             scale (face-api 1.7.15's age_gender_model)",
                            entry.name,
                            q.as_ref()
                                .map(|q| format!(" quantized to `{}`", q.dtype))
                                .unwrap_or_default()
                        ),
                    ))
                }
            };
            if values.iter().any(|v| !v.is_finite()) {
                return Err(model_error(
                    &shard_file,
                    format!(
                        "tensor `{}` holds a NaN or infinite value; the weight file is damaged: \
                         reinstall the package",
                        entry.name
                    ),
                ));
            }
            let tensor = TfjsTensor {
                shape: entry.shape.clone(),
                values,
            };
            if tensors.insert(entry.name.clone(), tensor).is_some() {
                return Err(model_error(
                    manifest,
                    format!("tensor `{}` is listed twice", entry.name),
                ));
            }
        }
        if offset != bytes.len() {
            return Err(model_error(
                &shard_file,
                format!(
                    "{} holds {} bytes but the manifest's tensors use {offset} (the last is \
                     `{}`): the weight file does not belong to {}; reinstall the package",
                    shards,
                    bytes.len(),
                    group.weights.last().map_or("none", |w| &w.name),
                    manifest.display()
                ),
            ));
        }
    }
    Ok(TfjsWeights {
        manifest: manifest.to_path_buf(),
        tensors,
        files,
    })
}

/// The next `n` bytes of a group's concatenated weight files, or an error naming the tensor.
fn take<'b>(
    bytes: &'b [u8],
    offset: &mut usize,
    n: usize,
    entry: &ManifestEntry,
    file: &Path,
    shards: &str,
) -> Result<&'b [u8], Error> {
    let end = offset.checked_add(n).filter(|e| *e <= bytes.len());
    let Some(end) = end else {
        return Err(model_error(
            file,
            format!(
                "tensor `{}` (shape {:?}, {n} bytes from byte {}) runs past the end of {shards} \
                 ({} bytes): the weight file is truncated or belongs to another manifest; \
                 reinstall the package",
                entry.name,
                entry.shape,
                offset,
                bytes.len()
            ),
        ));
    };
    let slice = &bytes[*offset..end];
    *offset = end;
    Ok(slice)
}
