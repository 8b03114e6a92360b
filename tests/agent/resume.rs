//! Exactly once across restarts and replicas: the checkpoint in the Lease, and leader
//! election — each test runs the agent binary as an operator would, against the fake
//! apiserver and the sink.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use harness::fixtures::{ContainerStatusFixture, EventFixture, ObjectFixture};
use harness::{DelayRule, DenyRule, FailRule, RespondRule};
use sentry_kubernetes::checkpoint::Checkpoint;
use serde_json::{Value, json};

use crate::common::process::{Process, http_get, metric};
use crate::common::{World, eventually};
use crate::pods::{kubelet_writes, pod_sentinel};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/sentry-kubernetes";

/// The agent as a replica named `name`: JSON logs, probes on a free port, quick Lease
/// timings (3 s duration, 2 s renew deadline, 0.5 s retry period) unless `extra` says
/// otherwise.
fn replica(world: &World, name: &str, extra: &[(&str, &str)]) -> Process {
    let mut vars: Vec<(&str, &str)> = vec![
        ("POD_NAME", name),
        ("SENTRY_K8S_LEADER_ELECTION", "1"),
        ("SENTRY_K8S_LEASE_DURATION", "3s"),
        ("SENTRY_K8S_RENEW_DEADLINE", "2s"),
        ("SENTRY_K8S_RETRY_PERIOD", "500ms"),
        ("SENTRY_K8S_LOG_FORMAT", "json"),
        ("SENTRY_K8S_HTTP_ADDR", "127.0.0.1:0"),
        ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "5s"),
    ];
    vars.extend_from_slice(extra);
    Process::spawn(&world.vars(&vars))
}

/// Waits until the replica's watches have listed; returns its probe address.
async fn ready(process: &Process) -> String {
    let address = process.http_address().await;
    eventually("readiness", || {
        http_get(&address, "/readyz").ends_with("200")
    })
    .await;
    address
}

fn leading(address: &str) -> bool {
    metric(address, "sentry_k8s_leader") == 1.0
}

