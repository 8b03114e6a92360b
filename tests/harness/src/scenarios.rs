//! Realistic failures, as a cluster writes them: workloads with owner chains, the Normal
//! and Warning events their controllers, the scheduler, the kubelet and the node problem
//! detector emit (messages copied from real clusters), and the status and last output the
//! kubelet keeps of containers that crashed.
//!
//! Used by the agent's tests, the demo (`fake-apiserver --scenario demo`) and the
//! end-to-end run.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::ApiError;
use crate::apiserver::ObjectStore;
use crate::fixtures::{
    ContainerStatusFixture, DeploymentChain, EventFixture, ObjectFixture, deployment_chain,
    deployment_chain_with,
};

/// An entry of the catalog, by id, with the objects it is about already created: a
/// Warning event, or a Pod whose container crashed (`event` is then the Pod; its `kind`
/// tells them apart).
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: &'static str,
    pub event: Value,
}

impl Entry {
    /// A pod with a crashed container, rather than an event.
    pub fn is_crash(&self) -> bool {
        self.event["kind"] == "Pod"
    }
}

/// What the checkout service wrote before it crashed (a Go nil dereference; its database
/// URL carries a password, as such lines do).
const CHECKOUT_OUTPUT: &str = "time=2026-11-21T06:04:51Z level=INFO msg=\"starting checkout\" version=2.8.1
time=2026-11-21T06:04:51Z level=INFO msg=\"connecting\" db=postgres://checkout:s3cr3t-pw@orders-db.shop:5432/orders
time=2026-11-21T06:04:52Z level=INFO msg=\"catalog loaded\" products=1204
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6c1d2e]

goroutine 1 [running]:
shop/checkout/cart.(*Cart).Total(0x0)
\t/src/cart/cart.go:88 +0x2e
main.main()
\t/src/main.go:41 +0x1b4
";

