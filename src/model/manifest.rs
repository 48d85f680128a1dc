//! `models/manifest.json`: which model file plays which role, with its sha256, licence and
//! source. The device loads models only through it, so a damaged or swapped file is refused
//! with a message naming it instead of producing wrong answers, and the manifest itself is
//! signed ([`signature`](super::signature)), so an edited list is refused too.
//!
//! Loading goes through typed stages, as tract's `model_for_path → into_optimized →
//! into_runnable` does: [`Manifest::load`] checks the manifest's signature against the trusted
//! keys and parses the list, [`Manifest::verify`] checks the hash of every file one
//! `model.use` needs and yields [`VerifiedModels`], and only those are loaded into a
//! [`Pipeline`](crate::pipeline::Pipeline).

use super::signature::{signature_path, TrustedKeys};
use crate::config::{ModelConfig, ModelUse};
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
    /// The BlazeFace short-range network (ONNX), `detector.kind = "blazeface"`.
    FaceDetector,
    /// The BlazeFace full-range network (ONNX), `detector.kind = "blazeface-full-range"`.
    FaceDetectorFullRange,
    /// The BlazeFace back-camera network (ONNX), `detector.kind = "blazeface-back"`.
    FaceDetectorBack,
    /// The SeetaFace cascade, used with `detector.kind = "seeta"`.
    FaceDetectorFallback,
    /// YuNet (ONNX), `detector.kind = "yunet"`; research use only (WIDER FACE).
    FaceDetectorYunet,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::AgeGenderInt8 => "age_gender_int8",
            Role::AgeGenderF32 => "age_gender_f32",
            Role::FaceDetector => "face_detector",
            Role::FaceDetectorFullRange => "face_detector_full_range",
            Role::FaceDetectorBack => "face_detector_back",
            Role::FaceDetectorFallback => "face_detector_fallback",
            Role::FaceDetectorYunet => "face_detector_yunet",
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
    /// Which `model.use` the file serves. Absent on an age/gender entry (manifests from before
    /// there were two models): `research`. Absent on a detector: every use; a detector whose
    /// training data is for research only (YuNet) says `research`.
    #[serde(default, rename = "use")]
    pub model_use: Option<ModelUse>,
}

impl Entry {
    /// Whether this file is loaded for `model_use`.
    pub fn serves(&self, model_use: ModelUse) -> bool {
        match self.role {
            Role::AgeGenderInt8 | Role::AgeGenderF32 => {
                self.model_use.unwrap_or(ModelUse::Research) == model_use
            }
            Role::FaceDetector
            | Role::FaceDetectorFullRange
            | Role::FaceDetectorBack
            | Role::FaceDetectorFallback
            | Role::FaceDetectorYunet => self.model_use.is_none_or(|u| u == model_use),
        }
    }
}

/// A model file whose sha256 matched the manifest: the second load stage.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedFile {
    pub path: PathBuf,
    pub entry: Entry,
}

/// Every model file one `model.use` needs, hash-checked; what the pipeline loads from.
#[derive(Debug, Clone)]
pub struct VerifiedModels {
    /// The manifest the files came from, for messages.
    pub manifest_file: PathBuf,
    pub model_use: ModelUse,
    files: Vec<VerifiedFile>,
}

impl VerifiedModels {
    /// The verified file for `role`, if the manifest lists one for this use.
    pub fn get(&self, role: Role) -> Option<&VerifiedFile> {
        self.files.iter().find(|f| f.entry.role == role)
    }

    /// The age/gender model files (int8 first), for the licence lines of the start-up log and
    /// `selftest`.
    pub fn age_gender(&self) -> impl Iterator<Item = &VerifiedFile> {
        [Role::AgeGenderInt8, Role::AgeGenderF32]
            .into_iter()
            .filter_map(|role| self.get(role))
    }

    /// One line on a detector file and its licence, for the start-up log and `selftest`.
    pub fn detector_licence_line(&self, role: Role) -> Option<String> {
        self.get(role).map(|file| {
            format!(
                "face detector {}: {} — licence: {}",
                role.name(),
                file.entry.file,
                file.entry.licence
            )
        })
    }

