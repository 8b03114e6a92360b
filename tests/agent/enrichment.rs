//! One Sentry issue per workload and reason: owner chains, tags, breadcrumbs, per-object
//! DSNs, and the bounds of what is remembered.

use sentry_kubernetes::breadcrumbs::Eviction as CrumbEviction;
use sentry_kubernetes::filter::Filtered;
use sentry_kubernetes::owners::cache::LookupOutcome;
use sentry_kubernetes::routing::RouteOutcome;
use std::collections::HashSet;

use crate::common::{DEADLINE, World, eventually};
use chrono::{Duration, Utc};
use harness::DenyRule;
use harness::SinkDelay;
use harness::fixtures::{EventFixture, ObjectFixture, deployment_chain};
use serde_json::{Value, json};

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap()
}

/// A kubelet event about a pod object.
fn pod_event(
    pod: &Value,
    suffix: &str,
    event_type: &str,
    reason: &str,
    message: &str,
) -> EventFixture {
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    EventFixture::new(
        event_type,
        ns,
        &format!("{}.{suffix}", name(pod)),
        reason,
        message,
    )
    .about("Pod", name(pod))
    .involved_uid(uid(pod))
}

fn fingerprint(event: &Value) -> Vec<String> {
    event["fingerprint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn three_crashing_pods_of_one_deployment_are_one_issue_named_by_the_deployment() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "shop")])
        .await;
    let web = deployment_chain(&world.server, "shop", "web", 3);
    let api = deployment_chain(&world.server, "shop", "api", 1);
    for (i, pod) in web.pods.iter().enumerate() {
        world
            .server
            .create(
                pod_event(
                    pod,
                    "b",
                    "Warning",
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container app in pod {}_shop({})",
                        name(pod),
                        uid(pod)
                    ),
                )
                .container("app")
                .source("kubelet", Some(&format!("node-{i}")))
                .build(),
            )
            .unwrap();
    }
    world
        .server
        .create(
            pod_event(
                &api.pods[0],
                "b",
                "Warning",
                "BackOff",
                "Back-off restarting failed container app",
            )
            .container("app")
            .build(),
        )
        .unwrap();
    world
        .server
        .create(
            pod_event(
                &web.pods[0],
                "u",
                "Warning",
                "Unhealthy",
                "Liveness probe failed: HTTP probe failed with statuscode: 500",
            )
            .container("app")
            .build(),
        )
        .unwrap();
    world.sentinel("shop", "s").await;

    let events = world.reported();
    assert_eq!(events.len(), 5);
    let web_backoffs: Vec<&Value> = events
        .iter()
        .filter(|e| e["tags"]["deployment_name"] == "web" && e["tags"]["reason"] == "BackOff")
        .collect();
    assert_eq!(web_backoffs.len(), 3);
    let fingerprints: HashSet<Vec<String>> = web_backoffs.iter().map(|e| fingerprint(e)).collect();
    assert_eq!(fingerprints.len(), 1, "one issue for the three pods");
    assert_eq!(
        fingerprints.into_iter().next().unwrap(),
        ["shop", "Deployment", "web", "BackOff", "container:app"]
    );
    for (i, e) in web_backoffs.iter().enumerate() {
        assert_eq!(e["tags"]["replicaset_name"], name(&web.replicaset));
        assert_eq!(e["tags"]["root_kind"], "Deployment");
        assert_eq!(e["tags"]["root_name"], "web");
        assert_eq!(e["tags"]["pod_name"], name(&web.pods[i]));
        assert_eq!(e["tags"]["node_name"], format!("node-{i}"));
        let chain: Vec<&str> = e["contexts"]["owners"]["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(chain, ["Pod", "ReplicaSet", "Deployment"]);
        assert_eq!(
            e["contexts"]["owners"]["chain"][2]["uid"],
            uid(&web.deployment)
        );
        assert!(
            !e.to_string().contains("managedFields"),
            "no managedFields anywhere"
        );
    }
    let other_workload = events
        .iter()
        .find(|e| e["tags"]["deployment_name"] == "api")
        .unwrap();
    let other_reason = events
        .iter()
        .find(|e| e["tags"]["reason"] == "Unhealthy")
        .unwrap();
    assert_ne!(fingerprint(other_workload), fingerprint(web_backoffs[0]));
    assert_ne!(fingerprint(other_reason), fingerprint(web_backoffs[0]));
    agent.stop().await;
}

#[tokio::test]
async fn jobs_statefulsets_daemonsets_and_custom_owners_are_roots() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "apps")])
        .await;
    let s = &world.server;
    let cronjob = ObjectFixture::new("CronJob", "apps", "nightly").create(s);
    let job = ObjectFixture::new("Job", "apps", "nightly-29160000")
        .owned_by(&cronjob)
        .create(s);
    let job_pod = ObjectFixture::new("Pod", "apps", "nightly-29160000-x1")
        .owned_by(&job)
        .create(s);
    let sts = ObjectFixture::new("StatefulSet", "apps", "db").create(s);
    let sts_pod = ObjectFixture::new("Pod", "apps", "db-0")
        .owned_by(&sts)
        .create(s);
    let ds = ObjectFixture::new("DaemonSet", "apps", "agent").create(s);
    let ds_pod = ObjectFixture::new("Pod", "apps", "agent-k2x9z")
        .owned_by(&ds)
        .create(s);
    // An Argo Rollout's ReplicaSet: the Rollout is a custom resource the agent cannot read.
    let rs = ObjectFixture::new("ReplicaSet", "apps", "canary-6f7d9")
        .owned_by_ref(
            "argoproj.io/v1alpha1",
            "Rollout",
            "canary",
            "0b4e7a52-9c1d-4f3e-8a2b-6d5c4e3f2a10",
        )
        .create(s);
    let rollout_pod = ObjectFixture::new("Pod", "apps", "canary-6f7d9-q8w7e")
        .owned_by(&rs)
        .create(s);
    for pod in [&job_pod, &sts_pod, &ds_pod, &rollout_pod] {
        s.create(pod_event(pod, "f", "Warning", "Failed", "Error: ImagePullBackOff").build())
            .unwrap();
    }
    s.create(
        EventFixture::warning(
            "apps",
            "nightly-29160000.j",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
        .about("Job", "nightly-29160000")
        .involved_uid(uid(&job))
        .build(),
    )
    .unwrap();
    world.sentinel("apps", "s").await;
    let events = world.reported();
    let by_pod = |pod: &Value| {
        events
            .iter()
            .find(|e| e["tags"]["pod_name"] == name(pod))
            .unwrap()
            .clone()
    };

    let e = by_pod(&job_pod);
    assert_eq!(
        (
            e["tags"]["root_kind"].as_str(),
            e["tags"]["root_name"].as_str()
        ),
        (Some("CronJob"), Some("nightly"))
    );
    assert_eq!(e["tags"]["job_name"], "nightly-29160000");
    assert_eq!(e["tags"]["cronjob_name"], "nightly");
    let job_event = events
        .iter()
        .find(|e| e["tags"]["reason"] == "BackoffLimitExceeded")
        .unwrap();
    assert_eq!(job_event["tags"]["root_name"], "nightly");
    assert_eq!(
        fingerprint(job_event)[1..3],
        ["CronJob".to_string(), "nightly".to_string()]
    );

    assert_eq!(by_pod(&sts_pod)["tags"]["statefulset_name"], "db");
    assert_eq!(by_pod(&sts_pod)["tags"]["root_kind"], "StatefulSet");
    assert_eq!(by_pod(&ds_pod)["tags"]["daemonset_name"], "agent");
    assert_eq!(by_pod(&ds_pod)["tags"]["root_kind"], "DaemonSet");

    let rollout = by_pod(&rollout_pod);
    assert_eq!(rollout["tags"]["root_kind"], "Rollout");
    assert_eq!(rollout["tags"]["root_name"], "canary");
    assert_eq!(rollout["tags"]["replicaset_name"], "canary-6f7d9");
    assert_eq!(
        fingerprint(&rollout),
        ["apps", "Rollout", "canary", "Failed"]
    );
    assert!(
        world
            .server
            .requests(0)
            .iter()
            .all(|r| !r.path.contains("rollouts")),
        "no request for an unreadable kind"
    );
    assert!(
        agent.metrics.owner_lookups.get(LookupOutcome::Unreadable) >= 1,
        "a chain ending at a kind the agent does not read is counted"
    );
    agent.stop().await;
}

