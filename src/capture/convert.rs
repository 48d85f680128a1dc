//! Pixel-format conversion for camera buffers: YUYV (4:2:2), MJPEG, RGB3 and GREY to RGB.
//!
//! Kept apart from the V4L2 adapter so tests can push recorded or synthetic buffers through the
//! exact code the camera path uses, on any machine.

use image::RgbImage;

/// Why a camera buffer did not convert to RGB. The messages name the format and what is wrong
/// with the buffer, as the daemon logs them for a skipped frame.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "MJPEG frame declares {}x{}, larger than the {}x{} the camera was set to (corrupt header)",
        declared.0, declared.1, mode.0, mode.1
    )]
    LargerThanMode {
        declared: (u32, u32),
        mode: (u32, u32),
    },
    #[error("frame size mismatch")]
    SizeMismatch,
    /// An RGB3 or GREY buffer shorter than the frame.
    #[error("truncated {format} frame: {len} bytes, needs {needed}")]
    Truncated {
        format: &'static str,
        len: usize,
        needed: usize,
    },
    #[error("YUYV needs an even, non-zero width; got {width}x{height}")]
    YuyvOddWidth { width: u32, height: u32 },
    #[error("truncated YUYV frame: {len} bytes, {width}x{height} needs {needed}")]
    TruncatedYuyv {
        len: usize,
        width: u32,
        height: u32,
        needed: usize,
    },
    #[error("truncated MJPEG frame ({len} bytes, no end-of-image marker)")]
    NoEndOfImage { len: usize },
    #[error("corrupt or truncated MJPEG frame: {0}")]
    Decode(String),
    #[error("not a JPEG frame (no start-of-image marker)")]
    NotJpeg,
    #[error("truncated or corrupt JPEG frame (no start-of-scan marker)")]
    NoStartOfScan,
    #[error("corrupt JPEG frame (segment 0x{marker:02X} has length {length})")]
    BadSegmentLength { marker: u8, length: usize },
    #[error("truncated JPEG frame (start-of-frame segment cut short)")]
    ShortStartOfFrame,
    #[error("corrupt JPEG frame (no start-of-frame segment before the scan)")]
    NoStartOfFrame,
}

/// The camera pixel formats we can turn into RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
    Rgb3,
    Grey,
}

/// Converts one captured buffer to RGB.
pub fn buffer_to_rgb(
    buf: &[u8],
    format: PixelFormat,
    width: u32,
    height: u32,
    scratch: &mut Vec<u8>,
) -> Result<RgbImage, ConvertError> {
    buffer_to_rgb_scaled(buf, format, width, height, 1, scratch)
}

/// The size of the frame in a buffer: an MJPEG frame's own header, which may not declare more
/// than the `width`×`height` mode the camera was set to; the mode for the other formats.
pub fn buffer_size(
    buf: &[u8],
    format: PixelFormat,
    width: u32,
    height: u32,
) -> Result<(u32, u32), ConvertError> {
    if format != PixelFormat::Mjpeg {
        return Ok((width, height));
    }
    // A damaged header can declare any size up to 65535², and a decoder allocates what it
    // declares before finding the data missing: on a Pi that is an out-of-memory risk per bad
    // frame.
    let (w, h) = jpeg_size(buf)?;
    if w > width || h > height {
        return Err(ConvertError::LargerThanMode {
            declared: (w, h),
            mode: (width, height),
        });
    }
    Ok((w, h))
}

