//! Vision: finding faces in a frame and cutting them out the way the age/gender model expects.
//!
//! Detectors sit behind [`FaceDetector`]: BlazeFace ([`blazeface`], the default) and the
//! SeetaFace cascade ([`seeta`], the fallback). The crop code in [`crop`] is shared with the host
//! tool's training-crop maker so the kiosk and the training set frame faces identically.

pub mod blazeface;
pub mod crop;
pub mod seeta;
pub mod tiled;

pub use blazeface::BlazeFaceDetector;
pub use seeta::SeetaDetector;

use image::RgbImage;

/// A face found in a frame, in frame pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    /// Detector confidence; its scale depends on the detector.
    pub score: f32,
}

impl FaceBox {
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
