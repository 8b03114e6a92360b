//! Delivery: where finished Sentry events and check-ins go.
//!
//! With a DSN, each one is encoded with the SDK's envelope code ([`envelope`]) into a place
//! reserved in the bounded [`queue`] (the pipeline waits, with a deadline, while delivery
//! is full: bursts wait instead of losing events), then sent by its destination's
//! [`lane`] over [`http`], honouring Sentry's [`rate_limit`]s. Without a DSN (or with
//! `SENTRY_K8S_DRY_RUN`), each is printed as one JSON line on stdout instead. What can
//! happen to an envelope is in [`outcome`]; everything held counts against one [`budget`].
//!
//! `sentry::Client` is not in the path: events are built whole by `convert` (environment,
//! release, SDK info included), so the client would only hand them to a transport — and
//! its synchronous `Transport::send_envelope` cannot wait for room or carry a reservation.

pub mod budget;
pub mod envelope;
pub mod http;
pub mod lane;
pub mod outcome;
pub mod queue;
pub mod rate_limit;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sentry::protocol::MonitorCheckIn;
use sentry::types::Dsn;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::redact::describe_dsn;
use crate::report::Report;
use crate::routing::Destination;
use budget::Budget;
use envelope::Encoder;
use http::{ProxyVars, Transports};
use lane::{Done, Fate};
use outcome::DropReason;
use queue::{Queue, Refused};
use rate_limit::Category;

/// Why delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot load the system CA certificates for HTTPS to Sentry: {0}")]
    NoCaCertificates(#[source] std::io::Error),
}

/// Sending to Sentry.
struct SentryDelivery {
    queue: Queue,
    encoder: Mutex<Encoder>,
    queue_timeout: Duration,
    metrics: Metrics,
}

/// Where events go: to Sentry, or (the dry run) one JSON line per event on stdout.
pub struct Delivery {
    sentry: Option<SentryDelivery>,
    metrics: Metrics,
}

/// What happened to one event handed to delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    Queued,
    Printed,
    /// Dropped (counted and logged): no room in time, not encodable, or shutdown.
    Dropped,
}

impl Delivery {
    /// Starts the main destination's sender (or the dry run) for the configuration.
    pub fn start(config: &Config, metrics: &Metrics) -> Result<Self, DeliveryError> {
        let Some(dsn) = config.dsn.as_ref().filter(|_| !config.dry_run) else {
            if config.dsn.is_none() {
                warn!(
                    "SENTRY_DSN is not set: nothing is sent; events are printed to stdout as JSON lines"
                );
            } else {
                info!("SENTRY_K8S_DRY_RUN is on: events are printed to stdout instead of sent");
            }
            return Ok(Delivery {
                sentry: None,
                metrics: metrics.clone(),
            });
        };
        let proxies = ProxyVars {
            https: config.https_proxy.clone(),
            http: config.http_proxy.clone(),
            all: config.all_proxy.clone(),
            no: config.no_proxy.clone(),
        };
        let need_ca = dsn.scheme() == sentry::types::Scheme::Https;
        let transports = Transports::new(need_ca, &proxies, config.send_timeout)
            .map_err(DeliveryError::NoCaCertificates)?;
        let shared = lane::Shared {
            budget: Arc::new(Budget::new(
                config.queue_size.get(),
                config.queue_bytes,
                metrics.queue_depth.clone(),
            )),
            sends: Arc::new(Semaphore::new(config.send_concurrency.get())),
            metrics: metrics.clone(),
            max_age: config.delivery_max_age,
        };
        let queue = Queue::new(dsn, transports, shared, config.destinations);
        info!(dsn = %describe_dsn(dsn), queue = config.queue_size, "sending events to Sentry");
        Ok(Delivery {
            sentry: Some(SentryDelivery {
                queue,
                encoder: Mutex::new(Encoder::new()),
                queue_timeout: config.queue_timeout,
                metrics: metrics.clone(),
            }),
            metrics: metrics.clone(),
        })
    }

