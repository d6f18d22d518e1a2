//! Wires the daemon together: the sync-core driver on a `LocalSet` (its
//! futures are not `Send`), the HTTP endpoint and the served relay on the
//! tokio worker threads, and a clean shutdown on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use sync_core::{Driver, DriverHandle, Engine, EngineError, EventStore};
use tokio::signal::unix::{signal, SignalKind};

use crate::clock::{now_millis, TokioClock};
use crate::config::{DaemonConfig, StoreMode};
use crate::connector::WsConnector;
use crate::http::{self, Router};
use crate::metrics::SnapshotSource;
use crate::progress_log::{ProgressLog, POLL_INTERVAL};
use crate::served_relay::{self, ServeError};
use crate::store::{self, LmdbStore, RelayStore};

/// Shutdown must finish within this (SPEC/issue: exit within 5 s).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(4500);

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The engine refused the configuration.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::OpenError),
    /// The served relay could not bind.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The HTTP endpoint could not bind.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The driver did not stop in time.
    #[error("shutdown did not finish within {0:?}")]
    ShutdownTimeout(Duration),
    /// The driver task failed.
    #[error("sync driver failed: {0}")]
    Driver(String),
}

/// Runs until SIGINT/SIGTERM.
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(DaemonError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    rt.block_on(local.run_until(run_async(config)))
}

async fn run_async(config: DaemonConfig) -> Result<(), DaemonError> {
    let engine = Engine::new(config.sync.clone(), config.policy.clone(), &config.bootstrap, config.seed, now_millis())?;
    let bootstrap = config.bootstrap.iter().cloned();
    let connector = WsConnector::new(config.sync.allow_private_relays, bootstrap, config.sync.max_frame_bytes);
    tracing::info!(
        bootstrap = ?config.bootstrap,
        data_dir = %config.data_dir.display(),
        allow_private_relays = config.sync.allow_private_relays,
        "starting grasp-sync"
    );
    match &config.store {
        StoreMode::Embedded => {
            let mut store = LmdbStore::open(&config.data_dir)?;
            let relay = match config.relay_listen {
                Some(addr) => {
                    let relay = served_relay::serve(store.database(), addr, config.served.clone()).await?;
                    tracing::info!(url = %format!("ws://{addr}"), "serving stored events as a read-only relay");
                    store.notify_relay(relay.clone());
                    Some(relay)
                }
                None => None,
            };
            let result = drive(engine, connector, store, &config).await;
            if let Some(relay) = relay {
                relay.shutdown();
            }
            result
        }
        StoreMode::Relay(url) => {
            tracing::info!(store_relay = %url, "writing events into an existing relay");
            let store = RelayStore::new(url.clone(), &config.data_dir)?;
            drive(engine, connector, store, &config).await
        }
    }
}

async fn drive<S: EventStore + 'static>(
    engine: Engine,
    connector: WsConnector,
    store: S,
    config: &DaemonConfig,
) -> Result<(), DaemonError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let driver = Driver::new(engine, TokioClock, connector, store);
    let handle = driver.handle();
    let status_handle = handle.clone();
    let source: SnapshotSource = Arc::new(move || status_handle.status());
    let listener = http::bind(config.http_listen).await.map_err(|source| DaemonError::Http { addr: config.http_listen, source })?;
    tracing::info!(addr = %config.http_listen, "serving /metrics, /health and /status");
    let http_task = tokio::spawn(http::serve(listener, Arc::new(Router::new(source)), config.http));

    let progress_task = tokio::task::spawn_local(log_progress(handle.clone(), config.progress_interval));
    let mut run = tokio::task::spawn_local(driver.run());
    let early = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        r = &mut run => Some(r),
    };
    handle.stop();
    let result = match early {
        Some(r) => r.map(|_| ()).map_err(|e| DaemonError::Driver(e.to_string())),
        None => match tokio::time::timeout(SHUTDOWN_BUDGET, run).await {
            Ok(Ok(driver)) => {
                let s = driver.handle().status();
                tracing::info!(
                    events_synced = s.totals.events_synced,
                    "stopped cleanly: relays closed, store flushed, sync state persisted"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(DaemonError::Driver(e.to_string())),
            Err(_) => Err(DaemonError::ShutdownTimeout(SHUTDOWN_BUDGET)),
        },
    };
    http_task.abort();
    progress_task.abort();
    result
}

/// Logs historic-sync progress and the end-of-sync summary (see [`ProgressLog`]).
async fn log_progress(handle: DriverHandle, interval: Option<Duration>) {
    let mut log = ProgressLog::new(interval);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for line in log.observe(&handle.status()) {
            tracing::info!("{line}");
        }
    }
}