    /// One line on the age/gender model in use and its licence, or on its absence.
    pub fn licence_line(&self) -> String {
        match self.age_gender().next() {
            Some(file) => format!(
                "age/gender model for model.use = {}: {} — licence: {}",
                self.model_use.name(),
                file.entry.file,
                file.entry.licence
            ),
            None => "no age/gender model installed".to_string(),
        }
    }
}

/// The parsed manifest, whose signature verified, and the folder it lives in.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
    /// The trusted key that signed it, described (`key ID … (origin)`).
    pub signed_by: String,
}

pub const MANIFEST_FILE: &str = "manifest.json";

/// Manifest text that is not a list of model entries.
#[derive(Debug, thiserror::Error)]
#[error("not a valid model manifest ({0}); reinstall the models")]
pub struct ManifestError(pub serde_json::Error);

/// The model files `model` (the `[model]` section) selects from `dir`: the manifest's signature
/// checked against the keys `model` trusts, then the hash of every file `model.use` needs.
pub fn verified_models(dir: &Path, model: &ModelConfig) -> Result<VerifiedModels, Error> {
    let keys = TrustedKeys::from_config(model)?;
    Manifest::load(dir, &keys)?.verify(model.model_use)
}

/// Parses manifest text into its entries (nothing is checked against a signature here: the
/// daemon gets a [`Manifest`] only from [`Manifest::load`]).
pub fn parse_entries(text: &[u8]) -> Result<Vec<Entry>, ManifestError> {
    serde_json::from_slice(text).map_err(ManifestError)
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks its signature (`manifest.json.minisig`) against
    /// `keys` before parsing it.
    pub fn load(dir: &Path, keys: &TrustedKeys) -> Result<Manifest, Error> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::Model {
            file: path.clone(),
            problem: format!(
                "cannot read the model manifest ({e}); set model.dir to the folder holding the models (the repository's models/)"
            ),
        })?;
        let sig_path = signature_path(&path);
        let signature = match std::fs::read(&sig_path) {
            Ok(signature) => signature,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Model {
                    file: path,
                    problem: format!(
                        "is not signed (no {} beside it): this unit loads only model sets signed by a key it trusts ({}); install a signed set (agecam models install BUNDLE), or sign this one with your own key (agecam-host sign) and list its .pub file in model.public_keys",
                        super::signature::SIGNATURE_FILE,
                        keys.describe()
                    ),
                })
            }
            Err(e) => {
                return Err(Error::Model {
                    file: sig_path,
                    problem: format!("cannot read the manifest's signature ({e}); reinstall the models"),
                })
            }
        };
        let signer = keys.verify(&path, &bytes, &sig_path, &signature)?;
        let entries = parse_entries(&bytes).map_err(|problem| Error::Model {
            file: path.clone(),
            problem: problem.to_string(),
        })?;
        Ok(Manifest {
            dir: dir.to_path_buf(),
            entries,
            signed_by: signer.describe(),
        })
    }

    /// Checks the hash of every file `model_use` needs (its age/gender models and the
    /// detectors). A manifest that lists age/gender models, but none for `model_use`, is an
    /// error: a kiosk configured for commercial use must never run the research model.
    pub fn verify(&self, model_use: ModelUse) -> Result<VerifiedModels, Error> {
        let manifest_file = self.dir.join(MANIFEST_FILE);
        let mut files = Vec::new();
        for entry in self.entries.iter().filter(|e| e.serves(model_use)) {
            if files
                .iter()
                .any(|f: &VerifiedFile| f.entry.role == entry.role)
            {
                return Err(Error::Model {
                    file: manifest_file,
                    problem: format!(
                        "lists two {} models for model.use = {}; reinstall the models",
                        entry.role.name(),
                        model_use.name()
                    ),
                });
            }
            let path = self.verify_entry(entry)?;
            files.push(VerifiedFile {
                path,
                entry: entry.clone(),
            });
        }
        let lists_age_gender = self
            .entries
            .iter()
            .any(|e| matches!(e.role, Role::AgeGenderInt8 | Role::AgeGenderF32));
        let verified = VerifiedModels {
            manifest_file,
            model_use,
            files,
        };
        if lists_age_gender && verified.age_gender().next().is_none() {
            let other = match model_use {
                ModelUse::Research => ModelUse::Commercial,
                ModelUse::Commercial => ModelUse::Research,
            };
            return Err(Error::Model {
                file: verified.manifest_file,
                problem: format!(
                    "lists no age/gender model for model.use = \"{}\"; install models that include one, or set model.use = \"{}\" if its licence fits this deployment",
                    model_use.name(),
                    other.name()
                ),
            });
        }
        Ok(verified)
    }

    /// Checks the sha256 of every file the manifest lists, whatever its use: a whole set, as an
    /// install, a rollback and the selftest check it.
    pub fn verify_all(&self) -> Result<(), Error> {
        for entry in &self.entries {
            self.verify_entry(entry)?;
        }
        Ok(())
    }

    /// The entry for `role`, if the manifest lists one.
    pub fn entry(&self, role: Role) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role == role)
    }

    /// The file for `role` after checking its sha256; `Ok(None)` when no such model is listed.
    /// For tools that look at one file; the daemon goes through [`Manifest::verify`].
    pub fn verified_path(&self, role: Role) -> Result<Option<PathBuf>, Error> {
        self.entry(role).map(|e| self.verify_entry(e)).transpose()
    }

    /// The path of `entry` after checking its sha256.
    pub fn verify_entry(&self, entry: &Entry) -> Result<PathBuf, Error> {
        let role = entry.role;
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
        Ok(path)
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
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex sha256 of bytes in memory.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::signature::test_key;

    fn write_manifest(dir: &Path, sha: &str) {
        std::fs::write(dir.join("det.bin"), b"abc").unwrap();
        let json = format!(
            r#"[{{"file":"det.bin","role":"face_detector","sha256":"{sha}","licence":"MIT","source":"test"}}]"#
        );
        std::fs::write(dir.join(MANIFEST_FILE), json).unwrap();
        test_key::sign(dir);
    }

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn verified_path_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), ABC_SHA256);
        let manifest = Manifest::load(dir.path(), &test_key::keys()).unwrap();
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
        let manifest = Manifest::load(dir.path(), &test_key::keys()).unwrap();
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
        let manifest = Manifest::load(dir.path(), &test_key::keys()).unwrap();
        let msg = manifest
            .verified_path(Role::FaceDetector)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("det.bin") && msg.contains("face_detector"),
            "{msg}"
        );

        std::fs::write(dir.path().join(MANIFEST_FILE), "{not json").unwrap();
        let keys = test_key::sign(dir.path());
        let msg = Manifest::load(dir.path(), &keys).unwrap_err().to_string();
        assert!(
            msg.contains(MANIFEST_FILE) && msg.contains("not a valid"),
            "{msg}"
        );

        let msg = Manifest::load(&dir.path().join("nope"), &keys)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("model.dir"), "{msg}");
    }

    /// A manifest with a detector and the given age/gender entries (`(file, use)`), each file
    /// holding "abc".
    fn two_use_manifest(dir: &Path, models: &[(&str, Option<&str>)]) -> Manifest {
        let mut lines = vec![format!(
            r#"{{"file":"det.bin","role":"face_detector","sha256":"{ABC_SHA256}","licence":"Apache-2.0","source":"test"}}"#
        )];
        std::fs::write(dir.join("det.bin"), b"abc").unwrap();
        for (file, model_use) in models {
            std::fs::write(dir.join(file), b"abc").unwrap();
            let use_field = model_use
                .map(|u| format!(r#","use":"{u}""#))
                .unwrap_or_default();
            lines.push(format!(
                r#"{{"file":"{file}","role":"age_gender_int8","sha256":"{ABC_SHA256}","licence":"licence of {file}","source":"test"{use_field}}}"#
            ));
        }
        std::fs::write(dir.join(MANIFEST_FILE), format!("[{}]", lines.join(","))).unwrap();
        let keys = test_key::sign(dir);
        Manifest::load(dir, &keys).unwrap()
    }

    #[test]
    fn verify_picks_the_age_gender_model_of_the_configured_use() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = two_use_manifest(
            dir.path(),
            &[("r.onnx", Some("research")), ("c.onnx", Some("commercial"))],
        );
        for (model_use, file) in [
            (ModelUse::Research, "r.onnx"),
            (ModelUse::Commercial, "c.onnx"),
        ] {
            let verified = manifest.verify(model_use).unwrap();
            let chosen = verified.get(Role::AgeGenderInt8).unwrap();
            assert_eq!(chosen.path, dir.path().join(file));
            assert!(verified.get(Role::FaceDetector).is_some());
            let line = verified.licence_line();
            assert!(line.contains(&format!("licence of {file}")), "{line}");
            assert!(line.contains(model_use.name()), "{line}");
        }
    }

    #[test]
    fn a_commercial_kiosk_never_falls_back_to_the_research_model() {
        let dir = tempfile::tempdir().unwrap();
        // An entry without "use" is the research model (manifests from before two models).
        let manifest = two_use_manifest(dir.path(), &[("r.onnx", None)]);
        assert!(manifest.verify(ModelUse::Research).is_ok());
        let msg = manifest
            .verify(ModelUse::Commercial)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(MANIFEST_FILE) && msg.contains("model.use = \"commercial\""),
            "{msg}"
        );
        // Without any age/gender model both uses still find faces.
        let dir = tempfile::tempdir().unwrap();
        let manifest = two_use_manifest(dir.path(), &[]);
        let verified = manifest.verify(ModelUse::Commercial).unwrap();
        assert_eq!(verified.licence_line(), "no age/gender model installed");
    }

    #[test]
    fn verify_refuses_a_damaged_file_of_the_chosen_use_only() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = two_use_manifest(
            dir.path(),
            &[("r.onnx", Some("research")), ("c.onnx", Some("commercial"))],
        );
        std::fs::write(dir.path().join("c.onnx"), b"abd").unwrap();
        assert!(manifest.verify(ModelUse::Research).is_ok());
        let msg = manifest
            .verify(ModelUse::Commercial)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("c.onnx") && msg.contains("reinstall"), "{msg}");
    }

    #[test]
    fn shipped_manifest_verifies() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let manifest = Manifest::load(&dir, &TrustedKeys::project()).unwrap();
        assert!(
            manifest.signed_by.contains("project"),
            "{}",
            manifest.signed_by
        );
        assert!(!manifest.entries.is_empty());
        for entry in &manifest.entries {
            manifest.verify_entry(entry).unwrap();
            assert!(!entry.licence.is_empty() && !entry.source.is_empty());
        }
        for model_use in [ModelUse::Research, ModelUse::Commercial] {
            let verified = manifest.verify(model_use).unwrap();
            assert!(verified.age_gender().next().is_some(), "{model_use:?}");
        }
    }

    #[test]
    fn an_unsigned_an_edited_and_a_foreign_signed_manifest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path(), ABC_SHA256);
        let keys = test_key::keys();
        assert!(Manifest::load(dir.path(), &keys).is_ok());

        // Edited after signing: one byte of the manifest.
        let path = dir.path().join(MANIFEST_FILE);
        let signed = std::fs::read(&path).unwrap();
        let mut edited = signed.clone();
        let at = edited.len() - 3;
        edited[at] ^= 1;
        std::fs::write(&path, &edited).unwrap();
        let msg = Manifest::load(dir.path(), &keys).unwrap_err().to_string();
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("edited after it was signed")
                && msg.contains("test key"),
            "{msg}"
        );

        // Signed, but by a key this unit does not trust.
        std::fs::write(&path, &signed).unwrap();
        let msg = Manifest::load(dir.path(), &TrustedKeys::project())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(super::super::signature::SIGNATURE_FILE)
                && msg.contains("does not trust")
                && msg.contains("agecam project"),
            "{msg}"
        );

        // Not signed at all.
        std::fs::remove_file(dir.path().join(super::super::signature::SIGNATURE_FILE)).unwrap();
        let msg = Manifest::load(dir.path(), &keys).unwrap_err().to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("is not signed"),
            "{msg}"
        );
    }
}
