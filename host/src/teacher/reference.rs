//! The reference comparison: the imported teacher in tract next to face-api's own outputs in
//! Node (`benches/teacher_reference/reference.mjs`), face by face, with the time per face.

use super::runtime::{RunError, Teacher, TeacherOutput};
use super::{model_error, INPUT_SIZE};
use agecam::Error;
use image::RgbImage;
use serde::Deserialize;
use std::path::Path;

/// The JSON `benches/teacher_reference/reference.mjs` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// face-api's version as its package.json gives it.
    pub face_api: String,
    /// The TF.js backend used (`wasm` or `cpu`).
    pub backend: String,
    pub results: Vec<ReferenceResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceResult {
    /// The input PNG, relative to the reference file's folder (112×112 crops are fed as they
    /// are; other sizes go through face-api's pad-to-square and resize).
    pub file: String,
    pub age: f32,
    /// Probabilities (male, female).
    pub gender: [f32; 2],
}

/// One face: the teacher in tract next to face-api in Node.
#[derive(Debug, Clone)]
pub struct ComparedFace {
    pub file: String,
    pub tract: TeacherOutput,
    pub node: TeacherOutput,
}

impl ComparedFace {
    /// The largest absolute difference over age (years) and the two probabilities.
    pub fn max_abs_diff(&self) -> f32 {
        let g = (0..2).map(|k| (self.tract.gender[k] - self.node.gender[k]).abs());
        g.fold((self.tract.age - self.node.age).abs(), f32::max)
    }
}

/// The teacher compared with a reference file.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub reference: Reference,
    pub faces: Vec<ComparedFace>,
    /// Median milliseconds per face (batch 1, tract's single thread), when timed.
    pub ms_per_face: Option<f64>,
}

impl Comparison {
    pub fn max_abs_diff(&self) -> f32 {
        self.faces
            .iter()
            .map(ComparedFace::max_abs_diff)
            .fold(0.0, f32::max)
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<40} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "face", "age tract", "age node", "P(m) tr.", "P(m) node", "max |diff|"
        )?;
        for c in &self.faces {
            writeln!(
                f,
                "{:<40} {:>9.4} {:>9.4} {:>9.6} {:>9.6} {:>10.2e}",
                c.file,
                c.tract.age,
                c.node.age,
                c.tract.gender[0],
                c.node.gender[0],
                c.max_abs_diff()
            )?;
        }
        write!(
            f,
            "max abs diff vs face-api {} ({} backend): {:.3e}",
            self.reference.face_api,
            self.reference.backend,
            self.max_abs_diff()
        )?;
        if let Some(ms) = self.ms_per_face {
            write!(
                f,
                "\ntract, 1 thread, batch 1, {INPUT_SIZE} px: {ms:.2} ms per face (median)"
            )?;
        }
        Ok(())
    }
}

/// Runs the teacher at `model` on the images a reference file names (beside it) and compares:
/// 112×112 crops go in as they are, other images through [`faceapi_input`];
/// with `timing_runs` > 0 also times one face that many times.
pub fn compare_with_reference(
    model: &Path,
    reference: &Path,
    timing_runs: usize,
) -> Result<Comparison, Error> {
    let text = std::fs::read_to_string(reference).map_err(|e| Error::Image {
        file: reference.to_path_buf(),
        problem: format!(
            "cannot read the reference outputs ({e}); make them with \
             node benches/teacher_reference/reference.mjs"
        ),
    })?;
    let parsed: Reference = serde_json::from_str(&text).map_err(|e| Error::Image {
        file: reference.to_path_buf(),
        problem: format!("not reference.mjs output ({e})"),
    })?;
    let dir = reference.parent().unwrap_or(Path::new("."));
    let teacher = Teacher::load(model)?;
    let mut crops = Vec::new();
    for r in &parsed.results {
        let file = dir.join(&r.file);
        let img = image::open(&file)
            .map_err(|e| Error::Image {
                file: file.clone(),
                problem: format!(
                    "cannot read this crop named in {} ({e})",
                    reference.display()
                ),
            })?
            .to_rgb8();
        crops.push(img);
    }
    let run_err = |e: RunError| model_error(model, e.to_string());
    // A 112×112 crop is the network's input as it is (the device's input path); any other
    // image goes through face-api's preprocessing, replicated here as reference.mjs leaves it
    // to face-api's toBatchTensor.
    let run = |img: &RgbImage| {
        if img.dimensions() == (INPUT_SIZE as u32, INPUT_SIZE as u32) {
            teacher.predict_one(img)
        } else {
            teacher.predict_faceapi(img)
        }
        .map_err(run_err)
    };
    let mut faces = Vec::new();
    for (r, crop) in parsed.results.iter().zip(&crops) {
        faces.push(ComparedFace {
            file: r.file.clone(),
            tract: run(crop)?,
            node: TeacherOutput {
                age: r.age,
                gender: r.gender,
            },
        });
    }
    let ms_per_face = if timing_runs > 0 && !crops.is_empty() {
        for _ in 0..3 {
            run(&crops[0])?;
        }
        let mut times = Vec::with_capacity(timing_runs);
        for _ in 0..timing_runs {
            let t = std::time::Instant::now();
            run(&crops[0])?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        Some(times[times.len() / 2])
    } else {
        None
    };
    Ok(Comparison {
        reference: parsed,
        faces,
        ms_per_face,
    })
}
