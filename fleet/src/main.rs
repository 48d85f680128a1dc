//! The `agecam-fleet` command: parse flags and the settings file, then run the collector.

use clap::Parser;

/// Fleet collector for agecam units: stores the statistics intervals they push over MQTT
/// (PostgreSQL, or an SQLite file by default) and serves a page of them.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    flags: agecam_fleet::config::Flags,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let settings = match agecam_fleet::config::Settings::load(&cli.flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agecam-fleet: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = agecam_fleet::run(settings) {
        eprintln!("agecam-fleet: {e:#}");
        std::process::exit(1);
    }
}
