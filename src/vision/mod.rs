//! Vision: finding faces in a frame and cutting them out the way the age/gender model expects.
//!
//! Detectors sit behind [`FaceDetector`]: YuNet ([`yunet`], the research default), BlazeFace
//! ([`blazeface`]; its back-camera network confirmed by its short-range one, [`cascade`], is the
//! commercial default) and the SeetaFace cascade ([`seeta`], the fallback). Every detector but
//! SeetaFace also returns each face's [`Landmarks`]. The crop code in [`crop`] is shared with the
//! host tool's training-crop maker so the kiosk and the training set frame faces identically.

pub mod blazeface;
pub mod cascade;
pub mod crop;
pub mod letterbox;
pub mod pose;
pub mod seeta;
pub mod tiled;
pub mod yunet;

pub use blazeface::BlazeFaceDetector;
pub use cascade::CascadeDetector;
pub use seeta::SeetaDetector;
pub use yunet::YuNetDetector;

use image::RgbImage;
use tract_onnx::prelude::TractError;

/// Why a neural face detector (BlazeFace, YuNet) cannot be prepared or run. The file is named
/// by [`crate::Error::Model`] when loading, and by the log line when a frame fails.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("not a loadable ONNX model ({0:#})")]
    NotOnnx(TractError),
    #[error("tract failed preparing this model (malformed model)")]
    PrepareCrashed,
    #[error("tract cannot prepare this model for a 1x3x{height}x{width} input ({error:#})")]
    Prepare {
        width: usize,
        height: usize,
        error: TractError,
    },
    /// The input tensor could not be made.
    #[error("{0}")]
    Input(TractError),
    /// Running the network failed (the check after loading, or a frame).
    #[error("the model does not run ({0:#})")]
    DoesNotRun(TractError),
    /// A frame's inference failed.
    #[error("{0:#}")]
    Run(TractError),
    /// An output is not plain `f32` values.
    #[error("{0}")]
    Output(TractError),
    #[error(
        "the model has {0} outputs; YuNet has 12 (cls, obj, bbox, kps at strides 8, 16, 32; is detector.kind right for this file?)"
    )]
    YuNetOutputCount(usize),
    #[error(
        "output {index} has shape {shape:?}; YuNet gives [1, {cells}, {per_cell}] for a {width}x{height} input (is detector.kind right for this file?)"
    )]
    YuNetOutputShape {
        index: usize,
        shape: Vec<usize>,
        cells: usize,
        per_cell: usize,
        width: usize,
        height: usize,
    },
    #[error(
        "outputs have shapes {shapes:?}; BlazeFace {name} gives [1, {count}, 16] and [1, {count}, 1] (is detector.kind right for this file?)"
    )]
    BlazeFaceOutputs {
        shapes: Vec<Vec<usize>>,
        name: &'static str,
        count: usize,
    },
}

/// Facial landmarks in frame pixel coordinates. "Right" and "left" are the person's own: their
/// right eye appears on the image's left in an unmirrored camera frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Landmarks {
    pub right_eye: [f32; 2],
    pub left_eye: [f32; 2],
    pub nose: [f32; 2],
    /// The centre of the mouth (BlazeFace's keypoint; YuNet's two corners' midpoint).
    pub mouth: [f32; 2],
    /// The mouth's right and left corners (YuNet).
    pub mouth_corners: Option<[[f32; 2]; 2]>,
    /// The right and left ear tragions (BlazeFace).
    pub ears: Option<[[f32; 2]; 2]>,
}

impl Landmarks {
    /// Every point through `f` (a change of coordinates).
    pub fn map(self, f: impl Fn([f32; 2]) -> [f32; 2]) -> Landmarks {
        Landmarks {
            right_eye: f(self.right_eye),
            left_eye: f(self.left_eye),
            nose: f(self.nose),
            mouth: f(self.mouth),
            mouth_corners: self.mouth_corners.map(|[a, b]| [f(a), f(b)]),
            ears: self.ears.map(|[a, b]| [f(a), f(b)]),
        }
    }

    /// Distance between the eye centres, in pixels.
    pub fn eye_distance(&self) -> f32 {
        let [dx, dy] = [
            self.left_eye[0] - self.right_eye[0],
            self.left_eye[1] - self.right_eye[1],
        ];
        dx.hypot(dy)
    }
}

/// A face found in a frame, in frame pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    /// Detector confidence; its scale depends on the detector.
    pub score: f32,
    /// The face's landmarks, where the detector finds them (not SeetaFace).
    pub landmarks: Option<Landmarks>,
}

