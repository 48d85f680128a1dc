//! A model bundle (`agecam models install BUNDLE`): any bytes must be refused with an error or
//! accepted as a set signed by a trusted key, never panic or run away with memory.
#![no_main]

use agecam::model::{bundle, TrustedKeys};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = bundle::read(data, Path::new("fuzz.agecam-models"), &TrustedKeys::project());
});