/// Converts one captured buffer to RGB at 1/`denominator` of its size (one of
/// [`DCT_DENOMINATORS`]; [`scaled_size`] gives the result's size). MJPEG is decoded at that
/// DCT scale and YUYV converted only at the pixels kept (nearest sample); RGB3 and GREY, which
/// cost little to copy, come whole whatever is asked.
pub fn buffer_to_rgb_scaled(
    buf: &[u8],
    format: PixelFormat,
    width: u32,
    height: u32,
    denominator: u32,
    scratch: &mut Vec<u8>,
) -> Result<RgbImage, ConvertError> {
    let pixels = width as usize * height as usize;
    match format {
        PixelFormat::Mjpeg => {
            buffer_size(buf, format, width, height)?;
            decode_mjpeg_scaled(buf, denominator)
        }
        PixelFormat::Yuyv => {
            let d = denominator.max(1);
            if d == 1 {
                yuyv_to_rgb(buf, width, height, scratch)?;
            } else {
                yuyv_to_rgb_sampled(buf, width, height, d, scratch)?;
            }
            let (w, h) = scaled_size((width, height), d);
            RgbImage::from_raw(w, h, std::mem::take(scratch)).ok_or(ConvertError::SizeMismatch)
        }
        PixelFormat::Rgb3 => {
            if buf.len() < pixels * 3 {
                return Err(ConvertError::Truncated {
                    format: "RGB3",
                    len: buf.len(),
                    needed: pixels * 3,
                });
            }
            RgbImage::from_raw(width, height, buf[..pixels * 3].to_vec())
                .ok_or(ConvertError::SizeMismatch)
        }
        PixelFormat::Grey => {
            if buf.len() < pixels {
                return Err(ConvertError::Truncated {
                    format: "GREY",
                    len: buf.len(),
                    needed: pixels,
                });
            }
            Ok(RgbImage::from_fn(width, height, |x, y| {
                let v = buf[(y * width + x) as usize];
                image::Rgb([v, v, v])
            }))
        }
    }
}

/// Checks a YUYV buffer's mode and length.
fn check_yuyv(buf: &[u8], width: u32, height: u32) -> Result<usize, ConvertError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) {
        return Err(ConvertError::YuyvOddWidth { width, height });
    }
    let needed = width as usize * height as usize * 2;
    if buf.len() < needed {
        return Err(ConvertError::TruncatedYuyv {
            len: buf.len(),
            width,
            height,
            needed,
        });
    }
    Ok(needed)
}

/// BT.601 limited-range YUV to RGB, in integers (the same arithmetic as [`yuyv_to_rgb`]).
#[inline]
fn yuv_pixel(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    [
        ((c + 409 * e + 128) >> 8).clamp(0, 255) as u8,
        ((c - 100 * d - 208 * e + 128) >> 8).clamp(0, 255) as u8,
        ((c + 516 * d + 128) >> 8).clamp(0, 255) as u8,
    ]
}

/// Converts every `denominator`-th pixel of every `denominator`-th row of a YUYV buffer
/// (nearest sample; the picture is [`scaled_size`] of the frame) into `out`: the pixels a
/// smaller picture does not use are never converted.
pub fn yuyv_to_rgb_sampled(
    buf: &[u8],
    width: u32,
    height: u32,
    denominator: u32,
    out: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    check_yuyv(buf, width, height)?;
    let d = denominator.max(1) as usize;
    let (w, h) = scaled_size((width, height), d as u32);
    let row_bytes = width as usize * 2;
    out.clear();
    out.reserve(w as usize * h as usize * 3);
    for row in buf.chunks_exact(row_bytes).step_by(d).take(h as usize) {
        for x in (0..width as usize).step_by(d) {
            let pair = &row[(x & !1) * 2..(x & !1) * 2 + 4];
            let y = pair[(x & 1) * 2];
            out.extend_from_slice(&yuv_pixel(y, pair[1], pair[3]));
        }
    }
    Ok(())
}

