//! Delivery: where finished Sentry events go.
//!
//! With a DSN, each event is captured by the `sentry::Client` of its DSN (the main one, or a
//! per-object one), whose transport is our bounded [`outbox`]; [`sender`] workers post the
//! envelopes. Without a DSN (or with `SENTRY_K8S_DRY_RUN`), each event is printed as one
//! JSON line on stdout instead.

pub mod outbox;
pub mod outcome;
pub mod rate_limit;
pub mod sender;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentry::protocol::{EnvelopeItem, Event, MonitorCheckIn};
use sentry::types::Dsn;
use sentry::{ClientOptions, Envelope};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::redact::describe_dsn;
use crate::routing::Destination;
use outbox::{Outbox, QueueTransportFactory, Refused};
use outcome::DropReason;
use sender::{Sender, USER_AGENT};

/// Why delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot load the system CA certificates for HTTPS to Sentry: {0}")]
    NoCaCertificates(#[source] std::io::Error),
}

/// The options every client shares (the main one and per-object ones).
fn client_options(dsn: &Dsn, config: &Config, outbox: &Outbox) -> ClientOptions {
    let mut options = ClientOptions::new()
        .default_integrations(false)
        .shutdown_timeout(config.shutdown_timeout)
        .transport(QueueTransportFactory {
            outbox: outbox.clone(),
        });
    options.dsn = Some(dsn.clone());
    options.environment = config.environment.clone().map(Into::into);
    options.release = config.release.clone().map(Into::into);
    options.user_agent = USER_AGENT.into();
    options
}

/// Sending to Sentry.
pub struct SentryDelivery {
    main: Arc<sentry::Client>,
    clients: Mutex<HashMap<String, Arc<sentry::Client>>>,
    outbox: Outbox,
    config: Config,
    metrics: Metrics,
    workers: JoinHandle<()>,
}

/// Where events go.
pub enum Delivery {
    Sentry(Box<SentryDelivery>),
    /// One JSON line per event on stdout.
    DryRun,
}

/// What happened to one event handed to delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    Queued,
    Printed,
    /// Dropped (counted and logged): the queue stayed full past the deadline, or shutdown.
    Dropped,
}

impl Delivery {
    /// Starts the sender workers (or the dry run) for the configuration.
    pub fn start(config: &Config, metrics: &Metrics) -> Result<Self, DeliveryError> {
        let Some(dsn) = config.dsn.as_ref().filter(|_| !config.dry_run) else {
            if config.dsn.is_none() {
                warn!(
                    "SENTRY_DSN is not set: nothing is sent; events are printed to stdout as JSON lines"
                );
            } else {
                info!("SENTRY_K8S_DRY_RUN is on: events are printed to stdout instead of sent");
            }
            return Ok(Delivery::DryRun);
        };
        let (outbox, rx) = Outbox::new(config.queue_size, metrics.clone());
        let http = sender::http_client(dsn.scheme() == sentry::types::Scheme::Https)
            .map_err(DeliveryError::NoCaCertificates)?;
        let sender = Arc::new(Sender::new(http, metrics.clone(), outbox.pending.clone()));
        let workers = tokio::spawn(sender.run(rx, config.send_concurrency.get()));
        let main = Arc::new(sentry::Client::with_options(client_options(
            dsn, config, &outbox,
        )));
        info!(dsn = %describe_dsn(dsn), queue = config.queue_size, "sending events to Sentry");
        Ok(Delivery::Sentry(Box::new(SentryDelivery {
            main,
            clients: Mutex::new(HashMap::new()),
            outbox,
            config: config.clone(),
            metrics: metrics.clone(),
            workers,
        })))
    }

    /// Hands one event over to its destination. Waits for room in the queue up to
    /// `SENTRY_K8S_QUEUE_TIMEOUT`.
    pub async fn deliver(&self, event: Event<'static>, destination: &Destination) -> Handoff {
        match self {
            Delivery::DryRun => print_line(&event),
            Delivery::Sentry(sentry) => {
                let dsn = match destination {
                    Destination::Main => None,
                    Destination::Custom(dsn) => Some(dsn),
                };
                let client = sentry.client_for(dsn);
                sentry
                    .queue(|| {
                        client.capture_event(event, None);
                    })
                    .await
            }
        }
    }

    /// Sends a Sentry Crons check-in through the main DSN.
    pub async fn check_in(&self, check_in: MonitorCheckIn) -> Handoff {
        match self {
            Delivery::DryRun => print_line(&serde_json::json!({ "check_in": check_in })),
            Delivery::Sentry(sentry) => {
                let mut envelope = Envelope::new();
                envelope.add_item(EnvelopeItem::MonitorCheckIn(check_in));
                let client = sentry.main.clone();
                sentry.queue(move || client.send_envelope(envelope)).await
            }
        }
    }

    /// Flushes everything within `timeout`; returns how many envelopes were left unsent.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        match self {
            Delivery::DryRun => 0,
            Delivery::Sentry(sentry) => sentry.shutdown(timeout).await,
        }
    }
}

/// The dry run's output: one JSON document per line on stdout.
fn print_line(value: &impl serde::Serialize) -> Handoff {
    let line = serde_json::to_string(value).expect("protocol types serialize");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    Handoff::Printed
}

impl SentryDelivery {
    fn client_for(&self, dsn: Option<&Dsn>) -> Arc<sentry::Client> {
        let Some(dsn) = dsn.filter(|d| Some(*d) != self.main.dsn()) else {
            return self.main.clone();
        };
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry(dsn.to_string())
            .or_insert_with(|| {
                info!(dsn = %describe_dsn(dsn), "created a client for a per-object DSN");
                Arc::new(sentry::Client::with_options(client_options(
                    dsn,
                    &self.config,
                    &self.outbox,
                )))
            })
            .clone()
    }

    /// Reserves room in the queue, then lets `capture` fill it through the SDK.
    async fn queue(&self, capture: impl FnOnce()) -> Handoff {
        match self
            .outbox
            .send_with(self.config.queue_timeout, capture)
            .await
        {
            Ok(()) => Handoff::Queued,
            Err(refused) => {
                let reason = match refused {
                    Refused::Full => DropReason::QueueFull,
                    Refused::Closed => DropReason::Shutdown,
                };
                self.metrics.sentry_dropped.inc(reason);
                let reason = reason.as_str();
                match refused {
                    Refused::Full => warn!(
                        reason,
                        waited = ?self.config.queue_timeout,
                        "dropped an event: the delivery queue stayed full (is Sentry reachable?)"
                    ),
                    Refused::Closed => warn!(reason, "dropped an event: delivery has shut down"),
                }
                Handoff::Dropped
            }
        }
    }

    async fn shutdown(&self, timeout: Duration) -> usize {
        let pending = self.outbox.pending.clone();
        let drained = tokio::task::spawn_blocking(move || pending.wait_drained(timeout))
            .await
            .unwrap_or(false);
        let left = self.outbox.pending.get();
        self.workers.abort();
        if !drained && left > 0 {
            self.metrics.sentry_dropped.add(DropReason::Shutdown, left);
            warn!(
                left,
                ?timeout,
                "shutdown deadline reached with envelopes unsent"
            );
        }
        left
    }
}