fn checkpoint(world: &World) -> Option<Checkpoint> {
    let lease = world.server.get(
        "coordination.k8s.io/v1",
        "Lease",
        "default",
        "sentry-kubernetes",
    )?;
    let text = lease["metadata"]["annotations"]["k8s.sentry.io/checkpoint"].as_str()?;
    Some(Checkpoint::decode(text).expect("the agent writes readable checkpoints"))
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until the Lease's checkpoint has everything up to `object` decided.
async fn checkpointed(world: &World, object: &Value) {
    let rv = rv(object);
    eventually("the checkpoint written past it", || {
        checkpoint(world)
            .and_then(|c| c.mark("events/default").map(|m| m.decided(rv)))
            .unwrap_or(false)
    })
    .await;
}

/// How many times the sink got the event named `name` (count `count`, if given).
fn times(world: &World, name: &str, count: Option<i64>) -> usize {
    world
        .sink
        .events()
        .iter()
        .filter(|e| {
            let ctx = &e.event["contexts"]["kubernetes_event"];
            ctx["name"] == name && count.is_none_or(|c| ctx["count"] == c)
        })
        .count()
}

/// Waits until the Lease's checkpoint has the pod watch's `pod` (as it is now) decided.
async fn pod_checkpointed(world: &World, pod: &str) {
    let rv = rv(&world.server.get("v1", "Pod", "default", pod).unwrap());
    eventually("the checkpoint written past the pod", || {
        checkpoint(world)
            .and_then(|c| c.mark("pods/default").map(|m| m.decided(rv)))
            .unwrap_or(false)
    })
    .await;
}

/// How many crash reports the sink got about pod `pod`.
fn crashes_of(world: &World, pod: &str) -> usize {
    world
        .reported()
        .iter()
        .filter(|e| e["tags"]["watcher_name"] == "pods" && e["tags"]["pod_name"] == pod)
        .count()
}

fn warning(name: &str, at: DateTime<Utc>) -> Value {
    EventFixture::warning("default", name, "BackOff", &format!("{name} crashed"))
        .about("Pod", name.split('.').next().unwrap())
        .timestamps(at, at)
        .build()
}

fn batch(world: &World, prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            world
                .server
                .create(warning(&format!("{prefix}-{i}.e"), Utc::now()))
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reports_what_happened_while_stopped_once_and_nothing_else() {
    let world = World::new().await;
    let second = Utc::now().trunc_subsecs(0);
    // Stored before the first start: history.
    world.server.create(warning("old-a.1", second)).unwrap();
    world.server.create(warning("old-b.1", second)).unwrap();
    let mut first = replica(&world, "agent-a", &[("SENTRY_K8S_LEADER_ELECTION", "0")]);
    ready(&first).await;
    // Reported, in the same second as the stored ones.
    let delivered = world
        .server
        .create(warning("same-second.1", second))
        .unwrap();
    world
        .sink
        .wait_for_events(1, crate::common::DEADLINE)
        .await
        .unwrap();
    checkpointed(&world, &delivered).await;
    first.terminate();
    assert!(first.wait().await.success());

    // While stopped: a new event, and a repeat of an old one in that same second.
    world
        .server
        .create(warning("while-stopped.1", Utc::now()))
        .unwrap();
    world
        .server
        .patch("v1", "Event", "default", "old-a.1", &json!({"count": 2}))
        .unwrap();
    let second_run = replica(&world, "agent-a", &[("SENTRY_K8S_LEADER_ELECTION", "0")]);
    let address = ready(&second_run).await;
    world.sentinel("default", "after-restart").await;
    assert_eq!(
        times(&world, "while-stopped.1", None),
        1,
        "the new event, once"
    );
    assert_eq!(
        times(&world, "old-a.1", Some(2)),
        1,
        "the repeat of an old event, once"
    );
    assert_eq!(times(&world, "old-b.1", None), 0, "history stays history");
    assert_eq!(
        times(&world, "same-second.1", None),
        1,
        "nothing delivered is resent"
    );
    assert_eq!(
        metric(&address, "sentry_k8s_occurrences_resumed_total"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_replay_across_a_restart_resends_nothing() {
    let world = World::new().await;
    for i in 0..3 {
        world
            .server
            .create(warning(&format!("stored-{i}.e"), Utc::now()))
            .unwrap();
    }
    let options = [
        ("SENTRY_K8S_LEADER_ELECTION", "0"),
        ("SENTRY_K8S_WATCH_HISTORICAL", "1"),
    ];
    let mut first = replica(&world, "agent-a", &options);
    ready(&first).await;
    world
        .sink
        .wait_for_events(3, crate::common::DEADLINE)
        .await
        .unwrap();
    first.terminate();
    assert!(first.wait().await.success());
    let second = replica(&world, "agent-a", &options);
    ready(&second).await;
    world.sentinel("default", "after-replay").await;
    for i in 0..3 {
        assert_eq!(times(&world, &format!("stored-{i}.e"), None), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_report_each_occurrence_once() {
    let world = World::new().await;
    let a = replica(&world, "agent-a", &[]);
    let b = replica(&world, "agent-b", &[]);
    let (a_address, b_address) = (ready(&a).await, ready(&b).await);
    eventually("one leader", || leading(&a_address) ^ leading(&b_address)).await;
    let events = batch(&world, "pair", 20);
    world.sentinel("default", "after-pair").await;
    for event in &events {
        let name = event["metadata"]["name"].as_str().unwrap();
        assert_eq!(times(&world, name, None), 1, "{name}");
    }
    assert_eq!(
        metric(&a_address, "sentry_k8s_events_reported_total")
            + metric(&b_address, "sentry_k8s_events_reported_total"),
        21.0,
        "the follower reported nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_after_its_checkpoint_is_lost() {
    let world = World::new().await;
    let mut a = replica(&world, "agent-a", &[]);
    let a_address = ready(&a).await;
    eventually("agent-a leads", || leading(&a_address)).await;
    let b = replica(&world, "agent-b", &[]);
    let b_address = ready(&b).await;
    let before = batch(&world, "before", 10);
    world
        .sink
        .wait_for_events(10, crate::common::DEADLINE)
        .await
        .unwrap();
    checkpointed(&world, before.last().unwrap()).await;
    a.kill();
    let after = batch(&world, "after", 10);
    // The Lease expires 3 s after agent-a's last renewal; then agent-b takes over.
    world
        .sink
        .wait_for_events(20, crate::common::DEADLINE)
        .await
        .unwrap();
    assert!(leading(&b_address));
    world.sentinel("default", "after-kill").await;
    for event in before.iter().chain(&after) {
        let name = event["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            times(&world, name, None),
            1,
            "{name}: once, none lost, none resent"
        );
    }
    assert_eq!(
        metric(&b_address, "sentry_k8s_occurrences_resumed_total"),
        10.0
    );
    // What an operator watches through a handover (README "Metrics").
    assert_eq!(
        metric(
            &b_address,
            r#"sentry_k8s_leader_transitions_total{direction="acquired"}"#
        ),
        1.0
    );
    assert!(
        metric(
            &b_address,
            r#"sentry_k8s_lease_writes_total{outcome="written"}"#
        ) >= 1.0
    );
    // Written every retry period (500 ms here) while leading.
    assert!(metric(&b_address, "sentry_k8s_checkpoint_age_seconds") <= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_in_a_retry_period_with_no_loss_and_no_repeat() {
    let world = World::new().await;
    // A 10 s Lease: a takeover well before it can only come from the release.
    let slow_expiry = [
        ("SENTRY_K8S_LEASE_DURATION", "10s"),
        ("SENTRY_K8S_RENEW_DEADLINE", "8s"),
    ];
    let mut a = replica(&world, "agent-a", &slow_expiry);
    let a_address = ready(&a).await;
    eventually("agent-a leads", || leading(&a_address)).await;
    let b = replica(&world, "agent-b", &slow_expiry);
    let b_address = ready(&b).await;
    let before = batch(&world, "before", 10);
    world
        .sink
        .wait_for_events(10, crate::common::DEADLINE)
        .await
        .unwrap();
    a.terminate();
    assert!(a.wait().await.success());
    let released = std::time::Instant::now();
    let after = batch(&world, "after", 10);
    world
        .sink
        .wait_for_events(20, crate::common::DEADLINE)
        .await
        .unwrap();
    assert!(
        released.elapsed() < std::time::Duration::from_secs(8),
        "taken over after the release, not the expiry: {:?}",
        released.elapsed()
    );
    assert!(leading(&b_address));
    world.sentinel("default", "after-handover").await;
    for event in before.iter().chain(&after) {
        let name = event["metadata"]["name"].as_str().unwrap();
        assert_eq!(times(&world, name, None), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rights_on_leases_the_agent_reports_alone_and_says_so_once() {
    let world = World::new().await;
    world.server.deny(DenyRule {
        verb: "update".into(),
        resource: "leases".into(),
        group: Some("coordination.k8s.io".into()),
        namespace: None,
    });
    let agent = replica(&world, "agent-a", &[]);
    let address = ready(&agent).await;
    assert!(leading(&address));
    batch(&world, "alone", 3);
    world.sentinel("default", "after-alone").await;
    assert_eq!(world.reported().len(), 3);
    // Several retry periods later, still one warning.
    eventually("a few rounds", || {
        metric(
            &address,
            "sentry_k8s_lease_writes_total{outcome=\"forbidden\"}",
        ) >= 1.0
    })
    .await;
    assert_eq!(agent.stderr().matches("cannot use the Lease").count(), 1);
}

/// An apiserver that takes the renewal and never answers: the leader must stop by its
/// renew deadline, before its Lease runs out and another replica may take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_hangs_ends_the_leadership_within_the_lease() {
    let world = World::new().await;
    let agent = replica(&world, "agent-a", &[("SENTRY_K8S_LEASE_DURATION", "6s")]);
    let address = ready(&agent).await;
    eventually("leading", || leading(&address)).await;
    let hung = std::time::Instant::now();
    world.server.delay(DelayRule {
        path: LEASE.into(),
        method: Some("PUT".into()),
        millis: 60_000,
        count: None,
    });
    agent
        .wait_for_log("stepping down", "lost the leadership")
        .await;
    assert!(!leading(&address));
    assert!(
        hung.elapsed() < std::time::Duration::from_secs(6),
        "stepped down after {:?}, past the 6 s Lease",
        hung.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_reporting_and_resumes_once_it_can() {
    let world = World::new().await;
    let agent = replica(&world, "agent-a", &[]);
    let address = ready(&agent).await;
    eventually("leading", || leading(&address)).await;
    world.server.fail(FailRule {
        path: LEASE.into(),
        method: Some("PUT".into()),
        status: 500,
        count: 1_000_000,
        message: None,
        retry_after: None,
    });
    agent
        .wait_for_log("stepping down", "lost the leadership")
        .await;
    assert!(!leading(&address));
    let workloads = metric(&address, "sentry_k8s_breadcrumb_workloads");
    world
        .server
        .create(warning("unreported.1", Utc::now()))
        .unwrap();
    // Through the pipeline (its workload joined the breadcrumb trail), and not sent.
    eventually("the event processed", || {
        metric(&address, "sentry_k8s_breadcrumb_workloads") > workloads
    })
    .await;
    assert_eq!(times(&world, "unreported.1", None), 0);
    world.server.clear_faults();
    agent
        .wait_for_log("taking over", "acquired the leadership")
        .await;
    world.sentinel("default", "after-renewal").await;
    assert_eq!(
        times(&world, "unreported.1", None),
        1,
        "reported once it leads again: {}",
        agent.stderr()
    );
    let transitions = |direction: &str| {
        metric(
            &address,
            &format!(r#"sentry_k8s_leader_transitions_total{{direction="{direction}"}}"#),
        )
    };
    assert_eq!((transitions("acquired"), transitions("lost")), (2.0, 1.0));
    assert!(
        metric(
            &address,
            r#"sentry_k8s_lease_writes_total{outcome="failed"}"#
        ) >= 1.0
    );
}

/// A crash still waiting for a failing Sentry when the agent stops is reported once after
/// the restart: though its pod changed afterwards (the kubelet restarting the container,
/// its termination still in `lastState`), and though it ended minutes before the last
/// checkpoint was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_undelivered_at_a_stop_is_reported_once_after_the_restart() {
    let world = World::new().await;
    world.sink.respond(RespondRule::status(503));
    let alone = [("SENTRY_K8S_LEADER_ELECTION", "0")];
    let mut first = replica(&world, "agent-a", &alone);
    let address = ready(&first).await;
    let now = Utc::now();
    let recent = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", now);
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[recent.clone().build()])
        .create(&world.server);
    let old = ContainerStatusFixture::new("app", "web:1").crashed(
        137,
        "OOMKilled",
        now - Duration::minutes(5),
    );
    ObjectFixture::new("Pod", "default", "web-1")
        .status("Running", &[old.build()])
        .create(&world.server);
    eventually("both crashes handed to delivery", || {
        metric(&address, "sentry_k8s_events_reported_total") >= 2.0
    })
    .await;
    // The container restarts: a new pod resourceVersion, the same termination.
    kubelet_writes(
        &world,
        "default",
        "web-0",
        &[recent.restarted(now + Duration::seconds(1)).build()],
    )
    .await;
    pod_checkpointed(&world, "web-0").await;
    first.terminate();
    first.wait().await;
    assert!(world.reported().is_empty(), "Sentry took nothing yet");

    world.sink.clear_respond();
    let mut second = replica(&world, "agent-a", &alone);
    let address = ready(&second).await;
    pod_sentinel(&world, "default", "sentinel-1").await;
    assert_eq!(
        crashes_of(&world, "web-0"),
        1,
        "the crash whose pod changed"
    );
    assert_eq!(
        crashes_of(&world, "web-1"),
        1,
        "the crash from minutes before"
    );
    assert_eq!(
        metric(&address, "sentry_k8s_occurrences_resumed_total"),
        2.0
    );
    second.terminate();
    assert!(second.wait().await.success());

    // Delivered now: a third run sends neither again.
    let third = replica(&world, "agent-a", &alone);
    ready(&third).await;
    pod_sentinel(&world, "default", "sentinel-2").await;
    assert_eq!(crashes_of(&world, "web-0"), 1);
    assert_eq!(crashes_of(&world, "web-1"), 1);
}

/// A crash delivered just before a graceful stop is not reported again when its pod
/// changes while the agent is stopped (its termination still in `lastState`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_crash_is_not_repeated_when_its_pod_changes_while_stopped() {
    let world = World::new().await;
    let alone = [("SENTRY_K8S_LEADER_ELECTION", "0")];
    let mut first = replica(&world, "agent-a", &alone);
    ready(&first).await;
    let crashed = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", Utc::now());
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[crashed.clone().build()])
        .create(&world.server);
    world
        .sink
        .wait_for_events(1, crate::common::DEADLINE)
        .await
        .unwrap();
    pod_checkpointed(&world, "web-0").await;
    first.terminate();
    assert!(first.wait().await.success());

    kubelet_writes(
        &world,
        "default",
        "web-0",
        &[crashed.restarted(Utc::now()).build()],
    )
    .await;
    let second = replica(&world, "agent-a", &alone);
    let address = ready(&second).await;
    pod_sentinel(&world, "default", "sentinel-1").await;
    assert_eq!(crashes_of(&world, "web-0"), 1, "delivered before the stop");
    assert_eq!(
        metric(&address, "sentry_k8s_occurrences_resumed_total"),
        0.0
    );
}
