//! Throughput, memory and CPU of the agent binary (`cargo bench --bench throughput`):
//! 10,000 Warning events over 2,000 pods of 400 Deployments, through owner lookups and
//! breadcrumbs, into the Sentry sink. The agent runs as its own process so its memory and
//! CPU are its own. Prints numbers; asserts nothing.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::fixtures::{EventFixture, deployment_chain};
use harness::{FakeApiServer, SentrySink};
use serde_json::Value;

const DEPLOYMENTS: usize = 400;
const PODS_PER_DEPLOYMENT: usize = 5;
const EVENTS: usize = 10_000;

/// (peak resident KiB, current resident KiB, CPU seconds) of a process.
fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    (kib("VmHWM:"), kib("VmRSS:"), ticks / 100.0)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = FakeApiServer::start().await.unwrap();
        let sink = SentrySink::start().await.unwrap();
        let dir = harness::tempdir::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let mut pods: Vec<Value> = Vec::new();
        for d in 0..DEPLOYMENTS {
            pods.extend(
                deployment_chain(&server, "load", &format!("app-{d}"), PODS_PER_DEPLOYMENT).pods,
            );
        }
        let mut agent = Command::new(env!("CARGO_BIN_EXE_sentry-kubernetes"))
            .env_clear()
            .env("SENTRY_DSN", sink.dsn())
            .env("SENTRY_K8S_KUBECONFIG_PATH", &kubeconfig)
            .env("SENTRY_K8S_CLUSTER_CONFIG_TYPE", "out-cluster")
            .env("SENTRY_K8S_WATCH_NAMESPACES", "load")
            .env("SENTRY_K8S_HTTP_ADDR", "")
            .env("SENTRY_K8S_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // The watch opens once the first list is done: the agent is idle from here.
        server
            .wait_for_watches(1, Duration::from_secs(30))
            .await
            .unwrap();
        let (_, idle_rss, _) = usage(agent.id());

        let events: Vec<Value> = (0..EVENTS)
            .map(|i| {
                let pod = &pods[i % pods.len()];
                let name = pod["metadata"]["name"].as_str().unwrap();
                EventFixture::warning(
                    "load",
                    &format!("{name}.{i:08x}"),
                    "BackOff",
                    &format!("Back-off restarting failed container app in pod {name}_load ({i})"),
                )
                .about("Pod", name)
                .involved_uid(pod["metadata"]["uid"].as_str().unwrap())
                .container("app")
                .source("kubelet", Some("node-1"))
                .build()
            })
            .collect();
        let started = Instant::now();
        server.create_all(events).unwrap();
        sink.wait_for_events(EVENTS, Duration::from_secs(600))
            .await
            .unwrap();
        let elapsed = started.elapsed();
        let (peak, rss, cpu) = usage(agent.id());
        let lookups = server
            .requests(0)
            .iter()
            .filter(|r| !r.watch && r.method == "GET" && r.path.contains("/namespaces/load/"))
            .count();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(agent.id().to_string())
            .status();
        let _ = agent.wait();
        println!(
            "{EVENTS} Warning events over {} pods of {DEPLOYMENTS} Deployments:",
            pods.len()
        );
        println!(
            "  delivered          {EVENTS} in {:.2} s = {:.0} events/s",
            elapsed.as_secs_f64(),
            EVENTS as f64 / elapsed.as_secs_f64()
        );
        println!(
            "  owner lookups      {lookups} GETs ({:.2} per event)",
            lookups as f64 / EVENTS as f64
        );
        println!(
            "  agent memory       {:.1} MiB idle, {:.1} MiB after, {:.1} MiB peak (RSS)",
            idle_rss as f64 / 1024.0,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        println!(
            "  agent CPU          {cpu:.2} s for the run ({:.2} ms per event)",
            cpu * 1000.0 / EVENTS as f64
        );
    });
}
