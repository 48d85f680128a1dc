//! `bench`: per-stage timing of the pipeline on the built-in demo frames, and end-to-end fps.
//!
//! Stages are timed separately on the same frames in one run, so the figures can be compared
//! with each other even on a busy machine; the absolute numbers are only as quiet as the host.

use crate::capture::stills::decode_bytes;
use crate::capture::{demo_frames, FrameSource};
use crate::display::{annotate, Status};
use crate::pipeline::Pipeline;
use crate::vision::crop::crop_face;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Passes over the demo frames.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub rounds: u32,

    /// Print a JSON object with the figures as the last line.
    #[arg(long)]
    pub json: bool,

    /// Folder with manifest.json and the models [default: as for `run`].
    #[arg(long, value_name = "DIR")]
    pub models: Option<std::path::PathBuf>,
}

/// Median milliseconds per frame for each stage, and end-to-end frames per second.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub faces_per_frame: f64,
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub crop_ms: f64,
    /// `None` when no age/gender model is installed.
    pub infer_ms: Option<f64>,
    pub draw_ms: f64,
    pub end_to_end_ms: f64,
    pub fps: f64,
    /// Every form of the age/gender model the manifest lists, timed in the same run.
    pub model_forms: Vec<FormTiming>,
}

/// One form of the age/gender model: median ms per face, and its speed relative to float.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FormTiming {
    pub role: String,
    pub file: String,
    pub bytes: u64,
    pub ms_per_face: f64,
    /// `f32 ms / this ms`: above 1 means faster than the float model.
    pub speedup_vs_f32: Option<f64>,
    /// Convolutions/matmuls tract runs in integers, of all of them, after optimisation.
    pub integer_layers: usize,
    pub layers: usize,
    /// Median ms to load the form ready to run: from the ONNX file, and from the NNEF cache
    /// (`None`: a form the cache does not keep, see `model::nnef_cache::worth_caching`).
    pub load_onnx_ms: f64,
    pub load_cached_ms: Option<f64>,
}

/// Median load times of `path` (3 each, alternating): prepared from ONNX, and read from a
/// freshly written NNEF cache in a scratch folder (if the form is cached at all).
fn time_loads(path: &std::path::Path) -> anyhow::Result<(f64, Option<f64>)> {
    use crate::model::AgeGenderModel;
    let cache = std::env::temp_dir().join(format!("agecam-bench-cache-{}", std::process::id()));
    let timed = |cache: Option<&std::path::Path>| -> anyhow::Result<Duration> {
        let started = Instant::now();
        AgeGenderModel::load_cached(path, cache)?;
        Ok(started.elapsed())
    };
    let result = (|| -> anyhow::Result<(f64, Option<f64>)> {
        timed(Some(&cache))?; // writes the cache
        let written = std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some());
        let (mut onnx, mut cached) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            onnx.push(timed(None)?);
            if written {
                cached.push(timed(Some(&cache))?);
            }
        }
        Ok((median_ms(onnx), written.then(|| median_ms(cached))))
    })();
    std::fs::remove_dir_all(&cache).ok();
    result
}

