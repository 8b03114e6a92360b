//! Delivery without silent loss: bursts wait instead of dropping, rate limits and outages
//! are waited out, and what is dropped on purpose is counted.

use sentry_kubernetes::delivery::outcome::DropReason;
use sentry_kubernetes::delivery::outcome::RetryReason;
use std::collections::HashSet;
use std::time::Duration;

use crate::common::{DEADLINE, World, eventually};
use harness::fixtures::EventFixture;
use harness::{RespondRule, SinkDelay};
use serde_json::Value;

fn burst(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            EventFixture::warning(
                "default",
                &format!("{tag}-{i}.e"),
                "BackOff",
                &format!("{tag} {i}"),
            )
            .about("Pod", &format!("{tag}-{i}"))
            .build()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_5000_warnings_reaches_sentry_exactly_once() {
    let world = World::new().await;
    let agent = world.start(&[("SENTRY_K8S_SEND_CONCURRENCY", "4")]).await;
    world.server.create_all(burst(5000, "burst")).unwrap();
    let sink = &world.sink;
    sink.wait_for_events(5000, Duration::from_secs(180))
        .await
        .unwrap();
    world.sentinel("default", "after-burst").await;
    let events = world.reported();
    assert_eq!(events.len(), 5000);
    let messages: HashSet<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 5000, "no duplicates");
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5000);
    assert_eq!(agent.metrics.sentry_dropped.get(DropReason::QueueFull), 0);
    agent.stop().await;
}

#[tokio::test]
async fn rate_limiting_is_waited_out_and_nothing_is_lost() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world.sink.respond(RespondRule {
        status: 429,
        for_millis: Some(1500),
        retry_after: Some(1),
        rate_limits: Some("1:error:project".into()),
        ..Default::default()
    });
    world.server.create_all(burst(20, "limited")).unwrap();
    let sink = &world.sink;
    sink.wait_for_events(20, DEADLINE).await.unwrap();
    world.sentinel("default", "s").await;
    assert_eq!(world.reported().len(), 20);
    assert!(
        world.sink.requests().iter().any(|r| r.status == 429),
        "the sink did rate limit"
    );
    assert!(
        agent
            .metrics
            .sentry_send_failures
            .get(RetryReason::RateLimited)
            >= 1
    );
    assert_eq!(agent.metrics.sentry_dropped.get(DropReason::QueueFull), 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_sentry_outage_is_retried_until_it_recovers() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world.sink.respond(RespondRule {
        status: 503,
        count: Some(3),
        ..Default::default()
    });
    world.server.create_all(burst(3, "outage")).unwrap();
    let sink = &world.sink;
    sink.wait_for_events(3, DEADLINE).await.unwrap();
    world.sentinel("default", "s").await;
    assert_eq!(world.reported().len(), 3);
    assert!(
        agent
            .metrics
            .sentry_send_failures
            .get(RetryReason::ServerError)
            >= 1
    );
    let metrics = agent.metrics.clone();
    eventually("the queue depth back to 0", || {
        metrics.queue_depth.get() == 0
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_queue_full_past_its_deadline_drops_and_counts() {
    let world = World::new().await;
    // Sentry down for good, a 2-envelope queue, 100 ms patience.
    world.sink.respond(RespondRule::status(503));
    let agent = world
        .start(&[
            ("SENTRY_K8S_QUEUE_SIZE", "2"),
            ("SENTRY_K8S_QUEUE_TIMEOUT", "100ms"),
            ("SENTRY_K8S_SEND_CONCURRENCY", "1"),
            ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "200ms"),
        ])
        .await;
    world.server.create_all(burst(6, "stuck")).unwrap();
    let metrics = agent.metrics.clone();
    eventually("drops counted", || {
        metrics.sentry_dropped.get(DropReason::QueueFull) >= 3
    })
    .await;
    let stopped = agent.stop().await;
    assert!(
        stopped.unsent >= 1,
        "the stuck envelopes are reported as unsent"
    );
    assert!(metrics.sentry_dropped.get(DropReason::Shutdown) >= 1);
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued() {
    let world = World::new().await;
    world.sink.delay(SinkDelay {
        millis: 50,
        count: None,
    });
    let agent = world.start(&[("SENTRY_K8S_SEND_CONCURRENCY", "1")]).await;
    world.server.create_all(burst(20, "queued")).unwrap();
    let metrics = agent.metrics.clone();
    eventually("20 events handed to delivery", || {
        metrics.reported.get() >= 20
    })
    .await;
    assert!(
        world.sink.events().len() < 20,
        "some are still queued when shutdown begins"
    );
    let stopped = agent.stop().await;
    assert_eq!(stopped.unsent, 0);
    assert_eq!(world.sink.events().len(), 20);
}

#[tokio::test]
async fn a_refused_key_is_dropped_and_counted_not_retried_forever() {
    let world = World::new().await;
    let dsn = world.sink.dsn().replace("publickey", "revokedkey");
    let agent = world.start(&[("SENTRY_DSN", dsn.as_str())]).await;
    world.server.create_all(burst(2, "refused")).unwrap();
    let metrics = agent.metrics.clone();
    eventually("unauthorized drops", || {
        metrics.sentry_dropped.get(DropReason::Unauthorized) == 2
    })
    .await;
    assert_eq!(agent.stop().await.unsent, 0);
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_an_event_waiting_for_a_full_queue() {
    let world = World::new().await;
    // Sentry down for good, one slot, and the pipeline willing to wait five minutes.
    world.sink.respond(RespondRule::status(503));
    let agent = world
        .start(&[
            ("SENTRY_K8S_QUEUE_SIZE", "1"),
            ("SENTRY_K8S_QUEUE_TIMEOUT", "5m"),
            ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "1s"),
        ])
        .await;
    world.server.create_all(burst(4, "blocked")).unwrap();
    let metrics = agent.metrics.clone();
    // The one place is held (in flight or waiting for a retry): the pipeline now waits
    // for room with the next event.
    eventually("the queue to fill", || {
        metrics.reported.get() >= 1 && metrics.queue_depth.get() == 1
    })
    .await;
    // Stopping must finish within the shutdown budget, not the five minutes.
    let stopped = agent.stop().await;
    assert!(stopped.unsent >= 1);
}
