//! `agecam`: the kiosk daemon and its device-side tools.

use agecam::cli::{self, bench::BenchArgs, predict::PredictArgs, run::RunArgs};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// agecam estimates the age and gender of faces seen by a camera, shows them on an attached
/// display and logs only anonymous counts. Nothing it stores identifies a person.
#[derive(Debug, Parser)]
#[command(name = "agecam", version)]
struct Cli {
    /// Configuration file (TOML; see deploy/agecam.toml for every key). Without it, built-in
    /// defaults are used.
    #[arg(long, short, global = true, value_name = "FILE", env = "AGECAM_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: capture frames, find faces, estimate age and gender, and show them.
    /// Try `agecam run --demo` on a machine without a camera.
    Run(RunArgs),
    /// Find faces in image files and estimate their age and gender.
    Predict(PredictArgs),
    /// Check the camera, the models (hashes, one detection) and the display; one line each.
    Selftest {
        /// Folder with manifest.json and the models [default: as for `run`].
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
    },
    /// Install signed model sets, roll back, and show what is installed.
    #[command(subcommand)]
    Models(cli::models::ModelsCommand),
    /// Read the anonymous statistics the daemon stored.
    #[command(subcommand)]
    Stats(cli::stats::StatsCommand),
    /// Time each pipeline stage on the built-in demo frames and print frames per second.
    Bench(BenchArgs),
    /// Run one pipeline stage N times on a demo frame, to count its instructions.
    Cost(cli::cost::CostArgs),
    /// Check a configuration file and explain the first problem in it.
    CheckConfig {
        /// The file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    agecam::logging::init("info");
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_file = cli.config.as_deref();
    match &cli.command {
        Command::CheckConfig { file } => {
            cli::check_config(file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let config = cli::load_config(config_file)?;
            let models = cli::model_dir(args.models.as_deref(), config_file, &config);
            cli::run::run_command(args, &config, &models)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(command) => {
            let config = cli::load_config(config_file)?;
            cli::models::models_command(command, &config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cost(args) => cli::cost::cost_command(args, config_file),
        Command::Predict(args) => cli::predict::predict_command(args, config_file),
        Command::Selftest { models } => {
            let config = cli::load_config(config_file)?;
            let models = cli::model_dir(models.as_deref(), config_file, &config);
            let checks = cli::selftest::selftest(&config, &models);
            Ok(if cli::selftest::print_checks(&checks) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Stats(cli::stats::StatsCommand::Export {
            format,
            since,
            until,
            db,
            demo,
        }) => {
            let config = cli::load_config(config_file)?;
            // The demo's statistics are read as the demo stored and published them.
            let config = match demo {
                Some(dir) => agecam::daemon::demo_config(&config, dir),
                None => config,
            };
            let since = since
                .as_deref()
                .map(cli::stats::parse_time)
                .transpose()?
                .unwrap_or(i64::MIN);
            let until = until
                .as_deref()
                .map(cli::stats::parse_time)
                .transpose()?
                .unwrap_or(i64::MAX);
            let database = db.clone().unwrap_or_else(|| config.stats.database());
            let privacy = agecam::daemon::privacy(&config);
            cli::stats::export(
                &database,
                since,
                until,
                *format,
                &privacy,
                &mut std::io::stdout().lock(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let config = cli::load_config(config_file)?;
            let models = cli::model_dir(args.models.as_deref(), config_file, &config);
            let verified = agecam::model::verified_models(&models, &config.model)?;
            let mut pipeline = agecam::pipeline::Pipeline::from_verified(&verified, &config)?;
            if args.stream {
                let report = cli::bench::bench_stream(
                    &mut pipeline,
                    config.schedule,
                    &args.scenes,
                    args.display,
                )?;
                cli::bench::print_stream_report(&report, args.json)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut report = cli::bench::bench(&mut pipeline, args.rounds)?;
            report.model_forms = cli::bench::time_model_forms(&verified, 30)?;
            cli::bench::print_report(&report, args.json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
