//! Each occurrence reported exactly once, whatever the watches go through: relists after
//! 410, closed watches, duplicate namespaces, historical replay, RBAC denials.

use sentry_kubernetes::filter::Filtered;
use sentry_kubernetes::source::{WatchErrorKind, WatchedResource};
use std::collections::HashMap;

use crate::common::{DEADLINE, World, eventually};
use chrono::{Duration, Utc};
use harness::DenyRule;
use harness::fixtures::{EventFixture, rfc3339};
use serde_json::{Value, json};

fn warning(ns: &str, object: &str, n: usize) -> Value {
    EventFixture::warning(
        ns,
        &format!("{object}.{n:04}"),
        "BackOff",
        &format!("Back-off restarting failed container ({n})"),
    )
    .about("Pod", object)
    .build()
}

/// Message → how many times it was reported.
fn tally(world: &World) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in world.reported() {
        *counts
            .entry(e["message"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

fn assert_each_once(world: &World, expected: usize) {
    let counts = tally(world);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "reported more than once: {twice:?}");
    assert_eq!(counts.len(), expected, "distinct events reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_compaction_resends_nothing_and_misses_nothing() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world
        .server
        .create_all((0..5).map(|n| warning("default", "before", n)).collect())
        .unwrap();
    world.sentinel("default", "s1").await;

    // A partition during which events come and go, then compaction: the watch resumes
    // from an expired resourceVersion, gets 410 and relists everything.
    world.server.pause();
    world
        .server
        .create_all((0..3).map(|n| warning("default", "during", n)).collect())
        .unwrap();
    world
        .server
        .delete("v1", "Event", "default", "before.0000")
        .unwrap();
    world
        .server
        .patch(
            "v1",
            "Event",
            "default",
            "before.0001",
            &json!({"count": 2}),
        )
        .unwrap();
    world.server.compact();
    world.server.resume();
    let relists_before = agent.metrics.relists.get();
    let metrics = agent.metrics.clone();
    eventually("a relist", || metrics.relists.get() > relists_before).await;
    world.sentinel("default", "s2").await;

    let counts = tally(&world);
    for n in 0..5 {
        let expected = if n == 1 { 2 } else { 1 };
        assert_eq!(
            counts[&format!("before: Back-off restarting failed container ({n})")],
            expected,
            "before {n}"
        );
    }
    for n in 0..3 {
        assert_eq!(
            counts[&format!("during: Back-off restarting failed container ({n})")],
            1,
            "during {n}: created in the gap, reported once"
        );
    }
    assert!(
        agent
            .metrics
            .watch_errors
            .get((WatchedResource::Events, WatchErrorKind::Expired))
            >= 1
    );
    assert!(
        agent.metrics.deduplicated.get() >= 4,
        "the relisted events were recognised"
    );
    agent.stop().await;
}

#[tokio::test]
async fn closed_watches_resume_without_resending() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world
        .server
        .create_all((0..5).map(|n| warning("default", "web", n)).collect())
        .unwrap();
    world.sentinel("default", "s1").await;
    for round in 0..3 {
        world.server.wait_for_watches(1, DEADLINE).await.unwrap();
        world.server.close_watches();
        world
            .server
            .create(warning("default", "after", round))
            .unwrap();
    }
    world.sentinel("default", "s2").await;
    assert_each_once(&world, 8);
    agent.stop().await;
}

#[tokio::test]
async fn a_namespace_listed_twice_is_watched_once() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "default,default, default")])
        .await;
    let paths: Vec<String> = world
        .server
        .open_watches()
        .into_iter()
        .map(|w| w.path)
        .collect();
    assert_eq!(
        paths.iter().filter(|p| p.ends_with("/events")).count(),
        1,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| p.ends_with("/pods")).count(),
        1,
        "{paths:?}"
    );
    world
        .server
        .create_all((0..4).map(|n| warning("default", "web", n)).collect())
        .unwrap();
    world.sentinel("default", "s").await;
    assert_each_once(&world, 4);
    agent.stop().await;
}

#[tokio::test]
async fn historical_replay_reports_stored_events_oldest_first() {
    let world = World::new().await;
    let now = Utc::now();
    for (name, minutes_ago) in [("third", 1), ("first", 30), ("second", 10)] {
        world
            .server
            .create(
                EventFixture::warning(
                    "default",
                    &format!("{name}.1"),
                    "BackOff",
                    &format!("stored {name}"),
                )
                .about("Pod", name)
                .timestamps(
                    now - Duration::minutes(minutes_ago),
                    now - Duration::minutes(minutes_ago),
                )
                .build(),
            )
            .unwrap();
    }
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_HISTORICAL", "1"),
            ("SENTRY_K8S_SEND_CONCURRENCY", "1"),
        ])
        .await;
    world.sink.wait_for_events(3, DEADLINE).await.unwrap();
    let order: Vec<String> = world
        .reported()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "first: stored first",
            "second: stored second",
            "third: stored third"
        ]
    );
    agent.stop().await;
}

