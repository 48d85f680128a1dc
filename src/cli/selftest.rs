//! `selftest`: checks each part the daemon needs (camera, models, display) and prints one
//! pass/fail line per part, so an installer sees at once what is wrong on a kiosk.

use crate::capture::{demo_frames, CaptureError, FrameSource};
use crate::config::{Config, DisplayTarget};
use crate::model::{Manifest, TrustedKeys};
use crate::pipeline::Pipeline;
use std::path::{Path, PathBuf};

/// One check's outcome: what was found, or why the part failed.
#[derive(Debug)]
pub struct Check {
    pub part: &'static str,
    pub result: Result<String, CheckError>,
}

/// Why a check failed, as the one line printed after `FAIL`.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The frame source could not be opened (with the causes, as the daemon logs them).
    #[error("{0:#}")]
    Camera(anyhow::Error),
    #[error("{origin}: delivered no frame")]
    NoFrame { origin: String },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A model, the manifest, the pipeline or a display failed.
    #[error(transparent)]
    Agecam(#[from] crate::Error),
    #[error("no built-in demo frame")]
    NoDemoFrame,
    #[error("found no face in the built-in demo frame {origin}")]
    NoFace { origin: String },
    #[error("PNG snapshots: cannot write into {} ({error})", dir.display())]
    PngDir { dir: PathBuf, error: std::io::Error },
    /// The SPI LCD could not be initialised (with the causes).
    #[error("{0:#}")]
    Display(anyhow::Error),
}

/// Runs every check; never stops at the first failure.
pub fn selftest(config: &Config, model_dir: &Path) -> Vec<Check> {
    let mut checks = vec![
        Check {
            part: "camera",
            result: check_camera(config),
        },
        Check {
            part: "models",
            result: check_models(config, model_dir),
        },
    ];
    checks.push(Check {
        part: "inference",
        result: check_inference(config, model_dir),
    });
    checks.push(Check {
        part: "display",
        result: check_display(config),
    });
    checks
}

fn check_camera(config: &Config) -> Result<String, CheckError> {
    let mut source = crate::daemon::open_source(config).map_err(CheckError::Camera)?;
    match source.next_frame() {
        Ok(Some(frame)) => Ok(format!(
            "{}: got a {}x{} frame",
            source.describe(),
            frame.image.width(),
            frame.image.height()
        )),
        Ok(None) => Err(CheckError::NoFrame {
            origin: source.describe(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The manifest's signature is checked against the trusted keys, every file of the manifest
/// is hash-checked (a damaged file is worth knowing about even if this configuration does not
/// load it), then the model `model.use` selects and the files of the configured detector are
/// named with their licences.
pub fn check_models(config: &Config, model_dir: &Path) -> Result<String, CheckError> {
    let manifest = Manifest::load(model_dir, &TrustedKeys::from_config(&config.model)?)?;
    manifest.verify_all()?;
    let verified: Vec<String> = manifest
        .entries
        .iter()
        .map(|entry| format!("{} ({})", entry.file, entry.role.name()))
        .collect();
    let chosen = manifest.verify(config.model.model_use)?;
    let detector: Vec<String> = crate::pipeline::detector_roles(config.detector.kind())
        .iter()
        .filter_map(|&role| chosen.detector_licence_line(role))
        .collect();
    Ok(format!(
        "{}: signed by {}; sha256 verified: {}; {}; detector.kind = \"{}\": {}",
        model_dir.display(),
        manifest.signed_by,
        verified.join(", "),
        chosen.licence_line(),
        config.detector.kind().name(),
        detector.join("; ")
    ))
}

pub fn check_inference(config: &Config, model_dir: &Path) -> Result<String, CheckError> {
    let mut pipeline = Pipeline::load(config, model_dir)?;
    let frame = demo_frames(false)
        .next_frame()?
        .ok_or(CheckError::NoDemoFrame)?;
    let (faces, times) = pipeline.process(&frame.image)?;
    if faces.is_empty() {
        return Err(CheckError::NoFace {
            origin: frame.origin,
        });
    }
    let estimates = if pipeline.has_model() {
        format!(
            "age/gender estimated in {:.0} ms",
            times.infer.as_secs_f64() * 1000.0
        )
    } else {
        "no age/gender model installed".to_string()
    };
    Ok(format!(
        "{} face(s) in demo frame {} found in {:.0} ms; {estimates}",
        faces.len(),
        frame.origin,
        times.detect.as_secs_f64() * 1000.0
    ))
}

fn check_display(config: &Config) -> Result<String, CheckError> {
    match config.display.target {
        DisplayTarget::None => Ok("none configured".to_string()),
        DisplayTarget::Png => {
            let dir = &config.display.png_dir;
            std::fs::create_dir_all(dir)
                .and_then(|()| tempfile_in(dir))
                .map(|()| format!("PNG snapshots: {} is writable", dir.display()))
                .map_err(|error| CheckError::PngDir {
                    dir: dir.clone(),
                    error,
                })
        }
        DisplayTarget::Framebuffer => {
            crate::display::framebuffer::Framebuffer::open(&config.display.framebuffer)
                .map(|fb| format!("{} opened", crate::display::Display::describe(&fb)))
                .map_err(CheckError::from)
        }
        // Initialising the panel is the check: it opens the bus and the lines and sends the
        // init sequence (the panel blanks again when the check's display is dropped).
        DisplayTarget::SpiLcd => crate::daemon::open_display(config)
            .map(|display| format!("{} initialised", display.describe()))
            .map_err(CheckError::Display),
    }
}

/// Creates and removes a probe file in `dir`.
fn tempfile_in(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".agecam-selftest-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

/// Prints the lines; true when every check passed.
pub fn print_checks(checks: &[Check]) -> bool {
    for check in checks {
        match &check.result {
            Ok(detail) => println!("PASS {:<10} {detail}", check.part),
            Err(problem) => println!("FAIL {:<10} {problem}", check.part),
        }
    }
    checks.iter().all(|c| c.result.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CameraSource;

    fn models() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    #[test]
    fn all_parts_pass_with_a_folder_camera_and_the_shipped_models() {
        let frames = tempfile::tempdir().unwrap();
        image::RgbImage::new(64, 48)
            .save(frames.path().join("a.png"))
            .unwrap();
        let snaps = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.camera.source = CameraSource::Folder;
        config.camera.folder = frames.path().to_path_buf();
        config.display.target = DisplayTarget::Png;
        config.display.png_dir = snaps.path().join("snaps");
        let checks = selftest(&config, &models());
        assert!(checks.iter().all(|c| c.result.is_ok()), "{checks:#?}");
        assert_eq!(checks.len(), 4);
        // The installer sees which model runs and what it may be used for.
        let models = checks[1].result.as_ref().unwrap();
        assert!(
            models.contains("model.use = research") && models.contains("licence: "),
            "{models}"
        );
    }

    #[test]
    fn each_broken_part_fails_on_its_own_line() {
        let mut config = Config::default();
        config.camera.source = CameraSource::Folder;
        config.camera.folder = "/nonexistent/frames".into();
        let checks = selftest(&config, Path::new("/nonexistent/models"));
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.result.is_err())
            .map(|c| c.part)
            .collect();
        assert_eq!(failed, vec!["camera", "models", "inference"]);
        assert!(checks[0]
            .result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/frames"));
    }
}
