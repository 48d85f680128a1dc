//! Face crops, resampled to the model's input: a square around each face box with a margin
//! ([`crop_face`]), or a square turned so the eyes are level and scaled by the eye distance
//! ([`crop_aligned`]). [`Framing::crop`] picks between them from what the model's metadata says
//! it was trained on ([`CropStyle`]); the daemon, `crops`, `eval` and `teacher-crops` all cut
//! through it.
//!
//! These functions frame faces for the device and for the host tool's training crops, so a
//! model sees at the kiosk exactly the framing (and the resampling) it was trained on.

use super::FaceBox;
use image::{Rgb, RgbImage};

/// Where the eyes sit in an aligned crop ([`crop_aligned`]), as shares of the crop's side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EyeAlignment {
    /// The distance between the eye centres.
    pub eye_distance: f32,
    /// How far below the crop's top edge the eye midpoint sits (it is centred across).
    pub eye_line: f32,
}

/// The alignment `agecam-host crops --align` cuts: chosen so an aligned crop covers about the
/// same part of the face as a box crop with margin 0.25 (side and eye height matched over
/// YuNet's faces; see the test `aligned_crops_cover_the_box_crops_area`), so a model trained
/// on box crops starts close.
pub const EYES: EyeAlignment = EyeAlignment {
    eye_distance: EYE_DISTANCE,
    eye_line: EYE_LINE,
};

/// The square region of the frame (in frame pixels, may reach past the edges) cut for `face`:
/// centred on the box, side = longer box side × (1 + 2 × margin).
pub fn crop_square(face: &FaceBox, margin: f32) -> (f32, f32, f32) {
    let side = face.width.max(face.height) * (1.0 + 2.0 * margin);
    let (cx, cy) = face.center();
    (cx - side / 2.0, cy - side / 2.0, side)
}

/// Side of the training crops (the host tool caches faces at this size and resamples them to
/// the network's input while training).
pub const FRAMING_SIZE: u32 = 128;

/// Cuts the face out of `frame` and resamples it to `size`×`size` with bilinear filtering.
/// Where the square reaches past the frame, the nearest edge pixel is repeated, so a face at
/// the border is not framed by a black bar the training crops never had.
///
/// Below [`FRAMING_SIZE`] the face is cut at that size first and then resampled to `size`, the
/// two steps training takes: cutting straight to 96 px aliases differently, and cost the shipped
/// model 0.32 years of MAE on the UTKFace validation split (5.83 → 5.51 y once aligned).
pub fn crop_face(frame: &RgbImage, face: &FaceBox, margin: f32, size: u32) -> RgbImage {
    let (left, top, side) = crop_square(face, margin);
    if size >= FRAMING_SIZE {
        return resample(frame, left, top, side, size);
    }
    let framed = resample(frame, left, top, side, FRAMING_SIZE);
    resample(&framed, 0.0, 0.0, FRAMING_SIZE as f32, size)
}

/// Eye distance as a share of the aligned crop's side ([`EYES`]): the median, over the faces
/// the shipped YuNet finds (as `crops` finds them), of the eye distance over the side of their
/// box crop with margin 0.25 — FairFace's first 600 training chips 0.256 (quartiles 0.233 and
/// 0.268), its first 600 validation chips 0.258, UTKFace's first 600 chips 0.274. (The
/// commercial BlazeFace cascade's boxes are smaller: 0.281 on the FairFace validation chips.)
const EYE_DISTANCE: f32 = 0.26;
/// Eye midpoint below the aligned crop's top, as a share of its side ([`EYES`]): the median
/// of the same faces' eye midpoint in their box crop (FairFace training 0.355, validation
/// 0.354, UTKFace 0.360; across the crop it sits at the box centre, median offset 0.006).
const EYE_LINE: f32 = 0.355;

/// An aligned crop's side stays within these multiples of the face box's crop with margin
/// 0.25 (which [`EYES`] matches on average): the eye distance of a face turned to the side
/// shrinks with the turn, and a crop scaled by it alone would zoom into half a head.
const SIDE_LIMITS: [f32; 2] = [0.8, 1.25];

/// Eyes tilted further than this (degrees) are taken for misplaced landmarks: the face gets
/// the box crop.
const MAX_TILT_DEGREES: f32 = 45.0;

