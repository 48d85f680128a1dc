//! Logging set-up for both binaries: the `log` facade through `env_logger`.
//!
//! `RUST_LOG` overrides the default level (`info`). Colour is used only when stderr is a
//! terminal, so journald and log files get plain text.

/// Starts logging at `default_level` unless `RUST_LOG` says otherwise. Safe to call twice.
pub fn init(default_level: &str) {
    let env = env_logger::Env::default()
        .filter_or("RUST_LOG", default_level)
        .write_style_or("RUST_LOG_STYLE", "auto");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .format_target(false)
        .try_init();
}
