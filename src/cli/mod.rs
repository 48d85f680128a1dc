//! Command-line front ends shared by the two binaries: argument types (clap) and the commands
//! themselves. Errors here are `anyhow` with context; the library below stays typed.

pub mod bench;
pub mod cost;
pub mod models;
pub mod predict;
pub mod run;
pub mod selftest;
pub mod stats;

use crate::config::Config;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the models live when neither `--models` nor a config file says: the installed
/// location, else a repository checkout's `models/` (so the README's demo works from a clone).
pub fn default_model_dir() -> PathBuf {
    let installed = Config::default().model.dir;
    let checkout = PathBuf::from("models");
    [installed, checkout.clone()]
        .into_iter()
        .find(|dir| dir.join(crate::model::manifest::MANIFEST_FILE).is_file())
        .unwrap_or(checkout)
}

/// The configuration from `path`, or the defaults when no file is given.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::default()),
    }
}

/// The model folder: `--models`, else the set `agecam models install` made current in
/// `model.store`, else the config file's `model.dir`, else [`default_model_dir`].
pub fn model_dir(cli: Option<&Path>, config_file: Option<&Path>, config: &Config) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_path_buf();
    }
    if let Some(current) = crate::model::sets::ModelStore::new(&config.model.store).current() {
        return current;
    }
    match config_file {
        Some(_) => config.model.dir.clone(),
        None => default_model_dir(),
    }
}

/// `check-config`: parses and validates a configuration file.
pub fn check_config(path: &Path) -> anyhow::Result<()> {
    let config =
        Config::load(path).with_context(|| "the configuration is not valid".to_string())?;
    // The files the config points at are read now too, so a missing secret or CA is found
    // at install time rather than when the daemon starts.
    crate::push::PushSettings::from_config(&config)?;
    println!("{}: OK", path.display());
    Ok(())
}
