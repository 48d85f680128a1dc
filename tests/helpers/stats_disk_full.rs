//! The victim of the disk-full test in `tests/stats_durability.rs`: a statistics recorder fed
//! simulated minutes on command, in its own process so the test can cap its file size
//! (RLIMIT_FSIZE, through prlimit) while it runs, the way a full disk stops a write.
//!
//! Reads commands from stdin, one per line, and answers each with `pending P saved S`:
//! `minutes N` runs N simulated minutes (10 fps, one person in view for the first 20 s of each
//! minute, 60 s intervals); `finish` ends the run as a clean shutdown does and exits.

use agecam::config::StatsConfig;
use agecam::face::FaceResult;
use agecam::model::{AgeGender, Gender};
use agecam::stats::{Clock, ManualClock, StatsRecorder, StatsSettings};
use agecam::track::{TrackSettings, Tracker};
use agecam::vision::FaceBox;
use std::io::{BufRead, Write};

fn main() {
    // A capped file size must fail the write (EFBIG), not kill the process with SIGXFSZ.
    // SAFETY: setting a signal to be ignored before any thread is started.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let path = std::env::args().nth(1).expect("usage: stats_disk_full DB");
    let clock = ManualClock::new(1_795_392_000.0);
    // A `[stats]` section with 1-minute intervals, stored at the given path.
    let stats = StatsConfig {
        unit_id: "disk-full".into(),
        interval_minutes: 1,
        retention_days: 0,
        ..StatsConfig::default()
    };
    let settings = StatsSettings {
        database: path.into(),
        ..StatsSettings::from_config(&stats)
    };
    let mut recorder = StatsRecorder::new(settings, clock.wall());
    let mut tracker = Tracker::new(TrackSettings::from_config(&stats));
    let face = FaceResult {
        track: None,
        looking: None,
        face: FaceBox {
            x: 100.0,
            y: 100.0,
            width: 90.0,
            height: 90.0,
            score: 0.9,
            landmarks: None,
        },
        estimate: Some(AgeGender {
            age: 30.0,
            age_low: 26.0,
            age_high: 34.0,
            gender: Gender::Female,
            gender_confidence: 0.95,
        }),
    };
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|n| n.parse::<u32>().ok()),
        ) {
            (Some("minutes"), Some(n)) => {
                for _ in 0..n {
                    for tenth in 0..600 {
                        let faces = if tenth < 200 {
                            std::slice::from_ref(&face)
                        } else {
                            &[]
                        };
                        recorder.on_frame(tracker.update(faces, clock.monotonic()), &clock);
                        clock.advance(0.1);
                    }
                }
            }
            (Some("finish"), _) => recorder.finish(tracker.finish(), &clock),
            _ => panic!("unknown command {line:?}"),
        }
        writeln!(
            out,
            "pending {} saved {}",
            recorder.pending(),
            recorder.saved()
        )
        .ok();
        out.flush().ok();
        if line.trim() == "finish" {
            return;
        }
    }
}
