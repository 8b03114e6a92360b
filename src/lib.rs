//! sentry-kubernetes: reports Kubernetes Warning events to Sentry, each occurrence once.
//!
//! The map, in pipeline order:
//!
//! - [`config`]: every environment variable, declared once, parsed and validated once.
//! - [`cluster`]: the kube client (in-cluster, kubeconfig, or auto).
//! - [`source`]: the event watches and the pod watches, merged into one stream.
//! - [`normalize`]: the Kubernetes Event JSON read into our [`event`] types; [`pods`]: the
//!   Pod JSON, its containers' terminations read into the same types.
//! - [`dedup`]: occurrences, not objects — relists and resends report nothing.
//! - [`filter`]: which occurrences are reported (Warning, minus the operator's filters).
//! - [`owners`], [`breadcrumbs`] and [`enrich`]: the workload (root owner) of each event, the
//!   trail of earlier events, the node; [`logs`] (with [`scrub`]): a crashed container's
//!   last lines; [`gke`]: the GKE cluster's tags and console links.
//! - [`routing`]: which DSN an event goes to; [`storm`]: how many an issue may get.
//! - [`grouping`] and [`convert`]: the Sentry event, its tags, contexts and fingerprint,
//!   within Sentry's [`limits`]; [`report`]: the event as sent, its breadcrumbs written
//!   straight from the trail.
//! - [`bounded`]: caches that hold at most their bound and cost memory only as they fill.
//! - [`delivery`]: our bounded queue in front of the HTTP transport (or the dry run).
//! - [`pipeline`]: the stages wired together.
//! - [`crons`]: Sentry Crons check-ins for CronJob runs, beside the event pipeline.
//! - [`health`] and [`metrics`] (with [`labels`]): probes and Prometheus metrics.
//! - [`shutdown`]: one trigger and one deadline for stopping everything.
//! - [`logging`] and [`redact`]: the agent's own logs, without secrets.
//!
//! [`Agent`] runs it all; `main.rs` only reads the command line and the configuration and
//! waits for a signal.

