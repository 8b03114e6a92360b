//! Container crashes from pod status: what Kubernetes writes no Event for (an OOM kill, a
//! non-zero exit) is reported once per container instance, grouped with its workload's
//! events, never again after a relist, a reconnect or an unrelated pod update.

use chrono::{DateTime, Duration, Utc};
use harness::fixtures::{ContainerStatusFixture, EventFixture, ObjectFixture, deployment_chain};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use sentry_kubernetes::filter::Filtered;
use serde_json::{Value, json};

use crate::common::{DEADLINE, World, eventually};

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap()
}

/// What the kubelet does when a container's state changes: a PATCH of `pods/{name}/status`.
pub async fn kubelet_writes(world: &World, namespace: &str, pod: &str, statuses: &[Value]) {
    let pods: Api<Pod> = Api::namespaced(world.server.client(), namespace);
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "containerStatuses": statuses}})),
    )
    .await
    .unwrap();
}

/// A crash on the pod watch, waited for: every pod update before it has been handled (the
/// pod watch is its own stream, so an Event sentinel would prove nothing about it).
pub async fn pod_sentinel(world: &World, namespace: &str, pod: &str) {
    let before = world.sink.events().len();
    ObjectFixture::new("Pod", namespace, pod)
        .status(
            "Failed",
            &[ContainerStatusFixture::new("c", "busybox")
                .terminated(1, "Sentinel", Utc::now())
                .build()],
        )
        .create(&world.server);
    let sink = &world.sink;
    eventually(&format!("pod sentinel {pod}"), || {
        sink.events()[before..]
            .iter()
            .any(|e| e.event["tags"]["pod_name"] == pod && e.event["tags"]["reason"] == "Sentinel")
    })
    .await;
}

/// The crash reports the sink received (sentinels left out).
pub fn crashes(world: &World) -> Vec<Value> {
    world
        .reported()
        .into_iter()
        .filter(|e| e["tags"]["watcher_name"] == "pods")
        .collect()
}

fn seconds(event: &Value) -> f64 {
    event["timestamp"].as_f64().expect("a numeric timestamp")
}

