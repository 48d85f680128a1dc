//! Fitting a frame into a detector's fixed input: scaled with its aspect kept (each input pixel
//! the area average of the frame pixels it covers), placed centred (BlazeFace) or at the top
//! left (YuNet), the rest padded, and written as NCHW planes in the network's pixel format.
//! Detections are mapped back to frame pixels through the same [`Letterbox`].

use image::RgbImage;

/// Where the frame sits inside the input: scale (input px per frame px) and offsets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// The input's size, in input pixels.
    pub input_width: usize,
    pub input_height: usize,
    pub scale: f32,
    pub left: f32,
    pub top: f32,
    /// Size of the frame's image inside the input, in input pixels.
    pub width: usize,
    pub height: usize,
}

impl Letterbox {
    /// A frame letterboxed into a `size`×`size` input, centred (bars on both sides).
    pub fn centred(frame_width: u32, frame_height: u32, size: usize) -> Letterbox {
        let mut lb = Letterbox::top_left(frame_width, frame_height, size, size);
        lb.left = ((size - lb.width) / 2) as f32;
        lb.top = ((size - lb.height) / 2) as f32;
        lb
    }

    /// A frame scaled to fit a `input_width`×`input_height` input, placed at its top left (the
    /// padding at the right and bottom).
    pub fn top_left(
        frame_width: u32,
        frame_height: u32,
        input_width: usize,
        input_height: usize,
    ) -> Letterbox {
        let scale = (input_width as f32 / frame_width.max(1) as f32)
            .min(input_height as f32 / frame_height.max(1) as f32);
        let width = ((frame_width as f32 * scale).round() as usize).clamp(1, input_width);
        let height = ((frame_height as f32 * scale).round() as usize).clamp(1, input_height);
        Letterbox {
            input_width,
            input_height,
            scale,
            left: 0.0,
            top: 0.0,
            width,
            height,
        }
    }

    /// A point in input pixels, in frame pixels.
    pub fn to_frame(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        [(x - self.left) / self.scale, (y - self.top) / self.scale]
    }
}

/// How a network wants its pixels: value = byte · `scale` + `offset`, in RGB or BGR plane
/// order; padding takes the value `pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelFormat {
    pub bgr: bool,
    pub scale: f32,
    pub offset: f32,
    pub pad: f32,
}

impl PixelFormat {
    /// RGB in [−1, 1], black bars (BlazeFace).
    pub const RGB_SIGNED: PixelFormat = PixelFormat {
        bgr: false,
        scale: 1.0 / 127.5,
        offset: -1.0,
        pad: -1.0,
    };
    /// BGR bytes as they are, 0–255, padded with 0 (YuNet, trained on OpenCV's images).
    pub const BGR_BYTES: PixelFormat = PixelFormat {
        bgr: true,
        scale: 1.0,
        offset: 0.0,
        pad: 0.0,
    };
}

/// Writes `frame` letterboxed into `out` (NCHW, 3 × input_height × input_width), each input
/// pixel the area average of the frame pixels it covers. `rows` is scratch space kept by the
/// caller between frames.
pub fn letterbox_into(
    frame: &RgbImage,
    lb: &Letterbox,
    format: PixelFormat,
    out: &mut [f32],
    rows: &mut Vec<f32>,
) {
    out.fill(format.pad);
    let (fw, fh) = frame.dimensions();
    let (fw, fh) = (fw as usize, fh as usize);
    let raw = frame.as_raw();
    // Horizontal pass: every frame row averaged down to `lb.width` columns.
    rows.clear();
    rows.resize(fh * lb.width * 3, 0.0);
    let spans_x = spans(fw, lb.width);
    for y in 0..fh {
        let src = &raw[y * fw * 3..(y + 1) * fw * 3];
        let dst = &mut rows[y * lb.width * 3..(y + 1) * lb.width * 3];
        for (ox, span) in spans_x.iter().enumerate() {
            let mut acc = [0f32; 3];
            for &(x, w) in span {
                for c in 0..3 {
                    acc[c] += w * src[x * 3 + c] as f32;
                }
            }
            dst[ox * 3..ox * 3 + 3].copy_from_slice(&acc);
        }
    }
    // Vertical pass into the NCHW planes, in the network's pixel format.
    let n = lb.input_width;
    let plane = n * lb.input_height;
    let (left, top) = (lb.left as usize, lb.top as usize);
    for (oy, span) in spans(fh, lb.height).iter().enumerate() {
        for ox in 0..lb.width {
            let mut acc = [0f32; 3];
            for &(y, w) in span {
                let p = &rows[(y * lb.width + ox) * 3..];
                for c in 0..3 {
                    acc[c] += w * p[c];
                }
            }
            let at = (top + oy) * n + left + ox;
            for (c, v) in acc.iter().enumerate() {
                let plane_index = if format.bgr { 2 - c } else { c };
                out[plane_index * plane + at] = v * format.scale + format.offset;
            }
        }
    }
}

