//! Display: one overlay, drawn with `embedded-graphics` onto any `DrawTarget`, and the outputs
//! that show it. A panel driver is only an adapter; the PNG writer is one such target. The
//! framebuffer and the SPI LCD draw into a packed back buffer (`packed`) and send whole frames.

pub mod framebuffer;
mod overlay;
mod packed;
mod png;
#[cfg(feature = "spi-lcd")]
pub mod spi_lcd;

pub use overlay::{draw_overlay, fitted_size, Status};
pub use packed::{PackedCanvas, PixelLayout};
pub use png::{annotate, write_png_atomically, PngSnapshots, RgbCanvas};

use crate::capture::Frame;
use crate::face::FaceResult;

/// Somewhere the annotated frame goes: a screen, PNG files, or nowhere.
pub trait Display {
    fn show(
        &mut self,
        frame: &Frame,
        faces: &[FaceResult],
        status: &Status,
    ) -> Result<(), crate::Error>;

    /// How large a picture of frame `seq`, a `frame`-sized frame, this display shows (the
    /// frame scaled onto its panel), or `None` when it shows nothing of that frame: the
    /// daemon decodes the frame no larger, and hands [`Display::show`] that picture with the
    /// faces in its pixels. The default is the whole frame, every frame.
    fn reads(&self, frame: (u32, u32), seq: u64) -> Option<(u32, u32)> {
        let _ = seq;
        Some(frame)
    }

    /// A short human description for logs.
    fn describe(&self) -> String;
}

/// A borrowed display is a display (so a caller can keep it and look at it after a run).
impl<D: Display + ?Sized> Display for &mut D {
    fn show(
        &mut self,
        frame: &Frame,
        faces: &[FaceResult],
        status: &Status,
    ) -> Result<(), crate::Error> {
        (**self).show(frame, faces, status)
    }
    fn reads(&self, frame: (u32, u32), seq: u64) -> Option<(u32, u32)> {
        (**self).reads(frame, seq)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// `faces`, found in a `frame`-sized frame, in the pixels of a `picture`-sized picture of it
/// (the smaller picture a display was handed, see [`Display::reads`]).
pub fn faces_in_picture(
    faces: Vec<FaceResult>,
    frame: (u32, u32),
    picture: (u32, u32),
) -> Vec<FaceResult> {
    if frame == picture {
        return faces;
    }
    let (sx, sy) = crate::vision::picture_scale(picture, frame);
    faces
        .into_iter()
        .map(|mut f| {
            f.face = f.face.scaled(1.0 / sx, 1.0 / sy);
            f
        })
        .collect()
}

/// Shows nothing: for kiosks that only count.
pub struct NoDisplay;

impl Display for NoDisplay {
    fn show(&mut self, _: &Frame, _: &[FaceResult], _: &Status) -> Result<(), crate::Error> {
        Ok(())
    }

    /// Nothing: a headless unit decodes only what the detector and the model read.
    fn reads(&self, _: (u32, u32), _: u64) -> Option<(u32, u32)> {
        None
    }

    fn describe(&self) -> String {
        "no display".to_string()
    }
}

/// Test picture for the display targets: a 640×480 blue frame with one face (no estimate) at
/// (200, 160), 160 px wide.
#[cfg(test)]
pub(crate) fn blue_frame_with_one_face() -> (Frame, FaceResult) {
    let frame = Frame {
        image: image::RgbImage::from_pixel(640, 480, image::Rgb([0, 0, 255])),
        seq: 0,
        captured: std::time::Instant::now(),
        origin: "test".into(),
    };
    let face = FaceResult {
        track: None,
        looking: None,
        face: crate::vision::FaceBox {
            x: 200.0,
            y: 160.0,
            width: 160.0,
            height: 160.0,
            score: 0.9,
            landmarks: None,
        },
        estimate: None,
    };
    (frame, face)
}
