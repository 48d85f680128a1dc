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
//! verifier's input whatever its size in the frame. A confirmed face is the verifier's — box,
//! score and keypoints mapped back to frame pixels — so the age/gender models see the framing
//! they were trained on (short-range BlazeFace's), whoever proposed it. On 1,938 FairFace
//! training chips its boxes on the magnified crop agree with its boxes on the whole picture
//! (mean IoU 0.938, `agecam-host fit-framing --detector blazeface-cascade`; a fitted
//! re-framing made it 0.922, so none is applied); a face swaying a few pixels keeps a steadier
//! box than YuNet's re-framed one, which moved the replay scenes' estimates across a bucket.

use super::{clip_faces, FaceBox, FaceDetector};
use super::{merge_boxes, DetectorSettings, Reframe};
use image::imageops::FilterType;
use image::RgbImage;

/// Side of the verifier's crop as a multiple of the candidate's longer side.
pub const CONTEXT: f32 = 2.5;
/// Score threshold of the proposer (back-camera), below the verifier's: it only nominates.
pub const PROPOSE_THRESHOLD: f32 = 0.4;
/// Default threshold on the verifier's score (`detector.score_threshold`).
pub const DEFAULT_SCORE_THRESHOLD: f32 = crate::config::CONFIRM_SCORE_THRESHOLD;
/// How much a verified box must overlap its candidate to confirm it.
pub const CONFIRM_IOU: f32 = 0.3;
/// Side a smaller crop is magnified to (bilinear) before the verifier letterboxes it.
pub const VERIFY_SIDE: u32 = 128;
/// Overlap above which two confirmed boxes are one face (two candidates can confirm the same).
pub const MERGE_IOU: f32 = 0.3;
/// At most this many candidates are verified per frame, largest first.
pub const MAX_CANDIDATES: usize = 16;

/// Candidates from one detector, each confirmed by another on a magnified crop.
pub struct CascadeDetector {
    proposer: Box<dyn FaceDetector>,
    verifier: Box<dyn FaceDetector>,
    reframe: Option<Reframe>,
    settings: DetectorSettings,
}

impl CascadeDetector {
    /// `proposer` runs on the whole frame (its own threshold and minimum size apply);
    /// `verifier` on each candidate's crop, with its threshold the cascade's
    /// `settings.score_threshold` and no minimum size of its own. A confirmed face is the
    /// verifier's, through `reframe` if given. `settings` also give the final minimum face
    /// size and number of faces.
    pub fn new(
        proposer: Box<dyn FaceDetector>,
        verifier: Box<dyn FaceDetector>,
        reframe: Option<Reframe>,
        settings: DetectorSettings,
    ) -> CascadeDetector {
        CascadeDetector {
            proposer,
            verifier,
            reframe,
            settings,
        }
    }
}

/// The square region around `face`, [`CONTEXT`] times its longer side, as (left, top, side)
/// in frame pixels; it may reach past the frame.
pub fn region_around(face: &FaceBox) -> (i64, i64, u32) {
    let side = (face.width.max(face.height) * CONTEXT).ceil().max(2.0);
    let (cx, cy) = face.center();
    (
        (cx - side / 2.0).floor() as i64,
        (cy - side / 2.0).floor() as i64,
        side as u32,
    )
}

/// The region around `face` cut from `frame`, the part outside the frame mid-grey: a face
/// near the edge, or one filling the frame (someone right at the kiosk), stays centred and
/// small in the verifier's input, where the short-range network finds faces.
pub fn crop_around(frame: &RgbImage, face: &FaceBox) -> (RgbImage, i64, i64) {
    let (left, top, side) = region_around(face);
    let mut crop = RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
    image::imageops::replace(&mut crop, frame, -left, -top);
    (crop, left, top)
}

impl FaceDetector for CascadeDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        let mut candidates = self.proposer.detect(frame);
        candidates.truncate(MAX_CANDIDATES);
        let mut confirmed = Vec::new();
        for candidate in &candidates {
            if candidate.width.max(candidate.height) > 4.0 * width.max(height) as f32 {
                continue; // a runaway box: nothing to verify
            }
            let (crop, x, y) = crop_around(frame, candidate);
            // Small crops are magnified smoothly; the verifier's own letterbox would repeat
            // pixels (nearest neighbour) when upscaling.
            let side = crop.width();
            let scale = (VERIFY_SIDE as f32 / side as f32).max(1.0);
            let crop = if scale > 1.0 {
                let magnified = ((side as f32 * scale).round() as u32).max(1);
                image::imageops::resize(&crop, magnified, magnified, FilterType::Triangle)
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
            confirmed.extend(best.map(|verified| match self.reframe {
                Some(reframe) => reframe.apply(verified),
                None => verified,
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
            None,
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
        // Re-framed as asked: a square twice the side about the same centre.
        let mut cascade = CascadeDetector::new(
            Box::new(Proposes(vec![near_square, on_nothing])),
            Box::new(FindsBright),
            Some(Reframe {
                dx: 0.0,
                dy: 0.0,
                sw: 1.0,
                sh: 1.0,
            }),
            settings(),
        );
        let g = cascade.detect(&frame)[0];
        assert!((g.width - 2.0 * f.width).abs() < 1e-3, "{g:?}");
        assert!((g.center().0 - f.center().0).abs() < 1e-3, "{g:?}");
    }

    #[test]
    fn crops_are_context_times_the_face_grey_past_the_frame() {
        let face = FaceBox::new(100.0, 100.0, 20.0, 40.0, 1.0);
        assert_eq!(region_around(&face), (60, 70, 100));
        let frame = RgbImage::from_pixel(64, 48, image::Rgb([255, 0, 0]));
        // A face at the corner: the crop stays centred on it, grey where the frame ends.
        let corner = FaceBox::new(0.0, 0.0, 20.0, 20.0, 1.0);
        let (crop, left, top) = crop_around(&frame, &corner);
        assert_eq!((crop.dimensions(), left, top), ((50, 50), -15, -15));
        assert_eq!(crop.get_pixel(0, 0).0, [128, 128, 128]);
        assert_eq!(crop.get_pixel(20, 20).0, [255, 0, 0]);
        // A face filling the frame: the whole frame inside a grey border.
        let close = FaceBox::new(8.0, 0.0, 48.0, 48.0, 1.0);
        let (crop, left, _) = crop_around(&frame, &close);
        assert_eq!((crop.width(), left), (120, -28));
        assert_eq!(crop.get_pixel(28 + 32, 36 + 24).0, [255, 0, 0]);
        assert_eq!(crop.get_pixel(5, 60).0, [128, 128, 128]);
    }
}
