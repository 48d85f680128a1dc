//! `pose-eval`: the head pose's accuracy on synthetic faces of independent mean-face
//! geometries and, given its files, on AFLW2000-3D's landmarks; the looking/not accuracy of
//! threshold pairs (the measurement is [`agecam_host::pose_eval`]).

use agecam_host::pose_eval::{
    self as pe, aflw2000, Confusion, LandmarkSet, Run, SynthSettings, Truth,
};
use std::path::PathBuf;

/// Options of `pose-eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seed of the synthetic faces.
    #[arg(long, default_value_t = 27)]
    pub seed: u64,
    /// Synthetic faces per geometry and landmark set.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub samples: usize,
    /// Landmark noise: standard deviation per coordinate as a fraction of the inter-eye
    /// distance (a frontal face's, in pixels).
    #[arg(long, default_value_t = 0.03, value_name = "F")]
    pub noise: f64,
    /// What counts as looking in truth: |yaw| within this many degrees…
    #[arg(long, default_value_t = 25.0, value_name = "DEG")]
    pub truth_yaw: f64,
    /// …and |pitch| within this many.
    #[arg(long, default_value_t = 20.0, value_name = "DEG")]
    pub truth_pitch: f64,
    /// A folder with AFLW2000-3D's AFLW2000-3D.pose.npy, AFLW2000-3D.pts68.npy and
    /// AFLW2000-3D-Reannotated.pts68.npy (the 3DDFA project's test.configs/): also measure yaw
    /// on its annotated landmarks. Evaluation only; never commit these files.
    #[arg(long, value_name = "DIR")]
    pub aflw2000: Option<PathBuf>,
}

/// The |yaw| ranges of the tables, degrees.
const YAW_BINS: [(f64, f64); 7] = [
    (0.0, 15.0),
    (15.0, 30.0),
    (30.0, 45.0),
    (45.0, 60.0),
    (60.0, 75.0),
    (75.0, 99.1),
    (0.0, 60.0),
];
const PITCH_BINS: [(f64, f64); 4] = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 40.1)];
const YAW_THRESHOLDS: [f64; 8] = [15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0];
const PITCH_THRESHOLDS: [f64; 7] = [10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0];

fn range(lo: f64, hi: f64) -> String {
    if hi > 90.0 {
        format!("≥ {lo:.0}")
    } else {
        format!("{lo:.0}–{hi:.0}")
    }
}

fn print_yaw_table(runs: &[(String, Run)], with_pitch: bool) {
    print!("| |yaw| |");
    for (name, _) in runs {
        print!(" {name} |");
    }
    println!();
    println!("|---|{}", "---|".repeat(runs.len()));
    for (lo, hi) in YAW_BINS {
        let label = if (lo, hi) == (0.0, 60.0) {
            "**0–60**".to_string()
        } else {
            range(lo, hi)
        };
        print!("| {label} |");
        for (_, run) in runs {
            let (n, failed) = run.count(lo, hi);
            let fail = if failed > 0 {
                format!(", {failed} no pose")
            } else {
                String::new()
            };
            if with_pitch {
                print!(
                    " {:.1} / {:.1} (bias {:+.1}; n {n}{fail}) |",
                    run.yaw_mae(lo, hi),
                    run.pitch_mae_by_yaw(lo, hi),
                    run.yaw_bias(lo, hi)
                );
            } else {
                print!(
                    " {:.1} (bias {:+.1}; n {n}{fail}) |",
                    run.yaw_mae(lo, hi),
                    run.yaw_bias(lo, hi)
                );
            }
        }
        println!();
    }
}

fn describe(c: &Confusion) -> String {
    format!(
        "{:.1} % ({:.1} % balanced; looking recall {:.1} %, away recall {:.1} %)",
        100.0 * c.accuracy(),
        100.0 * c.balanced_accuracy(),
        100.0 * c.looking_recall(),
        100.0 * c.away_recall()
    )
}