/// Times each form of the age/gender model `model.use` selects (round-robin, one thread,
/// `runs` each).
pub fn time_model_forms(
    models: &crate::model::manifest::VerifiedModels,
    runs: usize,
) -> anyhow::Result<Vec<FormTiming>> {
    use crate::model::Role;
    let found: Vec<_> = [Role::AgeGenderF32, Role::AgeGenderInt8]
        .into_iter()
        .filter_map(|role| models.get(role).map(|f| (role, f.path.clone())))
        .collect();
    let paths: Vec<_> = found.iter().map(|(_, p)| p.clone()).collect();
    let times = crate::model::inspect::time_forms(&paths, runs)?;
    let f32_ms = found
        .iter()
        .zip(&times)
        .find(|((r, _), _)| *r == Role::AgeGenderF32)
        .map(|(_, (_, ms))| *ms);
    let mut out = Vec::new();
    for ((role, path), (_, ms)) in found.iter().zip(times) {
        let explained = crate::model::inspect::explain(path)?;
        let (load_onnx_ms, load_cached_ms) = time_loads(path)?;
        out.push(FormTiming {
            role: role.name().to_string(),
            file: path.display().to_string(),
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            ms_per_face: ms,
            speedup_vs_f32: f32_ms.map(|f| f / ms),
            integer_layers: explained.integer_layers(),
            layers: explained.layers.len(),
            load_onnx_ms,
            load_cached_ms,
        });
    }
    Ok(out)
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// Times each stage on every demo frame, `rounds` times over.
pub fn bench(pipeline: &mut Pipeline, rounds: u32) -> anyhow::Result<BenchReport> {
    let mut source = demo_frames(false);
    let mut encoded = Vec::new();
    while let Some(frame) = source.next_frame()? {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
            .encode_image(&frame.image)?;
        encoded.push(jpeg);
    }
    let (mut decode, mut detect, mut crop, mut infer, mut draw, mut total) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut faces_seen = 0usize;
    let (mut width, mut height) = (0, 0);
    for _ in 0..rounds.max(1) {
        for jpeg in &encoded {
            let start = Instant::now();
            let image = decode_bytes(jpeg).map_err(anyhow::Error::msg)?;
            let decoded = Instant::now();
            let (faces, times) = pipeline.process(&image)?;
            let processed = Instant::now();
            if !pipeline.has_model() {
                // Without a model the pipeline cuts no crops; time them at the training crops'
                // framing size (the shipped model's input), so the figure is there to compare.
                for face in &faces {
                    std::hint::black_box(crop_face(
                        &image,
                        &face.face,
                        pipeline.crop_margin(),
                        crate::vision::crop::FRAMING_SIZE,
                    ));
                }
            }
            let crop_time = if pipeline.has_model() {
                times.crop
            } else {
                processed.elapsed()
            };
            let drawing = Instant::now();
            std::hint::black_box(annotate(
                &image,
                &faces,
                &Status {
                    fps: None,
                    faces: faces.len(),
                },
            ));
            let drawn = Instant::now();
            decode.push(decoded - start);
            detect.push(times.detect);
            crop.push(crop_time);
            infer.push(times.infer);
            draw.push(drawn - drawing);
            total.push(drawn - start);
            faces_seen += faces.len();
            (width, height) = image.dimensions();
        }
    }
    let end_to_end_ms = median_ms(total.clone());
    Ok(BenchReport {
        frames: total.len(),
        width,
        height,
        faces_per_frame: faces_seen as f64 / total.len() as f64,
        decode_ms: median_ms(decode),
        detect_ms: median_ms(detect),
        crop_ms: median_ms(crop),
        infer_ms: pipeline.has_model().then(|| median_ms(infer)),
        draw_ms: median_ms(draw),
        end_to_end_ms,
        model_forms: Vec::new(),
        fps: if end_to_end_ms > 0.0 {
            1000.0 / end_to_end_ms
        } else {
            0.0
        },
    })
}

/// Prints the report as a table, then (with `json`) as one JSON line.
pub fn print_report(report: &BenchReport, json: bool) -> anyhow::Result<()> {
    println!(
        "{} frames of {}x{} (JPEG), {:.1} faces per frame; median ms per frame:",
        report.frames, report.width, report.height, report.faces_per_frame
    );
    println!("  decode  {:8.2}", report.decode_ms);
    println!("  detect  {:8.2}", report.detect_ms);
    println!("  crop    {:8.2}", report.crop_ms);
    match report.infer_ms {
        Some(ms) => println!("  infer   {ms:8.2}"),
        None => println!("  infer   (no age/gender model installed)"),
    }
    println!("  draw    {:8.2}", report.draw_ms);
    println!(
        "  total   {:8.2}  = {:.1} fps",
        report.end_to_end_ms, report.fps
    );
    if !report.model_forms.is_empty() {
        println!("age/gender model forms, median ms per face (same run, one thread):");
        for f in &report.model_forms {
            println!(
                "  {:<16} {:8.2} ms  {:>9} bytes  {}/{} layers integer{}",
                f.role,
                f.ms_per_face,
                f.bytes,
                f.integer_layers,
                f.layers,
                f.speedup_vs_f32
                    .map_or(String::new(), |r| format!("  {r:.2}x float speed"))
            );
        }
        println!("start-up, median ms to load each form ready to run (same run):");
        for f in &report.model_forms {
            let cached = match f.load_cached_ms {
                Some(ms) => format!(
                    "from the NNEF cache {ms:7.1}  ({:.1}x faster)",
                    f.load_onnx_ms / ms.max(1e-3)
                ),
                None => "not cached (a float graph loads no faster from NNEF)".to_string(),
            };
            println!(
                "  {:<16} from ONNX {:7.1}  {cached}",
                f.role, f.load_onnx_ms
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string(report)?);
    }
    Ok(())
}
