//! A crash report's last log lines (`SENTRY_K8S_CONTAINER_LOGS`): read from the instance
//! that ended, scrubbed, bounded; a read that fails leaves the report without them and is
//! counted; with the default (0) no log is ever read.

use chrono::{Duration, Utc};
use harness::fixtures::{ContainerStatusFixture, ObjectFixture};
use harness::{DelayRule, DenyRule, FailRule};
use sentry_kubernetes::logs::{LogOutcome, READ_TIMEOUT};
use serde_json::{Value, json};

use crate::common::{DEADLINE, World, eventually};
use crate::pods::{crashes, kubelet_writes, pod_sentinel};

const OUTPUT: &str = "starting search-0\n\
    loading index shop-products\n\
    connecting to https://elastic:changeme@es-0.search:9200\n\
    heap 3.9g of 4g used\n\
    java.lang.OutOfMemoryError: Java heap space\n";

/// A StatefulSet's pod whose container was OOM-killed, with what the dead instance wrote.
fn oom_killed(world: &World) -> ContainerStatusFixture {
    let sts = ObjectFixture::new("StatefulSet", "default", "search").create(&world.server);
    let es = ContainerStatusFixture::new("elasticsearch", "elasticsearch:8.15")
        .crashed(137, "OOMKilled", Utc::now() - Duration::seconds(3))
        .restarts(4);
    ObjectFixture::new("Pod", "default", "search-0")
        .owned_by(&sts)
        .containers(&[("elasticsearch", "elasticsearch:8.15")])
        .create(&world.server);
    world
        .server
        .set_container_log(&es.previous_container_id().unwrap(), OUTPUT);
    es
}