/// Converts a packed YUYV 4:2:2 buffer (BT.601, limited range) into `out`, in integer
/// arithmetic. `out` is resized as needed so its allocation is reused frame after frame.
pub fn yuyv_to_rgb(
    buf: &[u8],
    width: u32,
    height: u32,
    out: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    let needed = check_yuyv(buf, width, height)?;
    out.resize(width as usize * height as usize * 3, 0);
    for (yuyv, rgb) in buf[..needed]
        .as_chunks::<4>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<6>().0)
    {
        let d = yuyv[1] as i32 - 128;
        let e = yuyv[3] as i32 - 128;
        let r_off = 409 * e + 128;
        let g_off = -100 * d - 208 * e + 128;
        let b_off = 516 * d + 128;
        for (i, y) in [yuyv[0], yuyv[2]].into_iter().enumerate() {
            let c = 298 * (y as i32 - 16);
            rgb[i * 3] = ((c + r_off) >> 8).clamp(0, 255) as u8;
            rgb[i * 3 + 1] = ((c + g_off) >> 8).clamp(0, 255) as u8;
            rgb[i * 3 + 2] = ((c + b_off) >> 8).clamp(0, 255) as u8;
        }
    }
    Ok(())
}

/// Decodes one MJPEG frame at full size. Many webcams leave out the Huffman tables (they are
/// the standard ones of JPEG Annex K, implied by the AVI1 MJPEG format); those are put back
/// before decoding.
pub fn decode_mjpeg(frame: &[u8]) -> Result<RgbImage, ConvertError> {
    decode_mjpeg_scaled(frame, 1)
}

/// The DCT scales a JPEG decodes at straight from its coefficients, as denominators (1/8,
/// 1/4, 1/2, 1/1), smallest picture first: the inverse DCT of a 1/8 picture is one
/// coefficient per 8×8 block, so a smaller scale skips most of the work after entropy decoding.
pub const DCT_DENOMINATORS: [u32; 4] = [8, 4, 2, 1];

/// The size of a `full`-sized JPEG decoded at 1/`denominator`: each side rounded up, as
/// libjpeg does.
pub fn scaled_size(full: (u32, u32), denominator: u32) -> (u32, u32) {
    let d = denominator.max(1);
    (full.0.div_ceil(d), full.1.div_ceil(d))
}

/// The largest of [`DCT_DENOMINATORS`] whose picture of a `full`-sized frame is at least
/// `need` in both sides (1 when only the whole frame is).
pub fn dct_denominator(full: (u32, u32), need: (u32, u32)) -> u32 {
    DCT_DENOMINATORS
        .into_iter()
        .find(|&d| {
            let (w, h) = scaled_size(full, d);
            w >= need.0 && h >= need.1
        })
        .unwrap_or(1)
}

/// Decodes one MJPEG frame at 1/`denominator` of its size (one of [`DCT_DENOMINATORS`]) with
/// libjpeg-turbo, which scales in the inverse DCT and has SIMD kernels (NEON on a Pi, SSE2/AVX2
/// here). A frame cut short, or whose data the decoder had to patch (libjpeg's "corrupt JPEG
/// data" warnings), is refused rather than handed on with grey or smeared blocks.
pub fn decode_mjpeg_scaled(frame: &[u8], denominator: u32) -> Result<RgbImage, ConvertError> {
    // A frame cut short by the USB transfer still decodes (the decoder fills the rest with
    // grey), which would feed half-grey faces to the model: refuse it instead.
    if !ends_with_end_of_image(frame) {
        return Err(ConvertError::NoEndOfImage { len: frame.len() });
    }
    let with_tables;
    let jpeg = if needs_standard_huffman_tables(frame)? {
        with_tables = insert_standard_huffman_tables(frame)?;
        &with_tables[..]
    } else {
        frame
    };
    thread_local! {
        // One decompressor per thread: its set-up allocates, a frame's decode need not.
        static DECOMPRESSOR: std::cell::RefCell<Option<turbojpeg::Decompressor>> =
            const { std::cell::RefCell::new(None) };
    }
    let decode_error = |e: turbojpeg::Error| ConvertError::Decode(e.to_string());
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(d) => d,
            None => cell.insert(turbojpeg::Decompressor::new().map_err(decode_error)?),
        };
        let factor = turbojpeg::ScalingFactor::new(1, denominator.max(1) as usize);
        decompressor
            .set_scaling_factor(factor)
            .map_err(decode_error)?;
        let header = decompressor.read_header(jpeg).map_err(decode_error)?;
        let size = header.scaled(factor);
        let (width, height) = (size.width as u32, size.height as u32);
        let mut image = turbojpeg::Image {
            pixels: vec![0u8; size.width * size.height * 3],
            width: size.width,
            pitch: size.width * 3,
            height: size.height,
            format: turbojpeg::PixelFormat::RGB,
        };
        decompressor
            .decompress(jpeg, image.as_deref_mut())
            .map_err(decode_error)?;
        RgbImage::from_raw(width, height, image.pixels).ok_or(ConvertError::SizeMismatch)
    })
}

