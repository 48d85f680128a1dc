//! Compares BlazeFace and SeetaFace in one run: faces found on the bundled face images, false
//! detections on the non-face images, and median detection latency on a 640×480 frame.
//!
//!     cargo run --release --example compare_detectors [-- ROUNDS]
//!
//! Uses the shipped models/ with each detector's default threshold and min_face_size 40.

use agecam::config::DetectorKind;
use agecam::model::{Manifest, Role};
use agecam::vision::{BlazeFaceDetector, DetectorSettings, FaceDetector, SeetaDetector};
use std::path::Path;
use std::time::Instant;

fn images(dir: &Path) -> Vec<(String, image::RgbImage)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let img = image::open(&p).ok()?.to_rgb8();
            Some((p.file_name()?.to_string_lossy().into_owned(), img))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(50), |a| a.parse())?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = Manifest::load(&root.join("models"))?;
    let settings = |kind: DetectorKind| DetectorSettings {
        min_face_size: 40,
        score_threshold: kind.default_score_threshold(),
        max_faces: 8,
    };
    let blaze = manifest.verified_path(Role::FaceDetector)?.expect("listed");
    let seeta = manifest
        .verified_path(Role::FaceDetectorFallback)?
        .expect("listed");
    let mut detectors: Vec<(&str, Box<dyn FaceDetector>)> = vec![
        (
            "blazeface",
            Box::new(BlazeFaceDetector::load(
                &blaze,
                settings(DetectorKind::Blazeface),
            )?),
        ),
        (
            "seeta",
            Box::new(SeetaDetector::load(&seeta, settings(DetectorKind::Seeta))?),
        ),
    ];
    let data = root.join("tests/data/blazeface");
    let faces = images(&data.join("faces"));
    let nonfaces = images(&data.join("nonfaces"));
    let animals = images(&data.join("animals"));
    let frame = faces
        .iter()
        .find(|(_, img)| img.dimensions() == (640, 480))
        .map(|(_, img)| img.clone())
        .expect("a 640x480 face image");
    for (name, detector) in &mut detectors {
        println!("== {name}");
        for (set, list) in [
            ("faces", &faces),
            ("nonfaces", &nonfaces),
            ("animals", &animals),
        ] {
            for (file, img) in list {
                let found = detector.detect(img);
                let boxes: Vec<String> = found
                    .iter()
                    .map(|f| {
                        format!(
                            "[{:.0},{:.0},{:.0},{:.0}] {:.2}",
                            f.x, f.y, f.width, f.height, f.score
                        )
                    })
                    .collect();
                println!("  {set}/{file}: {} {}", found.len(), boxes.join("  "));
            }
        }
        let mut times: Vec<f64> = (0..rounds)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(detector.detect(&frame));
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "  640x480 detect: median {:.2} ms, min {:.2} ms over {rounds} runs",
            times[times.len() / 2],
            times[0]
        );
    }
    Ok(())
}
