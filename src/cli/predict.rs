//! `predict IMAGE…`: faces, ages and genders for image files, as a table or JSON lines.

use crate::capture::stills::decode_file;
use crate::display::{annotate, write_png_atomically, Status};
use crate::face::FaceResult;
use crate::pipeline::Pipeline;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Image files (JPEG or PNG) to look for faces in.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,

    /// Print one JSON object per face instead of a table:
    /// {file, box: [x, y, width, height], score, age, age_low, age_high, gender, gender_confidence,
    /// landmarks}.
    #[arg(long)]
    pub json: bool,

    /// Also write each image with boxes and labels drawn on it as `DIR/NAME.png`.
    #[arg(long, value_name = "DIR")]
    pub annotate: Option<PathBuf>,

    /// Folder with manifest.json and the models [default: model.dir from --config, else
    /// /usr/share/agecam/models, else ./models].
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
}

/// One line of `--json` output.
#[derive(serde::Serialize)]
struct FaceLine<'a> {
    file: &'a str,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
    age: Option<f32>,
    age_low: Option<f32>,
    age_high: Option<f32>,
    gender: Option<crate::model::Gender>,
    gender_confidence: Option<f32>,
    /// The detector's landmarks (eyes, nose, mouth; YuNet's mouth corners, BlazeFace's ears),
    /// to 0.1 px; `null` with SeetaFace.
    landmarks: Option<crate::vision::Landmarks>,
    /// Head pose from the landmarks (`vision::pose`), degrees to 0.1: positive yaw turned
    /// towards the image's right, positive pitch looking up; `null` without landmarks.
    yaw: Option<f32>,
    pitch: Option<f32>,
    /// Whether that pose is within `attention.max_yaw` and `attention.max_pitch`.
    looking: Option<bool>,
}

/// Runs the command; returns how many images could not be read (they are reported and
/// skipped, and the others are still processed).
pub fn predict(
    args: &PredictArgs,
    pipeline: &mut Pipeline,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    if let Some(dir) = &args.annotate {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the --annotate folder {} ({e})",
                dir.display()
            )
        })?;
    }
    if !args.json {
        writeln!(
            out,
            "{:<32} {:>4}  {:<20} {:>6}  {:<9}  {:<6} {:>5}",
            "FILE", "FACE", "BOX x,y,w,h", "AGE", "RANGE", "GENDER", "CONF"
        )?;
    }
    let mut unreadable = 0;
    for path in &args.images {
        let name = path.display().to_string();
        let image = match decode_file(path) {
            Ok(image) => image,
            Err(problem) => {
                log::error!("image {name}: {problem}; skipped");
                unreadable += 1;
                continue;
            }
        };
        let (faces, _) = pipeline.process(&image)?;
        if faces.is_empty() {
            log::info!("{name}: no face found");
        }
        for (i, result) in faces.iter().enumerate() {
            if args.json {
                serde_json::to_writer(&mut *out, &face_line(&name, result))?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", table_row(&name, i + 1, result))?;
            }
        }
        if let Some(dir) = &args.annotate {
            let status = Status {
                fps: None,
                faces: faces.len(),
            };
            write_png_atomically(
                &annotate(&image, &faces, &status),
                &annotated_path(dir, path),
            )?;
        }
    }
    Ok(unreadable)
}

fn face_line<'a>(file: &'a str, result: &FaceResult) -> FaceLine<'a> {
    let f = &result.face;
    let e = result.estimate.as_ref();
    let pose = result.pose();
    FaceLine {
        file,
        bbox: [f.x, f.y, f.width, f.height].map(|v| v.round()),
        score: (f.score * 100.0).round() / 100.0,
        age: e.map(|e| e.age),
        age_low: e.map(|e| e.age_low),
        age_high: e.map(|e| e.age_high),
        gender: e.map(|e| e.gender),
        gender_confidence: e.map(|e| e.gender_confidence),
        landmarks: f
            .landmarks
            .map(|l| l.map(|p| p.map(|v| (v * 10.0).round() / 10.0))),
        yaw: pose.map(|p| (p.yaw * 10.0).round() / 10.0),
        pitch: pose.map(|p| (p.pitch * 10.0).round() / 10.0),
        looking: result.looking,
    }
}

fn table_row(file: &str, index: usize, result: &FaceResult) -> String {
    let f = &result.face;
    let bbox = format!("{:.0},{:.0},{:.0},{:.0}", f.x, f.y, f.width, f.height);
    let (age, range, gender, conf) = match &result.estimate {
        Some(e) => (
            format!("{:.0}", e.age),
            format!("{:.0}-{:.0}", e.age_low, e.age_high),
            format!("{:?}", e.gender).to_lowercase(),
            format!("{:.2}", e.gender_confidence),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    format!("{file:<32} {index:>4}  {bbox:<20} {age:>6}  {range:<9}  {gender:<6} {conf:>5}")
}

/// `DIR/<file stem>.png`.
fn annotated_path(dir: &Path, image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "image".into());
    dir.join(stem).with_extension("png")
}

/// The whole `predict` command as both binaries run it: config, models, then [`predict`].
pub fn predict_command(
    args: &PredictArgs,
    config_file: Option<&Path>,
) -> anyhow::Result<std::process::ExitCode> {
    let config = super::load_config(config_file)?;
    let models = super::model_dir(args.models.as_deref(), config_file, &config);
    let mut pipeline = Pipeline::load(&config, &models)?;
    let unreadable = predict(args, &mut pipeline, &mut std::io::stdout().lock())?;
    if unreadable > 0 {
        log::error!(
            "{unreadable} of {} image(s) could not be read",
            args.images.len()
        );
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}
