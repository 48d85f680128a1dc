//! Face detection with YuNet (libfacedetection's network, Shiqi Yu et al.; weights under the
//! Apache-2.0 licence of `libfacedetection.train`, trained on WIDER FACE — see
//! `models/LICENSE.yunet` for what that means for commercial use). The file is the repository's
//! `onnx/yunet_s_dynamic.onnx`, unchanged; tract reads it with the file's shape hints
//! (`value_info`, whose symbolic batch it cannot unify) ignored.
//!
//! Per frame: the frame is scaled (aspect kept, area-averaged) so that its longer side is the
//! configured input size, placed at the top left of an input whose sides are multiples of 32
//! (the network's largest stride), padded with zeros, given as BGR bytes 0–255 (the network was
//! trained on OpenCV's images without normalisation), and run once. Three heads (strides 8, 16
//! and 32) give per cell a class and an objectness probability, a box and five landmarks; the
//! decoding is anchor-free:
//!
//! - score = √(class · objectness)
//! - box centre = (column + dx, row + dy) · stride, side = exp(dw or dh) · stride
//! - landmark k = (column + kx, row + ky) · stride: right eye, left eye, nose tip, right and
//!   left mouth corner (the person's right and left)
//!
//! then greedy non-maximum suppression (IoU [`NMS_IOU`]) and back to frame pixels. A 640×480
//! frame is read as it is by default (input 640×480; 384 reads it at 384×288, scale 0.6, and
//! loses most faces under 40 px). The daemon confirms YuNet's candidates with short-range
//! BlazeFace ([`super::cascade`]): alone, YuNet boxes the bundled coffee cup (score 0.62).

use super::letterbox::{letterbox_into, Letterbox, PixelFormat};
use super::{
    clip_faces, merge_boxes, DetectorError, DetectorSettings, FaceBox, FaceDetector, Landmarks,
    Reframe,
};
use image::RgbImage;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// The network's strides, in the order of its outputs.
pub const STRIDES: [usize; 3] = [8, 16, 32];
/// Overlap above which two boxes are one face (OpenCV's `FaceDetectorYN` default).
pub const NMS_IOU: f32 = 0.3;
/// Default threshold on the score √(class · objectness) of a plain YuNet detector.
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.6;
/// Threshold of YuNet as the daemon's proposer (`detector.kind = "yunet"`): its candidates
/// are confirmed by short-range BlazeFace ([`super::cascade`]), whose score
/// `detector.score_threshold` then bounds.
pub const PROPOSE_THRESHOLD: f32 = 0.5;
/// The default longer side of the network's input, in pixels.
pub const DEFAULT_INPUT_SIZE: u32 = crate::config::DEFAULT_YUNET_INPUT_SIZE;
/// YuNet's box re-framed as BlazeFace short-range's (which the age/gender models were trained
/// on; YuNet's takes in the forehead). Fitted by `agecam-host fit-framing --detector yunet`
/// (least squares) on the first 2,000 FairFace training chips (1,995 found by both detectors):
/// mean IoU with BlazeFace's box 0.807 as YuNet frames it, 0.861 re-framed.
pub const REFRAME: Reframe = Reframe {
    dx: 0.0079,
    dy: 0.0227,
    sw: 0.5977,
    sh: 0.4486,
};

/// Values per cell in each output: class, objectness, box, landmarks.
const WIDTHS: [usize; 4] = [1, 1, 4, 10];

/// The input size a `frame_width`×`frame_height` frame is read at when its longer side is
/// scaled to `long_side`: each side rounded up to a multiple of 32.
pub fn input_shape(frame_width: u32, frame_height: u32, long_side: u32) -> (usize, usize) {
    let longer = frame_width.max(frame_height).max(1) as f32;
    let scale = long_side as f32 / longer;
    let up = |side: u32| -> usize {
        let scaled = (side as f32 * scale).round().max(1.0) as usize;
        scaled.div_ceil(32) * 32
    };
    (up(frame_width), up(frame_height))
}

/// The raw outputs of one run, per stride: class and objectness probabilities, boxes (4 per
/// cell) and landmarks (10 per cell), cells row by row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawOutputs {
    pub cls: [Vec<f32>; 3],
    pub obj: [Vec<f32>; 3],
    pub bbox: [Vec<f32>; 3],
    pub kps: [Vec<f32>; 3],
}

