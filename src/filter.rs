//! The reporting rules: anything not `Normal` is reported, minus the reasons and source
//! components the operator filters out (case-insensitive, like the Go agent).

use crate::config::Config;
use crate::event::KubeEvent;
use crate::labels::label_enum;

label_enum! {
    /// Why an occurrence is not reported.
    pub enum Filtered {
        /// A Normal event: a breadcrumb for later ones, never reported itself.
        Normal = "normal",
        /// `SENTRY_K8S_FILTER_OUT_EVENT_REASONS`: not even a breadcrumb.
        Reason = "reason",
        /// `SENTRY_K8S_FILTER_OUT_EVENT_SOURCES`: not even a breadcrumb.
        Source = "source",
        /// Stored before the agent started (historical replay off): a breadcrumb only.
        Historical = "historical",
        /// A container that ended because its pod is being deleted (a rollout, a scale-down):
        /// not a crash, not even a breadcrumb.
        PodDeleting = "pod_deleting",
        /// A container termination older than `SENTRY_K8S_EVENT_TTL`: as old as an event
        /// Kubernetes has already deleted, so history (a breadcrumb only).
        Expired = "expired",
    }
}

/// The operator's filters, lowercased once.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    reasons: Vec<String>,
    sources: Vec<String>,
}

impl Filters {
    pub fn from_config(config: &Config) -> Self {
        Self {
            reasons: config.filter_out_reasons.clone(),
            sources: config.filter_out_sources.clone(),
        }
    }

    /// Why `event` is not reported, if it is not.
    pub fn excludes(&self, event: &KubeEvent) -> Option<Filtered> {
        if event.is_normal() {
            return Some(Filtered::Normal);
        }
        if self.reasons.contains(&event.reason.to_ascii_lowercase()) {
            return Some(Filtered::Reason);
        }
        let component = event.component().to_ascii_lowercase();
        if !component.is_empty() && self.sources.contains(&component) {
            return Some(Filtered::Source);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, reason: &str, component: &str) -> KubeEvent {
        KubeEvent {
            uid: "u".into(),
            event_type: kind.into(),
            reason: reason.into(),
            source_component: component.into(),
            ..Default::default()
        }
    }

    #[test]
    fn reports_anything_not_normal_minus_reason_and_source_filters() {
        let (c, _) =
            Config::from_vars([("SENTRY_K8S_FILTER_OUT_EVENT_SOURCES", "cluster-autoscaler")])
                .unwrap();
        let f = Filters::from_config(&c);
        assert_eq!(f.excludes(&event("Warning", "BackOff", "kubelet")), None);
        assert_eq!(f.excludes(&event("Error", "Whatever", "x")), None);
        assert_eq!(
            f.excludes(&event("Normal", "Pulled", "kubelet")),
            Some(Filtered::Normal)
        );
        assert_eq!(
            f.excludes(&event("Warning", "dockerstart", "kubelet")),
            Some(Filtered::Reason)
        );
        assert_eq!(
            f.excludes(&event("Warning", "ScaleDown", "Cluster-Autoscaler")),
            Some(Filtered::Source)
        );
    }
}
