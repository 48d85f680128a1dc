//! `bench`: per-stage timing of the pipeline on the built-in demo frames, and end-to-end fps;
//! `bench --stream`: every-frame work against the configured `[schedule]` on replayed scenes.
//!
//! Stages are timed separately on the same frames in one run, so the figures can be compared
//! with each other even on a busy machine; the absolute numbers are only as quiet as the host.

use crate::capture::convert::PixelFormat;
use crate::capture::replay::Scene;
use crate::capture::stills::decode_bytes;
use crate::capture::{demo_frames, FramePixels, FrameSource, RawPixels};
use crate::config::ScheduleConfig;
use crate::display::{
    annotate, draw_overlay, faces_in_picture, fitted_size, PackedCanvas, PixelLayout, Status,
};
use crate::pipeline::Pipeline;
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

    /// Replay recorded-like scenes (a person standing 10 s, two people arriving and leaving, a
    /// person walking through; made from the demo frames) through every-frame work and through
    /// the configured `[schedule]`, and compare CPU time per frame, the share of frames that ran
    /// the detector and the network, and frames per second.
    #[arg(long)]
    pub stream: bool,

    /// With --stream: the scenes to replay [default: all].
    #[arg(long, value_enum, value_delimiter = ',', requires = "stream")]
    pub scenes: Vec<Scene>,

    /// With --stream: what shows the frames. `panel` draws the overlay onto a 320×240 RGB565
    /// back buffer as the SPI LCD adapter does (from the frame decoded at 1/2); `none` is a
    /// headless unit (frames between detector runs are not decoded at all).
    #[arg(long, value_enum, default_value_t = StreamDisplay::Panel, requires = "stream")]
    pub display: StreamDisplay,
}

/// What shows the frames in `bench --stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamDisplay {
    /// A 320×240 SPI panel.
    Panel,
    /// Headless.
    None,
}

/// One way of scheduling the work, over the replayed scenes of `bench --stream`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StreamFigures {
    pub frames: u64,
    /// Faces in view, summed over frames.
    pub faces: u64,
    /// CPU milliseconds of this thread per frame: decode, detector, network, overlay.
    pub cpu_ms_per_frame: f64,
    /// Frames per second over the run (wall clock, one thread).
    pub fps: f64,
    /// Share of frames the detector ran on.
    pub detector_share: f64,
    /// Faces the network ran on, as a share of faces in view.
    pub network_share: f64,
    pub detector_runs: u64,
    pub network_runs: u64,
}

