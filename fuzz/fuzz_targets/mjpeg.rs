//! Camera MJPEG frames (with or without their Huffman tables) and still images (JPEG/PNG from
//! the stills folder): any bytes must decode or give an error, never panic.
#![no_main]

use agecam::capture::{convert::decode_mjpeg, stills::decode_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode_mjpeg(data) {
        assert!(image.width() > 0 && image.height() > 0);
    }
    let _ = decode_bytes(data);
});