/// What Elasticsearch wrote before the kernel killed it.
const SEARCH_OUTPUT: &str = "[2026-11-21T06:03:12,301][INFO ][o.e.n.Node               ] [search-0] started {search-0}{kX2bq}{10.244.2.17}
[2026-11-21T06:04:40,977][WARN ][o.e.m.j.JvmGcMonitorService] [search-0] [gc][88] overhead, spent [4.1s] collecting in the last [4.3s]
[2026-11-21T06:04:55,512][WARN ][o.e.i.b.HierarchyCircuitBreakerService] [search-0] attempting to trigger G1GC due to high heap usage [2063597568]
[2026-11-21T06:05:02,118][INFO ][o.e.i.b.HierarchyCircuitBreakerService] [search-0] GC did not bring memory usage down, before [2063597568], after [2071012352]
[2026-11-21T06:05:09,730][ERROR][o.e.b.ElasticsearchUncaughtExceptionHandler] [search-0] fatal error in thread [elasticsearch[search-0][write][T#3]], exiting
java.lang.OutOfMemoryError: Java heap space
";

/// What the nightly report job wrote before it failed.
const REPORT_OUTPUT: &str = "Generating the nightly report for 2026-11-20
GET https://api.shop.internal/v1/orders?since=2026-11-20&token=tk_live_8f2b9c41d7
Traceback (most recent call last):
  File \"/app/report.py\", line 42, in <module>
    main()
  File \"/app/report.py\", line 37, in main
    render(orders)
KeyError: 'currency'
";

/// A container that crashed `restarts + 1` times and waits to restart, with what its last
/// instance wrote stored for `pods/{name}/log`.
fn crashed(
    server: &impl ObjectStore,
    container: &str,
    image: &str,
    exit_code: i64,
    reason: &str,
    restarts: i64,
    output: &str,
) -> Value {
    let status = ContainerStatusFixture::new(container, image)
        .restarts(restarts)
        .crashed(exit_code, reason, Utc::now() - Duration::seconds(70));
    if let Some(id) = status.previous_container_id() {
        server.set_container_log(&id, output);
    }
    status.build()
}

fn event_name(object: &str, n: u64) -> String {
    format!("{object}.{:016x}", 0x1870_0000_0000_0000u64 + n)
}

fn uid_of(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// An event about a pod, with the pod's uid and node.
fn about_pod(pod: &Value, n: u64, kind: &str, reason: &str, message: &str) -> EventFixture {
    let name = name_of(pod);
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or("node-1")
        .to_string();
    EventFixture::new(kind, ns, &event_name(&name, n), reason, message)
        .about("Pod", &name)
        .involved_uid(&uid_of(pod))
        .source("kubelet", Some(&node))
}

/// The Normal events of a pod starting, then its container crash-looping.
fn crash_loop(pod: &Value, n: u64, container: &str, image: &str) -> Vec<Value> {
    let name = name_of(pod);
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or("node-1")
        .to_string();
    let uid = uid_of(pod);
    let t0 = Utc::now() - Duration::minutes(6);
    let at = |s: i64| t0 + Duration::seconds(s);
    vec![
        EventFixture::normal(&ns, &event_name(&name, n), "Scheduled", &format!("Successfully assigned {ns}/{name} to {node}"))
            .about("Pod", &name)
            .involved_uid(&uid)
            .new_style("default-scheduler", &format!("default-scheduler-{node}"), "Binding", at(0))
            .build(),
        about_pod(pod, n + 1, "Normal", "Pulling", &format!("Pulling image \"{image}\""))
            .container(container)
            .timestamps(at(1), at(1))
            .build(),
        about_pod(pod, n + 2, "Normal", "Pulled", &format!("Successfully pulled image \"{image}\" in 1.203s (1.203s including waiting). Image size: 48213412 bytes."))
            .container(container)
            .timestamps(at(2), at(2))
            .build(),
        about_pod(pod, n + 3, "Normal", "Created", &format!("Created container: {container}"))
            .container(container)
            .timestamps(at(3), at(40))
            .count(4)
            .build(),
        about_pod(pod, n + 4, "Normal", "Started", &format!("Started container {container}"))
            .container(container)
            .timestamps(at(3), at(40))
            .count(4)
            .build(),
        about_pod(
            pod,
            n + 5,
            "Warning",
            "BackOff",
            &format!("Back-off restarting failed container {container} in pod {name}_{ns}({uid})"),
        )
        .container(container)
        .timestamps(at(10), at(300))
        .count(12)
        .build(),
    ]
}

/// Everything the demo shows, created on `server`; returns the Warning events by id.
///
/// - a crash-looping 3-replica Deployment (`shop/checkout`), each pod's crash and last output
/// - an image that cannot be pulled (`shop/payments`)
/// - an OOM-killed container (`shop/search`, a StatefulSet, its crash and last output) and
///   a node OOM (`node-2`)
/// - an unschedulable pod (`shop/recommender`)
/// - a failed volume mount (`shop/reports`, a StatefulSet)
/// - a failing Job of a CronJob (`batch/nightly-report`), its pod's crash and last output
pub fn demo(server: &impl ObjectStore) -> Result<Vec<Entry>, ApiError> {
    let mut entries = Vec::new();
    let mut all: Vec<Value> = Vec::new();

    // A Deployment whose 3 pods crash-loop.
    let image = "registry.example.com/shop/checkout:2.8.1";
    let checkout = deployment_chain_with(server, "shop", "checkout", 3, |_, pod| {
        let app = crashed(server, "app", image, 2, "Error", 3, CHECKOUT_OUTPUT);
        pod.containers(&[("app", image)]).status("Running", &[app])
    });
    for (i, pod) in checkout.pods.iter().enumerate() {
        entries.push(Entry {
            id: ["checkout-crash-0", "checkout-crash-1", "checkout-crash-2"][i],
            event: pod.clone(),
        });
    }
    all.push(
        EventFixture::normal(
            "shop",
            &event_name("checkout", 1),
            "ScalingReplicaSet",
            &format!(
                "Scaled up replica set {} from 0 to 3",
                name_of(&checkout.replicaset)
            ),
        )
        .about("Deployment", "checkout")
        .involved_uid(&uid_of(&checkout.deployment))
        .source("deployment-controller", None)
        .build(),
    );
    for (i, pod) in checkout.pods.iter().enumerate() {
        all.push(
            EventFixture::normal(
                "shop",
                &event_name(&name_of(&checkout.replicaset), 10 + i as u64),
                "SuccessfulCreate",
                &format!("Created pod: {}", name_of(pod)),
            )
            .about("ReplicaSet", &name_of(&checkout.replicaset))
            .involved_uid(&uid_of(&checkout.replicaset))
            .source("replicaset-controller", None)
            .build(),
        );
        let events = crash_loop(pod, 100 + 10 * i as u64, "app", image);
        entries.push(Entry {
            id: [
                "checkout-backoff-0",
                "checkout-backoff-1",
                "checkout-backoff-2",
            ][i],
            event: events
                .last()
                .cloned()
                .expect("crash_loop ends with BackOff"),
        });
        all.extend(events);
    }

    // An image that cannot be pulled.
    let payments = deployment_chain(server, "shop", "payments", 1);
    let pod = &payments.pods[0];
    let image = "registry.example.com/shop/payments:1.4.2";
    let failed = about_pod(pod, 200, "Warning", "Failed", &format!("Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"))
        .container("api")
        .count(4)
        .build();
    let pull_backoff = about_pod(
        pod,
        201,
        "Normal",
        "BackOff",
        &format!("Back-off pulling image \"{image}\""),
    )
    .container("api")
    .count(9)
    .build();
    entries.push(Entry {
        id: "payments-image-pull",
        event: failed.clone(),
    });
    all.extend([failed, pull_backoff]);

    // An OOM-killed container (StatefulSet), and the node's view of it.
    let search_sts = ObjectFixture::new("StatefulSet", "shop", "search")
        .label("app", "search")
        .create(server);
    let es_image = "docker.elastic.co/elasticsearch/elasticsearch:8.15.3";
    let es = crashed(
        server,
        "elasticsearch",
        es_image,
        137,
        "OOMKilled",
        2,
        SEARCH_OUTPUT,
    );
    let search = ObjectFixture::new("Pod", "shop", "search-0")
        .owned_by(&search_sts)
        .node("node-2")
        .containers(&[("elasticsearch", es_image)])
        .status("Running", &[es])
        .create(server);
    entries.push(Entry {
        id: "search-oom-killed",
        event: search.clone(),
    });
    let oom_backoff = about_pod(
        &search,
        300,
        "Warning",
        "BackOff",
        &format!(
            "Back-off restarting failed container elasticsearch in pod search-0_shop({})",
            uid_of(&search)
        ),
    )
    .container("elasticsearch")
    .count(3)
    .build();
    entries.push(Entry {
        id: "search-oom-backoff",
        event: oom_backoff.clone(),
    });
    all.push(oom_backoff);
    let node_oom = EventFixture::warning("default", &event_name("node-2", 301), "OOMKilling", "Memory cgroup out of memory: Killed process 4242 (java) total-vm:4194304kB, anon-rss:2097152kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:4400kB oom_score_adj:985")
        .about_cluster_object("Node", "node-2")
        .source("kernel-monitor", Some("node-2"))
        .build();
    entries.push(Entry {
        id: "node-2-oom-killing",
        event: node_oom.clone(),
    });
    all.push(node_oom);
    let system_oom = EventFixture::warning(
        "default",
        &event_name("node-2", 302),
        "SystemOOM",
        "System OOM encountered, victim process: java, pid: 4242",
    )
    .about_cluster_object("Node", "node-2")
    .source("kubelet", Some("node-2"))
    .build();
    entries.push(Entry {
        id: "node-2-system-oom",
        event: system_oom.clone(),
    });
    all.push(system_oom);

    // An unschedulable pod (the scheduler writes new-style events with a series).
    let recommender = deployment_chain(server, "shop", "recommender", 1);
    let pod = &recommender.pods[0];
    let now = Utc::now();
    let unschedulable = EventFixture::warning("shop", &event_name(&name_of(pod), 400), "FailedScheduling", "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.")
        .about("Pod", &name_of(pod))
        .involved_uid(&uid_of(pod))
        .new_style("default-scheduler", "default-scheduler-control-plane-1", "Scheduling", now - Duration::minutes(20))
        .series(14, now - Duration::seconds(30))
        .build();
    entries.push(Entry {
        id: "recommender-unschedulable",
        event: unschedulable.clone(),
    });
    all.push(unschedulable);

    // A failed volume mount.
    let reports_sts = ObjectFixture::new("StatefulSet", "shop", "reports").create(server);
    let reports = ObjectFixture::new("Pod", "shop", "reports-0")
        .owned_by(&reports_sts)
        .node("node-3")
        .create(server);
    let mount = about_pod(
        &reports,
        500,
        "Warning",
        "FailedMount",
        "MountVolume.SetUp failed for volume \"config\" : configmap \"reports-config\" not found",
    )
    .count(7)
    .build();
    entries.push(Entry {
        id: "reports-failed-mount",
        event: mount.clone(),
    });
    all.push(mount);

    // A CronJob whose Job fails.
    let cronjob = ObjectFixture::new("CronJob", "batch", "nightly-report")
        .set(&["spec", "schedule"], json!("0 2 * * *"))
        .create(server);
    let job = ObjectFixture::new("Job", "batch", "nightly-report-29160000")
        .owned_by(&cronjob)
        .create(server);
    let report_image = "registry.example.com/batch/reports:5.0.2";
    let report = crashed(server, "report", report_image, 1, "Error", 4, REPORT_OUTPUT);
    let job_pod = ObjectFixture::new("Pod", "batch", "nightly-report-29160000-7xk2p")
        .owned_by(&job)
        .node("node-1")
        .containers(&[("report", report_image)])
        .status("Running", &[report])
        .create(server);
    entries.push(Entry {
        id: "nightly-report-crash",
        event: job_pod.clone(),
    });
    all.push(
        EventFixture::normal(
            "batch",
            &event_name("nightly-report", 600),
            "SuccessfulCreate",
            "Created job nightly-report-29160000",
        )
        .about("CronJob", "nightly-report")
        .involved_uid(&uid_of(&cronjob))
        .source("cronjob-controller", None)
        .build(),
    );
    let pod_backoff = about_pod(&job_pod, 601, "Warning", "BackOff", &format!("Back-off restarting failed container report in pod nightly-report-29160000-7xk2p_batch({})", uid_of(&job_pod)))
        .container("report")
        .count(5)
        .build();
    let job_failed = EventFixture::warning(
        "batch",
        &event_name("nightly-report-29160000", 602),
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    .about("Job", "nightly-report-29160000")
    .involved_uid(&uid_of(&job))
    .source("job-controller", None)
    .build();
    entries.push(Entry {
        id: "nightly-report-pod-backoff",
        event: pod_backoff.clone(),
    });
    entries.push(Entry {
        id: "nightly-report-job-failed",
        event: job_failed.clone(),
    });
    all.extend([pod_backoff, job_failed]);

    server.create_all(all)?;
    Ok(entries)
}

/// The other Warning reasons of the notes, each about a plausible object, created on
/// `server` (objects first). Returns them by id.
pub fn more_reasons(server: &impl ObjectStore) -> Result<Vec<Entry>, ApiError> {
    let web: DeploymentChain = deployment_chain(server, "web", "frontend", 2);
    let pod = &web.pods[0];
    let ds = ObjectFixture::new("DaemonSet", "kube-system", "node-exporter").create(server);
    let ds_pod = ObjectFixture::new("Pod", "kube-system", "node-exporter-m4k2x")
        .owned_by(&ds)
        .node("node-3")
        .create(server);
    let mut entries = vec![
        Entry {
            id: "readiness-probe",
            event: about_pod(pod, 700, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503").container("nginx").count(23).build(),
        },
        Entry {
            id: "liveness-probe",
            event: about_pod(&ds_pod, 701, "Warning", "Unhealthy", "Liveness probe failed: Get \"http://10.244.3.17:9100/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)").container("node-exporter").build(),
        },
        Entry {
            id: "evicted",
            event: about_pod(pod, 702, "Warning", "Evicted", "The node was low on resource: memory. Threshold quantity: 100Mi, available: 88Mi. Container nginx was using 1245Mi, request is 512Mi, has larger consumption of memory.").build(),
        },
        Entry {
            id: "sandbox",
            event: about_pod(pod, 703, "Warning", "FailedCreatePodSandBox", "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"5f2c9e1a\": plugin type=\"calico\" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized").build(),
        },
        Entry {
            id: "network-not-ready",
            event: about_pod(pod, 704, "Warning", "NetworkNotReady", "network is not ready: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized").build(),
        },
        Entry {
            id: "kill-pod",
            event: about_pod(pod, 705, "Warning", "FailedKillPod", "error killing pod: failed to \"KillPodSandbox\" for \"6d1f0f3c-8a1e-4c52-9f0e-1b2c3d4e5f60\" with KillPodSandboxError: \"rpc error: code = Unknown desc = networkPlugin cni failed to teardown pod\"").build(),
        },
        Entry {
            id: "lifecycle-hook",
            event: about_pod(pod, 706, "Warning", "FailedPreStopHook", &format!("Exec lifecycle hook ([/bin/sh -c nginx -s quit; sleep 5]) for Container \"nginx\" in Pod \"{}_web({})\" failed - error: command '/bin/sh -c nginx -s quit; sleep 5' exited with 137: , message: \"\"", name_of(pod), uid_of(pod))).container("nginx").build(),
        },
        Entry {
            id: "replicaset-quota",
            event: EventFixture::warning("web", &event_name(&name_of(&web.replicaset), 707), "FailedCreate", &format!("Error creating: pods \"{}-\" is forbidden: exceeded quota: compute-quota, requested: limits.memory=512Mi, used: limits.memory=2Gi, limited: limits.memory=2Gi", name_of(&web.replicaset)))
                .about("ReplicaSet", &name_of(&web.replicaset))
                .involved_uid(&uid_of(&web.replicaset))
                .source("replicaset-controller", None)
                .build(),
        },
        Entry {
            id: "pvc-provisioning",
            event: EventFixture::warning("web", &event_name("data-frontend-0", 708), "ProvisioningFailed", "storageclass.storage.k8s.io \"fast-ssd\" not found")
                .about("PersistentVolumeClaim", "data-frontend-0")
                .source("persistentvolume-controller", None)
                .build(),
        },
        Entry {
            id: "attach-volume",
            event: EventFixture::warning("web", &event_name(&name_of(pod), 709), "FailedAttachVolume", "AttachVolume.Attach failed for volume \"pvc-5e4d3c2b\" : rpc error: code = Internal desc = Could not attach volume \"vol-0abc123\" to node \"i-0def456\": VolumeInUse")
                .about("Pod", &name_of(pod))
                .involved_uid(&uid_of(pod))
                .source("attachdetach-controller", None)
                .build(),
        },
        Entry {
            id: "hpa-metrics",
            event: EventFixture::warning("web", &event_name("frontend", 710), "FailedComputeMetricsReplicas", "invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API")
                .about("HorizontalPodAutoscaler", "frontend")
                .source("horizontal-pod-autoscaler", None)
                .build(),
        },
        Entry {
            id: "hpa-scale",
            event: EventFixture::warning("web", &event_name("frontend", 711), "FailedGetScale", "deployments/scale.apps \"frontend-v2\" not found")
                .about("HorizontalPodAutoscaler", "frontend")
                .source("horizontal-pod-autoscaler", None)
                .build(),
        },
    ];
    let aggregated = about_pod(pod, 712, "Warning", "FailedMount", "(combined from similar events): MountVolume.SetUp failed for volume \"tls\" : secret \"frontend-tls\" not found").count(31).build();
    entries.push(Entry {
        id: "combined",
        event: aggregated,
    });
    server.create_all(entries.iter().map(|e| e.event.clone()).collect())?;
    Ok(entries)
}

/// A scenario by name, for the binary and the control API: `demo` or `more-reasons`.
pub fn by_name(name: &str, server: &impl ObjectStore) -> Result<Vec<Entry>, String> {
    match name {
        "demo" => demo(server).map_err(|e| e.to_string()),
        "more-reasons" => more_reasons(server).map_err(|e| e.to_string()),
        other => Err(format!("no scenario {other:?}; known: demo, more-reasons")),
    }
}
