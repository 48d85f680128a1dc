//! Still images as a frame source: a folder of JPEG/PNG files, or the demo frames built into
//! the binary so `agecam run --demo` works on a machine with no camera and no files installed.

use super::{CaptureError, Frame, FrameSource, RawFrame, RawPixels};
use image::ImageFormat;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why an image file or image bytes did not decode; the messages say what the image is and
/// what to use instead.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("not a JPEG or PNG image (unrecognised file header)")]
    UnknownFormat,
    #[error("{0:?} images are not supported; use JPEG or PNG")]
    Unsupported(ImageFormat),
    #[error("corrupt or truncated {0:?} image: it has no end-of-image marker")]
    NoEndOfImage(ImageFormat),
    #[error("corrupt or truncated {format:?} image: {error}")]
    Corrupt {
        format: ImageFormat,
        error: image::ImageError,
    },
}

/// Sample camera frames compiled into the binary (sources and licences: `tests/data/SOURCES.md`):
/// file name and JPEG bytes, in the order `run --demo` shows them.
pub const DEMO_FRAMES: &[(&str, &[u8])] = &[
    (
        "demo_frame_1.jpg",
        include_bytes!("../../tests/data/frames/demo_frame_1.jpg"),
    ),
    (
        "demo_frame_2.jpg",
        include_bytes!("../../tests/data/frames/demo_frame_2.jpg"),
    ),
    (
        "demo_frame_3.jpg",
        include_bytes!("../../tests/data/frames/demo_frame_3.jpg"),
    ),
];

/// One built-in demo frame by its file name (`demo_frame_1.jpg` …), decoded.
pub fn demo_image(name: &str) -> Option<image::RgbImage> {
    let (_, bytes) = DEMO_FRAMES.iter().find(|(n, _)| *n == name)?;
    decode_bytes(bytes).ok()
}

/// The built-in demo frames as a source.
pub fn demo_frames(repeat: bool) -> StillImages {
    StillImages {
        items: DEMO_FRAMES
            .iter()
            .map(|(name, bytes)| Still::Embedded { name, bytes })
            .collect(),
        next: 0,
        each: 1,
        delivered: 0,
        current: None,
        seq: 0,
        repeat,
        description: format!("built-in demo frames ({} images)", DEMO_FRAMES.len()),
        as_mjpeg: true,
    }
}

#[derive(Debug)]
enum Still {
    File(PathBuf),
    Embedded {
        name: &'static str,
        bytes: &'static [u8],
    },
}

/// Delivers a fixed list of images as frames, optionally over and over.
#[derive(Debug)]
pub struct StillImages {
    items: Vec<Still>,
    next: usize,
    /// Each image is delivered this many times in a row.
    each: u32,
    /// How many times the current image has been delivered.
    delivered: u32,
    current: Option<(String, image::RgbImage)>,
    seq: u64,
    repeat: bool,
    description: String,
    /// Hand the embedded JPEG frames out undecoded through [`FrameSource::next_raw`], as a
    /// camera's MJPEG buffers (the demo), so the daemon decodes each frame as it would a
    /// camera's: only as large as it is used.
    as_mjpeg: bool,
}

/// Image file endings the folder source reads.
const IMAGE_ENDINGS: &[&str] = &["jpg", "jpeg", "png"];

impl StillImages {
    /// All JPEG and PNG files directly inside `dir`, in file-name order.
    pub fn from_folder(dir: &Path, repeat: bool) -> Result<StillImages, CaptureError> {
        let unavailable = |reason: String| CaptureError::Unavailable {
            origin: format!("image folder {}", dir.display()),
            reason,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            unavailable(format!(
                "cannot list it ({e}); set camera.folder to a folder of JPEG/PNG images"
            ))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.extension()
                    .and_then(|ext| ext.to_str())
                    .is_some_and(|ext| IMAGE_ENDINGS.contains(&ext.to_ascii_lowercase().as_str()))
            })
            .collect();
        if files.is_empty() {
            return Err(unavailable(
                "holds no .jpg, .jpeg or .png files; put frames there or point camera.folder elsewhere"
                    .to_string(),
            ));
        }
        files.sort();
        Ok(StillImages::from_files(
            files,
            repeat,
            format!("image folder {}", dir.display()),
        ))
    }

    /// The given image files, in the given order.
    pub fn from_files(files: Vec<PathBuf>, repeat: bool, description: String) -> StillImages {
        let description = format!("{description} ({} images)", files.len());
        StillImages {
            items: files.into_iter().map(Still::File).collect(),
            next: 0,
            each: 1,
            delivered: 0,
            current: None,
            seq: 0,
            repeat,
            description,
            as_mjpeg: false,
        }
    }

    /// Delivers each image `times` times in a row (decoded once), like a camera watching a
    /// person stand still.
    pub fn repeat_each(mut self, times: u32) -> StillImages {
        self.each = times.max(1);
        self
    }

    /// How many images one pass delivers.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl StillImages {
    /// Moves on to the next still when the current one has been delivered `each` times:
    /// `false` at the end of a pass without repeat.
    fn advance(&mut self) -> bool {
        if self.delivered == 0 || self.delivered >= self.each {
            self.current = None;
            self.delivered = 0;
            if self.next == self.items.len() {
                if !self.repeat || self.items.is_empty() {
                    return false;
                }
                self.next = 0;
            }
            self.next += 1;
        }
        true
    }
}

