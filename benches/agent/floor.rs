//! The I/O floor: what any agent built as ours is (tokio's current-thread runtime, kube's
//! client for the watch, hyper for Sentry) must spend per event before doing any of the
//! work — read the event off the watch, post one envelope of the same size, read the reply.
//! It runs as its own process (this benchmark binary, re-executed with [`ARG`]), against
//! the same apiserver and sink, with the same workload, so `agent − floor` is what the
//! agent's own work costs and the floor is what this machine charges for the I/O alone.
//!
//! What it skips is everything that makes the agent useful: decoding the event, deduplication,
//! owners, breadcrumbs, building and gzipping the Sentry event, checkpoints, metrics.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

/// The argument that makes this binary the floor client instead of the benchmark.
pub const ARG: &str = "--floor-client";

/// As many envelopes in flight as the agent allows by default (`SENTRY_K8S_SEND_CONCURRENCY`).
const IN_FLIGHT: usize = 4;

/// The agent's envelope for a benchmark event is about this large on the wire (gzipped).
const ENVELOPE_BYTES: usize = 1100;

/// Runs the floor client: `ARG <kubeconfig> <dsn>`. Prints `watching` once its watch is open,
/// then posts one envelope per event seen until it is killed.
pub fn main(args: &[String]) {
    let [kubeconfig, dsn] = args else {
        panic!("usage: {ARG} <kubeconfig> <dsn>");
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(kubeconfig, dsn));
}

async fn run(kubeconfig: &str, dsn: &str) {
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &options,
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    let dsn: sentry::types::Dsn = dsn.parse().unwrap();
    let url: hyper::Uri = dsn.envelope_api_url().to_string().parse().unwrap();
    let auth = format!(
        "Sentry sentry_version=7, sentry_key={}, sentry_client=floor/1",
        dsn.public_key()
    );
    let sink: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    let list = hyper::Request::get("/api/v1/events?limit=1")
        .body(Vec::new())
        .unwrap();
    let list: serde_json::Value = client.request(list).await.unwrap();
    let version = list["metadata"]["resourceVersion"].as_str().unwrap();
    let watch = hyper::Request::get(format!(
        "/api/v1/events?watch=true&allowWatchBookmarks=true&resourceVersion={version}&timeoutSeconds=3600"
    ))
    .body(Vec::new())
    .unwrap();
    let response = client
        .send(watch.map(kube::client::Body::from))
        .await
        .unwrap();
    println!("watching");

    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut body = response.into_body().into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.unwrap());
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Some(marker) = marker(&line) else {
                continue;
            };
            let permit = slots.clone().acquire_owned().await.unwrap();
            let request = hyper::Request::post(url.clone())
                .header("content-type", "application/x-sentry-envelope")
                .header("x-sentry-auth", auth.as_str())
                .body(Full::new(envelope(marker)))
                .unwrap();
            let sink = sink.clone();
            tokio::spawn(async move {
                let response = sink.request(request).await.unwrap();
                let _ = response.into_body().collect().await;
                drop(permit);
            });
        }
    }
}

/// The `N` of the `(#N)` that ends a benchmark event's message, found without decoding it.
fn marker(line: &[u8]) -> Option<usize> {
    let start = line.windows(2).position(|w| w == b"(#")? + 2;
    let digits = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&line[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// A minimal event envelope carrying the marker, padded to the agent's envelope size.
fn envelope(marker: usize) -> Bytes {
    // Unique per event without asking the OS for randomness.
    let id = format!(
        "{:032x}",
        0xf100_0000_0000_0000_0000_0000_0000_0000_u128 + marker as u128
    );
    let head = format!("{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n");
    let message = format!(
        "{{\"event_id\":\"{id}\",\"level\":\"error\",\"message\":\"floor (#{marker})\",\"extra\":{{\"padding\":\""
    );
    let tail = "\"}}\n";
    let padding = ENVELOPE_BYTES.saturating_sub(head.len() + message.len() + tail.len());
    let mut body = String::with_capacity(ENVELOPE_BYTES);
    body.push_str(&head);
    body.push_str(&message);
    body.extend(std::iter::repeat_n('x', padding));
    body.push_str(tail);
    Bytes::from(body)
}
