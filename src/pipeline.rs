//! The pipeline, in one place:
//!
//! ```text
//! source → normalize → dedup → filter ─┬→ owners (concurrent, order kept) → breadcrumbs
//!                                      │   → convert → deliver
//!                                      └ (Normal, history: breadcrumbs only)
//! ```
//!
//! [`Tracker`] is the synchronous front: which observations are occurrences, which are
//! reported. The first list of each watch is history — remembered, not reported — unless
//! historical replay is on, when it is reported oldest first once the list is complete.
//! Owner chains are resolved with bounded concurrency, then [`Reporter`] records every
//! occurrence in the breadcrumb trail and sends the reported ones, in order.

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
use crate::health::Health;
use crate::metrics::Metrics;
use crate::normalize::normalize;
use crate::owners::{Chain, OwnerResolver};
use crate::source::SourceItem;

/// How often the pipeline proves it is alive while idle.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Why an occurrence is not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    Normal,
    Reason,
    Source,
}

impl Filtered {
    fn as_label(self) -> &'static str {
        match self {
            Filtered::Normal => "normal",
            Filtered::Reason => "reason",
            Filtered::Source => "source",
        }
    }
}

/// The reporting rules: Warning (anything not Normal), minus the reason and source filters.
pub fn filter(event: &KubeEvent, config: &Config) -> Option<Filtered> {
    if event.is_normal() {
        return Some(Filtered::Normal);
    }
    if config
        .filter_out_reasons
        .contains(&event.reason.to_ascii_lowercase())
    {
        return Some(Filtered::Reason);
    }
    let component = event.component().to_ascii_lowercase();
    if !component.is_empty() && config.filter_out_sources.contains(&component) {
        return Some(Filtered::Source);
    }
    None
}

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
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    seen: SeenEvents,
    watches: Vec<WatchState>,
}

impl Tracker {
    pub fn new(config: Arc<Config>, metrics: Metrics, health: Arc<Health>, watches: usize) -> Self {
        Self {
            seen: SeenEvents::new(config.dedup_capacity, config.event_ttl),
            watches: (0..watches).map(|_| WatchState::default()).collect(),
            config,
            metrics,
            health,
        }
    }

    /// The occurrences one source item yields (a completed first list may yield many).
    pub fn handle(&mut self, item: SourceItem) -> Vec<Occurrence> {
        match item {
            SourceItem::ListStarted { watch } => {
                self.watches[watch].listing = true;
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
        }
    }

    fn read(&self, object: &kube::api::DynamicObject) -> Option<KubeEvent> {
        match normalize(object) {
            Ok(event) => {
                let kind = match event.event_type.as_str() {
                    "Warning" => "warning",
                    "Normal" => "normal",
                    _ => "other",
                };
                Metrics::inc(&self.metrics.events_received, "type", kind);
                Some(event)
            }
            Err(why) => {
                Metrics::inc(&self.metrics.malformed, "reason", why.as_label());
                warn!(
                    reason = why.as_label(),
                    "skipped an object that is not a readable event"
                );
                None
            }
        }
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
        let (verdict, evictions) = self.seen.observe(&event, Instant::now());
        Metrics::add(
            &self.metrics.dedup_evictions,
            "reason",
            "expired",
            evictions.expired,
        );
        Metrics::add(
            &self.metrics.dedup_evictions,
            "reason",
            "capacity",
            evictions.capacity,
        );
        if evictions.capacity > 0 {
            debug!(
                capacity = self.seen.capacity(),
                "dedup capacity reached; forgot the least recently seen event"
            );
        }
        self.metrics.dedup_entries.set(self.seen.len() as i64);
        match verdict {
            Verdict::Duplicate => {
                self.metrics.deduplicated.inc();
                return None;
            }
            Verdict::New => Metrics::inc(&self.metrics.occurrences, "kind", "new"),
            Verdict::Repeat => Metrics::inc(&self.metrics.occurrences, "kind", "repeat"),
        }
        // Filtered-out reasons and sources are noise by the operator's word: not even
        // breadcrumbs. Normal events are breadcrumbs only.
        if let Some(filtered @ (Filtered::Reason | Filtered::Source)) = filter(&event, &self.config)
        {
            Metrics::inc(&self.metrics.filtered, "filter", filtered.as_label());
            return None;
        }
        let state = &mut self.watches[watch];
        if state.listing && !state.synced {
            if self.config.historical {
                state.backlog.push(event);
                return None;
            }
            Metrics::inc(&self.metrics.filtered, "filter", "historical");
            return Some(Occurrence {
                event,
                report: false,
            });
        }
        Some(self.decide(event))
    }

    /// Reported, unless Normal.
    fn decide(&self, event: KubeEvent) -> Occurrence {
        let report = !event.is_normal();
        if !report {
            Metrics::inc(
                &self.metrics.filtered,
                "filter",
                Filtered::Normal.as_label(),
            );
        }
        Occurrence { event, report }
    }
}

/// Stage two: the owner chain (and the DSN annotations) of an occurrence.
pub struct Resolved {
    pub occurrence: Occurrence,
    pub chain: Chain,
    /// The namespace's DSN annotation, when custom DSNs are on and no object has one.
    pub namespace_dsn: Option<String>,
}

async fn resolve(
    resolver: Option<Arc<OwnerResolver>>,
    custom_dsns: bool,
    occurrence: Occurrence,
) -> Resolved {
    let Some(resolver) = resolver else {
        let chain = Chain::of(&occurrence.event.involved);
        return Resolved {
            occurrence,
            chain,
            namespace_dsn: None,
        };
    };
    let mut involved = occurrence.event.involved.clone();
    if involved.namespace.is_empty()
        && crate::owners::readable_resource(&involved.api_version, &involved.kind).is_some()
    {
        involved.namespace = occurrence.event.namespace.clone();
    }
    let chain = resolver.chain(&involved).await;
    let namespace_dsn = if custom_dsns && occurrence.report && chain.dsn_annotation().is_none() {
        resolver.namespace_dsn(&occurrence.event.namespace).await
    } else {
        None
    };
    Resolved {
        occurrence,
        chain,
        namespace_dsn,
    }
}

/// Stage three: breadcrumbs, conversion and delivery, in order.
pub struct Reporter {
    enricher: Enricher,
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
            enricher: Enricher::new(limits, config.breadcrumbs, metrics.clone()),
            settings: Settings::from_config(config),
            delivery,
            metrics,
        }
    }

    pub async fn handle(&mut self, resolved: Resolved) {
        let Resolved {
            occurrence,
            chain,
            namespace_dsn,
        } = resolved;
        let event = occurrence.event;
        let Some(enrichment) = self.enricher.observe(&event, chain, occurrence.report) else {
            return;
        };
        let dsn = match enrichment.chain.dsn_annotation() {
            Some((object, raw)) => self.enricher.dsn(object, raw),
            None => namespace_dsn.and_then(|raw| {
                let namespace = crate::event::ObjectRef {
                    kind: "Namespace".into(),
                    name: event.namespace.clone(),
                    ..Default::default()
                };
                self.enricher.dsn(&namespace, &raw)
            }),
        };
        if dsn.is_some() {
            Metrics::inc(&self.metrics.custom_dsn, "outcome", "routed");
        }
        let sentry_event = convert::to_sentry_event(&event, &enrichment, &self.settings);
        if let Some(at) = event.occurred_at() {
            let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.event_lag.observe(lag);
        }
        debug!(namespace = %event.namespace, reason = %event.reason, object = %event.involved.name, root = %enrichment.chain.root().name, "reporting");
        if self.delivery.deliver(sentry_event, dsn.as_ref()).await != Handoff::Dropped {
            self.metrics.reported.inc();
        }
    }
}