/// Whether the frame ends with the EOI marker, ignoring the zero padding some drivers append.
pub(crate) fn ends_with_end_of_image(frame: &[u8]) -> bool {
    let end = frame.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    end >= 2 && frame[end - 2..end] == [0xFF, EOI]
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const DHT: u8 = 0xC4;
const SOS: u8 = 0xDA;

/// Walks the marker segments up to the start of scan; true when no DHT segment came first.
fn needs_standard_huffman_tables(jpeg: &[u8]) -> Result<bool, ConvertError> {
    Ok(!segments_before_scan(jpeg)?
        .iter()
        .any(|&(marker, _)| marker == DHT))
}

/// (marker, offset of its 0xFF) for each segment from SOI up to and including SOS.
fn segments_before_scan(jpeg: &[u8]) -> Result<Vec<(u8, usize)>, ConvertError> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != SOI {
        return Err(ConvertError::NotJpeg);
    }
    let mut segments = Vec::new();
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while pos < jpeg.len() && jpeg[pos] == 0xFF && jpeg.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 4 > jpeg.len() || jpeg[pos] != 0xFF {
            return Err(ConvertError::NoStartOfScan);
        }
        let marker = jpeg[pos + 1];
        segments.push((marker, pos));
        if marker == SOS {
            return Ok(segments);
        }
        let length = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        if length < 2 {
            return Err(ConvertError::BadSegmentLength { marker, length });
        }
        pos += 2 + length;
    }
}

/// Width and height from the start-of-frame segment.
pub fn jpeg_size(jpeg: &[u8]) -> Result<(u32, u32), ConvertError> {
    for (marker, pos) in segments_before_scan(jpeg)? {
        // SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            // FF Cn, length (2), precision (1), height (2), width (2).
            let field = |at: usize| {
                jpeg.get(pos + at..pos + at + 2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as u32)
            };
            return match (field(7), field(5)) {
                (Some(w), Some(h)) => Ok((w, h)),
                _ => Err(ConvertError::ShortStartOfFrame),
            };
        }
    }
    Err(ConvertError::NoStartOfFrame)
}

/// The frame with one DHT segment holding the four Annex K tables, placed just before SOS.
fn insert_standard_huffman_tables(jpeg: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let segments = segments_before_scan(jpeg)?;
    let sos = segments.last().map(|&(_, at)| at).unwrap_or(2);
    let dht = standard_dht_segment();
    let mut out = Vec::with_capacity(jpeg.len() + dht.len());
    out.extend_from_slice(&jpeg[..sos]);
    out.extend_from_slice(&dht);
    out.extend_from_slice(&jpeg[sos..]);
    Ok(out)
}

