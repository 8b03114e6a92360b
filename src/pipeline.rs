//! The pipeline, in one place:
//!
//! ```text
//! source → normalize (events) ─┬→ dedup → filter ─┬→ owners, crash logs (concurrent, order
//!          pods (terminations) ┘                  │   kept) → breadcrumbs → route → convert
//!                                                 │   → deliver
//!                                                 └ (Normal, history: breadcrumbs only)
//! ```
//!
//! [`Tracker`] is the synchronous front: which observations are occurrences, which are
//! reported. Events and containers' terminations are both occurrences, deduplicated alike.
//! The first list of each watch is history — remembered, not reported — unless historical
//! replay is on, when it is reported oldest first once the list is complete. Owner chains
//! (and, for a crash, the container's last lines) are resolved with bounded concurrency,
//! then [`Reporter`] records every occurrence in the breadcrumb trail and sends the
//! reported ones, in order.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream};
use tracing::{debug, warn};

use crate::breadcrumbs::TrailLimits;
use crate::config::Config;
use crate::convert::{self, Settings};
use crate::dedup::{SeenEvents, Verdict};
use crate::delivery::{Delivery, Handoff};
use crate::enrich::Enricher;
use crate::event::KubeEvent;
use crate::filter::{Filtered, Filters};
use crate::gke::Gke;
use crate::health::Health;
use crate::logs::{ContainerLog, LogReader};
use crate::metrics::Metrics;
use crate::normalize::{Malformed, normalize};
use crate::owners::cache::{CacheLimits, Meta};
use crate::owners::{Chain, OwnerResolver, readable_resource};
use crate::pods::PodView;
use crate::routing::{self, Router};
use crate::scrub::Scrubber;
use crate::shutdown::Shutdown;
use crate::source::{Object, SourceItem};

/// How often the pipeline proves it is alive while idle.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One occurrence on its way: reported, or only remembered as a breadcrumb.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub event: KubeEvent,
    pub report: bool,
}

#[derive(Default)]
struct WatchState {
    /// Inside a list (first or relist).
    listing: bool,
    /// The first list has completed; everything after it is news.
    synced: bool,
    /// Historical replay: the first list's occurrences, reported when it completes.
    backlog: Vec<KubeEvent>,
}

/// Stage one: normalize, dedup, decide. Synchronous and in order.
pub struct Tracker {
    filters: Filters,
    historical: bool,
    event_ttl: Duration,
    scrubber: Arc<Scrubber>,
    metrics: Metrics,
    health: Arc<Health>,
    seen: SeenEvents,
    watches: Vec<WatchState>,
}

impl Tracker {
    pub fn new(config: &Config, metrics: Metrics, health: Arc<Health>, watches: usize) -> Self {
        Self {
            filters: Filters::from_config(config),
            historical: config.historical,
            event_ttl: config.event_ttl,
            scrubber: Arc::new(Scrubber::new(&config.scrub_patterns)),
            seen: SeenEvents::new(config.dedup_capacity, config.event_ttl),
            watches: (0..watches).map(|_| WatchState::default()).collect(),
            metrics,
            health,
        }
    }

    /// What scrubs container output (termination messages here, log lines later).
    pub fn scrubber(&self) -> Arc<Scrubber> {
        self.scrubber.clone()
    }

    /// The occurrences one source item yields (a completed first list may yield many).
    pub fn handle(&mut self, item: SourceItem) -> Vec<Occurrence> {
        match item {
            SourceItem::ListStarted { watch } => {
                self.metrics.relists.inc();
                self.watches[watch].listing = true;
                Vec::new()
            }
            SourceItem::Listed { watch, object } | SourceItem::Applied { watch, object } => {
                match object {
                    Object::Event(object) => {
                        let Some(event) = self.read(&object) else {
                            return Vec::new();
                        };
                        self.observe(watch, event).into_iter().collect()
                    }
                    Object::Pod(pod) => self.observe_pod(watch, &pod),
                }
            }
            SourceItem::ListDone { watch } => self.list_done(watch),
            SourceItem::Deleted { object, .. } => {
                match object {
                    Object::Event(object) => {
                        if let Ok(event) = normalize(&object) {
                            self.seen.forget(&event.uid);
                        }
                    }
                    Object::Pod(pod) => {
                        for container in &pod.containers {
                            if let Some(key) = pod.termination_key(&container.name) {
                                self.seen.forget(&key);
                            }
                        }
                    }
                }
                self.metrics.dedup_entries.set(self.seen.len() as i64);
                Vec::new()
            }
            SourceItem::Failed { kind, .. } => {
                self.metrics.watch_errors.inc(kind);
                Vec::new()
            }
        }
    }

    fn read(&self, object: &kube::api::DynamicObject) -> Option<KubeEvent> {
        match normalize(object) {
            Ok(event) => {
                self.metrics.events_received.inc(event.type_label());
                Some(event)
            }
            Err(why) => {
                self.metrics.malformed.inc(why);
                warn!(
                    reason = why.as_str(),
                    "skipped an object that is not a readable event"
                );
                None
            }
        }
    }