impl FrameSource for StillImages {
    fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        if !self.as_mjpeg {
            return Ok(self.next_frame()?.map(RawFrame::from));
        }
        if !self.advance() {
            return Ok(None);
        }
        let (origin, bytes) = match &self.items[self.next - 1] {
            Still::Embedded { name, bytes } => (name.to_string(), *bytes),
            Still::File(_) => unreachable!("only the embedded demo frames come as MJPEG"),
        };
        let size =
            super::convert::jpeg_size(bytes).map_err(|e| CaptureError::bad_frame(&origin, e))?;
        self.delivered += 1;
        let frame = RawFrame {
            pixels: RawPixels::Buffer {
                bytes: bytes.to_vec(),
                format: super::convert::PixelFormat::Mjpeg,
                width: size.0,
                height: size.1,
            },
            seq: self.seq,
            captured: Instant::now(),
            origin,
        };
        self.seq += 1;
        Ok(Some(frame))
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if !self.advance() {
            return Ok(None);
        }
        if self.current.is_none() {
            let item = &self.items[self.next - 1];
            let (origin, decoded) = match item {
                Still::File(path) => (path.display().to_string(), decode_file(path)),
                Still::Embedded { name, bytes } => (name.to_string(), decode_bytes(bytes)),
            };
            let image = decoded.map_err(|reason| CaptureError::bad_frame(&origin, reason))?;
            self.current = Some((origin, image));
        }
        let Some((origin, image)) = &self.current else {
            unreachable!("set above")
        };
        self.delivered += 1;
        let frame = Frame {
            image: image.clone(),
            seq: self.seq,
            captured: Instant::now(),
            origin: origin.clone(),
        };
        self.seq += 1;
        Ok(Some(frame))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// Decodes an image file of any supported format into RGB.
pub fn decode_file(path: &Path) -> Result<image::RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(DecodeError::Read)?;
    decode_bytes(&bytes)
}

/// Decodes JPEG or PNG bytes into RGB, telling a truncated or corrupt file from an unknown one.
pub fn decode_bytes(bytes: &[u8]) -> Result<image::RgbImage, DecodeError> {
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png) {
        return Err(DecodeError::Unsupported(format));
    }
    // A JPEG cut short (an interrupted copy, a full disk) still decodes, grey where the data
    // stops; refuse it rather than show the model half a face.
    if format == ImageFormat::Jpeg && !super::convert::ends_with_end_of_image(bytes) {
        return Err(DecodeError::NoEndOfImage(format));
    }
    image::load_from_memory_with_format(bytes, format)
        .map(|img| img.to_rgb8())
        .map_err(|error| DecodeError::Corrupt { format, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_frames_decode_to_camera_sized_frames() {
        let mut source = demo_frames(false);
        let mut count = 0;
        while let Some(frame) = source.next_frame().unwrap() {
            assert_eq!(frame.image.dimensions(), (640, 480), "{}", frame.origin);
            assert_eq!(frame.seq, count);
            count += 1;
        }
        assert_eq!(count, DEMO_FRAMES.len() as u64);
    }

    #[test]
    fn repeat_starts_over_and_keeps_counting() {
        let mut source = demo_frames(true);
        let n = source.len();
        let first = source.next_frame().unwrap().unwrap();
        for _ in 1..n {
            source.next_frame().unwrap().unwrap();
        }
        let again = source.next_frame().unwrap().unwrap();
        assert_eq!(again.origin, first.origin);
        assert_eq!(again.seq, n as u64);
    }

    #[test]
    fn repeat_each_delivers_every_image_several_times() {
        let mut source = demo_frames(false).repeat_each(3);
        let origins: Vec<String> = std::iter::from_fn(|| source.next_frame().unwrap())
            .map(|f| f.origin)
            .collect();
        assert_eq!(origins.len(), 3 * DEMO_FRAMES.len());
        assert_eq!(origins[0], origins[2]);
        assert_ne!(origins[2], origins[3]);
    }

    #[test]
    fn folder_skips_corrupt_file_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let good = image::RgbImage::from_pixel(32, 24, image::Rgb([10, 200, 30]));
        good.save(dir.path().join("a.png")).unwrap();
        // A JPEG cut off after its header: the kind of file a full disk leaves behind.
        let jpeg = &DEMO_FRAMES[0].1[..600];
        std::fs::write(dir.path().join("b.jpg"), jpeg).unwrap();
        good.save(dir.path().join("c.png")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();

        let mut source = StillImages::from_folder(dir.path(), false).unwrap();
        assert_eq!(source.len(), 3, "{}", source.describe());
        let a = source.next_frame().unwrap().unwrap();
        assert_eq!(a.image.get_pixel(5, 5), &image::Rgb([10, 200, 30]));
        let Err(err) = source.next_frame() else {
            panic!("the truncated JPEG was accepted")
        };
        assert!(err.is_skippable());
        let msg = err.to_string();
        assert!(
            msg.contains("b.jpg") && msg.contains("corrupt or truncated"),
            "{msg}"
        );
        let c = source.next_frame().unwrap().unwrap();
        assert!(c.origin.ends_with("c.png"));
        assert_eq!(c.seq, 1, "bad frames are not counted as delivered");
        assert!(source.next_frame().unwrap().is_none());
    }

    #[test]
    fn missing_or_empty_folder_is_unavailable_with_advice() {
        let err = StillImages::from_folder(Path::new("/nonexistent/frames"), false).unwrap_err();
        assert!(!err.is_skippable());
        assert!(err.to_string().contains("/nonexistent/frames"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = StillImages::from_folder(dir.path(), true).unwrap_err();
        assert!(err.to_string().contains("no .jpg"), "{err}");
    }

    #[test]
    fn non_image_bytes_are_named_as_such() {
        let err = decode_bytes(b"hello world, not an image")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JPEG or PNG"), "{err}");
    }
}
