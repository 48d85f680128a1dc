//! `models/manifest.json`: which model file plays which role, with its sha256, licence and
//! source. The device loads models only through it, so a damaged or swapped file is refused
//! with a message naming it instead of producing wrong answers.

use crate::Error;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a model file is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    AgeGenderInt8,
    AgeGenderF32,
    /// The BlazeFace network (ONNX).
    FaceDetector,
    /// The SeetaFace cascade, used with `detector.kind = "seeta"`.
    FaceDetectorFallback,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::AgeGenderInt8 => "age_gender_int8",
            Role::AgeGenderF32 => "age_gender_f32",
            Role::FaceDetector => "face_detector",
            Role::FaceDetectorFallback => "face_detector_fallback",
        }
    }
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// File name, relative to the manifest's folder.
    pub file: String,
    pub role: Role,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    pub licence: String,
    pub source: String,
}

/// The parsed manifest and the folder it lives in.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

pub const MANIFEST_FILE: &str = "manifest.json";

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Model {
            file: path.clone(),
            problem: format!(
                "cannot read the model manifest ({e}); set model.dir to the folder holding the models (the repository's models/)"
            ),
        })?;
        Self::parse(&text, dir).map_err(|problem| Error::Model {
            file: path.clone(),
            problem,
        })
    }

    /// Parses manifest text; `dir` is the folder its file names are relative to.
    pub fn parse(text: &str, dir: &Path) -> Result<Manifest, String> {
        let entries: Vec<Entry> = serde_json::from_str(text)
            .map_err(|e| format!("not a valid model manifest ({e}); reinstall the models"))?;
        Ok(Manifest {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    /// The entry for `role`, if the manifest lists one.
    pub fn entry(&self, role: Role) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role == role)
    }

    /// The file for `role` after checking its sha256; `Ok(None)` when no such model is listed.
    pub fn verified_path(&self, role: Role) -> Result<Option<PathBuf>, Error> {
        let Some(entry) = self.entry(role) else {
            return Ok(None);
        };
        let path = self.dir.join(&entry.file);
        let actual = sha256_file(&path).map_err(|e| Error::Model {
            file: path.clone(),
            problem: format!(
                "cannot read the {} model listed in {MANIFEST_FILE} ({e}); reinstall the models",
                role.name()
            ),
        })?;
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            return Err(Error::Model {
                file: path,
                problem: format!(
                    "sha256 is {actual} but {MANIFEST_FILE} expects {}; the file is damaged or was replaced: reinstall the models",
                    entry.sha256
                ),
            });
        }
        Ok(Some(path))
    }
}

/// Lower-case hex sha256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_manifest(dir: &Path, sha: &str) {
        std::fs::write(dir.join("det.bin"), b"abc").unwrap();
        let json = format!(
            r#"[{{"file":"det.bin","role":"face_detector","sha256":"{sha}","licence":"MIT","source":"test"}}]"#
        );
        std::fs::write(dir.join(MANIFEST_FILE), json).unwrap();
    }

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn verified_path_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), ABC_SHA256);
        let manifest = Manifest::load(dir.path()).unwrap();
        let path = manifest.verified_path(Role::FaceDetector).unwrap().unwrap();
        assert_eq!(path, dir.path().join("det.bin"));
        assert!(manifest
            .verified_path(Role::AgeGenderInt8)
            .unwrap()
            .is_none());
    }

    #[test]
    fn hash_mismatch_names_the_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), &"0".repeat(64));
        let manifest = Manifest::load(dir.path()).unwrap();
        let msg = manifest
            .verified_path(Role::FaceDetector)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("det.bin") && msg.contains(ABC_SHA256), "{msg}");
        assert!(msg.contains("reinstall"), "{msg}");
    }

    #[test]
    fn missing_model_file_and_bad_manifest_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), ABC_SHA256);
        std::fs::remove_file(dir.path().join("det.bin")).unwrap();
        let manifest = Manifest::load(dir.path()).unwrap();
        let msg = manifest
            .verified_path(Role::FaceDetector)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("det.bin") && msg.contains("face_detector"),
            "{msg}"
        );

        std::fs::write(dir.path().join(MANIFEST_FILE), "{not json").unwrap();
        let msg = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains(MANIFEST_FILE) && msg.contains("not a valid"),
            "{msg}"
        );

        let msg = Manifest::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("model.dir"), "{msg}");
    }

    #[test]
    fn shipped_manifest_verifies() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let manifest = Manifest::load(&dir).unwrap();
        assert!(!manifest.entries.is_empty());
        for entry in &manifest.entries {
            assert!(
                manifest.verified_path(entry.role).unwrap().is_some(),
                "{}",
                entry.file
            );
            assert!(!entry.licence.is_empty() && !entry.source.is_empty());
        }
    }
}