    /// Hands one event over to its destination. Waits for room up to
    /// `SENTRY_K8S_QUEUE_TIMEOUT`. `done` hears the envelope's fate.
    pub async fn deliver(
        &self,
        report: Report,
        destination: &Destination,
        done: Option<Done>,
    ) -> Handoff {
        match &self.sentry {
            None => {
                let handoff = print_line(&report, &self.metrics);
                if let Some(done) = done {
                    done(match handoff {
                        Handoff::Printed => Fate::Sent,
                        _ => Fate::Dropped(DropReason::Rejected),
                    });
                }
                handoff
            }
            Some(sentry) => {
                sentry
                    .send(destination, Category::Error, done, |encoder| {
                        encoder.encode_event(&report)
                    })
                    .await
            }
        }
    }

    /// Sends a Sentry Crons check-in to its destination, like an event.
    pub async fn check_in(&self, check_in: MonitorCheckIn, destination: &Destination) -> Handoff {
        match &self.sentry {
            None => print_line(&serde_json::json!({ "check_in": check_in }), &self.metrics),
            Some(sentry) => {
                sentry
                    .send(destination, Category::Monitor, None, |encoder| {
                        encoder.encode(&envelope::of_check_in(check_in))
                    })
                    .await
            }
        }
    }

    /// Flushes everything within `timeout`; returns how many envelopes were left unsent.
    pub async fn shutdown(&self, timeout: Duration) -> usize {
        match &self.sentry {
            None => 0,
            Some(sentry) => {
                let left = sentry.queue.shutdown(timeout).await;
                if left > 0 {
                    warn!(
                        left,
                        ?timeout,
                        "shutdown deadline reached with envelopes unsent"
                    );
                }
                left
            }
        }
    }
}

/// The dry run's output: one JSON document per line on stdout; what cannot be printed is
/// counted and skipped.
fn print_line(value: &impl serde::Serialize, metrics: &Metrics) -> Handoff {
    let line = match serde_json::to_string(value) {
        Ok(line) => line,
        Err(e) => {
            metrics.sentry_dropped.inc(DropReason::Rejected);
            warn!("cannot print an event ({e}); skipped");
            return Handoff::Dropped;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    Handoff::Printed
}

impl SentryDelivery {
    /// Reserves a place, encodes the envelope, fills the place.
    async fn send(
        &self,
        destination: &Destination,
        category: Category,
        done: Option<Done>,
        encode: impl FnOnce(&mut Encoder) -> Result<Bytes, DropReason>,
    ) -> Handoff {
        let dsn: Option<&Dsn> = match destination {
            Destination::Main => None,
            Destination::Custom(dsn) => Some(dsn),
        };
        let reservation = match self.queue.reserve(dsn, category, self.queue_timeout).await {
            Ok(reservation) => reservation,
            Err(refused) => {
                let reason = refused.reason();
                self.metrics.sentry_dropped.inc(reason);
                // Dropped on purpose: decided. Refused at shutdown: abandoned, resent later.
                if let (Some(done), false) = (done, refused == Refused::Closed) {
                    done(Fate::Dropped(reason));
                }
                warn!(
                    reason = reason.as_str(),
                    waited = ?self.queue_timeout,
                    "dropped an envelope: no room in the delivery queue (is Sentry reachable?)"
                );
                return Handoff::Dropped;
            }
        };
        let encoded = encode(&mut self.encoder.lock().unwrap());
        match encoded {
            Ok(body) => {
                reservation.fill(body, done);
                Handoff::Queued
            }
            Err(reason) => {
                self.metrics.sentry_dropped.inc(reason);
                warn!(
                    reason = reason.as_str(),
                    "dropped an envelope Sentry would not accept"
                );
                if let Some(done) = done {
                    done(Fate::Dropped(reason));
                }
                Handoff::Dropped
            }
        }
    }
}
