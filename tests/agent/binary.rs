//! The `sentry-kubernetes` binary as an operator runs it: exit codes, the dry run, SIGTERM,
//! its probes, and logs that name problems but never secrets.

use std::process::Command;

use crate::common::process::{BIN, Process, http_get};
use crate::common::{DEADLINE, World, eventually};
use harness::fixtures::{ContainerStatusFixture, EventFixture, ObjectFixture};
use harness::{ApiServerOptions, DenyRule, FakeApiServer, SinkDelay};
use serde_json::Value;

fn run_to_exit(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_configuration_error_exits_2_with_one_line_naming_the_variable() {
    let cases: &[(&str, &str)] = &[
        ("SENTRY_K8S_WATCH_HISTORICAL", "perhaps"),
        ("SENTRY_K8S_WATCH_NAMESPACES", "default,Not_A_Namespace"),
        ("SENTRY_K8S_CLUSTER_CONFIG_TYPE", "sideways"),
        ("SENTRY_K8S_LOG_LEVEL", "loud"),
        ("SENTRY_K8S_MONITOR_CRONJOBS", "sometimes"),
        ("SENTRY_K8S_CUSTOM_DSNS", "2"),
        ("SENTRY_DSN", "definitely not a dsn"),
        ("SENTRY_K8S_HTTP_ADDR", "everywhere"),
        ("SENTRY_K8S_QUEUE_SIZE", "0"),
        ("SENTRY_K8S_ISSUE_WINDOW", "0s"),
        ("SENTRY_K8S_MAX_EVENTS_PER_ISSUE", "-1"),
        ("SENTRYK8SCLUSTERCONFIGTYPE", "sideways"),
    ];
    for (var, value) in cases {
        let (code, stderr) = run_to_exit(&[(var, value), ("HOME", "/nonexistent")]);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        let canonical = if *var == "SENTRYK8SCLUSTERCONFIGTYPE" {
            "SENTRY_K8S_CLUSTER_CONFIG_TYPE"
        } else {
            var
        };
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("{canonical}=")), "{var}: {stderr}");
    }
    // No cluster anywhere: auto mode says so, also with code 2.
    let (code, stderr) = run_to_exit(&[("HOME", "/nonexistent"), ("SENTRY_K8S_HTTP_ADDR", "")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("SENTRY_K8S_CLUSTER_CONFIG_TYPE=\"auto\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dsn_events_are_printed_as_json_lines() {
    let world = World::new().await;
    let mut vars = world.vars(&[]);
    vars.retain(|(k, _)| k != "SENTRY_DSN");
    let mut agent = Process::spawn(&vars);
    world.server.wait_for_watches(1, DEADLINE).await.unwrap();
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                "web-1.a",
                "BackOff",
                "Back-off restarting failed container",
            )
            .build(),
        )
        .unwrap();
    world
        .server
        .create(EventFixture::normal("default", "web-1.b", "Pulled", "pulled").build())
        .unwrap();
    let stdout = agent.stdout.clone();
    eventually("a printed event", || !stdout.lock().unwrap().is_empty()).await;
    agent.terminate();
    assert!(agent.wait().await.success());
    let lines = agent.stdout_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        event["message"],
        "web-1: Back-off restarting failed container"
    );
    assert_eq!(event["tags"]["reason"], "BackOff");
    assert!(world.sink.events().is_empty());
    assert_eq!(
        agent.stderr().matches("SENTRY_DSN is not set").count(),
        1,
        "warned once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_prints_an_event_from_1969_and_keeps_going() {
    let world = World::new().await;
    let mut vars = world.vars(&[]);
    vars.retain(|(k, _)| k != "SENTRY_DSN");
    let mut agent = Process::spawn(&vars);
    world.server.wait_for_watches(1, DEADLINE).await.unwrap();
    let moon = "1969-07-20T20:17:40Z".parse().unwrap();
    world
        .server
        .create(
            EventFixture::warning("default", "web-1.old", "BackOff", "long ago")
                .about("Pod", "web-1")
                .timestamps(moon, moon)
                .build(),
        )
        .unwrap();
    world
        .server
        .create(
            EventFixture::warning("default", "web-1.new", "Unhealthy", "now")
                .about("Pod", "web-1")
                .build(),
        )
        .unwrap();
    let stdout = agent.stdout.clone();
    eventually("both printed", || stdout.lock().unwrap().len() == 2).await;
    agent.terminate();
    assert!(agent.wait().await.success(), "{}", agent.stderr());
    let old: Value = serde_json::from_str(&agent.stdout_lines()[0]).unwrap();
    assert_eq!(
        old["contexts"]["kubernetes_event"]["original_time"],
        "1969-07-20T20:17:40.000000Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_sentry_goes_through_https_proxy_with_connect_trusting_ssl_cert_file() {
    let world = World::new().await;
    let sink = harness::SentrySink::start_tls().await.unwrap();
    let ca = world.dir.path().join("sentry-ca.crt");
    std::fs::write(&ca, sink.ca_pem().unwrap()).unwrap();
    let proxy = harness::RecordingProxy::start().await.unwrap();
    let proxy_url = proxy
        .url()
        .replace("http://", "http://agent:proxy-password@");
    let dsn = sink.dsn();
    let mut agent = Process::spawn(&world.vars(&[
        ("SENTRY_DSN", dsn.as_str()),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ]));
    world
        .server
        .wait_for_watches(1, DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", agent.stderr()));
    world
        .server
        .create(EventFixture::warning("default", "tls.1", "BackOff", "over TLS").build())
        .unwrap();
    sink.wait_for_events(1, DEADLINE).await.unwrap();
    agent.terminate();
    assert!(agent.wait().await.success());
    let carried = proxy.requests();
    let sink_authority = sink.url().replace("https://", "");
    assert!(
        carried
            .iter()
            .any(|r| r.method == "CONNECT" && r.target == sink_authority),
        "{carried:?}"
    );
    assert!(carried.iter().all(|r| r.authorization.is_some()));
    let logs = agent.stderr();
    assert!(logs.contains("sending through a proxy"), "{logs}");
    assert!(
        !logs.contains("proxy-password"),
        "the proxy's password is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_even_with_a_dsn_and_sends_nothing() {
    let world = World::new().await;
    let mut agent = Process::spawn(&world.vars(&[("SENTRY_K8S_DRY_RUN", "yes")]));
    world.server.wait_for_watches(1, DEADLINE).await.unwrap();
    world
        .server
        .create(
            EventFixture::warning(
                "default",
                "db-0.a",
                "Unhealthy",
                "Liveness probe failed: timeout",
            )
            .build(),
        )
        .unwrap();
    let stdout = agent.stdout.clone();
    eventually("a printed event", || !stdout.lock().unwrap().is_empty()).await;
    agent.terminate();
    assert!(agent.wait().await.success());
    assert!(world.sink.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_every_queued_event_then_exits_0() {
    let world = World::new().await;
    world.sink.delay(SinkDelay {
        millis: 100,
        count: None,
    });
    let mut agent = Process::spawn(&world.vars(&[
        ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "10s"),
        ("SENTRY_K8S_LOG_LEVEL", "debug"),
    ]));
    world.server.wait_for_watches(1, DEADLINE).await.unwrap();
    let events = (0..20)
        .map(|i| {
            EventFixture::warning(
                "default",
                &format!("job-{i}.e"),
                "BackoffLimitExceeded",
                &format!("job {i} failed"),
            )
            .build()
        })
        .collect();
    world.server.create_all(events).unwrap();
    agent
        .wait_for_log("all 20 handed to delivery", "job-19")
        .await;
    assert!(
        world.sink.events().len() < 20,
        "the test must stop the agent with events still queued"
    );
    agent.terminate();
    let status = agent.wait().await;
    assert_eq!(status.code(), Some(0), "{}", agent.stderr());
    assert_eq!(world.sink.events().len(), 20, "{}", agent.stderr());
    assert!(agent.stderr().contains("every event was delivered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_the_dsn_key_or_the_token() {
    let dir = harness::tempdir::tempdir().unwrap();
    let token = "tok-4f9b2c7d1e8a";
    let server = FakeApiServer::start_with(
        ApiServerOptions::default()
            .tls(Some(dir.path().into()))
            .token(token, "u"),
    )
    .await
    .unwrap();
    let world = World::with_server(server).await;
    world.sink.add_project("2", "k3y5ecret9f");
    let dsn = world.sink.dsn_for("2").unwrap();
    world.sink.respond(harness::RespondRule {
        status: 401,
        count: Some(1),
        ..Default::default()
    });
    for format in ["text", "json"] {
        let mut agent = Process::spawn(&world.vars(&[
            ("SENTRY_DSN", dsn.as_str()),
            ("SENTRY_K8S_LOG_LEVEL", "trace"),
            ("SENTRY_K8S_LOG_FORMAT", format),
        ]));
        world.server.wait_for_watches(1, DEADLINE).await.unwrap();
        world
            .server
            .create(
                EventFixture::warning("default", &format!("x-{format}.1"), "BackOff", "crash")
                    .build(),
            )
            .unwrap();
        agent
            .wait_for_log("a debug line about the event", &format!("x-{format}"))
            .await;
        agent.terminate();
        agent.wait().await;
        let logs = agent.stderr();
        assert!(
            logs.contains("***@127.0.0.1"),
            "the DSN is shown masked: {logs}"
        );
        assert!(!logs.contains("k3y5ecret9f"), "DSN key in the logs: {logs}");
        assert!(!logs.contains(token), "token in the logs: {logs}");
        if format == "json" {
            assert!(
                logs.lines()
                    .all(|l| serde_json::from_str::<Value>(l).is_ok()),
                "JSON lines: {logs}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_what_a_container_wrote() {
    let world = World::new().await;
    let mut agent = Process::spawn(&world.vars(&[
        ("SENTRY_K8S_LOG_LEVEL", "trace"),
        ("SENTRY_K8S_CONTAINER_LOGS", "10"),
    ]));
    world.server.wait_for_watches(2, DEADLINE).await.unwrap();
    let app = ContainerStatusFixture::new("app", "web:1")
        .crashed(1, "Error", chrono::Utc::now())
        .set(
            &["lastState", "terminated", "message"],
            serde_json::json!("termination-message-9c1e"),
        );
    world.server.set_container_log(
        &app.previous_container_id().unwrap(),
        "log-line-7f3a\npanic: log-line-b2d4\n",
    );
    ObjectFixture::new("Pod", "default", "web-0")
        .status("Running", &[app.build()])
        .create(&world.server);
    let events = world.sink.wait_for_events(1, DEADLINE).await.unwrap();
    let sent = serde_json::to_string(&events[0].event).unwrap();
    assert!(
        sent.contains("log-line-b2d4") && sent.contains("termination-message-9c1e"),
        "the report carries them: {sent}"
    );
    agent.terminate();
    agent.wait().await;
    let logs = agent.stderr();
    assert!(logs.contains("web-0"), "trace logs about the pod: {logs}");
    for written in ["log-line-7f3a", "log-line-b2d4", "termination-message-9c1e"] {
        assert!(
            !logs.contains(written),
            "{written} in the agent's logs: {logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_are_served() {
    let world = World::new().await;
    world.server.deny(DenyRule {
        verb: "list".into(),
        resource: "events".into(),
        group: None,
        namespace: None,
    });
    let agent = Process::spawn(&world.vars(&[
        ("SENTRY_K8S_HTTP_ADDR", "127.0.0.1:0"),
        ("SENTRY_K8S_LOG_FORMAT", "json"),
    ]));
    agent
        .wait_for_log("the probe address", "serving /healthz")
        .await;
    let address = agent
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|l| l["address"].as_str().map(str::to_string))
        .expect("the log line names the address");
    // The apiserver's own 403 text is in the logs.
    agent
        .wait_for_log("the RBAC error", "events is forbidden: User \\\"system:serviceaccount:sentry:sentry-kubernetes\\\" cannot list resource \\\"events\\\"")
        .await;
    let get = |path: &str| http_get(&address, path);
    assert!(get("/healthz").ends_with("200"));
    let not_ready = get("/readyz");
    assert!(
        not_ready.ends_with("503") && not_ready.contains("default"),
        "{not_ready}"
    );
    world.server.clear_faults();
    eventually("readiness", || get("/readyz").ends_with("200")).await;
    let metrics = get("/metrics");
    for name in [
        "sentry_k8s_watch_errors_total{resource=\"events\",kind=\"forbidden\"}",
        "sentry_k8s_watches_ready 2",
        "sentry_k8s_events_reported_total",
        "sentry_k8s_queue_depth",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_owner_kind_is_logged_once_and_events_still_go_out() {
    let world = World::new().await;
    world.server.deny(DenyRule {
        verb: "get".into(),
        resource: "replicasets".into(),
        group: Some("apps".into()),
        namespace: None,
    });
    let mut agent = Process::spawn(&world.vars(&[("SENTRY_K8S_WATCH_NAMESPACES", "shop")]));
    world.server.wait_for_watches(1, DEADLINE).await.unwrap();
    let web = harness::fixtures::deployment_chain(&world.server, "shop", "web", 3);
    let other = harness::fixtures::deployment_chain(&world.server, "shop", "api", 1);
    for pod in web.pods.iter().chain(&other.pods) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        world
            .server
            .create(
                EventFixture::warning("shop", &format!("{name}.b"), "BackOff", "crash")
                    .about("Pod", name)
                    .involved_uid(pod["metadata"]["uid"].as_str().unwrap())
                    .build(),
            )
            .unwrap();
    }
    world.sink.wait_for_events(4, DEADLINE).await.unwrap();
    agent.terminate();
    agent.wait().await;
    let logs = agent.stderr();
    assert_eq!(
        logs.matches("cannot read ReplicaSet metadata").count(),
        1,
        "logged once per kind: {logs}"
    );
    assert!(
        logs.contains("replicasets.apps"),
        "with the apiserver's message: {logs}"
    );
}

#[test]
fn help_and_version_answer_without_a_cluster_and_unknown_arguments_exit_2() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).env_clear().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for setting in sentry_kubernetes::config::SETTINGS {
        assert!(help.contains(setting.name), "--help names {}", setting.name);
    }
    assert!(
        help.contains("SENTRY_K8S_WATCH_NAMESPACES [default]"),
        "{help}"
    );
    assert_eq!(run(&["-h"]).1, help);

    let (code, version, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(
        version.starts_with(concat!(
            "sentry-kubernetes ",
            env!("CARGO_PKG_VERSION"),
            " (commit "
        )) && version.contains("rustc "),
        "{version}"
    );

    for args in [&["--verbose"][..], &["run"], &["--help", "--version"]] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(stdout.is_empty() && stderr.contains("--help"), "{stderr}");
    }
}
