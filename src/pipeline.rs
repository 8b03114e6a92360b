//! The pipeline, in one place:
//!
//! ```text
//! source → normalize → dedup → filter ─┬→ owners (concurrent, order kept) → breadcrumbs
//!                                      │   → route → convert → deliver
//!                                      └ (Normal, history: breadcrumbs only)
//! ```
//!
//! [`Tracker`] is the synchronous front: which observations are occurrences, which are
//! reported. The first list of each watch is history — remembered, not reported — unless
//! historical replay is on, when it is reported oldest first once the list is complete.
//! Owner chains are resolved with bounded concurrency, then [`Reporter`] records every
//! occurrence in the breadcrumb trail and sends the reported ones, in order.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream};
use tracing::{debug, warn};

use crate::breadcrumbs::TrailLimits;
use crate::checkpoint::{Ledger, Mark, Ticket, scope_key};
use crate::config::Config;
use crate::convert::{self, Settings};
use crate::dedup::{SeenEvents, Verdict};
use crate::delivery::lane::Done;
use crate::delivery::{Delivery, Handoff};
use crate::enrich::Enricher;
use crate::event::KubeEvent;
use crate::filter::{Filtered, Filters};
use crate::health::Health;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::normalize::normalize;
use crate::owners::cache::{CacheLimits, Meta};
use crate::owners::{Chain, OwnerResolver, readable_resource};
use crate::routing::{self, Router};
use crate::shutdown::Shutdown;
use crate::source::{SourceItem, WatchedResource, watch_scopes};

/// How often the pipeline proves it is alive while idle.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One occurrence on its way: reported, or only remembered as a breadcrumb. A reported one
/// carries its checkpoint [`Ticket`] until delivery decides its fate.
#[derive(Debug)]
pub struct Occurrence {
    pub event: KubeEvent,
    pub report: bool,
    pub ticket: Option<Ticket>,
}

#[derive(Default)]
struct WatchState {
    /// Inside a list (first or relist).
    listing: bool,
    /// This generation's first list has completed; everything after it is news.
    synced: bool,
    /// What this generation's first list is judged against, when it resumes.
    resume: Option<Mark>,
    /// The first list's news, reported oldest first when it completes.
    backlog: Vec<Occurrence>,
}

/// Stage one: normalize, dedup, decide, and keep the checkpoint's books. Synchronous and in
/// order.
pub struct Tracker {
    filters: Filters,
    historical: bool,
    metrics: Metrics,
    health: Arc<Health>,
    seen: SeenEvents,
    watches: Vec<WatchState>,
    /// The checkpoint scope of each watch (`events/<namespace>`).
    scopes: Vec<String>,
    ledger: Arc<Mutex<Ledger>>,
    /// Whether this generation reports (a follower only keeps its state warm).
    leading: bool,
    told_unordered: bool,
}

impl Tracker {
    pub fn new(
        config: &Config,
        metrics: Metrics,
        health: Arc<Health>,
        ledger: Arc<Mutex<Ledger>>,
    ) -> Self {
        let scopes: Vec<String> = watch_scopes(&config.namespaces)
            .iter()
            .map(|scope| scope_key("events", scope.as_deref()))
            .collect();
        Self {
            filters: Filters::from_config(config),
            historical: config.historical,
            seen: SeenEvents::new(config.dedup_capacity, config.event_ttl),
            watches: scopes.iter().map(|_| WatchState::default()).collect(),
            scopes,
            ledger,
            leading: true,
            told_unordered: false,
            metrics,
            health,
        }
    }

