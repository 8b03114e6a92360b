//! Storm control: a thousand occurrences of one issue cost the Sentry quota the limit per
//! window, the next report says how many were held back, and nothing held back is ever
//! sent later — not after a relist, not after a restart.

use std::time::{Duration, Instant};

use harness::fixtures::{EventFixture, deployment_chain};
use sentry_kubernetes::storm::StormReason;
use serde_json::Value;

use crate::common::{DEADLINE, World, eventually};

fn in_issue(world: &World) -> Vec<Value> {
    world
        .reported()
        .into_iter()
        .filter(|e| e["tags"]["root_name"] == "stormy")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_costs_the_limit_per_window_and_the_next_report_says_how_many_were_held_back() {
    let world = World::new().await;
    let web = deployment_chain(&world.server, "default", "stormy", 8);
    let limits = [
        ("SENTRY_K8S_MAX_EVENTS_PER_ISSUE", "10"),
        ("SENTRY_K8S_ISSUE_WINDOW", "2s"),
        ("SENTRY_K8S_SEND_CONCURRENCY", "4"),
    ];
    let agent = world.start(&limits).await;
    let storm: Vec<Value> = (0..1000)
        .map(|i| {
            let pod = web.pods[i % web.pods.len()]["metadata"]["name"]
                .as_str()
                .unwrap();
            EventFixture::warning(
                "default",
                &format!("{pod}.{i}"),
                "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient cpu.",
            )
            .about("Pod", pod)
            .build()
        })
        .collect();
    world.server.create_all(storm).unwrap();
    let metrics = agent.metrics.clone();
    eventually("the storm through the pipeline", || {
        metrics
            .occurrences_suppressed
            .get(StormReason::FailedScheduling)
            == 990
    })
    .await;
    // The issue's window opened at its first occurrence, before this point.
    let storm_seen = Instant::now();
    world.sentinel("default", "after-storm").await;
    assert_eq!(in_issue(&world).len(), 10, "the limit, not a thousand");

    // The next window: the first report carries what was held back.
    eventually("the window to pass", || {
        storm_seen.elapsed() > Duration::from_secs(2)
    })
    .await;
    let pod = web.pods[0]["metadata"]["name"].as_str().unwrap();
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                &format!("{pod}.after"),
                "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient cpu.",
            )
            .about("Pod", pod)
            .build(),
        )
        .unwrap();
    world.sink.wait_for_events(12, DEADLINE).await.unwrap();
    let issue = in_issue(&world);
    let next = issue.last().unwrap();
    assert_eq!(next["extra"]["suppressed_occurrences"], 990);
    assert_eq!(
        next["contexts"]["storm_control"]["suppressed_since_last_report"],
        990
    );

    // Held back is decided: a relist resends nothing...
    world.server.compact();
    world.server.close_watches();
    let relists = metrics.relists.get();
    eventually("the relist", || metrics.relists.get() > relists).await;
    world.sentinel("default", "after-relist").await;
    assert_eq!(in_issue(&world).len(), 11);
    agent.stop().await;
    // ...nor does a restart.
    let agent = world.start(&limits).await;
    world.sentinel("default", "after-restart").await;
    assert_eq!(in_issue(&world).len(), 11);
    agent.stop().await;
}