fn at(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_container_is_reported_once_grouped_with_its_workload() {
    let world = World::new().await;
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "shop"),
            ("SENTRY_K8S_CLUSTER_NAME", "eu-1"),
        ])
        .await;
    let web = deployment_chain(&world.server, "shop", "web", 2);
    let (first, second) = (name(&web.pods[0]), name(&web.pods[1]));
    let killed = Utc::now() - Duration::seconds(5);
    let app = ContainerStatusFixture::new("app", "shop/web:2.1").crashed(137, "OOMKilled", killed);
    kubelet_writes(&world, "shop", first, &[app.clone().build()]).await;
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();

    let [e]: [Value; 1] = crashes(&world).try_into().unwrap();
    assert_eq!(
        e["message"],
        format!("{first}: OOMKilled: container \"app\" exited with code 137")
    );
    for (key, value) in [
        ("watcher_name", "pods"),
        ("reason", "OOMKilled"),
        ("kind", "Pod"),
        ("pod_name", first),
        ("container", "app"),
        ("container_name", "app"),
        ("exit_code", "137"),
        ("event_source_component", "x-pod-controller"),
        ("namespace", "shop"),
        ("replicaset_name", name(&web.replicaset)),
        ("deployment_name", "web"),
        ("root_kind", "Deployment"),
        ("root_name", "web"),
        ("node_name", "node-1"),
        ("cluster", "eu-1"),
    ] {
        assert_eq!(e["tags"][key], value, "tag {key}");
    }
    assert_eq!(e["tags"]["object_uid"], web.pods[0]["metadata"]["uid"]);
    assert_eq!(
        e["fingerprint"],
        json!([
            "eu-1",
            "shop",
            "Deployment",
            "web",
            "OOMKilled",
            "container:app"
        ])
    );
    assert_eq!(e["logger"], "kubernetes.pods");
    assert_eq!(seconds(&e), at(killed), "the time the container finished");
    let container = &e["contexts"]["container"];
    assert_eq!(container["exit_code"], 137);
    assert_eq!(container["instance"], "previous");
    assert_eq!(container["image"], "shop/web:2.1");
    assert_eq!(
        container["container_id"],
        app.previous_container_id().unwrap()
    );
    assert!(e["contexts"]["kubernetes_event"].is_null(), "not an Event");
    assert_eq!(
        e["contexts"]["involved_object"]["field_path"],
        "spec.containers{app}"
    );

    // The other pod of the Deployment crashing the same way: the same issue.
    let other =
        ContainerStatusFixture::new("app", "shop/web:2.1").crashed(137, "OOMKilled", Utc::now());
    kubelet_writes(&world, "shop", second, &[other.build()]).await;
    // The first pod's status changes without a new termination: nothing.
    kubelet_writes(
        &world,
        "shop",
        first,
        &[app.clone().waiting("ContainerCreating").build()],
    )
    .await;
    pod_sentinel(&world, "shop", "sentinel-1").await;
    let reported = crashes(&world);
    assert_eq!(reported.len(), 2, "{reported:#?}");
    assert_eq!(reported[1]["fingerprint"], e["fingerprint"]);
    assert_eq!(reported[1]["tags"]["pod_name"], second);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_reconnects_and_watch_restarts_resend_no_crash() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let web = deployment_chain(&world.server, "default", "web", 1);
    let pod = name(&web.pods[0]);
    let app = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", Utc::now());
    kubelet_writes(&world, "default", pod, &[app.clone().build()]).await;
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();

    // Watches closed: each resumes from its last resourceVersion.
    world.server.wait_for_watches(2, DEADLINE).await.unwrap();
    world.server.close_watches();
    world.server.wait_for_watches(2, DEADLINE).await.unwrap();
    // A partition long enough for compaction: 410, then every pod comes back in a relist.
    let relists = agent.metrics.relists.get();
    world.server.pause();
    world
        .server
        .patch(
            "v1",
            "Pod",
            "default",
            pod,
            &json!({"metadata": {"labels": {"seen": "again"}}}),
        )
        .unwrap();
    world.server.compact();
    world.server.resume();
    let metrics = agent.metrics.clone();
    eventually("both watches relisted", || {
        metrics.relists.get() >= relists + 2
    })
    .await;
    // Unrelated status updates of the same pod (readiness, a restart that keeps the
    // previous instance) are not new terminations either.
    kubelet_writes(
        &world,
        "default",
        pod,
        &[app.clone().restarted(Utc::now()).build()],
    )
    .await;
    pod_sentinel(&world, "default", "sentinel-1").await;
    assert_eq!(crashes(&world).len(), 1, "{:#?}", crashes(&world));
    assert!(agent.metrics.deduplicated.get() >= 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_is_one_report_and_each_restart_that_crashes_is_another() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    ObjectFixture::new("Pod", "default", "api-0")
        .containers(&[("api", "api:3")])
        .create(&world.server);
    let t1 = Utc::now() - Duration::seconds(60);
    // The instance ends (state.terminated, restart count 0), then the kubelet backs off
    // (lastState, same instance), then restarts it (restart count 1): one termination.
    let api = ContainerStatusFixture::new("api", "api:3");
    let ended = api.clone().terminated(2, "Error", t1);
    kubelet_writes(&world, "default", "api-0", &[ended.build()]).await;
    let backing_off = api.clone().crashed(2, "Error", t1);
    kubelet_writes(&world, "default", "api-0", &[backing_off.clone().build()]).await;
    let running = backing_off.restarted(t1 + Duration::seconds(10));
    kubelet_writes(&world, "default", "api-0", &[running.clone().build()]).await;
    pod_sentinel(&world, "default", "sentinel-1").await;
    let reported = crashes(&world);
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert_eq!(reported[0]["contexts"]["container"]["instance"], "current");

    // The restarted instance crashes too: a second report, restart count 1.
    let t2 = Utc::now();
    let again = running.crashed(2, "Error", t2);
    kubelet_writes(&world, "default", "api-0", &[again.build()]).await;
    pod_sentinel(&world, "default", "sentinel-2").await;
    let reported = crashes(&world);
    assert_eq!(reported.len(), 2, "{reported:#?}");
    assert_eq!(seconds(&reported[1]), at(t2));
    assert_eq!(reported[1]["contexts"]["container"]["restart_count"], 1);
    assert_ne!(reported[0]["event_id"], reported[1]["event_id"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_before_start_are_history_unless_replayed_and_old_ones_never_return() {
    let world = World::new().await;
    let crashed_at = Utc::now() - Duration::minutes(2);
    let before = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", crashed_at);
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[before.clone().build()])
        .create(&world.server);
    // A crash from before the event TTL: as old as an event Kubernetes has deleted.
    let long_ago = ContainerStatusFixture::new("app", "web:1").crashed(
        1,
        "Error",
        Utc::now() - Duration::hours(3),
    );
    ObjectFixture::new("Pod", "default", "web-old")
        .status("Running", &[long_ago.build()])
        .create(&world.server);

    let agent = world.start(&[]).await;
    pod_sentinel(&world, "default", "sentinel-1").await;
    assert!(crashes(&world).is_empty(), "history is not reported");
    assert_eq!(agent.metrics.filtered.get(Filtered::Historical), 2);
    // Its next crash is news.
    let next = before
        .restarted(Utc::now() - Duration::seconds(30))
        .crashed(1, "Error", Utc::now());
    kubelet_writes(&world, "default", "web-0", &[next.build()]).await;
    pod_sentinel(&world, "default", "sentinel-2").await;
    assert_eq!(crashes(&world).len(), 1);
    agent.stop().await;

    // A restart resumes from the checkpoint: historical replay resends nothing.
    let restart = World::with_server(world.server).await;
    let agent = restart.start(&[("SENTRY_K8S_WATCH_HISTORICAL", "1")]).await;
    pod_sentinel(&restart, "default", "sentinel-3").await;
    assert!(
        crashes(&restart).is_empty(),
        "nothing resent after a restart"
    );
    agent.stop().await;

    // Without a checkpoint, historical replay reports what the pods show, but not a
    // crash older than the event TTL.
    let replay = World::with_server(restart.server).await;
    let agent = replay
        .start(&[
            ("SENTRY_K8S_WATCH_HISTORICAL", "1"),
            ("SENTRY_K8S_CHECKPOINT", "0"),
        ])
        .await;
    pod_sentinel(&replay, "default", "sentinel-4").await;
    let replayed = crashes(&replay);
    let pods: Vec<&str> = replayed
        .iter()
        .map(|e| e["tags"]["pod_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        pods,
        ["web-0"],
        "replayed, but not the crash older than the event TTL"
    );
    assert_eq!(agent.metrics.filtered.get(Filtered::Expired), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_containers_and_pods_being_deleted_are_not_crashes() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let done = ContainerStatusFixture::new("job", "batch:1").terminated(0, "Completed", Utc::now());
    ObjectFixture::new("Pod", "default", "job-x")
        .status("Succeeded", &[done.build()])
        .create(&world.server);
    // A rollout: the kubelet stops the old pod's container (SIGTERM, exit 143).
    ObjectFixture::new("Pod", "default", "old-web").create(&world.server);
    world
        .server
        .patch(
            "v1",
            "Pod",
            "default",
            "old-web",
            &json!({"metadata": {"deletionTimestamp": Utc::now().to_rfc3339()}}),
        )
        .unwrap();
    let stopped = ContainerStatusFixture::new("web", "web:1").terminated(143, "Error", Utc::now());
    kubelet_writes(&world, "default", "old-web", &[stopped.build()]).await;
    world
        .server
        .delete("v1", "Pod", "default", "old-web")
        .unwrap();
    pod_sentinel(&world, "default", "sentinel").await;
    assert!(crashes(&world).is_empty(), "{:#?}", crashes(&world));
    assert_eq!(agent.metrics.filtered.get(Filtered::PodDeleting), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_and_ephemeral_container_crashes_name_their_container() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_WATCH_NAMESPACES", "batch")])
        .await;
    let cronjob = ObjectFixture::new("CronJob", "batch", "nightly").create(&world.server);
    let job = ObjectFixture::new("Job", "batch", "nightly-29160000")
        .owned_by(&cronjob)
        .create(&world.server);
    ObjectFixture::new("Pod", "batch", "nightly-29160000-x")
        .owned_by(&job)
        .create(&world.server);
    let migrate = ContainerStatusFixture::new("migrate", "flyway:10")
        .terminated(1, "Error", Utc::now())
        .set(
            &["state", "terminated", "message"],
            json!("ERROR: relation \"orders\" already exists"),
        )
        .build();
    let debug = ContainerStatusFixture::new("debugger", "busybox")
        .terminated(130, "Error", Utc::now())
        .build();
    let pods: Api<Pod> = Api::namespaced(world.server.client(), "batch");
    pods.patch_status(
        "nightly-29160000-x",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Failed",
            "initContainerStatuses": [migrate], "ephemeralContainerStatuses": [debug]}})),
    )
    .await
    .unwrap();
    world.sink.wait_for_events(2, DEADLINE).await.unwrap();
    let reported = crashes(&world);
    let paths: Vec<&str> = reported
        .iter()
        .map(|e| {
            e["contexts"]["involved_object"]["field_path"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "spec.initContainers{migrate}",
            "spec.ephemeralContainers{debugger}"
        ]
    );
    assert_eq!(
        reported[0]["message"], "nightly-29160000-x: ERROR: relation \"orders\" already exists",
        "the termination message, as the Go agent reports it"
    );
    assert_eq!(reported[0]["tags"]["cronjob_name"], "nightly");
    assert_eq!(reported[0]["tags"]["container"], "migrate");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_carries_the_workloads_breadcrumbs_and_becomes_one() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let web = deployment_chain(&world.server, "default", "web", 1);
    let pod = name(&web.pods[0]).to_string();
    let uid = web.pods[0]["metadata"]["uid"].as_str().unwrap().to_string();
    let t0 = Utc::now() - Duration::seconds(60);
    world
        .server
        .create(
            EventFixture::normal(
                "default",
                &format!("{pod}.1"),
                "Started",
                "Started container app",
            )
            .about("Pod", &pod)
            .involved_uid(&uid)
            .container("app")
            .timestamps(t0, t0)
            .build(),
        )
        .unwrap();
    world.sentinel("default", "s1").await;
    let crashed = t0 + Duration::seconds(30);
    let app = ContainerStatusFixture::new("app", "web:1")
        .crashed(1, "Error", crashed)
        .set(
            &["lastState", "terminated", "message"],
            json!("panic: db password=hunter2 rejected"),
        );
    kubelet_writes(&world, "default", &pod, &[app.build()]).await;
    world.sink.wait_for_events(2, DEADLINE).await.unwrap();
    let crash = &crashes(&world)[0];
    let crumbs: Vec<&str> = crash["breadcrumbs"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(
        crumbs.contains(&"Started: Started container app"),
        "{crumbs:?}"
    );
    assert_eq!(
        crash["message"],
        format!("{pod}: panic: db password=[Filtered] rejected"),
        "a termination message is scrubbed like log lines"
    );

    // The kubelet's BackOff after the crash carries the crash as a breadcrumb.
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                &format!("{pod}.2"),
                "BackOff",
                "Back-off restarting failed container app",
            )
            .about("Pod", &pod)
            .involved_uid(&uid)
            .container("app")
            .timestamps(
                crashed + Duration::seconds(5),
                crashed + Duration::seconds(5),
            )
            .build(),
        )
        .unwrap();
    world.sentinel("default", "s2").await;
    let backoff = world
        .reported()
        .into_iter()
        .find(|e| e["tags"]["reason"] == "BackOff")
        .unwrap();
    let crumbs: Vec<String> = backoff["breadcrumbs"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        crumbs.last().unwrap(),
        "Error: panic: db password=[Filtered] rejected",
        "{crumbs:?}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_to_crashes_and_the_pod_watch_can_be_turned_off() {
    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_FILTER_OUT_EVENT_REASONS", "OOMKilled")])
        .await;
    let oom = ContainerStatusFixture::new("app", "web:1").crashed(137, "OOMKilled", Utc::now());
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[oom.build()])
        .create(&world.server);
    pod_sentinel(&world, "default", "sentinel-1").await;
    assert!(crashes(&world).is_empty());
    assert_eq!(agent.metrics.filtered.get(Filtered::Reason), 1);
    agent.stop().await;

    let world = World::new().await;
    let agent = world
        .start(&[("SENTRY_K8S_FILTER_OUT_EVENT_SOURCES", "x-pod-controller")])
        .await;
    let error = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", Utc::now());
    ObjectFixture::new("Pod", "default", "web-1")
        .status("Running", &[error.build()])
        .create(&world.server);
    world.sentinel("default", "s").await;
    eventually("the crash filtered", || {
        agent.metrics.filtered.get(Filtered::Source) >= 1
    })
    .await;
    assert!(crashes(&world).is_empty());
    agent.stop().await;

    let world = World::new().await;
    let agent = world.start(&[("SENTRY_K8S_WATCH_PODS", "0")]).await;
    let paths: Vec<String> = world
        .server
        .open_watches()
        .into_iter()
        .map(|w| w.path)
        .collect();
    assert_eq!(paths, ["/api/v1/namespaces/default/events"]);
    assert_eq!(agent.metrics.watches_ready.get(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pods_keep_only_what_dedup_needs() {
    let world = World::new().await;
    // 10,000 pods with realistic specs, 100 of them with a crashed container, before the
    // start.
    let env: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": "x".repeat(40)}))
        .collect();
    let spec = json!({
        "nodeName": "node-1",
        "containers": [
            {"name": "app", "image": "registry.example.com/load/app:1.0", "env": env,
             "resources": {"limits": {"memory": "512Mi"}}},
            {"name": "proxy", "image": "envoy:1.30", "args": ["--config", "/etc/envoy.yaml"]},
        ],
        "volumes": [{"name": "config", "configMap": {"name": "load-config"}}],
    });
    let pods: Vec<Value> = (0..10_000)
        .map(|i| {
            let app = ContainerStatusFixture::new("app", "registry.example.com/load/app:1.0");
            let app = if i % 100 == 0 {
                app.crashed(1, "Error", Utc::now() - Duration::minutes(1))
            } else {
                app
            };
            ObjectFixture::new("Pod", "load", &format!("pod-{i}"))
                .label("app", "load")
                .set(&["spec"], spec.clone())
                .status(
                    "Running",
                    &[
                        app.build(),
                        ContainerStatusFixture::new("proxy", "envoy:1.30").build(),
                    ],
                )
                .build()
        })
        .collect();
    world.server.create_all(pods).unwrap();
    let agent = world
        .start(&[
            ("SENTRY_K8S_WATCH_NAMESPACES", "load"),
            ("SENTRY_K8S_DRY_RUN", "1"),
        ])
        .await;
    assert_eq!(agent.metrics.pods_received.get(), 10_000);
    assert_eq!(
        agent.metrics.dedup_entries.get(),
        100,
        "one entry per crashed container; nothing kept of the other 9,900 pods"
    );
    let pages = world
        .server
        .requests(0)
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/load/pods" && !r.watch)
        .count();
    assert_eq!(pages, 100, "listed 100 pods at a time");
    // Deleting the crashed pods forgets them.
    for i in (0..10_000).step_by(100) {
        world
            .server
            .delete("v1", "Pod", "load", &format!("pod-{i}"))
            .unwrap();
    }
    let metrics = agent.metrics.clone();
    eventually("forgotten", || metrics.dedup_entries.get() == 0).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_the_agent_is_stopped_is_reported_once_after_the_restart() {
    let world = World::new().await;
    let first = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", Utc::now());
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[first.clone().build()])
        .create(&world.server);
    let agent = world.start(&[]).await;
    pod_sentinel(&world, "default", "sentinel-1").await;
    assert!(crashes(&world).is_empty(), "history");
    agent.stop().await;
    // While stopped: the container restarts and crashes again.
    let again =
        first
            .restarted(Utc::now())
            .crashed(1, "OOMKilled", Utc::now() + Duration::seconds(1));
    kubelet_writes(&world, "default", "web-0", &[again.build()]).await;
    let restart = World::with_server(world.server).await;
    let agent = restart.start(&[]).await;
    pod_sentinel(&restart, "default", "sentinel-2").await;
    let reported = crashes(&restart);
    assert_eq!(reported.len(), 1, "{reported:#?}");
    assert_eq!(reported[0]["tags"]["reason"], "OOMKilled");
    assert_eq!(
        agent.metrics.occurrences_resumed.get(),
        1,
        "found by the resumed list"
    );
    agent.stop().await;
}
