//! `models/manifest.json` and its signature: any manifest text must parse to entries or give
//! an error, and any signature text must verify or be refused, never panic.
#![no_main]

use agecam::model::manifest::{parse_entries, Role};
use agecam::model::TrustedKeys;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = parse_entries(data) {
        for role in [
            Role::AgeGenderInt8,
            Role::AgeGenderF32,
            Role::FaceDetector,
            Role::FaceDetectorFallback,
        ] {
            let _ = entries.iter().find(|e| e.role == role);
        }
    }
    // The same bytes as a signature of the shipped manifest.
    let manifest = Path::new("manifest.json");
    let _ = TrustedKeys::project().verify(manifest, b"[]", Path::new("manifest.json.minisig"), data);
});