fn log_requests(world: &World) -> Vec<String> {
    world
        .server
        .requests(0)
        .into_iter()
        .filter(|r| r.path.ends_with("/log"))
        .map(|r| r.query)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_report_carries_the_dead_instances_last_lines_scrubbed() {
    let world = World::new().await;
    let agent = world.start(&[("SENTRY_K8S_CONTAINER_LOGS", "3")]).await;
    let es = oom_killed(&world);
    kubelet_writes(&world, "default", "search-0", &[es.build()]).await;
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let [crash]: [Value; 1] = crashes(&world).try_into().unwrap();
    let log = &crash["contexts"]["container_log"];
    assert_eq!(
        log["lines"],
        json!([
            "connecting to https://[Filtered]@es-0.search:9200",
            "heap 3.9g of 4g used",
            "java.lang.OutOfMemoryError: Java heap space",
        ])
    );
    assert_eq!(log["instance"], "previous");
    assert_eq!(log["scrubbed"], 1);
    assert!(
        log["truncated"].is_null(),
        "the apiserver sent the tail; nothing was cut here"
    );
    assert_eq!(crash["tags"]["root_name"], "search");
    // The previous instance, its container, at most 3 lines and a bounded number of bytes.
    let [query]: [String; 1] = log_requests(&world).try_into().unwrap();
    // kube writes `log?&container=…`: the empty first parameter is its own.
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort();
    assert_eq!(
        params,
        [
            "container=elasticsearch",
            "limitBytes=12288",
            "previous=true",
            "tailLines=3"
        ]
    );
    assert_eq!(agent.metrics.container_logs.get(LogOutcome::Attached), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_ended_for_good_is_read_as_the_current_instance() {
    let world = World::new().await;
    let agent = world.start(&[("SENTRY_K8S_CONTAINER_LOGS", "50")]).await;
    let job = ContainerStatusFixture::new("report", "reports:2").terminated(2, "Error", Utc::now());
    world
        .server
        .set_container_log(&job.container_id(), "rendering\nERROR: template missing\n");
    ObjectFixture::new("Pod", "default", "report-x")
        .status("Failed", &[job.build()])
        .create(&world.server);
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let crash = &crashes(&world)[0];
    assert_eq!(
        crash["contexts"]["container_log"]["lines"],
        json!(["rendering", "ERROR: template missing"])
    );
    assert_eq!(crash["contexts"]["container_log"]["instance"], "current");
    assert!(crash["contexts"]["container_log"]["truncated"].is_null());
    assert!(!log_requests(&world)[0].contains("previous"));
    agent.stop().await;
}

/// A kubelet that never answers holds the report for the read timeout, no longer, and the
/// reports behind it are not held beyond that either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_read_that_hangs_is_abandoned_and_the_report_goes_without_it() {
    let world = World::new().await;
    world.server.delay(DelayRule {
        path: "/pods/search-0/log".into(),
        method: None,
        millis: 120_000,
        count: None,
    });
    let agent = world.start(&[("SENTRY_K8S_CONTAINER_LOGS", "20")]).await;
    let written = std::time::Instant::now();
    let es = oom_killed(&world);
    kubelet_writes(&world, "default", "search-0", &[es.clone().build()]).await;
    let error = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", Utc::now());
    ObjectFixture::new("Pod", "default", "web-1")
        .status("Running", &[error.build()])
        .create(&world.server);
    world.sink.wait_for_events(2, DEADLINE).await.unwrap();
    let waited = written.elapsed();
    let crashes = crashes(&world);
    let hung = crashes
        .iter()
        .find(|e| e["tags"]["pod_name"] == "search-0")
        .expect("the report whose lines never came");
    assert!(hung["contexts"]["container_log"].is_null());
    assert!(
        crashes.iter().any(|e| e["tags"]["pod_name"] == "web-1"),
        "the report behind it"
    );
    assert_eq!(agent.metrics.container_logs.get(LogOutcome::Error), 1);
    // Bounded by the read timeout (with room for a loaded machine), not by the kubelet.
    assert!(
        waited < READ_TIMEOUT * 5,
        "both reports took {waited:?}, the read timeout is {READ_TIMEOUT:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_that_cannot_be_read_leave_the_report_without_them_and_are_counted() {
    let world = World::new().await;
    world.server.deny(DenyRule {
        verb: "get".into(),
        resource: "pods/log".into(),
        group: Some(String::new()),
        namespace: None,
    });
    let agent = world.start(&[("SENTRY_K8S_CONTAINER_LOGS", "20")]).await;
    let es = oom_killed(&world);
    kubelet_writes(&world, "default", "search-0", &[es.clone().build()]).await;
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let crash = &crashes(&world)[0];
    assert!(crash["contexts"]["container_log"].is_null());
    assert_eq!(
        crash["tags"]["reason"], "OOMKilled",
        "reported all the same"
    );
    assert_eq!(agent.metrics.container_logs.get(LogOutcome::Forbidden), 1);
    world.server.clear_faults();

    // The kubelet no longer has the instance (the container restarted twice since).
    let gone = ContainerStatusFixture::new("app", "web:1")
        .crashed(1, "Error", Utc::now())
        .set(&["lastState", "terminated", "containerID"], json!(""));
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[gone.build()])
        .create(&world.server);
    // The kubelet cannot be reached.
    world.server.fail(FailRule {
        path: "/pods/web-1/log".into(),
        method: None,
        status: 500,
        count: 1,
        message: Some("dial tcp 10.0.0.7:10250: i/o timeout".into()),
        retry_after: None,
    });
    let error = ContainerStatusFixture::new("app", "web:1").crashed(1, "Error", Utc::now());
    ObjectFixture::new("Pod", "default", "web-1")
        .status("Running", &[error.build()])
        .create(&world.server);
    pod_sentinel(&world, "default", "sentinel").await;
    assert_eq!(crashes(&world).len(), 3);
    assert!(
        crashes(&world)
            .iter()
            .all(|e| e["contexts"]["container_log"].is_null())
    );
    let metrics = agent.metrics.clone();
    eventually("each failure counted by its kind", || {
        metrics.container_logs.get(LogOutcome::Unavailable) == 1
            && metrics.container_logs.get(LogOutcome::Error) == 1
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_no_log_is_ever_read() {
    let world = World::new().await;
    let agent = world.start(&[]).await;
    let es = oom_killed(&world);
    kubelet_writes(&world, "default", "search-0", &[es.build()]).await;
    world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    assert!(crashes(&world)[0]["contexts"]["container_log"].is_null());
    assert!(log_requests(&world).is_empty());
    agent.stop().await;
}
