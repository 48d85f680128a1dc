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
use crate::pipeline::FaceResult;

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
