//! The SeetaFace cascade file (`detector.kind = "seeta"`): damaged bytes must give an error,
//! never a panic; a cascade that loads must also survive a frame.
#![no_main]

use agecam::vision::{DetectorSettings, FaceDetector, SeetaDetector};
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

fuzz_target!(|data: &[u8]| {
    // The loader catches the reader's panics; see onnx_model.rs for why the hook goes back.
    static HOOK: Once = Once::new();
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let settings = DetectorSettings {
        min_face_size: 20,
        score_threshold: 2.0,
        max_faces: 4,
    };
    if let Ok(mut detector) = SeetaDetector::from_bytes(data, settings) {
        let frame = image::RgbImage::from_pixel(48, 40, image::Rgb([120, 100, 90]));
        let _ = detector.detect(&frame);
    }
});
