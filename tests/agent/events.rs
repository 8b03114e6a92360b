//! What the agent reports for real-world events, field by field, and which occurrences it
//! reports at all.

use crate::common::{DEADLINE, World};
use chrono::{DateTime, Utc};
use harness::fixtures::EventFixture;
use harness::scenarios;
use sentry_kubernetes::filter::Filtered;
use serde_json::{Value, json};

fn by_reason_and_object<'a>(events: &'a [Value], reason: &str, object: &str) -> &'a Value {
    events
        .iter()
        .find(|e| {
            e["tags"]["reason"] == reason
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&format!("{object}: "))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {reason} event for {object} among {} events",
                events.len()
            )
        })
}

fn ts(event: &Value) -> DateTime<Utc> {
    // The sink keeps the JSON the SDK sent: a float of seconds.
    let secs = event["timestamp"].as_f64().expect("a numeric timestamp");
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64).unwrap()
}

fn fixture_time(fixture: &Value, field: &[&str]) -> DateTime<Utc> {
    let mut node = fixture;
    for f in field {
        node = &node[f];
    }
    node.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_warning_of_the_catalog_is_reported_with_its_fields() {
    let world = World::new().await;
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "__all__"),
            ("SENTRY_K8S_CLUSTER_NAME", "eu-1"),
            ("SENTRY_ENVIRONMENT", "production"),
            ("SENTRY_RELEASE", "agent@1"),
            ("SENTRY_K8S_GLOBAL_TAG_team", "sre"),
        ])
        .await;
    let mut entries = scenarios::demo(&world.server).unwrap();
    entries.extend(scenarios::more_reasons(&world.server).unwrap());
    let warnings: Vec<_> = entries
        .iter()
        .filter(|e| e.event["type"] == "Warning")
        .collect();
    let crashed = entries.iter().filter(|e| e.is_crash()).count();
    world
        .sink
        .wait_for_events(warnings.len() + crashed, DEADLINE)
        .await
        .unwrap();
    world.sentinel("default", "after-catalog").await;
    let (events, crashes): (Vec<Value>, Vec<Value>) = world
        .reported()
        .into_iter()
        .partition(|e| e["tags"]["watcher_name"] == "events");
    assert_eq!(
        events.len(),
        warnings.len(),
        "one event per Warning, nothing for Normal events"
    );
    assert_eq!(crashes.len(), 5, "the demo's crashed containers, once each");
    let scopes: std::collections::BTreeSet<String> = crashes
        .iter()
        .map(|e| {
            e["fingerprint"].as_array().unwrap()[1..6]
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    assert_eq!(
        scopes.into_iter().collect::<Vec<_>>(),
        [
            "batch/CronJob/nightly-report/Error/container:report",
            "shop/Deployment/checkout/Error/container:app",
            "shop/StatefulSet/search/OOMKilled/container:elasticsearch",
        ],
        "crashes grouped per workload, reason and container"
    );

    // Every event: level, environment, release, cluster and global tags, the k8s timestamp.
    for entry in &warnings {
        let fixture = &entry.event;
        let object = fixture["involvedObject"]["name"].as_str().unwrap();
        let reason = fixture["reason"].as_str().unwrap();
        let e = by_reason_and_object(&events, reason, object);
        // The SDK omits the default level; Sentry reads a missing level as error.
        assert_eq!(
            e["level"].as_str().unwrap_or("error"),
            "error",
            "{}",
            entry.id
        );
        assert_eq!(e["environment"], "production");
        assert_eq!(e["release"], "agent@1");
        assert_eq!(e["tags"]["cluster"], "eu-1");
        assert_eq!(e["tags"]["team"], "sre");
        assert_eq!(e["tags"]["watcher_name"], "events");
        assert_eq!(e["tags"]["agent_hostname"], "agent-test");
        assert_eq!(e["tags"]["namespace"], fixture["metadata"]["namespace"]);
        assert_eq!(e["tags"]["kind"], fixture["involvedObject"]["kind"]);
        let kind_tag = format!(
            "{}_name",
            fixture["involvedObject"]["kind"]
                .as_str()
                .unwrap()
                .to_lowercase()
        );
        assert_eq!(e["tags"][&kind_tag], object, "{}", entry.id);
        let expected_time = if fixture["series"].is_object() {
            fixture_time(fixture, &["series", "lastObservedTime"])
        } else if fixture["lastTimestamp"].is_string() {
            fixture_time(fixture, &["lastTimestamp"])
        } else {
            fixture_time(fixture, &["eventTime"])
        };
        assert!(
            (ts(e) - expected_time).num_milliseconds().abs() <= 1,
            "{}: timestamp {} != {}",
            entry.id,
            ts(e),
            expected_time
        );
        assert_eq!(e["contexts"]["involved_object"]["name"], object);
        assert_eq!(e["contexts"]["kubernetes_event"]["reason"], reason);
        assert_eq!(e["fingerprint"][0], "eu-1");
    }

    // Field by field for the characteristic ones.
    let checkout = entries
        .iter()
        .find(|e| e.id == "checkout-backoff-0")
        .unwrap();
    let pod = checkout.event["involvedObject"]["name"].as_str().unwrap();
    let e = by_reason_and_object(&events, "BackOff", pod);
    let uid = checkout.event["involvedObject"]["uid"].as_str().unwrap();
    assert_eq!(
        e["message"],
        format!("{pod}: Back-off restarting failed container app in pod {pod}_shop({uid})")
    );
    assert_eq!(e["tags"]["component"], "kubelet");
    assert_eq!(e["tags"]["event_source_component"], "kubelet");
    assert_eq!(e["tags"]["event_type"], "Warning");
    assert_eq!(e["tags"]["container"], "app");
    assert_eq!(e["tags"]["object_uid"], uid);
    assert_eq!(e["tags"]["node_name"], checkout.event["source"]["host"]);
    assert_eq!(e["contexts"]["kubernetes_event"]["count"], 12);
    assert_eq!(
        e["contexts"]["involved_object"]["field_path"],
        "spec.containers{app}"
    );

    let sched = by_reason_and_object(
        &events,
        "FailedScheduling",
        events_object(&entries, "recommender-unschedulable"),
    );
    assert_eq!(sched["tags"]["component"], "default-scheduler");
    assert_eq!(sched["contexts"]["kubernetes_event"]["count"], 14);
    assert_eq!(
        sched["fingerprint"].as_array().unwrap().last().unwrap(),
        "nodes-unavailable"
    );

    let oom = by_reason_and_object(&events, "OOMKilling", "node-2");
    assert_eq!(oom["tags"]["kind"], "Node");
    assert_eq!(oom["tags"]["node_name"], "node-2");
    assert_eq!(oom["tags"]["component"], "kernel-monitor");
    let fp: Vec<&str> = oom["fingerprint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        fp,
        [
            "eu-1",
            "default",
            "Node",
            "node-2",
            "OOMKilling",
            "oom-killed-process",
            "java"
        ]
    );

    let job = by_reason_and_object(&events, "BackoffLimitExceeded", "nightly-report-29160000");
    assert_eq!(job["tags"]["job_name"], "nightly-report-29160000");
    assert_eq!(job["tags"]["component"], "job-controller");
    assert!(job["tags"].get("container").is_none());

    let ready = by_reason_and_object(
        &events,
        "Unhealthy",
        events_object(&entries, "readiness-probe"),
    );
    assert_eq!(
        ready["fingerprint"].as_array().unwrap().last().unwrap(),
        "readiness-probe-failed"
    );
    let hook = by_reason_and_object(
        &events,
        "FailedPreStopHook",
        events_object(&entries, "lifecycle-hook"),
    );
    let tail: Vec<&str> = hook["fingerprint"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .take(2)
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(tail, ["nginx", "lifecycle-hook-failed"]);
    let combined =
        by_reason_and_object(&events, "FailedMount", events_object(&entries, "combined"));
    assert_eq!(combined["tags"]["combined_from_similar"], "true");
    assert!(
        !combined["message"]
            .as_str()
            .unwrap()
            .contains("combined from similar")
    );

    // The same failure on the three pods of one Deployment: one issue, named by it.
    let pods: Vec<&str> = [
        "checkout-backoff-0",
        "checkout-backoff-1",
        "checkout-backoff-2",
    ]
    .iter()
    .map(|id| events_object(&entries, id))
    .collect();
    let fingerprints: std::collections::HashSet<String> = pods
        .iter()
        .map(|p| by_reason_and_object(&events, "BackOff", p)["fingerprint"].to_string())
        .collect();
    assert_eq!(fingerprints.len(), 1);
    assert_eq!(
        e["fingerprint"],
        json!([
            "eu-1",
            "shop",
            "Deployment",
            "checkout",
            "BackOff",
            "container:app"
        ])
    );
    assert_eq!(e["tags"]["deployment_name"], "checkout");
    agent.stop().await;
}

fn events_object<'a>(entries: &'a [scenarios::Entry], id: &str) -> &'a str {
    entries.iter().find(|e| e.id == id).unwrap().event["involvedObject"]["name"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn repeats_by_count_and_by_series_are_each_reported_once() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                "web-1.a",
                "BackOff",
                "Back-off restarting failed container",
            )
            .count(1)
            .build(),
        )
        .unwrap();
    let t0 = Utc::now();
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                "web-2.b",
                "FailedScheduling",
                "0/3 nodes are available: 3 Insufficient cpu.",
            )
            .new_style("default-scheduler", "sched-1", "Scheduling", t0)
            .build(),
        )
        .unwrap();
    for count in 2..=4 {
        world
            .server
            .patch(
                "v1",
                "Event",
                "default",
                "web-1.a",
                &json!({"count": count, "lastTimestamp": harness::fixtures::rfc3339(Utc::now())}),
            )
            .unwrap();
    }
    for (i, count) in [2, 3].into_iter().enumerate() {
        let last = t0 + chrono::Duration::seconds(60 * (i as i64 + 1));
        world
            .server
            .patch("v1", "Event", "default", "web-2.b", &json!({"series": {"count": count, "lastObservedTime": harness::fixtures::micro_time(last)}}))
            .unwrap();
    }
    // A series re-patched with a later time but the same count is a new occurrence too.
    world
        .server
        .patch("v1", "Event", "default", "web-2.b", &json!({"series": {"count": 3, "lastObservedTime": harness::fixtures::micro_time(t0 + chrono::Duration::seconds(600))}}))
        .unwrap();
    world.sentinel("default", "after-repeats").await;
    assert_eq!(
        world.count_message("web-1: Back-off restarting failed container"),
        4
    );
    assert_eq!(
        world.count_message("web-2: 0/3 nodes are available: 3 Insufficient cpu."),
        4
    );
    let counts: Vec<i64> = world
        .reported()
        .iter()
        .filter(|e| e["tags"]["reason"] == "BackOff")
        .map(|e| e["contexts"]["kubernetes_event"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 3, 4]);
    let ids: std::collections::HashSet<_> = world
        .reported()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 8, "each occurrence has its own event id");
    agent.stop().await;
}