    /// The failed terminations a pod shows, each an occurrence the first time it is seen.
    fn observe_pod(&mut self, watch: usize, pod: &PodView) -> Vec<Occurrence> {
        self.metrics.pods_received.inc();
        if pod.identity().is_none() {
            self.metrics.malformed.inc(Malformed::NoIdentity);
            warn!("skipped a pod with neither a uid nor a name");
            return Vec::new();
        }
        let mut occurrences = Vec::new();
        for mut termination in pod.terminations() {
            if !self.is_new(&termination) {
                continue;
            }
            if pod.deleting {
                // Stopped on purpose: remembered, counted once, never reported.
                self.metrics.filtered.inc(Filtered::PodDeleting);
                continue;
            }
            // A termination message is what the container wrote: scrubbed like its logs.
            if let (message, 1..) = self.scrubber.scrub(&termination.message) {
                termination.message = message.into_owned();
            }
            occurrences.extend(self.classify(watch, termination));
        }
        occurrences
    }

    /// Records an observation; true if it is a new occurrence.
    fn is_new(&mut self, event: &KubeEvent) -> bool {
        let observation = self.seen.observe(event, Instant::now());
        self.metrics.observed(&observation);
        if observation.evictions.capacity > 0 {
            debug!(
                capacity = self.seen.capacity(),
                "dedup capacity reached; forgot the least recently seen event"
            );
        }
        observation.verdict != Verdict::Duplicate
    }

    fn list_done(&mut self, watch: usize) -> Vec<Occurrence> {
        let state = &mut self.watches[watch];
        state.listing = false;
        if state.synced {
            return Vec::new();
        }
        state.synced = true;
        let mut backlog = std::mem::take(&mut state.backlog);
        if self.health.watch_ready(watch) {
            self.metrics.watches_ready.inc();
        }
        backlog.sort_by_key(|e| e.occurred_at());
        if !backlog.is_empty() {
            debug!(
                events = backlog.len(),
                "replaying stored events, oldest first"
            );
        }
        backlog
            .into_iter()
            .map(|event| self.decide(event))
            .collect()
    }

    fn observe(&mut self, watch: usize, event: KubeEvent) -> Option<Occurrence> {
        if !self.is_new(&event) {
            return None;
        }
        self.classify(watch, event)
    }

    /// What becomes of a new occurrence: dropped by a filter, kept as history, reported.
    fn classify(&mut self, watch: usize, event: KubeEvent) -> Option<Occurrence> {
        // Filtered-out reasons and sources are noise by the operator's word: not even
        // breadcrumbs. Normal events are breadcrumbs only.
        if let Some(filtered @ (Filtered::Reason | Filtered::Source)) =
            self.filters.excludes(&event)
        {
            self.metrics.filtered.inc(filtered);
            return None;
        }
        let state = &mut self.watches[watch];
        if state.listing && !state.synced {
            if self.historical {
                state.backlog.push(event);
                return None;
            }
            self.metrics.filtered.inc(Filtered::Historical);
            return Some(Occurrence {
                event,
                report: false,
            });
        }
        Some(self.decide(event))
    }

    /// Reported, unless Normal or a termination as old as an expired event (seen again
    /// only because its dedup entry was evicted or expired meanwhile).
    fn decide(&self, event: KubeEvent) -> Occurrence {
        let expired = event.finished_at().is_some_and(|finished| {
            (chrono::Utc::now() - finished).to_std().unwrap_or_default() > self.event_ttl
        });
        let filtered = if event.is_normal() {
            Some(Filtered::Normal)
        } else if expired {
            Some(Filtered::Expired)
        } else {
            None
        };
        if let Some(filtered) = filtered {
            self.metrics.filtered.inc(filtered);
        }
        Occurrence {
            report: filtered.is_none(),
            event,
        }
    }
}

/// Stage two: the owner chain of an occurrence, its namespace's metadata when routing
/// needs it, and a reported crash's last log lines when they are wanted.
pub struct Resolved {
    pub occurrence: Occurrence,
    pub chain: Chain,
    pub namespace: Option<Arc<Meta>>,
    pub logs: Option<ContainerLog>,
}

async fn resolve(
    resolver: OwnerResolver,
    custom_dsns: bool,
    logs: Option<Arc<LogReader>>,
    metrics: Metrics,
    occurrence: Occurrence,
) -> Resolved {
    let read_logs = async {
        let reader = logs.filter(|_| occurrence.report)?;
        let (log, outcome) = reader.read(&occurrence.event).await;
        if let Some(outcome) = outcome {
            metrics.container_logs.inc(outcome);
        }
        log
    };
    let mut involved = occurrence.event.involved.clone();
    // Events about namespaced objects sometimes leave the object's namespace out.
    if involved.namespace.is_empty()
        && involved.kind != "Namespace"
        && readable_resource(&involved.api_version, &involved.kind).is_some()
    {
        involved.namespace = occurrence.event.namespace.clone();
    }
    let owners = async {
        let chain = resolver.chain(&involved).await;
        let namespace = if occurrence.report && routing::needs_namespace(&chain, custom_dsns) {
            resolver.namespace(&occurrence.event.namespace).await
        } else {
            None
        };
        (chain, namespace)
    };
    let ((chain, namespace), logs) = futures::join!(owners, read_logs);
    Resolved {
        occurrence,
        chain,
        namespace,
        logs,
    }
}

