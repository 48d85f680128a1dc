//! Model files: corrupt or truncated ONNX bytes loaded as the age/gender model and as the
//! BlazeFace detector must give an error naming the file, never a panic or an abort. tract can
//! panic on malformed graphs; the loaders catch that at the library boundary.
#![no_main]

use agecam::model::age_gender::AgeGenderModel;
use agecam::vision::blazeface::Variant;
use agecam::vision::{BlazeFaceDetector, DetectorSettings};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The file the loaders read (they take a path, as the daemon does), one per process.
fn model_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // libfuzzer-sys installs a panic hook that aborts before unwinding, which would make
        // every panic the loaders catch look like a crash. Put the default hook back: a panic
        // that escapes the library still reaches libfuzzer-sys's catch_unwind and aborts.
        let _ = std::panic::take_hook();
        std::env::temp_dir().join(format!("agecam-fuzz-{}.onnx", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = model_path();
    std::fs::write(path, data).expect("cannot write the model file in the temp folder");
    if let Err(e) = AgeGenderModel::load(path) {
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }
    let settings = DetectorSettings {
        min_face_size: 40,
        score_threshold: 0.5,
        max_faces: 4,
    };
    if let Err(e) = BlazeFaceDetector::load(path, Variant::ShortRange, settings) {
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    }
});
