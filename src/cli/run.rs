//! `run`: the daemon loop, from the configuration or on the built-in demo frames.

use super::stats::ExportFormat;
use crate::config::Config;
use crate::daemon::{self, Daemon, RunLimits};
use crate::stats::SystemClock;
use anyhow::Context;
use std::path::{Path, PathBuf};
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
pub fn run_command(args: &RunArgs, config: &Config, model_dir: &Path) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let config = if args.demo {
        daemon::demo_config(config, &args.out)
    } else {
        config.clone()
    };
    let mut daemon = Daemon::from_config(&config, model_dir)?;
    let limits = RunLimits {
        max_frames: args.max_frames,
    };
    let mut systemd = crate::systemd::Notifier::from_env();
    let summary = daemon.run(&SystemClock, limits, &stop, &mut systemd);
    // Stop the push thread before reporting, whatever the run's outcome: unsent intervals stay
    // in the store and go out at the next start.
    daemon.shutdown();
    let summary = summary?;
    log::info!("frames decoded: {}", summary.decodes);
    log::info!(
        "{} frames ({} skipped as unreadable, {} older frames dropped undecoded for newer ones, {} camera faults), {} faces, {:.1} fps; detector on {} frames ({:.0} %), age/gender network on {} faces; detection {:.1} ms/frame, age/gender {:.1} ms/frame",
        summary.frames,
        summary.bad_frames,
        summary.stale_frames,
        summary.camera_faults,
        summary.faces,
        summary.fps(),
        summary.detector_frames,
        100.0 * summary.detector_frames as f64 / summary.frames.max(1) as f64,
        summary.classified_faces,
        summary.detect_time.as_secs_f64() * 1000.0 / summary.frames.max(1) as f64,
        summary.infer_time.as_secs_f64() * 1000.0 / summary.frames.max(1) as f64
    );
    if args.demo {
        let database = config.stats.database();
        println!("annotated frames written to {}", args.out.display());
        let dir = if args.out == Path::new("agecam-demo") {
            String::new()
        } else {
            format!(" {}", args.out.display())
        };
        println!(
            "statistics stored in {} (`agecam stats export --demo{dir}` exports them again, as CSV or with --format json); they export as:",
            database.display()
        );
        super::stats::export(
            &database,
            i64::MIN,
            i64::MAX,
            ExportFormat::Json,
            &daemon::privacy(&config),
            &mut std::io::stdout().lock(),
        )?;
    }
    Ok(())
}
