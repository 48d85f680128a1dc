//! The label cache: the teacher's answers for every crop of a crop cache, written to
//! `CACHE/teacher.csv` for distillation.

use super::model_error;
use super::runtime::Teacher;
use agecam::Error;
use std::path::Path;

pub use crate::crops::TEACHER_LABELS as CACHE_LABELS;

/// The face box's share of a cached crop's side: crops are cut around the detector's box with
/// `margin` on each side ([`agecam::vision::crop::crop_square`]).
pub fn tight_share(margin: f32) -> f32 {
    1.0 / (1.0 + 2.0 * margin)
}

/// The teacher's answers for every crop of a cache (`labels.csv`), written to
/// `CACHE/teacher.csv`. Each crop is cut back to the detector's box (the tight framing
/// face-api was trained on; on the cache's looser framing it misjudges more faces) and
/// preprocessed as face-api does. Returns how many crops were labelled.
pub fn label_cache(
    teacher: &Teacher,
    cache: &Path,
    progress: &dyn Fn(usize, usize),
) -> Result<usize, Error> {
    let fail = |path: &Path, problem: String| model_error(path, problem);
    let labels = crate::crops::read_labels(cache)
        .map_err(|e| fail(&cache.join("labels.csv"), with_causes(&e)))?;
    let margin = crate::crops::cache_margin(cache).unwrap_or(0.25);
    let share = tight_share(margin);
    let mut text = String::from("crop,age,p_female\n");
    for (i, entry) in labels.iter().enumerate() {
        progress(i, labels.len());
        let path = cache.join("crops").join(&entry.crop);
        let img = image::open(&path)
            .map_err(|e| {
                fail(
                    &path,
                    format!("cannot read the crop ({e}); remake the cache with agecam-host crops"),
                )
            })?
            .to_rgb8();
        let side = (img.width() as f32 * share).round().max(1.0) as u32;
        let off = (img.width() - side.min(img.width())) / 2;
        let tight = image::imageops::crop_imm(&img, off, off, side, side).to_image();
        let out = teacher
            .predict_faceapi(&tight)
            .map_err(|e| fail(&path, e.to_string()))?;
        // The teacher's age is a regression and can fall just outside the ages the student
        // learns (a baby's face gave -0.05 years): kept within them, 0-100.
        text.push_str(&format!(
            "{},{:.3},{:.5}\n",
            entry.crop,
            out.age.clamp(0.0, 100.0),
            out.gender[1]
        ));
    }
    let dest = cache.join(CACHE_LABELS);
    let tmp = cache.join(format!("{CACHE_LABELS}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &dest))
        .map_err(|e| fail(&dest, format!("cannot write it ({e}); check the disk")))?;
    Ok(labels.len())
}

/// `e` followed by its causes, `outer: inner: …` (as the command line shows an error).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
