//! What the agent costs, measured from the outside: the release binary runs as its own
//! process against the harness's apiserver and Sentry sink (both in this process), with its
//! default settings, watching every namespace.
//!
//! ```text
//! cargo bench --bench agent              # 2,000 pods, 200 Deployments, 20 namespaces;
//!                                        # compares with benches/RESULTS.md, then rewrites it
//! cargo bench --bench agent -- --quick   # a small smoke run: prints, writes nothing
//! cargo bench --bench agent -- --no-write
//! BENCH_AGENT_BINARY=target/x86_64-unknown-linux-gnu/dist/sentry-kubernetes \
//!   cargo bench --bench agent -- --no-write      # the image's binary instead
//! BENCH_AGENT_WRAPPER=heaptrack cargo bench --bench agent -- --no-write   # under a profiler
//! ```
//!
//! Scenarios: `burst` (10,000 events created at once), `steady` (100 a second for 30 s) and
//! `stored` (a new agent over 10,000 stored events, historical off; a relist; then 1,000 new
//! events). Every scenario also checks what the tests check — each event delivered once,
//! nothing resent — and the run fails if not: figures of a wrong agent are worthless.
//! Targets and regressions are printed, never asserted: speed belongs to the benchmark,
//! not to timed tests.

mod floor;
mod results;
mod usage;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::fixtures::{EventFixture, deployment_chain};
use harness::probe;
use harness::{FakeApiServer, SentrySink};
use serde_json::Value;

use results::Results;
use usage::mib;

struct Shape {
    namespaces: usize,
    deployments_per_namespace: usize,
    pods_per_deployment: usize,
    burst: usize,
    steady_per_second: u64,
    steady_seconds: u64,
    stored: usize,
    fresh: usize,
    /// How long the idle agent's CPU is measured.
    idle: Duration,
}

const FULL: Shape = Shape {
    namespaces: 20,
    deployments_per_namespace: 10,
    pods_per_deployment: 10,
    burst: 10_000,
    steady_per_second: 100,
    steady_seconds: 30,
    stored: 10_000,
    fresh: 1_000,
    idle: Duration::from_secs(10),
};

const QUICK: Shape = Shape {
    namespaces: 2,
    deployments_per_namespace: 3,
    pods_per_deployment: 4,
    burst: 300,
    steady_per_second: 50,
    steady_seconds: 2,
    stored: 300,
    fresh: 50,
    idle: Duration::from_secs(1),
};

