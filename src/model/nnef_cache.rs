//! Start-up cache of the age/gender network in tract's NNEF form.
//!
//! Preparing the shipped weight-only int8 model from ONNX takes tract ~0.4 s on x86 (it folds
//! every DequantizeLinear into float weights while decluttering), several times that on a Pi.
//! The decluttered graph saved as NNEF reloads in ~0.09 s. The ONNX file stays the source of
//! truth: a cache file is named after a hash of the ONNX bytes, the input size and the
//! agecam version, so a new model or a new build never reads an old cache, and a cache that
//! fails to load is deleted and rebuilt from the ONNX file.

use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use tract_onnx::WithOnnx;

/// Why a cache file could not be read or written; only ever logged, as a warning.
#[derive(Debug, thiserror::Error)]
enum CacheError {
    /// tract could not read or write the network (with its causes).
    #[error("{0:#}")]
    Tract(TractError),
    #[error("it holds a network for input {fact:?} with {outputs} outputs")]
    OtherNetwork {
        fact: Box<TypedFact>,
        outputs: usize,
    },
    #[error("tract failed on it")]
    Panicked,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where the network of one load came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Parsed and decluttered from the ONNX file (the cache, if any, was written afterwards).
    Onnx,
    /// Read from this NNEF cache file.
    Cache(PathBuf),
}

impl std::fmt::Display for LoadedFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadedFrom::Onnx => f.write_str("prepared from ONNX"),
            LoadedFrom::Cache(file) => write!(f, "read from the cache {}", file.display()),
        }
    }
}

/// The NNEF cache file for the ONNX `bytes` at `input_size` in `dir`.
///
/// The name only has to tell model files apart (their integrity is the manifest's sha256
/// check), so it uses a fast hash: SHA-256 of the 9 MB float model took ~25 ms of a ~100 ms
/// start on x86. A hash that changes with a Rust release only costs one rebuild of the cache.
pub fn cache_file(dir: &Path, onnx: &Path, bytes: &[u8], input_size: usize) -> PathBuf {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    let hex = format!("{:016x}{:08x}", hasher.finish(), bytes.len());
    let stem = onnx
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    dir.join(format!(
        "{stem}-{hex}-{input_size}px-agecam{}.nnef.tar",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Whether preparing `model` is slow enough for the cache to pay: only quantized graphs, whose
/// DequantizeLinear/QLinear* nodes tract folds at load (int8 on x86: 385 ms from ONNX, 98 ms
/// from the cache). A float graph reads no faster from NNEF than from ONNX (104 vs 113 ms),
/// so it is not cached.
pub fn worth_caching(model: &InferenceModel) -> bool {
    model.nodes.iter().any(|n| {
        let op = n.op.name();
        op.contains("Dequantize") || op.starts_with("QLinear")
    })
}

fn nnef() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef().with_onnx()
}

/// Reads a cached, decluttered network. `None` (after a warning, with the file removed) when
/// the file is damaged or does not hold a network for `input`: the caller rebuilds it.
pub fn read(file: &Path, input: &TypedFact, outputs: usize) -> Option<TypedModel> {
    if !file.is_file() {
        return None;
    }
    // The fact is only read, and dropped with the rest if tract panics.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<TypedModel, CacheError> {
            let model = nnef().model_for_path(file).map_err(CacheError::Tract)?;
            let fact = model.input_fact(0).map_err(CacheError::Tract)?;
            if fact != input || model.outputs.len() != outputs {
                return Err(CacheError::OtherNetwork {
                    fact: Box::new(fact.clone()),
                    outputs: model.outputs.len(),
                });
            }
            Ok(model)
        },
    ));
    let problem = match loaded {
        Ok(Ok(model)) => return Some(model),
        Ok(Err(e)) => e,
        Err(_) => CacheError::Panicked,
    };
    log::warn!(
        "model cache {} is unusable ({problem}); rebuilding it from the ONNX file",
        file.display()
    );
    if let Err(e) = std::fs::remove_file(file) {
        log::warn!("cannot remove {} ({e})", file.display());
    }
    None
}

/// Saves a decluttered network to `file` (written to a temporary name, then renamed, so a
/// crash or a full disk leaves no half-written cache). Failing to save costs only start-up
/// time, so it is a warning, never an error.
pub fn write(file: &Path, model: &TypedModel) {
    let Some(dir) = file.parent() else { return };
    let result = (|| -> Result<(), CacheError> {
        std::fs::create_dir_all(dir)?;
        let tmp = file.with_extension("tar.tmp");
        let out = std::fs::File::create(&tmp)?;
        let written = nnef()
            .write_to_tar(model, std::io::BufWriter::new(out))
            .map_err(CacheError::Tract);
        let done = written
            .and_then(|w| w.into_inner().map_err(|e| e.into_error().into()))
            .and_then(|f| f.sync_all().map_err(Into::into))
            .and_then(|()| std::fs::rename(&tmp, file).map_err(Into::into));
        if done.is_err() {
            std::fs::remove_file(&tmp).ok();
        }
        done
    })();
    match result {
        Ok(()) => {
            log::info!("model cache written: {}", file.display());
            remove_superseded(file);
        }
        Err(e) => log::warn!(
            "cannot write the model cache {} ({e:#}); start-up stays slower until it can (check model.cache_dir)",
            file.display()
        ),
    }
}

