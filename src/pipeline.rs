//! The pipeline, in one place:
//!
//! ```text
//! source → normalize (events) ─┬→ dedup → filter ─┬→ owners, crash logs (concurrent, order
//!          pods (terminations) ┘                  │   kept) → breadcrumbs → route → convert
//!                                                 │   → deliver (the leader only)
//!                                                 └ (Normal, history: breadcrumbs only)
//! ```
//!
//! [`Tracker`] is the synchronous front: which observations are occurrences, which are
//! reported, and the checkpoint's books. Events and containers' terminations are both
//! occurrences, deduplicated alike. The first list of each watch in a generation is judged
//! against the checkpoint it resumes from; without one (a first start) it is history —
//! remembered, not reported — unless historical replay is on. What a first list finds new
//! is reported oldest first once it is complete. Owner chains (and, for a crash, the
//! container's last lines) are resolved with bounded concurrency, then [`Reporter`]
//! records every occurrence in the breadcrumb trail and sends the reported ones, in order.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{Stream, StreamExt, stream};
use tracing::{debug, warn};

use crate::breadcrumbs::TrailLimits;
use crate::checkpoint::{
    CLOCK_SKEW, Checkpoint, CrashId, CrashState, Ledger, Mark, Ticket, scope_key,
};
use crate::config::Config;
use crate::convert::{self, ClusterInfo, Settings};
use crate::crons::slug::SlugBook;
use crate::dedup::{SeenEvents, Verdict};
use crate::delivery::lane::Done;
use crate::delivery::{Delivery, Handoff};
use crate::enrich::{Enricher, Nodes};
use crate::event::KubeEvent;
use crate::filter::{Filtered, Filters};
use crate::gke::Gke;
use crate::health::Health;
use crate::leadership::Leadership;
use crate::logs::{ContainerLog, LogReader};
use crate::metrics::Metrics;
use crate::normalize::{Malformed, normalize};
use crate::owners::cache::{CacheLimits, Meta};
use crate::owners::{Chain, OwnerResolver, readable_resource};
use crate::pods::PodView;
use crate::routing::{self, Router};
use crate::scrub::Scrubber;
use crate::shutdown::Shutdown;
use crate::source::{Object, SourceItem, Watch, WatchedResource};
use crate::storm::{Admit, StormControl, StormReason};

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
    /// What this generation's first list is judged against, when it resumes: the mark,
    /// and the checkpoint (when it was written, and the crashes it names).
    resume: Option<(Mark, Arc<Checkpoint>)>,
    /// The first list's news, reported oldest first when it completes.
    backlog: Vec<Occurrence>,
}

/// Stage one: normalize, dedup, decide, and keep the checkpoint's books. Synchronous and in
/// order.
pub struct Tracker {
    filters: Filters,
    historical: bool,
    event_ttl: Duration,
    scrubber: Arc<Scrubber>,
    metrics: Metrics,
    health: Arc<Health>,
    seen: SeenEvents,
    watches: Vec<WatchState>,
    /// What each watch watches.
    resources: Vec<WatchedResource>,
    /// The checkpoint scope of each watch (`events/<namespace>`, `pods/<namespace>`).
    scopes: Vec<String>,
    ledger: Arc<Mutex<Ledger>>,
    /// Where pods run, as the pod watch sees it (read by the enricher).
    nodes: Nodes,
    /// Whether this generation reports (a follower only keeps its state warm).
    leading: bool,
    told_unordered: bool,
}

