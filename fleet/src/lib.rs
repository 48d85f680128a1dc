//! agecam-fleet: the fleet collector. Receives the intervals agecam units push over MQTT,
//! validates and stores them idempotently (PostgreSQL, or embedded SQLite), and serves a page
//! of the fleet's published statistics. Runs on an office server or a VM, never on a kiosk.

pub mod chart;
pub mod config;
pub mod ingest;
pub mod schema;
pub mod store;
pub mod web;

use anyhow::Context;

/// Wall-clock Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the collector until SIGINT or SIGTERM: checks the database, starts the ingest and
/// serves the page.
pub fn run(settings: config::Settings) -> anyhow::Result<()> {
    // Fail at start, with the database's own words, rather than retry silently for ever.
    drop(settings.database.open()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = settings.web.listen;
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("web.listen {listen}: cannot listen there (in use, or not this machine's address); choose another with --listen")
        })?;
        let ingest = ingest::Ingest::start(settings.broker.clone(), settings.database.clone())
            .context("starting the ingest threads")?;
        log::info!(
            "agecam-fleet: page at http://{listen}/ ; storing into {} ; subscribing to {}",
            settings.database.describe(),
            settings.broker.describe()
        );
        let state = web::AppState::new(settings.database.clone(), settings.web.clone(), ingest.metrics.clone());
        let served = axum::serve(listener, web::router(state))
            .with_graceful_shutdown(shutdown())
            .await;
        log::info!("agecam-fleet: stopping; messages not yet stored stay in the broker session");
        tokio::task::spawn_blocking(move || ingest.stop()).await.ok();
        served.context("web server")
    })
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
