//! Signed model sets: `manifest.json` carries a minisign signature (Ed25519, in
//! `manifest.json.minisig` beside it), and nothing is loaded from a folder whose manifest does
//! not verify against a key this unit trusts. The manifest lists the sha256 of every model
//! file, so one signature covers the whole set.
//!
//! The keys trusted are the agecam project's key, built into the binary (and installed as
//! `/usr/share/agecam/agecam-models.pub` for `minisign -V`), and the `.pub` files listed in
//! `model.public_keys` (an operator's own key). `agecam-host sign` makes signatures;
//! docs/model-signing.md says how the keys are kept.
//!
//! The signature file is read strictly (exactly four lines, canonical base64, minisign's own
//! untrusted comment), so that no byte of a signed set can be changed unnoticed, not even in
//! the parts of the signature file that the signature itself does not cover.

use crate::config::ModelConfig;
use crate::Error;
use base64::Engine;
use minisign_verify::{PublicKey, Signature};
use std::path::{Path, PathBuf};

/// The signature of `manifest.json`, in the same folder.
pub const SIGNATURE_FILE: &str = "manifest.json.minisig";

/// The first line of every signature file: the `minisign` tool's default, which
/// `agecam-host sign` writes too. It is not covered by the signature, so it must be exactly
/// this.
pub const UNTRUSTED_COMMENT: &str = "untrusted comment: signature from minisign secret key";

/// The agecam project's model-signing public key (minisign format), built in.
pub const PROJECT_KEY: &str = include_str!("../../deploy/agecam-models.pub");

/// One key this unit trusts, with where it came from (for messages).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// `built in (the agecam project's key)` or the `.pub` file's path.
    pub origin: String,
    /// The key ID as minisign prints it (16 upper-case hex digits).
    pub id: String,
    key: PublicKey,
}

impl TrustedKey {
    /// Parses a minisign public key file's text (`untrusted comment: …` then the base64 key).
    pub fn parse(text: &str, origin: &str) -> Result<TrustedKey, String> {
        let b64 = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or("holds no key")?;
        let key = PublicKey::from_base64(b64)
            .map_err(|e| format!("is not a minisign public key ({e})"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("is not a minisign public key ({e})"))?;
        Ok(TrustedKey {
            origin: origin.to_string(),
            id: key_id_hex(&raw[2..10]),
            key,
        })
    }

    /// Reads a `.pub` file.
    pub fn from_file(path: &Path) -> Result<TrustedKey, Error> {
        let problem = |p: String| {
            Error::Model {
            file: path.to_path_buf(),
            problem: format!("{p}; model.public_keys must list minisign .pub files (agecam-host keygen makes one)"),
        }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| problem(format!("cannot read this public key ({e})")))?;
        TrustedKey::parse(&text, &path.display().to_string())
            .map_err(|p| problem(format!("this file {p}")))
    }

    /// `key ID … (origin)`.
    pub fn describe(&self) -> String {
        format!("key ID {} ({})", self.id, self.origin)
    }
}

/// minisign's key ID form: the 8 bytes as a little-endian integer in hex.
fn key_id_hex(bytes: &[u8]) -> String {
    let mut le = [0u8; 8];
    le.copy_from_slice(bytes);
    format!("{:016X}", u64::from_le_bytes(le))
}

/// The keys a unit accepts model manifests from.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
}

impl TrustedKeys {
    /// Only the project's built-in key.
    pub fn project() -> TrustedKeys {
        let key = TrustedKey::parse(PROJECT_KEY, "built in: the agecam project's key")
            .expect("deploy/agecam-models.pub is a minisign public key");
        TrustedKeys { keys: vec![key] }
    }

    /// The project's key and the `.pub` files `model.public_keys` lists.
    pub fn from_config(model: &ModelConfig) -> Result<TrustedKeys, Error> {
        let mut keys = TrustedKeys::project();
        for path in &model.public_keys {
            keys.keys.push(TrustedKey::from_file(path)?);
        }
        Ok(keys)
    }

    /// Only the given key (tests, and `agecam-host sign`'s check of its own signature).
    pub fn only(key: TrustedKey) -> TrustedKeys {
        TrustedKeys { keys: vec![key] }
    }

    /// Every key, described, for messages.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(TrustedKey::describe).collect();
        keys.join(", ")
    }

    /// Checks that `signature_text` (the contents of `signature_file`) is a signature of
    /// `manifest` (the bytes of `manifest_file`) by one of these keys; returns that key.
    pub fn verify(
        &self,
        manifest_file: &Path,
        manifest: &[u8],
        signature_file: &Path,
        signature_text: &[u8],
    ) -> Result<&TrustedKey, Error> {
        let refuse = |problem: String| Error::Model {
            file: signature_file.to_path_buf(),
            problem,
        };
        let signature = strict_signature(signature_text).map_err(|p| {
            refuse(format!(
                "is not a valid minisign signature of {} ({p}); the model set is damaged or was edited: reinstall it (agecam models install BUNDLE) or sign it again (agecam-host sign)",
                manifest_file.display()
            ))
        })?;
        // The key the signature names (minisign's key ID); the signature is checked below.
        let signer = self.keys.iter().find(|k| k.id == signature.1);
        let Some(signer) = signer else {
            return Err(refuse(format!(
                "was made with key ID {}, which this unit does not trust (it trusts {}); install models signed by a trusted key, or add that key's .pub file to model.public_keys if you trust it",
                signature.1,
                self.describe()
            )));
        };
        signer
            .key
            .verify(manifest, &signature.0, false)
            .map_err(|e| Error::Model {
                file: manifest_file.to_path_buf(),
                problem: format!(
                    "does not match its signature {} by {} ({e}): the manifest was edited after it was signed; reinstall the models (agecam models install BUNDLE, or the package)",
                    signature_file.display(),
                    signer.describe()
                ),
            })?;
        Ok(signer)
    }
}