/// `pose-eval`: prints the tables (Markdown).
pub fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.samples > 0, "--samples must be at least 1");
    anyhow::ensure!(
        (0.0..1.0).contains(&args.noise),
        "--noise is a fraction of the inter-eye distance"
    );
    let settings = SynthSettings {
        seed: args.seed,
        samples: args.samples,
        noise: args.noise,
        ..SynthSettings::default()
    };
    let truth = Truth {
        max_yaw: args.truth_yaw,
        max_pitch: args.truth_pitch,
    };
    let sets = [LandmarkSet::MouthCorners, LandmarkSet::MouthCentre];
    let mut runs = Vec::new();
    for g in [pe::OPENFACE, pe::BFM] {
        for set in sets {
            runs.push((
                format!("{} {}", g.name, set.name()),
                pe::synthetic(&g, set, &settings),
            ));
        }
    }
    println!(
        "## Synthetic: {} faces per column, yaw ±{}°, pitch ±{}°, roll ±{}°, 0.5–3 m, noise σ = {:.1} % of the inter-eye distance, seed {}\n",
        settings.samples,
        settings.max_yaw,
        settings.max_pitch,
        settings.max_roll,
        100.0 * settings.noise,
        settings.seed
    );
    println!(
        "Yaw MAE / pitch MAE (°) by |true yaw|; bias = mean (estimate − truth) · sign(truth):\n"
    );
    print_yaw_table(&runs, true);
    println!("\nPitch MAE (°) by |true pitch|, faces with |yaw| < 60:\n");
    print!("| |pitch| |");
    for (name, _) in &runs {
        print!(" {name} |");
    }
    println!("\n|---|{}", "---|".repeat(runs.len()));
    for (lo, hi) in PITCH_BINS {
        print!("| {} |", range(lo, hi));
        for (_, run) in &runs {
            print!(" {:.1} |", run.pitch_mae(lo, hi));
        }
        println!();
    }
    print!("| bias (mean signed error) |");
    for (_, run) in &runs {
        print!(" {:+.1} |", run.pitch_bias());
    }
    println!();

    println!(
        "\n## Looking / not: truth |yaw| ≤ {}° and |pitch| ≤ {}°; balanced accuracy (%) of each threshold pair, mean of the {} columns (worst column)\n",
        truth.max_yaw,
        truth.max_pitch,
        runs.len()
    );
    print!("| max_yaw \\ max_pitch |");
    for p in PITCH_THRESHOLDS {
        print!(" {p} |");
    }
    println!("\n|---|{}", "---|".repeat(PITCH_THRESHOLDS.len()));
    let mut best = (f64::NEG_INFINITY, 0.0, 0.0);
    for y in YAW_THRESHOLDS {
        print!("| {y} |");
        for p in PITCH_THRESHOLDS {
            let scores: Vec<f64> = runs
                .iter()
                .map(|(_, r)| r.confusion(truth, y, p).balanced_accuracy())
                .collect();
            let mean = scores.iter().sum::<f64>() / scores.len() as f64;
            let worst = scores.iter().copied().fold(f64::INFINITY, f64::min);
            print!(" {:.1} ({:.1}) |", 100.0 * mean, 100.0 * worst);
            if mean > best.0 {
                best = (mean, y, p);
            }
        }
        println!();
    }
    println!(
        "\nBest mean balanced accuracy: max_yaw {}, max_pitch {} ({:.1} %).",
        best.1,
        best.2,
        100.0 * best.0
    );
    let (dy, dp) = (pe::DEFAULT_MAX_YAW, pe::DEFAULT_MAX_PITCH);
    println!("\nAt the defaults (max_yaw {dy}, max_pitch {dp}):\n");
    for (name, run) in &runs {
        println!("- {name}: {}", describe(&run.confusion(truth, dy, dp)));
    }

    if let Some(dir) = &args.aflw2000 {
        println!(
            "\n## AFLW2000-3D: annotated landmarks, yaw labels of the 3D fit (no pitch labels)\n"
        );
        let mut real = Vec::new();
        let mut asymmetry = Vec::new();
        for points in [aflw2000::Points::Fitted, aflw2000::Points::Reannotated] {
            let faces = aflw2000::load(dir, points)?;
            for set in sets {
                let (run, asym) = aflw2000::evaluate(&faces, set);
                let name = format!(
                    "{} {}",
                    match points {
                        aflw2000::Points::Fitted => "fitted",
                        aflw2000::Points::Reannotated => "re-annotated",
                    },
                    set.name()
                );
                asymmetry.push((name.clone(), asym));
                real.push((name, run));
            }
        }
        println!("Yaw MAE (°) by |labelled yaw|:\n");
        print_yaw_table(&real, false);
        println!("\nMean |yaw(face) + yaw(mirror image)| (0 for a symmetric estimate):\n");
        for (name, asym) in &asymmetry {
            println!("- {name}: {asym:.2}°");
        }
        let yaw_truth = Truth {
            max_yaw: truth.max_yaw,
            max_pitch: f64::INFINITY,
        };
        println!(
            "\nLooking / not by yaw alone (truth |yaw| ≤ {}°), accuracy of each max_yaw:\n",
            truth.max_yaw
        );
        print!("| max_yaw |");
        for (name, _) in &real {
            print!(" {name} |");
        }
        println!("\n|---|{}", "---|".repeat(real.len()));
        for y in YAW_THRESHOLDS {
            print!("| {y} |");
            for (_, run) in &real {
                let c = run.confusion(yaw_truth, y, f64::INFINITY);
                print!(
                    " {:.1} ({:.1} bal.) |",
                    100.0 * c.accuracy(),
                    100.0 * c.balanced_accuracy()
                );
            }
            println!();
        }
    }
    Ok(())
}
