//! Frame sources: where camera frames come from, behind one small trait.
//!
//! The daemon only ever sees [`FrameSource`], so every later stage runs on x86 in tests with
//! still images, and the V4L2 camera is one adapter among several.

pub mod convert;
pub mod newest;
pub mod pixels;
pub mod replay;
pub mod stills;
#[cfg(feature = "device")]
pub mod v4l2;

pub use newest::NewestFrame;
pub use pixels::{FramePixels, Picture, Whole};
pub use stills::{demo_frames, StillImages};

use convert::PixelFormat;
use image::RgbImage;
use std::time::Instant;

/// One decoded camera frame.
#[derive(Clone)]
pub struct Frame {
    /// 8-bit RGB pixels, row-major.
    pub image: RgbImage,
    /// Counts frames delivered by this source, from 0.
    pub seq: u64,
    /// When the frame was taken (or read).
    pub captured: Instant,
    /// Where it came from: a file name, or the device node.
    pub origin: String,
}

impl std::fmt::Debug for Frame {
    // Without the pixels: a failing test should print a line, not megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("size", &self.image.dimensions())
            .field("seq", &self.seq)
            .field("origin", &self.origin)
            .finish()
    }
}

/// One frame as the source delivered it, not yet decoded: a camera's MJPEG or YUYV buffer is
/// kept as bytes, so a frame that a newer one replaces (see [`NewestFrame`]) is never decoded.
/// [`RawFrame::decode`] turns it into a [`Frame`] once it is taken.
pub struct RawFrame {
    pub pixels: RawPixels,
    /// Counts frames delivered by this source, from 0.
    pub seq: u64,
    /// When the frame was taken (or read).
    pub captured: Instant,
    /// Where it came from: a file name, or the device node.
    pub origin: String,
}

/// The pixels of a [`RawFrame`].
pub enum RawPixels {
    /// Already RGB (still images, recorded test frames).
    Rgb(RgbImage),
    /// A camera buffer as the driver filled it.
    Buffer {
        bytes: Vec<u8>,
        format: PixelFormat,
        width: u32,
        height: u32,
    },
}

impl RawFrame {
    /// Decodes the pixels into RGB; a buffer that does not decode is a
    /// [`CaptureError::BadFrame`] naming the source.
    pub fn decode(self) -> Result<Frame, CaptureError> {
        let image = match self.pixels {
            RawPixels::Rgb(image) => image,
            RawPixels::Buffer {
                bytes,
                format,
                width,
                height,
            } => convert::buffer_to_rgb(&bytes, format, width, height, &mut Vec::new())
                .map_err(|reason| CaptureError::bad_frame(&self.origin, reason))?,
        };
        Ok(Frame {
            image,
            seq: self.seq,
            captured: self.captured,
            origin: self.origin,
        })
    }
}

impl From<Frame> for RawFrame {
    fn from(frame: Frame) -> RawFrame {
        RawFrame {
            pixels: RawPixels::Rgb(frame.image),
            seq: frame.seq,
            captured: frame.captured,
            origin: frame.origin,
        }
    }
}

/// Why a source produced no frame.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// One frame could not be decoded; the source itself is fine and the next frame may be.
    #[error("skipped a bad frame from {origin}: {reason}")]
    BadFrame { origin: String, reason: String },
    /// The camera went away (unplugged, stalled); the source is trying to reopen it and the
    /// caller should simply ask again.
    #[error("camera {origin} lost: {reason}")]
    Disconnected { origin: String, reason: String },
    /// The source cannot deliver frames at all (missing folder, unplugged camera...).
    #[error("{origin}: {reason}")]
    Unavailable { origin: String, reason: String },
}

impl CaptureError {
    /// A frame from `origin` that did not decode, and why.
    pub fn bad_frame(origin: &str, reason: impl std::fmt::Display) -> CaptureError {
        CaptureError::BadFrame {
            origin: origin.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Whether the daemon should go on and ask for the next frame.
    pub fn is_skippable(&self) -> bool {
        matches!(
            self,
            CaptureError::BadFrame { .. } | CaptureError::Disconnected { .. }
        )
    }
}

/// Anything that delivers frames: a camera, a folder of images, recorded frames in a test.
pub trait FrameSource {
    /// The next frame; `Ok(None)` when the source has ended (a folder without repeat).
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;

    /// The next frame, undecoded where the source can hand out its buffer as it came (a
    /// camera); the default decodes through [`FrameSource::next_frame`]. [`NewestFrame`]
    /// reads its source with this, so a frame replaced before it is taken costs no decoding.
    fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        Ok(self.next_frame()?.map(RawFrame::from))
    }

    /// A short human description for logs, e.g. `folder /srv/frames (12 images)`.
    fn describe(&self) -> String;

    /// Frames this source dropped because a newer one replaced them before they were read
    /// (see [`NewestFrame`]); sources that deliver every frame keep the default.
    fn dropped_frames(&self) -> u64 {
        0
    }
}

/// A borrowed source is a source (so a caller can keep its source and read it after a run).
impl<S: FrameSource + ?Sized> FrameSource for &mut S {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        (**self).next_frame()
    }
    fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        (**self).next_raw()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn dropped_frames(&self) -> u64 {
        (**self).dropped_frames()
    }
}

/// A source read no faster than `fps` frames per second of wall time, as a camera delivers
/// them: an image folder (`camera.source = "folder"`) plays at `camera.fps`, so the tracker's
/// visit gap and the overlay's frame rate mean what they mean with a camera. Work slower than
/// the rate is not waited for (and no frame is dropped).
pub struct Paced<S> {
    inner: S,
    period: std::time::Duration,
    /// When the next frame is due; `None` before the first.
    due: Option<Instant>,
}

impl<S: FrameSource> Paced<S> {
    /// `inner` at most `fps` frames per second (`fps` of 0 is taken as 1).
    pub fn new(inner: S, fps: u32) -> Paced<S> {
        Paced {
            inner,
            period: std::time::Duration::from_secs_f64(1.0 / f64::from(fps.max(1))),
            due: None,
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        let due = self.due.unwrap_or(now);
        if due > now {
            std::thread::sleep(due - now);
        }
        self.due = Some(due.max(now) + self.period);
    }
}

impl<S: FrameSource> FrameSource for Paced<S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        self.wait();
        self.inner.next_frame()
    }

    fn next_raw(&mut self) -> Result<Option<RawFrame>, CaptureError> {
        self.wait();
        self.inner.next_raw()
    }

    fn describe(&self) -> String {
        format!(
            "{} at {:.0} fps",
            self.inner.describe(),
            1.0 / self.period.as_secs_f64()
        )
    }

    fn dropped_frames(&self) -> u64 {
        self.inner.dropped_frames()
    }
}

#[cfg(test)]
mod paced_tests {
    use super::*;

    #[test]
    fn a_paced_source_delivers_no_faster_than_its_rate_and_says_so() {
        let mut source = Paced::new(demo_frames(false), 50);
        assert!(
            source.describe().ends_with(" at 50 fps"),
            "{}",
            source.describe()
        );
        let started = Instant::now();
        let mut frames = 0;
        while source.next_frame().unwrap().is_some() {
            frames += 1;
        }
        assert!(frames >= 3, "{frames}");
        // n frames at 50 fps: the last one is due (n - 1) × 20 ms after the first.
        let least = std::time::Duration::from_millis(20 * (frames - 1));
        assert!(
            started.elapsed() >= least,
            "{:?} < {least:?}",
            started.elapsed()
        );
    }
}
