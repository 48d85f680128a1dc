//! PNG snapshots: the overlay drawn into an in-memory RGB image and written as PNG files, for
//! headless kiosks, the demo, and `predict --annotate`.

use super::{draw_overlay, Display, Status};
use crate::capture::Frame;
use crate::face::FaceResult;
use crate::Error;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use image::RgbImage;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

/// An RGB image that `embedded-graphics` can draw on.
pub struct RgbCanvas {
    pub image: RgbImage,
}

impl RgbCanvas {
    pub fn new(width: u32, height: u32) -> RgbCanvas {
        RgbCanvas {
            image: RgbImage::new(width, height),
        }
    }
}

impl OriginDimensions for RgbCanvas {
    fn size(&self) -> Size {
        Size::new(self.image.width(), self.image.height())
    }
}

impl DrawTarget for RgbCanvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        let (w, h) = self.image.dimensions();
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < w && (p.y as u32) < h {
                self.image
                    .put_pixel(p.x as u32, p.y as u32, image::Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

/// Draws the overlay at the frame's own size and returns the picture.
pub fn annotate(frame: &RgbImage, faces: &[FaceResult], status: &Status) -> RgbImage {
    let mut canvas = RgbCanvas::new(frame.width(), frame.height());
    match draw_overlay(&mut canvas, frame, faces, status) {
        Ok(()) => canvas.image,
        Err(never) => match never {},
    }
}

/// Writes `image` as PNG to `path` through a temporary file and a rename, so a reader (or a
/// power cut) never sees half a file.
pub fn write_png_atomically(image: &RgbImage, path: &Path) -> Result<(), Error> {
    let output_error = |problem: String| Error::Output {
        path: path.to_path_buf(),
        problem,
    };
    let tmp = path.with_extension("png.partial");
    image
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            output_error(format!(
                "cannot write the PNG ({e}); check free space and permissions"
            ))
        })?;
    std::fs::rename(&tmp, path)
        .map_err(|e| output_error(format!("cannot rename {} into place ({e})", tmp.display())))
}

/// Annotated frames as PNG files in a folder, one every `every` frames.
pub struct PngSnapshots {
    dir: PathBuf,
    every: u64,
    written: u64,
}

impl PngSnapshots {
    /// Creates `dir` if needed.
    pub fn create(dir: &Path, every: u32) -> Result<PngSnapshots, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Output {
            path: dir.to_path_buf(),
            problem: format!("cannot create the snapshot folder ({e}); check display.png_dir and its permissions"),
        })?;
        Ok(PngSnapshots {
            dir: dir.to_path_buf(),
            every: every.max(1) as u64,
            written: 0,
        })
    }

    /// How many PNG files this output has written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The file a frame is written to.
    pub fn path_for(&self, frame: &Frame) -> PathBuf {
        self.dir.join(format!("frame_{:06}.png", frame.seq))
    }
}

impl Display for PngSnapshots {
    fn show(&mut self, frame: &Frame, faces: &[FaceResult], status: &Status) -> Result<(), Error> {
        if !frame.seq.is_multiple_of(self.every) {
            return Ok(());
        }
        let picture = annotate(&frame.image, faces, status);
        write_png_atomically(&picture, &self.path_for(frame))?;
        self.written += 1;
        Ok(())
    }

    /// The whole frame, on the frames written.
    fn reads(&self, frame: (u32, u32), seq: u64) -> Option<(u32, u32)> {
        seq.is_multiple_of(self.every).then_some(frame)
    }

    fn describe(&self) -> String {
        format!(
            "PNG snapshots in {} (every {} frames)",
            self.dir.display(),
            self.every
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn frame(seq: u64) -> Frame {
        Frame {
            image: RgbImage::from_pixel(64, 48, image::Rgb([9, 9, 9])),
            seq,
            captured: Instant::now(),
            origin: "test".into(),
        }
    }

    #[test]
    fn writes_every_nth_frame_as_a_readable_png() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = PngSnapshots::create(&dir.path().join("snaps"), 2).unwrap();
        for seq in 0..5 {
            out.show(&frame(seq), &[], &Status::default()).unwrap();
        }
        assert_eq!(out.written(), 3);
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("snaps"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["frame_000000.png", "frame_000002.png", "frame_000004.png"]
        );
        let back = image::open(dir.path().join("snaps/frame_000002.png"))
            .unwrap()
            .to_rgb8();
        assert_eq!(back.dimensions(), (64, 48));
        assert_eq!(back.get_pixel(40, 40).0, [9, 9, 9]);
    }

    #[test]
    fn unwritable_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = PngSnapshots::create(&file.join("sub"), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("plain-file") && err.contains("display.png_dir"),
            "{err}"
        );
    }
}
