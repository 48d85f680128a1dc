//! A two-stage detector made only of licence-clean parts (MediaPipe's BlazeFace networks,
//! Apache-2.0, trained on Google's own data): a *proposer* finds candidate faces in the whole
//! frame with a permissive threshold, and a *verifier* looks again at a magnified crop around
//! each candidate. A candidate is a face when the verifier finds one there overlapping it.
//!
//! The daemon's `yunet` (the research default) proposes with YuNet, which alone boxes a coffee
//! cup. Its `blazeface-cascade` (the default with `model.use = "commercial"`) proposes with
//! the back-camera network (256×256 input: it sees faces from ~24 px high in a 640×480 frame,
//! but also takes a cat or a cup for one) and verifies with the short-range network (128×128,
//! which rarely boxes what is not a face, but only sees faces that fill a good part of its
//! input): each crop is [`CONTEXT`] times the candidate's side, so the face fills ~40 % of the
//! verifier's input whatever its size in the frame. A confirmed face takes the verifier's score
//! and, by [`Keep`], the proposer's box and landmarks (YuNet's) or the verifier's, mapped back
//! to frame pixels (back-camera BlazeFace's boxes are framed unlike the training crops).

use super::{clip_faces, FaceBox, FaceDetector};
use super::{merge_boxes, DetectorSettings, Reframe};
use image::imageops::FilterType;
use image::RgbImage;

/// Side of the verifier's crop as a multiple of the candidate's longer side.
pub const CONTEXT: f32 = 2.5;
/// Score threshold of the proposer (back-camera), below the verifier's: it only nominates.
pub const PROPOSE_THRESHOLD: f32 = 0.4;
/// Default threshold on the verifier's score (`detector.score_threshold`).
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.7;
/// How much a verified box must overlap its candidate to confirm it.
pub const CONFIRM_IOU: f32 = 0.3;
/// Side a smaller crop is magnified to (bilinear) before the verifier letterboxes it.
pub const VERIFY_SIDE: u32 = 128;
/// Overlap above which two confirmed boxes are one face (two candidates can confirm the same).
pub const MERGE_IOU: f32 = 0.3;
/// At most this many candidates are verified per frame, largest first.
pub const MAX_CANDIDATES: usize = 16;

/// Whose box and landmarks a confirmed face keeps (its score is always the verifier's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keep {
    /// The proposer's: when its boxes are framed as the age/gender models' training crops
    /// were (YuNet's, re-framed), since a box found on a magnified crop is framed a little
    /// differently from one found on the whole frame.
    Proposer,
    /// The verifier's, optionally re-framed: when the proposer's boxes are framed unlike the
    /// training crops (back-camera BlazeFace's). The short-range network's boxes on a
    /// [`CONTEXT`]-times crop already agree with its boxes on the whole picture (mean IoU 0.938
    /// on 1,938 FairFace training chips, `agecam-host fit-framing --detector
    /// blazeface-cascade`; a fitted re-framing made it 0.922), so the daemon keeps them as found.
    Verifier(Option<Reframe>),
}

/// Candidates from one detector, each confirmed by another on a magnified crop.
pub struct CascadeDetector {
    proposer: Box<dyn FaceDetector>,
    verifier: Box<dyn FaceDetector>,
    keep: Keep,
    settings: DetectorSettings,
}

impl CascadeDetector {
    /// `proposer` runs on the whole frame (its own threshold and minimum size apply);
    /// `verifier` on each candidate's crop, with its threshold the cascade's
    /// `settings.score_threshold` and no minimum size of its own. `settings` also give the
    /// final minimum face size and number of faces.
    pub fn new(
        proposer: Box<dyn FaceDetector>,
        verifier: Box<dyn FaceDetector>,
        keep: Keep,
        settings: DetectorSettings,
    ) -> CascadeDetector {
        CascadeDetector {
            proposer,
            verifier,
            keep,
            settings,
        }
    }
}

/// The square crop around `face`, [`CONTEXT`] times its longer side, clipped to the frame:
/// (x, y, width, height) in frame pixels.
pub fn crop_around(face: &FaceBox, frame_width: u32, frame_height: u32) -> (u32, u32, u32, u32) {
    let side = face.width.max(face.height) * CONTEXT;
    let (cx, cy) = face.center();
    let x0 = (cx - side / 2.0).floor().max(0.0) as u32;
    let y0 = (cy - side / 2.0).floor().max(0.0) as u32;
    let x1 = ((cx + side / 2.0).ceil() as u32).min(frame_width);
    let y1 = ((cy + side / 2.0).ceil() as u32).min(frame_height);
    (
        x0.min(frame_width),
        y0.min(frame_height),
        x1.saturating_sub(x0),
        y1.saturating_sub(y0),
    )
}