impl FaceBox {
    /// The box and its landmarks with x multiplied by `sx` and y by `sy` (from a smaller
    /// picture's pixels to the frame's).
    pub fn scaled(self, sx: f32, sy: f32) -> FaceBox {
        FaceBox {
            x: self.x * sx,
            y: self.y * sy,
            width: self.width * sx,
            height: self.height * sy,
            score: self.score,
            landmarks: self.landmarks.map(|l| l.map(|[x, y]| [x * sx, y * sy])),
        }
    }

    /// A box without landmarks.
    pub fn new(x: f32, y: f32, width: f32, height: f32, score: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width,
            height,
            score,
            landmarks: None,
        }
    }

    /// The same face `dx`, `dy` pixels further right and down (landmarks too).
    pub fn translated(self, dx: f32, dy: f32) -> FaceBox {
        FaceBox {
            x: self.x + dx,
            y: self.y + dy,
            landmarks: self.landmarks.map(|l| l.map(|[x, y]| [x + dx, y + dy])),
            ..self
        }
    }

    pub fn area(&self) -> f32 {
        self.width * self.height
    }

    pub fn center(&self) -> (f32, f32) {
        (self.x + self.width / 2.0, self.y + self.height / 2.0)
    }

    /// Intersection over union with another box (0 when apart, 1 when identical).
    pub fn iou(&self, other: &FaceBox) -> f32 {
        let ix = (self.x + self.width).min(other.x + other.width) - self.x.max(other.x);
        let iy = (self.y + self.height).min(other.y + other.height) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.area() + other.area() - inter)
    }
}

