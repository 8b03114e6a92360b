//! Liveness, readiness and metrics over HTTP (`SENTRY_K8S_HTTP_ADDR`).
//!
//! `/healthz` fails when the pipeline has stopped or not made progress for too long;
//! `/readyz` fails until every watch has completed its initial list; `/metrics` is the
//! Prometheus (OpenMetrics) exposition.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// What the probes report.
pub struct Health {
    started: Instant,
    /// Milliseconds since `started` at the pipeline's last sign of life.
    heartbeat: AtomicU64,
    stopped: AtomicBool,
    ready: Vec<AtomicBool>,
    scopes: Vec<String>,
    stall_limit: Duration,
}

impl Health {
    /// `scopes` names each watch (`events in default`); `stall_limit` is how long the pipeline may show no sign of
    /// life (it may legitimately wait that long for room in the delivery queue).
    pub fn new(scopes: Vec<String>, stall_limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            heartbeat: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            ready: scopes.iter().map(|_| AtomicBool::new(false)).collect(),
            scopes,
            stall_limit,
        })
    }

    pub fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Marks a watch as having completed its first list; true the first time.
    pub fn watch_ready(&self, watch: usize) -> bool {
        self.ready
            .get(watch)
            .is_some_and(|r| !r.swap(true, Ordering::Relaxed))
    }

    /// `Ok` or why not.
    pub fn liveness(&self) -> Result<(), String> {
        self.liveness_at(Instant::now())
    }

    fn liveness_at(&self, now: Instant) -> Result<(), String> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err("the event pipeline has stopped".into());
        }
        let last = Duration::from_millis(self.heartbeat.load(Ordering::Relaxed));
        let silent = now
            .saturating_duration_since(self.started)
            .saturating_sub(last);
        if silent > self.stall_limit {
            return Err(format!(
                "the event pipeline has shown no progress for {}s",
                silent.as_secs()
            ));
        }
        Ok(())
    }

    pub fn readiness(&self) -> Result<(), String> {
        let waiting: Vec<&str> = self
            .ready
            .iter()
            .zip(&self.scopes)
            .filter(|(r, _)| !r.load(Ordering::Relaxed))
            .map(|(_, s)| s.as_str())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "waiting for the initial list of: {}",
                waiting.join(", ")
            ))
        }
    }
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn probe(result: Result<(), String>) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => respond(200, "text/plain; charset=utf-8", "ok\n".into()),
        Err(why) => respond(503, "text/plain; charset=utf-8", format!("{why}\n")),
    }
}

fn route(
    req: &Request<hyper::body::Incoming>,
    health: &Health,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" | "/livez" => probe(health.liveness()),
        "/readyz" => probe(health.readiness()),
        "/metrics" => respond(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        _ => respond(
            404,
            "text/plain; charset=utf-8",
            "not found; try /healthz, /readyz, /metrics\n".into(),
        ),
    }
}

/// Binds `addr` and serves the probes until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Metrics,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (health, metrics) = (health.clone(), metrics.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = route(&req, &health, &metrics);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_for_every_watch_and_liveness_for_progress() {
        let health = Health::new(vec!["a".into(), "b".into()], Duration::from_secs(60));
        assert!(health.readiness().unwrap_err().contains("a, b"));
        assert!(health.watch_ready(0));
        assert!(!health.watch_ready(0));
        assert!(health.readiness().unwrap_err().ends_with(": b"));
        health.watch_ready(1);
        assert!(health.readiness().is_ok());
        health.beat();
        assert!(health.liveness().is_ok());
        health.stopped();
        assert!(health.liveness().is_err());
        let stalled = Health::new(vec![], Duration::from_secs(60));
        let later = stalled.started + Duration::from_secs(61);
        assert!(
            stalled
                .liveness_at(later)
                .unwrap_err()
                .contains("no progress for 61s")
        );
    }
}