/// Decodes the raw outputs of a network run on an `input_width`×`input_height` input into
/// faces in input pixels scoring at least `threshold` (before suppression).
pub fn decode(
    raw: &RawOutputs,
    input_width: usize,
    input_height: usize,
    threshold: f32,
) -> Vec<FaceBox> {
    let mut faces = Vec::new();
    for (level, &stride) in STRIDES.iter().enumerate() {
        let cols = input_width / stride;
        let rows = input_height / stride;
        let s = stride as f32;
        for cell in 0..(cols * rows).min(raw.cls[level].len()) {
            let cls = raw.cls[level][cell].clamp(0.0, 1.0);
            let obj = raw.obj[level][cell].clamp(0.0, 1.0);
            let score = (cls * obj).sqrt();
            if score < threshold {
                continue;
            }
            let (col, row) = ((cell % cols) as f32, (cell / cols) as f32);
            let b = &raw.bbox[level][cell * 4..cell * 4 + 4];
            let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
            let (w, h) = (b[2].min(20.0).exp() * s, b[3].min(20.0).exp() * s);
            let k = &raw.kps[level][cell * 10..cell * 10 + 10];
            let point = |i: usize| [(col + k[2 * i]) * s, (row + k[2 * i + 1]) * s];
            let corners = [point(3), point(4)];
            faces.push(FaceBox {
                x: cx - w / 2.0,
                y: cy - h / 2.0,
                width: w,
                height: h,
                score,
                landmarks: Some(Landmarks {
                    right_eye: point(0),
                    left_eye: point(1),
                    nose: point(2),
                    mouth: [
                        (corners[0][0] + corners[1][0]) / 2.0,
                        (corners[0][1] + corners[1][1]) / 2.0,
                    ],
                    mouth_corners: Some(corners),
                    ears: None,
                }),
            });
        }
    }
    faces
}

/// A YuNet detector; see the module docs.
pub struct YuNetDetector {
    path: PathBuf,
    model: InferenceModel,
    /// The plan for the last input shape (frames keep their size in a run).
    plan: Option<((usize, usize), Arc<TypedRunnableModel>)>,
    long_side: u32,
    settings: DetectorSettings,
    reframe: Option<Reframe>,
    input: Vec<f32>,
    rows: Vec<f32>,
    failed: bool,
}

impl YuNetDetector {
    /// Loads the YuNet ONNX file at `model_path`, reading frames with their longer side scaled
    /// to `long_side` pixels (a multiple of 32). The model is checked by preparing and running it
    /// once at 640×480's input shape.
    pub fn load(
        model_path: &Path,
        long_side: u32,
        settings: DetectorSettings,
    ) -> Result<YuNetDetector, crate::Error> {
        let model_error = |problem: String| crate::Error::Model {
            file: model_path.to_path_buf(),
            problem,
        };
        let model = std::panic::catch_unwind(|| {
            tract_onnx::onnx()
                .with_ignore_value_info(true)
                .model_for_path(model_path)
        })
        .map_err(|_| {
            model_error("tract failed on this file (malformed model); reinstall the models".into())
        })?
        .map_err(|e| model_error(format!("not a loadable ONNX model ({e:#})")))?;
        let mut detector = YuNetDetector {
            path: model_path.to_path_buf(),
            model,
            plan: None,
            long_side,
            settings,
            reframe: Some(REFRAME),
            input: Vec::new(),
            rows: Vec::new(),
            failed: false,
        };
        let probe = RgbImage::new(640, 480);
        detector
            .infer(&probe)
            .map_err(|e| model_error(e.to_string()))?;
        Ok(detector)
    }

    /// Report YuNet's own boxes rather than boxes re-framed as BlazeFace's ([`REFRAME`]).
    pub fn with_native_boxes(mut self) -> YuNetDetector {
        self.reframe = None;
        self
    }

    /// The longer side of the network's input, in pixels.
    pub fn input_size(&self) -> u32 {
        self.long_side
    }