#[tokio::test]
async fn forbidden_owner_lookups_degrade_to_what_is_known() {
    let world = World::new().await;
    world.server.deny(DenyRule {
        verb: "get".into(),
        resource: "replicasets".into(),
        group: Some("apps".into()),
        namespace: None,
    });
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "shop")])
        .await;
    let web = deployment_chain(&world.server, "shop", "web", 2);
    for pod in &web.pods {
        world
            .server
            .create(
                pod_event(
                    pod,
                    "b",
                    "Warning",
                    "BackOff",
                    "Back-off restarting failed container",
                )
                .build(),
            )
            .unwrap();
    }
    world.sentinel("shop", "s").await;
    let events = world.reported();
    assert_eq!(events.len(), 2, "still reported");
    for e in &events {
        // The pod's ownerReference names the ReplicaSet; it cannot be read, so it is the root.
        assert_eq!(e["tags"]["root_kind"], "ReplicaSet");
        assert_eq!(e["tags"]["root_name"], name(&web.replicaset));
        assert!(e["tags"].get("deployment_name").is_none());
    }
    assert_eq!(
        fingerprint(&events[0]),
        fingerprint(&events[1]),
        "grouped by what is known"
    );
    assert!(agent.metrics.owner_lookups.get(LookupOutcome::Forbidden) >= 1);
    assert_eq!(
        world.gets("/replicasets/"),
        1,
        "a forbidden lookup is remembered, not retried per event"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_events_about_one_pod_cost_one_lookup_per_object() {
    let world = World::new().await;
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "shop"),
            ("SENTRY_K8S_LOOKUP_CONCURRENCY", "16"),
        ])
        .await;
    let web = deployment_chain(&world.server, "shop", "web", 1);
    let pod = &web.pods[0];
    let events = (0..50)
        .map(|i| {
            pod_event(
                pod,
                &format!("{i:03}"),
                "Warning",
                "Unhealthy",
                &format!("Readiness probe failed: attempt {i}"),
            )
            .build()
        })
        .collect();
    world.server.create_all(events).unwrap();
    world.sentinel("shop", "s").await;
    assert_eq!(world.reported().len(), 50);
    assert_eq!(world.gets(&format!("/pods/{}", name(pod))), 1);
    assert_eq!(
        world.gets(&format!("/replicasets/{}", name(&web.replicaset))),
        1
    );
    assert_eq!(world.gets("/deployments/web"), 1);
    assert!(
        world
            .server
            .requests(0)
            .iter()
            .filter(|r| r.path.contains("/pods/"))
            .all(|r| r.accept.contains("PartialObjectMetadata")),
        "metadata only"
    );
    assert!(
        agent.metrics.owner_lookups.get(LookupOutcome::Coalesced)
            + agent.metrics.owner_lookups.get(LookupOutcome::Cached)
            >= 49
    );
    agent.stop().await;
}