/// A square of the frame, possibly turned: its centre, side (frame pixels) and the unit
/// vector along its rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnedSquare {
    pub center: [f32; 2],
    pub side: f32,
    /// Unit vector (frame pixels) along the crop's rows: `[1, 0]` for an upright crop.
    pub across: [f32; 2],
}

/// The turned square an aligned crop cuts for `face`: rows along the line from the eye on the
/// image's left to the other, eye midpoint at `align.eye_line` of the side from the top and
/// centred across, side = eye distance / `align.eye_distance` kept within [`SIDE_LIMITS`] of
/// the box crop. `None` (the caller cuts the box crop) when the face has no landmarks or its
/// eyes are tilted past [`MAX_TILT_DEGREES`] or coincide.
pub fn aligned_square(face: &FaceBox, align: &EyeAlignment) -> Option<TurnedSquare> {
    let l = face.landmarks?;
    // The eye on the image's left first, whichever the detector calls right: a mirrored frame
    // must not turn the crop upside down.
    let (a, b) = if l.right_eye[0] <= l.left_eye[0] {
        (l.right_eye, l.left_eye)
    } else {
        (l.left_eye, l.right_eye)
    };
    let d = [b[0] - a[0], b[1] - a[1]];
    let distance = d[0].hypot(d[1]);
    if distance.is_nan()
        || distance < 1.0
        || d[1].abs() > d[0] * MAX_TILT_DEGREES.to_radians().tan()
    {
        return None;
    }
    let across = [d[0] / distance, d[1] / distance];
    let down = [-across[1], across[0]];
    let (_, _, box_side) = crop_square(face, 0.25);
    let side =
        (distance / align.eye_distance).clamp(SIDE_LIMITS[0] * box_side, SIDE_LIMITS[1] * box_side);
    let mid = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    // From the eye midpoint down to the centre: (½ − eye_line) of the side.
    let below = (0.5 - align.eye_line) * side;
    Some(TurnedSquare {
        center: [mid[0] + below * down[0], mid[1] + below * down[1]],
        side,
        across,
    })
}

/// The aligned crop of `face` ([`aligned_square`]) resampled to `size`×`size` as
/// [`crop_face`] resamples (bilinear, edge pixels repeated, cut at [`FRAMING_SIZE`] first
/// below it); `None` where [`aligned_square`] gives none.
pub fn crop_aligned(
    frame: &RgbImage,
    face: &FaceBox,
    align: &EyeAlignment,
    size: u32,
) -> Option<RgbImage> {
    let sq = aligned_square(face, align)?;
    let cut = |size: u32| {
        let step = sq.side / size as f32;
        let across = [sq.across[0] * step, sq.across[1] * step];
        let down = [-across[1], across[0]];
        let half = size as f32 / 2.0;
        let origin = [
            sq.center[0] - half * (across[0] + down[0]),
            sq.center[1] - half * (across[1] + down[1]),
        ];
        resample_turned(frame, origin, across, down, size)
    };
    if size >= FRAMING_SIZE {
        return Some(cut(size));
    }
    let framed = cut(FRAMING_SIZE);
    Some(resample(&framed, 0.0, 0.0, FRAMING_SIZE as f32, size))
}

/// Which crop a model was trained on (its `agecam.crop` metadata, a crop cache's
/// `framing.txt`). Written and read as text: `box`, or `eyes distance=D line=L` (the
/// [`EyeAlignment`] shares).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum CropStyle {
    /// The square around the detector's box, with the crop margin ([`crop_face`]): every
    /// model without the metadata.
    #[default]
    Box,
    /// Turned so the eyes are level and scaled by their distance ([`crop_aligned`]); faces
    /// without landmarks get the box crop.
    Eyes(EyeAlignment),
}

/// A crop style's text is neither `box` nor `eyes distance=D line=L`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("crop style `{text}` is neither `box` nor `eyes distance=D line=L` (D from 0.05 to 1, L from 0 to 1)")]
pub struct BadCropStyle {
    pub text: String,
}

impl std::fmt::Display for CropStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CropStyle::Box => write!(f, "box"),
            CropStyle::Eyes(a) => write!(f, "eyes distance={} line={}", a.eye_distance, a.eye_line),
        }
    }
}

impl std::str::FromStr for CropStyle {
    type Err = BadCropStyle;