impl Tracker {
    pub fn new(
        config: &Config,
        watches: &[Watch],
        metrics: Metrics,
        health: Arc<Health>,
        ledger: Arc<Mutex<Ledger>>,
        nodes: Nodes,
    ) -> Self {
        let scopes: Vec<String> = watches
            .iter()
            .map(|w| scope_key(w.resource.as_str(), w.scope.as_deref()))
            .collect();
        Self {
            filters: Filters::from_config(config),
            historical: config.historical,
            event_ttl: config.event_ttl,
            scrubber: Arc::new(Scrubber::new(&config.scrub_patterns)),
            seen: SeenEvents::new(config.dedup_capacity, config.event_ttl),
            watches: scopes.iter().map(|_| WatchState::default()).collect(),
            resources: watches.iter().map(|w| w.resource).collect(),
            scopes,
            ledger,
            nodes,
            leading: true,
            told_unordered: false,
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
            SourceItem::ListStarted { watch, generation } => {
                self.metrics.relists.inc();
                let state = &mut self.watches[watch];
                if let Some(generation) = generation {
                    // A new generation: its first list decides like a first start, against
                    // the checkpoint when there is one.
                    self.leading = generation.leader;
                    state.synced = false;
                    state.backlog.clear();
                    state.resume = generation.resume.as_ref().and_then(|checkpoint| {
                        let mark = checkpoint.mark(&self.scopes[watch])?;
                        Some((mark.clone(), checkpoint.clone()))
                    });
                }
                state.listing = true;
                self.ledger
                    .lock()
                    .unwrap()
                    .list_started(&self.scopes[watch]);
                Vec::new()
            }
            SourceItem::Listed { watch, object } | SourceItem::Applied { watch, object } => {
                match object {
                    Object::Event(object) => {
                        let Some(event) = self.read(object) else {
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
                        if let Ok(event) = normalize(object) {
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
            SourceItem::Failed { watch, kind } => {
                self.metrics.watch_errors.inc((self.resources[watch], kind));
                Vec::new()
            }
        }
    }

    fn read(&self, object: crate::normalize::EventObject) -> Option<KubeEvent> {
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

    /// Records an occurrence that will not be reported in the checkpoint's books; `crash`
    /// names a termination decided by this observation (not one seen again, which may
    /// still be waiting for delivery).
    fn decided(&mut self, watch: usize, rv: Option<u64>, crash: Option<CrashId>) {
        let mut ledger = self.ledger.lock().unwrap();
        if let Some(crash) = crash {
            ledger.settled(crash);
        }
        if let Some(rv) = rv {
            let gave_up = ledger.decided(&self.scopes[watch], rv);
            self.metrics
                .checkpoint_abandoned
                .inc_by(gave_up.pending as u64);
        }
    }

    /// The checkpoint this watch's first list resumes from names `event` as a crash still
    /// pending delivery.
    fn resumes_pending(&self, watch: usize, event: &KubeEvent) -> bool {
        let state = &self.watches[watch];
        let first_list = state.listing && !state.synced;
        first_list
            && state.resume.as_ref().is_some_and(|(_, checkpoint)| {
                CrashId::of(event).and_then(|id| checkpoint.crash(&id)) == Some(CrashState::Pending)
            })
    }

    /// An occurrence to report (if this generation reports), with its ticket: unless Normal,
    /// or a termination as old as an expired event (seen again only because its dedup
    /// entry was evicted or expired meanwhile).
    fn reported(&mut self, watch: usize, rv: Option<u64>, event: KubeEvent) -> Occurrence {
        let expired = event.finished_at().is_some_and(|finished| {
            (Utc::now() - finished).to_std().unwrap_or_default() > self.event_ttl
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
        let report = self.leading && filtered.is_none();
        let crash = CrashId::of(&event);
        let ticket = match (report, rv) {
            (true, Some(rv)) => {
                let (ticket, gave_up) =
                    Ledger::pending(&self.ledger, &self.scopes[watch], rv, crash);
                self.metrics
                    .checkpoint_abandoned
                    .inc_by(gave_up.pending as u64);
                Some(ticket)
            }
            _ => {
                self.decided(watch, rv, crash);
                None
            }
        };
        Occurrence {
            event,
            report,
            ticket,
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
        if let Some(uid) = pod.identity() {
            self.nodes.record(uid, &pod.node);
            self.nodes
                .record(format!("{}/Pod/{}", pod.namespace(), pod.name()), &pod.node);
        }
        let mut occurrences = Vec::new();
        for termination in pod.terminations() {
            // A crash still pending delivery at the checkpoint was reported before the pod
            // was deleted: it is reported again, like any pending one.
            if pod.deleting && !self.resumes_pending(watch, &termination) {
                // Stopped on purpose: remembered, counted once, never reported.
                let rv = self.version(&termination);
                if self.seen.observe(&termination, Instant::now()).verdict != Verdict::Duplicate {
                    self.metrics.filtered.inc(Filtered::PodDeleting);
                }
                self.decided(watch, rv, None);
                continue;
            }
            occurrences.extend(self.observe(watch, termination));
        }
        occurrences
    }

    fn observe(&mut self, watch: usize, mut event: KubeEvent) -> Option<Occurrence> {
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
        if !duplicate && event.termination.is_some() {
            // A termination message is what the container wrote: scrubbed like its logs.
            if let (message, 1..) = self.scrubber.scrub(&event.message) {
                event.message = message.into_owned();
            }
        }
        let crash = CrashId::of(&event);
        let state = &self.watches[watch];
        let first_list = state.listing && !state.synced;
        // This observation decides a crash (for the checkpoint's record of crashes) unless
        // it is one seen again since this generation began, perhaps still in delivery.
        let decides = !duplicate || (first_list && state.resume.is_some());
        // News: an occurrence not reported yet. A resumed list judges by the checkpoint
        // (what a follower already saw is still news to Sentry); a first start by
        // SENTRY_K8S_WATCH_HISTORICAL; anything else by dedup.
        let (news, resumed) = match (&state.resume, first_list) {
            (Some((mark, checkpoint)), true) => {
                let news = match crash.and_then(|id| checkpoint.crash(&id)) {
                    // Named by the checkpoint: still pending delivery (news, however long
                    // ago it ended and whatever its pod did since), or decided.
                    Some(CrashState::Pending) => true,
                    Some(CrashState::Done) => false,
                    None => {
                        // A pod changes for many reasons after a crash: its termination is
                        // news only if it also ended after the checkpoint was written (less
                        // clock skew).
                        let after = match (event.finished_at(), checkpoint.at) {
                            (Some(finished), Some(written)) => finished > written - CLOCK_SKEW,
                            _ => true,
                        };
                        after && rv.is_none_or(|rv| !mark.decided(rv))
                    }
                };
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
            self.decided(watch, rv, crash.filter(|_| decides));
            return None;
        }
        if !news {
            self.decided(watch, rv, crash.filter(|_| decides));
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
        if !occurrence.report {
            // Only remembered (history, Normal, a follower's): owners as far as already
            // known, never a request. Its breadcrumb joins the workload when a reported
            // occurrence resolves the chain.
            return (resolver.known_chain(&involved), None);
        }
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

/// Stage three: breadcrumbs, routing, conversion and delivery, in order; only the leader
/// delivers.
pub struct Reporter {
    enricher: Enricher,
    router: Router,
    storm: StormControl,
    window: Duration,
    limit: usize,
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
        nodes: Nodes,
    ) -> Self {
        let limits = TrailLimits {
            workloads: config.breadcrumb_workloads,
            per_workload: config.breadcrumbs_per_workload,
        };
        Self {
            enricher: Enricher::new(limits, config.breadcrumbs, nodes),
            router: Router::new(config.custom_dsns),
            storm: StormControl::new(
                config.max_events_per_issue,
                config.issue_window,
                config.storm_issues,
            ),
            window: config.issue_window,
            limit: config.max_events_per_issue,
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
            logs,
        } = resolved;
        let (enrichment, evictions) = self.enricher.observe(&event, chain, report);
        self.metrics
            .trail_recorded(evictions, self.enricher.workloads());
        let Some(mut enrichment) = enrichment else {
            if let Some(ticket) = ticket {
                ticket.decided();
            }
            return;
        };
        enrichment.logs = logs;
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
        let mut report =
            convert::to_sentry_event(&event, &enrichment, &self.settings, chrono::Utc::now());
        // Storm control, per Sentry issue: held back, counted, decided (never sent later).
        match self.storm.admit(&report.event.fingerprint, Instant::now()) {
            Admit::Suppress { first } => {
                if first {
                    tracing::warn!(
                        namespace = %event.namespace,
                        reason = %event.reason,
                        fingerprint = ?report.event.fingerprint,
                        limit = self.limit,
                        window_secs = self.window.as_secs(),
                        "storm control: issue over its limit; further occurrences in this window are counted, not sent"
                    );
                }
                self.metrics
                    .occurrences_suppressed
                    .inc(StormReason::of(&event.reason));
                self.metrics.storm_issues.set(self.storm.tracked() as i64);
                if let Some(ticket) = ticket {
                    ticket.decided();
                }
                return;
            }
            Admit::Report { suppressed } if suppressed > 0 => {
                convert::add_suppressed(&mut report, suppressed, self.limit, self.window);
            }
            Admit::Report { .. } => {}
        }
        self.metrics.storm_issues.set(self.storm.tracked() as i64);
        if let Some(at) = event.occurred_at() {
            let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.event_lag.observe(lag);
        }
        debug!(namespace = %event.namespace, reason = %event.reason, object = %event.involved.name, root = %enrichment.chain.root().name, "reporting");
        let done = ticket.map(|ticket| -> Done { Box::new(move |_fate| ticket.decided()) });
        if self.delivery.deliver(report, &destination, done).await != Handoff::Dropped {
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
    /// The stages for `config`; `watches` are the source's, in its order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        client: kube::Client,
        delivery: Arc<Delivery>,
        metrics: &Metrics,
        health: Arc<Health>,
        watches: &[Watch],
        ledger: Arc<Mutex<Ledger>>,
        leadership: Leadership,
    ) -> Self {
        let limits = CacheLimits {
            capacity: config.owner_cache_size,
            ttl: config.owner_cache_ttl,
        };
        let nodes = Nodes::default();
        let tracker = Tracker::new(
            config,
            watches,
            metrics.clone(),
            health.clone(),
            ledger,
            nodes.clone(),
        );
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
            reporter: Reporter::new(config, metrics.clone(), delivery, leadership, nodes),
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

    /// The `kubernetes` context (API endpoint, server version) on every event.
    #[must_use]
    pub fn with_cluster(mut self, cluster: ClusterInfo) -> Self {
        self.reporter.settings.kubernetes = Some(cluster);
        self
    }

    /// The `monitor` context on events under a CronJob, with the slugs the Crons monitor
    /// keeps.
    #[must_use]
    pub fn with_monitors(mut self, monitors: Option<SlugBook>) -> Self {
        self.reporter.settings.monitors = monitors;
        self
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