#[tokio::test]
async fn breadcrumbs_are_the_workloads_earlier_events_in_order() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "shop")])
        .await;
    let web = deployment_chain(&world.server, "shop", "web", 2);
    let other = deployment_chain(&world.server, "shop", "other", 1);
    let pod = &web.pods[0];
    let t0 = Utc::now() - Duration::minutes(10);
    let at = |m: i64| t0 + Duration::minutes(m);
    let s = &world.server;
    s.create(
        EventFixture::normal(
            "shop",
            "web.1",
            "ScalingReplicaSet",
            &format!(
                "Scaled up replica set {} from 0 to 2",
                name(&web.replicaset)
            ),
        )
        .about("Deployment", "web")
        .involved_uid(uid(&web.deployment))
        .source("deployment-controller", None)
        .timestamps(at(0), at(0))
        .build(),
    )
    .unwrap();
    s.create(
        EventFixture::normal(
            "shop",
            "rs.1",
            "SuccessfulCreate",
            &format!("Created pod: {}", name(pod)),
        )
        .about("ReplicaSet", name(&web.replicaset))
        .involved_uid(uid(&web.replicaset))
        .source("replicaset-controller", None)
        .timestamps(at(1), at(1))
        .build(),
    )
    .unwrap();
    s.create(
        pod_event(
            pod,
            "1",
            "Normal",
            "Scheduled",
            &format!("Successfully assigned shop/{} to node-4", name(pod)),
        )
        .source("default-scheduler", None)
        .timestamps(at(2), at(2))
        .build(),
    )
    .unwrap();
    for (n, reason, message) in [
        (2, "Pulling", "Pulling image \"web:1.0\""),
        (3, "Created", "Created container: app"),
        (4, "Started", "Started container app"),
    ] {
        let event = pod_event(pod, &n.to_string(), "Normal", reason, message)
            .container("app")
            .source("kubelet", Some("node-4"))
            .timestamps(at(n + 1), at(n + 1));
        s.create(event.build()).unwrap();
    }
    // Unrelated: the other Deployment's pod, at the same times.
    s.create(
        pod_event(
            &other.pods[0],
            "1",
            "Normal",
            "Pulling",
            "Pulling image \"other:2.0\"",
        )
        .timestamps(at(3), at(3))
        .build(),
    )
    .unwrap();
    s.create(
        pod_event(&other.pods[0], "2", "Warning", "BackOff", "other crashing")
            .timestamps(at(4), at(4))
            .build(),
    )
    .unwrap();
    // The failure, from a controller without a host: the node comes from the scheduler's event.
    s.create(
        pod_event(
            pod,
            "5",
            "Warning",
            "FailedAttachVolume",
            "AttachVolume.Attach failed for volume \"data\"",
        )
        .source("attachdetach-controller", None)
        .timestamps(at(6), at(6))
        .build(),
    )
    .unwrap();
    world.sentinel("shop", "s").await;

    let event = world
        .reported()
        .into_iter()
        .find(|e| e["tags"]["reason"] == "FailedAttachVolume")
        .unwrap();
    assert_eq!(event["tags"]["node_name"], "node-4");
    let crumbs = event["breadcrumbs"]["values"]
        .as_array()
        .expect("breadcrumbs");
    let messages: Vec<&str> = crumbs
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            format!(
                "ScalingReplicaSet: Scaled up replica set {} from 0 to 2",
                name(&web.replicaset)
            ),
            format!("SuccessfulCreate: Created pod: {}", name(pod)),
            format!(
                "Scheduled: Successfully assigned shop/{} to node-4",
                name(pod)
            ),
            "Pulling: Pulling image \"web:1.0\"".to_string(),
            "Created: Created container: app".to_string(),
            "Started: Started container app".to_string(),
        ]
    );
    for (i, c) in crumbs.iter().enumerate() {
        assert_eq!(c["category"], "k8s.event");
        // The SDK omits the default level; Sentry reads a missing breadcrumb level as info.
        assert_eq!(c["level"].as_str().unwrap_or("info"), "info");
        // lastTimestamp has whole seconds.
        let expected = at(i as i64).timestamp() as f64;
        assert!(
            (c["timestamp"].as_f64().unwrap() - expected).abs() < 0.001,
            "crumb {i} keeps its own time"
        );
    }
    assert_eq!(
        crumbs[2]["data"],
        json!({"kind": "Pod", "name": name(pod), "count": 1})
    );
    assert_eq!(crumbs[0]["data"]["kind"], "Deployment");
    agent.stop().await;
}