    /// A runnable plan for a `width`×`height` input, made once per shape.
    fn plan_for(
        &mut self,
        width: usize,
        height: usize,
    ) -> Result<Arc<TypedRunnableModel>, DetectorError> {
        if let Some((shape, plan)) = &self.plan {
            if *shape == (width, height) {
                return Ok(plan.clone());
            }
        }
        let model = self.model.clone();
        let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            model
                .with_input_fact(0, f32::fact([1, 3, height, width]).into())
                .and_then(|m| m.into_optimized())
                .and_then(|m| m.into_runnable())
        }))
        .map_err(|_| DetectorError::PrepareCrashed)?
        .map_err(|error| DetectorError::Prepare {
            width,
            height,
            error,
        })?;
        self.plan = Some(((width, height), plan.clone()));
        Ok(plan)
    }

    /// Runs the network on a frame: its letterbox and raw outputs.
    pub fn infer(&mut self, frame: &RgbImage) -> Result<(Letterbox, RawOutputs), DetectorError> {
        let (w, h) = input_shape(frame.width(), frame.height(), self.long_side);
        let plan = self.plan_for(w, h)?;
        let lb = Letterbox::top_left(frame.width(), frame.height(), w, h);
        self.input.resize(3 * w * h, 0.0);
        letterbox_into(
            frame,
            &lb,
            PixelFormat::BGR_BYTES,
            &mut self.input,
            &mut self.rows,
        );
        Ok((lb, self.run_input(&plan, w, h)?))
    }

    /// Runs the network on the prepared input (`self.input`, NCHW `1×3×h×w`).
    fn run_input(
        &self,
        plan: &Arc<TypedRunnableModel>,
        w: usize,
        h: usize,
    ) -> Result<RawOutputs, DetectorError> {
        let input = Tensor::from_shape(&[1, 3, h, w], &self.input).map_err(DetectorError::Input)?;
        let out = plan
            .run(tvec!(input.into_tvalue()))
            .map_err(DetectorError::DoesNotRun)?;
        Self::read_outputs(&out, w, h)
    }

    /// The twelve outputs (cls, obj, bbox, kps, each at strides 8, 16, 32), shapes checked.
    fn read_outputs(
        out: &[TValue],
        width: usize,
        height: usize,
    ) -> Result<RawOutputs, DetectorError> {
        if out.len() != 12 {
            return Err(DetectorError::YuNetOutputCount(out.len()));
        }
        let mut raw = RawOutputs::default();
        for (group, &per_cell) in WIDTHS.iter().enumerate() {
            for (level, &stride) in STRIDES.iter().enumerate() {
                let t = &out[group * 3 + level];
                let cells = (width / stride) * (height / stride);
                if t.shape() != [1, cells, per_cell] {
                    return Err(DetectorError::YuNetOutputShape {
                        index: group * 3 + level,
                        shape: t.shape().to_vec(),
                        cells,
                        per_cell,
                        width,
                        height,
                    });
                }
                let values = t
                    .try_as_plain_ram()
                    .map_err(DetectorError::Output)?
                    .as_slice::<f32>()
                    .map_err(DetectorError::Output)?
                    .to_vec();
                let slot = match group {
                    0 => &mut raw.cls,
                    1 => &mut raw.obj,
                    2 => &mut raw.bbox,
                    _ => &mut raw.kps,
                };
                slot[level] = values;
            }
        }
        Ok(raw)
    }
}