/// The whole pipeline.
pub struct Pipeline {
    pub tracker: Tracker,
    pub resolver: Option<Arc<OwnerResolver>>,
    pub reporter: Reporter,
    pub concurrency: NonZeroUsize,
    pub custom_dsns: bool,
    pub health: Arc<Health>,
}

impl Pipeline {
    /// Runs until the source ends or `stop` resolves; then drains what is in flight, for at
    /// most `drain` after the stop.
    pub async fn run<S, F>(self, source: S, stop: F, drain: Duration)
    where
        S: Stream<Item = SourceItem>,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let Pipeline {
            mut tracker,
            resolver,
            mut reporter,
            concurrency,
            custom_dsns,
            health,
        } = self;
        // When the stop came: the source ends then, and what is in flight has `drain` more.
        // Watched by its own task: the pipeline may be busy (waiting for queue room) when
        // it comes, and must still notice.
        let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
        let watcher = tokio::spawn(async move {
            stop.await;
            let _ = stopped_tx.send(Some(tokio::time::Instant::now()));
        });
        let mut source_stop = stopped_rx.clone();
        let stop = async move {
            let _ = source_stop.wait_for(Option::is_some).await;
        };
        let drain_over = || {
            let mut stopped = stopped_rx.clone();
            async move {
                let at = stopped
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|at| *at);
                match at {
                    Some(at) => tokio::time::sleep_until(at + drain).await,
                    None => std::future::pending().await,
                }
            }
        };
        let occurrences = source
            .take_until(stop)
            .flat_map(move |item| stream::iter(tracker.handle(item)))
            .map(move |occurrence| resolve(resolver.clone(), custom_dsns, occurrence))
            .buffered(concurrency.get());
        let mut occurrences = std::pin::pin!(occurrences);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            health.beat();
            tokio::select! {
                biased;
                _ = drain_over() => {
                    warn!(?drain, "shutdown: gave up on events still in flight");
                    break;
                }
                item = occurrences.next() => match item {
                    Some(resolved) => {
                        // Waiting for room in the delivery queue must not outlast shutdown.
                        tokio::select! {
                            _ = reporter.handle(resolved) => {}
                            _ = drain_over() => {
                                warn!(?drain, "shutdown: gave up on an event waiting for the delivery queue");
                                break;
                            }
                        }
                    }
                    None => break,
                },
                _ = heartbeat.tick() => {}
            }
        }
        watcher.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().copied()).unwrap().0
    }

    fn event(kind: &str, reason: &str, component: &str) -> KubeEvent {
        let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "namespace": "n", "uid": "u"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "type": kind, "reason": reason, "source": {"component": component},
        }))
        .unwrap();
        normalize(&object).unwrap()
    }

    #[test]
    fn reports_anything_not_normal_minus_reason_and_source_filters() {
        let c = config(&[("SENTRY_K8S_FILTER_OUT_EVENT_SOURCES", "cluster-autoscaler")]);
        assert_eq!(filter(&event("Warning", "BackOff", "kubelet"), &c), None);
        assert_eq!(filter(&event("Error", "Whatever", "x"), &c), None);
        assert_eq!(
            filter(&event("Normal", "Pulled", "kubelet"), &c),
            Some(Filtered::Normal)
        );
        assert_eq!(
            filter(&event("Warning", "dockerstart", "kubelet"), &c),
            Some(Filtered::Reason)
        );
        assert_eq!(
            filter(&event("Warning", "ScaleDown", "Cluster-Autoscaler"), &c),
            Some(Filtered::Source)
        );
    }
}