/// A DHT segment with the standard tables (class/destination, 16 code-length counts, values).
fn standard_dht_segment() -> Vec<u8> {
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &LUMA_DC_LENGTHS, &LUMA_DC_VALUES),
        (0x10, &LUMA_AC_LENGTHS, &LUMA_AC_VALUES),
        (0x01, &CHROMA_DC_LENGTHS, &CHROMA_DC_VALUES),
        (0x11, &CHROMA_AC_LENGTHS, &CHROMA_AC_VALUES),
    ];
    let mut body = Vec::new();
    for (class_and_id, lengths, values) in tables {
        body.push(class_and_id);
        body.extend_from_slice(lengths);
        body.extend_from_slice(values);
    }
    let mut segment = vec![0xFF, DHT];
    segment.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&body);
    segment
}

// The typical Huffman tables of ITU T.81 (JPEG) Annex K.3, tables K.3 to K.6.
const LUMA_DC_LENGTHS: [u8; 16] = [
    0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];
const LUMA_DC_VALUES: [u8; 12] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
];

const CHROMA_DC_LENGTHS: [u8; 16] = [
    0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
];
const CHROMA_DC_VALUES: [u8; 12] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
];

const LUMA_AC_LENGTHS: [u8; 16] = [
    0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7D,
];
const LUMA_AC_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

