//! sentry-kubernetes: reports Kubernetes Warning events to Sentry, each occurrence once.
//!
//! The map, in pipeline order:
//!
//! - [`config`]: every environment variable, parsed and validated once.
//! - [`cluster`]: the kube client (in-cluster, kubeconfig, or auto).
//! - [`source`]: the event watches, merged into one stream.
//! - [`normalize`]: the Kubernetes Event JSON read into our [`event`] types.
//! - [`dedup`]: occurrences, not objects — relists and resends report nothing.
//! - [`owners`], [`breadcrumbs`] and [`enrich`]: the workload (root owner) of each event, the
//!   trail of earlier events, the node, the per-object DSN.
//! - [`pipeline`]: the stages wired together, with the reporting filters.
//! - [`grouping`] and [`convert`]: the Sentry event, its tags, contexts and fingerprint.
//! - [`delivery`]: our bounded queue in front of the HTTP transport (or the dry run).
//! - [`crons`]: Sentry Crons check-ins for CronJob runs, beside the event pipeline.
//! - [`health`] and [`metrics`]: probes and Prometheus metrics.
//! - [`logging`] and [`redact`]: the agent's own logs, without secrets.
//!
//! [`Agent`] runs it all; `main.rs` only loads the configuration and waits for a signal.

pub mod breadcrumbs;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod crons;
pub mod dedup;
pub mod delivery;
pub mod enrich;
pub mod event;
pub mod grouping;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod normalize;
pub mod owners;
pub mod pipeline;
pub mod redact;
pub mod source;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::delivery::{Delivery, DeliveryError};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Why the agent could not run. Watch and send errors are not here: those are retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("cannot serve health and metrics on {addr} (SENTRY_K8S_HTTP_ADDR): {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The event pipeline ended without being asked to (a bug): exit so Kubernetes
    /// restarts the agent rather than leave it silently idle.
    #[error("the event pipeline stopped unexpectedly: {0}")]
    PipelineStopped(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Envelopes still unsent when the shutdown deadline passed.
    pub unsent: usize,
}

/// The agent: configuration, metrics, and where its probes listen once running.
pub struct Agent {
    config: Arc<Config>,
    metrics: Metrics,
}

impl Agent {
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            metrics: Metrics::new(),
        }
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Connects, watches and reports until `shutdown` resolves; then stops the watches and
    /// flushes delivery within `SENTRY_K8S_SHUTDOWN_TIMEOUT`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Stopped> {
        let config = self.config;
        let (client, connection) = cluster::connect(&config).await?;
        info!(?connection, namespaces = ?config.namespaces, historical = config.historical, "connected");
        let scopes: Vec<String> = source::watch_scopes(&config.namespaces)
            .iter()
            .map(|scope| source::scope_name(scope).to_string())
            .collect();
        let stall_limit =
            (config.queue_timeout + Duration::from_secs(60)).max(Duration::from_secs(120));
        let health = Health::new(scopes.clone(), stall_limit);
        let http = match config.http_addr {
            Some(addr) => {
                let (bound, task) = health::serve(addr, health.clone(), self.metrics.clone())
                    .await
                    .map_err(|source| Error::Http { addr, source })?;
                info!(address = %bound, "serving /healthz, /readyz and /metrics");
                Some(task)
            }
            None => None,
        };
        let delivery = Arc::new(Delivery::start(&config, &self.metrics)?);
        // One stop signal for every task: the event pipeline and the CronJob monitor.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let crons = config.monitor_cronjobs.then(|| {
            let monitor = crons::CronMonitor::new(client.clone(), config.clone(), delivery.clone());
            tokio::spawn(monitor.run(stopped(stop_rx.clone())))
        });
        let resolver = Arc::new(owners::OwnerResolver::new(
            client.clone(),
            owners::CacheLimits {
                capacity: config.owner_cache_size,
                ttl: config.owner_cache_ttl,
            },
            self.metrics.clone(),
        ));
        let source = source::event_source(client, &config.namespaces, self.metrics.clone());
        let pipeline = Pipeline {
            tracker: pipeline::Tracker::new(
                config.clone(),
                self.metrics.clone(),
                health.clone(),
                scopes.len(),
            ),
            resolver: Some(resolver),
            reporter: pipeline::Reporter::new(&config, self.metrics.clone(), delivery.clone()),
            concurrency: config.lookup_concurrency,
            custom_dsns: config.custom_dsns,
            health: health.clone(),
        };
        // Draining in-flight events and flushing delivery share the shutdown budget.
        let drain = config.shutdown_timeout / 2;
        let mut pipeline = tokio::spawn(pipeline.run(source, stopped(stop_rx), drain));
        let failure = tokio::select! {
            _ = shutdown => None,
            ended = &mut pipeline => Some(match ended {
                Err(e) if e.is_panic() => "it panicked".to_string(),
                Err(e) => e.to_string(),
                Ok(()) => "its event source ended".to_string(),
            }),
        };
        let _ = stop_tx.send(true);
        match &failure {
            Some(why) => {
                error!("the event pipeline stopped unexpectedly ({why}); flushing, then exiting")
            }
            None => {
                let _ = pipeline.await;
            }
        }
        if let Some(crons) = crons {
            let _ = crons.await;
        }
        health.stopped();
        info!(timeout = ?config.shutdown_timeout, "stopping: watches closed, flushing events");
        let unsent = delivery.shutdown(config.shutdown_timeout - drain).await;
        if let Some(task) = http {
            task.abort();
        }
        if unsent > 0 {
            warn!(unsent, "stopped with events unsent");
        } else {
            info!("stopped; every event was delivered");
        }
        match failure {
            Some(why) => Err(Error::PipelineStopped(why)),
            None => Ok(Stopped { unsent }),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}
