//! The crop writer: the face crops the reference comparison feeds both sides, cut by the
//! device's detector and crop code at the teacher's input size.

use super::INPUT_SIZE;
use agecam::vision::crop::Framing;
use agecam::vision::FaceDetector;
use agecam::Error;
use std::path::{Path, PathBuf};

/// The face crops the comparison feeds both sides: for each image, the largest face the
/// device's detector finds, cut by the device's crop code in `framing` at 112×112 and
/// written as `<image stem>.png` into `out`. Returns the written files; an image without a
/// face is an error naming it.
pub fn write_face_crops(
    images: &[PathBuf],
    detector: &mut dyn FaceDetector,
    framing: Framing,
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::Output {
        path: out.to_path_buf(),
        problem: format!("cannot create the folder ({e})"),
    })?;
    let mut written = Vec::new();
    for path in images {
        let img = image::open(path)
            .map_err(|e| Error::Image {
                file: path.clone(),
                problem: format!("cannot read it ({e})"),
            })?
            .to_rgb8();
        let face = agecam::vision::largest_faces(detector.detect(&img), 1)
            .pop()
            .ok_or_else(|| Error::Image {
                file: path.clone(),
                problem: "the face detector finds no face in it; give photos with a face".into(),
            })?;
        let crop = framing.crop(&img, &face, INPUT_SIZE as u32);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "crop".to_string());
        let file = out.join(format!("{stem}.png"));
        crop.save(&file).map_err(|e| Error::Output {
            path: file.clone(),
            problem: format!("cannot write the crop ({e})"),
        })?;
        written.push(file);
    }
    Ok(written)
}