const CHROMA_AC_LENGTHS: [u8; 16] = [
    0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01, 0x02, 0x77,
];
const CHROMA_AC_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// A JPEG as an MJPEG webcam sends it: the same image with its DHT segments cut out (for
/// tests and fuzz seeds of [`decode_mjpeg`]). Panics on bytes that are not a JPEG.
pub fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let segments = segments_before_scan(jpeg).expect("a JPEG with a scan");
    let mut out = jpeg[..2].to_vec();
    let mut copied_to = 2;
    for (i, &(marker, at)) in segments.iter().enumerate() {
        let end = segments
            .get(i + 1)
            .map(|&(_, next)| next)
            .unwrap_or(jpeg.len());
        if marker != DHT {
            out.extend_from_slice(&jpeg[at..end]);
        }
        copied_to = end;
    }
    assert_eq!(copied_to, jpeg.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_known_colours() {
        // Two pixel pairs (Y0 U Y1 V): black then white, then red then red;
        // BT.601 red is Y=81, Cb=90, Cr=240.
        let buf = [16, 128, 235, 128, 81, 90, 81, 240];
        let mut out = vec![7; 100];
        yuyv_to_rgb(&buf, 2, 2, &mut out).unwrap();
        assert_eq!(out.len(), 12);
        assert_eq!(&out[0..6], &[0, 0, 0, 255, 255, 255]);
        assert_eq!(&out[6..12], &[255, 0, 0, 255, 0, 0]);
        // BT.601 blue is Y=41, Cb=240, Cr=110.
        yuyv_to_rgb(&[41, 240, 41, 110], 2, 1, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 255, 0, 0, 255]);
    }

    #[test]
    fn yuyv_rejects_short_buffers_and_odd_widths() {
        let mut out = vec![];
        let err = yuyv_to_rgb(&[0; 10], 4, 2, &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated") && err.contains("16"), "{err}");
        assert!(yuyv_to_rgb(&[0; 64], 3, 2, &mut out)
            .unwrap_err()
            .to_string()
            .contains("even"));
    }

    fn test_jpeg() -> (RgbImage, Vec<u8>) {
        let img = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&img)
            .unwrap();
        (img, bytes)
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_like_the_full_jpeg() {
        let (_, full) = test_jpeg();
        let stripped = strip_huffman_tables(&full);
        assert!(stripped.len() < full.len());
        assert!(needs_standard_huffman_tables(&stripped).unwrap());
        assert!(!needs_standard_huffman_tables(&full).unwrap());
        // Without the fix the decoder refuses the frame.
        assert!(image::load_from_memory_with_format(&stripped, image::ImageFormat::Jpeg).is_err());
        let expected = decode_mjpeg(&full).unwrap();
        let repaired = decode_mjpeg(&stripped).unwrap();
        assert_eq!(repaired, expected);
    }

    #[test]
    fn mjpeg_decodes_close_to_the_source_image() {
        let (img, full) = test_jpeg();
        let decoded = decode_mjpeg(&full).unwrap();
        let diff: u64 = img
            .as_raw()
            .iter()
            .zip(decoded.as_raw())
            .map(|(&a, &b)| (a as i32 - b as i32).unsigned_abs() as u64)
            .sum();
        assert!(
            diff / (img.as_raw().len() as u64) < 6,
            "mean error {}",
            diff / img.as_raw().len() as u64
        );
    }

    #[test]
    fn truncated_and_garbage_mjpeg_frames_are_errors() {
        let (_, full) = test_jpeg();
        for cut in [0, 1, 3, 20, 100, full.len() / 2, full.len() - 2] {
            let err = decode_mjpeg(&full[..cut]).unwrap_err().to_string();
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
        let mut padded = full.clone();
        padded.extend_from_slice(&[0; 32]);
        assert!(
            decode_mjpeg(&padded).is_ok(),
            "driver padding after EOI is fine"
        );
        let err = decode_mjpeg(b"\xFF\xD8\xFF\xC0\x00\x01\xFF\xD9")
            .unwrap_err()
            .to_string();
        assert!(err.contains("length 1"), "{err}");
        let mut garbage = vec![0x12; 300];
        garbage.extend_from_slice(&[0xFF, 0xD9]);
        assert!(decode_mjpeg(&garbage)
            .unwrap_err()
            .to_string()
            .contains("not a JPEG"));
    }

    #[test]
    fn mjpeg_frame_declaring_more_pixels_than_the_camera_mode_is_refused_before_decoding() {
        let (img, full) = test_jpeg();
        let (w, h) = img.dimensions();
        assert_eq!(jpeg_size(&full).unwrap(), (w, h));
        let mut scratch = Vec::new();
        let ok = buffer_to_rgb(&full, PixelFormat::Mjpeg, w, h, &mut scratch).unwrap();
        assert_eq!(ok.dimensions(), (w, h));
        // The same frame with its header claiming 16000x12000 (a 576 MB picture).
        let sof = full.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        let mut huge = full.clone();
        huge[sof + 5..sof + 7].copy_from_slice(&12000u16.to_be_bytes());
        huge[sof + 7..sof + 9].copy_from_slice(&16000u16.to_be_bytes());
        let err = buffer_to_rgb(&huge, PixelFormat::Mjpeg, w, h, &mut scratch)
            .unwrap_err()
            .to_string();
        assert!(err.contains("declares 16000x12000"), "{err}");
        let no_sof = b"\xFF\xD8\xFF\xDA\x00\x02\xFF\xD9";
        let err = buffer_to_rgb(no_sof, PixelFormat::Mjpeg, w, h, &mut scratch)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no start-of-frame"), "{err}");
    }

    #[test]
    fn grey_and_rgb3_buffers_convert_and_short_ones_are_refused() {
        let mut scratch = Vec::new();
        let grey = buffer_to_rgb(&[0, 128, 255, 7], PixelFormat::Grey, 2, 2, &mut scratch).unwrap();
        assert_eq!(grey.get_pixel(1, 0).0, [128, 128, 128]);
        let rgb =
            buffer_to_rgb(&[1, 2, 3, 4, 5, 6], PixelFormat::Rgb3, 2, 1, &mut scratch).unwrap();
        assert_eq!(rgb.get_pixel(1, 0).0, [4, 5, 6]);
        assert!(buffer_to_rgb(&[1, 2, 3], PixelFormat::Rgb3, 2, 1, &mut scratch).is_err());
        assert!(buffer_to_rgb(&[1], PixelFormat::Grey, 2, 1, &mut scratch).is_err());
        assert!(buffer_to_rgb(&[0; 6], PixelFormat::Yuyv, 2, 2, &mut scratch).is_err());
        assert!(buffer_to_rgb(&[0; 6], PixelFormat::Mjpeg, 2, 2, &mut scratch).is_err());
    }
}
