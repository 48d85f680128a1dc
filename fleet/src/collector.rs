//! The running collector: checks the database, starts the ingest, serves the page until
//! SIGINT or SIGTERM, then stops the ingest (what is not yet stored stays in the broker).

use crate::config::Settings;
use crate::ingest::Ingest;
use crate::store::StoreError;
use crate::web;
use std::net::SocketAddr;

/// Why the collector could not start or stopped with an error; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database cannot be opened or migrated (its message names it).
    #[error(transparent)]
    Database(#[from] StoreError),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("web.listen {addr}: cannot listen there (in use, or not this machine's address); choose another with --listen")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the ingest threads")]
    Ingest(#[source] std::io::Error),
    #[error("web server")]
    Serve(#[source] std::io::Error),
}

/// Runs the collector until SIGINT or SIGTERM: checks the database, starts the ingest and
/// serves the page.
pub fn run(settings: Settings) -> Result<(), RunError> {
    // Fail at start, with the database's own words, rather than retry silently for ever.
    drop(settings.database.open()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(async move {
        let listen = settings.web.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| RunError::Listen {
                addr: listen,
                source,
            })?;
        let ingest = Ingest::start(settings.broker.clone(), settings.database.clone())
            .map_err(RunError::Ingest)?;
        log::info!(
            "agecam-fleet: page at http://{listen}/ ; storing into {} ; subscribing to {}",
            settings.database.describe(),
            settings.broker.describe()
        );
        let state = web::AppState::new(
            settings.database.clone(),
            settings.web.clone(),
            ingest.metrics.clone(),
        );
        let served = axum::serve(listener, web::router(state))
            .with_graceful_shutdown(shutdown())
            .await;
        log::info!("agecam-fleet: stopping; messages not yet stored stay in the broker session");
        tokio::task::spawn_blocking(move || ingest.stop())
            .await
            .ok();
        served.map_err(RunError::Serve)
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
