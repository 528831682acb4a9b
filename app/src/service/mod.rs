//! The running service. [`Service`] is assembled from its parts (store,
//! channel clients, clock, policy, API keys): it recovers pending orders
//! from the log, starts the timer loop, the index follower and the
//! read-model runner, and serves the HTTP API until shutdown; [`serve`] is
//! the one path from a configuration to a running service.
//!
//! - [`ledger`]: the only write path, over any decider;
//! - [`environment`]: the ledger's environment mark, checked at start;
//! - [`runtime`]: executes what the deciders say must happen next;
//! - [`index`]: orders by merchant and status, for lists;
//! - [`metrics`]: the Prometheus figures;
//! - [`reconcile`]: statement import;
//! - [`fingerprint`]: the per-ledger secret that fingerprints payment codes.
//! - [`resolve`]: operators' resolutions of manual reviews.

pub mod environment;
pub mod fingerprint;
pub mod index;
pub mod ledger;
pub mod metrics;
pub mod reconcile;
pub mod resolve;
pub mod runtime;
mod serve;

pub use serve::{exposure_warning, init_logging, serve, shutdown_signal};

use std::sync::Arc;

use axum::Router;
use paycode_adapters::clock::Clock;
use paycode_adapters::ids::IdSource;
use paycode_adapters::lease::StepLease;
use paycode_adapters::store::EventStore;
use paycode_domain::Policy;
use paycode_domain::payment::PaymentDecider;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use self::fingerprint::FingerprintKey;
use self::index::OrderIndex;
use self::ledger::{Ledger, PaymentLedgerError};
use self::metrics::Metrics;
use self::runtime::{Channels, Runtime};
use crate::http::limits::ServerLimits;
use crate::http::{ApiKey, AppState, metrics_router, router, router_with, server};
use crate::read::runner::{ProjectionRunner, RunnerOptions};
use paycode_adapters::read_models::ReadModelStore;

/// Everything the service is built from.
#[derive(Debug)]
pub struct Parts {
    pub store: Arc<dyn EventStore>,
    pub channels: Channels,
    pub clock: Arc<dyn Clock>,
    pub policy: Policy,
    pub api_keys: Vec<ApiKey>,
    /// What clients are held to (`[server]`).
    pub limits: ServerLimits,
    /// Fingerprints payment codes: the ledger's own, or random in memory.
    pub fingerprint_key: FingerprintKey,
    /// Who may act on an order's step: `LocalLeases` for one process,
    /// `SqliteStore::leases` when several processes may share a SQLite file.
    pub leases: Arc<dyn StepLease>,
    /// Where command (and so event) ids come from: `RandomIds` but in simulations.
    pub ids: Arc<dyn IdSource>,
}

/// A running service: background tasks plus the HTTP state.
#[derive(Debug)]
pub struct Service {
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Orders re-derived from the log at start.
    pub recovered_orders: usize,
    /// The stored read models the background runner keeps current.
    views: Option<Arc<dyn ReadModelStore>>,
}

impl Service {
    /// Recovers pending orders from the log and starts the background tasks,
    /// with the read models in memory (tests, the memory store).
    pub async fn start(parts: Parts) -> Result<Service, PaymentLedgerError> {
        let views = match crate::read::runner::in_memory_read_models() {
            Ok(views) => Some(views),
            Err(error) => {
                warn!(%error, "no read models: in-memory SQLite did not open");
                None
            }
        };
        Service::start_with_views(parts, views).await
    }

    /// Like [`Service::start`], with the read models stored in `views`
    /// (`None`: no read-model runner).
    pub async fn start_with_views(
        parts: Parts,
        views: Option<Arc<dyn ReadModelStore>>,
    ) -> Result<Service, PaymentLedgerError> {
        let metrics = Metrics::new();
        let ledger = Ledger::new(
            parts.store.clone(),
            PaymentDecider::new(parts.policy),
            parts.clock,
        );
        let runtime = Runtime::new(
            ledger,
            parts.channels,
            metrics.clone(),
            parts.leases,
            parts.ids,
            parts.fingerprint_key,
        );
        let recovered_orders = runtime.recover().await?;
        let index = Arc::new(OrderIndex::new(views.clone()));
        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let runtime = runtime.clone();
            let mut stop = shutdown.subscribe();
            tasks.push(tokio::spawn(async move {
                runtime
                    .run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }));
        }
        if let Some(views) = views.clone() {
            let store = parts.store.clone();
            let mut stop = shutdown.subscribe();
            tasks.push(tokio::spawn(async move {
                // The order lists (`OrderIndex`) read these rows; single
                // orders are read from their streams.
                let follow = async {
                    ProjectionRunner::open(store, views, RunnerOptions::default())
                        .await?
                        .follow()
                        .await
                };
                tokio::select! {
                    result = follow => {
                        if let Err(error) = result {
                            error!(%error, "the read models stopped following the store");
                        }
                    }
                    _ = stop.wait_for(|s| *s) => {}
                }
            }));
        }
        let state = AppState::new(runtime, index, parts.api_keys, parts.limits);
        Ok(Service {
            state,
            shutdown,
            tasks,
            recovered_orders,
            views,
        })
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The stored read models, if a runner keeps them.
    pub fn views(&self) -> Option<&Arc<dyn ReadModelStore>> {
        self.views.as_ref()
    }

    pub fn runtime(&self) -> &Runtime {
        &self.state.runtime
    }

    /// Serves HTTP on `listener` until `signal` resolves, then shuts down
    /// gracefully: stops taking requests, lets steps in progress finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with_metrics(listener, None, signal).await
    }

    /// Like [`Service::serve`]; with `metrics`, `/metrics` is served there
    /// and no longer on `api` (404). Every listener holds its clients to the
    /// limits; the shutdown ends within `shutdown_timeout`, whatever the
    /// clients do.
    pub async fn serve_with_metrics(
        self,
        api: TcpListener,
        metrics: Option<TcpListener>,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.state.limits().clone();
        let (stop, stopped) = watch::channel(false);
        let api_router = router_with(self.state.clone(), metrics.is_none());
        let mut serving = vec![tokio::spawn({
            let (limits, stopped) = (limits.clone(), stopped.clone());
            async move { server::serve_router(api, api_router, &limits, stopped).await }
        })];
        if let Some(listener) = metrics {
            let metrics_router = metrics_router(self.state.clone());
            let (limits, stopped) = (limits.clone(), stopped.clone());
            serving.push(tokio::spawn(async move {
                server::serve_router(listener, metrics_router, &limits, stopped).await;
            }));
        }
        signal.await;
        let deadline = tokio::time::Instant::now() + limits.shutdown_timeout;
        let _ = stop.send(true);
        for task in serving {
            let _ = task.await;
        }
        // What is left of the time for the steps in progress; an order cut
        // off here resumes from the log on the next start.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(std::time::Duration::from_secs(1));
        if tokio::time::timeout(left, self.shutdown()).await.is_err() {
            warn!(
                timeout_secs = limits.shutdown_timeout.as_secs(),
                "shutdown timeout: steps still in progress resume on the next start"
            );
        }
        Ok(())
    }

    /// Stops the timers and waits for the steps in progress; pending orders
    /// resume from the log on the next start.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.runtime.drain().await;
        info!("stopped; pending orders resume on the next start");
    }
}