#[tokio::test]
async fn modifications_without_a_new_occurrence_report_nothing() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                "db-0.a",
                "Unhealthy",
                "Readiness probe failed: connection refused",
            )
            .count(3)
            .build(),
        )
        .unwrap();
    world
        .server
        .patch(
            "v1",
            "Event",
            "default",
            "db-0.a",
            &json!({"metadata": {"labels": {"touched": "yes"}}}),
        )
        .unwrap();
    world
        .server
        .patch(
            "v1",
            "Event",
            "default",
            "db-0.a",
            &json!({"message": "Readiness probe failed: connection refused"}),
        )
        .unwrap();
    world.sentinel("default", "after-modifications").await;
    assert_eq!(
        world.count_message("db-0: Readiness probe failed: connection refused"),
        1
    );
    assert!(agent.metrics.deduplicated.get() >= 2);
    agent.stop().await;
}

#[tokio::test]
async fn normal_events_and_filtered_reasons_and_sources_are_not_reported() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_FILTER_OUT_EVENT_SOURCES", "cluster-autoscaler")])
        .await;
    let events = [
        EventFixture::normal(
            "default",
            "a.1",
            "Pulled",
            "Container image \"nginx\" already present on machine",
        )
        .build(),
        EventFixture::warning(
            "default",
            "node-1.2",
            "ContainerdStart",
            "Starting containerd.",
        )
        .source("containerd", Some("node-1"))
        .build(),
        EventFixture::warning("default", "b.3", "kubeletstart", "Starting kubelet.").build(),
        EventFixture::warning(
            "default",
            "c.4",
            "ScaleDownFailed",
            "failed to drain the node",
        )
        .source("cluster-autoscaler", None)
        .build(),
        EventFixture::new(
            "Error",
            "default",
            "d.5",
            "CustomProblem",
            "a type that is neither Normal nor Warning",
        )
        .build(),
    ];
    world.server.create_all(events.into()).unwrap();
    world.sentinel("default", "after-filters").await;
    let reported = world.reported();
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert_eq!(reported[0]["tags"]["event_type"], "Error");
    let filtered = |filter| agent.metrics.filtered.get(filter);
    assert_eq!(filtered(Filtered::Normal), 1);
    assert_eq!(filtered(Filtered::Reason), 2);
    assert_eq!(filtered(Filtered::Source), 1);
    agent.stop().await;
}

