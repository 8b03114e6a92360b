//! Shared set-up for the agent's integration tests: a fake apiserver, a Sentry sink, the
//! agent running in-process against both, and waits with deadlines.

pub mod process;

use std::future::Future;
use std::time::Duration;

use harness::fixtures::EventFixture;
use harness::{FakeApiServer, SentrySink};
use sentry_kubernetes::config::Config;
use sentry_kubernetes::metrics::Metrics;
use sentry_kubernetes::{Agent, Stopped};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `check` until it holds; panics with `what` after [`DEADLINE`]. For state with
/// no notification (metrics, logs, a child process); the sink has `wait_for_events`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    if poll(DEADLINE, || check().then_some(())).await.is_none() {
        panic!("timed out waiting for {what}");
    }
}

/// The first `Some` that `check` returns, polled every 10 ms; `None` after `limit`.
pub async fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `future`, failing the test after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A fake cluster and a Sentry sink, with a kubeconfig for the cluster on disk.
pub struct World {
    pub server: FakeApiServer,
    pub sink: SentrySink,
    pub dir: harness::tempdir::TempDir,
}

impl World {
    pub async fn new() -> Self {
        Self::with_server(FakeApiServer::start().await.unwrap()).await
    }

    pub async fn with_server(server: FakeApiServer) -> Self {
        let sink = SentrySink::start().await.unwrap();
        let dir = harness::tempdir::tempdir().unwrap();
        server
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        Self { server, sink, dir }
    }

    pub fn kubeconfig_path(&self) -> String {
        self.dir
            .path()
            .join("kubeconfig")
            .to_string_lossy()
            .into_owned()
    }

    /// The variables an operator would set to run out of cluster against this world.
    pub fn vars(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = vec![
            ("SENTRY_DSN".into(), self.sink.dsn()),
            (
                "SENTRY_K8S_CLUSTER_CONFIG_TYPE".into(),
                "out-cluster".into(),
            ),
            ("SENTRY_K8S_KUBECONFIG_PATH".into(), self.kubeconfig_path()),
            ("SENTRY_K8S_HTTP_ADDR".into(), String::new()),
            ("SENTRY_K8S_WATCH_NAMESPACES".into(), "default".into()),
            ("HOSTNAME".into(), "agent-test".into()),
            // One sender keeps delivery in order, so a sentinel proves everything before it
            // has arrived (tests of concurrency set their own).
            ("SENTRY_K8S_SEND_CONCURRENCY".into(), "1".into()),
            (
                "HOME".into(),
                self.dir.path().to_string_lossy().into_owned(),
            ),
        ];
        for (k, v) in extra {
            vars.retain(|(key, _)| key != k);
            vars.push((k.to_string(), v.to_string()));
        }
        vars
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        Config::from_vars(self.vars(extra))
            .expect("test configuration is valid")
            .0
    }

    /// Starts the agent and waits until `watches` watches completed their first list.
    pub async fn start(&self, extra: &[(&str, &str)]) -> Running {
        let config = self.config(extra);
        // Every watch: the pipeline's, and the Crons monitor's when it runs.
        let mut watches = sentry_kubernetes::source::watches(&config).len();
        if config.monitor_cronjobs {
            watches += sentry_kubernetes::crons::watch_names(&config).len();
        }
        let watches = watches as i64;
        let running = Running::spawn(config);
        running.ready(watches).await;
        running
    }

    /// Creates a Warning event and waits until it reaches the sink: with one sender and no
    /// retries pending, every event the agent received before it (on the same watch) has
    /// then been delivered.
    pub async fn sentinel(&self, namespace: &str, name: &str) {
        let before = self.sink.events().len();
        self.server
            .create(EventFixture::warning(namespace, name, "Sentinel", "sentinel").build())
            .unwrap();
        let sink = &self.sink;
        eventually(&format!("sentinel {name}"), || {
            sink.events()[before..].iter().any(|e| {
                e.event["tags"]["reason"] == "Sentinel"
                    && e.event["contexts"]["kubernetes_event"]["name"] == name
            })
        })
        .await;
    }

    /// How many GETs other than watches the apiserver answered on paths containing
    /// `fragment`.
    pub fn gets(&self, fragment: &str) -> usize {
        self.server
            .requests(0)
            .into_iter()
            .filter(|r| r.method == "GET" && !r.watch && r.path.contains(fragment))
            .count()
    }

    /// The events the sink received, minus sentinels.
    pub fn reported(&self) -> Vec<Value> {
        self.sink
            .events()
            .into_iter()
            .map(|e| e.event)
            .filter(|e| e["tags"]["reason"] != "Sentinel")
            .collect()
    }

    /// How many reported events have this message.
    pub fn count_message(&self, message: &str) -> usize {
        self.reported()
            .iter()
            .filter(|e| e["message"] == message)
            .count()
    }
}

/// An agent running in-process.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<sentry_kubernetes::Result<Stopped>>,
    pub metrics: Metrics,
}

impl Running {
    pub fn spawn(config: Config) -> Self {
        let agent = Agent::new(config);
        let metrics = agent.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task,
            metrics,
        }
    }

    pub async fn ready(&self, watches: i64) {
        let metrics = self.metrics.clone();
        eventually("the watches' initial lists", || {
            assert!(!self.task.is_finished(), "the agent stopped early");
            metrics.watches_ready.get() >= watches
        })
        .await;
    }

    /// Signals shutdown and waits for the agent to finish flushing.
    pub async fn stop(mut self) -> Stopped {
        let _ = self.stop.take().expect("not stopped yet").send(());
        within("the agent to stop", self.task)
            .await
            .expect("the agent task did not panic")
            .expect("the agent ran without error")
    }
}