/// Stage three: breadcrumbs, routing, conversion and delivery, in order.
pub struct Reporter {
    enricher: Enricher,
    router: Router,
    settings: Settings,
    delivery: Arc<Delivery>,
    metrics: Metrics,
}

impl Reporter {
    pub fn new(config: &Config, metrics: Metrics, delivery: Arc<Delivery>) -> Self {
        let limits = TrailLimits {
            workloads: config.breadcrumb_workloads,
            per_workload: config.breadcrumbs_per_workload,
        };
        Self {
            enricher: Enricher::new(limits, config.breadcrumbs),
            router: Router::new(config.custom_dsns),
            settings: Settings::from_config(config),
            delivery,
            metrics,
        }
    }

    pub async fn handle(&mut self, resolved: Resolved) {
        let Resolved {
            occurrence: Occurrence { event, report },
            chain,
            namespace,
            logs,
        } = resolved;
        let (enrichment, evictions) = self.enricher.observe(&event, chain, report);
        self.metrics
            .trail_recorded(evictions, self.enricher.workloads());
        let Some(mut enrichment) = enrichment else {
            return;
        };
        enrichment.logs = logs;
        let route = self.router.route(&enrichment.chain, namespace.as_deref());
        if let Some(outcome) = route.outcome {
            self.metrics.custom_dsn.inc(outcome);
        }
        let destination = route.destination;
        let sentry_event = convert::to_sentry_event(&event, &enrichment, &self.settings);
        if let Some(at) = event.occurred_at() {
            let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.event_lag.observe(lag);
        }
        debug!(namespace = %event.namespace, reason = %event.reason, object = %event.involved.name, root = %enrichment.chain.root().name, "reporting");
        if self.delivery.deliver(sentry_event, &destination).await != Handoff::Dropped {
            self.metrics.reported.inc();
        }
    }
}

/// The whole pipeline after the source.
pub struct Pipeline {
    tracker: Tracker,
    resolver: OwnerResolver,
    logs: Option<Arc<LogReader>>,
    reporter: Reporter,
    concurrency: NonZeroUsize,
    custom_dsns: bool,
    health: Arc<Health>,
    metrics: Metrics,
}

impl Pipeline {
    /// The stages for `config`: `watches` is how many watches the source merges.
    pub fn new(
        config: &Config,
        client: kube::Client,
        delivery: Arc<Delivery>,
        metrics: &Metrics,
        health: Arc<Health>,
        watches: usize,
    ) -> Self {
        let limits = CacheLimits {
            capacity: config.owner_cache_size,
            ttl: config.owner_cache_ttl,
        };
        let tracker = Tracker::new(config, metrics.clone(), health.clone(), watches);
        let logs = (config.container_logs > 0).then(|| {
            Arc::new(LogReader::new(
                client.clone(),
                config.container_logs,
                tracker.scrubber(),
            ))
        });
        Self {
            tracker,
            resolver: OwnerResolver::new(client, limits, metrics.clone()),
            logs,
            reporter: Reporter::new(config, metrics.clone(), delivery),
            concurrency: config.lookup_concurrency,
            custom_dsns: config.custom_dsns,
            health,
            metrics: metrics.clone(),
        }
    }

    /// Tags and a context for the GKE cluster on every event.
    #[must_use]
    pub fn with_gke(mut self, gke: Option<Gke>) -> Self {
        self.reporter.settings.gke = gke.map(Arc::new);
        self
    }

    /// Runs until the source ends or the shutdown is triggered; then drains what is in
    /// flight until the shutdown deadline.
    pub async fn run<S>(self, source: S, shutdown: Shutdown)
    where
        S: Stream<Item = SourceItem>,
    {
        let Pipeline {
            mut tracker,
            resolver,
            logs,
            mut reporter,
            concurrency,
            custom_dsns,
            health,
            metrics,
        } = self;
        let stop = shutdown.clone();
        let occurrences = source
            .take_until(async move { stop.triggered().await })
            .flat_map(move |item| stream::iter(tracker.handle(item)))
            .map(move |occurrence| {
                resolve(
                    resolver.clone(),
                    custom_dsns,
                    logs.clone(),
                    metrics.clone(),
                    occurrence,
                )
            })
            .buffered(concurrency.get());
        let mut occurrences = std::pin::pin!(occurrences);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            health.beat();
            tokio::select! {
                biased;
                _ = shutdown.deadline() => {
                    warn!("shutdown: gave up on events still in flight");
                    break;
                }
                item = occurrences.next() => match item {
                    Some(resolved) => {
                        // Waiting for room in the delivery queue must not outlast shutdown.
                        tokio::select! {
                            _ = reporter.handle(resolved) => {}
                            _ = shutdown.deadline() => {
                                warn!("shutdown: gave up on an event waiting for the delivery queue");
                                break;
                            }
                        }
                    }
                    None => break,
                },
                _ = heartbeat.tick() => {}
            }
        }
    }
}