/// Links boxes seen before (`old`) to this frame's boxes (`new`) by overlap: greedy, best
/// intersection-over-union first, each box used at most once, pairs below `min_iou` never
/// linked. Returns `(old index, new index)` pairs. With the few faces a kiosk sees per frame
/// greedy matching is optimal in practice and needs no assignment solver. The visit tracker
/// and the detection schedule both follow faces with it.
pub fn match_by_overlap<'a>(
    old: impl ExactSizeIterator<Item = &'a FaceBox>,
    new: &[FaceBox],
    min_iou: f32,
) -> Vec<(usize, usize)> {
    let old: Vec<&FaceBox> = old.collect();
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, o) in old.iter().enumerate() {
        for (j, n) in new.iter().enumerate() {
            let iou = o.iou(n);
            if iou >= min_iou {
                pairs.push((iou, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut old_taken = vec![false; old.len()];
    let mut new_taken = vec![false; new.len()];
    let mut linked = Vec::new();
    for (_, i, j) in pairs {
        if !old_taken[i] && !new_taken[j] {
            old_taken[i] = true;
            new_taken[j] = true;
            linked.push((i, j));
        }
    }
    linked
}

/// Greedy non-maximum suppression: highest score first, dropping every box overlapping a
/// kept one by more than `iou`.
pub fn merge_boxes(mut boxes: Vec<FaceBox>, iou: f32) -> Vec<FaceBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<FaceBox> = Vec::with_capacity(boxes.len());
    for b in boxes {
        if kept.iter().all(|k| k.iou(&b) <= iou) {
            kept.push(b);
        }
    }
    kept
}

/// How a detector's box is re-framed into the box the age/gender models were trained on
/// (short-range BlazeFace's on the whole frame): a square whose centre is moved by (`dx`·w,
/// `dy`·h) and whose side is `sw`·w + `sh`·h, for a box w × h. Landmarks are not moved.
/// `agecam-host fit-framing` fits one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reframe {
    pub dx: f32,
    pub dy: f32,
    pub sw: f32,
    pub sh: f32,
}

impl Reframe {
    /// `face` re-framed (its score and landmarks kept).
    pub fn apply(&self, face: FaceBox) -> FaceBox {
        let (cx, cy) = face.center();
        let (cx, cy) = (cx + self.dx * face.width, cy + self.dy * face.height);
        let side = self.sw * face.width + self.sh * face.height;
        FaceBox {
            x: cx - side / 2.0,
            y: cy - side / 2.0,
            width: side,
            height: side,
            ..face
        }
    }
}

/// Settings every detector takes from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct DetectorSettings {
    /// Smallest face side (the box's longer side), in frame pixels.
    pub min_face_size: u32,
    /// Score a face must reach, on the detector's own scale.
    pub score_threshold: f32,
    pub max_faces: usize,
}

/// Anything that finds faces in an RGB frame.
pub trait FaceDetector {
    /// Faces in `frame`, largest first.
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox>;

    /// The smallest picture of a `frame`-sized frame this detector gives the same faces on as
    /// on the whole frame: the size its network reads. A camera frame is then decoded only
    /// that large ([`Picture`](crate::capture::Picture)). The default, for detectors that look
    /// at full-resolution pixels (a cascade's check, SeetaFace, tiles), is the whole frame.
    fn reads(&self, frame: (u32, u32)) -> (u32, u32) {
        frame
    }

    /// Faces in `picture`, a `frame`-sized frame decoded smaller (at least
    /// [`FaceDetector::reads`]), in the whole frame's pixels, with the limits in frame pixels
    /// too. The default scales [`FaceDetector::detect`]'s boxes up; a detector that filters by
    /// size overrides it.
    fn detect_scaled(&mut self, picture: &RgbImage, frame: (u32, u32)) -> Vec<FaceBox> {
        let (sx, sy) = picture_scale(picture.dimensions(), frame);
        self.detect(picture)
            .into_iter()
            .map(|face| face.scaled(sx, sy))
            .collect()
    }
}

/// How many frame pixels one pixel of a `picture`-sized picture of a `frame`-sized frame
/// spans, across and down.
pub fn picture_scale(picture: (u32, u32), frame: (u32, u32)) -> (f32, f32) {
    (
        frame.0 as f32 / picture.0.max(1) as f32,
        frame.1 as f32 / picture.1.max(1) as f32,
    )
}

/// A detector's faces in frame pixels made final: each box clipped to the `width`×`height`
/// frame (landmarks stay where they were found), empty boxes and boxes whose longer side is
/// under `settings.min_face_size` dropped, then the `settings.max_faces` largest kept.
pub fn clip_faces(
    faces: Vec<FaceBox>,
    width: u32,
    height: u32,
    settings: &DetectorSettings,
) -> Vec<FaceBox> {
    let min_side = settings.min_face_size as f32;
    let faces = faces
        .into_iter()
        .map(|f| {
            let x0 = f.x.max(0.0);
            let y0 = f.y.max(0.0);
            let x1 = (f.x + f.width).min(width as f32);
            let y1 = (f.y + f.height).min(height as f32);
            FaceBox {
                x: x0,
                y: y0,
                width: (x1 - x0).max(0.0),
                height: (y1 - y0).max(0.0),
                ..f
            }
        })
        .filter(|f| f.width > 0.0 && f.height > 0.0 && f.width.max(f.height) >= min_side)
        .collect();
    largest_faces(faces, settings.max_faces)
}

/// Logs a detector's failed inference once, not on every frame (`failed` remembers), naming
/// its model file; the frame then has no faces.
pub(crate) fn log_failure_once(
    failed: &mut bool,
    model: &std::path::Path,
    problem: &dyn std::fmt::Display,
) {
    if !*failed {
        log::error!(
            "face detector {}: inference failed ({problem}); no faces this frame",
            model.display()
        );
        *failed = true;
    }
}

/// Keeps the `max` largest faces, largest first.
pub fn largest_faces(mut faces: Vec<FaceBox>, max: usize) -> Vec<FaceBox> {
    faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
    faces.truncate(max);
    faces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32, y: f32, w: f32, h: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width: w,
            height: h,
            score: 1.0,
            landmarks: None,
        }
    }

    #[test]
    fn matching_links_best_overlap_first_and_each_box_once() {
        let b = |x: f32| FaceBox {
            x,
            y: 0.0,
            width: 10.0,
            height: 10.0,
            score: 1.0,
            landmarks: None,
        };
        let old = [b(0.0), b(5.0), b(100.0)];
        // IoU: old[1]-new[0] 0.82, old[0]-new[1] 0.54, old[0]-new[0] 0.43, old[1]-new[1] 0.11;
        // nothing overlaps old[2] or new[2]. Best first: old[1] takes new[0], so old[0] is
        // linked to new[1] although it overlaps new[0] too.
        let new = [b(4.0), b(-3.0), b(50.0)];
        let mut m = match_by_overlap(old.iter(), &new, 0.3);
        m.sort();
        assert_eq!(m, vec![(0, 1), (1, 0)]);
        // A higher floor drops the weaker link.
        assert_eq!(match_by_overlap(old.iter(), &new, 0.6), vec![(1, 0)]);
        assert!(match_by_overlap(old.iter(), &[], 0.3).is_empty());
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(b(0.0, 0.0, 10.0, 10.0).iou(&b(0.0, 0.0, 10.0, 10.0)), 1.0);
        assert_eq!(b(0.0, 0.0, 10.0, 10.0).iou(&b(20.0, 0.0, 10.0, 10.0)), 0.0);
        // Half overlap: intersection 50, union 150.
        let iou = b(0.0, 0.0, 10.0, 10.0).iou(&b(5.0, 0.0, 10.0, 10.0));
        assert!((iou - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn largest_faces_sorts_and_truncates() {
        let faces = vec![
            b(0.0, 0.0, 10.0, 10.0),
            b(0.0, 0.0, 30.0, 30.0),
            b(0.0, 0.0, 20.0, 20.0),
        ];
        let kept = largest_faces(faces, 2);
        assert_eq!(
            kept.iter().map(|f| f.width).collect::<Vec<_>>(),
            vec![30.0, 20.0]
        );
    }
}