    /// The occurrences one source item yields (a completed first list may yield many).
    pub fn handle(&mut self, item: SourceItem) -> Vec<Occurrence> {
        match item {
            SourceItem::ListStarted { watch, generation } => {
                self.metrics.relists.inc();
                let state = &mut self.watches[watch];
                if let Some(generation) = generation {
                    // A new generation: its first list decides like a first start, against
                    // the checkpoint when there is one.
                    self.leading = generation.leader;
                    state.synced = false;
                    state.backlog.clear();
                    state.resume = generation
                        .resume
                        .as_ref()
                        .and_then(|checkpoint| checkpoint.mark(&self.scopes[watch]))
                        .cloned();
                }
                state.listing = true;
                self.ledger
                    .lock()
                    .unwrap()
                    .list_started(&self.scopes[watch]);
                Vec::new()
            }
            SourceItem::Listed { watch, object } | SourceItem::Applied { watch, object } => {
                let Some(event) = self.read(&object) else {
                    return Vec::new();
                };
                self.observe(watch, event).into_iter().collect()
            }
            SourceItem::ListDone { watch } => self.list_done(watch),
            SourceItem::Deleted { object, .. } => {
                if let Ok(event) = normalize(&object) {
                    self.seen.forget(&event.uid);
                    self.metrics.dedup_entries.set(self.seen.len() as i64);
                }
                Vec::new()
            }
            SourceItem::Failed { kind, .. } => {
                self.metrics
                    .watch_errors
                    .inc((WatchedResource::Events, kind));
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

    fn list_done(&mut self, watch: usize) -> Vec<Occurrence> {
        self.ledger.lock().unwrap().list_done(&self.scopes[watch]);
        let state = &mut self.watches[watch];
        state.listing = false;
        if state.synced {
            return Vec::new();
        }
        state.synced = true;
        state.resume = None;
        let mut backlog = std::mem::take(&mut state.backlog);
        if self.health.watch_ready(watch) {
            self.metrics.watches_ready.inc();
        }
        backlog.sort_by_key(|o| o.event.occurred_at());
        if !backlog.is_empty() {
            debug!(
                events = backlog.len(),
                "reporting what the list found new, oldest first"
            );
        }
        backlog
    }

    /// The object's resourceVersion, the checkpoint's measure.
    fn version(&mut self, event: &KubeEvent) -> Option<u64> {
        let rv = event.resource_version.parse().ok();
        if rv.is_none() && !self.told_unordered {
            self.told_unordered = true;
            warn!(
                resource_version = %event.resource_version,
                "this apiserver's resourceVersions are not numbers: resuming after a restart is unavailable"
            );
        }
        rv
    }

    /// Records an occurrence that will not be reported in the checkpoint's books.
    fn decided(&mut self, watch: usize, rv: Option<u64>) {
        if let Some(rv) = rv {
            let gave_up = self.ledger.lock().unwrap().decided(&self.scopes[watch], rv);
            self.metrics
                .checkpoint_abandoned
                .inc_by(gave_up.pending as u64);
        }
    }

    /// An occurrence to report (if this generation reports), with its ticket.
    fn reported(&mut self, watch: usize, rv: Option<u64>, event: KubeEvent) -> Occurrence {
        let report = self.leading && !event.is_normal();
        if event.is_normal() {
            self.metrics.filtered.inc(Filtered::Normal);
        }
        let ticket = match (report, rv) {
            (true, Some(rv)) => {
                let (ticket, gave_up) = Ledger::pending(&self.ledger, &self.scopes[watch], rv);
                self.metrics
                    .checkpoint_abandoned
                    .inc_by(gave_up.pending as u64);
                Some(ticket)
            }
            _ => {
                self.decided(watch, rv);
                None
            }
        };
        Occurrence {
            event,
            report,
            ticket,
        }
    }

    fn observe(&mut self, watch: usize, event: KubeEvent) -> Option<Occurrence> {
        let rv = self.version(&event);
        let observation = self.seen.observe(&event, Instant::now());
        self.metrics.observed(&observation);
        if observation.evictions.capacity > 0 {
            debug!(
                capacity = self.seen.capacity(),
                "dedup capacity reached; forgot the least recently seen event"
            );
        }
        let duplicate = observation.verdict == Verdict::Duplicate;
        let state = &self.watches[watch];
        let first_list = state.listing && !state.synced;
        // News: an occurrence not reported yet. A resumed list judges by the checkpoint
        // (what a follower already saw is still news to Sentry); a first start by
        // SENTRY_K8S_WATCH_HISTORICAL; anything else by dedup.
        let (news, resumed) = match (&state.resume, first_list) {
            (Some(mark), true) => {
                let news = rv.is_none_or(|rv| !mark.decided(rv));
                (news, news)
            }
            (None, true) => (self.historical && !duplicate, false),
            (_, false) => (!duplicate, false),
        };
        // Filtered-out reasons and sources are noise by the operator's word: not even
        // breadcrumbs.
        if let Some(filtered @ (Filtered::Reason | Filtered::Source)) =
            self.filters.excludes(&event)
        {
            if !duplicate {
                self.metrics.filtered.inc(filtered);
            }
            self.decided(watch, rv);
            return None;
        }
        if !news {
            self.decided(watch, rv);
            if duplicate {
                return None;
            }
            // Stored before this generation started: a breadcrumb for later ones.
            self.metrics.filtered.inc(Filtered::Historical);
            return Some(Occurrence {
                event,
                report: false,
                ticket: None,
            });
        }
        let occurrence = self.reported(watch, rv, event);
        if resumed && occurrence.report {
            self.metrics.occurrences_resumed.inc();
        }
        if first_list {
            self.watches[watch].backlog.push(occurrence);
            return None;
        }
        Some(occurrence)
    }
}

/// Stage two: the owner chain of an occurrence, and its namespace's metadata when routing
/// needs it.
pub struct Resolved {
    pub occurrence: Occurrence,
    pub chain: Chain,
    pub namespace: Option<Arc<Meta>>,
}

async fn resolve(resolver: OwnerResolver, custom_dsns: bool, occurrence: Occurrence) -> Resolved {
    let mut involved = occurrence.event.involved.clone();
    // Events about namespaced objects sometimes leave the object's namespace out.
    if involved.namespace.is_empty()
        && involved.kind != "Namespace"
        && readable_resource(&involved.api_version, &involved.kind).is_some()
    {
        involved.namespace = occurrence.event.namespace.clone();
    }
    let chain = resolver.chain(&involved).await;
    let namespace = if occurrence.report && routing::needs_namespace(&chain, custom_dsns) {
        resolver.namespace(&occurrence.event.namespace).await
    } else {
        None
    };
    Resolved {
        occurrence,
        chain,
        namespace,
    }
}

/// Stage three: breadcrumbs, routing, conversion and delivery, in order; only the leader
/// delivers.
pub struct Reporter {
    enricher: Enricher,
    router: Router,
    settings: Settings,
    delivery: Arc<Delivery>,
    leadership: Leadership,
    metrics: Metrics,
}

impl Reporter {
    pub fn new(
        config: &Config,
        metrics: Metrics,
        delivery: Arc<Delivery>,
        leadership: Leadership,
    ) -> Self {
        let limits = TrailLimits {
            workloads: config.breadcrumb_workloads,
            per_workload: config.breadcrumbs_per_workload,
        };
        Self {
            enricher: Enricher::new(limits, config.breadcrumbs),
            router: Router::new(config.custom_dsns),
            settings: Settings::from_config(config),
            delivery,
            leadership,
            metrics,
        }
    }

    pub async fn handle(&mut self, resolved: Resolved) {
        let Resolved {
            occurrence:
                Occurrence {
                    event,
                    report,
                    ticket,
                },
            chain,
            namespace,
        } = resolved;
        let (enrichment, evictions) = self.enricher.observe(&event, chain, report);
        self.metrics
            .trail_recorded(evictions, self.enricher.workloads());
        let Some(enrichment) = enrichment else {
            if let Some(ticket) = ticket {
                ticket.decided();
            }
            return;
        };
        if !self.leadership.is_leader() {
            // Leadership lost since this generation began: the new leader reports it.
            if let Some(ticket) = ticket {
                ticket.decided();
            }
            return;
        }
        let route = self.router.route(&enrichment.chain, namespace.as_deref());
        if let Some(outcome) = route.outcome {
            self.metrics.custom_dsn.inc(outcome);
        }
        let destination = route.destination;
        let sentry_event =
            convert::to_sentry_event(&event, &enrichment, &self.settings, chrono::Utc::now());
        if let Some(at) = event.occurred_at() {
            let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.event_lag.observe(lag);
        }
        debug!(namespace = %event.namespace, reason = %event.reason, object = %event.involved.name, root = %enrichment.chain.root().name, "reporting");
        let done = ticket.map(|ticket| -> Done { Box::new(move |_fate| ticket.decided()) });
        if self
            .delivery
            .deliver(sentry_event, &destination, done)
            .await
            != Handoff::Dropped
        {
            self.metrics.reported.inc();
        }
    }
}

/// The whole pipeline after the source.
pub struct Pipeline {
    tracker: Tracker,
    resolver: OwnerResolver,
    reporter: Reporter,
    concurrency: NonZeroUsize,
    custom_dsns: bool,
    health: Arc<Health>,
}

impl Pipeline {
    /// The stages for `config`: `watches` is how many watches the source merges.
    pub fn new(
        config: &Config,
        client: kube::Client,
        delivery: Arc<Delivery>,
        metrics: &Metrics,
        health: Arc<Health>,
        ledger: Arc<Mutex<Ledger>>,
        leadership: Leadership,
    ) -> Self {
        let limits = CacheLimits {
            capacity: config.owner_cache_size,
            ttl: config.owner_cache_ttl,
        };
        Self {
            tracker: Tracker::new(config, metrics.clone(), health.clone(), ledger),
            resolver: OwnerResolver::new(client, limits, metrics.clone()),
            reporter: Reporter::new(config, metrics.clone(), delivery, leadership),
            concurrency: config.lookup_concurrency,
            custom_dsns: config.custom_dsns,
            health,
        }
    }

    /// The owner lookups (and their cache), for others that need them (Crons routing).
    pub fn resolver(&self) -> OwnerResolver {
        self.resolver.clone()
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
            mut reporter,
            concurrency,
            custom_dsns,
            health,
        } = self;
        let stop = shutdown.clone();
        let occurrences = source
            .take_until(async move { stop.triggered().await })
            .flat_map(move |item| stream::iter(tracker.handle(item)))
            .map(move |occurrence| resolve(resolver.clone(), custom_dsns, occurrence))
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
