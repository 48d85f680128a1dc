//! A frame decoded only as large as it is used.
//!
//! The detector reads a few hundred pixels across, a panel shows 240 or 320, and only the
//! frames that classify a face need the whole picture. [`FramePixels`] keeps a camera buffer as
//! it came and decodes it on request at the smallest scale that is at least what the caller
//! asks for: an MJPEG frame at 1/8, 1/4 or 1/2 straight from its DCT coefficients, a YUYV frame
//! at the pixels kept. Each scale is decoded once per frame; a frame that nobody asks for (a
//! headless unit's frames between detector runs) is never decoded at all.
//!
//! [`Picture`] is what the pipeline reads: a [`FramePixels`], or an already decoded image
//! ([`Whole`]) for photos, tests and recorded scenes.

use super::convert::{self, PixelFormat};
use super::{CaptureError, RawPixels};
use image::RgbImage;

/// A frame's pixels at whatever size is asked for.
pub trait Picture {
    /// The whole frame's size, in pixels; face boxes are in these coordinates.
    fn size(&self) -> (u32, u32);

    /// The frame at least `need` pixels in both sides (the whole frame when it is smaller),
    /// decoded now if no picture that large has been yet. Its size over [`Picture::size`] is
    /// the scale.
    fn at_least(&mut self, need: (u32, u32)) -> Result<&RgbImage, CaptureError>;

    /// The whole frame.
    fn whole(&mut self) -> Result<&RgbImage, CaptureError> {
        let size = self.size();
        self.at_least(size)
    }
}

/// An image already decoded, as a [`Picture`]: every request gets it whole.
pub struct Whole<'a>(pub &'a RgbImage);

impl Picture for Whole<'_> {
    fn size(&self) -> (u32, u32) {
        self.0.dimensions()
    }

    fn at_least(&mut self, _: (u32, u32)) -> Result<&RgbImage, CaptureError> {
        Ok(self.0)
    }
}

/// A camera frame's pixels, decoded lazily, once per scale (see the module doc).
pub struct FramePixels {
    raw: RawPixels,
    origin: String,
    size: (u32, u32),
    /// The pictures decoded so far, with their denominators (1 = whole).
    decoded: Vec<(u32, RgbImage)>,
    /// Every denominator decoded, in order (pictures taken away included).
    history: Vec<u32>,
    scratch: Vec<u8>,
}

impl FramePixels {
    /// The pixels of a frame from `origin` (named in errors). An MJPEG buffer's header is read
    /// now (cheap): a frame that declares more than the camera's mode is refused before any
    /// decoding.
    pub fn new(raw: RawPixels, origin: &str) -> Result<FramePixels, CaptureError> {
        let size = match &raw {
            RawPixels::Rgb(image) => image.dimensions(),
            RawPixels::Buffer {
                bytes,
                format,
                width,
                height,
            } => convert::buffer_size(bytes, *format, *width, *height)
                .map_err(|reason| CaptureError::bad_frame(origin, reason))?,
        };
        let (raw, decoded) = match raw {
            // Already decoded: it is the whole picture, kept without a copy.
            RawPixels::Rgb(image) => (RawPixels::Rgb(RgbImage::new(0, 0)), vec![(1, image)]),
            buffer => (buffer, Vec::new()),
        };
        Ok(FramePixels {
            raw,
            origin: origin.to_string(),
            size,
            history: decoded.iter().map(|(d, _)| *d).collect(),
            decoded,
            scratch: Vec::new(),
        })
    }

    /// The denominators decoded so far (1 = whole), in the order they were: what this frame
    /// cost in decoding, for tests and `bench`.
    pub fn decoded(&self) -> Vec<u32> {
        self.history.clone()
    }

    /// Takes the picture [`Picture::at_least`] would give, leaving it decoded no more (the
    /// display, the frame's last reader, keeps it without a copy).
    pub fn take_at_least(&mut self, need: (u32, u32)) -> Result<RgbImage, CaptureError> {
        let index = self.index_at_least(need)?;
        Ok(self.decoded.swap_remove(index).1)
    }

    /// Index in `decoded` of the smallest picture at least `need`, decoding one if none is.
    fn index_at_least(&mut self, need: (u32, u32)) -> Result<usize, CaptureError> {
        let fits = |image: &RgbImage| {
            let (w, h) = image.dimensions();
            (w >= need.0 && h >= need.1) || (w, h) == self.size
        };
        if let Some(best) = self
            .decoded
            .iter()
            .enumerate()
            .filter(|(_, (_, image))| fits(image))
            .max_by_key(|(_, (d, _))| *d)
            .map(|(i, _)| i)
        {
            return Ok(best);
        }
        let image = match &self.raw {
            RawPixels::Rgb(_) => {
                return Err(CaptureError::bad_frame(
                    &self.origin,
                    "its picture was already taken for the display",
                ))
            }
            RawPixels::Buffer {
                bytes,
                format,
                width,
                height,
            } => {
                let d = match format {
                    PixelFormat::Mjpeg | PixelFormat::Yuyv => {
                        convert::dct_denominator(self.size, need)
                    }
                    PixelFormat::Rgb3 | PixelFormat::Grey => 1,
                };
                let image = convert::buffer_to_rgb_scaled(
                    bytes,
                    *format,
                    *width,
                    *height,
                    d,
                    &mut self.scratch,
                )
                .map_err(|reason| CaptureError::bad_frame(&self.origin, reason))?;
                (d, image)
            }
        };
        self.history.push(image.0);
        self.decoded.push(image);
        Ok(self.decoded.len() - 1)
    }
}

impl Picture for FramePixels {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn at_least(&mut self, need: (u32, u32)) -> Result<&RgbImage, CaptureError> {
        let index = self.index_at_least(need)?;
        Ok(&self.decoded[index].1)
    }
}

