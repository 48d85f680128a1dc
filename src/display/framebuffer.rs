//! The Linux framebuffer (`/dev/fbN`) as a display: the overlay is drawn into a back
//! buffer in the panel's own pixel layout and written to the device in one go per frame, so
//! the screen never shows half a frame.
//!
//! Geometry and pixel layout (RGB565, XRGB8888, BGR variants…) come from the framebuffer's
//! ioctls, so any 16/24/32-bit panel works without configuration.

pub use super::packed::{Channel, PixelLayout};

use super::packed::PackedCanvas;
use super::{draw_overlay, Display, Status};
use crate::capture::Frame;
use crate::face::FaceResult;
use crate::Error;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A framebuffer device with a back buffer.
pub struct Framebuffer {
    file: File,
    path: PathBuf,
    width: u32,
    height: u32,
    canvas: PackedCanvas,
}

impl Framebuffer {
    /// Opens `/dev/fbN` and reads its geometry.
    pub fn open(path: &Path) -> Result<Framebuffer, Error> {
        let fail = |problem: String| Error::Output {
            path: path.to_path_buf(),
            problem,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                fail(match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied; run agecam as a user in the `video` group".to_string()
                    }
                    std::io::ErrorKind::NotFound => {
                        "no such framebuffer; check display.framebuffer (see `ls /dev/fb*`)"
                            .to_string()
                    }
                    _ => format!("cannot open it ({e})"),
                })
            })?;
        let (var, fix) = ioctl::screen_info(&file).map_err(|e| {
            fail(format!(
                "not a framebuffer device ({e}); check display.framebuffer"
            ))
        })?;
        let layout = PixelLayout {
            bytes: (var.bits_per_pixel as usize).div_ceil(8),
            red: Channel {
                offset: var.red.offset,
                length: var.red.length,
            },
            green: Channel {
                offset: var.green.offset,
                length: var.green.length,
            },
            blue: Channel {
                offset: var.blue.offset,
                length: var.blue.length,
            },
        };
        let fb = Framebuffer::with_geometry(
            file,
            path,
            var.xres,
            var.yres,
            fix.line_length as usize,
            layout,
        )?;
        log::info!(
            "framebuffer {}: {}x{}, {} bits per pixel",
            path.display(),
            var.xres,
            var.yres,
            var.bits_per_pixel
        );
        Ok(fb)
    }

    /// A framebuffer with known geometry over any file (tests use a plain file).
    pub fn with_geometry(
        file: File,
        path: &Path,
        width: u32,
        height: u32,
        stride: usize,
        layout: PixelLayout,
    ) -> Result<Framebuffer, Error> {
        let canvas = PackedCanvas::new(width, height, stride, layout).ok_or_else(|| Error::Output {
            path: path.to_path_buf(),
            problem: format!("unsupported framebuffer geometry or pixel format ({width}x{height}, stride {stride}, {layout:?})"),
        })?;
        Ok(Framebuffer {
            file,
            path: path.to_path_buf(),
            width,
            height,
            canvas,
        })
    }

    /// Writes the back buffer to the device.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.file
            .write_all_at(self.canvas.bytes(), 0)
            .map_err(|e| Error::Output {
                path: self.path.clone(),
                problem: format!("cannot write the frame ({e})"),
            })
    }
}

impl Display for Framebuffer {
    fn show(&mut self, frame: &Frame, faces: &[FaceResult], status: &Status) -> Result<(), Error> {
        match draw_overlay(&mut self.canvas, &frame.image, faces, status) {
            Ok(()) => self.flush(),
            Err(never) => match never {},
        }
    }

    /// The frame scaled onto the screen.
    fn reads(&self, frame: (u32, u32), _: u64) -> Option<(u32, u32)> {
        Some(super::fitted_size(frame, (self.width, self.height)))
    }

    fn describe(&self) -> String {
        format!(
            "framebuffer {} ({}x{})",
            self.path.display(),
            self.width,
            self.height
        )
    }
}

/// The two framebuffer ioctls, with the kernel's structures (linux/fb.h).
mod ioctl {
    use std::os::fd::AsRawFd;

    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    pub struct Bitfield {
        pub offset: u32,
        pub length: u32,
        pub msb_right: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    pub struct VarScreenInfo {
        pub xres: u32,
        pub yres: u32,
        pub xres_virtual: u32,
        pub yres_virtual: u32,
        pub xoffset: u32,
        pub yoffset: u32,
        pub bits_per_pixel: u32,
        pub grayscale: u32,
        pub red: Bitfield,
        pub green: Bitfield,
        pub blue: Bitfield,
        pub transp: Bitfield,
        pub rest: [u32; 20],
    }

    #[repr(C)]
    pub struct FixScreenInfo {
        pub id: [u8; 16],
        pub smem_start: libc::c_ulong,
        pub smem_len: u32,
        pub fb_type: u32,
        pub type_aux: u32,
        pub visual: u32,
        pub xpanstep: u16,
        pub ypanstep: u16,
        pub ywrapstep: u16,
        pub line_length: u32,
        pub mmio_start: libc::c_ulong,
        pub mmio_len: u32,
        pub accel: u32,
        pub capabilities: u16,
        pub reserved: [u16; 2],
    }

    const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
    const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;

    pub fn screen_info(file: &std::fs::File) -> std::io::Result<(VarScreenInfo, FixScreenInfo)> {
        let mut var = VarScreenInfo::default();
        // SAFETY: both structures match linux/fb.h and live for the duration of the calls.
        let mut fix: FixScreenInfo = unsafe { std::mem::zeroed() };
        let fd = file.as_raw_fd();
        if unsafe { libc::ioctl(fd, FBIOGET_VSCREENINFO as _, &mut var as *mut VarScreenInfo) } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if unsafe { libc::ioctl(fd, FBIOGET_FSCREENINFO as _, &mut fix as *mut FixScreenInfo) } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok((var, fix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_file_is_not_a_framebuffer_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb0");
        std::fs::write(&path, b"").unwrap();
        let err = Framebuffer::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("not a framebuffer") && err.contains("fb0"),
            "{err}"
        );
        let err = Framebuffer::open(Path::new("/dev/fb-agecam-none"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("display.framebuffer"), "{err}");
    }

    /// The overlay reaches the device in its pixel layout, row stride included.
    #[test]
    fn overlay_is_written_to_the_device_in_rgb565_with_stride() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb-file");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let (w, h, stride) = (240u32, 240u32, 256 * 2);
        let mut fb =
            Framebuffer::with_geometry(file, &path, w, h, stride, PixelLayout::RGB565).unwrap();
        let (frame, face) = crate::display::blue_frame_with_one_face();
        fb.show(&frame, &[face], &Status::default()).unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), stride * h as usize);
        let pixel = |x: usize, y: usize| {
            u16::from_le_bytes([written[y * stride + x * 2], written[y * stride + x * 2 + 1]])
        };
        // 640x480 on 240x240: scale 0.375, picture rows 30..210; blue inside, black bars outside.
        assert_eq!(pixel(120, 20), 0, "letterbox bar");
        assert_eq!(pixel(10, 200), 0x001F, "blue picture");
        // The face box's left edge: x = 200 × 0.375 = 75, rows 30 + 60 … 30 + 120.
        let yellow = PixelLayout::RGB565.pack(super::super::overlay::FACE_COLOUR) as u16;
        assert_eq!(pixel(75, 120), yellow);
    }
}
