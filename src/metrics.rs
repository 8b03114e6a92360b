//! Prometheus metrics. Labels are small closed sets (outcomes, reasons, filter names);
//! never object names, which would explode cardinality.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labeled = Family<Vec<(&'static str, &'static str)>, Counter>;

/// Every metric the agent exports, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Event objects delivered by the watches (`type`: warning, normal, other).
    pub events_received: Labeled,
    /// New occurrences (`kind`: new, repeat).
    pub occurrences: Labeled,
    /// Observations that were not a new occurrence (relists, resends, duplicate watches).
    pub deduplicated: Counter,
    /// Occurrences not reported (`filter`: normal, reason, source, historical).
    pub filtered: Labeled,
    /// Objects that could not be read as events (`reason`).
    pub malformed: Labeled,
    /// Events handed to delivery.
    pub reported: Counter,
    /// Watch errors (`kind`: forbidden, unauthorized, expired, list, watch, other).
    pub watch_errors: Labeled,
    /// Initial lists and relists started.
    pub relists: Counter,
    /// Watches that have completed their first list.
    pub watches_ready: Gauge,
    /// Seen-state entries, and evictions (`reason`: expired, capacity).
    pub dedup_entries: Gauge,
    pub dedup_evictions: Labeled,
    /// Envelopes Sentry accepted.
    pub sentry_sent: Counter,
    /// Failed attempts that will be retried (`reason`: rate_limited, server_error, network).
    pub sentry_send_failures: Labeled,
    /// Envelopes given up on (`reason`: queue_full, too_large, rejected, unauthorized, shutdown).
    pub sentry_dropped: Labeled,
    /// Envelopes waiting for delivery: queued, in flight, or waiting for a retry.
    pub queue_depth: Gauge,
    /// Seconds from the Kubernetes occurrence time to the hand-off to delivery.
    pub event_lag: Histogram,
    /// Owner (and namespace) metadata lookups (`outcome`: cached, fetched, coalesced,
    /// forbidden, not_found, unreadable, error).
    pub owner_lookups: Labeled,
    /// Objects in the owner cache, and entries evicted from it.
    pub owner_cache_entries: Gauge,
    pub owner_cache_evictions: Counter,
    /// Workloads with breadcrumbs kept, and evictions (`reason`: entries, workloads).
    pub breadcrumb_workloads: Gauge,
    pub breadcrumb_evictions: Labeled,
    /// Per-object DSN routing (`outcome`: routed, invalid).
    pub custom_dsn: Labeled,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        fn register<M: prometheus_client::registry::Metric + Clone>(
            registry: &mut Registry,
            name: &str,
            help: &str,
            metric: M,
        ) -> M {
            registry.register(name, help, metric.clone());
            metric
        }
        let mut registry = Registry::with_prefix("sentry_k8s");
        let r = &mut registry;
        let events_received = register(
            r,
            "events_received",
            "Event objects delivered by the watches",
            Labeled::default(),
        );
        let occurrences = register(
            r,
            "occurrences",
            "New event occurrences (new events and repeats)",
            Labeled::default(),
        );
        let deduplicated = register(
            r,
            "events_deduplicated",
            "Observations that were not a new occurrence",
            Counter::default(),
        );
        let filtered = register(
            r,
            "events_filtered",
            "Occurrences not reported, by filter",
            Labeled::default(),
        );
        let malformed = register(
            r,
            "events_malformed",
            "Objects that could not be read as events",
            Labeled::default(),
        );
        let reported = register(
            r,
            "events_reported",
            "Events handed to delivery",
            Counter::default(),
        );
        let watch_errors = register(
            r,
            "watch_errors",
            "Errors from the event watches",
            Labeled::default(),
        );
        let relists = register(
            r,
            "relists",
            "Initial lists and relists of events",
            Counter::default(),
        );
        let watches_ready = register(
            r,
            "watches_ready",
            "Watches that completed their initial list",
            Gauge::default(),
        );
        let dedup_entries = register(
            r,
            "dedup_entries",
            "Events remembered for deduplication",
            Gauge::default(),
        );
        let dedup_evictions = register(
            r,
            "dedup_evictions",
            "Deduplication entries evicted",
            Labeled::default(),
        );
        let sentry_sent = register(
            r,
            "sentry_sent",
            "Envelopes accepted by Sentry",
            Counter::default(),
        );
        let sentry_send_failures = register(
            r,
            "sentry_send_failures",
            "Failed send attempts that are retried",
            Labeled::default(),
        );
        let sentry_dropped = register(
            r,
            "sentry_dropped",
            "Envelopes given up on",
            Labeled::default(),
        );
        let queue_depth = register(
            r,
            "queue_depth",
            "Envelopes waiting for delivery",
            Gauge::default(),
        );
        let event_lag = register(
            r,
            "event_lag_seconds",
            "From the Kubernetes occurrence time to delivery",
            Histogram::new([0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0]),
        );
        let owner_lookups = register(
            r,
            "owner_lookups",
            "Owner metadata lookups, by outcome",
            Labeled::default(),
        );
        let owner_cache_entries = register(
            r,
            "owner_cache_entries",
            "Objects in the owner cache",
            Gauge::default(),
        );
        let owner_cache_evictions = register(
            r,
            "owner_cache_evictions",
            "Owner cache entries evicted",
            Counter::default(),
        );
        let breadcrumb_workloads = register(
            r,
            "breadcrumb_workloads",
            "Workloads with breadcrumbs kept",
            Gauge::default(),
        );
        let breadcrumb_evictions = register(
            r,
            "breadcrumb_evictions",
            "Breadcrumbs evicted",
            Labeled::default(),
        );
        let custom_dsn = register(
            r,
            "custom_dsn",
            "Per-object DSN routing, by outcome",
            Labeled::default(),
        );
        Self {
            registry: Arc::new(registry),
            owner_lookups,
            owner_cache_entries,
            owner_cache_evictions,
            breadcrumb_workloads,
            breadcrumb_evictions,
            custom_dsn,
            events_received,
            occurrences,
            deduplicated,
            filtered,
            malformed,
            reported,
            watch_errors,
            relists,
            watches_ready,
            dedup_entries,
            dedup_evictions,
            sentry_sent,
            sentry_send_failures,
            sentry_dropped,
            queue_depth,
            event_lag,
        }
    }

    /// Increments a labelled counter.
    pub fn inc(family: &Labeled, label: &'static str, value: &'static str) {
        family.get_or_create(&vec![(label, value)]).inc();
    }

    /// Adds `n` to a labelled counter (nothing when `n` is 0).
    pub fn add(family: &Labeled, label: &'static str, value: &'static str, n: usize) {
        if n > 0 {
            family.get_or_create(&vec![(label, value)]).inc_by(n as u64);
        }
    }

    /// The value of one labelled counter (for tests and logs).
    pub fn get(family: &Labeled, label: &'static str, value: &'static str) -> u64 {
        family.get_or_create(&vec![(label, value)]).get()
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_counters_with_closed_labels() {
        let m = Metrics::new();
        Metrics::inc(&m.filtered, "filter", "reason");
        m.reported.inc();
        let text = m.render();
        assert!(
            text.contains("sentry_k8s_events_filtered_total{filter=\"reason\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sentry_k8s_events_reported_total 1"),
            "{text}"
        );
        assert_eq!(Metrics::get(&m.filtered, "filter", "reason"), 1);
    }
}
