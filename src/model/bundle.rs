//! Model bundles: one file that carries a whole signed model set to a unit, for
//! `agecam models install`.
//!
//! A bundle is a plain tar archive of exactly `manifest.json`, `manifest.json.minisig` and the
//! files the manifest lists (each once, in the manifest's order), with fixed headers: ustar,
//! mode 0644, owner 0, time 0. That is the *canonical* form `agecam-host sign --bundle`
//! writes. A unit accepts a bundle only when it is byte for byte the canonical form of a set
//! whose manifest verifies against a trusted key and whose files match their sha256: the
//! signature covers the manifest, the manifest covers the files, and the canonical form covers
//! every other byte (headers, padding, the end of the archive), so no byte can be changed
//! unnoticed.

use super::manifest::{parse_entries, Entry, MANIFEST_FILE};
use super::signature::{TrustedKeys, SIGNATURE_FILE};
use crate::Error;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

/// A bundle whose signature, hashes and form were checked: the set it carries, in memory.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// `manifest.json`, as signed.
    pub manifest: Vec<u8>,
    /// `manifest.json.minisig`.
    pub signature: Vec<u8>,
    /// The manifest's entries.
    pub entries: Vec<Entry>,
    /// The files the manifest lists, by name, each once.
    pub files: Vec<(String, Vec<u8>)>,
    /// The trusted key that signed the manifest, described.
    pub signed_by: String,
}

impl Bundle {
    /// The set's name in a model store: the first 16 hex digits of the manifest's sha256.
    pub fn id(&self) -> String {
        set_id(&self.manifest)
    }

    /// Every file of the set in canonical order: manifest, signature, model files.
    pub fn all_files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        [
            (MANIFEST_FILE, &self.manifest[..]),
            (SIGNATURE_FILE, &self.signature[..]),
        ]
        .into_iter()
        .chain(self.files.iter().map(|(n, b)| (n.as_str(), &b[..])))
    }
}

/// The id of the set whose manifest is `manifest`.
pub fn set_id(manifest: &[u8]) -> String {
    Sha256::digest(manifest)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The file names `entries` list, each once, in order; refuses a name that is not a plain file
/// name in the set's folder (a bundle's names become paths on the unit).
pub fn listed_files(entries: &[Entry]) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let name = &entry.file;
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\', '\0'])
            && name != MANIFEST_FILE
            && name != SIGNATURE_FILE;
        if !plain {
            return Err(format!(
                "the manifest lists \"{name}\", which is not a plain file name in the set's folder"
            ));
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// Writes the canonical tar of the given files (names and contents, in this order).
pub fn write_canonical<'a, W: Write>(
    out: W,
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(out);
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(name)?;
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, bytes)?;
    }
    builder.into_inner()
}

/// Reads a model folder's manifest, signature and listed files and writes them as a canonical
/// bundle. Nothing is verified here: `agecam-host sign` checks the signature first.
pub fn pack(dir: &Path) -> Result<Vec<u8>, Error> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| Error::Model {
            file: path,
            problem: format!("cannot read it for the bundle ({e})"),
        })
    };
    let manifest = read(MANIFEST_FILE)?;
    let signature = read(SIGNATURE_FILE)?;
    let manifest_file = dir.join(MANIFEST_FILE);
    let entries = parse_entries(&manifest).map_err(|e| Error::Model {
        file: manifest_file.clone(),
        problem: e.to_string(),
    })?;
    let names = listed_files(&entries).map_err(|problem| Error::Model {
        file: manifest_file,
        problem,
    })?;
    let mut files = Vec::new();
    for name in names {
        let bytes = read(&name)?;
        files.push((name, bytes));
    }
    let all = [
        (MANIFEST_FILE, &manifest[..]),
        (SIGNATURE_FILE, &signature[..]),
    ]
    .into_iter()
    .chain(files.iter().map(|(n, b)| (n.as_str(), &b[..])));
    write_canonical(Vec::new(), all).map_err(|e| Error::Output {
        path: dir.to_path_buf(),
        problem: format!("cannot write the bundle ({e})"),
    })
}

