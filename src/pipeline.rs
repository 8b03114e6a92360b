//! The pipeline, in one place: source → normalize → dedup → filter → convert → deliver.
//!
//! Items are handled one at a time, in order. The first list of each watch is history:
//! recorded as seen and not reported, or (historical replay) reported oldest first once the
//! list is complete. Later lists (after a 410 relist) report only what is new.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::api::DynamicObject;
use tracing::{debug, warn};

use crate::config::Config;
use crate::convert::{self, Settings};
use crate::dedup::{SeenEvents, Verdict};
use crate::delivery::{Delivery, Handoff};
use crate::event::KubeEvent;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::normalize::normalize;
use crate::source::SourceItem;

/// How often the pipeline proves it is alive while idle.
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct WatchState {
    /// Inside a list (first or relist).
    listing: bool,
    /// The first list has completed; everything after it is news.
    synced: bool,
    /// Historical replay: the first list's occurrences, reported when it completes.
    backlog: Vec<KubeEvent>,
}

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

pub struct Pipeline {
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    seen: SeenEvents,
    watches: Vec<WatchState>,
    settings: Settings,
    delivery: Arc<Delivery>,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        metrics: Metrics,
        health: Arc<Health>,
        delivery: Arc<Delivery>,
        watches: usize,
    ) -> Self {
        let capacity = NonZeroUsize::new(config.dedup_capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            seen: SeenEvents::new(capacity, config.event_ttl),
            watches: (0..watches).map(|_| WatchState::default()).collect(),
            settings: Settings::from_config(&config),
            config,
            metrics,
            health,
            delivery,
        }
    }

    /// Runs until the source ends or `shutdown` resolves, finishing the item in hand.
    pub async fn run<S, F>(mut self, source: S, shutdown: F)
    where
        S: Stream<Item = SourceItem>,
        F: std::future::Future<Output = ()>,
    {
        let mut source = std::pin::pin!(source);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            self.health.beat();
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                item = source.next() => match item {
                    Some(item) => self.handle(item).await,
                    None => break,
                },
                _ = heartbeat.tick() => {}
            }
        }
    }

    async fn handle(&mut self, item: SourceItem) {
        match item {
            SourceItem::ListStarted { watch } => self.watches[watch].listing = true,
            SourceItem::Listed { watch, object } | SourceItem::Applied { watch, object } => {
                self.observe(watch, &object).await
            }
            SourceItem::ListDone { watch } => self.list_done(watch).await,
            SourceItem::Deleted { object, .. } => {
                if let Ok(event) = normalize(&object) {
                    self.seen.forget(&event.uid);
                    self.metrics.dedup_entries.set(self.seen.len() as i64);
                }
            }
        }
    }

    async fn list_done(&mut self, watch: usize) {
        let state = &mut self.watches[watch];
        state.listing = false;
        if state.synced {
            return;
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
        for event in backlog {
            self.report(event).await;
        }
    }

    async fn observe(&mut self, watch: usize, object: &DynamicObject) {
        let event = match normalize(object) {
            Ok(event) => event,
            Err(why) => {
                Metrics::inc(&self.metrics.malformed, "reason", why.as_label());
                warn!(
                    reason = why.as_label(),
                    "skipped an object that is not a readable event"
                );
                return;
            }
        };
        let kind = match event.event_type.as_str() {
            "Warning" => "warning",
            "Normal" => "normal",
            _ => "other",
        };
        Metrics::inc(&self.metrics.events_received, "type", kind);
        let (verdict, evictions) = self.seen.observe(&event, Instant::now());
        for _ in 0..evictions.expired {
            Metrics::inc(&self.metrics.dedup_evictions, "reason", "expired");
        }
        if evictions.capacity > 0 {
            Metrics::inc(&self.metrics.dedup_evictions, "reason", "capacity");
            debug!(
                capacity = self.seen.capacity(),
                "dedup capacity reached; forgot the least recently seen event"
            );
        }
        self.metrics.dedup_entries.set(self.seen.len() as i64);
        match verdict {
            Verdict::Duplicate => {
                self.metrics.deduplicated.inc();
                return;
            }
            Verdict::New => Metrics::inc(&self.metrics.occurrences, "kind", "new"),
            Verdict::Repeat => Metrics::inc(&self.metrics.occurrences, "kind", "repeat"),
        }
        let state = &mut self.watches[watch];
        if state.listing && !state.synced {
            if self.config.historical {
                state.backlog.push(event);
            } else {
                Metrics::inc(&self.metrics.filtered, "filter", "historical");
            }
            return;
        }
        self.report(event).await;
    }

    async fn report(&mut self, event: KubeEvent) {
        if let Some(filtered) = filter(&event, &self.config) {
            Metrics::inc(&self.metrics.filtered, "filter", filtered.as_label());
            return;
        }
        let sentry_event = convert::to_sentry_event(&event, &self.settings);
        if let Some(at) = event.occurred_at() {
            let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
            self.metrics.event_lag.observe(lag);
        }
        debug!(namespace = %event.namespace, reason = %event.reason, object = %event.involved.name, "reporting");
        if self.delivery.deliver(sentry_event, None).await != Handoff::Dropped {
            self.metrics.reported.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().copied()).unwrap().0
    }

    fn event(kind: &str, reason: &str, component: &str) -> KubeEvent {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
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
