//! Camera buffers as the V4L2 driver hands them over, with the frame size the camera was set
//! to: input is a format index byte, little-endian u16 width and height, then the buffer. A
//! wrong length, an odd width or a zero size must be an error, never a panic.
#![no_main]

use agecam::capture::convert::{buffer_to_rgb, PixelFormat};
use libfuzzer_sys::fuzz_target;

const FORMATS: [PixelFormat; 4] = [
    PixelFormat::Mjpeg,
    PixelFormat::Yuyv,
    PixelFormat::Rgb3,
    PixelFormat::Grey,
];

fuzz_target!(|data: &[u8]| {
    let [format, w0, w1, h0, h1, buf @ ..] = data else {
        return;
    };
    let format = FORMATS[*format as usize % FORMATS.len()];
    let width = u16::from_le_bytes([*w0, *w1]) as u32;
    let height = u16::from_le_bytes([*h0, *h1]) as u32;
    let mut scratch = Vec::new();
    if let Ok(image) = buffer_to_rgb(buf, format, width, height, &mut scratch) {
        // Raw formats have the size the camera was set to; a buffer too short for it is an
        // error, so a success means the whole frame was there.
        if format != PixelFormat::Mjpeg {
            assert_eq!(image.dimensions(), (width, height));
            let per_pixel = match format {
                PixelFormat::Yuyv => 2,
                PixelFormat::Rgb3 => 3,
                _ => 1,
            };
            assert!(buf.len() >= (width * height) as usize * per_pixel);
        }
    }
});