/// Checks a bundle (the bytes of the file `origin`) against `keys` and returns the set it
/// carries. Every refusal names `origin` and says why.
pub fn read(bytes: &[u8], origin: &Path, keys: &TrustedKeys) -> Result<Bundle, Error> {
    let refuse = |problem: String| {
        Error::Model {
        file: origin.to_path_buf(),
        problem: format!("{problem}; this bundle cannot be installed (the unit keeps its current models): get the bundle again from its source"),
    }
    };
    // Every member, in order, as plain files.
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| refuse(format!("is not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(format!("is not a valid tar archive ({e})")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(refuse(format!(
                "holds a member of type {:?}; a model bundle holds plain files only",
                entry.header().entry_type()
            )));
        }
        let name = entry
            .path()
            .map_err(|e| refuse(format!("holds a member whose name cannot be read ({e})")))?
            .to_string_lossy()
            .into_owned();
        if members.len() > 64 {
            return Err(refuse("holds more than 64 files".into()));
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| refuse(format!("member {name} cannot be read ({e})")))?;
        members.push((name, data));
    }
    let mut take = |name: &str| -> Result<Vec<u8>, Error> {
        let at = members
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| refuse(format!("holds no {name}")))?;
        Ok(members.remove(at).1)
    };
    let manifest = take(MANIFEST_FILE)?;
    let signature = take(SIGNATURE_FILE)?;
    let manifest_path = origin.join(MANIFEST_FILE);
    let signer = keys.verify(
        &manifest_path,
        &manifest,
        &origin.join(SIGNATURE_FILE),
        &signature,
    )?;
    let entries =
        parse_entries(&manifest).map_err(|e| refuse(format!("its {MANIFEST_FILE}: {e}")))?;
    let names = listed_files(&entries).map_err(refuse)?;
    let mut files = Vec::new();
    for name in &names {
        let bytes = take(name)?;
        let entry = entries.iter().find(|e| &e.file == name).expect("listed");
        let actual = super::manifest::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            return Err(refuse(format!(
                "its {name} has sha256 {actual}, but the signed manifest says {}: the file was damaged or replaced",
                entry.sha256
            )));
        }
        files.push((name.clone(), bytes));
    }
    if let Some((extra, _)) = members.first() {
        return Err(refuse(format!(
            "holds {extra}, which its signed manifest does not list"
        )));
    }
    let bundle = Bundle {
        manifest,
        signature,
        entries,
        files,
        signed_by: signer.describe(),
    };
    // Byte for byte the canonical form: nothing outside the signed contents was changed.
    let same = write_canonical(SameAs::new(bytes), bundle.all_files())
        .map(|same| same.finished())
        .unwrap_or(false);
    if !same {
        return Err(refuse(
            "is not in the canonical form agecam-host sign --bundle writes (a header, the padding or the end of the archive was changed)".into(),
        ));
    }
    Ok(bundle)
}

/// A writer that compares what is written with `expected` instead of storing it.
struct SameAs<'a> {
    expected: &'a [u8],
    at: usize,
    differs: bool,
}

impl<'a> SameAs<'a> {
    fn new(expected: &'a [u8]) -> Self {
        SameAs {
            expected,
            at: 0,
            differs: false,
        }
    }

    /// True when everything written equals all of `expected`.
    fn finished(&self) -> bool {
        !self.differs && self.at == self.expected.len()
    }
}

