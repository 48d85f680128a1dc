//! The `agecam-fleet` command: parse flags and the settings file, then run the collector.

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;

/// Fleet collector for agecam units: stores the statistics intervals they push over MQTT
/// (PostgreSQL, or an SQLite file by default) and serves a page of them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    flags: agecam_fleet::config::Flags,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let settings = match agecam_fleet::config::Settings::load(&cli.flags) {
        Ok(s) => s,
        Err(e) => {
            // A settings problem: one line naming the file or flag, the key and what to do.
            eprintln!("agecam-fleet: {e}");
            return ExitCode::from(2);
        }
    };
    match agecam_fleet::collector::run(settings).context("agecam-fleet") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: what failed, then the system's words for why.
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}