/// For each of `to` output cells over `from` source cells: the source cells it covers and
/// their weights (summing to 1). Upscaling degenerates to nearest neighbour.
fn spans(from: usize, to: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = from as f32 / to as f32;
    (0..to)
        .map(|o| {
            let (start, end) = (o as f32 * ratio, ((o + 1) as f32 * ratio).min(from as f32));
            if end - start <= 1.0 {
                let i = ((start + end) / 2.0).floor().min(from as f32 - 1.0) as usize;
                return vec![(i, 1.0)];
            }
            let mut cells = Vec::new();
            let mut i = start.floor() as usize;
            while (i as f32) < end && i < from {
                let covered = (end.min(i as f32 + 1.0) - start.max(i as f32)).max(0.0);
                if covered > 0.0 {
                    cells.push((i, covered / (end - start)));
                }
                i += 1;
            }
            cells
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_maps_back_to_the_frame() {
        let lb = Letterbox::centred(640, 480, 128);
        assert_eq!((lb.width, lb.height, lb.left, lb.top), (128, 96, 0.0, 16.0));
        let wide = Letterbox::centred(1280, 720, 192);
        assert_eq!(
            (wide.width, wide.height, wide.left, wide.top),
            (192, 108, 0.0, 42.0)
        );
        // The image area's corners in input coordinates are the frame's corners.
        let [x0, y0] = lb.to_frame([0.0, 16.0]);
        let [x1, y1] = lb.to_frame([128.0, 112.0]);
        assert!(x0.abs() < 1e-3 && y0.abs() < 1e-3);
        assert!((x1 - 640.0).abs() < 1e-3 && (y1 - 480.0).abs() < 1e-3);
        let tall = Letterbox::centred(300, 600, 128);
        assert_eq!(
            (tall.width, tall.height, tall.left, tall.top),
            (64, 128, 32.0, 0.0)
        );
        // YuNet's placement: 640×480 fills 384×288 exactly; 1280×720 leaves 8 rows below.
        let yunet = Letterbox::top_left(640, 480, 384, 288);
        assert_eq!((yunet.width, yunet.height, yunet.scale), (384, 288, 0.6));
        let hd = Letterbox::top_left(1280, 720, 384, 224);
        assert_eq!((hd.width, hd.height, hd.left, hd.top), (384, 216, 0.0, 0.0));
        assert_eq!(hd.to_frame([384.0, 216.0]), [1280.0, 720.0]);
    }

    #[test]
    fn letterboxed_input_averages_pads_and_orders_channels() {
        // 256×128, left half black, right half pure red → 128×64 centred vertically.
        let frame = RgbImage::from_fn(256, 128, |x, _| {
            if x < 128 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 0, 0])
            }
        });
        let lb = Letterbox::centred(256, 128, 128);
        let mut out = vec![0f32; 3 * 128 * 128];
        letterbox_into(
            &frame,
            &lb,
            PixelFormat::RGB_SIGNED,
            &mut out,
            &mut Vec::new(),
        );
        let at = |out: &[f32], c: usize, y: usize, x: usize| out[c * 128 * 128 + y * 128 + x];
        assert_eq!(at(&out, 0, 0, 100), -1.0, "bar above");
        assert_eq!(at(&out, 1, 32, 10), -1.0, "black");
        assert!((at(&out, 0, 32, 100) - 1.0).abs() < 1e-6, "red in plane 0");
        assert_eq!(at(&out, 2, 32, 100), -1.0, "no blue");
        assert_eq!(at(&out, 0, 127, 100), -1.0, "bar below");
        // BGR bytes: red lands in the last plane, unscaled; padding 0.
        let lb = Letterbox::top_left(256, 128, 128, 128);
        letterbox_into(
            &frame,
            &lb,
            PixelFormat::BGR_BYTES,
            &mut out,
            &mut Vec::new(),
        );
        assert!((at(&out, 2, 10, 100) - 255.0).abs() < 1e-3);
        assert_eq!(at(&out, 0, 10, 100), 0.0);
        assert_eq!(at(&out, 2, 100, 100), 0.0, "padding below the image");
        // An odd ratio still sums its weights to one.
        for span in spans(640, 128).iter().chain(&spans(7, 3)) {
            let total: f32 = span.iter().map(|(_, w)| w).sum();
            assert!((total - 1.0).abs() < 1e-5);
        }
    }
}
