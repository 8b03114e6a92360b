//! Sends queued envelopes to Sentry over HTTP: gzip, auth header, rate limits honoured
//! (the envelope waits, it is not lost), retries with backoff on 5xx and network errors,
//! and a counted drop for answers that retrying cannot fix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sentry::types::Dsn;
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

use super::outbox::{Outgoing, Pending};
use super::outcome::{DropReason, RetryReason};
use super::rate_limit::RateLimits;
use crate::metrics::Metrics;
use crate::redact::describe_dsn;

/// Our user agent, on every request to Sentry (and in the SDK's options, for the same).
pub const USER_AGENT: &str = concat!("sentry-kubernetes/", env!("CARGO_PKG_VERSION"));

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP(S) client trusting the system's CA bundle (`SSL_CERT_FILE`/`SSL_CERT_DIR` are
/// honoured). Without a bundle it fails if `need_ca` (an https DSN), else it can only speak
/// plain HTTP.
pub fn http_client(need_ca: bool) -> std::io::Result<HttpClient> {
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(builder) => builder,
        Err(e) if need_ca => return Err(e),
        Err(_) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

/// How one attempt ended.
enum Attempt {
    Sent,
    Retry { reason: RetryReason },
    Drop { reason: DropReason },
}

pub struct Sender {
    client: HttpClient,
    limits: Mutex<HashMap<String, RateLimits>>,
    metrics: Metrics,
    pending: Arc<Pending>,
}

impl Sender {
    pub fn new(client: HttpClient, metrics: Metrics, pending: Arc<Pending>) -> Self {
        Self {
            client,
            limits: Mutex::new(HashMap::new()),
            metrics,
            pending,
        }
    }

    /// Serves the queue with up to `concurrency` requests in flight, until it closes.
    pub async fn run(self: Arc<Self>, rx: mpsc::Receiver<Outgoing>, concurrency: usize) {
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        stream
            .for_each_concurrent(concurrency, |item| {
                let sender = self.clone();
                async move {
                    sender.deliver(item).await;
                    sender.pending.done();
                }
            })
            .await;
    }

    fn blocked_for(&self, dsn: &Dsn, category: &str) -> Option<Duration> {
        let limits = self.limits.lock().unwrap();
        limits
            .get(&dsn.to_string())?
            .blocked_for(category, Instant::now())
    }

    /// Sends one envelope until it is accepted or cannot be.
    async fn deliver(&self, item: Outgoing) {
        let Outgoing {
            dsn,
            body,
            category,
        } = item;
        let mut backoff = FIRST_BACKOFF;
        loop {
            if let Some(wait) = self.blocked_for(&dsn, category) {
                debug!(
                    seconds = wait.as_secs_f64(),
                    "rate limited by Sentry; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            match self.attempt(&dsn, body.clone()).await {
                Attempt::Sent => {
                    self.metrics.sentry_sent.inc();
                    return;
                }
                Attempt::Drop { reason } => {
                    self.metrics.sentry_dropped.inc(reason);
                    return;
                }
                Attempt::Retry { reason } => {
                    self.metrics.sentry_send_failures.inc(reason);
                    if reason != RetryReason::RateLimited {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }

    async fn attempt(&self, dsn: &Dsn, body: Bytes) -> Attempt {
        let auth = dsn.to_auth(Some(USER_AGENT)).to_string();
        let request = hyper::Request::post(dsn.envelope_api_url().as_str())
            .header("content-type", "application/x-sentry-envelope")
            .header("content-encoding", "gzip")
            .header("x-sentry-auth", auth)
            .header("user-agent", USER_AGENT)
            .body(Full::new(body))
            .expect("a valid DSN gives a valid request");
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                warn!(dsn = %describe_dsn(dsn), "cannot reach Sentry: {e}; retrying");
                return Attempt::Retry {
                    reason: RetryReason::Network,
                };
            }
            Err(_) => {
                warn!(dsn = %describe_dsn(dsn), "Sentry did not answer within {REQUEST_TIMEOUT:?}; retrying");
                return Attempt::Retry {
                    reason: RetryReason::Network,
                };
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (retry_after, rate_limits) = (header("retry-after"), header("x-sentry-rate-limits"));
        self.limits
            .lock()
            .unwrap()
            .entry(dsn.to_string())
            .or_default()
            .update(
                status,
                retry_after.as_deref(),
                rate_limits.as_deref(),
                Instant::now(),
            );
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let detail = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        match status {
            200..=299 => Attempt::Sent,
            429 => {
                warn!(dsn = %describe_dsn(dsn), "Sentry is rate limiting (429); the event waits");
                Attempt::Retry {
                    reason: RetryReason::RateLimited,
                }
            }
            413 => {
                warn!(dsn = %describe_dsn(dsn), "Sentry refused an envelope as too large: {detail}");
                Attempt::Drop {
                    reason: DropReason::TooLarge,
                }
            }
            401 | 403 => {
                error!(dsn = %describe_dsn(dsn), status, "Sentry refused the DSN's key: {detail}");
                Attempt::Drop {
                    reason: DropReason::Unauthorized,
                }
            }
            400..=499 => {
                error!(dsn = %describe_dsn(dsn), status, "Sentry rejected an event: {detail}");
                Attempt::Drop {
                    reason: DropReason::Rejected,
                }
            }
            _ => {
                warn!(dsn = %describe_dsn(dsn), status, "Sentry failed ({detail}); retrying");
                Attempt::Retry {
                    reason: RetryReason::ServerError,
                }
            }
        }
    }
}
