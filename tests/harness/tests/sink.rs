//! The Sentry sink, fed envelopes built by the `sentry` crate itself.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harness::{RespondRule, SentrySink};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sentry::protocol::{Event, Level};
use sentry::{ClientOptions, Envelope, Transport};

/// Keeps what the SDK hands its transport, so the test can post the exact bytes.
#[derive(Default)]
struct Capture(Mutex<Vec<Envelope>>);

impl Transport for Capture {
    fn send_envelope(&self, envelope: Envelope) {
        self.0.lock().unwrap().push(envelope);
    }
}

/// An envelope produced by `sentry::Client::capture_event`, serialized by the SDK.
fn sdk_envelope(dsn: &str, message: &str) -> Vec<u8> {
    let capture = Arc::new(Capture::default());
    let client = sentry::Client::from((dsn, ClientOptions::new().transport(capture.clone())));
    let event = Event {
        message: Some(message.into()),
        level: Level::Error,
        tags: [("reason".to_string(), "BackOff".to_string())].into(),
        ..Default::default()
    };
    client.capture_event(event, None);
    let envelope = capture
        .0
        .lock()
        .unwrap()
        .pop()
        .expect("the client sent an envelope");
    let mut bytes = Vec::new();
    envelope.to_writer(&mut bytes).unwrap();
    bytes
}

struct Posted {
    status: u16,
    retry_after: Option<String>,
    rate_limits: Option<String>,
}

async fn post(url: &str, auth_key: &str, encoding: &str, body: Vec<u8>) -> Posted {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(url)
        .header("content-type", "application/x-sentry-envelope")
        .header(
            "x-sentry-auth",
            format!(
                "Sentry sentry_key={auth_key}, sentry_version=7, sentry_client=sentry.rust/0.49"
            ),
        );
    if !encoding.is_empty() {
        request = request.header("content-encoding", encoding);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let posted = Posted {
        status: response.status().as_u16(),
        retry_after: header("retry-after"),
        rate_limits: header("x-sentry-rate-limits"),
    };
    response.into_body().collect().await.unwrap();
    posted
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn decodes_a_gzipped_envelope_built_by_the_sentry_crate() {
    let sink = SentrySink::start().await.unwrap();
    let url = format!("{}/api/1/envelope/", sink.url());
    let body = sdk_envelope(&sink.dsn(), "web-1: Back-off restarting failed container");
    assert_eq!(
        post(&url, "publickey", "gzip", gzip(&body)).await.status,
        200
    );
    let events = sink
        .wait_for_events(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(events[0].project, "1");
    assert_eq!(
        events[0].event["message"],
        "web-1: Back-off restarting failed container"
    );
    assert_eq!(events[0].event["tags"]["reason"], "BackOff");
    assert_eq!(sink.envelopes()[0].content_encoding, "gzip");
}

#[tokio::test]
async fn rejects_a_wrong_key_and_an_unknown_project() {
    let sink = SentrySink::start().await.unwrap();
    let body = sdk_envelope(&sink.dsn(), "m");
    let url = format!("{}/api/1/envelope/", sink.url());
    assert_eq!(
        post(&url, "not-the-key", "", body.clone()).await.status,
        401
    );
    let other = format!("{}/api/2/envelope/", sink.url());
    assert_eq!(post(&other, "publickey", "", body).await.status, 401);
    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn answers_429_with_rate_limit_headers_on_command_and_then_recovers() {
    let sink = SentrySink::start().await.unwrap();
    sink.respond(RespondRule {
        status: 429,
        count: Some(2),
        retry_after: Some(7),
        rate_limits: Some("60:error:organization".into()),
        ..Default::default()
    });
    let url = format!("{}/api/1/envelope/", sink.url());
    let body = sdk_envelope(&sink.dsn(), "m");
    for _ in 0..2 {
        let limited = post(&url, "publickey", "", body.clone()).await;
        assert_eq!(limited.status, 429);
        assert_eq!(limited.retry_after.as_deref(), Some("7"));
        assert_eq!(
            limited.rate_limits.as_deref(),
            Some("60:error:organization")
        );
    }
    assert!(
        sink.events().is_empty(),
        "a rate-limited envelope is not stored"
    );
    assert_eq!(post(&url, "publickey", "", body).await.status, 200);
    let statuses: Vec<u16> = sink.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn answers_server_errors_for_a_while_on_command() {
    let sink = SentrySink::start().await.unwrap();
    sink.respond(RespondRule {
        status: 503,
        for_millis: Some(60_000),
        ..Default::default()
    });
    let url = format!("{}/api/1/envelope/", sink.url());
    let body = sdk_envelope(&sink.dsn(), "m");
    assert_eq!(post(&url, "publickey", "", body.clone()).await.status, 503);
    assert_eq!(post(&url, "publickey", "", body.clone()).await.status, 503);
    sink.clear_respond();
    assert_eq!(post(&url, "publickey", "", body).await.status, 200);
}
