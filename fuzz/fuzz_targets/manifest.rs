//! `models/manifest.json`: any text must parse to entries or give an error, never panic.
#![no_main]

use agecam::model::manifest::{Manifest, Role};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(manifest) = Manifest::parse(text, Path::new("/usr/share/agecam/models")) {
        for role in [
            Role::AgeGenderInt8,
            Role::AgeGenderF32,
            Role::FaceDetector,
            Role::FaceDetectorFallback,
        ] {
            let _ = manifest.entry(role);
        }
    }
});
