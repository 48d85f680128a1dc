//! Face detection with the SeetaFace frontal cascade (`rustface`, BSD-2-Clause).
//!
//! The fallback detector: slower than BlazeFace (≈60–80 ms per 640×480 frame) but with no
//! neural network. The model file is shipped in `models/` and found through the manifest
//! (role `face_detector_fallback`),
//! so its hash is checked like every other model the device loads.

use super::{largest_faces, DetectorSettings, FaceBox, FaceDetector};
use image::RgbImage;
use std::path::Path;

/// The SeetaFace frontal face detector.
pub struct SeetaDetector {
    detector: Box<dyn rustface::Detector>,
    max_faces: usize,
    gray: Vec<u8>,
}

impl SeetaDetector {
    /// Loads the cascade from `model_path` (a `seeta_fd_frontal_v1.0.bin` file).
    pub fn load(
        model_path: &Path,
        settings: DetectorSettings,
    ) -> Result<SeetaDetector, crate::Error> {
        let bytes = std::fs::read(model_path).map_err(|e| crate::Error::Model {
            file: model_path.to_path_buf(),
            problem: format!("cannot read the face detector ({e})"),
        })?;
        Self::from_bytes(&bytes, settings).map_err(|problem| crate::Error::Model {
            file: model_path.to_path_buf(),
            problem,
        })
    }

    fn from_bytes(bytes: &[u8], settings: DetectorSettings) -> Result<SeetaDetector, String> {
        // The cascade reader indexes into what it read, so a damaged file can panic inside it;
        // the sha256 check in the manifest catches damage first, and this catches the rest.
        let model = std::panic::catch_unwind(|| rustface::read_model(bytes))
            .map_err(|_| "not a valid SeetaFace model (the reader gave up on it)".to_string())?
            .map_err(|e| format!("not a valid SeetaFace model ({e})"))?;
        if model.get_hierarchy_count() == 0 || model.get_classifiers().is_empty() {
            return Err("not a valid SeetaFace model (it holds no classifiers)".to_string());
        }
        let mut detector = rustface::create_detector_with_model(model);
        detector.set_min_face_size(settings.min_face_size);
        detector.set_score_thresh(settings.score_threshold as f64);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        Ok(SeetaDetector {
            detector,
            max_faces: settings.max_faces,
            gray: Vec::new(),
        })
    }
}

impl FaceDetector for SeetaDetector {
    fn detect(&mut self, frame: &RgbImage) -> Vec<FaceBox> {
        let (width, height) = frame.dimensions();
        luma_into(frame, &mut self.gray);
        let image = rustface::ImageData::new(&self.gray, width, height);
        let faces = self
            .detector
            .detect(&image)
            .into_iter()
            .map(|info| {
                let r = info.bbox();
                // The cascade may report a box reaching past the frame edge; clip it.
                let x0 = r.x().max(0) as f32;
                let y0 = r.y().max(0) as f32;
                let x1 = ((r.x() + r.width() as i32) as f32).min(width as f32);
                let y1 = ((r.y() + r.height() as i32) as f32).min(height as f32);
                FaceBox {
                    x: x0,
                    y: y0,
                    width: (x1 - x0).max(0.0),
                    height: (y1 - y0).max(0.0),
                    score: info.score() as f32,
                }
            })
            .filter(|f| f.width > 0.0 && f.height > 0.0)
            .collect();
        largest_faces(faces, self.max_faces)
    }
}

/// BT.601 luma in integer arithmetic, reusing `out`'s allocation frame after frame.
fn luma_into(frame: &RgbImage, out: &mut Vec<u8>) {
    out.clear();
    out.extend(frame.as_raw().chunks_exact(3).map(|p| {
        let y = 77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32;
        ((y + 128) >> 8) as u8
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_of_primaries() {
        let mut img = RgbImage::new(4, 1);
        img.put_pixel(0, 0, image::Rgb([255, 255, 255]));
        img.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(2, 0, image::Rgb([0, 255, 0]));
        img.put_pixel(3, 0, image::Rgb([0, 0, 255]));
        let mut out = vec![1, 2, 3];
        luma_into(&img, &mut out);
        assert_eq!(out, vec![255, 77, 149, 29]);
    }

    #[test]
    fn garbage_model_is_an_error_not_a_panic() {
        let settings = DetectorSettings {
            min_face_size: 40,
            score_threshold: 2.0,
            max_faces: 4,
        };
        assert!(SeetaDetector::from_bytes(&[0u8; 64], settings).is_err());
        assert!(SeetaDetector::from_bytes(&[], settings).is_err());
    }
}
