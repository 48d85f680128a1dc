//! `run`: the daemon loop, from the configuration or on the built-in demo frames.

use super::stats::ExportFormat;
use crate::capture::{demo_frames, FrameSource, StillImages};
use crate::config::{CameraSource, Config, DisplayTarget, StatsConfig};
use crate::display::{Display, NoDisplay, PngSnapshots};
use crate::pipeline::{run, Pipeline, RunLimits};
use crate::push::{PushSettings, Pusher};
use crate::stats::privacy::PrivacySettings;
use crate::stats::tracker::TrackerSettings;
use crate::stats::{Clock, StatsRecorder, StatsSettings, SystemClock};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run on the sample frames built into the binary instead of a camera, and write annotated
    /// PNGs into --out. For trying agecam on a machine without a camera.
    #[arg(long)]
    pub demo: bool,

    /// With --demo: folder the annotated frames are written into.
    #[arg(long, value_name = "DIR", default_value = "agecam-demo")]
    pub out: PathBuf,

    /// Stop after this many frames (for tests and scripts).
    #[arg(long, value_name = "N")]
    pub max_frames: Option<u64>,

    /// Folder with manifest.json and the models [default: model.dir from --config, else
    /// /usr/share/agecam/models, else ./models].
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
}

/// Runs until the source ends, `--max-frames` is reached, or SIGINT/SIGTERM arrives.
pub fn run_command(
    args: &RunArgs,
    config: &Config,
    model_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }

    let mut pipeline = Pipeline::load(config, model_dir)?;
    let (mut source, mut display): (Box<dyn FrameSource>, Box<dyn Display>) = if args.demo {
        // Each still is shown for a second's worth of frames, as a person stands before a
        // camera, so the tracker sees visits rather than single-frame flickers.
        let frames = demo_frames(false).repeat_each(DEMO_FRAMES_PER_STILL);
        (
            Box::new(frames),
            Box::new(PngSnapshots::create(&args.out, DEMO_FRAMES_PER_STILL)?),
        )
    } else {
        (open_source(config)?, open_display(config)?)
    };
    log::info!(
        "frames from {}; output to {}",
        source.describe(),
        display.describe()
    );

    let mut stats_config = config.stats.clone();
    if args.demo {
        // The demo keeps its statistics beside its pictures, and publishes even single visits
        // so the handful of demo faces show up in the summary.
        stats_config.dir = args.out.clone();
        stats_config.k_anonymity = 1;
    }
    let settings = stats_settings(&stats_config)?;
    let database = settings.database.clone();
    let mut stats = StatsRecorder::new(settings, SystemClock.wall());
    log::info!("statistics: {}", database.display());
    let pusher = start_push(args, config)?;
    if let Some(pusher) = &pusher {
        let waker = pusher.waker();
        stats.notify_on_save(move || waker.wake());
    }

    let limits = RunLimits {
        max_frames: args.max_frames,
    };
    let summary = run(
        source.as_mut(),
        &mut pipeline,
        display.as_mut(),
        Some(&mut stats),
        &SystemClock,
        limits,
        &stop,
    );
    // Stop the push thread before reporting, whatever the run's outcome: unsent intervals stay
    // in the store and go out at the next start.
    if let Some(pusher) = pusher {
        pusher.stop();
    }
    let summary = summary?;
    log::info!(
        "{} frames ({} skipped as unreadable, {} older frames dropped for newer ones, {} camera faults), {} faces, {:.1} fps; detection {:.1} ms/frame, age/gender {:.1} ms/frame",
        summary.frames,
        summary.bad_frames,
        summary.stale_frames,
        summary.camera_faults,
        summary.faces,
        summary.fps(),
        summary.detect_time.as_secs_f64() * 1000.0 / summary.frames.max(1) as f64,
        summary.infer_time.as_secs_f64() * 1000.0 / summary.frames.max(1) as f64
    );
    if args.demo {
        println!("annotated frames written to {}", args.out.display());
        println!(
            "statistics stored in {}; they export as:",
            database.display()
        );
        let privacy = PrivacySettings::from_config(&stats_config);
        super::stats::export(
            &database,
            i64::MIN,
            i64::MAX,
            ExportFormat::Json,
            &privacy,
            &mut std::io::stdout().lock(),
        )?;
    }
    Ok(())
}

