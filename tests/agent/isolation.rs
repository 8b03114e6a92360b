//! Delivery that no destination, rate limit or odd event can stall: a dead per-object DSN,
//! a rate limit on one category, a stalled answer, a destination down for good, events
//! from 1969 and 300 KB reasons — and routing that obeys SENTRY_K8S_CUSTOM_DSNS; the
//! limit on destinations, connections reused and kept alive, one log line per destination.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use chrono::Utc;
use harness::fixtures::{EventFixture, ObjectFixture};
use harness::sink::SinkRequest;
use harness::{RecordingProxy, RespondRule, SentrySink};
use sentry_kubernetes::delivery::outcome::{DropReason, RetryReason};
use serde_json::{Value, json};

use crate::common::process::{Process, metric};
use crate::common::{DEADLINE, World, eventually};

/// A Warning event about pod `pod` (a stored object) of `namespace`.
fn about(pod: &Value, suffix: &str, reason: &str) -> Value {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    EventFixture::warning(namespace, &format!("{name}.{suffix}"), reason, "crash")
        .about("Pod", name)
        .involved_uid(pod["metadata"]["uid"].as_str().unwrap())
        .build()
}

/// A Deployment → ReplicaSet → Pod chain; the Deployment carries `annotation` as its DSN.
fn workload(world: &World, namespace: &str, name: &str, dsn: Option<&str>) -> Value {
    let mut deployment = ObjectFixture::new("Deployment", namespace, name);
    if let Some(dsn) = dsn {
        deployment = deployment.annotation("k8s.sentry.io/dsn", dsn);
    }
    let deployment = deployment.create(&world.server);
    let replicaset = ObjectFixture::new("ReplicaSet", namespace, &format!("{name}-5f6"))
        .owned_by(&deployment)
        .create(&world.server);
    ObjectFixture::new("Pod", namespace, &format!("{name}-5f6-a1"))
        .owned_by(&replicaset)
        .create(&world.server)
}

/// The sink's requests to `project`'s envelope endpoint.
fn requests_of(world: &World, project: &str) -> Vec<SinkRequest> {
    let path = format!("/api/{project}/envelope/");
    let mut requests = world.sink.requests();
    requests.retain(|r| r.path == path);
    requests
}

