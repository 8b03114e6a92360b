//! The GKE integration against a fake GCP metadata server: the cluster's tags and console
//! links on every event; a metadata server that fails at first is asked again, and one
//! that never answers costs the tags, not the reports.

use harness::fixtures::{EventFixture, deployment_chain};
use harness::metadata::{FakeMetadataServer, GceMetadata};

use crate::common::{DEADLINE, World};

fn gke_vars(host: &str) -> [(&'static str, String); 2] {
    [
        ("SENTRY_K8S_INTEGRATION_GKE_ENABLED", "1".into()),
        ("GCE_METADATA_HOST", host.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_tags_and_console_links_are_on_every_event() {
    let metadata = FakeMetadataServer::start(GceMetadata::default())
        .await
        .unwrap();
    // The first answers fail: the agent asks again.
    metadata.fail(503, 2);
    let world = World::new().await;
    let vars = gke_vars(&metadata.host());
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let agent = world.start(&vars).await;
    let web = deployment_chain(&world.server, "default", "web", 1);
    let pod = web.pods[0]["metadata"]["name"].as_str().unwrap();
    world
        .server
        .create(EventFixture::warning("default", &format!("{pod}.1"), "BackOff", "crash").build())
        .unwrap();
    world
        .server
        .create(
            EventFixture::warning("default", "node-1.1", "NodeNotReady", "not ready")
                .about_cluster_object("Node", "node-1")
                .build(),
        )
        .unwrap();
    let events = world.sink.wait_for_events(2, DEADLINE).await.unwrap();
    for e in &events {
        let e = &e.event;
        assert_eq!(e["tags"]["gke_cluster_name"], "prod-1");
        assert_eq!(e["tags"]["gke_cluster_location"], "europe-west1");
        assert_eq!(e["tags"]["gke_project_name"], "shop-prod");
        assert_eq!(
            e["tags"]["cluster"], "prod-1",
            "without SENTRY_K8S_CLUSTER_NAME, the GKE cluster names the cluster"
        );
        assert_eq!(
            e["contexts"]["gke"]["cluster_url"],
            "https://console.cloud.google.com/kubernetes/clusters/details/europe-west1/prod-1/details?project=shop-prod"
        );
    }
    let backoff = &events
        .iter()
        .find(|e| e.event["tags"]["reason"] == "BackOff")
        .unwrap()
        .event;
    let link = backoff["contexts"]["gke"]["pod_logs_url"].as_str().unwrap();
    assert!(
        link.contains(&format!("resource.labels.pod_name%3D%22{pod}%22"))
            && link.contains("resource.labels.namespace_name%3D%22default%22"),
        "{link}"
    );
    let node = &events
        .iter()
        .find(|e| e.event["tags"]["reason"] == "NodeNotReady")
        .unwrap()
        .event;
    assert!(
        node["contexts"]["gke"]["pod_logs_url"].is_null(),
        "no pod, no pod logs"
    );

    // Every request carried the header the real server insists on; two failed, then both
    // documents were read.
    let requests = metadata.requests();
    assert!(requests.iter().all(|r| r.flavor), "{requests:?}");
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200, 200]);
    assert_eq!(requests[2].path, "/computeMetadata/v1/instance/attributes/");
    assert_eq!(requests[3].path, "/computeMetadata/v1/project/");
    assert!(requests.iter().all(|r| r.query == "recursive=true"));
    assert_eq!(agent.metrics.gke_metadata_failures.get(), 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_server_that_never_answers_costs_the_tags_not_the_reports() {
    // Bound and released: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let world = World::new().await;
    let vars = gke_vars(&closed.to_string());
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let agent = world.start(&vars).await;
    world
        .server
        .create(EventFixture::warning("default", "web-1.1", "BackOff", "crash").build())
        .unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    assert!(events[0].event["tags"]["gke_cluster_name"].is_null());
    assert!(events[0].event["contexts"]["gke"].is_null());
    assert_eq!(agent.metrics.gke_metadata_failures.get(), 1);
    agent.stop().await;
}