    fn from_str(text: &str) -> Result<CropStyle, BadCropStyle> {
        let bad = || BadCropStyle {
            text: text.to_string(),
        };
        let mut words = text.split_whitespace();
        match words.next() {
            Some("box") if words.next().is_none() => Ok(CropStyle::Box),
            Some("eyes") => {
                let (mut distance, mut line) = (None, None);
                for word in words {
                    let (key, value) = word.split_once('=').ok_or_else(bad)?;
                    let value: f32 = value.parse().map_err(|_| bad())?;
                    match key {
                        "distance" if distance.is_none() => distance = Some(value),
                        "line" if line.is_none() => line = Some(value),
                        _ => return Err(bad()),
                    }
                }
                match (distance, line) {
                    (Some(d), Some(l)) if (0.05..=1.0).contains(&d) && (0.0..=1.0).contains(&l) => {
                        Ok(CropStyle::Eyes(EyeAlignment {
                            eye_distance: d,
                            eye_line: l,
                        }))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

/// As its text (`box`, `eyes distance=D line=L`), as in a checkpoint's `state.json`.
impl serde::Serialize for CropStyle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CropStyle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How faces are cut for one model: its [`CropStyle`] and the margin of its box crops (also
/// those of faces without landmarks under [`CropStyle::Eyes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Framing {
    pub style: CropStyle,
    pub margin: f32,
}

impl Framing {
    /// Box crops with `margin`.
    pub fn boxed(margin: f32) -> Framing {
        Framing {
            style: CropStyle::Box,
            margin,
        }
    }

    /// The framing a model expects — the one rule the daemon, `eval`, `crops` and
    /// `teacher-crops` follow (through `ModelInfo::framing`): the crop style of its metadata
    /// (`agecam.crop`; none: box), and the margin of
    /// [`resolve_crop_margin`](crate::config::resolve_crop_margin) (`explicit`, the configured
    /// `detector.crop_margin`, wins over the model's).
    pub fn of_model(
        style: CropStyle,
        model_margin: Option<f32>,
        explicit_margin: Option<f32>,
    ) -> Framing {
        Framing {
            style,
            margin: crate::config::resolve_crop_margin(explicit_margin, model_margin),
        }
    }

    /// `face` cut out of `frame` at `size`×`size` in this framing: [`crop_aligned`] under
    /// [`CropStyle::Eyes`] where the face's landmarks allow it, else [`crop_face`].
    pub fn crop(&self, frame: &RgbImage, face: &FaceBox, size: u32) -> RgbImage {
        match &self.style {
            CropStyle::Eyes(align) => crop_aligned(frame, face, align, size)
                .unwrap_or_else(|| crop_face(frame, face, self.margin, size)),
            CropStyle::Box => crop_face(frame, face, self.margin, size),
        }
    }
}

/// The square (`left`, `top`, `side`) of `frame`, bilinearly resampled to `size`×`size`.
fn resample(frame: &RgbImage, left: f32, top: f32, side: f32, size: u32) -> RgbImage {
    let step = side / size as f32;
    resample_turned(frame, [left, top], [step, 0.0], [0.0, step], size)
}

/// A square of `frame`, possibly turned, bilinearly resampled to `size`×`size`: output pixel
/// (x, y) samples the frame at `origin + (x + ½)·across + (y + ½)·down` (frame pixel
/// coordinates, pixel centres at +½), `across` and `down` being one output pixel's step along the
/// crop's rows and columns. Past the frame's edges the nearest edge pixel is repeated.
fn resample_turned(
    frame: &RgbImage,
    origin: [f32; 2],
    across: [f32; 2],
    down: [f32; 2],
    size: u32,
) -> RgbImage {
    let (width, height) = frame.dimensions();
    let max_x = width as f32 - 1.0;
    let max_y = height as f32 - 1.0;
    let mut out = RgbImage::new(size, size);
    for oy in 0..size {
        let v = oy as f32 + 0.5;
        for ox in 0..size {
            let u = ox as f32 + 0.5;
            // Sample at pixel centres so a 1:1 crop reproduces the source exactly.
            let sx = (origin[0] + u * across[0] + v * down[0] - 0.5).clamp(0.0, max_x);
            let sy = (origin[1] + u * across[1] + v * down[1] - 0.5).clamp(0.0, max_y);
            let x0 = sx.floor() as u32;
            let x1 = (x0 + 1).min(width - 1);
            let fx = sx - x0 as f32;
            let y0 = sy.floor() as u32;
            let y1 = (y0 + 1).min(height - 1);
            let fy = sy - y0 as f32;
            let p00 = frame.get_pixel(x0, y0).0;
            let p10 = frame.get_pixel(x1, y0).0;
            let p01 = frame.get_pixel(x0, y1).0;
            let p11 = frame.get_pixel(x1, y1).0;
            let mut px = [0u8; 3];
            for c in 0..3 {
                let top_row = p00[c] as f32 * (1.0 - fx) + p10[c] as f32 * fx;
                let bottom_row = p01[c] as f32 * (1.0 - fx) + p11[c] as f32 * fx;
                px[c] = (top_row * (1.0 - fy) + bottom_row * fy).round() as u8;
            }
            out.put_pixel(ox, oy, Rgb(px));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, w: f32, h: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width: w,
            height: h,
            score: 1.0,
            landmarks: None,
        }
    }

    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, (x + y) as u8]))
    }

    /// A face box with its eyes at `right_eye` and `left_eye` (nose and mouth below them).
    fn face_with_eyes(b: FaceBox, right_eye: [f32; 2], left_eye: [f32; 2]) -> FaceBox {
        let mid = [
            (right_eye[0] + left_eye[0]) / 2.0,
            (right_eye[1] + left_eye[1]) / 2.0,
        ];
        FaceBox {
            landmarks: Some(crate::vision::Landmarks {
                right_eye,
                left_eye,
                nose: [mid[0], mid[1] + 15.0],
                mouth: [mid[0], mid[1] + 30.0],
                mouth_corners: None,
                ears: None,
            }),
            ..b
        }
    }

    /// Shares that are exact in binary, so the expected squares are exact too.
    const EXACT: EyeAlignment = EyeAlignment {
        eye_distance: 0.25,
        eye_line: 0.375,
    };

    /// A frame whose red channel is x and green channel is y (up to 255): a crop's pixel says
    /// where in the frame it was sampled.
    fn coordinates(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 0]))
    }

    #[test]
    fn level_eyes_give_the_upright_square_around_them() {
        let frame = gradient(250, 250);
        let f = face_with_eyes(face(80.0, 80.0, 80.0, 80.0), [100.0, 100.0], [125.0, 100.0]);
        let sq = aligned_square(&f, &EXACT).unwrap();
        // Side 25 / 0.25; the eye midpoint (112.5, 100) at 0.375 of it from the top.
        assert_eq!(sq.side, 100.0);
        assert_eq!(sq.center, [112.5, 112.5]);
        assert_eq!(sq.across, [1.0, 0.0]);
        let aligned = crop_aligned(&frame, &f, &EXACT, 128).unwrap();
        assert_eq!(aligned, resample(&frame, 62.5, 62.5, 100.0, 128));
    }

    #[test]
    fn tilted_eyes_are_levelled_at_their_place_in_the_crop() {
        let frame = coordinates(250, 250);
        for degrees in [-30.0f32, -10.0, 0.0, 20.0, 40.0] {
            let (sin, cos) = degrees.to_radians().sin_cos();
            let right = [110.0, 120.0];
            let left = [right[0] + 25.0 * cos, right[1] + 25.0 * sin];
            let f = face_with_eyes(face(90.0, 90.0, 80.0, 80.0), right, left);
            let size = 200;
            let crop = crop_aligned(&frame, &f, &EXACT, size).unwrap();
            // In the crop the eyes sit on one row, 0.375 of the side down, a quarter of the
            // side apart around the middle column; each crop pixel holds the frame position
            // it was sampled at.
            let row = 0.375 * size as f32;
            for (eye, column) in [(right, 0.375 * size as f32), (left, 0.625 * size as f32)] {
                let p = crop.get_pixel(column as u32, row as u32).0;
                let at = [p[0] as f32 + 0.5, p[1] as f32 + 0.5];
                let off = (at[0] - eye[0]).hypot(at[1] - eye[1]);
                assert!(off < 1.5, "{degrees}°: eye at {eye:?} sampled at {at:?}");
            }
        }
    }

    #[test]
    fn which_eye_the_detector_calls_right_does_not_turn_the_crop() {
        let b = face(80.0, 80.0, 80.0, 80.0);
        let seen = face_with_eyes(b, [100.0, 100.0], [124.0, 107.0]);
        let mirrored = face_with_eyes(b, [124.0, 107.0], [100.0, 100.0]);
        assert_eq!(
            aligned_square(&seen, &EYES),
            aligned_square(&mirrored, &EYES)
        );
    }

    #[test]
    fn unusable_eyes_fall_back_to_the_box_crop() {
        let frame = gradient(250, 250);
        let b = face(80.0, 80.0, 80.0, 80.0);
        let framing = Framing {
            style: CropStyle::Eyes(EYES),
            margin: 0.25,
        };
        let boxed = crop_face(&frame, &b, 0.25, 96);
        // No landmarks, eyes on one point, eyes tilted past 45°.
        for f in [
            b,
            face_with_eyes(b, [110.0, 110.0], [110.0, 110.0]),
            face_with_eyes(b, [110.0, 100.0], [120.0, 125.0]),
        ] {
            assert_eq!(aligned_square(&f, &EYES), None, "{f:?}");
            assert_eq!(framing.crop(&frame, &f, 96), boxed);
        }
        // Box style ignores landmarks.
        let with_eyes = face_with_eyes(b, [100.0, 100.0], [124.0, 100.0]);
        assert_eq!(
            Framing::boxed(0.25).crop(&frame, &with_eyes, 96),
            crop_face(&frame, &with_eyes, 0.25, 96)
        );
        assert_ne!(framing.crop(&frame, &with_eyes, 96), boxed);
    }

    #[test]
    fn side_stays_near_the_box_crop_when_the_face_turns_away() {
        let b = face(80.0, 80.0, 80.0, 80.0); // box crop side 120
        let narrow = face_with_eyes(b, [118.0, 100.0], [124.0, 100.0]);
        assert_eq!(aligned_square(&narrow, &EYES).unwrap().side, 96.0);
        let wide = face_with_eyes(b, [60.0, 100.0], [160.0, 100.0]);
        assert_eq!(aligned_square(&wide, &EYES).unwrap().side, 150.0);
    }

    #[test]
    fn small_aligned_crops_are_cut_at_the_training_size_first() {
        let frame = gradient(250, 250);
        let f = face_with_eyes(face(80.0, 80.0, 80.0, 80.0), [100.0, 100.0], [125.0, 108.0]);
        let framed = crop_aligned(&frame, &f, &EYES, FRAMING_SIZE).unwrap();
        assert_eq!(
            crop_aligned(&frame, &f, &EYES, 96).unwrap(),
            resample(&framed, 0.0, 0.0, FRAMING_SIZE as f32, 96)
        );
    }

    #[test]
    fn crop_styles_read_back_what_they_write() {
        for style in [
            CropStyle::Box,
            CropStyle::Eyes(EYES),
            CropStyle::Eyes(EXACT),
        ] {
            assert_eq!(style.to_string().parse::<CropStyle>(), Ok(style));
        }
        assert_eq!(
            "eyes  line=0.4 distance=0.3".parse::<CropStyle>(),
            Ok(CropStyle::Eyes(EyeAlignment {
                eye_distance: 0.3,
                eye_line: 0.4
            }))
        );
        for bad in [
            "",
            "boxes",
            "box 1",
            "eyes",
            "eyes distance=0.3",
            "eyes distance=0.3 line=0.4 line=0.4",
            "eyes distance=0 line=0.4",
            "eyes distance=0.3 line=x",
            "eyes size=0.3 line=0.4",
        ] {
            assert!(bad.parse::<CropStyle>().is_err(), "`{bad}` accepted");
        }
    }

    /// The bundled frontal photos through the shipped YuNet: the aligned square (before the
    /// side limits) is within 20 % of the box crop's side (margin 0.25) and centred near it,
    /// so a model trained on box crops starts close on aligned ones. The three-quarter profile
    /// is held by the side limits.
    #[test]
    fn aligned_crops_cover_the_box_crops_area() {
        use crate::vision::FaceDetector;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = crate::model::Manifest::load(
            &root.join("models"),
            &crate::model::TrustedKeys::project(),
        )
        .unwrap();
        let path = manifest
            .verified_path(crate::model::Role::FaceDetectorYunet)
            .unwrap()
            .unwrap();
        let settings = crate::vision::DetectorSettings {
            min_face_size: 20,
            score_threshold: crate::vision::yunet::DEFAULT_SCORE_THRESHOLD,
            max_faces: 1,
        };
        let mut yunet = crate::vision::YuNetDetector::load(
            &path,
            crate::vision::yunet::DEFAULT_INPUT_SIZE,
            settings,
        )
        .unwrap();
        let unlimited = |f: &FaceBox| {
            let l = f.landmarks.unwrap();
            l.eye_distance() / EYES.eye_distance
        };
        for (file, frontal) in [
            ("astronaut_eileen_collins.jpg", true),
            ("grace_hopper_navy_portrait.jpg", true),
            ("luis_pedro_coelho.jpg", true),
            ("cameraman_three_quarter_profile.png", false),
        ] {
            let img = image::open(root.join("tests/data/faces").join(file))
                .unwrap()
                .to_rgb8();
            let f = yunet.detect(&img).pop().expect(file);
            let (left, top, box_side) = crop_square(&f, 0.25);
            let sq = aligned_square(&f, &EYES).expect(file);
            let ratio = unlimited(&f) / box_side;
            let shift = (sq.center[0] - (left + box_side / 2.0))
                .hypot(sq.center[1] - (top + box_side / 2.0))
                / box_side;
            if frontal {
                assert!((0.8..1.2).contains(&ratio), "{file}: side ratio {ratio}");
                assert_eq!(sq.side, unlimited(&f), "{file}: not limited");
                assert!(shift < 0.1, "{file}: centre moved {shift} of the side");
            } else {
                assert!(ratio < 0.8, "{file}: side ratio {ratio}");
                assert_eq!(sq.side, 0.8 * box_side, "{file}");
            }
        }
    }

    #[test]
    fn square_is_centred_with_margin_on_the_longer_side() {
        let (left, top, side) = crop_square(&face(100.0, 50.0, 40.0, 60.0), 0.25);
        assert_eq!(side, 90.0);
        assert_eq!((left, top), (75.0, 35.0));
    }

    #[test]
    fn one_to_one_crop_copies_pixels_exactly() {
        let frame = gradient(100, 80);
        let crop = resample(&frame, 10.0, 20.0, 32.0, 32);
        for (x, y, p) in crop.enumerate_pixels() {
            assert_eq!(p, frame.get_pixel(x + 10, y + 20), "at {x},{y}");
        }
    }

    #[test]
    fn half_size_crop_averages_neighbours() {
        let frame = gradient(100, 80);
        let crop = resample(&frame, 10.0, 20.0, 32.0, 16);
        // Output pixel 0 samples source x = 10 + 0.5*2 - 0.5 = 10.5: halfway between 10 and 11.
        assert_eq!(crop.get_pixel(0, 0).0[0], 11); // 10.5 rounds half away from zero
        assert_eq!(crop.get_pixel(3, 0).0[0], 17); // 16.5
        assert_eq!(crop.get_pixel(0, 3).0[1], 27); // y: 20 + 6.5
    }

    #[test]
    fn crop_past_the_edge_repeats_the_edge() {
        let frame = gradient(50, 50);
        let crop = resample(&frame, -10.0, -10.0, 20.0, 20);
        assert_eq!(crop.get_pixel(0, 0), frame.get_pixel(0, 0));
        assert_eq!(crop.get_pixel(5, 15), &Rgb([0, 5, 5]));
        assert_eq!(crop.get_pixel(19, 19), frame.get_pixel(9, 9));
    }

    #[test]
    fn small_inputs_are_cut_at_the_training_size_first() {
        let frame = RgbImage::from_fn(640, 480, |x, y| {
            Rgb([
                (x * 7 % 256) as u8,
                (y * 3 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let f = face(200.0, 150.0, 170.0, 150.0);
        let framed = crop_face(&frame, &f, 0.25, FRAMING_SIZE);
        let (left, top, side) = crop_square(&f, 0.25);
        assert_eq!(framed, resample(&frame, left, top, side, FRAMING_SIZE));
        let small = crop_face(&frame, &f, 0.25, 96);
        assert_eq!(small, resample(&framed, 0.0, 0.0, 128.0, 96));
        assert_ne!(
            small,
            resample(&frame, left, top, side, 96),
            "not cut straight to 96"
        );
        // Larger inputs are cut directly.
        assert_eq!(
            crop_face(&frame, &f, 0.25, 160),
            resample(&frame, left, top, side, 160)
        );
    }
}
