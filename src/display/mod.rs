//! Display: one overlay, drawn with `embedded-graphics` onto any `DrawTarget`, and the outputs
//! that show it. A panel driver is only an adapter; the PNG writer is one such target. The
//! framebuffer and the SPI LCD draw into a packed back buffer (`packed`) and send whole frames.

pub mod framebuffer;
mod overlay;
mod packed;
mod png;
#[cfg(feature = "spi-lcd")]
pub mod spi_lcd;

pub use overlay::{draw_overlay, Status};
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
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Shows nothing: for kiosks that only count.
pub struct NoDisplay;

impl Display for NoDisplay {
    fn show(&mut self, _: &Frame, _: &[FaceResult], _: &Status) -> Result<(), crate::Error> {
        Ok(())
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