impl FaceDetector for YuNetDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        if width == 0 || height == 0 {
            return Vec::new();
        }
        let (lb, raw) = match self.infer(frame) {
            Ok(out) => out,
            Err(e) => {
                super::log_failure_once(&mut self.failed, &self.path, &e);
                return Vec::new();
            }
        };
        let candidates = decode(
            &raw,
            lb.input_width,
            lb.input_height,
            self.settings.score_threshold,
        );
        let faces = merge_boxes(candidates, NMS_IOU)
            .into_iter()
            .map(|f| {
                let [x, y] = lb.to_frame([f.x, f.y]);
                let f = FaceBox {
                    x,
                    y,
                    width: f.width / lb.scale,
                    height: f.height / lb.scale,
                    landmarks: f.landmarks.map(|l| l.map(|p| lb.to_frame(p))),
                    ..f
                };
                match self.reframe {
                    Some(reframe) => reframe.apply(f),
                    None => f,
                }
            })
            .collect();
        clip_faces(faces, width, height, &self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(threshold: f32) -> YuNetDetector {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let manifest =
            crate::model::Manifest::load(&models, &crate::model::TrustedKeys::project()).unwrap();
        let path = manifest
            .verified_path(crate::model::Role::FaceDetectorYunet)
            .unwrap()
            .unwrap();
        let settings = DetectorSettings {
            min_face_size: 20,
            score_threshold: threshold,
            max_faces: 8,
        };
        YuNetDetector::load(&path, DEFAULT_INPUT_SIZE, settings).unwrap()
    }

    fn image(relative: &str) -> RgbImage {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(relative);
        image::open(&path).unwrap().to_rgb8()
    }

    /// tract's outputs against onnxruntime's on the same synthetic input
    /// (tests/data/yunet/make_golden.py).
    #[test]
    fn outputs_match_onnxruntime() {
        let mut detector = shipped(DEFAULT_SCORE_THRESHOLD);
        let (w, h) = (384, 288);
        let plan = detector.plan_for(w, h).unwrap();
        detector.input = (0..3 * h * w)
            .map(|i| {
                let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
                ((7 * x + 13 * y + 29 * c) % 256) as f32
            })
            .collect();
        let raw = detector.run_input(&plan, w, h).unwrap();
        let golden: Vec<f32> = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/yunet/golden.bin"),
        )
        .unwrap()
        .as_chunks::<4>()
        .0
        .iter()
        .map(|&b| f32::from_le_bytes(b))
        .collect();
        let ours: Vec<f32> = [&raw.cls, &raw.obj, &raw.bbox, &raw.kps]
            .into_iter()
            .flat_map(|group| group.iter().flatten().copied())
            .collect();
        assert_eq!(ours.len(), golden.len());
        // Summation order differs between runtimes: within 2e-3 of 1 + |value|.
        let worst = ours
            .iter()
            .zip(&golden)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0f32, f32::max);
        assert!(worst < 2e-3, "largest difference {worst} of 1 + |value|");
    }

    /// The bundled faces (positions marked by hand, tests/data/blazeface/README.md), with the
    /// landmarks where a face has them: eyes above the nose above the mouth, the person's right
    /// eye on the image's left.
    #[test]
    fn finds_the_bundled_faces_with_their_landmarks() {
        let mut detector = shipped(DEFAULT_SCORE_THRESHOLD);
        let face = |x, y, w, h| FaceBox::new(x, y, w, h, 1.0);
        let cases: [(&str, &[FaceBox]); 3] = [
            (
                "blazeface/faces/astronaut.jpg",
                &[face(180.0, 80.0, 90.0, 95.0)],
            ),
            (
                "blazeface/faces/cameraman.jpg",
                &[face(185.0, 115.0, 75.0, 88.0)],
            ),
            // Both faces, the near-profile cameraman at 60 px too (short-range BlazeFace
            // misses him).
            (
                "blazeface/faces/two_faces_640x480.jpg",
                &[
                    face(94.0, 214.0, 72.0, 76.0),
                    face(468.0, 120.0, 60.0, 70.0),
                ],
            ),
        ];
        for (file, expected) in cases {
            let found = detector.detect(&image(file));
            assert_eq!(found.len(), expected.len(), "{file}: {found:?}");
            for want in expected {
                let best = found
                    .iter()
                    .max_by(|a, b| a.iou(want).total_cmp(&b.iou(want)))
                    .unwrap();
                assert!(
                    best.iou(want) > 0.4,
                    "{file}: no box near {want:?} in {found:?}"
                );
                let l = best.landmarks.expect("YuNet gives landmarks");
                assert!(l.right_eye[0] < l.left_eye[0], "{file}: {l:?}");
                assert!(
                    l.nose[1] > l.right_eye[1].min(l.left_eye[1]),
                    "{file}: {l:?}"
                );
                assert!(l.mouth[1] > l.nose[1], "{file}: {l:?}");
                for [x, y] in [l.right_eye, l.left_eye, l.nose, l.mouth] {
                    assert!(
                        x >= best.x - 5.0
                            && x <= best.x + best.width + 5.0
                            && y >= best.y - 5.0
                            && y <= best.y + best.height + 5.0,
                        "{file}: landmark ({x}, {y}) outside {best:?}"
                    );
                }
            }
        }
    }

    /// Alone, YuNet can take the bundled coffee cup for a face: why the daemon confirms its
    /// candidates (`pipeline::tests` checks the confirmed detector on every non-face image).
    #[test]
    fn alone_it_boxes_the_coffee_cup() {
        // At 384 px (the cup is not boxed at the default 640).
        let mut detector = shipped(DEFAULT_SCORE_THRESHOLD);
        detector.long_side = 384;
        let found = detector.detect(&image("blazeface/nonfaces/coffee.jpg"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].score < 0.7, "{found:?}");
    }

    #[test]
    fn a_model_that_is_not_yunet_is_refused_with_its_name() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let settings = shipped(0.5).settings;
        let err = YuNetDetector::load(&models.join("blazeface_short_range.onnx"), 384, settings)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("blazeface_short_range.onnx") && err.contains("detector.kind"),
            "{err}"
        );
        let err = YuNetDetector::load(&models.join("none.onnx"), 384, settings)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("none.onnx"), "{err}");
    }

    #[test]
    fn odd_frames_and_settings() {
        let mut detector = shipped(DEFAULT_SCORE_THRESHOLD);
        assert!(detector.detect(&RgbImage::new(0, 0)).is_empty());
        assert!(detector.detect(&RgbImage::new(1, 300)).is_empty());
        // A portrait frame plans a second input shape.
        let frame = image("blazeface/faces/astronaut.jpg");
        let portrait = image::imageops::rotate90(&frame);
        let _ = detector.detect(&portrait);
        assert_eq!(detector.detect(&frame).len(), 1);
        detector.settings.min_face_size = 200;
        assert!(detector.detect(&frame).is_empty());
    }

    #[test]
    fn input_shapes_are_multiples_of_32() {
        assert_eq!(input_shape(640, 480, 384), (384, 288));
        assert_eq!(input_shape(640, 480, 320), (320, 256));
        assert_eq!(input_shape(1280, 720, 384), (384, 224));
        assert_eq!(input_shape(480, 640, 384), (288, 384));
        assert_eq!(input_shape(64, 64, 384), (384, 384));
        assert_eq!(input_shape(1, 1000, 320), (32, 320));
    }

    #[test]
    fn decode_places_boxes_and_landmarks_on_their_cells() {
        // A 64×32 input: 8×4 cells at stride 8, 4×2 at 16, 2×1 at 32.
        let (w, h) = (64, 32);
        let mut raw = RawOutputs::default();
        for (level, &stride) in STRIDES.iter().enumerate() {
            let cells = (w / stride) * (h / stride);
            raw.cls[level] = vec![0.0; cells];
            raw.obj[level] = vec![0.0; cells];
            raw.bbox[level] = vec![0.0; cells * 4];
            raw.kps[level] = vec![0.0; cells * 10];
        }
        // Stride 8, row 2, column 3 (cell 19): cls 0.81, obj 1 → score 0.9; centre offset
        // (0.5, 0.25) cells, size e^1 × 8 by 8.
        raw.cls[0][19] = 0.81;
        raw.obj[0][19] = 1.0;
        raw.bbox[0][19 * 4..19 * 4 + 4].copy_from_slice(&[0.5, 0.25, 1.0, 0.0]);
        // Right eye at (+1, −1) cells, left mouth corner at (2, 1).
        raw.kps[0][19 * 10] = 1.0;
        raw.kps[0][19 * 10 + 1] = -1.0;
        raw.kps[0][19 * 10 + 8] = 2.0;
        raw.kps[0][19 * 10 + 9] = 1.0;
        // Stride 32, cell 1: score √(0.25 · 0.64) = 0.4.
        raw.cls[2][1] = 0.25;
        raw.obj[2][1] = 0.64;
        let faces = decode(&raw, w, h, 0.5);
        assert_eq!(faces.len(), 1, "{faces:?}");
        let f = faces[0];
        assert!((f.score - 0.9).abs() < 1e-6);
        let side = std::f32::consts::E * 8.0;
        assert!((f.x - (3.5 * 8.0 - side / 2.0)).abs() < 1e-4, "{f:?}");
        assert!((f.y - (2.25 * 8.0 - 4.0)).abs() < 1e-4, "{f:?}");
        assert!((f.width - side).abs() < 1e-4 && (f.height - 8.0).abs() < 1e-4);
        let l = f.landmarks.unwrap();
        assert_eq!(l.right_eye, [32.0, 8.0]);
        assert_eq!(l.nose, [24.0, 16.0]);
        assert_eq!(l.mouth_corners.unwrap()[1], [40.0, 24.0]);
        assert_eq!(l.mouth, [(24.0 + 40.0) / 2.0, 20.0]);
        assert_eq!(decode(&raw, w, h, 0.3).len(), 2);
    }
}