/// Past this, a scenario is broken, not slow.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long the agent is left alone before its idle memory is read.
const SETTLE: Duration = Duration::from_secs(2);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(floor::ARG) {
        return floor::main(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    // Figures of another binary, or of a profiled one, are not the committed figures'.
    let other = ["BENCH_AGENT_BINARY", "BENCH_AGENT_WRAPPER"]
        .iter()
        .find(|v| std::env::var_os(v).is_some());
    if let Some(variable) = other {
        println!("{variable} is set: figures compared, not written");
    }
    let write = !quick && other.is_none() && !args.iter().any(|a| a == "--no-write");
    let shape = if quick { &QUICK } else { &FULL };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut results = runtime.block_on(run(shape));
    results.run = vec![
        (
            "date".into(),
            chrono::Utc::now().format("%Y-%m-%d").to_string(),
        ),
        ("commit".into(), commit()),
        ("machine".into(), machine()),
    ];
    let workload = format!(
        "{} pods under {} Deployments in {} namespaces; agent defaults, every namespace watched",
        shape.namespaces * shape.deployments_per_namespace * shape.pods_per_deployment,
        shape.namespaces * shape.deployments_per_namespace,
        shape.namespaces
    );
    println!("\n{}", results.table());

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
    let previous = std::fs::read_to_string(&path).ok();
    // The comparison below reads what this run writes; prove they agree, quick runs too.
    let rendered = results.render(&workload, previous.as_deref());
    let reread = Results::parse(&rendered).expect("RESULTS.md as written parses back");
    assert!(
        results.regressions(&reread).is_empty() && reread.regressions(&results).is_empty(),
        "RESULTS.md does not read back as written"
    );
    if quick {
        println!("quick run: a smoke test of the benchmark; figures not compared or written");
        return;
    }
    match previous.as_deref().and_then(Results::parse) {
        Some(before) => {
            let worse = results.regressions(&before);
            if worse.is_empty() {
                println!("no regressions against benches/RESULTS.md");
            }
            for line in worse {
                println!("REGRESSION {line}");
            }
        }
        None => println!("no earlier results to compare with"),
    }
    let missed = results.missed_targets();
    if missed.is_empty() {
        println!("every target met");
    }
    for line in missed {
        println!("TARGET MISSED {line}");
    }
    if write {
        std::fs::write(&path, rendered).unwrap();
        println!("wrote {}", path.display());
    }
}

async fn run(shape: &Shape) -> Results {
    let mut results = Results::default();
    {
        let world = World::new(shape, 0).await;
        let agent = Agent::spawn(&world);
        agent.ready().await;
        tokio::time::sleep(SETTLE).await;
        let rested = agent.usage();
        tokio::time::sleep(shape.idle).await;
        let idle = agent.usage();
        let idle_cpu =
            idle.cpu.saturating_sub(rested.cpu).as_secs_f64() * 1000.0 / shape.idle.as_secs_f64();
        results.set("burst", "idle CPU ms/s", idle_cpu);
        println!(
            "agent ready and idle: {:.1} MiB RSS, {:.2} s CPU to start, {idle_cpu:.2} ms CPU a second idle",
            mib(idle.rss_kib),
            rested.cpu.as_secs_f64()
        );
        results.set("burst", "idle RSS MiB", mib(idle.rss_kib));
        results.set("burst", "idle anon MiB", mib(idle.anon_kib));
        burst(&world, &agent, shape.burst, &mut results).await;

        tokio::time::sleep(SETTLE).await;
        let rested = agent.usage();
        results.set("steady", "idle RSS MiB", mib(rested.rss_kib));
        results.set("steady", "idle anon MiB", mib(rested.anon_kib));
        steady(&world, &agent, shape, &mut results).await;
        agent.stop();
        io_floor(&world, shape, &mut results).await;
    }
    stored(shape, &mut results).await;
    results
}

/// Every event created at once.
async fn burst(world: &World, agent: &Agent, count: usize, results: &mut Results) {
    let before = world.mark(agent);
    let created = Instant::now();
    world.server.create_all(world.events(0, count)).unwrap();
    let writes: Vec<Instant> = vec![created; count];
    let delivered = world.delivered(&before, 0, &writes).await;
    world.record("burst", &before, agent, &delivered, results);
}

/// A paced stream.
async fn steady(world: &World, agent: &Agent, shape: &Shape, results: &mut Results) {
    let count = (shape.steady_per_second * shape.steady_seconds) as usize;
    let first = shape.burst;
    let before = world.mark(agent);
    let writes = world.paced(first, count, shape.steady_per_second).await;
    let delivered = world.delivered(&before, first, &writes).await;
    world.record("steady", &before, agent, &delivered, results);
}

/// The burst and the steady stream again, through the floor client instead of the agent
/// (see [`floor`]): what the I/O alone costs on this machine.
async fn io_floor(world: &World, shape: &Shape, results: &mut Results) {
    let client = Floor::spawn(world);
    tokio::time::sleep(SETTLE).await;
    let idle = usage::read(client.pid().0);
    results.set("burst", "I/O floor idle RSS MiB", mib(idle.rss_kib));
    let first = shape.burst + (shape.steady_per_second * shape.steady_seconds) as usize;
    let before = world.mark(client.pid());
    world
        .server
        .create_all(world.events(first, shape.burst))
        .unwrap();
    let writes = vec![Instant::now(); shape.burst];
    world.delivered(&before, first, &writes).await;
    let cpu = usage::read(client.pid().0).cpu - before.usage.cpu;
    results.set(
        "burst",
        "I/O floor CPU ms per event",
        cpu.as_secs_f64() * 1000.0 / shape.burst as f64,
    );

    let first = first + shape.burst;
    let count = (shape.steady_per_second * shape.steady_seconds) as usize;
    let before = world.mark(client.pid());
    let writes = world.paced(first, count, shape.steady_per_second).await;
    world.delivered(&before, first, &writes).await;
    let cpu = usage::read(client.pid().0).cpu - before.usage.cpu;
    results.set(
        "steady",
        "I/O floor CPU ms per event",
        cpu.as_secs_f64() * 1000.0 / count as f64,
    );
    println!(
        "I/O floor: {:.3} ms CPU per event in the burst, {:.3} in the steady stream, {:.1} MiB resident idle",
        results
            .get("burst", "I/O floor CPU ms per event")
            .unwrap_or(0.0),
        results
            .get("steady", "I/O floor CPU ms per event")
            .unwrap_or(0.0),
        mib(idle.rss_kib),
    );
}

/// The floor client, as its own process.
struct Floor(Child);

impl Floor {
    fn spawn(world: &World) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg(floor::ARG)
            .arg(&world.kubeconfig)
            .arg(world.sink.dsn())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Owned first: a failure below kills it (Drop).
        let floor = Self(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx
            .recv_timeout(DEADLINE)
            .expect("the floor client started watching");
        assert_eq!(ready.trim(), "watching", "the floor client did not start");
        floor
    }

    fn pid(&self) -> Pid {
        Pid(self.0.id())
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A new agent over a store full of history: its start, a relist, then new events.
async fn stored(shape: &Shape, results: &mut Results) {
    let world = World::new(shape, shape.stored).await;
    let start = world.mark_requests();
    let agent = Agent::spawn(&world);
    agent.ready().await;
    // A relist: the stored history comes again. Something else changes first, so the
    // watches' resourceVersion falls below the compaction floor and they get 410 Gone.
    let relists = agent.metric("sentry_k8s_relists_total");
    world
        .server
        .create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}}))
        .unwrap();
    world.server.compact();
    world.server.close_watches();
    let deadline = Instant::now() + DEADLINE;
    while agent.metric("sentry_k8s_relists_total") <= relists || !agent.is_ready() {
        assert!(Instant::now() < deadline, "no relist: {}", agent.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let settled = agent.usage();
    let requests = world.server.requests(start).len();
    println!(
        "stored: started over {} events and relisted in {:.2} s CPU, {:.1} MiB RSS, {requests} apiserver requests",
        shape.stored,
        settled.cpu.as_secs_f64(),
        mib(settled.rss_kib)
    );
    results.set("stored", "start CPU s", settled.cpu.as_secs_f64());
    results.set("stored", "idle RSS MiB", mib(settled.rss_kib));
    results.set("stored", "idle anon MiB", mib(settled.anon_kib));

    let before = world.mark(agent.pid());
    let first = shape.stored;
    let created = Instant::now();
    world
        .server
        .create_all(world.events(first, shape.fresh))
        .unwrap();
    let writes = vec![created; shape.fresh];
    let delivered = world.delivered(&before, first, &writes).await;
    world.record("stored", &before, &agent, &delivered, results);
    // Nothing stored may have been reported: every envelope is one of the new events.
    let resent = world.sink.events().len() - delivered.latencies.len();
    results.set("stored", "resent", resent as f64);
    assert_eq!(resent, 0, "stored events were reported");
    agent.stop();
}

struct Pod {
    namespace: String,
    name: String,
    uid: String,
}

struct World {
    server: FakeApiServer,
    sink: SentrySink,
    kubeconfig: PathBuf,
    pods: Vec<Pod>,
    _dir: harness::tempdir::TempDir,
}

/// Where a scenario began: the agent's usage, the apiserver's request log, the sink's envelopes.
struct Mark {
    pid: u32,
    usage: usage::Usage,
    requests: u64,
    envelopes: usize,
}

struct Delivered {
    /// Per event, from its write to the apiserver to its arrival at the sink.
    latencies: Vec<Duration>,
    resent: usize,
    elapsed: Duration,
}

impl World {
    /// The workload, plus `stored` events already in the store.
    async fn new(shape: &Shape, stored: usize) -> Self {
        let server = FakeApiServer::start().await.unwrap();
        let sink = SentrySink::start().await.unwrap();
        let dir = harness::tempdir::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let mut pods = Vec::new();
        for n in 0..shape.namespaces {
            let namespace = format!("team-{n:02}");
            for d in 0..shape.deployments_per_namespace {
                let chain = deployment_chain(
                    &server,
                    &namespace,
                    &format!("app-{d:02}"),
                    shape.pods_per_deployment,
                );
                pods.extend(chain.pods.iter().map(|pod| Pod {
                    namespace: namespace.clone(),
                    name: pod["metadata"]["name"].as_str().unwrap().to_string(),
                    uid: pod["metadata"]["uid"].as_str().unwrap().to_string(),
                }));
            }
        }
        let world = Self {
            server,
            sink,
            kubeconfig,
            pods,
            _dir: dir,
        };
        if stored > 0 {
            world.server.create_all(world.events(0, stored)).unwrap();
        }
        world
    }

    /// Creates events `first..first + count` at `per_second`; when each was written.
    async fn paced(&self, first: usize, count: usize, per_second: u64) -> Vec<Instant> {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second as u32);
        let mut writes = Vec::with_capacity(count);
        for event in self.events(first, count) {
            tick.tick().await;
            writes.push(Instant::now());
            self.server.create(event).unwrap();
        }
        writes
    }

    /// Events `first..first + count`, spread over the pods in turn.
    fn events(&self, first: usize, count: usize) -> Vec<Value> {
        (first..first + count)
            .map(|i| {
                let pod = &self.pods[i % self.pods.len()];
                EventFixture::warning(
                    &pod.namespace,
                    &format!("{}.{i:08x}", pod.name),
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container app in pod {}_{} (#{i})",
                        pod.name, pod.namespace
                    ),
                )
                .about("Pod", &pod.name)
                .involved_uid(&pod.uid)
                .container("app")
                .source("kubelet", Some("node-1"))
                .build()
            })
            .collect()
    }

    fn mark_requests(&self) -> u64 {
        // Sequence numbers start at 1; `requests(n)` answers those after n.
        self.server.requests(0).last().map_or(0, |r| r.seq)
    }

    fn mark(&self, agent: impl Into<Pid>) -> Mark {
        let pid = agent.into().0;
        usage::reset_peak(pid);
        Mark {
            pid,
            usage: usage::read(pid),
            requests: self.mark_requests(),
            envelopes: self.sink.envelopes().len(),
        }
    }

    /// Waits for events `first..first + writes.len()` at the sink; counts repeats.
    async fn delivered(&self, since: &Mark, first: usize, writes: &[Instant]) -> Delivered {
        let expected = writes.len();
        let deadline = Instant::now() + DEADLINE;
        let start = writes.first().copied().unwrap_or_else(Instant::now);
        loop {
            let envelopes = self.sink.envelopes();
            let mut arrived: HashMap<usize, Instant> = HashMap::new();
            let mut resent = 0;
            let mut last = start;
            for envelope in &envelopes[since.envelopes..] {
                for item in envelope.items.iter().filter(|i| i.item_type() == "event") {
                    let Some(i) = marker(&item.payload) else {
                        continue;
                    };
                    if !(first..first + expected).contains(&i) {
                        continue;
                    }
                    let at = envelope.received.into_std();
                    last = last.max(at);
                    if arrived.insert(i, at).is_some() {
                        resent += 1;
                    }
                }
            }
            if arrived.len() == expected {
                let latencies = arrived
                    .iter()
                    .map(|(i, at)| at.saturating_duration_since(writes[i - first]))
                    .collect();
                return Delivered {
                    latencies,
                    resent,
                    elapsed: last - start,
                };
            }
            assert!(
                Instant::now() < deadline,
                "{} of {expected} events delivered after {DEADLINE:?}",
                arrived.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn record(
        &self,
        scenario: &str,
        since: &Mark,
        agent: &Agent,
        delivered: &Delivered,
        results: &mut Results,
    ) {
        let now = agent.usage();
        let events = delivered.latencies.len();
        let cpu = now.cpu.saturating_sub(since.usage.cpu).as_secs_f64();
        let envelopes = &self.sink.envelopes()[since.envelopes..];
        let bytes: usize = envelopes.iter().map(|e| e.wire_bytes).sum();
        let requests = self.server.requests(since.requests).len();
        let mut latencies = delivered.latencies.clone();
        latencies.sort();
        let quantile = |q: f64| {
            latencies
                .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let set =
            |results: &mut Results, figure: &str, value: f64| results.set(scenario, figure, value);
        set(results, "events", events as f64);
        set(results, "delivered", events as f64);
        set(results, "resent", delivered.resent as f64);
        set(results, "CPU s", cpu);
        set(results, "CPU ms per event", cpu * 1000.0 / events as f64);
        set(
            results,
            "events/s",
            events as f64 / delivered.elapsed.as_secs_f64().max(0.001),
        );
        set(results, "peak RSS MiB", mib(now.peak_kib));
        set(results, "RSS after MiB", mib(now.rss_kib));
        set(results, "anon after MiB", mib(now.anon_kib));
        set(results, "apiserver requests", requests as f64);
        set(results, "envelopes", envelopes.len() as f64);
        set(results, "KiB sent", bytes as f64 / 1024.0);
        set(results, "p50 ms", quantile(0.50));
        set(results, "p99 ms", quantile(0.99));
        println!(
            "{scenario}: {events} events in {:.2} s, {cpu:.2} s CPU ({:.3} ms per event), {:.1} MiB RSS after, p99 {:.1} ms",
            delivered.elapsed.as_secs_f64(),
            cpu * 1000.0 / events as f64,
            mib(now.rss_kib),
            quantile(0.99)
        );
        assert_eq!(delivered.resent, 0, "{scenario}: events resent");
        assert_eq!(since.pid, agent.pid().0);
    }
}

/// The marker `(#N)` at the end of a benchmark event's message.
fn marker(event: &Value) -> Option<usize> {
    let message = event["message"]
        .as_str()
        .or_else(|| event["logentry"]["formatted"].as_str())?;
    let (_, tail) = message.rsplit_once("(#")?;
    tail.strip_suffix(')')?.parse().ok()
}

#[derive(Clone, Copy)]
struct Pid(u32);

impl From<&Agent> for Pid {
    fn from(agent: &Agent) -> Self {
        agent.pid()
    }
}

/// The release agent, as its own process.
struct Agent {
    child: Child,
    address: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn spawn(world: &World) -> Self {
        let address = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        // BENCH_AGENT_BINARY measures another build of the agent (the image's, built with
        // the Dockerfile's command); BENCH_AGENT_WRAPPER runs it under a profiler
        // (`heaptrack`, `valgrind --tool=massif`): the figures then measure the wrapper too.
        let binary = std::env::var("BENCH_AGENT_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sentry-kubernetes").to_string());
        let wrapper = std::env::var("BENCH_AGENT_WRAPPER").unwrap_or_default();
        let mut words: Vec<&str> = wrapper.split_whitespace().collect();
        words.push(&binary);
        let mut command = Command::new(words[0]);
        command.args(&words[1..]).env_clear();
        if !wrapper.is_empty() {
            command.env("PATH", std::env::var("PATH").unwrap_or_default());
        }
        let mut child = command
            .env("SENTRY_DSN", world.sink.dsn())
            .env("SENTRY_K8S_KUBECONFIG_PATH", &world.kubeconfig)
            .env("SENTRY_K8S_CLUSTER_CONFIG_TYPE", "out-cluster")
            .env("SENTRY_K8S_WATCH_NAMESPACES", "__all__")
            .env("SENTRY_K8S_HTTP_ADDR", &address)
            .env("SENTRY_K8S_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let stream = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            address,
            stderr,
        }
    }

    fn pid(&self) -> Pid {
        Pid(self.child.id())
    }

    fn usage(&self) -> usage::Usage {
        usage::read(self.child.id())
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn is_ready(&self) -> bool {
        probe::is_ok(&self.address, "/readyz")
    }

    fn metric(&self, series: &str) -> f64 {
        probe::metric(&self.address, series)
    }

    async fn ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        while !self.is_ready() {
            assert!(
                Instant::now() < deadline,
                "the agent never became ready: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then the exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}+changes")
    } else {
        head
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}