#[tokio::test]
async fn warning_breadcrumbs_include_earlier_failures_and_respect_the_count() {
    let world = World::new().await;
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "shop"),
            ("SENTRY_K8S_BREADCRUMBS", "3"),
        ])
        .await;
    let web = deployment_chain(&world.server, "shop", "web", 1);
    let pod = &web.pods[0];
    let t0 = Utc::now() - Duration::minutes(30);
    for i in 0..6 {
        let at = t0 + Duration::minutes(i);
        world
            .server
            .create(
                pod_event(
                    pod,
                    &format!("{i}"),
                    "Warning",
                    "BackOff",
                    &format!("crash {i}"),
                )
                .timestamps(at, at)
                .build(),
            )
            .unwrap();
    }
    world.sentinel("shop", "s").await;
    let last = world
        .reported()
        .into_iter()
        .find(|e| e["message"].as_str().unwrap().ends_with("crash 5"))
        .unwrap();
    let crumbs = last["breadcrumbs"]["values"].as_array().unwrap();
    let messages: Vec<&str> = crumbs
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["BackOff: crash 2", "BackOff: crash 3", "BackOff: crash 4"]
    );
    assert!(crumbs.iter().all(|c| c["level"] == "warning"));
    agent.stop().await;
}

/// Stored history is only remembered: starting over it costs no owner request, and the
/// first report of a workload still carries it (its own pod's, ReplicaSet's and
/// Deployment's events), gathered when that report resolves the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_costs_no_owner_lookups_and_still_becomes_breadcrumbs() {
    let world = World::new().await;
    let s = &world.server;
    let web = deployment_chain(s, "shop", "web", 2);
    let other = deployment_chain(s, "shop", "other", 1);
    let pod = &web.pods[0];
    let t0 = Utc::now() - Duration::minutes(10);
    let at = |m: i64| t0 + Duration::minutes(m);
    s.create(
        EventFixture::normal("shop", "web.1", "ScalingReplicaSet", "Scaled up")
            .about("Deployment", "web")
            .involved_uid(uid(&web.deployment))
            .timestamps(at(0), at(0))
            .build(),
    )
    .unwrap();
    s.create(
        EventFixture::normal("shop", "rs.1", "SuccessfulCreate", "Created pod")
            .about("ReplicaSet", name(&web.replicaset))
            .involved_uid(uid(&web.replicaset))
            .timestamps(at(1), at(1))
            .build(),
    )
    .unwrap();
    s.create(
        pod_event(pod, "1", "Normal", "Started", "Started container app")
            .timestamps(at(2), at(2))
            .build(),
    )
    .unwrap();
    // Stored Warnings are history too (historical replay is off).
    s.create(
        pod_event(pod, "2", "Warning", "BackOff", "Back-off restarting")
            .timestamps(at(3), at(3))
            .build(),
    )
    .unwrap();
    s.create(
        pod_event(&other.pods[0], "1", "Warning", "BackOff", "other crashing")
            .timestamps(at(3), at(3))
            .build(),
    )
    .unwrap();
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "shop")])
        .await;
    world.sentinel("shop", "s0").await;
    let metrics = agent.metrics.clone();
    assert_eq!(
        metrics.owner_lookups.get(LookupOutcome::Fetched),
        0,
        "no owner fetched for history"
    );
    s.create(
        pod_event(pod, "3", "Warning", "Unhealthy", "Readiness probe failed")
            .timestamps(at(5), at(5))
            .build(),
    )
    .unwrap();
    world.sentinel("shop", "s1").await;
    let event = world
        .reported()
        .into_iter()
        .find(|e| e["tags"]["reason"] == "Unhealthy")
        .expect("the report");
    assert_eq!(
        event["tags"]["deployment_name"], "web",
        "grouped by workload"
    );
    let messages: Vec<&str> = event["breadcrumbs"]["values"]
        .as_array()
        .expect("breadcrumbs")
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "ScalingReplicaSet: Scaled up",
            "SuccessfulCreate: Created pod",
            "Started: Started container app",
            "BackOff: Back-off restarting",
        ]
    );
    assert!(
        metrics.owner_lookups.get(LookupOutcome::Fetched) >= 3,
        "the report's chain was resolved"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bounds_hold_under_ten_thousand_objects() {
    let world = World::new().await;
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "load"),
            ("SENTRY_K8S_OWNER_CACHE_SIZE", "500"),
            ("SENTRY_K8S_BREADCRUMB_WORKLOADS", "200"),
            ("SENTRY_K8S_BREADCRUMBS_PER_WORKLOAD", "5"),
            ("SENTRY_K8S_LOOKUP_CONCURRENCY", "32"),
            ("SENTRY_K8S_DRY_RUN", "1"),
        ])
        .await;
    // 10,000 pods (gone by now: each lookup is a 404) with a Warning each (reported, so
    // looked up), and 6 Normal ones on one pod.
    let events: Vec<Value> = (0..10_000)
        .map(|i| {
            EventFixture::new(
                "Warning",
                "load",
                &format!("pod-{i}.e"),
                "FailedMount",
                "MountVolume.SetUp failed",
            )
            .about("Pod", &format!("pod-{i}"))
            .build()
        })
        .chain((0..6).map(|i| {
            EventFixture::normal("load", &format!("busy.{i}"), "Pulled", "again")
                .about("Pod", "busy")
                .build()
        }))
        .collect();
    world.server.create_all(events).unwrap();
    let metrics = agent.metrics.clone();
    eventually("10,006 events through the pipeline", || {
        metrics.reported.get() >= 10_000 && metrics.filtered.get(Filtered::Normal) >= 6
    })
    .await;
    // The last of them is recorded once its chain is resolved; wait for it.
    eventually("the trail to settle", || {
        metrics.breadcrumb_evictions.get(CrumbEviction::Entries) >= 1
    })
    .await;
    assert!(
        metrics.owner_cache_entries.get() <= 500,
        "owner cache bound"
    );
    assert!(metrics.owner_cache_evictions.get() >= 9_000);
    assert!(
        metrics.breadcrumb_workloads.get() <= 200,
        "breadcrumb workloads bound"
    );
    assert!(metrics.breadcrumb_evictions.get(CrumbEviction::Workloads) >= 9_000);
    assert_eq!(
        metrics.breadcrumb_evictions.get(CrumbEviction::Entries),
        1,
        "6 entries for busy, 5 kept"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_dsns_route_by_pod_deployment_and_namespace_and_every_client_is_flushed() {
    let world = World::new().await;
    let pod_dsn = world.sink.add_project("11", "podkey");
    let deploy_dsn = world.sink.add_project("12", "deploykey");
    let ns_dsn = world.sink.add_project("13", "nskey");
    let s = &world.server;
    // Namespace "teamb" routes everything in it to project 13.
    s.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "teamb", "annotations": {"k8s.sentry.io/dsn": ns_dsn}}})).unwrap();
    let annotated = ObjectFixture::new("Deployment", "teama", "annotated")
        .annotation("k8s.sentry.io/dsn", &deploy_dsn)
        .create(s);
    let rs = ObjectFixture::new("ReplicaSet", "teama", "annotated-5f6")
        .owned_by(&annotated)
        .create(s);
    let deploy_pod = ObjectFixture::new("Pod", "teama", "annotated-5f6-a1")
        .owned_by(&rs)
        .create(s);
    let own_pod = ObjectFixture::new("Pod", "teama", "own-dsn")
        .annotation("k8s.sentry.io/dsn", &pod_dsn)
        .create(s);
    let plain_pod = ObjectFixture::new("Pod", "teama", "plain").create(s);
    let bad_pod = ObjectFixture::new("Pod", "teama", "bad-dsn")
        .annotation("k8s.sentry.io/dsn", "not a dsn")
        .create(s);
    let teamb_pod = ObjectFixture::new("Pod", "teamb", "worker").create(s);

    world.sink.delay(SinkDelay {
        millis: 30,
        count: None,
    });
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "teama,teamb"),
            ("SENTRY_K8S_CUSTOM_DSNS", "1"),
        ])
        .await;
    for (i, pod) in [
        &deploy_pod,
        &own_pod,
        &plain_pod,
        &bad_pod,
        &bad_pod,
        &teamb_pod,
    ]
    .into_iter()
    .enumerate()
    {
        world
            .server
            .create(pod_event(pod, &format!("{i}"), "Warning", "BackOff", "crash").build())
            .unwrap();
    }
    let metrics = agent.metrics.clone();
    eventually("6 events handed over", || metrics.reported.get() >= 6).await;
    // Stopping flushes every client (main and per-object), queued behind a slow Sentry.
    let stopped = agent.stop().await;
    assert_eq!(stopped.unsent, 0);
    let projects = |pod: &Value| -> Vec<String> {
        world
            .sink
            .events()
            .into_iter()
            .filter(|e| e.event["tags"]["pod_name"] == name(pod))
            .map(|e| e.project)
            .collect()
    };
    assert_eq!(projects(&own_pod), ["11"]);
    assert_eq!(projects(&deploy_pod), ["12"]);
    assert_eq!(projects(&teamb_pod), ["13"]);
    assert_eq!(projects(&plain_pod), ["1"]);
    assert_eq!(
        projects(&bad_pod),
        ["1", "1"],
        "an invalid annotation falls back to the main DSN"
    );
    assert_eq!(metrics.custom_dsn.get(RouteOutcome::Invalid), 2);
    assert_eq!(metrics.custom_dsn.get(RouteOutcome::Routed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_without_the_controller_flag_still_groups_and_routes() {
    let world = World::new().await;
    let dsn = world.sink.add_project("41", "ownerkey");
    let s = &world.server;
    let deployment = ObjectFixture::new("Deployment", "default", "legacy")
        .annotation("k8s.sentry.io/dsn", &dsn)
        .create(s);
    let replicaset = ObjectFixture::new("ReplicaSet", "default", "legacy-5f6")
        .owned_by(&deployment)
        .create(s);
    // An ownerReference an old controller wrote without `controller: true`.
    let mut pod = ObjectFixture::new("Pod", "default", "legacy-5f6-a1").build();
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy-5f6",
        "uid": replicaset["metadata"]["uid"],
    }]);
    let pod = s.create(pod).unwrap();
    let agent = world.start(&[("SENTRY_K8S_CUSTOM_DSNS", "1")]).await;
    s.create(pod_event(&pod, "1", "Warning", "BackOff", "crash").build())
        .unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    assert_eq!(events[0].project, "41", "the owner's DSN");
    let tags = &events[0].event["tags"];
    assert_eq!(tags["root_kind"], "Deployment");
    assert_eq!(tags["deployment_name"], "legacy");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_comes_from_the_pod_spec_when_the_event_names_no_host() {
    let world = World::new().await;
    let web = deployment_chain(&world.server, "default", "web", 1);
    let pod = &web.pods[0];
    let agent = world.start(&[]).await;
    let requests = world.server.requests(0).len();
    // A controller's event: no source host.
    world
        .server
        .create(
            pod_event(pod, "1", "Warning", "FailedMount", "cannot mount")
                .source("attachdetach-controller", None)
                .build(),
        )
        .unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    assert_eq!(events[0].event["tags"]["node_name"], "node-1");
    let gets: Vec<String> = world
        .server
        .requests(requests as u64)
        .into_iter()
        .filter(|r| r.method == "GET" && !r.watch && r.path.ends_with(name(pod)))
        .map(|r| r.accept)
        .collect();
    assert!(
        gets.iter()
            .all(|accept| accept.contains("PartialObjectMetadata")),
        "no full pod read for the node: {gets:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_cluster_the_metadata_and_their_cronjobs_monitor() {
    let world = World::new().await;
    let s = &world.server;
    let cronjob = ObjectFixture::new("CronJob", "default", "report.v2")
        .label("team", "data")
        .set(
            &["spec"],
            json!({"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {}}}}),
        )
        .create(s);
    let job = ObjectFixture::new("Job", "default", "report-v2-1")
        .owned_by(&cronjob)
        .create(s);
    let pod = ObjectFixture::new("Pod", "default", "report-v2-1-x")
        .label("app", "report")
        .annotation(
            "kubectl.kubernetes.io/last-applied-configuration",
            "{\"big\": true}",
        )
        .owned_by(&job)
        .create(s);
    let agent = world.start(&[("SENTRY_K8S_MONITOR_CRONJOBS", "1")]).await;
    s.create(pod_event(&pod, "1", "Warning", "BackOff", "crash").build())
        .unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let contexts = &events[0].event["contexts"];
    assert_eq!(contexts["monitor"]["slug"], "reportv2");
    assert_eq!(contexts["involved_object"]["labels"]["app"], "report");
    assert!(
        contexts["involved_object"].get("annotations").is_none(),
        "last-applied-configuration is never sent"
    );
    assert_eq!(contexts["owners"]["chain"][2]["labels"]["team"], "data");
    assert!(
        contexts["kubernetes"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with('v')
    );
    assert!(
        contexts["kubernetes"]["api_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_about_an_object_without_a_kind_is_tagged_object_name() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let mut event = EventFixture::warning("default", "mystery.1", "Odd", "no kind").build();
    event["involvedObject"] = json!({"name": "mystery"});
    world.server.create(event).unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    assert_eq!(events[0].event["tags"]["object_name"], "mystery");
    agent.stop().await;
}
