//! Face detection with MediaPipe's BlazeFace networks (Apache-2.0), converted to ONNX by
//! `agecam-host convert-detector` and run by tract. Three variants ([`Variant`]) share the
//! decoding and differ in input size and anchor layout: short-range (128×128, 896 anchors,
//! faces within about 2 m of a selfie/kiosk camera: a face should span at least ~1/12 of the
//! frame's longer side), full-range (192×192, 2,304 anchors on one 48×48 grid, made for faces
//! up to ~5 m) and back-camera (256×256, short-range's layout at twice the resolution).
//!
//! Per frame: the RGB frame is letterboxed into the network's square input (aspect kept,
//! centred, black bars; area-averaged downscaling), scaled to [−1, 1], run once, and the anchor
//! outputs are decoded, thresholded, merged by weighted non-maximum suppression and mapped
//! back to frame pixels.
//!
//! Scores are probabilities (sigmoid of the network's logit), so `detector.score_threshold`
//! is between 0 and 1 for this detector (MediaPipe uses 0.5).

use super::letterbox::{letterbox_into, Letterbox, PixelFormat};
use super::{DetectorError, DetectorSettings, FaceBox, FaceDetector, Landmarks};
use image::RgbImage;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// Which BlazeFace network a model file is; fixes its input size and anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    ShortRange,
    FullRange,
    Back,
}

impl Variant {
    /// Side of the network's square input.
    pub fn input_size(self) -> usize {
        match self {
            Variant::ShortRange => 128,
            Variant::FullRange => 192,
            Variant::Back => 256,
        }
    }

    /// Anchor grids as (stride in input pixels, anchors per cell), in output order:
    /// short-range and back have a grid of stride s with 2 per cell then one of 2s with 6;
    /// full-range one grid of stride 4 with 1.
    pub fn grids(self) -> &'static [(usize, usize)] {
        match self {
            Variant::ShortRange => &[(8, 2), (16, 6)],
            Variant::Back => &[(16, 2), (32, 6)],
            Variant::FullRange => &[(4, 1)],
        }
    }

    pub fn anchor_count(self) -> usize {
        let n = self.input_size();
        self.grids()
            .iter()
            .map(|&(stride, per_cell)| (n / stride).pow(2) * per_cell)
            .sum()
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::ShortRange => "short-range",
            Variant::FullRange => "full-range",
            Variant::Back => "back-camera",
        }
    }
}

/// Values per anchor in the regressor output: box (dx, dy, w, h) and 6 keypoints (x, y).
const REGRESSOR_WIDTH: usize = 16;
/// Overlap above which two candidate boxes are one face.
pub const NMS_IOU: f32 = 0.3;

/// Anchor centres of `variant` in input-normalised coordinates (0–1), in the network's output
/// order: per grid, row by row, column by column, anchor by anchor. BlazeFace's anchors all
/// have size 1 (MediaPipe's `fixed_anchor_size`), so only the centre matters.
pub fn anchors(variant: Variant) -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(variant.anchor_count());
    for &(stride, per_cell) in variant.grids() {
        let grid = variant.input_size() / stride;
        for y in 0..grid {
            for x in 0..grid {
                let centre = [
                    (x as f32 + 0.5) / grid as f32,
                    (y as f32 + 0.5) / grid as f32,
                ];
                out.extend(std::iter::repeat_n(centre, per_cell));
            }
        }
    }
    out
}

/// BlazeFace's six keypoints, in output order: right eye, left eye, nose tip, mouth centre,
/// right ear tragion, left ear tragion (the person's right and left).
pub const KEYPOINTS: usize = 6;

/// A decoded detection in input-normalised coordinates (0–1 over the square input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
    /// The keypoints ([`KEYPOINTS`]), input-normalised.
    pub keypoints: [[f32; 2]; KEYPOINTS],
}