fn requests_to(world: &World, project: &str) -> usize {
    requests_of(world, project).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_per_object_dsn_delays_only_its_own_events() {
    let world = World::new().await;
    // Nothing listens on port 9: the annotated workload's destination is dead.
    let dead = workload(
        &world,
        "default",
        "dead",
        Some("http://deadkey@127.0.0.1:9/7"),
    );
    let alive = workload(&world, "default", "alive", None);
    let agent = world
        .start(&[
            ("SENTRY_K8S_CUSTOM_DSNS", "1"),
            ("SENTRY_K8S_QUEUE_SIZE", "4"),
            ("SENTRY_K8S_SEND_CONCURRENCY", "4"),
        ])
        .await;
    let dead_events: Vec<Value> = (0..8)
        .map(|i| about(&dead, &format!("d{i}"), "BackOff"))
        .collect();
    world.server.create_all(dead_events).unwrap();
    let metrics = agent.metrics.clone();
    eventually("the dead destination failing", || {
        metrics.sentry_send_failures.get(RetryReason::Network) >= 1
    })
    .await;
    let alive_events: Vec<Value> = (0..5)
        .map(|i| about(&alive, &format!("a{i}"), "BackOff"))
        .collect();
    world.server.create_all(alive_events).unwrap();
    let events = world
        .sink
        .wait_for_events(5, DEADLINE)
        .await
        .expect("the healthy workload's events arrive while the dead DSN retries");
    assert!(events.iter().all(|e| e.project == "1"));
    assert!(
        metrics.sentry_dropped.get(DropReason::DestinationBacklog) >= 1,
        "the dead destination gave its oldest places to the healthy one"
    );
    assert!(metrics.queue_depth.get() <= 4, "the shared bound holds");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_naming_another_category_backs_off_instead_of_hammering_sentry() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world.sink.respond(RespondRule {
        status: 429,
        for_millis: Some(2_000),
        retry_after: Some(1),
        rate_limits: Some("60:transaction:organization".into()),
        ..Default::default()
    });
    world
        .server
        .create(EventFixture::warning("default", "limited.1", "BackOff", "limited").build())
        .unwrap();
    world
        .sink
        .wait_for_events(1, DEADLINE)
        .await
        .expect("delivered once the limit lifts");
    let requests = requests_to(&world, "1");
    assert!(
        (2..=5).contains(&requests),
        "a handful of requests while limited, not thousands: {requests}"
    );
    assert!(
        agent
            .metrics
            .sentry_send_failures
            .get(RetryReason::RateLimited)
            >= 1
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_waited_out() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let until = Utc::now() + chrono::Duration::seconds(2);
    world.sink.respond(RespondRule {
        status: 429,
        count: Some(1),
        retry_after_raw: Some(until.to_rfc2822().replace("+0000", "GMT")),
        ..Default::default()
    });
    world
        .server
        .create(EventFixture::warning("default", "dated.1", "BackOff", "dated").build())
        .unwrap();
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let arrived = Utc::now();
    assert!(
        arrived >= until - chrono::Duration::milliseconds(1_100),
        "sent again only about when the date said ({arrived} vs {until})"
    );
    assert_eq!(requests_to(&world, "1"), 2, "one refused, one accepted");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ins_go_on_while_events_are_rate_limited_and_the_other_way_round() {
    let world = World::new().await;
    let cronjob = ObjectFixture::new("CronJob", "default", "nightly")
        .set(
            &["spec"],
            json!({"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {}}}}),
        )
        .create(&world.server);
    let agent = world.start(&[("SENTRY_K8S_MONITOR_CRONJOBS", "1")]).await;
    // Events limited for a minute: check-ins are not.
    world.sink.respond(RespondRule {
        status: 429,
        item_type: Some("event".into()),
        rate_limits: Some("60:error".into()),
        ..Default::default()
    });
    world
        .server
        .create(EventFixture::warning("default", "held.1", "BackOff", "held").build())
        .unwrap();
    let metrics = agent.metrics.clone();
    eventually("the event rate-limited", || {
        metrics.sentry_send_failures.get(RetryReason::RateLimited) >= 1
    })
    .await;
    ObjectFixture::new("Job", "default", "nightly-1")
        .owned_by(&cronjob)
        .set(
            &["status"],
            json!({"startTime": "2026-11-29T02:00:00Z", "active": 1}),
        )
        .create(&world.server);
    let sink = &world.sink;
    eventually("the check-in, past the events' limit", || {
        sink.envelopes()
            .iter()
            .any(|e| e.items.iter().any(|i| i.item_type() == "check_in"))
    })
    .await;
    assert!(world.sink.events().is_empty(), "the event still waits");
    assert_eq!(
        requests_to(&world, "1"),
        2,
        "one refused event, one check-in: the event is not retried while limited"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_longer_than_the_age_limit_drops_its_oldest_and_frees_memory() {
    let world = World::new().await;
    world.sink.respond(RespondRule::status(503));
    let agent = world
        .start(&[
            ("SENTRY_K8S_DELIVERY_MAX_AGE", "1s"),
            ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "200ms"),
        ])
        .await;
    let events: Vec<Value> = (0..5)
        .map(|i| EventFixture::warning("default", &format!("down.{i}"), "BackOff", "down").build())
        .collect();
    world.server.create_all(events).unwrap();
    let metrics = agent.metrics.clone();
    eventually("every envelope given up on", || {
        metrics.sentry_dropped.get(DropReason::Undeliverable) == 5
    })
    .await;
    assert_eq!(
        metrics.queue_depth.get(),
        0,
        "nothing held for the dead destination"
    );
    let stopped = agent.stop().await;
    assert_eq!(stopped.unsent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_answer_times_out_and_the_envelope_is_sent_again() {
    let world = World::new().await;
    world.sink.respond(RespondRule {
        status: 200,
        count: Some(1),
        stall_body: true,
        ..Default::default()
    });
    let agent = world.start(&[("SENTRY_K8S_SEND_TIMEOUT", "1s")]).await;
    world
        .server
        .create(EventFixture::warning("default", "stalled.1", "BackOff", "stalled").build())
        .unwrap();
    world
        .sink
        .wait_for_events(1, DEADLINE)
        .await
        .expect("sent again after the timeout");
    assert!(agent.metrics.sentry_send_failures.get(RetryReason::Network) >= 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_carries_sentry_traffic_and_no_proxy_bypasses_it() {
    let world = World::new().await;
    let proxy = RecordingProxy::start().await.unwrap();
    let proxy_url = proxy.url().replace("http://", "http://user:secret@");
    let agent = world.start(&[("HTTP_PROXY", proxy_url.as_str())]).await;
    world.sentinel("default", "through-the-proxy").await;
    agent.stop().await;
    let carried = proxy.requests();
    assert!(!carried.is_empty(), "the proxy carried the envelope");
    let sink_url = world.sink.url();
    assert!(
        carried
            .iter()
            .all(|r| r.method == "POST" && r.target.starts_with(&sink_url)),
        "absolute-form requests to the sink: {carried:?}"
    );
    assert_eq!(
        carried[0].authorization.as_deref(),
        Some("Basic dXNlcjpzZWNyZXQ="),
        "the proxy's credentials go to the proxy"
    );

    let bypassed = RecordingProxy::start().await.unwrap();
    let agent = world
        .start(&[
            ("http_proxy", bypassed.url().as_str()),
            ("no_proxy", "localhost,127.0.0.1"),
        ])
        .await;
    world.sentinel("default", "around-the-proxy").await;
    agent.stop().await;
    assert!(bypassed.requests().is_empty(), "NO_PROXY went around it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_1969_and_the_next_of_its_workload_are_both_delivered() {
    let world = World::new().await;
    let pod = workload(&world, "default", "timeless", None);
    let agent = world.start(&[]).await;
    let moon = "1969-07-20T20:17:40Z".parse().unwrap();
    let mut old = EventFixture::warning("default", "timeless.old", "BackOff", "long ago")
        .about("Pod", pod["metadata"]["name"].as_str().unwrap())
        .timestamps(moon, moon)
        .build();
    old["metadata"]["uid"] = json!("timeless-old");
    world.server.create(old).unwrap();
    world
        .server
        .create(about(&pod, "next", "Unhealthy"))
        .unwrap();
    let events = world.sink.wait_for_events(2, DEADLINE).await.unwrap();
    let first = &events[0].event;
    assert_eq!(
        first["contexts"]["kubernetes_event"]["original_time"],
        "1969-07-20T20:17:40.000000Z"
    );
    let next = &events[1].event;
    assert_eq!(next["tags"]["reason"], "Unhealthy");
    let crumbs = next["breadcrumbs"]["values"].as_array().unwrap();
    assert_eq!(
        crumbs.len(),
        1,
        "the 1969 event is the next one's breadcrumb"
    );
    assert!(crumbs[0]["timestamp"].as_f64().unwrap() > 0.0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_kb_reason_is_reported_cut() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let reason = "Huge".repeat(75_000);
    world
        .server
        .create(EventFixture::warning("default", "huge.1", &reason, "a long reason").build())
        .unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let event = &events[0].event;
    assert_eq!(
        event["tags"]["reason"].as_str().unwrap().chars().count(),
        200
    );
    assert!(
        event["fingerprint"].as_array().unwrap().iter().all(|p| p
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 200)
    );
    assert!(
        event["contexts"]["kubernetes_event"]["reason"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            <= 1024
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_are_ignored_unless_custom_dsns_are_on() {
    let world = World::new().await;
    let other = world.sink.add_project("21", "otherkey");
    let pod = workload(&world, "default", "annotated", Some(&other));
    for switch in [None, Some("0"), Some("false")] {
        let vars: Vec<(&str, &str)> = switch
            .map(|v| vec![("SENTRY_K8S_CUSTOM_DSNS", v)])
            .unwrap_or_default();
        let agent = world.start(&vars).await;
        let suffix = switch.unwrap_or("unset");
        world.server.create(about(&pod, suffix, "BackOff")).unwrap();
        world.sentinel("default", &format!("after-{suffix}")).await;
        agent.stop().await;
    }
    let projects: Vec<String> = world.sink.events().into_iter().map(|e| e.project).collect();
    assert_eq!(projects.len(), 6);
    assert!(projects.iter().all(|p| p == "1"), "{projects:?}");
    // The same annotation is followed once the operator opts in.
    let agent = world.start(&[("SENTRY_K8S_CUSTOM_DSNS", "1")]).await;
    world.server.create(about(&pod, "on", "BackOff")).unwrap();
    world.sink.wait_for_events(7, DEADLINE).await.unwrap();
    agent.stop().await;
    assert!(world.sink.events().iter().any(|e| e.project == "21"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_past_the_limit_is_dropped_until_an_idle_one_is_retired() {
    let world = World::new().await;
    // The admitted destination lives on a second sink, so it can fail alone.
    let busy_sink = SentrySink::start().await.unwrap();
    busy_sink.respond(RespondRule::status(503));
    let busy = workload(
        &world,
        "default",
        "busy",
        Some(busy_sink.add_project("21", "busykey").as_str()),
    );
    let late = workload(
        &world,
        "default",
        "late",
        Some(world.sink.add_project("22", "latekey").as_str()),
    );
    let agent = world
        .start(&[
            ("SENTRY_K8S_CUSTOM_DSNS", "1"),
            ("SENTRY_K8S_DESTINATIONS", "1"),
        ])
        .await;
    let metrics = agent.metrics.clone();
    world.server.create(about(&busy, "1", "BackOff")).unwrap();
    eventually(
        "the admitted destination failing, its envelope pending",
        || metrics.sentry_send_failures.get(RetryReason::ServerError) >= 1,
    )
    .await;
    world.server.create(about(&late, "1", "BackOff")).unwrap();
    eventually("the second destination refused", || {
        metrics.sentry_dropped.get(DropReason::TooManyDestinations) == 1
    })
    .await;
    // The main DSN is not counted against the limit: it delivers meanwhile.
    world.sentinel("default", "main-delivers").await;
    assert!(
        world.sink.events().iter().all(|e| e.project == "1"),
        "nothing reached the refused destination"
    );
    // The admitted destination delivers once its Sentry answers; then its lane is idle...
    busy_sink.clear_respond();
    busy_sink
        .wait_for_events(1, DEADLINE)
        .await
        .expect("the admitted destination delivers");
    eventually("nothing held", || metrics.queue_depth.get() == 0).await;
    // ...and is retired to admit the other.
    world.server.create(about(&late, "2", "Unhealthy")).unwrap();
    let sink = &world.sink;
    eventually("the second destination admitted", || {
        sink.events().iter().any(|e| e.project == "22")
    })
    .await;
    assert_eq!(
        metrics.sentry_dropped.get(DropReason::TooManyDestinations),
        1
    );
    agent.stop().await;
}

/// The kernel's timer on the TCP connection from `local` to `remote`, from
/// `/proc/net/tcp`: its kind (2: keepalive) and the time until it fires, in clock ticks.
fn tcp_timer(local: SocketAddr, remote: SocketAddr) -> Option<(u8, u64)> {
    let hex = |address: SocketAddr| match address {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => unreachable!("the sink listens on 127.0.0.1"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if *fields.get(1)? != local || *fields.get(2)? != remote {
            return None;
        }
        let (kind, when) = fields.get(5)?.split_once(':')?;
        Some((
            u8::from_str_radix(kind, 16).ok()?,
            u64::from_str_radix(when, 16).ok()?,
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_reuses_one_connection_kept_alive_by_tcp() {
    let world = World::new().await;
    let other = world.sink.add_project("21", "otherkey");
    let pod = workload(&world, "default", "pooled", Some(&other));
    let agent = world.start(&[("SENTRY_K8S_CUSTOM_DSNS", "1")]).await;
    let events: Vec<Value> = (0..6)
        .flat_map(|i| {
            [
                EventFixture::warning("default", &format!("main.{i}"), "BackOff", "main").build(),
                about(&pod, &format!("p{i}"), "BackOff"),
            ]
        })
        .collect();
    world.server.create_all(events).unwrap();
    world.sink.wait_for_events(12, DEADLINE).await.unwrap();
    let connections = |project: &str| -> BTreeSet<SocketAddr> {
        requests_of(&world, project)
            .iter()
            .map(|r| r.peer.expect("the sink knows the client's address"))
            .collect()
    };
    let (main, custom) = (connections("1"), connections("21"));
    assert_eq!(main.len(), 1, "6 envelopes over one connection: {main:?}");
    assert_eq!(
        custom.len(),
        1,
        "6 envelopes over one connection: {custom:?}"
    );
    // Idle between envelopes, each connection has a keepalive timer set to the agent's
    // 30 s (at 100 ticks a second), not the kernel's default of two hours.
    let sink: SocketAddr = world
        .sink
        .url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    for peer in main.union(&custom) {
        eventually(
            "a keepalive timer on the idle connection",
            || matches!(tcp_timer(*peer, sink), Some((2, when)) if when <= 30 * 100),
        )
        .await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_for_age_are_logged_once_per_destination_not_per_envelope() {
    let world = World::new().await;
    world.sink.respond(RespondRule::status(503));
    let other = world.sink.add_project("21", "otherkey");
    let pod = workload(&world, "default", "aged", Some(&other));
    let mut agent = Process::spawn(&world.vars(&[
        ("SENTRY_K8S_CUSTOM_DSNS", "1"),
        ("SENTRY_K8S_DELIVERY_MAX_AGE", "1s"),
        ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "200ms"),
        ("SENTRY_K8S_LOG_FORMAT", "json"),
        ("SENTRY_K8S_HTTP_ADDR", "127.0.0.1:0"),
    ]));
    let address = agent.http_address().await;
    // Events from before the initial list would be history, not reported.
    world.server.wait_for_watches(2, DEADLINE).await.unwrap();
    // Two envelopes per destination, twice: the second wave is dropped after the first, in
    // the same outage.
    for wave in 1..=2 {
        let events: Vec<Value> = (0..2)
            .flat_map(|i| {
                let suffix = format!("w{wave}-{i}");
                [
                    EventFixture::warning("default", &format!("main.{suffix}"), "BackOff", "main")
                        .build(),
                    about(&pod, &suffix, "BackOff"),
                ]
            })
            .collect();
        world.server.create_all(events).unwrap();
        eventually(&format!("wave {wave} dropped for age"), || {
            metric(
                &address,
                "sentry_k8s_sentry_dropped_total{reason=\"undeliverable\"}",
            ) == f64::from(4 * wave)
        })
        .await;
    }
    agent.terminate();
    agent.wait().await;
    let told: Vec<Value> = agent
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("SENTRY_K8S_DELIVERY_MAX_AGE"))
        })
        .collect();
    let destinations: BTreeSet<&str> = told
        .iter()
        .map(|l| l["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        (told.len(), destinations.len()),
        (2, 2),
        "one line for each of the two destinations: {told:?}"
    );
}
