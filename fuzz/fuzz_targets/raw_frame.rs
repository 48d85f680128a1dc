//! Camera buffers as the V4L2 driver hands them over, with the frame size the camera was set
//! to: input is a format index byte, a scale byte, little-endian u16 width and height, then the
//! buffer. A wrong length, an odd width or a zero size must be an error, never a panic, at
//! every decode scale (`capture::pixels`: 1/8, 1/4, 1/2, whole, in an order the input picks).
#![no_main]

use agecam::capture::convert::{buffer_to_rgb, scaled_size, PixelFormat};
use agecam::capture::{FramePixels, Picture, RawPixels};
use libfuzzer_sys::fuzz_target;

const FORMATS: [PixelFormat; 4] = [
    PixelFormat::Mjpeg,
    PixelFormat::Yuyv,
    PixelFormat::Rgb3,
    PixelFormat::Grey,
];

fuzz_target!(|data: &[u8]| {
    let [format, scales, w0, w1, h0, h1, buf @ ..] = data else {
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
    // The daemon's path: the header read once, then pictures asked for at two sizes.
    let raw = RawPixels::Buffer {
        bytes: buf.to_vec(),
        format,
        width,
        height,
    };
    let Ok(mut pixels) = FramePixels::new(raw, "fuzz") else {
        return;
    };
    let size = pixels.size();
    assert!(size.0 <= width && size.1 <= height);
    for shift in [scales & 3, (scales >> 2) & 3] {
        let need = scaled_size(size, 1 << shift);
        if let Ok(picture) = pixels.at_least(need) {
            let (w, h) = picture.dimensions();
            assert!(w <= size.0 && h <= size.1);
            assert!(w >= need.0.min(size.0) && h >= need.1.min(size.1), "{need:?} got {w}x{h}");
        }
    }
});
