//! `agecam models`: install a signed model bundle beside the current set, roll back to the
//! previous set, and show what is installed ([`crate::model::sets`]).

use crate::config::Config;
use crate::model::sets::ModelStore;
use crate::model::TrustedKeys;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Verify a model bundle (signature, hashes, form), unpack it beside the current set, run
    /// the selftest on it, then switch to it; the set it replaces is kept for `rollback`.
    Install {
        /// The bundle file (made by `agecam-host sign --bundle`).
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// The model store [default: model.store from the config].
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Make the previous set current again (and the current one previous).
    Rollback {
        /// The model store [default: model.store from the config].
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Show which model set the daemon loads, and which one `rollback` would return to.
    Status {
        /// The model store [default: model.store from the config].
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
}

const RESTART: &str = "restart the daemon to load it: systemctl restart agecam";

/// Runs one `agecam models` command.
pub fn models_command(command: &ModelsCommand, config: &Config) -> anyhow::Result<()> {
    let keys = TrustedKeys::from_config(&config.model)?;
    let store_dir =
        |store: &Option<PathBuf>| store.clone().unwrap_or_else(|| config.model.store.clone());
    match command {
        ModelsCommand::Install { bundle, store } => {
            let store = ModelStore::new(&store_dir(store));
            let mut selftest = |dir: &Path| selftest_on(config, dir);
            let done = store.install(bundle, &keys, &mut selftest, &mut |_| false)?;
            for line in &done.checks {
                println!("{line}");
            }
            if done.changed {
                println!(
                    "installed model set {} (signed by {}) in {}; previous: {}; {RESTART}",
                    done.current,
                    done.signed_by,
                    store.root().display(),
                    done.previous
                        .as_deref()
                        .unwrap_or("none (the package's set in model.dir)")
                );
            } else {
                println!(
                    "model set {} is already current; nothing changed",
                    done.current
                );
            }
        }
        ModelsCommand::Rollback { store } => {
            let store = ModelStore::new(&store_dir(store));
            let done = store.rollback(&keys)?;
            println!(
                "model set {} (signed by {}) is current again; {} is now previous; {RESTART}",
                done.current,
                done.signed_by,
                done.previous.as_deref().unwrap_or("none")
            );
        }
        ModelsCommand::Status { store } => {
            let store = ModelStore::new(&store_dir(store));
            let (current, previous) = store.status();
            match current {
                Some(id) => println!(
                    "current: model set {id} in {}",
                    store.root().join("sets").join(&id).display()
                ),
                None => println!(
                    "current: the package's set in {} (no set installed in {})",
                    config.model.dir.display(),
                    store.root().display()
                ),
            }
            println!("previous: {}", previous.as_deref().unwrap_or("none"));
        }
    }
    Ok(())
}

/// The selftest's model and inference checks on an unpacked set, as `agecam selftest` runs
/// them: the signature and every hash, the set's licence lines, and a face found (and
/// classified) in the built-in demo frame with this unit's configuration.
fn selftest_on(config: &Config, dir: &Path) -> Result<Vec<String>, String> {
    let checks = [
        ("models", super::selftest::check_models(config, dir)),
        ("inference", super::selftest::check_inference(config, dir)),
    ];
    let mut lines = Vec::new();
    for (part, result) in checks {
        match result {
            Ok(detail) => lines.push(format!("PASS {part:<10} {detail}")),
            Err(problem) => return Err(format!("{part}: {problem}")),
        }
    }
    Ok(lines)
}