/// What `bench --stream` measures, in one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReport {
    pub scenes: Vec<String>,
    pub schedule: String,
    pub display: StreamDisplay,
    pub every_frame: StreamFigures,
    pub scheduled: StreamFigures,
    /// Every-frame CPU time ÷ scheduled CPU time, per frame.
    pub cpu_ratio: f64,
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Replays `scenes` (every frame taken, as a camera's MJPEG, decoded only as large as each
/// stage reads it, as the daemon does) through every-frame work and through `schedule`, on the
/// same pipeline, in one run, shown on `display`.
pub fn bench_stream(
    pipeline: &mut Pipeline,
    schedule: ScheduleConfig,
    scenes: &[Scene],
    display: StreamDisplay,
) -> anyhow::Result<StreamReport> {
    let scenes = if scenes.is_empty() {
        Scene::ALL.to_vec()
    } else {
        scenes.to_vec()
    };
    let mut every = StreamFigures::default();
    let mut scheduled = StreamFigures::default();
    let (mut every_cpu, mut scheduled_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut every_wall, mut scheduled_wall) = (Duration::ZERO, Duration::ZERO);
    for &scene in &scenes {
        // The camera's MJPEG frames, made once; each run decodes every one it takes.
        let mut frames = scene.frames();
        let mut encoded = Vec::new();
        while let Some(frame) = frames.next_frame()? {
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
                .encode_image(&frame.image)?;
            encoded.push((jpeg, frame.image.dimensions()));
        }
        for (settings, figures, cpu, wall) in [
            (
                ScheduleConfig::every_frame(),
                &mut every,
                &mut every_cpu,
                &mut every_wall,
            ),
            (
                schedule,
                &mut scheduled,
                &mut scheduled_cpu,
                &mut scheduled_wall,
            ),
        ] {
            pipeline.set_schedule(settings);
            // The scene's own clock: one frame every 1/30 s, however long the work takes.
            let t0 = Instant::now();
            let (cpu_start, wall_start) = (thread_cpu_time(), Instant::now());
            let mut panel = PackedCanvas::new(320, 240, 640, PixelLayout::RGB565)
                .expect("a 320x240 RGB565 canvas");
            for (n, (jpeg, size)) in encoded.iter().enumerate() {
                let raw = RawPixels::Buffer {
                    bytes: jpeg.clone(),
                    format: PixelFormat::Mjpeg,
                    width: size.0,
                    height: size.1,
                };
                let mut pixels = FramePixels::new(raw, scene.name())?;
                let at = t0 + Duration::from_secs_f64(n as f64 / 30.0);
                // As the daemon: the larger of the panel's and the detector's pictures first.
                let shown = fitted_size(*size, (320, 240));
                let panel_reads = (display == StreamDisplay::Panel).then_some(shown);
                pipeline.decode_shared(&mut pixels, panel_reads)?;
                let out = pipeline.frame_of(&mut pixels, at)?;
                if display == StreamDisplay::Panel {
                    let picture = pixels.take_at_least(shown)?;
                    let faces = faces_in_picture(out.faces.clone(), *size, picture.dimensions());
                    let status = Status {
                        fps: None,
                        faces: faces.len(),
                    };
                    match draw_overlay(&mut panel, &picture, &faces, &status) {
                        Ok(()) => {}
                        Err(never) => match never {},
                    }
                    std::hint::black_box(panel.bytes());
                }
                figures.frames += 1;
                figures.faces += out.faces.len() as u64;
                figures.detector_runs += u64::from(out.work.detected);
                figures.network_runs += out.work.classified as u64;
            }
            *cpu += thread_cpu_time() - cpu_start;
            *wall += wall_start.elapsed();
        }
    }
    for (figures, cpu, wall) in [
        (&mut every, every_cpu, every_wall),
        (&mut scheduled, scheduled_cpu, scheduled_wall),
    ] {
        let frames = figures.frames.max(1) as f64;
        figures.cpu_ms_per_frame = cpu.as_secs_f64() * 1000.0 / frames;
        figures.fps = frames / wall.as_secs_f64().max(1e-9);
        figures.detector_share = figures.detector_runs as f64 / frames;
        figures.network_share = figures.network_runs as f64 / figures.faces.max(1) as f64;
    }
    let cpu_ratio = every.cpu_ms_per_frame / scheduled.cpu_ms_per_frame.max(1e-9);
    Ok(StreamReport {
        scenes: scenes.iter().map(|s| s.name().to_string()).collect(),
        schedule: format!(
            "detect_every {}, settle_estimates {}, recheck_every {}, recheck_on_resize {}",
            schedule.detect_every,
            schedule.settle_estimates,
            schedule.recheck_every,
            schedule.recheck_on_resize
        ),
        display,
        every_frame: every,
        scheduled,
        cpu_ratio,
    })
}

/// Prints the stream report as a table, then (with `json`) as one JSON line.
pub fn print_stream_report(report: &StreamReport, json: bool) -> anyhow::Result<()> {
    println!(
        "replayed {} ({} frames, MJPEG decoded per frame as large as used, one thread; display: {}); schedule: {}",
        report.scenes.join(", "),
        report.every_frame.frames,
        match report.display {
            StreamDisplay::Panel => "a 320x240 panel",
            StreamDisplay::None => "none",
        },
        report.schedule
    );
    println!("               CPU ms/frame    fps  detector on  network on (of faces in view)");
    for (name, f) in [
        ("every frame", &report.every_frame),
        ("scheduled", &report.scheduled),
    ] {
        println!(
            "  {name:<12} {:10.2} {:8.1}  {:9.1} %  {:8.1} %  ({} of {})",
            f.cpu_ms_per_frame,
            f.fps,
            100.0 * f.detector_share,
            100.0 * f.network_share,
            f.network_runs,
            f.faces
        );
    }
    println!(
        "  CPU per frame, every frame / scheduled: {:.2}x",
        report.cpu_ratio
    );
    if json {
        println!("{}", serde_json::to_string(report)?);
    }
    Ok(())
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
                    std::hint::black_box(pipeline.framing().crop(
                        &image,
                        &face.face,
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