/// Deletes the caches of earlier versions of the same model file (same name before the hash),
/// so model updates do not pile up files in the cache folder.
fn remove_superseded(current: &Path) {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    // "<stem>-<hash>-<size>px-agecam<version>.nnef.tar": the stem is everything before the
    // third '-' from the right.
    let Some(stem) = name.rsplitn(4, '-').nth(3) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        let same_model = other.rsplitn(4, '-').nth(3) == Some(stem);
        if same_model && other != name && other.ends_with(".nnef.tar") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => log::info!("removed the superseded model cache {other}"),
                Err(e) => log::warn!("cannot remove {} ({e})", entry.path().display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AgeGenderModel;
    use image::{Rgb, RgbImage};

    fn shipped_int8() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/age_gender_int8.onnx")
    }

    fn cache_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn shipped_int8_model_is_cached_on_first_load_and_read_back_with_the_same_answers() {
        let cache = tempfile::tempdir().unwrap();
        let onnx = shipped_int8();
        let plain = AgeGenderModel::load(&onnx).unwrap();
        let size = plain.info().input_size;
        let crop = RgbImage::from_fn(size, size, |x, y| {
            Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
        });
        assert_eq!(plain.loaded_from(), &LoadedFrom::Onnx);
        // The float form gains nothing from the cache and is not written to it.
        let float = onnx.with_file_name("age_gender_f32.onnx");
        AgeGenderModel::load_cached(&float, Some(cache.path())).unwrap();
        assert!(cache_files(cache.path()).is_empty());
        let first = AgeGenderModel::load_cached(&onnx, Some(cache.path())).unwrap();
        assert_eq!(first.loaded_from(), &LoadedFrom::Onnx);
        let files = cache_files(cache.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("age_gender_int8-")
                && name.contains(&format!("-{}px-", plain.info().input_size)),
            "{name}"
        );
        let second = AgeGenderModel::load_cached(&onnx, Some(cache.path())).unwrap();
        assert_eq!(second.loaded_from(), &LoadedFrom::Cache(files[0].clone()));
        assert_eq!(
            second.info(),
            plain.info(),
            "metadata still comes from the ONNX file"
        );
        let want = plain.predict_with_distribution(&crop).unwrap();
        let got = second.predict_with_distribution(&crop).unwrap();
        assert_eq!(want.0.gender, got.0.gender);
        assert!((want.0.age - got.0.age).abs() < 1e-4, "{want:?} {got:?}");
        let worst = want
            .1
            .iter()
            .zip(&got.1)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "age distributions differ by {worst}");
    }

    #[test]
    fn damaged_cache_is_rebuilt_and_a_changed_model_never_reads_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let onnx = dir.path().join("int8.onnx");
        let shipped = std::fs::read(shipped_int8()).unwrap();
        std::fs::write(&onnx, &shipped).unwrap();
        AgeGenderModel::load_cached(&onnx, Some(&cache)).unwrap();
        let file = cache_files(&cache).pop().unwrap();
        let good = std::fs::read(&file).unwrap();
        for damaged in [
            b"not a tar archive".to_vec(),
            good[..good.len() / 2].to_vec(),
        ] {
            std::fs::write(&file, damaged).unwrap();
            let model = AgeGenderModel::load_cached(&onnx, Some(&cache)).unwrap();
            assert_eq!(model.loaded_from(), &LoadedFrom::Onnx);
            let again = AgeGenderModel::load_cached(&onnx, Some(&cache)).unwrap();
            assert_eq!(again.loaded_from(), &LoadedFrom::Cache(file.clone()));
        }
        // The same file name with other bytes (one letter of a metadata value) is another model:
        // a new cache file, never the old one.
        let at = shipped.windows(7).position(|w| w == b"UTKFace").unwrap();
        let mut changed = shipped.clone();
        changed[at + 3] = b'f';
        std::fs::write(&onnx, changed).unwrap();
        let model = AgeGenderModel::load_cached(&onnx, Some(&cache)).unwrap();
        assert_eq!(model.loaded_from(), &LoadedFrom::Onnx);
        // Its cache replaces the old model's; other files in the folder are left alone.
        let files = cache_files(&cache);
        assert_eq!(files.len(), 1);
        assert_ne!(files[0], file);
        std::fs::write(cache.join("other-0123-96px-agecam0.nnef.tar"), b"x").unwrap();
        std::fs::remove_file(&files[0]).unwrap();
        AgeGenderModel::load_cached(&onnx, Some(&cache)).unwrap();
        assert_eq!(cache_files(&cache).len(), 2);
    }

    #[test]
    fn an_unwritable_cache_folder_costs_only_start_up_time() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = shipped_int8();
        // A regular file where the folder should be: nothing can be created under it.
        let not_a_folder = dir.path().join("cache");
        std::fs::write(&not_a_folder, b"").unwrap();
        for _ in 0..2 {
            let model = AgeGenderModel::load_cached(&onnx, Some(&not_a_folder)).unwrap();
            assert_eq!(model.loaded_from(), &LoadedFrom::Onnx);
        }
    }
}