impl std::fmt::Debug for FramePixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePixels")
            .field("origin", &self.origin)
            .field("size", &self.size)
            .field("decoded", &self.decoded())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::stills::DEMO_FRAMES;

    fn mjpeg(bytes: &[u8]) -> FramePixels {
        FramePixels::new(
            RawPixels::Buffer {
                bytes: bytes.to_vec(),
                format: PixelFormat::Mjpeg,
                width: 640,
                height: 480,
            },
            "test camera",
        )
        .unwrap()
    }

    #[test]
    fn each_request_decodes_the_smallest_dct_scale_that_covers_it_once() {
        let mut pixels = mjpeg(DEMO_FRAMES[0].1);
        assert_eq!(pixels.size(), (640, 480));
        assert!(pixels.decoded().is_empty(), "nothing decoded before asked");
        // A 128×96 detector input: 1/4 (160×120) covers it, 1/8 (80×60) does not.
        assert_eq!(pixels.at_least((128, 96)).unwrap().dimensions(), (160, 120));
        // A 320×240 panel: 1/2.
        assert_eq!(
            pixels.at_least((320, 240)).unwrap().dimensions(),
            (320, 240)
        );
        // Asked again, smaller: the 1/4 picture already there serves it.
        assert_eq!(pixels.at_least((100, 50)).unwrap().dimensions(), (160, 120));
        assert_eq!(pixels.whole().unwrap().dimensions(), (640, 480));
        // More than the frame has: the whole frame.
        assert_eq!(
            pixels.at_least((4000, 3000)).unwrap().dimensions(),
            (640, 480)
        );
        assert_eq!(pixels.decoded(), vec![4, 2, 1]);
    }

    #[test]
    fn a_scaled_decode_is_the_whole_frame_made_smaller() {
        let mut pixels = mjpeg(DEMO_FRAMES[2].1);
        let half = pixels.at_least((320, 240)).unwrap().clone();
        let whole = pixels.whole().unwrap().clone();
        assert_eq!(half.dimensions(), (320, 240));
        // Inside every 2×2 block's range: the DCT-scaled picture is a smoothed subsample, not
        // another picture or a shifted one.
        let mut total = 0u64;
        for (x, y, p) in half.enumerate_pixels() {
            for c in 0..3 {
                let block: Vec<i32> = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .map(|(dx, dy)| whole.get_pixel(2 * x + dx, 2 * y + dy).0[c] as i32)
                    .collect();
                let mean = block.iter().sum::<i32>() / 4;
                total += (p.0[c] as i32 - mean).unsigned_abs() as u64;
            }
        }
        let mean_error = total as f64 / (320.0 * 240.0 * 3.0);
        assert!(
            mean_error < 3.0,
            "mean |half − 2×2 mean of whole| = {mean_error}"
        );
    }

    #[test]
    fn a_corrupt_frame_is_refused_naming_the_camera_and_a_lying_header_before_decoding() {
        let frame = DEMO_FRAMES[0].1;
        // Data cut out of the middle of the scan, the end-of-image marker kept.
        let mut cut = frame[..frame.len() / 2].to_vec();
        cut.extend_from_slice(&[0xFF, 0xD9]);
        let mut pixels = mjpeg(&cut);
        let e = pixels.at_least((160, 120)).unwrap_err().to_string();
        assert!(e.contains("test camera"), "{e}");
        // A header declaring 1280×960 from a 640×480 camera.
        let mut lying = frame.to_vec();
        let sof = lying
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline SOF0");
        lying[sof + 5..sof + 9].copy_from_slice(&[0x03, 0xC0, 0x05, 0x00]);
        let e = FramePixels::new(
            RawPixels::Buffer {
                bytes: lying,
                format: PixelFormat::Mjpeg,
                width: 640,
                height: 480,
            },
            "test camera",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1280x960") && e.contains("test camera"), "{e}");
    }

    #[test]
    fn yuyv_is_converted_only_at_the_pixels_kept() {
        // 8×4 frame, Y rising left to right, neutral chroma.
        let (w, h) = (8u32, 4u32);
        let mut yuyv = Vec::new();
        for _ in 0..h {
            for x in (0..w).step_by(2) {
                yuyv.extend_from_slice(&[16 + 20 * x as u8, 128, 36 + 20 * x as u8, 128]);
            }
        }
        let mut pixels = FramePixels::new(
            RawPixels::Buffer {
                bytes: yuyv.clone(),
                format: PixelFormat::Yuyv,
                width: w,
                height: h,
            },
            "yuyv",
        )
        .unwrap();
        let half = pixels.at_least((4, 2)).unwrap().clone();
        let whole = pixels.whole().unwrap().clone();
        assert_eq!(half.dimensions(), (4, 2));
        for (x, y, p) in half.enumerate_pixels() {
            assert_eq!(*p, *whole.get_pixel(2 * x, 2 * y), "({x}, {y})");
        }
        assert_eq!(pixels.decoded(), vec![2, 1]);
        // Once the whole frame is there, it serves a smaller request without a new decode.
        assert_eq!(pixels.at_least((4, 2)).unwrap().dimensions(), (4, 2));
    }

    #[test]
    fn a_decoded_image_is_whole_at_every_request() {
        let image = RgbImage::new(64, 48);
        let mut whole = Whole(&image);
        assert_eq!(whole.at_least((8, 8)).unwrap().dimensions(), (64, 48));
        let mut pixels = FramePixels::new(RawPixels::Rgb(image.clone()), "rgb").unwrap();
        assert_eq!(pixels.at_least((8, 8)).unwrap().dimensions(), (64, 48));
        assert_eq!(pixels.take_at_least((8, 8)).unwrap().dimensions(), (64, 48));
    }
}
