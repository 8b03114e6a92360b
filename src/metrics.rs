//! Prometheus metrics. Every label is a closed set declared where the outcome is decided
//! (a `label_enum!` in the stage's module) and used here as a typed label set: a typo is a
//! compile error, and no label ever carries an object name.
//!
//! Stages return what happened (a [`Observation`], a [`DropReason`], a [`LookupOutcome`]);
//! the caller records it with one call.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::breadcrumbs::{self, TrailEvictions};
use crate::dedup::{self, Observation, Verdict};
use crate::delivery::outcome::{DropReason, RetryReason};
use crate::event::EventType;
use crate::filter::Filtered;
use crate::leadership::{LeaseWrite, Transition};
use crate::logs::LogOutcome;
use crate::normalize::Malformed;
use crate::owners::cache::LookupOutcome;
use crate::routing::RouteOutcome;
use crate::source::{WatchErrorKind, WatchedResource};
use crate::storm::StormReason;

/// A label set of one label whose values are one of our label enums.
macro_rules! label_set {
    ($name:ident { $key:ident: $value:ty }) => {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub struct $name {
            pub $key: $value,
        }

        impl From<$value> for $name {
            fn from($key: $value) -> Self {
                Self { $key }
            }
        }
    };
}

label_set!(TypeLabels { r#type: EventType });
label_set!(OccurrenceLabels { kind: Verdict });
label_set!(FilterLabels { filter: Filtered });
label_set!(MalformedLabels { reason: Malformed });
/// Watch errors by what was watched and what went wrong.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchErrorLabels {
    pub resource: WatchedResource,
    pub kind: WatchErrorKind,
}

impl From<(WatchedResource, WatchErrorKind)> for WatchErrorLabels {
    fn from((resource, kind): (WatchedResource, WatchErrorKind)) -> Self {
        Self { resource, kind }
    }
}
label_set!(DedupEvictionLabels {
    reason: dedup::Eviction
});
label_set!(RetryLabels {
    reason: RetryReason
});
label_set!(DropLabels { reason: DropReason });
label_set!(LookupLabels {
    outcome: LookupOutcome
});
label_set!(CrumbEvictionLabels {
    reason: breadcrumbs::Eviction
});
label_set!(StormLabels {
    reason: StormReason
});
label_set!(TransitionLabels {
    direction: Transition
});
label_set!(LeaseWriteLabels {
    outcome: LeaseWrite
});
label_set!(RouteLabels {
    outcome: RouteOutcome
});
label_set!(LogLabels {
    outcome: LogOutcome
});

/// A counter per value of one typed label.
#[derive(Clone, Debug)]
pub struct Counted<S: Clone + Hash + Eq> {
    family: Family<S, Counter>,
}

impl<S: Clone + Hash + Eq> Default for Counted<S> {
    fn default() -> Self {
        Self {
            family: Family::default(),
        }
    }
}

impl<S> Counted<S>
where
    S: Clone + Hash + Eq + EncodeLabelSet + Debug + Send + Sync + 'static,
{
    pub fn inc(&self, label: impl Into<S>) {
        self.family.get_or_create(&label.into()).inc();
    }

    /// Adds `n` (nothing when `n` is 0, so no series appears for it).
    pub fn add(&self, label: impl Into<S>, n: usize) {
        if n > 0 {
            self.family.get_or_create(&label.into()).inc_by(n as u64);
        }
    }

    /// The current value (tests, logs).
    pub fn get(&self, label: impl Into<S>) -> u64 {
        self.family.get_or_create(&label.into()).get()
    }
}

/// Every metric the agent exports, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Event objects delivered by the watches, by `type`.
    pub events_received: Counted<TypeLabels>,
    /// New occurrences (`kind`: new, repeat).
    pub occurrences: Counted<OccurrenceLabels>,
    /// Observations that were not a new occurrence (relists, resends, duplicate watches).
    pub deduplicated: Counter,
    /// Occurrences not reported, by `filter`.
    pub filtered: Counted<FilterLabels>,
    /// Objects that could not be read as events (or pods), by `reason`.
    pub malformed: Counted<MalformedLabels>,
    /// Pod objects delivered by the pod watches.
    pub pods_received: Counter,
    /// Reads of a crashed container's last log lines, by `outcome`.
    pub container_logs: Counted<LogLabels>,
    /// Attempts to identify the GKE cluster at start that failed.
    pub gke_metadata_failures: Counter,
    /// Events handed to delivery.
    pub reported: Counter,
    /// Watch errors, by `resource` (events, cronjobs, jobs) and `kind`.
    pub watch_errors: Counted<WatchErrorLabels>,
    /// Initial lists and relists started.
    pub relists: Counter,
    /// Watches that have completed their first list.
    pub watches_ready: Gauge,
    /// Seen-state entries, and evictions by `reason`.
    pub dedup_entries: Gauge,
    pub dedup_evictions: Counted<DedupEvictionLabels>,
    /// Envelopes Sentry accepted.
    pub sentry_sent: Counter,
    /// Failed attempts that will be retried, by `reason`.
    pub sentry_send_failures: Counted<RetryLabels>,
    /// Envelopes given up on, by `reason`.
    pub sentry_dropped: Counted<DropLabels>,
    /// Envelopes waiting for delivery: queued, in flight, or waiting for a retry.
    pub queue_depth: Gauge,
    /// Seconds from the Kubernetes occurrence time to the hand-off to delivery.
    pub event_lag: Histogram,
    /// Owner (and namespace) metadata lookups, by `outcome`.
    pub owner_lookups: Counted<LookupLabels>,
    /// Objects in the owner cache, and entries evicted from it.
    pub owner_cache_entries: Gauge,
    pub owner_cache_evictions: Counter,
    /// Workloads with breadcrumbs kept, and evictions by `reason`.
    pub breadcrumb_workloads: Gauge,
    pub breadcrumb_evictions: Counted<CrumbEvictionLabels>,
    /// Per-object DSN routing, by `outcome`.
    pub custom_dsn: Counted<RouteLabels>,
    /// Occurrences held back by storm control, by `reason` (the common ones, else other).
    pub occurrences_suppressed: Counted<StormLabels>,
    /// Issues whose storm-control window is tracked.
    pub storm_issues: Gauge,
    /// 1 while this replica reports (always 1 without leader election).
    pub leader: Gauge,
    /// Leadership acquired (at start-up too) and lost, by `direction`.
    pub leader_transitions: Counted<TransitionLabels>,
    /// Writes of the Lease (creation, renewals, takeovers, checkpoints, release), by `outcome`.
    pub lease_writes: Counted<LeaseWriteLabels>,
    /// Seconds since the checkpoint was last written.
    pub checkpoint_age: Gauge,
    /// Occurrences reported because a resume found them above the checkpoint.
    pub occurrences_resumed: Counter,
    /// Occurrences whose delivery the checkpoint stopped waiting for, to stay bounded.
    pub checkpoint_abandoned: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sentry_k8s");
        let r = &mut registry;
        fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
            let metric = Counter::default();
            r.register(name, help, metric.clone());
            metric
        }
        fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
            let metric = Gauge::default();
            r.register(name, help, metric.clone());
            metric
        }
        fn counted<S>(r: &mut Registry, name: &str, help: &str) -> Counted<S>
        where
            S: Clone + Hash + Eq + EncodeLabelSet + Debug + Send + Sync + 'static,
        {
            let metric = Counted::default();
            r.register(name, help, metric.family.clone());
            metric
        }
        let metrics = Self {
            events_received: counted(
                r,
                "events_received",
                "Event objects delivered by the watches",
            ),
            occurrences: counted(
                r,
                "occurrences",
                "New event occurrences (new events and repeats)",
            ),
            deduplicated: counter(
                r,
                "events_deduplicated",
                "Observations that were not a new occurrence",
            ),
            filtered: counted(r, "events_filtered", "Occurrences not reported, by filter"),
            malformed: counted(
                r,
                "events_malformed",
                "Objects that could not be read as events",
            ),
            pods_received: counter(
                r,
                "pods_received",
                "Pod objects delivered by the pod watches",
            ),
            container_logs: counted(
                r,
                "container_logs",
                "Reads of a crashed container's last log lines, by outcome",
            ),
            gke_metadata_failures: counter(
                r,
                "gke_metadata_failures",
                "Failed attempts to identify the GKE cluster from the metadata server",
            ),
            reported: counter(r, "events_reported", "Events handed to delivery"),
            watch_errors: counted(r, "watch_errors", "Errors from the event watches"),
            relists: counter(r, "relists", "Initial lists and relists of events"),
            watches_ready: gauge(
                r,
                "watches_ready",
                "Watches that completed their initial list",
            ),
            dedup_entries: gauge(r, "dedup_entries", "Events remembered for deduplication"),
            dedup_evictions: counted(r, "dedup_evictions", "Deduplication entries evicted"),
            sentry_sent: counter(r, "sentry_sent", "Envelopes accepted by Sentry"),
            sentry_send_failures: counted(
                r,
                "sentry_send_failures",
                "Failed send attempts that are retried",
            ),
            sentry_dropped: counted(r, "sentry_dropped", "Envelopes given up on"),
            queue_depth: gauge(r, "queue_depth", "Envelopes waiting for delivery"),
            event_lag: {
                let lag =
                    Histogram::new([0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0]);
                r.register(
                    "event_lag_seconds",
                    "From the Kubernetes occurrence time to delivery",
                    lag.clone(),
                );
                lag
            },
            owner_lookups: counted(r, "owner_lookups", "Owner metadata lookups, by outcome"),
            owner_cache_entries: gauge(r, "owner_cache_entries", "Objects in the owner cache"),
            owner_cache_evictions: counter(
                r,
                "owner_cache_evictions",
                "Owner cache entries evicted",
            ),
            breadcrumb_workloads: gauge(
                r,
                "breadcrumb_workloads",
                "Workloads with breadcrumbs kept",
            ),
            breadcrumb_evictions: counted(r, "breadcrumb_evictions", "Breadcrumbs evicted"),
            custom_dsn: counted(r, "custom_dsn", "Per-object DSN routing, by outcome"),
            occurrences_suppressed: counted(
                r,
                "occurrences_suppressed",
                "Occurrences held back by storm control",
            ),
            storm_issues: gauge(
                r,
                "storm_issues",
                "Issues whose storm-control window is tracked",
            ),
            leader: gauge(r, "leader", "1 while this replica reports"),
            leader_transitions: counted(r, "leader_transitions", "Leadership acquired and lost"),
            lease_writes: counted(r, "lease_writes", "Writes of the Lease, by outcome"),
            checkpoint_age: gauge(
                r,
                "checkpoint_age_seconds",
                "Seconds since the checkpoint was written",
            ),
            occurrences_resumed: counter(
                r,
                "occurrences_resumed",
                "Occurrences reported because a resume found them after the checkpoint",
            ),
            checkpoint_abandoned: counter(
                r,
                "checkpoint_abandoned",
                "Occurrences the checkpoint stopped waiting for, to stay bounded",
            ),
            // A placeholder while `r` borrows the registry the fields register in.
            registry: Arc::new(Registry::default()),
        };
        Self {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// One observation by the dedup stage: its verdict, its evictions, what remains.
    pub fn observed(&self, observation: &Observation) {
        match observation.verdict {
            Verdict::Duplicate => {
                self.deduplicated.inc();
            }
            verdict => self.occurrences.inc(verdict),
        }
        for (reason, n) in observation.evictions.by_reason() {
            self.dedup_evictions.add(reason, n);
        }
        self.dedup_entries.set(observation.remembered as i64);
    }

    /// One record in the breadcrumb trail: its evictions, and the workloads tracked.
    pub fn trail_recorded(&self, evictions: TrailEvictions, workloads: usize) {
        for (reason, n) in evictions.by_reason() {
            self.breadcrumb_evictions.add(reason, n);
        }
        self.breadcrumb_workloads.set(workloads as i64);
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
    fn renders_prefixed_counters_with_typed_labels() {
        let m = Metrics::new();
        m.filtered.inc(Filtered::Reason);
        m.events_received.inc(EventType::Warning);
        m.reported.inc();
        let text = m.render();
        for line in [
            "sentry_k8s_events_filtered_total{filter=\"reason\"} 1",
            "sentry_k8s_events_received_total{type=\"warning\"} 1",
            "sentry_k8s_events_reported_total 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(m.filtered.get(Filtered::Reason), 1);
        assert_eq!(m.filtered.get(Filtered::Source), 0);
    }
}
