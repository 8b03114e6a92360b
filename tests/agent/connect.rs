//! Reaching the cluster: in-cluster over TLS with a service-account token, a kubeconfig,
//! and `auto` choosing between them.

use sentry_kubernetes::source::{WatchErrorKind, WatchedResource};
use std::path::Path;

use crate::common::{DEADLINE, World, eventually};
use harness::fixtures::EventFixture;
use harness::{ApiServerOptions, FakeApiServer};
use sentry_kubernetes::config::Config;
use sentry_kubernetes::{Agent, Error};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2UifQ.service-account-token";

/// A TLS apiserver requiring a token, and a service-account directory for it.
async fn tls_world() -> (World, harness::tempdir::TempDir) {
    let sa = harness::tempdir::tempdir().unwrap();
    let options = ApiServerOptions::default()
        .tls(Some(sa.path().to_path_buf()))
        .token(TOKEN, "system:serviceaccount:sentry:sentry-kubernetes");
    let server = FakeApiServer::start_with(options).await.unwrap();
    // The agent's own namespace, where its Lease lives.
    server
        .create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sentry"}}))
        .unwrap();
    std::fs::write(sa.path().join("token"), TOKEN).unwrap();
    std::fs::write(sa.path().join("namespace"), "sentry").unwrap();
    (World::with_server(server).await, sa)
}

fn in_cluster_vars<'a>(world: &World, sa: &'a Path, mode: &'a str) -> Vec<(String, String)> {
    let port = world.server.address().port().to_string();
    let mut vars = world.vars(&[("SENTRY_K8S_CLUSTER_CONFIG_TYPE", mode)]);
    vars.retain(|(k, _)| k != "SENTRY_K8S_KUBECONFIG_PATH");
    vars.extend([
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            "127.0.0.1".to_string(),
        ),
        ("KUBERNETES_SERVICE_PORT".to_string(), port),
        (
            "SENTRY_K8S_SERVICE_ACCOUNT_DIR".to_string(),
            sa.to_string_lossy().into_owned(),
        ),
    ]);
    vars
}

async fn reports_one_event(world: &World, vars: Vec<(String, String)>) {
    let running = crate::common::Running::spawn(Config::from_vars(vars).unwrap().0);
    running.ready(2).await;
    world
        .server
        .create(EventFixture::warning("default", "web-1.a", "BackOff", "crash").build())
        .unwrap();
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    assert_eq!(events.len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn in_cluster_mode_uses_the_token_file_and_ca_over_tls() {
    let (world, sa) = tls_world().await;
    reports_one_event(&world, in_cluster_vars(&world, sa.path(), "in-cluster")).await;
    let requests = world.server.requests(0);
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.user == "system:serviceaccount:sentry:sentry-kubernetes" && r.status != 401)
    );
}

#[tokio::test]
async fn auto_mode_prefers_in_cluster_when_the_service_account_is_there() {
    let (world, sa) = tls_world().await;
    reports_one_event(&world, in_cluster_vars(&world, sa.path(), "auto")).await;
}

#[tokio::test]
async fn out_of_cluster_mode_reads_the_kubeconfig_with_its_ca_and_token() {
    let (world, _sa) = tls_world().await;
    reports_one_event(&world, world.vars(&[])).await;
}

#[tokio::test]
async fn kubeconfig_variable_is_honoured_when_the_agent_variable_is_unset() {
    let world = World::new().await;
    let mut vars = world.vars(&[("SENTRY_K8S_CLUSTER_CONFIG_TYPE", "auto")]);
    vars.retain(|(k, _)| k != "SENTRY_K8S_KUBECONFIG_PATH");
    let missing = world.dir.path().join("missing");
    vars.push((
        "KUBECONFIG".into(),
        format!("{}:{}", missing.display(), world.kubeconfig_path()),
    ));
    reports_one_event(&world, vars).await;
}

#[tokio::test]
async fn in_cluster_mode_outside_a_cluster_is_a_configuration_error() {
    let world = World::new().await;
    let mut vars = world.vars(&[("SENTRY_K8S_CLUSTER_CONFIG_TYPE", "in-cluster")]);
    vars.push((
        "SENTRY_K8S_SERVICE_ACCOUNT_DIR".into(),
        world.dir.path().join("nope").to_string_lossy().into(),
    ));
    let err = Agent::new(Config::from_vars(vars).unwrap().0)
        .run(std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let Error::Config(e) = err else {
        panic!("expected a configuration error")
    };
    assert_eq!(e.variable, "SENTRY_K8S_CLUSTER_CONFIG_TYPE");
    assert!(e.reason.contains("KUBERNETES_SERVICE_HOST"), "{e}");
}

#[tokio::test]
async fn a_rejected_token_is_counted_and_retried_without_crashing() {
    let (world, sa) = tls_world().await;
    std::fs::write(sa.path().join("token"), "expired-token").unwrap();
    let running = crate::common::Running::spawn(
        Config::from_vars(in_cluster_vars(&world, sa.path(), "in-cluster"))
            .unwrap()
            .0,
    );
    let metrics = running.metrics.clone();
    eventually("401s counted", || {
        metrics
            .watch_errors
            .get((WatchedResource::Events, WatchErrorKind::Unauthorized))
            >= 2
    })
    .await;
    assert_eq!(metrics.watches_ready.get(), 0);
    // Still running, and stops cleanly. (kube re-reads the token file about every minute,
    // so a rotated token is picked up without a restart.)
    running.stop().await;
}