impl Candidate {
    fn iou(&self, other: &Candidate) -> f32 {
        let as_box = |c: &Candidate| FaceBox::new(c.x, c.y, c.width, c.height, c.score);
        as_box(self).iou(&as_box(other))
    }
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp())
}

/// Decodes the raw outputs (`regressors` of shape anchors×16, `classificators` of one logit
/// per anchor) of a network with an `input_size`-pixel input into the candidates scoring at
/// least `threshold`. Box centre = anchor + offset/size, box side = raw/size.
pub fn decode(
    regressors: &[f32],
    logits: &[f32],
    anchors: &[[f32; 2]],
    input_size: usize,
    threshold: f32,
) -> Vec<Candidate> {
    let scale = input_size as f32;
    regressors
        .as_chunks::<REGRESSOR_WIDTH>()
        .0
        .iter()
        .zip(logits)
        .zip(anchors)
        .filter_map(|((r, &logit), anchor)| {
            let score = sigmoid(logit);
            if score < threshold {
                return None;
            }
            let (cx, cy) = (anchor[0] + r[0] / scale, anchor[1] + r[1] / scale);
            let (w, h) = (r[2] / scale, r[3] / scale);
            let keypoints = std::array::from_fn(|k| {
                [
                    anchor[0] + r[4 + 2 * k] / scale,
                    anchor[1] + r[5 + 2 * k] / scale,
                ]
            });
            (w > 0.0 && h > 0.0).then_some(Candidate {
                x: cx - w / 2.0,
                y: cy - h / 2.0,
                width: w,
                height: h,
                score,
                keypoints,
            })
        })
        .collect()
}

/// Weighted non-maximum suppression (as MediaPipe's BlazeFace graph does it): the best
/// remaining candidate and every other overlapping it by more than `iou` make one face, whose
/// box and keypoints are their score-weighted mean and whose score is the best one's.
pub fn weighted_nms(mut candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut faces = Vec::new();
    while let Some(best) = candidates.first().copied() {
        let (group, rest): (Vec<Candidate>, Vec<Candidate>) = candidates
            .into_iter()
            .partition(|c| c.iou(&best) > iou || *c == best);
        let total: f32 = group.iter().map(|c| c.score).sum();
        let mean = |f: fn(&Candidate) -> f32| -> f32 {
            group.iter().map(|c| f(c) * c.score).sum::<f32>() / total
        };
        let keypoints = std::array::from_fn(|k| {
            let mut point = [0f32; 2];
            for c in &group {
                point[0] += c.keypoints[k][0] * c.score / total;
                point[1] += c.keypoints[k][1] * c.score / total;
            }
            point
        });
        faces.push(Candidate {
            x: mean(|c| c.x),
            y: mean(|c| c.y),
            width: mean(|c| c.width),
            height: mean(|c| c.height),
            score: best.score,
            keypoints,
        });
        candidates = rest;
    }
    faces
}

/// A normalised candidate in frame pixels (not yet clipped), keypoints as [`Landmarks`].
fn candidate_to_frame(c: &Candidate, lb: &Letterbox) -> FaceBox {
    let n = lb.input_width as f32;
    let point = |[x, y]: [f32; 2]| lb.to_frame([x * n, y * n]);
    let [x, y] = point([c.x, c.y]);
    let [x1, y1] = point([c.x + c.width, c.y + c.height]);
    let k = c.keypoints.map(point);
    FaceBox {
        x,
        y,
        width: x1 - x,
        height: y1 - y,
        score: c.score,
        landmarks: Some(Landmarks {
            right_eye: k[0],
            left_eye: k[1],
            nose: k[2],
            mouth: k[3],
            mouth_corners: None,
            ears: Some([k[4], k[5]]),
        }),
    }
}

/// A BlazeFace detector (any [`Variant`]).
pub struct BlazeFaceDetector {
    path: PathBuf,
    variant: Variant,
    plan: Arc<TypedRunnableModel>,
    anchors: Vec<[f32; 2]>,
    settings: DetectorSettings,
    input: Vec<f32>,
    rows: Vec<f32>,
    failed: bool,
}