pub mod bounded;
pub mod breadcrumbs;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod crons;
pub mod dedup;
pub mod delivery;
pub mod enrich;
pub mod event;
pub mod filter;
pub mod gke;
pub mod grouping;
pub mod health;
pub mod labels;
pub mod leadership;
pub mod lease;
pub mod limits;
pub mod logging;
pub mod logs;
pub mod metrics;
pub mod normalize;
pub mod owners;
pub mod pipeline;
pub mod pods;
pub mod redact;
pub mod report;
pub mod routing;
pub mod scrub;
pub mod shutdown;
pub mod source;
pub mod storm;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::checkpoint::Ledger;
use crate::config::{Config, ConfigError};
use crate::convert::ClusterInfo;
use crate::crons::slug::SlugBook;
use crate::delivery::{Delivery, DeliveryError};
use crate::health::Health;
use crate::leadership::{Generation, Leadership};
use crate::lease::LeaseSettings;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;

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

    /// Connects, watches and reports until `signal` resolves; then stops the watches, drains
    /// the pipeline and flushes delivery within `SENTRY_K8S_SHUTDOWN_TIMEOUT`.
    pub async fn run(self, signal: impl Future<Output = ()>) -> Result<Stopped> {
        let config = self.config;
        let (client, connection) = cluster::connect(&config).await?;
        let in_cluster = matches!(connection, cluster::Connection::InCluster { .. });
        info!(?connection, namespaces = ?config.namespaces, historical = config.historical, "connected");
        let watches = source::watches(&config);
        let mut watch_names: Vec<String> = watches.iter().map(source::Watch::name).collect();
        if config.monitor_cronjobs {
            watch_names.extend(crons::watch_names(&config));
        }
        let stall_limit =
            (config.queue_timeout + Duration::from_secs(60)).max(Duration::from_secs(120));
        let health = Health::new(watch_names, stall_limit);
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
        let shutdown = Shutdown::new(config.shutdown_timeout);
        // The Lease: the checkpoint to resume from, and who reports.
        let ledger = Ledger::shared();
        let leadership = Leadership::new(true);
        self.metrics.leader.set(1);
        let lease_used = !config.is_dry_run()
            && (config.checkpoint
                || config.leader_election == config::Switch::On
                || (config.leader_election == config::Switch::Auto && in_cluster));
        let begun = if lease_used {
            let settings =
                LeaseSettings::from_config(&config, in_cluster, client.default_namespace());
            lease::begin(
                client.clone(),
                settings,
                ledger.clone(),
                leadership.clone(),
                self.metrics.clone(),
            )
            .await
        } else {
            lease::Begun {
                generation: Generation {
                    number: 0,
                    resume: None,
                    leader: true,
                },
                keeper: None,
            }
        };
        let (generations, generation) = tokio::sync::watch::channel(begun.generation);
        let keeper = begun.keeper.map(|keeper| {
            let (release, asked) = tokio::sync::oneshot::channel();
            (
                tokio::spawn(keeper.run(generations.clone(), asked)),
                release,
            )
        });
        let gke = if config.integration_gke {
            discover_gke(&config, &self.metrics).await
        } else {
            None
        };
        // On GKE without SENTRY_K8S_CLUSTER_NAME, the cluster's own name is the cluster tag.
        let config = match (&config.cluster_name, &gke) {
            (None, Some(gke)) => Arc::new(Config {
                cluster_name: Some(gke.cluster_name.clone()),
                ..(*config).clone()
            }),
            _ => config,
        };
        let cluster = ClusterInfo {
            api_endpoint: connection.server().to_string(),
            server_version: match client.apiserver_version().await {
                Ok(version) => Some(version.git_version),
                Err(e) => {
                    warn!("cannot read the API server's version ({e}); events go without it");
                    None
                }
            },
        };
        let monitors = config.monitor_cronjobs.then(SlugBook::default);
        let pipeline = Pipeline::new(
            &config,
            client.clone(),
            delivery.clone(),
            &self.metrics,
            health.clone(),
            &watches,
            ledger,
            leadership,
        )
        .with_gke(gke)
        .with_cluster(cluster)
        .with_monitors(monitors.clone());
        let crons = config.monitor_cronjobs.then(|| {
            let monitor = crons::CronMonitor::new(
                client.clone(),
                config.clone(),
                delivery.clone(),
                pipeline.resolver(),
                self.metrics.clone(),
                health.clone(),
                watches.len(),
                monitors.clone().unwrap_or_default(),
            );
            tokio::spawn(monitor.run(shutdown.clone()))
        });
        let source = source::source(client, &watches, generation);
        let mut pipeline = tokio::spawn(pipeline.run(source, shutdown.clone()));
        let failure = tokio::select! {
            _ = signal => None,
            ended = &mut pipeline => Some(match ended {
                Err(e) if e.is_panic() => "it panicked".to_string(),
                Err(e) => e.to_string(),
                Ok(()) => "its event source ended".to_string(),
            }),
        };
        shutdown.trigger();
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
        let unsent = delivery.shutdown(shutdown.remaining()).await;
        if let Some((task, release)) = keeper {
            // The last checkpoint and the release of the leadership, after the flush; a
            // short grace beyond the deadline, as a follower waits on it.
            let (done, released) = tokio::sync::oneshot::channel();
            if release.send(done).is_ok() {
                let grace = shutdown.remaining().max(Duration::from_secs(2));
                let _ = tokio::time::timeout(grace, released).await;
            }
            task.abort();
        }
        drop(generations);
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

/// The GKE cluster from the metadata server, or `None` (logged, counted): the agent
/// reports without the GKE tags rather than not at all.
async fn discover_gke(config: &Config, metrics: &Metrics) -> Option<gke::Gke> {
    match gke::Gke::discover(&config.gce_metadata_host).await {
        Ok(gke) => {
            info!(cluster = %gke.cluster_name, location = %gke.cluster_location, project = %gke.project_id, "GKE integration on");
            Some(gke)
        }
        Err(e) => {
            metrics.gke_metadata_failures.inc();
            error!(
                "GKE integration: {e}; events go without the GKE tags and context \
                 (SENTRY_K8S_INTEGRATION_GKE_ENABLED, GCE_METADATA_HOST)"
            );
            None
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