#[tokio::test]
async fn without_historical_replay_stored_events_are_skipped_but_their_repeats_reported() {
    let world = World::new().await;
    world
        .server
        .create(
            EventFixture::warning("default", "old.1", "BackOff", "stored")
                .about("Pod", "old")
                .count(3)
                .build(),
        )
        .unwrap();
    let now = Utc::now();
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                "sched.1",
                "FailedScheduling",
                "0/2 nodes are available: 2 Insufficient cpu.",
            )
            .about("Pod", "sched")
            .new_style(
                "default-scheduler",
                "s",
                "Scheduling",
                now - Duration::minutes(10),
            )
            .series(2, now - Duration::minutes(5))
            .build(),
        )
        .unwrap();
    let agent = world.start(&[]).await;
    assert_eq!(agent.metrics.filtered.get(Filtered::Historical), 2);
    world.sentinel("default", "s1").await;
    assert!(world.reported().is_empty(), "stored events are history");

    // Their repeats are news: old-style count bump, and a series re-patch (the Go agent
    // loses the latter because the series began before it started).
    world
        .server
        .patch(
            "v1",
            "Event",
            "default",
            "old.1",
            &json!({"count": 4, "lastTimestamp": rfc3339(Utc::now())}),
        )
        .unwrap();
    world
        .server
        .patch("v1", "Event", "default", "sched.1", &json!({"series": {"count": 3, "lastObservedTime": harness::fixtures::micro_time(Utc::now())}}))
        .unwrap();
    world.sentinel("default", "s2").await;
    let counts = tally(&world);
    assert_eq!(counts.get("old: stored"), Some(&1));
    assert_eq!(
        counts.get("sched: 0/2 nodes are available: 2 Insufficient cpu."),
        Some(&1)
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_namespace_list_never_reports_other_namespaces_and_all_reports_every_one() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "prod,staging")])
        .await;
    for ns in ["prod", "staging", "dev", "default"] {
        world
            .server
            .create(warning(ns, &format!("app-{ns}"), 0))
            .unwrap();
    }
    world.sentinel("prod", "s-prod").await;
    world.sentinel("staging", "s-staging").await;
    let namespaces: Vec<String> = world
        .reported()
        .iter()
        .map(|e| e["tags"]["namespace"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = namespaces.clone();
    sorted.sort();
    assert_eq!(sorted, ["prod", "staging"]);
    agent.stop().await;

    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "__all__")])
        .await;
    let mut paths: Vec<String> = world
        .server
        .open_watches()
        .into_iter()
        .map(|w| w.path)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/api/v1/events", "/api/v1/pods"],
        "one cluster-wide watch of each"
    );
    for ns in ["prod", "dev", "kube-system"] {
        world
            .server
            .create(warning(ns, &format!("app-{ns}"), 0))
            .unwrap();
    }
    world.sentinel("default", "s").await;
    assert_eq!(world.reported().len(), 3);
    agent.stop().await;
}

#[tokio::test]
async fn a_watch_forbidden_by_rbac_is_retried_until_allowed() {
    let world = World::new().await;
    world.server.deny(DenyRule {
        verb: "list".into(),
        resource: "events".into(),
        group: Some(String::new()),
        namespace: Some("prod".into()),
    });
    let running = crate::common::Running::spawn(
        world.config(&[("SENTRY_K8S_WATCH_NAMESPACES", "default,prod")]),
    );
    let metrics = running.metrics.clone();
    eventually("403s counted and retried", || {
        metrics
            .watch_errors
            .get((WatchedResource::Events, WatchErrorKind::Forbidden))
            >= 2
    })
    .await;
    assert_eq!(
        metrics.watches_ready.get(),
        3,
        "default's events and pods and prod's pods are ready, prod's events are not"
    );
    let forbidden: Vec<_> = world
        .server
        .requests(0)
        .into_iter()
        .filter(|r| r.status == 403)
        .collect();
    assert!(forbidden.len() >= 2, "the list is retried: {forbidden:?}");

    // default keeps working meanwhile.
    world.server.create(warning("default", "ok", 0)).unwrap();
    world.sentinel("default", "s1").await;

    world.server.clear_faults();
    running.ready(4).await;
    world
        .server
        .create(warning("prod", "now-allowed", 0))
        .unwrap();
    world.sentinel("prod", "s2").await;
    assert_eq!(tally(&world).len(), 2);
    running.stop().await;
}