impl BlazeFaceDetector {
    /// Loads and optimises the converted ONNX model of `variant` at `model_path` (batch of one,
    /// 1 thread: tract's default executor is single-threaded).
    pub fn load(
        model_path: &Path,
        variant: Variant,
        settings: DetectorSettings,
    ) -> Result<BlazeFaceDetector, crate::Error> {
        let model_error = |problem: String| crate::Error::Model {
            file: model_path.to_path_buf(),
            problem,
        };
        let plan = std::panic::catch_unwind(|| Self::plan(model_path, variant))
            .map_err(|_| {
                model_error(
                    "tract failed on this file (malformed model); reinstall the models".into(),
                )
            })?
            .map_err(|e| model_error(e.to_string()))?;
        Ok(BlazeFaceDetector {
            path: model_path.to_path_buf(),
            variant,
            plan,
            anchors: anchors(variant),
            settings,
            input: vec![0.0; 3 * variant.input_size().pow(2)],
            rows: Vec::new(),
            failed: false,
        })
    }

    /// Which network this detector runs.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    fn plan(path: &Path, variant: Variant) -> Result<Arc<TypedRunnableModel>, DetectorError> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(DetectorError::NotOnnx)?;
        let n = variant.input_size();
        let count = variant.anchor_count();
        let name = variant.name();
        let plan = model
            .with_input_fact(0, f32::fact([1, 3, n, n]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|error| DetectorError::Prepare {
                width: n,
                height: n,
                error,
            })?;
        // A model with other outputs is not the BlazeFace variant the anchors are for.
        let probe = Tensor::zero::<f32>(&[1, 3, n, n]).map_err(DetectorError::Input)?;
        let out = plan
            .run(tvec!(probe.into_tvalue()))
            .map_err(DetectorError::DoesNotRun)?;
        let shapes: Vec<Vec<usize>> = out.iter().map(|t| t.shape().to_vec()).collect();
        if shapes.len() != 2
            || shapes[0] != [1, count, REGRESSOR_WIDTH]
            || shapes[1] != [1, count, 1]
        {
            return Err(DetectorError::BlazeFaceOutputs {
                shapes,
                name,
                count,
            });
        }
        Ok(plan)
    }

    /// Runs the network on a frame; the raw outputs (regressors, logits).
    fn infer(&mut self, frame: &RgbImage) -> Result<(Vec<f32>, Vec<f32>), DetectorError> {
        let n = self.variant.input_size();
        let lb = Letterbox::centred(frame.width(), frame.height(), n);
        letterbox_into(
            frame,
            &lb,
            PixelFormat::RGB_SIGNED,
            &mut self.input,
            &mut self.rows,
        );
        let input = Tensor::from_shape(&[1, 3, n, n], &self.input).map_err(DetectorError::Input)?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(DetectorError::Run)?;
        let read = |t: &TValue| -> Result<Vec<f32>, DetectorError> {
            Ok(t.try_as_plain_ram()
                .map_err(DetectorError::Output)?
                .as_slice::<f32>()
                .map_err(DetectorError::Output)?
                .to_vec())
        };
        Ok((read(&out[0])?, read(&out[1])?))
    }
}