/// Parses a signature file exactly as `minisign` writes it: four lines, each ending in `\n`,
/// the default untrusted comment, canonical base64, prehashed (Ed25519 of BLAKE2b-512). Returns
/// the signature and its key ID.
fn strict_signature(text: &[u8]) -> Result<(Signature, String), String> {
    let text = std::str::from_utf8(text).map_err(|_| "not text".to_string())?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err("its last line does not end in a newline".into());
    };
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() != 4 {
        return Err(format!("{} lines, not 4", lines.len()));
    }
    if lines[0] != UNTRUSTED_COMMENT {
        return Err(format!("its first line is not \"{UNTRUSTED_COMMENT}\""));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let signature = b64
        .decode(lines[1])
        .map_err(|e| format!("line 2 is not canonical base64: {e}"))?;
    b64.decode(lines[3])
        .map_err(|e| format!("line 4 is not canonical base64: {e}"))?;
    if signature.len() != 74 || &signature[..2] != b"ED" {
        return Err("line 2 is not a prehashed Ed25519 signature (minisign 0.8 or later)".into());
    }
    let parsed = Signature::decode(body).map_err(|e| e.to_string())?;
    Ok((parsed, key_id_hex(&signature[2..10])))
}

/// The signature file beside `manifest_file`.
pub fn signature_path(manifest_file: &Path) -> PathBuf {
    manifest_file.with_file_name(SIGNATURE_FILE)
}

/// A key pair made for tests (the project's secret key is not in the repository).
#[cfg(test)]
pub(crate) mod test_key {
    use super::*;
    use std::sync::OnceLock;

    fn pair() -> &'static minisign::KeyPair {
        static PAIR: OnceLock<minisign::KeyPair> = OnceLock::new();
        PAIR.get_or_init(|| minisign::KeyPair::generate_unencrypted_keypair().unwrap())
    }

    /// The test key, trusted alone.
    pub fn keys() -> TrustedKeys {
        let text = pair().pk.to_box().unwrap().to_string();
        TrustedKeys::only(TrustedKey::parse(&text, "test key").unwrap())
    }

    /// Signs `dir/manifest.json` with the test key; returns the keys that trust it.
    pub fn sign(dir: &Path) -> TrustedKeys {
        let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
        let pair = pair();
        let sig = minisign::sign(
            Some(&pair.pk),
            &pair.sk,
            &manifest[..],
            Some("file:manifest.json"),
            Some(UNTRUSTED_COMMENT.trim_start_matches("untrusted comment: ")),
        )
        .unwrap();
        std::fs::write(dir.join(SIGNATURE_FILE), sig.to_string()).unwrap();
        keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_project_key_parses_and_has_minisigns_id_form() {
        let keys = TrustedKeys::project();
        let described = keys.describe();
        assert!(described.contains("agecam project"), "{described}");
        let id = &keys.keys[0].id;
        assert_eq!(id.len(), 16);
        // minisign prints the same ID in the .pub file's comment.
        assert!(
            PROJECT_KEY.contains(id.as_str()),
            "{id} not in {PROJECT_KEY}"
        );
    }

    #[test]
    fn a_key_file_that_is_not_a_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.pub");
        std::fs::write(&path, "untrusted comment: x\nnot base64!\n").unwrap();
        let msg = TrustedKey::from_file(&path).unwrap_err().to_string();
        assert!(
            msg.contains("mine.pub") && msg.contains("not a minisign public key"),
            "{msg}"
        );
        let msg = TrustedKey::from_file(&dir.path().join("none.pub"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("none.pub") && msg.contains("cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn the_shipped_manifest_is_signed_by_the_project_key() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let manifest = dir.join("manifest.json");
        let sig = signature_path(&manifest);
        let keys = TrustedKeys::project();
        let signer = keys
            .verify(
                &manifest,
                &std::fs::read(&manifest).unwrap(),
                &sig,
                &std::fs::read(&sig).unwrap(),
            )
            .unwrap();
        assert!(signer.origin.contains("project"));
    }

    #[test]
    fn every_edited_byte_of_the_signature_file_is_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let manifest_file = dir.join("manifest.json");
        let manifest = std::fs::read(&manifest_file).unwrap();
        let sig_file = signature_path(&manifest_file);
        let sig = std::fs::read(&sig_file).unwrap();
        let keys = TrustedKeys::project();
        for i in 0..sig.len() {
            for edit in [1u8, 0x20, 0x80] {
                let mut bad = sig.clone();
                bad[i] ^= edit;
                assert!(
                    keys.verify(&manifest_file, &manifest, &sig_file, &bad)
                        .is_err(),
                    "byte {i} ^ {edit:#x} of the signature went unnoticed"
                );
            }
        }
        let mut longer = sig.clone();
        longer.push(b'\n');
        assert!(keys
            .verify(&manifest_file, &manifest, &sig_file, &longer)
            .is_err());
    }
}