#[tokio::test]
async fn odd_and_malformed_events_never_stop_the_agent() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let huge = "x".repeat(1 << 20);
    let odd = vec![
        // Every optional field missing or null.
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "bare.1", "namespace": "default"},
               "involvedObject": {}, "type": "Warning"}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "nulls.2", "namespace": "default"},
               "involvedObject": {"kind": null, "name": null}, "type": "Warning", "reason": null, "message": null,
               "count": null, "source": null, "firstTimestamp": null, "lastTimestamp": null, "eventTime": null}),
        // A 1 MiB message.
        EventFixture::warning("default", "big.3", "Failed", &huge).build(),
        // A kind nobody knows, from an unknown component, with a non-UTF-8-looking message.
        EventFixture::warning(
            "default",
            "cr.4",
            "ReconcileError",
            "reconcile failed: \u{0}\u{7f} ünïcödé 🚨\nsecond line",
        )
        .about("FancyWidget", "widget-1")
        .set(
            &["involvedObject", "apiVersion"],
            json!("example.com/v1alpha1"),
        )
        .source("widget-operator", None)
        .build(),
        // Wrongly typed fields (a real apiserver would refuse them; the agent must not care).
        EventFixture::warning("default", "typed.5", "BackOff", "typed")
            .set(&["count"], json!("seven"))
            .set(&["lastTimestamp"], json!(12))
            .build(),
        // Nested objects that are not objects: read as absent, not a broken watch.
        EventFixture::warning("default", "nested.6", "Evicted", "nested")
            .set(&["involvedObject"], json!("not an object"))
            .set(&["source"], json!([1, {"component": "x"}]))
            .set(&["series"], json!(5))
            .build(),
    ];
    world.server.create_all(odd).unwrap();
    world.sentinel("default", "after-odd").await;
    let reported = world.reported();
    assert_eq!(reported.len(), 6, "all are reported");
    let nested = reported
        .iter()
        .find(|e| e["tags"]["reason"] == "Evicted")
        .unwrap();
    assert_eq!(nested["message"], "nested.6: nested");
    let big = reported
        .iter()
        .find(|e| e["tags"]["reason"] == "Failed")
        .unwrap();
    let message = big["message"].as_str().unwrap();
    assert_eq!(
        message.chars().count(),
        sentry_kubernetes::limits::MAX_MESSAGE_CHARS
    );
    assert_eq!(
        big["contexts"]["kubernetes_event"]["message_length"],
        (1 << 20) + "big: ".len()
    );
    let cr = reported
        .iter()
        .find(|e| e["tags"]["reason"] == "ReconcileError")
        .unwrap();
    assert_eq!(cr["tags"]["fancywidget_name"], "widget-1");
    assert_eq!(cr["tags"]["kind"], "FancyWidget");
    let bare = reported
        .iter()
        .find(|e| e["contexts"]["kubernetes_event"]["name"] == "bare.1")
        .unwrap();
    assert_eq!(bare["message"], "bare.1: ");
    agent.stop().await;
}