impl FaceDetector for CascadeDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        let mut candidates = self.proposer.detect(frame);
        candidates.truncate(MAX_CANDIDATES);
        let mut confirmed = Vec::new();
        for candidate in &candidates {
            let (x, y, w, h) = crop_around(candidate, width, height);
            if w < 2 || h < 2 {
                continue;
            }
            let crop = image::imageops::crop_imm(frame, x, y, w, h).to_image();
            // Small crops are magnified smoothly; the verifier's own letterbox would repeat
            // pixels (nearest neighbour) when upscaling.
            let scale = (VERIFY_SIDE as f32 / w.max(h) as f32).max(1.0);
            let crop = if scale > 1.0 {
                let (sw, sh) = (
                    ((w as f32 * scale).round() as u32).max(1),
                    ((h as f32 * scale).round() as u32).max(1),
                );
                image::imageops::resize(&crop, sw, sh, FilterType::Triangle)
            } else {
                crop
            };
            let best = self
                .verifier
                .detect(&crop)
                .into_iter()
                .map(|f| {
                    let f = FaceBox {
                        x: f.x / scale,
                        y: f.y / scale,
                        width: f.width / scale,
                        height: f.height / scale,
                        landmarks: f
                            .landmarks
                            .map(|l| l.map(|[px, py]| [px / scale, py / scale])),
                        ..f
                    };
                    f.translated(x as f32, y as f32)
                })
                .filter(|f| f.iou(candidate) >= CONFIRM_IOU)
                .max_by(|a, b| a.score.total_cmp(&b.score));
            confirmed.extend(best.map(|verified| match self.keep {
                Keep::Verifier(reframe) => match reframe {
                    Some(reframe) => reframe.apply(verified),
                    None => verified,
                },
                Keep::Proposer => FaceBox {
                    score: verified.score,
                    ..*candidate
                },
            }));
        }
        let faces = merge_boxes(confirmed, MERGE_IOU);
        clip_faces(faces, width, height, &self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proposes fixed boxes; records nothing.
    struct Proposes(Vec<FaceBox>);

    impl FaceDetector for Proposes {
        fn detect(&mut self, _: &RgbImage) -> Vec<FaceBox> {
            self.0.clone()
        }
    }

    /// Finds a face where the crop is bright (its bright pixels' bounding box), scoring 0.9.
    struct FindsBright;

    impl FaceDetector for FindsBright {
        fn detect(&mut self, crop: &RgbImage) -> Vec<FaceBox> {
            let bright: Vec<(u32, u32)> = crop
                .enumerate_pixels()
                .filter(|(_, _, p)| p.0[0] > 128)
                .map(|(x, y, _)| (x, y))
                .collect();
            if bright.is_empty() {
                return Vec::new();
            }
            let x0 = bright.iter().map(|p| p.0).min().unwrap() as f32;
            let y0 = bright.iter().map(|p| p.1).min().unwrap() as f32;
            let x1 = bright.iter().map(|p| p.0).max().unwrap() as f32 + 1.0;
            let y1 = bright.iter().map(|p| p.1).max().unwrap() as f32 + 1.0;
            vec![FaceBox::new(x0, y0, x1 - x0, y1 - y0, 0.9)]
        }
    }

    fn settings() -> DetectorSettings {
        DetectorSettings {
            min_face_size: 10,
            score_threshold: 0.5,
            max_faces: 8,
        }
    }

    #[test]
    fn a_candidate_is_kept_only_where_the_verifier_finds_it() {
        // A 200×100 frame with one bright 20×20 square at (40, 30).
        let frame = RgbImage::from_fn(200, 100, |x, y| {
            if (40..60).contains(&x) && (30..50).contains(&y) {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([0, 0, 0])
            }
        });
        let near_square = FaceBox::new(38.0, 28.0, 24.0, 24.0, 0.45);
        let on_nothing = FaceBox::new(140.0, 40.0, 24.0, 24.0, 0.8);
        let mut cascade = CascadeDetector::new(
            Box::new(Proposes(vec![near_square, on_nothing])),
            Box::new(FindsBright),
            settings(),
        );
        let faces = cascade.detect(&frame);
        assert_eq!(faces.len(), 1, "{faces:?}");
        let f = faces[0];
        // The verifier's box, back in frame pixels (through the magnified crop), its score.
        assert!(
            (f.x - 40.0).abs() < 1.5 && (f.y - 30.0).abs() < 1.5,
            "{f:?}"
        );
        assert!(
            (f.width - 20.0).abs() < 2.0 && (f.height - 20.0).abs() < 2.0,
            "{f:?}"
        );
        assert_eq!(f.score, 0.9);
    }

    #[test]
    fn crops_are_context_times_the_face_and_stay_in_the_frame() {
        let face = FaceBox::new(100.0, 100.0, 20.0, 40.0, 1.0);
        assert_eq!(crop_around(&face, 640, 480), (60, 70, 100, 100));
        let corner = FaceBox::new(0.0, 0.0, 20.0, 20.0, 1.0);
        assert_eq!(crop_around(&corner, 640, 480), (0, 0, 35, 35));
        let outside = FaceBox::new(700.0, 10.0, 20.0, 20.0, 1.0);
        assert_eq!(crop_around(&outside, 640, 480).2, 0);
    }
}