impl FaceDetector for BlazeFaceDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let size = frame.dimensions();
        self.detect_scaled(frame, size)
    }

    /// The part of the square input the letterboxed frame fills (128×96 of a 640×480 frame
    /// for the short-range network).
    fn reads(&self, frame: (u32, u32)) -> (u32, u32) {
        let lb = Letterbox::centred(frame.0, frame.1, self.variant.input_size());
        (lb.width as u32, lb.height as u32)
    }

    fn detect_scaled(&mut self, frame: &RgbImage, whole: (u32, u32)) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        if width == 0 || height == 0 {
            return Vec::new();
        }
        let (regressors, logits) = match self.infer(frame) {
            Ok(out) => out,
            Err(e) => {
                super::log_failure_once(&mut self.failed, &self.path, &e);
                return Vec::new();
            }
        };
        let candidates = decode(
            &regressors,
            &logits,
            &self.anchors,
            self.variant.input_size(),
            self.settings.score_threshold,
        );
        let n = self.variant.input_size();
        let lb = Letterbox::centred(width, height, n);
        let (sx, sy) = super::picture_scale((width, height), whole);
        let faces = weighted_nms(candidates, NMS_IOU)
            .iter()
            .map(|c| candidate_to_frame(c, &lb).scaled(sx, sy))
            .collect();
        super::clip_faces(faces, whole.0, whole.1, &self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(variant: Variant) -> BlazeFaceDetector {
        use crate::model::Role;
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let manifest =
            crate::model::Manifest::load(&models, &crate::model::TrustedKeys::project()).unwrap();
        let role = match variant {
            Variant::ShortRange => Role::FaceDetector,
            Variant::FullRange => Role::FaceDetectorFullRange,
            Variant::Back => Role::FaceDetectorBack,
        };
        let path = manifest.verified_path(role).unwrap().unwrap();
        let settings = DetectorSettings {
            min_face_size: 40,
            score_threshold: crate::config::DetectorKind::Blazeface.default_score_threshold(),
            max_faces: 8,
        };
        BlazeFaceDetector::load(&path, variant, settings).unwrap()
    }

    fn shipped_detector() -> BlazeFaceDetector {
        shipped(Variant::ShortRange)
    }

    fn image(relative: &str) -> RgbImage {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/blazeface")
            .join(relative);
        image::open(&path).unwrap().to_rgb8()
    }

    fn face(x: f32, y: f32, width: f32, height: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width,
            height,
            score: 1.0,
            landmarks: None,
        }
    }

    /// Face positions marked by hand (forehead to chin, cheek to cheek); see
    /// tests/data/blazeface/README.md for the images and how the 640×480 frame was composed.
    #[test]
    fn finds_the_bundled_faces_where_they_are() {
        let mut detector = shipped_detector();
        let cases: [(&str, &[FaceBox]); 3] = [
            ("faces/astronaut.jpg", &[face(180.0, 80.0, 90.0, 95.0)]),
            ("faces/cameraman.jpg", &[face(185.0, 115.0, 75.0, 88.0)]),
            // The second face there (the cameraman at 60 px, near profile, behind his camera:
            // face(468, 120, 60, 70)) is beyond the short-range model: it scores 0.34.
            (
                "faces/two_faces_640x480.jpg",
                &[face(94.0, 214.0, 72.0, 76.0)],
            ),
        ];
        for (file, expected) in cases {
            let found = detector.detect(&image(file));
            assert_eq!(found.len(), expected.len(), "{file}: {found:?}");
            for want in expected {
                let best = found.iter().map(|f| f.iou(want)).fold(0.0, f32::max);
                assert!(best > 0.5, "{file}: no box near {want:?} in {found:?}");
            }
            assert!(
                found.iter().all(|f| (0.5..=1.0).contains(&f.score)),
                "{found:?}"
            );
        }
    }

    /// The full-range and back-camera networks find the same faces, and the full-range one
    /// also the small near-profile cameraman that short-range misses.
    #[test]
    fn full_range_and_back_find_the_bundled_faces() {
        for variant in [Variant::FullRange, Variant::Back] {
            let mut detector = shipped(variant);
            assert_eq!(detector.variant(), variant);
            for (file, want) in [
                ("faces/astronaut.jpg", face(180.0, 80.0, 90.0, 95.0)),
                ("faces/cameraman.jpg", face(185.0, 115.0, 75.0, 88.0)),
                ("faces/two_faces_640x480.jpg", face(94.0, 214.0, 72.0, 76.0)),
            ] {
                let found = detector.detect(&image(file));
                let best = found.iter().map(|f| f.iou(&want)).fold(0.0, f32::max);
                assert!(
                    best > 0.5,
                    "{variant:?} {file}: no box near {want:?} in {found:?}"
                );
            }
            // The back-camera network takes the coffee cup for a face (score 0.65); det-bench
            // counts such false positives. The full-range one finds nothing in these.
            if variant == Variant::Back {
                continue;
            }
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blazeface/nonfaces");
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let found = detector.detect(&image::open(&path).unwrap().to_rgb8());
                assert!(
                    found.is_empty(),
                    "{variant:?} {}: {found:?}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn finds_nothing_in_the_bundled_non_face_images() {
        let mut detector = shipped_detector();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blazeface/nonfaces");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 5);
        for file in files {
            let frame = image::open(&file).unwrap().to_rgb8();
            let found = detector.detect(&frame);
            assert!(found.is_empty(), "{}: {found:?}", file.display());
        }
        // A cat's face is BlazeFace's borderline case: it scores about 0.50, right at the
        // threshold. Pin that it does not become a confident face.
        let cat = detector.detect(&image("animals/chelsea.jpg"));
        assert!(cat.iter().all(|f| f.score < 0.55), "{cat:?}");
    }

    #[test]
    fn max_faces_min_face_size_and_odd_frames() {
        let mut detector = shipped_detector();
        detector.settings.min_face_size = 100; // the astronaut's face is ~94 px
        assert!(detector.detect(&image("faces/astronaut.jpg")).is_empty());
        detector.settings.min_face_size = 40;
        detector.settings.score_threshold = 0.2;
        detector.settings.max_faces = 1;
        assert_eq!(detector.detect(&image("faces/cameraman.jpg")).len(), 1);
        assert!(detector.detect(&RgbImage::new(0, 0)).is_empty());
        assert!(detector.detect(&RgbImage::new(1, 300)).is_empty());
    }

    #[test]
    fn a_model_that_is_not_blazeface_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.onnx");
        std::fs::write(
            &path,
            crate::model::onnx_build::tests_support::tiny_age_gender_onnx(128),
        )
        .unwrap();
        let settings = shipped_detector().settings;
        let err = BlazeFaceDetector::load(&path, Variant::ShortRange, settings)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("tiny.onnx") && err.contains("BlazeFace"),
            "{err}"
        );
        // The full-range file loaded as short-range: its 2,304 anchors are refused.
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/blazeface_full_range.onnx");
        let err = BlazeFaceDetector::load(&full, Variant::ShortRange, settings)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("blazeface_full_range.onnx") && err.contains("detector.kind"),
            "{err}"
        );
        let err =
            BlazeFaceDetector::load(&dir.path().join("none.onnx"), Variant::ShortRange, settings)
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("none.onnx"), "{err}");
    }

    #[test]
    fn anchors_follow_the_two_grids() {
        let a = anchors(Variant::ShortRange);
        assert_eq!(a.len(), 896);
        assert_eq!(Variant::ShortRange.anchor_count(), 896);
        // Back-camera: the same layout over a 256-pixel input.
        assert_eq!(anchors(Variant::Back), a);
        // Full-range: one 48×48 grid, one anchor per cell.
        let full = anchors(Variant::FullRange);
        assert_eq!(
            (full.len(), Variant::FullRange.anchor_count()),
            (2304, 2304)
        );
        assert_eq!(full[0], [0.5 / 48.0, 0.5 / 48.0]);
        assert_eq!(full[1], [1.5 / 48.0, 0.5 / 48.0]);
        assert_eq!(full[48], [0.5 / 48.0, 1.5 / 48.0]);
        assert_eq!(full[2303], [47.5 / 48.0, 47.5 / 48.0]);
        // First cell of the 16×16 grid, twice.
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[1], a[0]);
        // Row 0, column 1 of the stride-8 grid.
        assert_eq!(a[2], [1.5 / 16.0, 0.5 / 16.0]);
        // Row 1, column 0.
        assert_eq!(a[32], [0.5 / 16.0, 1.5 / 16.0]);
        // Last cell of the 16×16 grid, then the 8×8 grid with six per cell.
        assert_eq!(a[511], [15.5 / 16.0, 15.5 / 16.0]);
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[517], a[512]);
        assert_eq!(a[518], [1.5 / 8.0, 0.5 / 8.0]);
        assert_eq!(a[895], [7.5 / 8.0, 7.5 / 8.0]);
    }

    #[test]
    fn decode_places_boxes_on_their_anchors() {
        let a = anchors(Variant::ShortRange);
        let mut reg = vec![0f32; 896 * 16];
        let mut logits = vec![-10f32; 896];
        // Anchor 34 (stride 8, row 1, column 1: centre 1.5/16 = 0.09375): shifted by
        // (+12.8, −6.4) input px, 32×16 px.
        reg[34 * 16..34 * 16 + 4].copy_from_slice(&[12.8, -6.4, 32.0, 16.0]);
        // Its right eye 6.4 px right of the anchor, its left ear 6.4 px below it.
        reg[34 * 16 + 4] = 6.4;
        reg[34 * 16 + 15] = 6.4;
        logits[34] = 2.0;
        // Anchor 600 (stride 16): (600 − 512) / 6 = cell 14 → row 1, column 6.
        reg[600 * 16 + 2] = 64.0;
        reg[600 * 16 + 3] = 64.0;
        logits[600] = 0.0; // probability exactly 0.5
        logits[0] = 1e9; // clipped, no overflow; but a zero-size box is dropped
        let got = decode(&reg, &logits, &a, 128, 0.5);
        assert_eq!(got.len(), 2, "{got:?}");
        let c = got[0];
        let (cx, cy) = (0.09375 + 0.1, 0.09375 - 0.05);
        assert!((c.x - (cx - 0.125)).abs() < 1e-6 && (c.y - (cy - 0.0625)).abs() < 1e-6);
        assert!((c.width - 0.25).abs() < 1e-6 && (c.height - 0.125).abs() < 1e-6);
        assert!((c.score - sigmoid(2.0)).abs() < 1e-6);
        assert_eq!(c.keypoints[0], [0.09375 + 0.05, 0.09375]);
        assert_eq!(c.keypoints[5], [0.09375, 0.09375 + 0.05]);
        let d = got[1];
        assert_eq!(
            [d.x + d.width / 2.0, d.y + d.height / 2.0],
            [6.5 / 8.0, 1.5 / 8.0]
        );
        assert_eq!(d.score, 0.5);
        assert_eq!(decode(&reg, &logits, &a, 128, 0.6).len(), 1);
        // The same raw outputs from a 256-pixel network are half the size.
        let big = decode(&reg, &logits, &a, 256, 0.5);
        assert!((big[0].width - 0.125).abs() < 1e-6, "{big:?}");
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_apart_boxes() {
        let c = |x: f32, score: f32| Candidate {
            x,
            y: 0.0,
            width: 0.2,
            height: 0.2,
            score,
            keypoints: [[x + 0.1, 0.1]; KEYPOINTS],
        };
        let faces = weighted_nms(vec![c(0.0, 0.6), c(0.02, 0.9), c(0.5, 0.7)], 0.3);
        assert_eq!(faces.len(), 2);
        assert_eq!(faces[0].score, 0.9);
        // Weighted mean of x = 0.02 (0.9) and 0.0 (0.6), keypoints likewise.
        assert!((faces[0].x - 0.012).abs() < 1e-6, "{:?}", faces[0]);
        assert!((faces[0].keypoints[3][0] - 0.112).abs() < 1e-6);
        assert_eq!(faces[1], c(0.5, 0.7));
        assert!(weighted_nms(vec![], 0.3).is_empty());
    }
}
