//! A back buffer in a display's own pixel format: the overlay is drawn into memory and the
//! device gets the finished frame in one write. Shared by the Linux framebuffer (any 16/24/32
//! bit layout, with its row stride) and the SPI LCD (RGB565).

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use std::convert::Infallible;

/// Where one colour channel sits in a pixel: bit offset and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub offset: u32,
    pub length: u32,
}

/// How a pixel is stored: little-endian, `bytes` bytes, with channels at given bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    pub bytes: usize,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl PixelLayout {
    pub const RGB565: PixelLayout = PixelLayout {
        bytes: 2,
        red: Channel {
            offset: 11,
            length: 5,
        },
        green: Channel {
            offset: 5,
            length: 6,
        },
        blue: Channel {
            offset: 0,
            length: 5,
        },
    };
    pub const XRGB8888: PixelLayout = PixelLayout {
        bytes: 4,
        red: Channel {
            offset: 16,
            length: 8,
        },
        green: Channel {
            offset: 8,
            length: 8,
        },
        blue: Channel {
            offset: 0,
            length: 8,
        },
    };

    pub fn pack(&self, c: Rgb888) -> u32 {
        let place =
            |value: u8, ch: Channel| ((value as u32) >> (8 - ch.length.min(8))) << ch.offset;
        place(c.r(), self.red) | place(c.g(), self.green) | place(c.b(), self.blue)
    }

    fn supported(&self) -> bool {
        (2..=4).contains(&self.bytes)
            && [self.red, self.green, self.blue].iter().all(|ch| {
                (1..=8).contains(&ch.length) && ch.offset + ch.length <= self.bytes as u32 * 8
            })
    }
}

/// Packed pixels in memory, row after row `stride` bytes apart.
pub struct PackedCanvas {
    width: u32,
    height: u32,
    /// Bytes per row (may exceed width × bytes per pixel).
    stride: usize,
    layout: PixelLayout,
    bytes: Vec<u8>,
}

impl PackedCanvas {
    /// A black canvas; `None` for an unsupported layout, an empty size or a too short stride.
    pub fn new(
        width: u32,
        height: u32,
        stride: usize,
        layout: PixelLayout,
    ) -> Option<PackedCanvas> {
        if !layout.supported()
            || width == 0
            || height == 0
            || stride < width as usize * layout.bytes
        {
            return None;
        }
        Some(PackedCanvas {
            width,
            height,
            stride,
            layout,
            bytes: vec![0; stride * height as usize],
        })
    }

    /// The whole buffer, as the device takes it.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl OriginDimensions for PackedCanvas {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for PackedCanvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        let bytes = self.layout.bytes;
        for Pixel(p, colour) in pixels {
            if p.x < 0 || p.y < 0 || p.x as u32 >= self.width || p.y as u32 >= self.height {
                continue;
            }
            let at = p.y as usize * self.stride + p.x as usize * bytes;
            let packed = self.layout.pack(colour).to_le_bytes();
            self.bytes[at..at + bytes].copy_from_slice(&packed[..bytes]);
        }
        Ok(())
    }

    /// A rectangle of colours row by row (the camera picture, every frame): packed straight
    /// into each row, without a point per pixel. What falls outside the canvas is dropped, as
    /// with [`DrawTarget::draw_iter`].
    fn fill_contiguous<I>(&mut self, area: &Rectangle, colours: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Rgb888>,
    {
        let bytes = self.layout.bytes;
        let (width, height) = (self.width as i64, self.height as i64);
        let (left, top) = (i64::from(area.top_left.x), i64::from(area.top_left.y));
        let (w, h) = (i64::from(area.size.width), i64::from(area.size.height));
        let mut colours = colours.into_iter();
        for y in top..top + h {
            let row_inside = (0..height).contains(&y);
            for x in left..left + w {
                let Some(colour) = colours.next() else {
                    return Ok(());
                };
                if row_inside && (0..width).contains(&x) {
                    let at = y as usize * self.stride + x as usize * bytes;
                    let packed = self.layout.pack(colour).to_le_bytes();
                    self.bytes[at..at + bytes].copy_from_slice(&packed[..bytes]);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_rgb565_and_xrgb8888() {
        let pink = Rgb888::new(255, 90, 170);
        assert_eq!(
            PixelLayout::RGB565.pack(pink),
            (31 << 11) | ((90 >> 2) << 5) | (170 >> 3)
        );
        assert_eq!(PixelLayout::XRGB8888.pack(pink), 0x00FF_5AAA);
    }

    #[test]
    fn pixels_land_at_row_stride_and_outside_points_are_dropped() {
        let mut canvas = PackedCanvas::new(3, 2, 8, PixelLayout::RGB565).unwrap();
        canvas
            .draw_iter([
                Pixel(Point::new(2, 1), Rgb888::WHITE),
                Pixel(Point::new(3, 0), Rgb888::WHITE),
                Pixel(Point::new(-1, 0), Rgb888::WHITE),
            ])
            .unwrap();
        let mut expected = [0u8; 16];
        expected[8 + 4..8 + 6].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(canvas.bytes(), &expected[..]);
        assert!(PackedCanvas::new(3, 2, 5, PixelLayout::RGB565).is_none());
        assert!(PackedCanvas::new(0, 2, 8, PixelLayout::RGB565).is_none());
    }

    #[test]
    fn a_filled_rectangle_lands_as_its_pixels_would_clipped_at_every_edge() {
        let colour = |i: usize| Rgb888::new((i * 37) as u8, (i * 11) as u8, (i * 5) as u8);
        for (x, y, w, h) in [(0, 0, 5, 4), (-2, -1, 4, 3), (3, 2, 4, 4), (-1, 1, 8, 1)] {
            for layout in [PixelLayout::RGB565, PixelLayout::XRGB8888] {
                let stride = 5 * layout.bytes + 3;
                let area = Rectangle::new(Point::new(x, y), Size::new(w, h));
                let mut filled = PackedCanvas::new(5, 4, stride, layout).unwrap();
                filled.fill_contiguous(&area, (0..).map(colour)).unwrap();
                let mut drawn = PackedCanvas::new(5, 4, stride, layout).unwrap();
                drawn
                    .draw_iter(area.points().enumerate().map(|(i, p)| Pixel(p, colour(i))))
                    .unwrap();
                assert_eq!(filled.bytes(), drawn.bytes(), "{area:?}");
            }
        }
    }
}
