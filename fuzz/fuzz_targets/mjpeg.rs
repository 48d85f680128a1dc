//! Camera MJPEG frames (with or without their Huffman tables) and still images (JPEG/PNG from
//! the stills folder): any bytes must decode or give an error, never panic.
#![no_main]

use agecam::capture::convert::{buffer_to_rgb, PixelFormat};
use agecam::capture::stills::decode_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As the V4L2 source hands it over, for a camera set to 640x480 MJPEG.
    let mut scratch = Vec::new();
    if let Ok(image) = buffer_to_rgb(data, PixelFormat::Mjpeg, 640, 480, &mut scratch) {
        assert!(image.width() > 0 && image.width() <= 640 && image.height() <= 480);
    }
    let _ = decode_bytes(data);
});