/// Starts the fleet push when `push.enabled` (never for `--demo`, whose made-up statistics
/// must not reach a fleet).
fn start_push(args: &RunArgs, config: &Config) -> anyhow::Result<Option<Pusher>> {
    if args.demo {
        if config.push.enabled {
            log::info!("--demo: the fleet push ([push]) is not started");
        }
        return Ok(None);
    }
    let Some(settings) = PushSettings::from_config(config)? else {
        return Ok(None);
    };
    Ok(Some(
        Pusher::start(settings).context("cannot start the fleet push thread")?,
    ))
}

/// Frames per demo still: about a second of a person in view at kiosk frame rates.
const DEMO_FRAMES_PER_STILL: u32 = 10;

/// The recorder's settings from the `[stats]` section.
pub fn stats_settings(stats: &StatsConfig) -> anyhow::Result<StatsSettings> {
    Ok(StatsSettings {
        unit_id: stats.unit_id(),
        database: stats.database(),
        interval_s: stats.interval_minutes as i64 * 60,
        buckets: stats.age_buckets.clone(),
        tracker: TrackerSettings {
            visit_gap: std::time::Duration::from_secs_f32(stats.visit_gap_seconds),
            min_frames: stats.min_track_frames,
            ..TrackerSettings::default()
        },
        retention_s: (stats.retention_days > 0).then(|| stats.retention_days as i64 * 86_400),
    })
}

pub fn open_source(config: &Config) -> anyhow::Result<Box<dyn FrameSource>> {
    let camera = &config.camera;
    match camera.source {
        CameraSource::Folder => Ok(Box::new(StillImages::from_folder(&camera.folder, camera.repeat)?)),
        #[cfg(feature = "device")]
        CameraSource::V4l2 => {
            let camera = crate::capture::v4l2::V4l2Camera::open(crate::capture::v4l2::CameraRequest {
                device: camera.device.clone(),
                width: camera.width,
                height: camera.height,
                fps: camera.fps,
            })?;
            // The camera runs at its own rate on a capture thread and the daemon always takes
            // the newest frame, so a slow model never shows or counts seconds-old pictures.
            Ok(Box::new(
                crate::capture::NewestFrame::start(camera)
                    .context("cannot start the camera capture thread")?,
            ))
        }
        #[cfg(not(feature = "device"))]
        CameraSource::V4l2 => anyhow::bail!(
            "camera.source = \"v4l2\" ({}) needs a build with the `device` feature \
             (cargo build --release --features device); this build can use camera.source = \"folder\" or `run --demo`",
            camera.device.display()
        ),
    }
}

pub fn open_display(config: &Config) -> anyhow::Result<Box<dyn Display>> {
    let display = &config.display;
    Ok(match display.target {
        DisplayTarget::None => Box::new(NoDisplay),
        DisplayTarget::Png => Box::new(PngSnapshots::create(&display.png_dir, display.png_every)?),
        DisplayTarget::Framebuffer => Box::new(crate::display::framebuffer::Framebuffer::open(
            &display.framebuffer,
        )?),
        #[cfg(feature = "spi-lcd")]
        DisplayTarget::SpiLcd => Box::new(crate::display::spi_lcd::open(&display.spi_lcd)?),
        #[cfg(not(feature = "spi-lcd"))]
        DisplayTarget::SpiLcd => anyhow::bail!(
            "display.target = \"spi_lcd\" ({}) needs a build with the `device` (or `spi-lcd`) feature \
             (cargo build --release --features device); this build can use \"framebuffer\", \"png\" or \"none\"",
            display.spi_lcd.device.display()
        ),
    })
}