impl Write for SameAs<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.at + buf.len();
        if self.differs || end > self.expected.len() || self.expected[self.at..end] != *buf {
            self.differs = true;
        }
        self.at = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::signature::test_key;

    /// A small signed set in `dir`: two files, one listed twice (int8 and f32 the same file).
    pub(crate) fn small_set(dir: &Path, tag: &str) -> TrustedKeys {
        let a = format!("detector {tag}").into_bytes();
        let b = format!("age/gender {tag}").into_bytes();
        std::fs::write(dir.join("det.onnx"), &a).unwrap();
        std::fs::write(dir.join("ag.onnx"), &b).unwrap();
        let line = |file: &str, role: &str, bytes: &[u8]| {
            format!(
                r#"{{"file":"{file}","role":"{role}","sha256":"{}","licence":"MIT","source":"test {tag}"}}"#,
                crate::model::manifest::sha256_hex(bytes)
            )
        };
        let json = format!(
            "[{},{},{}]",
            line("det.onnx", "face_detector", &a),
            line("ag.onnx", "age_gender_int8", &b),
            line("ag.onnx", "age_gender_f32", &b)
        );
        std::fs::write(dir.join(MANIFEST_FILE), json).unwrap();
        test_key::sign(dir)
    }

    #[test]
    fn a_packed_set_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let keys = small_set(dir.path(), "one");
        let bytes = pack(dir.path()).unwrap();
        let bundle = read(&bytes, Path::new("one.bundle"), &keys).unwrap();
        let names: Vec<&str> = bundle.all_files().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "manifest.json",
                "manifest.json.minisig",
                "det.onnx",
                "ag.onnx"
            ]
        );
        assert_eq!(bundle.entries.len(), 3);
        assert!(bundle.signed_by.contains("test key"));
        assert_eq!(bundle.id().len(), 16);
    }

    /// The issue's test: one edited byte anywhere in a bundle is refused.
    #[test]
    fn every_single_edited_byte_of_a_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = small_set(dir.path(), "two");
        let bytes = pack(dir.path()).unwrap();
        assert!(read(&bytes, Path::new("b"), &keys).is_ok());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                read(&bad, Path::new("b"), &keys).is_err(),
                "byte {i} of {} edited went unnoticed",
                bytes.len()
            );
        }
        // Cut short, or with bytes added at the end.
        assert!(read(&bytes[..bytes.len() - 1], Path::new("b"), &keys).is_err());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 512]);
        assert!(read(&longer, Path::new("b"), &keys).is_err());
    }

    #[test]
    fn refusals_name_the_bundle_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let keys = small_set(dir.path(), "three");
        let origin = Path::new("/tmp/x.agecam-models");
        // A file swapped and the manifest not re-signed: the hash catches it.
        std::fs::write(dir.path().join("det.onnx"), b"another network").unwrap();
        let bytes = pack(dir.path()).unwrap();
        let msg = read(&bytes, origin, &keys).unwrap_err().to_string();
        assert!(
            msg.contains("/tmp/x.agecam-models")
                && msg.contains("det.onnx")
                && msg.contains("damaged or replaced"),
            "{msg}"
        );
        // Not a tar archive at all.
        let msg = read(b"hello", origin, &keys).unwrap_err().to_string();
        assert!(
            msg.contains("/tmp/x.agecam-models") && msg.contains("cannot be installed"),
            "{msg}"
        );
        // Signed by a key the unit does not trust.
        small_set(dir.path(), "three");
        let bytes = pack(dir.path()).unwrap();
        let msg = read(&bytes, origin, &TrustedKeys::project())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("does not trust"), "{msg}");
        // An unlisted extra member.
        let mut files: Vec<(String, Vec<u8>)> = read(&bytes, origin, &keys)
            .unwrap()
            .all_files()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect();
        files.push(("extra.sh".into(), b"#!/bin/sh".to_vec()));
        let extra =
            write_canonical(Vec::new(), files.iter().map(|(n, b)| (n.as_str(), &b[..]))).unwrap();
        let msg = read(&extra, origin, &keys).unwrap_err().to_string();
        assert!(
            msg.contains("extra.sh") && msg.contains("does not list"),
            "{msg}"
        );
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        let entry = |file: &str| Entry {
            file: file.into(),
            role: crate::model::Role::FaceDetector,
            sha256: String::new(),
            licence: String::new(),
            source: String::new(),
            model_use: None,
        };
        for bad in ["../etc/passwd", "a/b", "", ".hidden", "manifest.json"] {
            assert!(listed_files(&[entry(bad)]).is_err(), "{bad}");
        }
        assert_eq!(
            listed_files(&[entry("a.onnx"), entry("a.onnx")]).unwrap(),
            ["a.onnx"]
        );
    }
}
